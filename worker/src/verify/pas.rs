//! The audit chain against storage: every event's hash recomputed, every link checked, the file
//! in the writer's exact format, an event for every committed partition whose current one (the
//! last in chain order: the partition's first event, or its latest `bronze_partition_replaced`
//! event) describes exactly that partition, and the recorded head and delivery cursor
//! consistent with the events.

use std::collections::{BTreeMap, BTreeSet};

use super::partition::VerifiedPartition;
use super::report::Report;
use crate::partition::LedgerRange;
use crate::pas::{ChainId, Outbox, analyse, reconcile_head};
use crate::publish::DatasetLayout;

/// `committed`: verified partitions; `folders`: every partition folder seen (committed or not,
/// readable or not), so an event is only called orphaned when storage has nothing at all there.
pub async fn check_chain(
    outbox: &dyn Outbox,
    layout: &DatasetLayout,
    committed: &[VerifiedPartition],
    folders: &BTreeSet<LedgerRange>,
    delivery_configured: bool,
    report: &mut Report,
) {
    let chain = ChainId::of_layout(layout);
    let entries = match outbox.load(&chain).await {
        Ok(e) => e,
        Err(e) => {
            report.problem(None, outbox.describe(), "pas.read", e.to_string());
            return;
        }
    };
    let view = analyse(entries);
    for issue in &view.issues {
        report.problem(
            issue.range(),
            issue.location(),
            issue.check(),
            issue.detail(),
        );
    }
    for e in &view.events {
        let canonical = e.event.to_indented_json();
        let bytes = e.bytes.strip_suffix(b"\n").unwrap_or(&e.bytes);
        if bytes != canonical.as_bytes() {
            report.problem(
                Some(e.range),
                &e.location,
                "pas.format",
                "the file is not byte-for-byte the writer's output for its own content (changed whitespace or escaping)",
            );
        }
    }

    let events: BTreeMap<LedgerRange, &crate::pas::StoredEvent> = view.current();
    for p in committed {
        let Some(e) = events.get(&p.range) else {
            report.problem(
                Some(p.range),
                outbox.location_of(&chain, p.range),
                "pas.missing",
                "committed partition has no PAS event",
            );
            continue;
        };
        let want = p.manifest.primary();
        let have = e.event.primary();
        let path = layout.storage_path(p.range);
        let mut diffs = Vec::new();
        match (want, have) {
            (Some(w), Some(h)) => {
                if w.checksum != h.checksum {
                    diffs.push(format!(
                        "checksum: expected {} (manifest), found {}",
                        w.checksum, h.checksum
                    ));
                }
                if w.row_count as i64 != h.row_count {
                    diffs.push(format!(
                        "row_count: expected {} (manifest), found {}",
                        w.row_count, h.row_count
                    ));
                }
                if w.byte_size as i64 != h.byte_size {
                    diffs.push(format!(
                        "byte_size: expected {} (manifest), found {}",
                        w.byte_size, h.byte_size
                    ));
                }
                if h.storage_path != path {
                    diffs.push(format!(
                        "storage_path: expected {path}, found {}",
                        h.storage_path
                    ));
                }
            }
            (Some(_), None) => diffs.push("the event has no ledgers_lcm_raw table".into()),
            (None, _) => {}
        }
        for d in diffs {
            report.problem(Some(p.range), &e.location, "pas.mismatch", d);
        }
    }
    let committed_ranges: BTreeSet<LedgerRange> = committed.iter().map(|p| p.range).collect();
    for (range, e) in &events {
        if !committed_ranges.contains(range) && !folders.contains(range) {
            report.problem(
                Some(*range),
                &e.location,
                "pas.orphan",
                "PAS event for a partition that is not in storage",
            );
        }
    }

    match outbox.recorded_head(&chain).await {
        Err(e) => report.problem(None, outbox.describe(), "pas.head", e.to_string()),
        Ok(recorded) => match reconcile_head(&view, recorded.as_deref()) {
            Err(conflict) => report.problem(None, outbox.describe(), "pas.head", conflict.to_string()),
            Ok(head) if recorded.as_deref() != Some(head.event_hash.as_str()) && recorded.is_some() => {
                report.warning(
                    None,
                    outbox.describe(),
                    "pas.head",
                    format!(
                        "the recorded head lags the last event by one ({}; an interrupted run); the next start repairs it",
                        head.event_hash
                    ),
                )
            }
            Ok(_) => {}
        },
    }
    if delivery_configured {
        match outbox.delivered(&chain).await {
            Ok(d) => {
                let done = d.map_or(0, |d| view.delivered_prefix(&d.event_hash, d.ledger_end));
                let pending = view.events.len() - done;
                if pending > 0 {
                    report.warning(
                        None,
                        outbox.describe(),
                        "pas.delivery",
                        format!("{pending} event(s) not delivered to pas.endpoint yet; the copier re-sends them at its next start"),
                    );
                }
            }
            Err(e) => report.problem(None, outbox.describe(), "pas.delivery", e.to_string()),
        }
    }
}
