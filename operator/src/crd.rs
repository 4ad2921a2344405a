//! The `BronzeBackfill` custom resource: what a user applies (spec) and what `kubectl get`
//! shows (status). The spec mirrors the standalone config (`bronze::config::Config`) so the
//! runbook's vocabulary carries over; [`crate::job`] turns it into the worker's environment.
//!
//! Validation happens at `kubectl apply` time: OpenAPI bounds on every number (ledger numbers are
//! `int64` with explicit bounds, never `uint32` formats, see [`crd`]), and CEL rules
//! (`x-kubernetes-validations`) where a rule spans fields or forbids a change (`self == oldSelf`
//! on everything that names the dataset or shapes its partition grid).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

// The closed sets are the worker's own (`bronze::config`): one spelling in the runbook, the
// worker's environment and this CRD's OpenAPI enums.
pub use bronze::config::{Compression, DatastoreType, SourceMode, StorageBackend, TableFormat};

/// API group of the operator's resources.
pub const GROUP: &str = "bronze.obsrvr.io";
/// Largest ledger sequence (Stellar ledger numbers are uint32).
pub const MAX_LEDGER: u32 = u32::MAX;

/// A backfill of one era of one network into Parquet partitions, run as worker Jobs.
// The lint takes the repeated `type_ = ...` of the printer columns for repeated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "bronze.obsrvr.io",
    version = "v1alpha1",
    kind = "BronzeBackfill",
    plural = "bronzebackfills",
    singular = "bronzebackfill",
    shortname = "bbf",
    category = "bronze",
    namespaced,
    status = "BronzeBackfillStatus",
    derive = "PartialEq",
    doc = "A backfill of raw Stellar ledgers from a Galexie datastore into checksummed Parquet partitions, run as one worker Job per partition range",
    printcolumn(name = "Network", type_ = "string", json_path = ".spec.network"),
    printcolumn(name = "Era", type_ = "string", json_path = ".spec.eraId"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Progress",
        type_ = "string",
        json_path = ".status.progress.summary"
    ),
    printcolumn(
        name = "Last Ledger",
        type_ = "integer",
        json_path = ".status.lastCommittedLedger"
    ),
    printcolumn(
        name = "Rate",
        type_ = "number",
        json_path = ".status.ledgersPerSecond",
        description = "Committed ledgers per second since the backfill started, as of the last commit"
    ),
    printcolumn(
        name = "Rebuild",
        type_ = "string",
        json_path = ".status.rebuild.summary",
        description = "The current or last rebuild of spec.rebuild: id, phase, partitions done/total"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.ledgerEnd == 0 || self.ledgerEnd >= self.ledgerStart").message("ledgerEnd must be 0 (follow the datastore tip) or >= ledgerStart"))]
#[x_kube(validation = Rule::new("has(self.networkPassphrase) == has(oldSelf.networkPassphrase) && (!has(self.networkPassphrase) || self.networkPassphrase == oldSelf.networkPassphrase)").message("networkPassphrase is immutable"))]
#[x_kube(validation = Rule::new("!has(oldSelf.ingestedAt) || (has(self.ingestedAt) && self.ingestedAt == oldSelf.ingestedAt)").message("ingestedAt cannot be changed or removed once set: every partition of a backfill carries the same value"))]
#[x_kube(validation = Rule::new("!has(self.rebuild) || (self.rebuild.ledgerStart >= self.ledgerStart && (self.ledgerEnd == 0 || self.rebuild.ledgerEnd <= self.ledgerEnd))").message("spec.rebuild must lie inside the backfill's range [ledgerStart, ledgerEnd]"))]
#[x_kube(validation = Rule::new("self.network in ['pubnet', 'testnet', 'futurenet'] || has(self.networkPassphrase)").message("networkPassphrase is required for networks other than pubnet, testnet and futurenet"))]
pub struct BronzeBackfillSpec {
    /// Network name: pubnet, testnet, futurenet, or another name with `networkPassphrase`.
    #[x_kube(validation = Rule::new("self == oldSelf").message("network is immutable"))]
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[A-Za-z0-9._-]+$"))]
    pub network: String,
    /// Passphrase for networks other than pubnet, testnet and futurenet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_passphrase: Option<String>,
    /// Era identifier; part of every output path.
    #[x_kube(validation = Rule::new("self == oldSelf").message("eraId is immutable"))]
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[A-Za-z0-9._-]+$"))]
    pub era_id: String,
    /// Version label; part of every output path.
    #[x_kube(validation = Rule::new("self == oldSelf").message("versionLabel is immutable"))]
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[A-Za-z0-9._-]+$"))]
    pub version_label: String,
    /// First ledger of the backfill; anchors the partition grid.
    #[x_kube(validation = Rule::new("self == oldSelf").message("ledgerStart is immutable"))]
    #[schemars(range(min = 1, max = 4294967295u64))]
    pub ledger_start: u32,
    /// Last ledger (inclusive); 0 follows the datastore's tip.
    #[serde(default)]
    #[schemars(range(min = 0, max = 4294967295u64))]
    pub ledger_end: u32,
    /// Ledgers per partition.
    #[x_kube(validation = Rule::new("self == oldSelf").message("partitionSize is immutable"))]
    #[serde(default = "default_partition_size")]
    #[schemars(range(min = 1, max = 10000000))]
    pub partition_size: u32,
    /// Consecutive partitions copied by one worker Job.
    #[serde(default = "default_partitions_per_job")]
    #[schemars(range(min = 1, max = 10000))]
    pub partitions_per_job: u32,
    /// Worker Jobs running at once.
    #[serde(default = "default_max_concurrent_jobs")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_concurrent_jobs: u32,
    /// The Galexie (SEP-54) datastore to read.
    pub source: SourceSpec,
    /// Where the Parquet partitions go.
    pub storage: StorageSpec,
    /// The audit stream (PAS).
    #[serde(default)]
    pub pas: PasSpec,
    /// The PostgreSQL catalog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog: Option<CatalogSpec>,
    /// Credentials of worker Pods for the source and storage buckets. Leave empty to use
    /// workload identity through `worker.serviceAccountName`.
    #[serde(default)]
    pub credentials: CredentialsSpec,
    /// The worker Pods.
    pub worker: WorkerSpec,
    /// Stop creating Jobs; running ones finish. Set back to false to continue.
    #[serde(default)]
    pub suspend: bool,
    /// Rebuild a range of committed partitions (a new `id` requests one; the same `id` is never
    /// carried out twice). The range is widened to whole partitions of the grid; each partition
    /// is rebuilt with the current writer settings (`storage.compression`, ...) and replaced
    /// through the sequencer, with a `bronze_partition_replaced` PAS event, its catalog row and
    /// Delta log entry replaced; a rebuilt partition identical to the committed one is kept.
    /// Progress: `status.rebuild`. A rebuild that has started runs to its end; a new `id` set
    /// meanwhile waits for it (queued).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebuild: Option<RebuildSpec>,
    /// Removed: a worker Job never replaces a committed partition (it adopts it), because a
    /// replacement made by a worker was not recorded in the audit chain, the catalog or the
    /// Delta log. Migrating: delete the field (or set it to `false`; resources that set it
    /// `false` stay valid) and request a rebuild of the range with `spec.rebuild {id,
    /// ledgerStart, ledgerEnd}` instead, which replaces partitions through the sequencer with
    /// the full audit trail.
    #[x_kube(validation = Rule::new("self == false").message("spec.allowOverwrite is removed: worker Jobs always adopt committed partitions; to replace partitions, request a rebuild with spec.rebuild {id, ledgerStart, ledgerEnd} (see docs/crd-reference.md, 'Migrating from allowOverwrite')"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_overwrite: Option<bool>,
    /// Fixes the `ingested_at` column (RFC 3339). When absent, the resource's creationTimestamp
    /// is used and recorded in `status.ingestedAt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(
        pattern = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$"
    ))]
    pub ingested_at: Option<String>,
    /// A Stellar history archive every ledger is checked against before its partition is
    /// committed (the worker's `archive.url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<ArchiveSpec>,
}

/// The history archive check (docs/configuration.md, "History archive check").
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveSpec {
    /// `https://`, `http://`, `s3://bucket/prefix` or `gs://bucket/prefix` (the worker Pods'
    /// credentials, or unsigned requests for a public bucket).
    #[schemars(regex(pattern = r"^(https?|s3|gs)://[^\s]+$"))]
    pub url: String,
    /// More archives, of the same forms: a ledger passes when the archives that can be reached
    /// agree and at least one has it; two that disagree are named (the worker's `archive.urls`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(regex(pattern = r"^(https?|s3|gs)://[^\s,]+$")))]
    pub urls: Vec<String>,
    /// Commit ledgers beyond the archive's newest checkpoint unchecked (recorded as unanchored
    /// in the manifest) instead of failing the worker Job.
    #[serde(default)]
    pub allow_unanchored: bool,
    /// A ledger whose hash you trust (from a block explorer or your own stellar-core): the
    /// archive's header for it must hash to it, and every checked ledger must hash-link to it
    /// through the archive's headers (the worker's `archive.trusted_ledger`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted_ledger: Option<TrustedLedgerSpec>,
}

/// `spec.archive.trustedLedger`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrustedLedgerSpec {
    /// The ledger's sequence number.
    #[schemars(range(min = 1))]
    pub sequence: u32,
    /// Its ledger hash: 64 hex digits.
    #[schemars(regex(pattern = r"^[0-9a-fA-F]{64}$"))]
    pub hash: String,
}

fn default_partition_size() -> u32 {
    10_000
}
fn default_partitions_per_job() -> u32 {
    1
}
fn default_max_concurrent_jobs() -> u32 {
    4
}

/// `spec.rebuild`: a range of committed partitions to rebuild and replace, named by `id`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.ledgerStart <= self.ledgerEnd").message("spec.rebuild.ledgerStart must be <= spec.rebuild.ledgerEnd"))]
#[x_kube(validation = Rule::new("self.id != oldSelf.id || (self.ledgerStart == oldSelf.ledgerStart && self.ledgerEnd == oldSelf.ledgerEnd)").message("spec.rebuild.id names one rebuild: a new range needs a new id"))]
pub struct RebuildSpec {
    /// Names the rebuild; a new value requests one, and the same value is never carried out
    /// twice (e.g. `2026-12-compression`).
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[A-Za-z0-9._-]+$"))]
    pub id: String,
    /// First ledger to rebuild (widened down to its partition's first ledger).
    #[schemars(range(min = 1, max = 4294967295u64))]
    pub ledger_start: u32,
    /// Last ledger to rebuild (widened up to its partition's last ledger); the whole range must
    /// be committed (at or below `status.checkpoint`).
    #[schemars(range(min = 1, max = 4294967295u64))]
    pub ledger_end: u32,
}

/// The datastore, as in the runbook's `source` section.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.mode != 'local' || (has(self.localPath) && self.localPath != '')").message("source.localPath is required when mode is local"))]
#[x_kube(validation = Rule::new("self.mode != 'gcs' || (has(self.gcsBucket) && self.gcsBucket != '')").message("source.gcsBucket is required when mode is gcs"))]
#[x_kube(validation = Rule::new("self.mode != 's3' || (has(self.s3Bucket) && self.s3Bucket != '')").message("source.s3Bucket is required when mode is s3"))]
#[x_kube(validation = Rule::new("self.mode != 'datastore' || (has(self.datastorePath) && self.datastorePath != '' && has(self.datastoreType))").message("source.datastorePath and source.datastoreType are required when mode is datastore"))]
pub struct SourceSpec {
    pub mode: SourceMode,
    /// Mode local: the datastore directory as seen by worker Pods (and the operator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_path: Option<String>,
    /// Mode local: a PersistentVolumeClaim mounted read-only at `localPath` in worker Pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_claim_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcs_bucket: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcs_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_bucket: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_prefix: Option<String>,
    /// S3-compatible endpoint (MinIO, R2, B2); path-style requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://"))]
    pub s3_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_region: Option<String>,
    /// Mode datastore: `GCS` or `S3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datastore_type: Option<DatastoreType>,
    /// Mode datastore: `bucket/prefix`, no scheme.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[^/:]+(/.*)?$"))]
    pub datastore_path: Option<String>,
    /// Follow mode (`ledgerEnd: 0`): how often the operator looks for new ledgers.
    #[serde(default = "default_poll_seconds")]
    #[schemars(range(min = 1, max = 86400))]
    pub poll_interval_seconds: u32,
    /// Only for a datastore without `.config.json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000000))]
    pub ledgers_per_batch: Option<u32>,
    /// Only for a datastore without `.config.json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000000))]
    pub batches_per_partition: Option<u32>,
}

fn default_poll_seconds() -> u32 {
    30
}

/// The output, as in the runbook's `storage` section. Where the dataset lives cannot change
/// once the backfill exists: its checkpoint and audit chain describe that place.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.backend != 'local' || (has(self.localDir) && self.localDir != '')").message("storage.localDir is required when backend is local"))]
#[x_kube(validation = Rule::new("self.backend == 'local' || (has(self.bucket) && self.bucket != '')").message("storage.bucket is required when backend is gcs or s3"))]
#[x_kube(validation = Rule::new("(has(self.bucket) ? self.bucket : '') == (has(oldSelf.bucket) ? oldSelf.bucket : '') && (has(self.localDir) ? self.localDir : '') == (has(oldSelf.localDir) ? oldSelf.localDir : '')").message("storage.bucket and storage.localDir are immutable"))]
pub struct StorageSpec {
    #[x_kube(validation = Rule::new("self == oldSelf").message("storage.backend is immutable"))]
    pub backend: StorageBackend,
    /// Backend local: the output directory as seen by worker Pods (and the operator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_dir: Option<String>,
    /// Backend local: a PersistentVolumeClaim (ReadWriteMany) mounted at `localDir` in worker Pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_claim_name: Option<String>,
    /// Backend gcs or s3: the bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// Key prefix inside the bucket or directory.
    #[x_kube(validation = Rule::new("self == oldSelf").message("storage.prefix is immutable"))]
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Backend s3: an S3-compatible endpoint; path-style requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://"))]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Parquet codec.
    #[serde(default = "default_compression")]
    pub compression: Compression,
    /// Codec level (zstd 1-22, gzip 0-9).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 22))]
    pub compression_level: Option<i32>,
    /// `delta`: the dataset folder is also a Delta Lake table; the operator adds each partition
    /// to its `_delta_log/` as it sequences it (and backfills partitions committed earlier).
    #[serde(
        default = "no_table_format",
        skip_serializing_if = "is_no_table_format"
    )]
    pub table_format: TableFormat,
}

fn no_table_format() -> TableFormat {
    TableFormat::None
}

fn is_no_table_format(format: &TableFormat) -> bool {
    *format == TableFormat::None
}

fn default_prefix() -> String {
    "bronze/".into()
}
fn default_compression() -> Compression {
    Compression::Zstd
}

/// The audit stream. The operator appends one event per committed partition, in ledger order.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PasSpec {
    /// Cannot change after creation: a chain that starts mid-backfill could not be rebuilt.
    #[x_kube(validation = Rule::new("self == oldSelf").message("pas.enabled is immutable"))]
    #[serde(default)]
    pub enabled: bool,
    /// HTTP endpoint events are delivered to (after they are durably in the outbox).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://"))]
    pub endpoint: Option<String>,
    /// Name of an environment variable of the **operator** holding the endpoint's bearer token
    /// (the operator delivers the events; set the variable from a Secret in its Deployment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"))]
    pub token_env: Option<String>,
    /// Stop sequencing when delivery fails (otherwise undelivered events are retried later).
    #[serde(default)]
    pub strict: bool,
}

/// The PostgreSQL catalog, written by the operator as it sequences the committed partitions
/// (the same `_meta_datasets`, `_meta_lineage` and `_meta_quality` rows a standalone copier
/// writes).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CatalogSpec {
    /// Name of an environment variable of the **operator** holding the DSN
    /// (`postgres://user:password@host:5432/db`; TLS with libpq's `sslmode` and `sslrootcert`,
    /// e.g. `?sslmode=verify-full&sslrootcert=/etc/bronze/ca.pem`; the operator writes the rows,
    /// so set the variable from a Secret in its Deployment). The operator never reads Secrets
    /// itself.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$")
    )]
    pub dsn_env: String,
    /// Strict: the checkpoint does not move past a partition whose rows could not be written.
    /// Lenient (default): sequencing goes on, a warning says so, and the missing rows are
    /// written from the manifests in storage at a later reconcile.
    #[serde(default)]
    pub strict: bool,
}

/// S3 keys from a Secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3CredentialsRef {
    pub secret_name: String,
    #[serde(default = "default_access_key_key")]
    pub access_key_id_key: String,
    #[serde(default = "default_secret_key_key")]
    pub secret_access_key_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token_key: Option<String>,
}

fn default_access_key_key() -> String {
    "AWS_ACCESS_KEY_ID".into()
}
fn default_secret_key_key() -> String {
    "AWS_SECRET_ACCESS_KEY".into()
}

/// A GCS service-account key file from a Secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GcsCredentialsRef {
    pub secret_name: String,
    #[serde(default = "default_gcs_key")]
    pub key: String,
}

fn default_gcs_key() -> String {
    "key.json".into()
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsSpec {
    /// Exposed to workers as AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (/ AWS_SESSION_TOKEN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3CredentialsRef>,
    /// Mounted into workers and named by GOOGLE_APPLICATION_CREDENTIALS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcs: Option<GcsCredentialsRef>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

/// The worker Pods and their Jobs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkerSpec {
    /// The image with the `bronze-copier` binary. Default: the operator's
    /// `--default-worker-image` (the chart sets it); with neither the backfill fails (`Config`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
    /// ServiceAccount of worker Pods (bind it to a cloud identity for workload identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Pod retries inside one Job for retryable failures (exit code 1, evictions are free).
    #[serde(default = "default_backoff_limit")]
    #[schemars(range(min = 0, max = 100))]
    pub backoff_limit: i32,
    /// Jobs per range before the range is reported Failed (a Job fails after `backoffLimit`
    /// retryable pod failures or its deadline). Bad input is never retried.
    #[serde(default = "default_max_attempts")]
    #[schemars(range(min = 1, max = 100))]
    pub max_attempts: u32,
    /// Deadline of one Job.
    #[serde(default = "default_deadline")]
    #[schemars(range(min = 60, max = 2592000))]
    pub active_deadline_seconds: i64,
    /// How long a finished Job stays after the operator has harvested its partitions.
    #[serde(default = "default_ttl")]
    #[schemars(range(min = 0, max = 2592000))]
    pub ttl_seconds_after_harvest: i32,
    /// Partitions built concurrently inside one Pod (at most `partitionsPerJob`). Unset: one per
    /// core of `resources.requests.cpu`, else 4. Each needs about one core and 384 MiB: a
    /// memory limit below that times the partitions in flight (plus 128 MiB) is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 256))]
    pub max_in_flight_partitions: Option<u32>,
    /// Datastore objects downloaded concurrently per partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1024))]
    pub workers: Option<u32>,
    /// Worker log level (trace, debug, info, warn, error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
}

fn default_backoff_limit() -> i32 {
    3
}
fn default_max_attempts() -> u32 {
    3
}
fn default_deadline() -> i64 {
    6 * 3600
}
fn default_ttl() -> i32 {
    3600
}

/// Lifecycle of a backfill, as `kubectl get bbf` shows it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    /// Nothing started yet.
    Pending,
    /// Jobs are running or partitions are waiting to be sequenced.
    Running,
    /// Caught up with the datastore tip (ledgerEnd 0); waiting for new ledgers.
    Following,
    /// `spec.suspend`: no new Jobs.
    Suspended,
    /// Every partition of the range is committed and sequenced.
    Succeeded,
    /// A partition failed for good (bad input, conflict, failed verification, attempts used up).
    Failed,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Running => "Running",
            Phase::Following => "Following",
            Phase::Suspended => "Suspended",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
        }
    }
}

/// Observed state. Written once per reconcile with server-side apply; everything in it can be
/// rebuilt from storage (manifests, audit outbox) and the Jobs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BronzeBackfillStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// One line saying why the backfill is in its phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Progressing, Complete, Degraded, Suspended (always all four, in that order).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The `ingested_at` every partition of this backfill carries: `spec.ingestedAt`, else the
    /// resource's creationTimestamp (RFC 3339 UTC with milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingested_at: Option<String>,
    /// The last partition committed, verified and sequenced (PAS event appended) in ledger order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<CheckpointStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pas: Option<PasStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog: Option<CatalogStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<ProgressStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 4294967295u64))]
    pub last_committed_ledger: Option<u32>,
    /// Committed ledgers per second since `progress.startedAt`, as of the last checkpoint move
    /// (not re-derived while nothing is committed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledgers_per_second: Option<f64>,
    /// Follow mode: the newest ledger seen in the datastore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 4294967295u64))]
    pub tip_ledger: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub running_partitions: Vec<RunningRange>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_partitions: Vec<FailedRange>,
    /// The current (or last) rebuild of `spec.rebuild`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebuild: Option<RebuildStatus>,
    /// Rebuilds carried out or refused before the current one, newest last (at most
    /// [`REBUILD_HISTORY`]): an `id` found here is never carried out again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rebuild_history: Vec<RebuildRecord>,
}

/// How many finished rebuilds `status.rebuildHistory` keeps.
pub const REBUILD_HISTORY: usize = 32;

/// Lifecycle of a rebuild (`status.rebuild.phase`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RebuildPhase {
    /// Accepted; no Job started yet (the backfill is suspended, or no Job slot is free).
    Pending,
    /// Rebuild Jobs run or rebuilt partitions wait to be replaced.
    Running,
    /// Every partition of the range was replaced (or found identical).
    Succeeded,
    /// Refused (nothing changed), or a rebuild Job failed for good (delete it to try again).
    Failed,
}

impl RebuildPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            RebuildPhase::Pending => "Pending",
            RebuildPhase::Running => "Running",
            RebuildPhase::Succeeded => "Succeeded",
            RebuildPhase::Failed => "Failed",
        }
    }

    /// Succeeded, or refused: nothing more happens for this id.
    pub fn is_final(self, refused: bool) -> bool {
        self == RebuildPhase::Succeeded || (self == RebuildPhase::Failed && refused)
    }
}

/// `status.rebuild`: the rebuild being carried out, or the last one.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RebuildStatus {
    pub id: String,
    /// The range rebuilt, widened to whole partitions of the grid.
    #[schemars(range(min = 0, max = 4294967295u64))]
    pub ledger_start: u32,
    #[schemars(range(min = 0, max = 4294967295u64))]
    pub ledger_end: u32,
    pub phase: RebuildPhase,
    /// Refused when requested (outside what is committed, an id used before with another
    /// range): nothing was changed and nothing will be.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub refused: bool,
    /// Partitions of the range replaced or found identical, in ledger order.
    #[schemars(range(min = 0))]
    pub partitions_done: u64,
    #[schemars(range(min = 0))]
    pub partitions_total: u64,
    /// Of `partitionsDone`: rebuilt byte for byte the same, kept as they were.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub partitions_identical: u64,
    /// Every partition of the range up to this ledger is done (replacements go in ledger order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 4294967295u64))]
    pub done_through: Option<u32>,
    /// `<id> <phase> <done>/<total>`, for the printer column.
    pub summary: String,
    /// One line saying why the rebuild is in its phase.
    #[serde(default)]
    pub message: String,
}

/// A rebuild of `status.rebuildHistory`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RebuildRecord {
    pub id: String,
    #[schemars(range(min = 0, max = 4294967295u64))]
    pub ledger_start: u32,
    #[schemars(range(min = 0, max = 4294967295u64))]
    pub ledger_end: u32,
    pub phase: RebuildPhase,
}

/// A condition with the usual Kubernetes shape; transition times are kept while the status of
/// a condition does not change.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    pub status: String,
    pub reason: String,
    #[serde(default)]
    pub message: String,
    pub last_transition_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointStatus {
    #[schemars(range(min = 1, max = 4294967295u64))]
    pub last_committed_ledger: u32,
    #[schemars(range(min = 1, max = 4294967295u64))]
    pub partition_start: u32,
    #[schemars(range(min = 1, max = 4294967295u64))]
    pub partition_end: u32,
    /// `sha256:<hex>` of the partition's Parquet file.
    pub checksum: String,
    /// Hash of the last committed ledger: the next partition must link to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_ledger_hash: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PasStatus {
    /// Hash of the newest event, which the next event links to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_head: Option<String>,
    #[schemars(range(min = 0))]
    pub event_count: u64,
    /// Where the events are stored: `<storage>/<prefix>_pas/`, one object per partition
    /// (`<network>/<era>/<version>/<start>-<end>.json`), the same files a standalone copier writes
    /// with `pas.outbox: storage`.
    pub outbox: String,
    /// Events stored but not yet accepted by `spec.pas.endpoint`; they are re-sent in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub undelivered: Option<u64>,
}

/// The PostgreSQL catalog's rows against the checkpoint.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CatalogStatus {
    /// The catalog database (password masked).
    pub database: String,
    pub strict: bool,
    /// Every partition up to this ledger has its catalog rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 4294967295u64))]
    pub recorded_through: Option<u32>,
    /// Sequenced partitions (up to the checkpoint) still without catalog rows; written at a
    /// later reconcile.
    #[schemars(range(min = 0))]
    pub unrecorded_partitions: u64,
    /// Why the last write failed (cleared once the catalog is caught up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProgressStatus {
    #[schemars(range(min = 0))]
    pub committed_partitions: u64,
    /// Absent when following the tip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub total_partitions: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub percent: Option<u32>,
    /// `committed/total (percent%)`, for the printer column.
    pub summary: String,
    /// When this status started counting (the rate is measured from here).
    pub started_at: String,
    /// The checkpoint when counting started.
    #[serde(default)]
    #[schemars(range(min = 0, max = 4294967295u64))]
    pub started_from_ledger: u32,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunningRange {
    /// `start-end`
    pub range: String,
    pub job: String,
    #[schemars(range(min = 1))]
    pub attempt: u32,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailedRange {
    /// `start-end`
    pub range: String,
    /// The Job that failed (empty for a verification failure found in storage).
    #[serde(default)]
    pub job: String,
    /// BadInput, Conflict, Config, Retryable, DeadlineExceeded, VerificationFailed,
    /// MissingManifest, AuditConflict.
    pub reason: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[schemars(range(min = 0))]
    pub attempts: u32,
    /// Whether the operator will try again by itself.
    pub retrying: bool,
}

/// The CRD as installed: the derived one with unsigned integer formats rewritten as `int64`
/// (the bounds stay as `minimum`/`maximum`). Kubernetes knows only `int32`/`int64`; schemars'
/// `uint32` would be ignored by the API server and confuses clients.
pub fn crd() -> CustomResourceDefinition {
    let mut value = serde_json::to_value(BronzeBackfill::crd()).expect("CRD serializes");
    fix_integer_formats(&mut value);
    serde_json::from_value(value).expect("CRD deserializes")
}

/// The CRD as YAML, exactly what `crdgen` prints and `crds/bronzebackfills.yaml` holds.
pub fn crd_yaml() -> String {
    format!(
        "# Generated by `cargo run -p bronze-operator --bin crdgen`; do not edit.\n{}",
        serde_yaml_ng::to_string(&crd()).expect("CRD serializes to YAML")
    )
}

fn fix_integer_formats(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            let unsigned = map
                .get("format")
                .and_then(|f| f.as_str())
                .is_some_and(|f| matches!(f, "uint" | "uint8" | "uint16" | "uint32" | "uint64"));
            if unsigned {
                map.insert("format".into(), "int64".into());
                map.entry("minimum").or_insert(0.into());
            }
            for v in map.values_mut() {
                fix_integer_formats(v);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(fix_integer_formats),
        _ => {}
    }
}

impl BronzeBackfillSpec {
    /// Whether the backfill follows the datastore's tip.
    pub fn follows_tip(&self) -> bool {
        self.ledger_end == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_crd_yaml_matches_the_generated_one() {
        let committed = include_str!("../../crds/bronzebackfills.yaml");
        assert!(
            committed == crd_yaml(),
            "crds/bronzebackfills.yaml is stale: run `cargo run -p bronze-operator --bin crdgen > crds/bronzebackfills.yaml`"
        );
    }

    #[test]
    fn integer_fields_are_int64_with_bounds_never_unsigned_formats() {
        let yaml = crd_yaml();
        assert!(!yaml.contains("uint"), "unsigned format left in the CRD");
        let value = serde_json::to_value(crd()).unwrap();
        let spec = &value["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"];
        let bound = |field: &str, which: &str| spec[field][which].as_f64();
        assert_eq!(spec["ledgerStart"]["format"], "int64");
        assert_eq!(bound("ledgerStart", "minimum"), Some(1.0));
        assert_eq!(bound("ledgerStart", "maximum"), Some(4_294_967_295.0));
        assert_eq!(bound("ledgerEnd", "minimum"), Some(0.0));
        assert_eq!(bound("partitionSize", "maximum"), Some(10_000_000.0));
        let status = &value["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
            ["properties"];
        assert_eq!(status["lastCommittedLedger"]["format"], "int64");
    }

    fn valid() -> BronzeBackfill {
        crate::fixtures::backfill("b", crate::fixtures::spec())
    }

    fn create_errors(b: &BronzeBackfill) -> String {
        match kube::core::cel::validate_cel(b) {
            Ok(()) => String::new(),
            Err(e) => format!("{e:?}"),
        }
    }

    fn update_errors(old: &BronzeBackfill, new: &BronzeBackfill) -> String {
        match kube::core::cel::validate_cel_update(new, old) {
            Ok(()) => String::new(),
            Err(e) => format!("{e:?}"),
        }
    }

    #[test]
    fn cel_rules_catch_cross_field_mistakes_at_apply_time() {
        assert_eq!(create_errors(&valid()), "");
        let mut b = valid();
        b.spec.ledger_end = 1; // before ledgerStart 2
        assert!(
            create_errors(&b).contains("ledgerEnd must be 0"),
            "{}",
            create_errors(&b)
        );
        b.spec.ledger_end = 0; // follow the tip
        assert_eq!(create_errors(&b), "");
        let mut b = valid();
        b.spec.source.local_path = None;
        assert!(create_errors(&b).contains("source.localPath is required"));
        let mut b = valid();
        b.spec.source.mode = SourceMode::S3;
        assert!(create_errors(&b).contains("source.s3Bucket is required"));
        b.spec.source.s3_bucket = Some("ledgers".into());
        assert_eq!(create_errors(&b), "");
        let mut b = valid();
        b.spec.source.mode = SourceMode::Datastore;
        b.spec.source.datastore_path = Some("bucket/prefix".into());
        assert!(create_errors(&b).contains("datastoreType are required"));
        let mut b = valid();
        b.spec.storage.backend = StorageBackend::Gcs;
        assert!(create_errors(&b).contains("storage.bucket is required"));
        let mut b = valid();
        b.spec.network = "localnet".into();
        assert!(create_errors(&b).contains("networkPassphrase is required"));
        b.spec.network_passphrase = Some("Standalone Network ; February 2017".into());
        assert_eq!(create_errors(&b), "");
    }

    #[test]
    fn what_names_the_dataset_or_shapes_the_grid_cannot_change() {
        let old = valid();
        type Change = (&'static str, fn(&mut BronzeBackfillSpec));
        let changes: [Change; 9] = [
            ("network is immutable", |s| s.network = "pubnet".into()),
            ("eraId is immutable", |s| s.era_id = "p24".into()),
            ("versionLabel is immutable", |s| {
                s.version_label = "v2".into()
            }),
            ("ledgerStart is immutable", |s| s.ledger_start = 3),
            ("partitionSize is immutable", |s| s.partition_size = 20),
            ("storage.prefix is immutable", |s| {
                s.storage.prefix = "other/".into()
            }),
            ("storage.bucket and storage.localDir are immutable", |s| {
                s.storage.local_dir = Some("/elsewhere".into())
            }),
            ("pas.enabled is immutable", |s| s.pas.enabled = false),
            ("networkPassphrase is immutable", |s| {
                s.network_passphrase = Some("x".into())
            }),
        ];
        for (message, change) in changes {
            let mut new = old.clone();
            change(&mut new.spec);
            let errors = update_errors(&old, &new);
            assert!(errors.contains(message), "{message}: {errors}");
        }
        // ingestedAt: may be set once, never changed or removed.
        let mut fixed = old.clone();
        fixed.spec.ingested_at = Some("2025-01-15T10:00:00Z".into());
        assert_eq!(update_errors(&old, &fixed), "");
        let mut changed = fixed.clone();
        changed.spec.ingested_at = Some("2025-01-16T10:00:00Z".into());
        assert!(update_errors(&fixed, &changed).contains("ingestedAt cannot be changed"));
        let mut removed = fixed.clone();
        removed.spec.ingested_at = None;
        assert!(update_errors(&fixed, &removed).contains("ingestedAt cannot be changed"));
        // Operational knobs stay free.
        let mut tuned = old.clone();
        tuned.spec.suspend = true;
        tuned.spec.max_concurrent_jobs = 10;
        tuned.spec.partitions_per_job = 5;
        tuned.spec.ledger_end = 0;
        tuned.spec.worker.image = Some("ghcr.io/withobsrvr/bronze:next".into());
        assert_eq!(update_errors(&old, &tuned), "");
    }

    fn rebuild(id: &str, start: u32, end: u32) -> Option<RebuildSpec> {
        Some(RebuildSpec {
            id: id.into(),
            ledger_start: start,
            ledger_end: end,
        })
    }

    #[test]
    fn a_rebuild_is_checked_at_apply_time() {
        // The fixture's backfill is ledgers 2-101.
        let mut b = valid();
        b.spec.rebuild = rebuild("2026-12-compression", 12, 31);
        assert_eq!(create_errors(&b), "");
        b.spec.rebuild = rebuild("r", 31, 12);
        assert!(
            create_errors(&b).contains("ledgerStart must be <= spec.rebuild.ledgerEnd"),
            "{}",
            create_errors(&b)
        );
        b.spec.rebuild = rebuild("r", 1, 12);
        assert!(create_errors(&b).contains("inside the backfill's range"));
        b.spec.rebuild = rebuild("r", 12, 102);
        assert!(create_errors(&b).contains("inside the backfill's range"));
        // Following the tip: any end above ledgerStart.
        b.spec.ledger_end = 0;
        assert_eq!(create_errors(&b), "");
        let mut b = valid();
        b.spec.rebuild = rebuild("", 12, 21);
        let schema = serde_json::to_value(crd()).unwrap();
        let id = &schema["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"]["rebuild"]["properties"]["id"];
        assert_eq!(id["minLength"], 1, "an empty id is refused by the schema");
        assert_eq!(b.spec.rebuild.as_ref().unwrap().id, "");
    }

    #[test]
    fn a_rebuild_id_names_one_range() {
        let mut old = valid();
        old.spec.rebuild = rebuild("a", 12, 21);
        // Another range under the same id: refused.
        let mut moved = old.clone();
        moved.spec.rebuild = rebuild("a", 12, 31);
        assert!(
            update_errors(&old, &moved).contains("a new range needs a new id"),
            "{}",
            update_errors(&old, &moved)
        );
        // A new id with any range, the same id unchanged, or the request removed: accepted.
        let mut next = old.clone();
        next.spec.rebuild = rebuild("b", 12, 31);
        assert_eq!(update_errors(&old, &next), "");
        assert_eq!(update_errors(&old, &old.clone()), "");
        let mut removed = old.clone();
        removed.spec.rebuild = None;
        assert_eq!(update_errors(&old, &removed), "");
    }

    #[test]
    fn allow_overwrite_is_refused_pointing_at_rebuild_and_false_stays_valid() {
        let mut b = valid();
        b.spec.allow_overwrite = Some(true);
        let errors = create_errors(&b);
        assert!(
            errors.contains("spec.allowOverwrite is removed") && errors.contains("spec.rebuild"),
            "{errors}"
        );
        b.spec.allow_overwrite = Some(false);
        assert_eq!(create_errors(&b), "");
        // An old resource that set it still loads.
        let mut stored = serde_json::to_value(valid()).unwrap();
        stored["spec"]["allowOverwrite"] = false.into();
        let old: BronzeBackfill = serde_json::from_value(stored).unwrap();
        assert_eq!(old.spec.allow_overwrite, Some(false));
        let description = serde_json::to_value(crd()).unwrap()["spec"]["versions"][0]["schema"]
            ["openAPIV3Schema"]["properties"]["spec"]["properties"]["allowOverwrite"]
            ["description"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(description.contains("spec.rebuild"), "{description}");
    }

    #[test]
    fn the_example_resource_is_valid() {
        let text = include_str!("../../examples/bronzebackfill-pubnet.yaml");
        let b: BronzeBackfill = serde_yaml_ng::from_str(text).unwrap();
        assert_eq!(b.spec.partition_size, 10_000);
        assert_eq!(create_errors(&b), "");
        crate::job::worker_config(&b.spec, "2025-01-15T10:00:00Z").unwrap();
    }

    #[test]
    fn names_printer_columns_and_subresources() {
        let crd = crd();
        assert_eq!(crd.spec.group, GROUP);
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.short_names, Some(vec!["bbf".to_string()]));
        assert_eq!(crd.spec.names.categories, Some(vec!["bronze".to_string()]));
        let version = &crd.spec.versions[0];
        assert!(version.subresources.as_ref().unwrap().status.is_some());
        let columns: Vec<_> = version
            .additional_printer_columns
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            columns,
            [
                "Network",
                "Era",
                "Phase",
                "Progress",
                "Last Ledger",
                "Rate",
                "Rebuild",
                "Age"
            ]
        );
    }
}
