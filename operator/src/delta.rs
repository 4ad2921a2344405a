//! The Delta log of a backfill with `spec.storage.tableFormat: delta`: the library's
//! [`DeltaSink`], the sequencing engine's table log, exactly as the standalone copier uses it.
//! The engine adds each partition right after accepting its manifest, in ledger order; before
//! that, once per sink, [`catch_up`] adds the committed partitions the checkpoint has passed that
//! the log is missing (the key turned on for an existing backfill, a log entry lost by a crash).
//! Nothing is kept on local disk: the log itself says what is missing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bronze::delta::{DeltaError, DeltaSink};

use crate::crd::{BronzeBackfillSpec, TableFormat};
use crate::job::worker_config;

/// The sinks of the backfills, by `namespace/name`, kept while their storage stays the same (so
/// the catch-up runs once per operator process, not at every reconcile).
#[derive(Default)]
pub struct DeltaLogs {
    open: Mutex<HashMap<String, (String, Arc<DeltaSink>)>>,
}

impl DeltaLogs {
    /// The log of `spec` (`None` unless `spec.storage.tableFormat` is `delta`), on the same
    /// storage and dataset folder as its worker Jobs.
    pub fn open(
        &self,
        key: &str,
        spec: &BronzeBackfillSpec,
    ) -> Result<Option<Arc<DeltaSink>>, String> {
        if spec.storage.table_format != TableFormat::Delta {
            return Ok(None);
        }
        let place = serde_json::to_string(&(
            &spec.storage,
            &spec.network,
            &spec.era_id,
            &spec.version_label,
        ))
        .map_err(|e| e.to_string())?;
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, sink)) = open.get(key)
            && *at == place
        {
            return Ok(Some(sink.clone()));
        }
        // INGESTED_AT is not part of the log; any valid value gives the same storage config.
        let config = worker_config(spec, "1970-01-01T00:00:00Z").map_err(|e| e.to_string())?;
        let Some(sink) = DeltaSink::of_config(&config)? else {
            return Ok(None);
        };
        let sink = Arc::new(sink);
        open.insert(key.to_string(), (place, sink.clone()));
        Ok(Some(sink))
    }

    /// The backfill is gone: release its sink.
    pub fn forget(&self, key: &str) {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

/// Adds, in ledger order, every committed partition ending at or before `checkpoint` that the
/// log is missing; once per sink (later partitions are added in order by the engine). Returns
/// how many were added. Without a checkpoint nothing is sequenced yet, so nothing is added.
pub async fn catch_up(sink: &DeltaSink, checkpoint: Option<u32>) -> Result<usize, DeltaError> {
    let Some(through) = checkpoint else {
        return Ok(0);
    };
    if sink.is_caught_up().await {
        return Ok(0);
    }
    sink.catch_up_before(Some(through.saturating_add(1))).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use bronze::delta::DeltaTable;
    use bronze::partition::LedgerRange;
    use bronze::publish::{DatasetLayout, Manifest};

    fn manifest(start: u32, end: u32, size: u64) -> Manifest {
        Manifest::from_json(
            serde_json::json!({
                "partition": {"start": start, "end": end, "era_id": "e", "version": "v1", "network": "testnet"},
                "tables": {"ledgers_lcm_raw": {
                    "file": format!("part-{start}-{end}.parquet"),
                    "checksum": "sha256:00", "row_count": end - start + 1, "byte_size": size
                }},
                "producer": {"name": "bronze-copier", "version": "0.1.0", "git_sha": "x"},
                "created_at": "2026-11-25T18:54:21.246229699Z"
            })
            .to_string()
            .as_bytes(),
        )
        .unwrap()
    }

    fn record(manifest: Manifest, replaced: bool) -> bronze::sequence::PartitionRecord {
        bronze::sequence::PartitionRecord {
            network: "testnet".into(),
            era_id: "e".into(),
            version_label: "v1".into(),
            range: manifest.range(),
            storage_path: String::new(),
            manifest,
            adopted: true,
            replaced,
            overwrite: replaced,
        }
    }

    /// The operator's sink over a real local store: committed manifests the checkpoint has
    /// passed and the log is missing are added in ledger order by `catch_up`, once; the engine's
    /// appends (through `TableLog`) are idempotent; the log reads them back.
    #[tokio::test]
    async fn catch_up_once_then_append_in_ledger_order_once() {
        use bronze::sequence::TableLog;
        let dir = tempfile::tempdir().unwrap();
        let location =
            bronze::store::local("storage.local_dir", dir.path().to_str().unwrap(), true).unwrap();
        let layout = DatasetLayout {
            prefix: "bronze/".into(),
            network: "testnet".into(),
            era_id: "e".into(),
            version_label: "v1".into(),
        };
        for (s, e) in [(2, 3), (4, 5), (6, 7)] {
            let range = LedgerRange::new(s, e);
            let folder = dir.path().join(layout.partition_dir(range));
            std::fs::create_dir_all(&folder).unwrap();
            // Not a real Parquet file: the add is written without min/max statistics.
            std::fs::write(
                folder.join(DatasetLayout::parquet_file_name(range)),
                b"x".repeat(100),
            )
            .unwrap();
            if s != 6 {
                std::fs::write(folder.join("_manifest.json"), manifest(s, e, 100).to_json())
                    .unwrap();
            }
        }
        let table = Arc::new(DeltaTable::new(&location, &layout));
        let sink = DeltaSink::new(table.clone(), location);
        let logged = || async {
            table
                .recorded()
                .await
                .unwrap()
                .into_iter()
                .map(|(r, f)| (r, f.size))
                .collect::<Vec<_>>()
        };
        assert_eq!(logged().await, vec![]);
        assert_eq!(catch_up(&sink, None).await.unwrap(), 0);
        // Only committed partitions up to the checkpoint (5); 6-7 has no manifest.
        assert_eq!(catch_up(&sink, Some(5)).await.unwrap(), 2);
        assert_eq!(catch_up(&sink, Some(5)).await.unwrap(), 0);
        assert_eq!(
            logged().await,
            vec![(LedgerRange::new(2, 3), 100), (LedgerRange::new(4, 5), 100)]
        );
        let m = manifest(6, 7, 100);
        sink.append(&record(m.clone(), false)).await.unwrap();
        sink.append(&record(m, false)).await.unwrap();
        assert_eq!(logged().await.len(), 3, "an append is idempotent");
        // A different size for a logged path is refused (a conflict) unless it is a replacement.
        let refused = sink
            .append(&record(manifest(6, 7, 101), false))
            .await
            .unwrap_err();
        assert!(refused.conflict, "{refused}");
        sink.append(&record(manifest(6, 7, 101), true))
            .await
            .unwrap();
        assert_eq!(logged().await.last(), Some(&(LedgerRange::new(6, 7), 101)));
    }

    /// One sink per backfill while its storage stays the same; a new one when it changes.
    #[test]
    fn sinks_are_kept_per_backfill_and_storage() {
        let dir = tempfile::tempdir().unwrap();
        let logs = DeltaLogs::default();
        let mut spec = crate::fixtures::spec();
        spec.storage.local_dir = Some(dir.path().to_str().unwrap().into());
        assert!(
            logs.open("ns/b", &spec).unwrap().is_none(),
            "off by default"
        );
        spec.storage.table_format = TableFormat::Delta;
        let a = logs.open("ns/b", &spec).unwrap().unwrap();
        let again = logs.open("ns/b", &spec).unwrap().unwrap();
        assert!(Arc::ptr_eq(&a, &again));
        spec.storage.prefix = "elsewhere/".into();
        let moved = logs.open("ns/b", &spec).unwrap().unwrap();
        assert!(!Arc::ptr_eq(&a, &moved));
        logs.forget("ns/b");
        assert!(!Arc::ptr_eq(
            &moved,
            &logs.open("ns/b", &spec).unwrap().unwrap()
        ));
    }
}
