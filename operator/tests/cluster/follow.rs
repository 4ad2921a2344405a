//! Follow mode over a datastore filled out of order (issue 10, defect 2), against a real API
//! server and the real Job controller: a later object exists before an earlier one. The backfill
//! waits for the missing object (status names it) instead of planning a Job over the hole, whose
//! worker would exit 3 and fail the whole backfill as bad input. A bounded backfill over the same
//! hole still fails, clearly.
//!
//! Needs `KUBECONFIG` (see `plumbing`); the worker Pods are played by this process.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::plumbing::{Kubelet, Operator, StagedDatastore, TestNamespace, cluster, wait_for};
use bronze_operator::crd::{BronzeBackfill, BronzeBackfillSpec, Phase};
use k8s_openapi::api::batch::v1::Job;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use serde_json::json;

/// The object that arrives late: inside partition 22-31.
const LATE: u32 = 25;

fn spec(source: &Path, output: &Path, ledger_end: u32) -> BronzeBackfillSpec {
    serde_json::from_value(json!({
        "network": "pubnet",
        "eraId": "ooo",
        "versionLabel": "v1",
        "ledgerStart": 2,
        "ledgerEnd": ledger_end,
        "partitionSize": 10,
        "maxConcurrentJobs": 4,
        "source": {"mode": "local", "localPath": source, "pollIntervalSeconds": 1},
        "storage": {"backend": "local", "localDir": output},
        "pas": {"enabled": true},
        "worker": {"image": "bronze:test", "backoffLimit": 0},
    }))
    .unwrap()
}

async fn job_ranges(client: &kube::Client, ns: &str) -> Vec<String> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let mut names: Vec<String> = jobs
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|j| j.name_any())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn following_waits_for_an_object_that_arrives_out_of_order() {
    let Some(client) = cluster("cluster_follow").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let datastore = StagedDatastore::new(dir.path(), 40); // ledgers 2..=41
    datastore.reveal(2..=LATE - 1);
    datastore.reveal(LATE + 1..=41); // the tip (41) is there, ledger 25 is not
    let late_key = datastore.key(LATE);
    let ns = TestNamespace::new(&client, "bronze-ooo").await;
    let backfills: Api<BronzeBackfill> = Api::namespaced(client.clone(), &ns.name);
    let output = dir.path().join("out");
    backfills
        .create(
            &Default::default(),
            &BronzeBackfill::new("ooo", spec(&datastore.path, &output, 0)),
        )
        .await
        .unwrap();
    let kubelet = Kubelet::start(&client, &ns.name);
    let operator = Operator::start(&client, &ns.name);

    // Everything below the hole is copied; the status names the object it waits for.
    let never_failed = |b: &BronzeBackfill| {
        let s = b.status.clone().unwrap_or_default();
        assert_ne!(
            s.phase,
            Some(Phase::Failed),
            "a late object failed the backfill: {:#?}",
            s
        );
        s
    };
    let waiting = wait_for(
        &backfills,
        "ooo",
        Duration::from_secs(60),
        "waiting for the late object",
        |b| {
            let s = never_failed(b);
            // Following once the two Jobs below the hole are finished (a commit at 21 can be
            // seen while their Pods are still being reported).
            s.last_committed_ledger == Some(21)
                && s.phase == Some(Phase::Following)
                && s.message.as_deref().is_some_and(|m| m.contains(&late_key))
        },
    )
    .await;
    let status = waiting.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Following), "{status:#?}");
    assert_eq!(status.tip_ledger, Some(41));
    let message = status.message.unwrap();
    assert!(message.contains("ledger 25"), "{message}");
    // No Job was planned over the hole, and none is while it stays (a few polls).
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        never_failed(&backfills.get("ooo").await.unwrap());
        let jobs = job_ranges(&client, &ns.name).await;
        assert!(
            jobs.iter()
                .all(|j| j.ends_with("-2-11") || j.ends_with("-12-21")),
            "a Job over the hole: {jobs:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The object arrives: the backfill catches up with the tip.
    datastore.reveal(LATE..=LATE);
    let done = wait_for(
        &backfills,
        "ooo",
        Duration::from_secs(60),
        "caught up with 41",
        |b| never_failed(b).last_committed_ledger == Some(41),
    )
    .await;
    let status = done.status.unwrap();
    assert!(status.failed_partitions.is_empty(), "{status:#?}");
    assert_eq!(status.pas.unwrap().event_count, 4);

    operator.stop().await;
    drop(kubelet);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounded_backfill_over_a_missing_object_still_fails_as_bad_input() {
    let Some(client) = cluster("cluster_follow").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let datastore = StagedDatastore::new(dir.path(), 20); // ledgers 2..=21
    datastore.reveal(2..=LATE - 10 - 1);
    datastore.reveal(LATE - 10 + 1..=21); // ledger 15 is missing for good
    let ns = TestNamespace::new(&client, "bronze-hole").await;
    let backfills: Api<BronzeBackfill> = Api::namespaced(client.clone(), &ns.name);
    let output = dir.path().join("out");
    backfills
        .create(
            &Default::default(),
            &BronzeBackfill::new("hole", spec(&datastore.path, &output, 21)),
        )
        .await
        .unwrap();
    let kubelet = Kubelet::start(&client, &ns.name);
    let operator = Operator::start(&client, &ns.name);

    let failed = wait_for(&backfills, "hole", Duration::from_secs(60), "Failed", |b| {
        b.status
            .as_ref()
            .is_some_and(|s| s.phase == Some(Phase::Failed))
    })
    .await;
    let status = failed.status.unwrap();
    let failure = &status.failed_partitions[0];
    assert_eq!(failure.range, "12-21");
    assert_eq!(failure.reason, "BadInput");
    assert_eq!(failure.exit_code, Some(3));
    assert!(!failure.retrying);
    // The partition before the hole is committed.
    assert_eq!(status.last_committed_ledger, Some(11));

    operator.stop().await;
    drop(kubelet);
}
