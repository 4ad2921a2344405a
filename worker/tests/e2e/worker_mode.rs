//! `bronze-copier worker --range S-E` (one Kubernetes Job of the operator), end to end on the
//! real binary: a generated datastore on local disk, output on local disk or S3 (moto).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use bronze::publish::Manifest;
use bronze_testkit::MotoS3;

use crate::binary::{copier, describe};
use crate::datastore::object_for;
use crate::harness::{Harness, INGESTED_AT};

/// A work dir with a datastore of ledgers 2..=61 (one ledger per object); the worker's config
/// comes from the environment, not from the harness's config file.
fn workdir() -> Harness {
    Harness::testnet(60)
}

/// The environment of a worker Pod, as the operator writes it.
fn worker_env(source: &Path, output: &Path) -> BTreeMap<String, String> {
    [
        ("NETWORK", "testnet"),
        ("ERA_ID", "p23"),
        ("VERSION_LABEL", "v1"),
        ("LEDGER_START", "2"),
        ("LEDGER_END", "61"),
        ("PARTITION_SIZE", "10"),
        ("INGESTED_AT", INGESTED_AT),
        ("SOURCE_MODE", "local"),
        ("SOURCE_LOCAL_PATH", source.to_str().unwrap()),
        ("STORAGE_BACKEND", "local"),
        ("STORAGE_LOCAL_DIR", output.to_str().unwrap()),
        ("STORAGE_PREFIX", "bronze/"),
        ("CHECKPOINT_ENABLED", "false"),
        ("PAS_ENABLED", "false"),
        ("LOG_FORMAT", "json"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn run_worker(env: &BTreeMap<String, String>, args: &[&str]) -> Output {
    let mut cmd = copier();
    cmd.envs(env).arg("worker").args(args);
    // A run is bounded; a hang here is a bug.
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let id = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output().unwrap()));
    match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(out) => out,
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .arg("-9")
                .arg(id.to_string())
                .status();
            panic!("worker did not finish within 120 s");
        }
    }
}

fn dataset_dir(output: &Path) -> PathBuf {
    output.join("bronze/testnet/p23/v1/ledgers_lcm_raw")
}

fn manifest(output: &Path, range: &str) -> Option<Manifest> {
    let path = dataset_dir(output).join(format!("range={range}/_manifest.json"));
    std::fs::read(path)
        .ok()
        .map(|b| Manifest::from_json(&b).unwrap())
}

fn committed_ranges(output: &Path) -> Vec<String> {
    let mut ranges: Vec<String> = std::fs::read_dir(dataset_dir(output))
        .map(|d| {
            d.filter_map(|e| {
                let e = e.ok()?;
                e.path().join("_manifest.json").exists().then(|| {
                    e.file_name()
                        .to_string_lossy()
                        .trim_start_matches("range=")
                        .to_string()
                })
            })
            .collect()
        })
        .unwrap_or_default();
    ranges.sort_by_key(|r| r.split('-').next().unwrap().parse::<u32>().unwrap());
    ranges
}

#[test]
fn commits_exactly_its_ranges_partitions_and_adopts_them_when_retried() {
    let tmp = workdir();
    let source = tmp.datastore.clone();
    let output = tmp.dir().join("out");
    let mut env = worker_env(&source, &output);
    // A shared config may turn these on: worker mode ignores them (the operator's job).
    for (k, v) in [
        ("CHECKPOINT_ENABLED", "true".to_string()),
        (
            "CHECKPOINT_DIR",
            tmp.dir().join("state").display().to_string(),
        ),
        ("PAS_ENABLED", "true".to_string()),
        (
            "PAS_BACKUP_DIR",
            tmp.dir().join("pas").display().to_string(),
        ),
    ] {
        env.insert(k.into(), v);
    }

    let out = run_worker(&env, &["--range", "12-31"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(committed_ranges(&output), ["12-21", "22-31"]);
    let first = manifest(&output, "12-21").unwrap();
    let second = manifest(&output, "22-31").unwrap();
    let millis = |t: &str| bronze::time::rfc3339_to_millis(t);
    assert_eq!(
        first.ingested_at.as_deref().and_then(millis),
        millis(INGESTED_AT)
    );
    assert_eq!(
        second.chain.as_ref().unwrap().previous_ledger_hash,
        first.chain.as_ref().unwrap().last_ledger_hash,
        "partitions of one Job are linked"
    );
    assert_eq!(first.primary().unwrap().row_count, 10);
    // Nothing of the operator's job was done: no checkpoint, no PAS backup.
    assert!(
        !tmp.dir().join("state").exists(),
        "no checkpoint in worker mode"
    );
    assert!(!tmp.dir().join("pas").exists(), "no PAS in worker mode");
    assert!(String::from_utf8_lossy(&out.stdout).contains("checkpoint disabled"));

    // The Job is retried (a Pod restart): the committed partitions are adopted as they are.
    let bytes = std::fs::read(dataset_dir(&output).join("range=12-21/_manifest.json")).unwrap();
    let again = run_worker(&env, &["--range", "12-31"]);
    assert_eq!(again.status.code(), Some(0), "{}", describe(&again));
    assert_eq!(
        std::fs::read(dataset_dir(&output).join("range=12-21/_manifest.json")).unwrap(),
        bytes
    );
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("already committed"),
        "{}",
        describe(&again)
    );

    // Another Job, for the range before, links to what is there and writes identical bytes
    // to what a single standalone run would (same ingested_at).
    let out = run_worker(&env, &["--range", "2-11"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(committed_ranges(&output), ["2-11", "12-21", "22-31"]);
    assert_eq!(
        first.chain.as_ref().unwrap().previous_ledger_hash,
        manifest(&output, "2-11")
            .unwrap()
            .chain
            .unwrap()
            .last_ledger_hash
    );
}

#[test]
fn a_range_that_is_not_whole_partitions_is_a_usage_error() {
    let tmp = workdir();
    let source = tmp.datastore.clone();
    let output = tmp.dir().join("out");
    let env = worker_env(&source, &output);
    for range in ["13-21", "12-25", "52-71"] {
        let out = run_worker(&env, &["--range", range]);
        assert_eq!(out.status.code(), Some(2), "{range}: {}", describe(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("whole partitions"),
            "{}",
            describe(&out)
        );
    }
    assert!(committed_ranges(&output).is_empty());
}

#[test]
fn ingested_at_is_required_so_every_job_writes_the_same_value() {
    let tmp = workdir();
    let source = tmp.datastore.clone();
    let output = tmp.dir().join("out");
    let mut env = worker_env(&source, &output);
    env.remove("INGESTED_AT");
    let log = tmp.dir().join("termination-log");
    std::fs::write(&log, "").unwrap();
    let out = run_worker(
        &env,
        &[
            "--range",
            "2-11",
            "--termination-log",
            log.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("INGESTED_AT")
    );
    assert!(committed_ranges(&output).is_empty());
}

#[test]
fn corrupt_input_exits_3_with_a_termination_message_naming_the_object() {
    let tmp = workdir();
    let source = tmp.datastore.clone();
    let output = tmp.dir().join("out");
    // Ledger 25's object: overwrite it with garbage.
    let object = object_for(&source, 25);
    std::fs::write(&object, b"not zstd at all").unwrap();
    let log = tmp.dir().join("termination-log");
    std::fs::write(&log, "").unwrap();
    let env = worker_env(&source, &output);
    let out = run_worker(
        &env,
        &[
            "--range",
            "12-31",
            "--termination-log",
            log.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let message = std::fs::read_to_string(&log).unwrap();
    assert!(
        message.starts_with("exit 3: ") && message.contains("--25.xdr.zst"),
        "{message}"
    );
    assert!(
        manifest(&output, "22-31").is_none(),
        "the bad partition is not committed"
    );
}

#[test]
fn a_foreign_partition_in_the_way_exits_4() {
    let tmp = workdir();
    let source = tmp.datastore.clone();
    let output = tmp.dir().join("out");
    let env = worker_env(&source, &output);
    let out = run_worker(&env, &["--range", "2-11"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    // Someone else's manifest sits at our path (a copy from another era).
    let path = dataset_dir(&output).join("range=2-11/_manifest.json");
    let mut m = manifest(&output, "2-11").unwrap();
    m.partition.era_id = "other".into();
    std::fs::write(&path, m.to_json()).unwrap();
    let out = run_worker(&env, &["--range", "2-11"]);
    assert_eq!(out.status.code(), Some(4), "{}", describe(&out));
}

#[test]
fn a_follow_mode_job_never_waits_for_ledgers_past_the_tip() {
    let tmp = workdir();
    let source = tmp.datastore.clone(); // ledgers 2..=61
    let output = tmp.dir().join("out");
    let mut env = worker_env(&source, &output);
    env.insert("LEDGER_END".into(), "0".into());
    env.insert("SOURCE_POLL_INTERVAL_MS".into(), "50".into());
    let out = run_worker(&env, &["--range", "52-71"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "a missing object is bad input here: {}",
        describe(&out)
    );
    let out = run_worker(&env, &["--range", "42-61"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(committed_ranges(&output), ["42-51", "52-61"]);
}

#[test]
fn commits_to_s3() {
    let tmp = workdir();
    let source = tmp.datastore.clone();
    let s3 = MotoS3::start();
    s3.create_bucket("bronze-out");
    let mut env = worker_env(&source, &tmp.dir().join("unused"));
    env.insert("STORAGE_BACKEND".into(), "s3".into());
    env.insert("STORAGE_S3_BUCKET".into(), "bronze-out".into());
    env.insert("STORAGE_S3_ENDPOINT".into(), s3.endpoint());
    env.insert("STORAGE_S3_REGION".into(), s3.region().into());
    env.insert("RETRY_BACKOFF_MS".into(), "50".into());
    env.extend(s3.env());
    let out = run_worker(&env, &["--range", "2-21"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let mut keys = s3.list_objects("bronze-out", "bronze/");
    keys.sort();
    assert_eq!(
        keys,
        [
            "bronze/testnet/p23/v1/ledgers_lcm_raw/range=12-21/_manifest.json",
            "bronze/testnet/p23/v1/ledgers_lcm_raw/range=12-21/part-12-21.parquet",
            "bronze/testnet/p23/v1/ledgers_lcm_raw/range=2-11/_manifest.json",
            "bronze/testnet/p23/v1/ledgers_lcm_raw/range=2-11/part-2-11.parquet",
        ]
    );
    let m = Manifest::from_json(
        &s3.get_object(
            "bronze-out",
            "bronze/testnet/p23/v1/ledgers_lcm_raw/range=12-21/_manifest.json",
        )
        .unwrap(),
    )
    .unwrap();
    let parquet = s3
        .get_object(
            "bronze-out",
            "bronze/testnet/p23/v1/ledgers_lcm_raw/range=12-21/part-12-21.parquet",
        )
        .unwrap();
    assert_eq!(m.primary().unwrap().byte_size, parquet.len() as u64);
    use sha2::Digest;
    assert_eq!(
        m.primary().unwrap().checksum,
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(&parquet)))
    );
    // Retried: adopted, not rewritten.
    let again = run_worker(&env, &["--range", "2-21"]);
    assert_eq!(again.status.code(), Some(0), "{}", describe(&again));
    let m2 = Manifest::from_json(
        &s3.get_object(
            "bronze-out",
            "bronze/testnet/p23/v1/ledgers_lcm_raw/range=12-21/_manifest.json",
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(m2, m);
}

fn scrape_metrics(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.contains("200 OK").then_some(out)
}

/// The operator turns the worker's metrics endpoint on (`METRICS_ENABLED`, `METRICS_ADDRESS`,
/// the Pod's `metrics` port that the chart's PodMonitor scrapes): a worker serves the copier's
/// metrics while it copies its range.
#[test]
fn a_worker_serves_its_metrics_while_it_copies() {
    let tmp = Harness::testnet(2000);
    let output = tmp.dir().join("out");
    let mut env = worker_env(&tmp.datastore, &output);
    let port = bronze_testkit::free_port();
    env.insert("LEDGER_END".into(), "2001".into());
    env.insert("METRICS_ENABLED".into(), "true".into());
    env.insert("METRICS_ADDRESS".into(), format!("127.0.0.1:{port}"));
    let mut child = copier()
        .envs(&env)
        .args(["worker", "--range", "2-2001"])
        .stdout(std::fs::File::create(tmp.dir().join("worker.log")).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let mut served = None;
    while child.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(120) {
        if let Some(text) = scrape_metrics(port) {
            let counted = text.lines().any(|l| {
                l.starts_with("bronze_copier_ledgers_processed_total{") && !l.ends_with(" 0")
            });
            served = Some(text);
            if counted {
                break; // a partition's ledgers are counted: the copy is under way
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = child.wait().unwrap();
    let log = std::fs::read_to_string(tmp.dir().join("worker.log")).unwrap_or_default();
    assert_eq!(status.code(), Some(0), "{log}");
    let text = served.expect("the worker never served /metrics while it ran");
    assert!(
        text.contains("bronze_copier_build_info{"),
        "no build info in the worker's /metrics:\n{text}"
    );
    assert!(
        text.lines().any(|l| l
            .starts_with("bronze_copier_ledgers_processed_total{network=\"testnet\"")
            && !l.ends_with(" 0")),
        "the worker's /metrics never counted a ledger while it ran:\n{text}\n{log}"
    );
}

/// Two workers on one node with host networking, or a port taken by something else: the
/// metrics endpoint is optional in worker mode, the range is still copied.
#[test]
fn a_worker_whose_metrics_port_is_taken_still_copies_its_range() {
    let tmp = workdir();
    let output = tmp.dir().join("out");
    let mut env = worker_env(&tmp.datastore, &output);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    env.insert("METRICS_ENABLED".into(), "true".into());
    env.insert("METRICS_ADDRESS".into(), format!("127.0.0.1:{port}"));
    let out = run_worker(&env, &["--range", "2-21"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(committed_ranges(&output), ["2-11", "12-21"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("no /metrics endpoint")
            || String::from_utf8_lossy(&out.stderr).contains("no /metrics endpoint"),
        "{}",
        describe(&out)
    );
}
