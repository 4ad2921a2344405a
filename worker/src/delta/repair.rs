//! Repair and backfill of the log from the manifests: every committed partition (a
//! `_manifest.json`) missing from the log is added, in ledger order. This covers a crash between
//! a manifest and its log entry, and turning `storage.table_format: delta` on for a dataset that
//! already has partitions. Partitions already logged are skipped, so nothing is added twice.

use futures::StreamExt;
use object_store::ObjectStoreExt;

use super::table::{DeltaError, DeltaTable};
use crate::partition::LedgerRange;
use crate::publish::{DatasetLayout, Manifest};
use crate::store::Location;

/// Partitions whose manifest and footer are read ahead of the commits during a catch-up.
const READ_AHEAD: usize = 16;

/// The `range=S-E` folders of the dataset, in ledger order (committed or not).
pub async fn partition_folders(
    location: &Location,
    layout: &DatasetLayout,
) -> Result<Vec<LedgerRange>, DeltaError> {
    let key = location.key(&layout.dataset_dir());
    let listed = location
        .store
        .list_with_delimiter(Some(&key))
        .await
        .map_err(|source| DeltaError::Store {
            key: key.to_string(),
            source,
        })?;
    let mut ranges: Vec<LedgerRange> = listed
        .common_prefixes
        .iter()
        .filter_map(|p| {
            p.filename()
                .and_then(DatasetLayout::parse_partition_dir_name)
        })
        .collect();
    ranges.sort_by_key(|r| (r.start, r.end));
    Ok(ranges)
}

/// The committed manifest of `range`, `None` when the folder has none (uncommitted).
async fn read_manifest(
    location: &Location,
    layout: &DatasetLayout,
    range: LedgerRange,
) -> Result<Option<Manifest>, DeltaError> {
    let key = location.key(&layout.manifest_key(range));
    let bytes = match location.store.get(&key).await {
        Ok(r) => r.bytes().await.map_err(|source| DeltaError::Store {
            key: key.to_string(),
            source,
        })?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(source) => {
            return Err(DeltaError::Store {
                key: key.to_string(),
                source,
            });
        }
    };
    Manifest::from_json(&bytes)
        .map(Some)
        .map_err(|e| DeltaError::Corrupt {
            key: key.to_string(),
            message: format!("cannot parse the manifest: {e}"),
        })
}

/// Adds every committed partition that ends before `before` (all with `None`) and is missing
/// from the log, in ledger order. Returns how many were added.
pub async fn catch_up(
    table: &DeltaTable,
    location: &Location,
    before: Option<u32>,
) -> Result<usize, DeltaError> {
    let layout = table.layout().clone();
    let logged: std::collections::BTreeSet<LedgerRange> = table
        .recorded()
        .await?
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    let missing: Vec<LedgerRange> = partition_folders(location, &layout)
        .await?
        .into_iter()
        .filter(|r| before.is_none_or(|b| r.end < b) && !logged.contains(r))
        .collect();
    // Manifests and footers are read ahead (a backfill of thousands of partitions on a cloud
    // store is dominated by those reads); the commits stay one at a time, in ledger order.
    let prepared = futures::stream::iter(missing.into_iter().map(|range| {
        let layout = &layout;
        async move {
            let Some(manifest) = read_manifest(location, layout, range).await? else {
                return Ok(None);
            };
            if manifest.range() != range {
                return Err(DeltaError::Corrupt {
                    key: layout.manifest_key(range),
                    message: format!("describes partition {}, not {range}", manifest.range()),
                });
            }
            table.prepare(&manifest).await.map(Some)
        }
    }))
    .buffered(READ_AHEAD);
    futures::pin_mut!(prepared);
    let mut added = 0;
    while let Some(next) = prepared.next().await {
        let Some(add) = next? else {
            continue; // an uncommitted folder (no manifest): not part of the table
        };
        let range = add.range;
        table.commit_prepared(add, false).await?;
        tracing::info!(partition = %range, "delta: committed partition missing from the log added");
        added += 1;
    }
    table.ensure_checkpoint().await?;
    Ok(added)
}
