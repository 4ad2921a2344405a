//! `bronze-copier verify`: checks everything a backfill wrote, so a single flipped byte anywhere
//! in the output is found and named. Replaces the runbook's maintenance scripts (chain loop,
//! checksum loop), without their faults (lexical ordering, heads file taken for an event).
//!
//! For every `range=S-E/` folder of the dataset: manifest (present, parseable, self-checksum,
//! range, dataset, table), Parquet (present, size, sha256), rows (sequence, hash links, xdr
//! checksum and length, every column re-extracted from `xdr_bytes`); then across partitions:
//! gaps, overlaps, grid, hash links; the checkpoint; the PAS chain; and other records of the
//! dataset ([`external`], the extension point).

mod dataset;
pub mod external;
mod partition;
mod pas;
mod report;
mod rows;
mod tip;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};

pub use partition::VerifiedPartition;
pub use report::{Finding, Report, Severity};
pub use rows::RowsSummary;

use crate::checkpoint::CheckpointStore;
use crate::config::{Config, StorageBackend};
use crate::partition::{LedgerRange, PartitionGrid};
use crate::publish::DatasetLayout;
use crate::store::{self, Location, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot list {key}: {source}")]
    List {
        key: String,
        source: object_store::Error,
    },
}

/// The output location, without creating anything (a missing local directory is an error).
fn open_storage(config: &Config) -> Result<Location, StoreError> {
    match config.storage.backend {
        StorageBackend::Gcs | StorageBackend::S3 => crate::pipeline::open_output_location(config),
        StorageBackend::Local => {
            store::local("storage.local_dir", &config.storage.local_dir, false)
        }
    }
}

/// The history archives of `config` for a verify (nothing unchecked is committed here, so
/// ledgers beyond the newest checkpoint are only a warning); one that cannot be opened is a
/// problem.
async fn open_archive(
    config: &Config,
    report: &mut Report,
) -> Option<Arc<crate::archive::ArchiveCheck>> {
    let mut settings = crate::archive::ArchiveSettings::from_config(config)?;
    settings.follow = false;
    settings.allow_unanchored = true;
    let urls = settings.urls.join(", ");
    match crate::archive::ArchiveCheck::open(settings).await {
        Ok(archive) => Some(Arc::new(archive)),
        Err(e) => {
            report.problem(None, urls, "archive.open", e.to_string());
            None
        }
    }
}

/// Checks the dataset `config` describes and returns every finding.
pub async fn verify(config: &Config) -> Result<Report, VerifyError> {
    let location = open_storage(config)?;
    let layout = DatasetLayout::from_config(config);
    let dataset_key = location.key(&layout.dataset_dir());
    let listed: Vec<object_store::ObjectMeta> = location
        .store
        .list(Some(&dataset_key))
        .try_collect()
        .await
        .map_err(|source| VerifyError::List {
            key: dataset_key.to_string(),
            source,
        })?;

    let mut report = Report::default();
    let mut folders: BTreeMap<LedgerRange, Vec<object_store::ObjectMeta>> = BTreeMap::new();
    for meta in listed {
        // The Delta log (storage.table_format: delta) and the provisional tip's files
        // (docs/tip.md) are checked below, not as partitions.
        if meta
            .location
            .prefix_match(&dataset_key)
            .and_then(|mut p| p.next())
            .is_some_and(|first| {
                first.as_ref() == crate::delta::table::LOG_DIR
                    || first.as_ref() == crate::sequence::tip::TIP_DIR
            })
        {
            continue;
        }
        let parts: Vec<String> = meta
            .location
            .prefix_match(&dataset_key)
            .map(|p| p.map(|part| part.as_ref().to_string()).collect())
            .unwrap_or_default();
        match parts.as_slice() {
            [folder, _file] => match DatasetLayout::parse_partition_dir_name(folder) {
                Some(range) => folders.entry(range).or_default().push(meta),
                None => report.warning(
                    None,
                    location.uri_of(meta.location.as_ref()),
                    "storage.unexpected",
                    "object outside any range=S-E folder",
                ),
            },
            _ => report.warning(
                None,
                location.uri_of(meta.location.as_ref()),
                "storage.unexpected",
                "object outside any range=S-E folder",
            ),
        }
    }
    if folders.is_empty() {
        report.warning(
            None,
            location.uri_of(&layout.dataset_dir()),
            "storage.empty",
            "no partitions found",
        );
    }
    let folder_ranges: BTreeSet<LedgerRange> = folders.keys().copied().collect();

    let archive = open_archive(config, &mut report).await;
    let ctx = Arc::new(partition::Context {
        location: location.clone(),
        layout: layout.clone(),
        archive,
        delta: config.storage.table_format == crate::config::TableFormat::Delta,
    });
    let concurrency = config.perf.max_in_flight_partitions.max(1);
    let results: Vec<(Report, Option<VerifiedPartition>)> =
        futures::stream::iter(folders.into_iter().map(|(range, objects)| {
            partition::check_folder(ctx.clone(), partition::Folder { range, objects })
        }))
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut verified = Vec::new();
    for (r, v) in results {
        report.findings.extend(r.findings);
        verified.extend(v);
    }
    verified.sort_by_key(|p| (p.range.start, p.range.end));
    report.partitions = verified.len();
    report.ledgers = verified.iter().map(|p| p.range.len()).sum();

    let grid = PartitionGrid::new(
        config.era.ledger_start,
        config.era.ledger_end,
        config.era.partition_size.max(1),
    );
    dataset::check_sequence(&verified, &grid, &mut report);

    if config.checkpoint.enabled {
        let store = CheckpointStore::new(config);
        let path = store.path().display().to_string();
        match store.load() {
            Ok(Some(cp)) => dataset::check_checkpoint(&cp, &path, &verified, &mut report),
            Ok(None) => {}
            Err(e) => report.problem(None, path, "checkpoint.read", e.to_string()),
        }
    }

    if config.pas.enabled {
        let outbox = crate::pas::outbox_from_config(config, &location);
        pas::check_chain(
            outbox.as_ref(),
            &layout,
            &verified,
            &folder_ranges,
            !config.pas.endpoint.is_empty(),
            &mut report,
        )
        .await;
    }

    if config.storage.table_format == crate::config::TableFormat::Delta {
        let table = crate::delta::DeltaTable::new(&location, &layout);
        crate::delta::verify::check_log(&table, &verified, &mut report).await;
        tip::check_provisional(&table, &layout, &verified, &mut report).await;
    }

    external::check_external(config, &location, &verified, &mut report).await;
    Ok(report)
}
