//! Replacements on Kubernetes (issue 19): nothing is replaced without a rebuild request. A
//! worker Job that meets a committed partition adopts it, whatever settings wrote it; the API
//! server refuses `spec.allowOverwrite: true` and malformed `spec.rebuild` requests (CEL); a
//! rebuild request on a finished backfill is planned as Jobs of its own, and, while the
//! replacement step is not sequenced by the operator, changes no committed partition.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use bronze::partition::LedgerRange;
use bronze_operator::crd::{BronzeBackfill, RebuildPhase};
use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

use crate::harness::*;
use crate::kubelet::{Chaos, Faults};

const LONG: Duration = Duration::from_secs(120);
const INGESTED_AT: &str = "2026-12-01T00:00:00Z";

/// The API server's 422 message for a merge patch of `name`'s spec, or `None` when accepted.
async fn patch_error(env: &TestEnv, name: &str, spec: Value) -> Option<String> {
    let api: Api<DynamicObject> = Api::namespaced_with(
        env.client.clone(),
        &env.ns,
        &ApiResource::erase::<BronzeBackfill>(&()),
    );
    match api
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": spec})),
        )
        .await
    {
        Ok(_) => None,
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 422, "{e:?}");
            Some(e.message)
        }
        Err(e) => panic!("unexpected error: {e}"),
    }
}

/// Checksums of the committed partitions, by start.
fn checksums(env: &TestEnv) -> BTreeMap<u32, String> {
    manifests(env)
        .into_iter()
        .map(|(start, m)| (start, m.primary().unwrap().checksum.clone()))
        .collect()
}

#[tokio::test]
async fn allow_overwrite_and_malformed_rebuilds_are_refused_at_admission() {
    let Some(env) = TestEnv::start("rebuildcel").await else {
        return;
    };
    // No operator: this is the API server alone.
    let mut spec = env.spec(41, json!({}));
    spec.allow_overwrite = Some(true);
    let error = env
        .backfills()
        .create(&PostParams::default(), &BronzeBackfill::new("a", spec))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("spec.allowOverwrite is removed") && error.contains("spec.rebuild"),
        "{error}"
    );
    // `false` (what old resources set) stays valid.
    let mut spec = env.spec(41, json!({}));
    spec.allow_overwrite = Some(false);
    env.create("b", spec).await;

    let cases: [(&str, Value, &str); 4] = [
        (
            "start after end",
            json!({"rebuild": {"id": "r", "ledgerStart": 30, "ledgerEnd": 12}}),
            "spec.rebuild.ledgerStart must be <= spec.rebuild.ledgerEnd",
        ),
        (
            "past the backfill's end",
            json!({"rebuild": {"id": "r", "ledgerStart": 12, "ledgerEnd": 42}}),
            "spec.rebuild must lie inside the backfill's range",
        ),
        (
            "an empty id",
            json!({"rebuild": {"id": "", "ledgerStart": 12, "ledgerEnd": 21}}),
            "spec.rebuild.id",
        ),
        (
            "allowOverwrite set on an existing resource",
            json!({"allowOverwrite": true}),
            "spec.allowOverwrite is removed",
        ),
    ];
    for (what, spec, message) in cases {
        let error = patch_error(&env, "b", spec).await;
        assert!(
            error.as_deref().is_some_and(|e| e.contains(message)),
            "{what}: {error:?}"
        );
    }
    // A rebuild inside the range is accepted; its id keeps its range.
    let first = json!({"rebuild": {"id": "r1", "ledgerStart": 5, "ledgerEnd": 25}});
    assert_eq!(patch_error(&env, "b", first).await, None);
    let moved = json!({"rebuild": {"id": "r1", "ledgerStart": 5, "ledgerEnd": 35}});
    let error = patch_error(&env, "b", moved).await;
    assert!(
        error
            .as_deref()
            .is_some_and(|e| e.contains("a new range needs a new id")),
        "{error:?}"
    );
    let next = json!({"rebuild": {"id": "r2", "ledgerStart": 5, "ledgerEnd": 35}});
    assert_eq!(patch_error(&env, "b", next).await, None);
}

/// A partition committed before the backfill with other writer settings (snappy) is adopted by
/// the worker Job that meets it: same bytes, no replacement event; the other partitions get the
/// backfill's settings. Then a rebuild of ledgers 5-25 with another compression (lz4) runs as
/// Jobs of its own over the widened range (2-31) and the operator replaces each partition
/// through the engine: the rebuilt manifests carry lz4, the last partition keeps zstd, one
/// `bronze_partition_replaced` event per rebuilt partition in one linear chain, rows unchanged,
/// the checkpoint where it was, `bronze-operator verify` clean. The backfill is a Delta table:
/// each replacement is one log commit removing the old file and adding the new one, and delta-rs
/// reads every ledger once both at the latest version and at the version before the rebuild.
#[tokio::test]
async fn a_job_meeting_a_committed_partition_adopts_it_and_a_rebuild_replaces_through_the_engine() {
    let Some(env) = TestEnv::start("rebuildadopt").await else {
        return;
    };
    let ds = env.datastore(40);
    env.upload(&ds, None);
    // Partition 12-21 committed first by a worker run with snappy, outside any backfill.
    let snappy = env.spec(
        41,
        json!({"ingestedAt": INGESTED_AT, "storage": {"compression": "snappy"}}),
    );
    let out = Command::new(copier_bin())
        .args([
            "worker",
            "--range",
            "12-21",
            "--termination-log",
            "/dev/null",
        ])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(bronze_operator::job::worker_env(
            &snappy,
            INGESTED_AT,
            "pre",
        ))
        .envs(env.s3_env())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = checksums(&env);
    assert_eq!(before.keys().copied().collect::<Vec<_>>(), [12]);

    let _operator = env.operator(OperatorOptions::named("op-r")).await;
    let kubelet = env.kubelet(Faults::default());
    // A Delta table: the operator's log catches up with the adopted partition, and each
    // replacement is one commit that removes the old file and adds the new one.
    env.create(
        "adopt",
        env.spec(
            41,
            json!({"ingestedAt": INGESTED_AT, "storage": {"tableFormat": "delta"}}),
        ),
    )
    .await;
    env.succeeded("adopt", LONG).await;
    assert_eq!(compressions(&env), "2:zstd 12:snappy 22:zstd 32:zstd");
    assert_eq!(checksums(&env)[&12], before[&12], "adopted as it was");
    assert_one_linear_chain(&env, 41);
    let (code, out) = env.operator_verify("adopt").await;
    assert_eq!(code, 0, "bronze-operator verify:\n{out}");
    let done = checksums(&env);
    let before_rebuild = read_table(&env, None);
    assert_eq!(before_rebuild["files"], json!(table_files(&env)));

    // The rebuild's Jobs, as seen while they exist (a harvested Job may be deleted before the
    // rebuild's status says Succeeded): name -> container args.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(BTreeMap::<String, Vec<String>>::new()));
    let watcher = {
        let (jobs, seen) = (env.jobs(), seen.clone());
        tokio::spawn(async move {
            loop {
                if let Ok(list) = jobs.list(&ListParams::default()).await {
                    record_rebuild_jobs(&list.items, &seen);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    // A rebuild of ledgers 5-25 with lz4: partitions 2-11, 12-21, 22-31, at most 2 Jobs at once.
    env.backfills()
        .patch(
            "adopt",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {
                "storage": {"compression": "lz4"},
                "rebuild": {"id": "r1", "ledgerStart": 5, "ledgerEnd": 25},
            }})),
        )
        .await
        .unwrap();
    let b = env
        .wait("adopt", "rebuild Succeeded", LONG, |s| {
            let r = s.rebuild.as_ref();
            assert!(
                r.is_none_or(|r| r.phase != RebuildPhase::Failed),
                "the rebuild failed: {r:#?}"
            );
            r.is_some_and(|r| r.id == "r1" && r.phase == RebuildPhase::Succeeded)
        })
        .await;
    let status = b.status.unwrap();
    let rebuild = status.rebuild.unwrap();
    assert_eq!((rebuild.ledger_start, rebuild.ledger_end), (2, 31));
    assert_eq!((rebuild.partitions_done, rebuild.partitions_total), (3, 3));
    assert_eq!(rebuild.summary, "r1 Succeeded 3/3");
    assert_eq!(status.phase, Some(bronze_operator::crd::Phase::Succeeded));
    assert_eq!(status.last_committed_ledger, Some(41));
    assert_eq!(compressions(&env), "2:lz4 12:lz4 22:lz4 32:zstd");
    let now = checksums(&env);
    assert_eq!(now[&32], done[&32]);
    for start in [2, 12, 22] {
        assert_ne!(now[&start], done[&start], "partition {start} replaced");
    }
    for (start, m) in manifests(&env) {
        assert_eq!(m.primary().unwrap().row_count, 10, "rows of {start}");
    }
    // One linear chain: the four first events, then one replaced event per rebuilt partition.
    let chain = linear_chain(&env);
    let kinds: Vec<(u32, &str)> = chain
        .iter()
        .map(|e| (e.partition.ledger_start, e.event_type.as_str()))
        .collect();
    let first = "bronze_partition";
    let replaced = "bronze_partition_replaced";
    assert_eq!(
        kinds,
        [
            (2, first),
            (12, first),
            (22, first),
            (32, first),
            (2, replaced),
            (12, replaced),
            (22, replaced)
        ]
    );
    let pas = status.pas.unwrap();
    assert_eq!(pas.event_count, 7);
    assert_eq!(
        pas.chain_head.as_deref(),
        Some(chain[6].chain.event_hash.as_str())
    );
    // The rebuild's Jobs ran the worker with --rebuild and were harvested.
    watcher.abort();
    let jobs = env.jobs().list(&ListParams::default()).await.unwrap().items;
    record_rebuild_jobs(&jobs, &seen);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "{seen:?}");
    for args in seen.values() {
        assert_eq!(args[3..], ["--rebuild".to_string(), "r1".to_string()]);
    }
    assert_rebuild_is_one_commit_per_partition(&env, &before_rebuild);
    let (code, out) = env.operator_verify("adopt").await;
    assert_eq!(code, 0, "bronze-operator verify:\n{out}");
    kubelet.stop().await;
}

const DATASET: &str = "bronze/pubnet/cluster/v1/ledgers_lcm_raw";

/// Adds the Jobs of rebuild `r1` among `jobs` to `seen` (name -> the container's args).
fn record_rebuild_jobs(
    jobs: &[k8s_openapi::api::batch::v1::Job],
    seen: &std::sync::Mutex<BTreeMap<String, Vec<String>>>,
) {
    let mut seen = seen.lock().unwrap();
    for job in jobs {
        let r1 = job
            .annotations()
            .get(bronze_operator::job::ANNOTATION_REBUILD)
            .is_some_and(|id| id == "r1");
        let args = job
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .and_then(|s| s.containers.first())
            .and_then(|c| c.args.clone());
        if let (true, Some(args)) = (r1, args) {
            seen.insert(job.name_any(), args);
        }
    }
}

/// The files the committed manifests commit, relative to the table root, in ledger order.
fn table_files(env: &TestEnv) -> Vec<String> {
    manifests(env)
        .values()
        .map(|m| {
            let r = m.range();
            format!("range={r}/{}", m.primary().unwrap().file)
        })
        .collect()
}

/// delta-rs' reading of the lake's table (at `version`; the latest with `None`).
fn read_table(env: &TestEnv, version: Option<u64>) -> Value {
    let options = json!({
        "AWS_ENDPOINT_URL": env.s3.endpoint(),
        "AWS_ACCESS_KEY_ID": env.s3.access_key(),
        "AWS_SECRET_ACCESS_KEY": env.s3.secret_key(),
        "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
        "AWS_EC2_METADATA_DISABLED": "true",
    });
    let uri = format!("s3://{}/{DATASET}", env.lake_bucket);
    let read = bronze_testkit::delta_read_uri_at(&uri, &options, version);
    assert_eq!(
        read["ledger_sequences"],
        json!((2..=41).collect::<Vec<u32>>()),
        "every ledger once: {read}"
    );
    read
}

/// After the rebuild of 2-31: the log's last three versions each remove one old file and add its
/// replacement (a name of its own, the manifest's); delta-rs reads every ledger once from the new
/// files, and, at the version before the rebuild, from the old ones, which are still stored.
fn assert_rebuild_is_one_commit_per_partition(env: &TestEnv, before: &Value) {
    let files = table_files(env);
    let old = before["files"].as_array().unwrap().clone();
    let latest = before["version"].as_u64().unwrap() + 3;
    for (i, version) in (latest - 2..=latest).enumerate() {
        let key = format!("{DATASET}/_delta_log/{version:020}.json");
        let body = env.s3.get_object(&env.lake_bucket, &key).unwrap();
        let actions: Vec<Value> = String::from_utf8(body)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let removes: Vec<&Value> = actions.iter().filter_map(|a| a.get("remove")).collect();
        let adds: Vec<&Value> = actions.iter().filter_map(|a| a.get("add")).collect();
        assert_eq!(removes.len(), 1, "version {version}: {actions:?}");
        assert_eq!(adds.len(), 1, "version {version}: {actions:?}");
        assert_eq!(removes[0]["path"], old[i], "version {version}");
        assert_eq!(removes[0]["dataChange"], true);
        assert_eq!(adds[0]["path"], files[i].as_str(), "version {version}");
        assert_ne!(old[i], files[i].as_str(), "a new name for the replacement");
    }
    let after = read_table(env, None);
    assert_eq!(after["version"], latest, "{after}");
    assert_eq!(after["files"], json!(files), "{after}");
    let again = read_table(env, before["version"].as_u64());
    assert_eq!(again["files"], before["files"], "{again}");
    let keys = env.lake_keys(&format!("{DATASET}/"));
    for f in &old {
        let key = format!("{DATASET}/{}", f.as_str().unwrap());
        assert!(keys.contains(&key), "{key} kept for older versions");
    }
}

/// The compression each committed partition's manifest records, by start.
fn compressions(env: &TestEnv) -> String {
    manifests(env)
        .into_iter()
        .map(|(start, m)| {
            format!(
                "{start}:{}",
                m.writer.map(|w| w.compression).unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The outbox's events in chain order (each links to the one before); fails on a fork or a
/// break.
fn linear_chain(env: &TestEnv) -> Vec<bronze::pas::PasEvent> {
    let events: Vec<bronze::pas::PasEvent> = pas_events(env).into_iter().map(|(_, e)| e).collect();
    let mut chain = Vec::new();
    let mut prev = String::new();
    while let Some(next) = events.iter().find(|e| e.chain.prev_event_hash == prev) {
        assert_eq!(
            events
                .iter()
                .filter(|e| e.chain.prev_event_hash == prev)
                .count(),
            1,
            "a fork after {prev:?}"
        );
        prev = next.chain.event_hash.clone();
        chain.push(next.clone());
    }
    assert_eq!(chain.len(), events.len(), "events outside the chain");
    chain
}

/// Crashes and conflicts during a rebuild: the operator killed (-9) and restarted at random
/// moments, worker Pods killed mid-rebuild (the kubelet's chaos), and a second id requested
/// while the first runs (queued: it starts when the first ends). Both end Succeeded; the second,
/// over partitions the first already rebuilt with the same settings, finds them identical and
/// adds nothing; one linear chain with one replaced event per partition of the first;
/// `bronze-operator verify` clean.
#[tokio::test]
async fn a_rebuild_survives_operator_and_worker_kills_and_a_second_id_waits_for_it() {
    let Some(env) = TestEnv::start("rebuildcrash").await else {
        return;
    };
    let mut rng = Rng::seeded("rebuild-crash");
    let ds = env.datastore(40);
    env.upload(&ds, None);
    let kubelet = env.kubelet(Faults {
        chaos: Some(Chaos {
            rng: Rng::seeded("rebuild-crash-kubelet"),
            kill_chance: 0.7,
            max_delay_ms: 800,
            max_kills: 6,
        }),
        // Besides the random kills (timing decides whether they land), the first Pod of one
        // rebuild Job is always killed.
        fail: BTreeMap::from([(
            bronze_operator::plan::rebuild_job_name("crash", "r1", LedgerRange::new(12, 21)),
            vec![137],
        )]),
        ..Default::default()
    });
    let mut operator = env.operator(OperatorOptions::named("op-0")).await;
    let spec =
        json!({"ingestedAt": INGESTED_AT, "maxConcurrentJobs": 1, "worker": {"backoffLimit": 10}});
    env.create("crash", env.spec(41, spec)).await;
    env.succeeded("crash", LONG).await;

    let rebuild = |id: &str, start: u32, end: u32| {
        json!({"spec": {"storage": {"compression": "snappy"},
            "rebuild": {"id": id, "ledgerStart": start, "ledgerEnd": end}}})
    };
    env.backfills()
        .patch(
            "crash",
            &PatchParams::default(),
            &Patch::Merge(rebuild("r1", 2, 41)),
        )
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    let mut restarts = 0;
    let mut second = false;
    loop {
        let status = env
            .backfills()
            .get("crash")
            .await
            .unwrap()
            .status
            .unwrap_or_default();
        let r = status.rebuild.clone();
        assert!(
            r.as_ref().is_none_or(|r| r.phase != RebuildPhase::Failed),
            "the rebuild failed: {r:#?}\n{}",
            operator.log_tail()
        );
        if r.as_ref()
            .is_some_and(|r| r.id == "r2" && r.phase == RebuildPhase::Succeeded)
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not done in time: {r:#?}\n{}",
            operator.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(rng.between(300, 2000))).await;
        if restarts < 4 {
            operator.kill();
            restarts += 1;
            if !second && r.is_some_and(|r| r.id == "r1" && r.partitions_done >= 1) {
                // A second id while r1 runs: queued.
                env.backfills()
                    .patch(
                        "crash",
                        &PatchParams::default(),
                        &Patch::Merge(rebuild("r2", 2, 11)),
                    )
                    .await
                    .unwrap();
                second = true;
            }
            operator = env
                .operator(OperatorOptions::named(&format!("op-{restarts}")))
                .await;
        } else if !second {
            env.backfills()
                .patch(
                    "crash",
                    &PatchParams::default(),
                    &Patch::Merge(rebuild("r2", 2, 11)),
                )
                .await
                .unwrap();
            second = true;
        }
    }
    say(&format!(
        "rebuildcrash: {restarts} operator kills, {} worker kills",
        kubelet.record().killed
    ));
    // A rebuild Job's worker was killed (exit 137) at least once.
    let record = kubelet.record();
    assert!(
        record
            .ended
            .iter()
            .any(|(_, job, code)| job.contains("rebuild") && *code == 137),
        "no rebuild worker was killed: {record:?}"
    );
    let status = env.backfills().get("crash").await.unwrap().status.unwrap();
    assert_eq!(status.last_committed_ledger, Some(41));
    let history: Vec<(String, RebuildPhase)> = status
        .rebuild_history
        .iter()
        .map(|h| (h.id.clone(), h.phase))
        .collect();
    assert_eq!(history, [("r1".to_string(), RebuildPhase::Succeeded)]);
    let r2 = status.rebuild.unwrap();
    assert_eq!((r2.partitions_done, r2.partitions_identical), (1, 1));
    assert_eq!(compressions(&env), "2:snappy 12:snappy 22:snappy 32:snappy");
    let chain = linear_chain(&env);
    let replaced = chain
        .iter()
        .filter(|e| e.event_type == "bronze_partition_replaced")
        .count();
    assert_eq!((chain.len(), replaced), (8, 4));
    assert_eq!(status.pas.unwrap().event_count, 8);
    let (code, out) = env.operator_verify("crash").await;
    assert_eq!(code, 0, "bronze-operator verify:\n{out}");
    kubelet.stop().await;
}

/// The backfill deleted during a rebuild: its Jobs go (the finalizer), the data stays, and
/// every committed partition is valid, whether or not it was replaced yet (`bronze-operator
/// verify` on the resource as it was: clean; a rebuild's leftovers are warnings only).
#[tokio::test]
async fn deleting_a_backfill_during_a_rebuild_leaves_a_valid_dataset() {
    let Some(env) = TestEnv::start("rebuilddelete").await else {
        return;
    };
    let ds = env.datastore(40);
    env.upload(&ds, None);
    let kubelet = env.kubelet(Faults::default());
    let _operator = env.operator(OperatorOptions::named("op-d")).await;
    let spec = json!({"ingestedAt": INGESTED_AT, "maxConcurrentJobs": 1});
    env.create("gone", env.spec(41, spec)).await;
    env.succeeded("gone", LONG).await;
    env.backfills()
        .patch(
            "gone",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"storage": {"compression": "snappy"},
                "rebuild": {"id": "r1", "ledgerStart": 2, "ledgerEnd": 41}}})),
        )
        .await
        .unwrap();
    let b = env
        .wait("gone", "rebuild under way", LONG, |s| {
            s.rebuild
                .as_ref()
                .is_some_and(|r| r.id == "r1" && r.partitions_done >= 1)
        })
        .await;
    let file = env.dir.path().join("gone.yaml");
    std::fs::write(&file, serde_yaml_ng::to_string(&b).unwrap()).unwrap();
    env.backfills()
        .delete("gone", &kube::api::DeleteParams::default())
        .await
        .unwrap();
    eventually("deleted with its Jobs", LONG, || async {
        env.backfills().get_opt("gone").await.unwrap().is_none() && env.job_names().await.is_empty()
    })
    .await;
    kubelet.stop().await;
    assert_eq!(manifests(&env).len(), 4, "the data stays");
    assert!(
        compressions(&env).starts_with("2:snappy"),
        "{}",
        compressions(&env)
    );
    linear_chain(&env);
    let out = Command::new(operator_bin())
        .arg("verify")
        .arg(&file)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.s3_env())
        .env("LOG_FORMAT", "text")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "bronze-operator verify:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
