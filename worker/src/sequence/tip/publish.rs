//! The provisional tip's I/O: a loop that, while following, reads the datastore objects after
//! the table's published prefix, validates their ledgers as a build does, writes them as one
//! provisional file with the sealed writer's settings, and commits its add ([`plan::publish`]).
//! The loop plans from the log at every round, so a seal, a restart or another writer only
//! moves where it starts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::{ObjectStoreExt, PutPayload};
use parquet::file::metadata::ParquetMetaDataReader;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::plan::{self, TipFile, TipView};
use crate::delta::actions::{Add, encode_path};
use crate::delta::{DeltaError, DeltaTable, stats};
use crate::parquet::{LedgerRecord, PartitionWriter, WriterError, WriterSettings};
use crate::partition::{LedgerRange, PartitionGrid};
use crate::source::{Datastore, DecodeError, FetchedBatch, SourceError, decompress_batch};
use crate::validate::{PartitionValidator, ValidationError, check_link};
use bronze_ledger::LedgerRow;

/// At most this many ledgers in one provisional file (a catch-up publishes in rounds of it).
pub const MAX_LEDGERS_PER_FILE: u32 = 64;

#[derive(Debug, thiserror::Error)]
pub enum TipError {
    #[error(transparent)]
    Source(Box<SourceError>),
    #[error("{key}: {source}")]
    Decode { key: String, source: DecodeError },
    #[error("{key}: ledger {ledger}: invalid XDR: {source}", ledger = .ledger.map_or("?".to_string(), |l| l.to_string()))]
    Xdr {
        key: String,
        ledger: Option<u32>,
        source: Box<bronze_ledger::XdrError>,
    },
    #[error(transparent)]
    Invalid(Box<ValidationError>),
    #[error("provisional file {path}: {source}")]
    Writer { path: String, source: WriterError },
    #[error("{key}: {source}")]
    Store {
        key: String,
        source: Box<object_store::Error>,
    },
    #[error(transparent)]
    Table(Box<DeltaError>),
}

impl From<SourceError> for TipError {
    fn from(e: SourceError) -> Self {
        TipError::Source(Box::new(e))
    }
}

impl From<ValidationError> for TipError {
    fn from(e: ValidationError) -> Self {
        TipError::Invalid(Box::new(e))
    }
}

impl From<DeltaError> for TipError {
    fn from(e: DeltaError) -> Self {
        TipError::Table(Box::new(e))
    }
}

impl TipError {
    /// Bad input (the tip stops at the ledger before it, as a build does), rather than an
    /// outage worth another round.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            TipError::Decode { .. } | TipError::Xdr { .. } | TipError::Invalid(_)
        )
    }
}

/// What the tip needs besides the table and the datastore.
#[derive(Debug, Clone)]
pub struct TipSettings {
    pub grid: PartitionGrid,
    /// The sealed writer's settings (the same `ingested_at`): the rows come out identical.
    pub writer: WriterSettings,
    pub poll_interval: Duration,
    pub max_ledgers_per_file: u32,
}

/// One validated ledger, ready for a provisional file.
struct TipLedger {
    row: LedgerRow,
    xdr: Vec<u8>,
}

/// What one round did.
enum Round {
    Published,
    Waiting,
    /// The grid ends: nothing more can ever be published.
    Done,
}

/// The provisional tip of a following run.
pub struct TipPublisher {
    table: Arc<DeltaTable>,
    source: Arc<Datastore>,
    settings: TipSettings,
    requests: Semaphore,
    /// The last ledger this loop published and its hash (the link the next file continues).
    last: Option<(u32, [u8; 32])>,
    /// Since when the next object has been missing while newer ones exist (a hole).
    stuck_since: Option<Instant>,
}

impl TipPublisher {
    pub fn new(table: Arc<DeltaTable>, source: Arc<Datastore>, settings: TipSettings) -> Self {
        Self {
            table,
            source,
            settings,
            requests: Semaphore::new(4),
            last: None,
            stuck_since: None,
        }
    }

    /// Publishes until `cancel` fires, the grid ends, or an object fails validation (logged
    /// with its key: the tip stops at the ledger before it and the build reports it too).
    pub async fn run(mut self, cancel: CancellationToken) {
        tracing::info!(table = %self.table.uri(), "provisional tip: publishing the open partition's ledgers as they land");
        loop {
            let wait = match self.round().await {
                Ok(Round::Published) => continue,
                Ok(Round::Done) => return,
                Ok(Round::Waiting) => self.settings.poll_interval,
                Err(e) if e.is_bad_input() => {
                    tracing::error!(error = %e, "provisional tip stopped: an object failed validation; no row of it is published");
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "provisional tip: round failed; trying again");
                    self.settings.poll_interval.max(Duration::from_secs(1))
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn round(&mut self) -> Result<Round, TipError> {
        let first = self.settings.grid.first_ledger();
        let view = TipView::of_files(&self.table.files().await?);
        let through = view.published_through(first);
        crate::metrics::tip_published(through, false);
        let Some(partition) = through
            .checked_add(1)
            .and_then(|n| self.settings.grid.partition_of(n))
        else {
            return Ok(Round::Done);
        };
        let last_wanted = partition
            .end
            .min(through.saturating_add(self.settings.max_ledgers_per_file));
        let objects = self.fetch_present(through + 1, last_wanted).await?;
        let Some(oldest) = objects.first() else {
            self.lag_while_waiting(through).await?;
            return Ok(Round::Waiting);
        };
        self.stuck_since = None;
        if let Some(landed) = self.source.landed_at_ms(&oldest.key).await {
            let age = chrono::Utc::now().timestamp_millis() - landed;
            crate::metrics::set_tip_lag(age as f64 / 1000.0);
        }
        let prior = self.prior_hash(through).await?;
        let range = LedgerRange::new(through + 1, last_wanted);
        let ledgers = tokio::task::spawn_blocking(move || decode_objects(range, &objects, prior))
            .await
            .expect("the decoder does not panic")?;
        let present = ledgers.iter().map(|l| l.row.ledger_sequence);
        let Some(span) = plan::next_span(through, partition, present, range.len() as u32) else {
            return Ok(Round::Waiting);
        };
        let tip = TipFile { partition, span };
        let last_hash = ledgers.last().map(|l| l.row.ledger_hash);
        let settings = self.settings.writer.clone();
        let (add, bytes) =
            tokio::task::spawn_blocking(move || encode_file(tip, &ledgers, settings))
                .await
                .expect("the encoder does not panic")?;
        let key = self.table.key_of(&tip.path());
        self.table
            .location()
            .store
            .put(&key, PutPayload::from(bytes))
            .await
            .map_err(|source| TipError::Store {
                key: key.to_string(),
                source: Box::new(source),
            })?;
        let version = self
            .table
            .commit_changes(self.settings.writer.integers, |files| {
                Ok(plan::publish(&TipView::of_files(files), first, tip, &add))
            })
            .await?;
        if let (Some(version), Some(hash)) = (version, last_hash) {
            self.last = Some((span.end, hash));
            crate::metrics::tip_published(span.end, true);
            tracing::debug!(partition = %partition, ledgers = %span, version, "provisional tip: ledgers readable");
        }
        Ok(Round::Published)
    }

    /// The objects covering `first..=last` that are there now, in order, up to the first
    /// missing one.
    async fn fetch_present(&self, first: u32, last: u32) -> Result<Vec<FetchedBatch>, TipError> {
        let mut out = Vec::new();
        for batch in self.source.schema().batches_covering(first, last) {
            match self.source.fetch_if_present(&batch, &self.requests).await? {
                Some(object) => out.push(object),
                None => break,
            }
        }
        Ok(out)
    }

    /// The lag while the next object is missing: 0 at the tip; growing while newer objects
    /// exist (a hole or an object late: the tip waits, never publishing past it).
    async fn lag_while_waiting(&mut self, through: u32) -> Result<(), TipError> {
        let newer = self
            .source
            .latest_ledger()
            .await?
            .is_some_and(|latest| latest > through.saturating_add(1));
        if newer {
            let since = *self.stuck_since.get_or_insert_with(Instant::now);
            crate::metrics::set_tip_lag(since.elapsed().as_secs_f64());
        } else {
            self.stuck_since = None;
            crate::metrics::set_tip_lag(0.0);
        }
        Ok(())
    }

    /// The hash of ledger `through` (the one the next file must link to): remembered from the
    /// last file this loop published, else read from its datastore object. `None` before the
    /// grid's first ledger (nothing to link to).
    async fn prior_hash(&mut self, through: u32) -> Result<Option<[u8; 32]>, TipError> {
        if let Some((ledger, hash)) = self.last
            && ledger == through
        {
            return Ok(Some(hash));
        }
        if through < self.settings.grid.first_ledger() {
            return Ok(None);
        }
        let Some(batch) = self
            .source
            .schema()
            .batches_covering(through, through)
            .next()
        else {
            return Ok(None);
        };
        let Some(object) = self.source.fetch_if_present(&batch, &self.requests).await? else {
            return Ok(None);
        };
        let range = LedgerRange::new(through, through);
        let rows = tokio::task::spawn_blocking(move || decode_objects(range, &[object], None))
            .await
            .expect("the decoder does not panic")?;
        let hash = rows.first().map(|l| l.row.ledger_hash);
        if let Some(hash) = hash {
            self.last = Some((through, hash));
        }
        Ok(hash)
    }
}

/// Decodes and validates the ledgers of `range` in `objects` (in order), as a build does:
/// object bounds and count, header hashes, transaction counts, and each ledger linking to the
/// one before (the first to `prior`). Stops at the end of the objects.
fn decode_objects(
    range: LedgerRange,
    objects: &[FetchedBatch],
    prior: Option<[u8; 32]>,
) -> Result<Vec<TipLedger>, TipError> {
    let mut validator = PartitionValidator::new(range);
    let mut buffer = Vec::new();
    let mut out: Vec<TipLedger> = Vec::new();
    for object in objects {
        let key = object.key.as_str();
        decompress_batch(&object.bytes, &mut buffer).map_err(|source| TipError::Decode {
            key: key.to_string(),
            source,
        })?;
        let view = bronze_ledger::split_batch(&buffer).map_err(|source| TipError::Xdr {
            key: key.to_string(),
            ledger: None,
            source: Box::new(source),
        })?;
        PartitionValidator::check_batch(
            key,
            (object.batch.start, object.batch.end),
            (view.start_sequence, view.end_sequence),
            view.ledgers.len(),
        )?;
        for (offset, lcm) in view.ledgers.iter().enumerate() {
            let seq = view.start_sequence + offset as u32;
            if !validator.wants(seq) {
                continue;
            }
            let xdr_err = |source| TipError::Xdr {
                key: key.to_string(),
                ledger: Some(seq),
                source: Box::new(source),
            };
            let row = bronze_ledger::extract_row(lcm).map_err(xdr_err)?;
            let header_ok = bronze_ledger::header_hash_matches(lcm).map_err(xdr_err)?;
            validator.check(key, &row, header_ok)?;
            if out.is_empty()
                && let Some(prior) = prior
            {
                check_link(
                    LedgerRange::new(seq, seq),
                    &row.previous_ledger_hash,
                    &prior,
                    key,
                )?;
            }
            out.push(TipLedger {
                row,
                xdr: lcm.to_vec(),
            });
        }
    }
    Ok(out)
}

/// The provisional file of `ledgers` (the sealed writer, the same settings) and its add.
fn encode_file(
    tip: TipFile,
    ledgers: &[TipLedger],
    settings: WriterSettings,
) -> Result<(Add, Vec<u8>), TipError> {
    let path = tip.path();
    let writer_err = |source| TipError::Writer {
        path: path.clone(),
        source,
    };
    let mut writer = PartitionWriter::new(Vec::new(), settings).map_err(writer_err)?;
    for ledger in ledgers
        .iter()
        .filter(|l| tip.span.contains(l.row.ledger_sequence))
    {
        writer
            .push(&LedgerRecord {
                row: &ledger.row,
                xdr: &ledger.xdr,
                xdr_sha256: Sha256::digest(&ledger.xdr).into(),
            })
            .map_err(writer_err)?;
    }
    let (summary, bytes) = writer.finish().map_err(writer_err)?;
    let footer = ParquetMetaDataReader::new()
        .parse_and_finish(&Bytes::from(bytes.clone()))
        .ok();
    let add = Add {
        path: encode_path(&path),
        partition_values: Default::default(),
        size: summary.byte_size as i64,
        modification_time: chrono::Utc::now().timestamp_millis(),
        data_change: true,
        stats: Some(stats::stats_json(summary.rows, footer.as_ref())),
    };
    Ok((add, bytes))
}
