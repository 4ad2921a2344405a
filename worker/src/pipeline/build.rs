//! Building one partition: download its batch objects (several ahead), decode and validate its
//! ledgers on a blocking thread, stream them into Parquet and upload the file. Nothing here
//! commits: the sequencer does, in ledger order.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::archive::{ArchiveAnchor, ArchiveCheck, ArchiveError, HeaderEntry, PartitionFiles};
use crate::metrics::QueueSlot;
use crate::parquet::{
    LedgerRecord, PartitionFileSummary, PartitionWriter, WriterError, WriterSettings,
};
use crate::partition::LedgerRange;
use crate::publish::{
    CommitError, Committer, ExistingPartition, UploadError, UploadSink, start_upload,
};
use crate::source::{Datastore, DecodeError, FetchedBatch, SourceError, decompress_batch};
use crate::validate::{PartitionEdges, PartitionValidator, ValidationError};

use super::progress::Progress;

/// Everything a partition build needs, shared by all builds of a run.
pub struct BuildEnv {
    pub source: Arc<Datastore>,
    pub committer: Committer,
    /// A rebuild (`worker --rebuild`): every partition must be committed, and is rebuilt beside
    /// the committed one.
    pub rebuild: bool,
    pub writer: WriterSettings,
    pub upload_part_bytes: usize,
    pub fetch_concurrency: usize,
    pub queue_size: usize,
    pub retry_attempts: u32,
    pub retry_backoff: Duration,
    pub progress: Arc<Progress>,
    /// The history archives every ledger is checked against before its partition is staged.
    pub archive: Option<Arc<ArchiveCheck>>,
}

/// A partition ready for the sequencer.
#[derive(Debug)]
pub enum Built {
    /// The Parquet file is uploaded; the manifest is not written yet.
    Staged(Box<Staged>),
    /// Storage already holds a committed partition for the range (a resumed run).
    AlreadyCommitted(Box<ExistingPartition>),
}

#[derive(Debug, Clone)]
pub struct Staged {
    pub range: LedgerRange,
    /// Where the file was uploaded: the partition's Parquet key, or, when it replaces a
    /// committed partition, [`crate::publish::DatasetLayout::replacement_key`].
    pub parquet_key: String,
    /// The committed partition this one is built to replace (`era.allow_overwrite`).
    pub replaces: Option<Box<ExistingPartition>>,
    pub file: PartitionFileSummary,
    pub edges: PartitionEdges,
    pub xdr_bytes: u64,
    pub build_time: Duration,
    /// What the archive check found (`archive.url`), for the manifest.
    pub archive: Option<Box<ArchiveAnchor>>,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Archive(Box<ArchiveError>),
    #[error(transparent)]
    Source(Box<SourceError>),
    #[error("{key}: {source}")]
    Decode { key: String, source: DecodeError },
    #[error("{key}: ledger {ledger}: invalid XDR: {source}", ledger = .ledger.map_or("?".to_string(), |l| l.to_string()))]
    Xdr {
        key: String,
        ledger: Option<u32>,
        source: bronze_ledger::XdrError,
    },
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("partition {range}: {source}")]
    Writer {
        range: LedgerRange,
        source: WriterError,
    },
    #[error(transparent)]
    Upload(#[from] UploadError),
    #[error(transparent)]
    Commit(#[from] CommitError),
    #[error("partition {range}: encoder thread failed: {message}")]
    Encoder { range: LedgerRange, message: String },
}

impl From<SourceError> for BuildError {
    fn from(e: SourceError) -> Self {
        BuildError::Source(Box::new(e))
    }
}

impl From<ArchiveError> for BuildError {
    fn from(e: ArchiveError) -> Self {
        BuildError::Archive(Box::new(e))
    }
}

impl BuildError {
    /// Whether a later attempt may succeed (I/O), as opposed to bad input that never will.
    pub fn is_transient(&self) -> bool {
        match self {
            BuildError::Source(e) => e.is_transient(),
            BuildError::Upload(_) => true,
            BuildError::Commit(e) => e.is_transient(),
            _ => false,
        }
    }

    /// The `errors_total{kind}` this failure counts as.
    pub fn metric_kind(&self) -> crate::metrics::ErrorKind {
        use crate::metrics::ErrorKind;
        match self {
            BuildError::Source(_) => ErrorKind::Source,
            BuildError::Decode { .. } | BuildError::Xdr { .. } => ErrorKind::Decode,
            BuildError::Invalid(_) => ErrorKind::Validation,
            BuildError::Archive(e) if e.is_unreachable() => ErrorKind::Source,
            BuildError::Archive(_) => ErrorKind::Validation,
            BuildError::Upload(_) | BuildError::Commit(_) => ErrorKind::Storage,
            BuildError::Writer { .. } | BuildError::Encoder { .. } => ErrorKind::Internal,
        }
    }
}

/// The read-ahead window of a build, in objects, as a multiple of its requests in flight.
pub const READ_AHEAD_FACTOR: usize = 8;

/// Builds `range`, retrying transient failures with exponential backoff.
pub async fn build_partition(env: Arc<BuildEnv>, range: LedgerRange) -> Result<Built, BuildError> {
    let _in_flight = crate::metrics::InFlight::start();
    let mut attempt = 1;
    loop {
        let result = build_once(&env, range).await;
        match &result {
            Ok(Built::Staged(s)) => crate::metrics::partition_built(s.build_time, s.xdr_bytes),
            Ok(Built::AlreadyCommitted(_)) => {}
            Err(e) => crate::metrics::partition_failed(e.metric_kind()),
        }
        match result {
            Err(e) if e.is_transient() && attempt < env.retry_attempts => {
                let backoff = env.retry_backoff * 2u32.saturating_pow(attempt - 1);
                tracing::warn!(partition = %range, attempt, error = %e, "partition build failed; retrying in {backoff:?}");
                crate::metrics::retry("partition_build");
                tokio::time::sleep(backoff).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

async fn build_once(env: &Arc<BuildEnv>, range: LedgerRange) -> Result<Built, BuildError> {
    let committer = &env.committer;
    // Nothing committed is touched here: a replacement is built beside the committed file and
    // only the sequencer, after every check, puts it in place.
    let replaces = match committer.existing(range).await? {
        Some(existing) if committer.allow_overwrite || env.rebuild => Some(Box::new(existing)),
        Some(existing) => return Ok(Built::AlreadyCommitted(Box::new(existing))),
        None if env.rebuild => {
            let key = committer
                .location
                .key(&committer.layout.manifest_key(range));
            return Err(CommitError::NotCommitted {
                range,
                key: key.to_string(),
            }
            .into());
        }
        None => None,
    };
    let started = Instant::now();
    let parquet_key = match replaces {
        Some(_) => committer.layout.replacement_key(range),
        None => committer.layout.parquet_key(range),
    };
    let (sink, uploader) = start_upload(
        committer.location.store.clone(),
        committer.location.key(&parquet_key),
        env.upload_part_bytes,
    );
    let (tx, rx) = mpsc::channel::<(FetchedBatch, QueueSlot)>(env.queue_size.max(1));
    let settings = env.writer.clone();
    let progress = env.progress.clone();
    // The archive's files for the range are fetched while the datastore's objects are.
    let archive = env.archive.clone().map(|archive| {
        let (files_tx, files_rx) = tokio::sync::oneshot::channel();
        let fetching = archive.clone();
        tokio::spawn(async move {
            let _ = files_tx.send(fetching.partition_files(range).await);
        });
        ArchiveWait {
            check: archive,
            files: files_rx,
        }
    });
    let encoder = tokio::task::spawn_blocking(move || {
        encode_partition(range, rx, sink, settings, &progress, archive)
    });

    let source = env.source.clone();
    let batches = source
        .schema()
        .batches_covering(range.start, range.end)
        .collect::<Vec<_>>();
    // `fetch_concurrency` requests in flight, but a read-ahead window several times that: an
    // object waiting to be retried (or hedged) must not stop the requests behind it, or every
    // cloud hiccup would stall the whole partition. The source's fetch budget bounds the bytes.
    let requests = tokio::sync::Semaphore::new(env.fetch_concurrency.max(1));
    let mut fetched = futures::stream::iter(batches)
        .map(|b| source.fetch(b, &requests))
        .buffered(env.fetch_concurrency.max(1) * READ_AHEAD_FACTOR);
    let mut fetch_error = None;
    while let Some(result) = fetched.next().await {
        match result {
            Ok(batch) => {
                crate::metrics::source_bytes(batch.bytes.len() as u64);
                if tx.send((batch, QueueSlot::new())).await.is_err() {
                    break; // the encoder stopped; its error says why
                }
            }
            Err(e) => {
                fetch_error = Some(e);
                break;
            }
        }
    }
    drop(fetched);
    drop(tx);
    let encoded = encoder.await.unwrap_or_else(|join| {
        Err(BuildError::Encoder {
            range,
            message: join.to_string(),
        })
    });
    // Always wait for the upload: an abandoned one aborts its multipart upload on the way out.
    let uploaded = uploader.wait().await;
    if let Some(e) = fetch_error {
        return Err(e.into());
    }
    let encoded = match (encoded, uploaded) {
        (Ok(encoded), Ok(_)) => encoded,
        (Ok(_), Err(upload)) => return Err(upload.into()),
        // The encoder fails too when the upload dies under it; the upload's error is the cause.
        (Err(_), Err(upload)) if !matches!(upload, UploadError::Abandoned { .. }) => {
            return Err(upload.into());
        }
        (Err(e), _) => return Err(e),
    };
    Ok(Built::Staged(Box::new(Staged {
        range,
        parquet_key,
        replaces,
        file: encoded.file,
        edges: encoded.edges,
        xdr_bytes: encoded.xdr_bytes,
        build_time: started.elapsed(),
        archive: encoded.archive.map(Box::new),
    })))
}

struct Encoded {
    file: PartitionFileSummary,
    edges: PartitionEdges,
    xdr_bytes: u64,
    archive: Option<ArchiveAnchor>,
}

/// The archive check of one build: its files arrive from a task fetching them meanwhile.
struct ArchiveWait {
    check: Arc<ArchiveCheck>,
    files: tokio::sync::oneshot::Receiver<Result<PartitionFiles, ArchiveError>>,
}

impl ArchiveWait {
    /// Waits (on the encoder's blocking thread) for the files and checks `ledgers` against
    /// them: an error leaves the partition unfinished, its upload abandoned.
    fn check(
        self,
        range: LedgerRange,
        ledgers: &[HeaderEntry],
    ) -> Result<ArchiveAnchor, BuildError> {
        let files = self
            .files
            .blocking_recv()
            .map_err(|_| BuildError::Encoder {
                range,
                message: "the archive fetch stopped".into(),
            })??;
        Ok(self.check.check(&files, ledgers)?)
    }
}

/// The CPU side of a build, on a blocking thread.
fn encode_partition(
    range: LedgerRange,
    mut rx: mpsc::Receiver<(FetchedBatch, QueueSlot)>,
    sink: UploadSink,
    settings: WriterSettings,
    progress: &Progress,
    archive: Option<ArchiveWait>,
) -> Result<Encoded, BuildError> {
    let mut headers = Vec::new();
    let writer_err = |source| BuildError::Writer { range, source };
    let mut writer = PartitionWriter::new(sink, settings).map_err(writer_err)?;
    let mut validator = PartitionValidator::new(range);
    let mut buffer = Vec::new();
    let mut xdr_bytes = 0u64;
    while let Some((object, _queued)) = rx.blocking_recv() {
        let key = object.key.as_str();
        decompress_batch(&object.bytes, &mut buffer).map_err(|source| BuildError::Decode {
            key: key.to_string(),
            source,
        })?;
        let view = bronze_ledger::split_batch(&buffer).map_err(|source| BuildError::Xdr {
            key: key.to_string(),
            ledger: None,
            source,
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
            let xdr_err = |source| BuildError::Xdr {
                key: key.to_string(),
                ledger: Some(seq),
                source,
            };
            let row = bronze_ledger::extract_row(lcm).map_err(xdr_err)?;
            let header_ok = bronze_ledger::header_hash_matches(lcm).map_err(xdr_err)?;
            validator.check(key, &row, header_ok)?;
            if archive.is_some() {
                headers.push(crate::archive::entry_of_lcm(lcm).map_err(xdr_err)?.0);
            }
            let record = LedgerRecord {
                row: &row,
                xdr: lcm,
                xdr_sha256: Sha256::digest(lcm).into(),
            };
            writer.push(&record).map_err(writer_err)?;
            xdr_bytes += lcm.len() as u64;
            progress.ledger_encoded(lcm.len() as u64);
        }
    }
    let edges = validator.finish()?;
    // Checked before the file is finished: a partition that disagrees is never complete.
    let archive = archive.map(|a| a.check(range, &headers)).transpose()?;
    let (file, sink) = writer.finish().map_err(writer_err)?;
    sink.finish().map_err(|e| BuildError::Encoder {
        range,
        message: format!("upload stopped: {e}"),
    })?;
    Ok(Encoded {
        file,
        edges,
        xdr_bytes,
        archive,
    })
}
