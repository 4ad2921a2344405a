//! EXTENSION POINT for checks of systems outside storage and the PAS outbox.
//!
//! `verify` calls [`check_external`] once, after every partition in storage has been checked,
//! with the partitions whose manifest could be read (sorted by range; `damaged` tells whether a
//! problem was already found in one). Add checks here that compare another record of the
//! dataset with storage, e.g. the PostgreSQL catalog (`catalog.postgres_dsn`): one lineage row
//! per committed partition with the manifest's checksum, row count and byte size, no row for a
//! partition that is not in storage, `prev_hash` links. Report each difference with
//! `report.problem(Some(range), <table/row>, "catalog.<check>", "expected …, found …")`.

use super::partition::VerifiedPartition;
use super::report::Report;
use crate::config::Config;

/// Checks of other records of the dataset against the verified partitions. Nothing yet.
pub async fn check_external(
    _config: &Config,
    _partitions: &[VerifiedPartition],
    _report: &mut Report,
) {
}
