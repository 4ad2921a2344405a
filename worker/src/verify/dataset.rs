//! Checks across partitions (pure): coverage of the ledger range without gaps or overlaps, the
//! partition grid, hash links between neighbours, and the checkpoint.

use super::partition::VerifiedPartition;
use super::report::Report;
use crate::checkpoint::Checkpoint;
use crate::hash::same_hash;
use crate::partition::{LedgerRange, PartitionGrid};

/// `partitions` sorted by range.
pub fn check_sequence(partitions: &[VerifiedPartition], grid: &PartitionGrid, report: &mut Report) {
    if let Some(first) = partitions.first()
        && first.range.start > grid.first_ledger()
    {
        report.warning(
            Some(first.range),
            &first.manifest_key,
            "grid.start",
            format!(
                "the first committed partition starts at ledger {}, era.ledger_start is {}: ledgers {}-{} are not in storage (not copied yet, or copied under another configuration)",
                first.range.start,
                grid.first_ledger(),
                grid.first_ledger(),
                first.range.start - 1
            ),
        );
    }
    for p in partitions {
        if grid.partition_of(p.range.start) != Some(p.range) {
            report.warning(
                Some(p.range),
                &p.manifest_key,
                "grid.off_grid",
                format!(
                    "not on the configured grid (expected {}): a different partition_size or ledger_start, or a hand-edited checkpoint",
                    grid.partition_of(p.range.start)
                        .map_or("no partition".into(), |r| r.to_string())
                ),
            );
        }
    }
    for pair in partitions.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if b.range.start <= a.range.end {
            report.problem(
                Some(b.range),
                &b.manifest_key,
                "grid.overlap",
                format!("overlaps the committed partition {}", a.range),
            );
            continue;
        }
        if b.range.start > a.range.end + 1 {
            let missing = LedgerRange::new(a.range.end + 1, b.range.start - 1);
            report.problem(
                Some(missing),
                &b.manifest_key,
                "grid.gap",
                format!(
                    "ledgers {missing} are in no committed partition (between {} and {})",
                    a.range, b.range
                ),
            );
            continue;
        }
        check_link(a, b, report);
    }
}

/// The first ledger of `b` must link to the last of `a`: in the manifests and in the rows.
fn check_link(a: &VerifiedPartition, b: &VerifiedPartition, report: &mut Report) {
    if let (Some(ca), Some(cb)) = (&a.manifest.chain, &b.manifest.chain)
        && !same_hash(&cb.previous_ledger_hash, &ca.last_ledger_hash)
    {
        report.problem(
            Some(b.range),
            &b.manifest_key,
            "link.manifest",
            format!(
                "chain.previous_ledger_hash: expected {} (last_ledger_hash of {}), found {}",
                ca.last_ledger_hash, a.range, cb.previous_ledger_hash
            ),
        );
    }
    let last_a = a.rows.as_ref().and_then(|r| r.last_hash.as_ref());
    let prev_b = b.rows.as_ref().and_then(|r| r.first_previous_hash.as_ref());
    if let (Some(last_a), Some(prev_b)) = (last_a, prev_b)
        && !same_hash(last_a, prev_b)
    {
        report.problem(
            Some(b.range),
            &b.parquet_key,
            "link.rows",
            format!(
                "first row's previous_ledger_hash: expected {last_a} (last ledger_hash of {}), found {prev_b}",
                a.range
            ),
        );
    }
}

/// The end of the run of partitions that covers the range from the first one without a gap.
pub fn contiguous_end(partitions: &[VerifiedPartition]) -> Option<u32> {
    let mut end = partitions.first()?.range.end;
    for p in &partitions[1..] {
        if p.range.start != end + 1 {
            break;
        }
        end = p.range.end;
    }
    Some(end)
}

/// The checkpoint must not claim more than storage holds.
pub fn check_checkpoint(
    checkpoint: &Checkpoint,
    path: &str,
    partitions: &[VerifiedPartition],
    report: &mut Report,
) {
    let last = checkpoint.last_committed_ledger;
    let covered = contiguous_end(partitions);
    if covered.is_none_or(|end| last > end) {
        report.problem(
            None,
            path,
            "checkpoint.beyond",
            format!(
                "last_committed_ledger is {last}, but the committed partitions {}",
                covered.map_or("are none".to_string(), |e| format!(
                    "cover ledgers only up to {e} without a gap"
                ))
            ),
        );
        return;
    }
    if let Some(cp) = &checkpoint.last_committed_partition {
        match partitions
            .iter()
            .find(|p| p.range == LedgerRange::new(cp.start, cp.end.max(cp.start)))
        {
            None => report.problem(
                None,
                path,
                "checkpoint.partition",
                format!(
                    "last_committed_partition {}-{} is not a committed partition",
                    cp.start, cp.end
                ),
            ),
            Some(p) => {
                let recorded = p.manifest.primary().map(|t| t.checksum.as_str());
                if !cp.checksum.is_empty() && recorded != Some(cp.checksum.as_str()) {
                    report.problem(
                        Some(p.range),
                        path,
                        "checkpoint.partition",
                        format!(
                            "checksum: expected {} (the manifest), found {}",
                            recorded.unwrap_or("none"),
                            cp.checksum
                        ),
                    );
                }
            }
        }
    }
    if !partitions.iter().any(|p| p.range.end == last) && last != 0 {
        report.warning(
            None,
            path,
            "checkpoint.boundary",
            format!("last_committed_ledger {last} is not the end of a committed partition"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::fixtures::hash;

    fn partition(start: u32, end: u32, previous: String, last: String) -> VerifiedPartition {
        let range = LedgerRange::new(start, end);
        let mut manifest = crate::publish::fixtures::manifest(range);
        let chain = manifest.chain.as_mut().unwrap();
        chain.previous_ledger_hash = previous;
        chain.last_ledger_hash = last;
        VerifiedPartition {
            range,
            manifest_key: format!("range={range}/_manifest.json"),
            manifest,
            parquet_key: format!("range={range}/part-{range}.parquet"),
            rows: None,
            damaged: false,
        }
    }

    /// Hex hashes compare in either case, as the sequencers compare them: a manifest whose
    /// `previous_ledger_hash` is its neighbour's `last_ledger_hash` in upper case links.
    #[test]
    fn the_manifest_link_compares_hashes_in_either_case() {
        let grid = PartitionGrid::new(2, 21, 10);
        let a = partition(2, 11, hash(1), hash(0xab));
        let b = partition(12, 21, hash(0xab).to_ascii_uppercase(), hash(0xcd));
        let mut report = Report::default();
        check_sequence(&[a.clone(), b], &grid, &mut report);
        assert!(report.is_clean(), "{:?}", report.findings);

        let broken = partition(12, 21, hash(0xac), hash(0xcd));
        let mut report = Report::default();
        check_sequence(&[a, broken], &grid, &mut report);
        assert_eq!(report.problems(), 1, "{:?}", report.findings);
        assert_eq!(report.findings[0].check, "link.manifest");
    }
}
