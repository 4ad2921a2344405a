//! The one harness of the end-to-end tests: a temp work dir with a generated datastore, the
//! config of a local run over it, the real binary run on that config, and readers for what it
//! wrote (dataset, partitions, manifests, checkpoint, PAS chain).
//!
//! ```text
//! let h = Harness::testnet(200).partition_size(20).pas("");  // datastore of ledgers 2..=201
//! let out = h.run();                                           // writes config.yaml, runs
//! h.manifests(); h.checkpoint_ledger(); h.chain(); h.verify();
//! ```
//!
//! Builder methods set the config at creation; the public fields change it between runs (each
//! run writes `config.yaml` afresh from them).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};

use bronze::pas::{ChainId, ChainView, FileOutbox, Outbox, analyse};
use bronze::publish::Manifest;
use bronze_testkit::TempDir;
use serde_json::Value;

use crate::binary::{copier, describe, exec, text};
use crate::datastore::{FIRST_LEDGER, Layout, generate_pubnet, generate_testnet};

/// `era.ingested_at` of every harness config.
pub const INGESTED_AT: &str = "2025-01-15T10:00:00Z";

/// A scratch directory (`datastore/`, `out/`, `state/`, `pas-backup/`, `config.yaml`) and the
/// config of a local run over it.
pub struct Harness {
    dir: TempDir,
    /// `era.network`; also names the dataset and checkpoint paths.
    pub network: String,
    pub ledger_start: u32,
    /// Last ledger of the range; 0 follows the tip.
    pub ledger_end: u32,
    pub partition_size: u32,
    pub ingested_at: String,
    /// Extra `era:` lines (indented), e.g. `"  allow_overwrite: true\n"`.
    pub era_lines: String,
    /// The local datastore `source.local_path` reads.
    pub datastore: PathBuf,
    /// A whole `source:` block replacing the local one.
    pub source_block: Option<String>,
    /// A whole `storage:` block replacing the local one (`out/`).
    pub storage_block: Option<String>,
    /// `perf:` settings, in order.
    pub perf: Vec<(String, String)>,
    /// `pas:` lines (indented, without the key) under `enabled: true` and a `backup_dir` of
    /// `pas-backup/`; `None` leaves PAS off.
    pub pas: Option<String>,
    /// Top-level YAML appended as is (catalog, metrics, logging, …).
    pub extra: String,
    /// Extra environment of the binary (e.g. S3 credentials of a moto server).
    pub env: Vec<(String, String)>,
}

impl Harness {
    /// A fresh temp dir with no datastore; a testnet config over ledgers 2..=11.
    pub fn empty() -> Harness {
        let dir = bronze_testkit::tempfile::Builder::new()
            .prefix("bronze-e2e-")
            .tempdir()
            .unwrap();
        let datastore = dir.path().join("datastore");
        Harness {
            dir,
            network: "testnet".into(),
            ledger_start: FIRST_LEDGER,
            ledger_end: FIRST_LEDGER + 9,
            partition_size: 10,
            ingested_at: INGESTED_AT.into(),
            era_lines: String::new(),
            datastore,
            source_block: None,
            storage_block: None,
            perf: [
                ("max_in_flight_partitions", "2"),
                ("workers", "2"),
                ("retry_attempts", "2"),
                ("retry_backoff_ms", "10"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            pas: None,
            extra: String::new(),
            env: Vec::new(),
        }
    }

    /// `ledgers` small testnet ledgers (2..=ledgers+1), one per object; the config covers them
    /// all in partitions of 10.
    pub fn testnet(ledgers: u32) -> Harness {
        Harness::testnet_with_layout(ledgers, Layout::ONE_PER_OBJECT)
    }

    /// As [`Harness::testnet`], packing the ledgers into objects and folders as `layout` says.
    pub fn testnet_with_layout(ledgers: u32, layout: Layout) -> Harness {
        let h = Harness::empty().range(FIRST_LEDGER, FIRST_LEDGER + ledgers - 1);
        generate_testnet(&h.datastore, ledgers, layout);
        h
    }

    /// `ledgers` real-sized pubnet ledgers (2..=ledgers+1); a pubnet config covering them all in
    /// partitions of 10.
    pub fn pubnet(ledgers: u32) -> Harness {
        let mut h = Harness::empty().range(FIRST_LEDGER, FIRST_LEDGER + ledgers - 1);
        h.network = "pubnet".into();
        generate_pubnet(&h.datastore, ledgers);
        h
    }

    // --- builder options -----------------------------------------------------------------

    /// Copies ledgers `start..=end` (`end` 0: follow the tip).
    pub fn range(mut self, start: u32, end: u32) -> Harness {
        self.ledger_start = start;
        self.ledger_end = end;
        self
    }

    pub fn partition_size(mut self, size: u32) -> Harness {
        self.partition_size = size;
        self
    }

    /// Sets one `perf:` key (replacing its default).
    pub fn perf(mut self, key: &str, value: impl ToString) -> Harness {
        self.set_perf(key, value);
        self
    }

    /// Sets one `perf:` key between runs.
    pub fn set_perf(&mut self, key: &str, value: impl ToString) {
        let value = value.to_string();
        match self.perf.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value,
            None => self.perf.push((key.to_string(), value)),
        }
    }

    /// Turns PAS on with these extra `pas:` lines ("" for the defaults: file outbox, no
    /// endpoint).
    pub fn pas(mut self, lines: &str) -> Harness {
        self.pas = Some(lines.to_string());
        self
    }

    /// Appends top-level YAML to the config.
    pub fn yaml(mut self, extra: &str) -> Harness {
        self.extra.push_str(extra);
        self
    }

    /// Reads the ledgers from another local datastore (e.g. a bundled fixture).
    pub fn datastore(mut self, path: PathBuf) -> Harness {
        self.datastore = path;
        self
    }

    /// Replaces the `source:` block.
    pub fn source(mut self, block: String) -> Harness {
        self.source_block = Some(block);
        self
    }

    /// Replaces the `storage:` block.
    pub fn storage(mut self, block: String) -> Harness {
        self.storage_block = Some(block);
        self
    }

    /// Adds environment variables of the binary.
    pub fn envs(mut self, vars: impl IntoIterator<Item = (String, String)>) -> Harness {
        self.env.extend(vars);
        self
    }

    // --- paths -----------------------------------------------------------------------------

    /// The work dir.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A path inside the work dir.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir().join(rel)
    }

    /// `storage.local_dir` of the default storage block.
    pub fn out_dir(&self) -> PathBuf {
        self.path("out")
    }

    /// `checkpoint.dir`.
    pub fn state_dir(&self) -> PathBuf {
        self.path("state")
    }

    /// `pas.backup_dir`.
    pub fn backup_dir(&self) -> PathBuf {
        self.path("pas-backup")
    }

    /// The dataset folder (`out/bronze/<network>/pre_p23/v1/ledgers_lcm_raw`).
    pub fn dataset(&self) -> PathBuf {
        self.out_dir().join(format!(
            "bronze/{}/pre_p23/v1/ledgers_lcm_raw",
            self.network
        ))
    }

    /// The folder of partition `start-end`.
    pub fn partition_dir(&self, start: u32, end: u32) -> PathBuf {
        self.dataset().join(format!("range={start}-{end}"))
    }

    /// The Parquet file of partition `start-end`.
    pub fn parquet_path(&self, start: u32, end: u32) -> PathBuf {
        self.partition_dir(start, end)
            .join(format!("part-{start}-{end}.parquet"))
    }

    /// The manifest of partition `start-end`.
    pub fn manifest_path(&self, start: u32, end: u32) -> PathBuf {
        self.partition_dir(start, end).join("_manifest.json")
    }

    /// The PAS event of partition `start-end` in the backup dir (file outbox).
    pub fn event_path(&self, start: u32, end: u32) -> PathBuf {
        self.backup_dir()
            .join(format!("{}_pre_p23_v1_{start}-{end}.json", self.network))
    }

    pub fn checkpoint_path(&self) -> PathBuf {
        self.state_dir()
            .join(format!("checkpoint_{}_pre_p23_v1.json", self.network))
    }

    /// The queue file earlier versions kept beside the checkpoint (now removed at start).
    pub fn catalog_queue_path(&self) -> PathBuf {
        self.state_dir()
            .join(format!("catalog_pending_{}_pre_p23_v1.json", self.network))
    }

    // --- config and runs -------------------------------------------------------------------

    /// Writes `config.yaml` from the current settings and returns its path.
    pub fn write_config(&self) -> PathBuf {
        let source = self.source_block.clone().unwrap_or_else(|| {
            format!(
                "source:\n  mode: \"local\"\n  local_path: \"{}\"\n  poll_interval_ms: 100\n",
                self.datastore.display()
            )
        });
        let storage = self.storage_block.clone().unwrap_or_else(|| {
            format!(
                "storage:\n  backend: \"local\"\n  local_dir: \"{}\"\n",
                self.out_dir().display()
            )
        });
        let perf: String = self
            .perf
            .iter()
            .map(|(k, v)| format!("  {k}: {v}\n"))
            .collect();
        let pas = match &self.pas {
            None => String::new(),
            Some(lines) => format!(
                "pas:\n  enabled: true\n  backup_dir: \"{}\"\n{lines}",
                self.backup_dir().display()
            ),
        };
        let text = format!(
            "copier_id: \"e2e\"\nera:\n  era_id: \"pre_p23\"\n  version_label: \"v1\"\n  network: \"{network}\"\n  ledger_start: {start}\n  ledger_end: {end}\n  partition_size: {size}\n  ingested_at: \"{ingested_at}\"\n{era_lines}{source}{storage}checkpoint:\n  enabled: true\n  dir: \"{state}\"\nperf:\n{perf}{pas}{extra}",
            network = self.network,
            start = self.ledger_start,
            end = self.ledger_end,
            size = self.partition_size,
            ingested_at = self.ingested_at,
            era_lines = self.era_lines,
            state = self.state_dir().display(),
            extra = self.extra,
        );
        let path = self.path("config.yaml");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The copier on a freshly written config, with `args` after `-config <file>`.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = copier();
        cmd.arg("-config")
            .arg(self.write_config())
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd
    }

    /// Runs the copier to its end.
    pub fn run(&self) -> Output {
        exec(&mut self.command(&["--no-progress"]))
    }

    /// Runs the copier to its end, asserts its exit code and returns its output.
    pub fn run_expect(&self, code: i32) -> String {
        let out = self.run();
        let log = text(&out);
        assert_eq!(
            out.status.code(),
            Some(code),
            "unexpected exit; output:\n{log}"
        );
        log
    }

    /// Starts the copier in the background, stdout and stderr to the file `log`.
    pub fn spawn_logging_to(&self, log: &Path) -> Child {
        let out = std::fs::File::create(log).unwrap();
        let err = out.try_clone().unwrap();
        self.command(&["--no-progress"])
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap()
    }

    /// Runs `verify`.
    pub fn verify(&self) -> Output {
        exec(&mut self.command(&["verify"]))
    }

    /// Runs `verify` and asserts it found nothing wrong (exit 0); returns its output.
    pub fn assert_verifies(&self) -> Output {
        let out = self.verify();
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        out
    }

    /// A new harness with copies of this one's outputs (`out/`, `state/`, `pas-backup/`) and
    /// config, and an empty datastore: a private copy of a finished run to damage.
    pub fn copy_outputs(&self) -> Harness {
        let copy = Harness::empty();
        for dir in ["out", "state", "pas-backup"] {
            if self.path(dir).exists() {
                copy_tree(&self.path(dir), &copy.path(dir));
            }
        }
        std::fs::create_dir_all(&copy.datastore).unwrap();
        Harness {
            dir: copy.dir,
            datastore: copy.datastore,
            network: self.network.clone(),
            ledger_start: self.ledger_start,
            ledger_end: self.ledger_end,
            partition_size: self.partition_size,
            ingested_at: self.ingested_at.clone(),
            era_lines: self.era_lines.clone(),
            source_block: None,
            storage_block: None,
            perf: self.perf.clone(),
            pas: self.pas.clone(),
            extra: self.extra.clone(),
            env: Vec::new(),
        }
    }

    // --- what the run wrote ----------------------------------------------------------------

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

    /// `(start, end, folder)` of every `range=S-E` folder of the dataset, committed or not, in
    /// ledger order.
    pub fn partitions(&self) -> Vec<(u32, u32, PathBuf)> {
        let mut out: Vec<_> = std::fs::read_dir(self.dataset())
            .map(|rd| rd.filter_map(|e| e.ok()).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                let (s, end) = name.strip_prefix("range=")?.split_once('-')?;
                Some((s.parse().ok()?, end.parse().ok()?, e.path()))
            })
            .collect();
        out.sort();
        out
    }

    /// The ranges of the committed partitions (those with a manifest), in ledger order.
    pub fn committed(&self) -> Vec<(u32, u32)> {
        self.partitions()
            .into_iter()
            .filter(|(_, _, d)| d.join("_manifest.json").exists())
            .map(|(s, e, _)| (s, e))
            .collect()
    }

    /// The committed manifests, parsed, in ledger order.
    pub fn manifests(&self) -> Vec<Manifest> {
        self.partitions()
            .iter()
            .filter_map(|(_, _, d)| std::fs::read(d.join("_manifest.json")).ok())
            .map(|bytes| Manifest::from_json(&bytes).unwrap())
            .collect()
    }

    /// The checkpoint file as JSON, if there is one.
    pub fn checkpoint(&self) -> Option<Value> {
        std::fs::read(self.checkpoint_path())
            .ok()
            .map(|b| serde_json::from_slice(&b).unwrap())
    }

    /// `last_committed_ledger` of the checkpoint, if there is one.
    pub fn checkpoint_ledger(&self) -> Option<u32> {
        self.checkpoint()?["last_committed_ledger"]
            .as_u64()
            .map(|n| n as u32)
    }

    /// The PAS chain as stored in the backup dir (file outbox).
    pub fn chain(&self) -> ChainView {
        let outbox = FileOutbox::at(self.backup_dir());
        let chain = ChainId {
            network: self.network.clone(),
            era_id: "pre_p23".into(),
            version_label: "v1".into(),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        analyse(rt.block_on(outbox.load(&chain)).unwrap())
    }
}

/// A partition folder's `_manifest.json` as JSON.
pub fn manifest_json(partition_dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(partition_dir.join("_manifest.json")).unwrap()).unwrap()
}

/// Whether `verify`'s stdout has a `PROBLEM` line for `check` (e.g. `parquet.sha256`) on
/// `partition` (`S-E`, or `-` for none).
pub fn has_problem(verify_stdout: &str, partition: &str, check: &str) -> bool {
    verify_stdout.lines().any(|l| {
        l.starts_with("PROBLEM")
            && l.contains(&format!("partition={partition} "))
            && l.contains(&format!("check={check} "))
    })
}

/// Copies a directory tree.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A seeded xorshift generator for the crash tests; the seed comes from the clock and is
/// printed, so a failing run can be told apart from the next.
pub struct CrashDice {
    pub seed: u64,
    state: u64,
}

impl CrashDice {
    pub fn from_clock() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos() as u64;
        eprintln!("crash test seed {seed}");
        CrashDice {
            seed,
            state: seed | 1,
        }
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state % n
    }
}

/// Runs `command` (its stdout read line by line, stderr dropped). With `kill_after = Some(n)`,
/// SIGKILLs it a random few microseconds (so the kill lands between the steps that follow a
/// line) after its n-th line of output, any line: PAS, commits, progress. Returns the exit
/// status and whether it was killed.
pub fn run_killed_after_lines(
    mut command: Command,
    kill_after: Option<u64>,
    dice: &mut CrashDice,
) -> (std::process::ExitStatus, bool) {
    use std::io::{BufRead, BufReader};
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = 0u64;
    let mut killed = false;
    for line in BufReader::new(stdout).lines() {
        if line.is_err() {
            break;
        }
        lines += 1;
        if Some(lines) == kill_after {
            std::thread::sleep(std::time::Duration::from_micros(dice.below(3000)));
            let _ = child.kill();
            killed = true;
            break;
        }
    }
    (child.wait().unwrap(), killed)
}
