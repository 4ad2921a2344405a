//! The runbook's commands (docs/runbook.md), run as written against the real binary: every
//! block marked `<!-- runbook-test: run -->` runs in order in one scratch directory (with `/data/`
//! pointing into it and `bronze-copier` on PATH), and every config marked
//! `<!-- runbook-test: validate -->` passes `bronze-copier -validate`. The docs tests of
//! `ship/` check that every other command block is marked untested.

use std::path::Path;
use std::process::Command;

use crate::binary::run_config;
use crate::datastore::{fixture, repo_root};

/// (marker, block body) for every marked fenced block of a Markdown file.
fn marked_blocks(markdown: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut marker: Option<String> = None;
    let mut body: Option<String> = None;
    for line in markdown.lines() {
        if let Some(b) = body.as_mut() {
            if line.trim_start().starts_with("```") {
                out.push((marker.take().unwrap(), body.take().unwrap()));
            } else {
                b.push_str(line);
                b.push('\n');
            }
            continue;
        }
        if let Some(m) = line
            .trim()
            .strip_prefix("<!-- runbook-test: ")
            .and_then(|r| r.strip_suffix(" -->"))
        {
            marker = Some(m.to_string());
        } else if line.trim_start().starts_with("```") && marker.is_some() {
            body = Some(String::new());
        } else if !line.trim().is_empty() && marker.is_some() {
            panic!("a runbook-test marker must be followed by a code block, found {line:?}");
        }
    }
    out
}

fn shell(dir: &Path, script: &str) -> (i32, String) {
    let bin = dir.join("bin");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("bash");
    cmd.arg("-euo").arg("pipefail").arg("-c").arg(script);
    cmd.current_dir(dir).env("PATH", path);
    for (key, _) in std::env::vars() {
        if key.starts_with("AWS_") || key.starts_with("GOOGLE_") || key == "CONFIG_FILE" {
            cmd.env_remove(key);
        }
    }
    for var in bronze::config::ENV_VARS.iter().map(|(v, _, _)| *v) {
        cmd.env_remove(var);
    }
    cmd.env("AWS_EC2_METADATA_DISABLED", "true");
    let out = cmd.output().expect("run bash");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn runbook_commands_run_as_written() {
    let runbook = std::fs::read_to_string(repo_root().join("docs/runbook.md")).unwrap();
    let blocks = marked_blocks(&runbook);
    let tmp = bronze_testkit::tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = format!("{}/data/", dir.display());
    for sub in ["bronze", "state", "pas-backup"] {
        std::fs::create_dir_all(dir.join("data").join(sub)).unwrap();
    }
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_bronze-copier"),
        dir.join("bin/bronze-copier"),
    )
    .unwrap();
    // The runbook's testnet scenario, bounded, on the bundled real ledgers.
    let config = format!(
        "copier_id: runbook\n\
         era: {{era_id: pre_p23, version_label: v1, network: testnet, ledger_start: 997, ledger_end: 999, partition_size: 2}}\n\
         source: {{mode: local, local_path: {}}}\n\
         storage: {{backend: local, local_dir: {data}bronze}}\n\
         checkpoint: {{enabled: true, dir: {data}state}}\n\
         pas: {{enabled: true, backup_dir: {data}pas-backup}}\n\
         perf: {{max_in_flight_partitions: 2}}\n",
        fixture("testnet-datastore").display()
    );
    std::fs::write(dir.join("config.yaml"), config).unwrap();

    let (mut runs, mut validated) = (0, 0);
    for (i, (marker, body)) in blocks.iter().enumerate() {
        let body = body.replace("/data/", &data);
        match marker.as_str() {
            "run" => {
                let (code, out) = shell(dir, &body);
                assert_eq!(
                    code, 0,
                    "runbook block {i} failed:\n{body}\n--- output ---\n{out}"
                );
                assert!(!out.contains("MISMATCH"), "block {i}:\n{out}");
                runs += 1;
            }
            "validate" => {
                let file = dir.join(format!("runbook-config-{i}.yaml"));
                std::fs::write(&file, &body).unwrap();
                let (code, out) = shell(
                    dir,
                    &format!("bronze-copier -config {} -validate", file.display()),
                );
                assert_eq!(
                    code, 0,
                    "runbook config {i} does not validate:\n{body}\n{out}"
                );
                validated += 1;
            }
            other => panic!("unknown runbook-test marker {other:?}"),
        }
    }
    assert!(
        runs >= 8 && validated == 2,
        "runs {runs}, validated {validated}"
    );
    // The output of the last run exists and the state is where the runbook says.
    assert!(
        dir.join("data/state/checkpoint_testnet_pre_p23_v1.json")
            .exists()
    );
    let (code, out) = shell(dir, "bronze-copier verify -config config.yaml");
    assert_eq!(code, 0, "{out}");
}

#[test]
fn the_formats_page_recipe_recomputes_manifest_sha256() {
    let tmp = bronze_testkit::tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let config = format!(
        "era: {{network: testnet, ledger_start: 997, ledger_end: 998, partition_size: 2}}\n\
         source: {{mode: local, local_path: {}}}\n\
         storage: {{backend: local, local_dir: {}}}\n\
         checkpoint: {{enabled: false}}\n",
        fixture("testnet-datastore").display(),
        dir.display()
    );
    let path = dir.join("c.yaml");
    std::fs::write(&path, config).unwrap();
    run_config(&path, 0);
    let partition = dir.join("bronze/testnet/pre_p23/v1/ledgers_lcm_raw/range=997-998");
    let manifest = std::fs::read_to_string(partition.join("_manifest.json")).unwrap();
    let recorded = manifest
        .split("\"manifest_sha256\": \"sha256:")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("manifest_sha256");
    let formats = std::fs::read_to_string(repo_root().join("docs/formats.md")).unwrap();
    let recipe = formats
        .lines()
        .find(|l| l.trim_start().starts_with("sed -E") && l.contains("manifest_sha256"))
        .expect("the sed recipe in docs/formats.md")
        .trim();
    let (code, out) = shell(&partition, recipe);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.split_whitespace().next(), Some(recorded), "{recipe}");
}

#[test]
fn the_demo_config_runs_as_make_demo_runs_it() {
    // `make demo`: `bronze-copier -config examples/demo-testnet.yaml` from the repository root,
    // here with its relative paths pointed at a scratch directory.
    let tmp = bronze_testkit::tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo_root().join("examples/demo-testnet.yaml")).unwrap();
    let text = text
        .replace(
            "tests/fixtures/",
            &format!("{}/tests/fixtures/", repo_root().display()),
        )
        .replace(
            "demo-output/",
            &format!("{}/demo-output/", tmp.path().display()),
        );
    let config = tmp.path().join("demo.yaml");
    std::fs::write(&config, text).unwrap();
    run_config(&config, 0);
    let out = tmp.path().join("demo-output");
    assert!(
        out.join("state/checkpoint_testnet_pre_p23_v1.json")
            .exists()
    );
    assert!(
        out.join(
            "bronze-data/bronze/testnet/pre_p23/v1/ledgers_lcm_raw/range=999-999/_manifest.json"
        )
        .exists()
    );
}
