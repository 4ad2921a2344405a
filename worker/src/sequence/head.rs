//! The engine's state between partitions: where sequencing stands. Drivers differ only in where
//! they keep it (the standalone: the checkpoint file; the operator: `status`).

use crate::partition::LedgerRange;

/// The last sequenced partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub last_committed_ledger: u32,
    pub partition: LedgerRange,
    /// `sha256:<hex>` of the partition's Parquet file.
    pub checksum: String,
    /// Hash (lowercase hex) of the last ledger: the next partition must link to it.
    pub last_ledger_hash: Option<String>,
}

/// Where sequencing resumes: the last partition and the PAS chain's head and length.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Head {
    pub position: Option<Position>,
    pub chain_head: Option<String>,
    pub event_count: u64,
}

impl Head {
    /// The last ledger sequenced, if any.
    pub fn through(&self) -> Option<u32> {
        self.position.as_ref().map(|p| p.last_committed_ledger)
    }
}
