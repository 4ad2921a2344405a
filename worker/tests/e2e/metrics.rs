//! The Prometheus endpoint of the real binary: scraped while a tip-following run waits for new
//! ledgers, every family present, and each one that the run exercised has moved.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::binary::{describe, wait_until};
use crate::harness::Harness;

pub fn get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// The value of the sample `name{labels…}` whose labels contain `label` (all labels if "").
pub fn value(scrape: &str, name: &str, label: &str) -> Option<f64> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            let (series, _) = l.rsplit_once(' ').unwrap_or((l, ""));
            (series == name || series.starts_with(&format!("{name}{{"))) && series.contains(label)
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn every_metric_family_is_served_and_moves() {
    // Ledgers 2..=41 in the datastore. A first, bounded run commits 2-9; without its checkpoint
    // the second run finds that partition in storage and adopts it (partitions_skipped).
    let mut work = Harness::pubnet(40).range(2, 9).partition_size(8);
    let out = work.run();
    assert!(out.status.success(), "{}", describe(&out));
    std::fs::remove_file(work.checkpoint_path()).unwrap();

    let port = bronze_testkit::free_port();
    let db_port = bronze_testkit::free_port(); // nothing listens: catalog errors, lenient
    work.ledger_end = 0; // follow the tip
    work.extra = format!(
        "metrics:\n  enabled: true\n  address: \"127.0.0.1:{port}\"\ncatalog:\n  postgres_dsn: \"postgres://postgres@127.0.0.1:{db_port}/x?connect_timeout=2\"\n"
    );
    let log = work.path("tail.log");
    let mut child = work.spawn_logging_to(&log);
    let mut scrape = String::new();
    let caught_up = wait_until(120, || {
        scrape = get(port, "/metrics").unwrap_or_default();
        value(&scrape, "bronze_copier_last_ledger_sequence", "") == Some(41.0)
    });
    // The rate gauge is sampled on a timer (once a second with the default 60 s window).
    wait_until(5, || {
        scrape = get(port, "/metrics").unwrap_or_default();
        value(&scrape, "bronze_copier_ledgers_per_second", "").is_some_and(|r| r > 0.0)
    });
    let health = get(port, "/health");
    nix_kill_term(child.id());
    let status = child.wait().unwrap();
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(caught_up, "never reached ledger 41:\n{scrape}\n{logs}");
    assert_eq!(status.code(), Some(143), "{logs}");
    let health = health.unwrap();
    assert!(
        health.starts_with("HTTP/1.1 200") && health.ends_with("ok"),
        "{health}"
    );

    let v = |name: &str, label: &str| {
        value(&scrape, name, label).unwrap_or_else(|| panic!("{name} {label} missing:\n{scrape}"))
    };
    let ds = "network=\"pubnet\",era_id=\"pre_p23\",version=\"v1\"";
    // Exact counts: 4 partitions written (10-41), 1 adopted (2-9).
    assert_eq!(v("bronze_copier_partitions_processed_total", ds), 4.0);
    assert_eq!(v("bronze_copier_partitions_skipped_total", ds), 1.0);
    assert_eq!(v("bronze_copier_ledgers_processed_total", ds), 32.0);
    assert_eq!(v("bronze_copier_partitions_failed_total", ds), 0.0);
    for (name, at_least) in [
        ("bronze_copier_xdr_bytes_total", 32.0 * 300_000.0),
        ("bronze_copier_source_bytes_total", 32.0 * 10_000.0),
        ("bronze_copier_parquet_bytes_total", 4.0 * 10_000.0),
        ("bronze_copier_partition_build_duration_seconds_count", 4.0),
        ("bronze_copier_partition_upload_duration_seconds_count", 4.0),
        ("bronze_copier_partition_commit_duration_seconds_count", 4.0),
        ("bronze_copier_partition_rows_count", 4.0),
        ("bronze_copier_partition_bytes_count", 4.0),
        ("bronze_copier_partition_rows_sum", 32.0),
    ] {
        assert!(
            v(name, ds) >= at_least,
            "{name} = {} < {at_least}",
            v(name, ds)
        );
    }
    assert!(v("bronze_copier_ledgers_per_second", "") > 0.0);
    // The next partitions wait for ledgers that do not exist yet: they are in flight.
    assert!(v("bronze_copier_in_flight_partitions", "") >= 1.0);
    // The catalog was down: errors counted in both families, every partition queued.
    assert!(v("bronze_copier_metadata_errors_total", "network=\"pubnet\"") >= 1.0);
    assert!(v("bronze_copier_errors_total", "kind=\"catalog\"") >= 1.0);
    assert_eq!(v("bronze_copier_catalog_pending_partitions", ""), 5.0);
    assert_eq!(
        v("bronze_copier_build_info", "version=\""),
        1.0,
        "build_info"
    );
    // Present from the start (they move on retries, PAS deliveries, queued objects, …).
    for family in [
        "bronze_copier_retry_attempts_total",
        "bronze_copier_source_errors_total",
        "bronze_copier_storage_errors_total",
        "bronze_copier_pas_errors_total",
        "bronze_copier_pas_pending_deliveries",
        "bronze_copier_worker_queue_depth",
        "bronze_copier_sequencer_pending",
    ] {
        assert!(
            scrape.contains(&format!("# TYPE {family} ")),
            "{family} missing:\n{scrape}"
        );
    }
    assert!(scrape.contains("operation=\"source_read\""), "{scrape}");
}

pub fn nix_kill_term(pid: u32) {
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -TERM {pid}");
}

/// Issue 15 (4): `ledgers_per_second` was the average since the start, set only on a commit, so
/// it stayed high forever while a follower waited at the tip. Now it covers the last
/// `metrics.rate_window_seconds` and falls to 0 when nothing is copied, while the counter for
/// `rate()` keeps its total.
#[test]
fn the_rate_gauge_falls_to_zero_while_waiting_at_the_tip() {
    let work = Harness::pubnet(40).range(2, 0).partition_size(8);
    let port = bronze_testkit::free_port();
    let work = work.yaml(&format!(
        "metrics:\n  enabled: true\n  address: \"127.0.0.1:{port}\"\n  rate_window_seconds: 2\n"
    ));
    let log = work.path("tail.log");
    let mut child = work.spawn_logging_to(&log);
    let gauge = |scrape: &str| value(scrape, "bronze_copier_ledgers_per_second", "");
    let mut scrape = String::new();
    let caught_up = wait_until(120, || {
        scrape = get(port, "/metrics").unwrap_or_default();
        value(&scrape, "bronze_copier_last_ledger_sequence", "") == Some(41.0)
    });
    // The copy shows within a window (the timer samples a few times per window)...
    let mut copying_rate = None;
    wait_until(10, || {
        scrape = get(port, "/metrics").unwrap_or_default();
        copying_rate = gauge(&scrape).filter(|r| *r > 0.0);
        copying_rate.is_some()
    });
    // ...and then, waiting at the tip where no ledger 42 ever comes, falls to 0.
    let idle = wait_until(20, || {
        scrape = get(port, "/metrics").unwrap_or_default();
        gauge(&scrape) == Some(0.0)
    });
    let still_running = child.try_wait().unwrap().is_none();
    nix_kill_term(child.id());
    let status = child.wait().unwrap();
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(caught_up, "never reached ledger 41:\n{scrape}\n{logs}");
    assert!(
        copying_rate.is_some(),
        "the gauge never showed the copy:\n{logs}"
    );
    assert!(
        idle,
        "the gauge did not fall to 0 at the tip:\n{scrape}\n{logs}"
    );
    assert!(still_running, "{logs}");
    assert_eq!(status.code(), Some(143), "{logs}");
    let ds = "network=\"pubnet\",era_id=\"pre_p23\",version=\"v1\"";
    assert_eq!(
        value(&scrape, "bronze_copier_ledgers_processed_total", ds),
        Some(40.0),
        "{scrape}"
    );
    assert!(
        scrape.contains("# TYPE bronze_copier_ledgers_processed_total counter"),
        "{scrape}"
    );
}
