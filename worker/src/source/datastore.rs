//! Fetching batch objects from a datastore: computed keys, both zstd extensions, retries for
//! transient failures, and waiting at the tip when following it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};

use super::read_policy::{self, GetTimes};
use super::schema::{
    BatchObject, DatastoreManifest, DatastoreSchema, SchemaError, ZSTD_EXTENSIONS,
};
use crate::config::{Config, DatastoreType, SourceMode};
use crate::store::{self, Location, StoreError};

/// The datastore's description file, at its root.
pub const DATASTORE_CONFIG_FILE: &str = ".config.json";

/// While waiting at the tip, check every this many poll intervals whether newer objects exist
/// (then the missing object is a hole, not the tip).
const GAP_CHECK_POLLS: u32 = 15;

/// How many poll intervals an object must stay missing while newer ones exist before it is
/// reported as a hole (a writer may upload a few objects out of order).
const GAP_CONFIRM_POLLS: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Open(#[from] StoreError),
    #[error(
        "datastore {uri}: {key} is missing; set source.ledgers_per_batch and source.batches_per_partition to read a datastore without one"
    )]
    NoDatastoreConfig { uri: String, key: String },
    #[error("datastore {uri}: {key} is not valid JSON for a datastore config: {message}")]
    BadDatastoreConfig {
        uri: String,
        key: String,
        message: String,
    },
    #[error("datastore {uri}: {0}", uri = .1)]
    Schema(SchemaError, String),
    #[error(
        "datastore {uri}: {key} field networkPassphrase is {found:?} but era.network {network:?} expects {expected:?}"
    )]
    WrongNetwork {
        uri: String,
        key: String,
        network: String,
        expected: String,
        found: String,
    },
    #[error("missing object {key} (ledgers {start}-{end}) in datastore {uri}")]
    MissingObject {
        uri: String,
        key: String,
        start: u32,
        end: u32,
    },
    #[error("cannot read {key} from datastore {uri} after {attempts} attempt(s): {source}")]
    Read {
        uri: String,
        key: String,
        attempts: u32,
        source: object_store::Error,
    },
    #[error("cannot list datastore {uri}: {source}")]
    List {
        uri: String,
        source: object_store::Error,
    },
}

impl SourceError {
    /// Whether trying again later can help (a network or server failure), as opposed to bad data.
    pub fn is_transient(&self) -> bool {
        matches!(self, SourceError::Read { .. } | SourceError::List { .. })
    }
}

/// Compressed bytes of fetched objects the process holds at most at once (being downloaded,
/// buffered, queued or being encoded), over all partitions. With one ledger per object and tens
/// of milliseconds per GET, throughput is set by requests in flight, so `perf.workers` defaults
/// high; this budget keeps that from costing memory when objects are large.
pub const FETCH_BUDGET_BYTES: usize = 96 * 1024 * 1024;

/// Reads from a local directory at once, per process: each is a blocking-pool task, and hundreds
/// of them only add thread switches (a disk answers in microseconds, not tens of milliseconds).
pub const LOCAL_READS: usize = 16;

/// The size assumed for the first objects, before any was seen (a large modern pubnet ledger).
const INITIAL_OBJECT_ESTIMATE: usize = 512 * 1024;

/// One fetched, still compressed batch object.
#[derive(Debug)]
pub struct FetchedBatch {
    pub batch: BatchObject,
    /// The full key, for error messages.
    pub key: String,
    pub bytes: Bytes,
    /// Its share of [`FETCH_BUDGET_BYTES`], given back when the object is dropped (encoded).
    _budget: Option<OwnedSemaphorePermit>,
}

/// Bounds the bytes of fetched objects held at once. The size of an object is known only once it
/// is downloaded, so each GET first reserves the running estimate and afterwards gives back what
/// it over-reserved; it never waits for more (an object may overshoot a little, but a fetch
/// holding bytes never waits behind later ones: reservations are served in order, so there is no
/// deadlock between the ordered fetches of one or several partitions).
struct FetchBudget {
    permits: Arc<Semaphore>,
    /// Exponential moving average of object sizes, in bytes.
    estimate: AtomicUsize,
}

impl FetchBudget {
    fn new() -> Self {
        Self {
            permits: Arc::new(Semaphore::new(FETCH_BUDGET_BYTES)),
            estimate: AtomicUsize::new(INITIAL_OBJECT_ESTIMATE),
        }
    }

    async fn reserve(&self) -> OwnedSemaphorePermit {
        let want = self
            .estimate
            .load(Ordering::Relaxed)
            .clamp(1, FETCH_BUDGET_BYTES);
        self.permits
            .clone()
            .acquire_many_owned(want as u32)
            .await
            .expect("the budget semaphore is never closed")
    }

    /// Records an object's real size and keeps only that much of its reservation.
    fn settle(&self, mut permit: OwnedSemaphorePermit, size: usize) -> OwnedSemaphorePermit {
        let old = self.estimate.load(Ordering::Relaxed);
        let next = next_estimate(old, size);
        self.estimate.store(next, Ordering::Relaxed);
        let keep = size.max(1);
        if permit.num_permits() > keep {
            drop(permit.split(permit.num_permits() - keep));
        }
        permit
    }
}

/// The moving average after seeing an object of `size` bytes: weight 1/8 for the new one, but a
/// larger object raises it at once (under-reserving is what overshoots the budget).
fn next_estimate(old: usize, size: usize) -> usize {
    if size >= old {
        size
    } else {
        old - (old - size) / 8
    }
}

/// An open datastore.
pub struct Datastore {
    location: Location,
    schema: DatastoreSchema,
    manifest: Option<DatastoreManifest>,
    /// Index into ZSTD_EXTENSIONS of the extension that worked last, tried first next time.
    extension: AtomicUsize,
    follow: bool,
    poll_interval: Duration,
    /// Attempts per request: `perf.retry_attempts`, at least [`read_policy::MIN_ATTEMPTS`].
    retry_attempts: u32,
    /// See [`read_policy::first_backoff`].
    first_backoff: Duration,
    latest_cache: Mutex<Option<(Instant, Option<u32>)>>,
    budget: FetchBudget,
    /// [`LOCAL_READS`] for a local directory; cloud stores are bounded by each caller's limit
    /// (`perf.workers` per partition) alone.
    local_reads: Option<Semaphore>,
    /// A cloud store: slow GETs are hedged (a local disk has no tail worth racing).
    cloud: bool,
    get_times: GetTimes,
    /// Counter feeding the retry jitter.
    retries: AtomicUsize,
}

impl std::fmt::Debug for Datastore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Datastore")
            .field("uri", &self.location.uri)
            .field("schema", &self.schema)
            .finish()
    }
}

/// The source location from `source.*`.
pub fn open_source_location(config: &Config) -> Result<Location, StoreError> {
    let s = &config.source;
    match s.mode {
        SourceMode::Gcs => store::gcs(
            "source.gcs_bucket",
            &s.gcs_bucket,
            &s.gcs_prefix,
            store::no_retries(),
        ),
        SourceMode::S3 => store::s3(
            "source.s3_bucket",
            &s.s3_bucket,
            &s.s3_prefix,
            &s.s3_endpoint,
            &s.s3_region,
            store::no_retries(),
        ),
        SourceMode::Datastore => {
            let (bucket, prefix) = store::split_bucket_path(&s.datastore_path);
            if s.datastore_type == Some(DatastoreType::S3) {
                store::s3(
                    "source.datastore_path",
                    bucket,
                    prefix,
                    &s.s3_endpoint,
                    &s.s3_region,
                    store::no_retries(),
                )
            } else {
                store::gcs("source.datastore_path", bucket, prefix, store::no_retries())
            }
        }
        SourceMode::Local => store::local("source.local_path", &s.local_path, false),
    }
}

impl Datastore {
    /// Opens the datastore: reads `.config.json`, checks the network passphrase.
    pub async fn open(config: &Config, location: Location) -> Result<Self, SourceError> {
        let key = location.key(DATASTORE_CONFIG_FILE);
        let uri = location.uri.clone();
        let cloud = !location.uri.starts_with("file://");
        let mut datastore = Self {
            location,
            schema: DatastoreSchema::new(1, 1).expect("a valid placeholder schema"),
            manifest: None,
            extension: AtomicUsize::new(0),
            follow: config.follows_tip(),
            poll_interval: Duration::from_millis(config.source.poll_interval_ms),
            retry_attempts: config.perf.retry_attempts.max(read_policy::MIN_ATTEMPTS),
            first_backoff: read_policy::first_backoff(config.perf.retry_backoff_ms),
            latest_cache: Mutex::new(None),
            budget: FetchBudget::new(),
            local_reads: (!cloud).then(|| Semaphore::new(LOCAL_READS)),
            cloud,
            get_times: GetTimes::default(),
            retries: AtomicUsize::new(0),
        };
        let manifest = match datastore.get_with_retries(&key, None).await? {
            Some(bytes) => {
                let m: DatastoreManifest = serde_json::from_slice(&bytes).map_err(|e| {
                    SourceError::BadDatastoreConfig {
                        uri: uri.clone(),
                        key: key.to_string(),
                        message: e.to_string(),
                    }
                })?;
                Some(m)
            }
            None => None,
        };
        let schema = match (
            &manifest,
            config.source.ledgers_per_batch,
            config.source.batches_per_partition,
        ) {
            (Some(m), _, _) => DatastoreSchema::from_manifest(m),
            (None, Some(l), Some(b)) => DatastoreSchema::new(l, b),
            (None, _, _) => {
                return Err(SourceError::NoDatastoreConfig {
                    uri,
                    key: key.to_string(),
                });
            }
        }
        .map_err(|e| SourceError::Schema(e, uri.clone()))?;
        if let (Some(m), Some(expected)) = (&manifest, crate::network::expected_passphrase(config))
            && m.network_passphrase != expected
        {
            return Err(SourceError::WrongNetwork {
                uri,
                key: key.to_string(),
                network: config.era.network.clone(),
                expected,
                found: m.network_passphrase.clone(),
            });
        }
        if manifest.is_none() {
            tracing::warn!(uri = %uri, "datastore has no .config.json: its network passphrase cannot be checked");
        }
        datastore.schema = schema;
        datastore.manifest = manifest;
        Ok(datastore)
    }

    pub fn schema(&self) -> DatastoreSchema {
        self.schema
    }

    pub fn manifest(&self) -> Option<&DatastoreManifest> {
        self.manifest.as_ref()
    }

    pub fn uri(&self) -> &str {
        &self.location.uri
    }

    /// Fetches one batch object, with at most `requests` permits' worth of requests in flight
    /// for the caller (held during a request, not while waiting to retry it, so a failing object
    /// does not hold up the read-ahead behind it). A missing object is an error in a bounded
    /// run; when following the tip it is waited for, unless newer objects exist (then it is a
    /// hole in the datastore).
    pub async fn fetch(
        self: &Arc<Self>,
        batch: BatchObject,
        requests: &Semaphore,
    ) -> Result<FetchedBatch, SourceError> {
        let mut next_gap_check = Instant::now();
        let mut newer_seen_at: Option<Instant> = None;
        loop {
            if let Some(found) = self.try_fetch(&batch, requests).await? {
                return Ok(found);
            }
            let missing = || SourceError::MissingObject {
                uri: self.location.uri.clone(),
                key: self.preferred_key(&batch).to_string(),
                start: batch.start,
                end: batch.end,
            };
            if !self.follow {
                return Err(missing());
            }
            let now = Instant::now();
            if now >= next_gap_check {
                next_gap_check = now + self.poll_interval * GAP_CHECK_POLLS;
                if self
                    .latest_ledger()
                    .await?
                    .is_some_and(|latest| latest > batch.end)
                {
                    // Newer ledgers exist, so this is not the tip. Give a writer that uploads out
                    // of order time to fill the hole, then report it.
                    match newer_seen_at {
                        Some(seen)
                            if now.duration_since(seen)
                                >= self.poll_interval * GAP_CONFIRM_POLLS =>
                        {
                            return Err(missing());
                        }
                        Some(_) => {}
                        None => newer_seen_at = Some(now),
                    }
                    next_gap_check = now + self.poll_interval * GAP_CONFIRM_POLLS;
                }
            }
            tokio::time::sleep(self.poll_interval).await;
        }
    }

    /// Fetches one batch object if it is there now (`None` if not), never waiting at the tip:
    /// the provisional tip polls on its own schedule.
    pub async fn fetch_if_present(
        &self,
        batch: &BatchObject,
        requests: &Semaphore,
    ) -> Result<Option<FetchedBatch>, SourceError> {
        self.try_fetch(batch, requests).await
    }

    /// When the object `key` (a [`FetchedBatch::key`]) landed, in ms since the epoch (`None`
    /// if the store cannot say).
    pub async fn landed_at_ms(&self, key: &str) -> Option<i64> {
        let path = ObjectPath::parse(key).ok()?;
        let meta = self.location.store.head(&path).await.ok()?;
        Some(meta.last_modified.timestamp_millis())
    }

    /// One attempt over both extensions, with retries for transient failures.
    async fn try_fetch(
        &self,
        batch: &BatchObject,
        requests: &Semaphore,
    ) -> Result<Option<FetchedBatch>, SourceError> {
        let first = self.extension.load(Ordering::Relaxed);
        for offset in 0..ZSTD_EXTENSIONS.len() {
            let index = (first + offset) % ZSTD_EXTENSIONS.len();
            let key = self.key_with(batch, index);
            let reserved = self.budget.reserve().await;
            let found = self.get_with_retries(&key, Some(requests)).await?;
            if let Some(bytes) = found {
                self.extension.store(index, Ordering::Relaxed);
                let budget = self.budget.settle(reserved, bytes.len());
                return Ok(Some(FetchedBatch {
                    batch: batch.clone(),
                    key: key.to_string(),
                    bytes,
                    _budget: Some(budget),
                }));
            }
        }
        Ok(None)
    }

    /// GETs `key` (`None` if it does not exist), retrying transient failures; each attempt
    /// holds a permit of `limit`.
    async fn get_with_retries(
        &self,
        key: &ObjectPath,
        limit: Option<&Semaphore>,
    ) -> Result<Option<Bytes>, SourceError> {
        let got = self
            .with_retries(key.as_ref(), || async {
                let _request = match limit {
                    Some(limit) => Some(limit.acquire().await.expect("never closed")),
                    None => None,
                };
                let _local = match &self.local_reads {
                    Some(reads) => Some(reads.acquire().await.expect("never closed")),
                    None => None,
                };
                self.get_hedged(key).await
            })
            .await;
        match got {
            Ok(bytes) => Ok(Some(bytes)),
            Err((object_store::Error::NotFound { .. }, _)) => Ok(None),
            Err((source, attempts)) => Err(SourceError::Read {
                uri: self.location.uri.clone(),
                key: key.to_string(),
                attempts,
                source,
            }),
        }
    }

    /// Runs `request` until it succeeds, fails for good, or [`Self::retry_attempts`] are spent;
    /// each retry is logged and counted with its cause. The error comes with the attempts made.
    async fn with_retries<T, F, Fut>(
        &self,
        what: &str,
        mut request: F,
    ) -> Result<T, (object_store::Error, u32)>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, object_store::Error>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match request().await {
                Ok(value) => return Ok(value),
                Err(e) if !read_policy::is_transient(&e) || attempt >= self.retry_attempts => {
                    return Err((e, attempt));
                }
                Err(e) => {
                    let cause = read_policy::failure_cause(&e);
                    let noise = self.retries.fetch_add(1, Ordering::Relaxed) as u64;
                    let backoff = read_policy::backoff(attempt, self.first_backoff, noise);
                    tracing::warn!(key = %what, attempt, cause = cause.as_str(), error = %e, "datastore read failed; retrying in {backoff:?}");
                    crate::metrics::retry("source_read");
                    crate::metrics::source_read_failure(cause.as_str());
                    crate::metrics::error(crate::metrics::ErrorKind::Source);
                    tokio::time::sleep(backoff).await;
                }
            }
        }
    }

    /// One GET of a whole object. From a cloud store, a GET still unanswered after a few times
    /// the usual GET time is raced by a second one and the first to finish wins: a stalled
    /// connection costs that delay instead of a timeout, and a slow large object is not cut.
    async fn get_hedged(&self, key: &ObjectPath) -> Result<Bytes, object_store::Error> {
        let get = || async {
            let started = Instant::now();
            let bytes = self.location.store.get(key).await?.bytes().await?;
            Ok::<_, object_store::Error>((bytes, started.elapsed()))
        };
        let first = get();
        if !self.cloud {
            return first.await.map(|(bytes, _)| bytes);
        }
        tokio::pin!(first);
        let hedge_after = self.get_times.hedge_after();
        let won = tokio::select! {
            done = &mut first => done,
            _ = tokio::time::sleep(hedge_after) => {
                tracing::info!(key = %key, "datastore GET unanswered after {hedge_after:?}; racing a second one");
                crate::metrics::retry("source_read_hedge");
                // Race hedges against the first GET, which keeps going: a failed hedge is
                // retried (after a backoff, still racing the first) rather than leaving the
                // object to a stalled first GET.
                let mut attempt = 1;
                loop {
                    let hedge = get();
                    tokio::pin!(hedge);
                    let failed = tokio::select! {
                        done = &mut first => match done {
                            Ok(done) => break Ok(done),
                            Err(_) => break hedge.await,
                        },
                        done = &mut hedge => match done {
                            Ok(done) => break Ok(done),
                            Err(e) => e,
                        },
                    };
                    if !read_policy::is_transient(&failed) || attempt >= self.retry_attempts {
                        break first.await;
                    }
                    let noise = self.retries.fetch_add(1, Ordering::Relaxed) as u64;
                    let backoff = read_policy::backoff(attempt, self.first_backoff, noise);
                    let cause = read_policy::failure_cause(&failed);
                    tracing::warn!(key = %key, attempt, cause = cause.as_str(), error = %failed, "datastore read failed (hedge); retrying in {backoff:?}");
                    crate::metrics::retry("source_read");
                    crate::metrics::source_read_failure(cause.as_str());
                    crate::metrics::error(crate::metrics::ErrorKind::Source);
                    tokio::select! {
                        done = &mut first => break done,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    attempt += 1;
                }
            }
        };
        let (bytes, took) = won?;
        self.get_times.record(took);
        Ok(bytes)
    }

    fn key_with(&self, batch: &BatchObject, extension: usize) -> ObjectPath {
        self.location
            .key(&format!("{}.{}", batch.stem, ZSTD_EXTENSIONS[extension]))
    }

    fn preferred_key(&self, batch: &BatchObject) -> ObjectPath {
        self.key_with(batch, self.extension.load(Ordering::Relaxed))
    }

    /// The newest ledger in the datastore, by listing (never on the hot path: only while
    /// waiting at the tip, and cached briefly).
    pub async fn latest_ledger(&self) -> Result<Option<u32>, SourceError> {
        let mut cache = self.latest_cache.lock().await;
        if let Some((at, value)) = *cache
            && at.elapsed() < self.poll_interval * 2
        {
            return Ok(value);
        }
        let value = self.list_latest_ledger().await?;
        *cache = Some((Instant::now(), value));
        Ok(value)
    }

    /// The first batch object missing among those covering `[first, last]`, found by listing
    /// their partition folders (objects may be uploaded out of order: the newest one present
    /// says nothing about the ones before it). Never on the copy path; the operator's follow mode
    /// uses it to plan only over ledgers the datastore holds without a gap.
    pub async fn first_missing(
        &self,
        first: u32,
        last: u32,
    ) -> Result<Option<BatchObject>, SourceError> {
        let list_err = |source| SourceError::List {
            uri: self.location.uri.clone(),
            source,
        };
        let folders = self.schema.folders_covering(first, last);
        let roots = if folders.is_empty() {
            vec![self.location.key("")]
        } else {
            folders.iter().map(|f| self.location.key(f)).collect()
        };
        let mut present = std::collections::BTreeSet::new();
        for root in roots {
            let listing = match self.list(&root).await {
                Ok(listing) => listing,
                // A folder nothing was uploaded to yet.
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(e) => return Err(list_err(e)),
            };
            present.extend(listing.objects.iter().filter_map(|o| {
                let name = o.location.filename()?;
                let stem = ZSTD_EXTENSIONS
                    .iter()
                    .find_map(|ext| name.strip_suffix(&format!(".{ext}")))?;
                parse_range_name(stem).map(|(start, _)| start)
            }));
        }
        Ok(self.schema.first_absent(first, last, &present))
    }

    /// One level of listing under `prefix`, retrying transient failures.
    async fn list(
        &self,
        prefix: &ObjectPath,
    ) -> Result<object_store::ListResult, object_store::Error> {
        self.with_retries(prefix.as_ref(), || {
            self.location.store.list_with_delimiter(Some(prefix))
        })
        .await
        .map_err(|(e, _)| e)
    }

    /// The full key of a batch object (preferred extension), for messages.
    pub fn object_key(&self, batch: &BatchObject) -> String {
        self.preferred_key(batch).to_string()
    }

    async fn list_latest_ledger(&self) -> Result<Option<u32>, SourceError> {
        let list_err = |source| SourceError::List {
            uri: self.location.uri.clone(),
            source,
        };
        let root = self.location.key("");
        let top = self.list(&root).await.map_err(list_err)?;
        // Partition folders sort newest first by name; pick by parsed start to be independent
        // of listing order (local listings are unordered).
        let newest_folder = top
            .common_prefixes
            .iter()
            .filter_map(|p| parse_range_name(p.filename()?).map(|(s, _)| (s, p.clone())))
            .max_by_key(|(s, _)| *s)
            .map(|(_, p)| p);
        let objects = match newest_folder {
            Some(folder) => self.list(&folder).await.map_err(list_err)?.objects,
            None => top.objects,
        };
        Ok(objects
            .iter()
            .filter_map(|o| {
                let name = o.location.filename()?;
                let stem = ZSTD_EXTENSIONS
                    .iter()
                    .find_map(|ext| name.strip_suffix(&format!(".{ext}")))?;
                parse_range_name(stem).map(|(_, end)| end)
            })
            .max())
    }
}

/// Parses `HEX--start` or `HEX--start-end` names into (start, end).
pub fn parse_range_name(name: &str) -> Option<(u32, u32)> {
    let (_hex, rest) = name.split_once("--")?;
    match rest.split_once('-') {
        Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
        None => {
            let v = rest.parse().ok()?;
            Some((v, v))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_size_estimate_rises_at_once_and_falls_slowly() {
        assert_eq!(next_estimate(1000, 5000), 5000);
        assert_eq!(next_estimate(8000, 0), 7000);
        let mut e = INITIAL_OBJECT_ESTIMATE;
        for _ in 0..100 {
            e = next_estimate(e, 3000);
        }
        assert!((3000..3100).contains(&e), "{e}");
    }

    #[tokio::test]
    async fn the_budget_is_held_until_the_object_is_dropped_and_over_reservation_returned() {
        let budget = FetchBudget::new();
        let first = budget.reserve().await;
        assert_eq!(first.num_permits(), INITIAL_OBJECT_ESTIMATE);
        let first = budget.settle(first, 1000);
        assert_eq!(first.num_permits(), 1000);
        assert_eq!(
            budget.permits.available_permits(),
            FETCH_BUDGET_BYTES - 1000
        );
        // A budget's worth of objects blocks the next reservation until one is dropped.
        let held: Vec<_> = (0..FETCH_BUDGET_BYTES / 1000 - 1)
            .map(|_| budget.permits.clone().try_acquire_many_owned(1000).unwrap())
            .collect();
        let next = tokio::spawn({
            let permits = budget.permits.clone();
            async move { permits.acquire_many_owned(1000).await.unwrap() }
        });
        tokio::task::yield_now().await;
        assert!(!next.is_finished());
        drop(first);
        drop(next.await.unwrap());
        drop(held);
    }

    #[test]
    fn range_names_parse() {
        assert_eq!(
            parse_range_name("FC6DEFFF--59904000-59967999"),
            Some((59_904_000, 59_967_999))
        );
        assert_eq!(parse_range_name("FFFFFC1A--997"), Some((997, 997)));
        assert_eq!(parse_range_name(".config.json"), None);
        assert_eq!(parse_range_name("x--abc"), None);
    }
}
