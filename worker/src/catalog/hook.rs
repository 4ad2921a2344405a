//! The catalog as a commit hook: runs in ledger order after a partition's manifest is committed
//! and before the checkpoint moves past it.
//!
//! * **strict** (`catalog.strict: true`): the catalog must be reachable at start, and a partition
//!   that cannot be recorded (after `perf.retry_attempts` tries) stops the run with exit code 1
//!   before the checkpoint moves; a restart replays that partition and records it.
//! * **lenient** (default): a failure is logged as a warning and the partition is queued; the
//!   queue is kept in `<checkpoint.dir>/catalog_pending_<network>_<era>_<version>.json`, retried
//!   (with back-off) before each next commit and at the end of the run, and loaded by the next
//!   run, always in ledger order. The run never silently stops recording.
//!
//! Recording is idempotent (upserts keyed by dataset and range), so a replayed partition updates
//! its rows and never duplicates them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::client::{Catalog, CatalogError, connect, within};
use super::records::{DatasetIdentity, LineageRecord, RecordContext, schema_hash, source_location};
use crate::config::{Config, redact_dsn};
use crate::metrics::{self, ErrorKind};
use crate::pipeline::{CommitEvent, CommitHook, HookError, HookFuture};

/// Longest wait between retries of an unreachable catalog in lenient mode.
const MAX_LENIENT_BACKOFF: Duration = Duration::from_secs(60);

/// Longest time one catalog operation (connecting and migrating, or recording one partition)
/// may take.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(60);

/// The catalog writer of a run. Cheap to clone; [`CatalogSink::hook`] goes to the pipeline, and
/// [`CatalogSink::finish`] is called after it.
#[derive(Clone)]
pub struct CatalogSink {
    inner: Arc<Inner>,
}

struct Inner {
    dsn: String,
    redacted: String,
    identity: DatasetIdentity,
    schema_hash: String,
    strict: bool,
    context: RecordContext,
    pending_file: Option<PathBuf>,
    retry_attempts: u32,
    retry_backoff: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    conn: Option<(Catalog, i32)>,
    pending: BTreeMap<(u32, u32), LineageRecord>,
    /// The partition published just before, for `prev_hash` when the catalog lacks it.
    previous: Option<(u32, String)>,
    failures: u32,
    next_attempt: Option<Instant>,
}

#[derive(Serialize, Deserialize)]
struct PendingFile {
    dataset: DatasetIdentity,
    partitions: Vec<LineageRecord>,
}

impl CatalogSink {
    /// The catalog of `config`, or `None` when `catalog.postgres_dsn` is empty. Strict mode
    /// returns an error when the catalog cannot be reached (or the queue left by an earlier run
    /// cannot be recorded); lenient mode logs a warning and carries on.
    pub async fn open(config: &Config) -> Result<Option<CatalogSink>, CatalogError> {
        let dsn = config.catalog.postgres_dsn.trim();
        if dsn.is_empty() {
            return Ok(None);
        }
        let identity = DatasetIdentity::from_config(config);
        let pending_file = config.checkpoint.enabled.then(|| {
            PathBuf::from(&config.checkpoint.dir).join(pending_file_name(
                &identity.network,
                &identity.era_id,
                &identity.version,
            ))
        });
        let sink = CatalogSink {
            inner: Arc::new(Inner {
                dsn: dsn.to_string(),
                redacted: redact_dsn(dsn),
                identity,
                schema_hash: schema_hash(),
                strict: config.catalog.strict,
                context: RecordContext {
                    source_type: config.source.mode.to_string(),
                    source_location: source_location(config),
                    storage_prefix: config.storage_prefix(),
                    previous: None,
                },
                pending_file,
                retry_attempts: config.perf.retry_attempts.max(1),
                retry_backoff: Duration::from_millis(config.perf.retry_backoff_ms),
                state: Mutex::new(State::default()),
            }),
        };
        sink.inner.start().await?;
        Ok(Some(sink))
    }

    /// The hook for `pipeline::run`.
    pub fn hook(&self) -> Box<dyn CommitHook> {
        Box::new(self.clone())
    }

    /// Records what is still queued (lenient mode) and says in the log what is left. Returns the
    /// number of partitions still not recorded.
    pub async fn finish(&self) -> usize {
        self.inner.finish().await
    }

    /// Where lenient mode keeps the partitions it could not record yet.
    pub fn pending_file(&self) -> Option<&PathBuf> {
        self.inner.pending_file.as_ref()
    }
}

impl CommitHook for CatalogSink {
    fn name(&self) -> &'static str {
        "catalog"
    }

    fn on_commit<'a>(&'a self, event: &'a CommitEvent) -> HookFuture<'a> {
        Box::pin(self.inner.on_commit(event))
    }

    /// Strict mode: the catalog must be usable (connected, nothing queued) before a partition
    /// is replaced, so an outage refuses the replacement with nothing changed.
    fn check_replace<'a>(&'a self, event: &'a CommitEvent) -> HookFuture<'a> {
        Box::pin(async move {
            if !self.inner.strict {
                return Ok(());
            }
            let mut state = self.inner.state.lock().await;
            self.inner
                .with_retries(&mut state, "check")
                .await
                .map(|_| ())
                .map_err(|e| HookError {
                    hook: "catalog",
                    message: format!(
                        "refusing to replace partition {}: the catalog is unusable (catalog.strict): {e}",
                        event.range
                    ),
                    conflict: false,
                })
        })
    }
}

impl Inner {
    async fn start(&self) -> Result<(), CatalogError> {
        let mut state = self.state.lock().await;
        self.load_pending(&mut state)?;
        let result = if self.strict {
            self.with_retries(&mut state, "connect").await
        } else {
            self.flush(&mut state).await
        };
        match result {
            Ok(recorded) => {
                tracing::info!(
                    catalog = %self.redacted,
                    dataset = %self.identity,
                    strict = self.strict,
                    "catalog connected"
                );
                if recorded > 0 {
                    tracing::info!(
                        partitions = recorded,
                        "catalog caught up: partitions left unrecorded by an earlier run are recorded"
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
                    "catalog unavailable at start; continuing (catalog.strict is false): committed partitions are queued and recorded when it is back"
                );
                Ok(())
            }
        }
    }

    async fn on_commit(&self, event: &CommitEvent) -> Result<(), HookError> {
        let mut state = self.state.lock().await;
        let mut context = self.context.clone();
        context.previous = state.previous.clone();
        let record = LineageRecord::from_event(event, &context);
        state.previous = Some((record.ledger_end, record.checksum.clone()));
        state
            .pending
            .insert((record.ledger_start, record.ledger_end), record);
        let range = event.range;
        if self.strict {
            let result = self.with_retries(&mut state, "record").await;
            metrics::set_catalog_pending(state.pending.len());
            return result.map(|_| ()).map_err(|e| HookError {
                hook: "catalog",
                message: format!("partition {range} not recorded (catalog.strict): {e}"),
                conflict: false,
            });
        }
        let due = state.next_attempt.is_none_or(|at| Instant::now() >= at);
        let outcome = if due {
            self.flush(&mut state).await.map_err(Some)
        } else {
            Err(None)
        };
        match outcome {
            Ok(recorded) if recorded > 1 => tracing::info!(
                partitions = recorded,
                "catalog is back: queued partitions recorded"
            ),
            Ok(_) => {}
            Err(error) => {
                if let Some(e) = &error {
                    self.note_failure(&mut state);
                    metrics::error(ErrorKind::Catalog);
                    tracing::debug!(error = %e, "catalog write failed");
                }
                self.save_pending(&state);
                tracing::warn!(
                    partition = %range,
                    pending = state.pending.len(),
                    pending_file = %self.pending_file_text(),
                    error = %error.map_or_else(|| "still unavailable; next retry after back-off".to_string(), |e| e.to_string()),
                    "catalog: partition not recorded yet; it is queued and recorded when the catalog is back"
                );
            }
        }
        metrics::set_catalog_pending(state.pending.len());
        Ok(())
    }

    async fn finish(&self) -> usize {
        let mut state = self.state.lock().await;
        if state.pending.is_empty() {
            return 0;
        }
        match self.flush(&mut state).await {
            Ok(recorded) => {
                tracing::info!(
                    partitions = recorded,
                    "catalog caught up: queued partitions recorded"
                );
            }
            Err(e) => {
                metrics::error(ErrorKind::Catalog);
                self.save_pending(&state);
                tracing::warn!(
                    pending = state.pending.len(),
                    first = %state.pending.keys().next().map(|(s, e)| format!("{s}-{e}")).unwrap_or_default(),
                    pending_file = %self.pending_file_text(),
                    error = %e,
                    "catalog: partitions committed but not recorded in the catalog; the next run records them"
                );
            }
        }
        metrics::set_catalog_pending(state.pending.len());
        state.pending.len()
    }

    /// Strict mode: flush, retrying transient failures with exponential back-off.
    async fn with_retries(&self, state: &mut State, what: &str) -> Result<usize, CatalogError> {
        let mut attempt = 1;
        loop {
            match self.flush(state).await {
                Ok(n) => return Ok(n),
                Err(e) if attempt < self.retry_attempts => {
                    let backoff = self.retry_backoff * 2u32.saturating_pow(attempt - 1);
                    tracing::warn!(attempt, error = %e, "catalog {what} failed; retrying in {backoff:?}");
                    metrics::retry("catalog");
                    metrics::error(ErrorKind::Catalog);
                    tokio::time::sleep(backoff).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Connects if needed, then records every queued partition in ledger order. Returns how
    /// many were recorded.
    async fn flush(&self, state: &mut State) -> Result<usize, CatalogError> {
        let result = self.flush_inner(state).await;
        if result.is_err() {
            // Reconnect next time: the connection may be what failed.
            state.conn = None;
        } else {
            state.failures = 0;
            state.next_attempt = None;
        }
        result
    }

    async fn flush_inner(&self, state: &mut State) -> Result<usize, CatalogError> {
        if state.conn.as_ref().is_none_or(|(c, _)| c.is_closed()) {
            let setup = async {
                let (mut catalog, _) = connect(&self.dsn).await?;
                let id = catalog
                    .upsert_dataset(&self.identity, &self.schema_hash)
                    .await?;
                Ok((catalog, id))
            };
            state.conn = Some(self.bounded("connect and migrate", setup).await?);
        }
        let had_file = !state.pending.is_empty();
        let mut recorded = 0;
        while let Some((&key, record)) = state.pending.first_key_value() {
            let (catalog, dataset_id) = state.conn.as_mut().expect("connected above");
            let prev = self
                .bounded(
                    "record a partition",
                    catalog.record_partition(*dataset_id, record),
                )
                .await?;
            tracing::debug!(
                partition = %format!("{}-{}", key.0, key.1),
                prev_hash = ?prev,
                "catalog: partition recorded"
            );
            state.pending.remove(&key);
            recorded += 1;
        }
        if had_file {
            self.save_pending(state);
        }
        Ok(recorded)
    }

    /// Runs one catalog operation with a time limit, so a hung database cannot stall the
    /// sequencer forever (the connection is then dropped and re-opened next time).
    async fn bounded<T>(
        &self,
        what: &str,
        operation: impl std::future::Future<Output = Result<T, CatalogError>>,
    ) -> Result<T, CatalogError> {
        within(OPERATION_TIMEOUT, &self.redacted, what, operation).await
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

    fn pending_file_text(&self) -> String {
        self.pending_file.as_ref().map_or_else(
            || "(memory only: checkpoint.enabled is false)".to_string(),
            |p| p.display().to_string(),
        )
    }

    fn load_pending(&self, state: &mut State) -> Result<(), CatalogError> {
        let Some(path) = &self.pending_file else {
            return Ok(());
        };
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "catalog: cannot read the queue of unrecorded partitions");
                return Ok(());
            }
        };
        match serde_json::from_slice::<PendingFile>(&bytes) {
            Ok(file) if file.dataset == self.identity => {
                tracing::info!(
                    path = %path.display(),
                    partitions = file.partitions.len(),
                    "catalog: an earlier run left partitions unrecorded; recording them first"
                );
                for r in file.partitions {
                    state.pending.insert((r.ledger_start, r.ledger_end), r);
                }
            }
            Ok(file) => tracing::warn!(
                path = %path.display(),
                found = %file.dataset,
                "catalog: ignoring a queue file of another dataset"
            ),
            Err(e) => {
                let aside = path.with_extension(format!(
                    "json.corrupt-{}",
                    chrono::Utc::now().format("%Y%m%dT%H%M%S")
                ));
                let _ = std::fs::rename(path, &aside);
                tracing::warn!(
                    path = %path.display(),
                    moved_to = %aside.display(),
                    error = %e,
                    "catalog: the queue of unrecorded partitions is unreadable; moved aside"
                );
            }
        }
        metrics::set_catalog_pending(state.pending.len());
        Ok(())
    }

    /// Writes the queue atomically and durably ([`crate::atomic_file`]), or removes the file
    /// when the queue is empty.
    fn save_pending(&self, state: &State) {
        let Some(path) = &self.pending_file else {
            return;
        };
        let result = if state.pending.is_empty() {
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        } else {
            let file = PendingFile {
                dataset: self.identity.clone(),
                partitions: state.pending.values().cloned().collect(),
            };
            let text = serde_json::to_vec_pretty(&file).expect("queue serializes");
            std::fs::create_dir_all(path.parent().unwrap_or(path)).and_then(|_| {
                crate::atomic_file::replace(path, &text)
                    .map_err(|e| std::io::Error::new(e.source.kind(), e))
            })
        };
        if let Err(e) = result {
            tracing::warn!(
                path = %path.display(),
                error = %e,
                "catalog: cannot save the queue of unrecorded partitions; they are only in memory"
            );
        }
    }
}

/// The queue file's name in `checkpoint.dir` (named like the checkpoint beside it).
pub fn pending_file_name(network: &str, era_id: &str, version_label: &str) -> String {
    format!("catalog_pending_{network}_{era_id}_{version_label}.json")
}
