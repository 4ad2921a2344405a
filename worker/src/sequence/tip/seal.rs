//! Sealing a partition in the Delta table: its sealed file's add and the removes of its
//! provisional files in one commit ([`plan::seal`]); the recovery of a seal a crash left half
//! done; and dropping old provisional files from storage after the retention.

use futures::TryStreamExt;
use object_store::ObjectStoreExt;

use super::plan::{self, TIP_DIR, TipView};
use crate::delta::Appended;
use crate::delta::table::PreparedAdd;
use crate::delta::{DeltaError, DeltaTable};
use crate::publish::Manifest;

/// What [`seal_partition`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sealed {
    /// The version committed (`None`: the log already had the sealed file and no provisional
    /// file of the partition).
    pub version: Option<u64>,
    /// Provisional files removed.
    pub removed: usize,
}

/// Commits `prepared` (a committed partition's add) and the removes of the partition's
/// provisional files as one version, idempotently; `replace`: the partition was replaced
/// (`era.allow_overwrite`). A file of other integer types than the table's is refused, as
/// [`DeltaTable::append`] does.
pub async fn seal_partition(
    table: &DeltaTable,
    prepared: PreparedAdd,
    replace: bool,
) -> Result<Sealed, DeltaError> {
    let range = prepared.range;
    let (appended, removed) = table
        .commit_partition(prepared, replace, |files| {
            plan::provisional_of(files, range)
        })
        .await?;
    let version = match appended {
        Appended::Added { version } => Some(version),
        Appended::AlreadyThere { .. } => None,
    };
    if let Some(version) = version {
        tracing::info!(partition = %range, version, provisional_removed = removed, "delta: partition sealed in the log");
    }
    Ok(Sealed { version, removed })
}

/// Seals every partition the log still has provisional files of but storage already holds
/// committed (a crash between the manifest and the seal's commit). Run at start, before the
/// log's catch-up adds the other committed partitions. Returns how many were sealed.
pub async fn seal_committed(table: &DeltaTable) -> Result<usize, DeltaError> {
    let view = TipView::of_files(&table.files().await?);
    let mut sealed = 0;
    for partition in view.open_partitions() {
        let key = table
            .location()
            .key(&table.layout().manifest_key(partition));
        let bytes = match table.location().store.get(&key).await {
            Ok(got) => got.bytes().await,
            Err(object_store::Error::NotFound { .. }) => continue,
            Err(e) => Err(e),
        }
        .map_err(|source| DeltaError::Store {
            key: key.to_string(),
            source,
        })?;
        let manifest = Manifest::from_json(&bytes).map_err(|e| DeltaError::Corrupt {
            key: key.to_string(),
            message: e.to_string(),
        })?;
        let prepared = table.prepare(&manifest).await?;
        seal_partition(table, prepared, false).await?;
        sealed += 1;
    }
    Ok(sealed)
}

/// Deletes the provisional files no longer in the table and older than `retention_ms`
/// ([`plan::expired`]). Returns how many were deleted.
pub async fn drop_expired(table: &DeltaTable, retention_ms: i64) -> Result<usize, DeltaError> {
    let live = table.files().await?;
    let root = table.key_of("");
    let prefix = table.key_of(TIP_DIR);
    let store = &table.location().store;
    let listed: Vec<object_store::ObjectMeta> = store
        .list(Some(&prefix))
        .try_collect()
        .await
        .map_err(|source| DeltaError::Store {
            key: prefix.to_string(),
            source,
        })?;
    let root = root.as_ref().trim_end_matches('/');
    let stored: Vec<(String, i64)> = listed
        .iter()
        .filter_map(|m| {
            let relative = m
                .location
                .as_ref()
                .strip_prefix(root)?
                .trim_start_matches('/');
            Some((relative.to_string(), m.last_modified.timestamp_millis()))
        })
        .collect();
    let now = chrono::Utc::now().timestamp_millis();
    let expired = plan::expired(
        stored.iter().map(|(p, t)| (p.as_str(), *t)),
        &live,
        now,
        retention_ms,
    );
    for path in &expired {
        let key = table.key_of(path);
        match store.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(source) => {
                return Err(DeltaError::Store {
                    key: key.to_string(),
                    source,
                });
            }
        }
    }
    if !expired.is_empty() {
        tracing::info!(
            deleted = expired.len(),
            "delta: expired provisional files deleted"
        );
    }
    Ok(expired.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delta::actions::{Action, Add};
    use crate::delta::table::LOG_DIR;
    use crate::partition::LedgerRange;
    use crate::publish::DatasetLayout;
    use serde_json::json;

    fn layout() -> DatasetLayout {
        DatasetLayout {
            prefix: "bronze/".into(),
            network: "testnet".into(),
            era_id: "e".into(),
            version_label: "v1".into(),
        }
    }

    fn table(dir: &std::path::Path) -> DeltaTable {
        let location =
            crate::store::local("storage.local_dir", dir.to_str().unwrap(), true).unwrap();
        DeltaTable::new(&location, &layout())
    }

    /// Commits a provisional file of `span` (of partition 12-21) as the tip does.
    async fn publish(t: &DeltaTable, span: (u32, u32)) -> Option<u64> {
        let tip = plan::TipFile {
            partition: LedgerRange::new(12, 21),
            span: LedgerRange::new(span.0, span.1),
        };
        let add = Add {
            path: tip.path(),
            partition_values: Default::default(),
            size: 5,
            modification_time: 1,
            data_change: true,
            stats: None,
        };
        t.commit_changes(crate::parquet::IntegerTypes::Signed, |files| {
            Ok(plan::publish(&TipView::of_files(files), 12, tip, &add))
        })
        .await
        .unwrap()
    }

    /// Writes partition 12-21's (non-Parquet) file and manifest: committed in storage.
    fn commit_partition(dir: &std::path::Path) -> Manifest {
        let range = LedgerRange::new(12, 21);
        let folder = dir.join(layout().partition_dir(range));
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join(DatasetLayout::parquet_file_name(range)), b"x").unwrap();
        let text = json!({
            "partition": {"start": 12, "end": 21, "era_id": "e", "version": "v1", "network": "testnet"},
            "tables": {"ledgers_lcm_raw": {
                "file": DatasetLayout::parquet_file_name(range),
                "checksum": "sha256:00", "row_count": 10, "byte_size": 1
            }},
            "producer": {"name": "bronze-copier", "version": "0.1.0", "git_sha": "x"},
            "created_at": "2026-11-25T18:54:21.246229699Z"
        })
        .to_string();
        std::fs::write(folder.join("_manifest.json"), &text).unwrap();
        Manifest::from_json(text.as_bytes()).unwrap()
    }

    fn commit_actions(dir: &std::path::Path, version: u64) -> Vec<Action> {
        let path = dir
            .join(layout().dataset_dir())
            .join(LOG_DIR)
            .join(crate::delta::actions::commit_file_name(version));
        crate::delta::actions::decode_commit("c", &std::fs::read(path).unwrap()).unwrap()
    }

    /// A crash after the manifest and before the seal's commit: at start the partition is
    /// sealed over its provisional files in one commit, and a second start does nothing.
    #[tokio::test]
    async fn a_seal_a_crash_left_half_done_is_completed_in_one_commit() {
        let dir = tempfile::tempdir().unwrap();
        let t = table(dir.path());
        assert_eq!(publish(&t, (12, 14)).await, Some(1));
        assert_eq!(publish(&t, (15, 15)).await, Some(2));
        // Not contiguous with the published prefix: refused.
        assert_eq!(publish(&t, (17, 18)).await, None);
        assert_eq!(
            seal_committed(&t).await.unwrap(),
            0,
            "nothing committed yet"
        );
        commit_partition(dir.path());
        let fresh = table(dir.path());
        assert_eq!(seal_committed(&fresh).await.unwrap(), 1);
        let actions = commit_actions(dir.path(), 3);
        let removed: Vec<&str> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Remove(r) => Some(r.path.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            removed,
            vec![
                "_tip/range=12-21/tip-12-14.parquet",
                "_tip/range=12-21/tip-15-15.parquet"
            ]
        );
        assert!(actions.iter().any(
            |a| matches!(a, Action::Add(add) if add.path == "range=12-21/part-12-21.parquet")
        ));
        // A commit that removes files is no blind append.
        assert!(
            actions
                .iter()
                .any(|a| matches!(a, Action::CommitInfo(c) if c["isBlindAppend"] == false))
        );
        let view = TipView::of_files(&fresh.files().await.unwrap());
        assert_eq!(view.sealed, vec![LedgerRange::new(12, 21)]);
        assert!(view.provisional.is_empty());
        assert_eq!(seal_committed(&fresh).await.unwrap(), 0);
        assert_eq!(fresh.version().await.unwrap(), Some(3));
        // And a provisional file of the sealed partition is never added after it.
        assert_eq!(publish(&fresh, (16, 16)).await, None);
    }

    /// The tip and the seal racing from two writers: whatever the order, the table ends with
    /// the sealed file alone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_provisional_commit_racing_the_seal_never_survives_it() {
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let t = table(dir.path());
            publish(&t, (12, 14)).await;
            let manifest = commit_partition(dir.path());
            let (a, b) = (table(dir.path()), table(dir.path()));
            let tip = tokio::spawn(async move {
                for end in 15..=21 {
                    publish(&a, (end, end)).await;
                }
            });
            let sealer = tokio::spawn(async move {
                let prepared = b.prepare(&manifest).await.unwrap();
                seal_partition(&b, prepared, false).await.unwrap()
            });
            tip.await.unwrap();
            sealer.await.unwrap();
            let view = TipView::of_files(&table(dir.path()).files().await.unwrap());
            assert_eq!(view.sealed, vec![LedgerRange::new(12, 21)]);
            assert!(view.provisional.is_empty(), "{view:?}");
        }
    }

    /// Removed provisional files are deleted once past the retention; live ones never.
    #[tokio::test]
    async fn expired_provisional_files_are_deleted_from_storage() {
        let dir = tempfile::tempdir().unwrap();
        let t = table(dir.path());
        let root = dir.path().join(layout().dataset_dir());
        let write = |rel: &str| {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"x").unwrap();
        };
        write("_tip/range=12-21/tip-12-14.parquet");
        write("_tip/range=12-21/tip-15-15.parquet");
        publish(&t, (12, 14)).await;
        // Inside the retention: nothing goes.
        assert_eq!(drop_expired(&t, 3_600_000).await.unwrap(), 0);
        // Past it: only the file the table no longer has.
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(drop_expired(&t, 1).await.unwrap(), 1);
        assert!(root.join("_tip/range=12-21/tip-12-14.parquet").exists());
        assert!(!root.join("_tip/range=12-21/tip-15-15.parquet").exists());
    }
}
