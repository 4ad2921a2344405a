//! End to end against real object-store servers on loopback: S3 (moto) and GCS (object_store's
//! GCS client through the GCS-to-S3 translating proxy). Source and output both in buckets.

use std::path::Path;

use crate::binary::text;
use crate::datastore::object_for;
use crate::harness::Harness;
use crate::oracle::{
    Expected, INGESTED_AT_MS, TESTNET_LABELS, check_parquet_with_pyarrow, expected_rows,
    sha256_file,
};
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
            TESTNET_LABELS,
            Some(INGESTED_AT_MS),
        ));
    }
    seen.sort();
    seen
}

/// Runs the copier to its end: exit code and output.
fn run_to_end(run: &Harness) -> (Option<i32>, String) {
    let out = run.run();
    (out.status.code(), text(&out))
}

#[test]
fn s3_compatible_source_and_output_with_custom_endpoint() {
    let s3 = MotoS3::start();
    s3.create_bucket("ledgers");
    s3.create_bucket("lake");
    let run = Harness::testnet(40);
    upload_datastore(&s3, &run.datastore, "ledgers", "landing/ledgers/testnet");
    let endpoint = s3.endpoint();
    let run = run
        .source(format!("source:\n  mode: datastore\n  datastore_type: S3\n  datastore_path: ledgers/landing/ledgers/testnet\n  s3_endpoint: {endpoint}\n  s3_region: us-east-1\n"))
        .storage(format!("storage:\n  backend: s3\n  s3_bucket: lake\n  s3_endpoint: {endpoint}\n  s3_region: us-east-1\n  prefix: bronze\n"))
        .envs(s3.env());
    let (code, log) = run_to_end(&run);
    assert_eq!(code, Some(0), "{log}");
    let expected = expected_rows(&run.datastore);
    let seen = check_bucket_output(
        &s3,
        "lake",
        "bronze/testnet/pre_p23/v1/ledgers_lcm_raw",
        &expected,
        run.dir(),
    );
    assert_eq!(seen, (2..=41).collect::<Vec<u64>>());

    // Conditional create protects committed partitions: with the checkpoint gone the run adopts
    // them instead of rewriting, and leaves every object as it was.
    let before = s3.get_object(
        "lake",
        "bronze/testnet/pre_p23/v1/ledgers_lcm_raw/range=12-21/_manifest.json",
    );
    std::fs::remove_dir_all(run.state_dir()).unwrap();
    let (code, log) = run_to_end(&run);
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
    let run = Harness::testnet(40);
    std::fs::remove_file(object_for(&run.datastore, 33)).unwrap();
    upload_datastore(&s3, &run.datastore, "ledgers", "p");
    let run = run
        .source(format!(
            "source:\n  mode: s3\n  s3_bucket: ledgers\n  s3_prefix: p\n  s3_endpoint: {}\n",
            s3.endpoint()
        ))
        .envs(s3.env());
    let (code, log) = run_to_end(&run);
    assert_eq!(code, Some(3), "{log}");
    assert!(
        log.contains("missing object") && log.contains("s3://ledgers/p") && log.contains("--33"),
        "{log}"
    );
    assert_eq!(run.checkpoint().unwrap()["last_committed_ledger"], 31);
}

#[test]
fn gcs_source_and_output_through_the_translating_proxy() {
    let s3 = MotoS3::start();
    let gcs = GcsProxy::start(&s3);
    s3.create_bucket("ledgerdata");
    s3.create_bucket("bronzelake");
    let run = Harness::testnet(40);
    upload_datastore(&s3, &run.datastore, "ledgerdata", "landing/ledgers/testnet");
    let key_file = gcs.service_account_json(run.dir());
    let run = run
        .source("source:\n  mode: datastore\n  datastore_type: GCS\n  datastore_path: ledgerdata/landing/ledgers/testnet\n".into())
        .storage("storage:\n  backend: gcs\n  gcs_bucket: bronzelake\n".into())
        .envs([(
            "GOOGLE_APPLICATION_CREDENTIALS".to_string(),
            key_file.display().to_string(),
        )]);
    let (code, log) = run_to_end(&run);
    assert_eq!(code, Some(0), "{log}");
    let expected = expected_rows(&run.datastore);
    let seen = check_bucket_output(
        &s3,
        "bronzelake",
        "bronze/testnet/pre_p23/v1/ledgers_lcm_raw",
        &expected,
        run.dir(),
    );
    assert_eq!(seen, (2..=41).collect::<Vec<u64>>());
}

/// Issue 15 (8): the runbook's GCS-to-GCS shape (dashed bucket names, a `landing/ledgers/...`
/// prefix), on a datastore uploaded with plain keys by another client, as Galexie writes it.
/// object_store's GCS client percent-encodes `/` in object names; the proxy must pass the
/// decoded name, as GCS does, or `.config.json` reads as missing and the output lands under
/// literal `%2F` names.
#[test]
fn gcs_to_gcs_in_the_runbook_shape_reads_a_datastore_written_with_plain_keys() {
    let s3 = MotoS3::start();
    let gcs = GcsProxy::start(&s3);
    let (source_bucket, output_bucket) = (
        "obsrvr-stellar-ledger-data-testnet-data",
        "obsrvr-bronze-output",
    );
    s3.create_bucket(source_bucket);
    s3.create_bucket(output_bucket);
    let run = Harness::testnet(40);
    // Plain keys through the S3 API: another client, not the GCS path under test.
    upload_datastore(
        &s3,
        &run.datastore,
        source_bucket,
        "landing/ledgers/testnet",
    );
    assert!(
        s3.list_objects(source_bucket, "landing/ledgers/testnet/")
            .iter()
            .any(|k| k == "landing/ledgers/testnet/.config.json")
    );
    let key_file = gcs.service_account_json(run.dir());
    let run = run
        .source(format!("source:\n  mode: datastore\n  datastore_type: GCS\n  datastore_path: {source_bucket}/landing/ledgers/testnet\n"))
        .storage(format!("storage:\n  backend: gcs\n  gcs_bucket: {output_bucket}\n"))
        .pas("")
        .envs([(
            "GOOGLE_APPLICATION_CREDENTIALS".to_string(),
            key_file.display().to_string(),
        )]);
    let (code, log) = run_to_end(&run);
    assert_eq!(code, Some(0), "{log}");
    // Stored under plain keys, readable by any client.
    let keys = s3.list_objects(output_bucket, "");
    assert!(
        keys.iter()
            .all(|k| !k.contains("%2F") && !k.contains("%2f")),
        "{keys:#?}"
    );
    let expected = expected_rows(&run.datastore);
    let seen = check_bucket_output(
        &s3,
        output_bucket,
        "bronze/testnet/pre_p23/v1/ledgers_lcm_raw",
        &expected,
        run.dir(),
    );
    assert_eq!(seen, (2..=41).collect::<Vec<u64>>());
    // And read back through the GCS path.
    let out = run.verify();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

/// An S3 endpoint that forwards every request to `upstream` (moto) and answers the GETs of
/// datastore objects for which `fail(key, attempt)` is true with a 503 SlowDown instead.
/// `attempt` counts that key's GETs from 1.
fn flaky_s3(
    upstream: String,
    fail: impl Fn(&str, usize) -> bool + Send + Sync + 'static,
) -> bronze_testkit::HttpSink {
    use bronze_testkit::{Behaviour, Reply, http};
    use std::collections::HashMap;
    use std::sync::Mutex;
    let attempts: Mutex<HashMap<String, usize>> = Mutex::new(HashMap::new());
    bronze_testkit::HttpSink::start(Behaviour::custom(move |req| {
        let key = req.path.split('?').next().unwrap_or_default().to_string();
        if req.method == "GET" && key.contains(".xdr.zst") {
            let mut seen = attempts.lock().unwrap();
            let attempt = seen.entry(key.clone()).or_default();
            *attempt += 1;
            if fail(&key, *attempt) {
                return Reply::status(503).with_body(
                    "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>",
                );
            }
        }
        let forwarded: Vec<(&str, &str)> = req
            .headers
            .iter()
            .filter(|(k, _)| {
                let k = k.to_ascii_lowercase();
                k == "range" || k == "authorization" || k.starts_with("x-amz-")
            })
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        match http::request(
            &req.method,
            &format!("{upstream}{}", req.path),
            &forwarded,
            &req.body,
        ) {
            Ok(resp) => {
                let mut reply = Reply::status(resp.status).with_body(resp.body);
                for (k, v) in &resp.headers {
                    let lower = k.to_ascii_lowercase();
                    if !matches!(
                        lower.as_str(),
                        "content-length" | "transfer-encoding" | "connection"
                    ) {
                        reply = reply.with_header(k, v);
                    }
                }
                reply
            }
            Err(_) => Reply::status(502),
        }
    }))
}

/// Transient store errors (503 SlowDown) on datastore reads are retried and cost nothing; an
/// object that keeps failing stops the run with the retryable exit code 1 (not "bad input"),
/// naming the object, with everything before it committed and nothing of its partition.
#[test]
fn transient_source_errors_are_retried_and_a_persistent_one_fails_retryably() {
    let s3 = MotoS3::start();
    s3.create_bucket("ledgers");
    let mut run = Harness::testnet(40).envs(s3.env());
    upload_datastore(&s3, &run.datastore, "ledgers", "p");
    // The datastore behind `endpoint`, read with `attempts` tries per object.
    let read_through = |run: &mut Harness, endpoint: &str, attempts: u32| {
        run.source_block = Some(format!(
            "source:\n  mode: s3\n  s3_bucket: ledgers\n  s3_prefix: p\n  s3_endpoint: {endpoint}\n"
        ));
        run.set_perf("retry_attempts", attempts);
    };

    // Every object's first two GETs fail.
    let flaky = flaky_s3(s3.endpoint(), |_, attempt| attempt <= 2);
    read_through(&mut run, &flaky.url(), 5);
    let (code, log) = run_to_end(&run);
    assert_eq!(code, Some(0), "{log}");
    let failed = flaky
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.contains(".xdr.zst"))
        .count();
    assert!(
        failed >= 3 * 40,
        "each of the 40 objects was read three times: {failed} GETs"
    );
    let expected = expected_rows(&run.datastore);
    let mut rows = Vec::new();
    for (start, end, dir) in run.partitions() {
        rows.extend(check_parquet_with_pyarrow(
            &dir.join(format!("part-{start}-{end}.parquet")),
            &expected,
            TESTNET_LABELS,
            None,
        ));
    }
    assert_eq!(rows, (2..=41).collect::<Vec<u64>>());
    assert_eq!(run.checkpoint().unwrap()["last_committed_ledger"], 41);

    // Ledger 25's object never comes back: exit 1 naming it; 2-21 stay committed, 22-31 is not.
    std::fs::remove_dir_all(run.out_dir()).unwrap();
    std::fs::remove_dir_all(run.state_dir()).unwrap();
    let dead = flaky_s3(s3.endpoint(), |key, _| key.contains("--25."));
    read_through(&mut run, &dead.url(), 3);
    let (code, log) = run_to_end(&run);
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains("--25.xdr.zst"),
        "the error names the object: {log}"
    );
    assert_eq!(run.checkpoint().unwrap()["last_committed_ledger"], 21);
    assert!(
        !run.dataset().join("range=22-31/_manifest.json").exists(),
        "nothing of the failing partition is committed"
    );
}
