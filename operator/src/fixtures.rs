//! Test fixtures: a spec, in-memory storage and PAS outbox with the semantics of the real ones
//! (conditional create), synthetic manifests with a valid hash chain, and a scripted mock API
//! server in the style of kube-rs controller-rs `fixtures.rs` (`tower_test::mock::pair`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bronze::partition::LedgerRange;
use bronze::publish::{ChainInfo, Manifest, ManifestPartition, ManifestTable, Producer, SealCheck};
use futures::future::BoxFuture;
use http::{Method, Request, Response};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::client::Body;
use sha2::{Digest, Sha256};

use crate::crd::*;
use crate::sequencer::{
    Appended, Committed, DatasetStore, PartitionRecord, PasAppendError, PasLog, ReadError,
    TipSource,
};

pub fn spec() -> BronzeBackfillSpec {
    BronzeBackfillSpec {
        network: "testnet".into(),
        network_passphrase: None,
        era_id: "p23".into(),
        version_label: "v1".into(),
        ledger_start: 2,
        ledger_end: 101,
        partition_size: 10,
        partitions_per_job: 1,
        max_concurrent_jobs: 2,
        source: SourceSpec {
            mode: SourceMode::Local,
            local_path: Some("/data/datastore".into()),
            volume_claim_name: None,
            gcs_bucket: None,
            gcs_prefix: None,
            s3_bucket: None,
            s3_prefix: None,
            s3_endpoint: None,
            s3_region: None,
            datastore_type: None,
            datastore_path: None,
            poll_interval_seconds: 30,
            ledgers_per_batch: None,
            batches_per_partition: None,
        },
        storage: StorageSpec {
            backend: StorageBackend::Local,
            local_dir: Some("/data/bronze".into()),
            volume_claim_name: None,
            bucket: None,
            prefix: "bronze/".into(),
            endpoint: None,
            region: None,
            compression: Compression::Zstd,
            compression_level: None,
            table_format: crate::crd::TableFormat::None,
        },
        pas: PasSpec {
            enabled: true,
            ..Default::default()
        },
        catalog: None,
        credentials: CredentialsSpec::default(),
        worker: WorkerSpec {
            image: Some("ghcr.io/withobsrvr/bronze:test".into()),
            image_pull_policy: None,
            resources: None,
            node_selector: None,
            tolerations: None,
            service_account_name: None,
            backoff_limit: 3,
            max_attempts: 3,
            active_deadline_seconds: 3600,
            ttl_seconds_after_harvest: 600,
            max_in_flight_partitions: None,
            workers: None,
            log_level: None,
        },
        suspend: false,
        rebuild: None,
        allow_overwrite: None,
        ingested_at: None,
        archive: None,
    }
}

/// The fixtures' `metadata.creationTimestamp` (what a new backfill's `ingested_at` becomes).
pub const CREATED: &str = "2025-01-15T09:59:58Z";

pub fn backfill(name: &str, spec: BronzeBackfillSpec) -> BronzeBackfill {
    let mut b = BronzeBackfill::new(name, spec);
    b.metadata = ObjectMeta {
        name: Some(name.into()),
        namespace: Some("ns".into()),
        uid: Some("uid-1".into()),
        generation: Some(1),
        creation_timestamp: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            CREATED.parse().unwrap(),
        )),
        finalizers: Some(vec![crate::reconcile::FINALIZER.into()]),
        ..Default::default()
    };
    b
}

/// Hash of ledger `n` in the synthetic chain.
pub fn ledger_hash(n: u32) -> String {
    hex::encode(Sha256::digest(format!("ledger {n}").as_bytes()))
}

/// The manifest a worker would commit for `range`.
pub fn manifest_for(spec: &BronzeBackfillSpec, range: LedgerRange, ingested_at: &str) -> Manifest {
    Manifest {
        partition: ManifestPartition {
            start: range.start,
            end: range.end,
            era_id: spec.era_id.clone(),
            version: spec.version_label.clone(),
            network: spec.network.clone(),
        },
        tables: BTreeMap::from([(
            bronze::config::PRIMARY_TABLE.to_string(),
            ManifestTable {
                file: format!("part-{range}.parquet"),
                checksum: format!(
                    "sha256:{}",
                    hex::encode(Sha256::digest(range.to_string().as_bytes()))
                ),
                row_count: range.len(),
                byte_size: 1000 + u64::from(range.start),
            },
        )]),
        producer: Producer::current(),
        created_at: "2025-01-15T10:00:00Z".into(),
        chain: Some(ChainInfo {
            previous_ledger_hash: ledger_hash(range.start - 1),
            first_ledger_hash: ledger_hash(range.start),
            last_ledger_hash: ledger_hash(range.end),
        }),
        ingested_at: Some(ingested_at.into()),
        network_passphrase: None,
        writer: None,
        archive: None,
        manifest_sha256: None,
    }
}

/// Committed partitions in memory.
#[derive(Clone, Default)]
pub struct MemoryDataset {
    pub partitions: Arc<Mutex<BTreeMap<LedgerRange, Manifest>>>,
    /// When set, every read fails with this transient error.
    pub unavailable: Arc<Mutex<Option<String>>>,
}

impl MemoryDataset {
    pub fn commit(&self, manifest: Manifest) {
        self.partitions
            .lock()
            .unwrap()
            .entry(manifest.range())
            .or_insert(manifest);
    }

    pub fn has(&self, range: LedgerRange) -> bool {
        self.partitions.lock().unwrap().contains_key(&range)
    }

    fn check(&self) -> Result<(), ReadError> {
        match self.unavailable.lock().unwrap().clone() {
            Some(message) => Err(ReadError {
                transient: true,
                message,
            }),
            None => Ok(()),
        }
    }
}

impl DatasetStore for MemoryDataset {
    fn committed(&self, range: LedgerRange) -> BoxFuture<'_, Result<Option<Committed>, ReadError>> {
        Box::pin(async move {
            self.check()?;
            Ok(self
                .partitions
                .lock()
                .unwrap()
                .get(&range)
                .map(|m| Committed {
                    manifest: m.clone(),
                    parquet_size: m.primary().map(|t| t.byte_size),
                    // A manifest with `manifest_sha256: "tampered"` stands for a changed file.
                    seal: match m.manifest_sha256.as_deref() {
                        Some("tampered") => SealCheck::Mismatch {
                            recorded: "sha256:recorded".into(),
                            computed: "sha256:computed".into(),
                        },
                        _ => SealCheck::Valid,
                    },
                }))
        })
    }

    fn first_committed(&self) -> BoxFuture<'_, Result<Option<Manifest>, ReadError>> {
        Box::pin(async move {
            self.check()?;
            Ok(self.partitions.lock().unwrap().values().next().cloned())
        })
    }
}

/// A datastore tip with every object below it present.
pub struct FixedTip(pub Option<u32>);

impl TipSource for FixedTip {
    fn latest_ledger(&self) -> BoxFuture<'_, Result<Option<u32>, ReadError>> {
        Box::pin(async move { Ok(self.0) })
    }

    fn first_missing(
        &self,
        _first: u32,
        last: u32,
    ) -> BoxFuture<'_, Result<Option<crate::plan::Hole>, ReadError>> {
        // Nothing is missing up to the tip; everything above it is.
        let hole = match self.0 {
            Some(tip) if last <= tip => None,
            tip => {
                let start = tip.map_or(0, |t| t + 1);
                Some(crate::plan::Hole {
                    key: format!("ledger-{start}.xdr.zst"),
                    start,
                    end: start,
                })
            }
        };
        Box::pin(async move { Ok(hole) })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxEvent {
    pub prev: Option<String>,
    pub checksums: Vec<String>,
    pub hash: String,
}

/// A PAS outbox with the object-store outbox's semantics: one event per partition, written
/// with a conditional create. Event hashes include a per-write nonce (as real events include a
/// timestamp), so writing a partition's event twice would be visible as a different hash.
#[derive(Clone, Default)]
pub struct MemoryOutbox {
    pub events: Arc<Mutex<BTreeMap<LedgerRange, OutboxEvent>>>,
    nonce: Arc<Mutex<u64>>,
}

impl PasLog for MemoryOutbox {
    fn append<'a>(
        &'a self,
        record: &'a PartitionRecord,
        prev_event_hash: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Appended, PasAppendError>> {
        Box::pin(async move {
            let checksums: Vec<String> = record
                .manifest
                .tables
                .values()
                .map(|t| t.checksum.clone())
                .collect();
            let prev = prev_event_hash.map(str::to_string);
            let mut events = self.events.lock().unwrap();
            if let Some(existing) = events.get(&record.range) {
                return if existing.prev == prev && existing.checksums == checksums {
                    Ok(Appended {
                        event_hash: existing.hash.clone(),
                        existing: true,
                    })
                } else {
                    Err(PasAppendError::Conflict {
                        range: record.range,
                        message: format!(
                            "an event with prev {:?} is already recorded",
                            existing.prev
                        ),
                    })
                };
            }
            let mut nonce = self.nonce.lock().unwrap();
            *nonce += 1;
            let hash = format!(
                "sha256:{}",
                hex::encode(Sha256::digest(
                    format!("{prev:?}|{}|{checksums:?}|{nonce}", record.range).as_bytes()
                ))
            );
            events.insert(
                record.range,
                OutboxEvent {
                    prev,
                    checksums,
                    hash: hash.clone(),
                },
            );
            Ok(Appended {
                event_hash: hash,
                existing: false,
            })
        })
    }

    fn describe(&self) -> String {
        "memory".into()
    }
}

// ---------------------------------------------------------------------------------------------
// Mock API server.

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// Every `(group, resource, verb)` any mock scenario has seen, for the RBAC test.
pub static SEEN_CALLS: Mutex<BTreeSet<(String, String, String)>> = Mutex::new(BTreeSet::new());

/// One request the code under test made.
pub struct Call {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub body: serde_json::Value,
    send: tower_test::mock::SendResponse<Response<Body>>,
}

impl Call {
    pub fn respond(self, status: u16, body: serde_json::Value) {
        self.send.send_response(
            Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&body).unwrap()))
                .unwrap(),
        );
    }

    /// Answers with a Kubernetes `Status` error.
    pub fn fail(self, code: u16, reason: &str) {
        self.respond(
            code,
            serde_json::json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": reason, "reason": reason, "code": code,
            }),
        );
    }

    pub fn query_has(&self, pair: &str) -> bool {
        self.query.split('&').any(|p| p == pair)
    }
}

/// `(group, resource, verb)` of a request, as RBAC names it.
pub fn rbac_of(method: &Method, path: &str, query: &str) -> (String, String, String) {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, rest) = match parts.first() {
        Some(&"api") => ("", &parts[2..]),
        _ => (parts[1], &parts[3..]),
    };
    let rest = if rest.first() == Some(&"namespaces") && rest.len() > 2 {
        &rest[2..]
    } else {
        rest
    };
    let resource = match rest {
        [r] | [r, _] => r.to_string(),
        [r, _, sub, ..] => format!("{r}/{sub}"),
        [] => String::new(),
    };
    let named = rest.len() >= 2;
    let verb = match *method {
        Method::GET if !named && query.split('&').any(|p| p == "watch=true") => "watch",
        Method::GET if named => "get",
        Method::GET => "list",
        Method::POST => "create",
        Method::PATCH => "patch",
        Method::PUT => "update",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => "unknown",
    };
    (group.to_string(), resource, verb.to_string())
}

pub struct ApiServer(Handle);

impl ApiServer {
    pub fn pair() -> (kube::Client, ApiServer) {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        (kube::Client::new(service, "default"), ApiServer(handle))
    }

    /// The next request; panics when none comes.
    pub async fn next(&mut self) -> Call {
        let (request, send) = tokio::time::timeout(Duration::from_secs(5), self.0.next_request())
            .await
            .expect("expected another API request")
            .expect("client dropped");
        let method = request.method().clone();
        let path = request.uri().path().to_string();
        let query = request.uri().query().unwrap_or("").to_string();
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let body = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null)
        };
        let call = rbac_of(&method, &path, &query);
        let allowed = crate::reconcile::API_CALLS
            .iter()
            .any(|(g, r, v, _)| (g.to_string(), r.to_string(), v.to_string()) == call);
        assert!(
            allowed,
            "{method} {path}?{query} is {call:?}, not in reconcile::API_CALLS"
        );
        SEEN_CALLS.lock().unwrap().insert(call);
        Call {
            method,
            path,
            query,
            body,
            send,
        }
    }

    /// The next request, which must be `method` on `path`.
    pub async fn expect(&mut self, method: Method, path: &str) -> Call {
        let call = self.next().await;
        assert_eq!(
            (&call.method, call.path.as_str()),
            (&method, path),
            "unexpected request (query {:?}, body {})",
            call.query,
            call.body
        );
        call
    }

    /// Asserts that nothing else is requested.
    pub async fn done(mut self) {
        if let Ok(Some((request, _))) =
            tokio::time::timeout(Duration::from_millis(200), self.0.next_request()).await
        {
            panic!(
                "unexpected extra request {} {}",
                request.method(),
                request.uri()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A reconcile context over the mock API and in-memory storage.

pub struct TestStorage {
    pub dataset: MemoryDataset,
    pub tip: Option<u32>,
}

impl crate::storage::StorageFactory for TestStorage {
    fn dataset(
        &self,
        _key: &str,
        _spec: &BronzeBackfillSpec,
    ) -> Result<Arc<dyn DatasetStore>, ReadError> {
        Ok(Arc::new(self.dataset.clone()))
    }

    fn tip<'a>(
        &'a self,
        _key: &'a str,
        _spec: &'a BronzeBackfillSpec,
    ) -> BoxFuture<'a, Result<Arc<dyn TipSource>, ReadError>> {
        Box::pin(async move { Ok(Arc::new(FixedTip(self.tip)) as Arc<dyn TipSource>) })
    }
}

pub struct MemoryPas(pub MemoryOutbox);

impl crate::sequencer::PasFactory for MemoryPas {
    fn open(&self, _key: &str, spec: &BronzeBackfillSpec) -> Option<Arc<dyn PasLog>> {
        spec.pas
            .enabled
            .then(|| Arc::new(self.0.clone()) as Arc<dyn PasLog>)
    }
}

/// The fixed clock of reconcile tests.
pub fn test_now() -> chrono::DateTime<chrono::Utc> {
    use chrono::TimeZone;
    chrono::Utc.with_ymd_and_hms(2025, 1, 15, 12, 0, 0).unwrap()
}

pub fn context(
    client: kube::Client,
    dataset: MemoryDataset,
    outbox: MemoryOutbox,
) -> Arc<crate::reconcile::Context> {
    Arc::new(crate::reconcile::Context {
        recorder: kube::runtime::events::Recorder::new(
            client.clone(),
            kube::runtime::events::Reporter {
                controller: "bronze-operator".into(),
                instance: None,
            },
        ),
        client,
        metrics: Arc::new(crate::metrics::Metrics::default()),
        storage: Arc::new(TestStorage { dataset, tip: None }),
        pas: Arc::new(MemoryPas(outbox)),
        catalog: Arc::new(crate::catalog::PgCatalogFactory::with_env(|_| None)),
        delta: Arc::default(),
        now: test_now,
        worker_defaults: crate::job::WorkerDefaults::default(),
    })
}

/// The repository root.
pub fn workspace() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A backfill of `ledgers` real-sized pubnet ledgers from ledger 2 in partitions of ten, its
/// datastore generated in `dir/datastore` and every partition committed into `dir/out` by the
/// worker (`run_range` over the whole range), as its Jobs would. `extra` adds spec fields
/// (`pas`, `catalog`). Returns the spec.
pub async fn committed_local_backfill(
    dir: &std::path::Path,
    era_id: &str,
    ledgers: u32,
    ingested_at: &str,
    extra: serde_json::Value,
) -> BronzeBackfillSpec {
    let source = dir.join("datastore");
    let output = dir.join("out");
    bronze::generate::generate_datastore(&bronze::generate::GenerateSpec::pubnet_variants(
        &source,
        &workspace(),
        ledgers,
    ))
    .unwrap();
    std::fs::create_dir_all(&output).unwrap();
    let mut fields = serde_json::json!({
        "network": "pubnet",
        "eraId": era_id,
        "versionLabel": "v1",
        "ledgerStart": 2,
        "ledgerEnd": 1 + ledgers,
        "partitionSize": 10,
        "source": {"mode": "local", "localPath": source},
        "storage": {"backend": "local", "localDir": output, "prefix": "bronze/"},
        "worker": {"image": "bronze:test"},
    });
    if let (Some(fields), Some(extra)) = (fields.as_object_mut(), extra.as_object()) {
        fields.extend(extra.clone());
    }
    let spec: BronzeBackfillSpec = serde_json::from_value(fields).unwrap();
    let config = crate::job::worker_config(&spec, ingested_at).unwrap();
    bronze::pipeline::run_range(
        &config,
        LedgerRange::new(2, 1 + ledgers),
        None,
        tokio_util::sync::CancellationToken::new(),
        bronze::pipeline::RunOptions::default(),
    )
    .await
    .expect("the worker commits the range");
    spec
}
