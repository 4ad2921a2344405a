//! Checks a partition's ledgers as they stream past, before anything is committed: every
//! sequence of the range exactly once and in order, each header hashing to its stored hash, each
//! `previous_ledger_hash` equal to the prior ledger's hash, the transaction counts consistent.
//! Pure logic; the caller supplies the object key for error messages.

use bronze_ledger::LedgerRow;

use crate::partition::LedgerRange;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error(
        "{key}: batch declares ledgers {found_start}-{found_end} but its key says {expected_start}-{expected_end} (does the datastore's .config.json match its objects?)"
    )]
    BatchBounds {
        key: String,
        expected_start: u32,
        expected_end: u32,
        found_start: u32,
        found_end: u32,
    },
    #[error("{key}: batch {start}-{end} holds {found} ledgers, expected {expected}")]
    BatchCount {
        key: String,
        start: u32,
        end: u32,
        expected: u64,
        found: usize,
    },
    #[error("{key}: ledger {found} found where ledger {expected} was expected (field ledgerSeq)")]
    Sequence {
        key: String,
        expected: u32,
        found: u32,
    },
    #[error(
        "{key}: ledger {ledger}: header does not hash to the stored ledger hash {stored} (corrupt header)"
    )]
    HeaderHash {
        key: String,
        ledger: u32,
        stored: String,
    },
    #[error(
        "{key}: ledger {ledger}: previous_ledger_hash {found} does not match hash {expected} of ledger {prior}"
    )]
    HashLink {
        key: String,
        ledger: u32,
        prior: u32,
        expected: String,
        found: String,
    },
    #[error(
        "{key}: ledger {ledger}: transaction set has {tx_count} transactions but txProcessing has {processed}"
    )]
    TxCount {
        key: String,
        ledger: u32,
        tx_count: u32,
        processed: u32,
    },
    #[error("partition {range}: ledgers {missing_from}-{end} never arrived")]
    Incomplete {
        range: LedgerRange,
        missing_from: u32,
        end: u32,
    },
}

/// Edge hashes of a validated partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionEdges {
    pub previous_ledger_hash: [u8; 32],
    pub first_ledger_hash: [u8; 32],
    pub last_ledger_hash: [u8; 32],
}

#[derive(Debug)]
pub struct PartitionValidator {
    range: LedgerRange,
    next: u64,
    last_hash: Option<[u8; 32]>,
    first: Option<([u8; 32], [u8; 32])>,
}

impl PartitionValidator {
    pub fn new(range: LedgerRange) -> Self {
        Self {
            range,
            next: u64::from(range.start),
            last_hash: None,
            first: None,
        }
    }

    /// Checks that a batch's own bounds lie within the bounds its key promises (the first batch
    /// of a datastore may start late, at ledger 2) and that it holds that many ledgers.
    pub fn check_batch(
        key: &str,
        expected: (u32, u32),
        found: (u32, u32),
        ledgers: usize,
    ) -> Result<(), ValidationError> {
        if found.0 < expected.0 || found.1 > expected.1 || found.0 > found.1 {
            return Err(ValidationError::BatchBounds {
                key: key.into(),
                expected_start: expected.0,
                expected_end: expected.1,
                found_start: found.0,
                found_end: found.1,
            });
        }
        let want = u64::from(found.1) - u64::from(found.0) + 1;
        if want != ledgers as u64 {
            return Err(ValidationError::BatchCount {
                key: key.into(),
                start: found.0,
                end: found.1,
                expected: want,
                found: ledgers,
            });
        }
        Ok(())
    }

    /// Checks the next ledger of the partition. `header_hash_ok` is whether its header hashes to
    /// its stored hash.
    pub fn check(
        &mut self,
        key: &str,
        row: &LedgerRow,
        header_hash_ok: bool,
    ) -> Result<(), ValidationError> {
        let seq = row.ledger_sequence;
        if u64::from(seq) != self.next {
            return Err(ValidationError::Sequence {
                key: key.into(),
                expected: self.next as u32,
                found: seq,
            });
        }
        if !header_hash_ok {
            return Err(ValidationError::HeaderHash {
                key: key.into(),
                ledger: seq,
                stored: hex::encode(row.ledger_hash),
            });
        }
        if let Some(prior) = self.last_hash
            && prior != row.previous_ledger_hash
        {
            return Err(ValidationError::HashLink {
                key: key.into(),
                ledger: seq,
                prior: seq - 1,
                expected: hex::encode(prior),
                found: hex::encode(row.previous_ledger_hash),
            });
        }
        if row.tx_count != row.tx_processing_count {
            return Err(ValidationError::TxCount {
                key: key.into(),
                ledger: seq,
                tx_count: row.tx_count,
                processed: row.tx_processing_count,
            });
        }
        self.first
            .get_or_insert((row.previous_ledger_hash, row.ledger_hash));
        self.last_hash = Some(row.ledger_hash);
        self.next += 1;
        Ok(())
    }

    /// Whether `seq` is still expected (the caller skips ledgers of a shared batch outside it).
    pub fn wants(&self, seq: u32) -> bool {
        self.range.contains(seq)
    }

    /// Confirms every ledger arrived and returns the partition's edge hashes.
    pub fn finish(self) -> Result<PartitionEdges, ValidationError> {
        match (self.first, self.last_hash) {
            (Some((previous, first)), Some(last)) if self.next == u64::from(self.range.end) + 1 => {
                Ok(PartitionEdges {
                    previous_ledger_hash: previous,
                    first_ledger_hash: first,
                    last_ledger_hash: last,
                })
            }
            _ => Err(ValidationError::Incomplete {
                range: self.range,
                missing_from: self.next as u32,
                end: self.range.end,
            }),
        }
    }
}

/// Checks that a partition continues the one before it.
pub fn check_link(
    range: LedgerRange,
    first_previous_hash: &[u8; 32],
    prior_last_hash: &[u8; 32],
    key: &str,
) -> Result<(), ValidationError> {
    if first_previous_hash == prior_last_hash {
        return Ok(());
    }
    Err(ValidationError::HashLink {
        key: key.into(),
        ledger: range.start,
        prior: range.start.saturating_sub(1),
        expected: hex::encode(prior_last_hash),
        found: hex::encode(first_previous_hash),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: u32, hash: u8, prev: u8) -> LedgerRow {
        LedgerRow {
            lcm_version: 1,
            ledger_sequence: seq,
            ledger_hash: [hash; 32],
            previous_ledger_hash: [prev; 32],
            close_time: 0,
            protocol_version: 21,
            total_coins: 0,
            fee_pool: 0,
            tx_set_hash: [0; 32],
            tx_count: 1,
            operation_count: 1,
            tx_processing_count: 1,
        }
    }

    #[test]
    fn a_complete_chain_passes_and_reports_its_edges() {
        let mut v = PartitionValidator::new(LedgerRange::new(10, 12));
        v.check("k", &row(10, 1, 0), true).unwrap();
        v.check("k", &row(11, 2, 1), true).unwrap();
        v.check("k", &row(12, 3, 2), true).unwrap();
        let edges = v.finish().unwrap();
        assert_eq!(edges.previous_ledger_hash, [0; 32]);
        assert_eq!(edges.first_ledger_hash, [1; 32]);
        assert_eq!(edges.last_ledger_hash, [3; 32]);
    }

    #[test]
    fn gaps_duplicates_and_broken_links_are_caught_with_the_key_and_ledger() {
        let mut v = PartitionValidator::new(LedgerRange::new(10, 12));
        v.check("k", &row(10, 1, 0), true).unwrap();
        let gap = v.check("obj-12", &row(12, 3, 2), true).unwrap_err();
        assert_eq!(
            gap,
            ValidationError::Sequence {
                key: "obj-12".into(),
                expected: 11,
                found: 12
            }
        );
        let dup = v.check("k", &row(10, 1, 0), true).unwrap_err();
        assert!(matches!(
            dup,
            ValidationError::Sequence {
                expected: 11,
                found: 10,
                ..
            }
        ));
        let link = v.check("obj-11", &row(11, 2, 9), true).unwrap_err();
        assert!(
            link.to_string().contains("obj-11") && link.to_string().contains("ledger 11"),
            "{link}"
        );
        let bad_header = v.check("k", &row(11, 2, 1), false).unwrap_err();
        assert!(matches!(
            bad_header,
            ValidationError::HeaderHash { ledger: 11, .. }
        ));
    }

    #[test]
    fn a_missing_tail_is_incomplete() {
        let mut v = PartitionValidator::new(LedgerRange::new(10, 12));
        v.check("k", &row(10, 1, 0), true).unwrap();
        assert_eq!(
            v.finish().unwrap_err(),
            ValidationError::Incomplete {
                range: LedgerRange::new(10, 12),
                missing_from: 11,
                end: 12
            }
        );
        assert!(
            PartitionValidator::new(LedgerRange::new(1, 1))
                .finish()
                .is_err()
        );
    }

    #[test]
    fn tx_count_must_match_processing() {
        let mut v = PartitionValidator::new(LedgerRange::new(10, 10));
        let mut r = row(10, 1, 0);
        r.tx_processing_count = 2;
        assert!(matches!(
            v.check("k", &r, true),
            Err(ValidationError::TxCount { .. })
        ));
    }

    #[test]
    fn batch_bounds_must_match_the_key() {
        assert!(PartitionValidator::check_batch("k", (0, 63), (0, 63), 64).is_ok());
        assert!(PartitionValidator::check_batch("k", (0, 63), (2, 63), 62).is_ok());
        assert!(matches!(
            PartitionValidator::check_batch("k", (0, 63), (0, 64), 65),
            Err(ValidationError::BatchBounds { .. })
        ));
        assert!(matches!(
            PartitionValidator::check_batch("k", (64, 127), (0, 63), 64),
            Err(ValidationError::BatchBounds { .. })
        ));
        assert!(matches!(
            PartitionValidator::check_batch("k", (0, 63), (0, 63), 60),
            Err(ValidationError::BatchCount { .. })
        ));
    }

    #[test]
    fn links_across_partitions() {
        let r = LedgerRange::new(11, 20);
        assert!(check_link(r, &[5; 32], &[5; 32], "k").is_ok());
        assert!(matches!(
            check_link(r, &[5; 32], &[6; 32], "k"),
            Err(ValidationError::HashLink {
                ledger: 11,
                prior: 10,
                ..
            })
        ));
    }
}
