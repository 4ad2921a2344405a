//! The PAS chain (PAS) of a backfill, written with the worker's own PAS module
//! (`bronze::pas`), so the operator stores exactly what a standalone copier configured with
//! `pas.outbox: storage` stores: Go-compatible v1.1 events, one object per partition at
//! `<storage prefix>_pas/<network>/<era>/<version>/<start>-<end>.json` in the output storage,
//! plus the recorded head (`_chain-head.json`) and delivery cursor (`_delivery.json`).
//! `bronze-copier verify` checks it like any other chain.
//!
//! * **Outbox first.** An event is created conditionally (`PutMode::Create`) before anything else
//!   sees it; `status.pas.chainHead` is the hash of the last event stored.
//! * **Fencing.** A second operator that reaches the same partition finds the first one's event:
//!   it adopts it when it links to the same previous event and describes the same partition, and
//!   stops with `AuditConflict` otherwise ([`bronze::pas::PasStream::append_after`]).
//! * **Delivery** (with `spec.pas.endpoint`) happens after the event is stored, in chain order,
//!   with the event id as `Idempotency-Key`. Lenient: a background task retries; strict: the
//!   checkpoint waits until the endpoint accepts the event. Undelivered events are re-sent when
//!   the operator (re)opens the chain, so a failed delivery never loses an event.
//!
//! One [`PasOutboxLog`] per backfill lives across reconciles ([`PasOutboxFactory`] caches it): the
//! chain is opened once, at its recorded head (the head record names the head event; two reads,
//! whatever the chain's length), or read and checked in full with delivery or an older head
//! record. `verify` checks the whole history.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bronze::config::{Config, PAS_OUTBOX_STORAGE};
use bronze::pas::{Outbox, PasError, PasStream, delivery_from_config, outbox_from_config};
use bronze::pipeline::open_output_location;
use bronze::publish::DatasetLayout;
use futures::future::BoxFuture;

use crate::crd::BronzeBackfillSpec;
use crate::job::worker_config;
use crate::sequencer::{Appended, PartitionRecord, PasAppendError, PasFactory, PasLog};

/// The PAS part of the config the operator opens a chain with: the worker's config for `spec`
/// (same paths, same grid) with the PAS stream on, in the output storage.
pub fn pas_config(spec: &BronzeBackfillSpec) -> Result<Config, String> {
    // INGESTED_AT does not shape paths or events; any valid value opens the same chain.
    let mut config = worker_config(spec, "1970-01-01T00:00:00Z").map_err(|e| e.to_string())?;
    let pas = &mut config.pas;
    pas.enabled = true;
    pas.outbox = PAS_OUTBOX_STORAGE;
    pas.endpoint = spec.pas.endpoint.clone().unwrap_or_default();
    pas.strict = spec.pas.strict;
    pas.token_env = spec.pas.token_env.clone().unwrap_or_default();
    Ok(config)
}

/// Everything `bronze-copier verify` checks (partitions, rows, links, the PAS chain, its head and
/// delivery cursor, and the catalog when `spec.catalog.dsnEnv`'s variable is set here) for the
/// dataset of `spec`, read with this process's credentials.
pub async fn verify(spec: &BronzeBackfillSpec) -> Result<bronze::verify::Report, String> {
    let mut config = pas_config(spec)?;
    config.pas.enabled = spec.pas.enabled;
    // The catalog too, when the operator's DSN variable is set here.
    if let Some(dsn) = spec
        .catalog
        .as_ref()
        .and_then(|c| std::env::var(&c.dsn_env).ok())
        .filter(|d| !d.trim().is_empty())
    {
        config.catalog.postgres_dsn = dsn.trim().to_string();
    }
    bronze::verify::verify(&config)
        .await
        .map_err(|e| e.to_string())
}

/// One backfill's PAS chain: a [`PasStream`] opened on first use (and again after an open
/// that failed, e.g. storage unreachable).
pub struct PasOutboxLog {
    config: Config,
    outbox: Arc<dyn Outbox>,
    stream: tokio::sync::OnceCell<PasStream>,
}

impl PasOutboxLog {
    /// The outbox `config` names (see [`pas_config`]). Nothing is read yet; fails only when
    /// the output storage cannot be addressed at all.
    pub fn new(config: Config) -> Result<Self, String> {
        let output = open_output_location(&config).map_err(|e| e.to_string())?;
        let outbox = outbox_from_config(&config, &output);
        Ok(Self::with_outbox(config, outbox))
    }

    /// The chain of `config`'s dataset in `outbox` (tests use an in-memory object store).
    pub fn with_outbox(config: Config, outbox: Arc<dyn Outbox>) -> Self {
        Self {
            config,
            outbox,
            stream: tokio::sync::OnceCell::new(),
        }
    }

    /// Opens the stream at its recorded head ([`PasStream::open_at_head`]): two reads; with
    /// delivery, as `bronze::pas::open_from_config` does (the chain is read back and checked,
    /// undelivered events are queued again).
    async fn stream(&self) -> Result<&PasStream, PasError> {
        self.stream
            .get_or_try_init(|| async {
                let delivery = delivery_from_config(&self.config, |k| std::env::var(k).ok())?;
                // At the head: a restart costs two reads, not one per partition.
                PasStream::open_at_head(
                    DatasetLayout::from_config(&self.config),
                    self.outbox.clone(),
                    delivery,
                )
                .await
            })
            .await
    }

    /// PAS events held in memory (`None` before the chain is opened).
    pub async fn events_in_memory(&self) -> Option<usize> {
        Some(self.stream.get()?.events_in_memory().await)
    }

    /// Stops background delivery (undelivered events stay in the outbox for the next start).
    pub async fn close(&self) {
        if let Some(stream) = self.stream.get() {
            stream.finish(false).await;
        }
    }
}

impl Drop for PasOutboxLog {
    fn drop(&mut self) {
        if let Some(stream) = self.stream.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move { stream.finish(false).await });
        }
    }
}

/// Conflicts stop the backfill (`AuditConflict`); everything else is retried next reconcile.
fn pas_error(range: bronze::partition::LedgerRange, e: PasError) -> PasAppendError {
    if e.is_conflict()
        || matches!(
            e,
            PasError::Outbox(bronze::pas::OutboxError::Corrupt { .. })
        )
    {
        PasAppendError::Conflict {
            range,
            message: e.to_string(),
        }
    } else if matches!(e, PasError::Delivery(_)) {
        PasAppendError::Unavailable(format!(
            "{e} (pas.strict: the event is stored in the outbox; delivery is retried before the checkpoint moves)"
        ))
    } else {
        PasAppendError::Unavailable(e.to_string())
    }
}

impl PasLog for PasOutboxLog {
    fn ready(
        &self,
        at: bronze::partition::LedgerRange,
    ) -> BoxFuture<'_, Result<(), PasAppendError>> {
        Box::pin(async move {
            self.stream().await.map_err(|e| pas_error(at, e))?;
            Ok(())
        })
    }

    fn append<'a>(
        &'a self,
        record: &'a PartitionRecord,
        prev_event_hash: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Appended, PasAppendError>> {
        Box::pin(async move {
            let range = record.range;
            let stream = self.stream().await.map_err(|e| pas_error(range, e))?;
            if record.replaced {
                // A rebuilt partition swapped in (`spec.rebuild`): its replacement event.
                let prev = prev_event_hash.unwrap_or("");
                let (head, written) = stream
                    .replace_after(range, &record.manifest, prev)
                    .await
                    .map_err(|e| pas_error(range, e))?;
                return Ok(Appended {
                    event_hash: head.map_or_else(|| prev.to_string(), |e| e.chain.event_hash),
                    existing: !written,
                });
            }
            let (event, existing) = stream
                .append_after(range, &record.manifest, prev_event_hash.unwrap_or(""))
                .await
                .map_err(|e| pas_error(range, e))?;
            if existing {
                tracing::info!(partition = %range, event_hash = %event.chain.event_hash, "PAS event already stored; adopted");
            }
            Ok(Appended {
                event_hash: event.chain.event_hash,
                existing,
            })
        })
    }

    fn describe(&self) -> String {
        self.outbox.describe()
    }

    fn undelivered(&self) -> Option<u64> {
        if self.config.pas.endpoint.is_empty() {
            return None;
        }
        Some(self.stream.get().map_or(0, |s| s.pending() as u64))
    }
}

/// [`PasOutboxLog`]s by backfill, kept while the backfill's PAS config stays the same.
#[derive(Default)]
pub struct PasOutboxFactory {
    open: Mutex<HashMap<String, Arc<PasOutboxLog>>>,
}

impl PasOutboxFactory {
    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<PasOutboxLog>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops every chain's background delivery (shutdown).
    pub async fn close_all(&self) {
        let all: Vec<Arc<PasOutboxLog>> = self.cache().drain().map(|(_, a)| a).collect();
        for pas in all {
            pas.close().await;
        }
    }
}

impl PasFactory for PasOutboxFactory {
    fn open(&self, key: &str, spec: &BronzeBackfillSpec) -> Option<Arc<dyn PasLog>> {
        if !spec.pas.enabled {
            return None;
        }
        let config = match pas_config(spec) {
            Ok(c) => c,
            Err(message) => return Some(Arc::new(Unopenable(message))),
        };
        let mut cache = self.cache();
        if let Some(pas) = cache.get(key)
            && pas.config == config
        {
            return Some(pas.clone());
        }
        let pas = match PasOutboxLog::new(config) {
            Ok(a) => Arc::new(a),
            Err(message) => return Some(Arc::new(Unopenable(message))),
        };
        // A replaced one stops its delivery when its last reconcile lets go of it (Drop).
        cache.insert(key.to_string(), pas.clone());
        Some(pas)
    }

    fn forget(&self, key: &str) {
        self.cache().remove(key);
    }
}

#[cfg(test)]
mod tests;

/// A spec whose PAS config cannot even be built: every append says why.
struct Unopenable(String);

impl PasLog for Unopenable {
    fn append<'a>(
        &'a self,
        _record: &'a PartitionRecord,
        _prev_event_hash: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Appended, PasAppendError>> {
        Box::pin(async move { Err(PasAppendError::Unavailable(self.0.clone())) })
    }

    fn describe(&self) -> String {
        format!("unavailable: {}", self.0)
    }
}
