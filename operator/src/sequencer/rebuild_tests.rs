//! The engine's replace step driven by the operator (`spec.rebuild`), against real components:
//! partitions committed by the worker's own `run_range` on local disk and sequenced by the
//! operator with the real PAS outbox; a rebuild Job's `run_range(.., Some(id))` with another
//! compression stages its partitions beside the committed ones; [`replace_rebuilt`] checks and
//! swaps them in; `bronze::verify` (what `bronze-copier verify` runs) judges the result.

use std::sync::Arc;

use bronze::partition::LedgerRange;
use bronze::pas::PasEvent;
use serde_json::json;

use super::*;
use crate::crd::{Compression, RebuildPhase, RebuildStatus};
use crate::fixtures::committed_local_backfill;
use crate::pas::{PasOutboxLog, pas_config};
use crate::storage::{ObjectStorageFactory, StorageFactory};

const INGESTED_AT: &str = "2025-01-15T10:00:00Z";

fn r(start: u32, end: u32) -> LedgerRange {
    LedgerRange::new(start, end)
}

fn status_rebuilding(id: &str, range: LedgerRange) -> BronzeBackfillStatus {
    BronzeBackfillStatus {
        rebuild: Some(RebuildStatus {
            id: id.into(),
            ledger_start: range.start,
            ledger_end: range.end,
            phase: RebuildPhase::Running,
            refused: false,
            partitions_done: 0,
            partitions_total: 0,
            partitions_identical: 0,
            done_through: None,
            summary: String::new(),
            message: String::new(),
        }),
        ..Default::default()
    }
}

struct Dataset {
    dir: tempfile::TempDir,
    spec: BronzeBackfillSpec,
    store: Arc<dyn DatasetStore>,
    pas: PasOutboxLog,
}

impl Dataset {
    /// Ledgers 2-41 committed by the worker and sequenced by the operator (four partitions,
    /// zstd, four PAS events).
    async fn sequenced() -> (Dataset, Sequenced) {
        let dir = tempfile::tempdir().unwrap();
        let spec = committed_local_backfill(
            dir.path(),
            "rebuild",
            40,
            INGESTED_AT,
            json!({"pas": {"enabled": true}}),
        )
        .await;
        let store = ObjectStorageFactory::default()
            .dataset("ns/rebuild", &spec)
            .unwrap();
        let pas = PasOutboxLog::new(pas_config(&spec).unwrap()).unwrap();
        let seq = sequence(
            &spec,
            INGESTED_AT,
            SequenceStart::default(),
            store.as_ref(),
            Some(&pas),
            None,
            100,
        )
        .await;
        assert_eq!(seq.event_count, 4);
        let dataset = Dataset {
            dir,
            spec,
            store,
            pas,
        };
        (dataset, seq)
    }

    /// What a rebuild Job runs: the worker over `range` with `compression`, for rebuild `id`.
    async fn rebuild_job(&self, id: &str, range: LedgerRange, compression: Compression) {
        let mut spec = self.spec.clone();
        spec.storage.compression = compression;
        let config = crate::job::worker_config(&spec, INGESTED_AT).unwrap();
        bronze::pipeline::run_range(
            &config,
            range,
            Some(id),
            tokio_util::sync::CancellationToken::new(),
            bronze::pipeline::RunOptions::default(),
        )
        .await
        .expect("the rebuild Job stages its partitions");
    }

    async fn replace(&self, status: &BronzeBackfillStatus, seq: &mut Sequenced) {
        replace_rebuilt(
            &self.spec,
            INGESTED_AT,
            Some(status),
            seq,
            self.store.as_ref(),
            None,
            Some(&self.pas),
            None,
            100,
        )
        .await;
    }

    async fn manifest(&self, range: LedgerRange) -> bronze::publish::Manifest {
        self.store.committed(range).await.unwrap().unwrap().manifest
    }

    async fn compression(&self, range: LedgerRange) -> String {
        self.manifest(range).await.writer.unwrap().compression
    }

    /// The PAS events in the outbox, by file name.
    fn events(&self) -> Vec<(String, PasEvent)> {
        let dir = self.dir.path().join("out/bronze/_pas/pubnet/rebuild/v1");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('_') && n.ends_with(".json"))
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|n| {
                let e = PasEvent::from_json(&std::fs::read(dir.join(&n)).unwrap()).unwrap();
                (n, e)
            })
            .collect()
    }

    async fn verify_problems(&self) -> Vec<String> {
        let report = bronze::verify::verify(&pas_config(&self.spec).unwrap())
            .await
            .unwrap();
        report
            .findings
            .iter()
            .filter(|f| f.severity == bronze::verify::Severity::Problem)
            .map(|f| format!("{f:?}"))
            .collect()
    }
}

#[tokio::test]
async fn a_rebuild_replaces_each_partition_through_the_engine_with_one_replaced_event() {
    let (d, seq) = Dataset::sequenced().await;
    let before_32 = d.manifest(r(32, 41)).await;
    d.rebuild_job("r1", r(12, 31), Compression::Snappy).await;
    // Staged only: nothing committed changed.
    assert_eq!(d.compression(r(12, 21)).await, "zstd");
    assert!(
        d.store
            .rebuilds()
            .unwrap()
            .staged(r(12, 21))
            .await
            .unwrap()
            .is_some()
    );

    let mut now = seq.clone();
    d.replace(&status_rebuilding("r1", r(12, 31)), &mut now)
        .await;
    let rebuilt = now.rebuilt.clone().unwrap();
    assert_eq!(rebuilt.fault, None);
    assert_eq!(rebuilt.done_through, Some(31));
    assert_eq!(rebuilt.replaced, [r(12, 21), r(22, 31)]);
    assert_eq!(rebuilt.identical, 0);
    // The rebuilt partitions carry the new setting, the others the old; rows unchanged.
    for (range, expected) in [
        (r(2, 11), "zstd"),
        (r(12, 21), "snappy"),
        (r(22, 31), "snappy"),
        (r(32, 41), "zstd"),
    ] {
        assert_eq!(d.compression(range).await, expected, "{range}");
        assert_eq!(d.manifest(range).await.primary().unwrap().row_count, 10);
    }
    // The checkpoint did not move; one replaced event per rebuilt partition, chained after
    // the head.
    assert_eq!(now.checkpoint, seq.checkpoint);
    assert_eq!(d.manifest(r(32, 41)).await, before_32);
    assert_eq!(now.event_count, 6);
    let replaced: Vec<(String, PasEvent)> = d
        .events()
        .into_iter()
        .filter(|(_, e)| e.event_type == "bronze_partition_replaced")
        .collect();
    assert_eq!(replaced.len(), 2, "{replaced:?}");
    let mut order: Vec<&PasEvent> = replaced.iter().map(|(_, e)| e).collect();
    order.sort_by_key(|e| e.partition.ledger_start);
    assert_eq!(
        order[0].chain.prev_event_hash,
        seq.chain_head.clone().unwrap()
    );
    assert_eq!(order[1].chain.prev_event_hash, order[0].chain.event_hash);
    assert_eq!(
        now.chain_head.as_deref(),
        Some(order[1].chain.event_hash.as_str())
    );
    assert_eq!(d.verify_problems().await, Vec::<String>::new());
    // Nothing is left beside the partitions, and the same rebuild is not carried out twice.
    assert!(
        d.store
            .rebuilds()
            .unwrap()
            .staged(r(12, 21))
            .await
            .unwrap()
            .is_none()
    );
    let mut again = now.clone();
    d.replace(&status_rebuilding("r1", r(12, 31)), &mut again)
        .await;
    assert_eq!(again.event_count, 6);
    assert!(again.rebuilt.unwrap().replaced.is_empty());

    // An identical rebuild (same settings, same bytes): recorded as such, nothing changes.
    d.rebuild_job("r2", r(12, 21), Compression::Snappy).await;
    let checksum = d
        .manifest(r(12, 21))
        .await
        .primary()
        .unwrap()
        .checksum
        .clone();
    let mut same = now.clone();
    d.replace(&status_rebuilding("r2", r(12, 21)), &mut same)
        .await;
    let rebuilt = same.rebuilt.unwrap();
    assert_eq!((rebuilt.identical, rebuilt.replaced.len()), (1, 0));
    assert_eq!(rebuilt.done_through, Some(21));
    assert_eq!(same.event_count, 6);
    assert_eq!(same.chain_head, now.chain_head);
    assert_eq!(
        d.manifest(r(12, 21)).await.primary().unwrap().checksum,
        checksum
    );
    assert_eq!(d.verify_problems().await, Vec::<String>::new());
}

/// The operator killed after the swap and before the records: the next reconcile finds the new
/// manifest in place, writes the records once (one replaced event) and clears the leftovers.
#[tokio::test]
async fn a_swap_whose_records_were_interrupted_is_recorded_once() {
    let (d, seq) = Dataset::sequenced().await;
    d.rebuild_job("r1", r(22, 31), Compression::Lz4).await;
    let staged = d.store.rebuilds().unwrap();
    let manifest = staged.staged(r(22, 31)).await.unwrap().unwrap().manifest;
    staged.swap(&manifest).await.unwrap(); // then the process died
    let mut now = seq.clone();
    d.replace(&status_rebuilding("r1", r(22, 31)), &mut now)
        .await;
    let rebuilt = now.rebuilt.unwrap();
    assert_eq!(rebuilt.fault, None);
    assert_eq!(rebuilt.done_through, Some(31));
    assert_eq!(now.event_count, 5, "one replaced event");
    assert_eq!(d.compression(r(22, 31)).await, "lz4");
    assert_eq!(d.verify_problems().await, Vec::<String>::new());
    // A lost status: the same replacement presented again adds nothing.
    let mut lost = seq.clone();
    d.rebuild_job("r1", r(22, 31), Compression::Lz4).await;
    d.replace(&status_rebuilding("r1", r(22, 31)), &mut lost)
        .await;
    assert_eq!(lost.event_count, 5);
    assert_eq!(lost.chain_head, now.chain_head);
}

/// A rebuilt partition that does not check (here: a rebuild staged with another
/// `ingested_at`) is refused with the committed partition unchanged and nothing recorded.
#[tokio::test]
async fn a_rebuilt_partition_that_fails_a_check_changes_nothing() {
    let (d, seq) = Dataset::sequenced().await;
    let mut other = d.spec.clone();
    other.storage.compression = Compression::Snappy;
    let config = crate::job::worker_config(&other, "2030-01-01T00:00:00Z").unwrap();
    bronze::pipeline::run_range(
        &config,
        r(12, 21),
        Some("r1"),
        tokio_util::sync::CancellationToken::new(),
        bronze::pipeline::RunOptions::default(),
    )
    .await
    .unwrap();
    let before = d.manifest(r(12, 21)).await;
    let mut now = seq.clone();
    d.replace(&status_rebuilding("r1", r(12, 21)), &mut now)
        .await;
    let rebuilt = now.rebuilt.unwrap();
    let fault = rebuilt.fault.expect("refused");
    assert!(
        fault.contains("12-21") && fault.contains("ingested_at") && fault.contains("unchanged"),
        "{fault}"
    );
    assert_eq!(rebuilt.done_through, None);
    assert_eq!(d.manifest(r(12, 21)).await, before);
    assert_eq!(now.event_count, 4);
    assert_eq!(now.chain_head, seq.chain_head);
}
