//! Uninstalling in the wrong order: the operator removed while a BronzeBackfill still exists.
//! Deleting the resource then waits for ever on the operator's finalizer; removing the finalizer
//! by hand (the documented way out) lets it go, and the garbage collector removes its Jobs
//! through their owner references. Data in storage stays.

use std::time::{Duration, Instant};

use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use serde_json::json;

use crate::harness::*;

#[tokio::test]
async fn a_backfill_left_without_its_operator_is_released_by_removing_the_finalizer() {
    let Some(env) = TestEnv::start("uninstall").await else {
        return;
    };
    let ds = env.datastore(20);
    env.upload(&ds, None);
    // No kubelet: the Jobs stay running (their Pods Pending), as when nodes are gone too.
    let mut operator = env.operator(OperatorOptions::named("op-a")).await;
    env.create("orphan", env.spec(21, json!({}))).await;
    let jobs = ListParams::default().labels("bronze.obsrvr.io/backfill=orphan");
    eventually("the Jobs exist", Duration::from_secs(60), || async {
        !env.jobs().list(&jobs).await.unwrap().items.is_empty()
    })
    .await;
    // `helm uninstall` first: the operator is gone.
    operator.kill();
    env.backfills()
        .delete("orphan", &DeleteParams::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stuck = env.backfills().get("orphan").await.unwrap();
    assert!(stuck.metadata.deletion_timestamp.is_some());
    assert_eq!(
        stuck.metadata.finalizers.as_deref(),
        Some(&["bronze.obsrvr.io/jobs".to_string()][..]),
        "held by the operator's finalizer"
    );
    // The way out (docs/operator.md, "Uninstalling"): drop the finalizer.
    env.backfills()
        .patch(
            "orphan",
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while env.backfills().get_opt("orphan").await.unwrap().is_some()
        || !env.jobs().list(&jobs).await.unwrap().items.is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "the backfill or its Jobs are still there"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Nothing in storage was deleted (the datastore and whatever the lake holds stay).
    assert!(!env.s3.list_objects(&env.ledgers_bucket, "").is_empty());
}
