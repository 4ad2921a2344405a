//! Thin Kubernetes I/O around [`crate::plan`]: observe the Jobs, sequence what storage holds
//! ([`crate::sequencer`]), plan, then act in a fixed order:
//!
//! 1. status, once, by server-side apply (one field manager, forced): it records failures and
//!    attempt counts before any Job that carries them is deleted;
//! 2. Job deletions (retries, out-of-range), harvest patches, creations;
//! 3. Events.
//!
//! Every step is idempotent, so a crash anywhere is repaired by the next reconcile. Deleting a
//! `BronzeBackfill` runs [`cleanup`] behind a finalizer: it removes the Jobs, never any data.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;

use crate::crd::BronzeBackfill;
use crate::job::{
    LABEL_JOB_NAME, WorkerDefaults, build_job, harvest_patch, observe, selector, termination_reason,
};
use crate::metrics::Metrics;
use crate::plan::{
    JobState, ObservedJob, PlanInput, hole_window, misconfigured, plan, storage_down,
};
use crate::sequencer::{
    CatalogFactory, PasFactory, SequenceStart, resolve_ingested_at, sequence_with_table,
};
use crate::storage::StorageFactory;

pub const FINALIZER: &str = "bronze.obsrvr.io/jobs";
/// The one field manager for everything the operator applies.
pub const FIELD_MANAGER: &str = "bronze-operator";
/// Partitions sequenced per reconcile at most, so one reconcile stays short even when a lost
/// status is rebuilt from thousands of committed partitions.
pub const MAX_SEQUENCED_PER_RECONCILE: usize = 256;

/// Every Kubernetes API call the operator makes: `(api group, resource, verb, where)`.
/// `operator/rbac.yaml` must grant exactly these (a test compares them, and the mock-API tests
/// check every request they see against this table).
pub const API_CALLS: &[(&str, &str, &str, &str)] = &[
    (
        "bronze.obsrvr.io",
        "bronzebackfills",
        "list",
        "controller watch",
    ),
    (
        "bronze.obsrvr.io",
        "bronzebackfills",
        "watch",
        "controller watch",
    ),
    (
        "bronze.obsrvr.io",
        "bronzebackfills",
        "patch",
        "finalizer add/remove",
    ),
    (
        "bronze.obsrvr.io",
        "bronzebackfills/status",
        "patch",
        "status server-side apply",
    ),
    ("batch", "jobs", "list", "observe Jobs; controller watch"),
    (
        "",
        "pods",
        "list",
        "a finally failed Job's Pods: the worker's termination message (e.g. the bad object's key)",
    ),
    ("batch", "jobs", "watch", "controller watch"),
    ("batch", "jobs", "create", "one Job per range"),
    (
        "batch",
        "jobs",
        "patch",
        "harvest: label + ttlSecondsAfterFinished",
    ),
    (
        "batch",
        "jobs",
        "delete",
        "retries, out-of-range Jobs, cleanup",
    ),
    ("events.k8s.io", "events", "create", "Events"),
    ("events.k8s.io", "events", "patch", "Event series"),
    ("coordination.k8s.io", "leases", "get", "leader election"),
    ("coordination.k8s.io", "leases", "create", "leader election"),
    ("coordination.k8s.io", "leases", "update", "leader election"),
];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(String),
    #[error("resource has no {0}")]
    Incomplete(&'static str),
}

impl Error {
    /// A short label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Finalizer(_) => "finalizer",
            Error::Incomplete(_) => "incomplete",
        }
    }
}

/// Shared by every reconcile.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub storage: Arc<dyn StorageFactory>,
    pub pas: Arc<dyn PasFactory>,
    pub catalog: Arc<dyn CatalogFactory>,
    /// The Delta logs (`spec.storage.tableFormat: delta`).
    pub delta: Arc<crate::delta::DeltaLogs>,
    /// The clock (fixed in tests).
    pub now: fn() -> DateTime<Utc>,
    /// `spec.worker` defaults from the operator's flags.
    pub worker_defaults: WorkerDefaults,
}

/// Reconciles one `BronzeBackfill`.
pub async fn reconcile(backfill: Arc<BronzeBackfill>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let ns = backfill.namespace().ok_or(Error::Incomplete("namespace"))?;
    let api: Api<BronzeBackfill> = Api::namespaced(ctx.client.clone(), &ns);
    let result = finalizer(&api, FINALIZER, backfill, |event| async {
        match event {
            Finalizer::Apply(b) => apply(b, &ctx).await,
            Finalizer::Cleanup(b) => cleanup(b, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    });
    ctx.metrics
        .reconciled(started.elapsed(), result.as_ref().err());
    result
}

/// How long to wait after a failed reconcile.
pub fn error_policy(backfill: Arc<BronzeBackfill>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(backfill = %backfill.name_any(), error = %error, "reconcile failed");
    Action::requeue(Duration::from_secs(15))
}

/// Which Jobs of a backfill to list.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Listed {
    /// All but the harvested ones: planning never needs those (their partitions are sequenced,
    /// and the planner already copes with the TTL controller deleting them at any time), and
    /// listing them made every reconcile cost grow with the finished Jobs kept
    /// (`ttlSecondsAfterHarvest`, an hour by default; docs/scaling.md).
    Unharvested,
    /// Every Job, harvested ones included (cleanup deletes them all).
    All,
}

async fn list_jobs(
    backfill: &BronzeBackfill,
    jobs: &Api<Job>,
    which: Listed,
) -> Result<Vec<Job>, Error> {
    let uid = backfill.meta().uid.clone();
    let mut labels = selector(&backfill.name_any());
    if which == Listed::Unharvested {
        labels.push_str(&format!(",{}!=true", crate::job::LABEL_HARVESTED));
    }
    let list = jobs.list(&ListParams::default().labels(&labels)).await?;
    // The label can collide (shortened names); the owner reference cannot.
    Ok(list
        .items
        .into_iter()
        .filter(|j| {
            j.owner_references()
                .iter()
                .any(|o| o.controller == Some(true) && Some(&o.uid) == uid.as_ref())
        })
        .collect())
}

async fn apply(backfill: Arc<BronzeBackfill>, ctx: &Context) -> Result<Action, Error> {
    let name = backfill.name_any();
    let ns = backfill.namespace().ok_or(Error::Incomplete("namespace"))?;
    let key = format!("{ns}/{name}");
    let now = (ctx.now)();
    let backfill = match ctx.worker_defaults.apply(&backfill) {
        Ok(resolved) => resolved,
        Err(problem) => return misconfigured_backfill(ctx, &backfill, &problem, now).await,
    };
    let spec = &backfill.spec;
    let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let jobs: Vec<ObservedJob> = list_jobs(&backfill, &jobs_api, Listed::Unharvested)
        .await?
        .iter()
        .filter_map(observe)
        .collect();
    let jobs = explain_failures(jobs, backfill.status.as_ref(), &ctx.client, &ns).await;

    let status = backfill.status.as_ref();
    let created = backfill
        .meta()
        .creation_timestamp
        .as_ref()
        .and_then(|t| DateTime::<Utc>::from_timestamp_millis(t.0.as_millisecond()))
        .ok_or(Error::Incomplete("metadata.creationTimestamp"))?;
    let opened = match ctx.storage.dataset(&key, spec) {
        Ok(store) => resolve_ingested_at(spec, status, &jobs, store.as_ref(), created)
            .await
            .map(|at| (store, at)),
        Err(e) => Err(e),
    };
    let (store, ingested_at) = match opened {
        Ok(opened) => opened,
        Err(e) => return storage_unavailable(ctx, &backfill, &e.message, now).await,
    };
    let (tip_source, mut tip, mut trouble) = datastore_tip(ctx, &key, spec).await;
    let pas = ctx.pas.open(&key, spec);
    let catalog = ctx.catalog.open(&key, spec);
    let start = SequenceStart::from_status(status);
    let checkpoint = start.checkpoint.as_ref().map(|c| c.last_committed_ledger);
    let (delta, delta_trouble) = open_delta_log(ctx, &key, spec, checkpoint).await;
    trouble = delta_trouble.or(trouble);
    let table = delta
        .as_deref()
        .map(|d| d as &dyn bronze::sequence::TableLog);
    let mut sequenced = sequence_with_table(
        spec,
        &ingested_at,
        start,
        store.as_ref(),
        table,
        pas.as_deref(),
        catalog.as_deref(),
        MAX_SEQUENCED_PER_RECONCILE,
    )
    .await;
    crate::sequencer::replace_rebuilt(
        spec,
        &ingested_at,
        status,
        &mut sequenced,
        store.as_ref(),
        table,
        pas.as_deref(),
        catalog.as_deref(),
        MAX_SEQUENCED_PER_RECONCILE,
    )
    .await;
    // Follow mode: objects may arrive out of order; plan only below the first missing one.
    let checkpoint = sequenced
        .checkpoint
        .as_ref()
        .map(|c| c.last_committed_ledger);
    let window = tip.and_then(|tip| hole_window(spec, checkpoint, tip));
    let hole = match (&tip_source, window) {
        (Some(source), Some((first, last))) => match source.first_missing(first, last).await {
            Ok(hole) => hole,
            Err(e) => {
                // Unknown gaps: plan nothing new rather than a Job over a possible hole.
                (trouble, tip) = (Some(format!("datastore listing: {e}")), None);
                None
            }
        },
        _ => None,
    };
    if sequenced.trouble.is_none() {
        sequenced.trouble = trouble;
    }
    let plan = plan(&PlanInput {
        name: &name,
        spec,
        generation: backfill.meta().generation,
        previous: status,
        ingested_at: &ingested_at,
        sequenced: &sequenced,
        jobs: &jobs,
        tip,
        hole: hole.as_ref(),
        now,
    });

    // 1. Status, once, and only when it changed: an unchanged status is not written, so an
    // idle backfill costs one reconcile per requeue and no write.
    if status != Some(&plan.status) {
        write_status(ctx, &ns, &name, &plan.status).await?;
    }

    // 2. Jobs.
    act_on_jobs(ctx, &jobs_api, &backfill, &plan, &ingested_at).await?;

    // 3. Events (best effort: a lost Event must not fail the reconcile).
    for note in &plan.events {
        let type_ = if note.warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        publish(
            ctx,
            &backfill,
            type_,
            note.reason,
            &note.message,
            "Reconcile",
        )
        .await;
    }
    reconciled(ctx, &key, &plan, sequenced.newly.len());
    Ok(Action::requeue(plan.requeue))
}

/// The end of a reconcile: its metrics and its one log line.
fn reconciled(ctx: &Context, key: &str, plan: &crate::plan::Plan, sequenced: usize) {
    ctx.metrics.observe_status(key, &plan.status, sequenced);
    tracing::info!(
        backfill = %key,
        phase = ?plan.status.phase,
        checkpoint = ?plan.status.last_committed_ledger,
        sequenced,
        created = plan.create.len(),
        deleted = plan.delete.len(),
        harvested = plan.harvest.len(),
        "reconciled"
    );
}

/// Nothing can run (no worker image anywhere): says so once, in the status and a Warning, and
/// waits for the spec to change.
async fn misconfigured_backfill(
    ctx: &Context,
    backfill: &BronzeBackfill,
    problem: &str,
    now: DateTime<Utc>,
) -> Result<Action, Error> {
    let ns = backfill.namespace().ok_or(Error::Incomplete("namespace"))?;
    let status = backfill.status.as_ref();
    let failed = misconfigured(status, backfill.meta().generation, problem, now);
    let known = status.and_then(|s| s.message.as_ref()) == failed.message.as_ref();
    if status != Some(&failed) {
        write_status(ctx, &ns, &backfill.name_any(), &failed).await?;
    }
    if !known {
        let reason = crate::plan::reason::CONFIG;
        publish(
            ctx,
            backfill,
            EventType::Warning,
            reason,
            problem,
            "Reconcile",
        )
        .await;
    }
    Ok(Action::await_change())
}

/// Storage cannot be read: nothing can be planned safely. Says so in the status (when it changed)
/// and in a Warning, and tries again in 30 s.
async fn storage_unavailable(
    ctx: &Context,
    backfill: &BronzeBackfill,
    message: &str,
    now: DateTime<Utc>,
) -> Result<Action, Error> {
    let ns = backfill.namespace().ok_or(Error::Incomplete("namespace"))?;
    let status = backfill.status.as_ref();
    let down = storage_down(status, backfill.meta().generation, message, now);
    if status != Some(&down) {
        write_status(ctx, &ns, &backfill.name_any(), &down).await?;
    }
    let reason = crate::plan::reason::STORAGE_UNAVAILABLE;
    publish(
        ctx,
        backfill,
        EventType::Warning,
        reason,
        message,
        "Reconcile",
    )
    .await;
    Ok(Action::requeue(Duration::from_secs(30)))
}

/// `spec.storage.tableFormat: delta`: the backfill's Delta log, caught up with the manifests the
/// checkpoint has passed, and what went wrong (the engine retries a failed catch-up before its
/// next append: nothing is appended out of order).
async fn open_delta_log(
    ctx: &Context,
    key: &str,
    spec: &crate::crd::BronzeBackfillSpec,
    checkpoint: Option<u32>,
) -> (Option<Arc<bronze::delta::DeltaSink>>, Option<String>) {
    let delta = match ctx.delta.open(key, spec) {
        Ok(delta) => delta,
        Err(e) => return (None, Some(format!("delta log: {e}"))),
    };
    let Some(sink) = &delta else {
        return (None, None);
    };
    match crate::delta::catch_up(sink, checkpoint).await {
        Ok(0) => (delta, None),
        Ok(added) => {
            tracing::info!(backfill = %key, added, "delta: log caught up with the manifests");
            (delta, None)
        }
        Err(e) => (delta, Some(format!("delta log: {e}"))),
    }
}

/// Follow mode: the datastore's tip source and newest ledger, and what went wrong finding them
/// (planning then creates nothing past the checkpoint). `(None, None, None)` for a bounded run.
async fn datastore_tip(
    ctx: &Context,
    key: &str,
    spec: &crate::crd::BronzeBackfillSpec,
) -> (
    Option<Arc<dyn crate::sequencer::TipSource>>,
    Option<u32>,
    Option<String>,
) {
    if !spec.follows_tip() {
        return (None, None, None);
    }
    let source = match ctx.storage.tip(key, spec).await {
        Ok(source) => source,
        Err(e) => return (None, None, Some(format!("datastore tip: {e}"))),
    };
    match source.latest_ledger().await {
        Ok(tip) => (Some(source), tip, None),
        Err(e) => (None, None, Some(format!("datastore tip: {e}"))),
    }
}

/// Carries out a plan's Job changes: deletions, harvest labels (with their TTL), creations. A
/// Job already gone (404) or already created by an earlier reconcile (409) is not an error.
async fn act_on_jobs(
    ctx: &Context,
    jobs_api: &Api<Job>,
    backfill: &BronzeBackfill,
    plan: &crate::plan::Plan,
    ingested_at: &str,
) -> Result<(), Error> {
    let background = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..Default::default()
    };
    for job in &plan.delete {
        match jobs_api.delete(job, &background).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    let ttl = harvest_patch(backfill.spec.worker.ttl_seconds_after_harvest);
    for job in &plan.harvest {
        match jobs_api
            .patch(job, &PatchParams::default(), &Patch::Merge(&ttl))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    for request in &plan.create {
        let job = build_job(backfill, request, ingested_at);
        match jobs_api.create(&PostParams::default(), &job).await {
            Ok(_) => ctx.metrics.job_created(),
            // Created by an earlier reconcile whose watch event has not arrived yet.
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Adds the worker's own words (its termination message: the object key, ledger and field of
/// bad input) to the failure of each Job that failed for good; the Job's condition only says
/// which exit code matched. Read once per Job: a failure already in the status keeps its
/// message. Best effort: without the Pods the condition's message stays.
async fn explain_failures(
    mut jobs: Vec<ObservedJob>,
    status: Option<&crate::crd::BronzeBackfillStatus>,
    client: &Client,
    ns: &str,
) -> Vec<ObservedJob> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    for job in &mut jobs {
        let JobState::Failed(failure) = &mut job.state else {
            continue;
        };
        if failure.retryable() {
            continue;
        }
        let known = status
            .into_iter()
            .flat_map(|s| &s.failed_partitions)
            .find(|f| f.job == job.name && f.message.starts_with(&failure.message));
        if let Some(known) = known {
            failure.message = known.message.clone();
            continue;
        }
        let selector = format!("{LABEL_JOB_NAME}={}", job.name);
        match pods.list(&ListParams::default().labels(&selector)).await {
            Ok(list) => {
                if let Some(reason) = termination_reason(&list.items) {
                    failure.message = format!("{}: {reason}", failure.message);
                }
            }
            Err(e) => {
                tracing::warn!(job = %job.name, error = %e, "cannot read the failed Job's Pods")
            }
        }
    }
    jobs
}

/// Writes the whole status by server-side apply (one field manager, forced).
/// Publishes an Event about `backfill`, best effort: a lost Event is logged and must not fail
/// the reconcile. The note is cut to the API's 1 KiB limit.
async fn publish(
    ctx: &Context,
    backfill: &BronzeBackfill,
    type_: EventType,
    reason: &str,
    note: &str,
    action: &str,
) {
    let event = KubeEvent {
        type_,
        reason: reason.into(),
        note: Some(note.chars().take(1000).collect()),
        action: action.into(),
        secondary: None,
    };
    if let Err(e) = ctx
        .recorder
        .publish(&event, &backfill.object_ref(&()))
        .await
    {
        let key = format!(
            "{}/{}",
            backfill.namespace().unwrap_or_default(),
            backfill.name_any()
        );
        tracing::warn!(backfill = %key, error = %e, "cannot publish event");
    }
}

async fn write_status(
    ctx: &Context,
    ns: &str,
    name: &str,
    status: &crate::crd::BronzeBackfillStatus,
) -> Result<(), Error> {
    let api: Api<BronzeBackfill> = Api::namespaced(ctx.client.clone(), ns);
    let body = json!({
        "apiVersion": BronzeBackfill::api_version(&()),
        "kind": BronzeBackfill::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    Ok(())
}

/// Deleting a backfill: remove its Jobs (their Pods go with them). Data is never touched.
async fn cleanup(backfill: Arc<BronzeBackfill>, ctx: &Context) -> Result<Action, Error> {
    let ns = backfill.namespace().ok_or(Error::Incomplete("namespace"))?;
    let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let background = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..Default::default()
    };
    let jobs = list_jobs(&backfill, &jobs_api, Listed::All).await?;
    for job in &jobs {
        match jobs_api.delete(&job.name_any(), &background).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    let note = format!(
        "deleted {} Job(s); the committed partitions in storage are kept",
        jobs.len()
    );
    publish(
        ctx,
        &backfill,
        EventType::Normal,
        "Deleted",
        &note,
        "Cleanup",
    )
    .await;
    let key = format!("{ns}/{}", backfill.name_any());
    ctx.pas.forget(&key);
    ctx.catalog.forget(&key);
    ctx.delta.forget(&key);
    ctx.metrics.forget(&key);
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests;
