//! `make bench-tip`: landing-to-readable latency of the provisional tip (docs/tip.md,
//! docs/scaling.md), at Galexie's pace (one object every 5-6 s) and at catch-up pace (four a
//! second), with the default poll interval (2 s): a feeder lands one object at a time and
//! records when; a reader (delta-rs, `tests/py/tip_watch.py`, polling every 50 ms) records when
//! each ledger first shows in the table. Prints p50/p95/max and the write cost (Delta versions,
//! provisional files and checkpoints per hour). Ignored in `make test`: it takes minutes.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::datastore::{Layout, generate_testnet};
use crate::follow::copy_ledgers;
use crate::harness::{CrashDice, Harness};
use crate::tip::{Copier, Watcher};

fn env_u32(key: &str, default: u32) -> u32 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn count_files(dir: &Path, pred: &dyn Fn(&str) -> bool) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if pred(p.file_name().unwrap().to_str().unwrap()) {
                n += 1;
            }
        }
    }
    n
}

/// The table's write counters: (Delta versions, provisional files, checkpoints).
fn costs(h: &Harness) -> (usize, usize, usize) {
    let log = h.dataset().join("_delta_log");
    (
        count_files(&log, &|n| n.ends_with(".json") && n.len() == 25),
        count_files(&h.dataset().join("_tip"), &|n| n.starts_with("tip-")),
        count_files(&log, &|n| n.ends_with(".checkpoint.parquet")),
    )
}

/// Lands ledgers `from..=to` one object at a time, `gap()` apart; returns (ledger, landed at).
fn feed(
    staging: &Path,
    datastore: &Path,
    from: u32,
    to: u32,
    mut gap: impl FnMut() -> Duration,
) -> Vec<(u32, f64)> {
    let mut landed = Vec::new();
    for seq in from..=to {
        copy_ledgers(staging, datastore, seq, seq);
        landed.push((seq, now()));
        std::thread::sleep(gap());
    }
    landed
}

/// Latency of each landed ledger: from its landing to the first snapshot showing it.
fn latencies(landed: &[(u32, f64)], watcher: &Watcher) -> Vec<f64> {
    let snapshots = watcher.snapshots();
    let mut out: Vec<f64> = landed
        .iter()
        .map(|(seq, at)| {
            let seen = snapshots
                .iter()
                .filter(|s| s["max"].as_u64().is_some_and(|m| m >= u64::from(*seq)))
                .filter_map(|s| s["seen_at"].as_f64())
                .fold(f64::INFINITY, f64::min);
            seen - at
        })
        .collect();
    out.sort_by(|a, b| a.partial_cmp(b).unwrap());
    out
}

fn report(
    name: &str,
    lat: &[f64],
    before: (usize, usize, usize),
    after: (usize, usize, usize),
    seconds: f64,
) {
    let per_hour = |a: usize, b: usize| (b - a) as f64 * 3600.0 / seconds;
    println!(
        "bench-tip {name}: {} ledgers over {seconds:.0} s: landing-to-readable p50 {:.2} s, p95 {:.2} s, max {:.2} s; {:.0} Delta versions/h, {:.0} provisional files/h, {:.0} checkpoints/h",
        lat.len(),
        percentile(lat, 0.5),
        percentile(lat, 0.95),
        lat.last().copied().unwrap_or(f64::NAN),
        per_hour(before.0, after.0),
        per_hour(before.1, after.1),
        per_hour(before.2, after.2),
    );
}

#[test]
#[ignore = "a benchmark: make bench-tip"]
fn bench_tip_latency_at_galexie_and_catch_up_pace() {
    let galexie = env_u32("BENCH_TIP_GALEXIE_OBJECTS", 30);
    let catch_up = env_u32("BENCH_TIP_CATCHUP_OBJECTS", 120);
    let size = env_u32("BENCH_TIP_PARTITION", 100);
    let h = Harness::empty()
        .range(2, 0)
        .partition_size(size)
        .envs([("STORAGE_TABLE_FORMAT".to_string(), "delta".to_string())]);
    // The default poll interval (2 s), as the freshness target says.
    let block = format!(
        "source:\n  mode: \"local\"\n  local_path: \"{}\"\n",
        h.datastore.display()
    );
    let h = h.source(block);
    let staging = h.path("staging");
    let total = 1 + galexie + catch_up;
    generate_testnet(&staging, total + 1, Layout::ONE_PER_OBJECT);
    copy_ledgers(&staging, &h.datastore, 2, 2);
    let copier = Copier::start(&h, None);
    let watcher = Watcher::start(&h.dataset(), h.dir());
    watcher.wait_for(2, Duration::from_secs(60));
    let mut dice = CrashDice::from_clock();

    let before = costs(&h);
    let started = now();
    let landed = feed(&staging, &h.datastore, 3, 2 + galexie, || {
        Duration::from_millis(5_000 + dice.below(1_000))
    });
    watcher.wait_for(u64::from(2 + galexie), Duration::from_secs(60));
    let galexie_seconds = now() - started;
    let after = costs(&h);
    report(
        "galexie pace (one object every 5-6 s)",
        &latencies(&landed, &watcher),
        before,
        after,
        galexie_seconds,
    );

    let before = after;
    let started = now();
    let landed = feed(
        &staging,
        &h.datastore,
        3 + galexie,
        2 + galexie + catch_up,
        || Duration::from_millis(250),
    );
    watcher.wait_for(u64::from(2 + galexie + catch_up), Duration::from_secs(120));
    let seconds = now() - started;
    let after = costs(&h);
    report(
        "catch-up pace (four objects a second)",
        &latencies(&landed, &watcher),
        before,
        after,
        seconds,
    );
    copier.sigterm();
    let snapshots = watcher.finish();
    assert!(
        snapshots
            .iter()
            .all(|s| s["rows"] == 0 || s["contiguous"] == true)
    );
}
