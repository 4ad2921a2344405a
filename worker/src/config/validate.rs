//! Offline validation: everything that can be checked without touching the network.
//! Every problem is reported (not just the first), each naming the field and the bad value.

use std::fmt;
use std::path::Path;

use super::{
    Compression, Config, LogFormat, LogLevel, PRIMARY_TABLE, PasOutbox, SourceMode, StorageBackend,
    normalize_prefix,
};
use crate::network::passphrase_for;

/// The largest partition the grid accepts. Bigger partitions only make retries and memory worse.
pub const MAX_PARTITION_SIZE: u32 = 10_000_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub value: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} = {:?}: {}", self.field, self.value, self.message)
    }
}

#[derive(Default)]
struct Report(Vec<FieldError>);

impl Report {
    fn fail(&mut self, field: &str, value: impl fmt::Display, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.to_string(),
            value: value.to_string(),
            message: message.into(),
        });
    }

    /// Reports `key` when its value named no choice (the message says which are allowed);
    /// whether it did.
    fn rejected<T: std::str::FromStr<Err = super::UnknownChoice>>(
        &mut self,
        c: &Config,
        key: &str,
    ) -> bool {
        let Some(text) = c.rejected.get(key) else {
            return false;
        };
        let why = text
            .parse::<T>()
            .err()
            .map_or_else(String::new, |e| e.0.to_string());
        self.fail(key, text, why);
        true
    }

    /// `value`, or `None` (reported) when the text at `key` named no choice: checks that depend
    /// on the value are skipped then, as they always were for an unknown value.
    fn choice<T: super::Choice>(&mut self, c: &Config, key: &str, value: T) -> Option<T> {
        (!self.rejected::<T>(c, key)).then_some(value)
    }

    fn require(&mut self, field: &str, value: &str, why: &str) {
        if value.trim().is_empty() {
            self.fail(field, value, format!("is required {why}"));
        }
    }
}

/// Validates `config`, without side effects: directory checks prove that the output and state
/// directories exist and are writable, or can be created, but create nothing.
pub fn validate(config: &Config) -> Result<(), Vec<FieldError>> {
    let mut r = Report::default();
    check_era(config, &mut r);
    check_source(config, &mut r);
    check_storage(config, &mut r);
    check_services(config, &mut r);
    check_perf_and_logging(config, &mut r);
    check_archive(config, &mut r);
    if r.0.is_empty() { Ok(()) } else { Err(r.0) }
}

/// `archive.url` / `archive.urls`: the form of each URL (offline; the run reads each archive's
/// state and checks its network before it copies anything).
fn check_archive(c: &Config, r: &mut Report) {
    let a = &c.archive;
    let fields =
        std::iter::once(("archive.url", &a.url)).chain(a.urls.iter().map(|u| ("archive.urls", u)));
    for (field, url) in fields {
        if url.trim().is_empty() {
            if field == "archive.urls" {
                r.fail(field, url, "has an empty entry");
            }
            continue;
        }
        if let Err(why) = crate::archive::parse_archive_url(url) {
            r.fail(field, url, format!("is not an archive URL: {why}"));
        }
    }
    if a.allow_unanchored && a.all_urls().is_empty() {
        r.fail(
            "archive.allow_unanchored",
            true,
            "means nothing without archive.url",
        );
    }
    if let Some(trusted) = &a.trusted_ledger {
        if a.all_urls().is_empty() {
            r.fail(
                "archive.trusted_ledger",
                trusted.sequence,
                "means nothing without archive.url",
            );
        }
        if let Err(why) = trusted.parse() {
            let shown = format!(
                "{{sequence: {}, hash: {:?}}}",
                trusted.sequence, trusted.hash
            );
            r.fail(
                "archive.trusted_ledger",
                shown,
                format!("is not a trusted ledger: {why} (sequence: a ledger number; hash: its 64 hex digits)"),
            );
        }
    }
}

fn check_era(c: &Config, r: &mut Report) {
    let era = &c.era;
    for (field, value) in [
        ("copier_id", &c.copier_id),
        ("era.era_id", &era.era_id),
        ("era.version_label", &era.version_label),
        ("era.network", &era.network),
    ] {
        if value.is_empty() {
            r.fail(field, value, "is required");
        } else if !is_path_segment(value) {
            r.fail(field, value, "must use only letters, digits, '-', '_' and '.' (it becomes part of paths and file names)");
        }
    }
    if !era.network.is_empty()
        && passphrase_for(&era.network).is_none()
        && era.network_passphrase.as_deref().unwrap_or("").is_empty()
    {
        r.fail(
            "era.network",
            &era.network,
            "is not pubnet, testnet or futurenet; set era.network_passphrase for another network",
        );
    }
    if era.ledger_start == 0 {
        r.fail(
            "era.ledger_start",
            era.ledger_start,
            "must be >= 1 (there is no ledger 0)",
        );
    }
    if era.ledger_end != 0 && era.ledger_end < era.ledger_start {
        r.fail(
            "era.ledger_end",
            era.ledger_end,
            format!(
                "must be 0 (follow the tip) or >= era.ledger_start ({})",
                era.ledger_start
            ),
        );
    }
    if era.partition_size == 0 || era.partition_size > MAX_PARTITION_SIZE {
        r.fail(
            "era.partition_size",
            era.partition_size,
            format!("must be between 1 and {MAX_PARTITION_SIZE}"),
        );
    }
    if let Some(at) = &era.ingested_at
        && chrono::DateTime::parse_from_rfc3339(at).is_err()
    {
        r.fail(
            "era.ingested_at",
            at,
            "must be an RFC 3339 timestamp such as 2025-01-15T10:00:00Z",
        );
    }
    if c.bronze.primary_table != PRIMARY_TABLE {
        r.fail(
            "bronze.primary_table",
            &c.bronze.primary_table,
            format!("only {PRIMARY_TABLE} is produced; other values would mislabel the output"),
        );
    }
}

fn check_source(c: &Config, r: &mut Report) {
    let s = &c.source;
    match r.choice(c, "source.mode", s.mode) {
        None => {}
        Some(SourceMode::Local) => {
            r.require(
                "source.local_path",
                &s.local_path,
                "when source.mode is local",
            );
            if !s.local_path.is_empty() && !Path::new(&s.local_path).is_dir() {
                r.fail(
                    "source.local_path",
                    &s.local_path,
                    "is not a readable directory",
                );
            }
        }
        Some(SourceMode::Gcs) => r.require(
            "source.gcs_bucket",
            &s.gcs_bucket,
            "when source.mode is gcs",
        ),
        Some(SourceMode::S3) => {
            r.require("source.s3_bucket", &s.s3_bucket, "when source.mode is s3");
            check_endpoint("source.s3_endpoint", &s.s3_endpoint, r);
        }
        Some(SourceMode::Datastore) => {
            r.require(
                "source.datastore_path",
                &s.datastore_path,
                "when source.mode is datastore",
            );
            if s.datastore_path.contains("://") {
                r.fail(
                    "source.datastore_path",
                    &s.datastore_path,
                    "must be bucket/prefix without a scheme (drop the gs:// or s3://)",
                );
            } else if s.datastore_path.starts_with('/') {
                r.fail(
                    "source.datastore_path",
                    &s.datastore_path,
                    "must start with the bucket name",
                );
            }
            if !r.rejected::<super::DatastoreType>(c, "source.datastore_type")
                && s.datastore_type.is_none()
            {
                r.fail("source.datastore_type", "", "must be GCS or S3");
            }
            check_endpoint("source.s3_endpoint", &s.s3_endpoint, r);
        }
    }
    if s.poll_interval_ms == 0 {
        r.fail("source.poll_interval_ms", s.poll_interval_ms, "must be > 0");
    }
    for (field, value) in [
        ("source.ledgers_per_batch", s.ledgers_per_batch),
        ("source.batches_per_partition", s.batches_per_partition),
    ] {
        if value == Some(0) {
            r.fail(field, 0, "must be >= 1");
        }
    }
}

fn check_storage(c: &Config, r: &mut Report) {
    let s = &c.storage;
    match r.choice(c, "storage.backend", s.backend) {
        None => {}
        Some(StorageBackend::Local) => {
            r.require(
                "storage.local_dir",
                &s.local_dir,
                "when storage.backend is local",
            );
            if !s.local_dir.is_empty() {
                check_writable_dir("storage.local_dir", &s.local_dir, r);
            }
        }
        Some(StorageBackend::Gcs) => r.require(
            "storage.gcs_bucket",
            &s.gcs_bucket,
            "when storage.backend is gcs",
        ),
        Some(StorageBackend::S3) => {
            r.require(
                "storage.s3_bucket",
                &s.s3_bucket,
                "when storage.backend is s3",
            );
            check_endpoint("storage.s3_endpoint", &s.s3_endpoint, r);
        }
    }
    let prefix = normalize_prefix(&s.prefix);
    if prefix.split('/').any(|seg| seg == "." || seg == "..") {
        r.fail(
            "storage.prefix",
            &s.prefix,
            "must not contain . or .. segments",
        );
    }
    if let Some(compression) = r.choice(c, "storage.compression", s.compression) {
        match compression {
            Compression::Zstd => {
                check_level("storage.compression_level", s.compression_level, 1, 22, r)
            }
            Compression::Gzip => {
                check_level("storage.compression_level", s.compression_level, 0, 9, r)
            }
            Compression::Snappy | Compression::Lz4 | Compression::None => {
                if let Some(level) = s.compression_level {
                    r.fail(
                        "storage.compression_level",
                        level,
                        format!("is not used by {compression}"),
                    );
                }
            }
        }
    }
    if s.row_group_bytes < 1024 * 1024 {
        r.fail(
            "storage.row_group_bytes",
            s.row_group_bytes,
            "must be at least 1 MiB",
        );
    }
    if s.upload_part_bytes < 5 * 1024 * 1024 {
        r.fail(
            "storage.upload_part_bytes",
            s.upload_part_bytes,
            "must be at least 5 MiB (S3's minimum part size)",
        );
    }
}

fn check_services(c: &Config, r: &mut Report) {
    if c.checkpoint.enabled {
        r.require(
            "checkpoint.dir",
            &c.checkpoint.dir,
            "when checkpoint.enabled is true",
        );
        if !c.checkpoint.dir.is_empty() {
            check_writable_dir("checkpoint.dir", &c.checkpoint.dir, r);
        }
    }
    if c.pas.enabled {
        match r.choice(c, "pas.outbox", c.pas.outbox) {
            Some(PasOutbox::File) => {
                r.require(
                    "pas.backup_dir",
                    &c.pas.backup_dir,
                    "when pas.enabled is true and pas.outbox is file",
                );
                if !c.pas.backup_dir.is_empty() {
                    check_writable_dir("pas.backup_dir", &c.pas.backup_dir, r);
                }
            }
            Some(PasOutbox::Storage) | None => {}
        }
        if !c.pas.endpoint.is_empty() {
            check_url("pas.endpoint", &c.pas.endpoint, r);
        }
        if c.pas.timeout_ms == 0 {
            r.fail("pas.timeout_ms", 0, "must be > 0");
        }
    }
    if !c.catalog.postgres_dsn.is_empty()
        && let Err(e) = crate::catalog::check_dsn(&c.catalog.postgres_dsn)
    {
        // The reason never contains the DSN itself, so no password is echoed.
        r.fail(
            "catalog.postgres_dsn",
            redact_dsn(&c.catalog.postgres_dsn),
            format!("cannot be used: {e}"),
        );
    }
    if c.metrics.rate_window_seconds == 0 {
        r.fail("metrics.rate_window_seconds", 0, "must be >= 1");
    }
    if c.metrics.enabled
        && crate::listen_address::parse_listen_address(&c.metrics.address).is_none()
    {
        r.fail(
            "metrics.address",
            &c.metrics.address,
            "must be host:port or :port",
        );
    }
}

fn check_perf_and_logging(c: &Config, r: &mut Report) {
    let p = &c.perf;
    if !(1..=256).contains(&p.max_in_flight_partitions) {
        r.fail(
            "perf.max_in_flight_partitions",
            p.max_in_flight_partitions,
            "must be between 1 and 256",
        );
    }
    if !(1..=1024).contains(&p.workers) {
        r.fail("perf.workers", p.workers, "must be between 1 and 1024");
    }
    if p.retry_attempts == 0 {
        r.fail(
            "perf.retry_attempts",
            p.retry_attempts,
            "must be >= 1 (it counts the first attempt)",
        );
    }
    r.rejected::<LogFormat>(c, "logging.format");
    r.rejected::<LogLevel>(c, "logging.level");
}

fn check_level(field: &str, level: Option<i32>, min: i32, max: i32, r: &mut Report) {
    if let Some(level) = level
        && !(min..=max).contains(&level)
    {
        r.fail(field, level, format!("must be between {min} and {max}"));
    }
}

fn check_endpoint(field: &str, value: &str, r: &mut Report) {
    if !value.is_empty() {
        check_url(field, value, r);
    }
}

fn check_url(field: &str, value: &str, r: &mut Report) {
    match url::Url::parse(value) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
        Ok(_) => r.fail(
            field,
            value,
            "must be an http:// or https:// URL with a host",
        ),
        Err(e) => r.fail(field, value, format!("is not a valid URL: {e}")),
    }
}

/// Checks, creating nothing (`-validate` is offline and leaves no trace), that the run can use
/// `dir`: an existing writable directory, or a missing one whose nearest existing ancestor is a
/// writable directory (the run creates the rest).
fn check_writable_dir(field: &str, dir: &str, r: &mut Report) {
    let path = Path::new(dir);
    let mut existing = path;
    loop {
        match std::fs::metadata(existing) {
            Ok(m) if m.is_dir() => break,
            Ok(_) => {
                let why = if existing == path {
                    "is not a directory".to_string()
                } else {
                    format!(
                        "cannot be created: {} is not a directory",
                        existing.display()
                    )
                };
                r.fail(field, dir, why);
                return;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                existing = match existing.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p,
                    _ => Path::new("."),
                };
            }
            Err(e) => {
                r.fail(
                    field,
                    dir,
                    format!("cannot be read ({}): {e}", existing.display()),
                );
                return;
            }
        }
    }
    // An unnamed temporary file (O_TMPFILE on Linux) proves write access and leaves no entry.
    if let Err(e) = tempfile::tempfile_in(existing) {
        let why = if existing == path {
            format!("is not writable: {e}")
        } else {
            format!(
                "cannot be created: {} is not writable: {e}",
                existing.display()
            )
        };
        r.fail(field, dir, why);
    }
}

fn is_path_segment(value: &str) -> bool {
    value != "."
        && value != ".."
        && value
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'))
}

/// Replaces the password of a URL-style or key=value DSN with `***`. Works on text that does not
/// parse, since that is exactly when it gets printed.
pub fn redact_dsn(dsn: &str) -> String {
    if let Some(scheme_end) = dsn.find("://") {
        let rest = &dsn[scheme_end + 3..];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        if let Some(at) = authority.rfind('@')
            && let Some(colon) = authority[..at].find(':')
        {
            let start = scheme_end + 3 + colon + 1;
            let end = scheme_end + 3 + at;
            return format!("{}***{}", &dsn[..start], &dsn[end..]);
        }
        return dsn.to_string();
    }
    dsn.split_whitespace()
        .map(|kv| {
            if kv.to_ascii_lowercase().starts_with("password=") {
                "password=***"
            } else {
                kv
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid_config(dir: &Path) -> Config {
        let mut c = Config::default();
        c.source.local_path = dir.to_string_lossy().into();
        c.storage.local_dir = dir.join("out").to_string_lossy().into();
        c.checkpoint.dir = dir.join("state").to_string_lossy().into();
        c.pas.backup_dir = dir.join("pas-backup").to_string_lossy().into();
        c
    }

    fn errors_of(c: &Config) -> Vec<FieldError> {
        validate(c).err().unwrap_or_default()
    }

    #[test]
    fn a_trusted_ledger_needs_a_number_a_32_byte_hex_hash_and_an_archive() {
        use crate::config::TrustedLedgerConfig;
        let dir = tempfile::tempdir().unwrap();
        let mut c = valid_config(dir.path());
        c.archive.url = "https://history.stellar.org/prd/core-testnet/core_testnet_001".into();
        let hash = "AB".repeat(32);
        c.archive.trusted_ledger = Some(TrustedLedgerConfig {
            sequence: 1_410_111,
            hash: hash.clone(),
        });
        assert_eq!(errors_of(&c), vec![]);
        let parsed = c.archive.trusted_ledger.as_ref().unwrap().parse().unwrap();
        assert_eq!((parsed.sequence, parsed.hash), (1_410_111, [0xab; 32]));
        for (sequence, bad, why) in [
            (0, hash.as_str(), "ledger number"),
            (5, "ab12", "2 bytes, not 32"),
            (5, "zz", "not hex"),
            (5, "", "0 bytes"),
        ] {
            c.archive.trusted_ledger = Some(TrustedLedgerConfig {
                sequence,
                hash: bad.into(),
            });
            let errors: Vec<String> = errors_of(&c).iter().map(|e| e.to_string()).collect();
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(
                errors[0].contains("archive.trusted_ledger") && errors[0].contains(why),
                "{errors:?}"
            );
        }
        // Both variables set it (the operator's Jobs); without an archive it is refused.
        let mut c = valid_config(dir.path());
        crate::config::env::apply_env(&mut c, |k| match k {
            "ARCHIVE_TRUSTED_LEDGER_SEQUENCE" => Some("127".into()),
            "ARCHIVE_TRUSTED_LEDGER_HASH" => Some(hash.clone()),
            _ => None,
        })
        .unwrap();
        assert_eq!(
            c.archive.trusted_ledger,
            Some(TrustedLedgerConfig {
                sequence: 127,
                hash: hash.clone()
            })
        );
        let errors: Vec<String> = errors_of(&c).iter().map(|e| e.to_string()).collect();
        assert!(
            errors.len() == 1 && errors[0].contains("without archive.url"),
            "{errors:?}"
        );
    }

    #[test]
    fn archive_urls_are_checked_for_their_form() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = valid_config(dir.path());
        c.archive.url = "https://history.stellar.org/prd/core-testnet/core_testnet_001".into();
        c.archive.urls = vec!["s3://mirror/core".into(), "gs://mirror/core".into()];
        assert_eq!(errors_of(&c), vec![]);
        c.archive.url = "ftp://archive".into();
        c.archive.urls = vec!["".into()];
        let fields: Vec<String> = errors_of(&c).into_iter().map(|e| e.to_string()).collect();
        assert_eq!(fields.len(), 2, "{fields:?}");
        assert!(
            fields[0].contains("archive.url") && fields[0].contains("ftp://"),
            "{fields:?}"
        );
        assert!(fields[1].contains("archive.urls"), "{fields:?}");
        // The variable sets it too.
        let mut c = valid_config(dir.path());
        crate::config::env::apply_env(&mut c, |k| {
            (k == "ARCHIVE_URL").then(|| "file:///srv/archive".to_string())
        })
        .unwrap();
        assert_eq!(
            c.archive.all_urls(),
            vec!["file:///srv/archive".to_string()]
        );
        // More archives, comma-separated (the operator's spec.archive.urls).
        crate::config::env::apply_env(&mut c, |k| {
            (k == "ARCHIVE_URLS").then(|| " s3://a/core , ,gs://b/core".to_string())
        })
        .unwrap();
        assert_eq!(
            c.archive.all_urls(),
            ["file:///srv/archive", "s3://a/core", "gs://b/core"]
        );
        c.archive.urls.clear();
        c.archive.url.clear();
        c.archive.allow_unanchored = true;
        assert!(
            errors_of(&c)[0]
                .to_string()
                .contains("archive.allow_unanchored")
        );
    }

    #[test]
    fn a_complete_config_is_valid() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(errors_of(&valid_config(dir.path())), vec![]);
    }

    #[test]
    fn every_error_names_field_and_value_and_all_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = valid_config(dir.path());
        c.era.ledger_start = 500;
        c.era.ledger_end = 100;
        c.era.partition_size = 0;
        c.source.mode = SourceMode::Datastore;
        c.rejected
            .insert("source.datastore_type".into(), "azure".into());
        c.source.datastore_path = "gs://bucket/prefix".into();
        c.pas.enabled = true;
        c.pas.endpoint = "not a url".into();
        c.perf.max_in_flight_partitions = 0;
        c.bronze.primary_table = "ledgers".into();
        let errors = errors_of(&c);
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        for want in [
            "era.ledger_end",
            "era.partition_size",
            "source.datastore_path",
            "source.datastore_type",
            "pas.endpoint",
            "perf.max_in_flight_partitions",
            "bronze.primary_table",
        ] {
            assert!(fields.contains(&want), "missing {want} in {errors:?}");
        }
        let path_error = errors
            .iter()
            .find(|e| e.field == "source.datastore_path")
            .unwrap();
        assert_eq!(path_error.value, "gs://bucket/prefix");
        assert!(path_error.to_string().contains("gs://bucket/prefix"));
    }

    #[test]
    fn a_value_naming_no_choice_is_reported_as_before_and_its_dependent_checks_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = valid_config(dir.path());
        // What the file `storage.backend: ftp` (or STORAGE_BACKEND=ftp) leaves: the default
        // backend, whose own checks must not run, and the text for the report.
        c.storage.local_dir.clear();
        c.storage.compression_level = Some(99);
        for (key, text) in [
            ("storage.backend", "ftp"),
            ("storage.compression", "brotli"),
            ("source.mode", "ftp"),
            ("logging.level", "loud"),
        ] {
            c.rejected.insert(key.into(), text.into());
        }
        c.source.local_path.clear();
        let lines: Vec<String> = errors_of(&c).iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "source.mode = \"ftp\": must be one of: local, gcs, s3, datastore",
                "storage.backend = \"ftp\": must be one of: local, gcs, s3",
                "storage.compression = \"brotli\": must be one of: zstd, snappy, lz4, gzip, none",
                "logging.level = \"loud\": must be trace, debug, info, warn or error",
            ]
        );
    }

    #[test]
    fn unwritable_or_missing_paths_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = valid_config(dir.path());
        c.source.local_path = dir.path().join("missing").to_string_lossy().into();
        let file = dir.path().join("a-file");
        std::fs::write(&file, b"x").unwrap();
        c.storage.local_dir = file.join("sub").to_string_lossy().into();
        let fields: Vec<String> = errors_of(&c).into_iter().map(|e| e.field).collect();
        assert!(
            fields.contains(&"source.local_path".to_string()),
            "{fields:?}"
        );
        assert!(
            fields.contains(&"storage.local_dir".to_string()),
            "{fields:?}"
        );
    }

    #[test]
    fn validation_creates_no_directory_even_when_it_fails() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = valid_config(dir.path());
        c.pas.enabled = true;
        assert_eq!(errors_of(&c), vec![]);
        c.era.partition_size = 0;
        assert!(!errors_of(&c).is_empty());
        for sub in ["out", "state", "pas-backup"] {
            assert!(!dir.path().join(sub).exists(), "{sub} was created");
        }
        let entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(entries.is_empty(), "{entries:?}");
        // A missing directory under a file cannot be created; said without creating anything.
        let file = dir.path().join("a-file");
        std::fs::write(&file, b"x").unwrap();
        c.checkpoint.dir = file.join("state").to_string_lossy().into();
        let errors = errors_of(&c);
        let e = errors.iter().find(|e| e.field == "checkpoint.dir").unwrap();
        assert!(e.message.contains("not a directory"), "{e}");
    }

    #[test]
    fn unknown_network_needs_a_passphrase() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = valid_config(dir.path());
        c.era.network = "standalone".into();
        assert!(errors_of(&c).iter().any(|e| e.field == "era.network"));
        c.era.network_passphrase = Some("Standalone Network ; February 2017".into());
        assert_eq!(errors_of(&c), vec![]);
    }

    #[test]
    fn bad_dsn_is_reported_without_its_password() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = valid_config(dir.path());
        c.catalog.postgres_dsn = "postgres://user:s3cret@host:notaport/db".into();
        let errors = errors_of(&c);
        let e = errors
            .iter()
            .find(|e| e.field == "catalog.postgres_dsn")
            .expect("dsn error");
        assert!(!e.to_string().contains("s3cret"), "{e}");
    }

    #[test]
    fn tls_settings_are_checked_offline_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = valid_config(dir.path());
        for ok in ["require", "verify-full&sslrootcert=/etc/ca.pem", "disable"] {
            c.catalog.postgres_dsn = format!("postgres://user:s3cret@db/x?sslmode={ok}");
            assert!(
                !errors_of(&c)
                    .iter()
                    .any(|e| e.field == "catalog.postgres_dsn"),
                "{ok}"
            );
        }
        for (bad, reason) in [
            ("sslmode=always", "invalid sslmode \"always\""),
            ("sslcert=/c.pem", "sslcert is not supported"),
        ] {
            c.catalog.postgres_dsn = format!("postgres://user:s3cret@db/x?{bad}");
            let errors = errors_of(&c);
            let e = errors
                .iter()
                .find(|e| e.field == "catalog.postgres_dsn")
                .expect("dsn error");
            assert!(e.message.contains(reason), "{e}");
            assert!(!e.to_string().contains("s3cret"), "{e}");
        }
    }

    #[test]
    fn path_segments_reject_separators() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = valid_config(dir.path());
        c.era.era_id = "../etc".into();
        assert!(errors_of(&c).iter().any(|e| e.field == "era.era_id"));
    }

    #[test]
    fn redact_dsn_hides_passwords_in_both_forms() {
        assert_eq!(
            redact_dsn("postgres://u:pw@h:5432/d"),
            "postgres://u:***@h:5432/d"
        );
        assert_eq!(
            redact_dsn("host=h password=pw user=u"),
            "host=h password=*** user=u"
        );
        assert_eq!(
            redact_dsn("postgres://u:p@ss@h:bad/d"),
            "postgres://u:***@h:bad/d"
        );
        assert_eq!(redact_dsn("postgres://h/d"), "postgres://h/d");
    }
}
