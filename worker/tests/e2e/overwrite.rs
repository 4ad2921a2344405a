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

/// Every file a run writes (`out/`, `state/`, `pas-backup/`), path → bytes.
fn outputs(h: &Harness) -> BTreeMap<PathBuf, Vec<u8>> {
    ["out", "state", "pas-backup"]
        .iter()
        .flat_map(|d| {
            snapshot(&h.path(d))
                .into_iter()
                .map(move |(p, b)| (Path::new(d).join(p), b))
        })
        .collect()
}

/// Asserts that the run's outputs are `before`, naming what changed.
fn assert_unchanged(h: &Harness, before: &BTreeMap<PathBuf, Vec<u8>>) {
    let now = outputs(h);
    let changed: Vec<&PathBuf> = before
        .keys()
        .chain(now.keys())
        .filter(|p| before.get(*p) != now.get(*p))
        .collect();
    assert!(
        changed.is_empty(),
        "a refused overwrite changed {changed:?}"
    );
}

/// Every file under `dir`, relative path → bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.map(|e| e.unwrap()) {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(
                    p.strip_prefix(root).unwrap().into(),
                    std::fs::read(&p).unwrap(),
                );
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
        assert_eq!(
            e.event.chain.prev_event_hash, prev,
            "link of {}",
            e.location
        );
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
    assert_eq!(
        first_seen, in_chain,
        "the sink got the chain's events in chain order"
    );
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
    assert_eq!(
        after,
        fresh_parquets(&h),
        "replaced files equal a fresh run's"
    );
    assert!(
        after.iter().zip(&before).all(|(a, b)| a != b),
        "every file changed"
    );
    let chain = h.chain();
    assert_eq!(
        chain.events.len(),
        2 * h.ranges().len(),
        "one replacement event per partition"
    );
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

#[test]
fn an_overwrite_that_is_refused_changes_nothing() {
    let sink = HttpSink::start(Behaviour::ok());
    let mut h = backfill(&sink);
    // A committed partition at the end of the range that belongs to another dataset: the
    // overwrite must refuse before replacing the partitions in front of it.
    let last = *h.ranges().last().unwrap();
    let manifest = h.manifest_path(last.0, last.1);
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replace("\"network\": \"testnet\"", "\"network\": \"futurenet\""),
    )
    .unwrap();
    let before = outputs(&h);

    overwrite(&mut h, NEW_INGESTED_AT);
    let log = h.run_expect(4);
    assert!(log.contains("belongs to futurenet/pre_p23/v1"), "{log}");
    assert_unchanged(&h, &before);
}

#[test]
fn a_strict_overwrite_with_a_refusing_receiver_changes_nothing() {
    let sink = HttpSink::start(Behaviour::custom(|_| bronze_testkit::Reply::status(503)));
    // Lenient backfill while the receiver is down: the events wait in the outbox.
    let mut h = Harness::testnet(30).partition_size(10).pas(&format!(
        "  endpoint: \"{}/v1/events\"\n  timeout_ms: 300\n",
        sink.url()
    ));
    h.run_expect(0);
    let before = outputs(&h);

    overwrite(&mut h, NEW_INGESTED_AT);
    h.pas = Some(format!(
        "  endpoint: \"{}/v1/events\"\n  timeout_ms: 300\n  strict: true\n",
        sink.url()
    ));
    let out = h.run();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_unchanged(&h, &before);

    // Once the receiver is back, the same overwrite goes through.
    sink.set_behaviour(Behaviour::ok());
    h.run_expect(0);
    h.assert_verifies();
    assert_eq!(parquets(&h), fresh_parquets(&h));
    assert_chain_linear_and_delivered(&h, &sink);
}

#[test]
fn overwrite_with_a_checkpoint_rewrites_the_whole_range_and_keeps_the_checkpoint_forward() {
    let sink = HttpSink::start(Behaviour::ok());
    let mut h = backfill(&sink);
    overwrite(&mut h, NEW_INGESTED_AT);
    let log = h.run_expect(0);
    assert!(log.contains("regardless of the checkpoint"), "{log}");
    assert!(
        log.contains("replaced=3"),
        "the summary counts the replacements:\n{log}"
    );
    h.assert_verifies();
    assert_eq!(parquets(&h), fresh_parquets(&h));
    let cp = h.checkpoint().unwrap();
    assert_eq!(cp["last_committed_ledger"], h.ledger_end);
    let last = *h.ranges().last().unwrap();
    let m = crate::harness::manifest_json(&h.partition_dir(last.0, last.1));
    assert_eq!(
        cp["last_committed_partition"]["checksum"],
        m["tables"]["ledgers_lcm_raw"]["checksum"]
    );
    assert_eq!(cp["ingested_at"], "2026-02-01T00:00:00.000Z");

    // Same settings again: every rebuilt file is identical, nothing is replaced.
    let events = h.chain().events.len();
    let log = h.run_expect(0);
    assert!(log.contains("replaced=0"), "{log}");
    assert_eq!(h.chain().events.len(), events);
    h.assert_verifies();
}

#[test]
fn a_rerun_with_other_settings_adopts_and_says_what_differs() {
    let mut h = Harness::testnet(30).partition_size(10);
    h.run_expect(0);
    let before = parquets(&h);
    std::fs::remove_dir_all(h.state_dir()).unwrap();
    h.env.push(("STORAGE_COMPRESSION".into(), "snappy".into()));
    h.env
        .push(("INGESTED_AT".into(), "2020-01-01T00:00:00Z".into()));
    let log = h.run_expect(0);
    assert_eq!(parquets(&h), before, "adopted, not rewritten");
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("written with other settings"))
        .collect();
    assert_eq!(warnings.len(), 3, "{log}");
    for w in &warnings {
        assert!(w.contains("WARN"), "{w}");
        assert!(
            w.contains("compression: committed zstd, configured snappy"),
            "{w}"
        );
        assert!(
            w.contains("ingested_at: committed 2025-01-15T10:00:00.000Z, configured 2020-01-01T00:00:00.000Z"),
            "{w}"
        );
    }
    assert!(log.contains("adopted_with_other_settings=3"), "{log}");
    h.assert_verifies();
}

#[test]
fn overwrite_keeps_the_catalog_in_step() {
    let pg = bronze_testkit::Postgres::start();
    let dsn = pg.create_database("overwrite");
    let sink = HttpSink::start(Behaviour::ok());
    let mut h = Harness::testnet(30)
        .partition_size(10)
        .pas(&format!("  endpoint: \"{}/v1/events\"\n", sink.url()))
        .yaml(&crate::catalog::catalog_yaml(&dsn, true));
    h.run_expect(0);
    overwrite(&mut h, NEW_INGESTED_AT);
    // Only the middle partition: its successor's prev_hash must follow it.
    h.ledger_start = 12;
    h.ledger_end = 21;
    h.run_expect(0);
    h.ledger_start = 2;
    h.ledger_end = 31;
    h.era_lines.clear();
    let out = h.assert_verifies();
    assert!(!String::from_utf8_lossy(&out.stdout).contains("PROBLEM"));
    crate::catalog::assert_catalog_matches_storage(&pg, "overwrite", &h);
    assert_chain_linear_and_delivered(&h, &sink);
    assert_eq!(h.chain().events.len(), 4);
}

/// The operator's outbox (`pas.outbox: storage`, objects next to the data): replacement events
/// are stored as revisions there too, and `verify` (which the operator's verify calls) reads
/// them back.
#[test]
fn overwrite_with_the_object_store_outbox_verifies_clean() {
    let mut h = Harness::testnet(20)
        .partition_size(10)
        .pas("  outbox: storage\n");
    h.run_expect(0);
    overwrite(&mut h, NEW_INGESTED_AT);
    let log = h.run_expect(0);
    assert!(log.contains("replaced=2"), "{log}");
    h.assert_verifies();
    let chain_dir = h.out_dir().join("bronze/_pas/testnet/pre_p23/v1");
    for (s, e) in h.ranges() {
        assert!(chain_dir.join(format!("{s}-{e}.json")).exists());
        assert!(chain_dir.join(format!("{s}-{e}.r1.json")).exists());
    }
    // Without overwrite now, verify still sees one current event per partition.
    h.era_lines.clear();
    h.run_expect(0);
    h.assert_verifies();
}
