//! Plays the kubelet for the worker Pods of one namespace (the control plane has no nodes): runs
//! each Pending Pod's container as a local process — the image's ENTRYPOINT, `bronze-copier`,
//! with the Pod's args and env (Secret and ConfigMap keys resolved) — and reports its end in the
//! Pod's status (phase, exit code, the log tail as termination message, as
//! `FallbackToLogsOnError` does). A Pod deleted while running has its process killed.
//!
//! Faults: `fail` makes the first Pod(s) of a Job exit with a given code without running the
//! worker (a crashing container); `chaos` SIGKILLs workers at random (the Pod reports 137).
//!
//! Container mode ([`Kubelet::start_containers`]): every Pod of the namespace (the operator's
//! Deployment Pod too) runs as a container of its image with podman, as its spec says
//! (`podman.rs` lists what is honoured; anything else fails the Pod with the reason). A Pod is
//! reported Running once its container starts. Fault `kill_on_log` kills (SIGKILL, `podman
//! kill`) the first containers whose log shows a line.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::container;
use crate::harness::{Rng, copier_bin, resolve_env, say};

/// Random SIGKILLs of worker processes.
#[derive(Clone, Debug)]
pub struct Chaos {
    pub rng: Rng,
    /// Chance that a started worker gets killed.
    pub kill_chance: f64,
    /// It is killed after a delay in `0..max_delay_ms`.
    pub max_delay_ms: u64,
    /// At most this many kills in total (so the Jobs' backoff limits hold).
    pub max_kills: usize,
}

/// What happened to the Pods, for the tests' assertions.
#[derive(Clone, Debug, Default)]
pub struct Record {
    /// `(pod, job, exit code)` in the order the Pods ended.
    pub ended: Vec<(String, String, i32)>,
    pub killed: usize,
    /// Container mode: `(pod, podman run arguments)` of every container started.
    pub containers: Vec<(String, Vec<String>)>,
}

#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Job name → exit codes its first Pods end with instead of running the worker.
    pub fail: BTreeMap<String, Vec<i32>>,
    pub chaos: Option<Chaos>,
    /// Container mode: SIGKILL the first `.1` containers whose log contains `.0`.
    pub kill_on_log: Option<(String, usize)>,
}

/// How Pods run: the image's ENTRYPOINT as a host process, or the whole Pod spec as a container.
#[derive(Clone, Debug, Default)]
pub enum Mode {
    #[default]
    Process,
    Container(ContainerMode),
}

/// What the container mode needs from the test.
#[derive(Clone, Debug)]
pub struct ContainerMode {
    /// PersistentVolumeClaim name → host directory: the bound volume (no provisioner here).
    pub claims: BTreeMap<String, std::path::PathBuf>,
    /// The API server as a Pod on the host network reaches it (`KUBERNETES_SERVICE_HOST/PORT`).
    pub api_host: String,
    pub api_port: u16,
}

pub struct Kubelet {
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
    pub record: Arc<Mutex<Record>>,
}

impl Kubelet {
    pub fn start(client: Client, ns: &str, faults: Faults, test: &str) -> Kubelet {
        Self::start_with(client, ns, faults, test, Mode::Process)
    }

    /// Runs every Pod of the namespace as a container (see the module comment).
    pub fn start_containers(
        client: Client,
        ns: &str,
        faults: Faults,
        test: &str,
        mode: ContainerMode,
    ) -> Kubelet {
        Self::start_with(client, ns, faults, test, Mode::Container(mode))
    }

    fn start_with(client: Client, ns: &str, faults: Faults, test: &str, mode: Mode) -> Kubelet {
        let stop = CancellationToken::new();
        let record = Arc::new(Mutex::new(Record::default()));
        let task = tokio::spawn(run(
            client,
            ns.to_string(),
            faults,
            stop.clone(),
            record.clone(),
            test.to_string(),
            mode,
        ));
        Kubelet {
            stop,
            task: Some(task),
            record,
        }
    }

    pub fn record(&self) -> Record {
        self.record.lock().unwrap().clone()
    }

    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub struct Shared {
    pub client: Client,
    pub ns: String,
    pub faults: Mutex<Faults>,
    pub record: Arc<Mutex<Record>>,
    pub test: String,
    pub dir: tempfile::TempDir,
    mode: Mode,
}

async fn run(
    client: Client,
    ns: String,
    faults: Faults,
    stop: CancellationToken,
    record: Arc<Mutex<Record>>,
    test: String,
    mode: Mode,
) {
    // The process mode plays only the workers (the tests start the operator as a process).
    let selector = match mode {
        Mode::Process => "app.kubernetes.io/name=bronze-worker",
        Mode::Container(_) => "",
    };
    let shared = Arc::new(Shared {
        client: client.clone(),
        ns: ns.clone(),
        faults: Mutex::new(faults),
        record,
        test,
        mode,
        dir: tempfile::Builder::new()
            .prefix("bronze-kubelet-")
            .tempdir()
            .unwrap(),
    });
    let pods: Api<Pod> = Api::namespaced(client, &ns);
    let mut handled = BTreeSet::new();
    // Pod name → its process's kill switch.
    let mut running: BTreeMap<String, CancellationToken> = BTreeMap::new();
    let mut tasks = Vec::new();
    while !stop.is_cancelled() {
        let list = match pods.list(&ListParams::default().labels(selector)).await {
            Ok(l) => l.items,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(300)).await;
                continue;
            }
        };
        // A Pod deleted (or being deleted) while its process runs: kill the process.
        let live: BTreeSet<String> = list
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(|p| p.name_any())
            .collect();
        running.retain(|name, kill| {
            if kill.is_cancelled() {
                return false;
            }
            if !live.contains(name) {
                kill.cancel();
                return false;
            }
            true
        });
        for pod in list {
            let name = pod.name_any();
            let pending = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Pending")
                || pod
                    .status
                    .as_ref()
                    .and_then(|s| s.phase.as_deref())
                    .is_none();
            if !pending || pod.metadata.deletion_timestamp.is_some() || handled.contains(&name) {
                continue;
            }
            handled.insert(name.clone());
            let kill = CancellationToken::new();
            running.insert(name.clone(), kill.clone());
            tasks.push(tokio::spawn(run_pod(shared.clone(), pod, kill)));
        }
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
    for kill in running.values() {
        kill.cancel();
    }
    // Containers are removed before the kubelet is reported stopped.
    for task in tasks {
        let _ = task.await;
    }
}

/// Runs one Pod to its end and reports it.
async fn run_pod(shared: Arc<Shared>, pod: Pod, kill: CancellationToken) {
    let name = pod.name_any();
    let job = pod.labels().get("job-name").cloned().unwrap_or_default();
    let spec = pod.spec.clone().unwrap();
    let container = spec.containers[0].clone();
    let injected = {
        let mut faults = shared.faults.lock().unwrap();
        faults
            .fail
            .get_mut(&job)
            .and_then(|codes| (!codes.is_empty()).then(|| codes.remove(0)))
    };
    let chaos_delay = {
        let mut faults = shared.faults.lock().unwrap();
        let kills = shared.record.lock().unwrap().killed;
        faults.chaos.as_mut().and_then(|c| {
            (kills < c.max_kills && c.rng.chance(c.kill_chance))
                .then(|| Duration::from_millis(c.rng.between(0, c.max_delay_ms)))
        })
    };
    let log = shared.dir.path().join(format!("{name}.log"));
    let mut refused = None;
    let (code, message) = match (injected, &shared.mode) {
        (Some(code), _) => (code, format!("injected exit {code}")),
        (None, Mode::Container(mode)) => {
            match container::run(&shared, mode, &pod, &kill, chaos_delay).await {
                Some(end) => {
                    refused = end.refused;
                    (end.code, end.message)
                }
                None => return, // the Pod is gone: nothing to report
            }
        }
        (None, Mode::Process) => {
            let env = serde_json::to_value(container.env.clone().unwrap_or_default()).unwrap();
            let env = resolve_env(
                &shared.client,
                &shared.ns,
                env.as_array().cloned().unwrap_or_default(),
                &name,
            )
            .await;
            let program = container
                .command
                .as_ref()
                .and_then(|c| c.first().cloned())
                .map(std::path::PathBuf::from)
                .unwrap_or_else(copier_bin);
            let workdir = shared.dir.path().join(&name);
            std::fs::create_dir_all(&workdir).unwrap();
            let out = std::fs::File::create(&log).unwrap();
            let mut cmd = std::process::Command::new(program);
            cmd.env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("HOME", &workdir)
                .env("TMPDIR", &workdir)
                // Never reach a cloud: the Pod's env names every endpoint; no metadata server.
                .env("AWS_EC2_METADATA_DISABLED", "true")
                .env("AWS_CONFIG_FILE", "/dev/null")
                .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
                .envs(env)
                .args(container.args.clone().unwrap_or_default())
                .current_dir(&workdir)
                .stdin(std::process::Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out);
            let mut child = cmd.spawn().expect("start the worker");
            let started = std::time::Instant::now();
            // Polled rather than awaited: the operator's tokio has no `process` feature.
            let status = loop {
                if let Some(s) = child.try_wait().unwrap() {
                    break s;
                }
                if chaos_delay.is_some_and(|d| started.elapsed() >= d) {
                    shared.record.lock().unwrap().killed += 1;
                    say(&format!(
                        "{}: kubelet: SIGKILL worker of Pod {name}",
                        shared.test
                    ));
                    let _ = child.kill();
                    break child.wait().unwrap();
                }
                if kill.is_cancelled() {
                    let _ = child.kill();
                    let _ = child.wait();
                    return; // the Pod is gone: nothing to report
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            use std::os::unix::process::ExitStatusExt;
            let code = status
                .code()
                .unwrap_or_else(|| 128 + status.signal().unwrap_or(9));
            (code, log_tail(&log))
        }
    };
    kill.cancel();
    shared
        .record
        .lock()
        .unwrap()
        .ended
        .push((name.clone(), job, code));
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let reason = match code {
        _ if refused.is_some() => "CreateContainerConfigError",
        0 => "Completed",
        _ => "Error",
    };
    let mut status = json!({"status": {
        "phase": if code == 0 { "Succeeded" } else { "Failed" },
        "startTime": now,
        "containerStatuses": [{
            "name": container.name, "image": container.image, "imageID": "", "ready": false,
            "restartCount": 0, "started": false,
            "state": {"terminated": {"exitCode": code, "reason": reason, "message": message,
                                     "startedAt": now, "finishedAt": now}},
        }],
    }});
    if let Some(why) = refused {
        // The Pod-level reason a user sees in `kubectl describe pod`.
        status["status"]["reason"] = json!("ContainerModeUnsupported");
        status["status"]["message"] = json!(why);
    }
    let pods: Api<Pod> = Api::namespaced(shared.client.clone(), &shared.ns);
    match pods
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => say(&format!("kubelet: cannot report Pod {name}: {e}")),
    }
}

/// The end of a container's log, as `FallbackToLogsOnError` reports it (80 lines / 2 KiB).
pub fn log_tail(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(80)..].join("\n");
    let mut start = tail.len().saturating_sub(2048);
    while !tail.is_char_boundary(start) {
        start += 1;
    }
    tail[start..].to_string()
}
