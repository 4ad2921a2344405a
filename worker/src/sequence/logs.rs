//! The records the engine keeps in ledger order after a partition is accepted: the PAS chain
//! ([`PasLog`]) and the catalog ([`CatalogLog`]). Both must be idempotent per partition: after a
//! crash or a lost head the same partition is presented again.
//!
//! A table log ([`TableLog`], the Delta Lake log) is written first, right after the manifest.

use futures::future::BoxFuture;

use crate::partition::LedgerRange;
use crate::publish::Manifest;

/// What a PAS event records about one committed partition.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionRecord {
    pub network: String,
    pub era_id: String,
    pub version_label: String,
    pub range: LedgerRange,
    /// `<network>/<era>/<version>/ledgers_lcm_raw/range=S-E`
    pub storage_path: String,
    pub manifest: Manifest,
    /// Found committed in storage rather than written by this process (the catalog's quality
    /// row says so).
    pub adopted: bool,
    /// This commit replaced a committed partition (its file changed).
    pub replaced: bool,
    /// `allow_overwrite`: a record that disagrees with this partition is to be replaced (and the
    /// replacement recorded: PAS `bronze_partition_replaced`), not refused.
    pub overwrite: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// Hash of the event, the new chain head.
    pub event_hash: String,
    /// The event was already there (a retry, a restart, or another writer got there first).
    pub existing: bool,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PasAppendError {
    /// A different event already holds this partition's place in the chain: appending would
    /// fork it. Never retried automatically.
    #[error("audit chain conflict at {range}: {message}")]
    Conflict { range: LedgerRange, message: String },
    /// The outbox cannot be reached; retried later.
    #[error("audit outbox unavailable: {0}")]
    Unavailable(String),
}

/// The PAS chain: one event per committed partition, each linked to the previous one.
pub trait PasLog: Send + Sync {
    /// Makes the log usable before any append: reads the chain back, checks it and re-sends what
    /// was not delivered. Called at every sequencing, also when there is nothing to append (a
    /// restarted operator must re-send the last events of a finished backfill). `at` is the
    /// partition a conflict is reported at.
    fn ready(&self, _at: LedgerRange) -> BoxFuture<'_, Result<(), PasAppendError>> {
        Box::pin(async { Ok(()) })
    }

    /// Appends the event for `record` after `prev_event_hash` (`None` for the first event), or
    /// returns the event already recorded for this partition when it has the same previous hash
    /// and the same table checksums. Anything else there is a [`PasAppendError::Conflict`]
    /// (with `record.overwrite`, a replacement event instead). A log that owns its chain's head
    /// (the standalone's stream, which rebuilt it from the outbox when it opened) appends on
    /// that head.
    fn append<'a>(
        &'a self,
        record: &'a PartitionRecord,
        prev_event_hash: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Appended, PasAppendError>>;

    /// Where the chain is recorded.
    fn describe(&self) -> String;

    /// Before a committed partition at `range` is replaced (nothing is changed yet): an error
    /// refuses the replacement, and the dataset stays exactly as it was.
    fn check_replace(&self, _range: LedgerRange) -> BoxFuture<'_, Result<(), PasAppendError>> {
        Box::pin(async { Ok(()) })
    }

    /// Events recorded but not yet delivered to the endpoint (`None` without delivery).
    fn undelivered(&self) -> Option<u64> {
        None
    }
}

/// Rows within a ledger range: their number and the sums of their first and last ledgers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RangeSummary {
    pub count: u64,
    pub starts: u64,
    pub ends: u64,
}

/// The PostgreSQL catalog: one lineage (and quality) row per sequenced partition, written in
/// ledger order. Writing must be idempotent per partition (an upsert).
pub trait CatalogLog: Send + Sync {
    /// Strict: the head does not move past a partition whose rows could not be written.
    fn strict(&self) -> bool;
    /// The partitions the catalog holds rows for, with their checksums (read at every
    /// sequencing: what is missing is derived from it, never kept on local disk).
    fn recorded(&self) -> BoxFuture<'_, Result<Vec<(LedgerRange, String)>, String>>;
    /// How many partitions the catalog holds rows for within `[first, through]`, with the sums
    /// of their first and last ledgers (`None`: this log cannot tell cheaply). When it matches
    /// the grid, nothing is missing and [`CatalogLog::recorded`] is not read: the catalog work of
    /// a sequencing grows with the new partitions, not with all of them.
    fn summary(
        &self,
        _first: u32,
        _through: u32,
    ) -> BoxFuture<'_, Result<Option<RangeSummary>, String>> {
        Box::pin(async { Ok(None) })
    }
    /// Writes (or re-writes) the rows of `record`'s partition. `previous` is `(last ledger,
    /// checksum)` of the partition just before it, when known.
    fn record<'a>(
        &'a self,
        record: &'a PartitionRecord,
        previous: Option<(u32, String)>,
    ) -> BoxFuture<'a, Result<(), String>>;
    /// The database, password masked.
    fn describe(&self) -> String;

    /// As [`PasLog::check_replace`].
    fn check_replace(&self, _range: LedgerRange) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
}

/// Why a table log could not take a partition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TableLogError {
    /// The log disagrees with what was committed: retrying cannot help.
    pub conflict: bool,
    pub message: String,
}

/// A table log over the dataset's files (the Delta Lake log): one entry per partition, right
/// after its manifest, in ledger order. Appending must be idempotent per partition.
pub trait TableLog: Send + Sync {
    /// What the log is called in errors (`delta`).
    fn name(&self) -> &'static str;
    fn append<'a>(
        &'a self,
        record: &'a PartitionRecord,
    ) -> BoxFuture<'a, Result<(), TableLogError>>;
}
