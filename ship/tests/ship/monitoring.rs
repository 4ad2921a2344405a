//! The chart's monitoring: the PrometheusRule checked and unit-tested with the real `promtool`
//! (Debian package `prometheus`) as the Helm engine renders it, and the Grafana dashboard
//! ConfigMap, whose every queried metric must be one the binaries export.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use bronze_operator::crd::{
    BronzeBackfillStatus, CatalogStatus, PasStatus, Phase, ProgressStatus, RunningRange,
};
use bronze_operator::metrics::Metrics;
use bronze_testkit::promql;
use serde_json::Value;

use crate::common::*;

const DASHBOARD: &str = "charts/bronze-operator/dashboards/bronze-backfills.json";
const PROMTOOL_TESTS: &str = "ship/tests/promtool/alerts.test.yaml";
/// Queried metrics no Bronze binary exports, with who does: the dashboard's worker memory
/// panel reads the kubelet's cAdvisor metric, and BronzeOperatorDown Prometheus's own `up`.
const EXTERNAL: &[&str] = &["container_memory_working_set_bytes", "up"];

const ALERTS: [&str; 6] = [
    "BronzeBackfillFailed",
    "BronzeBackfillNoProgress",
    "BronzeBackfillPasUndeliveredGrowing",
    "BronzeBackfillCatalogBehind",
    "BronzeOperatorDown",
    "BronzeOperatorLeaderMissing",
];

fn promtool(args: &[&str], dir: &std::path::Path) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run promtool ({e}): install Debian's `prometheus` (`make test-deps`)")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

/// The rendered PrometheusRule's groups (`spec`), as a Prometheus rule file.
fn rule_file(set: &str) -> Value {
    let rules = of_kind(rendered(set), "PrometheusRule");
    assert_eq!(rules.len(), 1, "{set}: one PrometheusRule");
    rules[0]["spec"].clone()
}

fn alert_names(spec: &Value) -> Vec<String> {
    spec["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .map(|r| r["alert"].as_str().unwrap().to_string())
        .collect()
}

fn rule_exprs(spec: &Value) -> Vec<String> {
    spec["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .map(|r| r["expr"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn monitoring_is_off_by_default() {
    let objects = rendered("defaults");
    assert!(of_kind(objects, "PrometheusRule").is_empty());
    assert!(
        of_kind(objects, "ConfigMap").is_empty(),
        "no dashboard ConfigMap by default"
    );
}

#[test]
fn promtool_checks_the_rendered_rules_and_their_unit_tests_pass() {
    for set in ["monitoring", "all-features"] {
        let spec = rule_file(set);
        assert_eq!(alert_names(&spec), ALERTS, "{set}");
        let dir = bronze_testkit::tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("rules.yaml"),
            serde_yaml_ng::to_string(&spec).unwrap(),
        )
        .unwrap();
        let out = promtool(&["check", "rules", "rules.yaml"], dir.path());
        assert!(out.contains("SUCCESS: 6 rules found"), "{set}: {out}");
        if set == "monitoring" {
            // The unit tests are written for the default windows and release names.
            std::fs::copy(
                root().join(PROMTOOL_TESTS),
                dir.path().join("alerts.test.yaml"),
            )
            .unwrap();
            let out = promtool(&["test", "rules", "alerts.test.yaml"], dir.path());
            assert!(out.contains("SUCCESS"), "{out}");
        }
    }
    // Each alert has a fire and a stay-quiet case.
    let tests = read(PROMTOOL_TESTS);
    for alert in ALERTS {
        assert!(
            tests.contains(&format!("alertname: {alert}\n        exp_alerts: []")),
            "no quiet case for {alert}"
        );
        assert!(
            tests.contains(&format!("alertname: {alert}\n        exp_alerts:\n")),
            "no firing case for {alert}"
        );
    }
}

#[test]
fn values_change_the_rendered_rules() {
    let spec = rule_file("all-features");
    let text = serde_json::to_string(&spec).unwrap();
    // noProgressFor: 20m, and the alert labels of the values.
    assert!(text.contains("offset 20m"), "{text}");
    assert!(text.contains("\"team\":\"data\""), "{text}");
    let rule = of_kind(rendered("all-features"), "PrometheusRule")[0];
    assert_eq!(
        rule["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
}

#[test]
fn the_dashboard_configmap_carries_the_dashboard_for_the_grafana_sidecar() {
    let file: Value = serde_json::from_str(&read(DASHBOARD)).unwrap();
    for (set, namespace) in [("monitoring", NAMESPACE), ("all-features", "monitoring")] {
        let cm = object(rendered(set), "ConfigMap", "bronze-operator-dashboard");
        assert_eq!(cm["metadata"]["namespace"], namespace, "{set}");
        assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1", "{set}");
        let data: Value =
            serde_json::from_str(cm["data"]["bronze-backfills.json"].as_str().unwrap()).unwrap();
        assert_eq!(data, file, "{set}: the ConfigMap holds the dashboard file");
    }
    let cm = object(
        rendered("all-features"),
        "ConfigMap",
        "bronze-operator-dashboard",
    );
    assert_eq!(cm["metadata"]["annotations"]["grafana_folder"], "Bronze");
}

/// The operator's registry with every family populated, as after reconciling a backfill with
/// a catalog and PAS that has committed.
fn operator_scrape() -> String {
    let m = Metrics::default();
    let status = BronzeBackfillStatus {
        phase: Some(Phase::Running),
        last_committed_ledger: Some(1000),
        progress: Some(ProgressStatus {
            committed_partitions: 3,
            total_partitions: Some(10),
            percent: Some(30),
            summary: "3/10 (30%)".into(),
            started_at: "2026-01-01T00:00:00Z".into(),
            started_from_ledger: 0,
        }),
        pas: Some(PasStatus {
            chain_head: None,
            event_count: 3,
            outbox: "s3://b/p_pas/".into(),
            undelivered: Some(1),
        }),
        catalog: Some(CatalogStatus {
            database: "postgres://u:***@db/x".into(),
            strict: true,
            recorded_through: Some(1000),
            unrecorded_partitions: 0,
            last_error: None,
        }),
        running_partitions: vec![RunningRange {
            range: "1001-2000".into(),
            job: "j".into(),
            attempt: 1,
        }],
        ..Default::default()
    };
    m.observe_status("ns/b", &status, 1);
    m.reconciled(Duration::from_millis(4), None);
    m.job_created();
    m.set_leader(true);
    m.render()
}

#[test]
fn every_metric_the_dashboard_and_the_alerts_query_is_exported() {
    let dashboard: Value = serde_json::from_str(&read(DASHBOARD)).unwrap();
    let exprs = promql::dashboard_exprs(&dashboard);
    assert!(exprs.len() >= 20, "{exprs:?}");
    let mut names: BTreeSet<String> = exprs.iter().flat_map(|e| promql::metric_names(e)).collect();
    let dashboard_names = names.clone();
    names.extend(
        rule_exprs(&rule_file("monitoring"))
            .iter()
            .flat_map(|e| promql::metric_names(e)),
    );
    let scrape = operator_scrape();
    let mut copier = BTreeSet::new();
    for name in &names {
        if name.starts_with("bronze_operator_") {
            assert!(
                promql::exported(&scrape, name),
                "{name} is queried but the operator does not export it:\n{scrape}"
            );
        } else if name.starts_with("bronze_copier_") {
            copier.insert(name.clone());
        } else {
            assert!(
                EXTERNAL.contains(&name.as_str()),
                "{name} is queried but no Bronze binary exports it"
            );
        }
    }
    // The copier's are checked against a real run's /metrics (worker/tests/e2e/dashboard.rs);
    // the panels must not lose them silently.
    assert!(copier.len() >= 6, "{copier:?}");
    // What an on-call person looks at, on the dashboard.
    for wanted in [
        "bronze_operator_committed_partitions",
        "bronze_operator_total_partitions",
        "bronze_operator_last_committed_ledger",
        "bronze_operator_phase",
        "bronze_operator_running_jobs",
        "bronze_operator_failed_partitions",
        "bronze_operator_pas_undelivered_events",
        "bronze_operator_catalog_unrecorded_partitions",
        "bronze_operator_checkpoint_timestamp_seconds",
        "bronze_operator_leader",
        "bronze_copier_ledgers_processed_total",
        "container_memory_working_set_bytes",
    ] {
        assert!(
            dashboard_names.contains(wanted),
            "no panel queries {wanted}"
        );
    }
}

/// The chart's PodMonitor scrapes what the operator creates: its selector matches the labels of
/// a worker Pod `build_job` makes from a shipped sample, in the namespace the Pods live, and its
/// port is the worker container's metrics port (on which the worker serves the copier's metrics:
/// worker/tests/e2e/worker_mode.rs).
#[test]
fn the_pod_monitor_scrapes_the_worker_pods_the_operator_creates() {
    use bronze_operator::crd::BronzeBackfill;
    use bronze_operator::job::{WORKER_METRICS_PORT, WORKER_METRICS_PORT_NAME, build_job};
    use bronze_operator::plan::JobRequest;

    assert!(
        of_kind(rendered("defaults"), "PodMonitor").is_empty(),
        "no PodMonitor by default"
    );
    let monitors = of_kind(rendered("monitoring"), "PodMonitor");
    assert_eq!(monitors.len(), 1);
    let monitor = &monitors[0]["spec"];

    let mut backfill: BronzeBackfill =
        serde_yaml_ng::from_str(&read("examples/bronzebackfill-minio.yaml")).unwrap();
    backfill.metadata.namespace = Some(NAMESPACE.into());
    let request = JobRequest {
        name: "minio-2-10001".into(),
        range: bronze::partition::LedgerRange::new(2, 10001),
        attempt: 1,
        rebuild: None,
    };
    let job = build_job(&backfill, &request, "2026-01-01T00:00:00.000Z");
    let template = job.spec.unwrap().template;
    let pod_labels = template.metadata.unwrap().labels.unwrap();
    let selector = monitor["selector"]["matchLabels"].as_object().unwrap();
    assert!(!selector.is_empty());
    for (key, value) in selector {
        assert_eq!(
            pod_labels.get(key).map(String::as_str),
            value.as_str(),
            "the PodMonitor selects {key}={value}, the worker Pod has {pod_labels:?}"
        );
    }
    let ns = &monitor["namespaceSelector"];
    assert!(
        ns["any"] == true || strings(&ns["matchNames"]).contains(&NAMESPACE.to_string()),
        "the PodMonitor does not look in the workers' namespace: {ns}"
    );
    let container = &template.spec.unwrap().containers[0];
    let port = container
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some(WORKER_METRICS_PORT_NAME))
        .expect("the worker container has no metrics port");
    assert_eq!(port.container_port, i32::from(WORKER_METRICS_PORT));
    let endpoint = &monitor["podMetricsEndpoints"][0];
    assert_eq!(endpoint["port"], WORKER_METRICS_PORT_NAME);
    assert_eq!(endpoint["path"], "/metrics");
    let env: Vec<(String, String)> = container
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
        .collect();
    assert!(
        env.contains(&("METRICS_ENABLED".into(), "true".into())),
        "{env:?}"
    );
    assert!(
        env.contains(&("METRICS_ADDRESS".into(), format!(":{WORKER_METRICS_PORT}"))),
        "{env:?}"
    );
}
