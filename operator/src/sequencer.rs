//! Harvest and sequencing: read the committed manifests from storage in ledger order, verify
//! each one ([`crate::plan::verify_manifest`]), append its PAS (PAS) event, and advance the
//! checkpoint. Storage and the PAS log sit behind small traits so the planner's properties can
//! be tested against in-memory versions with the same semantics.
//!
//! Why this is safe to run from any number of operators and after any crash:
//! * the checkpoint is derived, not trusted: sequencing restarts from `status.checkpoint` (or
//!   from the first partition when the status is lost) and re-reads storage;
//! * [`PasLog::append`] must be idempotent per partition and refuse a second, different event
//!   for the same partition. With the object-store outbox ([`crate::PAS`]: conditional create
//!   on a key derived from the ledger range) that is what fences two operators: the loser finds
//!   the winner's event, adopts it if it is identical in substance, and otherwise stops with
//!   `AuditConflict`.

use std::collections::BTreeMap;
use std::sync::Arc;

use bronze::partition::LedgerRange;
use bronze::publish::{Manifest, SealCheck};
use futures::future::BoxFuture;

use crate::crd::{BronzeBackfillSpec, BronzeBackfillStatus, CheckpointStatus};
use crate::plan::{
    CatalogProgress, Expected, Fault, Grid, ObservedJob, Sequenced, rfc3339, verify_manifest,
};

/// A storage read that failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ReadError {
    /// A network or server problem (retry later), as opposed to unreadable data.
    pub transient: bool,
    pub message: String,
}

/// A committed partition as found in storage.
#[derive(Debug, Clone, PartialEq)]
pub struct Committed {
    pub manifest: Manifest,
    /// Size of the Parquet file the manifest names, when the store can tell cheaply.
    pub parquet_size: Option<u64>,
    /// The manifest file's self-checksum (`manifest_sha256`) against its bytes.
    pub seal: SealCheck,
}

/// Read access to the backfill's dataset.
pub trait DatasetStore: Send + Sync {
    /// The committed partition of exactly `range`, if any.
    fn committed(&self, range: LedgerRange) -> BoxFuture<'_, Result<Option<Committed>, ReadError>>;
    /// The committed partition with the lowest start, if any (to recover `ingestedAt`).
    fn first_committed(&self) -> BoxFuture<'_, Result<Option<Manifest>, ReadError>>;
}

/// The newest ledger in the source datastore, and gaps below it (follow mode).
pub trait TipSource: Send + Sync {
    fn latest_ledger(&self) -> BoxFuture<'_, Result<Option<u32>, ReadError>>;
    /// The first datastore object missing from `[first, last]` (objects may arrive out of
    /// order), if any.
    fn first_missing(
        &self,
        first: u32,
        last: u32,
    ) -> BoxFuture<'_, Result<Option<crate::plan::Hole>, ReadError>>;
}

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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// Hash of the event, the new chain head.
    pub event_hash: String,
    /// The event was already there (a retry, a restart, or another operator got there first).
    pub existing: bool,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PasAppendError {
    /// A different event already holds this partition's place in the chain: appending would
    /// fork it. Never retried automatically.
    #[error("audit chain conflict at {range}: {message}")]
    Conflict { range: LedgerRange, message: String },
    /// The outbox cannot be reached; retried on the next reconcile.
    #[error("audit outbox unavailable: {0}")]
    Unavailable(String),
}

/// The PAS chain (PAS): one event per committed partition, each linked to the previous one.
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
    /// and the same table checksums. Anything else there is a [`PasAppendError::Conflict`].
    fn append<'a>(
        &'a self,
        record: &'a PartitionRecord,
        prev_event_hash: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Appended, PasAppendError>>;

    /// Where the chain is recorded, for `status.pas.outbox`.
    fn describe(&self) -> String;

    /// Events recorded but not yet delivered to the endpoint (`None` without delivery).
    fn undelivered(&self) -> Option<u64> {
        None
    }
}

/// Opens the PAS log of a backfill (`None` when PAS is disabled). `key` (`namespace/name`)
/// lets an implementation keep one log per backfill across reconciles.
pub trait PasFactory: Send + Sync {
    fn open(&self, key: &str, spec: &BronzeBackfillSpec) -> Option<Arc<dyn PasLog>>;
    /// The backfill is gone: release what [`PasFactory::open`] kept for it.
    fn forget(&self, _key: &str) {}
}

/// The PostgreSQL catalog of a backfill: one lineage (and quality) row per sequenced partition,
/// written in ledger order. Writing must be idempotent per partition (an upsert).
pub trait CatalogLog: Send + Sync {
    /// Strict: the checkpoint does not move past a partition whose rows could not be written.
    fn strict(&self) -> bool;
    /// The partitions the catalog holds rows for, with their checksums (read at every
    /// sequencing: what is missing is derived from it, never kept on local disk).
    fn recorded(&self) -> BoxFuture<'_, Result<Vec<(LedgerRange, String)>, String>>;
    /// Writes (or re-writes) the rows of `manifest`'s partition. `previous` is `(last ledger,
    /// checksum)` of the partition just before it, when known.
    fn record<'a>(
        &'a self,
        manifest: &'a Manifest,
        previous: Option<(u32, String)>,
    ) -> BoxFuture<'a, Result<(), String>>;
    /// The database, password masked, for `status.catalog.database`.
    fn describe(&self) -> String;
}

/// Opens the catalog of a backfill (`None` without `spec.catalog`).
pub trait CatalogFactory: Send + Sync {
    fn open(&self, key: &str, spec: &BronzeBackfillSpec) -> Option<Arc<dyn CatalogLog>>;
    /// The backfill is gone: release what [`CatalogFactory::open`] kept for it.
    fn forget(&self, _key: &str) {}
}

/// The grid partitions up to `through` (the checkpoint) that have no catalog rows, in ledger
/// order. `recorded` holds the recorded ranges by last ledger.
pub fn catalog_gaps(
    grid: &Grid,
    recorded: &BTreeMap<u32, (LedgerRange, String)>,
    through: Option<u32>,
) -> Vec<LedgerRange> {
    let Some(through) = through else {
        return Vec::new();
    };
    let mut gaps = Vec::new();
    let mut done: Option<u32> = None;
    while let Some(range) = grid.next_partition(done) {
        if range.end > through {
            break;
        }
        if recorded.get(&range.end).map(|(r, _)| *r) != Some(range) {
            gaps.push(range);
        }
        done = Some(range.end);
    }
    gaps
}

/// The last ledger of the longest run of recorded partitions from the grid's start.
pub fn catalog_recorded_through(
    grid: &Grid,
    recorded: &BTreeMap<u32, (LedgerRange, String)>,
) -> Option<u32> {
    let mut done: Option<u32> = None;
    while let Some(range) = grid.next_partition(done) {
        if recorded.get(&range.end).map(|(r, _)| *r) != Some(range) {
            break;
        }
        done = Some(range.end);
    }
    done
}

/// Where sequencing resumes: the status's checkpoint and chain head, or nothing after a loss.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SequenceStart {
    pub checkpoint: Option<CheckpointStatus>,
    pub chain_head: Option<String>,
    pub event_count: u64,
}

impl SequenceStart {
    pub fn from_status(status: Option<&BronzeBackfillStatus>) -> Self {
        let Some(status) = status else {
            return Self::default();
        };
        Self {
            checkpoint: status.checkpoint.clone(),
            chain_head: status.pas.as_ref().and_then(|p| p.chain_head.clone()),
            event_count: status.pas.as_ref().map_or(0, |p| p.event_count),
        }
    }
}

/// Sequences the committed partitions after `start`, in ledger order, at most `max_steps` of them
/// (catalog catch-up included).
pub async fn sequence(
    spec: &BronzeBackfillSpec,
    ingested_at: &str,
    start: SequenceStart,
    store: &dyn DatasetStore,
    pas: Option<&dyn PasLog>,
    catalog: Option<&dyn CatalogLog>,
    max_steps: usize,
) -> Sequenced {
    let grid = Grid::of(spec);
    let done_through = start.checkpoint.as_ref().map(|c| c.last_committed_ledger);
    let at = grid
        .next_partition(done_through)
        .or_else(|| grid.partition_of(done_through?))
        .unwrap_or_else(|| LedgerRange::new(spec.ledger_start, spec.ledger_start));
    let ready = match pas {
        Some(a) => a.ready(at).await,
        None => Ok(()),
    };
    let mut out = match ready {
        Ok(()) => sequence_steps(spec, ingested_at, start, store, pas, catalog, max_steps).await,
        Err(e) => {
            let mut out = Sequenced {
                checkpoint: start.checkpoint,
                chain_head: start.chain_head,
                event_count: start.event_count,
                outbox: pas.map(|a| a.describe()),
                ..Default::default()
            };
            match e {
                PasAppendError::Conflict { range, message } => {
                    out.fault = Some(Fault {
                        range,
                        reason: crate::plan::reason::AUDIT_CONFLICT,
                        message,
                    });
                }
                e @ PasAppendError::Unavailable(_) => out.trouble = Some(e.to_string()),
            }
            out
        }
    };
    out.undelivered = pas.and_then(|a| a.undelivered());
    out
}

/// The catalog's part of one sequencing.
struct CatalogRun<'a> {
    log: &'a dyn CatalogLog,
    /// Recorded partitions by last ledger; `None` when they could not be read.
    recorded: Option<BTreeMap<u32, (LedgerRange, String)>>,
    /// Writes go on (false after a failure in lenient mode: the rest waits for the next
    /// reconcile, so rows are always written in ledger order).
    active: bool,
    error: Option<String>,
}

impl CatalogRun<'_> {
    fn previous(&self, range: LedgerRange) -> Option<(u32, String)> {
        let end = range.start.checked_sub(1)?;
        let (_, checksum) = self.recorded.as_ref()?.get(&end)?;
        Some((end, checksum.clone()))
    }

    /// Writes the rows of one partition; on failure says so and stops writing.
    async fn record(&mut self, range: LedgerRange, manifest: &Manifest) -> Result<(), String> {
        let previous = self.previous(range);
        match self.log.record(manifest, previous).await {
            Ok(()) => {
                let checksum = manifest
                    .primary()
                    .map(|t| t.checksum.clone())
                    .unwrap_or_default();
                if let Some(recorded) = &mut self.recorded {
                    recorded.insert(range.end, (range, checksum));
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

    fn progress(&self, grid: &Grid) -> CatalogProgress {
        CatalogProgress {
            database: self.log.describe(),
            strict: self.log.strict(),
            recorded_through: self
                .recorded
                .as_ref()
                .map(|r| catalog_recorded_through(grid, r)),
            error: self.error.clone(),
        }
    }
}

async fn sequence_steps(
    spec: &BronzeBackfillSpec,
    ingested_at: &str,
    start: SequenceStart,
    store: &dyn DatasetStore,
    pas: Option<&dyn PasLog>,
    catalog: Option<&dyn CatalogLog>,
    max_steps: usize,
) -> Sequenced {
    let grid = Grid::of(spec);
    let mut out = Sequenced {
        checkpoint: start.checkpoint,
        chain_head: start.chain_head,
        event_count: start.event_count,
        outbox: pas.map(|a| a.describe()),
        ..Default::default()
    };
    let mut cat = catalog.map(|log| CatalogRun {
        log,
        recorded: None,
        active: true,
        error: None,
    });
    let steps_left = match &mut cat {
        Some(cat) => catch_up_catalog(&grid, &mut out, store, cat, max_steps).await,
        None => Some(max_steps),
    };
    let Some(steps_left) = steps_left else {
        out.catalog = cat.map(|c| c.progress(&grid));
        return out;
    };
    sequence_partitions(
        spec,
        ingested_at,
        &grid,
        &mut out,
        store,
        pas,
        cat.as_mut(),
        steps_left,
    )
    .await;
    out.catalog = cat.map(|c| c.progress(&grid));
    out
}

/// Writes the catalog rows missing below the checkpoint (a lenient failure earlier, a catalog
/// added to a running backfill, rows removed), from the manifests in storage, in ledger order.
/// Returns the steps left for new partitions, or `None` when sequencing must stop here (strict
/// failure, or more to catch up than one reconcile does).
async fn catch_up_catalog(
    grid: &Grid,
    out: &mut Sequenced,
    store: &dyn DatasetStore,
    cat: &mut CatalogRun<'_>,
    max_steps: usize,
) -> Option<usize> {
    let strict = cat.log.strict();
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
    let through = out.checkpoint.as_ref().map(|c| c.last_committed_ledger);
    let gaps = catalog_gaps(grid, cat.recorded.as_ref().expect("read above"), through);
    let mut left = max_steps;
    for range in gaps {
        if left == 0 {
            out.more = true;
            return None;
        }
        left -= 1;
        let result = match store.committed(range).await {
            Ok(Some(committed)) => cat.record(range, &committed.manifest).await,
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
        tracing::info!(partition = %range, "catalog: missing rows written");
    }
    Some(left)
}

#[allow(clippy::too_many_arguments)]
async fn sequence_partitions(
    spec: &BronzeBackfillSpec,
    ingested_at: &str,
    grid: &Grid,
    out: &mut Sequenced,
    store: &dyn DatasetStore,
    pas: Option<&dyn PasLog>,
    mut cat: Option<&mut CatalogRun<'_>>,
    max_steps: usize,
) {
    for _ in 0..max_steps {
        let done_through = out.checkpoint.as_ref().map(|c| c.last_committed_ledger);
        let Some(range) = grid.next_partition(done_through) else {
            return; // the bounded range is complete
        };
        let committed = match store.committed(range).await {
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
                    reason: crate::plan::reason::VERIFICATION_FAILED,
                    message: e.message,
                });
                return;
            }
        };
        let prior_hash = out
            .checkpoint
            .as_ref()
            .and_then(|c| c.last_ledger_hash.clone());
        let expected = Expected {
            network: &spec.network,
            era_id: &spec.era_id,
            version_label: &spec.version_label,
            ingested_at,
            prior_hash: prior_hash.as_deref(),
        };
        let checkpoint = match verify_manifest(
            &committed.manifest,
            &committed.seal,
            range,
            &expected,
            committed.parquet_size,
        ) {
            Ok(c) => c,
            Err(message) => {
                out.fault = Some(Fault {
                    range,
                    reason: crate::plan::reason::VERIFICATION_FAILED,
                    message,
                });
                return;
            }
        };
        let record = PartitionRecord {
            network: spec.network.clone(),
            era_id: spec.era_id.clone(),
            version_label: spec.version_label.clone(),
            range,
            storage_path: format!(
                "{}/{}/{}/{}/range={range}",
                spec.network,
                spec.era_id,
                spec.version_label,
                bronze::config::PRIMARY_TABLE
            ),
            manifest: committed.manifest,
        };
        if let Some(pas) = pas {
            match pas.append(&record, out.chain_head.as_deref()).await {
                Ok(appended) => {
                    out.chain_head = Some(appended.event_hash);
                    out.event_count += 1;
                }
                Err(PasAppendError::Conflict { message, .. }) => {
                    out.fault = Some(Fault {
                        range,
                        reason: crate::plan::reason::AUDIT_CONFLICT,
                        message,
                    });
                    return;
                }
                Err(e @ PasAppendError::Unavailable(_)) => {
                    out.trouble = Some(e.to_string());
                    return;
                }
            }
        }
        if let Some(cat) = cat.as_deref_mut().filter(|c| c.active)
            && let Err(message) = cat.record(range, &record.manifest).await
            && cat.log.strict()
        {
            out.trouble = Some(format!(
                "{message} (catalog.strict: the checkpoint waits until it is written)"
            ));
            return;
        }
        out.checkpoint = Some(checkpoint);
        out.newly.push(range);
    }
    out.more = grid
        .next_partition(out.checkpoint.as_ref().map(|c| c.last_committed_ledger))
        .is_some();
}

/// The backfill's fixed `ingested_at`: the spec, else the status, else what committed partitions
/// carry (a lost status), else what running Jobs were given, else `now` (the first reconcile).
pub async fn resolve_ingested_at(
    spec: &BronzeBackfillSpec,
    status: Option<&BronzeBackfillStatus>,
    jobs: &[ObservedJob],
    store: &dyn DatasetStore,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<String, ReadError> {
    if let Some(at) = spec
        .ingested_at
        .clone()
        .or_else(|| status.and_then(|s| s.ingested_at.clone()))
    {
        return Ok(at);
    }
    if let Some(at) = store.first_committed().await?.and_then(|m| m.ingested_at) {
        return Ok(at);
    }
    if let Some(at) = jobs.iter().find_map(|j| j.ingested_at.clone()) {
        return Ok(at);
    }
    Ok(rfc3339(now))
}
