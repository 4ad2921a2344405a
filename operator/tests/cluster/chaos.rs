//! Chaos: the operator SIGKILLed at random moments and restarted (once with its status wiped),
//! workers SIGKILLed at random (their Pods report 137). The output must be byte-identical to a
//! clean standalone `bronze-copier` run of the same range, with one linear PAS chain, nothing
//! duplicated, and `bronze-operator verify` clean. Two operators at once: with leader election
//! one works; without it the chain still never forks. Randomness comes from a printed seed.

use std::process::Command;
use std::time::{Duration, Instant};

use bronze_operator::crd::Phase;
use bronze_operator::job::worker_env;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use crate::harness::*;
use crate::kubelet::{Chaos, Faults};

pub const LEDGERS: u32 = 60; // 2..=61: 6 partitions

/// Runs `bronze-copier` standalone over the backfill's range into `s3://<lake>/standalone/`,
/// with the backfill's `ingested_at`, and returns the Parquet bytes per partition start.
fn standalone_parquet(env: &TestEnv, spec_ingested_at: &str) -> Vec<(u32, Vec<u8>)> {
    let mut spec = env.spec(1 + LEDGERS, json!({}));
    spec.storage.prefix = "standalone/".into();
    let mut cmd = Command::new(copier_bin());
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(worker_env(&spec, spec_ingested_at, "standalone"))
        .envs(env.s3_env())
        .env("CHECKPOINT_ENABLED", "false")
        // The worker's metrics port (9090) may be taken by a worker of another test; a
        // standalone run refuses to start without the endpoint it was asked for.
        .env("METRICS_ENABLED", "false")
        .env("LOG_FORMAT", "text")
        .arg("--no-progress")
        .current_dir(env.dir.path());
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "standalone bronze-copier failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    parquet_files(env, "standalone/")
}

/// The Parquet files of the dataset under `prefix`, by partition start.
fn parquet_files(env: &TestEnv, prefix: &str) -> Vec<(u32, Vec<u8>)> {
    let keys = env.lake_keys(&format!("{prefix}pubnet/cluster/v1/"));
    let mut files: Vec<(u32, Vec<u8>)> = keys
        .iter()
        .filter(|k| k.ends_with(".parquet"))
        .map(|k| {
            let range = k.split("range=").nth(1).unwrap().split('/').next().unwrap();
            let start = range.split('-').next().unwrap().parse().unwrap();
            (start, env.s3.get_object(&env.lake_bucket, k).unwrap())
        })
        .collect();
    files.sort_by_key(|(s, _)| *s);
    files
}

/// Everything the dataset must be after the backfill succeeded: exactly one Parquet file and
/// manifest per partition, byte-identical to a standalone run, one linear chain, verify clean.
pub async fn assert_exact_output(env: &TestEnv, name: &str) {
    let b = env.backfills().get(name).await.unwrap();
    let status = b.status.unwrap();
    let ingested_at = status.ingested_at.clone().expect("status.ingestedAt");
    let ours = parquet_files(env, "bronze/");
    let starts: Vec<u32> = ours.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        starts,
        [2, 12, 22, 32, 42, 52],
        "one Parquet file per partition"
    );
    let manifest_count = env
        .lake_keys("bronze/pubnet/cluster/v1/")
        .iter()
        .filter(|k| k.ends_with("_manifest.json"))
        .count();
    assert_eq!(manifest_count, 6);
    let theirs = standalone_parquet(env, &ingested_at);
    assert_eq!(theirs.len(), 6);
    for ((start, a), (_, b)) in ours.iter().zip(&theirs) {
        assert!(
            a == b,
            "partition {start}: Parquet differs from the standalone run"
        );
    }
    let head = assert_one_linear_chain(env, 1 + LEDGERS);
    assert_eq!(
        status.pas.and_then(|p| p.chain_head).as_deref(),
        Some(head.as_str())
    );
    let (code, out) = env.operator_verify(name).await;
    assert_eq!(code, 0, "bronze-operator verify:\n{out}");
}

#[tokio::test]
async fn operator_and_worker_kills_leave_output_identical_to_a_standalone_run() {
    let Some(env) = TestEnv::start("chaos").await else {
        return;
    };
    let mut rng = Rng::seeded("chaos");
    let ds = env.datastore(LEDGERS);
    env.upload(&ds, None);
    let chaos = Chaos {
        rng: Rng::seeded("chaos-kubelet"),
        kill_chance: 0.4,
        max_delay_ms: 1500,
        max_kills: 6,
    };
    let kubelet = env.kubelet(Faults {
        chaos: Some(chaos),
        ..Default::default()
    });
    let mut operator = env.operator(OperatorOptions::named("op-0")).await;
    env.create(
        "chaos",
        env.spec(1 + LEDGERS, json!({"worker": {"backoffLimit": 8}})),
    )
    .await;

    // Kill the operator at random moments and restart it; once, wipe the status while it is down.
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut restarts = 0;
    let mut wiped = false;
    loop {
        let b = env.backfills().get("chaos").await.unwrap();
        let status = b.status.clone().unwrap_or_default();
        assert_ne!(
            status.phase,
            Some(Phase::Failed),
            "{:?}",
            status.failed_partitions
        );
        if status.phase == Some(Phase::Succeeded) && wiped {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "chaos: not Succeeded in time: {status:?}\n{}",
            operator.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(rng.between(300, 2500))).await;
        if restarts < 6 || !wiped {
            operator.kill();
            restarts += 1;
            let now = env.backfills().get("chaos").await.unwrap().status;
            let committed = now.and_then(|s| s.last_committed_ledger).unwrap_or(0);
            if !wiped && (committed >= 21 || restarts >= 5) {
                // The status is lost (e.g. restored from a backup without it): the operator
                // must rebuild it from storage and the Jobs.
                env.backfills()
                    .patch_status(
                        "chaos",
                        &PatchParams::default(),
                        &Patch::Merge(&json!({"status": null})),
                    )
                    .await
                    .unwrap();
                wiped = true;
                say(&format!("chaos: status wiped at ledger {committed}"));
            }
            tokio::time::sleep(Duration::from_millis(rng.between(0, 1000))).await;
            operator = env
                .operator(OperatorOptions::named(&format!("op-{restarts}")))
                .await;
        }
    }
    say(&format!(
        "chaos: {restarts} operator kills, {} worker kills",
        kubelet.record().killed
    ));
    assert_exact_output(&env, "chaos").await;
    kubelet.stop().await;
}

#[tokio::test]
async fn with_leader_election_one_of_two_operators_works() {
    let Some(env) = TestEnv::start("leader").await else {
        return;
    };
    let ds = env.datastore(LEDGERS);
    env.upload(&ds, None);
    let a = env.operator(OperatorOptions::named("op-a")).await;
    let b = env.operator(OperatorOptions::named("op-b")).await;
    let kubelet = env.kubelet(Faults::default());
    env.create("leader", env.spec(1 + LEDGERS, json!({}))).await;
    env.succeeded("leader", Duration::from_secs(120)).await;
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), &env.ns);
    let lease = leases.get(RELEASE).await.expect("the chart's Lease");
    let holder = lease.spec.unwrap().holder_identity.unwrap();
    let (leader, standby) = if holder == "op-a" { (&a, &b) } else { (&b, &a) };
    assert_eq!(leader.options.identity, holder);
    let reconciled = |op: &Operator| op.log_text().matches("reconciled").count();
    assert!(reconciled(leader) > 0, "{}", leader.log_tail());
    assert_eq!(
        reconciled(standby),
        0,
        "the standby reconciled:\n{}",
        standby.log_tail()
    );
    assert_exact_output(&env, "leader").await;
    kubelet.stop().await;
}

#[tokio::test]
async fn without_leader_election_two_operators_never_fork_the_chain() {
    let Some(env) = TestEnv::start("twoops").await else {
        return;
    };
    let ds = env.datastore(LEDGERS);
    env.upload(&ds, None);
    let options = |id: &str| OperatorOptions {
        identity: id.into(),
        leader_election: false,
    };
    let a = env.operator(options("op-a")).await;
    let b = env.operator(options("op-b")).await;
    let kubelet = env.kubelet(Faults::default());
    env.create("twoops", env.spec(1 + LEDGERS, json!({}))).await;
    env.succeeded("twoops", Duration::from_secs(120)).await;
    let reconciled = |op: &Operator| op.log_text().matches("reconciled").count();
    assert!(
        reconciled(&a) > 0 && reconciled(&b) > 0,
        "both operators worked"
    );
    assert_exact_output(&env, "twoops").await;
    kubelet.stop().await;
}
