//! Plumbing for the cluster tests of this crate (`cluster_idle`, `cluster_crd`): a client for the
//! real API server named by `KUBECONFIG`, the CRD, a namespace per test, the controller in this
//! process (built exactly as the binary builds it, with a reconcile counter), and a kubelet
//! player for a node-less control plane. The tests' logic lives in the test files.
//!
//! Without `KUBECONFIG` a test is skipped loudly; with `BRONZE_CLUSTER_REQUIRED=1` (CI) it fails.

#![allow(dead_code)] // each test file uses part of it

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bronze_operator::controller::controller;
use bronze_operator::crd::{self, BronzeBackfill};
use bronze_operator::metrics::Metrics;
use bronze_operator::pas::PasOutboxFactory;
use bronze_operator::reconcile::{Context, FIELD_MANAGER, error_policy, reconcile};
use bronze_operator::storage::ObjectStorageFactory;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::events::{Recorder, Reporter};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A client for the cluster in `KUBECONFIG`, or `None` (skip) when there is none.
pub async fn cluster(test: &str) -> Option<Client> {
    if std::env::var_os("KUBECONFIG").is_none() {
        let required = std::env::var("BRONZE_CLUSTER_REQUIRED").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "{test}: BRONZE_CLUSTER_REQUIRED=1 but KUBECONFIG is not set"
        );
        // Straight to the process's stderr: libtest captures `eprintln!`, and a skip nobody sees
        // would read as a pass.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "{test} SKIPPED: KUBECONFIG is not set (it needs a real Kubernetes API server)"
        );
        return None;
    }
    bronze_operator::install_crypto_provider();
    let client = Client::try_default()
        .await
        .expect("a client from KUBECONFIG");
    apply_crd(&client).await;
    Some(client)
}

/// Applies the CRD as the code generates it and waits until it is established.
pub async fn apply_crd(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        "bronzebackfills.bronze.obsrvr.io",
        &PatchParams::apply("bronze-cluster-tests").force(),
        &Patch::Apply(crd::crd()),
    )
    .await
    .expect("apply the CRD");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let c = crds.get("bronzebackfills.bronze.obsrvr.io").await.unwrap();
        let established = c
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        if established {
            return;
        }
        assert!(Instant::now() < deadline, "CRD not established");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A fresh namespace, deleted when dropped (best effort).
pub struct TestNamespace {
    pub name: String,
    client: Client,
}

impl TestNamespace {
    pub async fn new(client: &Client, prefix: &str) -> Self {
        let name = format!(
            "{prefix}-{}-{}",
            std::process::id(),
            chrono::Utc::now().timestamp_millis() % 100_000
        );
        let namespaces: Api<Namespace> = Api::all(client.clone());
        namespaces
            .create(
                &PostParams::default(),
                &Namespace {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        ..Default::default()
                    },
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        Self {
            name,
            client: client.clone(),
        }
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let (client, name) = (self.client.clone(), self.name.clone());
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let namespaces: Api<Namespace> = Api::all(client);
                let _ = namespaces.delete(&name, &DeleteParams::default()).await;
            });
        }
    }
}

/// The controller running in this process over one namespace, counting its reconciles.
pub struct Operator {
    pub reconciles: Arc<AtomicUsize>,
    stop: CancellationToken,
    handle: tokio::task::JoinHandle<()>,
}

impl Operator {
    pub fn start(client: &Client, ns: &str) -> Self {
        let ctx = Arc::new(Context {
            client: client.clone(),
            recorder: Recorder::new(
                client.clone(),
                Reporter {
                    controller: FIELD_MANAGER.into(),
                    instance: None,
                },
            ),
            metrics: Arc::new(Metrics::default()),
            storage: Arc::new(ObjectStorageFactory::default()),
            pas: Arc::new(PasOutboxFactory::default()),
            catalog: Arc::new(bronze_operator::catalog::PgCatalogFactory::default()),
            now: chrono::Utc::now,
            worker_defaults: Default::default(),
        });
        let reconciles = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let counted = reconciles.clone();
        let stopping = stop.clone();
        let handle = tokio::spawn(
            controller(
                Api::namespaced(client.clone(), ns),
                Api::<Job>::namespaced(client.clone(), ns),
            )
            .graceful_shutdown_on(async move { stopping.cancelled().await })
            .run(
                move |b, ctx| {
                    counted.fetch_add(1, Ordering::SeqCst);
                    reconcile(b, ctx)
                },
                error_policy,
                ctx,
            )
            .for_each(|_| async {}),
        );
        Self {
            reconciles,
            stop,
            handle,
        }
    }

    pub fn reconciles(&self) -> usize {
        self.reconciles.load(Ordering::SeqCst)
    }

    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.handle.await;
    }
}

/// Plays the kubelet for the worker Pods of `ns` until dropped: runs each Pending Pod's
/// container (`bronze-copier` with the Pod's args and literal env, each Pod concurrently), then
/// reports the exit code in the Pod's status, as a node would.
pub struct Kubelet {
    stop: CancellationToken,
}

impl Kubelet {
    pub fn start(client: &Client, ns: &str) -> Self {
        let bin = std::env::var("BRONZE_COPIER_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|_| workspace().join("target/debug/bronze-copier"));
        assert!(
            bin.exists(),
            "{} missing: `cargo build -p bronze --bin bronze-copier` or set BRONZE_COPIER_BIN",
            bin.display()
        );
        let stop = CancellationToken::new();
        tokio::spawn(play(Api::namespaced(client.clone(), ns), bin, stop.clone()));
        Self { stop }
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn play(pods: Api<Pod>, bin: PathBuf, stop: CancellationToken) {
    let mut handled = BTreeSet::new();
    while !stop.is_cancelled() {
        let Ok(list) = pods
            .list(&ListParams::default().labels("app.kubernetes.io/name=bronze-worker"))
            .await
        else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        for pod in list.items {
            let name = pod.name_any();
            let pending = pod
                .status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .unwrap_or("Pending")
                == "Pending";
            if !pending || !handled.insert(name.clone()) {
                continue;
            }
            let container = pod.spec.as_ref().unwrap().containers[0].clone();
            let mut cmd = std::process::Command::new(&bin);
            cmd.env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            for e in container.env.clone().unwrap_or_default() {
                if let Some(v) = e.value {
                    cmd.env(e.name, v);
                }
            }
            cmd.args(container.args.clone().unwrap_or_default());
            let pods = pods.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let Ok(mut child) = cmd.spawn() else { return };
                // Polled, so that a stopped kubelet can kill a worker still waiting for data.
                let code = loop {
                    if stop.is_cancelled() {
                        let _ = child.kill();
                        let _ = child.wait();
                        return;
                    }
                    match child.try_wait() {
                        Ok(Some(status)) => break status.code().unwrap_or(137),
                        Ok(None) => tokio::time::sleep(Duration::from_millis(100)).await,
                        Err(_) => break 137,
                    }
                };
                let now = k8s_openapi::jiff::Timestamp::now().to_string();
                let status = json!({"status": {
                    "phase": if code == 0 { "Succeeded" } else { "Failed" },
                    "startTime": now,
                    "containerStatuses": [{
                        "name": "worker", "image": container.image, "imageID": "", "ready": false,
                        "restartCount": 0, "started": false,
                        "state": {"terminated": {"exitCode": code,
                                                 "reason": if code == 0 { "Completed" } else { "Error" },
                                                 "startedAt": now, "finishedAt": now}},
                    }],
                }});
                let _ = pods
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                    .await;
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls `name` until `done` holds for it, failing after `timeout` with its last status.
pub async fn wait_for(
    backfills: &Api<BronzeBackfill>,
    name: &str,
    timeout: Duration,
    what: &str,
    done: impl Fn(&BronzeBackfill) -> bool,
) -> BronzeBackfill {
    let deadline = Instant::now() + timeout;
    loop {
        let b = backfills.get(name).await.unwrap();
        if done(&b) {
            return b;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: not {what} after {timeout:?}; status: {:#?}",
            b.status
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A local datastore whose objects are revealed one by one: the full one is generated aside, and
/// `reveal` copies objects into the one the backfill reads (as a Galexie exporter uploads them,
/// in any order).
pub struct StagedDatastore {
    full: PathBuf,
    pub path: PathBuf,
    schema: bronze::source::schema::DatastoreSchema,
}

impl StagedDatastore {
    /// `ledgers` ledgers from ledger 2 under `dir`, none revealed yet (only `.config.json`).
    pub fn new(dir: &Path, ledgers: u32) -> Self {
        let full = dir.join("full-datastore");
        let spec = bronze::generate::GenerateSpec::pubnet_variants(&full, &workspace(), ledgers);
        bronze::generate::generate_datastore(&spec).unwrap();
        let path = dir.join("datastore");
        std::fs::create_dir_all(&path).unwrap();
        std::fs::copy(full.join(".config.json"), path.join(".config.json")).unwrap();
        let schema = bronze::source::schema::DatastoreSchema::new(
            spec.ledgers_per_batch,
            spec.batches_per_partition,
        )
        .unwrap();
        Self { full, path, schema }
    }

    /// The object key of `ledger`, relative to the datastore root.
    pub fn key(&self, ledger: u32) -> String {
        format!("{}.xdr.zst", self.schema.batch_for(ledger).stem)
    }

    /// Copies the objects of `ledgers` into the datastore.
    pub fn reveal(&self, ledgers: std::ops::RangeInclusive<u32>) {
        for ledger in ledgers {
            let key = self.key(ledger);
            let to = self.path.join(&key);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            // Written aside and renamed, as an object store makes an upload visible at once.
            let part = to.with_extension("part");
            std::fs::copy(self.full.join(&key), &part).unwrap();
            std::fs::rename(&part, &to).unwrap();
        }
    }
}
