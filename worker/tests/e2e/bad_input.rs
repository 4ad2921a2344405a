//! Bad input gets a clear error (naming the object key, ledger and field), exit code 3, and
//! loses nothing: the damaged partition is not committed and the checkpoint stays at the last
//! good partition.

use std::path::Path;

use crate::binary::{copier, exec, text};
use crate::datastore::{Layout, object_for, unzstd, zstd};
use crate::harness::Harness;

/// A datastore of 30 ledgers (2..=31, one per object), partitions of 10; `damage` breaks it.
/// Runs the copier and returns its log after checking that 2-11 is committed, the damaged
/// partition is not, and the checkpoint is at 11.
fn run_damaged(damage: impl FnOnce(&Path)) -> String {
    let run = Harness::testnet(30).perf("max_in_flight_partitions", 1);
    damage(&run.datastore);
    let log = run.run_expect(3);
    assert_eq!(
        run.committed(),
        vec![(2, 11)],
        "only the good partition is committed\n{log}"
    );
    assert_eq!(run.checkpoint_ledger(), Some(11), "{log}");
    log
}

fn key_of(datastore: &Path, seq: u32) -> String {
    object_for(datastore, seq)
        .strip_prefix(datastore)
        .unwrap()
        .to_string_lossy()
        .to_string()
}

#[test]
fn corrupt_zstd() {
    let mut key = String::new();
    let log = run_damaged(|ds| {
        key = key_of(ds, 15);
        let path = object_for(ds, 15);
        let mut bytes = std::fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        bytes[mid + 1] ^= 0x55;
        std::fs::write(path, bytes).unwrap();
    });
    assert!(log.contains(&key), "names the object: {log}");
    assert!(log.contains("zstd") || log.contains("XDR"), "{log}");
}

#[test]
fn truncated_xdr_inside_a_valid_zstd_frame() {
    let mut key = String::new();
    let log = run_damaged(|ds| {
        key = key_of(ds, 15);
        let path = object_for(ds, 15);
        let xdr = unzstd(&std::fs::read(&path).unwrap());
        std::fs::write(path, zstd(&xdr[..xdr.len() - 7])).unwrap();
    });
    assert!(log.contains(&key) && log.contains("invalid XDR"), "{log}");
}

#[test]
fn missing_object() {
    let mut key = String::new();
    let log = run_damaged(|ds| {
        key = key_of(ds, 17);
        std::fs::remove_file(object_for(ds, 17)).unwrap();
    });
    assert!(
        log.contains("missing object") && log.contains(&key.replace(".xdr.zst", "")),
        "{log}"
    );
    assert!(log.contains("17"), "{log}");
}

#[test]
fn sequence_gap_an_object_holding_the_wrong_ledger() {
    let log = run_damaged(|ds| {
        // The object for 16 holds ledger 17: 16 is missing from the data.
        std::fs::copy(object_for(ds, 17), object_for(ds, 16)).unwrap();
    });
    assert!(
        log.contains("batch declares ledgers 17-17")
            || log.contains("ledger 17 found where ledger 16"),
        "{log}"
    );
}

#[test]
fn broken_hash_link() {
    let log = run_damaged(|ds| {
        // Rewrite ledger 14 so it links to a wrong previous hash (its own header hash stays valid).
        let path = object_for(ds, 14);
        let xdr = unzstd(&std::fs::read(&path).unwrap());
        let view = bronze_ledger::split_batch(&xdr).unwrap();
        let mut lcm = view.ledgers[0].to_vec();
        let row = bronze_ledger::extract_row(&lcm).unwrap();
        bronze_ledger::relink_header(&mut lcm, 14, &[0xab; 32], row.close_time).unwrap();
        std::fs::write(path, zstd(&bronze_ledger::encode_batch(14, 14, &[&lcm]))).unwrap();
    });
    assert!(
        log.contains("ledger 14: previous_ledger_hash abab"),
        "{log}"
    );
}

#[test]
fn corrupt_header_bytes_are_caught_by_the_header_hash() {
    let log = run_damaged(|ds| {
        let path = object_for(ds, 19);
        let xdr = unzstd(&std::fs::read(&path).unwrap());
        let view = bronze_ledger::split_batch(&xdr).unwrap();
        let mut lcm = view.ledgers[0].to_vec();
        let layout = bronze_ledger::header_layout(&lcm).unwrap();
        lcm[layout.close_time + 7] ^= 1; // one bit of closeTime, hash left alone
        std::fs::write(path, zstd(&bronze_ledger::encode_batch(19, 19, &[&lcm]))).unwrap();
    });
    assert!(log.contains("ledger 19: header does not hash"), "{log}");
}

#[test]
fn wrong_network_passphrase_stops_before_any_work() {
    let mut run = Harness::testnet(10);
    run.network = "pubnet".into();
    let log = run.run_expect(3);
    assert!(
        log.contains(".config.json")
            && log.contains("networkPassphrase")
            && log.contains("Test SDF Network"),
        "{log}"
    );
    assert!(!run.out_dir().join("bronze").exists() || run.partitions().is_empty());
}

#[test]
fn a_config_json_that_does_not_match_the_objects() {
    // Objects hold 4 ledgers each, but .config.json claims 1 per batch.
    let run = Harness::testnet_with_layout(
        20,
        Layout {
            ledgers_per_object: 4,
            objects_per_folder: 64_000,
        },
    );
    let path = run.datastore.join(".config.json");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"ledgersPerBatch\": 4", "\"ledgersPerBatch\": 1");
    std::fs::write(&path, text).unwrap();
    let log = run.run_expect(3);
    assert!(log.contains("missing object"), "{log}");
    assert!(run.committed().is_empty());
}

#[test]
fn bad_config_values_are_named_with_their_values() {
    let run = Harness::empty();
    let config = run.path("bad.yaml");
    std::fs::write(
        &config,
        "era:\n  ledger_start: 100\n  ledger_end: 50\n  partition_size: 0\nsource:\n  mode: datastore\n  datastore_type: GCS\n  datastore_path: gs://bucket/prefix\nstorage:\n  backend: ftp\nperf:\n  max_in_flight_partitions: 0\nlogging:\n  format: xml\n",
    )
    .unwrap();
    // Run where the config's default relative dirs (./state) may be created: the temp dir.
    let out = exec(
        copier()
            .current_dir(run.dir())
            .arg("-config")
            .arg(&config)
            .arg("-validate"),
    );
    let log = text(&out);
    assert_eq!(out.status.code(), Some(2), "{log}");
    for needle in [
        "era.ledger_end = \"50\"",
        "era.partition_size = \"0\"",
        "source.datastore_path = \"gs://bucket/prefix\"",
        "storage.backend = \"ftp\"",
        "perf.max_in_flight_partitions = \"0\"",
        "logging.format = \"xml\"",
    ] {
        assert!(log.contains(needle), "missing {needle:?} in:\n{log}");
    }
    // A bad environment value is an error too, not a silent zero.
    let out = exec(
        copier()
            .current_dir(run.dir())
            .arg("-config")
            .arg(&config)
            .arg("-validate")
            .env("LEDGER_START", "12x"),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("LEDGER_START"), "{}", text(&out));
}
