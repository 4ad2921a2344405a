//! The partition grid: a pure function of the config.
//!
//! Partition `k` covers `[ledger_start + k·size, ledger_start + (k+1)·size - 1]`, clipped to the
//! ledgers that have close meta (`>= 2`: the genesis ledger 1 was never closed, so no datastore
//! holds it) and to `ledger_end`. Anchoring on `ledger_start` keeps datasets written by the
//! original implementation (which did the same) continuable, and the grid never depends on where
//! a previous run stopped.

use std::fmt;
use std::str::FromStr;

/// The first ledger that has a `LedgerCloseMeta`.
pub const FIRST_LEDGER_WITH_META: u32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LedgerRange {
    pub start: u32,
    pub end: u32,
}

impl LedgerRange {
    pub fn new(start: u32, end: u32) -> Self {
        debug_assert!(start <= end);
        Self { start, end }
    }

    pub fn len(&self) -> u64 {
        u64::from(self.end) - u64::from(self.start) + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn contains(&self, seq: u32) -> bool {
        (self.start..=self.end).contains(&seq)
    }
}

impl fmt::Display for LedgerRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

/// Why a text is not a `START-END` ledger range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("expected START-END, got {0:?}")]
    Shape(String),
    #[error("{text:?}: {part} {value:?} is not a ledger sequence (decimal digits, 1..=4294967295)")]
    NotASequence {
        text: String,
        part: &'static str,
        value: String,
    },
    #[error("{text:?}: need 1 <= START <= END")]
    Order { text: String },
}

/// `START-END`, inclusive, as [`Display`](fmt::Display) writes it: the one syntax for ranges on
/// the command line (`worker -range`), in partition folders (`range=S-E`), PAS outbox names
/// (`S-E.json`) and the operator's status. Both ends are plain decimal digits (no sign, no
/// spaces) and `1 <= START <= END` (ledger 0 does not exist).
impl FromStr for LedgerRange {
    type Err = RangeError;

    fn from_str(text: &str) -> Result<Self, RangeError> {
        let (start, end) = text
            .split_once('-')
            .ok_or_else(|| RangeError::Shape(text.into()))?;
        let sequence = |part: &'static str, value: &str| {
            value
                .bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| value.parse::<u32>().ok())
                .flatten()
                .ok_or_else(|| RangeError::NotASequence {
                    text: text.into(),
                    part,
                    value: value.into(),
                })
        };
        let (start, end) = (sequence("START", start)?, sequence("END", end)?);
        if start == 0 || start > end {
            return Err(RangeError::Order { text: text.into() });
        }
        Ok(Self::new(start, end))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionGrid {
    anchor: u32,
    size: u32,
    first: u32,
    last: Option<u32>,
}

impl PartitionGrid {
    /// `ledger_end == 0` means unbounded (follow the tip).
    pub fn new(ledger_start: u32, ledger_end: u32, partition_size: u32) -> Self {
        assert!(
            partition_size > 0,
            "partition_size is validated before the grid is built"
        );
        Self {
            anchor: ledger_start,
            size: partition_size,
            first: ledger_start.max(FIRST_LEDGER_WITH_META),
            last: (ledger_end != 0).then_some(ledger_end),
        }
    }

    pub fn first_ledger(&self) -> u32 {
        self.first
    }

    pub fn last_ledger(&self) -> Option<u32> {
        self.last
    }

    /// The grid partition holding `seq`, clipped to the configured range.
    pub fn partition_of(&self, seq: u32) -> Option<LedgerRange> {
        if seq < self.first || self.last.is_some_and(|last| seq > last) {
            return None;
        }
        let offset = u64::from(seq - self.anchor) / u64::from(self.size) * u64::from(self.size);
        let start = (u64::from(self.anchor) + offset) as u32;
        let end = (u64::from(start) + u64::from(self.size) - 1).min(u64::from(u32::MAX)) as u32;
        let start = start.max(self.first);
        let end = self.last.map_or(end, |last| end.min(last));
        Some(LedgerRange::new(start, end))
    }

    /// Whether `seq` is the first ledger of its grid partition.
    pub fn is_partition_start(&self, seq: u32) -> bool {
        self.partition_of(seq).is_some_and(|p| p.start == seq)
    }

    /// The partitions still to do when everything before `next` is committed. When `next` falls
    /// inside a grid partition (a hand-edited checkpoint), the first range is clipped to start at
    /// `next` so the run returns to the grid at the following boundary.
    pub fn partitions_from(&self, next: u32) -> impl Iterator<Item = LedgerRange> + '_ {
        let mut cursor = Some(next.max(self.first));
        std::iter::from_fn(move || {
            let seq = cursor?;
            let p = self.partition_of(seq)?;
            cursor = p.end.checked_add(1);
            Some(LedgerRange::new(seq, p.end))
        })
    }

    /// Number of partitions in a bounded grid from `next` on; `None` when following the tip.
    pub fn remaining(&self, next: u32) -> Option<u64> {
        self.last?;
        Some(self.partitions_from(next).count() as u64)
    }

    /// What puts a run off the grid its dataset is cut on, as warnings for the start of a run:
    /// a `ledger_end` inside a grid partition (the last partition is cut short, and a later run
    /// with a larger end cuts that range differently), and a checkpoint whose last partition is
    /// not a partition of this grid (`ledger_start` or `partition_size` changed). `verify`
    /// reports both later (`grid.off_grid`).
    pub fn off_grid_warnings(&self, checkpoint_partition: Option<LedgerRange>) -> Vec<String> {
        let mut warnings = Vec::new();
        let size = u64::from(self.size);
        if let Some(last) = self.last
            && let Some(p) = self.partition_of(last)
        {
            let full_end = u64::from(p.start) + size - 1;
            let clipped_at_genesis = p.start == self.first && self.first > self.anchor;
            if u64::from(last) < full_end && !clipped_at_genesis {
                warnings.push(format!(
                    "era.ledger_end {last} is not the end of a grid partition: the last partition is {p} ({} ledgers, not {}), and a later run with a larger ledger_end cuts {}-{full_end} instead, which verify reports as off the grid (grid.off_grid); on the grid, ledger_end is {} or {full_end}",
                    p.len(),
                    self.size,
                    p.start,
                    p.start.saturating_sub(1),
                ));
            }
        }
        if let Some(cp) = checkpoint_partition
            && let Some(expected) = self.partition_of(cp.start)
            && expected != cp
        {
            warnings.push(format!(
                "the checkpoint's last partition {cp} is not a partition of the grid of era.ledger_start {} and era.partition_size {} (which has {expected}): the dataset was cut on another grid, and the partitions of this run will not line up with it (verify: grid.off_grid); keep ledger_start = old start + k·partition_size, or use a new version_label",
                self.anchor, self.size,
            ));
        }
        warnings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_back_from_their_display_and_nothing_else() {
        for r in [
            LedgerRange::new(2, 1001),
            LedgerRange::new(7, 7),
            LedgerRange::new(1, u32::MAX),
        ] {
            assert_eq!(r.to_string().parse::<LedgerRange>(), Ok(r));
        }
        let err = |t: &str| t.parse::<LedgerRange>().unwrap_err();
        assert_eq!(err("2"), RangeError::Shape("2".into()));
        for (bad, part) in [
            ("a-5", "START"),
            ("-5", "START"),
            ("+2-5", "START"),
            (" 2-5", "START"),
            ("2-", "END"),
            ("2-5 ", "END"),
            ("2-99999999999", "END"),
            ("2-5-7", "END"),
        ] {
            assert!(
                matches!(err(bad), RangeError::NotASequence { part: p, .. } if p == part),
                "{bad}: {:?}",
                err(bad)
            );
        }
        for bad in ["0-5", "9-3"] {
            assert_eq!(err(bad), RangeError::Order { text: bad.into() });
        }
        assert_eq!(
            err("2-x").to_string(),
            "\"2-x\": END \"x\" is not a ledger sequence (decimal digits, 1..=4294967295)"
        );
    }

    fn ranges(grid: &PartitionGrid, next: u32) -> Vec<(u32, u32)> {
        grid.partitions_from(next)
            .map(|r| (r.start, r.end))
            .collect()
    }

    #[test]
    fn grid_is_anchored_on_ledger_start_and_clipped_to_the_end() {
        let grid = PartitionGrid::new(2, 3001, 1000);
        assert_eq!(
            ranges(&grid, 2),
            vec![(2, 1001), (1002, 2001), (2002, 3001)]
        );
        let grid = PartitionGrid::new(2, 2500, 1000);
        assert_eq!(
            ranges(&grid, 2),
            vec![(2, 1001), (1002, 2001), (2002, 2500)]
        );
    }

    #[test]
    fn genesis_ledger_is_skipped_without_shifting_the_grid() {
        let grid = PartitionGrid::new(1, 30_000, 10_000);
        assert_eq!(
            ranges(&grid, 1),
            vec![(2, 10_000), (10_001, 20_000), (20_001, 30_000)]
        );
    }

    #[test]
    fn resume_on_a_boundary_continues_the_same_grid() {
        let grid = PartitionGrid::new(2, 3001, 1000);
        assert_eq!(ranges(&grid, 1002), vec![(1002, 2001), (2002, 3001)]);
        assert_eq!(ranges(&grid, 3002), vec![]);
    }

    #[test]
    fn resume_inside_a_partition_returns_to_the_grid() {
        let grid = PartitionGrid::new(1, 0, 10_000);
        let mut it = grid.partitions_from(50_000_001 - 500);
        assert_eq!(it.next(), Some(LedgerRange::new(49_999_501, 50_000_000)));
        assert_eq!(it.next(), Some(LedgerRange::new(50_000_001, 50_010_000)));
    }

    #[test]
    fn unbounded_grid_is_endless_and_bounded_grid_counts() {
        let grid = PartitionGrid::new(2, 0, 10);
        assert_eq!(grid.partitions_from(2).take(1000).count(), 1000);
        assert_eq!(grid.remaining(2), None);
        assert_eq!(PartitionGrid::new(2, 101, 10).remaining(2), Some(10));
    }

    #[test]
    fn the_top_of_the_u32_range_does_not_overflow() {
        let grid = PartitionGrid::new(u32::MAX - 15, u32::MAX, 10);
        assert_eq!(
            ranges(&grid, 0),
            vec![(u32::MAX - 15, u32::MAX - 6), (u32::MAX - 5, u32::MAX)]
        );
        let open = PartitionGrid::new(u32::MAX - 3, 0, 10);
        assert_eq!(ranges(&open, 0), vec![(u32::MAX - 3, u32::MAX)]);
    }

    #[test]
    fn ends_and_checkpoints_off_the_grid_are_warned_about() {
        let none: Vec<String> = Vec::new();
        // On the grid: nothing to say (the genesis clip is normal).
        assert_eq!(PartitionGrid::new(2, 101, 10).off_grid_warnings(None), none);
        assert_eq!(PartitionGrid::new(1, 10, 10).off_grid_warnings(None), none);
        assert_eq!(PartitionGrid::new(2, 0, 10).off_grid_warnings(None), none);
        let cp = Some(LedgerRange::new(12, 21));
        assert_eq!(PartitionGrid::new(2, 0, 10).off_grid_warnings(cp), none);
        // LEDGER_END inside a partition.
        let w = PartitionGrid::new(2, 15, 10).off_grid_warnings(None);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("12-15") && w[0].contains("11 or 21"), "{w:?}");
        // That short partition in the checkpoint, under a larger LEDGER_END.
        let short = Some(LedgerRange::new(12, 15));
        assert_eq!(
            PartitionGrid::new(2, 15, 10).off_grid_warnings(short).len(),
            1
        );
        let w = PartitionGrid::new(2, 31, 10).off_grid_warnings(short);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("12-15") && w[0].contains("12-21"), "{w:?}");
        // LEDGER_START moved off the grid of the checkpoint.
        let w = PartitionGrid::new(5, 0, 10).off_grid_warnings(cp);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("era.ledger_start 5"), "{w:?}");
    }

    #[test]
    fn every_ledger_belongs_to_exactly_one_partition() {
        for (start, end, size) in [(2, 997, 7), (1, 500, 1), (5, 5, 3), (10, 99, 100)] {
            let grid = PartitionGrid::new(start, end, size);
            let mut covered = Vec::new();
            for r in grid.partitions_from(start) {
                covered.extend(r.start..=r.end);
                assert_eq!(grid.partition_of(r.start), Some(r));
            }
            let want: Vec<u32> = (start.max(2)..=end).collect();
            assert_eq!(covered, want, "start={start} end={end} size={size}");
        }
    }
}
