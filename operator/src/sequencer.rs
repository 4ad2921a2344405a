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
use crate::plan::{CatalogProgress, Fault, ObservedJob, Sequenced};

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

/// The backfill's partition grid, as the engine sequences it.
fn grid_of(spec: &BronzeBackfillSpec) -> PartitionGrid {
    PartitionGrid::new(
        spec.ledger_start,
        spec.ledger_end,
        spec.partition_size.max(1),
    )
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
    let grid = grid_of(spec);
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
    let grid = grid_of(spec);
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

/// The backfill's fixed `ingested_at`, in the canonical spelling ([`bronze::time::canonical_rfc3339`]):
/// the spec, else the status, else what committed partitions carry (a lost status), else what
/// running Jobs were given, else the resource's `metadata.creationTimestamp`.
///
/// Never a reconcile's own clock: two operators reconciling the same new backfill (no leader
/// election, a hand-over, a restart in the middle of a first reconcile) both see the same
/// creation time, so the Jobs one creates and the status the other writes agree, whichever
/// second each reconcile runs in.
pub async fn resolve_ingested_at(
    spec: &BronzeBackfillSpec,
    status: Option<&BronzeBackfillStatus>,
    jobs: &[ObservedJob],
    store: &dyn DatasetStore,
    created: chrono::DateTime<chrono::Utc>,
) -> Result<String, ReadError> {
    let recorded = match spec
        .ingested_at
        .clone()
        .or_else(|| status.and_then(|s| s.ingested_at.clone()))
    {
        Some(at) => Some(at),
        None => match store.first_committed().await?.and_then(|m| m.ingested_at) {
            Some(at) => Some(at),
            None => jobs.iter().find_map(|j| j.ingested_at.clone()),
        },
    };
    Ok(match recorded {
        // A value that is not RFC 3339 is passed on as it is: the worker's config check names it.
        Some(at) => bronze::time::canonical_rfc3339(&at).unwrap_or(at),
        None => bronze::time::millis_to_rfc3339(created.timestamp_millis()),
    })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use futures::executor::block_on;

    use super::*;
    use crate::fixtures::{MemoryDataset, spec};
    use crate::plan::JobState;

    fn created() -> chrono::DateTime<chrono::Utc> {
        chrono::Utc
            .with_ymd_and_hms(2026, 12, 7, 21, 17, 45)
            .unwrap()
    }

    fn resolve(
        spec: &BronzeBackfillSpec,
        status: Option<&BronzeBackfillStatus>,
        jobs: &[ObservedJob],
    ) -> String {
        block_on(resolve_ingested_at(
            spec,
            status,
            jobs,
            &MemoryDataset::default(),
            created(),
        ))
        .unwrap()
    }

    #[test]
    fn a_new_backfill_takes_its_creation_time_in_the_canonical_spelling() {
        assert_eq!(resolve(&spec(), None, &[]), "2026-12-07T21:17:45.000Z");
    }

    #[test]
    fn recorded_values_win_and_are_respelled_canonically() {
        let mut with_spec = spec();
        with_spec.ingested_at = Some("2025-01-15T11:00:00+01:00".into());
        assert_eq!(resolve(&with_spec, None, &[]), "2025-01-15T10:00:00.000Z");

        // A status an older operator wrote (seconds) keeps its instant.
        let status = BronzeBackfillStatus {
            ingested_at: Some("2026-12-07T21:17:46Z".into()),
            ..Default::default()
        };
        assert_eq!(
            resolve(&spec(), Some(&status), &[]),
            "2026-12-07T21:17:46.000Z"
        );

        // A lost status: the running Jobs' value, not the creation time.
        let job = ObservedJob {
            name: "bbf-2-11".into(),
            range: bronze::partition::LedgerRange::new(2, 11),
            attempt: 1,
            state: JobState::Active,
            harvested: false,
            ingested_at: Some("2026-12-07T21:17:44Z".into()),
            rebuild: None,
        };
        assert_eq!(resolve(&spec(), None, &[job]), "2026-12-07T21:17:44.000Z");
    }
}

#[cfg(test)]
mod rebuild_tests;
