//! Cluster end to end: runs only when `KUBECONFIG` points at a real API server, and says that it
//! is skipped otherwise (no API server can be installed on CI machines).
//!
//! It applies the CRD and a `BronzeBackfill` over a local-disk datastore, runs the controller in
//! this process (which, like the worker, sees the local disk), lets the Jobs run, and waits for
//! the status to reach the end of the range with a verified chain. Then it deletes the resource
//! and checks that the Jobs go and the data stays.
//!
//! Worker Pods: with `BRONZE_E2E_PLAY_KUBELET=1` the test plays the kubelet (for a cluster
//! without nodes, e.g. a bare kube-apiserver + kube-controller-manager): it runs
//! `bronze-copier` (`BRONZE_COPIER_BIN`, default `target/debug/bronze-copier`) with each Pod's
//! args and env and patches the Pod's status with the exit code. Otherwise real nodes run
//! `BRONZE_E2E_IMAGE` and must see the same paths (`BRONZE_E2E_DIR`, a shared directory).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bronze::generate::{GenerateSpec, generate_datastore};
use bronze_operator::audit::{PasAuditFactory, audit_config};
use bronze_operator::crd::{self, BronzeBackfill, BronzeBackfillSpec, Phase};
use bronze_operator::metrics::Metrics;
use bronze_operator::reconcile::{Context, FIELD_MANAGER, error_policy, reconcile};
use bronze_operator::storage::ObjectStorageFactory;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

const LEDGERS: u32 = 60; // ledgers 2..=61: 6 partitions of 10

fn skip() -> bool {
    if std::env::var_os("KUBECONFIG").is_none() {
        // Straight to the process's stderr: libtest captures `eprintln!`, and a skip nobody sees
        // would read as a pass.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "cluster e2e SKIPPED: KUBECONFIG is not set (it needs a real Kubernetes API server)"
        );
        return true;
    }
    false
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn spec(source: &Path, output: &Path) -> BronzeBackfillSpec {
    serde_json::from_value(json!({
        "network": "pubnet",
        "eraId": "e2e",
        "versionLabel": "v1",
        "ledgerStart": 2,
        "ledgerEnd": 1 + LEDGERS,
        "partitionSize": 10,
        "partitionsPerJob": 2,
        "maxConcurrentJobs": 2,
        "source": {"mode": "local", "localPath": source},
        "storage": {"backend": "local", "localDir": output, "prefix": "bronze/"},
        "pas": {"enabled": true},
        "worker": {
            "image": std::env::var("BRONZE_E2E_IMAGE").unwrap_or_else(|_| "bronze:e2e".into()),
            "imagePullPolicy": "IfNotPresent",
            "backoffLimit": 1,
        },
    }))
    .unwrap()
}

async fn apply_crd(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        "bronzebackfills.bronze.obsrvr.io",
        &PatchParams::apply("bronze-e2e").force(),
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
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Plays the kubelet for the worker Pods of `ns`: runs each Pending Pod's container with its
/// args and literal env, then reports the exit code in the Pod's status.
async fn play_kubelet(client: Client, ns: String, done: tokio_util::sync::CancellationToken) {
    let bin = std::env::var("BRONZE_COPIER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace().join("target/debug/bronze-copier"));
    assert!(
        bin.exists(),
        "{} missing: build it or set BRONZE_COPIER_BIN",
        bin.display()
    );
    let pods: Api<Pod> = Api::namespaced(client, &ns);
    let mut handled = BTreeSet::new();
    while !done.is_cancelled() {
        let list = pods
            .list(&ListParams::default().labels("app.kubernetes.io/name=bronze-worker"))
            .await
            .unwrap();
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
            let container = &pod.spec.as_ref().unwrap().containers[0];
            let mut cmd = std::process::Command::new(&bin);
            cmd.env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default());
            for e in container.env.clone().unwrap_or_default() {
                if let Some(v) = e.value {
                    cmd.env(e.name, v);
                }
            }
            cmd.args(container.args.clone().unwrap_or_default());
            let code =
                tokio::task::spawn_blocking(move || cmd.status().unwrap().code().unwrap_or(1))
                    .await
                    .unwrap();
            let now = k8s_openapi::jiff::Timestamp::now().to_string();
            let status = json!({"status": {
                "phase": if code == 0 { "Succeeded" } else { "Failed" },
                "startTime": now,
                "containerStatuses": [{
                    "name": "worker", "image": container.image, "imageID": "", "ready": false,
                    "restartCount": 0, "started": false,
                    "state": {"terminated": {"exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" },
                                             "startedAt": now, "finishedAt": now}},
                }],
            }});
            pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn a_backfill_runs_to_the_end_with_a_verified_chain() {
    if skip() {
        return;
    }
    bronze_operator::install_crypto_provider();
    let client = Client::try_default()
        .await
        .expect("a client from KUBECONFIG");
    apply_crd(&client).await;

    let base = std::env::var("BRONZE_E2E_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir());
    let dir = tempfile::tempdir_in(base).unwrap();
    let source = dir.path().join("datastore");
    let output = dir.path().join("out");
    generate_datastore(&GenerateSpec::pubnet_variants(
        &source,
        &workspace(),
        LEDGERS,
    ))
    .unwrap();

    let ns = format!("bronze-e2e-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: ObjectMeta {
                    name: Some(ns.clone()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let backfills: Api<BronzeBackfill> = Api::namespaced(client.clone(), &ns);
    backfills
        .create(
            &PostParams::default(),
            &BronzeBackfill::new("e2e", spec(&source, &output)),
        )
        .await
        .unwrap();

    let stop = tokio_util::sync::CancellationToken::new();
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
        audit: Arc::new(PasAuditFactory::default()),
        catalog: Arc::new(bronze_operator::catalog::PgCatalogFactory::default()),
        now: chrono::Utc::now,
        worker_defaults: Default::default(),
    });
    let controller = {
        let stop = stop.clone();
        let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
        tokio::spawn(
            Controller::new(backfills.clone(), watcher::Config::default())
                .owns(jobs, watcher::Config::default())
                .graceful_shutdown_on(async move { stop.cancelled().await })
                .run(reconcile, error_policy, ctx)
                .for_each(|_| async {}),
        )
    };
    if std::env::var("BRONZE_E2E_PLAY_KUBELET").is_ok_and(|v| v == "1") {
        tokio::spawn(play_kubelet(client.clone(), ns.clone(), stop.clone()));
    }

    let deadline = Instant::now() + Duration::from_secs(600);
    let status = loop {
        let b = backfills.get("e2e").await.unwrap();
        if let Some(s) = &b.status {
            eprintln!("phase {:?}: {:?}", s.phase, s.message);
            assert_ne!(s.phase, Some(Phase::Failed), "{:?}", s.failed_partitions);
            if s.phase == Some(Phase::Succeeded) {
                break s.clone();
            }
        }
        assert!(Instant::now() < deadline, "backfill did not finish in time");
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    assert_eq!(status.last_committed_ledger, Some(1 + LEDGERS));
    let pas = status.pas.as_ref().unwrap();
    assert_eq!(pas.event_count, 6);
    // `bronze-copier verify` on what the operator wrote: data, links and the PAS chain.
    let b = backfills.get("e2e").await.unwrap();
    let mut config = audit_config(&b.spec).unwrap();
    config.pas.endpoint.clear();
    let report = bronze::verify::verify(&config).await.unwrap();
    assert!(report.is_clean(), "{:#?}", report.findings);
    let outbox = output.join("bronze/_pas/pubnet/e2e/v1");
    let last = bronze::pas::PasEvent::from_json(&std::fs::read(outbox.join("52-61.json")).unwrap())
        .unwrap();
    assert_eq!(
        pas.chain_head.as_deref(),
        Some(last.chain.event_hash.as_str())
    );
    // The chain, read back from storage: every partition links to the one before.
    let grid = bronze::partition::PartitionGrid::new(2, 1 + LEDGERS, 10);
    let mut prior: Option<String> = None;
    for range in grid.partitions_from(2) {
        let path = output.join(format!(
            "bronze/pubnet/e2e/v1/ledgers_lcm_raw/range={range}/_manifest.json"
        ));
        let m = bronze::publish::Manifest::from_json(&std::fs::read(&path).unwrap()).unwrap();
        let chain = m.chain.unwrap();
        if let Some(p) = &prior {
            assert_eq!(&chain.previous_ledger_hash, p, "{range}");
        }
        prior = Some(chain.last_ledger_hash);
    }

    // Deleting the resource removes its Jobs and keeps the data.
    backfills
        .delete("e2e", &DeleteParams::default())
        .await
        .unwrap();
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
    let deadline = Instant::now() + Duration::from_secs(120);
    while backfills.get_opt("e2e").await.unwrap().is_some()
        || !jobs
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    {
        assert!(Instant::now() < deadline, "resource or Jobs not deleted");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(
        output
            .join("bronze/pubnet/e2e/v1/ledgers_lcm_raw/range=2-11/_manifest.json")
            .exists()
    );
    stop.cancel();
    let _ = controller.await;
    let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
}
