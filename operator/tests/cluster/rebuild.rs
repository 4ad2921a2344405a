//! Replacements on Kubernetes (issue 19): nothing is replaced without a rebuild request. A
//! worker Job that meets a committed partition adopts it, whatever settings wrote it; the API
//! server refuses `spec.allowOverwrite: true` and malformed `spec.rebuild` requests (CEL); a
//! rebuild request on a finished backfill is planned as Jobs of its own, and, while the
//! replacement step is not sequenced by the operator, changes no committed partition.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use bronze_operator::crd::{BronzeBackfill, RebuildPhase};
use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

use crate::harness::*;
use crate::kubelet::Faults;

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
/// backfill's settings. Then a rebuild request is planned as Jobs of its own, over the widened
/// range and within `maxConcurrentJobs`; the backfill stays Succeeded and no committed
/// partition changes.
#[tokio::test]
async fn a_job_meeting_a_committed_partition_adopts_it_and_a_rebuild_gets_its_own_jobs() {
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
    env.create("adopt", env.spec(41, json!({"ingestedAt": INGESTED_AT})))
        .await;
    env.succeeded("adopt", LONG).await;
    let committed = manifests(&env);
    let compression = |start: u32| {
        committed[&start]
            .writer
            .as_ref()
            .map(|w| w.compression.clone())
            .unwrap_or_default()
    };
    assert_eq!(compression(12), "snappy", "adopted as it was");
    assert_eq!(checksums(&env)[&12], before[&12], "the same bytes");
    for start in [2, 22, 32] {
        assert_eq!(compression(start), "zstd", "partition {start}");
    }
    assert_one_linear_chain(&env, 41);
    assert!(
        pas_events(&env)
            .iter()
            .all(|(_, e)| e.event_type != "bronze_partition_replaced"),
        "no replacement without a rebuild"
    );
    let (code, out) = env.operator_verify("adopt").await;
    assert_eq!(code, 0, "bronze-operator verify:\n{out}");
    let done = checksums(&env);

    // A rebuild of ledgers 5-25: partitions 2-11, 12-21, 22-31, at most 2 Jobs at a time.
    env.backfills()
        .patch(
            "adopt",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"rebuild": {"id": "r1", "ledgerStart": 5, "ledgerEnd": 25}}}),
            ),
        )
        .await
        .unwrap();
    let b = env
        .wait("adopt", "rebuild accepted", LONG, |s| {
            s.rebuild.as_ref().is_some_and(|r| r.id == "r1")
        })
        .await;
    let rebuild = b.status.unwrap().rebuild.unwrap();
    assert!(!rebuild.refused, "{rebuild:?}");
    assert_eq!((rebuild.ledger_start, rebuild.ledger_end), (2, 31));
    assert_eq!(rebuild.partitions_total, 3);
    let jobs = env.jobs().list(&ListParams::default()).await.unwrap().items;
    let rebuild_jobs: Vec<_> = jobs
        .iter()
        .filter(|j| {
            j.annotations()
                .get(bronze_operator::job::ANNOTATION_REBUILD)
                .map(String::as_str)
                == Some("r1")
        })
        .collect();
    assert!(
        !rebuild_jobs.is_empty() && rebuild_jobs.len() <= 2,
        "{:?}",
        rebuild_jobs
            .iter()
            .map(|j| j.name_any())
            .collect::<Vec<_>>()
    );
    for job in &rebuild_jobs {
        let args = job
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0]
            .args
            .clone()
            .unwrap();
        assert!(args.contains(&"--rebuild".to_string()), "{args:?}");
        assert!(job.name_any().contains("rebuild"), "{}", job.name_any());
    }
    // The rebuild Jobs end (the replacement step is not sequenced by the operator yet: they
    // fail and nothing is replaced); the backfill stays Succeeded, every partition as it was.
    let b = env
        .wait("adopt", "rebuild ended", LONG, |s| {
            s.rebuild
                .as_ref()
                .is_some_and(|r| matches!(r.phase, RebuildPhase::Failed | RebuildPhase::Succeeded))
        })
        .await;
    let status = b.status.unwrap();
    assert_eq!(status.phase, Some(bronze_operator::crd::Phase::Succeeded));
    assert_eq!(status.last_committed_ledger, Some(41));
    assert_eq!(checksums(&env), done, "no committed partition changed");
    assert_one_linear_chain(&env, 41);
    let (code, out) = env.operator_verify("adopt").await;
    assert_eq!(code, 0, "bronze-operator verify:\n{out}");
    kubelet.stop().await;
}
