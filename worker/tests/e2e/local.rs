//! End to end on local disk: the real binary, real ledgers, output read back with pyarrow and
//! DuckDB and checked column by column against the reference decoder.

use crate::datastore::{Layout, fixture, object_files};
use crate::harness::{Harness, manifest_json};
use crate::oracle::{
    INGESTED_AT_MS, TESTNET_LABELS, check_parquet_with_pyarrow, expected_rows, sha256_file,
};

#[test]
fn real_testnet_ledgers_are_copied_exactly() {
    let run = Harness::empty()
        .datastore(fixture("testnet-datastore"))
        .range(997, 999)
        .partition_size(2);
    let log = run.run_expect(0);
    assert!(
        log.contains("[copier] progress: 3 ledgers, 2 partitions"),
        "{log}"
    );

    let expected = expected_rows(&fixture("testnet-datastore"));
    let parts = run.partitions();
    assert_eq!(
        parts.iter().map(|p| (p.0, p.1)).collect::<Vec<_>>(),
        vec![(997, 998), (999, 999)]
    );
    let mut seen = Vec::new();
    for (start, end, dir) in &parts {
        let parquet = dir.join(format!("part-{start}-{end}.parquet"));
        seen.extend(check_parquet_with_pyarrow(
            &parquet,
            &expected,
            TESTNET_LABELS,
            Some(INGESTED_AT_MS),
        ));
        let m = manifest_json(dir);
        let table = &m["tables"]["ledgers_lcm_raw"];
        assert_eq!(table["checksum"], sha256_file(&parquet));
        assert_eq!(
            table["byte_size"],
            std::fs::metadata(&parquet).unwrap().len()
        );
        assert_eq!(table["row_count"], u64::from(end - start + 1));
        assert_eq!(m["partition"]["network"], "testnet");
    }
    assert_eq!(seen, vec![997, 998, 999]);
    // The plain layout (no table format) is byte-identical to the files of the copier before the
    // Delta table's signed layout existed: these are the digests that copier wrote for this run
    // (its footer names the package version, so a version bump changes them, deliberately).
    let digests: Vec<String> = parts
        .iter()
        .map(|(s, e, dir)| sha256_file(&dir.join(format!("part-{s}-{e}.parquet"))))
        .collect();
    assert_eq!(
        digests,
        [
            "sha256:bbf261912671174c4a24f1651719ba26e6bdf79ffbfbe7bf48d6ea4b818f6354",
            "sha256:629314a66fef35756905da149a5b253fac46e16ad817c4f161243a42c0b5c18b",
        ]
    );
    // The manifests carry the chain across the partition boundary.
    let (first, second) = (manifest_json(&parts[0].2), manifest_json(&parts[1].2));
    assert_eq!(
        first["chain"]["last_ledger_hash"],
        second["chain"]["previous_ledger_hash"]
    );
    let cp = run.checkpoint().unwrap();
    assert_eq!(cp["last_committed_ledger"], 999);
    assert_eq!(
        cp["last_committed_partition"]["checksum"],
        manifest_json(&parts[1].2)["tables"]["ledgers_lcm_raw"]["checksum"]
    );
}

#[test]
fn every_lcm_version_in_multi_ledger_batches_round_trips_and_duckdb_reads_it() {
    // v0, v1 and v2 ledgers relinked into one chain; 4 ledgers per batch, 3 batches per folder,
    // partitions of 7 so batches straddle partition boundaries.
    let run = Harness::testnet_with_layout(
        60,
        Layout {
            ledgers_per_object: 4,
            objects_per_folder: 3,
        },
    )
    .partition_size(7)
    .perf("max_in_flight_partitions", 3);
    run.run_expect(0);
    let expected = expected_rows(&run.datastore);
    let mut seen = Vec::new();
    for (start, end, dir) in run.partitions() {
        seen.extend(check_parquet_with_pyarrow(
            &dir.join(format!("part-{start}-{end}.parquet")),
            &expected,
            TESTNET_LABELS,
            Some(INGESTED_AT_MS),
        ));
    }
    assert_eq!(seen, (2..=61).collect::<Vec<u64>>());
    let glob = format!("{}/range=*/*.parquet", run.dataset().display());
    let result = bronze_testkit::duckdb_query(
        &glob,
        "select count(*), min(ledger_sequence), max(ledger_sequence), count(distinct ledger_hash), sum(operation_count) from t",
    );
    let want_ops: i64 = expected.values().map(|e| e.operation_count).sum();
    assert_eq!(
        result["rows"][0],
        serde_json::json!([60, 2, 61, 60, want_ops])
    );
}

#[test]
fn output_is_byte_identical_across_runs_and_parallelism() {
    let layout = Layout {
        ledgers_per_object: 1,
        objects_per_folder: 8,
    };
    let a = Harness::testnet_with_layout(40, layout).perf("max_in_flight_partitions", 1);
    let b = Harness::testnet_with_layout(40, layout).perf("max_in_flight_partitions", 4);
    a.run_expect(0);
    b.run_expect(0);
    let (pa, pb) = (a.partitions(), b.partitions());
    assert_eq!(pa.len(), 4);
    for ((s, e, da), (_, _, db)) in pa.iter().zip(&pb) {
        let name = format!("part-{s}-{e}.parquet");
        assert_eq!(
            std::fs::read(da.join(&name)).unwrap(),
            std::fs::read(db.join(&name)).unwrap(),
            "{name}"
        );
        assert_eq!(manifest_json(da)["tables"], manifest_json(db)["tables"]);
    }
}

#[test]
fn a_restart_resumes_after_the_checkpoint_and_redoes_no_committed_work() {
    let mut run = Harness::testnet(50).range(2, 31);
    run.run_expect(0);
    let before: Vec<_> = run
        .partitions()
        .into_iter()
        .map(|(s, e, d)| {
            (
                s,
                std::fs::metadata(d.join(format!("part-{s}-{e}.parquet")))
                    .unwrap()
                    .modified()
                    .unwrap(),
            )
        })
        .collect();
    assert_eq!(before.len(), 3);
    // Extend the range: the next run starts after the checkpoint and leaves earlier files alone.
    run.ledger_end = 51;
    let log = run.run_expect(0);
    assert!(log.contains("resuming from checkpoint"), "{log}");
    let after = run.partitions();
    assert_eq!(
        after.iter().map(|p| (p.0, p.1)).collect::<Vec<_>>(),
        vec![(2, 11), (12, 21), (22, 31), (32, 41), (42, 51)]
    );
    for (start, modified) in before {
        let (s, e, d) = after.iter().find(|p| p.0 == start).unwrap();
        let now = std::fs::metadata(d.join(format!("part-{s}-{e}.parquet")))
            .unwrap()
            .modified()
            .unwrap();
        assert_eq!(now, modified, "partition {s}-{e} was rewritten");
    }
    assert_eq!(run.checkpoint().unwrap()["last_committed_ledger"], 51);
    // The link between the runs was checked from the checkpoint: a later partition's previous
    // hash equals the earlier one's last hash.
    assert_eq!(
        manifest_json(&after[2].2)["chain"]["last_ledger_hash"],
        manifest_json(&after[3].2)["chain"]["previous_ledger_hash"]
    );
}

#[test]
fn committed_partitions_without_a_checkpoint_are_adopted_not_rewritten() {
    let run = Harness::testnet(30);
    run.run_expect(0);
    let parquet = run.dataset().join("range=12-21/part-12-21.parquet");
    let modified = std::fs::metadata(&parquet).unwrap().modified().unwrap();
    // As after a crash between the manifest and the checkpoint (or a lost state dir).
    std::fs::remove_dir_all(run.state_dir()).unwrap();
    let log = run.run_expect(0);
    assert!(
        log.contains("skipping partition (already committed)"),
        "{log}"
    );
    assert_eq!(
        std::fs::metadata(&parquet).unwrap().modified().unwrap(),
        modified
    );
    assert_eq!(run.checkpoint().unwrap()["last_committed_ledger"], 31);
}

/// A partition found committed is adopted only if the one manifest policy accepts it, as the
/// operator's sequencer does: its `manifest_sha256` seal must match its bytes, and its table must
/// be the file the layout names (both were adopted without a look before).
#[test]
fn an_adopted_partition_needs_its_seal_and_the_layouts_file_name() {
    let run = Harness::testnet(30);
    run.run_expect(0);
    let path = run.manifest_path(12, 21);
    let sealed = std::fs::read(&path).unwrap();

    // Edited after it was written: the seal no longer matches.
    std::fs::remove_dir_all(run.state_dir()).unwrap();
    let text = String::from_utf8(sealed.clone()).unwrap();
    let created = manifest_json(&run.partition_dir(12, 21))["created_at"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::write(&path, text.replace(&created, "2020-01-01T00:00:00Z")).unwrap();
    let log = run.run_expect(4);
    assert!(
        log.contains("range=12-21/_manifest.json") && log.contains("manifest_sha256 is sha256:"),
        "{log}"
    );
    assert!(
        run.checkpoint_ledger() == Some(11),
        "stops before the refused partition"
    );

    // Sealed again, but naming another file than the layout's.
    std::fs::remove_dir_all(run.state_dir()).unwrap();
    let mut m = bronze::publish::Manifest::from_json(&sealed).unwrap();
    m.tables.values_mut().next().unwrap().file = "part-12-21.parquet.old".into();
    m.manifest_sha256 = None;
    std::fs::write(&path, m.to_json()).unwrap();
    let log = run.run_expect(4);
    assert!(
        log.contains("range=12-21/_manifest.json")
            && log.contains("the table's file is part-12-21.parquet.old, not part-12-21.parquet"),
        "{log}"
    );

    // The original bytes are adopted again.
    std::fs::remove_dir_all(run.state_dir()).unwrap();
    std::fs::write(&path, &sealed).unwrap();
    let log = run.run_expect(0);
    assert!(
        log.contains("skipping partition (already committed)"),
        "{log}"
    );
    assert_eq!(run.checkpoint_ledger(), Some(31));
}

#[test]
fn an_uncommitted_leftover_is_replaced_and_allow_overwrite_rebuilds_committed_data() {
    let mut run = Harness::testnet(10);
    let dir = run.dataset().join("range=2-11");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("part-2-11.parquet"), b"half-written leftover").unwrap();
    run.run_expect(0);
    let good = std::fs::read(dir.join("part-2-11.parquet")).unwrap();
    assert_eq!(&good[..4], b"PAR1");
    assert_eq!(
        manifest_json(&dir)["tables"]["ledgers_lcm_raw"]["checksum"],
        sha256_file(&dir.join("part-2-11.parquet"))
    );

    // A committed partition whose content differs (here: another ingested_at) is a conflict...
    std::fs::remove_dir_all(run.state_dir()).unwrap();
    run.ingested_at = "2025-02-01T00:00:00Z".into();
    // ...but a resumed run simply adopts it; only allow_overwrite rebuilds.
    run.run_expect(0);
    assert_eq!(std::fs::read(dir.join("part-2-11.parquet")).unwrap(), good);
    std::fs::remove_dir_all(run.state_dir()).unwrap();
    run.era_lines = "  allow_overwrite: true\n".into();
    run.run_expect(0);
    let rebuilt = std::fs::read(dir.join("part-2-11.parquet")).unwrap();
    assert_ne!(rebuilt, good, "allow_overwrite rebuilt the partition");
    assert_eq!(
        manifest_json(&dir)["tables"]["ledgers_lcm_raw"]["checksum"],
        sha256_file(&dir.join("part-2-11.parquet"))
    );
}

#[test]
fn older_zstd_extension_snappy_codec_and_json_logs() {
    let mut run = Harness::testnet(20).yaml("logging:\n  format: json\n");
    // Older datastores name objects `.xdr.zstd`.
    for path in object_files(&run.datastore) {
        std::fs::rename(&path, path.with_extension("zstd")).unwrap();
    }
    run.storage_block = Some(format!(
        "storage:\n  backend: local\n  compression: snappy\n  local_dir: {}\n",
        run.out_dir().display()
    ));
    let log = run.run_expect(0);
    let progress: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("every log line is JSON"))
        .filter(|v: &serde_json::Value| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("[copier] progress"))
        })
        .collect();
    assert_eq!(progress.len(), 2, "{log}");
    assert_eq!(progress[1]["ledgers"], 20);
    let parquet = run.dataset().join("range=12-21/part-12-21.parquet");
    let dump = bronze_testkit::parquet_dump(&parquet);
    assert_eq!(dump["compression"], "SNAPPY");
    check_parquet_with_pyarrow(
        &parquet,
        &expected_rows(&run.datastore),
        TESTNET_LABELS,
        Some(INGESTED_AT_MS),
    );
}
