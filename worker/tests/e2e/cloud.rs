//! End to end against real object-store servers on loopback: S3 (moto) and GCS (object_store's
//! GCS client through the GCS-to-S3 translating proxy). Source and output both in buckets.

use std::path::Path;

use crate::common::*;
use bronze_testkit::{GcsProxy, MotoS3};

/// Uploads a local datastore into `bucket/prefix`.
fn upload_datastore(s3: &MotoS3, local: &Path, bucket: &str, prefix: &str) {
    for entry in walk(local) {
        let rel = entry
            .strip_prefix(local)
            .unwrap()
            .to_string_lossy()
            .to_string();
        s3.put_object(
            bucket,
            &format!("{prefix}/{rel}"),
            std::fs::read(&entry).unwrap(),
        );
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p))
        } else {
            out.push(p)
        }
    }
    out
}

/// Downloads each committed partition's Parquet and checks it against the oracle.
fn check_bucket_output(
    s3: &MotoS3,
    bucket: &str,
    dataset: &str,
    expected: &std::collections::BTreeMap<u64, Expected>,
    tmp: &Path,
) -> Vec<u64> {
    let keys = s3.list_objects(bucket, dataset);
    let manifests: Vec<_> = keys
        .iter()
        .filter(|k| k.ends_with("_manifest.json"))
        .collect();
    let mut seen = Vec::new();
    for m in &manifests {
        let manifest: serde_json::Value =
            serde_json::from_slice(&s3.get_object(bucket, m).unwrap()).unwrap();
        let table = &manifest["tables"]["ledgers_lcm_raw"];
        let key = format!(
            "{}/{}",
            m.trim_end_matches("/_manifest.json"),
            table["file"].as_str().unwrap()
        );
        let bytes = s3
            .get_object(bucket, &key)
            .expect("parquet next to its manifest");
        let path = tmp.join(table["file"].as_str().unwrap());
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(table["checksum"], sha256_file(&path));
        seen.extend(check_parquet_with_pyarrow(
            &path,
            expected,
            ("testnet", "pre_p23", "v1"),
            Some(INGESTED_AT_MS),
        ));
    }
    seen.sort();
    seen
}

fn config_text(source: &str, storage: &str, state: &Path, extra: &str) -> String {
    format!(
        "era:\n  network: testnet\n  ledger_start: 2\n  ledger_end: 41\n  partition_size: 10\n  ingested_at: \"2025-01-15T10:00:00Z\"\n{source}{storage}checkpoint:\n  dir: {}\nperf:\n  retry_backoff_ms: 10\n  max_in_flight_partitions: 2\n{extra}",
        state.display()
    )
}

#[test]
fn s3_compatible_source_and_output_with_custom_endpoint() {
    let s3 = MotoS3::start();
    s3.create_bucket("ledgers");
    s3.create_bucket("lake");
    let run = LocalRun::new();
    generate(&run.datastore, &small_templates(), 2, 40, 1, 64_000);
    upload_datastore(&s3, &run.datastore, "ledgers", "landing/ledgers/testnet");
    let endpoint = s3.endpoint();
    let config = run.dir.path().join("s3.yaml");
    std::fs::write(
        &config,
        config_text(
            &format!("source:\n  mode: datastore\n  datastore_type: S3\n  datastore_path: ledgers/landing/ledgers/testnet\n  s3_endpoint: {endpoint}\n  s3_region: us-east-1\n"),
            &format!("storage:\n  backend: s3\n  s3_bucket: lake\n  s3_endpoint: {endpoint}\n  s3_region: us-east-1\n  prefix: bronze\n"),
            &run.state,
            "",
        ),
    )
    .unwrap();
    let run_it = || {
        let out = exec(
            copier()
                .arg("-config")
                .arg(&config)
                .arg("--no-progress")
                .envs(s3.env()),
        );
        (out.status.code(), text(&out))
    };
    let (code, log) = run_it();
    assert_eq!(code, Some(0), "{log}");
    let expected = expected_rows(&run.datastore);
    let seen = check_bucket_output(
        &s3,
        "lake",
        "bronze/testnet/pre_p23/v1/ledgers_lcm_raw",
        &expected,
        run.dir.path(),
    );
    assert_eq!(seen, (2..=41).collect::<Vec<u64>>());

    // Conditional create protects committed partitions: with the checkpoint gone the run adopts
    // them instead of rewriting, and leaves every object as it was.
    let before = s3.get_object(
        "lake",
        "bronze/testnet/pre_p23/v1/ledgers_lcm_raw/range=12-21/_manifest.json",
    );
    std::fs::remove_dir_all(&run.state).unwrap();
    let (code, log) = run_it();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("already committed"), "{log}");
    assert_eq!(
        before,
        s3.get_object(
            "lake",
            "bronze/testnet/pre_p23/v1/ledgers_lcm_raw/range=12-21/_manifest.json"
        )
    );
}

#[test]
fn s3_mode_with_bucket_and_prefix_keys_reports_a_missing_object_by_key() {
    let s3 = MotoS3::start();
    s3.create_bucket("ledgers");
    let run = LocalRun::new();
    generate(&run.datastore, &small_templates(), 2, 40, 1, 64_000);
    std::fs::remove_file(object_for(&run.datastore, 33)).unwrap();
    upload_datastore(&s3, &run.datastore, "ledgers", "p");
    let config = run.dir.path().join("s3.yaml");
    std::fs::write(
        &config,
        config_text(
            &format!(
                "source:\n  mode: s3\n  s3_bucket: ledgers\n  s3_prefix: p\n  s3_endpoint: {}\n",
                s3.endpoint()
            ),
            &format!(
                "storage:\n  backend: local\n  local_dir: {}\n",
                run.out.display()
            ),
            &run.state,
            "",
        ),
    )
    .unwrap();
    let out = exec(
        copier()
            .arg("-config")
            .arg(&config)
            .arg("--no-progress")
            .envs(s3.env()),
    );
    let log = text(&out);
    assert_eq!(out.status.code(), Some(3), "{log}");
    assert!(
        log.contains("missing object") && log.contains("s3://ledgers/p") && log.contains("--33"),
        "{log}"
    );
    assert_eq!(run.checkpoint().unwrap()["last_committed_ledger"], 31);
}

// Bucket names without '-': object_store's GCS client percent-encodes it in the path, which real
// GCS decodes but the moto server behind the test proxy does not.
#[test]
fn gcs_source_and_output_through_the_translating_proxy() {
    let s3 = MotoS3::start();
    let gcs = GcsProxy::start(&s3);
    s3.create_bucket("ledgerdata");
    s3.create_bucket("bronzelake");
    let run = LocalRun::new();
    generate(&run.datastore, &small_templates(), 2, 40, 1, 64_000);
    upload_datastore(&s3, &run.datastore, "ledgerdata", "landing/ledgers/testnet");
    let key_file = gcs.service_account_json(run.dir.path());
    let config = run.dir.path().join("gcs.yaml");
    std::fs::write(
        &config,
        config_text(
            "source:\n  mode: datastore\n  datastore_type: GCS\n  datastore_path: ledgerdata/landing/ledgers/testnet\n",
            "storage:\n  backend: gcs\n  gcs_bucket: bronzelake\n",
            &run.state,
            "",
        ),
    )
    .unwrap();
    let out = exec(
        copier()
            .arg("-config")
            .arg(&config)
            .arg("--no-progress")
            .env("GOOGLE_APPLICATION_CREDENTIALS", &key_file),
    );
    let log = text(&out);
    assert_eq!(out.status.code(), Some(0), "{log}");
    let expected = expected_rows(&run.datastore);
    let seen = check_bucket_output(
        &s3,
        "bronzelake",
        "bronze/testnet/pre_p23/v1/ledgers_lcm_raw",
        &expected,
        run.dir.path(),
    );
    assert_eq!(seen, (2..=41).collect::<Vec<u64>>());
}
