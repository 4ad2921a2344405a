//! Quiet when idle (issue 10, defect 1), against a real API server: a following backfill with
//! nothing to do reconciles about once per poll interval and writes no status at all. Before the
//! fix every status write (the rate re-derived from the clock) woke the controller again: about
//! ten reconciles and status writes a second, forever, per backfill.
//!
//! Needs `KUBECONFIG` (see `plumbing`); the worker Pods are played by this process.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::plumbing::{Kubelet, Operator, StagedDatastore, TestNamespace, cluster, wait_for};
use bronze_operator::crd::{BronzeBackfill, BronzeBackfillSpec, Phase};
use futures::StreamExt;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use serde_json::json;

const POLL_SECONDS: u32 = 2;
/// How long the idle backfill is watched.
const WINDOW: Duration = Duration::from_secs(8);

fn following_spec(source: &Path, output: &Path) -> BronzeBackfillSpec {
    serde_json::from_value(json!({
        "network": "pubnet",
        "eraId": "idle",
        "versionLabel": "v1",
        "ledgerStart": 2,
        "ledgerEnd": 0,
        "partitionSize": 10,
        "maxConcurrentJobs": 2,
        "source": {"mode": "local", "localPath": source, "pollIntervalSeconds": POLL_SECONDS},
        "storage": {"backend": "local", "localDir": output},
        "pas": {"enabled": true},
        "worker": {"image": "bronze:test", "backoffLimit": 0},
    }))
    .unwrap()
}

/// The reconciles and status writes (resourceVersion changes) of `name` during `window`.
async fn activity(
    backfills: &Api<BronzeBackfill>,
    name: &str,
    operator: &Operator,
    window: Duration,
) -> (usize, usize) {
    let versions = std::sync::Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let seen = versions.clone();
    let watch = tokio::spawn(
        watcher(
            backfills.clone(),
            watcher::Config::default().fields(&format!("metadata.name={name}")),
        )
        .applied_objects()
        .for_each(move |b| {
            if let Ok(b) = b {
                seen.lock().unwrap().insert(b.resource_version().unwrap());
            }
            async {}
        }),
    );
    // The watch's initial list delivers the current version: wait for it before counting.
    let deadline = Instant::now() + Duration::from_secs(10);
    while versions.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "no watch event");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = operator.reconciles();
    tokio::time::sleep(window).await;
    let reconciles = operator.reconciles() - before;
    watch.abort();
    let writes = versions.lock().unwrap().len() - 1;
    (reconciles, writes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_following_backfill_reconciles_once_per_poll_and_writes_no_status() {
    let Some(client) = cluster("cluster_idle").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let datastore = StagedDatastore::new(dir.path(), 30);
    datastore.reveal(2..=21);
    let (source, output) = (&datastore.path, dir.path().join("out"));
    let ns = TestNamespace::new(&client, "bronze-idle").await;
    let backfills: Api<BronzeBackfill> = Api::namespaced(client.clone(), &ns.name);
    backfills
        .create(
            &Default::default(),
            &BronzeBackfill::new("idle", following_spec(source, &output)),
        )
        .await
        .unwrap();
    let kubelet = Kubelet::start(&client, &ns.name);
    let operator = Operator::start(&client, &ns.name);

    // Caught up: both partitions (ledgers 2-21) sequenced, nothing left to do.
    wait_for(
        &backfills,
        "idle",
        Duration::from_secs(90),
        "caught up",
        |b| {
            b.status.as_ref().is_some_and(|s| {
                s.phase == Some(Phase::Following) && s.last_committed_ledger == Some(21)
            })
        },
    )
    .await;
    // Let the last Job events (harvest patches) settle.
    tokio::time::sleep(Duration::from_secs(u64::from(POLL_SECONDS))).await;

    let (reconciles, writes) = activity(&backfills, "idle", &operator, WINDOW).await;
    let per_second = |n: usize| n as f64 / WINDOW.as_secs_f64();
    // Figures for the record (shown with `--nocapture`).
    println!(
        "idle over {WINDOW:?}: {reconciles} reconciles ({:.2}/s), {writes} status writes ({:.2}/s)",
        per_second(reconciles),
        per_second(writes)
    );
    // One reconcile per poll interval (the requeue that looks for new ledgers), plus one of slack
    // for a window that starts just before a requeue.
    let allowed = (WINDOW.as_secs() / u64::from(POLL_SECONDS)) as usize + 1;
    assert!(
        reconciles <= allowed,
        "{reconciles} reconciles in {WINDOW:?} of idleness; the poll interval ({POLL_SECONDS}s) implies at most {allowed}"
    );
    // Nothing changed, so nothing is written.
    assert_eq!(
        writes, 0,
        "{writes} status writes in {WINDOW:?} while nothing changed"
    );
    let status = backfills.get("idle").await.unwrap().status.unwrap();
    assert_eq!(status.tip_ledger, Some(21));
    assert!(status.ledgers_per_second.is_some_and(|r| r > 0.0));

    // Quiet is not deaf: new ledgers are found by the poll and copied.
    datastore.reveal(22..=31);
    wait_for(
        &backfills,
        "idle",
        Duration::from_secs(60),
        "following to 31",
        |b| {
            b.status
                .as_ref()
                .is_some_and(|s| s.last_committed_ledger == Some(31))
        },
    )
    .await;

    operator.stop().await;
    drop(kubelet);
}
