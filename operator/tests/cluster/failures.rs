//! Failures through the real Job controller: a worker that exits 1 is retried by the Job's
//! backoff; a corrupt object (exit 3) fails the Job through its pod failure policy, the backfill
//! says BadInput with the object's key, and fixing the object and deleting the Job finishes it.

use std::collections::BTreeMap;
use std::time::Duration;

use bronze_operator::crd::Phase;
use kube::api::DeleteParams;
use serde_json::json;

use crate::harness::*;
use crate::kubelet::Faults;

const LONG: Duration = Duration::from_secs(120);

#[tokio::test]
async fn a_worker_that_exits_1_is_retried_by_the_job() {
    let Some(env) = TestEnv::start("exit1").await else {
        return;
    };
    let ds = env.datastore(20);
    env.upload(&ds, None);
    let _operator = env.operator(OperatorOptions::named("op-a")).await;
    // The first two Pods of the second range's Job crash with exit 1.
    let job = "exit1-12-21".to_string();
    let faults = Faults {
        fail: BTreeMap::from([(job.clone(), vec![1, 1])]),
        ..Default::default()
    };
    let kubelet = env.kubelet(faults);
    env.create(
        "exit1",
        env.spec(21, json!({"worker": {"backoffLimit": 3}})),
    )
    .await;
    let b = env.succeeded("exit1", LONG).await;
    assert_eq!(b.status.unwrap().last_committed_ledger, Some(21));
    let codes: Vec<i32> = kubelet
        .record()
        .ended
        .iter()
        .filter(|(_, j, _)| *j == job)
        .map(|(_, _, c)| *c)
        .collect();
    assert_eq!(
        codes,
        [1, 1, 0],
        "the Job controller replaced the failed Pods"
    );
    assert_one_linear_chain(&env, 21);
    kubelet.stop().await;
}

#[tokio::test]
async fn a_corrupt_object_fails_with_bad_input_naming_it_and_fixing_it_finishes() {
    let Some(env) = TestEnv::start("corrupt").await else {
        return;
    };
    let ds = env.datastore(30);
    env.upload(&ds, None);
    // Ledger 15's object (range 12-21) is not zstd at all.
    let key = ds.key_of(15).to_string();
    let full_key = format!("{DATASTORE_PREFIX}/{key}");
    env.s3
        .put_object(&env.ledgers_bucket, &full_key, b"not a ledger batch");
    let _operator = env.operator(OperatorOptions::named("op-a")).await;
    let kubelet = env.kubelet(Faults::default());
    env.create("corrupt", env.spec(31, json!({}))).await;

    let b = env
        .wait("corrupt", "Failed", LONG, |s| {
            s.phase == Some(Phase::Failed)
        })
        .await;
    let status = b.status.unwrap();
    let failed = &status.failed_partitions;
    assert_eq!(failed.len(), 1, "{failed:?}");
    let f = &failed[0];
    assert_eq!(f.range, "12-21");
    assert_eq!(f.reason, "BadInput");
    assert_eq!(f.exit_code, Some(3));
    assert!(!f.retrying);
    assert!(
        f.message.contains(&key),
        "the failure names the object {key}: {:?}",
        f.message
    );
    // Through the pod failure policy: exactly one Pod ran for that Job (no backoff retries).
    let ran: Vec<i32> = kubelet
        .record()
        .ended
        .iter()
        .filter(|(_, j, _)| j == &f.job)
        .map(|(_, _, c)| *c)
        .collect();
    assert_eq!(ran, [3]);
    // Nothing half-written was taken as committed: the checkpoint stops before the bad range.
    assert_eq!(status.last_committed_ledger, Some(11));

    // Fix the object, delete the failed Job: the backfill finishes.
    env.put_ledger_object(&ds, &key);
    env.jobs()
        .delete(&f.job, &DeleteParams::background())
        .await
        .unwrap();
    env.wait("corrupt", "Succeeded after the fix", LONG, |s| {
        s.phase == Some(Phase::Succeeded)
    })
    .await;
    assert_one_linear_chain(&env, 31);
    let (code, out) = env.operator_verify("corrupt").await;
    assert_eq!(code, 0, "bronze-operator verify:\n{out}");
    kubelet.stop().await;
}
