//! The chart's Grafana dashboard against the real binary: every `bronze_copier_*` metric its
//! panels query is in the `/metrics` scrape of a real run (the operator's side is checked in
//! ship/tests/ship/monitoring.rs). A renamed metric would otherwise leave an empty panel.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bronze_testkit::promql;

use crate::binary::{describe, wait_until};
use crate::harness::Harness;

fn scrape(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn every_copier_metric_the_dashboard_queries_is_served_by_a_real_run() {
    let root = bronze_testkit::workspace_root();
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            root.join("charts/bronze-operator/dashboards/bronze-backfills.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let wanted: Vec<String> = promql::dashboard_exprs(&dashboard)
        .iter()
        .flat_map(|e| promql::metric_names(e))
        .filter(|n| n.starts_with("bronze_copier_"))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert!(wanted.len() >= 6, "{wanted:?}");

    // Follow the tip (so the server stays up) with a catalog that is down (lenient): errors and
    // the catalog backlog have samples too.
    let mut work = Harness::pubnet(16).partition_size(8);
    let port = bronze_testkit::free_port();
    let db_port = bronze_testkit::free_port();
    work.ledger_end = 0;
    work.extra = format!(
        "metrics:\n  enabled: true\n  address: \"127.0.0.1:{port}\"\ncatalog:\n  postgres_dsn: \"postgres://postgres@127.0.0.1:{db_port}/x?connect_timeout=2\"\n"
    );
    let log = work.path("tail.log");
    let child = work.spawn_logging_to(&log);
    let mut text = String::new();
    let ready = wait_until(120, || {
        text = scrape(port).unwrap_or_default();
        wanted.iter().all(|n| promql::exported(&text, n))
    });
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let out = child.wait_with_output();
    let missing: Vec<&String> = wanted
        .iter()
        .filter(|n| !promql::exported(&text, n))
        .collect();
    assert!(
        ready,
        "the dashboard queries {missing:?}, which the copier does not serve:\n{text}\n{}\n{}",
        std::fs::read_to_string(&log).unwrap_or_default(),
        out.map(|o| describe(&o)).unwrap_or_default()
    );
}
