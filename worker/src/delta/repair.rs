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
/// Partitions added per commit by a catch-up: a 6,000-partition backfill is 12 commits, not
/// 6,000 (each commit file a few hundred KiB of adds).
pub const BATCH: usize = 500;

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
pub async fn read_manifest(
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
/// from the log, in ledger order, [`BATCH`] per commit. Returns how many were added.
pub async fn catch_up(
    table: &DeltaTable,
    location: &Location,
    before: Option<u32>,
) -> Result<usize, DeltaError> {
    catch_up_in_batches_of(table, location, before, BATCH).await
}

/// As [`catch_up`], `batch` partitions per commit (`make bench-operator` compares 1, one commit
/// per partition as earlier versions did, with [`BATCH`]).
pub async fn catch_up_in_batches_of(
    table: &DeltaTable,
    location: &Location,
    before: Option<u32>,
    batch_size: usize,
) -> Result<usize, DeltaError> {
    let batch_size = batch_size.max(1);
    // A damaged log is refused before anything is added to it.
    table.check_damage().await?;
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
    // store is dominated by those reads); the adds are committed in ledger order, [`BATCH`] per
    // version.
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
    let mut batch = Vec::with_capacity(batch_size);
    while let Some(next) = prepared.next().await {
        let Some(add) = next? else {
            continue; // an uncommitted folder (no manifest): not part of the table
        };
        batch.push(add);
        if batch.len() == batch_size {
            added += table.commit_batch(&batch).await?;
            batch.clear();
        }
    }
    added += table.commit_batch(&batch).await?;
    if added > 0 {
        tracing::info!(
            added,
            "delta: committed partitions missing from the log added"
        );
    }
    table.ensure_checkpoint().await?;
    Ok(added)
}

/// What [`repair_damaged_log`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repaired {
    /// The damage found, in words.
    pub damage: String,
    /// Where the damaged log now is (`…/_delta_log.damaged-<stamp>`).
    pub moved_to: String,
    /// Partitions the rebuilt log adds, and its latest version.
    pub added: usize,
    pub version: u64,
}

/// `bronze-copier repair-delta-log`: when the log of `config`'s dataset is damaged
/// ([`DeltaTable::check_damage`]), moves every object of `_delta_log/` to
/// `_delta_log.damaged-<stamp>/` (copied, then deleted) and rebuilds the log from the committed
/// manifests ([`catch_up`]: version 0, then [`BATCH`] partitions per version). `None`, with
/// nothing changed, when the log is not damaged. The rebuilt log is a new history: time travel
/// to versions of the damaged log is gone (they stay readable in the moved folder).
pub async fn repair_damaged_log(
    config: &crate::config::Config,
    stamp: &str,
) -> Result<Option<Repaired>, DeltaError> {
    let location =
        crate::pipeline::open_output_location(config).map_err(|e| DeltaError::Corrupt {
            key: "storage".into(),
            message: e.to_string(),
        })?;
    let layout = DatasetLayout::from_config(config);
    let damaged = DeltaTable::new(&location, &layout);
    let damage = match damaged.check_damage().await {
        Ok(()) => return Ok(None),
        Err(DeltaError::Damaged { key, damage, .. }) => format!("{key}: {damage}"),
        Err(e) => return Err(e),
    };
    let dir = layout.dataset_dir();
    let from = location.key(&format!("{dir}/{}/", super::table::LOG_DIR));
    let to_dir = format!("{dir}/{}.damaged-{stamp}", super::table::LOG_DIR);
    let listed: Vec<object_store::ObjectMeta> =
        futures::TryStreamExt::try_collect(location.store.list(Some(&from)))
            .await
            .map_err(|source| DeltaError::Store {
                key: from.to_string(),
                source,
            })?;
    let store_err = |key: &object_store::path::Path| {
        let key = key.to_string();
        move |source| DeltaError::Store { key, source }
    };
    for meta in &listed {
        let Some(name) = meta.location.filename() else {
            continue;
        };
        let target = location.key(&format!("{to_dir}/{name}"));
        location
            .store
            .copy(&meta.location, &target)
            .await
            .map_err(store_err(&target))?;
    }
    // Only once every object is copied: a repair cut short leaves the log as it was.
    for meta in &listed {
        match location.store.delete(&meta.location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(store_err(&meta.location)(e)),
        }
    }
    let rebuilt = DeltaTable::new(&location, &layout);
    let added = catch_up(&rebuilt, &location, None).await?;
    let version = rebuilt.version().await?.unwrap_or(0);
    tracing::warn!(damage = %damage, moved_to = %to_dir, added, version, "delta: the damaged log was moved aside and rebuilt from the manifests");
    Ok(Some(Repaired {
        damage,
        moved_to: location.uri_of(&to_dir),
        added,
        version,
    }))
}
