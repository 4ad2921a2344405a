//! Two operators reconciling one new backfill at once (no leader election, a hand-over, or a
//! restart in the middle of a first reconcile), made deterministic: both reconciles run in this
//! process, against the real API server, on the same stale view of the resource (no status yet:
//! what each operator's watch delivered), with clocks that straddle a second, interleaved as in
//! the CI failure of issue 24: B lists the Jobs (none yet) and decides, A then writes its status
//! and creates the Jobs, B then writes its status. Whatever each one would call "now", the Jobs
//! and the status must carry one `ingested_at`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context as TaskContext, Poll};

use bronze_operator::catalog::PgCatalogFactory;
use bronze_operator::crd::{BronzeBackfill, BronzeBackfillSpec};
use bronze_operator::job::{ANNOTATION_INGESTED_AT, WorkerDefaults};
use bronze_operator::metrics::Metrics;
use bronze_operator::pas::PasOutboxFactory;
use bronze_operator::reconcile::{Context, reconcile};
use bronze_operator::storage::ObjectStorageFactory;
use chrono::{DateTime, TimeZone, Utc};
use k8s_openapi::api::batch::v1::Job;
use kube::api::ListParams;
use kube::client::ClientBuilder;
use kube::runtime::events::{Recorder, Reporter};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::sync::Notify;

use crate::harness::TestEnv;

/// Operator A's clock: 400 ms into a second.
fn clock_a() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 7, 21, 17, 45).unwrap() + chrono::Duration::milliseconds(400)
}

/// Operator B's clock: 1 s after A's (the next second).
fn clock_b() -> DateTime<Utc> {
    clock_a() + chrono::Duration::seconds(1)
}

fn operator_context(client: &Client, identity: &str, now: fn() -> DateTime<Utc>) -> Arc<Context> {
    Arc::new(Context {
        client: client.clone(),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "bronze-operator".into(),
                instance: Some(identity.into()),
            },
        ),
        metrics: Arc::new(Metrics::default()),
        storage: Arc::new(ObjectStorageFactory::default()),
        pas: Arc::new(PasOutboxFactory::default()),
        catalog: Arc::new(PgCatalogFactory::default()),
        delta: Arc::default(),
        now,
        worker_defaults: WorkerDefaults {
            image: Some("bronze:race".into()),
            service_account: None,
        },
    })
}

/// Holds the first status write of a client until released: the point where an operator has
/// listed the Jobs and decided, but not yet written anything.
#[derive(Default)]
struct Gate {
    armed: AtomicBool,
    reached: Notify,
    release: Notify,
}

struct HoldFirstStatusWrite<S> {
    inner: S,
    gate: Arc<Gate>,
}

struct HoldLayer(Arc<Gate>);

impl<S> tower::Layer<S> for HoldLayer {
    type Service = HoldFirstStatusWrite<S>;
    fn layer(&self, inner: S) -> Self::Service {
        HoldFirstStatusWrite {
            inner,
            gate: self.0.clone(),
        }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for HoldFirstStatusWrite<S>
where
    S: tower::Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let hold = request.method() == http::Method::PATCH
            && request.uri().path().ends_with("/status")
            && self.gate.armed.swap(false, Ordering::SeqCst);
        let gate = self.gate.clone();
        let response = self.inner.call(request);
        Box::pin(async move {
            if hold {
                gate.reached.notify_one();
                gate.release.notified().await;
            }
            response.await
        })
    }
}

/// A client like the tests' own (KUBECONFIG) whose first status write waits at `gate`.
async fn held_client(gate: Arc<Gate>) -> Client {
    gate.armed.store(true, Ordering::SeqCst);
    let config = kube::Config::infer().await.expect("KUBECONFIG");
    ClientBuilder::try_from(config)
        .expect("a client stack")
        .with_layer(&HoldLayer(gate))
        .build()
}

/// A backfill over local directories (nothing to reach but the API server): the reconciles
/// under test plan Jobs; no worker runs.
fn local_spec(env: &TestEnv, ingested_at: Option<&str>) -> BronzeBackfillSpec {
    let ledgers = env.dir.path().join("ledgers");
    let lake = env.dir.path().join("lake");
    std::fs::create_dir_all(&ledgers).unwrap();
    std::fs::create_dir_all(&lake).unwrap();
    let mut spec = json!({
        "network": "pubnet",
        "eraId": "race",
        "versionLabel": "v1",
        "ledgerStart": 2,
        "ledgerEnd": 41,
        "partitionSize": 10,
        "partitionsPerJob": 1,
        "maxConcurrentJobs": 2,
        "source": {"mode": "local", "localPath": ledgers.to_str().unwrap()},
        "storage": {"backend": "local", "localDir": lake.to_str().unwrap(), "prefix": "bronze/"},
        "pas": {"enabled": false},
        "worker": {},
    });
    if let Some(at) = ingested_at {
        spec["ingestedAt"] = json!(at);
    }
    serde_json::from_value(spec).expect("a valid spec")
}

/// Creates the backfill, lets A add its finalizer, then runs A's and B's first real reconcile on
/// the same stale copy (no status), B's status write held until A has finished: returns the
/// resource after both, and the Jobs they made.
async fn two_first_reconciles(
    env: &TestEnv,
    name: &str,
    spec: BronzeBackfillSpec,
) -> (BronzeBackfill, Vec<Job>) {
    env.create(name, spec).await;
    let gate = Arc::new(Gate::default());
    let a = operator_context(&env.client, "op-a", clock_a);
    let b = operator_context(&held_client(gate.clone()).await, "op-b", clock_b);
    let api = env.backfills();
    let fresh = api.get(name).await.unwrap();
    reconcile(Arc::new(fresh), a.clone())
        .await
        .expect("A adds its finalizer");
    let stale = Arc::new(api.get(name).await.unwrap());
    assert!(
        stale.status.is_none(),
        "the view both operators share has no status yet"
    );
    let b_reconcile = tokio::spawn(reconcile(stale.clone(), b));
    // B has listed the Jobs (none yet) and decided; its status write waits.
    gate.reached.notified().await;
    reconcile(stale, a).await.expect("A's first reconcile");
    gate.release.notify_one();
    b_reconcile.await.unwrap().expect("B's first reconcile");
    let after = api.get(name).await.unwrap();
    let jobs = env
        .jobs()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|j| j.name_any().starts_with(name))
        .collect::<Vec<_>>();
    assert!(!jobs.is_empty(), "the first reconciles planned no Job");
    (after, jobs)
}

fn worker_ingested_at(job: &Job) -> (Option<String>, Option<String>) {
    let annotation = job.annotations().get(ANNOTATION_INGESTED_AT).cloned();
    let env = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.first())
        .and_then(|c| c.env.as_ref())
        .and_then(|env| env.iter().find(|e| e.name == "INGESTED_AT"))
        .and_then(|e| e.value.clone());
    (annotation, env)
}

#[tokio::test]
async fn two_operators_first_reconciles_straddling_a_second_agree_on_ingested_at() {
    let Some(env) = TestEnv::start("race").await else {
        return;
    };
    let (after, jobs) = two_first_reconciles(&env, "race", local_spec(&env, None)).await;
    let status = after.status.expect("a status");
    let fixed = status.ingested_at.expect("status.ingestedAt");
    // One instant for the life of the backfill, seen identically by every operator: the
    // resource's creation, in the one canonical spelling (RFC 3339, milliseconds, Z).
    let created = after
        .metadata
        .creation_timestamp
        .expect("creationTimestamp")
        .0;
    let canonical = DateTime::<Utc>::from_timestamp_millis(created.as_millisecond())
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    for job in &jobs {
        let (annotation, env_value) = worker_ingested_at(job);
        assert_eq!(
            annotation.as_deref(),
            Some(fixed.as_str()),
            "Job {} was created with another ingested_at than the status holds",
            job.name_any()
        );
        assert_eq!(
            env_value.as_deref(),
            Some(fixed.as_str()),
            "Job {} env",
            job.name_any()
        );
    }
    assert_eq!(
        fixed, canonical,
        "status.ingestedAt is not the creation time"
    );
}

#[tokio::test]
async fn a_user_ingested_at_is_written_in_the_canonical_spelling_everywhere() {
    let Some(env) = TestEnv::start("spelling").await else {
        return;
    };
    let spec = local_spec(&env, Some("2026-12-07T22:17:45+01:00"));
    let (after, jobs) = two_first_reconciles(&env, "spelling", spec).await;
    let fixed = after.status.and_then(|s| s.ingested_at);
    assert_eq!(fixed.as_deref(), Some("2026-12-07T21:17:45.000Z"));
    for job in &jobs {
        let (annotation, env_value) = worker_ingested_at(job);
        assert_eq!(annotation.as_deref(), Some("2026-12-07T21:17:45.000Z"));
        assert_eq!(env_value.as_deref(), Some("2026-12-07T21:17:45.000Z"));
    }
}
