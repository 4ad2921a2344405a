//! The standalone run: partitions built concurrently (download → decode/validate → Parquet →
//! upload), published strictly in ledger order by the sequencer, with the checkpoint after each.
//!
//! ```text
//! grid.partitions_from(next) ──► build (≤ max_in_flight at once) ──► sequencer (in order)
//!                                 fetch ▸ decode ▸ validate ▸ encode ▸ upload     link ▸ manifest ▸ hooks ▸ checkpoint
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
pub use sequencer::{
    CommitEvent, CommitHook, HookError, HookFuture, SequenceError, Sequencer, parse_hash,
};

use crate::checkpoint::{Checkpoint, CheckpointError, CheckpointStore};
use crate::config::Config;
use crate::parquet::WriterSettings;
use crate::partition::{LedgerRange, PartitionGrid};
use crate::publish::{CommitError, Committer, DatasetLayout, Manifest};
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
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    pub progress: ProgressSnapshot,
    pub last_committed: Option<u32>,
    pub interrupted: bool,
}

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub show_progress_bar: bool,
}

/// The output location from `storage.*`.
pub fn open_output_location(config: &Config) -> Result<Location, StoreError> {
    let s = &config.storage;
    match s.backend.as_str() {
        "gcs" => store::gcs("storage.gcs_bucket", &s.gcs_bucket, "", &config.perf),
        "s3" => store::s3(
            "storage.s3_bucket",
            &s.s3_bucket,
            "",
            &s.s3_endpoint,
            &s.s3_region,
            &config.perf,
        ),
        _ => store::local("storage.local_dir", &s.local_dir, true),
    }
}

/// Runs the backfill described by `config` until the range is done (or forever when following
/// the tip) or `cancel` fires.
pub async fn run(
    config: &Config,
    hooks: Vec<Box<dyn CommitHook>>,
    cancel: CancellationToken,
    options: RunOptions,
) -> Result<RunSummary, RunError> {
    let source = Arc::new(Datastore::open(config, open_source_location(config)?).await?);
    let layout = DatasetLayout::from_config(config);
    let committer = Committer {
        location: open_output_location(config)?,
        layout: layout.clone(),
        allow_overwrite: config.era.allow_overwrite,
    };
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
    let next = checkpoint
        .as_ref()
        .map_or(grid.first_ledger(), |cp| {
            cp.last_committed_ledger.saturating_add(1)
        })
        .max(grid.first_ledger());
    if let Some(cp) = &checkpoint {
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
    let previous = previous_partition(&grid, next, &committer).await?;
    let prior_last_hash = prior_hash(checkpoint.as_ref(), next, previous.as_ref());
    if prior_last_hash.is_none() && next > grid.first_ledger() {
        tracing::warn!(
            ledger = next,
            "hash of the ledger before the first partition is unknown; that one link is not checked"
        );
    }
    let (ingested_at, ingested_at_millis) =
        ingested_at(config, checkpoint.as_ref(), previous.as_ref());
    tracing::info!(
        source = %source.uri(),
        output = %committer.location.uri_of(&layout.dataset_dir()),
        first_ledger = next,
        last_ledger = ?grid.last_ledger(),
        partition_size = config.era.partition_size,
        max_in_flight = config.perf.max_in_flight_partitions,
        ingested_at = %ingested_at,
        "starting backfill"
    );

    let total = grid
        .last_ledger()
        .map(|last| u64::from(last.saturating_sub(next)) + 1)
        .filter(|_| grid.last_ledger().is_some_and(|last| next <= last));
    let progress = Arc::new(Progress::new(total, options.show_progress_bar));
    let env = Arc::new(BuildEnv {
        source: source.clone(),
        committer: committer.clone(),
        writer: WriterSettings {
            compression: config.storage.compression.clone(),
            compression_level: config.storage.compression_level,
            row_group_bytes: config.storage.row_group_bytes,
            network: config.era.network.clone(),
            era_id: config.era.era_id.clone(),
            version_label: config.era.version_label.clone(),
            ingested_at_millis,
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
    });
    let mut sequencer = Sequencer {
        committer,
        layout,
        checkpoint: checkpoint_store,
        hooks,
        ingested_at,
        network_passphrase: source.manifest().map(|m| m.network_passphrase.clone()),
        prior_last_hash,
        last_committed: checkpoint.as_ref().map(|cp| cp.last_committed_ledger),
    };

    let mut builds = futures::stream::iter(grid.partitions_from(next))
        .map(|range| {
            let env = env.clone();
            let task = AbortOnDrop(tokio::spawn(build_partition(env, range)));
            async move { (range, task.await) }
        })
        .buffered(config.perf.max_in_flight_partitions.max(1));
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
        sequencer
            .publish(built, &progress)
            .await
            .inspect_err(|e| crate::metrics::partition_failed(e.metric_kind()))?;
        progress.log();
    }
    drop(builds);
    progress.finish();
    Ok(RunSummary {
        progress: progress.snapshot(),
        last_committed: sequencer.last_committed,
        interrupted,
    })
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
