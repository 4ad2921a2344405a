//! The kubelet stand-in's container mode: one Pod spec turned into one `podman run` of the
//! Pod's image, honouring what the spec says, or refused with a reason when the spec asks for
//! something this stand-in cannot do (the Pod then fails with that reason; it never runs
//! differently from what it asked for).
//!
//! Honoured: one container; `image` (`--pull=never`: the local store), `command`/`args`/
//! `workingDir` with Kubernetes' entrypoint rules; `env` (values resolved by the caller);
//! pod- and container-level `securityContext` (`runAsUser`, `runAsGroup`, `runAsNonRoot`
//! checked against the image's user, `fsGroup` and `supplementalGroups`, `readOnlyRootFilesystem`
//! with no writable tmpfs of podman's own, `capabilities` drop/add, `allowPrivilegeEscalation:
//! false` as no-new-privileges, `privileged: false`, `seccompProfile` RuntimeDefault or
//! Unconfined); volumes prepared on the host by the caller (`emptyDir` as a fresh directory or a
//! tmpfs for `medium: Memory`, `hostPath`, `persistentVolumeClaim` through the test's claim
//! directories, `secret`, `configMap`, `projected` service-account token) mounted with
//! `readOnly` honoured; `resources.limits` memory and cpu; the termination message file at
//! `terminationMessagePath`; `--network host` (the test servers listen on loopback).
//! Not played, without effect on how the container runs: probes, ports (host network), image pull
//! secrets and policy, scheduling fields.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// A volume as the caller prepared it on the host.
#[derive(Clone, Debug, PartialEq)]
pub enum HostVolume {
    /// A host directory (emptyDir, hostPath, claim, or the files of a secret/configMap/projected
    /// volume); `read_only` when the volume itself can only be mounted read-only.
    Dir { path: PathBuf, read_only: bool },
    /// `emptyDir.medium: Memory`.
    Tmpfs { size: Option<String> },
}

/// Everything `podman run` needs besides the Pod spec.
#[derive(Clone, Debug)]
pub struct RunContext {
    /// The container's name in podman.
    pub name: String,
    /// The image's `USER` (for `runAsNonRoot` without `runAsUser`).
    pub image_user: String,
    /// The container's environment, resolved.
    pub env: Vec<(String, String)>,
    /// Volume name → what was prepared for it.
    pub volumes: BTreeMap<String, HostVolume>,
    /// The host file mounted at the container's termination message path.
    pub termination_file: PathBuf,
}

const POD_KEYS: &[&str] = &[
    "containers",
    "volumes",
    "securityContext",
    "serviceAccountName",
    "serviceAccount",
    "automountServiceAccountToken",
    "restartPolicy",
    "terminationGracePeriodSeconds",
    // Not played (no nodes, local images), no effect on the run:
    "dnsPolicy",
    "schedulerName",
    "tolerations",
    "nodeSelector",
    "affinity",
    "priority",
    "priorityClassName",
    "preemptionPolicy",
    "enableServiceLinks",
    "imagePullSecrets",
];

const CONTAINER_KEYS: &[&str] = &[
    "name",
    "image",
    "imagePullPolicy",
    "command",
    "args",
    "workingDir",
    "env",
    "resources",
    "volumeMounts",
    "securityContext",
    "terminationMessagePath",
    "terminationMessagePolicy",
    // Not played: probes (nobody routes to the Pod), ports (host network).
    "ports",
    "livenessProbe",
    "readinessProbe",
];

const POD_SECURITY_KEYS: &[&str] = &[
    "runAsUser",
    "runAsGroup",
    "runAsNonRoot",
    "fsGroup",
    "supplementalGroups",
    "seccompProfile",
];

const CONTAINER_SECURITY_KEYS: &[&str] = &[
    "runAsUser",
    "runAsGroup",
    "runAsNonRoot",
    "readOnlyRootFilesystem",
    "allowPrivilegeEscalation",
    "capabilities",
    "privileged",
    "seccompProfile",
];

const MOUNT_KEYS: &[&str] = &["name", "mountPath", "readOnly"];

/// Volume sources the caller can prepare (see [`HostVolume`]).
pub const VOLUME_KINDS: &[&str] = &[
    "emptyDir",
    "hostPath",
    "persistentVolumeClaim",
    "secret",
    "configMap",
    "projected",
];

fn unknown_keys(object: &Value, known: &[&str], what: &str) -> Result<(), String> {
    let Some(map) = object.as_object() else {
        return Ok(());
    };
    match map.keys().find(|k| !known.contains(&k.as_str())) {
        Some(key) => Err(format!(
            "{what}.{key} is not supported by the container mode"
        )),
        None => Ok(()),
    }
}

/// Checks the Pod spec names nothing the container mode cannot honour.
pub fn check_supported(spec: &Value) -> Result<(), String> {
    unknown_keys(spec, POD_KEYS, "spec")?;
    let containers = spec["containers"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if containers.len() != 1 {
        return Err(format!(
            "{} containers: the container mode runs exactly one",
            containers.len()
        ));
    }
    let c = &containers[0];
    unknown_keys(c, CONTAINER_KEYS, "containers[0]")?;
    unknown_keys(
        &spec["securityContext"],
        POD_SECURITY_KEYS,
        "spec.securityContext",
    )?;
    unknown_keys(
        &c["securityContext"],
        CONTAINER_SECURITY_KEYS,
        "containers[0].securityContext",
    )?;
    for m in c["volumeMounts"].as_array().into_iter().flatten() {
        unknown_keys(m, MOUNT_KEYS, "volumeMounts[]")?;
    }
    for e in c["env"].as_array().into_iter().flatten() {
        if e.get("valueFrom")
            .is_some_and(|f| f.get("resourceFieldRef").is_some())
        {
            return Err("env valueFrom.resourceFieldRef is not supported".into());
        }
    }
    for v in spec["volumes"].as_array().into_iter().flatten() {
        let kind = v
            .as_object()
            .and_then(|m| m.keys().find(|k| *k != "name").cloned())
            .unwrap_or_default();
        if !VOLUME_KINDS.contains(&kind.as_str()) {
            return Err(format!(
                "volume {}: {kind} volumes are not supported by the container mode",
                v["name"]
            ));
        }
        if kind == "emptyDir"
            && !matches!(
                v["emptyDir"]["medium"].as_str(),
                None | Some("") | Some("Memory")
            )
        {
            return Err(format!(
                "volume {}: emptyDir medium {}",
                v["name"], v["emptyDir"]["medium"]
            ));
        }
    }
    if spec["securityContext"]["seccompProfile"]["type"] == "Localhost"
        || c["securityContext"]["seccompProfile"]["type"] == "Localhost"
    {
        return Err("seccompProfile Localhost is not supported".into());
    }
    if c["securityContext"]["privileged"] == true {
        return Err("privileged containers are not supported".into());
    }
    Ok(())
}

/// A container-level security setting, else the Pod-level one.
fn security<'a>(spec: &'a Value, key: &str) -> &'a Value {
    let c = &spec["containers"][0]["securityContext"][key];
    if c.is_null() {
        &spec["securityContext"][key]
    } else {
        c
    }
}

/// `512Mi` → bytes; `2`/`500m` CPUs → `2`/`0.5`.
pub fn memory_bytes(q: &str) -> Result<u64, String> {
    let units: &[(&str, u64)] = &[
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
    ];
    for (suffix, factor) in units {
        if let Some(n) = q.strip_suffix(suffix) {
            return n
                .parse::<u64>()
                .map(|n| n * factor)
                .map_err(|_| format!("memory quantity {q}"));
        }
    }
    q.parse().map_err(|_| format!("memory quantity {q}"))
}

pub fn cpus(q: &str) -> Result<String, String> {
    match q.strip_suffix('m') {
        Some(milli) => milli
            .parse::<u64>()
            .map(|m| format!("{}", m as f64 / 1000.0))
            .map_err(|_| format!("cpu quantity {q}")),
        None => q
            .parse::<f64>()
            .map(|c| c.to_string())
            .map_err(|_| format!("cpu quantity {q}")),
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|s| s.as_str().unwrap_or_default().to_string())
        .collect()
}

/// The `podman run` arguments for the Pod (after `podman run`), or why it cannot run.
pub fn run_args(spec: &Value, ctx: &RunContext) -> Result<Vec<String>, String> {
    check_supported(spec)?;
    let c = &spec["containers"][0];
    let image = c["image"].as_str().ok_or("no image")?;
    let mut args: Vec<String> = vec![
        "--rm".into(),
        format!("--name={}", ctx.name),
        "--pull=never".into(),
        "--network=host".into(),
        // Nothing writable but the Pod's volumes (podman adds tmpfs mounts otherwise).
        "--read-only-tmpfs=false".into(),
    ];
    // Identity: runAsUser/runAsGroup, else the image's USER.
    let uid = security(spec, "runAsUser").as_i64();
    let gid = security(spec, "runAsGroup").as_i64();
    if security(spec, "runAsNonRoot") == true {
        let effective = match uid {
            Some(uid) => uid,
            None => {
                let user = ctx.image_user.split(':').next().unwrap_or_default();
                user.parse::<i64>().map_err(|_| {
                    format!(
                        "runAsNonRoot: image {image} has non-numeric user ({:?}), cannot verify user is non-root",
                        ctx.image_user
                    )
                })?
            }
        };
        if effective == 0 {
            return Err(format!("runAsNonRoot: container {image} would run as root"));
        }
    }
    match (uid, gid) {
        (Some(u), Some(g)) => args.push(format!("--user={u}:{g}")),
        (Some(u), None) => args.push(format!("--user={u}")),
        (None, Some(g)) => {
            let user = ctx.image_user.split(':').next().unwrap_or("0");
            args.push(format!("--user={user}:{g}"));
        }
        (None, None) => {}
    }
    if let Some(fs_group) = spec["securityContext"]["fsGroup"].as_i64() {
        args.push(format!("--group-add={fs_group}"));
    }
    for g in spec["securityContext"]["supplementalGroups"]
        .as_array()
        .into_iter()
        .flatten()
    {
        args.push(format!("--group-add={g}"));
    }
    let sc = &c["securityContext"];
    if sc["readOnlyRootFilesystem"] == true {
        args.push("--read-only".into());
    }
    if sc["allowPrivilegeEscalation"] == false {
        args.push("--security-opt=no-new-privileges".into());
    }
    for cap in strings(&sc["capabilities"]["drop"]) {
        args.push(format!("--cap-drop={cap}"));
    }
    for cap in strings(&sc["capabilities"]["add"]) {
        args.push(format!("--cap-add={cap}"));
    }
    if security(spec, "seccompProfile")["type"] == "Unconfined" {
        args.push("--security-opt=seccomp=unconfined".into());
    } // RuntimeDefault (or none): podman's default profile.
    let limits = &c["resources"]["limits"];
    if let Some(m) = limits["memory"].as_str() {
        args.push(format!("--memory={}", memory_bytes(m)?));
    }
    if let Some(cpu) = limits["cpu"].as_str() {
        args.push(format!("--cpus={}", cpus(cpu)?));
    }
    // Volumes.
    for m in c["volumeMounts"].as_array().into_iter().flatten() {
        let name = m["name"].as_str().unwrap_or_default();
        let path = m["mountPath"].as_str().unwrap_or_default();
        let volume = ctx
            .volumes
            .get(name)
            .ok_or_else(|| format!("volumeMount {name}: no such volume"))?;
        match volume {
            HostVolume::Dir {
                path: host,
                read_only,
            } => {
                let ro = *read_only || m["readOnly"] == true;
                let mode = if ro { "ro" } else { "rw" };
                args.push(format!("--volume={}:{path}:{mode}", host.display()));
            }
            HostVolume::Tmpfs { size } => {
                let mut opt = format!("--tmpfs={path}:rw,mode=1777");
                if let Some(size) = size {
                    opt.push_str(&format!(",size={}", memory_bytes(size)?));
                }
                args.push(opt);
            }
        }
    }
    let termination = c["terminationMessagePath"]
        .as_str()
        .unwrap_or("/dev/termination-log");
    args.push(format!(
        "--volume={}:{termination}:rw",
        ctx.termination_file.display()
    ));
    for (k, v) in &ctx.env {
        args.push(format!("--env={k}={v}"));
    }
    if let Some(dir) = c["workingDir"].as_str() {
        args.push(format!("--workdir={dir}"));
    }
    // Kubernetes: `command` replaces the ENTRYPOINT (and drops the image's CMD), `args` the CMD.
    let command = strings(&c["command"]);
    if let Some(first) = command.first() {
        args.push(format!("--entrypoint={first}"));
    }
    args.push(image.to_string());
    args.extend(command.into_iter().skip(1));
    args.extend(strings(&c["args"]));
    Ok(args)
}

/// The termination message as a kubelet reports it: the file's text, else (policy
/// `FallbackToLogsOnError` and a failure) the log's tail (80 lines / 2 KiB).
pub fn termination_message(spec: &Value, file: &Path, log_tail: &str, code: i32) -> String {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let fallback = spec["containers"][0]["terminationMessagePolicy"] == "FallbackToLogsOnError";
    if text.trim().is_empty() && fallback && code != 0 {
        log_tail.to_string()
    } else {
        let mut end = text.len().min(4096);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text[..end].to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx(volumes: &[(&str, HostVolume)]) -> RunContext {
        RunContext {
            name: "c1".into(),
            image_user: "65532:65532".into(),
            env: vec![("A".into(), "b".into())],
            volumes: volumes
                .iter()
                .map(|(n, v)| (n.to_string(), v.clone()))
                .collect(),
            termination_file: "/h/term".into(),
        }
    }

    fn worker_spec() -> Value {
        json!({
            "restartPolicy": "Never",
            "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
                "fsGroup": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "worker", "image": "localhost/bronze:t", "args": ["worker", "--range", "2-11"],
                "resources": {"limits": {"memory": "256Mi", "cpu": "500m"}},
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"},
                                 {"name": "out", "mountPath": "/data", "readOnly": true}],
                "securityContext": {"readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false,
                    "capabilities": {"drop": ["ALL"]}},
                "terminationMessagePolicy": "FallbackToLogsOnError",
            }],
            "volumes": [{"name": "tmp", "emptyDir": {}},
                        {"name": "out", "persistentVolumeClaim": {"claimName": "data"}}],
        })
    }

    #[test]
    fn a_worker_pod_becomes_a_confined_container() {
        let args = run_args(
            &worker_spec(),
            &ctx(&[
                (
                    "tmp",
                    HostVolume::Dir {
                        path: "/h/tmp".into(),
                        read_only: false,
                    },
                ),
                (
                    "out",
                    HostVolume::Dir {
                        path: "/h/out".into(),
                        read_only: false,
                    },
                ),
            ]),
        )
        .unwrap();
        for want in [
            "--user=65532:65532",
            "--group-add=65532",
            "--read-only",
            "--read-only-tmpfs=false",
            "--security-opt=no-new-privileges",
            "--cap-drop=ALL",
            "--memory=268435456",
            "--cpus=0.5",
            "--network=host",
            "--volume=/h/tmp:/tmp:rw",
            "--volume=/h/out:/data:ro",
            "--volume=/h/term:/dev/termination-log:rw",
            "--env=A=b",
        ] {
            assert!(
                args.iter().any(|a| a == want),
                "{want} missing from {args:?}"
            );
        }
        let image = args.iter().position(|a| a == "localhost/bronze:t").unwrap();
        assert_eq!(args[image + 1..], ["worker", "--range", "2-11"]);
        assert!(!args.iter().any(|a| a.starts_with("--entrypoint")));
    }

    #[test]
    fn command_replaces_the_entrypoint() {
        let mut spec = worker_spec();
        spec["containers"][0]["command"] = json!(["/usr/local/bin/bronze-operator", "x"]);
        let args = run_args(
            &spec,
            &ctx(&[
                (
                    "tmp",
                    HostVolume::Tmpfs {
                        size: Some("64Mi".into()),
                    },
                ),
                (
                    "out",
                    HostVolume::Dir {
                        path: "/h/out".into(),
                        read_only: true,
                    },
                ),
            ]),
        )
        .unwrap();
        assert!(args.contains(&"--entrypoint=/usr/local/bin/bronze-operator".to_string()));
        assert!(args.contains(&"--tmpfs=/tmp:rw,mode=1777,size=67108864".to_string()));
        let image = args.iter().position(|a| a == "localhost/bronze:t").unwrap();
        assert_eq!(args[image + 1..], ["x", "worker", "--range", "2-11"]);
    }

    #[test]
    fn what_cannot_be_honoured_is_refused_with_a_reason() {
        let vols = [
            ("tmp", HostVolume::Tmpfs { size: None }),
            ("out", HostVolume::Tmpfs { size: None }),
        ];
        let refuse = |patch: Value| {
            let mut spec = worker_spec();
            crate::harness::merge(&mut spec, patch);
            run_args(&spec, &ctx(&vols)).unwrap_err()
        };
        assert!(
            refuse(json!({"volumes": [{"name": "tmp", "nfs": {"server": "x", "path": "/"}}]}))
                .contains("nfs volumes are not supported")
        );
        assert!(refuse(json!({"hostPID": true})).contains("spec.hostPID"));
        assert!(refuse(json!({"initContainers": []})).contains("spec.initContainers"));
        assert!(refuse(json!({"securityContext": {"runAsUser": 0}})).contains("would run as root"));
        assert!(refuse(json!({"securityContext": {"sysctls": []}})).contains("sysctls"));
        let mut spec = worker_spec();
        spec["containers"][0]["securityContext"]["privileged"] = json!(true);
        assert!(
            run_args(&spec, &ctx(&vols))
                .unwrap_err()
                .contains("privileged")
        );
        let mut spec = worker_spec();
        spec["containers"][0]["volumeMounts"][0]["subPath"] = json!("x");
        assert!(
            run_args(&spec, &ctx(&vols))
                .unwrap_err()
                .contains("subPath")
        );
        let mut spec = worker_spec();
        spec["securityContext"] = json!({"runAsNonRoot": true});
        let mut root_image = ctx(&vols);
        root_image.image_user = "root".into();
        assert!(
            run_args(&spec, &root_image)
                .unwrap_err()
                .contains("non-numeric user")
        );
    }
}
