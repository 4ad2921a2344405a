//! The controller's watches: `BronzeBackfill`s and the Jobs they own. One builder, used by the
//! binary and the cluster tests alike, so the tests measure what runs in production.
//!
//! A backfill wakes the controller only when its spec (`metadata.generation`, which deletion
//! also bumps) or its finalizers change, never for a status-only update: the operator's own
//! status writes would otherwise wake it again. Time-driven work (polling the datastore tip,
//! re-checking storage) comes from the requeue each reconcile asks for; Job changes come from
//! the Job watch.

use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::runtime::{Controller, Predicate, WatchStreamExt, predicates, reflector, watcher};

use crate::crd::BronzeBackfill;

/// Label every worker Job carries; the Job watch sees only those.
pub const JOB_WATCH_LABEL: &str = "app.kubernetes.io/managed-by=bronze-operator";

/// The controller over `backfills` and the Jobs in `jobs`.
pub fn controller(backfills: Api<BronzeBackfill>, jobs: Api<Job>) -> Controller<BronzeBackfill> {
    let (reader, writer) = reflector::store();
    let changes = watcher(backfills, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(
            predicates::generation.combine(predicates::finalizers),
            Default::default(),
        );
    Controller::for_stream(changes, reader)
        .owns(jobs, watcher::Config::default().labels(JOB_WATCH_LABEL))
}
