//! The step loop: read the committed partitions after the head from storage in ledger order,
//! accept each one by the manifest policy ([`super::policy`]), append its PAS event, write its
//! catalog rows and advance the head. Catalog rows missing below the head are written first
//! ([`catch_up_catalog`], from [`super::gaps`]).
//!
//! Why this is safe to run from any number of processes and after any crash:
//! * the head is derived, not trusted: sequencing restarts from the stored head (or from the
//!   first partition when it is lost) and re-reads storage;
//! * [`PasLog::append`] is idempotent per partition and refuses a second, different event for
//!   the same partition (with the object-store outbox, a conditional create on a key derived
//!   from the ledger range): the loser of a race finds the winner's event, adopts it if it is
//!   identical in substance, and otherwise stops with a conflict;
//! * catalog writes are upserts, so a partition written twice has one row.

use super::gaps::{Recorded, catalog_gaps, catalog_recorded_through, grid_summary, next_partition};
use super::head::{Head, Position};
use super::logs::{CatalogLog, PartitionRecord, PasAppendError, PasLog, TableLog, TableLogError};
use super::policy;
use super::store::DatasetStore;
use crate::partition::{LedgerRange, PartitionGrid};
use crate::publish::{DatasetLayout, Expect, Manifest};

/// What one sequencing works on.
pub struct Sequencing<'a> {
    /// The dataset (its network, era and version; the prefix is not used).
    pub layout: &'a DatasetLayout,
    pub grid: &'a PartitionGrid,
    /// The `ingested_at` every manifest must carry (`None`: not checked).
    pub ingested_at: Option<&'a str>,
    pub store: &'a dyn DatasetStore,
    /// The table log (Delta), written first for each partition.
    pub table: Option<&'a dyn TableLog>,
    pub pas: Option<&'a dyn PasLog>,
    pub catalog: Option<&'a dyn CatalogLog>,
    /// Partitions handled at most (catalog catch-up included).
    pub max_steps: usize,
}

/// Why sequencing stopped at a partition, for good (until a person looks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The manifest policy refused the partition, or storage holds unreadable data.
    Verification,
    /// The PAS chain holds another event at this partition's place.
    PasConflict,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub range: LedgerRange,
    pub kind: FaultKind,
    pub message: String,
}

/// What the engine found and did in the catalog.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CatalogProgress {
    /// The database, password masked.
    pub database: String,
    pub strict: bool,
    /// `Some(last ledger of the recorded run from the grid's start)` (`Some(None)`: nothing
    /// recorded); `None` when the catalog could not be read.
    pub recorded_through: Option<Option<u32>>,
    /// Partitions below the head found without rows (written now, or left for later).
    pub gaps: usize,
    /// Why writing stopped.
    pub error: Option<String>,
}

/// What one sequencing did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    pub head: Head,
    /// Where the PAS chain is recorded; `None` when PAS is off.
    pub outbox: Option<String>,
    /// PAS events not yet delivered to the endpoint (`None` without delivery).
    pub undelivered: Option<u64>,
    /// Partitions sequenced now, in order.
    pub newly: Vec<LedgerRange>,
    /// The next partition to sequence, not committed yet.
    pub waiting_for: Option<LedgerRange>,
    pub fault: Option<Fault>,
    /// A transient problem (storage, PAS outbox or strict catalog unreachable): retry later.
    pub trouble: Option<String>,
    /// Stopped at `max_steps` with more to do.
    pub more: bool,
    /// The catalog's rows (`None` without a catalog).
    pub catalog: Option<CatalogProgress>,
}

/// Sequences the committed partitions after `start`, in ledger order, at most `max_steps` of them
/// (catalog catch-up included).
pub async fn sequence(run: &Sequencing<'_>, start: Head) -> Outcome {
    let grid = run.grid;
    let done_through = start.through();
    let at = next_partition(grid, done_through)
        .or_else(|| grid.partition_of(done_through?))
        .unwrap_or_else(|| LedgerRange::new(grid.first_ledger(), grid.first_ledger()));
    let ready = match run.pas {
        Some(a) => a.ready(at).await,
        None => Ok(()),
    };
    let mut out = Outcome {
        head: start,
        outbox: run.pas.map(|a| a.describe()),
        ..Default::default()
    };
    match ready {
        Ok(()) => sequence_steps(run, &mut out).await,
        Err(PasAppendError::Conflict { range, message }) => {
            out.fault = Some(Fault {
                range,
                kind: FaultKind::PasConflict,
                message,
            });
        }
        Err(e @ PasAppendError::Unavailable(_)) => out.trouble = Some(e.to_string()),
    }
    out.undelivered = run.pas.and_then(|a| a.undelivered());
    out
}

/// The catalog's part of one sequencing.
pub struct CatalogRun<'a> {
    log: &'a dyn CatalogLog,
    /// Recorded partitions by last ledger; `None` when they could not be read.
    recorded: Option<Recorded>,
    /// Writes go on (false after a failure in lenient mode: the rest waits for the next
    /// sequencing, so rows are always written in ledger order).
    active: bool,
    gaps: usize,
    /// Missing rows written by the catch-up.
    caught_up: usize,
    /// The catalog's summary said every grid partition through this ledger has rows (the
    /// ranges themselves were not read).
    complete_through: Option<u32>,
    error: Option<String>,
}

impl<'a> CatalogRun<'a> {
    pub fn new(log: &'a dyn CatalogLog) -> Self {
        Self {
            log,
            recorded: None,
            active: true,
            gaps: 0,
            caught_up: 0,
            complete_through: None,
            error: None,
        }
    }

    /// What the catalog is known to hold (`None`: its ranges were not read).
    pub fn into_recorded(self) -> Option<Recorded> {
        self.recorded
    }

    /// Partitions below the head found without rows and not written (yet).
    pub fn gaps(&self) -> usize {
        self.gaps
    }

    /// Missing rows the catch-up wrote.
    pub fn caught_up(&self) -> usize {
        self.caught_up
    }

    /// Why writing stopped, if it did.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// Whether writes go on in this sequencing.
    pub fn active(&self) -> bool {
        self.active
    }

    fn previous(&self, range: LedgerRange) -> Option<(u32, String)> {
        let end = range.start.checked_sub(1)?;
        let (_, checksum) = self.recorded.as_ref()?.get(&end)?;
        Some((end, checksum.clone()))
    }

    /// Writes the rows of one partition; on failure says so and stops writing. `after`: the
    /// partition sequenced just before it (`(last ledger, checksum)`), when the catalog's
    /// ranges were not read.
    pub async fn record(
        &mut self,
        record: &PartitionRecord,
        after: Option<(u32, String)>,
    ) -> Result<(), String> {
        let range = record.range;
        let previous = match &self.recorded {
            Some(_) => self.previous(range),
            None => after.filter(|(end, _)| range.start.checked_sub(1) == Some(*end)),
        };
        match self.log.record(record, previous).await {
            Ok(()) => {
                let checksum = record
                    .manifest
                    .primary()
                    .map(|t| t.checksum.clone())
                    .unwrap_or_default();
                if let Some(recorded) = &mut self.recorded {
                    recorded.insert(range.end, (range, checksum));
                } else if self.complete_through.and_then(|t| t.checked_add(1)) == Some(range.start)
                {
                    self.complete_through = Some(range.end);
                }
                Ok(())
            }
            Err(e) => Err(self.fail(format!("partition {range} not recorded: {e}"))),
        }
    }

    fn fail(&mut self, message: String) -> String {
        self.active = false;
        let message = format!("catalog: {message}");
        self.error = Some(message.clone());
        message
    }

    pub fn progress(&self, grid: &PartitionGrid) -> CatalogProgress {
        CatalogProgress {
            database: self.log.describe(),
            strict: self.log.strict(),
            recorded_through: match (&self.recorded, self.complete_through) {
                (Some(r), _) => Some(catalog_recorded_through(grid, r)),
                (None, Some(through)) => Some(Some(through)),
                (None, None) => None,
            },
            gaps: self.gaps,
            error: self.error.clone(),
        }
    }
}

async fn sequence_steps(run: &Sequencing<'_>, out: &mut Outcome) {
    let mut cat = run.catalog.map(CatalogRun::new);
    let steps_left = match &mut cat {
        Some(cat) => catch_up_catalog(run, out, cat, run.max_steps).await,
        None => Some(run.max_steps),
    };
    if let Some(steps_left) = steps_left {
        sequence_partitions(run, out, cat.as_mut(), steps_left).await;
    }
    out.catalog = cat.map(|c| c.progress(run.grid));
}

/// Writes the catalog rows missing below the head (a lenient failure earlier, a catalog added
/// to a running dataset, rows removed), from the manifests in storage, in ledger order. Returns
/// the steps left for new partitions, or `None` when sequencing must stop here (strict failure,
/// or more to catch up than `max_steps`).
pub async fn catch_up_catalog(
    run: &Sequencing<'_>,
    out: &mut Outcome,
    cat: &mut CatalogRun<'_>,
    max_steps: usize,
) -> Option<usize> {
    let strict = cat.log.strict();
    let through = out.head.through();
    if let Some(through) = through {
        // One cheap query first: the full list of ranges only when something is missing.
        match cat.log.summary(run.grid.first_ledger(), through).await {
            Ok(Some(found)) if found == grid_summary(run.grid, through) => {
                cat.complete_through = Some(through);
                return Some(max_steps);
            }
            Ok(_) => {}
            Err(e) => {
                let message = cat.fail(format!("cannot count the recorded partitions: {e}"));
                if strict {
                    out.trouble = Some(message);
                    return None;
                }
                return Some(max_steps);
            }
        }
    }
    match cat.log.recorded().await {
        Ok(rows) => {
            cat.recorded = Some(rows.into_iter().map(|(r, c)| (r.end, (r, c))).collect());
        }
        Err(e) => {
            let message = cat.fail(format!("cannot read the recorded partitions: {e}"));
            if strict {
                out.trouble = Some(message);
                return None;
            }
            return Some(max_steps);
        }
    }
    let gaps = catalog_gaps(
        run.grid,
        cat.recorded.as_ref().expect("read above"),
        through,
    );
    cat.gaps = gaps.len();
    let mut left = max_steps;
    for range in gaps {
        if left == 0 {
            out.more = true;
            return None;
        }
        left -= 1;
        let result = match run.store.committed(range).await {
            Ok(Some(committed)) => {
                let record = partition_record(run.layout, committed.manifest, false, false);
                cat.record(&record, None).await
            }
            Ok(None) => Err(cat.fail(format!(
                "partition {range} is sequenced but its manifest is not in storage"
            ))),
            Err(e) => Err(cat.fail(format!("reading partition {range}: {e}"))),
        };
        if let Err(message) = result {
            if strict {
                out.trouble = Some(message);
                return None;
            }
            return Some(left);
        }
        cat.gaps -= 1;
        cat.caught_up += 1;
        tracing::info!(partition = %range, "catalog: missing rows written");
    }
    Some(left)
}

/// What a PAS event and the catalog record about `manifest`'s partition.
pub fn partition_record(
    layout: &DatasetLayout,
    manifest: Manifest,
    adopted: bool,
    overwrite: bool,
) -> PartitionRecord {
    let range = manifest.range();
    PartitionRecord {
        network: layout.network.clone(),
        era_id: layout.era_id.clone(),
        version_label: layout.version_label.clone(),
        range,
        storage_path: layout.storage_path(range),
        manifest,
        adopted,
        replaced: false,
        overwrite,
    }
}

/// Why an accepted partition could not be recorded.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordError {
    /// The table log (named) could not take the partition.
    Table(&'static str, TableLogError),
    Pas(PasAppendError),
    /// A strict catalog could not write the rows.
    Catalog(String),
}

/// The logs a partition's records go to, in this order.
#[derive(Clone, Copy, Default)]
pub struct Logs<'a> {
    pub table: Option<&'a dyn TableLog>,
    pub pas: Option<&'a dyn PasLog>,
}

/// The records of one accepted partition, in order: its table log entry, its PAS event after the
/// head's, its catalog rows (a lenient failure stops catalog writes for the rest of the
/// sequencing, not the head). On success the head moves to `position`.
pub async fn record_partition(
    logs: Logs<'_>,
    cat: Option<&mut CatalogRun<'_>>,
    head: &mut Head,
    record: &PartitionRecord,
    position: Position,
) -> Result<(), RecordError> {
    let after = head
        .position
        .as_ref()
        .map(|p| (p.last_committed_ledger, p.checksum.clone()));
    if let Some(table) = logs.table {
        table
            .append(record)
            .await
            .map_err(|e| RecordError::Table(table.name(), e))?;
    }
    let mut chain_head = head.chain_head.clone();
    if let Some(pas) = logs.pas {
        let appended = pas
            .append(record, chain_head.as_deref())
            .await
            .map_err(RecordError::Pas)?;
        // A replacement found identical leaves the head where it is: no new event.
        if chain_head.as_deref() != Some(appended.event_hash.as_str()) {
            head.event_count += 1;
        }
        chain_head = Some(appended.event_hash);
    }
    head.chain_head = chain_head;
    if let Some(cat) = cat.filter(|c| c.active)
        && let Err(message) = cat.record(record, after).await
        && cat.log.strict()
    {
        return Err(RecordError::Catalog(message));
    }
    head.position = Some(position);
    Ok(())
}

/// Before a committed partition is replaced (`allow_overwrite`): every record must agree, or the
/// replacement is refused with nothing changed.
pub async fn check_replace(
    pas: Option<&dyn PasLog>,
    catalog: Option<&dyn CatalogLog>,
    range: LedgerRange,
) -> Result<(), RecordError> {
    if let Some(pas) = pas {
        pas.check_replace(range).await.map_err(RecordError::Pas)?;
    }
    if let Some(catalog) = catalog {
        catalog
            .check_replace(range)
            .await
            .map_err(RecordError::Catalog)?;
    }
    Ok(())
}

async fn sequence_partitions(
    run: &Sequencing<'_>,
    out: &mut Outcome,
    mut cat: Option<&mut CatalogRun<'_>>,
    max_steps: usize,
) {
    for _ in 0..max_steps {
        let Some(range) = next_partition(run.grid, out.head.through()) else {
            return; // the bounded range is complete
        };
        let committed = match run.store.committed(range).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                out.waiting_for = Some(range);
                return;
            }
            Err(e) if e.transient => {
                out.trouble = Some(format!("reading partition {range}: {e}"));
                return;
            }
            Err(e) => {
                out.fault = Some(Fault {
                    range,
                    kind: FaultKind::Verification,
                    message: e.message,
                });
                return;
            }
        };
        let prior_hash = out
            .head
            .position
            .as_ref()
            .and_then(|p| p.last_ledger_hash.clone());
        let expect = Expect {
            range,
            network: &run.layout.network,
            era_id: &run.layout.era_id,
            version_label: &run.layout.version_label,
            seal: Some(&committed.seal),
            parquet_size: committed.parquet_size,
            prior_hash: prior_hash.as_deref(),
            ingested_at: run.ingested_at,
        };
        let position = match policy::accept(&committed.manifest, &expect) {
            Ok(p) => p,
            Err(finding) => {
                out.fault = Some(Fault {
                    range,
                    kind: FaultKind::Verification,
                    message: finding.to_string(),
                });
                return;
            }
        };
        // The operator's rows never claimed adoption: its Jobs wrote what it sequences.
        let record = partition_record(run.layout, committed.manifest, false, false);
        let logs = Logs {
            table: run.table,
            pas: run.pas,
        };
        match record_partition(logs, cat.as_deref_mut(), &mut out.head, &record, position).await {
            Ok(()) => out.newly.push(range),
            Err(RecordError::Pas(PasAppendError::Conflict { message, .. })) => {
                out.fault = Some(Fault {
                    range,
                    kind: FaultKind::PasConflict,
                    message,
                });
                return;
            }
            Err(RecordError::Pas(e @ PasAppendError::Unavailable(_))) => {
                out.trouble = Some(e.to_string());
                return;
            }
            Err(RecordError::Table(name, e)) => {
                let message = format!("{name}: {}", e.message);
                match e.conflict {
                    // The log disagrees with what was committed: retrying cannot help.
                    true => {
                        out.fault = Some(Fault {
                            range,
                            kind: FaultKind::Verification,
                            message,
                        })
                    }
                    false => out.trouble = Some(message),
                }
                return;
            }
            Err(RecordError::Catalog(message)) => {
                out.trouble = Some(format!(
                    "{message} (catalog.strict: the checkpoint waits until it is written)"
                ));
                return;
            }
        }
    }
    out.more = next_partition(run.grid, out.head.through()).is_some();
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures::future::BoxFuture;

    use super::*;
    use crate::publish::SealCheck;
    use crate::sequence::{Committed, RangeSummary, ReadError};

    fn manifest(range: LedgerRange) -> Manifest {
        crate::publish::fixtures::manifest(range)
    }

    struct Store;

    impl DatasetStore for Store {
        fn committed(
            &self,
            range: LedgerRange,
        ) -> BoxFuture<'_, Result<Option<Committed>, ReadError>> {
            Box::pin(async move {
                Ok((range.end <= 51).then(|| Committed {
                    manifest: manifest(range),
                    parquet_size: Some(100),
                    seal: SealCheck::Valid,
                }))
            })
        }

        fn first_committed(&self) -> BoxFuture<'_, Result<Option<Manifest>, ReadError>> {
            Box::pin(async { Ok(None) })
        }
    }

    /// A catalog in memory that counts how often its ranges are read.
    #[derive(Default)]
    struct Catalog {
        rows: Mutex<BTreeMap<u32, (LedgerRange, String)>>,
        full_reads: AtomicUsize,
    }

    impl CatalogLog for Catalog {
        fn strict(&self) -> bool {
            true
        }

        fn recorded(&self) -> BoxFuture<'_, Result<Vec<(LedgerRange, String)>, String>> {
            self.full_reads.fetch_add(1, Ordering::SeqCst);
            let rows = self.rows.lock().unwrap().values().cloned().collect();
            Box::pin(async move { Ok(rows) })
        }

        fn summary(
            &self,
            first: u32,
            through: u32,
        ) -> BoxFuture<'_, Result<Option<RangeSummary>, String>> {
            let mut sum = RangeSummary::default();
            for (r, _) in self.rows.lock().unwrap().values() {
                if r.start >= first && r.end <= through {
                    sum.count += 1;
                    sum.starts += u64::from(r.start);
                    sum.ends += u64::from(r.end);
                }
            }
            Box::pin(async move { Ok(Some(sum)) })
        }

        fn record<'a>(
            &'a self,
            record: &'a PartitionRecord,
            _previous: Option<(u32, String)>,
        ) -> BoxFuture<'a, Result<(), String>> {
            let checksum = record.manifest.primary().unwrap().checksum.clone();
            self.rows
                .lock()
                .unwrap()
                .insert(record.range.end, (record.range, checksum));
            Box::pin(async { Ok(()) })
        }

        fn describe(&self) -> String {
            "memory".into()
        }
    }

    async fn run_once(catalog: &Catalog, head: Head) -> Outcome {
        let layout = DatasetLayout {
            prefix: String::new(),
            network: "testnet".into(),
            era_id: "p23".into(),
            version_label: "v1".into(),
        };
        let grid = PartitionGrid::new(2, 0, 10);
        let run = Sequencing {
            layout: &layout,
            grid: &grid,
            ingested_at: None,
            store: &Store,
            table: None,
            pas: None,
            catalog: Some(catalog),
            max_steps: 100,
        };
        sequence(&run, head).await
    }

    /// The catalog's ranges are read only when its summary says something is missing: with
    /// every row in place, a sequencing costs one count, whatever the number of partitions.
    #[tokio::test]
    async fn the_catalog_ranges_are_read_only_when_the_count_says_rows_are_missing() {
        let catalog = Catalog::default();
        let first = run_once(&catalog, Head::default()).await;
        assert_eq!(first.newly.len(), 5, "2-51 sequenced");
        assert_eq!(first.waiting_for, Some(LedgerRange::new(52, 61)));
        assert_eq!(catalog.full_reads.load(Ordering::SeqCst), 1);

        // Complete: no full read, and the progress says so.
        let again = run_once(&catalog, first.head.clone()).await;
        assert_eq!(catalog.full_reads.load(Ordering::SeqCst), 1);
        let progress = again.catalog.unwrap();
        assert_eq!(progress.recorded_through, Some(Some(51)));
        assert_eq!(progress.gaps, 0);

        // A row removed in the database: the count differs, the ranges are read, the gap is
        // found and written from its manifest.
        catalog.rows.lock().unwrap().remove(&31);
        let repaired = run_once(&catalog, first.head.clone()).await;
        assert_eq!(catalog.full_reads.load(Ordering::SeqCst), 2);
        assert!(catalog.rows.lock().unwrap().contains_key(&31));
        assert_eq!(repaired.catalog.unwrap().recorded_through, Some(Some(51)));
    }
}
