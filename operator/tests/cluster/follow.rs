//! Follow mode over a datastore filled out of order (issue 10, defect 2), against a real API
//! server and the real Job controller: a later object exists before an earlier one. The backfill
//! waits for the missing object (status names it) instead of planning a Job over the hole, whose
//! worker would exit 3 and fail the whole backfill as bad input. A bounded backfill over the same
//! hole still fails, clearly.

use std::time::{Duration, Instant};

use bronze_operator::crd::Phase;
use serde_json::json;

use crate::harness::*;
use crate::kubelet::Faults;

/// The object that arrives late: inside partition 22-31.
const LATE: u32 = 25;
const LONG: Duration = Duration::from_secs(60);

/// No retries: a worker that meets the hole fails its Job at once.
fn knobs() -> serde_json::Value {
    json!({"maxConcurrentJobs": 4, "worker": {"backoffLimit": 0}})
}

#[tokio::test]
async fn following_waits_for_an_object_that_arrives_out_of_order() {
    let Some(env) = TestEnv::start("ooo").await else {
        return;
    };
    let ds = env.datastore(40); // ledgers 2..=41
    env.upload(&ds, Some(LATE - 1));
    env.reveal(&ds, LATE + 1..=41); // the tip (41) is there, ledger 25 is not
    let late_key = ds.key_of(LATE).to_string();
    let _operator = env.operator(OperatorOptions::named("op-a")).await;
    let kubelet = env.kubelet(Faults::default());
    env.create("ooo", env.spec(0, knobs())).await;

    // Everything below the hole is copied; the status names the object it waits for.
    let waiting = env
        .wait("ooo", "waiting for the late object", LONG, |s| {
            never_failed(s);
            // Following once the two Jobs below the hole are finished (a commit at 21 can be
            // seen while their Pods are still being reported).
            s.last_committed_ledger == Some(21)
                && s.phase == Some(Phase::Following)
                && s.message.as_deref().is_some_and(|m| m.contains(&late_key))
        })
        .await;
    let status = waiting.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Following), "{status:#?}");
    assert_eq!(status.tip_ledger, Some(41));
    let message = status.message.unwrap();
    assert!(message.contains("ledger 25"), "{message}");
    // No Job was planned over the hole, and none is while it stays (a few polls).
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        never_failed(&env.backfills().get("ooo").await.unwrap().status.unwrap());
        let jobs = env.job_names().await;
        assert!(
            jobs.iter()
                .all(|j| j.ends_with("-2-11") || j.ends_with("-12-21")),
            "a Job over the hole: {jobs:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The object arrives: the backfill catches up with the tip.
    env.reveal(&ds, [LATE]);
    let done = env
        .wait("ooo", "caught up with 41", LONG, |s| {
            never_failed(s);
            s.last_committed_ledger == Some(41)
        })
        .await;
    let status = done.status.unwrap();
    assert!(status.failed_partitions.is_empty(), "{status:#?}");
    assert_eq!(status.pas.unwrap().event_count, 4);
    kubelet.stop().await;
}

#[tokio::test]
async fn a_bounded_backfill_over_a_missing_object_still_fails_as_bad_input() {
    let Some(env) = TestEnv::start("hole").await else {
        return;
    };
    let ds = env.datastore(20); // ledgers 2..=21
    env.upload(&ds, Some(LATE - 10 - 1));
    env.reveal(&ds, LATE - 10 + 1..=21); // ledger 15 is missing for good
    let _operator = env.operator(OperatorOptions::named("op-a")).await;
    let kubelet = env.kubelet(Faults::default());
    env.create("hole", env.spec(21, knobs())).await;

    let failed = env
        .wait("hole", "Failed", LONG, |s| s.phase == Some(Phase::Failed))
        .await;
    let status = failed.status.unwrap();
    let failure = &status.failed_partitions[0];
    assert_eq!(failure.range, "12-21");
    assert_eq!(failure.reason, "BadInput");
    assert_eq!(failure.exit_code, Some(3));
    assert!(!failure.retrying);
    // The partition before the hole is committed.
    assert_eq!(status.last_committed_ledger, Some(11));
    kubelet.stop().await;
}
