//! The standalone run: partitions built concurrently (download → decode/validate → Parquet →
//! upload), published strictly in ledger order by the sequencer, with the checkpoint after each.
//!
//! ```text
//! grid.partitions_from(next) ──► build (≤ max_in_flight at once) ──► sequencer (in order)
//!                                 fetch ▸ decode ▸ validate ▸ encode ▸ upload     link ▸ manifest ▸ records ▸ checkpoint
//! ```

mod build;
mod progress;
mod sequencer;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::StreamExt;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use build::{BuildEnv, BuildError, Built, Staged, build_partition};
pub use progress::{Progress, ProgressSnapshot, progress_line};
pub use sequencer::{CommitEvent, HookError, Records, SequenceCounts, SequenceError, Sequencer};

use crate::checkpoint::{Checkpoint, CheckpointError, CheckpointStore};
use crate::config::{Config, StorageBackend};
use crate::hash::parse_hash;
use crate::parquet::WriterSettings;
use crate::partition::{LedgerRange, PartitionGrid};
use crate::publish::{
    CommitError, Committer, DatasetLayout, Manifest, PartitionSettings, ReplacementNaming,
    WriterInfo,
};
use crate::source::{Datastore, SourceError, open_source_location};
use crate::store::{self, Location, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Commit(#[from] CommitError),
    #[error("partition {range}: {source}")]
    Build {
        range: LedgerRange,
        source: BuildError,
    },
    #[error(transparent)]
    Sequence(#[from] SequenceError),
    #[error(transparent)]
    Range(#[from] RangeError),
    #[error(transparent)]
    Archive(#[from] crate::archive::ArchiveError),
    /// The Delta table could not say which integer types its files have.
    #[error("delta: {0}")]
    Table(#[from] crate::delta::DeltaError),
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    pub progress: ProgressSnapshot,
    pub last_committed: Option<u32>,
    pub interrupted: bool,
    /// Partitions replaced, and adopted with other settings.
    pub counts: SequenceCounts,
}

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub show_progress_bar: bool,
}

/// The output location from `storage.*`.
pub fn open_output_location(config: &Config) -> Result<Location, StoreError> {
    let s = &config.storage;
    match s.backend {
        StorageBackend::Gcs => store::gcs(
            "storage.gcs_bucket",
            &s.gcs_bucket,
            "",
            store::retry_config(&config.perf),
        ),
        StorageBackend::S3 => store::s3(
            "storage.s3_bucket",
            &s.s3_bucket,
            "",
            &s.s3_endpoint,
            &s.s3_region,
            store::retry_config(&config.perf),
        ),
        StorageBackend::Local => store::local("storage.local_dir", &s.local_dir, true),
    }
}

/// Runs the backfill described by `config` until the range is done (or forever when following
/// the tip) or `cancel` fires.
pub async fn run(
    config: &Config,
    records: Records,
    cancel: CancellationToken,
    options: RunOptions,
) -> Result<RunSummary, RunError> {
    let checkpoint_store = config
        .checkpoint
        .enabled
        .then(|| CheckpointStore::new(config));
    let checkpoint = match &checkpoint_store {
        Some(store) => store.load()?,
        None => None,
    };
    let grid = PartitionGrid::new(
        config.era.ledger_start,
        config.era.ledger_end,
        config.era.partition_size,
    );
    for warning in grid.off_grid_warnings(
        checkpoint
            .as_ref()
            .and_then(|cp| cp.last_committed_partition.as_ref())
            .map(|p| LedgerRange::new(p.start, p.end.max(p.start))),
    ) {
        tracing::warn!("{warning}");
    }
    let next = start_ledger(
        grid.first_ledger(),
        checkpoint.as_ref().map(|cp| cp.last_committed_ledger),
        config.era.allow_overwrite,
    );
    if let Some(cp) = checkpoint.as_ref().filter(|_| config.era.allow_overwrite) {
        tracing::warn!(
            checkpoint_ledger = cp.last_committed_ledger,
            first_ledger = next,
            "era.allow_overwrite: rewriting the configured range from its first ledger regardless of the checkpoint (partitions that come out different replace the committed ones; the checkpoint is not moved back)"
        );
    } else if let Some(cp) = &checkpoint {
        tracing::info!(
            last_committed_ledger = cp.last_committed_ledger,
            next,
            "resuming from checkpoint"
        );
        if !grid.is_partition_start(next) && grid.partition_of(next).is_some() {
            tracing::warn!(
                next,
                partition = %grid.partition_of(next).map(|p| p.to_string()).unwrap_or_default(),
                "checkpoint is not on a partition boundary; the first partition is shortened to return to the grid"
            );
        }
    }
    let total = grid
        .last_ledger()
        .map(|last| u64::from(last.saturating_sub(next)) + 1)
        .filter(|_| grid.last_ledger().is_some_and(|last| next <= last));
    let tip_table = records.tip.clone().filter(|_| config.publishes_tip());
    let pipeline = Pipeline::prepare(
        config,
        &grid,
        next,
        Resume {
            checkpoint,
            store: checkpoint_store,
        },
        records,
        Progress::new(total, options.show_progress_bar),
        Checks {
            archive: crate::archive::ArchiveSettings::from_config(config),
            rebuild: None,
        },
    )
    .await?;
    if config.era.allow_overwrite {
        let bounded = grid.last_ledger().is_some();
        pipeline
            .check_replaceable(grid.partitions_from(next), bounded)
            .await?;
    }
    let tip = tip_table.map(|table| pipeline.start_tip(config, grid, table, &cancel));
    let summary = pipeline.drive(grid.partitions_from(next), cancel).await;
    if let Some((stop, task)) = tip {
        stop.cancel();
        let _ = task.await;
    }
    summary
}

/// The first ledger a standalone run copies (pure): after the checkpoint, never before the
/// configured start; with `allow_overwrite`, the configured start whatever the checkpoint says
/// (an overwrite rewrites the range it is given).
pub fn start_ledger(first: u32, checkpoint: Option<u32>, allow_overwrite: bool) -> u32 {
    match checkpoint {
        Some(last) if !allow_overwrite => last.saturating_add(1).max(first),
        _ => first,
    }
}

#[derive(Debug, thiserror::Error)]
#[error(
    "range {range} is not made of whole partitions of the grid (era.ledger_start {ledger_start}, era.ledger_end {ledger_end}, era.partition_size {partition_size}): {why}"
)]
pub struct RangeError {
    pub range: LedgerRange,
    pub ledger_start: u32,
    pub ledger_end: u32,
    pub partition_size: u32,
    pub why: String,
}

/// The grid partitions that make up `range` exactly. A range that starts or ends inside a grid
/// partition, or leaves the configured range, is refused: a worker Job commits whole grid
/// partitions and nothing else, so two Jobs can never write different files for one range.
pub fn partitions_in_range(
    config: &Config,
    range: LedgerRange,
) -> Result<Vec<LedgerRange>, RangeError> {
    let era = &config.era;
    let grid = PartitionGrid::new(era.ledger_start, era.ledger_end, era.partition_size);
    let fail = |why: String| RangeError {
        range,
        ledger_start: era.ledger_start,
        ledger_end: era.ledger_end,
        partition_size: era.partition_size,
        why,
    };
    if range.start > range.end {
        return Err(fail("start is after end".into()));
    }
    match grid.partition_of(range.start) {
        Some(p) if p.start == range.start => {}
        Some(p) => return Err(fail(format!("{} starts inside partition {p}", range.start))),
        None => return Err(fail(format!("ledger {} is outside the grid", range.start))),
    }
    match grid.partition_of(range.end) {
        Some(p) if p.end == range.end => {}
        Some(p) => return Err(fail(format!("{} ends inside partition {p}", range.end))),
        None => return Err(fail(format!("ledger {} is outside the grid", range.end))),
    }
    Ok(grid
        .partitions_from(range.start)
        .take_while(|p| p.end <= range.end)
        .collect())
}

/// Worker mode (one Kubernetes Job): copies and commits exactly the grid partitions inside
/// `range`, adopting those already committed (a retried Job redoes nothing). No checkpoint, no
/// records: the operator sequences the commits, the audit chain and the catalog.
///
/// The run is always bounded: a missing datastore object is an error, never "the tip", so a
/// Job cannot hang waiting for ledgers the operator did not see.
///
/// `rebuild` (a rebuild Job of the operator's `spec.rebuild`): every partition of the range must
/// be committed; each is rebuilt beside the committed one and staged with the rebuild's marker
/// (`Committer::stage_rebuild`). Nothing committed changes: the operator's sequencer checks and
/// swaps it in through the engine ([`crate::sequence::replace_rebuilt`]).
pub async fn run_range(
    config: &Config,
    range: LedgerRange,
    rebuild: Option<&str>,
    cancel: CancellationToken,
    options: RunOptions,
) -> Result<RunSummary, RunError> {
    let partitions = partitions_in_range(config, range)?;
    let mut bounded = config.clone();
    bounded.era.ledger_end = range.end;
    let grid = PartitionGrid::new(
        config.era.ledger_start,
        config.era.ledger_end,
        config.era.partition_size,
    );
    let pipeline = Pipeline::prepare(
        &bounded,
        &grid,
        range.start,
        Resume::default(),
        Records::default(),
        Progress::new(Some(range.len()), options.show_progress_bar),
        Checks {
            // From the backfill's config: a Job of a backfill following the tip waits for the
            // archive to publish its range's last checkpoint, as the standalone does.
            archive: crate::archive::ArchiveSettings::from_config(config),
            rebuild,
        },
    )
    .await?;
    if config.era.allow_overwrite {
        pipeline
            .check_replaceable(partitions.iter().copied(), true)
            .await?;
    }
    pipeline.drive(partitions.into_iter(), cancel).await
}

/// What a run checks and stages beyond the copy itself.
struct Checks<'a> {
    /// The history archives every ledger is compared with (`archive.url`), if any.
    archive: Option<crate::archive::ArchiveSettings>,
    /// The rebuild id of an operator rebuild Job (partitions staged beside the committed ones).
    rebuild: Option<&'a str>,
}

/// Where a run resumes from (standalone), or nothing (worker mode).
#[derive(Default)]
struct Resume {
    checkpoint: Option<Checkpoint>,
    store: Option<CheckpointStore>,
}

/// A run, set up: shared build environment and the in-order sequencer.
struct Pipeline {
    env: Arc<BuildEnv>,
    sequencer: Sequencer,
    progress: Arc<Progress>,
    max_in_flight: usize,
}

impl Pipeline {
    /// Opens the source and the output and sets up the sequencer for a run whose first
    /// partition starts at `next`.
    async fn prepare(
        config: &Config,
        grid: &PartitionGrid,
        next: u32,
        resume: Resume,
        records: Records,
        progress: Progress,
        checks: Checks<'_>,
    ) -> Result<Self, RunError> {
        let Checks { archive, rebuild } = checks;
        let source = Arc::new(Datastore::open(config, open_source_location(config)?).await?);
        let archive = match archive {
            Some(settings) => Some(Arc::new(
                crate::archive::ArchiveCheck::open(settings).await?,
            )),
            None => None,
        };
        let layout = DatasetLayout::from_config(config);
        let committer = Committer {
            location: open_output_location(config)?,
            layout: layout.clone(),
            allow_overwrite: config.era.allow_overwrite,
        };
        let checkpoint = resume.checkpoint;
        let previous = previous_partition(grid, next, &committer).await?;
        let prior_last_hash = prior_hash(checkpoint.as_ref(), next, previous.as_ref());
        if prior_last_hash.is_none() && next > grid.first_ledger() {
            tracing::warn!(
                ledger = next,
                "hash of the ledger before the first partition is unknown; that one link is not checked"
            );
        }
        let (ingested_at, ingested_at_millis) =
            ingested_at(config, checkpoint.as_ref(), previous.as_ref());
        let (integers, integers_from) =
            crate::delta::integers::for_new_files(config, &committer.location).await?;
        tracing::info!(
            source = %source.uri(),
            output = %committer.location.uri_of(&layout.dataset_dir()),
            first_ledger = next,
            last_ledger = ?grid.last_ledger(),
            partition_size = config.era.partition_size,
            max_in_flight = config.perf.max_in_flight_partitions,
            ingested_at = %ingested_at,
            allow_overwrite = config.era.allow_overwrite,
            integer_types = %integers,
            integer_types_from = ?integers_from,
            "starting backfill"
        );
        let writer_info = WriterInfo {
            compression: config.storage.compression.to_string(),
            compression_level: config.storage.compression_level,
            row_group_bytes: config.storage.row_group_bytes as u64,
        };
        let progress = Arc::new(progress);
        let env = Arc::new(BuildEnv {
            source: source.clone(),
            committer: committer.clone(),
            rebuild: rebuild.is_some(),
            writer: WriterSettings {
                compression: config.storage.compression,
                compression_level: config.storage.compression_level,
                row_group_bytes: config.storage.row_group_bytes,
                network: config.era.network.clone(),
                era_id: config.era.era_id.clone(),
                version_label: config.era.version_label.clone(),
                ingested_at_millis,
                integers,
            },
            upload_part_bytes: config.storage.upload_part_bytes,
            fetch_concurrency: config.perf.workers,
            queue_size: if config.perf.queue_size == 0 {
                config.perf.workers * 2
            } else {
                config.perf.queue_size
            },
            retry_attempts: config.perf.retry_attempts.max(1),
            retry_backoff: Duration::from_millis(config.perf.retry_backoff_ms),
            progress: progress.clone(),
            archive,
        });
        let sequencer = Sequencer {
            committer,
            layout,
            checkpoint: resume.store,
            records,
            head: crate::sequence::Head::default(),
            settings: PartitionSettings {
                ingested_at: ingested_at.clone(),
                writer: writer_info,
            },
            ingested_at,
            network_passphrase: source.manifest().map(|m| m.network_passphrase.clone()),
            prior_last_hash,
            last_committed: checkpoint.as_ref().map(|cp| cp.last_committed_ledger),
            checkpoint_floor: checkpoint.as_ref().map(|cp| cp.last_committed_ledger),
            counts: SequenceCounts::default(),
            rebuild: rebuild.map(String::from),
            replacement_naming: match config.storage.table_format {
                crate::config::TableFormat::Delta => ReplacementNaming::ByChecksum,
                _ => ReplacementNaming::SameName,
            },
        };
        Ok(Self {
            env,
            sequencer,
            progress,
            max_in_flight: config.perf.max_in_flight_partitions.max(1),
        })
    }

    /// Starts the provisional tip (docs/tip.md) beside the run; it stops with `cancel` or when
    /// the returned token is cancelled.
    fn start_tip(
        &self,
        config: &Config,
        grid: PartitionGrid,
        table: Arc<crate::delta::DeltaTable>,
        cancel: &CancellationToken,
    ) -> (CancellationToken, JoinHandle<()>) {
        let stop = cancel.child_token();
        let publisher = crate::sequence::tip::TipPublisher::new(
            table,
            self.env.source.clone(),
            crate::sequence::tip::TipSettings {
                grid,
                writer: self.env.writer.clone(),
                poll_interval: Duration::from_millis(config.source.poll_interval_ms),
                max_ledgers_per_file: crate::sequence::tip::MAX_LEDGERS_PER_FILE,
            },
        );
        let task = tokio::spawn(publisher.run(stop.clone()));
        (stop, task)
    }

    /// Before an overwrite run changes anything: every committed partition it may replace must
    /// be readable and belong to this dataset, else the run is refused with nothing changed.
    /// `bounded`: `ranges` ends; otherwise (following the tip) the check stops at the first
    /// partition not committed.
    async fn check_replaceable(
        &self,
        ranges: impl Iterator<Item = LedgerRange>,
        bounded: bool,
    ) -> Result<(), RunError> {
        let mut committed = 0u64;
        for range in ranges {
            match self.env.committer.existing(range).await? {
                Some(existing) => {
                    self.sequencer
                        .check_dataset(&existing.manifest, &existing.manifest_key)?;
                    committed += 1;
                }
                None if bounded => {}
                None => break,
            }
        }
        tracing::info!(
            committed,
            "era.allow_overwrite: committed partitions in the range are rebuilt; those that come out different are replaced"
        );
        Ok(())
    }

    /// Builds `ranges` concurrently and publishes them in order until done or cancelled.
    async fn drive(
        mut self,
        ranges: impl Iterator<Item = LedgerRange>,
        cancel: CancellationToken,
    ) -> Result<RunSummary, RunError> {
        let env = self.env.clone();
        let mut builds = futures::stream::iter(ranges)
            .map(|range| {
                let env = env.clone();
                let task = AbortOnDrop(tokio::spawn(build_partition(env, range)));
                async move { (range, task.await) }
            })
            .buffered(self.max_in_flight);
        let mut interrupted = false;
        loop {
            let item = tokio::select! {
                biased;
                _ = cancel.cancelled() => { interrupted = true; break; }
                item = builds.next() => item,
            };
            let Some((range, joined)) = item else { break };
            let built = joined
                .unwrap_or_else(|e| {
                    Err(BuildError::Encoder {
                        range,
                        message: e.to_string(),
                    })
                })
                .map_err(|source| RunError::Build { range, source })?;
            // Publishing is not interrupted half-way: a signal is noticed before the next partition.
            self.sequencer
                .publish(built, &self.progress)
                .await
                .inspect_err(|e| crate::metrics::partition_failed(e.metric_kind()))?;
            self.progress.log();
        }
        drop(builds);
        self.progress.finish();
        Ok(RunSummary {
            progress: self.progress.snapshot(),
            last_committed: self.sequencer.last_committed,
            interrupted,
            counts: self.sequencer.counts,
        })
    }
}

/// The committed partition ending just before `next`, if the grid has one there.
async fn previous_partition(
    grid: &PartitionGrid,
    next: u32,
    committer: &Committer,
) -> Result<Option<Manifest>, RunError> {
    let Some(prev) = next.checked_sub(1).and_then(|p| grid.partition_of(p)) else {
        return Ok(None);
    };
    if prev.end != next - 1 {
        return Ok(None);
    }
    Ok(committer.existing(prev).await?.map(|e| e.manifest))
}

fn prior_hash(
    checkpoint: Option<&Checkpoint>,
    next: u32,
    previous: Option<&Manifest>,
) -> Option<[u8; 32]> {
    checkpoint
        .filter(|cp| cp.last_committed_ledger.checked_add(1) == Some(next))
        .and_then(|cp| cp.last_ledger_hash.as_deref())
        .and_then(parse_hash)
        .or_else(|| {
            previous
                .and_then(|m| m.chain.as_ref())
                .and_then(|c| parse_hash(&c.last_ledger_hash))
        })
}

/// `ingested_at` for this backfill: the config, else the checkpoint, else the previous
/// partition's manifest, else now (then recorded in the checkpoint).
fn ingested_at(
    config: &Config,
    checkpoint: Option<&Checkpoint>,
    previous: Option<&Manifest>,
) -> (String, i64) {
    let recorded = config
        .era
        .ingested_at
        .clone()
        .or_else(|| checkpoint.and_then(|cp| cp.ingested_at.clone()))
        .or_else(|| previous.and_then(|m| m.ingested_at.clone()));
    let millis = recorded
        .as_deref()
        .and_then(crate::time::rfc3339_to_millis)
        .unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
    (crate::time::millis_to_rfc3339(millis), millis)
}

/// Aborts a spawned task when its handle is dropped (a run that stops drops unfinished builds).
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(start: u32, end: u32, size: u32) -> Config {
        let mut c = Config::default();
        c.era.ledger_start = start;
        c.era.ledger_end = end;
        c.era.partition_size = size;
        c
    }

    #[test]
    fn an_overwrite_starts_at_the_range_whatever_the_checkpoint() {
        assert_eq!(start_ledger(2, None, false), 2);
        assert_eq!(start_ledger(2, Some(31), false), 32);
        assert_eq!(start_ledger(42, Some(31), false), 42);
        assert_eq!(start_ledger(2, Some(31), true), 2);
        assert_eq!(start_ledger(2, None, true), 2);
    }

    #[test]
    fn a_worker_range_is_whole_grid_partitions_only() {
        let c = config(2, 101, 10);
        let got = partitions_in_range(&c, LedgerRange::new(12, 31)).unwrap();
        assert_eq!(
            got,
            vec![LedgerRange::new(12, 21), LedgerRange::new(22, 31)]
        );
        for (s, e) in [(13, 31), (12, 30), (92, 111), (2, 102)] {
            let err = partitions_in_range(&c, LedgerRange::new(s, e)).unwrap_err();
            assert!(err.to_string().contains("whole partitions"), "{err}");
        }
        // The last partition is clipped to ledger_end; the genesis ledger is skipped.
        let c = config(1, 95, 10);
        assert_eq!(
            partitions_in_range(&c, LedgerRange::new(2, 10)).unwrap(),
            vec![LedgerRange::new(2, 10)]
        );
        assert_eq!(
            partitions_in_range(&c, LedgerRange::new(91, 95)).unwrap(),
            vec![LedgerRange::new(91, 95)]
        );
        // Following the tip: any aligned range of the open grid.
        let c = config(2, 0, 10);
        assert_eq!(
            partitions_in_range(&c, LedgerRange::new(1_002, 1_011)).unwrap(),
            vec![LedgerRange::new(1_002, 1_011)]
        );
    }
}
