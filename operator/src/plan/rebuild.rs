//! Planning a rebuild (`spec.rebuild`), pure like the rest of the planner: which rebuild is
//! current, its Jobs over the committed partitions of its range, and `status.rebuild`.
//!
//! Rules (each has a test in `plan/tests.rs` or a property in `plan/props.rs`):
//! * A rebuild's range is widened to whole partitions of the grid. It is accepted only when
//!   every partition of it is committed and sequenced (at or below the checkpoint), and its `id`
//!   was not carried out before with another range (`status.rebuildHistory`); otherwise it is
//!   refused (phase `Failed`, `refused: true`) with nothing changed, for good.
//! * An `id` is carried out once: a finished rebuild's `id` set again does nothing.
//! * One rebuild at a time. A rebuild that has started runs to its end, from `status.rebuild`
//!   alone: a new `id` requested meanwhile is queued (it starts when the current one ends), and
//!   removing `spec.rebuild` does not stop it (`suspend` pauses it). A rebuild whose Job failed
//!   for good is ended by a new `id`.
//! * Rebuild Jobs cover the job grid's cells (`partitionsPerJob` partitions) clipped to the
//!   range, with their own deterministic names, from the first partition not yet replaced
//!   (`doneThrough`). They share `maxConcurrentJobs` with the backfill's own Jobs: while both
//!   have work the rebuild gets half the slots (at least one), and each takes what the other
//!   leaves.
//! * A rebuild Job that succeeded although the sequencer finds its first partition not yet
//!   replaced unstaged is run again (the operator died between a swap and its status).
//! * A rebuild Job that failed is not retried by the operator (its Pods are, up to
//!   `backoffLimit`): the rebuild is `Failed` until the Job is deleted, which means "try again".
//!   Jobs of a rebuild that is no longer current are deleted (running) or harvested (finished).

use bronze::partition::LedgerRange;

use super::{Context, JobRequest, JobState, Note, ObservedJob, Work, job_name, overlaps, reason};
use crate::crd::{REBUILD_HISTORY, RebuildPhase, RebuildRecord, RebuildSpec, RebuildStatus};

/// What the sequencer did for the current rebuild in this reconcile (see
/// [`crate::sequencer`]): replacements go in ledger order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rebuilt {
    /// The rebuild the replacements belong to.
    pub id: String,
    /// Every partition of the range up to this ledger is replaced or found identical.
    pub done_through: Option<u32>,
    /// Partitions replaced in this reconcile, in order.
    pub replaced: Vec<LedgerRange>,
    /// Partitions found identical in this reconcile (kept as they were).
    pub identical: u64,
    /// A replacement refused by a check (nothing changed): the rebuild waits, `Failed`.
    pub fault: Option<String>,
    /// The next partition of the range, not staged by its Job (yet).
    pub waiting_for: Option<LedgerRange>,
}

/// The Job name of a rebuild's range: never the backfill's own Job name for that range.
pub fn rebuild_job_name(backfill: &str, id: &str, range: LedgerRange) -> String {
    // The dot makes `job_name` hash the whole text, so no backfill name can produce it.
    job_name(&format!("{backfill}.rebuild.{id}"), range)
}

/// The rebuild as this reconcile sees it, and what it decided.
pub(super) struct Rebuild {
    /// `status.rebuild` as it will be written.
    pub status: Option<RebuildStatus>,
    pub history: Vec<RebuildRecord>,
    /// Rebuild Jobs active or created (for the fair share of slots).
    active: u32,
    /// Ranges with a Job of the current rebuild.
    occupied: Vec<LedgerRange>,
    /// A Job of the current rebuild failed: why.
    job_failure: Option<String>,
    /// The partition the sequencer waits for (see [`Rebuilt::waiting_for`]).
    waiting_for: Option<LedgerRange>,
}

/// The range of `rebuild` widened to whole partitions of the grid.
fn widened(ctx: &Context, rebuild: &RebuildSpec) -> Option<LedgerRange> {
    let first = ctx.grid.partition_of(rebuild.ledger_start)?;
    let last = ctx.grid.partition_of(rebuild.ledger_end)?;
    Some(LedgerRange::new(first.start, last.end))
}

fn record(status: &RebuildStatus) -> RebuildRecord {
    RebuildRecord {
        id: status.id.clone(),
        ledger_start: status.ledger_start,
        ledger_end: status.ledger_end,
        phase: status.phase,
    }
}

fn refused(id: &str, range: (u32, u32), message: String) -> RebuildStatus {
    RebuildStatus {
        id: id.to_string(),
        ledger_start: range.0,
        ledger_end: range.1,
        phase: RebuildPhase::Failed,
        refused: true,
        partitions_done: 0,
        partitions_total: 0,
        partitions_identical: 0,
        done_through: None,
        summary: String::new(),
        message,
    }
}

/// Whether `status` still has work: it keeps the slot until it ends.
fn is_current(status: &RebuildStatus, requested: Option<&RebuildSpec>) -> bool {
    match status.phase {
        RebuildPhase::Pending | RebuildPhase::Running => true,
        // A failed Job holds it until the user deletes the Job, or asks for another id.
        RebuildPhase::Failed => !status.refused && requested.is_none_or(|r| r.id == status.id),
        RebuildPhase::Succeeded => false,
    }
}

/// A new request: accepted (Pending) or refused, with nothing changed.
fn accept(ctx: &Context, history: &[RebuildRecord], rebuild: &RebuildSpec) -> RebuildStatus {
    let asked = (rebuild.ledger_start, rebuild.ledger_end);
    let Some(range) = widened(ctx, rebuild) else {
        let message = format!(
            "refused: ledgers {}-{} are outside the backfill's partition grid",
            asked.0, asked.1
        );
        return refused(&rebuild.id, asked, message);
    };
    if let Some(before) = history.iter().find(|h| h.id == rebuild.id) {
        let message = format!(
            "refused: id {} named the rebuild of ledgers {}-{} ({}); a new range needs a new id",
            before.id,
            before.ledger_start,
            before.ledger_end,
            before.phase.as_str()
        );
        return refused(&rebuild.id, (range.start, range.end), message);
    }
    if !ctx.is_done(range) {
        let checkpoint = ctx
            .done_through
            .map_or("nothing is committed yet".to_string(), |d| {
                format!("the checkpoint is at ledger {d}")
            });
        let message = format!(
            "refused: ledgers {range} are not all committed ({checkpoint}); a rebuild replaces committed partitions only"
        );
        return refused(&rebuild.id, (range.start, range.end), message);
    }
    RebuildStatus {
        id: rebuild.id.clone(),
        ledger_start: range.start,
        ledger_end: range.end,
        phase: RebuildPhase::Pending,
        refused: false,
        partitions_done: 0,
        partitions_total: ctx.grid.partitions_through(Some(range.end))
            - ctx.grid.partitions_through(range.start.checked_sub(1)),
        partitions_identical: 0,
        done_through: None,
        summary: String::new(),
        message: String::new(),
    }
}

impl Rebuild {
    /// Step 1: the current rebuild: the one in `status` while it has work, else the one
    /// `spec.rebuild` asks for when its id is new (the one before goes to the history).
    pub fn start(ctx: &Context, events: &mut Vec<Note>) -> Self {
        let requested = ctx.spec.rebuild.as_ref();
        let previous = ctx.previous.rebuild.clone();
        let mut history = ctx.previous.rebuild_history.clone();
        let mut status = previous.clone();
        let keep = previous.as_ref().is_some_and(|p| is_current(p, requested));
        let new_request = requested.filter(|r| {
            !keep && previous.as_ref().is_none_or(|p| p.id != r.id)
                // Carried out before with the same range: nothing to do again.
                && !history.iter().any(|h| {
                    h.id == r.id
                        && h.phase == RebuildPhase::Succeeded
                        && widened(ctx, r)
                            .is_some_and(|w| (w.start, w.end) == (h.ledger_start, h.ledger_end))
                })
        });
        if let Some(request) = new_request {
            if let Some(done) = &previous {
                history.push(record(done));
                let excess = history.len().saturating_sub(REBUILD_HISTORY);
                history.drain(..excess);
            }
            let accepted = accept(ctx, &history, request);
            events.push(Note {
                warning: accepted.refused,
                reason: if accepted.refused {
                    reason::REBUILD_REFUSED
                } else {
                    reason::REBUILD_ACCEPTED
                },
                message: match accepted.refused {
                    true => format!("rebuild {}: {}", accepted.id, accepted.message),
                    false => format!(
                        "rebuild {} of ledgers {}-{} ({} partitions) accepted",
                        accepted.id,
                        accepted.ledger_start,
                        accepted.ledger_end,
                        accepted.partitions_total
                    ),
                },
            });
            status = Some(accepted);
        }
        Self {
            status,
            history,
            active: 0,
            occupied: Vec::new(),
            job_failure: None,
            waiting_for: None,
        }
    }

    /// The rebuild with work to do (not refused, not finished).
    fn working(&self) -> Option<&RebuildStatus> {
        self.status
            .as_ref()
            .filter(|s| !s.refused && s.phase != RebuildPhase::Succeeded)
    }

    /// Step 2: what the sequencer replaced in this reconcile moves `doneThrough`.
    pub fn apply_sequenced(
        &mut self,
        ctx: &Context,
        rebuilt: Option<&Rebuilt>,
        events: &mut Vec<Note>,
    ) {
        let Some(status) = self.status.as_mut().filter(|s| !s.refused) else {
            return;
        };
        let Some(rebuilt) = rebuilt.filter(|r| r.id == status.id) else {
            return;
        };
        if let (Some(first), Some(last)) = (rebuilt.replaced.first(), rebuilt.replaced.last()) {
            events.push(Note {
                warning: false,
                reason: reason::REPLACED,
                message: format!(
                    "rebuild {}: replaced {} partition(s) {}-{} (bronze_partition_replaced events appended)",
                    status.id,
                    rebuilt.replaced.len(),
                    first.start,
                    last.end
                ),
            });
        }
        status.done_through = status.done_through.max(rebuilt.done_through);
        status.partitions_identical += rebuilt.identical;
        if let Some(through) = status.done_through {
            status.partitions_done = ctx.grid.partitions_through(Some(through))
                - ctx
                    .grid
                    .partitions_through(status.ledger_start.checked_sub(1));
        }
        if let Some(fault) = &rebuilt.fault {
            self.job_failure = Some(fault.clone());
        }
        self.waiting_for = rebuilt.waiting_for;
    }

    /// Whether every partition of the range is done.
    fn finished(status: &RebuildStatus) -> bool {
        status.done_through.is_some_and(|d| d >= status.ledger_end)
    }

    /// Step 3: the rebuild Jobs: running ones occupy their range and a slot, finished ones are
    /// harvested once their partitions are replaced, failed ones hold the rebuild `Failed`, and
    /// Jobs of another rebuild are deleted (running) or harvested.
    pub fn classify(&mut self, ctx: &Context, work: &mut Work) {
        let current = self.working().map(|s| (s.id.clone(), s.done_through));
        let mut jobs: Vec<&ObservedJob> = ctx
            .input
            .jobs
            .iter()
            .filter(|j| j.rebuild.is_some())
            .collect();
        jobs.sort_by_key(|j| (j.range, j.attempt));
        for job in jobs {
            let ours = current
                .as_ref()
                .filter(|(id, _)| job.rebuild.as_deref() == Some(id.as_str()));
            let replaced = ours.is_some_and(|(_, done)| done.is_some_and(|d| job.range.end <= d));
            match (&job.state, ours) {
                (JobState::Active, None) => work.delete.push(job.name.clone()),
                (JobState::Active, Some(_)) => {
                    work.active += 1;
                    self.active += 1;
                    self.occupied.push(job.range);
                    work.running.push(crate::crd::RunningRange {
                        range: job.range.to_string(),
                        job: job.name.clone(),
                        attempt: job.attempt,
                    });
                }
                (_, None) => {
                    if !job.harvested {
                        work.harvest.push(job.name.clone());
                    }
                }
                (_, Some(_)) if replaced => {
                    if !job.harvested {
                        work.harvest.push(job.name.clone());
                    }
                }
                // Done, yet its first partition not replaced is not staged: the staging was
                // removed after the swap and the status did not record it (the operator died in
                // between). Run the range again: the partition comes out identical to what is
                // now committed and is recorded once.
                (JobState::Succeeded, Some(_))
                    if self
                        .waiting_for
                        .is_some_and(|w| job.range.contains(w.start)) =>
                {
                    work.delete.push(job.name.clone());
                    self.occupied.push(job.range);
                }
                (JobState::Succeeded, Some(_)) => self.occupied.push(job.range),
                (JobState::Failed(failure), Some(_)) => {
                    self.occupied.push(job.range);
                    let why = if failure.message.is_empty() {
                        &failure.reason
                    } else {
                        &failure.message
                    };
                    self.job_failure.get_or_insert(format!(
                        "Job {} (ledgers {}) failed ({}): {why}; the committed partitions are unchanged; delete the Job to try again",
                        job.name,
                        job.range,
                        failure.kind()
                    ));
                }
            }
        }
    }

    /// Step 4: new rebuild Jobs for the lowest ranges not replaced and without a Job, at most
    /// `cap` of them (a share of the free slots: see the module docs).
    pub fn schedule(&mut self, ctx: &Context, work: &mut Work, cap: u32) {
        if ctx.spec.suspend || self.job_failure.is_some() {
            return;
        }
        let Some(status) = self.working() else {
            return;
        };
        let (id, end) = (status.id.clone(), status.ledger_end);
        // `work.active` counts the rebuild's Jobs created here, not the backfill's new ones.
        let backfill_new = work.create.iter().filter(|c| c.rebuild.is_none()).count() as u32;
        let free = ctx
            .spec
            .max_concurrent_jobs
            .max(1)
            .saturating_sub(work.active + backfill_new);
        let mut slots = free.min(cap);
        let first = status
            .done_through
            .map_or(Some(status.ledger_start), |d| d.checked_add(1));
        let mut cursor = first
            .filter(|f| *f <= end)
            .and_then(|f| ctx.grid.partition_of(f));
        while slots > 0 {
            let Some(partition) = cursor else { break };
            let cell = ctx.grid.job_range_of(partition);
            let range = LedgerRange::new(cell.start.max(partition.start), cell.end.min(end));
            if !self.occupied.iter().any(|o| overlaps(*o, range)) {
                let name = rebuild_job_name(ctx.input.name, &id, range);
                work.running.push(crate::crd::RunningRange {
                    range: range.to_string(),
                    job: name.clone(),
                    attempt: 1,
                });
                work.create.push(JobRequest {
                    name,
                    range,
                    attempt: 1,
                    rebuild: Some(id.clone()),
                });
                self.occupied.push(range);
                work.active += 1;
                self.active += 1;
                slots -= 1;
            }
            cursor = range
                .end
                .checked_add(1)
                .filter(|n| *n <= end)
                .and_then(|n| ctx.grid.partition_of(n));
        }
    }

    /// The rebuild's first share of free slots: half of `maxConcurrentJobs` (at least one),
    /// less its Jobs already running.
    pub fn first_share(&self, ctx: &Context) -> u32 {
        ctx.spec
            .max_concurrent_jobs
            .max(1)
            .div_ceil(2)
            .saturating_sub(self.active)
    }

    /// Whether the rebuild still needs the controller soon.
    pub fn in_progress(&self) -> bool {
        self.working().is_some()
    }

    /// Step 5: the phase, message and summary, with an event when the phase changes.
    pub fn finish(
        mut self,
        ctx: &Context,
        events: &mut Vec<Note>,
    ) -> (Option<RebuildStatus>, Vec<RebuildRecord>) {
        let before = ctx
            .previous
            .rebuild
            .as_ref()
            .map(|p| (p.id.clone(), p.phase));
        let queued = ctx
            .spec
            .rebuild
            .as_ref()
            .filter(|r| self.status.as_ref().is_some_and(|s| s.id != r.id));
        if let Some(status) = self.status.as_mut().filter(|s| !s.refused) {
            let (phase, message) = if Self::finished(status) {
                (
                    RebuildPhase::Succeeded,
                    format!(
                        "{} partition(s) of ledgers {}-{} rebuilt: {} replaced, {} identical (kept)",
                        status.partitions_total,
                        status.ledger_start,
                        status.ledger_end,
                        status
                            .partitions_total
                            .saturating_sub(status.partitions_identical),
                        status.partitions_identical
                    ),
                )
            } else if let Some(failure) = &self.job_failure {
                (RebuildPhase::Failed, failure.clone())
            } else if !self.occupied.is_empty() || status.done_through.is_some() {
                (
                    RebuildPhase::Running,
                    format!(
                        "rebuilding ledgers {}-{}: {}/{} partitions replaced",
                        status.ledger_start,
                        status.ledger_end,
                        status.partitions_done,
                        status.partitions_total
                    ),
                )
            } else {
                let why = if ctx.spec.suspend {
                    "spec.suspend: no Job starts"
                } else {
                    "waiting for a free Job slot"
                };
                (RebuildPhase::Pending, why.to_string())
            };
            status.phase = phase;
            status.message = message;
            if let Some(next) = queued.filter(|_| is_current(status, ctx.spec.rebuild.as_ref())) {
                status.message = format!(
                    "{}; rebuild {} is queued: it starts when this one ends",
                    status.message, next.id
                );
            }
        }
        if let Some(status) = self.status.as_mut() {
            status.summary = format!(
                "{} {} {}/{}",
                status.id,
                status.phase.as_str(),
                status.partitions_done,
                status.partitions_total
            );
            let changed = before != Some((status.id.clone(), status.phase));
            let note = match status.phase {
                RebuildPhase::Succeeded => Some((false, reason::REBUILD_SUCCEEDED)),
                RebuildPhase::Failed if !status.refused => Some((true, reason::REBUILD_FAILED)),
                _ => None,
            };
            if let Some((warning, reason)) = note.filter(|_| changed) {
                events.push(Note {
                    warning,
                    reason,
                    message: format!("rebuild {}: {}", status.id, status.message),
                });
            }
        }
        (self.status, self.history)
    }
}
