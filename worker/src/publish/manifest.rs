//! `_manifest.json`: the commit marker of a partition (section 4.3 of the original's behaviour),
//! with added fields for the hash chain and the backfill's fixed `ingested_at`. Readers of the
//! original format ignore the additions; manifests written by the original load here too.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::PRIMARY_TABLE;
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

    /// Pretty JSON, 2-space indented like the original.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("manifest serializes");
        out.push(b'\n');
        out
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// `sha256:<hex>`, the checksum format of manifests, PAS events and the catalog.
pub fn checksum_string(sha256: &[u8; 32]) -> String {
    format!("sha256:{}", hex::encode(sha256))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(Manifest::from_json(json.as_bytes()).unwrap(), m);
    }
}
