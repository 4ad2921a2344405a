//! The provisional tip's decisions, pure (docs/tip.md): where a provisional file lives, what the
//! table already publishes, which ledgers to publish next (a contiguous prefix only, stopping at
//! the first missing ledger), what a seal removes, and which old files storage may drop.

use std::collections::BTreeMap;

use serde_json::json;

use crate::delta::actions::Add;
use crate::delta::table::range_of_path;
use crate::delta::{Changes, LoggedFile};
use crate::partition::LedgerRange;

/// The folder of provisional files, under the table root (`_`: skipped by folder scans).
pub const TIP_DIR: &str = "_tip";

/// A provisional file: ledgers `span` of the open partition `partition`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TipFile {
    pub partition: LedgerRange,
    pub span: LedgerRange,
}

impl TipFile {
    /// `_tip/range=S-E/tip-A-B.parquet`, relative to the table root.
    pub fn path(&self) -> String {
        format!(
            "{TIP_DIR}/range={}/tip-{}-{}.parquet",
            self.partition, self.span.start, self.span.end
        )
    }

    /// The provisional file of a relative path (`None` for any other path).
    pub fn parse(path: &str) -> Option<TipFile> {
        let rest = path.strip_prefix(TIP_DIR)?.strip_prefix("/range=")?;
        let (partition, file) = rest.split_once('/')?;
        let partition: LedgerRange = partition.parse().ok()?;
        let span = file.strip_prefix("tip-")?.strip_suffix(".parquet")?;
        let (a, b) = span.split_once('-')?;
        let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
        let inside = partition.start <= a && a <= b && b <= partition.end;
        inside.then(|| TipFile {
            partition,
            span: LedgerRange::new(a, b),
        })
    }
}

/// The table as the tip sees it: sealed partitions and provisional files, in ledger order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TipView {
    pub sealed: Vec<LedgerRange>,
    pub provisional: Vec<TipFile>,
}

impl TipView {
    /// The view of the table's current files (decoded relative paths).
    pub fn of_paths<'a>(paths: impl IntoIterator<Item = &'a str>) -> Self {
        let mut view = TipView::default();
        for path in paths {
            if let Some(tip) = TipFile::parse(path) {
                view.provisional.push(tip);
            } else if let Some(range) = range_of_path(path) {
                view.sealed.push(range);
            }
        }
        view.sealed.sort_by_key(|r| (r.start, r.end));
        view.provisional.sort_by_key(|t| (t.span.start, t.span.end));
        view
    }

    pub fn of_files(files: &BTreeMap<String, (LoggedFile, Add)>) -> Self {
        Self::of_paths(files.keys().map(String::as_str))
    }

    /// The last sealed ledger (`first_ledger - 1` when nothing is sealed).
    pub fn sealed_through(&self, first_ledger: u32) -> u32 {
        self.sealed
            .iter()
            .map(|r| r.end)
            .max()
            .unwrap_or(0)
            .max(first_ledger.saturating_sub(1))
    }

    /// The last ledger of the published prefix: the sealed partitions, then the provisional
    /// files that continue them without a gap.
    pub fn published_through(&self, first_ledger: u32) -> u32 {
        let mut through = self.sealed_through(first_ledger);
        for tip in &self.provisional {
            if tip.span.start == through.saturating_add(1) {
                through = tip.span.end;
            }
        }
        through
    }

    pub fn is_sealed(&self, partition: LedgerRange) -> bool {
        self.sealed.contains(&partition)
    }

    /// The partitions with provisional files, in ledger order.
    pub fn open_partitions(&self) -> Vec<LedgerRange> {
        let mut out: Vec<LedgerRange> = self.provisional.iter().map(|t| t.partition).collect();
        out.dedup();
        out
    }
}

/// The next span to publish: from `after + 1` (the published prefix's end) through the last of
/// the consecutive ledgers `present` holds from there, inside `partition` (the grid partition
/// of `after + 1`), at most `max_ledgers`. `None` when `after + 1` is not present: the tip
/// stops at the first missing ledger.
pub fn next_span(
    after: u32,
    partition: LedgerRange,
    present: impl IntoIterator<Item = u32>,
    max_ledgers: u32,
) -> Option<LedgerRange> {
    let start = after.checked_add(1)?;
    if !partition.contains(start) {
        return None;
    }
    let mut end = None;
    let mut want = start;
    for seq in present {
        if seq < want {
            continue;
        }
        if seq != want || seq > partition.end || seq - start >= max_ledgers.max(1) {
            break;
        }
        end = Some(seq);
        want = seq + 1;
    }
    end.map(|end| LedgerRange::new(start, end))
}

/// The commit adding provisional file `tip`, unless the table moved on meanwhile: its
/// partition sealed, or the published prefix no longer ending right before it (another writer
/// published those ledgers): then nothing (`None`), and the publisher plans again.
pub fn publish(view: &TipView, first_ledger: u32, tip: TipFile, add: &Add) -> Option<Changes> {
    if view.is_sealed(tip.partition)
        || view.published_through(first_ledger).checked_add(1) != Some(tip.span.start)
    {
        return None;
    }
    Some(Changes {
        removes: Vec::new(),
        adds: vec![add.clone()],
        operation: "WRITE",
        parameters: json!({"mode": "Append", "provisional": tip.span.to_string()}),
    })
}

/// The provisional files of `partition` among the table's files: what the commit sealing it
/// removes ([`crate::sequence::tip::seal_partition`]).
pub fn provisional_of(
    files: &BTreeMap<String, (LoggedFile, Add)>,
    partition: LedgerRange,
) -> Vec<String> {
    files
        .keys()
        .filter(|p| TipFile::parse(p).is_some_and(|t| t.partition == partition))
        .cloned()
        .collect()
}

/// The provisional files storage may drop: under `_tip/`, not in the table any more (`live`:
/// the table's current paths), and last modified more than `retention_ms` before `now_ms` (a
/// reader of an older version inside the retention still finds its files; a file being
/// published right now is younger).
pub fn expired<'a>(
    stored: impl IntoIterator<Item = (&'a str, i64)>,
    live: &BTreeMap<String, (LoggedFile, Add)>,
    now_ms: i64,
    retention_ms: i64,
) -> Vec<String> {
    stored
        .into_iter()
        .filter(|(path, modified)| {
            TipFile::parse(path).is_some()
                && !live.contains_key(*path)
                && now_ms.saturating_sub(*modified) > retention_ms
        })
        .map(|(path, _)| path.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: u32, e: u32) -> LedgerRange {
        LedgerRange::new(s, e)
    }

    fn tip(p: (u32, u32), s: (u32, u32)) -> TipFile {
        TipFile {
            partition: r(p.0, p.1),
            span: r(s.0, s.1),
        }
    }

    fn add(path: &str, size: i64, mtime: i64) -> Add {
        Add {
            path: path.into(),
            partition_values: Default::default(),
            size,
            modification_time: mtime,
            data_change: true,
            stats: None,
        }
    }

    fn files(paths: &[(&str, i64, i64)]) -> BTreeMap<String, (LoggedFile, Add)> {
        paths
            .iter()
            .map(|(p, size, mtime)| {
                let f = LoggedFile {
                    size: *size,
                    modification_time: *mtime,
                    version: 1,
                };
                (p.to_string(), (f, add(p, *size, *mtime)))
            })
            .collect()
    }

    #[test]
    fn tip_paths_round_trip_and_nothing_else_parses() {
        let t = tip((12, 21), (12, 14));
        assert_eq!(t.path(), "_tip/range=12-21/tip-12-14.parquet");
        assert_eq!(TipFile::parse(&t.path()), Some(t));
        for other in [
            "range=12-21/part-12-21.parquet",
            "_tip/range=12-21/tip-10-14.parquet",
            "_tip/range=12-21/tip-15-14.parquet",
            "_tip/range=12-21/tip-20-22.parquet",
            "_tip/range=12-21/part-12-21.parquet",
            "tip/range=12-21/tip-12-14.parquet",
        ] {
            assert_eq!(TipFile::parse(other), None, "{other}");
        }
    }

    #[test]
    fn the_published_prefix_is_sealed_then_contiguous_provisional() {
        let view = TipView::of_paths([
            "range=2-11/part-2-11.parquet",
            "_tip/range=12-21/tip-12-14.parquet",
            "_tip/range=12-21/tip-15-15.parquet",
            "range=22-31/part-22-31.parquet.tmp",
        ]);
        assert_eq!(view.sealed, vec![r(2, 11)]);
        assert_eq!(view.sealed_through(2), 11);
        assert_eq!(view.published_through(2), 15);
        assert_eq!(view.open_partitions(), vec![r(12, 21)]);
        // A file after a gap does not extend the prefix.
        let gap = TipView::of_paths([
            "range=2-11/part-2-11.parquet",
            "_tip/range=12-21/tip-12-14.parquet",
            "_tip/range=12-21/tip-16-17.parquet",
        ]);
        assert_eq!(gap.published_through(2), 14);
        // Nothing at all: the ledger before the grid's first.
        assert_eq!(TipView::default().published_through(2), 1);
    }

    #[test]
    fn the_next_span_stops_at_the_first_missing_ledger_and_the_partition_end() {
        let p = r(12, 21);
        assert_eq!(next_span(11, p, [12, 13, 14, 16], 100), Some(r(12, 14)));
        assert_eq!(next_span(11, p, [13, 14], 100), None, "12 is missing");
        assert_eq!(next_span(14, p, [10, 12, 15, 16, 17], 100), Some(r(15, 17)));
        assert_eq!(next_span(19, p, [20, 21, 22, 23], 100), Some(r(20, 21)));
        assert_eq!(next_span(11, p, 12..=21, 3), Some(r(12, 14)));
        assert_eq!(next_span(21, p, [22], 100), None, "outside the partition");
        assert_eq!(next_span(11, p, [], 100), None);
    }

    #[test]
    fn a_provisional_add_is_dropped_once_its_partition_is_sealed_or_published() {
        let t = tip((12, 21), (15, 16));
        let a = add(&t.path(), 5, 1);
        let open = TipView::of_paths([
            "range=2-11/part-2-11.parquet",
            "_tip/range=12-21/tip-12-14.parquet",
        ]);
        let changes = publish(&open, 2, t, &a).unwrap();
        assert_eq!(changes.adds, vec![a.clone()]);
        assert!(changes.removes.is_empty());
        let sealed = TipView::of_paths([
            "range=2-11/part-2-11.parquet",
            "range=12-21/part-12-21.parquet",
        ]);
        assert_eq!(publish(&sealed, 2, t, &a), None);
        let already = TipView::of_paths([
            "range=2-11/part-2-11.parquet",
            "_tip/range=12-21/tip-12-16.parquet",
        ]);
        assert_eq!(publish(&already, 2, t, &a), None);
    }

    #[test]
    fn a_seal_removes_exactly_its_partitions_provisional_files() {
        let table = files(&[
            ("range=2-11/part-2-11.parquet", 10, 1),
            ("_tip/range=12-21/tip-12-14.parquet", 3, 1),
            ("_tip/range=12-21/tip-15-21.parquet", 3, 1),
            ("_tip/range=22-31/tip-22-22.parquet", 3, 1),
        ]);
        assert_eq!(
            provisional_of(&table, r(12, 21)),
            vec![
                "_tip/range=12-21/tip-12-14.parquet".to_string(),
                "_tip/range=12-21/tip-15-21.parquet".to_string()
            ]
        );
        assert!(provisional_of(&table, r(2, 11)).is_empty());
    }

    #[test]
    fn only_old_provisional_files_no_longer_in_the_table_expire() {
        let live = files(&[("_tip/range=12-21/tip-15-15.parquet", 3, 1)]);
        let day = 86_400_000;
        let stored = [
            ("_tip/range=2-11/tip-2-5.parquet", 0),
            ("_tip/range=2-11/tip-6-11.parquet", 9 * day),
            ("_tip/range=12-21/tip-15-15.parquet", 0),
            ("range=2-11/part-2-11.parquet", 0),
        ];
        assert_eq!(
            expired(stored, &live, 10 * day, 7 * day),
            vec!["_tip/range=2-11/tip-2-5.parquet".to_string()]
        );
    }
}
