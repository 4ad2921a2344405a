//! Following the tip (`ledger_end: 0`): complete partitions are committed as the datastore grows,
//! a partial partition never is, a hole below the tip is an error, and SIGTERM stops cleanly.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::binary::text;
use crate::datastore::{Layout, generate_testnet, object_for};
use crate::harness::Harness;
use crate::oracle::{INGESTED_AT_MS, TESTNET_LABELS, check_parquet_with_pyarrow, expected_rows};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Copies the objects of ledgers `from..=to` (and `.config.json`) from `staging` into `datastore`,
/// each appearing whole (copied beside the datastore, then renamed into it) as an object store
/// publishes them: a running copier never sees a half-written object.
pub fn copy_ledgers(staging: &Path, datastore: &Path, from: u32, to: u32) {
    std::fs::create_dir_all(datastore).unwrap();
    let tmp = datastore.with_extension("copying");
    let publish = |src: &Path, dst: &Path| {
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(src, &tmp).unwrap();
        std::fs::rename(&tmp, dst).unwrap();
    };
    publish(
        &staging.join(".config.json"),
        &datastore.join(".config.json"),
    );
    for seq in from..=to {
        let src = object_for(staging, seq);
        publish(&src, &datastore.join(src.strip_prefix(staging).unwrap()));
    }
}

fn wait_for_checkpoint(run: &Harness, child: &mut Child, ledger: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if run
            .checkpoint()
            .and_then(|c| c["last_committed_ledger"].as_u64())
            == Some(ledger)
        {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("copier exited early with {status}");
        }
        assert!(
            Instant::now() < deadline,
            "checkpoint never reached {ledger}: {:?}",
            run.checkpoint()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts the copier in the background, output piped.
fn start(run: &Harness) -> Child {
    run.command(&["--no-progress"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn follows_the_tip_commits_only_complete_partitions_and_stops_on_sigterm() {
    let run = Harness::empty().range(2, 0);
    let staging = run.path("staging");
    generate_testnet(&staging, 50, Layout::ONE_PER_OBJECT);
    copy_ledgers(&staging, &run.datastore, 2, 25);
    let mut child = start(&run);
    wait_for_checkpoint(&run, &mut child, 21);
    copy_ledgers(&staging, &run.datastore, 26, 45);
    wait_for_checkpoint(&run, &mut child, 41);
    std::thread::sleep(Duration::from_millis(500));
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let out = child.wait_with_output().unwrap();
    let log = text(&out);
    assert_eq!(out.status.code(), Some(143), "{log}");
    assert_eq!(
        run.committed(),
        vec![(2, 11), (12, 21), (22, 31), (32, 41)],
        "{log}"
    );
    assert_eq!(run.checkpoint().unwrap()["last_committed_ledger"], 41);
    // The rows are right too.
    let expected = expected_rows(&staging);
    for (s, e, d) in run
        .partitions()
        .into_iter()
        .filter(|p| p.2.join("_manifest.json").exists())
    {
        check_parquet_with_pyarrow(
            &d.join(format!("part-{s}-{e}.parquet")),
            &expected,
            TESTNET_LABELS,
            Some(INGESTED_AT_MS),
        );
    }
}

#[test]
fn a_hole_below_the_tip_is_an_error_not_an_endless_wait() {
    let run = Harness::testnet(30).range(2, 0);
    std::fs::remove_file(object_for(&run.datastore, 17)).unwrap();
    let started = Instant::now();
    let log = run.run_expect(3);
    assert!(
        log.contains("missing object") && log.contains("17"),
        "{log}"
    );
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(run.checkpoint().unwrap()["last_committed_ledger"], 11);
}
