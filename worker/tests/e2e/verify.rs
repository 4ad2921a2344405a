//! `bronze-copier verify` end to end: clean output passes; every kind of damage it claims to
//! detect fails it, naming the partition and the check.

use std::path::Path;
use std::sync::OnceLock;

use crate::binary::describe;
use crate::harness::{Harness, has_problem};

/// One clean backfill (200 ledgers, partitions of 20, PAS file-only), made once and copied for
/// each damage.
fn pristine() -> &'static Harness {
    static PRISTINE: OnceLock<Harness> = OnceLock::new();
    PRISTINE.get_or_init(|| {
        let setup = Harness::testnet(200).partition_size(20).pas("");
        let out = setup.run();
        assert!(out.status.success(), "{}", describe(&out));
        setup
    })
}

/// A private copy of the pristine backfill (same config, paths rewritten).
fn copy() -> Harness {
    pristine().copy_outputs()
}

/// Flips the lowest bit of the byte at `at` (or of the last byte).
fn flip_byte(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = at.min(bytes.len() - 1);
    bytes[at] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

/// Cuts a file to the length `to(its length)`.
fn truncate(path: &Path, to: impl FnOnce(u64) -> u64) {
    let len = std::fs::metadata(path).unwrap().len();
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(to(len))
        .unwrap();
}

/// Swaps two files or folders.
fn swap(a: &Path, b: &Path) {
    let tmp = a.with_extension("swap");
    std::fs::rename(a, &tmp).unwrap();
    std::fs::rename(b, a).unwrap();
    std::fs::rename(&tmp, b).unwrap();
}

/// Replaces the first `from` of a text file (which must contain it) with `to`.
fn replace_once(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{} has no {from:?}", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

/// Runs verify and asserts it failed with, among others, a PROBLEM line for each
/// `(partition, check)`.
fn assert_problems(s: &Harness, expected: &[(&str, &str)]) -> String {
    let out = s.verify();
    let text = describe(&out);
    assert_eq!(out.status.code(), Some(5), "{text}");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    for (partition, check) in expected {
        assert!(
            has_problem(&stdout, partition, check),
            "expected a {check} problem for partition {partition}:\n{text}"
        );
    }
    let summary = stdout.lines().last().unwrap_or_default();
    assert!(
        summary.starts_with("verified ") && summary.contains(" problem"),
        "{summary}"
    );
    stdout
}

#[test]
fn clean_output_verifies() {
    let s = copy();
    let out = s.assert_verifies();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.lines().last(),
        Some("verified 10 partitions, 200 ledgers: OK"),
        "{stdout}"
    );
    assert!(!stdout.contains("PROBLEM"), "{stdout}");
}

#[test]
fn a_flipped_byte_anywhere_in_a_parquet_file_is_caught() {
    let s = copy();
    let path = s.parquet_path(42, 61);
    let len = std::fs::metadata(&path).unwrap().len() as usize;
    for at in [0, len / 3, len / 2, len - 9, len - 1] {
        let s = copy();
        flip_byte(&s.parquet_path(42, 61), at);
        assert_problems(&s, &[("42-61", "parquet.sha256")]);
    }
}

#[test]
fn a_flipped_byte_in_a_manifest_is_caught() {
    let s = copy();
    let path = s.manifest_path(62, 81);
    let text = std::fs::read_to_string(&path).unwrap();
    let at = text.find("\"created_at\"").unwrap() + "\"created_at\": \"20".len();
    flip_byte(&path, at);
    assert_problems(&s, &[("62-81", "manifest.self_checksum")]);
}

#[test]
fn a_flipped_byte_in_a_pas_event_is_caught() {
    let s = copy();
    let path = s.event_path(82, 101);
    let text = std::fs::read_to_string(&path).unwrap();
    let at = text.find("\"timestamp\"").unwrap() + "\"timestamp\": \"20".len();
    flip_byte(&path, at);
    assert_problems(&s, &[("82-101", "pas.hash")]);

    let s = copy();
    let path = s.event_path(82, 101);
    let text = std::fs::read_to_string(&path).unwrap();
    let at = text.find("\"event_hash\"").unwrap() + "\"event_hash\": \"sha256:".len() + 5;
    flip_byte(&path, at);
    assert_problems(&s, &[("82-101", "pas.hash"), ("102-121", "pas.link")]);

    // Whitespace is not hashed, but the file is no longer what the writer wrote.
    let s = copy();
    replace_once(
        &s.event_path(82, 101),
        "\n  \"version\"",
        "\n \t\"version\"",
    );
    assert_problems(&s, &[("82-101", "pas.format")]);
}

#[test]
fn a_deleted_manifest_is_caught() {
    let s = copy();
    std::fs::remove_file(s.manifest_path(102, 121)).unwrap();
    let stdout = assert_problems(&s, &[("102-121", "grid.gap"), ("-", "checkpoint.beyond")]);
    assert!(stdout.contains("check=manifest.missing"), "{stdout}");
}

#[test]
fn a_deleted_parquet_is_caught() {
    let s = copy();
    std::fs::remove_file(s.parquet_path(122, 141)).unwrap();
    assert_problems(&s, &[("122-141", "parquet.missing")]);
}

#[test]
fn swapped_partitions_are_caught() {
    // The Parquet files of two partitions swapped.
    let s = copy();
    swap(&s.parquet_path(2, 21), &s.parquet_path(22, 41));
    assert_problems(
        &s,
        &[
            ("2-21", "parquet.sha256"),
            ("22-41", "parquet.sha256"),
            ("2-21", "rows.sequence"),
        ],
    );
    // Whole folders swapped (manifest and Parquet together).
    let s = copy();
    swap(&s.partition_dir(2, 21), &s.partition_dir(22, 41));
    assert_problems(
        &s,
        &[("2-21", "manifest.range"), ("22-41", "manifest.range")],
    );
}

#[test]
fn truncated_files_are_caught() {
    let s = copy();
    truncate(&s.parquet_path(142, 161), |len| len / 2);
    assert_problems(
        &s,
        &[
            ("142-161", "parquet.size"),
            ("142-161", "parquet.sha256"),
            ("142-161", "parquet.read"),
        ],
    );

    let s = copy();
    truncate(&s.manifest_path(162, 181), |len| len - 20);
    assert_problems(&s, &[("162-181", "manifest.parse")]);

    let s = copy();
    truncate(&s.event_path(162, 181), |len| len - 20);
    assert_problems(&s, &[("-", "pas.unreadable"), ("162-181", "pas.missing")]);
}

#[test]
fn edited_row_counts_are_caught() {
    let s = copy();
    replace_once(
        &s.manifest_path(182, 201),
        "\"row_count\": 20",
        "\"row_count\": 21",
    );
    assert_problems(
        &s,
        &[
            ("182-201", "manifest.self_checksum"),
            ("182-201", "parquet.row_count"),
            ("182-201", "pas.mismatch"),
        ],
    );

    let s = copy();
    replace_once(
        &s.event_path(182, 201),
        "\"row_count\": 20",
        "\"row_count\": 19",
    );
    assert_problems(&s, &[("182-201", "pas.hash"), ("182-201", "pas.mismatch")]);
}

#[test]
fn a_missing_pas_event_and_a_checkpoint_beyond_storage_are_caught() {
    let s = copy();
    std::fs::remove_file(s.event_path(62, 81)).unwrap();
    assert_problems(&s, &[("62-81", "pas.missing"), ("82-101", "pas.link")]);

    let s = copy();
    replace_once(
        &s.checkpoint_path(),
        "\"last_committed_ledger\": 201",
        "\"last_committed_ledger\": 221",
    );
    assert_problems(&s, &[("-", "checkpoint.beyond")]);
}

#[test]
fn an_uncommitted_leftover_is_only_a_warning() {
    let s = copy();
    let dir = s.partition_dir(202, 221);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("part-202-221.parquet"), b"half a file").unwrap();
    let out = s.assert_verifies();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("WARNING partition=202-221 check=manifest.missing"),
        "{stdout}"
    );
    assert!(stdout.contains(": OK (1 warning)"), "{stdout}");
}

/// A forgery with consistent checksums: the Parquet file rewritten with one wrong value and the
/// manifest re-sealed to match. The row checks re-derive the value from `xdr_bytes`.
#[test]
fn a_consistently_rewritten_wrong_value_is_caught_by_the_row_checks() {
    use std::sync::Arc;

    use arrow_array::{Array, ArrayRef, Int32Array, RecordBatch};
    use parquet::arrow::ArrowWriter;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use sha2::{Digest, Sha256};

    let s = copy();
    let path = s.parquet_path(22, 41);
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&path).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let mut writer: Option<ArrowWriter<Vec<u8>>> = None;
    let mut first = true;
    for batch in reader {
        let batch = batch.unwrap();
        let idx = batch.schema().index_of("operation_count").unwrap();
        let ops = batch
            .column(idx)
            .as_any()
            .downcast_ref::<Int32Array>()
            .unwrap();
        let changed: Int32Array = (0..ops.len())
            .map(|i| Some(ops.value(i) + i32::from(first && i == 3)))
            .collect();
        first = false;
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        columns[idx] = Arc::new(changed);
        let batch = RecordBatch::try_new(batch.schema(), columns).unwrap();
        writer
            .get_or_insert_with(|| ArrowWriter::try_new(Vec::new(), batch.schema(), None).unwrap())
            .write(&batch)
            .unwrap();
    }
    let out = writer.unwrap().into_inner().unwrap();
    std::fs::write(&path, &out).unwrap();
    let mpath = s.manifest_path(22, 41);
    let mut m = bronze::publish::Manifest::from_json(&std::fs::read(&mpath).unwrap()).unwrap();
    let t = m.tables.get_mut("ledgers_lcm_raw").unwrap();
    t.checksum = format!("sha256:{}", hex::encode(Sha256::digest(&out)));
    t.byte_size = out.len() as u64;
    std::fs::write(&mpath, m.to_json()).unwrap();

    let stdout = assert_problems(&s, &[("22-41", "rows.operation_count")]);
    assert!(!stdout.contains("check=parquet.sha256"), "{stdout}");
    assert!(!stdout.contains("check=manifest.self_checksum"), "{stdout}");
    assert!(stdout.contains("row 3 (ledger 25)"), "{stdout}");
}

/// The same checks on S3 (moto): listing, reading and hashing go through the object store.
#[test]
fn verify_reads_an_s3_bucket() {
    let s3 = bronze_testkit::MotoS3::start();
    s3.create_bucket("lake");
    let s = Harness::testnet(60)
        .partition_size(20)
        .pas("")
        .storage(format!(
            "storage:\n  backend: s3\n  s3_bucket: lake\n  s3_endpoint: {}\n  s3_region: us-east-1\n  prefix: bronze\n",
            s3.endpoint()
        ))
        .envs(s3.env());
    let out = s.run();
    assert!(out.status.success(), "{}", describe(&out));
    let out = s.assert_verifies();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("verified 3 partitions, 60 ledgers: OK"),
        "{}",
        describe(&out)
    );
    let key = "bronze/testnet/pre_p23/v1/ledgers_lcm_raw/range=22-41/part-22-41.parquet";
    let mut bytes = s3.get_object("lake", key).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    s3.put_object("lake", key, bytes);
    let stdout = assert_problems(&s, &[("22-41", "parquet.sha256")]);
    assert!(stdout.contains("s3://lake/"), "{stdout}");
}
