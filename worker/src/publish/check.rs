//! The one check of a committed partition's manifest (pure): what it says against what the
//! reader expects. It lists every finding; each caller decides which of them refuse the partition
//! and how (the operator's sequencer: a fault; the standalone sequencer: a [`SequenceError`];
//! `verify`: report findings).
//!
//! [`SequenceError`]: crate::pipeline::sequencer::SequenceError

use super::layout::DatasetLayout;
use super::manifest::{Manifest, SealCheck};
use crate::hash::{is_hex_hash, same_hash};
use crate::partition::LedgerRange;

/// What a manifest must say. `None` fields are not checked.
#[derive(Clone, Copy, Debug)]
pub struct Expect<'a> {
    /// The folder (or planned range) the manifest was read for.
    pub range: LedgerRange,
    pub network: &'a str,
    pub era_id: &'a str,
    pub version_label: &'a str,
    /// What the manifest file's bytes said about its `manifest_sha256`.
    pub seal: Option<&'a SealCheck>,
    /// The Parquet file's size in storage.
    pub parquet_size: Option<u64>,
    /// Hash (hex) of the ledger before the partition.
    pub prior_hash: Option<&'a str>,
    /// The run's (or backfill's) `ingested_at`, compared to the millisecond.
    pub ingested_at: Option<&'a str>,
}

/// One way a manifest disagrees with what was expected. `Display` is the message the operator
/// records in its fault; other callers word them for their own readers.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Finding {
    #[error("manifest has no manifest_sha256 self-checksum (worker Jobs always write one)")]
    SealAbsent,
    #[error(
        "manifest_sha256 is {recorded} but the file hashes to {computed}: the manifest was changed after it was written"
    )]
    SealMismatch { recorded: String, computed: String },
    #[error("manifest describes {found} instead of {expected}")]
    Range {
        found: LedgerRange,
        expected: LedgerRange,
    },
    #[error("manifest belongs to {found}, not {expected}")]
    Dataset { found: String, expected: String },
    #[error("manifest has no ledgers_lcm_raw table")]
    NoPrimaryTable,
    #[error("the table's file is {found}, not {expected}")]
    FileName { found: String, expected: String },
    #[error("checksum {found:?} is not sha256:<64 hex>")]
    ChecksumFormat { found: String },
    #[error("{rows} rows for {ledgers} ledgers")]
    RowCount { rows: u64, ledgers: u64 },
    #[error("Parquet file {file} is {found} bytes, the manifest says {recorded}")]
    ParquetSize {
        file: String,
        found: u64,
        recorded: u64,
    },
    #[error("manifest has no chain hashes")]
    NoChain,
    #[error("chain hashes are not 64 hex digits")]
    ChainHashFormat,
    #[error(
        "ledger {ledger} links to previous hash {found} but ledger {prior} has hash {expected}"
    )]
    Link {
        ledger: u32,
        prior: u32,
        found: String,
        expected: String,
    },
    #[error("ingested_at is {found:?}, the backfill's is {expected:?}")]
    IngestedAt {
        found: Option<String>,
        expected: String,
    },
}

impl Manifest {
    /// Every finding, in a fixed order (seal, range, dataset, table, chain, ingested_at), so a
    /// caller that stops at the first one always names the same.
    pub fn check(&self, expect: &Expect) -> Vec<Finding> {
        let mut out = Vec::new();
        match expect.seal {
            Some(SealCheck::Absent) => out.push(Finding::SealAbsent),
            Some(SealCheck::Mismatch { recorded, computed }) => out.push(Finding::SealMismatch {
                recorded: recorded.clone(),
                computed: computed.clone(),
            }),
            Some(SealCheck::Valid) | None => {}
        }
        let range = expect.range;
        if self.range() != range {
            out.push(Finding::Range {
                found: self.range(),
                expected: range,
            });
        }
        let p = &self.partition;
        let found = format!("{}/{}/{}", p.network, p.era_id, p.version);
        let expected = format!(
            "{}/{}/{}",
            expect.network, expect.era_id, expect.version_label
        );
        if found != expected {
            out.push(Finding::Dataset { found, expected });
        }
        match self.primary() {
            None => out.push(Finding::NoPrimaryTable),
            Some(table) => {
                // `part-S-E.parquet`, or a replacement's name in a Delta table (the tag is
                // its own checksum's).
                let named = table.file == DatasetLayout::parquet_file_name(range)
                    || table.file == DatasetLayout::replacement_file_name(range, &table.checksum);
                if !named {
                    out.push(Finding::FileName {
                        found: table.file.clone(),
                        expected: DatasetLayout::parquet_file_name(range),
                    });
                }
                if !is_hex_hash(table.checksum.strip_prefix("sha256:").unwrap_or("")) {
                    out.push(Finding::ChecksumFormat {
                        found: table.checksum.clone(),
                    });
                }
                if table.row_count != range.len() {
                    out.push(Finding::RowCount {
                        rows: table.row_count,
                        ledgers: range.len(),
                    });
                }
                if let Some(size) = expect.parquet_size
                    && size != table.byte_size
                {
                    out.push(Finding::ParquetSize {
                        file: table.file.clone(),
                        found: size,
                        recorded: table.byte_size,
                    });
                }
            }
        }
        match &self.chain {
            None => out.push(Finding::NoChain),
            Some(chain) => {
                if !is_hex_hash(&chain.last_ledger_hash)
                    || !is_hex_hash(&chain.previous_ledger_hash)
                {
                    out.push(Finding::ChainHashFormat);
                }
                if let Some(prior) = expect.prior_hash
                    && !same_hash(&chain.previous_ledger_hash, prior)
                {
                    out.push(Finding::Link {
                        ledger: range.start,
                        prior: range.start.saturating_sub(1),
                        found: chain.previous_ledger_hash.clone(),
                        expected: prior.to_string(),
                    });
                }
            }
        }
        if let Some(want) = expect.ingested_at {
            let millis = crate::time::rfc3339_to_millis;
            let found = self.ingested_at.as_deref();
            let same = found
                .and_then(millis)
                .is_some_and(|f| Some(f) == millis(want));
            if !same {
                out.push(Finding::IngestedAt {
                    found: found.map(str::to_string),
                    expected: want.to_string(),
                });
            }
        }
        out
    }
}

/// A well-formed manifest of the `testnet/p23/v1` dataset for unit tests: one row per ledger,
/// chain hashes `hash(start - 1)`, `hash(start)`, `hash(end)`.
#[cfg(test)]
pub(crate) mod fixtures {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::PRIMARY_TABLE;
    use crate::publish::{ChainInfo, ManifestPartition, ManifestTable, Producer};

    pub const INGESTED: &str = "2025-01-15T10:00:00Z";

    /// A 64-hex-digit hash made of the byte `n`.
    pub fn hash(n: u8) -> String {
        format!("{n:02x}").repeat(32)
    }

    pub fn manifest(range: LedgerRange) -> Manifest {
        let h = |ledger: u32| hash(ledger as u8);
        Manifest {
            partition: ManifestPartition {
                start: range.start,
                end: range.end,
                era_id: "p23".into(),
                version: "v1".into(),
                network: "testnet".into(),
            },
            tables: BTreeMap::from([(
                PRIMARY_TABLE.to_string(),
                ManifestTable {
                    file: DatasetLayout::parquet_file_name(range),
                    checksum: format!("sha256:{}", hash(1)),
                    row_count: range.len(),
                    byte_size: 100,
                },
            )]),
            producer: Producer::current(),
            created_at: INGESTED.into(),
            chain: Some(ChainInfo {
                previous_ledger_hash: h(range.start - 1),
                first_ledger_hash: h(range.start),
                last_ledger_hash: h(range.end),
            }),
            ingested_at: Some(INGESTED.into()),
            network_passphrase: None,
            writer: None,
            archive: None,
            manifest_sha256: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{INGESTED, hash};
    use super::*;

    fn manifest() -> Manifest {
        fixtures::manifest(LedgerRange::new(12, 21))
    }

    fn expect<'a>(prior: &'a str) -> Expect<'a> {
        Expect {
            range: LedgerRange::new(12, 21),
            network: "testnet",
            era_id: "p23",
            version_label: "v1",
            seal: Some(&SealCheck::Valid),
            parquet_size: Some(100),
            prior_hash: Some(prior),
            ingested_at: Some(INGESTED),
        }
    }

    #[test]
    fn a_manifest_as_expected_has_no_finding() {
        let prior = hash(11);
        assert_eq!(manifest().check(&expect(&prior)), vec![]);
        // ingested_at is compared as an instant; hash case does not matter.
        let same = Expect {
            ingested_at: Some("2025-01-15T10:00:00.000Z"),
            prior_hash: Some("11111111111111111111111111111111111111111111111111111111111111AA"),
            ..expect(&prior)
        };
        assert_eq!(
            manifest().check(&same),
            vec![Finding::Link {
                ledger: 12,
                prior: 11,
                found: hash(11),
                expected: "11111111111111111111111111111111111111111111111111111111111111AA".into()
            }]
        );
        let upper = hash(0xab).to_ascii_uppercase();
        let mut m = manifest();
        m.chain.as_mut().unwrap().previous_ledger_hash = hash(0xab);
        assert_eq!(m.check(&expect(&upper)), vec![]);
    }

    /// A replacement's file in a Delta table is named after its own checksum; any other name is
    /// refused.
    #[test]
    fn a_replacement_name_must_be_its_own_checksums() {
        let prior = hash(11);
        let range = LedgerRange::new(12, 21);
        let mut m = manifest();
        let checksum = m.primary().unwrap().checksum.clone();
        let t = m.tables.values_mut().next().unwrap();
        t.file = DatasetLayout::replacement_file_name(range, &checksum);
        assert_eq!(m.check(&expect(&prior)), vec![]);
        let t = m.tables.values_mut().next().unwrap();
        t.file = DatasetLayout::replacement_file_name(range, &format!("sha256:{}", hash(7)));
        assert!(matches!(
            m.check(&expect(&prior)).as_slice(),
            [Finding::FileName { .. }]
        ));
    }

    #[test]
    fn findings_come_in_a_fixed_order() {
        let prior = hash(10);
        let mut m = manifest();
        m.partition.era_id = "other".into();
        let t = m.tables.values_mut().next().unwrap();
        t.file = "x.parquet".into();
        t.checksum = "sha256:zz".into();
        t.row_count = 9;
        m.ingested_at = None;
        let absent = Expect {
            seal: Some(&SealCheck::Absent),
            parquet_size: Some(5),
            ..expect(&prior)
        };
        let found: Vec<&str> = m
            .check(&absent)
            .iter()
            .map(|f| match f {
                Finding::SealAbsent => "seal",
                Finding::Dataset { .. } => "dataset",
                Finding::FileName { .. } => "file",
                Finding::ChecksumFormat { .. } => "checksum",
                Finding::RowCount { .. } => "rows",
                Finding::ParquetSize { .. } => "size",
                Finding::Link { .. } => "link",
                Finding::IngestedAt { .. } => "ingested_at",
                other => panic!("unexpected {other}"),
            })
            .collect();
        assert_eq!(
            found,
            [
                "seal",
                "dataset",
                "file",
                "checksum",
                "rows",
                "size",
                "link",
                "ingested_at"
            ]
        );
    }

    #[test]
    fn missing_parts_and_unchecked_fields() {
        let mut m = manifest();
        m.tables.clear();
        m.chain = None;
        let loose = Expect {
            seal: None,
            parquet_size: None,
            prior_hash: None,
            ingested_at: None,
            range: LedgerRange::new(2, 11),
            ..expect("")
        };
        assert_eq!(
            m.check(&loose),
            vec![
                Finding::Range {
                    found: LedgerRange::new(12, 21),
                    expected: LedgerRange::new(2, 11)
                },
                Finding::NoPrimaryTable,
                Finding::NoChain
            ]
        );
        let mut bad = manifest();
        bad.chain.as_mut().unwrap().last_ledger_hash = "abc".into();
        let prior = hash(11);
        assert_eq!(bad.check(&expect(&prior)), vec![Finding::ChainHashFormat]);
    }
}
