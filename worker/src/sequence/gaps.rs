//! Catalog catch-up (pure): which grid partitions below the head have no catalog rows. The
//! catalog is the only truth about what it holds, so what is missing is derived from it at
//! every sequencing, never kept in a second copy (docs/architecture.md, "One engine").

use std::collections::BTreeMap;

use super::logs::RangeSummary;
use crate::partition::{LedgerRange, PartitionGrid};

/// Recorded catalog ranges with their checksums, by last ledger.
pub type Recorded = BTreeMap<u32, (LedgerRange, String)>;

/// The partition after the one ending at `done_through` (or the first), if the grid has one.
pub fn next_partition(grid: &PartitionGrid, done_through: Option<u32>) -> Option<LedgerRange> {
    match done_through {
        None => grid.partition_of(grid.first_ledger()),
        Some(last) => grid.partition_of(last.checked_add(1)?),
    }
}

/// The grid partitions up to `through` (the head) that have no catalog rows, in ledger order.
pub fn catalog_gaps(
    grid: &PartitionGrid,
    recorded: &Recorded,
    through: Option<u32>,
) -> Vec<LedgerRange> {
    let Some(through) = through else {
        return Vec::new();
    };
    let mut gaps = Vec::new();
    let mut done: Option<u32> = None;
    while let Some(range) = next_partition(grid, done) {
        if range.end > through {
            break;
        }
        if recorded.get(&range.end).map(|(r, _)| *r) != Some(range) {
            gaps.push(range);
        }
        done = Some(range.end);
    }
    gaps
}

/// What a catalog holding exactly the grid partitions up to `through` reports in
/// [`super::CatalogLog::summary`] for `[first ledger, through]`.
pub fn grid_summary(grid: &PartitionGrid, through: u32) -> RangeSummary {
    let mut sum = RangeSummary::default();
    let mut done: Option<u32> = None;
    while let Some(range) = next_partition(grid, done) {
        if range.end > through {
            break;
        }
        sum.count += 1;
        sum.starts += u64::from(range.start);
        sum.ends += u64::from(range.end);
        done = Some(range.end);
    }
    sum
}

/// The last ledger of the longest run of recorded partitions from the grid's start.
pub fn catalog_recorded_through(grid: &PartitionGrid, recorded: &Recorded) -> Option<u32> {
    let mut done: Option<u32> = None;
    while let Some(range) = next_partition(grid, done) {
        if recorded.get(&range.end).map(|(r, _)| *r) != Some(range) {
            break;
        }
        done = Some(range.end);
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(a: u32, b: u32) -> LedgerRange {
        LedgerRange::new(a, b)
    }

    fn rec(ranges: &[(u32, u32)]) -> Recorded {
        ranges
            .iter()
            .map(|&(a, b)| (b, (r(a, b), format!("sha256:{a}"))))
            .collect()
    }

    #[test]
    fn catalog_gaps_are_the_unrecorded_partitions_up_to_the_checkpoint() {
        let g = PartitionGrid::new(2, 101, 10);
        assert_eq!(catalog_gaps(&g, &rec(&[]), None), vec![]);
        assert_eq!(
            catalog_gaps(&g, &rec(&[(2, 11), (22, 31)]), Some(41)),
            vec![r(12, 21), r(32, 41)]
        );
        assert_eq!(
            catalog_recorded_through(&g, &rec(&[(2, 11), (22, 31)])),
            Some(11)
        );
        assert_eq!(catalog_recorded_through(&g, &rec(&[(12, 21)])), None);
        // Rows past the checkpoint (written before a status write was lost) are no gap.
        assert_eq!(
            catalog_gaps(&g, &rec(&[(2, 11), (12, 21), (22, 31)]), Some(21)),
            vec![]
        );
        // A row of another shape is not the grid partition.
        assert_eq!(catalog_gaps(&g, &rec(&[(3, 11)]), Some(11)), vec![r(2, 11)]);
    }

    #[test]
    fn the_grid_summary_counts_and_sums_the_partitions_through_the_head() {
        let g = PartitionGrid::new(2, 101, 10);
        assert_eq!(grid_summary(&g, 1), RangeSummary::default());
        assert_eq!(
            grid_summary(&g, 31),
            RangeSummary {
                count: 3,
                starts: 2 + 12 + 22,
                ends: 11 + 21 + 31
            }
        );
        // The genesis ledger is skipped: the first partition is clipped.
        let g = PartitionGrid::new(1, 0, 10);
        assert_eq!(grid_summary(&g, 10).starts, 2);
    }
}
