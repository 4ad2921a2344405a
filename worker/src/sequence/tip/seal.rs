//! Sealing a partition in the Delta table: its sealed file's add and the removes of its
//! provisional files in one commit ([`plan::seal`]); the recovery of a seal a crash left half
//! done; and dropping old provisional files from storage after the retention.

use futures::TryStreamExt;
use object_store::ObjectStoreExt;

use super::plan::{self, TIP_DIR, TipView};
use crate::delta::table::{PreparedAdd, relative_path};
use crate::delta::{DeltaError, DeltaTable};
use crate::parquet::IntegerTypes;
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
    let path = relative_path(range);
    if let (Some(file), Some(types)) = (prepared.integers, table.integer_types().await?)
        && file != types
    {
        return Err(DeltaError::Types {
            key: table.uri(),
            path,
            file,
            table: types,
        });
    }
    let mut removed = 0;
    let version = table
        .commit_changes(prepared.integers.unwrap_or(IntegerTypes::Signed), |files| {
            let changes =
                plan::seal(files, range, &path, &prepared.add, replace).map_err(|logged| {
                    DeltaError::Conflict {
                        key: table.uri(),
                        version: logged.version,
                        path: path.clone(),
                        logged: logged.size,
                        size: prepared.add.size as u64,
                    }
                })?;
            removed = changes.as_ref().map_or(0, |c| c.removes.len());
            Ok(changes)
        })
        .await?;
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
