//! Optional leader election with a `coordination.k8s.io/v1` Lease, for running more than one
//! replica. Only the leader reconciles. Correctness never depends on it (sequencing is fenced by
//! the PAS outbox and all writes are idempotent); it only avoids duplicate work.
//!
//! The Lease is taken when it is free, ours, or expired (`renewTime + leaseDurationSeconds` in
//! the past), with an optimistic-concurrency `replace` (the resourceVersion decides between two
//! candidates). A leader that cannot renew within the lease duration stops.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::PostParams;
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug)]
pub struct LeaseSettings {
    pub name: String,
    pub namespace: String,
    /// This replica (the Pod name).
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_every: Duration,
}

/// Tries once to take or renew the Lease at time `now`. `Ok(false)`: someone else holds it.
pub async fn try_acquire(
    api: &Api<Lease>,
    s: &LeaseSettings,
    now: Timestamp,
) -> Result<bool, kube::Error> {
    let duration = i32::try_from(s.lease_duration.as_secs()).unwrap_or(i32::MAX);
    let fresh = |transitions: i32, acquired: Option<MicroTime>| LeaseSpec {
        holder_identity: Some(s.identity.clone()),
        lease_duration_seconds: Some(duration),
        acquire_time: acquired.or(Some(MicroTime(now))),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(transitions),
        ..Default::default()
    };
    let Some(mut lease) = api.get_opt(&s.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(s.name.clone()),
                namespace: Some(s.namespace.clone()),
                ..Default::default()
            },
            spec: Some(fresh(0, None)),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let ours = spec.holder_identity.as_deref() == Some(s.identity.as_str());
    let expired = match (spec.renew_time, spec.lease_duration_seconds) {
        (Some(MicroTime(renewed)), Some(secs)) => {
            renewed + SignedDuration::from_secs(i64::from(secs)) < now
        }
        _ => true,
    };
    if !ours && !expired && spec.holder_identity.is_some() {
        return Ok(false);
    }
    let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!ours);
    let acquired = if ours { spec.acquire_time } else { None };
    lease.spec = Some(fresh(transitions, acquired));
    match api.replace(&s.name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Waits until this replica holds the Lease (or `cancel` fires: returns false). After every
/// attempt `api_answered` says whether the API server answered (the Lease was read, taken or
/// found held by another replica): a standby that keeps reaching the API is healthy and ready.
pub async fn acquire(
    client: Client,
    s: &LeaseSettings,
    cancel: &CancellationToken,
    api_answered: impl Fn(bool),
) -> bool {
    let api: Api<Lease> = Api::namespaced(client, &s.namespace);
    loop {
        match try_acquire(&api, s, Timestamp::now()).await {
            Ok(true) => {
                api_answered(true);
                tracing::info!(lease = %s.name, identity = %s.identity, "became leader");
                return true;
            }
            Ok(false) => {
                api_answered(true);
                tracing::debug!(lease = %s.name, "another replica leads; waiting");
            }
            Err(e) => {
                api_answered(false);
                tracing::warn!(lease = %s.name, error = %e, "cannot read the lease");
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return false,
            _ = tokio::time::sleep(s.renew_every) => {}
        }
    }
}

/// Renews the Lease until `stop` fires; fires `lost` when leadership is lost or cannot be
/// renewed for a whole lease duration.
pub async fn keep(
    client: Client,
    s: LeaseSettings,
    stop: CancellationToken,
    lost: CancellationToken,
) {
    let api: Api<Lease> = Api::namespaced(client, &s.namespace);
    let mut last_renewal = std::time::Instant::now();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(s.renew_every) => {}
        }
        match try_acquire(&api, &s, Timestamp::now()).await {
            Ok(true) => last_renewal = std::time::Instant::now(),
            Ok(false) => {
                tracing::error!(lease = %s.name, "leadership lost to another replica");
                lost.cancel();
                return;
            }
            Err(e) if last_renewal.elapsed() >= s.lease_duration => {
                tracing::error!(lease = %s.name, error = %e, "cannot renew the lease; stepping down");
                lost.cancel();
                return;
            }
            Err(e) => tracing::warn!(lease = %s.name, error = %e, "lease renewal failed; retrying"),
        }
    }
}
