//! The container mode's I/O: prepares a Pod's volumes on the host (as a kubelet does: emptyDir
//! directories, Secret/ConfigMap files, the projected service-account token), runs the container
//! with podman (`podman::run_args`), reports it Running, and ends it when the Pod is deleted or a
//! fault says so.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, ServiceAccount};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::harness::{resolve_env, say};
use crate::kubelet::{ContainerMode, Shared};
use crate::podman::{self, HostVolume, RunContext};

/// How a container ended: exit code, termination message, and the Pod-level reason when the
/// kubelet refused to run it.
pub struct End {
    pub code: i32,
    pub message: String,
    pub refused: Option<String>,
}

/// The label every container of the tier carries (`scripts/test-cluster.sh` removes leftovers).
pub const TIER_LABEL: &str = "io.bronze.cluster-tier";

pub fn podman_cmd() -> std::process::Command {
    let mut cmd = std::process::Command::new("podman");
    cmd.stdin(std::process::Stdio::null());
    cmd
}

/// The image's `USER`, or why the image cannot run (not in the local store: a kubelet with
/// `imagePullPolicy: Never` reports ErrImageNeverPull).
fn image_user(image: &str) -> Result<String, String> {
    let out = podman_cmd()
        .args(["image", "inspect", "--format", "{{.Config.User}}", image])
        .output()
        .map_err(|e| format!("podman: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ErrImageNeverPull: image {image} is not in the local store ({})",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Writes `files` (relative path → bytes) under `dir`, world-readable as a kubelet does.
fn write_files(dir: &Path, files: &[(String, Vec<u8>)]) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    for (rel, bytes) in files {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).map_err(|e| e.to_string())?;
        std::fs::write(&path, bytes).map_err(|e| e.to_string())?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// `items` (key → path) of a secret/configMap source, else every key under its own name.
fn select(
    data: BTreeMap<String, Vec<u8>>,
    items: &Value,
) -> Result<Vec<(String, Vec<u8>)>, String> {
    match items.as_array() {
        None => Ok(data.into_iter().collect()),
        Some(items) => items
            .iter()
            .map(|i| {
                let key = i["key"].as_str().unwrap_or_default();
                let bytes = data.get(key).cloned().ok_or(format!("key {key} missing"))?;
                Ok((i["path"].as_str().unwrap_or(key).to_string(), bytes))
            })
            .collect(),
    }
}

async fn secret_data(shared: &Shared, name: &str) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let api: Api<Secret> = Api::namespaced(shared.client.clone(), &shared.ns);
    let s = api
        .get(name)
        .await
        .map_err(|e| format!("Secret {name}: {e}"))?;
    Ok(s.data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect())
}

async fn config_map_data(shared: &Shared, name: &str) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let api: Api<ConfigMap> = Api::namespaced(shared.client.clone(), &shared.ns);
    let c = api
        .get(name)
        .await
        .map_err(|e| format!("ConfigMap {name}: {e}"))?;
    Ok(c.data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()))
        .collect())
}

/// A token of the Pod's ServiceAccount bound to the Pod (TokenRequest), as the projected
/// `serviceAccountToken` source gets it.
async fn pod_token(shared: &Shared, pod: &Pod, source: &Value) -> Result<Vec<u8>, String> {
    let spec = pod.spec.as_ref().unwrap();
    let sa = spec
        .service_account_name
        .clone()
        .unwrap_or_else(|| "default".into());
    let api: Api<ServiceAccount> = Api::namespaced(shared.client.clone(), &shared.ns);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: source["audience"]
                .as_str()
                .map(|a| vec![a.to_string()])
                .unwrap_or_default(),
            expiration_seconds: Some(source["expirationSeconds"].as_i64().unwrap_or(3607)),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(pod.name_any()),
                uid: pod.uid(),
            }),
        },
        ..Default::default()
    };
    let token = api
        .create_token_request(&sa, &PostParams::default(), &request)
        .await
        .map_err(|e| format!("TokenRequest for ServiceAccount {sa}: {e}"))?;
    Ok(token.status.ok_or("no token")?.token.into_bytes())
}

/// The host side of each of the Pod's volumes (see [`HostVolume`]).
async fn prepare_volumes(
    shared: &Shared,
    mode: &ContainerMode,
    pod: &Pod,
    spec: &Value,
    dir: &Path,
) -> Result<BTreeMap<String, HostVolume>, String> {
    use std::os::unix::fs::PermissionsExt;
    let fs_group = spec["securityContext"]["fsGroup"]
        .as_u64()
        .map(|g| g as u32);
    let mut out = BTreeMap::new();
    for v in spec["volumes"].as_array().into_iter().flatten() {
        let name = v["name"].as_str().unwrap_or_default().to_string();
        let host = dir.join("volumes").join(&name);
        let fresh = || -> Result<PathBuf, String> {
            std::fs::create_dir_all(&host).map_err(|e| e.to_string())?;
            Ok(host.clone())
        };
        let volume = if let Some(e) = v.get("emptyDir") {
            if e["medium"] == "Memory" {
                HostVolume::Tmpfs {
                    size: e["sizeLimit"].as_str().map(String::from),
                }
            } else {
                let path = fresh()?;
                // A kubelet's emptyDir: 0777 (with fsGroup: the group's and setgid).
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777))
                    .map_err(|e| e.to_string())?;
                HostVolume::Dir {
                    path,
                    read_only: false,
                }
            }
        } else if let Some(h) = v.get("hostPath") {
            HostVolume::Dir {
                path: PathBuf::from(h["path"].as_str().unwrap_or_default()),
                read_only: false,
            }
        } else if let Some(c) = v.get("persistentVolumeClaim") {
            let claim = c["claimName"].as_str().unwrap_or_default();
            let pvcs: Api<PersistentVolumeClaim> =
                Api::namespaced(shared.client.clone(), &shared.ns);
            pvcs.get(claim)
                .await
                .map_err(|e| format!("volume {name}: PersistentVolumeClaim {claim}: {e}"))?;
            let path = mode.claims.get(claim).cloned().ok_or(format!(
                "volume {name}: claim {claim} has no volume bound in this test"
            ))?;
            if let Some(g) = fs_group {
                // fsGroup: the volume becomes the group's (what a kubelet does for block/fs volumes).
                std::os::unix::fs::chown(&path, None, Some(g)).map_err(|e| e.to_string())?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o2775))
                    .map_err(|e| e.to_string())?;
            }
            HostVolume::Dir {
                path,
                read_only: c["readOnly"] == true,
            }
        } else if let Some(s) = v.get("secret") {
            let data = secret_data(shared, s["secretName"].as_str().unwrap_or_default()).await?;
            write_files(&fresh()?, &select(data, &s["items"])?)?;
            HostVolume::Dir {
                path: host.clone(),
                read_only: true,
            }
        } else if let Some(c) = v.get("configMap") {
            let data = config_map_data(shared, c["name"].as_str().unwrap_or_default()).await?;
            write_files(&fresh()?, &select(data, &c["items"])?)?;
            HostVolume::Dir {
                path: host.clone(),
                read_only: true,
            }
        } else if let Some(p) = v.get("projected") {
            let mut files = Vec::new();
            for source in p["sources"].as_array().into_iter().flatten() {
                if let Some(t) = source.get("serviceAccountToken") {
                    let path = t["path"].as_str().unwrap_or("token").to_string();
                    files.push((path, pod_token(shared, pod, t).await?));
                } else if let Some(c) = source.get("configMap") {
                    let data =
                        config_map_data(shared, c["name"].as_str().unwrap_or_default()).await?;
                    files.extend(select(data, &c["items"])?);
                } else if let Some(s) = source.get("secret") {
                    let data = secret_data(shared, s["name"].as_str().unwrap_or_default()).await?;
                    files.extend(select(data, &s["items"])?);
                } else if let Some(d) = source.get("downwardAPI") {
                    for item in d["items"].as_array().into_iter().flatten() {
                        let value = match item["fieldRef"]["fieldPath"].as_str() {
                            Some("metadata.namespace") => shared.ns.clone(),
                            Some("metadata.name") => pod.name_any(),
                            other => {
                                return Err(format!(
                                    "volume {name}: downwardAPI {other:?} not supported"
                                ));
                            }
                        };
                        files.push((
                            item["path"].as_str().unwrap_or_default().to_string(),
                            value.into_bytes(),
                        ));
                    }
                } else {
                    return Err(format!(
                        "volume {name}: projected source {source} not supported"
                    ));
                }
            }
            write_files(&fresh()?, &files)?;
            HostVolume::Dir {
                path: host.clone(),
                read_only: true,
            }
        } else {
            return Err(format!("volume {name}: {v} not supported"));
        };
        out.insert(name, volume);
    }
    Ok(out)
}

/// Everything before `podman run`: the spec checked, volumes and env prepared, the arguments.
async fn prepare(
    shared: &Shared,
    mode: &ContainerMode,
    pod: &Pod,
    dir: &Path,
    termination_file: &Path,
) -> Result<Vec<String>, String> {
    let spec = serde_json::to_value(pod.spec.as_ref().unwrap()).unwrap();
    podman::check_supported(&spec)?;
    let image = spec["containers"][0]["image"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let image_user = image_user(&image)?;
    let volumes = prepare_volumes(shared, mode, pod, &spec, dir).await?;
    let mut env = vec![
        // What a kubelet gives every container: where the API server is.
        ("KUBERNETES_SERVICE_HOST".to_string(), mode.api_host.clone()),
        (
            "KUBERNETES_SERVICE_PORT".to_string(),
            mode.api_port.to_string(),
        ),
        // Never reach a cloud from a test: no instance metadata.
        ("AWS_EC2_METADATA_DISABLED".to_string(), "true".to_string()),
    ];
    let declared = spec["containers"][0]["env"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    env.extend(resolve_env(&shared.client, &shared.ns, declared, &pod.name_any()).await);
    std::fs::write(termination_file, b"").map_err(|e| e.to_string())?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(termination_file, std::fs::Permissions::from_mode(0o666))
            .map_err(|e| e.to_string())?;
    }
    let mut args = podman::run_args(
        &spec,
        &RunContext {
            name: container_name(&shared.ns, &pod.name_any()),
            image_user,
            env,
            volumes,
            termination_file: termination_file.to_path_buf(),
        },
    )?;
    args.insert(0, format!("--label={TIER_LABEL}={}", shared.ns));
    // Which run of `make test-cluster` (its image) started it: what its clean-up removes.
    let run = std::env::var("BRONZE_CLUSTER_IMAGE").unwrap_or_default();
    args.insert(0, format!("--label=io.bronze.cluster-run={run}"));
    Ok(args)
}

pub fn container_name(ns: &str, pod: &str) -> String {
    format!("{ns}.{pod}")
}

fn kill_container(name: &str) {
    let _ = podman_cmd()
        .args(["kill", "--signal=KILL", name])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

async fn report_running(shared: &Shared, pod: &Pod) {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let c = &pod.spec.as_ref().unwrap().containers[0];
    let status = json!({"status": {
        "phase": "Running", "startTime": now,
        "containerStatuses": [{
            "name": c.name, "image": c.image, "imageID": "", "ready": true,
            "restartCount": 0, "started": true, "state": {"running": {"startedAt": now}},
        }],
    }});
    let pods: Api<Pod> = Api::namespaced(shared.client.clone(), &shared.ns);
    if let Err(e) = pods
        .patch_status(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&status),
        )
        .await
    {
        say(&format!(
            "kubelet: cannot report Pod {} Running: {e}",
            pod.name_any()
        ));
    }
}

/// Runs the Pod's container to its end; `None` when the Pod was deleted meanwhile.
pub async fn run(
    shared: &Shared,
    mode: &ContainerMode,
    pod: &Pod,
    kill: &CancellationToken,
    chaos_delay: Option<Duration>,
) -> Option<End> {
    let name = pod.name_any();
    let dir = shared.dir.path().join(&name);
    std::fs::create_dir_all(&dir).unwrap();
    let termination_file = dir.join("termination-log");
    let args = match prepare(shared, mode, pod, &dir, &termination_file).await {
        Ok(args) => args,
        Err(reason) => {
            say(&format!(
                "{}: kubelet: Pod {name} refused: {reason}",
                shared.test
            ));
            return Some(End {
                code: 128,
                message: reason.clone(),
                refused: Some(reason),
            });
        }
    };
    shared
        .record
        .lock()
        .unwrap()
        .containers
        .push((name.clone(), args.clone()));
    let log = shared.dir.path().join(format!("{name}.log"));
    let out = std::fs::File::create(&log).unwrap();
    let mut child = podman_cmd()
        .arg("run")
        .args(&args)
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("podman run");
    let container = container_name(&shared.ns, &name);
    report_running(shared, pod).await;
    let started = Instant::now();
    let mut killed = false;
    let mut killed_by_log = false;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        let by_log = !killed && kill_on_log(shared, &log);
        if !killed && (by_log || chaos_delay.is_some_and(|d| started.elapsed() >= d)) {
            killed = true;
            killed_by_log = by_log;
            shared.record.lock().unwrap().killed += 1;
            say(&format!(
                "{}: kubelet: SIGKILL container of Pod {name}",
                shared.test
            ));
            kill_container(&container);
        }
        if kill.is_cancelled() {
            kill_container(&container);
            let _ = child.wait();
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let code = status.code().unwrap_or(137);
    if killed && code != 137 {
        // The container ended on its own before the SIGKILL landed (a small partition can be
        // done within the poll interval): nothing was killed. Give the kill back, so that the
        // `kill_on_log` fault kills the next container instead and the record counts only
        // kills that happened.
        let mut faults = shared.faults.lock().unwrap();
        if let (true, Some((_, left))) = (killed_by_log, faults.kill_on_log.as_mut()) {
            *left += 1;
        }
        shared.record.lock().unwrap().killed -= 1;
    }
    let spec = serde_json::to_value(pod.spec.as_ref().unwrap()).unwrap();
    let message = podman::termination_message(
        &spec,
        &termination_file,
        &crate::kubelet::log_tail(&log),
        code,
    );
    Some(End {
        code,
        message,
        refused: None,
    })
}

/// Whether the `kill_on_log` fault applies to this container now (and uses up one kill).
fn kill_on_log(shared: &Shared, log: &Path) -> bool {
    let mut faults = shared.faults.lock().unwrap();
    let Some((needle, left)) = faults.kill_on_log.as_mut() else {
        return false;
    };
    if *left == 0 {
        return false;
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    if text.contains(needle.as_str()) {
        *left -= 1;
        return true;
    }
    false
}
