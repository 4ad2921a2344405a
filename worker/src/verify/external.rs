//! Checks of records kept outside storage and the PAS outbox: the PostgreSQL catalog
//! (`catalog.postgres_dsn`). `verify` calls [`check_external`] once, after every partition in
//! storage has been checked, with the partitions whose manifest could be read.
//!
//! The catalog must hold one lineage row per committed partition with the manifest's checksum,
//! row count and byte size and the Parquet URI, no row for a partition storage does not have,
//! `prev_hash` links, and a passing quality verdict ([`crate::catalog::verify`]). Each difference
//! is a problem named `catalog.<check>`.

use super::partition::VerifiedPartition;
use super::report::Report;
use crate::catalog::records::DatasetIdentity;
use crate::catalog::verify::verify_against_storage;
use crate::config::Config;
use crate::partition::LedgerRange;
use crate::publish::{DatasetLayout, Manifest};
use crate::store::Location;

/// Compares the catalog (when one is configured) with the verified partitions.
pub async fn check_external(
    config: &Config,
    location: &Location,
    partitions: &[VerifiedPartition],
    report: &mut Report,
) {
    let dsn = config.catalog.postgres_dsn.trim();
    if dsn.is_empty() {
        return;
    }
    let layout = DatasetLayout::from_config(config);
    let manifests: Vec<Manifest> = partitions.iter().map(|p| p.manifest.clone()).collect();
    // The file each manifest commits (a replacement in a Delta table has a name of its own).
    let uris: std::collections::BTreeMap<LedgerRange, String> = manifests
        .iter()
        .map(|m| (m.range(), location.uri_of(&layout.committed_file_key(m))))
        .collect();
    let expected_uri = |range| {
        uris.get(&range)
            .cloned()
            .unwrap_or_else(|| location.uri_of(&layout.parquet_key(range)))
    };
    let identity = DatasetIdentity::from_config(config);
    for problem in verify_against_storage(dsn, &identity, &manifests, &expected_uri).await {
        let object = match problem.range {
            Some(range) => format!("catalog lineage {range}"),
            None => "catalog".to_string(),
        };
        report.problem(
            problem.range,
            object,
            qualified(problem.check),
            problem.message,
        );
    }
}

/// The catalog's check name under the `catalog.` prefix verify's findings use.
fn qualified(check: &'static str) -> &'static str {
    match check {
        "catalog_unreachable" => "catalog.unreachable",
        "dataset_missing" => "catalog.dataset_missing",
        "lineage_missing" => "catalog.lineage_missing",
        "lineage_extra" => "catalog.lineage_extra",
        "lineage_overlap" => "catalog.lineage_overlap",
        "checksum_mismatch" => "catalog.checksum_mismatch",
        "row_count_mismatch" => "catalog.row_count_mismatch",
        "byte_size_mismatch" => "catalog.byte_size_mismatch",
        "storage_uri_mismatch" => "catalog.storage_uri_mismatch",
        "prev_hash_broken" => "catalog.prev_hash_broken",
        "quality_missing" => "catalog.quality_missing",
        "quality_failed" => "catalog.quality_failed",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::qualified;

    #[test]
    fn every_catalog_check_is_reported_under_the_catalog_prefix() {
        let source = include_str!("../catalog/verify.rs");
        let mut names = Vec::new();
        for chunk in source.split("problem(").skip(1) {
            if let Some(name) = chunk.split('"').nth(1)
                && !name.is_empty()
                && name.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            {
                names.push(name.to_string());
            }
        }
        assert!(names.len() >= 5, "found {names:?}");
        for name in names {
            let leaked: &'static str = Box::leak(name.clone().into_boxed_str());
            assert!(
                qualified(leaked).starts_with("catalog."),
                "{name} is not mapped"
            );
        }
    }
}
