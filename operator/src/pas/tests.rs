//! The operator's PAS chain against real components: a datastore generated on local disk,
//! partitions committed by the worker's own `run_range` (what a Job runs), the operator's storage
//! reader and sequencer, the real object-store outbox on local disk, an in-process HTTP sink as
//! the PAS endpoint, and `bronze::verify` (what `bronze-copier verify` runs) as the judge.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bronze::partition::LedgerRange;
use bronze::pas::{ObjectStoreOutbox, Outbox, PasEvent};
use bronze::publish::DatasetLayout;
use bronze_testkit::{Behaviour, HttpSink};
use serde_json::json;

use super::*;
use crate::crd::BronzeBackfillSpec;
use crate::plan::Sequenced;
use crate::sequencer::{DatasetStore, SequenceStart, sequence};
use crate::storage::{ObjectStorageFactory, StorageFactory};

const INGESTED_AT: &str = "2025-01-15T10:00:00Z";
/// Ledgers 2..=41: four partitions of ten.
const LEDGERS: u32 = 40;

fn r(start: u32, end: u32) -> LedgerRange {
    LedgerRange::new(start, end)
}

const PARTITIONS: [(u32, u32); 4] = [(2, 11), (12, 21), (22, 31), (32, 41)];

use crate::fixtures::committed_local_backfill;

/// A backfill whose partitions are all committed by the worker, as its Jobs would.
struct Backfill {
    _dir: tempfile::TempDir,
    output: PathBuf,
    spec: BronzeBackfillSpec,
}

impl Backfill {
    async fn committed(endpoint: Option<&str>, strict: bool) -> Backfill {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("out");
        let spec = committed_local_backfill(
            dir.path(),
            "audit",
            LEDGERS,
            INGESTED_AT,
            json!({"pas": {"enabled": true, "endpoint": endpoint, "strict": strict}}),
        )
        .await;
        Backfill {
            _dir: dir,
            output,
            spec,
        }
    }

    /// The operator's PAS config, with quick delivery retries.
    fn config(&self) -> bronze::config::Config {
        let mut config = pas_config(&self.spec).unwrap();
        config.perf.retry_attempts = 2;
        config.perf.retry_backoff_ms = 10;
        config.pas.timeout_ms = 2_000;
        config
    }

    fn pas(&self) -> PasOutboxLog {
        PasOutboxLog::new(self.config()).unwrap()
    }

    fn dataset(&self) -> Arc<dyn DatasetStore> {
        ObjectStorageFactory::default()
            .dataset("ns/audit", &self.spec)
            .unwrap()
    }

    fn chain_dir(&self) -> PathBuf {
        self.output.join("bronze/_pas/pubnet/audit/v1")
    }

    fn event(&self, range: (u32, u32)) -> PasEvent {
        let path = self
            .chain_dir()
            .join(format!("{}-{}.json", range.0, range.1));
        PasEvent::from_json(&std::fs::read(path).unwrap()).unwrap()
    }

    fn event_bytes(&self) -> Vec<Vec<u8>> {
        PARTITIONS
            .iter()
            .map(|(s, e)| std::fs::read(self.chain_dir().join(format!("{s}-{e}.json"))).unwrap())
            .collect()
    }

    /// One reconcile's sequencing.
    async fn sequence(&self, pas: &dyn PasLog, start: SequenceStart, steps: usize) -> Sequenced {
        sequence(
            &self.spec,
            INGESTED_AT,
            start,
            self.dataset().as_ref(),
            Some(pas),
            None,
            steps,
        )
        .await
    }

    /// What `bronze-copier verify` reports for the operator's output.
    async fn verify(&self, with_endpoint: bool) -> bronze::verify::Report {
        let mut config = self.config();
        if !with_endpoint {
            config.pas.endpoint.clear();
        }
        bronze::verify::verify(&config).await.unwrap()
    }
}

fn after(seq: &Sequenced) -> SequenceStart {
    SequenceStart {
        checkpoint: seq.checkpoint.clone(),
        chain_head: seq.chain_head.clone(),
        event_count: seq.event_count,
    }
}

/// Waits until the sink has accepted `n` events (2xx), and returns their bodies in order.
async fn accepted(sink: &HttpSink, n: usize) -> Vec<serde_json::Value> {
    for _ in 0..400 {
        let ok: Vec<_> = sink
            .requests()
            .into_iter()
            .filter(|r| r.method == "POST")
            .collect();
        if ok.len() >= n {
            return ok.iter().map(|r| r.json()).collect();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "the sink did not get {n} events: {:?}",
        sink.requests().len()
    );
}

/// Waits until the PAS log has nothing left to deliver.
async fn delivered(pas: &PasOutboxLog) {
    for _ in 0..400 {
        if pas.undelivered() == Some(0) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{:?} events still undelivered", pas.undelivered());
}

fn ids_in_order(bodies: &[serde_json::Value]) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for b in bodies {
        let id = b["event_id"].as_str().unwrap().to_string();
        if ids.last() != Some(&id) {
            ids.push(id);
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operators_chain_passes_verify_and_reaches_the_endpoint_in_order() {
    let sink = HttpSink::start(Behaviour::ok());
    let b = Backfill::committed(Some(&sink.url()), false).await;
    let pas = b.pas();
    // Two reconciles: three partitions, then the last.
    let first = b.sequence(&pas, SequenceStart::default(), 3).await;
    assert_eq!(first.newly, [r(2, 11), r(12, 21), r(22, 31)]);
    assert_eq!(first.fault, None);
    let second = b.sequence(&pas, after(&first), 3).await;
    assert_eq!(second.newly, [r(32, 41)]);
    assert_eq!(
        second.checkpoint.as_ref().unwrap().last_committed_ledger,
        41
    );
    assert_eq!(second.event_count, 4);
    assert!(
        second.outbox.as_ref().unwrap().ends_with("bronze/_pas"),
        "{:?}",
        second.outbox
    );

    // status.pas.chainHead is the hash of the last event stored; each event links to the one
    // before, in the writer's exact format.
    let events: Vec<PasEvent> = PARTITIONS.iter().map(|p| b.event(*p)).collect();
    assert_eq!(
        second.chain_head.as_deref(),
        Some(events[3].chain.event_hash.as_str())
    );
    let mut prev = String::new();
    for e in &events {
        assert_eq!(e.chain.prev_event_hash, prev);
        assert_eq!(e.compute_hash(), e.chain.event_hash);
        assert_eq!(e.version, "1.1");
        prev = e.chain.event_hash.clone();
    }

    // Delivered in chain order, each with its id as the idempotency key, body = the event.
    let bodies = accepted(&sink, 4).await;
    let ids: Vec<String> = events.iter().map(|e| e.event_id.clone()).collect();
    assert_eq!(ids_in_order(&bodies), ids);
    for request in sink.requests() {
        let body = PasEvent::from_json(&request.body).unwrap();
        assert_eq!(
            request.header("Idempotency-Key"),
            Some(body.event_id.as_str())
        );
        assert_eq!(body.compute_hash(), body.chain.event_hash);
    }

    // `bronze-copier verify` with the same config: data, links, chain, head and delivery.
    delivered(&pas).await; // the cursor is written after the last 2xx
    let report = b.verify(true).await;
    assert!(report.is_clean(), "{:#?}", report.findings);
    assert_eq!(report.warnings(), 0, "{:#?}", report.findings);
    assert_eq!(report.partitions, 4);
    pas.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_operator_without_status_adopts_the_same_chain() {
    let b = Backfill::committed(None, false).await;
    let first = b.sequence(&b.pas(), SequenceStart::default(), 10).await;
    assert_eq!(first.event_count, 4);
    let before = b.event_bytes();
    // A new process (nothing in memory) and the status lost: the chain is rebuilt from
    // storage by adoption, nothing is written again.
    let again = b.sequence(&b.pas(), SequenceStart::default(), 10).await;
    assert_eq!(again.fault, None);
    assert_eq!(again.chain_head, first.chain_head);
    assert_eq!(again.checkpoint, first.checkpoint);
    assert_eq!(again.event_count, 4);
    assert_eq!(b.event_bytes(), before, "events are never rewritten");
    // A status that fell behind (the status write of a reconcile failed) catches up the same way.
    let partial = b.sequence(&b.pas(), SequenceStart::default(), 2).await;
    let rest = b.sequence(&b.pas(), after(&partial), 10).await;
    assert_eq!(rest.chain_head, first.chain_head);
    // `bronze-operator verify` (the spec as the cluster has it).
    let report = verify(&b.spec).await.unwrap();
    assert!(report.is_clean(), "{:#?}", report.findings);
    assert_eq!(report.partitions, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_operators_never_fork_the_chain() {
    let b = Backfill::committed(None, false).await;
    let (a, rival) = (b.pas(), b.pas());
    let first = b.sequence(&a, SequenceStart::default(), 1).await;
    // The rival opens its stream now: a one-event chain in its memory.
    let opened = b.sequence(&rival, after(&first), 0).await;
    assert_eq!(opened.fault, None);
    // `a` goes on with two partitions.
    let ahead = b.sequence(&a, after(&first), 2).await;
    assert_eq!(ahead.newly, [r(12, 21), r(22, 31)]);
    // The rival, with an old copy of the status, reaches the second partition: its conditional
    // create finds a's event, identical in substance, and adopts it.
    let behind = b.sequence(&rival, after(&first), 1).await;
    assert_eq!(behind.fault, None, "{:?}", behind.fault);
    assert_eq!(behind.newly, [r(12, 21)]);
    assert_eq!(
        behind.chain_head.as_deref(),
        Some(b.event((12, 21)).chain.event_hash.as_str())
    );
    // Given the newer status, the rival (its memory one event behind) re-reads the outbox and
    // appends the last partition on a's head.
    let last = b.sequence(&rival, after(&ahead), 10).await;
    assert_eq!(last.fault, None, "{:?}", last.fault);
    assert_eq!(last.newly, [r(32, 41)]);
    assert_eq!(
        b.event((32, 41)).chain.prev_event_hash,
        ahead.chain_head.clone().unwrap()
    );
    // And `a` with that status has nothing to do and agrees.
    let done = b.sequence(&a, after(&last), 10).await;
    assert_eq!((done.fault, done.chain_head), (None, last.chain_head));
    let report = b.verify(false).await;
    assert!(report.is_clean(), "{:#?}", report.findings);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_different_event_in_place_stops_the_backfill_with_audit_conflict() {
    let b = Backfill::committed(None, false).await;
    let pas = b.pas();
    let first = b.sequence(&pas, SequenceStart::default(), 1).await;
    // Another writer stored an event for the second partition, on the right head but for
    // other data (a different Parquet checksum).
    let outbox = ObjectStoreOutbox::new(
        bronze::pipeline::open_output_location(&b.config()).unwrap(),
        "bronze/",
    );
    let layout = DatasetLayout::from_config(&b.config());
    let committed = b.dataset().committed(r(12, 21)).await.unwrap().unwrap();
    let mut other = committed.manifest.clone();
    other.tables.values_mut().next().unwrap().checksum = format!("sha256:{}", "0".repeat(64));
    let forged = PasEvent::for_partition(
        &bronze::pas::ChainId::of_layout(&layout),
        &other,
        &layout.storage_path(r(12, 21)),
        first.chain_head.as_deref().unwrap(),
        chrono::Utc::now(),
    );
    outbox.create(&forged, 0).await.unwrap();

    let next = b.sequence(&pas, after(&first), 10).await;
    let fault = next.fault.expect("a conflict");
    assert_eq!((fault.range, fault.reason), (r(12, 21), "AuditConflict"));
    assert!(fault.message.contains("checksum"), "{}", fault.message);
    assert_eq!(
        next.checkpoint, first.checkpoint,
        "the checkpoint stays put"
    );
    assert_eq!(next.chain_head, first.chain_head);
    // The stored event is never replaced.
    assert_eq!(b.event((12, 21)), forged);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_delivery_loses_nothing_lenient_or_strict() {
    // Lenient: sequencing goes on while the endpoint fails; events wait in the outbox.
    let sink = HttpSink::start(Behaviour::Status(503));
    let b = Backfill::committed(Some(&sink.url()), false).await;
    let pas = b.pas();
    let done = b.sequence(&pas, SequenceStart::default(), 10).await;
    assert_eq!(done.checkpoint.as_ref().unwrap().last_committed_ledger, 41);
    assert!(
        done.undelivered.is_some_and(|n| n > 0),
        "{:?}",
        done.undelivered
    );
    // The operator stops before anything got through; the next one re-sends everything.
    sink.wait_for_requests(1, Duration::from_secs(10));
    pas.close().await;
    sink.set_behaviour(Behaviour::ok());
    sink.clear_requests();
    let restarted = b.pas();
    let again = b.sequence(&restarted, after(&done), 10).await;
    assert!(again.newly.is_empty() && again.fault.is_none() && again.trouble.is_none());
    let bodies = accepted(&sink, 4).await;
    let ids: Vec<String> = PARTITIONS.iter().map(|p| b.event(*p).event_id).collect();
    assert_eq!(ids_in_order(&bodies), ids);
    delivered(&restarted).await;
    let report = b.verify(true).await;
    assert_eq!(report.warnings(), 0, "{:#?}", report.findings);
    restarted.close().await;

    // Strict: the checkpoint waits for the endpoint; the event is already stored.
    let sink = HttpSink::start(Behaviour::Status(503));
    let b = Backfill::committed(Some(&sink.url()), true).await;
    let pas = b.pas();
    let blocked = b.sequence(&pas, SequenceStart::default(), 10).await;
    assert_eq!(blocked.checkpoint, None);
    assert_eq!(blocked.fault, None);
    let trouble = blocked.trouble.expect("delivery trouble");
    assert!(trouble.contains("stored in the outbox"), "{trouble}");
    let stored = b.event((2, 11));
    sink.set_behaviour(Behaviour::ok());
    let resumed = b.sequence(&pas, SequenceStart::default(), 10).await;
    assert_eq!(
        resumed.checkpoint.as_ref().unwrap().last_committed_ledger,
        41
    );
    assert_eq!(
        b.event((2, 11)),
        stored,
        "the stored event was delivered, not remade"
    );
    assert_eq!(resumed.undelivered, Some(0));
    let report = b.verify(true).await;
    assert!(report.is_clean(), "{:#?}", report.findings);
    assert_eq!(report.warnings(), 0, "{:#?}", report.findings);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_manifest_is_caught_by_its_self_checksum() {
    let b = Backfill::committed(None, false).await;
    let manifest = b
        .output
        .join("bronze/pubnet/audit/v1/ledgers_lcm_raw/range=12-21/_manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    // Same JSON, one byte changed where nothing else checks it.
    let changed = text.replacen("\"created_at\": \"2", "\"created_at\": \"1", 1);
    assert_ne!(changed, text);
    std::fs::write(&manifest, changed).unwrap();
    let seq = b.sequence(&b.pas(), SequenceStart::default(), 10).await;
    let fault = seq.fault.expect("verification fails");
    assert_eq!(
        (fault.range, fault.reason),
        (r(12, 21), "VerificationFailed")
    );
    assert!(
        fault.message.contains("manifest_sha256"),
        "{}",
        fault.message
    );
    assert_eq!(seq.checkpoint.unwrap().last_committed_ledger, 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_head_the_outbox_does_not_hold_stops_instead_of_starting_a_new_chain() {
    let b = Backfill::committed(None, false).await;
    let first = b.sequence(&b.pas(), SequenceStart::default(), 2).await;
    assert_eq!(first.event_count, 2);
    // The outbox was wiped (or the status belongs to another bucket): continuing would start a
    // second chain whose first event links to nothing.
    std::fs::remove_dir_all(b.chain_dir()).unwrap();
    let next = b.sequence(&b.pas(), after(&first), 10).await;
    let fault = next.fault.expect("a conflict");
    assert_eq!((fault.range, fault.reason), (r(22, 31), "AuditConflict"));
    assert!(fault.message.contains("outbox's head"), "{}", fault.message);
    assert_eq!(next.checkpoint, first.checkpoint);
    assert!(!b.chain_dir().join("22-31.json").exists());
}

/// The chain opens at its recorded head (two reads). A head record left behind the stored events
/// (the process died between an event and its head record) costs nothing: the restarted
/// operator's conditional create finds the stored event and adopts it, with a status from
/// before it or after it, and the chain stays one chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_record_behind_the_stored_events_is_caught_up_by_adoption() {
    let b = Backfill::committed(None, false).await;
    let head_record = b.chain_dir().join("_chain-head.json");
    let first = b.sequence(&b.pas(), SequenceStart::default(), 2).await;
    let record = std::fs::read_to_string(&head_record).unwrap();
    assert!(
        record.contains("\"ledger_start\": 12") && record.contains("\"revision\": 0"),
        "the head record names its event: {record}"
    );
    let third = b.sequence(&b.pas(), after(&first), 1).await;
    assert_eq!(third.newly, [r(22, 31)]);
    let three = |b: &Backfill| -> Vec<Vec<u8>> {
        PARTITIONS[..3]
            .iter()
            .map(|(s, e)| std::fs::read(b.chain_dir().join(format!("{s}-{e}.json"))).unwrap())
            .collect()
    };
    let stored = three(&b);
    for status in [after(&first), after(&third)] {
        // The head record as it was before the third event (and no fourth event yet).
        std::fs::write(&head_record, &record).unwrap();
        let _ = std::fs::remove_file(b.chain_dir().join("32-41.json"));
        let rest = b.sequence(&b.pas(), status.clone(), 10).await;
        assert_eq!(rest.fault, None, "{:?}", rest.fault);
        assert_eq!(rest.checkpoint.unwrap().last_committed_ledger, 41);
        assert_eq!(rest.event_count, 4);
        assert_eq!(three(&b), stored, "events are never rewritten");
        assert_eq!(
            b.event((32, 41)).chain.prev_event_hash,
            third.chain_head.clone().unwrap()
        );
    }
    let report = b.verify(false).await;
    assert!(report.is_clean(), "{:#?}", report.findings);
}
