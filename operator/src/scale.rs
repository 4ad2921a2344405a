//! The operator's sequencing and planning at many partitions (issue 13, "Many partitions"): a
//! local-disk lake of committed partitions generated cheaply (real manifests through the commit
//! protocol, Parquet stand-ins of the recorded size: the manifest policy only checks the size),
//! the PAS outbox in that storage, optionally a real PostgreSQL catalog, and the reconcile's
//! engine calls ([`sequence_with_table`] + [`plan`]) as `reconcile.rs` makes them.
//!
//! Storage requests are counted by a wrapper around the real store ([`Counting`]), catalog
//! queries by a wrapper around the real catalog ([`CountingCatalog`]).
//!
//! `make bench-operator` runs the 6,000-partition benchmark (ignored by default); the regression
//! tests below compare request counts at two lake sizes.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bronze::partition::{LedgerRange, PartitionGrid};
use bronze::pas::ObjectStoreOutbox;
use bronze::publish::{Committer, DatasetLayout};
use bronze::sequence::{CatalogLog, ObjectDataset, PartitionRecord, RangeSummary, next_partition};
use bronze::store::Location;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

use crate::crd::{BronzeBackfillSpec, BronzeBackfillStatus};
use crate::pas::{PasOutboxLog, pas_config};
use crate::plan::{PlanInput, plan};
use crate::reconcile::MAX_SEQUENCED_PER_RECONCILE;
use crate::sequencer::{SequenceStart, resolve_ingested_at, sequence_with_table};

const INGESTED_AT: &str = "2026-12-01T00:00:00Z";
/// The Parquet stand-ins' size (and the manifests' `byte_size`).
const PARQUET_BYTES: usize = 64;

/// Storage requests by kind, on a real store underneath.
#[derive(Debug, Default)]
pub struct Requests {
    pub gets: AtomicU64,
    pub puts: AtomicU64,
    pub lists: AtomicU64,
    pub other: AtomicU64,
}

impl Requests {
    pub fn total(&self) -> u64 {
        [&self.gets, &self.puts, &self.lists, &self.other]
            .iter()
            .map(|c| c.load(Ordering::SeqCst))
            .sum()
    }
}

/// An object store that counts the requests made to the store it wraps.
#[derive(Debug)]
pub struct Counting {
    inner: Arc<dyn ObjectStore>,
    pub requests: Arc<Requests>,
}

impl std::fmt::Display for Counting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Counting({})", self.inner)
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::SeqCst);
}

#[async_trait]
impl ObjectStore for Counting {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        bump(&self.requests.puts);
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        bump(&self.requests.puts);
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        bump(&self.requests.gets);
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        bump(&self.requests.gets);
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        bump(&self.requests.other);
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        bump(&self.requests.lists);
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        bump(&self.requests.lists);
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        bump(&self.requests.other);
        self.inner.copy_opts(from, to, options).await
    }
}

/// A catalog that counts the queries made to the catalog it wraps.
pub struct CountingCatalog {
    inner: Arc<dyn CatalogLog>,
    pub queries: AtomicU64,
}

impl CatalogLog for CountingCatalog {
    fn strict(&self) -> bool {
        self.inner.strict()
    }

    fn recorded(&self) -> BoxFuture<'_, Result<Vec<(LedgerRange, String)>, String>> {
        bump(&self.queries);
        self.inner.recorded()
    }

    fn summary(
        &self,
        first: u32,
        through: u32,
    ) -> BoxFuture<'_, Result<Option<RangeSummary>, String>> {
        bump(&self.queries);
        self.inner.summary(first, through)
    }

    fn record<'a>(
        &'a self,
        record: &'a PartitionRecord,
        previous: Option<(u32, String)>,
    ) -> BoxFuture<'a, Result<(), String>> {
        bump(&self.queries);
        self.inner.record(record, previous)
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn check_replace(&self, range: LedgerRange) -> BoxFuture<'_, Result<(), String>> {
        bump(&self.queries);
        self.inner.check_replace(range)
    }
}

/// A backfill of `partitions` ten-ledger partitions from ledger 2 in `dir`, PAS on.
pub fn lake_spec(dir: &std::path::Path, partitions: u32) -> BronzeBackfillSpec {
    let mut spec = crate::fixtures::spec();
    spec.ledger_start = 2;
    spec.ledger_end = 1 + partitions * 10;
    spec.storage.local_dir = Some(dir.to_string_lossy().into_owned());
    spec.pas.enabled = true;
    spec
}

fn location(spec: &BronzeBackfillSpec) -> Location {
    let config = crate::job::worker_config(spec, INGESTED_AT).unwrap();
    bronze::pipeline::open_output_location(&config).unwrap()
}

fn grid(spec: &BronzeBackfillSpec) -> PartitionGrid {
    PartitionGrid::new(spec.ledger_start, spec.ledger_end, spec.partition_size)
}

/// Commits grid partitions `from..to` (indices) as a worker would: the Parquet stand-in first,
/// then the manifest with the commit protocol's conditional create.
pub async fn commit_partitions(spec: &BronzeBackfillSpec, from: u32, to: u32) {
    let config = crate::job::worker_config(spec, INGESTED_AT).unwrap();
    let committer = Committer {
        location: location(spec),
        layout: DatasetLayout::from_config(&config),
        allow_overwrite: false,
    };
    let grid = grid(spec);
    let mut done: Option<u32> = None;
    let mut index = 0;
    while let Some(range) = next_partition(&grid, done) {
        if index >= to {
            break;
        }
        if index >= from {
            let mut manifest = crate::fixtures::manifest_for(spec, range, INGESTED_AT);
            if let Some(t) = manifest.tables.values_mut().next() {
                t.byte_size = PARQUET_BYTES as u64;
            }
            let key = committer.location.key(&committer.layout.parquet_key(range));
            committer
                .location
                .store
                .put(&key, PutPayload::from(vec![0u8; PARQUET_BYTES]))
                .await
                .unwrap();
            committer.commit(&manifest).await.unwrap();
        }
        index += 1;
        done = Some(range.end);
    }
}

/// One operator process: its cached dataset store, PAS log and catalog, and the status it
/// writes back, as the reconcile keeps them.
pub struct Operator {
    pub spec: BronzeBackfillSpec,
    /// Requests of the dataset store.
    pub requests: Arc<Requests>,
    /// Requests of the PAS outbox (same storage).
    pub pas_requests: Arc<Requests>,
    store: ObjectDataset,
    pas: PasOutboxLog,
    pub catalog: Option<Arc<CountingCatalog>>,
    pub status: Option<BronzeBackfillStatus>,
}

/// What one reconcile cost.
#[derive(Debug, Clone)]
pub struct Reconciled {
    pub elapsed: Duration,
    /// Storage requests, PAS outbox included.
    pub requests: u64,
    pub pas_requests: u64,
    pub catalog_queries: u64,
    pub newly: usize,
    pub more: bool,
    pub status_bytes: usize,
}

impl Operator {
    /// A freshly started operator (nothing cached) for `spec`, resuming from `status`.
    pub fn start(
        spec: &BronzeBackfillSpec,
        status: Option<BronzeBackfillStatus>,
        catalog: Option<Arc<dyn CatalogLog>>,
    ) -> Self {
        let requests = Arc::new(Requests::default());
        let pas_requests = Arc::new(Requests::default());
        let counted = |requests: &Arc<Requests>| {
            let mut location = location(spec);
            location.store = Arc::new(Counting {
                inner: location.store.clone(),
                requests: requests.clone(),
            });
            location
        };
        let location = counted(&requests);
        let config = crate::job::worker_config(spec, INGESTED_AT).unwrap();
        let store = ObjectDataset::new(Committer {
            location: location.clone(),
            layout: DatasetLayout::from_config(&config),
            allow_overwrite: false,
        });
        let outbox = Arc::new(ObjectStoreOutbox::new(
            counted(&pas_requests),
            &spec.storage.prefix,
        ));
        let pas = PasOutboxLog::with_outbox(pas_config(spec).unwrap(), outbox);
        Self {
            spec: spec.clone(),
            requests,
            pas_requests,
            store,
            pas,
            catalog: catalog.map(|inner| {
                Arc::new(CountingCatalog {
                    inner,
                    queries: AtomicU64::new(0),
                })
            }),
            status,
        }
    }

    fn catalog_queries(&self) -> u64 {
        self.catalog
            .as_ref()
            .map_or(0, |c| c.queries.load(Ordering::SeqCst))
    }

    /// The reconcile's storage, sequencing and planning (no API server: no Jobs observed).
    pub async fn reconcile(&mut self) -> Reconciled {
        let requests = self.requests.total();
        let pas_requests = self.pas_requests.total();
        let queries = self.catalog_queries();
        let started = Instant::now();
        let now = crate::fixtures::test_now();
        let ingested_at =
            resolve_ingested_at(&self.spec, self.status.as_ref(), &[], &self.store, now)
                .await
                .unwrap();
        let sequenced = sequence_with_table(
            &self.spec,
            &ingested_at,
            SequenceStart::from_status(self.status.as_ref()),
            &self.store,
            None,
            Some(&self.pas),
            self.catalog.as_deref().map(|c| c as &dyn CatalogLog),
            MAX_SEQUENCED_PER_RECONCILE,
        )
        .await;
        assert_eq!(sequenced.fault, None, "no fault");
        assert_eq!(sequenced.trouble, None, "no trouble");
        let planned = plan(&PlanInput {
            name: "scale",
            spec: &self.spec,
            generation: Some(1),
            previous: self.status.as_ref(),
            ingested_at: &ingested_at,
            sequenced: &sequenced,
            jobs: &[],
            tip: None,
            hole: None,
            now,
        });
        let elapsed = started.elapsed();
        let status_bytes = serde_json::to_vec(&planned.status).unwrap().len();
        self.status = Some(planned.status);
        Reconciled {
            elapsed,
            requests: self.requests.total() - requests + self.pas_requests.total() - pas_requests,
            pas_requests: self.pas_requests.total() - pas_requests,
            catalog_queries: self.catalog_queries() - queries,
            newly: sequenced.newly.len(),
            more: sequenced.more,
            status_bytes,
        }
    }

    /// Reconciles until nothing is left to sequence; every reconcile's cost.
    pub async fn catch_up(&mut self) -> Vec<Reconciled> {
        let mut all = Vec::new();
        loop {
            let r = self.reconcile().await;
            let more = r.more && r.newly > 0;
            all.push(r);
            if !more {
                return all;
            }
        }
    }

    pub fn checkpoint(&self) -> Option<u32> {
        self.status.as_ref()?.last_committed_ledger
    }
}

/// Peak and current resident memory of this process, in KiB (`VmHWM`, `VmRSS`).
pub fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A lake of `committed` partitions (of `total` in the grid) caught up by one operator; the
/// operator is returned with the status at the checkpoint.
async fn caught_up_lake(dir: &std::path::Path, committed: u32, total: u32) -> Operator {
    let spec = lake_spec(dir, total);
    commit_partitions(&spec, 0, committed).await;
    let mut operator = Operator::start(&spec, None, None);
    operator.catch_up().await;
    assert_eq!(operator.checkpoint(), Some(1 + committed * 10));
    operator
}

/// What one reconcile costs once the checkpoint is at `committed`: a steady reconcile with one
/// new partition, and the first reconcile of a freshly started operator.
async fn costs_at(committed: u32) -> (Reconciled, Reconciled) {
    let dir = tempfile::tempdir().unwrap();
    let mut operator = caught_up_lake(dir.path(), committed, committed + 10).await;
    commit_partitions(&operator.spec, committed, committed + 1).await;
    let steady = operator.reconcile().await;
    assert_eq!(steady.newly, 1);
    commit_partitions(&operator.spec, committed + 1, committed + 2).await;
    let mut restarted = Operator::start(&operator.spec, operator.status.clone(), None);
    let cold = restarted.reconcile().await;
    assert_eq!(cold.newly, 1);
    (steady, cold)
}

/// A steady reconcile (one new partition) reads and writes the same number of objects at 200
/// and at 400 committed partitions: nothing in it lists or reads what is already sequenced.
#[tokio::test]
async fn a_steady_reconcile_costs_the_same_storage_requests_at_any_lake_size() {
    let (small, _) = costs_at(200).await;
    let (large, _) = costs_at(400).await;
    assert_eq!(small.requests, large.requests, "{small:?} vs {large:?}");
    assert!(small.requests <= 8, "{small:?}");
}

/// The operator's memory does not grow with the chain: its PAS stream keeps a bounded number of
/// events, after a catch-up from nothing and after a restart.
#[tokio::test]
async fn the_pas_events_held_in_memory_stay_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let bound = bronze::pas::hook::HEAD_STREAM_EVENTS;
    let committed = bound as u32 + 50;
    let operator = caught_up_lake(dir.path(), committed, committed + 10).await;
    assert_eq!(operator.pas.events_in_memory().await, Some(bound));
    commit_partitions(&operator.spec, committed, committed + 1).await;
    let mut restarted = Operator::start(&operator.spec, operator.status.clone(), None);
    assert_eq!(restarted.reconcile().await.newly, 1);
    assert_eq!(restarted.pas.events_in_memory().await, Some(2));
}

/// The first reconcile after the operator (re)starts does not read every stored PAS event: it
/// opens the chain at its recorded head.
#[tokio::test]
async fn a_restarted_operator_opens_the_pas_chain_at_its_head() {
    let (_, small) = costs_at(200).await;
    let (_, large) = costs_at(400).await;
    assert_eq!(small.requests, large.requests, "{small:?} vs {large:?}");
}

fn env_u32(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `make bench-operator`: the operator's sequencing and planning at 6,000 partitions
/// (`BRONZE_BENCH_PARTITIONS`, `BRONZE_BENCH_RECONCILES`; `BRONZE_BENCH_CATALOG=0` without the
/// PostgreSQL catalog).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: make bench-operator"]
async fn bench_operator_at_many_partitions() {
    let partitions = env_u32("BRONZE_BENCH_PARTITIONS", 6000);
    let reconciles = env_u32("BRONZE_BENCH_RECONCILES", 200);
    let with_catalog = std::env::var("BRONZE_BENCH_CATALOG").as_deref() != Ok("0");
    let dir = tempfile::tempdir().unwrap();
    let mut spec = lake_spec(dir.path(), partitions + reconciles);
    let pg = with_catalog.then(|| {
        let pg = bronze_testkit::Postgres::start();
        pg.create_database("catalog");
        pg
    });
    let catalog = |spec: &BronzeBackfillSpec| -> Option<Arc<dyn CatalogLog>> {
        let pg = pg.as_ref()?;
        let config = crate::catalog::catalog_config(spec, &pg.dsn_for("catalog")).unwrap();
        Some(Arc::new(crate::catalog::PgCatalog::new(config).unwrap()))
    };
    if with_catalog {
        spec.catalog = Some(crate::crd::CatalogSpec {
            dsn_env: "BRONZE_BENCH_CATALOG_DSN".into(),
            strict: false,
        });
    }

    let t = Instant::now();
    commit_partitions(&spec, 0, partitions).await;
    println!(
        "lake: {partitions} committed partitions generated in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // Catching up from an empty status.
    let mut operator = Operator::start(&spec, None, catalog(&spec));
    let t = Instant::now();
    let rounds = operator.catch_up().await;
    let catch_up = t.elapsed();
    let per: Vec<String> = rounds
        .iter()
        .map(|r| format!("{}:{:.0}ms", r.newly, ms(r.elapsed)))
        .collect();
    println!(
        "catch-up from an empty status: {} reconciles ({} partitions each at most), {:.1} s in all, {:.1} ms per partition; each (sequenced:time): {}",
        rounds.len(),
        MAX_SEQUENCED_PER_RECONCILE,
        catch_up.as_secs_f64(),
        ms(catch_up) / f64::from(partitions),
        per.join(" ")
    );
    assert_eq!(operator.checkpoint(), Some(1 + partitions * 10));

    // A freshly started operator at the checkpoint (nothing new).
    let mut restarted = Operator::start(&spec, operator.status.clone(), catalog(&spec));
    let cold = restarted.reconcile().await;
    println!(
        "restart at {partitions}: first reconcile {:.1} ms, {} storage requests ({} PAS outbox), {} catalog queries",
        ms(cold.elapsed),
        cold.requests,
        cold.pas_requests,
        cold.catalog_queries
    );
    drop(restarted);

    // Steady state: one new partition per reconcile.
    let mut steady = Vec::new();
    for i in 0..reconciles {
        commit_partitions(&spec, partitions + i, partitions + i + 1).await;
        let r = operator.reconcile().await;
        assert_eq!(r.newly, 1);
        steady.push(r);
    }
    let mut times: Vec<Duration> = steady.iter().map(|r| r.elapsed).collect();
    times.sort();
    let mean_pas =
        steady.iter().map(|r| r.pas_requests).sum::<u64>() as f64 / steady.len().max(1) as f64;
    let max_requests = steady.iter().map(|r| r.requests).max().unwrap_or(0);
    let mean_requests =
        steady.iter().map(|r| r.requests).sum::<u64>() as f64 / steady.len().max(1) as f64;
    let max_queries = steady.iter().map(|r| r.catalog_queries).max().unwrap_or(0);
    let status_bytes = steady.iter().map(|r| r.status_bytes).max().unwrap_or(0);
    let (peak, rss) = memory_kib();
    println!(
        "steady state at {partitions}..{} partitions, {} reconciles of one new partition each: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; storage requests per reconcile {mean_requests:.1} (max {max_requests}), of which PAS outbox {mean_pas:.1}; catalog queries per reconcile max {max_queries}; status {status_bytes} bytes of JSON; RSS {} MiB now, peak {} MiB (whole test process, lake generation included)",
        partitions + reconciles,
        reconciles,
        ms(percentile(&times, 0.5)),
        ms(percentile(&times, 0.99)),
        ms(*times.last().unwrap()),
        rss / 1024,
        peak / 1024,
    );
}

/// `make bench-operator`: the Delta log backfilled from the manifests of a lake of
/// `BRONZE_BENCH_PARTITIONS` committed partitions (6,000; the key turned on for an existing
/// backfill, or a log lost), one commit per partition (as earlier versions did) against
/// `bronze::delta::repair::BATCH` per commit, on two copies of the same lake. The lake's Parquet
/// files are stand-ins, so each footer read (one ranged GET, as for a real file) finds no
/// statistics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: make bench-operator"]
async fn bench_delta_log_backfill() {
    let partitions = env_u32("BRONZE_BENCH_PARTITIONS", 6000);
    let batched = bronze::delta::repair::BATCH;
    let mut times = Vec::new();
    for batch in [1, batched] {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = lake_spec(dir.path(), partitions);
        commit_partitions(&spec, 0, partitions).await;
        spec.storage.table_format = crate::crd::TableFormat::Delta;
        let config = crate::job::worker_config(&spec, INGESTED_AT).unwrap();
        let location = location(&spec);
        let layout = DatasetLayout::from_config(&config);
        let table = bronze::delta::DeltaTable::new(&location, &layout);
        let t = Instant::now();
        let added = bronze::delta::catch_up_in_batches_of(&table, &location, None, batch)
            .await
            .unwrap();
        let elapsed = t.elapsed();
        let version = table.version().await.unwrap();
        assert_eq!(added, partitions as usize);
        assert_eq!(table.recorded().await.unwrap().len(), partitions as usize);
        println!(
            "delta log backfill of {partitions} committed partitions, {batch} per commit: {:.1} s, {:.2} ms per partition, log at version {version:?}",
            elapsed.as_secs_f64(),
            ms(elapsed) / f64::from(partitions),
        );
        times.push(elapsed);
    }
    println!(
        "delta log backfill: {:.1}x faster with {batched} partitions per commit",
        times[0].as_secs_f64() / times[1].as_secs_f64()
    );
}
