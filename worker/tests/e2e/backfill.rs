//! Shared helpers of the worker's end-to-end tests: a generated datastore, a config file, the
//! real `bronze-copier` binary, and readers for what it wrote.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bronze::pas::{ChainId, ChainView, FileOutbox, Outbox, PasEvent, analyse};
use bronze_testkit::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_bronze-copier");
pub const INGESTED_AT: &str = "2025-01-01T00:00:00.000Z";

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Writes a datastore of `ledgers` small (testnet-sized) real ledgers from ledger 2, 10 per
/// object.
pub fn generate(dir: &Path, ledgers: u32) {
    let spec = bronze::generate::GenerateSpec {
        ledgers_per_batch: 10,
        batches_per_partition: 100,
        ..bronze::generate::GenerateSpec::new(
            dir,
            vec![workspace().join("tests/fixtures/testnet-datastore/FFFFFFFF--0-63999")],
            bronze::network::TESTNET_PASSPHRASE,
            2,
            ledgers,
        )
    };
    bronze::generate::generate_datastore(&spec).expect("generate datastore");
}

/// A backfill's directories and config.
pub struct Setup {
    pub root: TempDir,
    pub ledger_start: u32,
    pub ledger_end: u32,
    pub partition_size: u32,
    /// `pas:` block lines (without the key), or None for no PAS.
    pub pas: Option<String>,
    /// A whole `storage:` block replacing the local one.
    pub storage_block: Option<String>,
    /// Extra environment for the binary (e.g. S3 credentials of a moto server).
    pub env: Vec<(String, String)>,
    pub extra: String,
}

impl Setup {
    /// A datastore of `ledgers` ledgers (2..=ledgers+1) in a fresh temp dir.
    pub fn new(ledgers: u32, partition_size: u32) -> Setup {
        let root = bronze_testkit::tempfile::Builder::new()
            .prefix("bronze-e2e-")
            .tempdir()
            .unwrap();
        generate(&root.path().join("datastore"), ledgers);
        Setup {
            root,
            ledger_start: 2,
            ledger_end: ledgers + 1,
            partition_size,
            pas: Some(String::new()),
            storage_block: None,
            env: Vec::new(),
            extra: String::new(),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    pub fn backup_dir(&self) -> PathBuf {
        self.path("pas-backup")
    }

    pub fn storage(&self) -> PathBuf {
        self.path("out")
    }

    /// The dataset folder (`<storage>/bronze/testnet/pre_p23/v1/ledgers_lcm_raw`).
    pub fn dataset(&self) -> PathBuf {
        self.storage()
            .join("bronze/testnet/pre_p23/v1/ledgers_lcm_raw")
    }

    pub fn partition_dir(&self, start: u32, end: u32) -> PathBuf {
        self.dataset().join(format!("range={start}-{end}"))
    }

    pub fn checkpoint_path(&self) -> PathBuf {
        self.path("state/checkpoint_testnet_pre_p23_v1.json")
    }

    /// Writes the config file and returns its path.
    pub fn config(&self) -> PathBuf {
        let root = self.root.path().display();
        let pas = match &self.pas {
            None => String::new(),
            Some(lines) => {
                format!("pas:\n  enabled: true\n  backup_dir: \"{root}/pas-backup\"\n{lines}\n")
            }
        };
        let storage = self.storage_block.clone().unwrap_or_else(|| {
            format!("storage:\n  backend: \"local\"\n  local_dir: \"{root}/out\"\n")
        });
        let text = format!(
            r#"copier_id: "e2e"
era:
  era_id: "pre_p23"
  version_label: "v1"
  network: "testnet"
  ledger_start: {start}
  ledger_end: {end}
  partition_size: {size}
  ingested_at: "{INGESTED_AT}"
source:
  mode: "local"
  local_path: "{root}/datastore"
{storage}checkpoint:
  enabled: true
  dir: "{root}/state"
perf:
  max_in_flight_partitions: 3
  retry_attempts: 2
  retry_backoff_ms: 50
{pas}{extra}"#,
            start = self.ledger_start,
            end = self.ledger_end,
            size = self.partition_size,
            extra = self.extra,
        );
        let path = self.path("config.yaml");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// A command running the copier on this setup's config.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("-config").arg(self.config()).args(args);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd
    }

    /// Runs the copier to its end.
    pub fn run(&self) -> Output {
        self.command(&["-no-progress"]).output().unwrap()
    }

    /// Runs `verify`.
    pub fn verify(&self) -> Output {
        self.command(&["verify"]).output().unwrap()
    }

    /// The partitions the configured range is cut into.
    pub fn ranges(&self) -> Vec<(u32, u32)> {
        let mut out = Vec::new();
        let mut s = self.ledger_start;
        while s <= self.ledger_end {
            let e = (s + self.partition_size - 1).min(self.ledger_end);
            out.push((s, e));
            s = e + 1;
        }
        out
    }

    /// The PAS chain as stored in the backup dir.
    pub fn chain(&self) -> ChainView {
        let outbox = FileOutbox::at(self.backup_dir());
        let chain = ChainId {
            network: "testnet".into(),
            era_id: "pre_p23".into(),
            version_label: "v1".into(),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        analyse(rt.block_on(outbox.load(&chain)).unwrap())
    }

    pub fn checkpoint_ledger(&self) -> Option<u32> {
        let text = std::fs::read(self.checkpoint_path()).ok()?;
        let v: serde_json::Value = serde_json::from_slice(&text).unwrap();
        v["last_committed_ledger"].as_u64().map(|n| n as u32)
    }
}

/// stdout and stderr of a run, for assertion messages.
pub fn output_text(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Asserts the chain is linear and complete: one event per range, in order, each linked to
/// the one before, every hash checking out.
pub fn assert_linear_complete(chain: &ChainView, ranges: &[(u32, u32)]) {
    assert!(chain.issues.is_empty(), "chain issues: {:?}", chain.issues);
    let got: Vec<(u32, u32)> = chain
        .events
        .iter()
        .map(|e| (e.range.start, e.range.end))
        .collect();
    assert_eq!(got, ranges, "one event per partition");
    let mut prev = String::new();
    for e in &chain.events {
        assert_eq!(e.event.chain.prev_event_hash, prev, "{}", e.location);
        assert_eq!(e.event.compute_hash(), e.event.chain.event_hash);
        prev = e.event.chain.event_hash.clone();
    }
}

/// event_id → ledger_start from the sink's request bodies; panics if one id named two
/// partitions or a body is not an event.
pub fn delivered_ids(bodies: &[Vec<u8>]) -> BTreeMap<String, u32> {
    let mut ids = BTreeMap::new();
    for body in bodies {
        let e = PasEvent::from_json(body).expect("body is a PAS event");
        let start = e.partition.ledger_start;
        if let Some(old) = ids.insert(e.event_id.clone(), start) {
            assert_eq!(
                old, start,
                "event id {} used for two partitions",
                e.event_id
            );
        }
    }
    ids
}
