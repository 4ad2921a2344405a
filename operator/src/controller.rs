//! The controller's watches: `BronzeBackfill`s and the Jobs they own. One builder, used by the
//! binary and the cluster tests alike, so the tests measure what runs in production.

use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::runtime::{Controller, watcher};

use crate::crd::BronzeBackfill;

/// Label every worker Job carries; the Job watch sees only those.
pub const JOB_WATCH_LABEL: &str = "app.kubernetes.io/managed-by=bronze-operator";

/// The controller over `backfills` and the Jobs in `jobs`.
pub fn controller(backfills: Api<BronzeBackfill>, jobs: Api<Job>) -> Controller<BronzeBackfill> {
    Controller::new(backfills, watcher::Config::default())
        .owns(jobs, watcher::Config::default().labels(JOB_WATCH_LABEL))
}
