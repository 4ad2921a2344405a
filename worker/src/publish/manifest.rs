//! `_manifest.json`: the commit marker of a partition (docs/formats.md#_manifestjson),
//! with added fields for the hash chain, the backfill's fixed `ingested_at` and a self-checksum.
//! Readers of the original format ignore the additions; manifests written by the original load
//! here too.
//!
//! Self-checksum: `manifest_sha256` is `sha256:<hex>` of the file's exact bytes with that field's
//! value replaced by `""`. Every byte of the file is covered (a flipped byte in `created_at`
//! changes nothing else, yet is caught), and checking it needs no re-serialisation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::PRIMARY_TABLE;
use crate::hash::checksum_string;
use crate::partition::LedgerRange;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub partition: ManifestPartition,
    pub tables: BTreeMap<String, ManifestTable>,
    pub producer: Producer,
    pub created_at: String,
    /// Hashes at the partition's edges, so links across partitions can be checked without
    /// reading Parquet. Absent in manifests of the original implementation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<ChainInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingested_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_passphrase: Option<String>,
    /// The Parquet writer settings the file was written with (absent in manifests of the
    /// original and of older versions), so a rerun with other settings can say what differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writer: Option<WriterInfo>,
    /// The history-archive files the partition's ledgers were checked against (`archive.url`);
    /// absent when no archive was configured, and in older manifests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<crate::archive::ArchiveAnchor>,
    /// Self-checksum as read from a file (see the module docs). [`Manifest::to_json`] always
    /// writes a fresh one, whatever this holds. Absent in manifests of the original.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_sha256: Option<String>,
}

const SEAL_FIELD: &str = "\"manifest_sha256\": \"";

/// What the self-checksum of a manifest file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealCheck {
    /// The file has no `manifest_sha256` (written by the original).
    Absent,
    Valid,
    Mismatch {
        recorded: String,
        computed: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestPartition {
    pub start: u32,
    pub end: u32,
    pub era_id: String,
    /// The version label (named `version` in the original format).
    pub version: String,
    pub network: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestTable {
    pub file: String,
    /// `sha256:<hex>` of the whole Parquet file.
    pub checksum: String,
    pub row_count: u64,
    pub byte_size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Producer {
    pub name: String,
    pub version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub git_sha: String,
}

impl Producer {
    pub fn current() -> Self {
        Self {
            name: "bronze-copier".into(),
            version: crate::VERSION.into(),
            git_sha: crate::GIT_SHA.into(),
        }
    }
}

/// `storage.compression`, `storage.compression_level` and `storage.row_group_bytes` of the run
/// that wrote a partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriterInfo {
    pub compression: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression_level: Option<i32>,
    pub row_group_bytes: u64,
}

/// The settings that decide a partition's bytes, as this run would write it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionSettings {
    pub ingested_at: String,
    pub writer: WriterInfo,
}

/// What differs between how a committed partition was written (its manifest) and how this run
/// would write it (pure): one `name: committed X, configured Y` entry per differing setting.
/// Settings the manifest does not record (older manifests) are not compared.
pub fn settings_differences(manifest: &Manifest, current: &PartitionSettings) -> Vec<String> {
    let mut out = Vec::new();
    let mut differ = |name: &str, committed: String, configured: String| {
        if committed != configured {
            out.push(format!(
                "{name}: committed {committed}, configured {configured}"
            ));
        }
    };
    if let Some(committed) = &manifest.ingested_at {
        let norm = |t: &str| {
            crate::time::rfc3339_to_millis(t).map_or(t.to_string(), crate::time::millis_to_rfc3339)
        };
        differ("ingested_at", norm(committed), norm(&current.ingested_at));
    }
    if let Some(w) = &manifest.writer {
        let c = &current.writer;
        // Compared by codec: a manifest records the spelling its run was configured with.
        let codec = |t: &str| {
            t.parse::<crate::config::Compression>()
                .map_or(t.to_string(), |c| c.to_string())
        };
        differ("compression", codec(&w.compression), codec(&c.compression));
        let level = |l: Option<i32>| l.map_or("default".to_string(), |l| l.to_string());
        differ(
            "compression_level",
            level(w.compression_level),
            level(c.compression_level),
        );
        differ(
            "row_group_bytes",
            w.row_group_bytes.to_string(),
            c.row_group_bytes.to_string(),
        );
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainInfo {
    /// Hash of the ledger before the partition's first (its `previous_ledger_hash`).
    pub previous_ledger_hash: String,
    pub first_ledger_hash: String,
    pub last_ledger_hash: String,
}

impl Manifest {
    pub fn range(&self) -> LedgerRange {
        LedgerRange::new(self.partition.start, self.partition.end)
    }

    /// The `ledgers_lcm_raw` entry.
    pub fn primary(&self) -> Option<&ManifestTable> {
        self.tables.get(PRIMARY_TABLE)
    }

    /// Pretty JSON, 2-space indented like the original, sealed with `manifest_sha256`.
    pub fn to_json(&self) -> Vec<u8> {
        let mut unsealed = self.clone();
        unsealed.manifest_sha256 = Some(String::new());
        let mut out = serde_json::to_vec_pretty(&unsealed).expect("manifest serializes");
        out.push(b'\n');
        let seal = checksum_string(&Sha256::digest(&out).into());
        let at = seal_value_at(&out).expect("the seal field was just written");
        out.splice(at..at, seal.into_bytes());
        out
    }

    /// Checks the self-checksum of a manifest file's bytes.
    pub fn check_seal(bytes: &[u8]) -> SealCheck {
        let Some(at) = seal_value_at(bytes) else {
            return SealCheck::Absent;
        };
        let len = bytes[at..]
            .iter()
            .position(|&b| b == b'"')
            .unwrap_or(bytes.len() - at);
        let recorded = String::from_utf8_lossy(&bytes[at..at + len]).into_owned();
        let mut unsealed = Vec::with_capacity(bytes.len());
        unsealed.extend_from_slice(&bytes[..at]);
        unsealed.extend_from_slice(&bytes[at + len..]);
        let computed = checksum_string(&Sha256::digest(&unsealed).into());
        if computed == recorded {
            SealCheck::Valid
        } else {
            SealCheck::Mismatch { recorded, computed }
        }
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// Where the value of the `manifest_sha256` member starts. Inside a JSON string every `"` is
/// escaped, so the unescaped `": "` of the pattern can only match the real member.
fn seal_value_at(bytes: &[u8]) -> Option<usize> {
    let pattern = SEAL_FIELD.as_bytes();
    bytes
        .windows(pattern.len())
        .rposition(|w| w == pattern)
        .map(|i| i + pattern.len())
}

#[cfg(test)]
mod tests {

    #[test]
    fn settings_differences_name_each_differing_setting() {
        use super::{PartitionSettings, WriterInfo, settings_differences};
        let writer = WriterInfo {
            compression: "zstd".into(),
            compression_level: None,
            row_group_bytes: 64,
        };
        let mut m = sample_for_settings();
        m.ingested_at = Some("2025-01-15T10:00:00Z".into());
        m.writer = Some(writer.clone());
        let same = PartitionSettings {
            ingested_at: "2025-01-15T10:00:00.000Z".into(),
            writer: writer.clone(),
        };
        assert!(
            settings_differences(&m, &same).is_empty(),
            "same instant, other spelling"
        );
        let other = PartitionSettings {
            ingested_at: "2020-01-01T00:00:00Z".into(),
            writer: WriterInfo {
                compression: "snappy".into(),
                compression_level: Some(3),
                row_group_bytes: 64,
            },
        };
        assert_eq!(
            settings_differences(&m, &other),
            vec![
                "ingested_at: committed 2025-01-15T10:00:00.000Z, configured 2020-01-01T00:00:00.000Z",
                "compression: committed zstd, configured snappy",
                "compression_level: committed default, configured 3",
            ]
        );
        // An older manifest records only ingested_at: only that is compared.
        m.writer = None;
        assert_eq!(settings_differences(&m, &other).len(), 1);
    }

    fn sample_for_settings() -> super::Manifest {
        super::Manifest::from_json(
            br#"{"partition":{"start":2,"end":11,"era_id":"e","version":"v1","network":"testnet"},
                "tables":{},"producer":{"name":"bronze-copier","version":"0"},"created_at":"x"}"#,
        )
        .unwrap()
    }

    use super::*;

    const ORIGINAL: &str = r#"{
  "partition": {"start": 2, "end": 1001, "era_id": "pre_p23", "version": "v1", "network": "testnet"},
  "tables": {"ledgers_lcm_raw": {"file": "part-2-1001.parquet", "checksum": "sha256:ab", "row_count": 1000, "byte_size": 5}},
  "producer": {"name": "bronze-copier", "version": "v0.1.0"},
  "created_at": "2025-11-23T10:00:00.123456789Z"
}"#;

    #[test]
    fn original_manifest_format_loads() {
        let text = r#"{
  "partition": {"start": 2, "end": 1001, "era_id": "pre_p23", "version": "v1", "network": "testnet"},
  "tables": {"ledgers_lcm_raw": {"file": "part-2-1001.parquet", "checksum": "sha256:ab", "row_count": 1000, "byte_size": 5}},
  "producer": {"name": "bronze-copier", "version": "v0.1.0"},
  "created_at": "2025-11-23T10:00:00.123456789Z"
}"#;
        let m = Manifest::from_json(text.as_bytes()).unwrap();
        assert_eq!(m.range(), LedgerRange::new(2, 1001));
        assert_eq!(m.primary().unwrap().row_count, 1000);
        assert!(m.chain.is_none());
    }

    #[test]
    fn keys_keep_the_original_order_and_round_trip() {
        let m = Manifest {
            partition: ManifestPartition {
                start: 2,
                end: 3,
                era_id: "e".into(),
                version: "v1".into(),
                network: "testnet".into(),
            },
            tables: BTreeMap::from([(
                PRIMARY_TABLE.to_string(),
                ManifestTable {
                    file: "part-2-3.parquet".into(),
                    checksum: checksum_string(&[0; 32]),
                    row_count: 2,
                    byte_size: 9,
                },
            )]),
            producer: Producer::current(),
            created_at: "2025-01-01T00:00:00Z".into(),
            chain: Some(ChainInfo {
                previous_ledger_hash: "00".into(),
                first_ledger_hash: "01".into(),
                last_ledger_hash: "02".into(),
            }),
            ingested_at: None,
            network_passphrase: None,
            writer: None,
            archive: None,
            manifest_sha256: None,
        };
        let json = String::from_utf8(m.to_json()).unwrap();
        let order: Vec<usize> = [
            "\"partition\"",
            "\"tables\"",
            "\"producer\"",
            "\"created_at\"",
        ]
        .iter()
        .map(|k| json.find(k).unwrap())
        .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{json}");
        assert!(json.contains("  \"partition\""), "two-space indent: {json}");
        let read = Manifest::from_json(json.as_bytes()).unwrap();
        assert!(
            read.manifest_sha256
                .as_deref()
                .unwrap()
                .starts_with("sha256:")
        );
        assert_eq!(
            Manifest {
                writer: None,
                archive: None,
                manifest_sha256: None,
                ..read.clone()
            },
            m
        );
        // Writing what was read gives the same bytes.
        assert_eq!(read.to_json(), json.as_bytes());
    }

    #[test]
    fn the_seal_catches_any_changed_byte_and_originals_have_none() {
        let mut m = Manifest::from_json(ORIGINAL.as_bytes()).unwrap();
        assert_eq!(Manifest::check_seal(ORIGINAL.as_bytes()), SealCheck::Absent);
        m.network_passphrase = Some("Test SDF Network ; September 2015".into());
        let bytes = m.to_json();
        assert_eq!(Manifest::check_seal(&bytes), SealCheck::Valid);
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x01;
            let caught = match Manifest::check_seal(&damaged) {
                SealCheck::Valid => false,
                SealCheck::Mismatch { .. } => true,
                // The flip broke the seal's own key: the file no longer parses as ours, or the
                // verifier sees a manifest that lost its seal next to its chain fields.
                SealCheck::Absent => true,
            };
            assert!(
                caught,
                "flip at byte {i} ({:?}) not caught",
                bytes[i] as char
            );
        }
    }
}
