//! `storage.table_format: delta`: the dataset folder read as a Delta Lake table by the real
//! readers (delta-rs, DataFusion SQL, Polars' native scan and DuckDB: `tests/py/delta_read.py`;
//! Spark: `tests/py/spark_read.py`), compared row by row with the Parquet files; point queries
//! pruned by statistics; signed integer types, and tables of earlier versions (unsigned) kept
//! consistent; backfill and repair of the log from the manifests; `verify` of the log; SIGKILL
//! during commits; a reader during a run.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bronze_testkit::{delta_read, spark_read};
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

/// The files the committed manifests commit, relative to the table root, in ledger order
/// (`part-S-E.parquet`, or a replacement's `part-S-E.<tag>.parquet`).
fn committed_paths(h: &Harness) -> Vec<String> {
    h.manifests()
        .iter()
        .map(|m| {
            let (s, e) = (m.partition.start, m.partition.end);
            format!("range={s}-{e}/{}", m.primary().unwrap().file)
        })
        .collect()
}

/// delta-rs (and DataFusion SQL through it) read every committed ledger once, equal to the files.
fn assert_table_matches_parquet(read: &Value, h: &Harness) {
    let ranges = h.committed();
    assert_eq!(
        read["files"],
        serde_json::json!(committed_paths(h)),
        "{read}"
    );
    let seqs: Vec<u64> = ranges
        .iter()
        .flat_map(|(s, e)| u64::from(*s)..=u64::from(*e))
        .collect();
    assert_eq!(read["ledger_sequences"], serde_json::json!(seqs), "{read}");
    for reader in ["deltalake", "datafusion"] {
        assert_eq!(
            read[format!("rows_{reader}")],
            seqs.len(),
            "{reader}: {read}"
        );
        assert_eq!(
            read[format!("equal_{reader}")],
            true,
            "{reader} rows differ: {read}"
        );
    }
}

/// Every reader (delta-rs, DataFusion SQL, Polars' native scan, DuckDB over the listed files with
/// the table's types) reads every committed ledger exactly once, row for row equal to the Parquet
/// files; the table says `long`/`integer` and the files hold exactly those types.
fn assert_every_reader_reads_the_table(read: &Value, h: &Harness) {
    assert_table_matches_parquet(read, h);
    assert_eq!(read["errors"], serde_json::json!({}), "{read}");
    let rows = read["rows_deltalake"].clone();
    for reader in ["polars", "duckdb"] {
        assert_eq!(read[format!("rows_{reader}")], rows, "{reader}: {read}");
        assert_eq!(
            read[format!("equal_{reader}")],
            true,
            "{reader} rows differ: {read}"
        );
    }
    assert_eq!(
        read["table_types"],
        serde_json::json!({"ledger_sequence": "long", "protocol_version": "integer"})
    );
    assert_eq!(
        read["duckdb_file_types"],
        serde_json::json!({"ledger_sequence": "BIGINT", "protocol_version": "INTEGER"})
    );
}

/// Spark's Parquet reader, given the table's schema from the log, reads the files the log lists:
/// every committed ledger once, equal to pyarrow's reading, and a point query finds its row.
fn assert_spark_reads_the_table(h: &Harness) -> Value {
    let spark = spark_read(h.dataset());
    assert!(spark.get("error").is_none(), "Spark failed: {spark}");
    let seqs: Vec<u64> = h
        .committed()
        .iter()
        .flat_map(|(s, e)| u64::from(*s)..=u64::from(*e))
        .collect();
    assert_eq!(
        spark["ledger_sequences"],
        serde_json::json!(seqs),
        "{spark}"
    );
    assert_eq!(spark["equal"], true, "Spark rows differ: {spark}");
    let schema: Vec<String> = serde_json::from_value(spark["schema"].clone()).unwrap();
    assert_eq!(schema[0], "ledger_sequence: bigint");
    assert_eq!(schema[4], "protocol_version: int");
    assert_eq!(spark["point_rows"], 1, "{spark}");
    spark
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
    assert_every_reader_reads_the_table(&read, &h);
    let seqs: Vec<u64> = (2..=121).collect();
    assert_eq!(read["ledger_sequences"], serde_json::json!(seqs));
    assert_eq!(read["columns"].as_array().unwrap().len(), 17);
    // add.stats are usable: a filter on one ledger keeps only its partition's file.
    assert_eq!(
        read["pruned_files"],
        serde_json::json!(expected_paths(&ranges[..1])),
        "{read}"
    );
    // A point query on ledger_sequence: DataFusion opens the one file of 12 that holds it.
    let point = &read["point_query"];
    assert_eq!(point["ledger"], 63, "{read}");
    assert_eq!(point["file"], "range=62-71/part-62-71.parquet", "{read}");
    assert_eq!(point["files_opened"], 1, "{read}");
    assert_eq!(point["files_opened_unfiltered"], 12, "{read}");
    assert_eq!(point["rows_datafusion"], 1, "{read}");
    assert_eq!(point["rows_polars"], 1, "{read}");
    // pyarrow reads the row-group statistics of ledger_sequence as signed INT64 min/max: each
    // file's are its range.
    let stats = read["row_group_stats"].as_array().unwrap();
    assert_eq!(stats.len(), 12, "one row group per partition: {read}");
    for (stat, (s, e)) in stats.iter().zip(&ranges) {
        assert_eq!(stat["file"], format!("part-{s}-{e}.parquet"));
        assert_eq!(stat["column"], "ledger_sequence");
        assert_eq!(stat["physical"], "INT64");
        assert_eq!(stat["logical"], "None", "no unsigned annotation: {stat}");
        assert_eq!(
            (stat["min"].clone(), stat["max"].clone()),
            ((*s).into(), (*e).into())
        );
    }
    // Spark reads the same, with the table's schema.
    assert_spark_reads_the_table(&h);

    // Time travel: version 5 has the first five partitions.
    let v5 = delta_read(h.dataset(), Some(5));
    assert_eq!(
        v5["files"],
        serde_json::json!(expected_paths(&ranges[..5])),
        "{v5}"
    );
    for reader in ["deltalake", "datafusion", "polars", "duckdb"] {
        assert_eq!(v5[format!("rows_{reader}")], 50, "{reader}: {v5}");
        assert_eq!(v5[format!("equal_{reader}")], true, "{reader}: {v5}");
    }

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

const EARLIER_VERSION_WARNING: &str =
    "written by an earlier version of the copier with unsigned ledger_sequence";

/// The table's `metaData` (version 0).
fn metadata(h: &Harness) -> Value {
    std::fs::read_to_string(commit_path(h, 0))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find_map(|v| v.get("metaData").cloned())
        .unwrap()
}

/// A plain dataset (the original's unsigned files) turned into a table: the table takes the types
/// its files have (unsigned, `long` in the schema as earlier versions declared), the copier says
/// so once, and new partitions stay unsigned, so the files never disagree. delta-rs and
/// DataFusion read it; Polars' native scan refuses the unsigned column (why new tables are
/// signed).
#[test]
fn turning_delta_on_backfills_the_log_from_the_manifests_in_order() {
    let mut h = Harness::testnet(60).partition_size(10);
    h.ledger_end = 41;
    h.run_expect(0);
    assert!(!log_dir(&h).exists());
    // Everything is copied already: the run has nothing to do but the log is written.
    h.env
        .push(("STORAGE_TABLE_FORMAT".to_string(), "delta".to_string()));
    let log = h.run_expect(0);
    assert_eq!(log.matches(EARLIER_VERSION_WARNING).count(), 1, "{log}");
    assert_eq!(logged_paths(&h), expected_paths(&h.ranges()));
    assert_eq!(
        metadata(&h)["configuration"]["bronze.integerTypes"],
        "unsigned"
    );
    // New partitions of that table keep its types.
    h.ledger_end = 61;
    h.run_expect(0);
    assert_eq!(logged_paths(&h), expected_paths(&h.ranges()));
    // The backfill of the log committed the 4 partitions in one version; then one per partition.
    let read = delta_read(h.dataset(), None);
    assert_eq!(read["version"], 3, "{read}");
    assert_eq!(adds_of(&commit_path(&h, 1)).len(), 4);
    assert_table_matches_parquet(&read, &h);
    assert_eq!(
        read["table_types"],
        serde_json::json!({"ledger_sequence": "long", "protocol_version": "long"})
    );
    assert_eq!(
        read["duckdb_file_types"],
        serde_json::json!({"ledger_sequence": "UBIGINT", "protocol_version": "UINTEGER"}),
        "every file unsigned, the new ones too: {read}"
    );
    assert!(
        read["errors"]["polars"]
            .as_str()
            .is_some_and(|e| e.contains("UInt64")),
        "{read}"
    );
    h.assert_verifies();
    // Again: nothing is added twice.
    h.run_expect(0);
    assert_eq!(logged_paths(&h), expected_paths(&h.ranges()));
}

/// A table written by an earlier version (unsigned files, no `bronze.integerTypes` in its
/// metadata): the copier says so once and appends unsigned files; `verify` is clean.
#[test]
fn a_table_of_an_earlier_version_keeps_its_unsigned_files() {
    let mut h = Harness::testnet(40).partition_size(10);
    h.ledger_end = 21;
    h.run_expect(0);
    h.env
        .push(("STORAGE_TABLE_FORMAT".to_string(), "delta".to_string()));
    h.run_expect(0);
    // What earlier versions wrote: version 0 without the key (configuration {}).
    let v0 = std::fs::read_to_string(commit_path(&h, 0)).unwrap();
    let earlier = v0.replace("\"bronze.integerTypes\":\"unsigned\"", "");
    assert_ne!(earlier, v0);
    std::fs::write(commit_path(&h, 0), earlier).unwrap();
    assert_eq!(metadata(&h)["configuration"], serde_json::json!({}));
    h.ledger_end = 41;
    let log = h.run_expect(0);
    assert_eq!(log.matches(EARLIER_VERSION_WARNING).count(), 1, "{log}");
    let read = delta_read(h.dataset(), None);
    assert_table_matches_parquet(&read, &h);
    assert_eq!(
        read["duckdb_file_types"],
        serde_json::json!({"ledger_sequence": "UBIGINT", "protocol_version": "UINTEGER"}),
        "{read}"
    );
    // Why new tables are signed: Spark's reader fails on the unsigned dictionary column.
    let spark = spark_read(h.dataset());
    assert!(
        spark["error"]
            .as_str()
            .is_some_and(|e| e.contains("PlainLongDictionary")),
        "{spark}"
    );
    h.assert_verifies();
}

/// A committed partition whose file has other integer types than the table's (here an unsigned
/// file of the plain layout put into a signed table) is never added: the copier stops with a
/// conflict naming the file and the types, the log is unchanged; `verify` reports such a file
/// in the log by version and partition.
#[test]
fn a_file_whose_types_differ_from_the_table_is_refused_and_reported() {
    let plain = Harness::testnet(30).partition_size(10);
    plain.run_expect(0);
    let mut h = with_delta(Harness::testnet(30).partition_size(10));
    h.ledger_end = 21;
    h.run_expect(0);
    assert_eq!(
        metadata(&h)["configuration"]["bronze.integerTypes"],
        "signed"
    );
    let copy_partition = |to: &Harness, (s, e): (u32, u32)| {
        let dir = to.partition_dir(s, e);
        std::fs::create_dir_all(&dir).unwrap();
        for name in [
            format!("part-{s}-{e}.parquet"),
            "_manifest.json".to_string(),
        ] {
            std::fs::copy(plain.partition_dir(s, e).join(&name), dir.join(&name)).unwrap();
        }
    };
    // The next partition committed unsigned (by a plain run) before the copier logs it.
    copy_partition(&h, (22, 31));
    h.ledger_end = 31;
    let log = h.run_expect(4);
    assert!(
        log.contains("range=22-31/part-22-31.parquet stores ledger_sequence and protocol_version as unsigned integers, but the table's files are signed"),
        "{log}"
    );
    assert!(!commit_path(&h, 3).exists(), "nothing added");

    // In the log: verify names the version and the partition.
    let mixed = with_delta(Harness::testnet(30).partition_size(10));
    mixed.run_expect(0);
    copy_partition(&mixed, (12, 21));
    let stdout = text(&mixed.verify());
    assert!(
        has_problem(&stdout, "12-21", "delta.column_types"),
        "{stdout}"
    );
    assert!(
        stdout.contains("version 2 adds partition 12-21, whose file stores ledger_sequence and protocol_version as unsigned integers; the table's schema says signed"),
        "{stdout}"
    );
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
    assert_every_reader_reads_the_table(&read, &h);
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
            // Whatever moment the kill hit, the table (once its version 0 exists) opens and holds
            // only committed partitions, each once. A kill while version 0 was being created can
            // leave `_delta_log/` with only the local store's staging file (`...json#N`): no table
            // yet, as on an object store, where the folder does not exist until an object does
            // (delta-rs: "No files in log segment"; the real CI failed once on it).
            if commit_path(&h, 0).exists() {
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
    assert_every_reader_reads_the_table(&read, &h);
    assert_spark_reads_the_table(&h);
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

/// The actions of commit `version`, as JSON objects.
fn actions_of(h: &Harness, version: u64) -> Vec<Value> {
    std::fs::read_to_string(commit_path(h, version))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .collect()
}

fn sha256_of(path: &Path) -> String {
    use sha2::Digest;
    format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
    )
}

/// An overwrite in a Delta table (issue 22 §4, issue 19): each replaced partition is one version
/// that removes the old file and adds the new one, under a name of its own, with its own size;
/// the old file stays as it was, so a reader of the version before (time travel) still reads it
/// row for row; every reader of the latest version sees each ledger once, from the new files.
#[test]
fn an_overwrite_removes_the_old_file_and_adds_the_new_one_in_one_commit() {
    let mut h = with_delta(Harness::testnet(30).partition_size(10));
    h.run_expect(0);
    let ranges = h.ranges();
    let old_paths = expected_paths(&ranges);
    let old_manifests = h.manifests();
    h.era_lines = "  allow_overwrite: true\n".into();
    h.ingested_at = "2025-06-01T00:00:00Z".into();
    h.run_expect(0);
    let new_paths = committed_paths(&h);
    let manifests = h.manifests();
    for (i, version) in (4..=6).enumerate() {
        let (s, e) = ranges[i];
        let name = new_paths[i].rsplit('/').next().unwrap();
        assert!(
            name.starts_with(&format!("part-{s}-{e}.")) && name != format!("part-{s}-{e}.parquet"),
            "{name}"
        );
        let actions = actions_of(&h, version);
        let removes: Vec<&Value> = actions.iter().filter_map(|a| a.get("remove")).collect();
        let adds: Vec<&Value> = actions.iter().filter_map(|a| a.get("add")).collect();
        assert_eq!(removes.len(), 1, "version {version}: {actions:?}");
        assert_eq!(adds.len(), 1, "version {version}: {actions:?}");
        assert_eq!(removes[0]["path"], old_paths[i].as_str());
        assert_eq!(removes[0]["dataChange"], true);
        assert!(removes[0]["deletionTimestamp"].as_i64().unwrap() > 0);
        assert_eq!(adds[0]["path"], new_paths[i].as_str());
        let table = manifests[i].primary().unwrap();
        assert_eq!(adds[0]["size"], table.byte_size);
        let file = h.dataset().join(&new_paths[i]);
        assert_eq!(std::fs::metadata(&file).unwrap().len(), table.byte_size);
        // The replaced file is still there, byte for byte what version 3 adds.
        let old = old_manifests[i].primary().unwrap();
        assert_ne!(old.checksum, table.checksum);
        assert_eq!(sha256_of(&h.dataset().join(&old_paths[i])), old.checksum);
    }
    assert!(!commit_path(&h, 7).exists());
    let read = delta_read(h.dataset(), None);
    assert_eq!(read["version"], 6, "{read}");
    assert_every_reader_reads_the_table(&read, &h);
    // Time travel to the version before the overwrite: the old files, every ledger once.
    let before = delta_read(h.dataset(), Some(3));
    assert_eq!(before["version"], 3, "{before}");
    assert_eq!(before["files"], serde_json::json!(old_paths), "{before}");
    assert_eq!(before["errors"], serde_json::json!({}), "{before}");
    for reader in ["deltalake", "polars", "datafusion", "duckdb"] {
        assert_eq!(before[format!("rows_{reader}")], 30, "{reader}: {before}");
        assert_eq!(
            before[format!("equal_{reader}")],
            true,
            "{reader}: {before}"
        );
    }
    // Half-way (version 4): the first partition new, the others old; still each ledger once.
    let mid = delta_read(h.dataset(), Some(4));
    let mut mixed = old_paths.clone();
    mixed[0] = new_paths[0].clone();
    assert_eq!(mid["files"], serde_json::json!(mixed), "{mid}");
    assert_eq!(mid["rows_deltalake"], 30, "{mid}");
    h.assert_verifies();
    // A rerun of the same overwrite changes nothing: the files come out identical.
    h.run_expect(0);
    assert!(!commit_path(&h, 7).exists());
    assert_eq!(committed_paths(&h), new_paths);
}

/// The log cleanup a month on (the library's `DeltaTable::clean_up` with an injected clock) of a
/// table whose every partition was replaced: the commits and checkpoint before the last
/// checkpoint and the replaced files are deleted, `_last_checkpoint` still names the last
/// checkpoint, every reader opens the table and reads every ledger once, `verify` is clean,
/// and the next run goes on from the cleaned log.
#[test]
fn after_the_log_cleanup_every_reader_still_opens_the_table() {
    let mut h = with_delta(Harness::testnet(120).partition_size(10));
    h.run_expect(0);
    let old_paths = expected_paths(&h.ranges());
    h.era_lines = "  allow_overwrite: true\n".into();
    h.ingested_at = "2025-06-01T00:00:00Z".into();
    h.run_expect(0);
    // Versions 1..=12 the partitions, 13..=24 their replacements; checkpoints at 10 and 20.
    assert!(commit_path(&h, 24).exists() && !commit_path(&h, 25).exists());
    let location =
        bronze::store::local("storage.local_dir", h.out_dir().to_str().unwrap(), false).unwrap();
    let layout = bronze::publish::DatasetLayout {
        prefix: "bronze/".into(),
        network: "testnet".into(),
        era_id: "pre_p23".into(),
        version_label: "v1".into(),
    };
    let table = bronze::delta::DeltaTable::new(&location, &layout);
    let month_on = chrono::Utc::now().timestamp_millis() + 31 * 24 * 3600 * 1000;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cleaned = rt.block_on(table.clean_up(month_on)).unwrap();
    assert_eq!((cleaned.log_files, cleaned.data_files), (20 + 1, 12));
    for v in 0..20 {
        assert!(!commit_path(&h, v).exists(), "{v}");
    }
    assert!(
        !log_dir(&h)
            .join("00000000000000000010.checkpoint.parquet")
            .exists()
    );
    assert!(
        log_dir(&h)
            .join("00000000000000000020.checkpoint.parquet")
            .exists()
    );
    let last: Value =
        serde_json::from_slice(&std::fs::read(log_dir(&h).join("_last_checkpoint")).unwrap())
            .unwrap();
    assert_eq!(last["version"], 20);
    for old in &old_paths {
        assert!(!h.dataset().join(old).exists(), "{old}");
    }
    let read = delta_read(h.dataset(), None);
    assert_eq!(read["version"], 24, "{read}");
    assert_every_reader_reads_the_table(&read, &h);
    h.assert_verifies();
    // The next run (no overwrite) finds everything committed and logged.
    h.era_lines = String::new();
    h.run_expect(0);
    assert!(!commit_path(&h, 25).exists());
    h.assert_verifies();
}

/// Every file of the dataset folder but the Parquet data (the log, the manifests), path → bytes.
fn log_and_manifests(h: &Harness) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    fn walk(dir: &Path, out: &mut std::collections::BTreeMap<PathBuf, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_none_or(|e| e != "parquet")
                || path.to_string_lossy().contains("_delta_log")
            {
                out.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(&h.dataset(), &mut out);
    out
}

/// A table of 12 partitions (versions 0..=12, a checkpoint at 10).
fn table_to_damage() -> Harness {
    let h = with_delta(Harness::testnet(120).partition_size(10));
    h.run_expect(0);
    h.assert_verifies();
    h
}

/// The copier meets the damaged log of `h`: it exits as a conflict (4) with a message naming
/// `damage` and `repair`, and nothing of the log or the manifests changed.
fn assert_refused(h: &Harness, damage: &str, repair: &str) {
    let before = log_and_manifests(h);
    let log = h.run_expect(4);
    assert!(log.contains("the Delta log is damaged"), "{log}");
    assert!(log.contains(damage), "{log}");
    assert!(log.contains(repair), "{log}");
    assert!(
        log_and_manifests(h) == before,
        "the refused run changed the log or a manifest"
    );
}

/// A missing version (issue 22, bad input): the copier refuses to append, naming the version and
/// the repair command; `verify` names the versions; `repair-delta-log` moves the damaged log aside
/// and rebuilds it from the manifests; then runs go on, `verify` is clean, every reader reads
/// every ledger once.
#[test]
fn a_log_missing_a_version_is_refused_reported_and_repaired() {
    let h = table_to_damage();
    std::fs::remove_file(commit_path(&h, 11)).unwrap();
    assert_refused(
        &h,
        "commit version 11 is missing",
        "bronze-copier repair-delta-log",
    );
    let stdout = text(&h.verify());
    assert!(has_problem(&stdout, "-", "delta.gap"), "{stdout}");
    assert!(stdout.contains("versions 11 to 11 are missing"), "{stdout}");

    let out = crate::binary::exec(&mut h.command(&["repair-delta-log"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("commit version 11 is missing"), "{said}");
    let moved: Vec<PathBuf> = std::fs::read_dir(h.dataset())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("_delta_log.damaged-"))
        .collect();
    assert_eq!(moved.len(), 1, "{said}");
    assert!(moved[0].join("00000000000000000012.json").exists());
    // The rebuilt log: version 0, then the 12 partitions in one commit.
    assert_eq!(adds_of(&commit_path(&h, 1)).len(), 12);
    assert!(!commit_path(&h, 2).exists());
    // Not damaged any more: a second repair changes nothing.
    let again = crate::binary::exec(&mut h.command(&["repair-delta-log"]));
    assert_eq!(again.status.code(), Some(4), "{}", text(&again));
    h.run_expect(0);
    let read = delta_read(h.dataset(), None);
    assert_every_reader_reads_the_table(&read, &h);
    let out = h.assert_verifies();
    assert!(
        text(&out).contains("_delta_log.damaged-"),
        "the moved log is shown"
    );
}

/// A checkpoint that does not read: refused, naming the checkpoint; `verify` reports it.
#[test]
fn a_bad_checkpoint_is_refused_and_reported() {
    let h = table_to_damage();
    let checkpoint = log_dir(&h).join("00000000000000000010.checkpoint.parquet");
    std::fs::write(&checkpoint, b"not a parquet file").unwrap();
    assert_refused(
        &h,
        "00000000000000000010.checkpoint.parquet",
        "bronze-copier repair-delta-log",
    );
    let stdout = text(&h.verify());
    assert!(has_problem(&stdout, "-", "delta.checkpoint"), "{stdout}");
    let out = crate::binary::exec(&mut h.command(&["repair-delta-log"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    h.run_expect(0);
    h.assert_verifies();
}

/// An add whose file is gone: refused, naming the version and the partition; the partition's own
/// committed file cannot come from a log, so the message says to restore it; `verify` names the
/// version and partition. With the file back, the run goes on.
#[test]
fn an_add_whose_file_is_gone_is_refused_and_reported_by_version_and_partition() {
    let h = table_to_damage();
    let file = h.parquet_path(22, 31);
    let bytes = std::fs::read(&file).unwrap();
    std::fs::remove_file(&file).unwrap();
    assert_refused(
        &h,
        "adds range=22-31/part-22-31.parquet (partition 22-31), which is not in storage",
        "restore it from a copy",
    );
    let stdout = text(&h.verify());
    assert!(
        has_problem(&stdout, "22-31", "delta.missing_file"),
        "{stdout}"
    );
    assert!(
        stdout.contains("version 3 adds range=22-31/part-22-31.parquet"),
        "{stdout}"
    );
    std::fs::write(&file, bytes).unwrap();
    h.run_expect(0);
    h.assert_verifies();
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
