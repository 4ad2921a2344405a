//! Checks the catalog against what storage holds: every committed partition (its manifest) has
//! exactly one lineage row with the same checksum, row count and byte size, pointing at the
//! right file; no row describes a partition storage does not have; `prev_hash` links each row to
//! the row before it; each row has a passing quality verdict.
//!
//! [`compare_with_storage`] is the pure comparison; [`verify_against_storage`] reads the rows.

use std::collections::BTreeMap;

use super::client::Catalog;
use super::records::DatasetIdentity;
use crate::partition::LedgerRange;
use crate::publish::Manifest;

/// One lineage row as the verifier sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineageRow {
    pub ledger_start: i64,
    pub ledger_end: i64,
    pub row_count: i64,
    pub byte_size: i64,
    pub checksum: String,
    pub prev_hash: Option<String>,
    pub storage_uri: Option<String>,
    /// `None` when the partition has no quality row.
    pub quality_passed: Option<bool>,
}

/// One finding. `range` is `None` for problems with the catalog as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogProblem {
    pub range: Option<LedgerRange>,
    /// A stable name: `catalog_unreachable`, `dataset_missing`, `lineage_missing`,
    /// `lineage_extra`, `lineage_overlap`, `checksum_mismatch`, `row_count_mismatch`,
    /// `byte_size_mismatch`, `storage_uri_mismatch`, `prev_hash_broken`, `quality_missing`,
    /// `quality_failed`.
    pub check: &'static str,
    pub message: String,
}

impl std::fmt::Display for CatalogProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.range {
            Some(r) => write!(f, "partition {r}: {}: {}", self.check, self.message),
            None => write!(f, "{}: {}", self.check, self.message),
        }
    }
}

fn problem(range: Option<LedgerRange>, check: &'static str, message: String) -> CatalogProblem {
    CatalogProblem {
        range,
        check,
        message,
    }
}

fn row_range(row: &LineageRow) -> Option<LedgerRange> {
    let start = u32::try_from(row.ledger_start).ok()?;
    let end = u32::try_from(row.ledger_end).ok()?;
    (start <= end).then(|| LedgerRange::new(start, end))
}

/// Compares catalog rows with the committed partitions. `manifests` should be every committed
/// partition of the dataset: a row without one is reported as extra. `expected_uri` gives the
/// Parquet URI a partition must be recorded under.
pub fn compare_with_storage(
    rows: &[LineageRow],
    manifests: &[Manifest],
    expected_uri: &dyn Fn(LedgerRange) -> String,
) -> Vec<CatalogProblem> {
    let mut problems = Vec::new();
    let mut by_range: BTreeMap<(i64, i64), &LineageRow> = BTreeMap::new();
    for row in rows {
        by_range.insert((row.ledger_start, row.ledger_end), row);
    }
    let mut stored: BTreeMap<(i64, i64), &Manifest> = BTreeMap::new();
    for m in manifests {
        stored.insert(
            (i64::from(m.partition.start), i64::from(m.partition.end)),
            m,
        );
    }

    for (&(start, end), m) in &stored {
        let range = m.range();
        let Some(row) = by_range.get(&(start, end)) else {
            problems.push(problem(
                Some(range),
                "lineage_missing",
                "committed in storage but has no _meta_lineage row".into(),
            ));
            continue;
        };
        let Some(table) = m.primary() else {
            continue;
        };
        if row.checksum != table.checksum {
            problems.push(problem(
                Some(range),
                "checksum_mismatch",
                format!("catalog {} but manifest {}", row.checksum, table.checksum),
            ));
        }
        if row.row_count != table.row_count as i64 {
            problems.push(problem(
                Some(range),
                "row_count_mismatch",
                format!("catalog {} but manifest {}", row.row_count, table.row_count),
            ));
        }
        if row.byte_size != table.byte_size as i64 {
            problems.push(problem(
                Some(range),
                "byte_size_mismatch",
                format!("catalog {} but manifest {}", row.byte_size, table.byte_size),
            ));
        }
        let want = expected_uri(range);
        if row.storage_uri.as_deref() != Some(want.as_str()) {
            problems.push(problem(
                Some(range),
                "storage_uri_mismatch",
                format!(
                    "catalog points at {} but the file is {want}",
                    row.storage_uri.as_deref().unwrap_or("(null)")
                ),
            ));
        }
        match row.quality_passed {
            None => problems.push(problem(
                Some(range),
                "quality_missing",
                "no _meta_quality row".into(),
            )),
            Some(false) => problems.push(problem(
                Some(range),
                "quality_failed",
                "_meta_quality says the partition failed its checks".into(),
            )),
            Some(true) => {}
        }
    }

    for (&(start, end), row) in &by_range {
        if !stored.contains_key(&(start, end)) {
            problems.push(problem(
                row_range(row),
                "lineage_extra",
                format!("_meta_lineage has ledgers {start}-{end} but storage has no committed partition there"),
            ));
        }
    }

    // Rows in ledger order: overlaps (a shifted grid) and the prev_hash chain.
    let ordered: Vec<&LineageRow> = by_range.values().copied().collect();
    for pair in ordered.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if b.ledger_start <= a.ledger_end {
            problems.push(problem(
                row_range(b),
                "lineage_overlap",
                format!(
                    "overlaps the row for ledgers {}-{}",
                    a.ledger_start, a.ledger_end
                ),
            ));
        }
    }
    let by_end: BTreeMap<i64, &LineageRow> = ordered.iter().map(|r| (r.ledger_end, *r)).collect();
    for row in &ordered {
        if let Some(prev) = by_end.get(&(row.ledger_start - 1))
            && row.prev_hash.as_deref() != Some(prev.checksum.as_str())
        {
            problems.push(problem(
                row_range(row),
                "prev_hash_broken",
                format!(
                    "prev_hash is {} but the partition before ({}-{}) has checksum {}",
                    row.prev_hash.as_deref().unwrap_or("(null)"),
                    prev.ledger_start,
                    prev.ledger_end,
                    prev.checksum
                ),
            ));
        }
    }
    problems.sort_by_key(|p| (p.range.map(|r| (r.start, r.end)), p.check));
    problems
}

/// Reads the dataset's lineage from the catalog at `dsn` (read-only: no migration runs) and
/// compares it with the committed partitions. An unreachable catalog or an unregistered dataset
/// is reported as a problem, not an error.
pub async fn verify_against_storage(
    dsn: &str,
    identity: &DatasetIdentity,
    manifests: &[Manifest],
    expected_uri: &dyn Fn(LedgerRange) -> String,
) -> Vec<CatalogProblem> {
    let catalog = match Catalog::connect_only(dsn).await {
        Ok(c) => c,
        Err(e) => return vec![problem(None, "catalog_unreachable", e.to_string())],
    };
    let id = match catalog.dataset_id(identity).await {
        Ok(Some(id)) => id,
        Ok(None) => {
            return vec![problem(
                None,
                "dataset_missing",
                format!("{identity} is not registered in _meta_datasets"),
            )];
        }
        Err(e) => return vec![problem(None, "catalog_unreachable", e.to_string())],
    };
    match catalog.lineage(id).await {
        Ok(rows) => compare_with_storage(&rows, manifests, expected_uri),
        Err(e) => vec![problem(None, "catalog_unreachable", e.to_string())],
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::PRIMARY_TABLE;
    use crate::publish::{ManifestPartition, ManifestTable, Producer};

    fn manifest(start: u32, end: u32, checksum: &str) -> Manifest {
        Manifest {
            partition: ManifestPartition {
                start,
                end,
                era_id: "e".into(),
                version: "v1".into(),
                network: "testnet".into(),
            },
            tables: BTreeMap::from([(
                PRIMARY_TABLE.to_string(),
                ManifestTable {
                    file: format!("part-{start}-{end}.parquet"),
                    checksum: checksum.into(),
                    row_count: u64::from(end - start + 1),
                    byte_size: 100,
                },
            )]),
            producer: Producer::current(),
            created_at: String::new(),
            chain: None,
            ingested_at: None,
            network_passphrase: None,
            writer: None,
            archive: None,
            manifest_sha256: None,
        }
    }

    fn uri(r: LedgerRange) -> String {
        format!("file:///o/bronze/range={r}/part-{r}.parquet")
    }

    fn row(start: i64, end: i64, checksum: &str, prev: Option<&str>) -> LineageRow {
        let r = LedgerRange::new(start as u32, end as u32);
        LineageRow {
            ledger_start: start,
            ledger_end: end,
            row_count: end - start + 1,
            byte_size: 100,
            checksum: checksum.into(),
            prev_hash: prev.map(str::to_string),
            storage_uri: Some(uri(r)),
            quality_passed: Some(true),
        }
    }

    fn checks(p: &[CatalogProblem]) -> Vec<&'static str> {
        p.iter().map(|p| p.check).collect()
    }

    #[test]
    fn a_consistent_catalog_has_no_problems() {
        let rows = [row(2, 11, "a", None), row(12, 21, "b", Some("a"))];
        let m = [manifest(2, 11, "a"), manifest(12, 21, "b")];
        assert_eq!(compare_with_storage(&rows, &m, &uri), vec![]);
    }

    #[test]
    fn each_kind_of_drift_is_named() {
        let mut wrong = row(12, 21, "x", Some("zzz"));
        wrong.row_count = 3;
        wrong.byte_size = 1;
        wrong.storage_uri = Some("file:///o/range=12-21/part-12-21.parquet".into());
        wrong.quality_passed = None;
        let rows = [row(2, 11, "a", None), wrong, row(40, 49, "q", None)];
        let m = [
            manifest(2, 11, "a"),
            manifest(12, 21, "b"),
            manifest(22, 31, "c"),
        ];
        let p = compare_with_storage(&rows, &m, &uri);
        let c = checks(&p);
        for want in [
            "checksum_mismatch",
            "row_count_mismatch",
            "byte_size_mismatch",
            "storage_uri_mismatch",
            "quality_missing",
            "prev_hash_broken",
            "lineage_missing",
            "lineage_extra",
        ] {
            assert!(c.contains(&want), "{want} in {p:#?}");
        }
        let missing = p.iter().find(|p| p.check == "lineage_missing").unwrap();
        assert_eq!(missing.range, Some(LedgerRange::new(22, 31)));
    }

    #[test]
    fn overlapping_rows_from_a_shifted_grid_are_reported() {
        let rows = [row(2, 11, "a", None), row(8, 17, "b", None)];
        let p = compare_with_storage(&rows, &[manifest(2, 11, "a")], &uri);
        assert!(checks(&p).contains(&"lineage_overlap"), "{p:#?}");
    }
}
