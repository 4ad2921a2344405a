//! The PostgreSQL catalog against a real PostgreSQL: migrations, and the copier binary end to end
//! (rows per partition, hash chain, URIs, quality, replays, resumes, strict and lenient modes,
//! and no password in any output).

use crate::binary::{text as text_of, wait_until};
use crate::harness::{Harness, has_problem};
use bronze::catalog::{self, DatasetIdentity, migrations};
use bronze::partition::LedgerRange;
use bronze_testkit::Postgres;

const PASSWORD: &str = "Zq8-catalog-s3cret";

/// The DSN of `db` with a password in it (the test cluster trusts loopback, so it is accepted
/// unchecked; it must still never be printed).
fn dsn_with_password(pg: &Postgres, db: &str) -> String {
    pg.dsn_for(db)
        .replace("postgres@", &format!("postgres:{PASSWORD}@"))
}

pub(crate) fn catalog_yaml(dsn: &str, strict: bool) -> String {
    format!("catalog:\n  postgres_dsn: \"{dsn}\"\n  strict: {strict}\n")
}

fn assert_no_password(text: &str) {
    assert!(
        !text.contains(PASSWORD),
        "the password appears in the output:\n{text}"
    );
}

/// `ledger_start|ledger_end|row_count|byte_size|checksum|prev_hash|storage_uri` rows, in order.
fn lineage(pg: &Postgres, db: &str) -> Vec<Vec<String>> {
    let out = pg.psql_in(
        db,
        "SELECT ledger_start, ledger_end, row_count, byte_size, checksum, COALESCE(prev_hash, 'NULL'), storage_uri
         FROM _meta_lineage ORDER BY ledger_start",
    );
    out.lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split('|').map(str::to_string).collect())
        .collect()
}

/// Whether `_meta_lineage` exists in `db` and holds at least `rows` rows.
fn lineage_has_rows(pg: &Postgres, db: &str, rows: u32) -> bool {
    pg.psql_in(
        db,
        "SELECT count(*) FROM information_schema.tables WHERE table_name = '_meta_lineage'",
    ) == "1"
        && pg
            .psql_in(db, "SELECT count(*) FROM _meta_lineage")
            .parse::<u32>()
            .unwrap_or(0)
            >= rows
}

/// The catalog identity of the harness's pubnet dataset.
fn pubnet_identity() -> DatasetIdentity {
    DatasetIdentity {
        domain: "bronze".into(),
        dataset: "ledgers_lcm_raw".into(),
        version: "v1".into(),
        era_id: "pre_p23".into(),
        network: "pubnet".into(),
    }
}

/// Checks the catalog against storage: one row per manifest, same checksum/rows/bytes, prev_hash
/// chained, storage_uri pointing at the existing file (prefix included), quality rows present.
pub(crate) fn assert_catalog_matches_storage(pg: &Postgres, db: &str, work: &Harness) {
    let manifests = work.manifests();
    let rows = lineage(pg, db);
    assert_eq!(
        rows.len(),
        manifests.len(),
        "one lineage row per committed partition: {rows:#?}"
    );
    let mut previous: Option<String> = None;
    for (row, m) in rows.iter().zip(&manifests) {
        let t = m.primary().unwrap();
        assert_eq!(row[0], m.partition.start.to_string());
        assert_eq!(row[1], m.partition.end.to_string());
        assert_eq!(row[2], t.row_count.to_string());
        assert_eq!(row[3], t.byte_size.to_string());
        assert_eq!(row[4], t.checksum);
        assert_eq!(
            row[5],
            previous.clone().unwrap_or_else(|| "NULL".into()),
            "prev_hash of {}-{}",
            row[0],
            row[1]
        );
        let path = row[6]
            .strip_prefix("file://")
            .unwrap_or_else(|| panic!("storage_uri {}", row[6]));
        assert!(
            row[6].contains(&format!(
                "/bronze/{}/pre_p23/v1/ledgers_lcm_raw/",
                work.network
            )),
            "the storage prefix is part of the URI: {}",
            row[6]
        );
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(bytes.len() as u64, t.byte_size);
        previous = Some(t.checksum.clone());
    }
    let quality = pg.psql_in(
        db,
        "SELECT count(*), count(*) FILTER (WHERE passed), count(*) FILTER (WHERE details ? 'checks')
         FROM _meta_quality",
    );
    let n = manifests.len();
    assert_eq!(quality, format!("{n}|{n}|{n}"));
}

#[tokio::test]
async fn migrations_create_the_schema_and_adopt_an_original_database() {
    let pg = Postgres::start();

    // From empty: every version applied once, then nothing.
    let dsn = pg.create_database("fresh");
    let (_c, report) = catalog::connect(&dsn).await.unwrap();
    assert_eq!(report.previous_version, 0);
    assert_eq!(report.applied, vec![1, 2]);
    let (_c, report) = catalog::connect(&dsn).await.unwrap();
    assert_eq!(report.applied, Vec::<i32>::new());
    assert_eq!(
        pg.psql_in(
            "fresh",
            "SELECT string_agg(version::text, ',' ORDER BY version) FROM _meta_schema_migrations"
        ),
        "1,2"
    );
    for (table, column) in [
        ("_meta_lineage", "parquet_path"),
        ("_meta_quality", "details"),
        ("_meta_datasets", "schema_hash"),
        ("_meta_changes", "change_type"),
        ("_meta_coverage", "partition_count"),
    ] {
        assert_eq!(
            pg.psql_in(
                "fresh",
                &format!("SELECT count(*) FROM information_schema.columns WHERE table_name = '{table}' AND column_name = '{column}'")
            ),
            "1",
            "{table}.{column}"
        );
    }

    // A database the original program created and filled: adopted as version 1, rows kept.
    let dsn = pg.create_database("original");
    pg.psql_in("original", migrations::MIGRATIONS[0].sql);
    pg.psql_in(
        "original",
        "INSERT INTO _meta_datasets (domain, dataset, version, era_id, network, schema_hash, description)
           VALUES ('bronze', 'ledgers_lcm_raw', 'v1', 'pre_p23', 'pubnet', '', 'Raw ledgers_lcm_raw data from Stellar network');
         INSERT INTO _meta_lineage (dataset_id, ledger_start, ledger_end, row_count, byte_size, checksum, storage_path, producer_version)
           VALUES (1, 2, 11, 10, 123, 'sha256:aa', 'pubnet/pre_p23/v1/ledgers_lcm_raw/range=2-11', 'bronze-copier@v0.1.0');",
    );
    let (mut c, report) = catalog::connect(&dsn).await.unwrap();
    assert_eq!(report.previous_version, 0);
    assert_eq!(report.applied, vec![1, 2]);
    assert_eq!(
        pg.psql_in(
            "original",
            "SELECT ledger_start, checksum FROM _meta_lineage"
        ),
        "2|sha256:aa"
    );
    assert_eq!(
        pg.psql_in(
            "original",
            "SELECT partition_count, total_rows FROM _meta_coverage"
        ),
        "1|10"
    );
    // Registering the dataset finds the original's row and fills in the real schema hash.
    let identity = pubnet_identity();
    let id = c
        .upsert_dataset(&identity, &catalog::schema_hash())
        .await
        .unwrap();
    assert_eq!(id, 1);
    assert_eq!(
        pg.psql_in(
            "original",
            "SELECT count(*), max(length(schema_hash)) FROM _meta_datasets"
        ),
        "1|64"
    );
    // A different schema later is recorded as a change, not silently overwritten.
    c.upsert_dataset(&identity, &"0".repeat(64)).await.unwrap();
    assert_eq!(
        pg.psql_in("original", "SELECT change_type FROM _meta_changes"),
        "schema_change"
    );

    // Two copiers starting at once on an empty database: the advisory lock serialises them.
    let dsn = pg.create_database("race");
    let (a, b) = tokio::join!(catalog::connect(&dsn), catalog::connect(&dsn));
    let mut applied = [a.unwrap().1.applied, b.unwrap().1.applied];
    applied.sort();
    assert_eq!(applied, [vec![], vec![1, 2]]);
}

#[test]
fn copier_records_one_chained_row_per_partition_and_replays_idempotently() {
    let pg = Postgres::start();
    pg.create_database("cat");
    let dsn = dsn_with_password(&pg, "cat");
    let work = Harness::pubnet(40)
        .partition_size(8)
        .yaml(&catalog_yaml(&dsn, true));

    let out = work.run();
    let text = text_of(&out);
    assert!(out.status.success(), "{text}");
    assert_no_password(&text);
    assert_eq!(work.manifests().len(), 5);
    assert_catalog_matches_storage(&pg, "cat", &work);
    assert_eq!(
        pg.psql_in("cat", "SELECT domain, dataset, version, era_id, network, length(schema_hash), source_type FROM _meta_datasets d JOIN _meta_lineage l ON l.dataset_id = d.id LIMIT 1"),
        "bronze|ledgers_lcm_raw|v1|pre_p23|pubnet|64|local"
    );
    assert_eq!(
        pg.psql_in("cat", "SELECT count(*) FROM _meta_lineage WHERE parquet_path LIKE 'bronze/pubnet/%/part-%.parquet' AND producer_version LIKE 'bronze-copier@%'"),
        "5"
    );

    // Rerun from scratch (checkpoint removed): every partition is adopted from storage and
    // presented to the catalog again; rows are updated, never duplicated.
    std::fs::remove_file(work.checkpoint_path()).unwrap();
    let out = work.run();
    assert!(out.status.success(), "{}", text_of(&out));
    assert_no_password(&text_of(&out));
    assert_catalog_matches_storage(&pg, "cat", &work);
    assert_eq!(
        pg.psql_in(
            "cat",
            "SELECT count(*) FROM _meta_quality WHERE details->>'adopted_from_storage' = 'true'"
        ),
        "5"
    );

    // `bronze-copier verify` checks the catalog beside storage: clean now.
    let out = work.assert_verifies();
    assert_no_password(&text_of(&out));

    // The verifier finds nothing wrong, and notices a tampered row.
    let manifests = work.manifests();
    let layout_uri = |r: LedgerRange| {
        format!(
            "file://{}/bronze/pubnet/pre_p23/v1/ledgers_lcm_raw/range={r}/part-{r}.parquet",
            std::fs::canonicalize(work.out_dir()).unwrap().display()
        )
    };
    let identity = pubnet_identity();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let problems = rt.block_on(catalog::verify_against_storage(
        &dsn,
        &identity,
        &manifests,
        &layout_uri,
    ));
    assert_eq!(problems, vec![]);
    pg.psql_in(
        "cat",
        "UPDATE _meta_lineage SET checksum = 'sha256:00' WHERE ledger_start = 10",
    );
    let problems = rt.block_on(catalog::verify_against_storage(
        &dsn,
        &identity,
        &manifests,
        &layout_uri,
    ));
    let checks: Vec<_> = problems.iter().map(|p| (p.range, p.check)).collect();
    assert!(
        checks.contains(&(Some(LedgerRange::new(10, 17)), "checksum_mismatch")),
        "{problems:#?}"
    );
    assert!(
        checks.contains(&(Some(LedgerRange::new(18, 25)), "prev_hash_broken")),
        "{problems:#?}"
    );

    // So does the `verify` command, under the catalog's own check names, and exits 5.
    let out = work.verify();
    let text = text_of(&out);
    assert_eq!(out.status.code(), Some(5), "{text}");
    assert_no_password(&text);
    let stdout = String::from_utf8_lossy(&out.stdout);
    for (partition, check) in [
        ("10-17", "catalog.checksum_mismatch"),
        ("18-25", "catalog.prev_hash_broken"),
    ] {
        assert!(
            has_problem(&stdout, partition, check),
            "expected {check} for {partition}:\n{text}"
        );
    }
}

#[test]
fn a_copier_killed_mid_run_and_restarted_leaves_exactly_one_row_per_partition() {
    let pg = Postgres::start();
    pg.create_database("cat");
    let dsn = dsn_with_password(&pg, "cat");
    let work = Harness::pubnet(96)
        .partition_size(4)
        .yaml(&format!("{}\n", catalog_yaml(&dsn, false)));
    let log = work.path("first.log");
    let mut child = work.spawn_logging_to(&log);
    let started = wait_until(120, || lineage_has_rows(&pg, "cat", 2));
    // SIGKILL: no clean shutdown of anything.
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(started, "{}", std::fs::read_to_string(&log).unwrap());
    let before = work.manifests().len();
    assert!(
        before < 24,
        "the kill came before the end ({before} partitions)"
    );

    let out = work.run();
    let text = text_of(&out);
    assert!(out.status.success(), "{text}");
    assert_no_password(&text);
    assert_no_password(&std::fs::read_to_string(&log).unwrap());
    assert_eq!(work.manifests().len(), 24);
    assert_catalog_matches_storage(&pg, "cat", &work);
}

#[test]
fn strict_mode_with_the_database_down_stops_before_anything_is_committed() {
    let port = bronze_testkit::free_port();
    let dsn = format!("postgres://postgres:{PASSWORD}@127.0.0.1:{port}/cat?connect_timeout=2");
    let work = Harness::pubnet(16)
        .partition_size(8)
        .yaml(&catalog_yaml(&dsn, true));
    let out = work.run();
    let text = text_of(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("catalog"), "{text}");
    assert!(text.contains("cannot connect"), "{text}");
    assert_no_password(&text);
    assert!(!work.checkpoint_path().exists(), "nothing is checkpointed");
    assert!(work.manifests().is_empty(), "nothing is committed");
}

#[test]
fn lenient_mode_with_the_database_down_finishes_warns_and_a_later_run_fills_the_catalog() {
    let port = bronze_testkit::free_port();
    let down = format!("postgres://postgres:{PASSWORD}@127.0.0.1:{port}/cat?connect_timeout=2");
    let mut work = Harness::pubnet(24)
        .partition_size(8)
        .yaml(&catalog_yaml(&down, false));
    let out = work.run();
    let text = text_of(&out);
    assert!(out.status.success(), "{text}");
    assert_no_password(&text);
    assert!(text.contains("catalog unavailable at start"), "{text}");
    assert!(
        text.contains("recorded from its manifest when the catalog is back"),
        "{text}"
    );
    assert!(
        text.contains("partitions committed but not recorded in the catalog"),
        "{text}"
    );
    assert_eq!(work.manifests().len(), 3);
    // Nothing is queued on local disk: what is missing is derived from the catalog.
    assert!(!work.catalog_queue_path().exists(), "no queue file");
    // A queue file left by an earlier version is ignored (its partitions are among the gaps
    // below the checkpoint) and removed; here it lists only one of the three.
    std::fs::write(
        work.catalog_queue_path(),
        r#"{"dataset": {}, "partitions": [{"ledger_start": 2, "ledger_end": 9}]}"#,
    )
    .unwrap();

    // The database is back (here: a server at a new address). The next run has nothing left
    // to copy, but records the missing partitions first, in ledger order.
    let pg = Postgres::start();
    pg.create_database("cat");
    let up = dsn_with_password(&pg, "cat");
    work.extra = catalog_yaml(&up, false);
    let out = work.run();
    let text = text_of(&out);
    assert!(out.status.success(), "{text}");
    assert_no_password(&text);
    assert!(text.contains("recording them first"), "{text}");
    assert!(
        text.contains("removed the queue file of an earlier version"),
        "{text}"
    );
    assert_catalog_matches_storage(&pg, "cat", &work);
    assert!(
        !work.catalog_queue_path().exists(),
        "the leftover queue is removed"
    );
}

#[test]
fn strict_mode_stops_when_the_database_goes_away_and_the_checkpoint_stays_behind() {
    let pg = Postgres::start();
    pg.create_database("cat");
    let dsn = dsn_with_password(&pg, "cat");
    let work = Harness::pubnet(96)
        .partition_size(4)
        .yaml(&catalog_yaml(&dsn, true));
    let log = work.path("strict.log");
    let mut child = work.spawn_logging_to(&log);
    let started = wait_until(120, || lineage_has_rows(&pg, "cat", 2));
    drop(pg); // the database server stops (immediate shutdown)
    let status = child.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(started, "{text}");
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(text.contains("catalog.strict"), "{text}");
    assert_no_password(&text);
    // The partition whose row could not be written is committed in storage, but the checkpoint
    // stays before it, so a restart presents it to the catalog again.
    let manifests = work.manifests();
    assert!(manifests.len() < 24, "stopped before the end");
    let cp: serde_json::Value =
        serde_json::from_slice(&std::fs::read(work.checkpoint_path()).unwrap()).unwrap();
    let checkpointed = cp["last_committed_ledger"].as_u64().unwrap();
    let last_committed = u64::from(manifests.last().unwrap().partition.end);
    assert_eq!(last_committed, checkpointed + 4, "{text}");
}
