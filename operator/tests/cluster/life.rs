//! The whole life of a backfill: bounded to Succeeded with exact rows, following the tip as
//! ledgers arrive, suspend and resume, delete (the finalizer removes the Jobs, data stays).

use std::time::Duration;

use bronze_operator::crd::Phase;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::json;

use crate::harness::*;
use crate::kubelet::Faults;

const LONG: Duration = Duration::from_secs(120);

#[tokio::test]
async fn a_bounded_backfill_succeeds_with_exact_rows_and_deleting_it_keeps_the_data() {
    let Some(env) = TestEnv::start("bounded").await else {
        return;
    };
    let ds = env.datastore(40);
    env.upload(&ds, None);
    let _operator = env.operator(OperatorOptions::named("op-a")).await;
    let kubelet = env.kubelet(Faults::default());
    env.create("bounded", env.spec(41, json!({}))).await;

    let b = env.succeeded("bounded", LONG).await;
    let status = b.status.unwrap();
    assert_eq!(status.last_committed_ledger, Some(41));
    let progress = status.progress.unwrap();
    assert_eq!(progress.summary, "4/4 (100%)");
    // Exact rows: one per ledger, each partition exactly its ten ledgers.
    let committed = manifests(&env);
    assert_eq!(
        committed.keys().copied().collect::<Vec<_>>(),
        [2, 12, 22, 32]
    );
    for (start, m) in &committed {
        let rows: u64 = m.tables.values().map(|t| t.row_count).sum();
        assert_eq!(rows, u64::from(PARTITION), "partition {start}");
        assert_eq!(m.partition.end, start + PARTITION - 1);
    }
    // The status's chain head is the last event of one linear chain.
    let head = assert_one_linear_chain(&env, 41);
    let pas = status.pas.unwrap();
    assert_eq!(pas.event_count, 4);
    assert_eq!(pas.chain_head.as_deref(), Some(head.as_str()));
    let (code, out) = env.operator_verify("bounded").await;
    assert_eq!(code, 0, "bronze-operator verify:\n{out}");
    // Every Pod ran the real worker and succeeded.
    let record = kubelet.record();
    assert!(record.ended.iter().all(|(_, _, c)| *c == 0), "{record:?}");
    assert_eq!(record.ended.len(), 4, "{record:?}");

    // Delete: the finalizer removes the Jobs; the data stays.
    assert!(!env.job_names().await.is_empty());
    env.backfills()
        .delete("bounded", &DeleteParams::default())
        .await
        .unwrap();
    eventually("deleted with its Jobs", LONG, || async {
        env.backfills().get_opt("bounded").await.unwrap().is_none()
            && env.job_names().await.is_empty()
    })
    .await;
    assert_eq!(manifests(&env).len(), 4, "the data stays");
    assert_eq!(pas_events(&env).len(), 4, "the audit chain stays");
    kubelet.stop().await;
}

/// `spec.storage.tableFormat: delta`: the operator adds each partition its Jobs committed to the
/// dataset's Delta log as it sequences it, in ledger order, once; delta-rs (the Python
/// `deltalake` package) reads every row through the log.
#[tokio::test]
async fn a_delta_backfill_is_a_table_readers_open_with_every_row_once() {
    let Some(env) = TestEnv::start("delta").await else {
        return;
    };
    let ds = env.datastore(40);
    env.upload(&ds, None);
    let _operator = env.operator(OperatorOptions::named("op-d")).await;
    let kubelet = env.kubelet(Faults::default());
    env.create(
        "delta",
        env.spec(41, json!({"storage": {"tableFormat": "delta"}})),
    )
    .await;
    env.succeeded("delta", LONG).await;

    let dataset = "bronze/pubnet/cluster/v1/ledgers_lcm_raw";
    let log: Vec<String> = env
        .lake_keys(&format!("{dataset}/_delta_log/"))
        .into_iter()
        .filter(|k| k.ends_with(".json") && !k.contains("_last_checkpoint"))
        .collect();
    // Version 0 (protocol and schema) and one commit per partition.
    assert_eq!(log.len(), 5, "{log:?}");
    let options = json!({
        "AWS_ENDPOINT_URL": env.s3.endpoint(),
        "AWS_ACCESS_KEY_ID": env.s3.access_key(),
        "AWS_SECRET_ACCESS_KEY": env.s3.secret_key(),
        "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
        "AWS_EC2_METADATA_DISABLED": "true",
    });
    let read =
        bronze_testkit::delta_read_uri(&format!("s3://{}/{dataset}", env.lake_bucket), &options);
    assert_eq!(read["version"], 4, "{read}");
    let files: Vec<String> = [2, 12, 22, 32]
        .iter()
        .map(|s| format!("range={s}-{e}/part-{s}-{e}.parquet", e = s + PARTITION - 1))
        .collect();
    assert_eq!(read["files"], json!(files), "{read}");
    assert_eq!(read["rows_deltalake"], 40, "{read}");
    assert_eq!(
        read["ledger_sequences"],
        json!((2..=41).collect::<Vec<u32>>())
    );
    let (code, out) = env.operator_verify("delta").await;
    assert_eq!(code, 0, "bronze-operator verify:\n{out}");
    kubelet.stop().await;
}

#[tokio::test]
async fn follow_mode_catches_up_then_follows_ledgers_arriving_in_order() {
    let Some(env) = TestEnv::start("follow").await else {
        return;
    };
    let ds = env.datastore(50);
    // 25 ledgers at first: two whole partitions (2-21) and half of the third.
    env.upload(&ds, Some(26));
    let _operator = env.operator(OperatorOptions::named("op-a")).await;
    let kubelet = env.kubelet(Faults::default());
    env.create("follow", env.spec(0, json!({}))).await;

    let b = env
        .wait("follow", "caught up", LONG, |s| {
            never_failed(s);
            s.phase == Some(Phase::Following) && s.last_committed_ledger == Some(21)
        })
        .await;
    assert_eq!(b.status.unwrap().tip_ledger, Some(26));
    // The rest arrives in ledger order, one object at a time, as an exporter writes them.
    for ledger in 27..=51 {
        env.put_ledger_object(&ds, ds.key_of(ledger));
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let b = env
        .wait("follow", "following at 51", LONG, |s| {
            never_failed(s);
            s.phase == Some(Phase::Following) && s.last_committed_ledger == Some(51)
        })
        .await;
    let status = b.status.unwrap();
    assert_eq!(status.tip_ledger, Some(51));
    assert_eq!(status.progress.unwrap().total_partitions, None);
    assert_one_linear_chain(&env, 51);
    let (code, out) = env.operator_verify("follow").await;
    assert_eq!(code, 0, "bronze-operator verify:\n{out}");
    kubelet.stop().await;
}

#[tokio::test]
async fn suspend_creates_no_new_jobs_and_resume_finishes() {
    let Some(env) = TestEnv::start("suspend").await else {
        return;
    };
    let ds = env.datastore(60);
    env.upload(&ds, None);
    let _operator = env.operator(OperatorOptions::named("op-a")).await;
    let kubelet = env.kubelet(Faults::default());
    env.create("suspend", env.spec(61, json!({"maxConcurrentJobs": 1})))
        .await;
    env.wait("suspend", "started", LONG, |s| {
        s.last_committed_ledger.is_some_and(|l| l >= 11)
    })
    .await;
    let suspend = |on: bool| json!({"spec": {"suspend": on}});
    env.backfills()
        .patch(
            "suspend",
            &PatchParams::default(),
            &Patch::Merge(&suspend(true)),
        )
        .await
        .unwrap();
    env.wait("suspend", "Suspended", LONG, |s| {
        s.phase == Some(Phase::Suspended)
    })
    .await;
    // Running Jobs may finish; no new one starts while suspended.
    let jobs = env.job_names().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        env.job_names().await,
        jobs,
        "a Job was created while suspended"
    );
    let b = env.backfills().get("suspend").await.unwrap();
    let status = b.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Suspended));
    assert!(status.last_committed_ledger < Some(61), "{status:?}");
    let suspended = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Suspended")
        .unwrap();
    assert_eq!(suspended.status, "True");

    env.backfills()
        .patch(
            "suspend",
            &PatchParams::default(),
            &Patch::Merge(&suspend(false)),
        )
        .await
        .unwrap();
    env.wait("suspend", "Succeeded after resume", LONG, |s| {
        never_failed(s);
        s.phase == Some(Phase::Succeeded)
    })
    .await;
    assert_one_linear_chain(&env, 61);
    kubelet.stop().await;
}

#[tokio::test]
async fn every_sample_is_accepted_by_the_api_server_as_written() {
    let Some(env) = TestEnv::start("samples").await else {
        return;
    };
    let api: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(
        env.client.clone(),
        &env.ns,
        &kube::api::ApiResource::erase::<bronze_operator::crd::BronzeBackfill>(&()),
    );
    let mut applied = 0;
    for entry in std::fs::read_dir(workspace().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !(name.starts_with("bronzebackfill-") && name.ends_with(".yaml")) {
            continue;
        }
        let mut sample: serde_json::Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        // `kubectl -n <ns> apply -f`: the sample's own namespace is the guide's `bronze`.
        sample["metadata"]["namespace"] = json!(env.ns);
        let object_name = sample["metadata"]["name"].as_str().unwrap().to_string();
        let mut params = PatchParams::apply("kubectl").force();
        params.dry_run = true;
        api.patch(&object_name, &params, &Patch::Apply(&sample))
            .await
            .unwrap_or_else(|e| panic!("{name} refused by the API server: {e}"));
        applied += 1;
    }
    assert!(applied >= 4, "{applied} samples");
}
