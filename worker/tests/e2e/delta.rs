//! `storage.table_format: delta`: the dataset folder read as a Delta Lake table by the real
//! readers (the `deltalake` package and Polars, `tests/py/delta_read.py`), compared row by row
//! with the Parquet files; backfill and repair of the log from the manifests; `verify` of the log;
//! SIGKILL during commits; a reader during a run.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bronze_testkit::delta_read;
use serde_json::Value;

use crate::binary::text;
use crate::harness::{CrashDice, Harness, has_problem, run_killed_after_lines};

fn with_delta(h: Harness) -> Harness {
    h.envs([("STORAGE_TABLE_FORMAT".to_string(), "delta".to_string())])
}

fn log_dir(h: &Harness) -> PathBuf {
    h.dataset().join("_delta_log")
}

fn commit_path(h: &Harness, version: u64) -> PathBuf {
    log_dir(h).join(format!("{version:020}.json"))
}

/// The add actions of one commit file.
fn adds_of(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter_map(|v| v.get("add").cloned())
        .collect()
}

/// Every add path of the log, version by version (versions 1.. in order).
fn logged_paths(h: &Harness) -> Vec<String> {
    let mut out = Vec::new();
    let mut v = 0;
    while commit_path(h, v).exists() {
        out.extend(
            adds_of(&commit_path(h, v))
                .iter()
                .map(|a| a["path"].as_str().unwrap().to_string()),
        );
        v += 1;
    }
    out
}

fn expected_paths(ranges: &[(u32, u32)]) -> Vec<String> {
    ranges
        .iter()
        .map(|(s, e)| format!("range={s}-{e}/part-{s}-{e}.parquet"))
        .collect()
}

fn assert_table_matches_parquet(read: &Value, h: &Harness) {
    let ranges = h.committed();
    assert_eq!(
        read["files"],
        serde_json::json!(expected_paths(&ranges)),
        "{read}"
    );
    let rows: u64 = ranges.iter().map(|(s, e)| u64::from(e - s + 1)).sum();
    assert_eq!(read["rows_deltalake"], rows, "{read}");
    assert_eq!(read["rows_polars"], rows, "{read}");
    assert_eq!(
        read["equal_deltalake"], true,
        "deltalake rows differ: {read}"
    );
    assert_eq!(read["equal_polars"], true, "polars rows differ: {read}");
}

#[test]
fn the_dataset_is_a_delta_table_readers_read_row_for_row() {
    // 12 partitions: versions 1..=12 after the table's creation, a checkpoint at version 10.
    let h = with_delta(Harness::testnet(120).partition_size(10));
    h.run_expect(0);
    let ranges = h.ranges();
    assert_eq!(h.committed(), ranges);
    assert_eq!(
        logged_paths(&h),
        expected_paths(&ranges),
        "one add per partition, in ledger order"
    );
    assert!(
        log_dir(&h)
            .join("00000000000000000010.checkpoint.parquet")
            .exists()
    );
    let last: Value =
        serde_json::from_slice(&std::fs::read(log_dir(&h).join("_last_checkpoint")).unwrap())
            .unwrap();
    assert_eq!(last["version"], 10);

    let read = delta_read(h.dataset(), None);
    assert_eq!(read["version"], 12, "{read}");
    assert_table_matches_parquet(&read, &h);
    let seqs: Vec<u64> = (2..=121).collect();
    assert_eq!(read["ledger_sequences"], serde_json::json!(seqs));
    assert_eq!(read["columns"].as_array().unwrap().len(), 17);
    // add.stats are usable: a filter on one ledger keeps only its partition's file.
    assert_eq!(
        read["pruned_files"],
        serde_json::json!(expected_paths(&ranges[..1])),
        "{read}"
    );

    // Time travel: version 5 has the first five partitions.
    let v5 = delta_read(h.dataset(), Some(5));
    assert_eq!(
        v5["files"],
        serde_json::json!(expected_paths(&ranges[..5])),
        "{v5}"
    );
    assert_eq!(v5["rows_deltalake"], 50);
    assert_eq!(v5["equal_deltalake"], true, "{v5}");

    h.assert_verifies();
}

#[test]
fn without_the_key_no_log_is_written() {
    let h = Harness::testnet(20).partition_size(10);
    h.run_expect(0);
    assert_eq!(h.committed().len(), 2);
    assert!(
        !log_dir(&h).exists(),
        "table_format none wrote a _delta_log"
    );
    let names: Vec<String> = std::fs::read_dir(h.dataset())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert!(names.iter().all(|n| n.starts_with("range=")), "{names:?}");
}

#[test]
fn turning_delta_on_backfills_the_log_from_the_manifests_in_order() {
    let mut h = Harness::testnet(60).partition_size(10);
    h.run_expect(0);
    assert!(!log_dir(&h).exists());
    // Everything is copied already: the run has nothing to do but the log is written.
    h.env
        .push(("STORAGE_TABLE_FORMAT".to_string(), "delta".to_string()));
    h.run_expect(0);
    assert_eq!(logged_paths(&h), expected_paths(&h.ranges()));
    let read = delta_read(h.dataset(), None);
    assert_eq!(read["version"], 6, "{read}");
    assert_table_matches_parquet(&read, &h);
    h.assert_verifies();
    // Again: nothing is added twice.
    h.run_expect(0);
    assert_eq!(logged_paths(&h), expected_paths(&h.ranges()));
}

#[test]
fn a_partition_committed_but_missing_from_the_log_is_reported_then_added_once() {
    let h = with_delta(Harness::testnet(40).partition_size(10));
    h.run_expect(0);
    // A crash between the last manifest and its log entry: the last commit never happened.
    std::fs::remove_file(commit_path(&h, 4)).unwrap();
    let out = h.verify();
    let stdout = text(&out);
    assert_ne!(out.status.code(), Some(0), "{stdout}");
    assert!(
        has_problem(&stdout, "32-41", "delta.missing_add"),
        "{stdout}"
    );
    h.run_expect(0);
    assert_eq!(logged_paths(&h), expected_paths(&h.ranges()));
    h.assert_verifies();
    let read = delta_read(h.dataset(), None);
    assert_table_matches_parquet(&read, &h);
}

/// Appends `line` as a new commit after the last one; returns its version.
fn append_commit(h: &Harness, line: &str) -> u64 {
    let mut v = 0;
    while commit_path(h, v).exists() {
        v += 1;
    }
    std::fs::write(commit_path(h, v), format!("{line}\n")).unwrap();
    v
}

#[test]
fn verify_names_the_version_and_partition_of_a_log_that_disagrees() {
    let h = with_delta(Harness::testnet(30).partition_size(10));
    h.run_expect(0);
    h.assert_verifies();

    // A duplicate add of partition 12-21.
    let dup = h.copy_outputs();
    let first = adds_of(&commit_path(&dup, 2)).remove(0);
    let v = append_commit(&dup, &serde_json::json!({ "add": first }).to_string());
    let stdout = text(&with_delta(dup).verify());
    assert!(
        has_problem(&stdout, "12-21", "delta.duplicate_add"),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("version {v} adds")), "{stdout}");

    // An add with the wrong size.
    let size = h.copy_outputs();
    let mut add = adds_of(&commit_path(&size, 3)).remove(0);
    add["size"] = serde_json::json!(add["size"].as_i64().unwrap() + 1);
    let v = append_commit(&size, &serde_json::json!({ "add": add }).to_string());
    let stdout = text(&with_delta(size).verify());
    assert!(has_problem(&stdout, "22-31", "delta.size"), "{stdout}");
    assert!(
        stdout.contains(&format!("version {v} adds partition 22-31")),
        "{stdout}"
    );

    // An add of a file whose partition has no manifest.
    let orphan = h.copy_outputs();
    std::fs::remove_file(orphan.manifest_path(2, 11)).unwrap();
    let stdout = text(&with_delta(orphan).verify());
    assert!(
        has_problem(&stdout, "2-11", "delta.no_manifest"),
        "{stdout}"
    );
    assert!(stdout.contains("version 1 adds partition 2-11"), "{stdout}");

    // A hole in the versions.
    let gap = h.copy_outputs();
    std::fs::remove_file(commit_path(&gap, 2)).unwrap();
    let stdout = text(&with_delta(gap).verify());
    assert!(has_problem(&stdout, "-", "delta.gap"), "{stdout}");
    assert!(stdout.contains("versions 2 to 2 are missing"), "{stdout}");
}

#[test]
fn sigkill_during_commits_leaves_a_table_with_each_partition_once() {
    let h = with_delta(Harness::testnet(200).partition_size(5));
    let mut dice = CrashDice::from_clock();
    let mut kills = 0;
    for round in 0..10 {
        let kill_after = if round < 7 {
            Some(3 + dice.below(30))
        } else {
            None
        };
        let (status, killed) =
            run_killed_after_lines(h.command(&["-no-progress"]), kill_after, &mut dice);
        if killed {
            kills += 1;
            // Whatever moment the kill hit, the table opens and holds only committed partitions,
            // each once.
            if log_dir(&h).exists() {
                let read = delta_read(h.dataset(), None);
                let files: Vec<String> = serde_json::from_value(read["files"].clone()).unwrap();
                let committed = expected_paths(&h.committed());
                assert!(files.iter().all(|f| committed.contains(f)), "{read}");
                let mut unique = files.clone();
                unique.dedup();
                assert_eq!(unique, files, "a partition twice: {read}");
                assert_eq!(read["equal_deltalake"], true, "{read}");
            }
            continue;
        }
        assert!(status.success(), "round {round}: {status:?}");
        if h.checkpoint_ledger() == Some(h.ledger_end) {
            break;
        }
    }
    assert!(kills >= 1, "the test killed nothing");
    h.run_expect(0);
    assert_eq!(h.committed(), h.ranges());
    let logged = logged_paths(&h);
    assert_eq!(
        logged,
        expected_paths(&h.ranges()),
        "each partition exactly once, in order"
    );
    let read = delta_read(h.dataset(), None);
    assert_eq!(read["version"], h.ranges().len(), "{read}");
    assert_table_matches_parquet(&read, &h);
    h.assert_verifies();
}

#[test]
fn a_reader_during_the_run_sees_only_committed_partitions() {
    let h = with_delta(Harness::testnet(400).partition_size(5)).perf("max_in_flight_partitions", 1);
    let log = h.path("run.log");
    let mut child = h.spawn_logging_to(&log);
    let mut reads = 0;
    let mut partial = 0;
    loop {
        let finished = child.try_wait().unwrap().is_some();
        if log_dir(&h).join("00000000000000000000.json").exists() {
            let read = delta_read(h.dataset(), None);
            // Read after the table: the committed set only grows, so every file the table
            // showed must have its manifest by now.
            let committed = expected_paths(&h.committed());
            let files: Vec<String> = serde_json::from_value(read["files"].clone()).unwrap();
            assert!(files.iter().all(|f| committed.contains(f)), "{read}");
            assert_eq!(
                files,
                committed[..files.len()].to_vec(),
                "not a prefix in ledger order"
            );
            assert_eq!(read["equal_deltalake"], true, "{read}");
            assert_eq!(read["equal_polars"], true, "{read}");
            reads += 1;
            if files.len() < h.ranges().len() {
                partial += 1;
            }
        }
        if finished {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    eprintln!("{reads} reads during the run, {partial} of a partial table");
    assert!(
        partial >= 1,
        "no read landed during the run ({reads} reads)"
    );
    assert_eq!(logged_paths(&h), expected_paths(&h.ranges()));
}

#[test]
fn an_overwrite_adds_the_replaced_files_again_and_readers_see_the_new_rows() {
    let mut h = with_delta(Harness::testnet(30).partition_size(10));
    h.run_expect(0);
    assert_eq!(logged_paths(&h).len(), 3);
    h.era_lines = "  allow_overwrite: true\n".into();
    h.ingested_at = "2025-06-01T00:00:00Z".into();
    h.run_expect(0);
    // Versions 4..=6 add the replaced files (same paths, new manifests).
    let paths = expected_paths(&h.ranges());
    let twice: Vec<String> = paths.iter().chain(paths.iter()).cloned().collect();
    assert_eq!(logged_paths(&h), twice);
    let read = delta_read(h.dataset(), None);
    assert_eq!(read["version"], 6, "{read}");
    assert_table_matches_parquet(&read, &h);
    h.assert_verifies();
    // A rerun of the same overwrite changes nothing: the files come out identical.
    h.run_expect(0);
    assert_eq!(logged_paths(&h), twice);
}

/// On S3 (moto on loopback): the commits are conditional creates on the bucket, and delta-rs
/// opens the table by its `s3://` URI, through the checkpoint, with every row.
#[test]
fn on_s3_the_table_opens_by_its_uri() {
    let s3 = bronze_testkit::MotoS3::start();
    s3.create_bucket("lake");
    let endpoint = s3.endpoint();
    let h = with_delta(Harness::testnet(120).partition_size(10))
        .storage(format!("storage:\n  backend: s3\n  s3_bucket: lake\n  s3_endpoint: {endpoint}\n  s3_region: us-east-1\n  prefix: bronze\n"))
        .envs(s3.env());
    h.run_expect(0);
    let dataset = "bronze/testnet/pre_p23/v1/ledgers_lcm_raw";
    let keys = s3.list_objects("lake", &format!("{dataset}/_delta_log/"));
    assert!(
        keys.iter()
            .any(|k| k.ends_with("00000000000000000010.checkpoint.parquet")),
        "{keys:?}"
    );
    assert!(
        keys.iter()
            .any(|k| k.ends_with("00000000000000000012.json")),
        "{keys:?}"
    );
    let options = serde_json::json!({
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": s3.access_key(),
        "AWS_SECRET_ACCESS_KEY": s3.secret_key(),
        "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
        "AWS_EC2_METADATA_DISABLED": "true",
    });
    let read = bronze_testkit::delta_read_uri(&format!("s3://lake/{dataset}"), &options);
    assert_eq!(read["version"], 12, "{read}");
    assert_eq!(
        read["files"],
        serde_json::json!(expected_paths(&h.ranges())),
        "{read}"
    );
    assert_eq!(read["rows_deltalake"], 120, "{read}");
    let seqs: Vec<u64> = (2..=121).collect();
    assert_eq!(read["ledger_sequences"], serde_json::json!(seqs));
    // A second run (nothing to copy) adds nothing.
    h.run_expect(0);
    let keys = s3.list_objects("lake", &format!("{dataset}/_delta_log/"));
    assert!(
        !keys
            .iter()
            .any(|k| k.ends_with("00000000000000000013.json")),
        "{keys:?}"
    );
}
