//! Shared helpers: paths, the one run of the chart/sample checker, small YAML helpers.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::{Value, json};

pub const CHART: &str = "charts/bronze-operator";
pub const RELEASE: &str = "bronze-operator";
pub const NAMESPACE: &str = "bronze-system";
/// The Kubernetes version the rendered objects are validated against.
pub const KUBE_VERSION: &str = "1.36.0";

pub fn root() -> PathBuf {
    bronze_testkit::workspace_root()
}

pub fn read(rel: &str) -> String {
    let path = root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Files in `dir` (relative to the workspace root) ending in `suffix`, sorted, as relative paths.
pub fn files(dir: &str, suffix: &str) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(root().join(dir))
        .unwrap_or_else(|e| panic!("list {dir}: {e}"))
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(suffix))
        .map(|n| format!("{dir}/{n}"))
        .collect();
    out.sort();
    out
}

/// The values sets the chart is rendered with: `ci/<name>-values.yaml`.
pub fn values_sets() -> Vec<(String, String)> {
    files(&format!("{CHART}/ci"), "-values.yaml")
        .into_iter()
        .map(|p| {
            let name = Path::new(&p).file_name().unwrap().to_string_lossy();
            (name.trim_end_matches("-values.yaml").to_string(), p)
        })
        .collect()
}

pub fn bad_values_sets() -> Vec<(String, String)> {
    files(&format!("{CHART}/ci/bad"), ".yaml")
        .into_iter()
        .map(|p| {
            let name = Path::new(&p).file_stem().unwrap().to_string_lossy();
            (name.to_string(), p)
        })
        .collect()
}

pub fn samples() -> Vec<String> {
    files("examples", ".yaml")
        .into_iter()
        .filter(|p| p.starts_with("examples/bronzebackfill-"))
        .collect()
}

/// A sample with a misspelt field, which the CRD's schema check must reject.
pub const TYPO_SAMPLE: &str = "typo-sample.yaml";

/// The result of `tests/py/chart_check.py` over every values set, bad values set and sample
/// (see that script for the shape), computed once per test process.
pub fn checks() -> &'static Value {
    static CHECKS: OnceLock<Value> = OnceLock::new();
    CHECKS.get_or_init(run_checks)
}

fn run_checks() -> Value {
    let scratch = bronze_testkit::tempfile::tempdir().unwrap();
    // A sample whose spec has a misspelt field (partitionsize): the API server would drop it
    // silently, so the check must reject it.
    let typo = scratch.path().join(TYPO_SAMPLE);
    let sample =
        read("examples/bronzebackfill-minio.yaml").replace("partitionSize:", "partitionsize:");
    assert!(sample.contains("partitionsize:"));
    std::fs::write(&typo, sample).unwrap();
    let mut samples: Vec<Value> = samples().iter().map(|s| json!(root().join(s))).collect();
    samples.push(json!(typo));
    let map = |sets: Vec<(String, String)>| -> Value {
        sets.into_iter()
            .map(|(name, path)| (name, json!(root().join(path))))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    let request = json!({
        "chart": root().join(CHART),
        "kube_version": KUBE_VERSION,
        "release": RELEASE,
        "namespace": NAMESPACE,
        "values": map(values_sets()),
        "bad_values": map(bad_values_sets()),
        "crd": root().join(format!("{CHART}/crds/bronzebackfills.yaml")),
        "samples": samples,
    });
    let request_file = scratch.path().join("request.json");
    std::fs::write(&request_file, request.to_string()).unwrap();
    let out = Command::new(bronze_testkit::python())
        .arg(root().join("tests/py/chart_check.py"))
        .arg(&request_file)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("run tests/py/chart_check.py");
    assert!(
        out.status.success(),
        "chart_check.py failed ({}); is the venv up to date (`make test-deps`)?\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let mut value: Value = serde_json::from_slice(&out.stdout).expect("chart_check.py JSON");
    // Key samples by their path relative to the workspace (the typo sample by its file name).
    let samples = value["samples"].as_object().unwrap().clone();
    let rekeyed: serde_json::Map<String, Value> = samples
        .into_iter()
        .map(|(k, v)| {
            let rel = Path::new(&k)
                .strip_prefix(root())
                .map(|p| p.to_string_lossy().to_string())
                .unwrap_or_else(|_| Path::new(&k).file_name().unwrap().to_string_lossy().into());
            (rel, v)
        })
        .collect();
    value["samples"] = rekeyed.into();
    value
}

/// The objects rendered for values set `set`.
pub fn rendered(set: &str) -> &'static [Value] {
    let render = &checks()["renders"][set];
    assert!(render.is_object(), "values set {set} was not rendered");
    assert!(
        render["error"].is_null(),
        "values set {set} does not render: {}",
        render["error"]
    );
    render["objects"].as_array().unwrap()
}

/// The rendered object of `kind` named `name` in values set `set`.
pub fn object<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .map(|o| &o["object"])
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

pub fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects
        .iter()
        .map(|o| &o["object"])
        .filter(|o| o["kind"] == kind)
        .collect()
}

pub fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .map(|v| v.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}
