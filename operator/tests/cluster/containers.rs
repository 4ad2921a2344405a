//! The shipped image, run as the chart runs it: the operator's Deployment (rendered by the Helm
//! engine from a user's values) and its worker Jobs' Pods as containers of the image, with the
//! chart's and the operator's security settings (user 65532, read-only root, every capability
//! dropped, no privilege escalation, RuntimeDefault seccomp), through the kubelet stand-in's
//! container mode (`make test-cluster` builds the image and sets `BRONZE_CLUSTER_IMAGE`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use serde_json::{Value, json};

use crate::chaos::{LEDGERS, assert_exact_output};
use crate::harness::*;
use crate::kubelet::{Faults, Kubelet, Record};

const LONG: Duration = Duration::from_secs(240);

/// What a user writes to install the chart with a local image: `image.repository/tag`,
/// `pullPolicy: Never`, a free port for the operator (the Pods share the host's network here).
fn image_values(image: &str) -> Value {
    let (repository, tag) = image.rsplit_once(':').expect("IMAGE:TAG");
    json!({
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "operator": {"httpPort": bronze_testkit::free_port(), "logFormat": "text"},
        "workers": {"image": {"repository": repository, "tag": tag}},
    })
}

/// Applies the chart's Deployment (its controller makes the ReplicaSet and the Pod the kubelet
/// runs).
async fn install_deployment(env: &TestEnv, chart: &[Value]) {
    let deployment = chart
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .expect("the chart's Deployment");
    env.apply(deployment).await;
}

fn has(args: &[String], want: &str) -> bool {
    args.iter().any(|a| a == want)
}

/// Every container ran confined as the chart and the operator's Job template ask.
fn assert_confined(record: &Record) {
    assert!(!record.containers.is_empty(), "no container ran");
    for (pod, args) in &record.containers {
        for want in [
            "--user=65532:65532",
            "--read-only",
            "--read-only-tmpfs=false",
            "--cap-drop=ALL",
            "--security-opt=no-new-privileges",
            "--network=host",
        ] {
            assert!(has(args, want), "Pod {pod}: {want} missing from {args:?}");
        }
        assert!(
            args.iter()
                .any(|a| a.starts_with("--volume=") && a.ends_with(":/tmp:rw")),
            "Pod {pod}: no /tmp emptyDir: {args:?}"
        );
    }
}

/// The operator's Pod ran as a container, with the chart's command.
fn operator_containers(record: &Record) -> usize {
    record
        .containers
        .iter()
        .filter(|(_, args)| has(args, "--entrypoint=/usr/local/bin/bronze-operator"))
        .count()
}

#[tokio::test]
async fn the_charts_operator_and_workers_run_as_containers_and_a_killed_worker_is_retried() {
    let Some(env) = TestEnv::start("containers").await else {
        return;
    };
    let Some(image) = cluster_image() else {
        return;
    };
    let ds = env.datastore(LEDGERS);
    env.upload(&ds, None);
    // The first worker container is SIGKILLed as soon as it has started its partition.
    let kubelet = env.container_kubelet(
        Faults {
            kill_on_log: Some(("bronze worker starting".into(), 1)),
            ..Default::default()
        },
        BTreeMap::new(),
    );
    install_deployment(&env, &env.render_with(image_values(&image))).await;
    env.create("containers", env.spec(1 + LEDGERS, json!({})))
        .await;
    env.succeeded("containers", LONG).await;

    let record = kubelet.record();
    assert_eq!(
        operator_containers(&record),
        1,
        "the operator's Pod ran as a container"
    );
    assert_confined(&record);
    // The killed worker's Pod reported 137 and its Job ran a second Pod, to the same result.
    assert_eq!(record.killed, 1);
    let killed: Vec<&(String, String, i32)> = record
        .ended
        .iter()
        .filter(|(_, _, code)| *code == 137)
        .collect();
    assert_eq!(killed.len(), 1, "{:?}", record.ended);
    let job = killed[0].1.clone();
    // The Job controller replaces the killed Pod; when the kill landed after the partition was
    // committed, the backfill can be Succeeded before that Pod (which adopts the partition) has
    // ended: wait for it.
    let retried = |record: &Record| {
        record
            .ended
            .iter()
            .filter(|(_, j, code)| *j == job && *code == 0)
            .count()
    };
    eventually("the killed worker's Job retried", LONG, || {
        let done = retried(&kubelet.record()) >= 1;
        async move { done }
    })
    .await;
    let record = kubelet.record();
    assert_eq!(
        retried(&record),
        1,
        "Job {job} retried once: {:?}",
        record.ended
    );
    assert_exact_output(&env, "containers").await;
    // examples/verify-job.yaml: `bronze-operator verify` as a Job of the image.
    let (code, log) = verify_job(&env, &image, "containers", &kubelet).await;
    assert_eq!(code, 0, "the verify Job: {log}");
    kubelet.stop().await;
}

/// Runs examples/verify-job.yaml for backfill `name` (the resource as `kubectl get -o yaml`
/// prints it, in a ConfigMap, as the example's comment says); its exit code and message.
async fn verify_job(env: &TestEnv, image: &str, name: &str, kubelet: &Kubelet) -> (i32, String) {
    let job_name = format!("{name}-verify");
    let b = env.backfills().get(name).await.unwrap();
    env.apply(&json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": job_name, "namespace": env.ns},
        "data": {"bbf.yaml": serde_yaml_ng::to_string(&b).unwrap()},
    }))
    .await;
    let mut job: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(workspace().join("examples/verify-job.yaml")).unwrap(),
    )
    .unwrap();
    job["metadata"]["name"] = json!(job_name);
    job["metadata"]["namespace"] = json!(env.ns);
    job["spec"]["template"]["spec"]["containers"][0]["image"] = json!(image);
    job["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"] = json!(job_name);
    env.apply(&job).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let record = kubelet.record();
        if let Some((_, _, code)) = record.ended.iter().find(|(_, j, _)| *j == job_name) {
            let pods: Api<Pod> = Api::namespaced(env.client.clone(), &env.ns);
            let list = pods
                .list(&ListParams::default().labels(&format!("job-name={job_name}")))
                .await
                .unwrap();
            let message = serde_json::to_string(&list.items[0].status).unwrap();
            return (*code, message);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the verify Job did not end"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The volume example (examples/bronzebackfill-testnet-volume.yaml): output on a claim mounted
/// into the operator (as the example's `helm install` lines say) and into every worker, PAS on.
#[tokio::test]
async fn the_volume_example_runs_with_its_claim_in_the_operator_and_the_workers() {
    let Some(env) = TestEnv::start("volume").await else {
        return;
    };
    let Some(image) = cluster_image() else {
        return;
    };
    let ledgers = 30;
    let ds = env.datastore(ledgers);
    env.upload(&ds, None);
    // The example's backfill, pointed at this test's datastore and bounded.
    let example: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(workspace().join("examples/bronzebackfill-testnet-volume.yaml"))
            .unwrap(),
    )
    .unwrap();
    let storage = example["spec"]["storage"].clone();
    assert_eq!(storage["volumeClaimName"], "bronze-data");
    let local_dir = storage["localDir"].as_str().unwrap().to_string();
    let pvc_dir = env.dir.path().join("pv-bronze-data");
    std::fs::create_dir_all(&pvc_dir).unwrap();
    env.apply(&json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "bronze-data", "namespace": env.ns},
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}},
    }))
    .await;
    let kubelet = env.container_kubelet(
        Faults::default(),
        BTreeMap::from([("bronze-data".to_string(), PathBuf::from(&pvc_dir))]),
    );
    // The example's `helm install --set` lines, as values.
    let mut values = image_values(&image);
    merge(
        &mut values,
        json!({"operator": {
            "extraVolumes": [{"name": "bronze-data", "persistentVolumeClaim": {"claimName": "bronze-data"}}],
            "extraVolumeMounts": [{"name": "bronze-data", "mountPath": local_dir}],
        }}),
    );
    // A private registry's pull Secret (the chart's imagePullSecrets): on the operator's Pod, and
    // on the workers' through the worker ServiceAccount.
    merge(
        &mut values,
        json!({"imagePullSecrets": [{"name": "regcred"}]}),
    );
    let chart = env.render_with(values);
    for sa in chart.iter().filter(|o| o["kind"] == "ServiceAccount") {
        env.apply(sa).await;
    }
    install_deployment(&env, &chart).await;
    // JSON merge: the S3 output's fields go, the example's local storage comes.
    let mut output = json!({"bucket": null, "endpoint": null, "region": null});
    merge(&mut output, storage);
    let spec = env.spec(
        1 + ledgers,
        json!({
            "storage": output,
            "pas": example["spec"]["pas"],
            "worker": {"resources": example["spec"]["worker"]["resources"],
                       "serviceAccountName": example["spec"]["worker"]["serviceAccountName"]},
        }),
    );
    env.create("volume", spec).await;
    let b = env.succeeded("volume", LONG).await;

    let record = kubelet.record();
    assert_eq!(operator_containers(&record), 1);
    assert_confined(&record);
    for (pod, args) in &record.containers {
        let mount = format!("--volume={}:{local_dir}:rw", pvc_dir.display());
        assert!(
            has(args, &mount),
            "Pod {pod}: the claim is not mounted writable: {args:?}"
        );
    }
    // The partitions and the operator's audit outbox are on the claim.
    let dataset = pvc_dir.join("bronze/pubnet/cluster/v1/ledgers_lcm_raw");
    for start in [2, 12, 22] {
        let part = dataset.join(format!("range={start}-{}", start + 9));
        assert!(
            part.join("_manifest.json").exists(),
            "{} missing",
            part.display()
        );
    }
    let outbox = pvc_dir.join("bronze/_pas/pubnet/cluster/v1");
    let events: Vec<String> = std::fs::read_dir(&outbox)
        .unwrap_or_else(|e| panic!("{}: {e}", outbox.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| !n.starts_with('_') && n.ends_with(".json"))
        .collect();
    assert_eq!(events.len(), 3, "one PAS event per partition: {events:?}");
    assert!(b.status.unwrap().pas.and_then(|p| p.chain_head).is_some());
    // The Pods report what a kubelet reports.
    // (The operator sequences a partition from storage, so the backfill can be Succeeded just
    // before the kubelet has reported the last worker's exit: wait for it.)
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &env.ns);
    eventually("every worker Pod Succeeded", LONG, || {
        let pods = pods.clone();
        async move {
            let workers = pods
                .list(&ListParams::default().labels("app.kubernetes.io/name=bronze-worker"))
                .await
                .unwrap();
            workers
                .items
                .iter()
                .all(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded"))
        }
    })
    .await;
    let workers = pods
        .list(&ListParams::default().labels("app.kubernetes.io/name=bronze-worker"))
        .await
        .unwrap();
    let all = pods.list(&ListParams::default()).await.unwrap().items;
    assert!(all.len() > workers.items.len(), "the operator's Pod too");
    for pod in &all {
        let secrets = pod.spec.as_ref().unwrap().image_pull_secrets.clone();
        assert_eq!(
            secrets
                .unwrap_or_default()
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>(),
            ["regcred"],
            "Pod {:?} lacks the chart's imagePullSecrets",
            pod.metadata.name
        );
    }
    kubelet.stop().await;
}

/// A Pod asking for something the container mode cannot honour fails with the reason.
#[tokio::test]
async fn a_pod_the_container_mode_cannot_honour_fails_with_the_reason() {
    let Some(env) = TestEnv::start("refused").await else {
        return;
    };
    let Some(image) = cluster_image() else {
        return;
    };
    let kubelet = env.container_kubelet(Faults::default(), BTreeMap::new());
    env.apply(&json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "nfs", "namespace": env.ns},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "c", "image": image, "args": ["-version"]}],
            "volumes": [{"name": "v", "nfs": {"server": "127.0.0.1", "path": "/"}}],
        },
    }))
    .await;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &env.ns);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        let status = pods.get("nfs").await.unwrap().status.unwrap_or_default();
        if status.phase.as_deref() == Some("Failed") {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not Failed: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(status.reason.as_deref(), Some("ContainerModeUnsupported"));
    assert!(
        status
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("nfs volumes are not supported"),
        "{status:?}"
    );
    assert!(kubelet.record().containers.is_empty(), "it never ran");
    kubelet.stop().await;
}

/// `helm upgrade` in the middle of a backfill (docs/runbook.md, "Upgrading the CRD"): the
/// chart's Deployment moves to a newer image (here the same build under a new tag), `Recreate`
/// stops the old operator's container, the new one adopts the running Jobs and finishes; the
/// output is the standalone run's, byte for byte.
#[tokio::test]
async fn a_helm_upgrade_mid_backfill_replaces_the_operator_and_the_backfill_finishes() {
    let Some(env) = TestEnv::start("upgrade").await else {
        return;
    };
    let Some(image) = cluster_image() else {
        return;
    };
    let next = format!("{image}-next");
    let tagged = crate::container::podman_cmd()
        .args(["tag", &image, &next])
        .status()
        .unwrap();
    assert!(tagged.success(), "podman tag {image} {next}");
    let ds = env.datastore(LEDGERS);
    env.upload(&ds, None);
    let kubelet = env.container_kubelet(Faults::default(), BTreeMap::new());
    let values = image_values(&image);
    install_deployment(&env, &env.render_with(values.clone())).await;
    env.create("upgrade", env.spec(1 + LEDGERS, json!({})))
        .await;
    env.wait("upgrade", "a third committed", LONG, |s| {
        never_failed(s);
        s.last_committed_ledger.unwrap_or(0) >= 21
    })
    .await;
    // `helm upgrade -f my-values.yaml` with the new image: the user's values, the new tag.
    let mut upgraded = values;
    let (_, tag) = next.rsplit_once(':').unwrap();
    merge(
        &mut upgraded,
        json!({"image": {"tag": tag}, "workers": {"image": {"tag": tag}}}),
    );
    install_deployment(&env, &env.render_with(upgraded)).await;
    env.succeeded("upgrade", LONG).await;

    let record = kubelet.record();
    let operators: Vec<&Vec<String>> = record
        .containers
        .iter()
        .filter(|(_, args)| has(args, "--entrypoint=/usr/local/bin/bronze-operator"))
        .map(|(_, args)| args)
        .collect();
    assert_eq!(operators.len(), 2, "the old operator, then the new one");
    assert!(has(operators[1], &next), "the new operator runs {next}");
    assert_confined(&record);
    assert_exact_output(&env, "upgrade").await;
    kubelet.stop().await;
    // `podman untag IMAGE` alone removes every name of the image, the tier's own tag too
    // (a test still running would lose its image): name the one tag to remove.
    let _ = crate::container::podman_cmd()
        .args(["untag", &next, &next])
        .status();
}
