//! `era.allow_overwrite` end to end (issue 15): a rerun that replaces committed partitions
//! keeps the dataset whole (verify clean, the audit chain linear and delivered, the catalog in
//! step), a refusal leaves every byte as it was, and a rerun without overwrite says what differs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bronze::pas::PasEvent;
use bronze_testkit::{Behaviour, HttpSink};

use crate::binary::describe;
use crate::harness::Harness;

const NEW_INGESTED_AT: &str = "2026-02-01T00:00:00Z";
const NEWER_INGESTED_AT: &str = "2026-03-01T00:00:00Z";

/// The runbook's shape: PAS on, a real HTTP sink, the backup dir as outbox.
fn backfill(sink: &HttpSink) -> Harness {
    let h = Harness::testnet(30).partition_size(10).pas(&format!(
        "  endpoint: \"{}/v1/events\"\n  timeout_ms: 5000\n",
        sink.url()
    ));
    h.run_expect(0);
    h.assert_verifies();
    h
}

fn overwrite(h: &mut Harness, ingested_at: &str) {
    h.era_lines = "  allow_overwrite: true\n".into();
    h.ingested_at = ingested_at.into();
}

/// Every file under `dir`, relative path → bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        let Ok(rd) = std::fs::read_dir(dir) else { return };
        for e in rd.map(|e| e.unwrap()) {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(p.strip_prefix(root).unwrap().into(), std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The Parquet bytes of every partition of a fresh run over the same datastore and settings.
fn fresh_parquets(h: &Harness) -> Vec<Vec<u8>> {
    let mut fresh = Harness::empty()
        .datastore(h.datastore.clone())
        .range(h.ledger_start, h.ledger_end)
        .partition_size(h.partition_size);
    fresh.ingested_at = h.ingested_at.clone();
    fresh.run_expect(0);
    fresh
        .ranges()
        .iter()
        .map(|&(s, e)| std::fs::read(fresh.parquet_path(s, e)).unwrap())
        .collect()
}

fn parquets(h: &Harness) -> Vec<Vec<u8>> {
    h.ranges()
        .iter()
        .map(|&(s, e)| std::fs::read(h.parquet_path(s, e)).unwrap())
        .collect()
}

/// The chain has no issues, links one event to the next, and the sink got every event (by
/// event_hash) in chain order.
fn assert_chain_linear_and_delivered(h: &Harness, sink: &HttpSink) {
    let chain = h.chain();
    assert!(chain.issues.is_empty(), "chain issues: {:?}", chain.issues);
    let mut prev = String::new();
    for e in &chain.events {
        assert_eq!(e.event.chain.prev_event_hash, prev, "link of {}", e.location);
        prev = e.event.chain.event_hash.clone();
    }
    let delivered: Vec<String> = sink
        .requests()
        .iter()
        .map(|r| PasEvent::from_json(&r.body).unwrap().chain.event_hash)
        .collect();
    let mut first_seen = Vec::new();
    for d in delivered {
        if !first_seen.contains(&d) {
            first_seen.push(d);
        }
    }
    let in_chain: Vec<String> = chain
        .events
        .iter()
        .map(|e| e.event.chain.event_hash.clone())
        .collect();
    assert_eq!(first_seen, in_chain, "the sink got the chain's events in chain order");
}

#[test]
fn overwrite_with_pas_replaces_every_partition_and_keeps_the_dataset_whole() {
    let sink = HttpSink::start(Behaviour::ok());
    let mut h = backfill(&sink);
    let before = parquets(&h);
    std::fs::rename(h.checkpoint_path(), h.path("checkpoint.moved")).unwrap();

    overwrite(&mut h, NEW_INGESTED_AT);
    let log = h.run_expect(0);
    h.assert_verifies();
    assert_eq!(h.committed(), h.ranges(), "{log}");
    let after = parquets(&h);
    assert_eq!(after, fresh_parquets(&h), "replaced files equal a fresh run's");
    assert!(after.iter().zip(&before).all(|(a, b)| a != b), "every file changed");
    let chain = h.chain();
    assert_eq!(chain.events.len(), 2 * h.ranges().len(), "one replacement event per partition");
    assert_chain_linear_and_delivered(&h, &sink);
    assert_eq!(h.checkpoint_ledger(), Some(h.ledger_end));

    // A second overwrite, with the checkpoint in place this time.
    overwrite(&mut h, NEWER_INGESTED_AT);
    h.run_expect(0);
    h.assert_verifies();
    assert_eq!(parquets(&h), fresh_parquets(&h));
    assert_eq!(h.chain().events.len(), 3 * h.ranges().len());
    assert_chain_linear_and_delivered(&h, &sink);
}
