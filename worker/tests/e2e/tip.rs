//! The provisional tip (docs/tip.md): following with `storage.table_format: delta`, a feeder
//! lands one object at a time while a reader (delta-rs, `tests/py/tip_watch.py`) polls the
//! table: every version it sees is a prefix of the chain with no ledger twice, the newest
//! ledgers show up before their partition is complete, provisional rows are byte-identical to
//! the sealed ones, the sealed output is byte-identical to a run that never followed, `kill -9`
//! between provisional commits and during sealing ends with no gap and no duplicate, and a
//! missing object stops the tip at the ledger before it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use bronze_testkit::{python, tip_readers, workspace_root};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;

use crate::datastore::{Layout, generate_testnet, object_for};
use crate::follow::copy_ledgers;
use crate::harness::{CrashDice, Harness};

fn following_with_delta() -> Harness {
    Harness::empty()
        .range(2, 0)
        .envs([("STORAGE_TABLE_FORMAT".to_string(), "delta".to_string())])
}

/// A reader polling the table (`tests/py/tip_watch.py`) until [`Watcher::finish`].
pub struct Watcher {
    child: Child,
    stop: PathBuf,
    out: PathBuf,
}

impl Watcher {
    pub fn start(table: &Path, dir: &Path) -> Watcher {
        let stop = dir.join("watch.stop");
        let out = dir.join("watch.jsonl");
        let child = Command::new(python())
            .arg(workspace_root().join("tests/py/tip_watch.py"))
            .arg(table)
            .arg(&stop)
            .arg("0.05")
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(dir.join("watch.err")).unwrap())
            .spawn()
            .unwrap();
        Watcher { child, stop, out }
    }

    /// The snapshots read so far (versions, in the order seen).
    pub fn snapshots(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v.get("error").is_none())
            .collect()
    }

    /// Waits until a snapshot shows `ledger` (panics after `timeout`).
    pub fn wait_for(&self, ledger: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self
            .snapshots()
            .iter()
            .any(|s| s["max"].as_u64().is_some_and(|m| m >= ledger))
        {
            assert!(
                Instant::now() < deadline,
                "the table never showed ledger {ledger}: {:?}",
                self.snapshots().last()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn finish(mut self) -> Vec<Value> {
        std::fs::write(&self.stop, b"").unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "tip_watch.py failed");
        self.snapshots()
    }
}

impl Drop for Watcher {
    /// A test that fails half-way leaves no reader polling behind it.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of an unlabelled-by-us gauge in the copier's /metrics (NaN when absent).
fn gauge(port: u16, name: &str) -> f64 {
    let scrape = crate::metrics::get(port, "/metrics").unwrap_or_default();
    scrape
        .lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Every snapshot is a prefix of the chain from `first`, each ledger once, and no provisional
/// file belongs to a sealed partition.
fn assert_prefixes(snapshots: &[Value], first: u64) {
    for s in snapshots {
        if s["rows"] == 0 {
            continue;
        }
        assert_eq!(s["contiguous"], true, "a gap or a duplicate: {s}");
        assert_eq!(s["rows"], s["distinct"], "{s}");
        assert_eq!(s["min"].as_u64(), Some(first), "{s}");
        let sealed: Vec<String> = serde_json::from_value(s["sealed"].clone()).unwrap();
        for p in s["provisional"].as_array().unwrap() {
            let folder = p.as_str().unwrap().split('/').nth(1).unwrap().to_string();
            assert!(
                !sealed.iter().any(|f| f.starts_with(&format!("{folder}/"))),
                "provisional {p} beside its sealed partition: {s}"
            );
        }
    }
}

fn read_batch(path: &Path) -> RecordBatch {
    let file = std::fs::File::open(path).unwrap();
    // One batch holds the whole (small) file.
    let mut reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .with_batch_size(1 << 20)
        .build()
        .unwrap();
    let batch = reader.next().unwrap().unwrap();
    assert!(reader.next().is_none());
    batch
}

/// Every provisional file in storage whose partition is sealed holds exactly the sealed file's
/// rows for its ledgers, column for column. Returns how many files were compared.
fn assert_provisional_rows_equal_sealed(h: &Harness) -> usize {
    let tip = h.dataset().join("_tip");
    let mut compared = 0;
    let Ok(folders) = std::fs::read_dir(&tip) else {
        return 0;
    };
    for folder in folders {
        let folder = folder.unwrap().path();
        let name = folder.file_name().unwrap().to_str().unwrap().to_string();
        let (s, e) = name
            .strip_prefix("range=")
            .unwrap()
            .split_once('-')
            .unwrap();
        let (s, e): (u32, u32) = (s.parse().unwrap(), e.parse().unwrap());
        let sealed_path = h.parquet_path(s, e);
        if !sealed_path.exists() {
            continue;
        }
        let sealed = read_batch(&sealed_path);
        for file in std::fs::read_dir(&folder).unwrap() {
            let file = file.unwrap().path();
            if file.extension().is_none_or(|x| x != "parquet") {
                // A kill -9 mid-write leaves the local store's staging file (`...parquet#N`),
                // never a file of the table.
                continue;
            }
            let stem = file.file_stem().unwrap().to_str().unwrap().to_string();
            let (a, b) = stem.strip_prefix("tip-").unwrap().split_once('-').unwrap();
            let (a, b): (u32, u32) = (a.parse().unwrap(), b.parse().unwrap());
            let provisional = read_batch(&file);
            let expected = sealed.slice((a - s) as usize, (b - a + 1) as usize);
            assert_eq!(provisional.schema(), sealed.schema(), "{}", file.display());
            assert_eq!(
                provisional.num_rows(),
                (b - a + 1) as usize,
                "{}",
                file.display()
            );
            assert!(
                provisional == expected,
                "{}: rows differ from the sealed file's",
                file.display()
            );
            compared += 1;
        }
    }
    compared
}

/// The copier in the background; its stdout lines collected (`kill_on`: SIGKILL at the first
/// line containing it).
pub struct Copier {
    child: Arc<Mutex<Child>>,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<bool>>,
}

impl Drop for Copier {
    fn drop(&mut self) {
        if let Ok(mut child) = self.child.lock() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Copier {
    pub fn start(h: &Harness, kill_on: Option<&'static str>) -> Copier {
        let mut child = h
            .command(&["--no-progress"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let child = Arc::new(Mutex::new(child));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (c, l) = (child.clone(), lines.clone());
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let hit = kill_on.is_some_and(|k| line.contains(k));
                l.lock().unwrap().push(line);
                if hit {
                    let _ = c.lock().unwrap().kill();
                    return true;
                }
            }
            false
        });
        Copier {
            child,
            lines,
            reader: Some(reader),
        }
    }

    fn sigkill(mut self) -> bool {
        let _ = self.child.lock().unwrap().kill();
        let _ = self.child.lock().unwrap().wait();
        self.reader.take().unwrap().join().unwrap()
    }

    pub fn sigterm(mut self) -> Vec<String> {
        let pid = self.child.lock().unwrap().id();
        kill(Pid::from_raw(pid as i32), Signal::SIGTERM).unwrap();
        let status = self.child.lock().unwrap().wait().unwrap();
        let _ = self.reader.take().unwrap().join();
        let lines = self.lines.lock().unwrap().clone();
        assert_eq!(status.code(), Some(143), "{}", lines.join("\n"));
        lines
    }
}

/// Lands the objects of ledgers `from..=to` one at a time, `every` apart.
fn feed(staging: &Path, datastore: &Path, from: u32, to: u32, every: Duration) {
    for seq in from..=to {
        copy_ledgers(staging, datastore, seq, seq);
        std::thread::sleep(every);
    }
}

#[test]
fn a_reader_sees_each_landed_ledger_before_its_partition_is_sealed_and_never_a_gap() {
    let h = following_with_delta();
    let staging = h.path("staging");
    generate_testnet(&staging, 40, Layout::ONE_PER_OBJECT);
    copy_ledgers(&staging, &h.datastore, 2, 2);
    let copier = Copier::start(&h, None);
    let watcher = Watcher::start(&h.dataset(), h.dir());
    feed(&staging, &h.datastore, 3, 35, Duration::from_millis(150));
    watcher.wait_for(35, Duration::from_secs(60));
    let lines = copier.sigterm();
    let snapshots = watcher.finish();
    assert_prefixes(&snapshots, 2);
    // Ledgers of open partitions were readable before their partition was sealed.
    let early: Vec<&Value> = snapshots
        .iter()
        .filter(|s| s["provisional_max"].as_u64().is_some())
        .collect();
    assert!(
        early.len() >= 10,
        "only {} versions showed provisional rows ({} versions seen)\n{}",
        early.len(),
        snapshots.len(),
        lines.join("\n")
    );
    let last = snapshots.last().unwrap();
    assert_eq!(last["max"], 35, "{last}");
    assert_eq!(
        last["sealed"],
        serde_json::json!([
            "range=12-21/part-12-21.parquet",
            "range=2-11/part-2-11.parquet",
            "range=22-31/part-22-31.parquet"
        ]),
        "{last}"
    );
    assert!(
        last["provisional"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p.as_str().unwrap().starts_with("_tip/range=32-41/")),
        "{last}"
    );
    assert_eq!(h.committed(), vec![(2, 11), (12, 21), (22, 31)]);
    // Every reader tells the provisional rows from the sealed ones as docs/formats.md shows.
    let told = tip_readers(h.dataset());
    assert_eq!(told["sealed_through"], 31, "{told}");
    for reader in ["deltalake", "polars", "datafusion", "duckdb"] {
        assert_eq!(
            told[reader]["sealed"],
            serde_json::json!((2..=31).collect::<Vec<u32>>()),
            "{reader}: {told}"
        );
        assert_eq!(
            told[reader]["provisional"],
            serde_json::json!([32, 33, 34, 35]),
            "{reader}: {told}"
        );
    }
    // The provisional rows of the sealed partitions were exactly the sealed rows.
    let compared = assert_provisional_rows_equal_sealed(&h);
    assert!(compared >= 10, "{compared} provisional files compared");
    let out = h.assert_verifies();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(!report.contains("tip."), "{report}");
    // The sealed output is the output of a run that never followed, byte for byte.
    let bounded = Harness::empty()
        .range(2, 31)
        .datastore(staging.clone())
        .envs([("STORAGE_TABLE_FORMAT".to_string(), "delta".to_string())]);
    bounded.run_expect(0);
    for (s, e) in [(2, 11), (12, 21), (22, 31)] {
        assert_eq!(
            std::fs::read(h.parquet_path(s, e)).unwrap(),
            std::fs::read(bounded.parquet_path(s, e)).unwrap(),
            "partition {s}-{e}"
        );
        let table =
            |h: &Harness| crate::harness::manifest_json(&h.partition_dir(s, e))["tables"].clone();
        assert_eq!(table(&h), table(&bounded), "manifest of {s}-{e}");
    }
}

#[test]
fn verify_finds_a_provisional_ledger_that_does_not_link_to_the_sealed_chain() {
    let h = following_with_delta();
    let staging = h.path("staging");
    generate_testnet(&staging, 20, Layout::ONE_PER_OBJECT);
    copy_ledgers(&staging, &h.datastore, 2, 15);
    let copier = Copier::start(&h, None);
    let watcher = Watcher::start(&h.dataset(), h.dir());
    watcher.wait_for(15, Duration::from_secs(60));
    copier.sigterm();
    watcher.finish();
    h.assert_verifies();
    // Damage the newest provisional file: its rows now come from another partition's ledgers.
    let folder = h.dataset().join("_tip/range=12-21");
    let newest = std::fs::read_dir(&folder)
        .unwrap()
        .map(|f| f.unwrap().path())
        .max_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap())
        .unwrap();
    let stem = newest.file_stem().unwrap().to_str().unwrap().to_string();
    let (a, b) = stem.strip_prefix("tip-").unwrap().split_once('-').unwrap();
    let (a, b): (u32, u32) = (a.parse().unwrap(), b.parse().unwrap());
    let other = h.parquet_path(2, 11);
    let rows = read_batch(&other).slice(0, (b - a + 1) as usize);
    let mut writer = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(&newest).unwrap(),
        rows.schema(),
        None,
    )
    .unwrap();
    writer.write(&rows).unwrap();
    writer.close().unwrap();
    let out = h.verify();
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    assert_ne!(out.status.code(), Some(0), "{report}");
    assert!(
        report.contains("tip.hash_link") || report.contains("rows.sequence"),
        "{report}"
    );
    assert!(report.contains(&format!("tip-{a}-{b}")), "{report}");
}

#[test]
fn a_missing_object_stops_the_tip_at_the_ledger_before_it_until_it_lands() {
    let h = following_with_delta();
    // Polling every second, a missing object with newer ones after it is taken for a hole
    // (an error) only after 5 s or more: 15 lands late, within that.
    let block = format!(
        "source:\n  mode: \"local\"\n  local_path: \"{}\"\n  poll_interval_ms: 1000\n",
        h.datastore.display()
    );
    let port = bronze_testkit::free_port();
    let h = h.source(block).yaml(&format!(
        "metrics:\n  enabled: true\n  address: \"127.0.0.1:{port}\"\n"
    ));
    let staging = h.path("staging");
    generate_testnet(&staging, 20, Layout::ONE_PER_OBJECT);
    copy_ledgers(&staging, &h.datastore, 2, 14);
    let copier = Copier::start(&h, None);
    let watcher = Watcher::start(&h.dataset(), h.dir());
    watcher.wait_for(14, Duration::from_secs(60));
    // 16 and 17 land before 15.
    for seq in [16, 17] {
        let src = object_for(&staging, seq);
        let dst = h.datastore.join(src.strip_prefix(&staging).unwrap());
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(&src, &dst).unwrap();
    }
    std::thread::sleep(Duration::from_millis(2500));
    let before = watcher.snapshots();
    assert!(
        before.iter().all(|s| s["max"].as_u64() <= Some(14)),
        "the tip went past the missing ledger 15: {:?}",
        before.last()
    );
    // The lag shows the tip waiting while newer objects exist.
    let stuck = gauge(port, "bronze_copier_tip_lag_seconds");
    assert!(stuck > 0.0, "lag {stuck} while 15 is missing");
    assert_eq!(gauge(port, "bronze_copier_tip_readable_ledger"), 14.0);
    copy_ledgers(&staging, &h.datastore, 15, 15);
    watcher.wait_for(17, Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(10);
    while gauge(port, "bronze_copier_tip_lag_seconds") != 0.0
        || gauge(port, "bronze_copier_tip_readable_ledger") != 17.0
    {
        assert!(Instant::now() < deadline, "the lag never went back to 0");
        std::thread::sleep(Duration::from_millis(100));
    }
    copier.sigterm();
    let snapshots = watcher.finish();
    assert_prefixes(&snapshots, 2);
    h.assert_verifies();
}

/// Reads the table once (every reader) and checks it is a chain prefix from 2 with each ledger
/// once; returns its newest ledger.
fn assert_table_is_a_prefix(h: &Harness) -> u64 {
    let read = bronze_testkit::delta_read(h.dataset(), None);
    let seqs: Vec<u64> = serde_json::from_value(read["ledger_sequences"].clone()).unwrap();
    let expected: Vec<u64> = (2..2 + seqs.len() as u64).collect();
    assert_eq!(seqs, expected, "not a chain prefix: {read}");
    for reader in ["deltalake", "polars", "datafusion", "duckdb"] {
        assert_eq!(read[format!("equal_{reader}")], true, "{reader}: {read}");
    }
    seqs.last().copied().unwrap_or(1)
}

#[test]
fn sigkill_between_provisional_commits_and_during_sealing_leaves_no_gap_and_no_duplicate() {
    let h = following_with_delta();
    let staging = h.path("staging");
    generate_testnet(&staging, 60, Layout::ONE_PER_OBJECT);
    copy_ledgers(&staging, &h.datastore, 2, 4);
    let mut dice = CrashDice::from_clock();
    let mut landed = 4;
    let mut sealing_kills = 0;
    for round in 0..6 {
        // Odd rounds: killed right after a partition's manifest, before (or while) its seal
        // commits; even rounds: killed at a random moment while objects land.
        let kill_on = (round % 2 == 1).then_some("committed partition");
        let copier = Copier::start(&h, kill_on);
        let target = (landed + 8).min(55);
        let every = Duration::from_millis(60 + dice.below(120));
        feed(&staging, &h.datastore, landed + 1, target, every);
        landed = target;
        if kill_on.is_none() {
            std::thread::sleep(Duration::from_millis(dice.below(800)));
        } else {
            std::thread::sleep(Duration::from_millis(1500));
        }
        if copier.sigkill() {
            sealing_kills += 1;
        }
        let newest = assert_table_is_a_prefix(&h);
        eprintln!("round {round}: killed; the table reads 2..={newest}");
    }
    // A last run catches up with everything landed, then stops.
    let copier = Copier::start(&h, None);
    let watcher = Watcher::start(&h.dataset(), h.dir());
    watcher.wait_for(u64::from(landed), Duration::from_secs(60));
    copier.sigterm();
    let snapshots = watcher.finish();
    assert_prefixes(&snapshots, 2);
    assert_eq!(assert_table_is_a_prefix(&h), u64::from(landed));
    assert!(sealing_kills >= 1, "no kill landed during a seal");
    assert!(assert_provisional_rows_equal_sealed(&h) >= 1);
    h.assert_verifies();
}

#[test]
fn turned_off_the_table_only_ever_has_whole_partitions() {
    let h = following_with_delta().envs([
        ("STORAGE_TABLE_FORMAT".to_string(), "delta".to_string()),
        ("STORAGE_PROVISIONAL_TIP".to_string(), "false".to_string()),
    ]);
    let staging = h.path("staging");
    generate_testnet(&staging, 20, Layout::ONE_PER_OBJECT);
    copy_ledgers(&staging, &h.datastore, 2, 15);
    let copier = Copier::start(&h, None);
    let watcher = Watcher::start(&h.dataset(), h.dir());
    watcher.wait_for(11, Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(2));
    copier.sigterm();
    let snapshots = watcher.finish();
    assert!(
        snapshots
            .iter()
            .all(|s| s["max"].as_u64() <= Some(11)
                && s["provisional"].as_array().unwrap().is_empty())
    );
    assert!(!h.dataset().join("_tip").exists());
}
