//! `storage.table_format: delta`: the dataset folder read as a Delta Lake table by the real
//! readers (the `deltalake` package and Polars, `tests/py/delta_read.py`), compared row by row
//! with the Parquet files; backfill and repair of the log from the manifests; `verify` of the log;
//! SIGKILL during commits; a reader during a run.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use bronze_testkit::delta_read;
use serde_json::Value;

use crate::binary::{describe, text};
use crate::harness::{Harness, has_problem};

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
    assert_eq!(read["files"], serde_json::json!(expected_paths(&ranges)), "{read}");
    let rows: u64 = ranges.iter().map(|(s, e)| u64::from(e - s + 1)).sum();
    assert_eq!(read["rows_deltalake"], rows, "{read}");
    assert_eq!(read["rows_polars"], rows, "{read}");
    assert_eq!(read["equal_deltalake"], true, "deltalake rows differ: {read}");
    assert_eq!(read["equal_polars"], true, "polars rows differ: {read}");
}

#[test]
fn the_dataset_is_a_delta_table_readers_read_row_for_row() {
    // 12 partitions: versions 1..=12 after the table's creation, a checkpoint at version 10.
    let h = with_delta(Harness::testnet(120).partition_size(10));
    h.run_expect(0);
    let ranges = h.ranges();
    assert_eq!(h.committed(), ranges);
    assert_eq!(logged_paths(&h), expected_paths(&ranges), "one add per partition, in ledger order");
    assert!(log_dir(&h).join("00000000000000000010.checkpoint.parquet").exists());
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
    assert_eq!(read["pruned_files"], serde_json::json!(expected_paths(&ranges[..1])), "{read}");

    // Time travel: version 5 has the first five partitions.
    let v5 = delta_read(h.dataset(), Some(5));
    assert_eq!(v5["files"], serde_json::json!(expected_paths(&ranges[..5])), "{v5}");
    assert_eq!(v5["rows_deltalake"], 50);
    assert_eq!(v5["equal_deltalake"], true, "{v5}");

    h.assert_verifies();
}
