//! The Delta log of a backfill with `spec.storage.tableFormat: delta`, written by the operator
//! with the worker's own Delta code ([`bronze::delta`]) as it sequences the committed partitions:
//! shaped like the catalog step, `recorded()` (what the log has, read from its last checkpoint on)
//! and `append(manifest)` (the next partition's add, in ledger order, idempotent), plus
//! `catch_up(through)` (manifests committed before, or lost by a crash between a manifest and
//! its log entry, added in ledger order). Nothing is kept on local disk: the log itself says what
//! is missing.

use bronze::delta::{Appended, DeltaError, DeltaTable, catch_up};
use bronze::partition::LedgerRange;
use bronze::publish::{DatasetLayout, Manifest};
use bronze::store::Location;

use crate::crd::{BronzeBackfillSpec, TableFormat};
use crate::job::worker_config;

/// One backfill's Delta table.
pub struct DeltaLog {
    table: DeltaTable,
    location: Location,
}

impl DeltaLog {
    /// The log of `spec` (`None` unless `spec.storage.tableFormat` is `delta`), on the same
    /// storage and dataset folder as its worker Jobs.
    pub fn open(spec: &BronzeBackfillSpec) -> Result<Option<DeltaLog>, String> {
        if spec.storage.table_format != TableFormat::Delta {
            return Ok(None);
        }
        // INGESTED_AT is not part of the log; any valid value gives the same storage config.
        let config = worker_config(spec, "1970-01-01T00:00:00Z").map_err(|e| e.to_string())?;
        let location =
            bronze::pipeline::open_output_location(&config).map_err(|e| e.to_string())?;
        Ok(Some(Self::at(
            location,
            &DatasetLayout::from_config(&config),
        )))
    }

    pub fn at(location: Location, layout: &DatasetLayout) -> DeltaLog {
        DeltaLog {
            table: DeltaTable::new(&location, layout),
            location,
        }
    }

    /// The partitions the log adds, in ledger order, with their logged sizes.
    pub async fn recorded(&self) -> Result<Vec<(LedgerRange, u64)>, String> {
        let files = self.table.recorded().await.map_err(|e| e.to_string())?;
        Ok(files
            .into_iter()
            .map(|(r, f)| (r, u64::try_from(f.size).unwrap_or_default()))
            .collect())
    }

    /// Adds `manifest`'s partition (a no-op when the log already adds its file). `replaced`: the
    /// partition's files may have been replaced (`era.allowOverwrite`), so a logged add of
    /// another manifest is superseded rather than refused. Errors: [`DeltaError::Conflict`] (the
    /// log adds this path with another size: retrying cannot help), transient ones
    /// ([`DeltaError::is_transient`]: retry at the next reconcile), a corrupt log.
    pub async fn append(
        &self,
        manifest: &Manifest,
        replaced: bool,
    ) -> Result<Appended, DeltaError> {
        self.table.append(manifest, replaced).await
    }

    /// Adds, in ledger order, every committed partition ending at or before `through` (the
    /// checkpoint; nothing with `None`) that the log is missing. Returns how many were added.
    pub async fn catch_up(&self, through: Option<u32>) -> Result<usize, DeltaError> {
        // Nothing is sequenced yet: nothing to catch up (a later partition is added in order).
        let Some(through) = through else {
            return Ok(0);
        };
        catch_up(&self.table, &self.location, Some(through.saturating_add(1))).await
    }

    /// The table's URI, for logs and status.
    pub fn describe(&self) -> String {
        self.table.uri()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// The adapter over a real local store: committed manifests missing from the log are added
    /// in ledger order by `catch_up`, `append` is idempotent, `recorded` reads them back.
    #[tokio::test]
    async fn catch_up_then_append_in_ledger_order_once() {
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
        let log = DeltaLog::at(location, &layout);
        assert_eq!(log.recorded().await.unwrap(), vec![]);
        assert_eq!(log.catch_up(None).await.unwrap(), 0);
        // Only committed partitions up to the checkpoint (5); 6-7 has no manifest.
        assert_eq!(log.catch_up(Some(5)).await.unwrap(), 2);
        assert_eq!(log.catch_up(Some(5)).await.unwrap(), 0);
        assert_eq!(
            log.recorded().await.unwrap(),
            vec![(LedgerRange::new(2, 3), 100), (LedgerRange::new(4, 5), 100)]
        );
        let m = manifest(6, 7, 100);
        assert_eq!(
            log.append(&m, false).await.unwrap(),
            Appended::Added { version: 3 }
        );
        assert_eq!(
            log.append(&m, false).await.unwrap(),
            Appended::AlreadyThere { version: 3 }
        );
        // A different size for a logged path is refused unless it is a replacement.
        assert!(log.append(&manifest(6, 7, 101), false).await.is_err());
        assert_eq!(
            log.append(&manifest(6, 7, 101), true).await.unwrap(),
            Appended::Added { version: 4 }
        );
    }
}
