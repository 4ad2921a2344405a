//! The catalog of a standalone run: the engine's [`CatalogLog`] for the standalone sequencer,
//! which writes each partition's rows through the sequencing engine ([`crate::sequence`]: [`CatalogRun`], [`catch_up_catalog`]) in ledger
//! order, after its manifest is committed and before the checkpoint moves past it.
//!
//! * **strict** (`catalog.strict: true`): the catalog must be usable at start, and a partition
//!   that cannot be recorded (after `perf.retry_attempts` tries) stops the run with exit code 1
//!   before the checkpoint moves; a restart replays that partition and records it.
//! * **lenient** (default): a failure is logged as a warning and the run goes on; the catalog is
//!   behind. What it lacks is derived from the catalog itself, as the operator does: the grid
//!   partitions up to the last one published that have no rows ([`crate::sequence::gaps`]),
//!   written from their manifests in storage, in ledger order: retried (with back-off) before
//!   each next commit and at the end of the run, and at the start of the next run (up to the
//!   checkpoint). No queue is kept on local disk; a `catalog_pending_*.json` left by an earlier
//!   version is ignored (its partitions are among the gaps) and removed.
//!
//! Recording is idempotent (upserts keyed by dataset and range), so a replayed partition updates
//! its rows and never duplicates them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use super::log::PgCatalog;
use crate::checkpoint::CheckpointStore;
use crate::config::Config;
use crate::metrics::{self, ErrorKind};
use crate::partition::{LedgerRange, PartitionGrid};
use crate::pipeline::open_output_location;
use crate::publish::{Committer, DatasetLayout};
use crate::sequence::{
    CatalogLog, CatalogRun, Head, ObjectDataset, Outcome, PartitionRecord, Position, RangeSummary,
    Recorded, Sequencing, catch_up_catalog,
};
use futures::future::BoxFuture;

/// Longest wait between retries of an unreachable catalog in lenient mode.
const MAX_LENIENT_BACKOFF: Duration = Duration::from_secs(60);

/// The catalog writer of a run. Cheap to clone; [`CatalogSink::hook`] goes to the pipeline, and
/// [`CatalogSink::finish`] is called after it.
#[derive(Clone)]
pub struct CatalogSink {
    inner: Arc<Inner>,
}

struct Inner {
    log: PgCatalog,
    strict: bool,
    layout: DatasetLayout,
    grid: PartitionGrid,
    store: ObjectDataset,
    retry_backoff: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// What the catalog is known to hold (`None` until it could be read).
    recorded: Option<Recorded>,
    /// The last partition published (or the checkpoint's at start): gaps are looked for up to it.
    through: Option<u32>,
    /// Rows may be missing below `through` (a lenient failure, or the catalog unreadable).
    behind: bool,
    /// Partitions known to be committed without rows (`catalog_pending_partitions`).
    unrecorded: usize,
    failures: u32,
    next_attempt: Option<Instant>,
}

impl CatalogSink {
    /// The catalog of `config`, or `None` when `catalog.postgres_dsn` is empty. Rows missing up
    /// to the checkpoint are written first. Strict mode returns an error when the catalog cannot
    /// be used; lenient mode logs a warning and carries on.
    pub async fn open(config: &Config) -> Result<Option<CatalogSink>, String> {
        let dsn = config.catalog.postgres_dsn.trim();
        if dsn.is_empty() {
            return Ok(None);
        }
        let strict = config.catalog.strict;
        let mut log = PgCatalog::new(config.clone())?;
        if strict {
            log = log.with_retries(
                config.perf.retry_attempts.max(1),
                Duration::from_millis(config.perf.retry_backoff_ms),
            );
        }
        let layout = DatasetLayout::from_config(config);
        let location = open_output_location(config).map_err(|e| e.to_string())?;
        let store = ObjectDataset::new(Committer {
            location,
            layout: layout.clone(),
            allow_overwrite: false,
        });
        let through = match config.checkpoint.enabled {
            true => CheckpointStore::new(config)
                .load()
                .ok()
                .flatten()
                .map(|cp| cp.last_committed_ledger),
            false => None,
        };
        let sink = CatalogSink {
            inner: Arc::new(Inner {
                log,
                strict,
                layout,
                grid: PartitionGrid::new(
                    config.era.ledger_start,
                    config.era.ledger_end,
                    config.era.partition_size.max(1),
                ),
                store,
                retry_backoff: Duration::from_millis(config.perf.retry_backoff_ms),
                state: Mutex::new(State {
                    through,
                    behind: true,
                    ..State::default()
                }),
            }),
        };
        if config.checkpoint.enabled {
            remove_leftover_queue(config);
        }
        sink.inner.start().await?;
        Ok(Some(sink))
    }

    /// The catalog for `pipeline::run` ([`crate::pipeline::Records`]).
    pub fn log(&self) -> Arc<dyn CatalogLog> {
        Arc::new(self.clone())
    }

    /// Writes what is still missing (lenient mode) and says in the log what is left. Returns
    /// the number of partitions known to be still not recorded.
    pub async fn finish(&self) -> usize {
        self.inner.finish().await
    }
}

/// The queue file of earlier versions in `checkpoint.dir` (named like the checkpoint beside it).
pub fn pending_file_name(network: &str, era_id: &str, version_label: &str) -> String {
    format!("catalog_pending_{network}_{era_id}_{version_label}.json")
}

/// Removes the queue file an earlier version kept: what it listed is derived from the catalog
/// now (its partitions are among the gaps below the checkpoint).
fn remove_leftover_queue(config: &Config) {
    let path = PathBuf::from(&config.checkpoint.dir).join(pending_file_name(
        &config.era.network,
        &config.era.era_id,
        &config.era.version_label,
    ));
    match std::fs::remove_file(&path) {
        Ok(()) => tracing::info!(
            path = %path.display(),
            "catalog: removed the queue file of an earlier version; missing rows are derived from the catalog"
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "catalog: cannot remove the queue file of an earlier version (it is ignored)")
        }
    }
}

impl CatalogLog for CatalogSink {
    fn strict(&self) -> bool {
        self.inner.strict
    }

    fn recorded(&self) -> BoxFuture<'_, Result<Vec<(LedgerRange, String)>, String>> {
        self.inner.log.recorded()
    }

    fn summary(
        &self,
        first: u32,
        through: u32,
    ) -> BoxFuture<'_, Result<Option<RangeSummary>, String>> {
        self.inner.log.summary(first, through)
    }

    /// Strict: the error when the rows could not be written. Lenient: always `Ok`; a partition
    /// not written leaves the catalog behind, and the rows are written by a later catch-up.
    fn record<'a>(
        &'a self,
        record: &'a PartitionRecord,
        previous: Option<(u32, String)>,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(self.inner.on_commit(record, previous))
    }

    fn describe(&self) -> String {
        self.inner.log.describe()
    }

    /// Strict mode: the catalog must be usable (readable, nothing missing) before a partition
    /// is replaced, so an outage refuses the replacement with nothing changed.
    fn check_replace(&self, range: LedgerRange) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            if !self.inner.strict {
                return Ok(());
            }
            let mut state = self.inner.state.lock().await;
            self.inner.catch_up(&mut state).await.map(|_| ()).map_err(|e| {
                format!(
                    "refusing to replace partition {range}: the catalog is unusable (catalog.strict): {e}"
                )
            })
        })
    }
}

impl Inner {
    async fn start(&self) -> Result<(), String> {
        let mut state = self.state.lock().await;
        let behind_before = state.through.is_some();
        match self.catch_up(&mut state).await {
            Ok(written) => {
                tracing::info!(
                    catalog = %self.log.describe(),
                    dataset = %format!("{}/{}/{}", self.layout.network, self.layout.era_id, self.layout.version_label),
                    strict = self.strict,
                    "catalog connected"
                );
                if written > 0 && behind_before {
                    tracing::info!(
                        partitions = written,
                        "catalog caught up: partitions below the checkpoint had no rows; recording them first from their manifests"
                    );
                }
                Ok(())
            }
            Err(e) if self.strict => {
                metrics::error(ErrorKind::Catalog);
                Err(e)
            }
            Err(e) => {
                self.note_failure(&mut state);
                metrics::error(ErrorKind::Catalog);
                tracing::warn!(
                    error = %e,
                    "catalog unavailable at start; continuing (catalog.strict is false): committed partitions are recorded when it is back"
                );
                Ok(())
            }
        }
    }

    /// Writes the rows missing up to `state.through` with the engine's catch-up. Returns how
    /// many were written, or why it stopped (then the catalog stays behind).
    async fn catch_up(&self, state: &mut State) -> Result<usize, String> {
        if !state.behind {
            return Ok(0);
        }
        let run = Sequencing {
            layout: &self.layout,
            grid: &self.grid,
            ingested_at: None,
            store: &self.store,
            table: None,
            pas: None,
            catalog: Some(&self.log),
            max_steps: usize::MAX,
        };
        let mut out = Outcome {
            head: Head {
                position: state.through.map(|end| Position {
                    last_committed_ledger: end,
                    partition: LedgerRange::new(end, end),
                    checksum: String::new(),
                    last_ledger_hash: None,
                }),
                ..Head::default()
            },
            ..Outcome::default()
        };
        let mut cat = CatalogRun::new(&self.log);
        catch_up_catalog(&run, &mut out, &mut cat, usize::MAX).await;
        let (gaps, written) = (cat.gaps(), cat.caught_up());
        let error = cat.error().map(str::to_string);
        let found = cat.into_recorded();
        if found.is_some() {
            state.recorded = found;
            state.unrecorded = gaps;
        }
        metrics::set_catalog_pending(state.unrecorded);
        match error {
            None => {
                state.behind = false;
                state.failures = 0;
                state.next_attempt = None;
                Ok(written)
            }
            Some(e) => Err(e),
        }
    }

    async fn on_commit(
        &self,
        record: &PartitionRecord,
        previous: Option<(u32, String)>,
    ) -> Result<(), String> {
        let mut state = self.state.lock().await;
        let range = record.range;
        let due = state.next_attempt.is_none_or(|at| Instant::now() >= at);
        if state.behind && (due || self.strict) {
            match self.catch_up(&mut state).await {
                Ok(written) if written > 0 => tracing::info!(
                    partitions = written,
                    "catalog is back: missing partitions recorded"
                ),
                Ok(_) => {}
                Err(e) => {
                    self.note_failure(&mut state);
                    metrics::error(ErrorKind::Catalog);
                    tracing::debug!(error = %e, "catalog catch-up failed");
                }
            }
        }
        let result = if state.behind {
            Err(None)
        } else {
            // The rows the catalog holds before it win over the sequencer's head.
            let before = range.start.checked_sub(1).and_then(|end| {
                let (_, checksum) = state.recorded.as_ref()?.get(&end)?;
                Some((end, checksum.clone()))
            });
            let result = self.log.record(record, before.or(previous)).await;
            if let (Ok(()), Some(recorded)) = (&result, &mut state.recorded) {
                let checksum = record.manifest.primary().map(|t| t.checksum.clone());
                recorded.insert(range.end, (range, checksum.unwrap_or_default()));
            }
            result.map_err(Some)
        };
        state.through = Some(state.through.map_or(range.end, |t| t.max(range.end)));
        match result {
            Ok(()) => {
                metrics::set_catalog_pending(state.unrecorded);
                return Ok(());
            }
            Err(Some(e)) if self.strict => {
                metrics::error(ErrorKind::Catalog);
                return Err(e);
            }
            Err(error) => {
                if let Some(e) = &error {
                    self.note_failure(&mut state);
                    metrics::error(ErrorKind::Catalog);
                    tracing::debug!(error = %e, "catalog write failed");
                }
                state.behind = true;
                state.unrecorded += 1;
                tracing::warn!(
                    partition = %range,
                    unrecorded = state.unrecorded,
                    error = %error.unwrap_or_else(|| "still unavailable; next retry after back-off".to_string()),
                    "catalog: partition not recorded yet; it is recorded from its manifest when the catalog is back (missing rows are derived from the catalog)"
                );
            }
        }
        metrics::set_catalog_pending(state.unrecorded);
        Ok(())
    }

    async fn finish(&self) -> usize {
        let mut state = self.state.lock().await;
        if !state.behind {
            return 0;
        }
        match self.catch_up(&mut state).await {
            Ok(written) => {
                tracing::info!(
                    partitions = written,
                    "catalog caught up: missing partitions recorded"
                );
            }
            Err(e) => {
                metrics::error(ErrorKind::Catalog);
                tracing::warn!(
                    unrecorded = state.unrecorded,
                    through = ?state.through,
                    error = %e,
                    "catalog: partitions committed but not recorded in the catalog; the next run records them"
                );
            }
        }
        metrics::set_catalog_pending(state.unrecorded);
        state.unrecorded
    }

    fn note_failure(&self, state: &mut State) {
        state.failures += 1;
        let backoff = self
            .retry_backoff
            .max(Duration::from_millis(100))
            .saturating_mul(2u32.saturating_pow(state.failures.saturating_sub(1).min(16)))
            .min(MAX_LENIENT_BACKOFF);
        state.next_attempt = Some(Instant::now() + backoff);
    }
}
