//! Reading a chain back from its stored events (pure): order by `ledger_start` (numerically: the
//! runbook's shell loop sorted names lexically, so `100001-…` came before `20001-…`), recompute
//! every hash, check every link, and decide where the chain's head is.
//!
//! A partition replaced with `era.allow_overwrite` keeps its first event and gains a
//! `bronze_partition_replaced` event (revision `n` of its range, `<start>-<end>.r<n>.json`)
//! appended at the head when the replacement happened. Such an event sits in the chain right
//! after the event it links to, so the order is: first events by ledger, each followed by the
//! replacement events chained after it. The current content of a range is its last event in
//! that order ([`ChainView::current`]).

use std::fmt;

use super::event::PasEvent;
use super::outbox::OutboxEntry;
use crate::partition::LedgerRange;

/// A stored event that parsed.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub location: String,
    pub event: PasEvent,
    pub range: LedgerRange,
    /// 0 for a partition's first event, `n` for its `n`-th replacement.
    pub revision: u32,
    pub bytes: Vec<u8>,
}

/// Something wrong in the stored chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainIssue {
    Unreadable {
        location: String,
        message: String,
    },
    /// The file name says one range, the content another.
    NameMismatch {
        location: String,
        name_range: LedgerRange,
        event_range: String,
    },
    HashMismatch {
        location: String,
        range: LedgerRange,
        recorded: String,
        computed: String,
    },
    BrokenLink {
        location: String,
        range: LedgerRange,
        expected_prev: String,
        found_prev: String,
    },
    /// The earliest stored event links to an event that is not stored (deleted backups, or a
    /// chain that started elsewhere).
    StartsMidway {
        location: String,
        range: LedgerRange,
        prev: String,
    },
    Overlap {
        location: String,
        range: LedgerRange,
        other_location: String,
        other_range: LedgerRange,
    },
    /// A first event typed as a replacement, a replacement event typed as a first one, or a
    /// replacement of a range the chain has no earlier event for.
    Revision {
        location: String,
        range: LedgerRange,
        message: String,
    },
}

impl ChainIssue {
    pub fn location(&self) -> &str {
        match self {
            ChainIssue::Unreadable { location, .. }
            | ChainIssue::NameMismatch { location, .. }
            | ChainIssue::HashMismatch { location, .. }
            | ChainIssue::BrokenLink { location, .. }
            | ChainIssue::StartsMidway { location, .. }
            | ChainIssue::Overlap { location, .. }
            | ChainIssue::Revision { location, .. } => location,
        }
    }

    pub fn range(&self) -> Option<LedgerRange> {
        match self {
            ChainIssue::Unreadable { .. } => None,
            ChainIssue::NameMismatch { name_range, .. } => Some(*name_range),
            ChainIssue::HashMismatch { range, .. }
            | ChainIssue::BrokenLink { range, .. }
            | ChainIssue::StartsMidway { range, .. }
            | ChainIssue::Overlap { range, .. }
            | ChainIssue::Revision { range, .. } => Some(*range),
        }
    }

    /// A short name of the check, for reports.
    pub fn check(&self) -> &'static str {
        match self {
            ChainIssue::Unreadable { .. } => "pas.unreadable",
            ChainIssue::NameMismatch { .. } => "pas.name",
            ChainIssue::HashMismatch { .. } => "pas.hash",
            ChainIssue::BrokenLink { .. } => "pas.link",
            ChainIssue::StartsMidway { .. } => "pas.first_prev",
            ChainIssue::Overlap { .. } => "pas.overlap",
            ChainIssue::Revision { .. } => "pas.revision",
        }
    }

    /// What is wrong, without the location.
    pub fn detail(&self) -> String {
        match self {
            ChainIssue::Unreadable { message, .. } => format!("not a PAS v1.1 event: {message}"),
            ChainIssue::NameMismatch {
                name_range,
                event_range,
                ..
            } => format!("file name says range {name_range}, the event says {event_range}"),
            ChainIssue::HashMismatch {
                recorded, computed, ..
            } => format!("event_hash: expected {computed} (recomputed), found {recorded}"),
            ChainIssue::BrokenLink {
                expected_prev,
                found_prev,
                ..
            } => format!(
                "prev_event_hash: expected {:?} (hash of the event before), found {found_prev:?}",
                expected_prev
            ),
            ChainIssue::StartsMidway { prev, .. } => format!(
                "the earliest stored event has prev_event_hash {prev:?}, expected \"\" (earlier events missing?)"
            ),
            ChainIssue::Overlap {
                other_location,
                other_range,
                ..
            } => format!("overlaps the event of {other_range} ({other_location})"),
            ChainIssue::Revision { message, .. } => message.clone(),
        }
    }
}

impl fmt::Display for ChainIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location(), self.detail())
    }
}

/// A chain as stored: events in chain order (see the module docs) and what is wrong with them.
#[derive(Debug, Clone, Default)]
pub struct ChainView {
    pub events: Vec<StoredEvent>,
    pub issues: Vec<ChainIssue>,
}

impl ChainView {
    /// The head: the last event in chain order.
    pub fn last(&self) -> Option<&StoredEvent> {
        self.events.last()
    }

    /// The event that describes each range as it is now: its last event in chain order.
    pub fn current(&self) -> std::collections::BTreeMap<LedgerRange, &StoredEvent> {
        self.events.iter().map(|e| (e.range, e)).collect()
    }

    /// How many events `range` has (its next replacement is that revision).
    pub fn revisions(&self, range: LedgerRange) -> u32 {
        self.events.iter().filter(|e| e.range == range).count() as u32
    }

    /// The last ledger any event covers.
    pub fn ledger_end(&self) -> Option<u32> {
        self.events.iter().map(|e| e.range.end).max()
    }

    /// How many events, from the start of the chain order, count as delivered when `delivered`
    /// is the last event the receiver accepted: up to and including that event; when it is not
    /// stored any more, the first events ending at or before its last ledger (the cursor of
    /// older versions was a ledger).
    pub fn delivered_prefix(&self, delivered_hash: &str, delivered_end: u32) -> usize {
        if delivered_end == 0 && delivered_hash.is_empty() {
            return 0;
        }
        if let Some(i) = self
            .events
            .iter()
            .position(|e| e.event.chain.event_hash == delivered_hash)
        {
            return i + 1;
        }
        self.events
            .iter()
            .take_while(|e| e.revision == 0 && e.range.end <= delivered_end)
            .count()
    }
}

/// Orders and checks the stored events of one chain.
pub fn analyse(entries: Vec<OutboxEntry>) -> ChainView {
    let mut view = ChainView::default();
    let mut stored = Vec::new();
    for e in entries {
        match e.parsed {
            Err(message) => view.issues.push(ChainIssue::Unreadable {
                location: e.location,
                message,
            }),
            Ok(event) => match event.range().filter(|r| *r == e.name_range) {
                Some(range) => stored.push(StoredEvent {
                    location: e.location,
                    event,
                    range,
                    revision: e.revision,
                    bytes: e.bytes,
                }),
                None => view.issues.push(ChainIssue::NameMismatch {
                    location: e.location,
                    name_range: e.name_range,
                    event_range: format!(
                        "{}-{}",
                        event.partition.ledger_start, event.partition.ledger_end
                    ),
                }),
            },
        }
    }
    view.events = chain_order(stored);
    let mut previous: Option<&StoredEvent> = None;
    let mut previous_first: Option<&StoredEvent> = None;
    let mut seen = std::collections::BTreeSet::new();
    for e in &view.events {
        let computed = e.event.compute_hash();
        if computed != e.event.chain.event_hash {
            view.issues.push(ChainIssue::HashMismatch {
                location: e.location.clone(),
                range: e.range,
                recorded: e.event.chain.event_hash.clone(),
                computed,
            });
        }
        if let Some(message) = revision_problem(e, seen.contains(&e.range)) {
            view.issues.push(ChainIssue::Revision {
                location: e.location.clone(),
                range: e.range,
                message,
            });
        }
        let prev = &e.event.chain.prev_event_hash;
        match (previous, previous_first) {
            (None, _) if !prev.is_empty() => view.issues.push(ChainIssue::StartsMidway {
                location: e.location.clone(),
                range: e.range,
                prev: prev.clone(),
            }),
            (None, _) => {}
            (_, Some(p)) if e.revision == 0 && e.range.start <= p.range.end => {
                view.issues.push(ChainIssue::Overlap {
                    location: e.location.clone(),
                    range: e.range,
                    other_location: p.location.clone(),
                    other_range: p.range,
                })
            }
            (Some(p), _) if *prev != p.event.chain.event_hash => {
                view.issues.push(ChainIssue::BrokenLink {
                    location: e.location.clone(),
                    range: e.range,
                    expected_prev: p.event.chain.event_hash.clone(),
                    found_prev: prev.clone(),
                })
            }
            _ => {}
        }
        seen.insert(e.range);
        previous = Some(e);
        if e.revision == 0 {
            previous_first = Some(e);
        }
    }
    view
}

/// What is wrong with the revision of `e`, if anything; `replaces` says whether the chain has an
/// earlier event for its range.
fn revision_problem(e: &StoredEvent, replaces: bool) -> Option<String> {
    match (e.revision, e.event.is_replacement()) {
        (0, true) => Some(format!(
            "a {} event stored as the partition's first event",
            e.event.event_type
        )),
        (0, false) => None,
        (n, false) => Some(format!(
            "revision {n} of the partition is a {} event, not a replacement",
            e.event.event_type
        )),
        (n, true) if !replaces => Some(format!(
            "revision {n} records a replacement, but the chain has no earlier event for this partition"
        )),
        _ => None,
    }
}

/// The chain order (pure): first events (revision 0) by ledger; after each event, the
/// replacement events linking to it (then theirs, recursively). Replacements that link to no
/// stored event go last, by ledger and revision, where the link check reports them.
pub fn chain_order(events: Vec<StoredEvent>) -> Vec<StoredEvent> {
    let key = |e: &StoredEvent| (e.range.start, e.range.end, e.revision, e.location.clone());
    let (mut firsts, mut replacements): (Vec<_>, Vec<_>) =
        events.into_iter().partition(|e| e.revision == 0);
    firsts.sort_by_key(key);
    replacements.sort_by_key(key);
    let mut followers: std::collections::HashMap<String, Vec<StoredEvent>> =
        std::collections::HashMap::new();
    for r in replacements {
        followers
            .entry(r.event.chain.prev_event_hash.clone())
            .or_default()
            .push(r);
    }
    fn emit(
        e: StoredEvent,
        followers: &mut std::collections::HashMap<String, Vec<StoredEvent>>,
        out: &mut Vec<StoredEvent>,
    ) {
        let after = followers.remove(&e.event.chain.event_hash);
        out.push(e);
        for f in after.into_iter().flatten() {
            emit(f, followers, out);
        }
    }
    let mut out = Vec::new();
    for e in firsts {
        emit(e, &mut followers, &mut out);
    }
    let mut rest: Vec<StoredEvent> = followers.into_values().flatten().collect();
    rest.sort_by_key(key);
    out.extend(rest);
    out
}

/// Where a chain continues from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// `""` for a new chain.
    pub event_hash: String,
    /// The last ledger the chain covers, when known from a stored event.
    pub ledger_end: Option<u32>,
}

/// The recorded head disagrees with the stored events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the recorded chain head is {recorded:?} but the last stored event ({location}, ledgers {range}) has event_hash {last_hash:?} and prev_event_hash {last_prev:?}; continuing from either would fork the audit chain"
)]
pub struct HeadConflict {
    pub recorded: String,
    pub location: String,
    pub range: LedgerRange,
    pub last_hash: String,
    pub last_prev: String,
}

/// The head to continue from: the last stored event, checked against the recorded head. The
/// recorded head may lag by exactly one event (a crash between writing an event and recording
/// the head; the original's HTTP mode also left it there after a failed POST); anything else is
/// a conflict. With no stored events (backups cleaned up), the recorded head is all there is.
pub fn reconcile_head(view: &ChainView, recorded: Option<&str>) -> Result<Head, HeadConflict> {
    let Some(last) = view.last() else {
        return Ok(Head {
            event_hash: recorded.unwrap_or("").to_string(),
            ledger_end: None,
        });
    };
    let head = Head {
        event_hash: last.event.chain.event_hash.clone(),
        ledger_end: view.ledger_end(),
    };
    match recorded {
        None => Ok(head),
        Some(r) if r == last.event.chain.event_hash || r == last.event.chain.prev_event_hash => {
            Ok(head)
        }
        Some(r) => Err(HeadConflict {
            recorded: r.to_string(),
            location: last.location.clone(),
            range: last.range,
            last_hash: last.event.chain.event_hash.clone(),
            last_prev: last.event.chain.prev_event_hash.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pas::event::{ChainId, tests::manifest};
    use chrono::Utc;

    fn chain_id() -> ChainId {
        ChainId {
            network: "testnet".into(),
            era_id: "pre_p23".into(),
            version_label: "v1".into(),
        }
    }

    /// A linear chain of `n` events of 100 ledgers from ledger 2.
    fn events(n: u32) -> Vec<PasEvent> {
        let mut prev = String::new();
        (0..n)
            .map(|i| {
                let m = manifest(2 + 100 * i, 101 + 100 * i, &format!("sha256:{i}"));
                let e = PasEvent::for_partition(&chain_id(), &m, "p", &prev, Utc::now());
                prev = e.chain.event_hash.clone();
                e
            })
            .collect()
    }

    fn entries(events: &[PasEvent]) -> Vec<OutboxEntry> {
        events.iter().map(|e| entry_rev(e, 0)).collect()
    }

    fn entry_rev(e: &PasEvent, revision: u32) -> OutboxEntry {
        {
            {
                let bytes = e.to_indented_json().into_bytes();
                OutboxEntry {
                    location: format!("f{}.r{revision}", e.partition.ledger_start),
                    name_range: e.range().unwrap(),
                    revision,
                    parsed: PasEvent::from_json(&bytes).map_err(|e| e.to_string()),
                    bytes,
                }
            }
        }
    }

    /// Replacement events of the ranges of `of`, chained on `prev`, as revision `revision`.
    fn replacements(of: &[PasEvent], prev: &str, revision: u32) -> Vec<OutboxEntry> {
        let mut prev = prev.to_string();
        of.iter()
            .map(|e| {
                let r = e.range().unwrap();
                let m = manifest(r.start, r.end, &format!("sha256:new{revision}-{}", r.start));
                let ev = PasEvent::replacing(&chain_id(), &m, "p", &prev, Utc::now());
                prev = ev.chain.event_hash.clone();
                entry_rev(&ev, revision)
            })
            .collect()
    }

    #[test]
    fn replacement_events_follow_the_event_they_link_to_and_become_current() {
        let evs = events(4);
        // Partitions 2 and 3 replaced (after event 4), then partition 5 committed, then
        // partition 2 replaced again.
        let mut all = entries(&evs);
        let first = replacements(&evs[1..3], &evs[3].chain.event_hash, 1);
        let after = first[1].parsed.as_ref().unwrap().chain.event_hash.clone();
        let m = manifest(402, 501, "sha256:4");
        let fifth = PasEvent::for_partition(&chain_id(), &m, "p", &after, Utc::now());
        let again = replacements(&evs[1..2], &fifth.chain.event_hash, 2);
        let head = again[0].parsed.as_ref().unwrap().chain.event_hash.clone();
        all.extend(first);
        all.push(entry_rev(&fifth, 0));
        all.extend(again);
        all.reverse();
        let view = analyse(all);
        assert!(view.issues.is_empty(), "{:?}", view.issues);
        let order: Vec<(u32, u32)> = view
            .events
            .iter()
            .map(|e| (e.range.start, e.revision))
            .collect();
        assert_eq!(
            order,
            vec![
                (2, 0),
                (102, 0),
                (202, 0),
                (302, 0),
                (102, 1),
                (202, 1),
                (402, 0),
                (102, 2)
            ]
        );
        assert_eq!(view.revisions(LedgerRange::new(102, 201)), 3);
        let current = view.current();
        assert_eq!(current[&LedgerRange::new(102, 201)].revision, 2);
        assert_eq!(current[&LedgerRange::new(202, 301)].revision, 1);
        let h = reconcile_head(&view, Some(&head)).unwrap();
        assert_eq!((h.event_hash, h.ledger_end), (head.clone(), Some(501)));
        // Delivery cursor: a position in the chain.
        let third = &view.events[5].event.chain.event_hash;
        assert_eq!(view.delivered_prefix(third, 301), 6);
        assert_eq!(view.delivered_prefix("gone", 201), 2);
        assert_eq!(view.delivered_prefix("", 0), 0);
    }

    #[test]
    fn a_mistyped_or_orphan_revision_is_reported() {
        let evs = events(2);
        let mut all = entries(&evs);
        // A replacement of a range the chain has no event for, and a first-type event as r1.
        let m = manifest(502, 601, "sha256:z");
        let orphan =
            PasEvent::replacing(&chain_id(), &m, "p", &evs[1].chain.event_hash, Utc::now());
        all.push(entry_rev(&orphan, 1));
        let view = analyse(all);
        assert!(
            view.issues.iter().any(|i| i.check() == "pas.revision"),
            "{:?}",
            view.issues
        );
        let mut all = entries(&evs);
        let plain = PasEvent::for_partition(
            &chain_id(),
            &manifest(2, 101, "sha256:q"),
            "p",
            &evs[1].chain.event_hash,
            Utc::now(),
        );
        all.push(entry_rev(&plain, 1));
        let view = analyse(all);
        assert!(
            view.issues.iter().any(|i| i.check() == "pas.revision"),
            "{:?}",
            view.issues
        );
    }

    #[test]
    fn orders_numerically_and_accepts_a_linear_chain() {
        let evs = events(12); // ranges up to 1102-1201: lexical order would differ
        let mut shuffled = entries(&evs);
        shuffled.reverse();
        shuffled.swap(0, 5);
        let view = analyse(shuffled);
        assert!(view.issues.is_empty(), "{:?}", view.issues);
        let starts: Vec<u32> = view.events.iter().map(|e| e.range.start).collect();
        assert!(starts.windows(2).all(|w| w[0] < w[1]), "{starts:?}");
        assert_eq!(
            reconcile_head(&view, Some(&evs[11].chain.event_hash)).unwrap(),
            Head {
                event_hash: evs[11].chain.event_hash.clone(),
                ledger_end: Some(1201)
            }
        );
    }

    #[test]
    fn finds_broken_links_tampering_gaps_and_overlaps() {
        let mut evs = events(4);
        evs[2].tables.get_mut("ledgers_lcm_raw").unwrap().row_count = 7; // hash no longer matches
        let mut forked = evs[3].clone();
        forked.chain.prev_event_hash = evs[0].chain.event_hash.clone();
        forked.chain.event_hash = forked.compute_hash();
        evs[3] = forked;
        let view = analyse(entries(&evs));
        let checks: Vec<(&str, u32)> = view
            .issues
            .iter()
            .map(|i| (i.check(), i.range().unwrap().start))
            .collect();
        assert_eq!(checks, vec![("pas.hash", 202), ("pas.link", 302)]);

        let evs = events(3);
        let view = analyse(entries(&evs[1..]));
        assert_eq!(view.issues[0].check(), "pas.first_prev");

        let mut evs = events(2);
        let m = manifest(50, 149, "sha256:x");
        evs.push(PasEvent::for_partition(
            &chain_id(),
            &m,
            "p",
            &evs[1].chain.event_hash,
            Utc::now(),
        ));
        let view = analyse(entries(&evs));
        assert!(view.issues.iter().any(|i| i.check() == "pas.overlap"));
    }

    #[test]
    fn head_may_lag_by_one_event_but_never_disagree() {
        let evs = events(3);
        let view = analyse(entries(&evs));
        let last = &evs[2].chain.event_hash;
        // Crash between writing event 3 and recording the head.
        let lagging = reconcile_head(&view, Some(&evs[1].chain.event_hash)).unwrap();
        assert_eq!(&lagging.event_hash, last);
        assert_eq!(&reconcile_head(&view, None).unwrap().event_hash, last);
        let conflict = reconcile_head(&view, Some(&evs[0].chain.event_hash)).unwrap_err();
        assert!(conflict.to_string().contains("fork"), "{conflict}");
        // Backups deleted: the recorded head is all there is.
        let empty = analyse(vec![]);
        assert_eq!(
            reconcile_head(&empty, Some("sha256:h")).unwrap(),
            Head {
                event_hash: "sha256:h".into(),
                ledger_end: None
            }
        );
        assert_eq!(reconcile_head(&empty, None).unwrap().event_hash, "");
    }
}
