//! `verify` of the provisional tip (docs/tip.md): the provisional files of the table's latest
//! version follow the last sealed partition with no gap and no overlap, none belongs to a
//! sealed partition, every row passes the checks a sealed file's rows do, and every ledger
//! hash-links to the one before it, the first to the sealed chain's last ledger.

use object_store::ObjectStoreExt;

use super::partition::VerifiedPartition;
use super::report::Report;
use super::rows::{Expected, check_rows};
use crate::delta::DeltaTable;
use crate::publish::DatasetLayout;
use crate::sequence::tip::plan::{TipFile, TipView};

/// Checks the provisional files of `table` (see the module doc).
pub async fn check_provisional(
    table: &DeltaTable,
    layout: &DatasetLayout,
    verified: &[VerifiedPartition],
    report: &mut Report,
) {
    let uri = table.uri();
    let files = match table.files().await {
        Ok(files) => files,
        Err(e) => {
            report.problem(
                None,
                format!("{uri}/_delta_log"),
                "delta.read",
                e.to_string(),
            );
            return;
        }
    };
    let view = TipView::of_files(&files);
    let last_sealed = view
        .sealed
        .last()
        .and_then(|r| verified.iter().find(|p| p.range == *r));
    let mut prev_end = view.sealed.last().map(|r| r.end);
    let mut prev_hash = last_sealed
        .and_then(|p| p.manifest.chain.as_ref())
        .map(|c| c.last_ledger_hash.clone());
    let ingested_at = last_sealed
        .and_then(|p| p.manifest.ingested_at.as_deref())
        .and_then(crate::time::rfc3339_to_millis);
    for tip in &view.provisional {
        let object = format!("{uri}/{}", tip.path());
        if view.is_sealed(tip.partition) {
            report.problem(
                Some(tip.partition),
                &object,
                "tip.sealed_partition",
                format!(
                    "provisional ledgers {} are still in the table beside the sealed partition {}",
                    tip.span, tip.partition
                ),
            );
        }
        if let Some(end) = prev_end
            && tip.span.start != end + 1
        {
            report.problem(
                Some(tip.partition),
                &object,
                "tip.gap",
                format!(
                    "provisional ledgers {} do not follow ledger {end}, the last one before them in the table",
                    tip.span
                ),
            );
        }
        let summary = match check_file(table, layout, *tip, ingested_at).await {
            Ok(summary) => summary,
            Err(message) => {
                report.problem(Some(tip.partition), &object, "tip.read", message);
                prev_end = Some(tip.span.end);
                prev_hash = None;
                continue;
            }
        };
        for (check, detail) in &summary.findings {
            report.problem(Some(tip.partition), &object, check, detail.clone());
        }
        if let (Some(expected), Some(found)) = (&prev_hash, &summary.first_previous_hash)
            && !expected.eq_ignore_ascii_case(found)
        {
            report.problem(
                Some(tip.partition),
                &object,
                "tip.hash_link",
                format!(
                    "ledger {} has previous_ledger_hash {found}, but ledger {} before it in the table has hash {expected}",
                    tip.span.start,
                    tip.span.start - 1
                ),
            );
        }
        prev_end = Some(tip.span.end);
        prev_hash = summary.last_hash.clone();
    }
}

/// Downloads one provisional file and checks its rows as a sealed file's are.
async fn check_file(
    table: &DeltaTable,
    layout: &DatasetLayout,
    tip: TipFile,
    ingested_at_millis: Option<i64>,
) -> Result<super::rows::RowsSummary, String> {
    let key = table.key_of(&tip.path());
    let bytes = table
        .location()
        .store
        .get(&key)
        .await
        .map_err(|e| format!("cannot read: {e}"))?
        .bytes()
        .await
        .map_err(|e| format!("cannot read: {e}"))?;
    let tmp = tempfile::NamedTempFile::new()
        .map_err(|e| format!("cannot create a temporary file: {e}"))?;
    std::fs::write(tmp.path(), &bytes)
        .map_err(|e| format!("cannot write a temporary file: {e}"))?;
    let expected = Expected {
        range: tip.span,
        network: layout.network.clone(),
        era_id: layout.era_id.clone(),
        version_label: layout.version_label.clone(),
        ingested_at_millis,
        collect_headers: false,
    };
    let path = tmp.path().to_path_buf();
    let summary = tokio::task::spawn_blocking(move || check_rows(&path, &expected))
        .await
        .map_err(|e| format!("row check failed: {e}"))?;
    drop(tmp);
    Ok(summary)
}
