//! Configuration: the runbook's YAML keys, environment overrides and offline validation.
//!
//! Every key of the original runbook is accepted. Keys that mean nothing any more (`eras`,
//! `active_eras`, `catalog.namespace`) are accepted and reported as ignored, so existing config
//! files keep loading. Defaults are the same whether the config comes from a file or from the
//! environment (the original disagreed between the two).

mod choice;
mod env;
mod load;
mod validate;

pub use choice::{
    Choice, Compression, DatastoreType, LogFormat, LogLevel, PasOutbox, Rejected, SourceMode,
    StorageBackend, TableFormat, UnknownChoice,
};
pub use env::{ENV_VARS, EnvOverrides, env_var};
pub use load::{ConfigError, LoadedConfig, load_config};
pub use validate::{FieldError, redact_dsn, validate};

use serde::{Deserialize, Serialize};

/// The only table Bronze produces.
pub const PRIMARY_TABLE: &str = "ledgers_lcm_raw";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Config {
    pub copier_id: String,
    pub era: EraConfig,
    /// Parsed for compatibility with old config files; multi-era routing is not supported.
    pub eras: Option<serde_yaml_ng::Value>,
    /// Parsed for compatibility with old config files; multi-era routing is not supported.
    pub active_eras: Option<serde_yaml_ng::Value>,
    pub source: SourceConfig,
    pub storage: StorageConfig,
    pub catalog: CatalogConfig,
    pub pas: PasConfig,
    pub checkpoint: CheckpointConfig,
    pub perf: PerfConfig,
    pub logging: LoggingConfig,
    pub metrics: MetricsConfig,
    pub bronze: BronzeConfig,
    /// History archives every ledger is checked against (off by default).
    pub archive: ArchiveConfig,
    /// Closed-set values (file or environment) that named no choice, kept as written for
    /// [`validate`], which reports each of them: a config with any never runs.
    #[serde(skip)]
    pub rejected: Rejected,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            copier_id: "bronze-copier-001".into(),
            era: EraConfig::default(),
            eras: None,
            active_eras: None,
            source: SourceConfig::default(),
            storage: StorageConfig::default(),
            catalog: CatalogConfig::default(),
            pas: PasConfig::default(),
            checkpoint: CheckpointConfig::default(),
            perf: PerfConfig::default(),
            logging: LoggingConfig::default(),
            metrics: MetricsConfig::default(),
            bronze: BronzeConfig::default(),
            archive: ArchiveConfig::default(),
            rejected: Rejected::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct EraConfig {
    pub era_id: String,
    pub version_label: String,
    pub network: String,
    /// Passphrase for networks other than pubnet, testnet and futurenet.
    pub network_passphrase: Option<String>,
    pub ledger_start: u32,
    /// 0 follows the datastore's tip.
    pub ledger_end: u32,
    pub partition_size: u32,
    pub allow_overwrite: bool,
    /// Fixes the `ingested_at` column for this backfill (RFC 3339). When absent it is taken from
    /// the checkpoint, else from the clock at the first run, and then recorded in the checkpoint.
    pub ingested_at: Option<String>,
}

impl Default for EraConfig {
    fn default() -> Self {
        Self {
            era_id: "pre_p23".into(),
            version_label: "v1".into(),
            network: "pubnet".into(),
            network_passphrase: None,
            ledger_start: 1,
            ledger_end: 0,
            partition_size: 10_000,
            allow_overwrite: false,
            ingested_at: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct SourceConfig {
    pub mode: SourceMode,
    pub local_path: String,
    pub gcs_bucket: String,
    pub gcs_prefix: String,
    pub s3_bucket: String,
    pub s3_prefix: String,
    pub s3_endpoint: String,
    pub s3_region: String,
    /// Mode `datastore`; empty in the file means unset.
    #[serde(with = "choice::optional_datastore_type")]
    pub datastore_type: Option<DatastoreType>,
    /// `bucket/prefix`, no scheme (mode `datastore`).
    pub datastore_path: String,
    /// How long to wait between polls for the next object when following the tip.
    pub poll_interval_ms: u64,
    /// Used only when the datastore has no `.config.json`.
    pub ledgers_per_batch: Option<u32>,
    /// Used only when the datastore has no `.config.json`.
    pub batches_per_partition: Option<u32>,
}

impl Default for SourceConfig {
    fn default() -> Self {
        Self {
            mode: SourceMode::Local,
            local_path: String::new(),
            gcs_bucket: String::new(),
            gcs_prefix: String::new(),
            s3_bucket: String::new(),
            s3_prefix: String::new(),
            s3_endpoint: String::new(),
            s3_region: String::new(),
            datastore_type: None,
            datastore_path: String::new(),
            poll_interval_ms: 2_000,
            ledgers_per_batch: None,
            batches_per_partition: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct StorageConfig {
    pub backend: StorageBackend,
    pub local_dir: String,
    pub gcs_bucket: String,
    pub s3_bucket: String,
    pub s3_endpoint: String,
    pub s3_region: String,
    /// Key prefix inside the bucket or directory; a missing trailing `/` is added.
    pub prefix: String,
    pub compression: Compression,
    /// Codec level for `zstd` (1-22) and `gzip` (0-9); absent means the codec's default.
    pub compression_level: Option<i32>,
    /// Row groups are closed when their encoded size reaches this many bytes.
    pub row_group_bytes: usize,
    /// Size of each part of a multipart upload (cloud backends).
    pub upload_part_bytes: usize,
    /// `none` (default) or `delta`: the dataset folder is also a Delta Lake table.
    pub table_format: TableFormat,
    /// With `delta` while following the tip: the open partition's ledgers are published as
    /// provisional files as they land (docs/tip.md). On by default.
    pub provisional_tip: bool,
    /// Removed provisional files are deleted from storage after this many hours.
    pub provisional_retention_hours: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            backend: StorageBackend::Local,
            local_dir: String::new(),
            gcs_bucket: String::new(),
            s3_bucket: String::new(),
            s3_endpoint: String::new(),
            s3_region: String::new(),
            prefix: "bronze/".into(),
            compression: Compression::Zstd,
            compression_level: None,
            row_group_bytes: 64 * 1024 * 1024,
            upload_part_bytes: 16 * 1024 * 1024,
            table_format: TableFormat::None,
            provisional_tip: true,
            provisional_retention_hours: crate::delta::hook::DEFAULT_TIP_RETENTION_HOURS,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct CatalogConfig {
    pub postgres_dsn: String,
    /// Accepted for compatibility; unused.
    pub namespace: Option<String>,
    pub strict: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct PasConfig {
    pub enabled: bool,
    pub endpoint: String,
    pub backup_dir: String,
    pub strict: bool,
    /// Name of the environment variable holding a bearer token for the endpoint.
    pub token_env: String,
    pub timeout_ms: u64,
    /// Where events are kept before delivery.
    pub outbox: PasOutbox,
}

/// `pas.outbox`: events in `pas.backup_dir`.
pub const PAS_OUTBOX_FILE: PasOutbox = PasOutbox::File;
/// `pas.outbox`: events next to the data, in the output storage.
pub const PAS_OUTBOX_STORAGE: PasOutbox = PasOutbox::Storage;

impl Default for PasConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            endpoint: String::new(),
            backup_dir: "./pas-backup".into(),
            strict: false,
            token_env: "PAS_TOKEN".into(),
            timeout_ms: 30_000,
            outbox: PasOutbox::File,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct CheckpointConfig {
    /// On by default: resuming is what the runbook promises.
    pub enabled: bool,
    pub dir: String,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            dir: "./state".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct PerfConfig {
    /// Partitions built concurrently.
    pub max_in_flight_partitions: usize,
    /// Datastore objects downloaded concurrently (fetched ahead) for each partition, at most:
    /// high by default because a cloud GET costs tens of milliseconds and the public datastore
    /// holds one ledger per object; the bytes held are bounded by the source's fetch budget.
    pub workers: usize,
    /// Downloaded objects buffered ahead of the encoder, per partition; 0 means 2 × workers.
    pub queue_size: usize,
    /// Attempts for a transient failure (a request, or a whole partition build).
    pub retry_attempts: u32,
    pub retry_backoff_ms: u64,
}

impl Default for PerfConfig {
    fn default() -> Self {
        Self {
            max_in_flight_partitions: 4,
            workers: 256,
            queue_size: 0,
            retry_attempts: 3,
            retry_backoff_ms: 1_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct LoggingConfig {
    pub format: LogFormat,
    pub level: LogLevel,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: LogLevel::Info,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct MetricsConfig {
    pub enabled: bool,
    pub address: String,
    /// The window of the `ledgers_per_second` gauge: ledgers copied in the last this many
    /// seconds, per second (so it falls to 0 when nothing is copied).
    pub rate_window_seconds: u64,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            address: ":9090".into(),
            rate_window_seconds: 60,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct BronzeConfig {
    pub primary_table: String,
}

impl Default for BronzeConfig {
    fn default() -> Self {
        Self {
            primary_table: PRIMARY_TABLE.into(),
        }
    }
}

/// `archive:`: the Stellar history archives each ledger is compared with before its partition
/// is committed (worker/src/archive/). Off while no URL is set.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ArchiveConfig {
    /// `https://`, `http://`, `s3://bucket/prefix`, `gs://bucket/prefix`, `file://` or a path.
    pub url: String,
    /// More archives: a ledger passes when those reachable agree and at least one has it.
    pub urls: Vec<String>,
    /// A bounded run may commit ledgers beyond the archive's newest checkpoint unchecked
    /// (recorded as unanchored in the manifest) instead of stopping.
    pub allow_unanchored: bool,
    /// For `s3://` archives; the source's `s3_endpoint` / `s3_region` when empty.
    pub s3_endpoint: String,
    pub s3_region: String,
    /// A ledger whose hash the user trusts: the archive's header for it must hash to it and
    /// every checked ledger must hash-link to it through the archive's headers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trusted_ledger: Option<TrustedLedgerConfig>,
}

/// `archive.trusted_ledger: {sequence, hash}` (the hash as 64 hex digits).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct TrustedLedgerConfig {
    pub sequence: u32,
    pub hash: String,
}

impl TrustedLedgerConfig {
    /// The trusted ledger, or why the values are not one.
    pub fn parse(&self) -> Result<crate::archive::TrustedLedger, String> {
        crate::archive::TrustedLedger::parse(self.sequence, &self.hash)
    }
}

impl ArchiveConfig {
    /// `url` then `urls`, each once, blanks left out.
    pub fn all_urls(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for url in std::iter::once(&self.url).chain(&self.urls) {
            let url = url.trim();
            if !url.is_empty() && !out.iter().any(|u| u == url) {
                out.push(url.to_string());
            }
        }
        out
    }
}

impl Config {
    /// `storage.prefix` with exactly one trailing `/` (or empty).
    pub fn storage_prefix(&self) -> String {
        normalize_prefix(&self.storage.prefix)
    }

    /// Whether the run follows the datastore's tip instead of stopping at `ledger_end`.
    pub fn follows_tip(&self) -> bool {
        self.era.ledger_end == 0
    }

    /// Whether the run publishes a provisional tip (docs/tip.md): following, into a Delta
    /// table, not turned off.
    pub fn publishes_tip(&self) -> bool {
        self.follows_tip()
            && self.storage.table_format == TableFormat::Delta
            && self.storage.provisional_tip
    }
}

/// Trims slashes and re-adds one trailing `/`, so `bronze` and `bronze/` mean the same.
pub fn normalize_prefix(prefix: &str) -> String {
    let trimmed = prefix.trim_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("{trimmed}/")
    }
}
