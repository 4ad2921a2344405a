//! The worker Job for one range, and reading Jobs back ([`observe`]).
//!
//! The worker is configured only through environment variables that `bronze-copier` already
//! understands ([`worker_env`]); the operator builds its own view of the dataset from the very
//! same variables ([`worker_config`]), so the two can never disagree about paths or the grid.

use std::collections::BTreeMap;

use bronze::config::{Config, ConfigError, LogFormat, env_var, load_config};
use bronze::partition::LedgerRange;
use k8s_openapi::api::batch::v1::{
    Job, JobSpec, PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement,
    PodFailurePolicyOnPodConditionsPattern, PodFailurePolicyRule,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    PersistentVolumeClaimVolumeSource, Pod, PodSecurityContext, PodSpec, PodTemplateSpec,
    SeccompProfile, SecretKeySelector, SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};

use crate::crd::{BronzeBackfill, BronzeBackfillSpec, SourceMode, StorageBackend, TableFormat};
use crate::plan::{JobFailure, JobRequest, JobState, ObservedJob, backfill_label};
use crate::worker_shape;

pub const CONTAINER: &str = "worker";
pub const LABEL_BACKFILL: &str = "bronze.obsrvr.io/backfill";
pub const LABEL_RANGE_START: &str = "bronze.obsrvr.io/range-start";
pub const LABEL_RANGE_END: &str = "bronze.obsrvr.io/range-end";
pub const LABEL_HARVESTED: &str = "bronze.obsrvr.io/harvested";
pub const ANNOTATION_RANGE: &str = "bronze.obsrvr.io/range";
pub const ANNOTATION_ATTEMPT: &str = "bronze.obsrvr.io/attempt";
pub const ANNOTATION_INGESTED_AT: &str = "bronze.obsrvr.io/ingested-at";
/// On a rebuild Job: the rebuild's id (`spec.rebuild.id`).
pub const ANNOTATION_REBUILD: &str = "bronze.obsrvr.io/rebuild";
/// The worker flag of a rebuild Job (`--rebuild ID`): build each committed partition of the
/// range beside the committed one, for the operator's sequencer to check and swap.
pub const REBUILD_FLAG: &str = "--rebuild";
/// Worker exit codes that fail the Job at once (see `bronze::exit`): config, bad input, conflict.
pub const NON_RETRYABLE_EXIT_CODES: [i32; 3] = [
    bronze::exit::CONFIG as i32,
    bronze::exit::BAD_INPUT as i32,
    bronze::exit::CONFLICT as i32,
];
const GCS_KEY_DIR: &str = "/var/run/secrets/bronze/gcs";
/// The image's user and group (distroless `nonroot`).
pub const WORKER_UID: i64 = 65532;
/// The only writable path outside the mounted volumes (an emptyDir; the root filesystem is
/// read-only). Worker mode keeps no checkpoint and no PAS backups; the termination log is
/// `/dev/termination-log`, which Kubernetes mounts.
pub const TMP_DIR: &str = "/tmp";

/// The worker Pod's metrics port (`metrics.address`), named [`WORKER_METRICS_PORT_NAME`] for
/// the chart's PodMonitor.
pub const WORKER_METRICS_PORT: u16 = 9090;
pub const WORKER_METRICS_PORT_NAME: &str = "metrics";

/// Operator-wide defaults of `spec.worker` (`--default-worker-image`,
/// `--default-worker-service-account`), used when a backfill leaves them empty.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkerDefaults {
    pub image: Option<String>,
    pub service_account: Option<String>,
}

impl WorkerDefaults {
    /// `backfill` with its worker image and ServiceAccount filled in from the defaults and the
    /// partitions each Pod builds at once settled ([`worker_shape::in_flight`]), or why it cannot
    /// run (no image anywhere, a memory limit too small for the partitions in flight).
    pub fn apply(&self, backfill: &BronzeBackfill) -> Result<BronzeBackfill, String> {
        let nonempty = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
        let mut resolved = backfill.clone();
        let w = &mut resolved.spec.worker;
        w.image = nonempty(&w.image).or_else(|| nonempty(&self.image));
        if w.image.is_none() {
            return Err(
                "no worker image: set spec.worker.image, or start the operator with \
                 --default-worker-image (the chart sets it from workers.image)"
                    .into(),
            );
        }
        w.service_account_name =
            nonempty(&w.service_account_name).or_else(|| nonempty(&self.service_account));
        // The partitions a Pod builds at once go with its resources (worker_shape).
        if let Some(warning) = worker_shape::check_resources(&resolved.spec)? {
            tracing::warn!(backfill = %backfill.name_any(), "{warning}");
        }
        let shape = worker_shape::in_flight(&resolved.spec);
        resolved.spec.worker.max_in_flight_partitions = Some(shape.configured);
        Ok(resolved)
    }
}

/// The label selector for all Jobs of a backfill.
pub fn selector(backfill: &str) -> String {
    format!("{LABEL_BACKFILL}={}", backfill_label(backfill))
}

/// The worker's environment for `spec` (credentials excluded: see [`build_job`]): values by the
/// worker's config key, each closed set written by its own `Display`, and every variable named
/// by the worker's table ([`bronze::config::env_var`]), so this is the one mapping from a
/// backfill to a worker config and [`worker_config`] reads it back exactly as the worker does.
pub fn worker_env(
    spec: &BronzeBackfillSpec,
    ingested_at: &str,
    copier_id: &str,
) -> Vec<(String, String)> {
    let s = &spec.source;
    let st = &spec.storage;
    let w = &spec.worker;
    let text = |v: &dyn std::fmt::Display| Some(v.to_string());
    let on =
        |backend: StorageBackend, v: &Option<String>| v.clone().filter(|_| st.backend == backend);
    // An empty variable counts as unset (and would mean the default `bronze/`): `/` normalizes
    // to the empty prefix.
    let prefix = if st.prefix.trim_matches('/').is_empty() {
        "/".to_string()
    } else {
        st.prefix.clone()
    };
    let trusted = spec
        .archive
        .as_ref()
        .and_then(|a| a.trusted_ledger.as_ref());
    let by_key: Vec<(&str, Option<String>)> = vec![
        ("copier_id", text(&copier_id)),
        ("era.network", text(&spec.network)),
        ("era.era_id", text(&spec.era_id)),
        ("era.version_label", text(&spec.version_label)),
        ("era.ledger_start", text(&spec.ledger_start)),
        ("era.ledger_end", text(&spec.ledger_end)),
        ("era.partition_size", text(&spec.partition_size)),
        // A worker Job never replaces a committed partition: it adopts it. Replacements go
        // through the sequencer (`spec.rebuild`).
        ("era.allow_overwrite", text(&false)),
        ("era.ingested_at", text(&ingested_at)),
        ("era.network_passphrase", spec.network_passphrase.clone()),
        ("source.mode", text(&s.mode)),
        ("source.local_path", s.local_path.clone()),
        ("source.gcs_bucket", s.gcs_bucket.clone()),
        ("source.gcs_prefix", s.gcs_prefix.clone()),
        ("source.s3_bucket", s.s3_bucket.clone()),
        ("source.s3_prefix", s.s3_prefix.clone()),
        ("source.s3_endpoint", s.s3_endpoint.clone()),
        ("source.s3_region", s.s3_region.clone()),
        ("source.datastore_path", s.datastore_path.clone()),
        (
            "source.datastore_type",
            s.datastore_type.map(|t| t.to_string()),
        ),
        (
            "source.ledgers_per_batch",
            s.ledgers_per_batch.map(|n| n.to_string()),
        ),
        (
            "source.batches_per_partition",
            s.batches_per_partition.map(|n| n.to_string()),
        ),
        ("storage.backend", text(&st.backend)),
        (
            "storage.local_dir",
            on(StorageBackend::Local, &st.local_dir),
        ),
        ("storage.gcs_bucket", on(StorageBackend::Gcs, &st.bucket)),
        ("storage.s3_bucket", on(StorageBackend::S3, &st.bucket)),
        ("storage.s3_endpoint", on(StorageBackend::S3, &st.endpoint)),
        ("storage.s3_region", on(StorageBackend::S3, &st.region)),
        ("storage.prefix", Some(prefix)),
        ("storage.compression", text(&st.compression)),
        (
            "storage.compression_level",
            st.compression_level.map(|l| l.to_string()),
        ),
        // Set only when on, so the Jobs of a backfill without it are exactly as before.
        (
            "storage.table_format",
            (st.table_format != TableFormat::None).then(|| st.table_format.to_string()),
        ),
        ("archive.url", spec.archive.as_ref().map(|a| a.url.clone())),
        (
            "archive.urls",
            spec.archive
                .as_ref()
                .filter(|a| !a.urls.is_empty())
                .map(|a| a.urls.join(",")),
        ),
        (
            "archive.allow_unanchored",
            spec.archive
                .as_ref()
                .filter(|a| a.allow_unanchored)
                .map(|_| "true".to_string()),
        ),
        (
            "archive.trusted_ledger.sequence",
            trusted.map(|t| t.sequence.to_string()),
        ),
        (
            "archive.trusted_ledger.hash",
            trusted.map(|t| t.hash.clone()),
        ),
        // The operator keeps the checkpoint, the PAS chain and the catalog.
        ("checkpoint.enabled", text(&false)),
        ("pas.enabled", text(&false)),
        ("logging.format", text(&LogFormat::Json)),
        ("logging.level", w.log_level.clone()),
        // The dashboard's worker panels: /metrics on the Pod's `metrics` port (a PodMonitor in
        // the chart scrapes it). A worker that cannot bind it goes on without it.
        ("metrics.enabled", text(&true)),
        ("metrics.address", Some(format!(":{WORKER_METRICS_PORT}"))),
        (
            "perf.max_in_flight_partitions",
            w.max_in_flight_partitions.map(|n| n.to_string()),
        ),
        ("perf.workers", w.workers.map(|n| n.to_string())),
    ];
    by_key
        .into_iter()
        .filter_map(|(key, value)| {
            let var = env_var(key).unwrap_or_else(|| panic!("{key} is not a worker config key"));
            Some((var.to_string(), value?))
        })
        .collect()
}

/// The worker's config for `spec`, loaded exactly as the worker loads it (from [`worker_env`]).
/// The operator opens storage and the datastore with it.
pub fn worker_config(spec: &BronzeBackfillSpec, ingested_at: &str) -> Result<Config, ConfigError> {
    let env: BTreeMap<String, String> = worker_env(spec, ingested_at, "bronze-operator")
        .into_iter()
        .collect();
    load_config(None, |k| env.get(k).cloned()).map(|loaded| loaded.config)
}

fn labels(backfill: &str, range: LedgerRange) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "bronze-worker".into()),
        ("app.kubernetes.io/part-of".into(), "bronze".into()),
        (
            "app.kubernetes.io/managed-by".into(),
            "bronze-operator".into(),
        ),
        (LABEL_BACKFILL.into(), backfill_label(backfill)),
        (LABEL_RANGE_START.into(), range.start.to_string()),
        (LABEL_RANGE_END.into(), range.end.to_string()),
    ])
}

/// The worker's arguments: `worker --range S-E`, and `--rebuild ID` for a rebuild's Job.
fn worker_args(request: &JobRequest) -> Vec<String> {
    let mut args: Vec<String> = vec!["worker".into(), "--range".into(), request.range.to_string()];
    if let Some(id) = &request.rebuild {
        args.extend([REBUILD_FLAG.to_string(), id.clone()]);
    }
    args
}

/// The Job for one range of `backfill` (worker defaults already applied:
/// [`WorkerDefaults::apply`]). The Pod runs locked down: non-root 65532, read-only root
/// filesystem, no privilege escalation, no capabilities, seccomp `RuntimeDefault`, and an
/// emptyDir at /tmp as its only scratch space.
pub fn build_job(backfill: &BronzeBackfill, request: &JobRequest, ingested_at: &str) -> Job {
    let name = backfill.metadata.name.clone().unwrap_or_default();
    let spec = &backfill.spec;
    let w = &spec.worker;
    let labels = labels(&name, request.range);
    let mut env: Vec<EnvVar> = worker_env(spec, ingested_at, &request.name)
        .into_iter()
        .map(|(name, value)| EnvVar {
            name,
            value: Some(value),
            ..Default::default()
        })
        .collect();
    let (volumes, mounts) = volumes_and_credentials(spec, &mut env);
    let container = Container {
        name: CONTAINER.into(),
        image: w.image.clone(),
        image_pull_policy: w.image_pull_policy.map(|p| p.as_str().to_string()),
        args: Some(worker_args(request)),
        env: Some(env),
        resources: w.resources.clone(),
        volume_mounts: Some(mounts),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ports: Some(vec![ContainerPort {
            name: Some(WORKER_METRICS_PORT_NAME.into()),
            container_port: i32::from(WORKER_METRICS_PORT),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        security_context: Some(container_security()),
        ..Default::default()
    };
    Job {
        metadata: ObjectMeta {
            name: Some(request.name.clone()),
            namespace: backfill.metadata.namespace.clone(),
            labels: Some(labels.clone()),
            annotations: Some(
                [
                    (ANNOTATION_RANGE, Some(request.range.to_string())),
                    (ANNOTATION_ATTEMPT, Some(request.attempt.to_string())),
                    (ANNOTATION_INGESTED_AT, Some(ingested_at.to_string())),
                    (ANNOTATION_REBUILD, request.rebuild.clone()),
                ]
                .into_iter()
                .filter_map(|(k, v)| Some((k.to_string(), v?)))
                .collect(),
            ),
            owner_references: backfill.controller_owner_ref(&()).map(|r| vec![r]),
            ..Default::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(w.backoff_limit),
            active_deadline_seconds: Some(w.active_deadline_seconds),
            // A replacement Pod starts only once the failed one is gone: never two writers.
            pod_replacement_policy: Some("Failed".into()),
            pod_failure_policy: Some(pod_failure_policy()),
            // Set only when the operator has harvested the Job (see `harvest_patch`).
            ttl_seconds_after_finished: None,
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    service_account_name: w.service_account_name.clone(),
                    node_selector: w.node_selector.clone(),
                    tolerations: w.tolerations.clone(),
                    containers: vec![container],
                    volumes: Some(volumes),
                    // A worker never calls the Kubernetes API.
                    automount_service_account_token: Some(false),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(WORKER_UID),
                        run_as_group: Some(WORKER_UID),
                        // An output claim becomes writable by the worker's group.
                        fs_group: Some(WORKER_UID),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            localhost_profile: None,
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    }
}

/// The worker's credentials (S3 keys from a Secret as env, a GCS key file mounted) and its
/// volumes: `/tmp` as an emptyDir, and the datastore (read-only) and output claims of local mode.
fn volumes_and_credentials(
    spec: &BronzeBackfillSpec,
    env: &mut Vec<EnvVar>,
) -> (Vec<Volume>, Vec<VolumeMount>) {
    let secret_env = |var: &str, secret: &str, key: &str| EnvVar {
        name: var.to_string(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_string(),
                key: key.to_string(),
                optional: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut volumes = vec![Volume {
        name: "tmp".into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    }];
    let mut mounts = vec![VolumeMount {
        name: "tmp".into(),
        mount_path: TMP_DIR.into(),
        ..Default::default()
    }];
    if let Some(s3) = &spec.credentials.s3 {
        env.push(secret_env(
            "AWS_ACCESS_KEY_ID",
            &s3.secret_name,
            &s3.access_key_id_key,
        ));
        env.push(secret_env(
            "AWS_SECRET_ACCESS_KEY",
            &s3.secret_name,
            &s3.secret_access_key_key,
        ));
        if let Some(key) = &s3.session_token_key {
            env.push(secret_env("AWS_SESSION_TOKEN", &s3.secret_name, key));
        }
    }
    if let Some(gcs) = &spec.credentials.gcs {
        volumes.push(Volume {
            name: "gcs-key".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(gcs.secret_name.clone()),
                ..Default::default()
            }),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name: "gcs-key".into(),
            mount_path: GCS_KEY_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        });
        env.push(EnvVar {
            name: "GOOGLE_APPLICATION_CREDENTIALS".into(),
            value: Some(format!("{GCS_KEY_DIR}/{}", gcs.key)),
            ..Default::default()
        });
    }
    let mut claim = |volume: &str, claim: &Option<String>, path: &Option<String>, read_only| {
        if let (Some(claim), Some(path)) = (claim, path) {
            volumes.push(Volume {
                name: volume.into(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim.clone(),
                    read_only: Some(read_only),
                }),
                ..Default::default()
            });
            mounts.push(VolumeMount {
                name: volume.into(),
                mount_path: path.clone(),
                read_only: Some(read_only),
                ..Default::default()
            });
        }
    };
    if spec.source.mode == SourceMode::Local {
        claim(
            "datastore",
            &spec.source.volume_claim_name,
            &spec.source.local_path,
            true,
        );
    }
    if spec.storage.backend == StorageBackend::Local {
        claim(
            "output",
            &spec.storage.volume_claim_name,
            &spec.storage.local_dir,
            false,
        );
    }
    (volumes, mounts)
}

/// The worker container's security context: non-root (65532), read-only root filesystem, every
/// capability dropped, no privilege escalation.
fn container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        run_as_user: Some(WORKER_UID),
        run_as_group: Some(WORKER_UID),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        ..Default::default()
    }
}

/// Bad input, a conflict or a config error fails the Job at once (the exit codes the worker
/// uses for them); a Pod disrupted by the cluster (eviction, preemption) does not count.
fn pod_failure_policy() -> PodFailurePolicy {
    PodFailurePolicy {
        rules: vec![
            PodFailurePolicyRule {
                action: "FailJob".into(),
                on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                    container_name: Some(CONTAINER.into()),
                    operator: "In".into(),
                    values: NON_RETRYABLE_EXIT_CODES.to_vec(),
                }),
                on_pod_conditions: None,
            },
            PodFailurePolicyRule {
                action: "Ignore".into(),
                on_exit_codes: None,
                on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                    type_: "DisruptionTarget".into(),
                    status: "True".into(),
                }]),
            },
        ],
    }
}

/// The merge patch that marks a Job harvested and hands it to the TTL controller.
pub fn harvest_patch(ttl_seconds: i32) -> serde_json::Value {
    serde_json::json!({
        "metadata": {"labels": {LABEL_HARVESTED: "true"}},
        "spec": {"ttlSecondsAfterFinished": ttl_seconds},
    })
}

/// Reads one of the operator's Jobs back; `None` for a Job without a readable range.
pub fn observe(job: &Job) -> Option<ObservedJob> {
    let meta = &job.metadata;
    let annotations = meta.annotations.clone().unwrap_or_default();
    let labels = meta.labels.clone().unwrap_or_default();
    let range = annotations
        .get(ANNOTATION_RANGE)
        .and_then(|r| r.parse::<LedgerRange>().ok())
        .or_else(|| {
            let start = labels.get(LABEL_RANGE_START)?.parse().ok()?;
            let end = labels.get(LABEL_RANGE_END)?.parse().ok()?;
            (start <= end && start > 0).then(|| LedgerRange::new(start, end))
        })?;
    let attempt = annotations
        .get(ANNOTATION_ATTEMPT)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1u32)
        .max(1);
    let conditions = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let true_condition = |t: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == t && c.status == "True")
    };
    let state = if true_condition("Complete").is_some() {
        JobState::Succeeded
    } else if let Some(c) = true_condition("Failed") {
        let message = c.message.clone().unwrap_or_default();
        JobState::Failed(JobFailure {
            reason: c.reason.clone().unwrap_or_default(),
            exit_code: exit_code_in(&message),
            message,
        })
    } else {
        JobState::Active
    };
    Some(ObservedJob {
        name: meta.name.clone().unwrap_or_default(),
        range,
        attempt,
        state,
        harvested: labels.get(LABEL_HARVESTED).is_some_and(|v| v == "true"),
        ingested_at: annotations.get(ANNOTATION_INGESTED_AT).cloned(),
        rebuild: annotations.get(ANNOTATION_REBUILD).cloned(),
    })
}

/// The label the Job controller puts on a Job's Pods.
pub const LABEL_JOB_NAME: &str = "job-name";

/// Why a worker failed, in its own words: the worker container's termination message of the
/// newest failed Pod among `pods` (the worker writes `exit N: <error>` naming the object key,
/// ledger and field; with `FallbackToLogsOnError` it is the log tail, where the same error is
/// the line `bronze-copier: <error>`). One line, at most 600 characters.
pub fn termination_reason(pods: &[Pod]) -> Option<String> {
    let mut failed: Vec<(&Pod, String)> = pods
        .iter()
        .filter_map(|pod| {
            let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
            let terminated = statuses
                .iter()
                .find(|c| c.name == CONTAINER)?
                .state
                .as_ref()?
                .terminated
                .as_ref()?;
            let message = terminated.message.clone().filter(|m| !m.trim().is_empty());
            (terminated.exit_code != 0).then_some((pod, message?))
        })
        .collect();
    failed.sort_by_key(|(pod, _)| pod.metadata.creation_timestamp.clone());
    let (_, message) = failed.pop()?;
    let lines: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let line = lines
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("bronze-copier: "))
        .or_else(|| lines.iter().rev().find(|l| l.starts_with("exit ")).copied())
        .or_else(|| lines.last().copied())?;
    Some(line.chars().take(600).collect())
}

/// The exit code in a pod-failure-policy message ("... failed with exit code 3 matching FailJob
/// rule at index 0").
fn exit_code_in(message: &str) -> Option<i32> {
    let rest = &message[message.find("exit code ")? + "exit code ".len()..];
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{backfill, spec};
    use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};

    fn failed_pod(name: &str, created: &str, code: i32, message: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "creationTimestamp": created},
            "status": {"containerStatuses": [{
                "name": CONTAINER, "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": code, "message": message}},
            }]},
        }))
        .unwrap()
    }

    #[test]
    fn termination_reason_is_the_newest_failed_workers_own_line() {
        let older = failed_pod("a", "2025-01-01T00:00:00Z", 1, "exit 1: storage timeout");
        let newer = failed_pod(
            "b",
            "2025-01-01T00:01:00Z",
            3,
            "exit 3: object k--5.xdr.zst: ledger 5: bad",
        );
        assert_eq!(
            termination_reason(&[newer.clone(), older.clone()]).as_deref(),
            Some("exit 3: object k--5.xdr.zst: ledger 5: bad")
        );
        // FallbackToLogsOnError: the log tail; the worker's `bronze-copier: ` line says why.
        let logs = failed_pod(
            "c",
            "2025-01-01T00:02:00Z",
            3,
            "{\"level\":\"ERROR\"}\nbronze-copier: object k--7.xdr.zst: ledger 7: bad\n{\"msg\":\"stopped\"}\n",
        );
        assert_eq!(
            termination_reason(&[older.clone(), logs]).as_deref(),
            Some("object k--7.xdr.zst: ledger 7: bad")
        );
        let ok = failed_pod("d", "2025-01-01T00:03:00Z", 0, "done");
        assert_eq!(termination_reason(&[ok]), None);
        assert_eq!(termination_reason(&[]), None);
    }

    #[test]
    fn worker_env_round_trips_through_the_workers_own_config_loader() {
        let mut spec = spec();
        spec.storage.prefix = "".into();
        spec.storage.compression_level = Some(5);
        spec.storage.table_format = TableFormat::Delta;
        spec.network_passphrase = Some("Custom Net ; 2024".into());
        spec.worker.workers = Some(16);
        let config = worker_config(&spec, "2025-01-15T10:00:00Z").unwrap();
        assert_eq!(config.era.network, spec.network);
        assert_eq!(config.era.era_id, spec.era_id);
        assert_eq!(config.era.version_label, spec.version_label);
        assert_eq!(config.era.ledger_start, spec.ledger_start);
        assert_eq!(config.era.ledger_end, spec.ledger_end);
        assert_eq!(config.era.partition_size, spec.partition_size);
        assert_eq!(
            config.era.network_passphrase.as_deref(),
            Some("Custom Net ; 2024")
        );
        assert_eq!(
            config.era.ingested_at.as_deref(),
            Some("2025-01-15T10:00:00Z")
        );
        assert_eq!(config.source.mode, SourceMode::Local);
        assert_eq!(
            Some(config.source.local_path.clone()),
            spec.source.local_path
        );
        assert_eq!(config.storage.backend, StorageBackend::Local);
        assert_eq!(config.storage_prefix(), "", "empty prefix survives the env");
        assert_eq!(config.storage.compression_level, Some(5));
        assert_eq!(
            config.storage.table_format,
            bronze::config::TableFormat::Delta
        );
        assert_eq!(config.perf.workers, 16);
        assert!(!config.checkpoint.enabled && !config.pas.enabled);
        assert_eq!(config.logging.format, LogFormat::Json);
        assert!(config.rejected.is_empty(), "{:?}", config.rejected);
    }

    /// `spec.archive` reaches the worker as `archive.url` (and `allow_unanchored`); without it
    /// no archive variable is set, so the Jobs of a backfill without one are as before.
    #[test]
    fn the_archive_reaches_the_worker_and_is_off_without_it() {
        let mut s = spec();
        let env = worker_env(&s, "2025-01-15T10:00:00Z", "c");
        assert!(
            !env.iter().any(|(k, _)| k.starts_with("ARCHIVE_")),
            "{env:?}"
        );
        assert!(
            worker_config(&s, "2025-01-15T10:00:00Z")
                .unwrap()
                .archive
                .all_urls()
                .is_empty()
        );
        s.archive = Some(crate::crd::ArchiveSpec {
            url: "s3://mirror/core_live_001".into(),
            allow_unanchored: false,
            urls: Vec::new(),
            trusted_ledger: None,
        });
        let c = worker_config(&s, "2025-01-15T10:00:00Z").unwrap();
        assert_eq!(c.archive.url, "s3://mirror/core_live_001");
        assert!(!c.archive.allow_unanchored);
        assert_eq!(c.archive.trusted_ledger, None);
    }

    /// Every value of every closed set the CRD shares with the worker survives CRD spec -> env
    /// -> the worker's config loader as the same typed value, with every variable the mapping
    /// can emit set at least once.
    #[test]
    fn every_closed_set_value_round_trips_from_the_spec_to_the_workers_config() {
        use bronze::config::{Choice, Compression, DatastoreType};
        let mut seen = std::collections::BTreeSet::new();
        for (i, &backend) in StorageBackend::ALL.iter().enumerate() {
            for &mode in SourceMode::ALL {
                for (j, &compression) in Compression::ALL.iter().enumerate() {
                    let mut s = spec();
                    s.storage.table_format = TableFormat::ALL[j % TableFormat::ALL.len()];
                    s.source.mode = mode;
                    s.source.datastore_type = Some(DatastoreType::ALL[i % 2]);
                    s.source.gcs_bucket = Some("src-gcs".into());
                    s.source.gcs_prefix = Some("p".into());
                    s.source.s3_bucket = Some("src-s3".into());
                    s.source.s3_prefix = Some("q".into());
                    s.source.s3_endpoint = Some("http://127.0.0.1:9000".into());
                    s.source.s3_region = Some("us-east-1".into());
                    s.source.datastore_path = Some("bucket/landing".into());
                    s.source.ledgers_per_batch = Some(4);
                    s.source.batches_per_partition = Some(8);
                    s.storage.backend = backend;
                    s.storage.bucket = Some("out".into());
                    s.storage.endpoint = Some("http://127.0.0.1:9001".into());
                    s.storage.region = Some("eu-west-1".into());
                    s.storage.compression = compression;
                    s.worker.log_level = Some("debug".into());
                    s.storage.compression_level = Some(3);
                    s.worker.max_in_flight_partitions = Some(3);
                    s.worker.workers = Some(16);
                    s.network_passphrase = Some("Custom Net ; 2024".into());
                    s.archive = Some(crate::crd::ArchiveSpec {
                        url: "https://history.example/core_001".into(),
                        allow_unanchored: true,
                        urls: vec![
                            "s3://mirror-a/core_001".into(),
                            "gs://mirror-b/core_001".into(),
                        ],
                        trusted_ledger: Some(crate::crd::TrustedLedgerSpec {
                            sequence: 1_410_111,
                            hash: "ab".repeat(32),
                        }),
                    });
                    seen.extend(
                        worker_env(&s, "2025-01-15T10:00:00Z", "c")
                            .into_iter()
                            .map(|(k, _)| k),
                    );
                    let c = worker_config(&s, "2025-01-15T10:00:00Z").unwrap();
                    assert!(c.rejected.is_empty(), "{:?}", c.rejected);
                    assert_eq!(c.source.mode, mode);
                    assert_eq!(c.source.datastore_type, s.source.datastore_type);
                    assert_eq!(c.storage.backend, backend);
                    assert_eq!(c.storage.compression, compression);
                    assert_eq!(c.storage.table_format, s.storage.table_format);
                    assert_eq!(c.logging.level, bronze::config::LogLevel::Debug);
                    assert_eq!(
                        c.archive.all_urls(),
                        [
                            "https://history.example/core_001",
                            "s3://mirror-a/core_001",
                            "gs://mirror-b/core_001"
                        ]
                    );
                    let trusted = c.archive.trusted_ledger.as_ref().unwrap().parse().unwrap();
                    assert_eq!((trusted.sequence, trusted.hash), (1_410_111, [0xab; 32]));
                    assert!(c.metrics.enabled);
                    assert_eq!(c.metrics.address, format!(":{WORKER_METRICS_PORT}"));
                    let bucket = match backend {
                        StorageBackend::Local => &c.storage.local_dir,
                        StorageBackend::Gcs => &c.storage.gcs_bucket,
                        StorageBackend::S3 => &c.storage.s3_bucket,
                    };
                    let want = match backend {
                        StorageBackend::Local => "/data/bronze",
                        _ => "out",
                    };
                    assert_eq!(bucket, want, "{backend}");
                    if backend == StorageBackend::S3 {
                        assert_eq!(c.storage.s3_endpoint, "http://127.0.0.1:9001");
                        assert_eq!(c.storage.s3_region, "eu-west-1");
                    }
                }
            }
        }
        // Every variable of the mapping was emitted by some spec above.
        assert_eq!(seen.len(), 45, "{seen:?}");
    }

    #[test]
    fn worker_pods_run_locked_down_and_write_only_to_tmp_and_volumes() {
        let mut s = spec();
        s.storage.backend = StorageBackend::Local;
        s.storage.local_dir = Some("/data/bronze".into());
        s.storage.volume_claim_name = Some("bronze-data".into());
        let request = JobRequest {
            name: "b-2-1001".into(),
            range: LedgerRange::new(2, 1001),
            attempt: 1,
            rebuild: None,
        };
        let job = build_job(&backfill("b", s.clone()), &request, "2025-01-15T10:00:00Z");
        let pod = job.spec.unwrap().template.spec.unwrap();
        let psc = pod.security_context.as_ref().unwrap();
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(psc.run_as_user, Some(65532));
        assert_eq!(psc.run_as_group, Some(65532));
        assert_eq!(psc.fs_group, Some(65532));
        assert_eq!(
            psc.seccomp_profile.as_ref().map(|p| p.type_.as_str()),
            Some("RuntimeDefault")
        );
        assert_eq!(pod.automount_service_account_token, Some(false));
        let c = &pod.containers[0];
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(sc.run_as_user, Some(65532));
        assert_eq!(sc.run_as_group, Some(65532));
        assert_eq!(
            sc.capabilities.as_ref().unwrap().drop,
            Some(vec!["ALL".to_string()])
        );
        assert_eq!(sc.privileged, None);
        // /tmp is an emptyDir; the output claim is the only other writable mount.
        let volumes = pod.volumes.as_ref().unwrap();
        let tmp = volumes.iter().find(|v| v.name == "tmp").unwrap();
        assert!(tmp.empty_dir.is_some());
        let writable: Vec<&str> = c
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .filter(|m| m.read_only != Some(true))
            .map(|m| m.mount_path.as_str())
            .collect();
        assert_eq!(writable, ["/tmp", "/data/bronze"]);
        // Nothing in the worker's config writes elsewhere: the output is on the claim, and
        // worker mode runs without checkpoint and PAS backups (bronze-copier turns them off);
        // the termination log is /dev/termination-log, which Kubernetes mounts.
        let config = worker_config(&s, "2025-01-15T10:00:00Z").unwrap();
        assert_eq!(config.storage.local_dir, "/data/bronze");
        assert_eq!(
            c.termination_message_path, None,
            "the default /dev/termination-log"
        );
        assert!(
            !config.checkpoint.enabled,
            "the checkpoint file would be written to cwd"
        );
        assert!(
            !config.pas.enabled,
            "PAS backups would be written to a local dir"
        );
    }

    #[test]
    fn worker_defaults_fill_an_empty_image_and_service_account() {
        let mut s = spec();
        s.worker.image = None;
        s.worker.service_account_name = None;
        let b = backfill("b", s);
        let none = WorkerDefaults::default();
        let err = none.apply(&b).unwrap_err();
        assert!(err.contains("--default-worker-image"), "{err}");
        let defaults = WorkerDefaults {
            image: Some("registry.example.com/bronze:1".into()),
            service_account: Some("bronze-worker".into()),
        };
        let resolved = defaults.apply(&b).unwrap();
        assert_eq!(
            resolved.spec.worker.image.as_deref(),
            Some("registry.example.com/bronze:1")
        );
        assert_eq!(
            resolved.spec.worker.service_account_name.as_deref(),
            Some("bronze-worker")
        );
        // An empty string counts as unset.
        let mut empty = b.clone();
        empty.spec.worker.image = Some(String::new());
        assert!(none.apply(&empty).is_err());
        // The backfill's own values win.
        let mut own = backfill("b", spec());
        own.spec.worker.service_account_name = Some("mine".into());
        let resolved = defaults.apply(&own).unwrap();
        let mut expected = own.spec.worker.clone();
        // ... and the partitions in flight are settled (no CPU request: the worker's default).
        expected.max_in_flight_partitions = Some(worker_shape::WORKER_DEFAULT_IN_FLIGHT);
        assert_eq!(resolved.spec.worker, expected);
        let request = JobRequest {
            name: "b-2-1001".into(),
            range: LedgerRange::new(2, 1001),
            attempt: 1,
            rebuild: None,
        };
        let job = build_job(&defaults.apply(&b).unwrap(), &request, "x");
        let pod = job.spec.unwrap().template.spec.unwrap();
        assert_eq!(pod.service_account_name.as_deref(), Some("bronze-worker"));
        assert_eq!(
            pod.containers[0].image.as_deref(),
            Some("registry.example.com/bronze:1")
        );
    }

    #[test]
    fn job_has_owner_labels_failure_policy_and_no_ttl_until_harvested() {
        let bbf = backfill("pubnet-p23", spec());
        let request = JobRequest {
            name: "pubnet-p23-2-1001".into(),
            range: LedgerRange::new(2, 1001),
            attempt: 2,
            rebuild: None,
        };
        let job = build_job(&bbf, &request, "2025-01-15T10:00:00Z");
        let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(owner.kind, "BronzeBackfill");
        assert_eq!(owner.controller, Some(true));
        assert_eq!(owner.uid, bbf.metadata.uid.clone().unwrap());
        let labels = job.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[LABEL_BACKFILL], "pubnet-p23");
        assert_eq!(labels[LABEL_RANGE_START], "2");
        let js = job.spec.as_ref().unwrap();
        assert_eq!(js.backoff_limit, Some(3));
        assert!(js.active_deadline_seconds.is_some());
        assert_eq!(js.ttl_seconds_after_finished, None);
        let rules = &js.pod_failure_policy.as_ref().unwrap().rules;
        assert_eq!(rules[0].action, "FailJob");
        assert_eq!(
            rules[0].on_exit_codes.as_ref().unwrap().values,
            vec![2, 3, 4]
        );
        assert_eq!(rules[1].action, "Ignore");
        let pod = js.template.spec.as_ref().unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        let c = &pod.containers[0];
        assert_eq!(
            c.args.as_ref().unwrap(),
            &vec!["worker".to_string(), "--range".into(), "2-1001".into()]
        );
        let env = c.env.as_ref().unwrap();
        let get = |k: &str| {
            env.iter()
                .find(|e| e.name == k)
                .and_then(|e| e.value.clone())
        };
        assert_eq!(get("INGESTED_AT").as_deref(), Some("2025-01-15T10:00:00Z"));
        assert_eq!(get("COPIER_ID").as_deref(), Some("pubnet-p23-2-1001"));
        // Read back, it is the same range and attempt.
        let seen = observe(&job).unwrap();
        assert_eq!(seen.range, request.range);
        assert_eq!(seen.attempt, 2);
        assert_eq!(seen.state, JobState::Active);
        assert_eq!(seen.ingested_at.as_deref(), Some("2025-01-15T10:00:00Z"));
    }

    #[test]
    fn credentials_come_from_secrets_and_local_paths_from_claims() {
        let mut spec = spec();
        spec.credentials.s3 = Some(crate::crd::S3CredentialsRef {
            secret_name: "s3-keys".into(),
            access_key_id_key: "id".into(),
            secret_access_key_key: "secret".into(),
            session_token_key: None,
        });
        spec.credentials.gcs = Some(crate::crd::GcsCredentialsRef {
            secret_name: "gcs-key".into(),
            key: "sa.json".into(),
        });
        spec.source.volume_claim_name = Some("ledgers".into());
        let job = build_job(
            &backfill("b", spec),
            &JobRequest {
                name: "b-2-11".into(),
                range: LedgerRange::new(2, 11),
                attempt: 1,
                rebuild: None,
            },
            "2025-01-15T10:00:00Z",
        );
        let pod = job.spec.unwrap().template.spec.unwrap();
        let c = &pod.containers[0];
        let env = c.env.as_ref().unwrap();
        let id = env.iter().find(|e| e.name == "AWS_ACCESS_KEY_ID").unwrap();
        let sel = id
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap();
        assert_eq!((sel.name.as_str(), sel.key.as_str()), ("s3-keys", "id"));
        assert!(
            env.iter()
                .any(|e| e.name == "GOOGLE_APPLICATION_CREDENTIALS"
                    && e.value.as_deref() == Some("/var/run/secrets/bronze/gcs/sa.json"))
        );
        let mounts = c.volume_mounts.as_ref().unwrap();
        assert!(
            mounts
                .iter()
                .any(|m| m.name == "datastore" && m.read_only == Some(true))
        );
        assert!(pod.volumes.unwrap().iter().any(|v| {
            v.persistent_volume_claim
                .as_ref()
                .is_some_and(|p| p.claim_name == "ledgers")
        }));
    }

    fn finished(job: &mut Job, type_: &str, reason: &str, message: &str) {
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

    #[test]
    fn failures_are_classified_by_the_workers_exit_code() {
        let bbf = backfill("b", spec());
        let request = JobRequest {
            name: "b-2-11".into(),
            range: LedgerRange::new(2, 11),
            attempt: 1,
            rebuild: None,
        };
        let mut job = build_job(&bbf, &request, "2025-01-15T10:00:00Z");
        finished(
            &mut job,
            "Failed",
            "PodFailurePolicy",
            "Container worker for pod ns/b-2-11-x failed with exit code 3 matching FailJob rule at index 0",
        );
        let JobState::Failed(f) = observe(&job).unwrap().state else {
            panic!()
        };
        assert_eq!(f.exit_code, Some(3));
        assert_eq!(f.kind(), "BadInput");
        assert!(!f.retryable());
        finished(
            &mut job,
            "Failed",
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
        );
        let JobState::Failed(f) = observe(&job).unwrap().state else {
            panic!()
        };
        assert!(f.retryable());
        finished(&mut job, "Complete", "", "");
        assert_eq!(observe(&job).unwrap().state, JobState::Succeeded);
    }
}
