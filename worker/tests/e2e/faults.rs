//! Faults at scale, small: a backfill reading one ledger per object over S3 from a store that
//! answers 5% of requests 503 SlowDown or 500, resets connections mid-body and stalls some
//! requests for 10 s (testkit's `S3Dir` with `Faults`) completes with Parquet byte-identical to a
//! fault-free run, with default retry settings, and its logs and metrics say what was retried.

use std::path::PathBuf;
use std::time::Duration;

use bronze_testkit::{Faults, S3Dir};

use crate::binary::wait_until;
use crate::harness::Harness;
use crate::metrics::{get, nix_kill_term, value};

const LEDGERS: u32 = 300;
const LAST: u32 = 2 + LEDGERS - 1;

/// The harness reading `server` over S3, with the copier's default perf settings.
fn over_s3(h: &mut Harness, server: &S3Dir) {
    h.source_block = Some(format!(
        "source:\n  mode: s3\n  s3_bucket: datastore\n  s3_endpoint: \"{}\"\n  s3_region: us-east-1\n  poll_interval_ms: 100\n",
        server.endpoint()
    ));
    h.perf = [
        ("max_in_flight_partitions", "4"),
        ("workers", "256"),
        ("retry_attempts", "3"),
        ("retry_backoff_ms", "1000"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    h.env = vec![
        ("AWS_ACCESS_KEY_ID".into(), "test".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "test".into()),
        ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
    ];
}

fn parquet_files(h: &Harness) -> Vec<(PathBuf, Vec<u8>)> {
    h.partitions()
        .into_iter()
        .map(|(start, end, _)| {
            let path = h.parquet_path(start, end);
            let bytes = std::fs::read(&path).unwrap();
            (path.strip_prefix(h.out_dir()).unwrap().to_path_buf(), bytes)
        })
        .collect()
}

#[test]
fn a_backfill_through_cloud_faults_ends_byte_identical_and_says_what_it_retried() {
    // Fault-free baseline: the same datastore over the same kind of endpoint.
    let mut clean = Harness::testnet(LEDGERS).partition_size(100);
    let server = S3Dir::start(&clean.datastore, Duration::ZERO);
    over_s3(&mut clean, &server);
    clean.run_expect(0);
    let expected = parquet_files(&clean);
    assert_eq!(expected.len(), 3);

    // Through faults, following the tip so that /metrics can be read once it is done.
    let faults = Faults {
        stalls: 0.01, // a few in 300 requests (the cloud preset's 1 in 2,000 would be none)
        ..Faults::cloud(3)
    };
    let mut faulty = Harness::empty()
        .range(2, 0)
        .partition_size(100)
        .datastore(clean.datastore.clone());
    let server = S3Dir::start_with_faults(&clean.datastore, Duration::ZERO, faults);
    over_s3(&mut faulty, &server);
    let port = bronze_testkit::free_port();
    faulty.extra = format!("metrics:\n  enabled: true\n  address: \"127.0.0.1:{port}\"\n");
    let log = faulty.path("faulty.log");
    let mut child = faulty.spawn_logging_to(&log);
    let mut scrape = String::new();
    let done = wait_until(120, || {
        scrape = get(port, "/metrics").unwrap_or_default();
        value(&scrape, "bronze_copier_last_ledger_sequence", "") == Some(f64::from(LAST))
    });
    nix_kill_term(child.id());
    child.wait().unwrap();
    let logs = std::fs::read_to_string(&log).unwrap();
    let injected = server.faults();
    assert!(done, "never reached ledger {LAST} ({injected:?}):\n{logs}");

    // Every kind of fault happened (the seed is fixed) ...
    assert!(
        injected.slow_down > 0
            && injected.internal_error > 0
            && injected.resets > 0
            && injected.stalls > 0,
        "{injected:?}"
    );
    // ... and the output is the fault-free run's, byte for byte.
    assert_eq!(
        parquet_files(&faulty),
        expected,
        "Parquet differs from the fault-free run"
    );
    assert!(
        !logs.contains("partition build failed"),
        "source faults are absorbed per request, not by rebuilding partitions:\n{logs}"
    );

    // The logs name each retried failure by cause; a stalled GET was raced by a second one.
    for cause in ["throttled", "server_error", "connection"] {
        assert!(
            logs.contains("datastore read failed; retrying") && logs.contains(cause),
            "no retried {cause} failure in the logs:\n{logs}"
        );
    }
    assert!(logs.contains("racing a second one"), "{logs}");

    // So do the metrics.
    let v = |name: &str, label: &str| value(&scrape, name, label).unwrap_or(0.0);
    let failures = |cause: &str| {
        v(
            "bronze_copier_source_read_failures_total",
            &format!("cause=\"{cause}\""),
        )
    };
    assert!(failures("throttled") >= 1.0, "{scrape}");
    assert!(failures("server_error") >= 1.0, "{scrape}");
    assert!(failures("connection") >= 1.0, "{scrape}");
    let counted: f64 = [
        "throttled",
        "server_error",
        "connection",
        "timeout",
        "other",
    ]
    .iter()
    .map(|c| failures(c))
    .sum();
    assert_eq!(
        v(
            "bronze_copier_retry_attempts_total",
            "operation=\"source_read\""
        ),
        counted,
        "each counted failure was retried:\n{scrape}"
    );
    assert!(
        v(
            "bronze_copier_retry_attempts_total",
            "operation=\"source_read_hedge\""
        ) >= 1.0,
        "{scrape}"
    );
    assert_eq!(v("bronze_copier_partitions_failed_total", ""), 0.0);
}
