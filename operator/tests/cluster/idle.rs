//! Quiet when idle (issue 10, defect 1), against a real API server: a following backfill with
//! nothing to do reconciles about once per poll interval and writes no status at all. Before the
//! fix every status write (the rate re-derived from the clock) woke the controller again: about
//! ten reconciles and status writes a second, forever, per backfill.
//!
//! Reconciles are counted by the operator process itself (`/metrics`,
//! `bronze_operator_reconciliations_total`); status writes as resourceVersion changes seen
//! through a watch.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bronze_operator::crd::Phase;
use futures::StreamExt;
use kube::ResourceExt;
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

use crate::harness::*;
use crate::kubelet::Faults;

const POLL_SECONDS: u32 = 2;
/// How long the idle backfill is watched.
const WINDOW: Duration = Duration::from_secs(8);
const LONG: Duration = Duration::from_secs(90);

/// The reconciles and status writes (resourceVersion changes) of `name` during `window`.
async fn activity(
    env: &TestEnv,
    name: &str,
    operator: &Operator,
    window: Duration,
) -> (u64, usize) {
    let versions = Arc::new(Mutex::new(BTreeSet::new()));
    let seen = versions.clone();
    let watch = tokio::spawn(
        watcher(
            env.backfills(),
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

#[tokio::test]
async fn an_idle_following_backfill_reconciles_once_per_poll_and_writes_no_status() {
    let Some(env) = TestEnv::start("idle").await else {
        return;
    };
    let ds = env.datastore(30); // ledgers 2..=31
    env.upload(&ds, Some(21));
    let operator = env.operator(OperatorOptions::named("op-a")).await;
    let kubelet = env.kubelet(Faults::default());
    let poll =
        json!({"source": {"pollIntervalSeconds": POLL_SECONDS}, "worker": {"backoffLimit": 0}});
    env.create("idle", env.spec(0, poll)).await;

    // Caught up: both partitions (ledgers 2-21) sequenced, nothing left to do.
    env.wait("idle", "caught up", LONG, |s| {
        s.phase == Some(Phase::Following) && s.last_committed_ledger == Some(21)
    })
    .await;
    // Let the last Job events (harvest patches) settle.
    tokio::time::sleep(Duration::from_secs(u64::from(POLL_SECONDS))).await;

    // The counter is live (an unreadable one would make the bound below vacuous).
    assert!(operator.reconciles() > 0, "{}", operator.metrics());
    let (reconciles, writes) = activity(&env, "idle", &operator, WINDOW).await;
    let per_second = |n: f64| n / WINDOW.as_secs_f64();
    // Figures for the record.
    say(&format!(
        "idle over {WINDOW:?}: {reconciles} reconciles ({:.2}/s), {writes} status writes ({:.2}/s)",
        per_second(reconciles as f64),
        per_second(writes as f64)
    ));
    // One reconcile per poll interval (the requeue that looks for new ledgers), plus one of slack
    // for a window that starts just before a requeue.
    let allowed = WINDOW.as_secs() / u64::from(POLL_SECONDS) + 1;
    assert!(
        (1..=allowed).contains(&reconciles),
        "{reconciles} reconciles in {WINDOW:?} of idleness; the poll interval ({POLL_SECONDS}s) implies 1 to {allowed}"
    );
    // Nothing changed, so nothing is written.
    assert_eq!(
        writes, 0,
        "{writes} status writes in {WINDOW:?} while nothing changed"
    );
    let status = env.backfills().get("idle").await.unwrap().status.unwrap();
    assert_eq!(status.tip_ledger, Some(21));
    assert!(status.ledgers_per_second.is_some_and(|r| r > 0.0));

    // Quiet is not deaf: new ledgers are found by the poll and copied.
    env.reveal(&ds, 22..=31);
    env.wait("idle", "following to 31", Duration::from_secs(60), |s| {
        s.last_committed_ledger == Some(31)
    })
    .await;
    kubelet.stop().await;
}
