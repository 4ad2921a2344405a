//! The audit stream as a commit hook: outbox first, never a fork, never a hole.
//!
//! For each committed partition, in ledger order (the sequencer calls hooks after the manifest is
//! committed and before the checkpoint moves):
//! 1. if the outbox already holds this partition's event (a crash after writing it, or a
//!    resumed run), that event is kept: it is never re-made with another timestamp;
//!    if that event describes other content and the run overwrites (`era.allow_overwrite`), a
//!    `bronze_partition_replaced` event is appended at the head (the next revision of the
//!    range): the chain stays linear and records both contents, in the order they were
//!    committed; without overwrite it is a conflict;
//! 2. otherwise the event is built on the current head, written durably with create-if-absent,
//!    and only then the head advances;
//! 3. with an endpoint, the event is delivered: `strict` waits for it and fails the commit (the
//!    checkpoint stays put, a restart re-sends); lenient hands it to a background task that keeps
//!    retrying in order while the copier goes on.
//!
//! At start the head is rebuilt from the stored events and checked against the recorded one; a
//! disagreement stops the copier instead of forking the chain.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::chain::{ChainIssue, Head, HeadConflict, analyse, reconcile_head};
use super::delivery::{Courier, DeliveryError, HttpDelivery};
use super::event::{ChainId, PasEvent};
use super::outbox::{Created, Delivered, Outbox, OutboxError};
use crate::partition::LedgerRange;
use crate::pipeline::CommitEvent;
use crate::publish::{DatasetLayout, Manifest};
use crate::sequence::{Appended, PartitionRecord, PasAppendError, PasLog};
use futures::future::BoxFuture;

#[derive(Debug, thiserror::Error)]
pub enum PasError {
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    #[error("PAS chain {chain} in {outbox}: {source}")]
    Head {
        chain: String,
        outbox: String,
        source: Box<HeadConflict>,
    },
    #[error(
        "PAS chain {chain} in {outbox} is damaged; refusing to continue it: {issues} (run `bronze-copier verify` for the full report)"
    )]
    Damaged {
        chain: String,
        outbox: String,
        issues: String,
    },
    #[error(
        "PAS event {location} for partition {range} records {found}, but the committed manifest has {expected}; the partition was replaced outside this chain (a rerun with era.allow_overwrite records the replacement in the chain)"
    )]
    EventMismatch {
        location: String,
        range: LedgerRange,
        expected: String,
        found: String,
    },
    #[error(
        "another writer stored a different PAS event for partition {range} at {location} (prev_event_hash {found_prev:?}, ours {our_prev:?}); refusing to fork the chain"
    )]
    Raced {
        location: String,
        range: LedgerRange,
        found_prev: String,
        our_prev: String,
    },
    #[error(
        "PAS chain {chain} in {outbox}: the event of partition {range} should follow {expected:?}, but the outbox's head is {head:?}; refusing to fork the chain"
    )]
    HeadMoved {
        chain: String,
        outbox: String,
        range: LedgerRange,
        expected: String,
        head: String,
    },
    #[error(transparent)]
    Delivery(#[from] DeliveryError),
    #[error("pas.endpoint: {0}")]
    Client(String),
    #[error(transparent)]
    Storage(#[from] crate::store::StoreError),
}

impl PasError {
    /// Whether the state on disk or in the bucket contradicts itself (not worth retrying).
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            PasError::Head { .. }
                | PasError::Damaged { .. }
                | PasError::EventMismatch { .. }
                | PasError::Raced { .. }
                | PasError::HeadMoved { .. }
        )
    }
}

/// How events leave the outbox.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    pub http: HttpDelivery,
    /// Stop the copier when an event cannot be delivered.
    pub strict: bool,
}

struct ChainState {
    head: Head,
    /// The current event of each range (its last revision), by first ledger.
    events: BTreeMap<u32, PasEvent>,
    /// Events stored per range, by first ledger: the next replacement's revision.
    revisions: BTreeMap<u32, u32>,
    /// Opened at the head ([`PasStream::open_at_head`]): `events` and `revisions` hold only
    /// what this stream wrote and the head event; the rest is read when first needed.
    partial: bool,
}

/// Events a stream opened at the head keeps in memory (the newest): enough to adopt what a
/// status that fell a little behind presents again without reading storage. Older ones are read
/// back from storage when needed.
pub const HEAD_STREAM_EVENTS: usize = 256;

struct Inner {
    chain: ChainId,
    layout: DatasetLayout,
    outbox: Arc<dyn Outbox>,
    state: tokio::sync::Mutex<ChainState>,
    courier: Option<Arc<Courier>>,
    strict: bool,
    background: std::sync::Mutex<Option<JoinHandle<()>>>,
    stop: CancellationToken,
    /// Opened at the head: `events` is a bounded cache ([`HEAD_STREAM_EVENTS`]).
    bounded: bool,
}

/// The PAS stream of one chain. Cheap to clone; every clone is the same stream.
#[derive(Clone)]
pub struct PasStream {
    inner: Arc<Inner>,
}

impl PasStream {
    /// Opens the chain of `layout` in `outbox`: rebuilds and checks the head, then (with
    /// delivery) re-sends what was not delivered: `strict` before returning (an error if that
    /// fails), lenient in the background.
    pub async fn open(
        layout: DatasetLayout,
        outbox: Arc<dyn Outbox>,
        delivery: Option<DeliveryConfig>,
    ) -> Result<PasStream, PasError> {
        let chain = ChainId::of_layout(&layout);
        let view = analyse(outbox.load(&chain).await?);
        let fatal: Vec<&ChainIssue> = view
            .issues
            .iter()
            .filter(|i| match i {
                ChainIssue::Unreadable { .. }
                | ChainIssue::NameMismatch { .. }
                | ChainIssue::Overlap { .. }
                | ChainIssue::Revision { .. } => true,
                // Chaining onto an event whose hash does not check out would extend garbage.
                ChainIssue::HashMismatch { range, .. } => {
                    view.last().is_some_and(|l| l.range == *range)
                }
                ChainIssue::BrokenLink { .. } | ChainIssue::StartsMidway { .. } => false,
            })
            .collect();
        if !fatal.is_empty() {
            return Err(PasError::Damaged {
                chain: chain.key(),
                outbox: outbox.describe(),
                issues: fatal
                    .iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join("; "),
            });
        }
        for issue in &view.issues {
            // Earlier history (e.g. the original's lenient-mode forks, cleaned-up backups):
            // reported, not repaired; new events continue from the head.
            tracing::warn!(chain = %chain.key(), check = issue.check(), "PAS chain history: {issue}");
        }
        let recorded = outbox.recorded_head(&chain).await?;
        let head = reconcile_head(&view, recorded.as_deref()).map_err(|source| PasError::Head {
            chain: chain.key(),
            outbox: outbox.describe(),
            source: Box::new(source),
        })?;
        if recorded.as_deref() != Some(head.event_hash.as_str()) && !head.event_hash.is_empty() {
            tracing::info!(chain = %chain.key(), head = %head.event_hash, recorded = ?recorded, "PAS chain head rebuilt from the stored events");
            outbox.record_head(&chain, &head.event_hash).await?;
        }
        tracing::info!(
            chain = %chain.key(),
            outbox = %outbox.describe(),
            events = view.events.len(),
            head = %head.event_hash,
            head_ledger = ?head.ledger_end,
            "PAS chain opened"
        );
        let events: BTreeMap<u32, PasEvent> = view
            .current()
            .into_values()
            .map(|e| (e.range.start, e.event.clone()))
            .collect();
        let mut revisions = BTreeMap::new();
        for e in &view.events {
            *revisions.entry(e.range.start).or_insert(0) += 1;
        }

        let mut courier = None;
        let mut strict = false;
        if let Some(d) = delivery {
            strict = d.strict;
            let delivered = match outbox.delivered(&chain).await? {
                Some(d) => d,
                None => {
                    // First start with delivery for this chain: what the recorded head covers
                    // counts as delivered (the original moved it only after a 2xx; a file-only
                    // chain has no receiver to catch up), everything after it is pending.
                    let covered = recorded
                        .as_deref()
                        .and_then(|h| view.events.iter().find(|e| e.event.chain.event_hash == h))
                        .map(|e| Delivered {
                            event_hash: e.event.chain.event_hash.clone(),
                            event_id: e.event.event_id.clone(),
                            ledger_start: e.range.start,
                            ledger_end: e.range.end,
                        })
                        .unwrap_or_default();
                    outbox.record_delivered(&chain, &covered).await?;
                    covered
                }
            };
            let done = view.delivered_prefix(&delivered.event_hash, delivered.ledger_end);
            let c = Arc::new(Courier::new(
                d.http,
                outbox.clone(),
                chain.clone(),
                view.events[..done]
                    .iter()
                    .map(|e| e.event.chain.event_hash.clone()),
            ));
            // In chain order: a replacement is delivered after what it replaces.
            for e in &view.events[done..] {
                c.enqueue(&e.event);
            }
            if c.pending() > 0 {
                tracing::info!(chain = %chain.key(), pending = c.pending(), endpoint = %c.http().endpoint(), "re-sending PAS events not yet delivered");
            }
            courier = Some(c);
        }
        let stream = PasStream {
            inner: Arc::new(Inner {
                chain,
                layout,
                outbox,
                state: tokio::sync::Mutex::new(ChainState {
                    head,
                    events,
                    revisions,
                    partial: false,
                }),
                courier,
                strict,
                background: std::sync::Mutex::new(None),
                stop: CancellationToken::new(),
                bounded: false,
            }),
        };
        if let Some(c) = &stream.inner.courier {
            if strict {
                c.flush().await?;
            } else {
                let task = tokio::spawn(background_delivery(c.clone(), stream.inner.stop.clone()));
                *stream.background() = Some(task);
            }
        }
        Ok(stream)
    }

    /// Opens the chain at its recorded head, reading the head record and the one event it names
    /// instead of every stored event (the operator's sequencer, whose cost must not grow with
    /// the chain: 6,000 events at a full backfill). Falls back to [`Self::open`] (read and check
    /// everything) with delivery (undelivered events must be found), or when the head record
    /// does not name its event or the event does not match it. The chain's history is checked by
    /// `verify`; a head behind the stored events (a crash between an event and its head record)
    /// is caught by the conditional create of the next event, and a head moved by another writer
    /// by [`Self::append_after`] (which re-reads the chain then).
    pub async fn open_at_head(
        layout: DatasetLayout,
        outbox: Arc<dyn Outbox>,
        delivery: Option<DeliveryConfig>,
    ) -> Result<PasStream, PasError> {
        if delivery.is_some() {
            return Self::open(layout, outbox, delivery).await;
        }
        let chain = ChainId::of_layout(&layout);
        let Some((recorded, entry)) = outbox.head_event(&chain).await? else {
            return Self::open_bounded(layout, outbox).await;
        };
        let event = match entry.parsed {
            Ok(e)
                if entry.revision == 0
                    && e.range() == Some(entry.name_range)
                    && e.chain.event_hash == recorded
                    && e.compute_hash() == recorded =>
            {
                e
            }
            _ => {
                tracing::info!(chain = %chain.key(), location = %entry.location, "PAS head record and head event disagree; reading the whole chain");
                return Self::open_bounded(layout, outbox).await;
            }
        };
        let range = entry.name_range;
        tracing::info!(chain = %chain.key(), outbox = %outbox.describe(), head = %recorded, head_ledger = range.end, "PAS chain opened at its recorded head");
        Ok(PasStream {
            inner: Arc::new(Inner {
                chain,
                layout,
                outbox,
                state: tokio::sync::Mutex::new(ChainState {
                    head: Head {
                        event_hash: recorded,
                        ledger_end: Some(range.end),
                    },
                    events: BTreeMap::from([(range.start, event)]),
                    revisions: BTreeMap::new(),
                    partial: true,
                }),
                courier: None,
                strict: false,
                background: std::sync::Mutex::new(None),
                stop: CancellationToken::new(),
                bounded: true,
            }),
        })
    }

    /// [`Self::open`] without delivery, keeping a bounded cache of events afterwards.
    async fn open_bounded(
        layout: DatasetLayout,
        outbox: Arc<dyn Outbox>,
    ) -> Result<PasStream, PasError> {
        let stream = Self::open(layout, outbox, None).await?;
        let mut inner = Arc::try_unwrap(stream.inner)
            .unwrap_or_else(|_| unreachable!("no delivery task holds the stream"));
        inner.bounded = true;
        prune(inner.state.get_mut());
        Ok(PasStream {
            inner: Arc::new(inner),
        })
    }

    /// Events held in memory (a stream opened at the head keeps at most
    /// [`HEAD_STREAM_EVENTS`]).
    pub async fn events_in_memory(&self) -> usize {
        self.inner.state.lock().await.events.len()
    }

    /// Reads every stored event into `state` (after an open at the head, or when another
    /// writer moved the chain).
    async fn reload(&self, state: &mut ChainState) -> Result<(), PasError> {
        let inner = &self.inner;
        let view = analyse(inner.outbox.load(&inner.chain).await?);
        if let Some(last) = view.last() {
            state.head = Head {
                event_hash: last.event.chain.event_hash.clone(),
                ledger_end: view.ledger_end(),
            };
        }
        state.revisions.clear();
        for e in &view.events {
            state.events.insert(e.range.start, e.event.clone());
            *state.revisions.entry(e.range.start).or_insert(0) += 1;
        }
        state.partial = false;
        tracing::info!(chain = %inner.chain.key(), head = %state.head.event_hash, "PAS chain re-read from the outbox");
        Ok(())
    }

    fn background(&self) -> std::sync::MutexGuard<'_, Option<JoinHandle<()>>> {
        self.inner
            .background
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    pub fn chain(&self) -> &ChainId {
        &self.inner.chain
    }

    /// Events in the outbox not delivered yet (0 without an endpoint).
    pub fn pending(&self) -> usize {
        self.inner.courier.as_ref().map_or(0, |c| c.pending())
    }

    /// The current head.
    pub async fn head(&self) -> Head {
        self.inner.state.lock().await.head.clone()
    }

    /// Makes sure the committed partition has its event in the outbox, then delivers it. `None`
    /// for a partition the chain has already passed without an event (see [`Self::ensure_event`]).
    pub async fn record(&self, commit: &CommitEvent) -> Result<Option<PasEvent>, PasError> {
        self.record_partition(&PartitionRecord {
            network: self.inner.layout.network.clone(),
            era_id: self.inner.layout.era_id.clone(),
            version_label: self.inner.layout.version_label.clone(),
            range: commit.range,
            storage_path: commit.storage_path.clone(),
            manifest: commit.manifest.clone(),
            adopted: commit.adopted,
            replaced: commit.replaced.is_some(),
            overwrite: commit.overwrite,
        })
        .await
    }

    /// As [`Self::record`], for the sequencing engine's record of the partition.
    pub async fn record_partition(
        &self,
        commit: &PartitionRecord,
    ) -> Result<Option<PasEvent>, PasError> {
        let Some(event) = self.ensure_event(commit).await? else {
            return Ok(None);
        };
        if let Some(c) = &self.inner.courier {
            c.enqueue(&event);
            if self.inner.strict {
                c.flush().await?;
            }
        }
        Ok(Some(event))
    }

    /// The partition's event: the stored one, or a new one on the head. A partition the chain
    /// already continues past without an event (a hole that predates this run: committed before
    /// PAS was enabled, or by the original after a strict-mode failure) cannot get one without
    /// breaking the chain's order; it is reported, not filled, and `verify` lists it.
    async fn ensure_event(&self, commit: &PartitionRecord) -> Result<Option<PasEvent>, PasError> {
        let inner = &self.inner;
        let range = commit.range;
        let mut state = inner.state.lock().await;
        if state.partial {
            // Past events and revisions decide what follows: read them all first.
            self.reload(&mut state).await?;
        }
        if let Some(existing) = state.events.get(&range.start).cloned() {
            match self.check_matches(&existing, range, &commit.manifest) {
                Ok(()) => return Ok(Some(existing.clone())),
                Err(PasError::EventMismatch { .. }) if commit.overwrite => {
                    let event = self
                        .write_on_head(&mut state, range, &commit.manifest, true)
                        .await?;
                    tracing::info!(
                        partition = %range,
                        event_id = %event.event_id,
                        event_hash = %event.chain.event_hash,
                        prev_event_hash = %event.chain.prev_event_hash,
                        replaced = %existing_checksum(&existing),
                        checksum = %commit.manifest.primary().map(|t| t.checksum.as_str()).unwrap_or(""),
                        "PAS replacement event recorded"
                    );
                    return Ok(Some(event));
                }
                Err(e) => return Err(e),
            }
        }
        if let Some(head_end) = state.head.ledger_end
            && range.start <= head_end
        {
            tracing::warn!(
                partition = %range,
                chain = %inner.chain.key(),
                head_ledger = head_end,
                "committed partition has no PAS event and the chain already continues past it; this hole predates this run and cannot be filled without breaking the chain's order (`verify` reports it)"
            );
            return Ok(None);
        }
        let event = self
            .write_on_head(&mut state, range, &commit.manifest, false)
            .await?;
        tracing::info!(
            partition = %range,
            event_id = %event.event_id,
            event_hash = %event.chain.event_hash,
            prev_event_hash = %event.chain.prev_event_hash,
            adopted = commit.adopted,
            "PAS event recorded"
        );
        Ok(Some(event))
    }

    /// Makes the event of `range` on the current head durable (create-if-absent), or adopts the
    /// one a concurrent writer stored first when it links to the same head and describes the same
    /// partition; then advances the head. `replacement`: the range already has events and this
    /// one records that its content was replaced (stored as the range's next revision).
    async fn write_on_head(
        &self,
        state: &mut ChainState,
        range: LedgerRange,
        manifest: &Manifest,
        replacement: bool,
    ) -> Result<PasEvent, PasError> {
        let inner = &self.inner;
        let make = if replacement {
            PasEvent::replacing
        } else {
            PasEvent::for_partition
        };
        let event = make(
            &inner.chain,
            manifest,
            &inner.layout.storage_path(range),
            &state.head.event_hash,
            committed_at(manifest),
        );
        let revision = if replacement {
            state.revisions.get(&range.start).copied().unwrap_or(0)
        } else {
            0
        };
        let event = match inner.outbox.create(&event, revision).await? {
            Created::Written => event,
            Created::Existing(found) => {
                // Someone (a process killed just now, or a second writer) stored it first.
                if found.chain.prev_event_hash != state.head.event_hash
                    || found.compute_hash() != found.chain.event_hash
                {
                    return Err(PasError::Raced {
                        location: inner
                            .outbox
                            .location_of_revision(&inner.chain, range, revision),
                        range,
                        found_prev: found.chain.prev_event_hash.clone(),
                        our_prev: state.head.event_hash.clone(),
                    });
                }
                self.check_matches(&found, range, manifest)?;
                *found
            }
        };
        inner
            .outbox
            .record_head_at(&inner.chain, &event.chain.event_hash, (range, revision))
            .await?;
        state.head = Head {
            event_hash: event.chain.event_hash.clone(),
            ledger_end: state.head.ledger_end.max(Some(range.end)),
        };
        state.events.insert(range.start, event.clone());
        *state.revisions.entry(range.start).or_insert(0) += 1;
        if inner.bounded {
            prune(state);
        }
        Ok(event)
    }

    /// The sequencer of the Kubernetes operator: the event of the committed partition `range`,
    /// linked to `prev_event_hash` (the head the caller recorded, `""` before the first event).
    ///
    /// * An event already stored for `range` (an earlier reconcile whose status was lost, or
    ///   another operator) is adopted when it links to `prev_event_hash` and describes the same
    ///   partition; any other event there is a conflict ([`PasError::Raced`] or
    ///   [`PasError::EventMismatch`]): the chain is never forked.
    /// * Otherwise the event is written on `prev_event_hash`, which must be the outbox's head; a
    ///   head that moved under this stream (another writer) is re-read from the outbox first.
    ///
    /// Then the event is handed to delivery as in [`Self::record`]. Returns the event and whether
    /// it was already stored.
    pub async fn append_after(
        &self,
        range: LedgerRange,
        manifest: &Manifest,
        prev_event_hash: &str,
    ) -> Result<(PasEvent, bool), PasError> {
        let (event, existing) = {
            let mut state = self.inner.state.lock().await;
            if let Some(found) = self
                .stored_event(&mut state, range, prev_event_hash)
                .await?
            {
                if found.chain.prev_event_hash != prev_event_hash {
                    return Err(PasError::Raced {
                        location: self.inner.outbox.location_of(&self.inner.chain, range),
                        range,
                        found_prev: found.chain.prev_event_hash.clone(),
                        our_prev: prev_event_hash.to_string(),
                    });
                }
                self.check_matches(&found, range, manifest)?;
                (found, true)
            } else {
                self.ensure_head_is(&state, range, prev_event_hash)?;
                let event = self
                    .write_on_head(&mut state, range, manifest, false)
                    .await?;
                tracing::info!(
                    partition = %range,
                    event_id = %event.event_id,
                    event_hash = %event.chain.event_hash,
                    prev_event_hash = %event.chain.prev_event_hash,
                    "PAS event recorded"
                );
                (event, false)
            }
        };
        if let Some(c) = &self.inner.courier {
            c.enqueue(&event);
            if self.inner.strict {
                c.flush().await?;
            }
        }
        Ok((event, existing))
    }

    /// The sequencer of the Kubernetes operator replacing the committed partition `range`
    /// (`spec.rebuild`): a `bronze_partition_replaced` event (the range's next revision) on
    /// `prev_event_hash`, which must be the outbox's head, unless the range's newest event
    /// already describes `manifest`. Then nothing is written: the rebuild was identical, or an
    /// earlier attempt (whose status was lost) wrote it, in which case that event is the one
    /// just after `prev_event_hash` and is returned as the new head. Returns the new head's
    /// event (`None`: the head stays) and whether it was written now.
    pub async fn replace_after(
        &self,
        range: LedgerRange,
        manifest: &Manifest,
        prev_event_hash: &str,
    ) -> Result<(Option<PasEvent>, bool), PasError> {
        let event = {
            let mut state = self.inner.state.lock().await;
            if state.partial || state.head.event_hash != prev_event_hash {
                self.reload(&mut state).await?;
            }
            if let Some(newest) = state.events.get(&range.start).cloned()
                && self.check_matches(&newest, range, manifest).is_ok()
            {
                let head = (newest.chain.prev_event_hash == prev_event_hash).then_some(newest);
                return Ok((head, false));
            }
            self.ensure_head_is(&state, range, prev_event_hash)?;
            let event = self
                .write_on_head(&mut state, range, manifest, true)
                .await?;
            tracing::info!(
                partition = %range,
                event_id = %event.event_id,
                event_hash = %event.chain.event_hash,
                prev_event_hash = %event.chain.prev_event_hash,
                checksum = %manifest.primary().map(|t| t.checksum.as_str()).unwrap_or(""),
                "PAS replacement event recorded"
            );
            event
        };
        if let Some(c) = &self.inner.courier {
            c.enqueue(&event);
            if self.inner.strict {
                c.flush().await?;
            }
        }
        Ok((Some(event), true))
    }

    /// An event for `range` may be written on `prev_event_hash` only when that is the head.
    fn ensure_head_is(
        &self,
        state: &ChainState,
        range: LedgerRange,
        prev_event_hash: &str,
    ) -> Result<(), PasError> {
        if state.head.event_hash == prev_event_hash {
            return Ok(());
        }
        Err(PasError::HeadMoved {
            chain: self.inner.chain.key(),
            outbox: self.inner.outbox.describe(),
            range,
            expected: prev_event_hash.to_string(),
            head: state.head.event_hash.clone(),
        })
    }

    /// The event stored for `range`: from memory, or, when the caller's head is not this
    /// stream's (another writer moved the chain), from the outbox after re-reading it.
    async fn stored_event(
        &self,
        state: &mut ChainState,
        range: LedgerRange,
        prev_event_hash: &str,
    ) -> Result<Option<PasEvent>, PasError> {
        if let Some(found) = state.events.get(&range.start) {
            return Ok(Some(found.clone()));
        }
        if state.head.event_hash == prev_event_hash {
            return Ok(None);
        }
        self.reload(state).await?;
        Ok(state.events.get(&range.start).cloned())
    }

    /// A stored event must describe exactly the committed partition.
    fn check_matches(
        &self,
        event: &PasEvent,
        range: LedgerRange,
        manifest: &Manifest,
    ) -> Result<(), PasError> {
        let location = self.inner.outbox.location_of(&self.inner.chain, range);
        let mismatch = |expected: String, found: String| PasError::EventMismatch {
            location: location.clone(),
            range,
            expected,
            found,
        };
        if event.range() != Some(range) {
            return Err(mismatch(
                format!("ledgers {range}"),
                format!(
                    "ledgers {}-{}",
                    event.partition.ledger_start, event.partition.ledger_end
                ),
            ));
        }
        let table = manifest.primary();
        let ev = event.primary();
        let describe = |checksum: &str, rows: i64, bytes: i64| {
            format!("checksum {checksum}, row_count {rows}, byte_size {bytes}")
        };
        let expected = table.map(|t| describe(&t.checksum, t.row_count as i64, t.byte_size as i64));
        let found = ev.map(|t| describe(&t.checksum, t.row_count, t.byte_size));
        if expected != found {
            return Err(mismatch(
                expected.unwrap_or_else(|| "no ledgers_lcm_raw table".into()),
                found.unwrap_or_else(|| "no ledgers_lcm_raw table".into()),
            ));
        }
        Ok(())
    }

    /// Stops background delivery. With `drain` (a run that finished normally), delivery goes on
    /// for a bounded time ([`drain_limit`]) so a receiver that is just recovering still gets
    /// everything. Whatever remains is re-sent at the next start.
    pub async fn finish(&self, drain: bool) {
        self.finish_unless(drain, &CancellationToken::new()).await;
    }

    /// As [`Self::finish`], but `interrupt` (a signal) ends the drain at once, mid-attempt or
    /// mid-pause: the undelivered events are safe in the outbox, and an operator who stops the
    /// copier should not wait out the retries.
    pub async fn finish_unless(&self, drain: bool, interrupt: &CancellationToken) {
        let task = self.background().take();
        self.inner.stop.cancel();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
        let Some(c) = &self.inner.courier else { return };
        if drain && c.pending() > 0 && !interrupt.is_cancelled() {
            let limit = drain_limit(c.http());
            tracing::info!(
                pending = c.pending(),
                "delivering the remaining PAS events before exiting (for up to {limit:?}; a signal stops this at once)"
            );
            tokio::select! {
                _ = interrupt.cancelled() => {
                    tracing::warn!(pending = c.pending(), "signal received: PAS delivery stopped");
                }
                _ = drain_for(c, limit) => {}
            }
        }
        if c.pending() > 0 {
            tracing::warn!(
                pending = c.pending(),
                endpoint = %c.http().endpoint(),
                "PAS events not delivered yet; they are safe in the outbox and will be re-sent at the next start"
            );
        }
    }
}

/// Retries delivering the queue with doubling pauses until it is empty or `limit` has passed.
async fn drain_for(c: &Courier, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    let mut pause = c.http().backoff().max(Duration::from_millis(100));
    loop {
        match c.flush().await {
            Ok(()) => return,
            Err(e) if tokio::time::Instant::now() + pause < deadline => {
                tracing::warn!(pending = c.pending(), error = %e, "PAS delivery still failing; retrying in {pause:?}");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            Err(e) => {
                tracing::warn!(pending = c.pending(), error = %e, "PAS delivery still failing");
                return;
            }
        }
    }
}

/// An event's `timestamp`: when its partition was committed (the manifest's `created_at`), not
/// when the event is written, so that every writer of one partition's event on one head (a
/// retry, a restarted process, a second operator) writes the same bytes. A store whose
/// conditional create lets two writers through (an S3-compatible store that ignores
/// `If-None-Match`, or two requests interleaving in a test server) then cannot fork the chain.
/// A manifest without a readable `created_at` (none of ours or the original's) falls back to now.
fn committed_at(manifest: &Manifest) -> chrono::DateTime<Utc> {
    chrono::DateTime::parse_from_rfc3339(&manifest.created_at)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|_| Utc::now())
}

fn existing_checksum(event: &PasEvent) -> &str {
    event.primary().map_or("", |t| t.checksum.as_str())
}

/// How long a finished run keeps delivering: the time one event's attempts may take, at least
/// 2 s and at most a minute.
pub fn drain_limit(http: &HttpDelivery) -> Duration {
    (http.timeout() * http.attempts()).clamp(Duration::from_secs(2), Duration::from_secs(60))
}

/// Lenient delivery: retries the queue in order with growing pauses while the copier goes on.
async fn background_delivery(courier: Arc<Courier>, stop: CancellationToken) {
    const MAX_PAUSE: Duration = Duration::from_secs(60);
    let base = courier.http().backoff().max(Duration::from_millis(100));
    let mut pause = base;
    loop {
        match courier.flush().await {
            Ok(()) => {
                pause = base;
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = courier.wait_for_work() => {}
                }
            }
            Err(e) => {
                tracing::warn!(
                    pending = courier.pending(),
                    error = %e,
                    "PAS delivery failing; the copier continues, events stay in the outbox and are retried in order in {pause:?}"
                );
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(MAX_PAUSE);
            }
        }
    }
}

impl PasLog for PasStream {
    /// Appends on the stream's own head (rebuilt from the outbox when it opened): see
    /// [`Self::record_partition`]. A hole that predates the run keeps the head where it is.
    fn append<'a>(
        &'a self,
        record: &'a PartitionRecord,
        _prev_event_hash: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Appended, PasAppendError>> {
        Box::pin(async move {
            let event = self
                .record_partition(record)
                .await
                .map_err(|e| append_error(record.range, e))?;
            let event_hash = match event {
                Some(e) => e.chain.event_hash,
                None => self.head().await.event_hash,
            };
            Ok(Appended {
                event_hash,
                existing: false,
            })
        })
    }

    fn describe(&self) -> String {
        self.inner.outbox.describe()
    }

    fn undelivered(&self) -> Option<u64> {
        self.inner.courier.as_ref().map(|c| c.pending() as u64)
    }

    /// Before a partition is replaced: in strict mode every event already in the outbox must be
    /// delivered first (a receiver that refuses them refuses the replacement, with nothing
    /// changed); the chain must still be this stream's (no other writer moved it).
    fn check_replace(&self, range: LedgerRange) -> BoxFuture<'_, Result<(), PasAppendError>> {
        Box::pin(async move {
            let fail = |e: PasError| {
                let message = format!("refusing to replace the partition: {e}");
                match e.is_conflict() {
                    true => PasAppendError::Conflict { range, message },
                    false => PasAppendError::Unavailable(message),
                }
            };
            let inner = &self.inner;
            let head = inner.state.lock().await.head.clone();
            let view = analyse(
                inner
                    .outbox
                    .load(&inner.chain)
                    .await
                    .map_err(|e| fail(e.into()))?,
            );
            let stored = view
                .last()
                .map_or("", |l| l.event.chain.event_hash.as_str());
            if stored != head.event_hash && !(stored.is_empty() && view.events.is_empty()) {
                return Err(fail(PasError::Damaged {
                    chain: inner.chain.key(),
                    outbox: inner.outbox.describe(),
                    issues: format!(
                        "its head moved to {stored:?} under this copier (expected {:?}): another writer?",
                        head.event_hash
                    ),
                }));
            }
            if let (Some(c), true) = (&inner.courier, inner.strict) {
                c.flush().await.map_err(|e| fail(e.into()))?;
            }
            Ok(())
        })
    }
}

/// Keeps the newest [`HEAD_STREAM_EVENTS`] events; what is dropped is read back when needed
/// (`partial`).
fn prune(state: &mut ChainState) {
    while state.events.len() > HEAD_STREAM_EVENTS {
        state.events.pop_first();
        state.partial = true;
    }
    if state.partial {
        state.revisions.clear();
    }
}

/// The stream's error as the engine's: a conflict (never retried) or an outage. The message is
/// the stream's own.
fn append_error(range: LedgerRange, e: PasError) -> PasAppendError {
    if e.is_conflict() {
        PasAppendError::Conflict {
            range,
            message: e.to_string(),
        }
    } else {
        PasAppendError::Unavailable(e.to_string())
    }
}
