//! Shared by the end-to-end tests of the catalog, metrics and health: a generated pubnet
//! datastore of real-sized ledgers, a config file, and the real binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};

use bronze::generate::{GenerateSpec, generate_datastore};
use bronze_testkit::{TempDir, workspace_root};

pub const FIRST_LEDGER: u32 = 2;

/// A scratch directory with a generated pubnet datastore of `ledgers` ledgers from ledger 2.
pub struct Workdir {
    pub dir: TempDir,
    pub ledgers: u32,
}

impl Workdir {
    pub fn new(ledgers: u32) -> Self {
        let dir = bronze_testkit::tempfile::Builder::new()
            .prefix("bronze-e2e-")
            .tempdir()
            .unwrap();
        let spec = GenerateSpec {
            first_ledger: FIRST_LEDGER,
            ..GenerateSpec::pubnet_variants(
                dir.path().join("datastore"),
                &workspace_root(),
                ledgers,
            )
        };
        generate_datastore(&spec).unwrap();
        Self { dir, ledgers }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn last_ledger(&self) -> u32 {
        FIRST_LEDGER + self.ledgers - 1
    }

    pub fn out_dir(&self) -> PathBuf {
        self.path().join("out")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.path().join("state")
    }

    pub fn checkpoint_path(&self) -> PathBuf {
        self.state_dir().join("checkpoint_pubnet_pre_p23_v1.json")
    }

    pub fn catalog_queue_path(&self) -> PathBuf {
        self.state_dir()
            .join("catalog_pending_pubnet_pre_p23_v1.json")
    }

    /// The dataset folder under the output directory (prefix `bronze/`).
    pub fn dataset_dir(&self) -> PathBuf {
        self.out_dir()
            .join("bronze/pubnet/pre_p23/v1/ledgers_lcm_raw")
    }

    /// Writes `config.yaml` for a run over ledgers 2..=`ledger_end` (0 follows the tip) in
    /// partitions of `partition_size`, with `extra` YAML appended (catalog, metrics, …).
    pub fn write_config(&self, ledger_end: u32, partition_size: u32, extra: &str) -> PathBuf {
        let text = format!(
            r#"copier_id: "e2e"
era:
  era_id: "pre_p23"
  version_label: "v1"
  network: "pubnet"
  ledger_start: {FIRST_LEDGER}
  ledger_end: {ledger_end}
  partition_size: {partition_size}
  ingested_at: "2025-01-15T10:00:00Z"
source:
  mode: "local"
  local_path: "{source}"
  poll_interval_ms: 200
storage:
  backend: "local"
  local_dir: "{out}"
  prefix: "bronze/"
checkpoint:
  enabled: true
  dir: "{state}"
perf:
  max_in_flight_partitions: 2
  workers: 2
  retry_attempts: 2
  retry_backoff_ms: 100
logging:
  format: "text"
  level: "info"
{extra}
"#,
            source = self.path().join("datastore").display(),
            out = self.out_dir().display(),
            state = self.state_dir().display(),
        );
        let path = self.path().join("config.yaml");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The committed manifests in storage, in ledger order.
    pub fn manifests(&self) -> Vec<bronze::publish::Manifest> {
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir(self.dataset_dir()) else {
            return out;
        };
        for e in entries.flatten() {
            let m = e.path().join("_manifest.json");
            if let Ok(bytes) = std::fs::read(&m) {
                out.push(bronze::publish::Manifest::from_json(&bytes).unwrap());
            }
        }
        out.sort_by_key(|m| m.partition.start);
        out
    }
}

/// The copier binary, with an environment that can never reach a cloud.
pub fn copier() -> Command {
    crate::common::copier()
}

/// Runs `bronze-copier -config <config> --no-progress` to the end.
pub fn run_copier(config: &Path) -> Output {
    copier()
        .arg("-config")
        .arg(config)
        .arg("--no-progress")
        .output()
        .unwrap()
}

/// Starts the copier in the background, stdout and stderr to `log`.
pub fn spawn_copier(config: &Path, log: &Path) -> Child {
    let out = std::fs::File::create(log).unwrap();
    let err = out.try_clone().unwrap();
    copier()
        .arg("-config")
        .arg(config)
        .arg("--no-progress")
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap()
}

/// stdout and stderr together, for assertions and failure messages.
pub fn text_of(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Waits up to `seconds` for `done`, polling every 50 ms.
pub fn wait_until(seconds: u64, mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    while std::time::Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    done()
}
