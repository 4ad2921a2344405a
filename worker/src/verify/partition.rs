//! Checks of one partition folder in storage: the manifest (present, parseable, sealed, about
//! this folder and dataset), the Parquet file (present, size and sha256 as recorded), then its
//! rows (see [`super::rows`]).

use std::sync::Arc;

use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectMeta, ObjectStoreExt};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::report::Report;
use super::rows::{Expected, RowsSummary, check_rows};
use crate::config::PRIMARY_TABLE;
use crate::hash::checksum_string;
use crate::partition::LedgerRange;
use crate::publish::{DatasetLayout, Expect, Finding, MANIFEST_FILE, Manifest};
use crate::store::Location;

/// A partition whose manifest could be read, with what its rows said.
#[derive(Debug, Clone)]
pub struct VerifiedPartition {
    pub range: LedgerRange,
    pub manifest_key: String,
    pub manifest: Manifest,
    pub parquet_key: String,
    /// Row edges, when the Parquet file could be read.
    pub rows: Option<RowsSummary>,
    /// Whether any problem was found in this partition itself.
    pub damaged: bool,
}

/// The objects found in one `range=S-E/` folder.
#[derive(Debug, Clone)]
pub struct Folder {
    pub range: LedgerRange,
    pub objects: Vec<ObjectMeta>,
}

pub struct Context {
    pub location: Location,
    pub layout: DatasetLayout,
    /// The history archives the rows are compared with (`archive.url`, `verify --archive`).
    pub archive: Option<Arc<crate::archive::ArchiveCheck>>,
    /// `storage.table_format: delta`: files of a partition its manifest no longer commits are
    /// replaced files the log's older versions still add, kept until the log cleanup.
    pub delta: bool,
}

/// Checks one folder, adding findings to a report of its own (merged by the caller).
pub async fn check_folder(
    ctx: Arc<Context>,
    folder: Folder,
) -> (Report, Option<VerifiedPartition>) {
    let mut report = Report::default();
    let range = folder.range;
    let manifest_key = ctx.location.key(&ctx.layout.manifest_key(range));
    let manifest_meta = folder
        .objects
        .iter()
        .find(|m| m.location.filename() == Some(MANIFEST_FILE));
    let problems_before = report.problems();
    let manifest = match manifest_meta {
        Some(_) => read_manifest(&ctx, &manifest_key, range, &mut report).await,
        None => None,
    };
    // The file the manifest commits: `part-S-E.parquet`, or a replacement's own name.
    let parquet_key = match &manifest {
        Some(m) if m.range() == range => ctx.location.key(&ctx.layout.committed_file_key(m)),
        _ => ctx.location.key(&ctx.layout.parquet_key(range)),
    };
    let parquet_name = parquet_key.filename().unwrap_or_default().to_string();
    let mut parquet_meta = None;
    for meta in &folder.objects {
        match meta.location.filename() {
            Some(MANIFEST_FILE) => {}
            Some(name) if name == parquet_name => parquet_meta = Some(meta.clone()),
            Some(name) if DatasetLayout::is_partition_file_name(range, name) => {
                superseded_file(&ctx, range, meta, &mut report)
            }
            _ => report.warning(
                Some(range),
                ctx.location.uri_of(meta.location.as_ref()),
                "storage.unexpected",
                "object that is neither the partition's manifest nor its Parquet file (a leftover temporary file?)",
            ),
        }
    }
    let Some(manifest) = manifest else {
        if manifest_meta.is_none() && parquet_meta.is_some() {
            report.warning(
                Some(range),
                ctx.location.uri_of(parquet_key.as_ref()),
                "manifest.missing",
                "Parquet file without a manifest: an uncommitted leftover (a run stopped before committing it); the next run replaces it",
            );
        }
        return (report, None);
    };
    let mut verified = VerifiedPartition {
        range,
        manifest_key: ctx.location.uri_of(manifest_key.as_ref()),
        manifest,
        parquet_key: ctx.location.uri_of(parquet_key.as_ref()),
        rows: None,
        damaged: false,
    };
    match parquet_meta {
        None => report.problem(
            Some(range),
            ctx.location.uri_of(parquet_key.as_ref()),
            "parquet.missing",
            "the manifest commits this Parquet file but it is not in storage",
        ),
        Some(_) => {
            verified.rows =
                check_parquet(&ctx, range, &parquet_key, &verified.manifest, &mut report).await;
        }
    }
    verified.damaged = report.problems() > problems_before;
    (report, Some(verified))
}

/// A file of partition `range` its manifest does not commit: in a Delta table, a replaced file
/// the log's older versions still add (deleted by the log cleanup once
/// `delta.deletedFileRetentionDuration` has passed; `verify` of the log checks the log itself);
/// otherwise a leftover that readers listing the folder would read too.
fn superseded_file(ctx: &Context, range: LedgerRange, meta: &ObjectMeta, report: &mut Report) {
    if ctx.delta {
        return;
    }
    report.warning(
        Some(range),
        ctx.location.uri_of(meta.location.as_ref()),
        "storage.superseded",
        "a Parquet file of this partition that its manifest does not commit (replaced while the dataset was a Delta table?); readers that list the folder read it too",
    );
}

async fn read_manifest(
    ctx: &Context,
    key: &ObjectPath,
    range: LedgerRange,
    report: &mut Report,
) -> Option<Manifest> {
    let object = ctx.location.uri_of(key.as_ref());
    let bytes = match get_bytes(ctx, key).await {
        Ok(b) => b,
        Err(e) => {
            report.problem(Some(range), object, "manifest.read", e);
            return None;
        }
    };
    let manifest = match Manifest::from_json(&bytes) {
        Ok(m) => m,
        Err(e) => {
            report.problem(
                Some(range),
                object,
                "manifest.parse",
                format!("not a valid manifest: {e}"),
            );
            return None;
        }
    };
    let seal = Manifest::check_seal(&bytes);
    let l = &ctx.layout;
    let findings = manifest.check(&Expect {
        range,
        network: &l.network,
        era_id: &l.era_id,
        version_label: &l.version_label,
        seal: Some(&seal),
        parquet_size: None,
        prior_hash: None,
        ingested_at: None,
    });
    for finding in findings {
        let (check, detail) = match finding {
            Finding::SealMismatch { recorded, computed } => (
                "manifest.self_checksum",
                format!(
                    "manifest_sha256: expected {computed} (recomputed over the file), found {recorded}"
                ),
            ),
            // Manifests of the original have no seal, and none of our additions either.
            Finding::SealAbsent if manifest.chain.is_some() || manifest.ingested_at.is_some() => (
                "manifest.self_checksum",
                "manifest_sha256 is missing from a manifest written by this copier".to_string(),
            ),
            Finding::Range { found, expected } => (
                "manifest.range",
                format!("expected range {expected} (its folder), found {found}"),
            ),
            Finding::Dataset { found, expected } => (
                "manifest.dataset",
                format!("expected network/era/version {expected}, found {found}"),
            ),
            Finding::NoPrimaryTable => ("manifest.tables", format!("no {PRIMARY_TABLE} table")),
            Finding::FileName { found, expected } => (
                "manifest.tables",
                format!("file: expected {expected}, found {found}"),
            ),
            // The rest is checked against the Parquet file itself (check_parquet), or not at all
            // (a manifest of the original has no chain).
            _ => continue,
        };
        report.problem(Some(range), &object, check, detail);
    }
    Some(manifest)
}

async fn get_bytes(ctx: &Context, key: &ObjectPath) -> Result<bytes::Bytes, String> {
    match ctx.location.store.get(key).await {
        Ok(r) => r.bytes().await,
        Err(e) => Err(e),
    }
    .map_err(|e| format!("cannot read: {e}"))
}

/// Downloads the Parquet file to a temporary file while hashing it, compares size and checksum
/// with the manifest, then checks its rows.
/// `range` is the folder's (the manifest may disagree; that is reported on its own).
async fn check_parquet(
    ctx: &Context,
    range: LedgerRange,
    key: &ObjectPath,
    manifest: &Manifest,
    report: &mut Report,
) -> Option<RowsSummary> {
    let object = ctx.location.uri_of(key.as_ref());
    let (tmp, size, digest) = match download(ctx, key).await {
        Ok(d) => d,
        Err(e) => {
            report.problem(Some(range), object, "parquet.read", e);
            return None;
        }
    };
    if let Some(t) = manifest.primary() {
        if size != t.byte_size {
            report.problem(
                Some(range),
                &object,
                "parquet.size",
                format!(
                    "expected {} bytes (manifest byte_size), found {size}",
                    t.byte_size
                ),
            );
        }
        let found = checksum_string(&digest);
        if found != t.checksum {
            report.problem(
                Some(range),
                &object,
                "parquet.sha256",
                format!("expected {} (manifest checksum), found {found}", t.checksum),
            );
        }
    }
    let expected = Expected {
        range,
        network: ctx.layout.network.clone(),
        era_id: ctx.layout.era_id.clone(),
        version_label: ctx.layout.version_label.clone(),
        ingested_at_millis: manifest
            .ingested_at
            .as_deref()
            .and_then(crate::time::rfc3339_to_millis),
        collect_headers: ctx.archive.is_some(),
    };
    let path = tmp.path().to_path_buf();
    let mut summary = tokio::task::spawn_blocking(move || check_rows(&path, &expected))
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    drop(tmp);
    if let Some(archive) = &ctx.archive {
        let headers = std::mem::take(&mut summary.headers);
        check_archive(archive, range, &object, &headers, report).await;
    }
    for (check, detail) in &summary.findings {
        report.problem(Some(range), &object, check, detail.clone());
    }
    if let Some(t) = manifest.primary()
        && t.row_count != summary.rows
    {
        report.problem(
            Some(range),
            &object,
            "parquet.row_count",
            format!(
                "expected {} rows (manifest row_count), found {}",
                t.row_count, summary.rows
            ),
        );
    }
    if let Some(chain) = &manifest.chain {
        for (field, recorded, found) in [
            (
                "previous_ledger_hash",
                &chain.previous_ledger_hash,
                &summary.first_previous_hash,
            ),
            (
                "first_ledger_hash",
                &chain.first_ledger_hash,
                &summary.first_hash,
            ),
            (
                "last_ledger_hash",
                &chain.last_ledger_hash,
                &summary.last_hash,
            ),
        ] {
            if let Some(found) = found
                && !crate::hash::same_hash(found, recorded)
            {
                report.problem(
                    Some(range),
                    manifest_key_of(ctx, range),
                    "manifest.chain",
                    format!("chain.{field}: the rows say {found}, the manifest {recorded}"),
                );
            }
        }
    }
    Some(summary)
}

/// Compares the partition's rows with the history archive: each disagreement is a problem
/// naming the ledger, the partition and the archive file; ledgers the archive has not published
/// yet are a warning.
async fn check_archive(
    archive: &crate::archive::ArchiveCheck,
    range: LedgerRange,
    object: &str,
    headers: &[crate::archive::HeaderEntry],
    report: &mut Report,
) {
    let files = match archive.partition_files(range).await {
        Ok(files) => files,
        Err(e) => {
            let code = match e {
                crate::archive::ArchiveError::Trust { .. } => "archive.trusted",
                _ => "archive.read",
            };
            report.problem(Some(range), object, code, e.to_string());
            return;
        }
    };
    let url = archive.url_of_files();
    for (ledger, path, difference) in crate::archive::disagreements(&files, headers) {
        report.problem(
            Some(range),
            object,
            "archive.disagree",
            format!("ledger {ledger} (partition {range}) disagrees with the history archive {url} ({path}): {difference}"),
        );
    }
    if let Some(from) = files.unanchored_from {
        report.warning(
            Some(range),
            object,
            "archive.unpublished",
            format!(
                "ledgers {from}-{} are beyond the archive's newest checkpoint: not checked",
                range.end
            ),
        );
    }
}

fn manifest_key_of(ctx: &Context, range: LedgerRange) -> String {
    ctx.location
        .uri_of(ctx.location.key(&ctx.layout.manifest_key(range)).as_ref())
}

async fn download(
    ctx: &Context,
    key: &ObjectPath,
) -> Result<(tempfile::NamedTempFile, u64, [u8; 32]), String> {
    let tmp = tempfile::NamedTempFile::new()
        .map_err(|e| format!("cannot create a temporary file: {e}"))?;
    let std_file = tmp
        .reopen()
        .map_err(|e| format!("cannot open a temporary file: {e}"))?;
    let mut file = tokio::fs::File::from_std(std_file);
    let mut stream = ctx
        .location
        .store
        .get(key)
        .await
        .map_err(|e| format!("cannot read: {e}"))?
        .into_stream();
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| format!("download failed: {e}"))?;
        hasher.update(&chunk);
        size += chunk.len() as u64;
        file.write_all(&chunk)
            .await
            .map_err(|e| format!("cannot write a temporary file: {e}"))?;
    }
    file.flush()
        .await
        .map_err(|e| format!("cannot write a temporary file: {e}"))?;
    Ok((tmp, size, hasher.finalize().into()))
}
