//! The operator's driver of the sequencing engine ([`bronze::sequence`]): where sequencing
//! resumes (`status.checkpoint` and `status.pas`, [`SequenceStart`]), the backfill's PAS log and
//! catalog ([`PasFactory`], [`CatalogFactory`]), and the engine's outcome as the planner's
//! [`Sequenced`]. The engine reads the committed manifests from storage in ledger order, accepts
//! each by the one manifest policy, appends its PAS event, writes its catalog rows and returns
//! the new head, which the reconcile writes into `status`.

use std::sync::Arc;

use bronze::partition::{LedgerRange, PartitionGrid};
use bronze::publish::DatasetLayout;
pub use bronze::sequence::{
    Appended, CatalogLog, Committed, DatasetStore, PartitionRecord, PasAppendError, PasLog,
    ReadError, TableLog, catalog_gaps, catalog_recorded_through,
};
use bronze::sequence::{FaultKind, Head, Outcome, Position, Replacing, Sequencing};
use futures::future::BoxFuture;

use crate::crd::{BronzeBackfillSpec, BronzeBackfillStatus, CheckpointStatus};
use crate::plan::{CatalogProgress, Fault, ObservedJob, Sequenced, rfc3339};

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

/// Opens the PAS log of a backfill (`None` when PAS is disabled). `key` (`namespace/name`)
/// lets an implementation keep one log per backfill across reconciles.
pub trait PasFactory: Send + Sync {
    fn open(&self, key: &str, spec: &BronzeBackfillSpec) -> Option<Arc<dyn PasLog>>;
    /// The backfill is gone: release what [`PasFactory::open`] kept for it.
    fn forget(&self, _key: &str) {}
}

/// Opens the catalog of a backfill (`None` without `spec.catalog`).
pub trait CatalogFactory: Send + Sync {
    fn open(&self, key: &str, spec: &BronzeBackfillSpec) -> Option<Arc<dyn CatalogLog>>;
    /// The backfill is gone: release what [`CatalogFactory::open`] kept for it.
    fn forget(&self, _key: &str) {}
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

impl SequenceStart {
    /// The engine's head.
    pub fn head(self) -> Head {
        Head {
            position: self.checkpoint.map(|c| Position {
                last_committed_ledger: c.last_committed_ledger,
                partition: LedgerRange::new(c.partition_start, c.partition_end),
                checksum: c.checksum,
                last_ledger_hash: c.last_ledger_hash,
            }),
            chain_head: self.chain_head,
            event_count: self.event_count,
        }
    }
}

/// The dataset of `spec` as the engine names it (the prefix plays no part in sequencing).
pub fn layout_of(spec: &BronzeBackfillSpec) -> DatasetLayout {
    DatasetLayout {
        prefix: String::new(),
        network: spec.network.clone(),
        era_id: spec.era_id.clone(),
        version_label: spec.version_label.clone(),
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
    sequence_with_table(
        spec,
        ingested_at,
        start,
        store,
        None,
        pas,
        catalog,
        max_steps,
    )
    .await
}

/// As [`sequence`], with the table log (`spec.storage.tableFormat: delta`) written first, right
/// after each manifest is accepted.
#[allow(clippy::too_many_arguments)]
pub async fn sequence_with_table(
    spec: &BronzeBackfillSpec,
    ingested_at: &str,
    start: SequenceStart,
    store: &dyn DatasetStore,
    table: Option<&dyn TableLog>,
    pas: Option<&dyn PasLog>,
    catalog: Option<&dyn CatalogLog>,
    max_steps: usize,
) -> Sequenced {
    let layout = layout_of(spec);
    let grid = PartitionGrid::new(
        spec.ledger_start,
        spec.ledger_end,
        spec.partition_size.max(1),
    );
    let run = Sequencing {
        layout: &layout,
        grid: &grid,
        ingested_at: Some(ingested_at),
        store,
        table,
        pas,
        catalog,
        max_steps,
    };
    sequenced(bronze::sequence::sequence(&run, start.head()).await)
}

/// The engine's outcome as the planner reads it.
fn sequenced(out: Outcome) -> Sequenced {
    Sequenced {
        checkpoint: out.head.position.map(checkpoint_status),
        chain_head: out.head.chain_head,
        event_count: out.head.event_count,
        outbox: out.outbox,
        undelivered: out.undelivered,
        newly: out.newly,
        waiting_for: out.waiting_for,
        fault: out.fault.map(|f| Fault {
            range: f.range,
            reason: match f.kind {
                FaultKind::Verification => crate::plan::reason::VERIFICATION_FAILED,
                FaultKind::PasConflict => crate::plan::reason::AUDIT_CONFLICT,
            },
            message: f.message,
        }),
        trouble: out.trouble,
        more: out.more,
        catalog: out.catalog.map(|c| CatalogProgress {
            database: c.database,
            strict: c.strict,
            recorded_through: c.recorded_through,
            error: c.error,
        }),
        // Filled by `replace_rebuilt`.
        rebuilt: None,
    }
}

/// The replacements of the current rebuild (`status.rebuild`, accepted and not finished): the
/// partitions its Jobs rebuilt beside the committed ones, checked and swapped in, in ledger
/// order, by the engine's replace step ([`bronze::sequence::replace_rebuilt`]), after this
/// reconcile's sequencing and on its head. The checkpoint never moves back; the chain head and
/// event count move with each replacement event. Nothing is done while sequencing is in trouble
/// or stopped at a fault.
#[allow(clippy::too_many_arguments)]
pub async fn replace_rebuilt(
    spec: &BronzeBackfillSpec,
    ingested_at: &str,
    status: Option<&BronzeBackfillStatus>,
    sequenced: &mut Sequenced,
    store: &dyn DatasetStore,
    table: Option<&dyn TableLog>,
    pas: Option<&dyn PasLog>,
    catalog: Option<&dyn CatalogLog>,
    max_steps: usize,
) {
    let rebuild = status
        .and_then(|s| s.rebuild.as_ref())
        .filter(|r| !r.refused && r.phase != crate::crd::RebuildPhase::Succeeded);
    let (Some(rebuild), Some(staged)) = (rebuild, store.rebuilds()) else {
        return;
    };
    if sequenced.trouble.is_some() || sequenced.fault.is_some() {
        return;
    }
    let layout = layout_of(spec);
    let grid = PartitionGrid::new(
        spec.ledger_start,
        spec.ledger_end,
        spec.partition_size.max(1),
    );
    let run = Sequencing {
        layout: &layout,
        grid: &grid,
        ingested_at: Some(ingested_at),
        store,
        table,
        pas,
        catalog,
        max_steps,
    };
    let mut head = SequenceStart {
        checkpoint: sequenced.checkpoint.clone(),
        chain_head: sequenced.chain_head.clone(),
        event_count: sequenced.event_count,
    }
    .head();
    let replacing = Replacing {
        run: &run,
        staged,
        rebuild_id: &rebuild.id,
        range: LedgerRange::new(rebuild.ledger_start, rebuild.ledger_end),
    };
    let out = bronze::sequence::replace_rebuilt(&replacing, &mut head, rebuild.done_through).await;
    sequenced.checkpoint = head.position.map(checkpoint_status);
    sequenced.chain_head = head.chain_head;
    sequenced.event_count = head.event_count;
    if let Some(trouble) = out.trouble {
        sequenced.trouble = Some(format!("rebuild {}: {trouble}", rebuild.id));
    }
    sequenced.rebuilt = Some(crate::plan::Rebuilt {
        id: rebuild.id.clone(),
        done_through: out.done_through,
        replaced: out.replaced,
        identical: out.identical,
        fault: out.fault,
        waiting_for: out.waiting_for,
    });
}

/// `status.checkpoint` for the engine's position.
pub fn checkpoint_status(p: Position) -> CheckpointStatus {
    CheckpointStatus {
        last_committed_ledger: p.last_committed_ledger,
        partition_start: p.partition.start,
        partition_end: p.partition.end,
        checksum: p.checksum,
        last_ledger_hash: p.last_ledger_hash,
    }
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

#[cfg(test)]
mod rebuild_tests;
