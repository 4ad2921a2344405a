//! Prometheus metrics: a facade of free functions over one process-wide registry, so that a call
//! site is one line (`metrics::retry("source_read")`) and nothing has to carry a handle around.
//!
//! Names keep the original's (docs/formats.md#metrics: namespace `bronze_copier_`, the same
//! counters, gauges and histogram buckets), and every one of them is updated here; the
//! original's stayed at zero apart from a few. Added: `errors_total{kind}` (all error kinds in
//! one family), byte counters, `catalog_pending_partitions`, `pas_pending_deliveries` and
//! `build_info`. Labels `{network, era_id, version}` name the dataset, set once by [`init`].
//!
//! [`serve`] exposes `/metrics` (Prometheus text format 0.0.4) and `/health`. A process that serves
//! its own registry (the operator, whose PAS delivery and datastore reads run this library's code)
//! adds these families to it with [`register`]: one registry and one endpoint per process, one
//! set of counters.

mod rate;
mod server;

use std::sync::atomic::AtomicU64;
use std::sync::{LazyLock, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

pub use rate::{RateTracker, RateWindow};
pub use server::{MetricsServer, ServeError, accept_loop, serve};

use crate::config::Config;

/// What failed, for `errors_total{kind}` (and the original's per-kind error counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Reading the datastore (network, permissions, missing objects).
    Source,
    /// zstd or XDR that cannot be decoded.
    Decode,
    /// Ledgers that fail the chain, sequence or header checks.
    Validation,
    /// Writing the output (uploads, manifests).
    Storage,
    /// The PostgreSQL catalog.
    Catalog,
    /// The public audit stream.
    Pas,
    /// Anything else (the Parquet encoder, a crashed task, the checkpoint file).
    Internal,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Source => "source",
            ErrorKind::Decode => "decode",
            ErrorKind::Validation => "validation",
            ErrorKind::Storage => "storage",
            ErrorKind::Catalog => "catalog",
            ErrorKind::Pas => "pas",
            ErrorKind::Internal => "internal",
        }
    }
}

#[derive(Clone, Debug, Default, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DatasetLabels {
    network: String,
    era_id: String,
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NetworkLabels {
    network: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    network: String,
    source_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    network: String,
    backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    network: String,
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    network: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabels {
    network: String,
    cause: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
    git_sha: String,
}

/// The run's identity, fixed by [`init`].
#[derive(Debug, Clone, Default)]
struct Identity {
    dataset: DatasetLabels,
    source_type: String,
    backend: String,
}

static IDENTITY: OnceLock<Identity> = OnceLock::new();

fn identity() -> &'static Identity {
    IDENTITY.get_or_init(Identity::default)
}

fn dataset() -> &'static DatasetLabels {
    &identity().dataset
}

fn network() -> NetworkLabels {
    NetworkLabels {
        network: dataset().network.clone(),
    }
}

type Hist = Family<DatasetLabels, Histogram, fn() -> Histogram>;

fn hist(constructor: fn() -> Histogram) -> Hist {
    Family::new_with_constructor(constructor)
}

struct Metrics {
    partitions_processed: Family<DatasetLabels, Counter>,
    partitions_skipped: Family<DatasetLabels, Counter>,
    partitions_failed: Family<DatasetLabels, Counter>,
    ledgers_processed: Family<DatasetLabels, Counter>,
    xdr_bytes: Family<DatasetLabels, Counter>,
    source_bytes: Family<DatasetLabels, Counter>,
    parquet_bytes: Family<DatasetLabels, Counter>,
    last_ledger: Family<DatasetLabels, Gauge>,
    build_duration: Hist,
    upload_duration: Hist,
    commit_duration: Hist,
    partition_rows: Hist,
    partition_bytes: Hist,
    queue_depth: Gauge,
    sequencer_pending: Gauge,
    in_flight: Gauge,
    ledgers_per_second: Gauge<f64, AtomicU64>,
    catalog_pending: Gauge,
    pas_pending: Gauge,
    tip_lag_seconds: Gauge<f64, AtomicU64>,
    tip_readable_ledger: Gauge,
    tip_commits: Counter,
    source_errors: Family<SourceLabels, Counter>,
    storage_errors: Family<BackendLabels, Counter>,
    metadata_errors: Family<NetworkLabels, Counter>,
    pas_errors: Family<NetworkLabels, Counter>,
    errors: Family<KindLabels, Counter>,
    retries: Family<OperationLabels, Counter>,
    source_read_failures: Family<CauseLabels, Counter>,
    build_info: Family<BuildLabels, Gauge>,
}

/// The one store of this library's metrics in a process: registries only index it.
static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The standalone copier's registry (what [`encode`] serves). A process with its own registry
/// (the operator) does not build this one: it registers the same families with [`register`].
static REGISTRY: LazyLock<Registry> = LazyLock::new(|| {
    let mut registry = Registry::default();
    register(&mut registry);
    registry
});

/// Registers this library's families (`bronze_copier_*`, the very series [`retry`] and friends
/// update) in `registry`, so a process that serves its own registry serves them too, from the
/// same counters. `registry` must have no prefix of its own.
pub fn register(registry: &mut Registry) {
    METRICS.register(registry.sub_registry_with_prefix("bronze_copier"));
}

impl Metrics {
    fn new() -> Self {
        Metrics {
            partitions_processed: Family::default(),
            partitions_skipped: Family::default(),
            partitions_failed: Family::default(),
            ledgers_processed: Family::default(),
            xdr_bytes: Family::default(),
            source_bytes: Family::default(),
            parquet_bytes: Family::default(),
            last_ledger: Family::default(),
            // The original's buckets: 0.1 s × 2^k (10), 0.01 s × 2^k (12), 0.1 s × 2^k (12),
            // 100 rows × 2^k (10), 1 KiB × 2^k (15).
            build_duration: hist(|| Histogram::new(exponential_buckets(0.1, 2.0, 10))),
            upload_duration: hist(|| Histogram::new(exponential_buckets(0.01, 2.0, 12))),
            commit_duration: hist(|| Histogram::new(exponential_buckets(0.1, 2.0, 12))),
            partition_rows: hist(|| Histogram::new(exponential_buckets(100.0, 2.0, 10))),
            partition_bytes: hist(|| Histogram::new(exponential_buckets(1024.0, 2.0, 15))),
            queue_depth: Gauge::default(),
            sequencer_pending: Gauge::default(),
            in_flight: Gauge::default(),
            ledgers_per_second: Gauge::default(),
            catalog_pending: Gauge::default(),
            pas_pending: Gauge::default(),
            tip_lag_seconds: Gauge::default(),
            tip_readable_ledger: Gauge::default(),
            tip_commits: Counter::default(),
            source_errors: Family::default(),
            storage_errors: Family::default(),
            metadata_errors: Family::default(),
            pas_errors: Family::default(),
            errors: Family::default(),
            retries: Family::default(),
            source_read_failures: Family::default(),
            build_info: Family::default(),
        }
    }

    fn register(&self, r: &mut Registry) {
        let m = self;
        r.register(
            "partitions_processed",
            "Partitions committed by this run",
            m.partitions_processed.clone(),
        );
        r.register(
            "partitions_skipped",
            "Partitions found already committed in storage and adopted",
            m.partitions_skipped.clone(),
        );
        r.register(
            "partitions_failed",
            "Partitions whose build or publish failed (each failed attempt)",
            m.partitions_failed.clone(),
        );
        r.register(
            "ledgers_processed",
            "Ledgers in partitions committed by this run (adopted ones excluded); rate() of it is the copy rate",
            m.ledgers_processed.clone(),
        );
        r.register(
            "xdr_bytes",
            "Uncompressed LedgerCloseMeta XDR bytes encoded into Parquet",
            m.xdr_bytes.clone(),
        );
        r.register(
            "source_bytes",
            "Compressed bytes downloaded from the datastore",
            m.source_bytes.clone(),
        );
        r.register(
            "parquet_bytes",
            "Parquet bytes of partitions committed by this run",
            m.parquet_bytes.clone(),
        );
        r.register(
            "last_ledger_sequence",
            "Last ledger of the last committed partition",
            m.last_ledger.clone(),
        );
        r.register(
            "partition_build_duration_seconds",
            "Time to download, decode, validate, encode and upload one partition",
            m.build_duration.clone(),
        );
        r.register(
            "partition_upload_duration_seconds",
            "Time from a partition's first uploaded byte to the completed upload",
            m.upload_duration.clone(),
        );
        r.register(
            "partition_commit_duration_seconds",
            "Time to publish one partition: manifest, hooks (PAS, catalog), checkpoint",
            m.commit_duration.clone(),
        );
        r.register(
            "partition_rows",
            "Rows per committed partition",
            m.partition_rows.clone(),
        );
        r.register(
            "partition_bytes",
            "Parquet bytes per committed partition",
            m.partition_bytes.clone(),
        );
        r.register(
            "worker_queue_depth",
            "Downloaded datastore objects waiting for an encoder",
            m.queue_depth.clone(),
        );
        r.register(
            "sequencer_pending",
            "Built partitions waiting to be published in ledger order",
            m.sequencer_pending.clone(),
        );
        r.register(
            "in_flight_partitions",
            "Partitions being built",
            m.in_flight.clone(),
        );
        r.register(
            "ledgers_per_second",
            "Ledgers copied per second over the last metrics.rate_window_seconds (0 while idle)",
            m.ledgers_per_second.clone(),
        );
        r.register(
            "catalog_pending_partitions",
            "Committed partitions known to have no catalog rows yet (lenient mode: gaps found in the catalog, plus partitions not recorded since)",
            m.catalog_pending.clone(),
        );
        r.register(
            "pas_pending_deliveries",
            "Audit events written to the outbox but not yet delivered",
            m.pas_pending.clone(),
        );
        r.register(
            "tip_lag_seconds",
            "Provisional tip (docs/tip.md): how long the oldest datastore object not yet readable through the Delta table has been there (0 when every landed ledger is readable)",
            m.tip_lag_seconds.clone(),
        );
        r.register(
            "tip_readable_ledger",
            "Provisional tip: the newest ledger readable through the Delta table (sealed or provisional)",
            m.tip_readable_ledger.clone(),
        );
        r.register(
            "tip_commits",
            "Provisional tip: Delta commits adding provisional files",
            m.tip_commits.clone(),
        );
        r.register(
            "source_errors",
            "Datastore read errors",
            m.source_errors.clone(),
        );
        r.register(
            "storage_errors",
            "Output storage errors",
            m.storage_errors.clone(),
        );
        r.register(
            "metadata_errors",
            "Catalog (PostgreSQL) errors",
            m.metadata_errors.clone(),
        );
        r.register("pas_errors", "Audit stream errors", m.pas_errors.clone());
        r.register(
            "errors",
            "Errors by kind: source, decode, validation, storage, catalog, pas, internal",
            m.errors.clone(),
        );
        r.register("retry_attempts", "Retries by operation", m.retries.clone());
        r.register(
            "source_read_failures",
            "Failed datastore requests (each retried) by cause: throttled, server_error, timeout, connection, other",
            m.source_read_failures.clone(),
        );
        r.register(
            "build_info",
            "Version of the running copier",
            m.build_info.clone(),
        );
    }
}

/// Fixes the dataset labels for this process (from the config) and publishes `build_info`.
/// Calls after the first are ignored.
pub fn init(config: &Config) {
    let _ = IDENTITY.set(Identity {
        dataset: DatasetLabels {
            network: config.era.network.clone(),
            era_id: config.era.era_id.clone(),
            version: config.era.version_label.clone(),
        },
        source_type: config.source.mode.to_string(),
        backend: config.storage.backend.to_string(),
    });
    let m = &*METRICS;
    m.build_info
        .get_or_create(&BuildLabels {
            version: crate::VERSION.into(),
            git_sha: crate::GIT_SHA.into(),
        })
        .set(1);
    // Every series of this dataset exists from the start (at 0), so dashboards and alerts see
    // them before the first partition or error.
    let ds = dataset();
    for family in [
        &m.partitions_processed,
        &m.partitions_skipped,
        &m.partitions_failed,
        &m.ledgers_processed,
        &m.xdr_bytes,
        &m.source_bytes,
        &m.parquet_bytes,
    ] {
        drop(family.get_or_create(ds));
    }
    drop(m.last_ledger.get_or_create(ds));
    for family in [
        &m.build_duration,
        &m.upload_duration,
        &m.commit_duration,
        &m.partition_rows,
        &m.partition_bytes,
    ] {
        drop(family.get_or_create(ds));
    }
    let id = identity();
    drop(m.source_errors.get_or_create(&SourceLabels {
        network: id.dataset.network.clone(),
        source_type: id.source_type.clone(),
    }));
    drop(m.storage_errors.get_or_create(&BackendLabels {
        network: id.dataset.network.clone(),
        backend: id.backend.clone(),
    }));
    drop(m.metadata_errors.get_or_create(&network()));
    drop(m.pas_errors.get_or_create(&network()));
    for operation in ["source_read", "partition_build", "catalog"] {
        drop(m.retries.get_or_create(&OperationLabels {
            network: id.dataset.network.clone(),
            operation: operation.into(),
        }));
    }
    for kind in [
        ErrorKind::Source,
        ErrorKind::Decode,
        ErrorKind::Validation,
        ErrorKind::Storage,
        ErrorKind::Catalog,
        ErrorKind::Pas,
        ErrorKind::Internal,
    ] {
        drop(m.errors.get_or_create(&KindLabels {
            network: id.dataset.network.clone(),
            kind: kind.as_str().into(),
        }));
    }
}

/// Counts one retry of `operation` (`source_read`, `partition_build`, `catalog`, `pas_delivery`, …).
pub fn retry(operation: &str) {
    METRICS
        .retries
        .get_or_create(&OperationLabels {
            network: dataset().network.clone(),
            operation: operation.to_string(),
        })
        .inc();
}

/// Counts one failed datastore request by cause (`throttled`, `server_error`, `timeout`, ...).
pub fn source_read_failure(cause: &str) {
    METRICS
        .source_read_failures
        .get_or_create(&CauseLabels {
            network: dataset().network.clone(),
            cause: cause.to_string(),
        })
        .inc();
}

/// Counts one error of `kind`, also in the original's per-kind counter where it had one.
pub fn error(kind: ErrorKind) {
    let id = identity();
    let m = &*METRICS;
    m.errors
        .get_or_create(&KindLabels {
            network: id.dataset.network.clone(),
            kind: kind.as_str().into(),
        })
        .inc();
    match kind {
        ErrorKind::Source => {
            m.source_errors
                .get_or_create(&SourceLabels {
                    network: id.dataset.network.clone(),
                    source_type: id.source_type.clone(),
                })
                .inc();
        }
        ErrorKind::Storage => {
            m.storage_errors
                .get_or_create(&BackendLabels {
                    network: id.dataset.network.clone(),
                    backend: id.backend.clone(),
                })
                .inc();
        }
        ErrorKind::Catalog => {
            m.metadata_errors.get_or_create(&network()).inc();
        }
        ErrorKind::Pas => {
            m.pas_errors.get_or_create(&network()).inc();
        }
        ErrorKind::Decode | ErrorKind::Validation | ErrorKind::Internal => {}
    }
}

/// A partition build or publish attempt failed.
pub fn partition_failed(kind: ErrorKind) {
    METRICS.partitions_failed.get_or_create(dataset()).inc();
    error(kind);
}

/// A partition was built (and its Parquet uploaded) in `elapsed`, from `xdr_bytes` of XDR.
pub fn partition_built(elapsed: Duration, xdr_bytes: u64) {
    let m = &*METRICS;
    m.build_duration
        .get_or_create(dataset())
        .observe(elapsed.as_secs_f64());
    m.xdr_bytes.get_or_create(dataset()).inc_by(xdr_bytes);
    m.sequencer_pending.inc();
}

/// A partition's Parquet upload finished in `elapsed`.
pub fn upload_finished(elapsed: Duration) {
    METRICS
        .upload_duration
        .get_or_create(dataset())
        .observe(elapsed.as_secs_f64());
}

/// Bytes downloaded from the datastore.
pub fn source_bytes(bytes: u64) {
    METRICS.source_bytes.get_or_create(dataset()).inc_by(bytes);
}

/// What the sequencer reports after publishing one partition.
#[derive(Debug, Clone, Copy)]
pub struct Published {
    pub last_ledger: u32,
    pub ledgers: u64,
    pub rows: u64,
    pub parquet_bytes: u64,
    /// Found already committed (a resumed run) rather than written now.
    pub adopted: bool,
    /// The partition was built by this run (so it was counted as pending for the sequencer).
    pub built_now: bool,
    pub elapsed: Duration,
}

/// A partition was published (committed, hooks run, checkpoint saved).
pub fn partition_published(p: Published) {
    let m = &*METRICS;
    let ds = dataset();
    if p.built_now {
        m.sequencer_pending.dec();
    }
    if p.adopted {
        m.partitions_skipped.get_or_create(ds).inc();
    } else {
        m.partitions_processed.get_or_create(ds).inc();
        m.ledgers_processed.get_or_create(ds).inc_by(p.ledgers);
        m.parquet_bytes.get_or_create(ds).inc_by(p.parquet_bytes);
        m.partition_rows.get_or_create(ds).observe(p.rows as f64);
        m.partition_bytes
            .get_or_create(ds)
            .observe(p.parquet_bytes as f64);
        m.commit_duration
            .get_or_create(ds)
            .observe(p.elapsed.as_secs_f64());
    }
    m.last_ledger
        .get_or_create(ds)
        .set(i64::from(p.last_ledger));
}

/// Ledgers copied by this run so far (`ledgers_processed_total`).
fn ledgers_copied() -> u64 {
    METRICS.ledgers_processed.get_or_create(dataset()).get()
}

/// Sets the recent-rate gauge.
fn set_ledgers_per_second(rate: f64) {
    METRICS.ledgers_per_second.set(rate);
}

/// Held while a partition is being built: `in_flight_partitions` counts the live guards.
#[must_use]
pub struct InFlight(());

impl InFlight {
    pub fn start() -> Self {
        METRICS.in_flight.inc();
        InFlight(())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        METRICS.in_flight.dec();
    }
}

/// Travels with a downloaded object through the queue to its encoder: `worker_queue_depth`
/// counts the live slots, so an object dropped with its queue is uncounted too.
#[must_use]
#[derive(Debug)]
pub struct QueueSlot(());

impl QueueSlot {
    pub fn new() -> Self {
        METRICS.queue_depth.inc();
        QueueSlot(())
    }
}

impl Default for QueueSlot {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for QueueSlot {
    fn drop(&mut self) {
        METRICS.queue_depth.dec();
    }
}

/// Committed partitions waiting to be recorded in the catalog.
pub fn set_catalog_pending(partitions: usize) {
    METRICS.catalog_pending.set(partitions as i64);
}

/// Audit events written but not yet delivered (set by the PAS outbox).
pub fn set_pas_pending(deliveries: usize) {
    METRICS.pas_pending.set(deliveries as i64);
}

/// The provisional tip's lag ([`Metrics::tip_lag_seconds`]).
pub fn set_tip_lag(seconds: f64) {
    METRICS.tip_lag_seconds.set(seconds.max(0.0));
}

/// The provisional tip published through `ledger` (one more commit when `committed`).
pub fn tip_published(ledger: u32, committed: bool) {
    METRICS.tip_readable_ledger.set(i64::from(ledger));
    if committed {
        METRICS.tip_commits.inc();
    }
}

/// The registry in Prometheus text format 0.0.4.
pub fn encode() -> String {
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, &REGISTRY)
        .expect("writing to a String cannot fail");
    out
}

/// The `Content-Type` of [`encode`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the first sample line of metric `name` whose labels contain `label`.
    fn sample(text: &str, name: &str, label: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn names_follow_the_original_and_values_move() {
        // Metrics are process-wide: this test only checks increases, so other tests in the
        // same process cannot break it.
        init(&Config::default());
        let before = encode();
        let get =
            |text: &str, (name, label): (&str, &str)| sample(text, name, label).unwrap_or(0.0);
        retry("unit_test_op");
        error(ErrorKind::Catalog);
        partition_published(Published {
            last_ledger: 1001,
            ledgers: 1000,
            rows: 1000,
            parquet_bytes: 4096,
            adopted: false,
            built_now: false,
            elapsed: Duration::from_millis(30),
        });
        let after = encode();
        for (metric, delta) in [
            (("bronze_copier_retry_attempts_total", "unit_test_op"), 1.0),
            (("bronze_copier_metadata_errors_total", "network"), 1.0),
            (("bronze_copier_errors_total", "kind=\"catalog\""), 1.0),
            (("bronze_copier_partitions_processed_total", "network"), 1.0),
            (("bronze_copier_ledgers_processed_total", "network"), 1000.0),
            (("bronze_copier_partition_rows_count", "network"), 1.0),
        ] {
            let grew = get(&after, metric) - get(&before, metric);
            assert!(grew >= delta, "{metric:?} grew by {grew}:\n{after}");
        }
        assert!(after.contains("# TYPE bronze_copier_partition_build_duration_seconds histogram"));
        assert!(after.contains("operation=\"unit_test_op\""));
        assert!(after.contains("kind=\"catalog\""));
    }
}
