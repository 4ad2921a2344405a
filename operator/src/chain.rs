//! Harvest and sequencing: read the committed manifests from storage in ledger order, verify
//! each one ([`crate::plan::verify_manifest`]), append its audit (PAS) event, and advance the
//! checkpoint. Storage and the audit log sit behind small traits so the planner's properties can
//! be tested against in-memory versions with the same semantics.
//!
//! Why this is safe to run from any number of operators and after any crash:
//! * the checkpoint is derived, not trusted: sequencing restarts from `status.checkpoint` (or
//!   from the first partition when the status is lost) and re-reads storage;
//! * [`AuditLog::append`] must be idempotent per partition and refuse a second, different event
//!   for the same partition. With the object-store outbox (conditional create on a key derived
//!   from the ledger range) that is what fences two operators: the loser finds the winner's event,
//!   adopts it if it is identical in substance, and otherwise stops with `AuditConflict`.

use std::sync::Arc;

use bronze::partition::LedgerRange;
use bronze::publish::Manifest;
use futures::future::BoxFuture;
use sha2::{Digest, Sha256};

use crate::crd::{BronzeBackfillSpec, BronzeBackfillStatus, CheckpointStatus};
use crate::plan::{Expected, Fault, Grid, ObservedJob, Sequenced, rfc3339, verify_manifest};

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
}

/// Read access to the backfill's dataset.
pub trait DatasetStore: Send + Sync {
    /// The committed partition of exactly `range`, if any.
    fn committed(&self, range: LedgerRange) -> BoxFuture<'_, Result<Option<Committed>, ReadError>>;
    /// The committed partition with the lowest start, if any (to recover `ingestedAt`).
    fn first_committed(&self) -> BoxFuture<'_, Result<Option<Manifest>, ReadError>>;
}

/// The newest ledger in the source datastore (follow mode).
pub trait TipSource: Send + Sync {
    fn latest_ledger(&self) -> BoxFuture<'_, Result<Option<u32>, ReadError>>;
}

/// What an audit event records about one committed partition.
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
pub enum AuditError {
    /// A different event already holds this partition's place in the chain: appending would
    /// fork it. Never retried automatically.
    #[error("audit chain conflict at {range}: {message}")]
    Conflict { range: LedgerRange, message: String },
    /// The outbox cannot be reached; retried on the next reconcile.
    #[error("audit outbox unavailable: {0}")]
    Unavailable(String),
}

/// The audit chain (PAS): one event per committed partition, each linked to the previous one.
pub trait AuditLog: Send + Sync {
    /// Appends the event for `record` after `prev_event_hash` (`None` for the first event), or
    /// returns the event already recorded for this partition when it has the same previous hash
    /// and the same table checksums. Anything else there is a [`AuditError::Conflict`].
    fn append<'a>(
        &'a self,
        record: &'a PartitionRecord,
        prev_event_hash: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Appended, AuditError>>;

    /// Where the chain is recorded, for `status.pas.outbox`.
    fn describe(&self) -> String;
}

/// Placeholder audit log until the `pas` branch's object-store outbox lands: the chain exists
/// only in `status.pas` (head and count). Its event hash is a pure function of the previous hash
/// and the partition (dataset, range, table checksums), so an operator that lost its status
/// rebuilds the very same chain from storage, and two operators compute the same heads.
///
/// What it does NOT do (the outbox will): keep events durably outside the status, deliver them
/// over HTTP, or fence a second operator with a conditional create. Until then two operators
/// cannot fork it only because both derive identical hashes from the same storage.
///
/// TODO(pas): replace with `bronze::pas` outbox (events at a key derived from the ledger range,
/// `PutMode::Create`, then HTTP delivery with an idempotency key), via [`AuditFactory`].
#[derive(Debug, Default, Clone)]
pub struct StatusOnlyAuditLog;

impl StatusOnlyAuditLog {
    pub fn event_hash(record: &PartitionRecord, prev: Option<&str>) -> String {
        let mut h = Sha256::new();
        for part in [
            prev.unwrap_or(""),
            &record.network,
            &record.era_id,
            &record.version_label,
            &record.range.start.to_string(),
            &record.range.end.to_string(),
        ] {
            h.update(part.as_bytes());
            h.update(b"|");
        }
        for (name, table) in &record.manifest.tables {
            h.update(format!("{name}:{}|", table.checksum).as_bytes());
        }
        format!("sha256:{}", hex::encode(h.finalize()))
    }
}

impl AuditLog for StatusOnlyAuditLog {
    fn append<'a>(
        &'a self,
        record: &'a PartitionRecord,
        prev_event_hash: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Appended, AuditError>> {
        Box::pin(async move {
            Ok(Appended {
                event_hash: Self::event_hash(record, prev_event_hash),
                existing: false,
            })
        })
    }

    fn describe(&self) -> String {
        "status-only (placeholder; no durable outbox)".into()
    }
}

/// Opens the audit log of a backfill (`None` when PAS is disabled).
pub trait AuditFactory: Send + Sync {
    fn open(&self, spec: &BronzeBackfillSpec) -> Option<Arc<dyn AuditLog>>;
}

/// The placeholder factory: [`StatusOnlyAuditLog`] when `spec.pas.enabled`.
#[derive(Debug, Default)]
pub struct StatusOnlyAuditFactory;

impl AuditFactory for StatusOnlyAuditFactory {
    fn open(&self, spec: &BronzeBackfillSpec) -> Option<Arc<dyn AuditLog>> {
        if spec.pas.enabled {
            Some(Arc::new(StatusOnlyAuditLog))
        } else {
            None
        }
    }
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

/// Sequences the committed partitions after `start`, in ledger order, at most `max_steps` of them.
pub async fn sequence(
    spec: &BronzeBackfillSpec,
    ingested_at: &str,
    start: SequenceStart,
    store: &dyn DatasetStore,
    audit: Option<&dyn AuditLog>,
    max_steps: usize,
) -> Sequenced {
    let grid = Grid::of(spec);
    let mut out = Sequenced {
        checkpoint: start.checkpoint,
        chain_head: start.chain_head,
        event_count: start.event_count,
        outbox: audit.map(|a| a.describe()),
        ..Default::default()
    };
    for _ in 0..max_steps {
        let done_through = out.checkpoint.as_ref().map(|c| c.last_committed_ledger);
        let Some(range) = grid.next_partition(done_through) else {
            return out; // the bounded range is complete
        };
        let committed = match store.committed(range).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                out.waiting_for = Some(range);
                return out;
            }
            Err(e) if e.transient => {
                out.trouble = Some(format!("reading partition {range}: {e}"));
                return out;
            }
            Err(e) => {
                out.fault = Some(Fault {
                    range,
                    reason: "VerificationFailed",
                    message: e.message,
                });
                return out;
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
            range,
            &expected,
            committed.parquet_size,
        ) {
            Ok(c) => c,
            Err(message) => {
                out.fault = Some(Fault {
                    range,
                    reason: "VerificationFailed",
                    message,
                });
                return out;
            }
        };
        if let Some(audit) = audit {
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
            match audit.append(&record, out.chain_head.as_deref()).await {
                Ok(appended) => {
                    out.chain_head = Some(appended.event_hash);
                    out.event_count += 1;
                }
                Err(AuditError::Conflict { message, .. }) => {
                    out.fault = Some(Fault {
                        range,
                        reason: "AuditConflict",
                        message,
                    });
                    return out;
                }
                Err(e @ AuditError::Unavailable(_)) => {
                    out.trouble = Some(e.to_string());
                    return out;
                }
            }
        }
        out.checkpoint = Some(checkpoint);
        out.newly.push(range);
    }
    out.more = grid
        .next_partition(out.checkpoint.as_ref().map(|c| c.last_committed_ledger))
        .is_some();
    out
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
