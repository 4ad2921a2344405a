//! What the catalog records, computed from the config and a committed partition (pure).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{Config, DatastoreType, PRIMARY_TABLE, SourceMode};
use crate::pipeline::CommitEvent;

/// The `_meta_datasets` key of this run's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetIdentity {
    pub domain: String,
    pub dataset: String,
    pub version: String,
    pub era_id: String,
    pub network: String,
}

impl DatasetIdentity {
    pub fn from_config(config: &Config) -> Self {
        Self {
            domain: "bronze".into(),
            dataset: PRIMARY_TABLE.into(),
            version: config.era.version_label.clone(),
            era_id: config.era.era_id.clone(),
            network: config.era.network.clone(),
        }
    }

    /// The original's description text.
    pub fn description(&self) -> String {
        format!("Raw {} data from Stellar network", self.dataset)
    }
}

impl std::fmt::Display for DatasetIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}.{} {}/{}/{}",
            self.domain, self.dataset, self.network, self.era_id, self.version
        )
    }
}

/// sha256 (64 hex digits, fitting `schema_hash VARCHAR(64)`) of a canonical text of the
/// `ledgers_lcm_raw` Arrow schema: one `name:type:nullable` line per column, in order. Any change
/// of a column's name, type, order or nullability changes it.
pub fn schema_hash() -> String {
    let schema = crate::parquet::ledgers_lcm_raw_schema();
    let mut canonical = String::new();
    for field in schema.fields() {
        canonical.push_str(&format!(
            "{}:{}:{}\n",
            field.name(),
            field.data_type(),
            if field.is_nullable() {
                "nullable"
            } else {
                "required"
            }
        ));
    }
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

/// One `_meta_lineage` row (and its `_meta_quality` row). `prev_hash` is not here: it is read from the catalog when the row is written,
/// so it is always the checksum of the partition recorded just before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineageRecord {
    pub ledger_start: u32,
    pub ledger_end: u32,
    pub row_count: u64,
    pub byte_size: u64,
    pub checksum: String,
    /// `<network>/<era>/<version>/ledgers_lcm_raw/range=S-E` (the original's, no prefix).
    pub storage_path: String,
    /// Full URI of the Parquet file, storage prefix included.
    pub storage_uri: String,
    /// Key of the Parquet file under the storage root, prefix included.
    pub parquet_path: String,
    /// `bronze-copier@<version>` of the producer named in the manifest.
    pub producer_version: String,
    pub producer_git_sha: Option<String>,
    pub source_type: String,
    pub source_location: String,
    /// Used as `prev_hash` when the catalog has no row for the previous partition (for example
    /// when the catalog was enabled part-way through a backfill).
    pub previous_checksum: Option<String>,
    pub quality: Option<QualityRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QualityRecord {
    pub passed: bool,
    pub error_message: Option<String>,
    pub details: serde_json::Value,
}

/// What the hook knows besides the event itself.
#[derive(Debug, Clone)]
pub struct RecordContext {
    pub source_type: String,
    pub source_location: String,
    pub storage_prefix: String,
    /// The partition published just before this one in this run: (last ledger, checksum).
    pub previous: Option<(u32, String)>,
}

/// The checks the builder runs on every ledger of a partition before it is committed
/// (`validate.rs`, `pipeline/build.rs`).
pub const BUILD_CHECKS: [&str; 7] = [
    "batch_bounds_and_counts",
    "every_ledger_present_in_order",
    "range_bounds",
    "header_hashes",
    "previous_ledger_hash_links",
    "tx_counts",
    "known_lcm_version",
];

impl LineageRecord {
    pub fn from_event(event: &CommitEvent, ctx: &RecordContext) -> Self {
        let m = &event.manifest;
        let table = m.primary();
        let range = event.range;
        let previous_checksum = ctx
            .previous
            .as_ref()
            .filter(|(end, _)| end.checked_add(1) == Some(range.start))
            .map(|(_, checksum)| checksum.clone());
        Self {
            ledger_start: range.start,
            ledger_end: range.end,
            row_count: table.map_or(0, |t| t.row_count),
            byte_size: table.map_or(0, |t| t.byte_size),
            checksum: table.map(|t| t.checksum.clone()).unwrap_or_default(),
            storage_path: event.storage_path.clone(),
            storage_uri: event.parquet_uri.clone(),
            parquet_path: format!(
                "{}{}/{}",
                ctx.storage_prefix,
                event.storage_path,
                table.map_or_else(
                    || crate::publish::DatasetLayout::parquet_file_name(range),
                    |t| t.file.clone()
                )
            ),
            producer_version: format!("{}@{}", m.producer.name, m.producer.version),
            producer_git_sha: Some(m.producer.git_sha.clone()).filter(|s| !s.is_empty()),
            source_type: ctx.source_type.clone(),
            source_location: ctx.source_location.clone(),
            quality: quality_for(event, previous_checksum.is_some()),
            previous_checksum,
        }
    }
}

/// The quality row of a partition, or `None` when no check is known to have run on it (a
/// partition adopted from storage that this implementation did not build: its manifest has no
/// chain hashes). `passed` is true only because the listed checks ran and passed.
fn quality_for(event: &CommitEvent, linked_in_this_run: bool) -> Option<QualityRecord> {
    let m = &event.manifest;
    let chain = m.chain.as_ref()?;
    let expected_rows = event.range.len();
    let rows = m.primary().map_or(0, |t| t.row_count);
    let mut checks: Vec<&str> = BUILD_CHECKS.to_vec();
    if m.network_passphrase.is_some() {
        checks.push("network_passphrase");
    }
    if linked_in_this_run {
        // The sequencer checks the link to the previous partition whenever it knows that
        // partition's last hash, which it always does when it published it itself.
        checks.push("link_to_previous_partition");
    }
    if let Some(anchor) = &m.archive {
        // The ledgers before `unanchored_from` were compared with the history archive.
        if anchor.unanchored_from != Some(event.range.start) {
            checks.push("history_archive");
        }
        if anchor.trusted_ledger.is_some() {
            checks.push("archive_trusted_ledger");
        }
    }
    checks.push("row_count_matches_range");
    let (passed, error_message) = if rows == expected_rows {
        (true, None)
    } else {
        (
            false,
            Some(format!(
                "manifest row_count {rows} but the range holds {expected_rows} ledgers"
            )),
        )
    };
    let mut details = serde_json::json!({
            "checks": checks,
            "validated_by": format!("{}@{}", m.producer.name, m.producer.version),
            "adopted_from_storage": event.adopted,
            "row_count": rows,
            "expected_rows": expected_rows,
            "previous_ledger_hash": chain.previous_ledger_hash,
            "first_ledger_hash": chain.first_ledger_hash,
            "last_ledger_hash": chain.last_ledger_hash,
            "network_passphrase": m.network_passphrase,
    });
    if let Some(anchor) = &m.archive {
        // The manifest's `archive` as it is (docs/formats.md): archives, files, trusted ledger.
        details["archive"] = serde_json::to_value(anchor).expect("plain data");
    }
    Some(QualityRecord {
        passed,
        error_message,
        details,
    })
}

/// The source as the original recorded it: `gs://bucket/prefix`, `s3://bucket/prefix`, the
/// local path, or the datastore path with its scheme.
pub fn source_location(config: &Config) -> String {
    let s = &config.source;
    let join = |scheme: &str, bucket: &str, prefix: &str| {
        let prefix = prefix.trim_matches('/');
        if prefix.is_empty() {
            format!("{scheme}://{bucket}")
        } else {
            format!("{scheme}://{bucket}/{prefix}")
        }
    };
    match s.mode {
        SourceMode::Gcs => join("gs", &s.gcs_bucket, &s.gcs_prefix),
        SourceMode::S3 => join("s3", &s.s3_bucket, &s.s3_prefix),
        SourceMode::Datastore => {
            let scheme = if s.datastore_type == Some(DatastoreType::S3) {
                "s3"
            } else {
                "gs"
            };
            format!("{scheme}://{}", s.datastore_path.trim_matches('/'))
        }
        SourceMode::Local => std::fs::canonicalize(&s.local_path)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| s.local_path.clone()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::partition::LedgerRange;
    use crate::publish::{ChainInfo, Manifest, ManifestPartition, ManifestTable, Producer};

    fn event(start: u32, end: u32, rows: u64, chain: bool, adopted: bool) -> CommitEvent {
        let range = LedgerRange::new(start, end);
        CommitEvent {
            range,
            manifest: Manifest {
                partition: ManifestPartition {
                    start,
                    end,
                    era_id: "pre_p23".into(),
                    version: "v1".into(),
                    network: "testnet".into(),
                },
                tables: BTreeMap::from([(
                    PRIMARY_TABLE.to_string(),
                    ManifestTable {
                        file: format!("part-{start}-{end}.parquet"),
                        checksum: "sha256:ab".into(),
                        row_count: rows,
                        byte_size: 99,
                    },
                )]),
                producer: Producer {
                    name: "bronze-copier".into(),
                    version: "0.1.0".into(),
                    git_sha: String::new(),
                },
                created_at: "2025-01-01T00:00:00Z".into(),
                chain: chain.then(|| ChainInfo {
                    previous_ledger_hash: "00".into(),
                    first_ledger_hash: "01".into(),
                    last_ledger_hash: "02".into(),
                }),
                ingested_at: None,
                network_passphrase: Some("Test SDF Network ; September 2015".into()),
                writer: None,
                archive: None,
                manifest_sha256: None,
            },
            storage_path: format!("testnet/pre_p23/v1/ledgers_lcm_raw/range={start}-{end}"),
            parquet_uri: format!(
                "file:///out/bronze/testnet/pre_p23/v1/ledgers_lcm_raw/range={start}-{end}/part-{start}-{end}.parquet"
            ),
            adopted,
            overwrite: false,
            replaced: None,
        }
    }

    fn ctx(previous: Option<(u32, &str)>) -> RecordContext {
        RecordContext {
            source_type: "local".into(),
            source_location: "/data/ledgers".into(),
            storage_prefix: "bronze/".into(),
            previous: previous.map(|(e, c)| (e, c.to_string())),
        }
    }

    #[test]
    fn lineage_row_has_the_full_uri_and_the_prefixed_parquet_path() {
        let r = LineageRecord::from_event(&event(2, 11, 10, true, false), &ctx(None));
        assert!(
            r.storage_uri.contains("/bronze/testnet/"),
            "{}",
            r.storage_uri
        );
        assert_eq!(
            r.parquet_path,
            "bronze/testnet/pre_p23/v1/ledgers_lcm_raw/range=2-11/part-2-11.parquet"
        );
        assert_eq!(
            r.storage_path,
            "testnet/pre_p23/v1/ledgers_lcm_raw/range=2-11"
        );
        assert_eq!(r.producer_version, "bronze-copier@0.1.0");
        assert_eq!(r.producer_git_sha, None);
        assert_eq!((r.row_count, r.byte_size), (10, 99));
    }

    #[test]
    fn previous_checksum_only_from_the_adjacent_partition() {
        let e = event(12, 21, 10, true, false);
        assert_eq!(
            LineageRecord::from_event(&e, &ctx(Some((11, "sha256:p"))))
                .previous_checksum
                .as_deref(),
            Some("sha256:p")
        );
        assert_eq!(
            LineageRecord::from_event(&e, &ctx(Some((9, "sha256:p")))).previous_checksum,
            None
        );
    }

    #[test]
    fn quality_lists_the_checks_that_ran() {
        let q = LineageRecord::from_event(&event(12, 21, 10, true, false), &ctx(Some((11, "x"))))
            .quality
            .unwrap();
        assert!(q.passed);
        let checks: Vec<String> = serde_json::from_value(q.details["checks"].clone()).unwrap();
        for c in BUILD_CHECKS {
            assert!(checks.iter().any(|x| x == c), "{c} in {checks:?}");
        }
        assert!(checks.iter().any(|x| x == "network_passphrase"));
        assert!(checks.iter().any(|x| x == "link_to_previous_partition"));
        // Without the previous partition in this run, its link is not claimed.
        let q = LineageRecord::from_event(&event(12, 21, 10, true, false), &ctx(None))
            .quality
            .unwrap();
        assert!(!q.details["checks"].to_string().contains("link_to_previous"));
    }

    #[test]
    fn the_archive_anchor_is_recorded_with_the_checks() {
        use crate::archive::{AnchorFile, ArchiveAnchor, TrustedAnchor};
        let mut e = event(12, 21, 10, true, false);
        let details = |e: &CommitEvent| {
            LineageRecord::from_event(e, &ctx(None))
                .quality
                .unwrap()
                .details
        };
        assert!(details(&e).get("archive").is_none(), "no archive, no key");
        e.manifest.archive = Some(ArchiveAnchor {
            archives: vec!["https://history.example/core".into()],
            files: vec![AnchorFile {
                path: "ledger/00/00/00/ledger-0000003f.xdr.gz".into(),
                sha256: "sha256:cd".into(),
            }],
            unanchored_from: None,
            trusted_ledger: Some(TrustedAnchor {
                sequence: 63,
                hash: "ef".repeat(32),
            }),
        });
        let d = details(&e);
        assert_eq!(d["archive"]["archives"][0], "https://history.example/core");
        assert_eq!(d["archive"]["files"][0]["sha256"], "sha256:cd");
        assert_eq!(d["archive"]["trusted_ledger"]["sequence"], 63);
        let checks = d["checks"].to_string();
        assert!(
            checks.contains("\"history_archive\"") && checks.contains("archive_trusted_ledger"),
            "{checks}"
        );
        // Wholly unanchored: recorded, but no archive check claimed.
        let anchor = e.manifest.archive.as_mut().unwrap();
        anchor.unanchored_from = Some(12);
        anchor.trusted_ledger = None;
        anchor.files.clear();
        let d = details(&e);
        assert_eq!(d["archive"]["unanchored_from"], 12);
        assert!(!d["checks"].to_string().contains("archive"), "{d}");
    }

    #[test]
    fn a_short_partition_fails_quality_and_an_unknown_one_has_none() {
        let q = LineageRecord::from_event(&event(2, 11, 9, true, false), &ctx(None))
            .quality
            .unwrap();
        assert!(!q.passed);
        assert!(q.error_message.unwrap().contains("row_count 9"));
        // Adopted from a producer that recorded no chain hashes: nothing is known to have run.
        let r = LineageRecord::from_event(&event(2, 11, 10, false, true), &ctx(None));
        assert!(r.quality.is_none());
    }

    #[test]
    fn schema_hash_is_stable_and_fits_the_column() {
        let h = schema_hash();
        assert_eq!(h.len(), 64);
        assert_eq!(h, schema_hash());
        assert!(h.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn source_locations_like_the_original() {
        let mut c = Config::default();
        c.source.mode = SourceMode::Gcs;
        c.source.gcs_bucket = "b".into();
        c.source.gcs_prefix = "ledgers/".into();
        assert_eq!(source_location(&c), "gs://b/ledgers");
        c.source.mode = SourceMode::Datastore;
        c.source.datastore_type = Some(DatastoreType::S3);
        c.source.datastore_path = "bucket/x".into();
        assert_eq!(source_location(&c), "s3://bucket/x");
    }
}
