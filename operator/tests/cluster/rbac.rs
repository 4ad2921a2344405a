//! Least privilege for real: the chart's Roles (rendered by the Helm engine) grant exactly the
//! calls the operator makes, and every one of them is needed. For each verb of each rule in
//! turn, the Role is applied without it and the call the operator makes for it, made with a
//! TokenRequest token of the chart's ServiceAccount, is refused (403); with the whole Role, every
//! call is allowed. (The other cluster tests run the operator itself with that token, so the
//! whole Role is also enough.) One case runs the operator with a reduced Role to show that it
//! then cannot do its job.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bronze_operator::crd::BronzeBackfill;
use bronze_operator::reconcile::{API_CALLS, FIELD_MANAGER};
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::harness::*;

/// `(api group, resource, verb)`
type Call = (String, String, String);

/// Every (group, resource, verb) a rule of `role` grants, with the rule's index.
fn grants(role: &Value) -> Vec<(usize, Call)> {
    let mut out = Vec::new();
    for (i, rule) in role["rules"].as_array().unwrap().iter().enumerate() {
        for group in rule["apiGroups"].as_array().unwrap() {
            for resource in rule["resources"].as_array().unwrap() {
                for verb in rule["verbs"].as_array().unwrap() {
                    out.push((
                        i,
                        (
                            group.as_str().unwrap().into(),
                            resource.as_str().unwrap().into(),
                            verb.as_str().unwrap().into(),
                        ),
                    ));
                }
            }
        }
    }
    out
}

/// `role` without `verb` in rule `index` (the rule goes when it has no verb left).
fn without(role: &Value, index: usize, verb: &str) -> Value {
    let mut role = role.clone();
    let rules = role["rules"].as_array_mut().unwrap();
    let verbs = rules[index]["verbs"].as_array_mut().unwrap();
    verbs.retain(|v| v != verb);
    if verbs.is_empty() {
        rules.remove(index);
    }
    role
}

/// Objects the calls act on, created as admin.
async fn fixtures(env: &TestEnv) {
    let spec = env.spec(11, json!({"suspend": true}));
    env.create("probe", spec).await;
    let jobs: Api<Job> = env.jobs();
    jobs.create(&PostParams::default(), &probe_job("probe-job"))
        .await
        .unwrap();
    let events: Api<Event> = Api::namespaced(env.client.clone(), &env.ns);
    events
        .create(&PostParams::default(), &probe_event(&env.ns, "probe-event"))
        .await
        .unwrap();
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), &env.ns);
    leases
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": RELEASE}, "spec": {}})).unwrap(),
        )
        .await
        .unwrap();
}

fn probe_job(name: &str) -> Job {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "suspend": true,
            "template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "worker", "image": WORKER_IMAGE}]}},
        },
    }))
    .unwrap()
}

fn probe_event(ns: &str, name: &str) -> Event {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns},
        "eventTime": micro_now(),
        "reportingController": FIELD_MANAGER,
        "reportingInstance": "probe",
        "action": "Reconcile",
        "reason": "Probe",
        "type": "Normal",
        "note": "probe",
        "regarding": {"apiVersion": "bronze.obsrvr.io/v1alpha1", "kind": "BronzeBackfill",
                      "namespace": ns, "name": "probe"},
    }))
    .unwrap()
}

/// Makes the call the operator makes for `call`, as `client` (dry run where it would change
/// something). `Ok` when allowed; the API error otherwise.
async fn make(admin: &Client, client: &Client, ns: &str, call: &Call) -> Result<(), kube::Error> {
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let dry_patch = PatchParams {
        dry_run: true,
        ..Default::default()
    };
    let dry_delete = DeleteParams {
        dry_run: true,
        ..Default::default()
    };
    let backfills: Api<BronzeBackfill> = Api::namespaced(client.clone(), ns);
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let leases: Api<Lease> = Api::namespaced(client.clone(), ns);
    let watch = WatchParams::default().timeout(1);
    match (call.0.as_str(), call.1.as_str(), call.2.as_str()) {
        ("bronze.obsrvr.io", "bronzebackfills", "list") => {
            backfills.list(&ListParams::default()).await.map(drop)
        }
        ("bronze.obsrvr.io", "bronzebackfills", "watch") => {
            first_watch_item(backfills.watch(&watch, "0").await).await
        }
        ("bronze.obsrvr.io", "bronzebackfills", "patch") => backfills
            .patch(
                "probe",
                &dry_patch,
                &Patch::Merge(json!({"metadata": {"finalizers": ["bronze.obsrvr.io/jobs"]}})),
            )
            .await
            .map(drop),
        ("bronze.obsrvr.io", "bronzebackfills/status", "patch") => {
            let body = json!({"apiVersion": "bronze.obsrvr.io/v1alpha1", "kind": "BronzeBackfill",
                              "status": {"message": "probe"}});
            let mut params = PatchParams::apply(FIELD_MANAGER).force();
            params.dry_run = true;
            backfills
                .patch_status("probe", &params, &Patch::Apply(body))
                .await
                .map(drop)
        }
        ("batch", "jobs", "list") => jobs.list(&ListParams::default()).await.map(drop),
        ("", "pods", "list") => {
            let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), ns);
            pods.list(&ListParams::default().labels("job-name=probe-job"))
                .await
                .map(drop)
        }
        ("batch", "jobs", "watch") => first_watch_item(jobs.watch(&watch, "0").await).await,
        ("batch", "jobs", "create") => jobs.create(&dry, &probe_job("probe-new")).await.map(drop),
        ("batch", "jobs", "patch") => jobs
            .patch(
                "probe-job",
                &dry_patch,
                &Patch::Merge(json!({"spec": {"ttlSecondsAfterFinished": 60}})),
            )
            .await
            .map(drop),
        ("batch", "jobs", "delete") => jobs.delete("probe-job", &dry_delete).await.map(drop),
        ("events.k8s.io", "events", "create") => events
            .create(&dry, &probe_event(ns, "probe-new"))
            .await
            .map(drop),
        ("events.k8s.io", "events", "patch") => events
            .patch(
                "probe-event",
                &dry_patch,
                &Patch::Merge(json!({"series": {"count": 2,
                    "lastObservedTime": micro_now()}})),
            )
            .await
            .map(drop),
        ("coordination.k8s.io", "leases", "get") => leases.get(RELEASE).await.map(drop),
        ("coordination.k8s.io", "leases", "create") => {
            let lease: Lease =
                serde_json::from_value(json!({"metadata": {"name": "probe-new"}, "spec": {}}))
                    .unwrap();
            leases.create(&dry, &lease).await.map(drop)
        }
        ("coordination.k8s.io", "leases", "update") => {
            // The resourceVersion read as admin, so that only the update itself is probed.
            let current = Api::<Lease>::namespaced(admin.clone(), ns)
                .get(RELEASE)
                .await
                .unwrap();
            let lease: Lease = serde_json::from_value(json!({
                "metadata": {"name": RELEASE, "resourceVersion": current.metadata.resource_version},
                "spec": {"holderIdentity": "probe", "leaseDurationSeconds": 15},
            }))
            .unwrap();
            leases.replace(RELEASE, &dry, &lease).await.map(drop)
        }
        other => panic!("no probe for {other:?}: add the call the operator makes"),
    }
}

async fn first_watch_item<S, K>(stream: Result<S, kube::Error>) -> Result<(), kube::Error>
where
    S: futures::Stream<Item = Result<K, kube::Error>>,
{
    let stream = stream?;
    futures::pin_mut!(stream);
    match stream.next().await {
        Some(Err(e)) => Err(e),
        _ => Ok(()),
    }
}

fn forbidden(result: &Result<(), kube::Error>) -> bool {
    matches!(result, Err(kube::Error::Api(e)) if e.code == 403)
}

/// Polls `call` until it is refused (`refused`) or allowed: RBAC changes reach the
/// authorizer's cache within moments, not at once.
async fn until(
    admin: &Client,
    client: &Client,
    ns: &str,
    call: &Call,
    refused: bool,
) -> Result<(), kube::Error> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let result = make(admin, client, ns, call).await;
        if forbidden(&result) == refused || Instant::now() > deadline {
            return result;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn every_rule_of_the_charts_rbac_is_needed_and_together_they_suffice() {
    let Some(env) = TestEnv::start("rbac").await else {
        return;
    };
    fixtures(&env).await;
    let roles: Vec<Value> = env.chart_objects("Role").into_iter().cloned().collect();
    assert_eq!(
        roles.len(),
        2,
        "the operator's Role and its leader-election Role"
    );
    let sa = env.operator_service_account();
    let client = env.client_for(&sa).await;
    let ns = env.ns.clone();

    // What the chart grants is exactly what the operator calls.
    let granted: BTreeSet<Call> = roles
        .iter()
        .flat_map(|r| grants(r).into_iter().map(|(_, c)| c))
        .collect();
    let calls: BTreeSet<Call> = API_CALLS
        .iter()
        .map(|(g, r, v, _)| (g.to_string(), r.to_string(), v.to_string()))
        .collect();
    assert_eq!(granted, calls);

    // With the whole chart, every call is allowed.
    for call in &calls {
        let result = until(&env.client, &client, &ns, call, false).await;
        assert!(result.is_ok(), "{call:?} with the chart's RBAC: {result:?}");
    }
    // Without any one verb of any rule, its call is refused and the others still pass.
    for role in &roles {
        for (index, call) in grants(role) {
            env.apply(&without(role, index, &call.2)).await;
            let result = until(&env.client, &client, &ns, &call, true).await;
            assert!(
                forbidden(&result),
                "{call:?} still allowed without it: {result:?}"
            );
            env.apply(role).await;
            let result = until(&env.client, &client, &ns, &call, false).await;
            assert!(result.is_ok(), "{call:?} after restoring: {result:?}");
        }
    }
    say(&format!(
        "rbac: {} calls, each refused without its rule",
        calls.len()
    ));
}

#[tokio::test]
async fn without_jobs_create_the_operator_cannot_start_a_backfill() {
    let Some(env) = TestEnv::start("rbacop").await else {
        return;
    };
    let role = env
        .chart_objects("Role")
        .into_iter()
        .find(|r| grants(r).iter().any(|(_, c)| c.1 == "jobs"))
        .unwrap()
        .clone();
    let (index, _) = grants(&role)
        .into_iter()
        .find(|(_, c)| c.1 == "jobs" && c.2 == "create")
        .unwrap();
    env.apply(&without(&role, index, "create")).await;
    let ds = env.datastore(10);
    env.upload(&ds, None);
    let operator = env.operator(OperatorOptions::named("op-a")).await;
    env.create("rbacop", env.spec(11, json!({}))).await;
    // The operator reconciles (status written), but its Job creation is refused.
    eventually("the create refused", Duration::from_secs(60), || async {
        operator.log_text().contains("forbidden")
    })
    .await;
    assert!(env.job_names().await.is_empty());
    // Given the rule back, it proceeds (its error requeue is 15 s).
    env.apply(&role).await;
    env.wait("rbacop", "a Job running", Duration::from_secs(60), |s| {
        s.last_committed_ledger.is_some() || !s.running_partitions.is_empty()
    })
    .await;
}

/// Now as a Kubernetes MicroTime (microseconds, `Z`).
fn micro_now() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}
