//! Reconcile against a scripted API server (kube-rs `tower-test` pattern): each test asserts the
//! method, path and body of every request, in order, and answers as the API server would.

use std::collections::BTreeSet;

use http::Method;
use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};
use k8s_openapi::api::rbac::v1::{ClusterRole, Role};
use serde_json::{Value, json};

use super::*;
use crate::crd::{BronzeBackfillStatus, Phase};
use crate::fixtures::{
    ApiServer, MemoryDataset, MemoryOutbox, backfill, context, manifest_for, spec,
};
use crate::plan::JobRequest;

const JOBS: &str = "/apis/batch/v1/namespaces/ns/jobs";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/ns/events";
const BBF: &str = "/apis/bronze.obsrvr.io/v1alpha1/namespaces/ns/bronzebackfills/bbf";
const STATUS: &str = "/apis/bronze.obsrvr.io/v1alpha1/namespaces/ns/bronzebackfills/bbf/status";
const INGESTED: &str = "2025-01-15T10:00:00.000Z";

fn r(start: u32, end: u32) -> bronze::partition::LedgerRange {
    bronze::partition::LedgerRange::new(start, end)
}

fn job_json(
    b: &BronzeBackfill,
    range: bronze::partition::LedgerRange,
    condition: Option<(&str, &str, &str)>,
) -> Value {
    let request = JobRequest {
        name: crate::plan::job_name("bbf", range),
        range,
        attempt: 1,
        rebuild: None,
    };
    let mut job = build_job(b, &request, INGESTED);
    if let Some((type_, reason, message)) = condition {
        job.status = Some(JobStatus {
            conditions: Some(vec![JobCondition {
                type_: type_.into(),
                status: "True".into(),
                reason: Some(reason.into()),
                message: Some(message.into()),
                ..Default::default()
            }]),
            ..Default::default()
        });
    }
    serde_json::to_value(job).unwrap()
}

fn job_list(items: Vec<Value>) -> Value {
    json!({"apiVersion": "batch/v1", "kind": "JobList", "metadata": {}, "items": items})
}

fn with_status(mut b: BronzeBackfill, status: BronzeBackfillStatus) -> BronzeBackfill {
    b.status = Some(status);
    b
}

fn started() -> BronzeBackfillStatus {
    BronzeBackfillStatus {
        ingested_at: Some(INGESTED.into()),
        ..Default::default()
    }
}

/// Answers the Jobs list of a reconcile, checking the label selector: the backfill's Jobs but
/// the harvested ones (so a reconcile's cost does not grow with the finished Jobs kept).
async fn list_jobs(server: &mut ApiServer, items: Vec<Value>) {
    let call = server.expect(Method::GET, JOBS).await;
    assert!(
        call.query_has(
            "labelSelector=bronze.obsrvr.io%2Fbackfill%3Dbbf%2Cbronze.obsrvr.io%2Fharvested%21%3Dtrue"
        ),
        "{}",
        call.query
    );
    call.respond(200, job_list(items));
}

/// Answers the Jobs list of a deletion: every Job of the backfill, harvested ones included.
async fn list_all_jobs(server: &mut ApiServer, items: Vec<Value>) {
    let call = server.expect(Method::GET, JOBS).await;
    assert!(
        call.query_has("labelSelector=bronze.obsrvr.io%2Fbackfill%3Dbbf"),
        "{}",
        call.query
    );
    call.respond(200, job_list(items));
}

/// Answers the status apply and returns the applied status.
async fn apply_status(server: &mut ApiServer, b: &BronzeBackfill) -> Value {
    let call = server.expect(Method::PATCH, STATUS).await;
    assert!(
        call.query_has("fieldManager=bronze-operator"),
        "{}",
        call.query
    );
    assert!(call.query_has("force=true"), "{}", call.query);
    assert_eq!(call.body["apiVersion"], "bronze.obsrvr.io/v1alpha1");
    assert_eq!(call.body["kind"], "BronzeBackfill");
    assert!(
        call.body.get("spec").is_none(),
        "status apply must not carry the spec"
    );
    let status = call.body["status"].clone();
    call.respond(200, serde_json::to_value(b).unwrap());
    status
}

/// The condition of `type_` in a status patch (it must be there).
fn condition(status: &Value, type_: &str) -> Value {
    status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {status}"))
        .clone()
}

async fn created_job(server: &mut ApiServer, name: &str, range: &str) -> Value {
    let call = server.expect(Method::POST, JOBS).await;
    assert_eq!(call.body["metadata"]["name"], name);
    assert_eq!(call.body["metadata"]["ownerReferences"][0]["uid"], "uid-1");
    assert_eq!(
        call.body["metadata"]["ownerReferences"][0]["controller"],
        true
    );
    assert_eq!(
        call.body["spec"]["template"]["spec"]["containers"][0]["args"],
        json!(["worker", "--range", range])
    );
    let body = call.body.clone();
    call.respond(201, body.clone());
    body
}

async fn event(server: &mut ApiServer, type_: &str, reason: &str) -> Value {
    let call = server.expect(Method::POST, EVENTS).await;
    assert_eq!(
        (call.body["type"].as_str(), call.body["reason"].as_str()),
        (Some(type_), Some(reason)),
        "{}",
        call.body
    );
    assert_eq!(call.body["regarding"]["name"], "bbf");
    assert_eq!(call.body["regarding"]["kind"], "BronzeBackfill");
    let body = call.body.clone();
    call.respond(201, body.clone());
    body
}

#[tokio::test]
async fn adds_the_finalizer_before_anything_else() {
    let (client, mut server) = ApiServer::pair();
    let mut b = backfill("bbf", spec());
    b.metadata.finalizers = None;
    let ctx = context(client, MemoryDataset::default(), MemoryOutbox::default());
    let task = tokio::spawn(reconcile(Arc::new(b.clone()), ctx));
    let call = server.expect(Method::PATCH, BBF).await;
    assert_eq!(
        call.body,
        json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
        ])
    );
    call.respond(200, serde_json::to_value(&b).unwrap());
    assert_eq!(task.await.unwrap().unwrap(), Action::await_change());
    server.done().await;
}

#[tokio::test]
async fn first_reconcile_writes_status_then_creates_jobs_then_events() {
    let (client, mut server) = ApiServer::pair();
    let b = backfill("bbf", spec());
    let ctx = context(client, MemoryDataset::default(), MemoryOutbox::default());
    let task = tokio::spawn(reconcile(Arc::new(b.clone()), ctx));
    list_jobs(&mut server, vec![]).await;
    let status = apply_status(&mut server, &b).await;
    assert_eq!(status["phase"], "Running");
    assert_eq!(
        status["ingestedAt"], "2025-01-15T09:59:58.000Z",
        "the resource's creationTimestamp, not the reconcile's clock (2025-01-15T12:00:00Z)"
    );
    assert_eq!(status["runningPartitions"].as_array().unwrap().len(), 2);
    assert_eq!(status["progress"]["summary"], "0/10 (0%)");
    assert_eq!(status["observedGeneration"], 1);
    let job = created_job(&mut server, "bbf-2-11", "2-11").await;
    let env = job["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .clone();
    assert!(env.contains(&json!({"name": "INGESTED_AT", "value": "2025-01-15T09:59:58.000Z"})));
    assert_eq!(
        job["spec"]["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"],
        json!([2, 3, 4])
    );
    assert!(job["spec"].get("ttlSecondsAfterFinished").is_none());
    created_job(&mut server, "bbf-12-21", "12-21").await;
    let e = event(&mut server, "Normal", "JobsCreated").await;
    assert!(e["note"].as_str().unwrap().contains("2-11, 12-21"));
    let action = task.await.unwrap().unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(60)));
    server.done().await;
}

#[tokio::test]
async fn completed_jobs_are_sequenced_in_order_then_harvested() {
    let (client, mut server) = ApiServer::pair();
    let s = spec();
    let b = with_status(backfill("bbf", s.clone()), started());
    let dataset = MemoryDataset::default();
    for range in [r(2, 11), r(12, 21), r(32, 41)] {
        dataset.commit(manifest_for(&s, range, INGESTED));
    }
    let outbox = MemoryOutbox::default();
    let ctx = context(client, dataset, outbox.clone());
    let task = tokio::spawn(reconcile(Arc::new(b.clone()), ctx));
    list_jobs(
        &mut server,
        vec![
            job_json(&b, r(2, 11), Some(("Complete", "CompletionsReached", ""))),
            job_json(&b, r(12, 21), Some(("Complete", "CompletionsReached", ""))),
            job_json(&b, r(22, 31), None),
            job_json(&b, r(32, 41), Some(("Complete", "CompletionsReached", ""))),
        ],
    )
    .await;
    let status = apply_status(&mut server, &b).await;
    // 32-41 is committed too, but cannot be sequenced before 22-31.
    assert_eq!(status["checkpoint"]["lastCommittedLedger"], 21);
    assert_eq!(status["lastCommittedLedger"], 21);
    let events = outbox.events.lock().unwrap().clone();
    assert_eq!(events.len(), 2);
    assert_eq!(status["pas"]["eventCount"], 2);
    assert_eq!(status["pas"]["chainHead"], events[&r(12, 21)].hash.as_str());
    assert_eq!(status["progress"]["summary"], "2/10 (20%)");
    for name in ["bbf-2-11", "bbf-12-21"] {
        let call = server
            .expect(Method::PATCH, &format!("{JOBS}/{name}"))
            .await;
        assert_eq!(
            call.body,
            json!({"metadata": {"labels": {"bronze.obsrvr.io/harvested": "true"}}, "spec": {"ttlSecondsAfterFinished": 600}})
        );
        call.respond(200, job_json(&b, r(2, 11), None));
    }
    // One slot left (22-31 runs): the next range without a Job is 42-51.
    created_job(&mut server, "bbf-42-51", "42-51").await;
    event(&mut server, "Normal", "JobsCreated").await;
    let committed = event(&mut server, "Normal", "Committed").await;
    assert!(
        committed["note"]
            .as_str()
            .unwrap()
            .contains("checkpoint at ledger 21")
    );
    task.await.unwrap().unwrap();
    server.done().await;
}

#[tokio::test]
async fn suspend_creates_no_jobs_and_says_so() {
    let (client, mut server) = ApiServer::pair();
    let mut s = spec();
    s.suspend = true;
    let b = with_status(backfill("bbf", s), started());
    let ctx = context(client, MemoryDataset::default(), MemoryOutbox::default());
    let task = tokio::spawn(reconcile(Arc::new(b.clone()), ctx));
    list_jobs(&mut server, vec![job_json(&b, r(2, 11), None)]).await;
    let status = apply_status(&mut server, &b).await;
    assert_eq!(status["phase"], "Suspended");
    let suspended = condition(&status, "Suspended");
    assert_eq!(suspended["status"], "True");
    event(&mut server, "Normal", "Suspended").await;
    assert_eq!(
        task.await.unwrap().unwrap(),
        Action::requeue(Duration::from_secs(300))
    );
    server.done().await;
}

#[tokio::test]
async fn bad_input_surfaces_in_status_and_a_warning_without_retry() {
    let (client, mut server) = ApiServer::pair();
    let b = with_status(backfill("bbf", spec()), started());
    let ctx = context(client, MemoryDataset::default(), MemoryOutbox::default());
    let task = tokio::spawn(reconcile(Arc::new(b.clone()), ctx));
    let condition_message = "Container worker for pod ns/bbf-2-11-abcde failed with exit code 3 matching FailJob rule at index 0";
    list_jobs(
        &mut server,
        vec![job_json(
            &b,
            r(2, 11),
            Some(("Failed", "PodFailurePolicy", condition_message)),
        )],
    )
    .await;
    // The failed Job's Pods: the worker's termination message names the bad object.
    let why = "exit 3: bad input: object FFFFFFF4--11.xdr.zst: ledger 11: not a zstd frame";
    let call = server
        .expect(Method::GET, "/api/v1/namespaces/ns/pods")
        .await;
    assert!(
        call.query_has("labelSelector=job-name%3Dbbf-2-11"),
        "{}",
        call.query
    );
    call.respond(
        200,
        json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [{
            "metadata": {"name": "bbf-2-11-abcde", "namespace": "ns"},
            "status": {"phase": "Failed", "containerStatuses": [{
                "name": "worker", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 3, "message": why}},
            }]},
        }]}),
    );
    let message = format!("{condition_message}: {why}");
    let status = apply_status(&mut server, &b).await;
    assert_eq!(status["phase"], "Failed");
    assert_eq!(
        status["failedPartitions"],
        json!([{"range": "2-11", "job": "bbf-2-11", "reason": "BadInput", "message": message,
                "exitCode": 3, "attempts": 1, "retrying": false}])
    );
    let degraded = condition(&status, "Degraded");
    assert_eq!(
        (degraded["status"].as_str(), degraded["reason"].as_str()),
        (Some("True"), Some("PartitionFailed"))
    );
    event(&mut server, "Warning", "JobFailed").await;
    event(&mut server, "Warning", "Failed").await;
    task.await.unwrap().unwrap();
    server.done().await;
}

#[tokio::test]
async fn a_retryable_failure_deletes_the_job_for_a_new_attempt() {
    let (client, mut server) = ApiServer::pair();
    let b = with_status(backfill("bbf", spec()), started());
    let ctx = context(client, MemoryDataset::default(), MemoryOutbox::default());
    let task = tokio::spawn(reconcile(Arc::new(b.clone()), ctx));
    list_jobs(
        &mut server,
        vec![job_json(
            &b,
            r(2, 11),
            Some((
                "Failed",
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
            )),
        )],
    )
    .await;
    let status = apply_status(&mut server, &b).await;
    assert_eq!(status["failedPartitions"][0]["retrying"], true);
    assert_eq!(status["phase"], "Running");
    let call = server
        .expect(Method::DELETE, &format!("{JOBS}/bbf-2-11"))
        .await;
    assert_eq!(call.body["propagationPolicy"], "Background");
    call.respond(200, job_json(&b, r(2, 11), None));
    created_job(&mut server, "bbf-12-21", "12-21").await;
    created_job(&mut server, "bbf-22-31", "22-31").await;
    event(&mut server, "Warning", "JobFailedRetrying").await;
    event(&mut server, "Normal", "JobsCreated").await;
    task.await.unwrap().unwrap();
    server.done().await;
}

#[tokio::test]
async fn deletion_removes_the_jobs_and_never_the_data() {
    let (client, mut server) = ApiServer::pair();
    let s = spec();
    let mut b = with_status(backfill("bbf", s.clone()), started());
    b.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
    ));
    let dataset = MemoryDataset::default();
    dataset.commit(manifest_for(&s, r(2, 11), INGESTED));
    let ctx = context(client, dataset.clone(), MemoryOutbox::default());
    let task = tokio::spawn(reconcile(Arc::new(b.clone()), ctx));
    let mut foreign = job_json(&b, r(22, 31), None);
    foreign["metadata"]["ownerReferences"][0]["uid"] = json!("another-uid");
    list_all_jobs(
        &mut server,
        vec![
            job_json(&b, r(2, 11), Some(("Complete", "", ""))),
            job_json(&b, r(12, 21), None),
            foreign,
        ],
    )
    .await;
    for name in ["bbf-2-11", "bbf-12-21"] {
        let call = server
            .expect(Method::DELETE, &format!("{JOBS}/{name}"))
            .await;
        assert_eq!(call.body["propagationPolicy"], "Background");
        call.respond(200, job_json(&b, r(2, 11), None));
    }
    let e = event(&mut server, "Normal", "Deleted").await;
    assert!(e["note"].as_str().unwrap().contains("kept"));
    let call = server.expect(Method::PATCH, BBF).await;
    assert_eq!(
        call.body,
        json!([
            {"op": "test", "path": "/metadata/finalizers/0", "value": FINALIZER},
            {"op": "remove", "path": "/metadata/finalizers/0"},
        ])
    );
    call.respond(200, serde_json::to_value(&b).unwrap());
    assert_eq!(task.await.unwrap().unwrap(), Action::await_change());
    server.done().await;
    assert!(dataset.has(r(2, 11)));
}

#[tokio::test]
async fn a_lost_status_is_rebuilt_from_storage_and_jobs() {
    let (client, mut server) = ApiServer::pair();
    let s = spec();
    let b = backfill("bbf", s.clone()); // no status at all
    let dataset = MemoryDataset::default();
    for range in [r(2, 11), r(12, 21)] {
        dataset.commit(manifest_for(&s, range, INGESTED));
    }
    let outbox = MemoryOutbox::default();
    let ctx = context(client, dataset, outbox.clone());
    let task = tokio::spawn(reconcile(Arc::new(b.clone()), ctx));
    list_jobs(&mut server, vec![job_json(&b, r(22, 31), None)]).await;
    let status = apply_status(&mut server, &b).await;
    assert_eq!(
        status["ingestedAt"], INGESTED,
        "recovered from the committed partitions"
    );
    assert_eq!(status["checkpoint"]["lastCommittedLedger"], 21);
    assert_eq!(status["pas"]["eventCount"], 2);
    created_job(&mut server, "bbf-32-41", "32-41").await;
    event(&mut server, "Normal", "JobsCreated").await;
    event(&mut server, "Normal", "Committed").await;
    task.await.unwrap().unwrap();
    server.done().await;
}

#[tokio::test]
async fn a_backfill_without_a_worker_image_fails_with_reason_config() {
    let (client, mut server) = ApiServer::pair();
    let mut s = spec();
    s.worker.image = None;
    let b = backfill("bbf", s); // and the operator has no --default-worker-image
    let ctx = context(client, MemoryDataset::default(), MemoryOutbox::default());
    let task = tokio::spawn(reconcile(Arc::new(b.clone()), ctx));
    // No Jobs listed, none created: the status says why, once, with a warning.
    let status = apply_status(&mut server, &b).await;
    assert_eq!(status["phase"], "Failed");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("--default-worker-image"),
        "{status}"
    );
    let degraded = condition(&status, "Degraded");
    assert_eq!(
        (degraded["status"].as_str(), degraded["reason"].as_str()),
        (Some("True"), Some("Config"))
    );
    event(&mut server, "Warning", "Config").await;
    assert_eq!(task.await.unwrap().unwrap(), Action::await_change());
    server.done().await;
}

#[tokio::test]
async fn unreadable_storage_plans_nothing_and_says_why() {
    let (client, mut server) = ApiServer::pair();
    let b = backfill("bbf", spec()); // no ingestedAt anywhere: storage must be read
    let dataset = MemoryDataset::default();
    *dataset.unavailable.lock().unwrap() = Some("connection refused".into());
    let ctx = context(client, dataset, MemoryOutbox::default());
    let task = tokio::spawn(reconcile(Arc::new(b.clone()), ctx));
    list_jobs(&mut server, vec![]).await;
    let status = apply_status(&mut server, &b).await;
    assert_eq!(status["phase"], "Pending");
    assert!(
        status.get("ingestedAt").is_none(),
        "not guessed while storage is unreadable"
    );
    let degraded = condition(&status, "Degraded");
    assert_eq!(
        (degraded["status"].as_str(), degraded["reason"].as_str()),
        (Some("True"), Some("StorageUnavailable"))
    );
    event(&mut server, "Warning", "StorageUnavailable").await;
    assert_eq!(
        task.await.unwrap().unwrap(),
        Action::requeue(Duration::from_secs(30))
    );
    server.done().await;
}

#[tokio::test]
async fn leader_election_takes_only_a_free_or_expired_lease() {
    use crate::leader::{LeaseSettings, try_acquire};
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::jiff::Timestamp;
    const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases/bronze-operator";
    let (client, mut server) = ApiServer::pair();
    let api: Api<Lease> = Api::namespaced(client, "ops");
    let settings = LeaseSettings {
        name: "bronze-operator".into(),
        namespace: "ops".into(),
        identity: "pod-a".into(),
        lease_duration: Duration::from_secs(15),
        renew_every: Duration::from_secs(5),
    };
    let now: Timestamp = "2025-01-15T12:00:00Z".parse().unwrap();
    let lease = |holder: &str, renewed: &str| {
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
               "metadata": {"name": "bronze-operator", "namespace": "ops", "resourceVersion": "7"},
               "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                        "renewTime": renewed, "acquireTime": renewed, "leaseTransitions": 1}})
    };
    let server_task = tokio::spawn(async move {
        // 1. No lease yet: create it.
        server
            .expect(Method::GET, LEASE)
            .await
            .fail(404, "NotFound");
        let call = server
            .expect(
                Method::POST,
                "/apis/coordination.k8s.io/v1/namespaces/ops/leases",
            )
            .await;
        assert_eq!(call.body["spec"]["holderIdentity"], "pod-a");
        let body = call.body.clone();
        call.respond(201, body);
        // 2. Held by pod-b, renewed 5 s ago: wait.
        server
            .expect(Method::GET, LEASE)
            .await
            .respond(200, lease("pod-b", "2025-01-15T11:59:55Z"));
        // 3. Held by pod-b, expired: take it over (replace keeps the resourceVersion).
        server
            .expect(Method::GET, LEASE)
            .await
            .respond(200, lease("pod-b", "2025-01-15T11:59:00Z"));
        let call = server.expect(Method::PUT, LEASE).await;
        assert_eq!(call.body["metadata"]["resourceVersion"], "7");
        assert_eq!(call.body["spec"]["holderIdentity"], "pod-a");
        assert_eq!(call.body["spec"]["leaseTransitions"], 2);
        let body = call.body.clone();
        call.respond(200, body);
        server.done().await;
    });
    assert!(try_acquire(&api, &settings, now).await.unwrap());
    assert!(!try_acquire(&api, &settings, now).await.unwrap());
    assert!(try_acquire(&api, &settings, now).await.unwrap());
    server_task.await.unwrap();
}

#[test]
fn rbac_grants_exactly_the_calls_the_code_makes() {
    let text = include_str!("../../rbac.yaml");
    let mut granted = BTreeSet::new();
    for doc in text.split("\n---\n") {
        let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(doc).unwrap();
        let rules = match value["kind"].as_str() {
            Some("ClusterRole") => {
                serde_yaml_ng::from_value::<ClusterRole>(value)
                    .unwrap()
                    .rules
            }
            Some("Role") => serde_yaml_ng::from_value::<Role>(value).unwrap().rules,
            other => panic!("unexpected kind {other:?}"),
        };
        for rule in rules.unwrap_or_default() {
            for g in rule.api_groups.unwrap_or_default() {
                for r in rule.resources.clone().unwrap_or_default() {
                    for v in &rule.verbs {
                        granted.insert((g.clone(), r.clone(), v.clone()));
                    }
                }
            }
        }
    }
    let used: BTreeSet<(String, String, String)> = API_CALLS
        .iter()
        .map(|(g, r, v, _)| (g.to_string(), r.to_string(), v.to_string()))
        .collect();
    assert_eq!(
        granted, used,
        "operator/rbac.yaml differs from reconcile::API_CALLS"
    );
    assert!(
        !granted
            .iter()
            .any(|(_, r, v)| r == "secrets" || r == "*" || (r == "pods" && v != "list"))
    );
    // Every request the mock-API tests see is checked against API_CALLS as it happens (see
    // fixtures::ApiServer::next); here, the mapping itself is pinned.
    let rbac = crate::fixtures::rbac_of;
    assert_eq!(
        rbac(&Method::GET, JOBS, "&labelSelector=x"),
        ("batch".into(), "jobs".into(), "list".into())
    );
    assert_eq!(
        rbac(&Method::GET, JOBS, "watch=true"),
        ("batch".into(), "jobs".into(), "watch".into())
    );
    assert_eq!(
        rbac(&Method::PATCH, STATUS, ""),
        (
            "bronze.obsrvr.io".into(),
            "bronzebackfills/status".into(),
            "patch".into()
        )
    );
    assert_eq!(
        rbac(&Method::GET, "/api/v1/namespaces/ns/pods/p", ""),
        ("".into(), "pods".into(), "get".into())
    );
}

#[test]
fn phase_names_match_the_crd_enum() {
    let crd = serde_json::to_value(crate::crd::crd()).unwrap();
    let phases = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
        ["phase"]["enum"];
    let names: Vec<&str> = phases
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    for p in [
        Phase::Pending,
        Phase::Running,
        Phase::Following,
        Phase::Suspended,
        Phase::Succeeded,
        Phase::Failed,
    ] {
        assert!(names.contains(&p.as_str()), "{names:?}");
    }
}
