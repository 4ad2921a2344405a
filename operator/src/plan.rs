//! Planning, as pure functions: from the spec, the previous status, what the sequencer just did
//! (see [`crate::sequencer`]) and the observed Jobs, decide which Jobs to create, delete or harvest,
//! and compute the whole new status. Nothing here does I/O or reads a clock.
//!
//! Rules (each has a test in `plan/tests.rs` or a property in `plan/props.rs`):
//! * The job grid: Job `j` covers partitions `[j·partitionsPerJob, (j+1)·partitionsPerJob)` of the
//!   partition grid (clipped to the range), so a range always maps to the same Job name.
//! * At most `maxConcurrentJobs` Jobs are active; new Jobs go to the lowest unfinished ranges that
//!   have no Job. In follow mode a Job is planned only once the datastore holds every object of
//!   its range: objects may be uploaded out of order, so the horizon is the highest ledger below
//!   which nothing is missing ([`Hole`]), not the newest object listed. The status names the
//!   missing object while the backfill waits for it.
//! * A failed Job is retried (deleted, then recreated with the next attempt number) only when its
//!   failure is retryable and attempts are left; bad input, conflicts and config errors (worker
//!   exit codes 2, 3, 4) are never retried: the range is reported Failed and no new Jobs start
//!   until the user deletes the failed Job (which means "try again").
//! * Follow mode: a Job that failed as bad input over a range where an object is missing now
//!   (it was planned before the hole was seen) is retried once the object is there, not failed.
//! * A Job is harvested (labelled, TTL set) only when all its partitions are sequenced.
//! * `suspend` stops creating Jobs; running ones finish.

use std::collections::BTreeMap;
use std::time::Duration;

use bronze::partition::{LedgerRange, PartitionGrid};
use bronze::publish::{Manifest, SealCheck};
use chrono::{DateTime, SecondsFormat, Utc};
use sha2::{Digest, Sha256};

use crate::crd::{
    BronzeBackfillSpec, BronzeBackfillStatus, CatalogStatus, CheckpointStatus, Condition,
    FailedRange, PasStatus, Phase, ProgressStatus, RunningRange,
};

/// Condition types, always all present, in this order.
pub const CONDITION_TYPES: [&str; 4] = ["Progressing", "Complete", "Degraded", "Suspended"];

/// The partition grid of a spec and the job grid on top of it, with index arithmetic: a grid can
/// hold billions of partitions, and nothing here walks all of them.
#[derive(Clone, Copy, Debug)]
pub struct Grid {
    partitions: PartitionGrid,
    anchor: u32,
    size: u32,
    per_job: u64,
}

impl Grid {
    pub fn of(spec: &BronzeBackfillSpec) -> Self {
        Self {
            partitions: PartitionGrid::new(
                spec.ledger_start,
                spec.ledger_end,
                spec.partition_size.max(1),
            ),
            anchor: spec.ledger_start,
            size: spec.partition_size.max(1),
            per_job: u64::from(spec.partitions_per_job.max(1)),
        }
    }

    pub fn first_ledger(&self) -> u32 {
        self.partitions.first_ledger()
    }

    /// `None` when following the tip.
    pub fn last_ledger(&self) -> Option<u32> {
        self.partitions.last_ledger()
    }

    pub fn partition_of(&self, seq: u32) -> Option<LedgerRange> {
        self.partitions.partition_of(seq)
    }

    fn index_of(&self, seq: u32) -> u64 {
        u64::from(seq.saturating_sub(self.anchor)) / u64::from(self.size)
    }

    /// Partition number `index` of the grid (clipped like the grid clips it).
    fn partition(&self, index: u64) -> Option<LedgerRange> {
        let start = u64::from(self.anchor) + index * u64::from(self.size);
        let start = u32::try_from(start).ok()?.max(self.first_ledger());
        self.partition_of(start)
            .filter(|p| self.index_of(p.start) == index)
    }

    /// The partition after the one ending at `done_through` (or the first), if the grid has one.
    pub fn next_partition(&self, done_through: Option<u32>) -> Option<LedgerRange> {
        match done_through {
            None => self.partition_of(self.first_ledger()),
            Some(last) => self.partition_of(last.checked_add(1)?),
        }
    }

    /// The Job range holding `partition`: whole partitions of one job-grid cell.
    pub fn job_range_of(&self, partition: LedgerRange) -> LedgerRange {
        let cell = self.index_of(partition.start) / self.per_job;
        let first = (cell * self.per_job).max(self.index_of(self.first_ledger()));
        let mut last = cell * self.per_job + self.per_job - 1;
        if let Some(end) = self.last_ledger() {
            last = last.min(self.index_of(end));
        }
        let start = self.partition(first).map_or(partition.start, |p| p.start);
        // The cell may run past u32::MAX (open grid near the top): clip to the last partition.
        let end = (first..=last)
            .rev()
            .find_map(|i| self.partition(i))
            .map_or(partition.end, |p| p.end);
        LedgerRange::new(start, end)
    }

    /// Partitions from the first through the one ending at `through`.
    pub fn partitions_through(&self, through: Option<u32>) -> u64 {
        match through {
            Some(t) if t >= self.first_ledger() => {
                self.index_of(t) + 1 - self.index_of(self.first_ledger())
            }
            _ => 0,
        }
    }

    /// Partitions in a bounded grid; `None` when following the tip.
    pub fn total_partitions(&self) -> Option<u64> {
        self.last_ledger().map(|l| self.partitions_through(Some(l)))
    }
}

/// What the operator sees of one of its Jobs (see [`crate::job::observe`]).
#[derive(Clone, Debug, PartialEq)]
pub struct ObservedJob {
    pub name: String,
    pub range: LedgerRange,
    pub attempt: u32,
    pub state: JobState,
    /// Already labelled harvested (its partitions were sequenced, its TTL set).
    pub harvested: bool,
    /// The `ingested_at` the Job's worker writes.
    pub ingested_at: Option<String>,
    /// A rebuild Job: the rebuild's id.
    pub rebuild: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum JobState {
    Active,
    Succeeded,
    Failed(JobFailure),
}

/// Why a Job failed, from its `Failed` condition.
#[derive(Clone, Debug, PartialEq)]
pub struct JobFailure {
    /// The condition's reason: PodFailurePolicy, BackoffLimitExceeded, DeadlineExceeded, ...
    pub reason: String,
    pub message: String,
    /// The worker's exit code, when the pod failure policy matched it.
    pub exit_code: Option<i32>,
}

impl JobFailure {
    /// The status reason: the worker's exit code class ([`bronze::exit`]), else the Job's
    /// reason.
    pub fn kind(&self) -> &'static str {
        match self.exit_code.and_then(|c| u8::try_from(c).ok()) {
            Some(bronze::exit::CONFIG) => reason::CONFIG,
            Some(bronze::exit::BAD_INPUT) => reason::BAD_INPUT,
            Some(bronze::exit::CONFLICT) => reason::CONFLICT,
            _ => match self.reason.as_str() {
                "PodFailurePolicy" => reason::BAD_INPUT,
                "DeadlineExceeded" => reason::DEADLINE_EXCEEDED,
                _ => reason::RETRYABLE,
            },
        }
    }

    /// Whether another Job may succeed: bad input, conflicts and config errors never will.
    pub fn retryable(&self) -> bool {
        !matches!(
            self.kind(),
            reason::CONFIG | reason::BAD_INPUT | reason::CONFLICT
        )
    }
}

/// A committed partition that cannot be sequenced: the backfill stops there until it is fixed.
#[derive(Clone, Debug, PartialEq)]
pub struct Fault {
    pub range: LedgerRange,
    /// VerificationFailed or AuditConflict.
    pub reason: &'static str,
    pub message: String,
}

/// What the sequencer did in this reconcile (see [`crate::sequencer::sequence`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sequenced {
    pub checkpoint: Option<CheckpointStatus>,
    pub chain_head: Option<String>,
    pub event_count: u64,
    /// Where the PAS chain is recorded; `None` when PAS is off.
    pub outbox: Option<String>,
    /// PAS events not yet delivered to the endpoint (`None` without delivery).
    pub undelivered: Option<u64>,
    /// Partitions sequenced in this reconcile, in order.
    pub newly: Vec<LedgerRange>,
    /// The next partition to sequence, not committed yet.
    pub waiting_for: Option<LedgerRange>,
    pub fault: Option<Fault>,
    /// A transient problem (storage or PAS outbox unreachable); retried on the next reconcile.
    pub trouble: Option<String>,
    /// Stopped at the per-reconcile limit with more to do.
    pub more: bool,
    /// The catalog's rows (`None` without `spec.catalog`).
    pub catalog: Option<CatalogProgress>,
    /// The replacements of the current rebuild (`None`: none made or checked).
    pub rebuilt: Option<Rebuilt>,
}

/// What the sequencer found and did in the catalog.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CatalogProgress {
    /// The database, password masked.
    pub database: String,
    pub strict: bool,
    /// `Some(last ledger of the recorded run from the grid's start)` (`Some(None)`: nothing
    /// recorded); `None` when the catalog could not be read.
    pub recorded_through: Option<Option<u32>>,
    /// Why writing stopped in this reconcile.
    pub error: Option<String>,
}

/// Follow mode: the first datastore object missing below the tip.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hole {
    /// The object's key in the datastore.
    pub key: String,
    /// The ledgers the object holds.
    pub start: u32,
    pub end: u32,
}

impl Hole {
    fn describe(&self) -> String {
        let ledgers = if self.start == self.end {
            format!("ledger {}", self.start)
        } else {
            format!("ledgers {}-{}", self.start, self.end)
        };
        format!("datastore object {} ({ledgers})", self.key)
    }
}

/// Follow mode: the ledgers to look for missing objects in before planning, `[first, last]`:
/// from the first partition after the checkpoint up to the tip, at most two rounds of Jobs ahead
/// (the planner never looks further in one reconcile). `None` when there is nothing to look at.
pub fn hole_window(
    spec: &BronzeBackfillSpec,
    checkpoint: Option<u32>,
    tip: u32,
) -> Option<(u32, u32)> {
    let first = Grid::of(spec).next_partition(checkpoint)?.start;
    let ahead = u64::from(spec.max_concurrent_jobs.max(1))
        * u64::from(spec.partitions_per_job.max(1))
        * u64::from(spec.partition_size.max(1))
        * 2;
    let last = (u64::from(first) + ahead - 1).min(u64::from(tip));
    (u64::from(first) <= last).then_some((first, last as u32))
}

/// Everything the planner looks at.
#[derive(Clone, Debug)]
pub struct PlanInput<'a> {
    pub name: &'a str,
    pub spec: &'a BronzeBackfillSpec,
    pub generation: Option<i64>,
    pub previous: Option<&'a BronzeBackfillStatus>,
    pub ingested_at: &'a str,
    pub sequenced: &'a Sequenced,
    pub jobs: &'a [ObservedJob],
    /// Follow mode: the newest ledger in the datastore, if known.
    pub tip: Option<u32>,
    /// Follow mode: the first object missing in [`hole_window`], if any.
    pub hole: Option<&'a Hole>,
    pub now: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobRequest {
    pub name: String,
    pub range: LedgerRange,
    pub attempt: u32,
    /// The rebuild (`spec.rebuild.id`) this Job rebuilds partitions for; `None` for the
    /// backfill's own Jobs, which adopt every committed partition they meet.
    pub rebuild: Option<String>,
}

/// A Kubernetes Event to publish after the status is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub create: Vec<JobRequest>,
    /// Jobs to delete (failed ones to retry, Jobs outside the range).
    pub delete: Vec<String>,
    /// Jobs whose partitions are all sequenced: label them and set their TTL.
    pub harvest: Vec<String>,
    pub status: BronzeBackfillStatus,
    pub events: Vec<Note>,
    pub requeue: Duration,
}

/// Deterministic Job name for a range: `<backfill>-<start>-<end>`, at most 63 characters. Long or
/// dotted backfill names are shortened and get a hash of the full name, so names stay unique.
pub fn job_name(backfill: &str, range: LedgerRange) -> String {
    let suffix = format!("-{}-{}", range.start, range.end);
    let clean: String = backfill
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    if clean == backfill && clean.len() + suffix.len() <= 63 {
        return format!("{clean}{suffix}");
    }
    let hash = short_hash(backfill);
    let room = 63 - suffix.len() - hash.len() - 1;
    let prefix = clean[..clean.len().min(room)].trim_end_matches('-');
    format!("{prefix}-{hash}{suffix}")
}

/// A label value naming the backfill (label values hold at most 63 characters).
pub fn backfill_label(backfill: &str) -> String {
    if backfill.len() <= 63 {
        return backfill.to_string();
    }
    let hash = short_hash(backfill);
    let prefix = backfill[..63 - hash.len() - 1].trim_end_matches(['-', '.']);
    format!("{prefix}-{hash}")
}

fn short_hash(text: &str) -> String {
    hex::encode(&Sha256::digest(text.as_bytes())[..4])
}

/// What a manifest must say to be sequenced after the checkpoint.
#[derive(Clone, Debug)]
pub struct Expected<'a> {
    pub network: &'a str,
    pub era_id: &'a str,
    pub version_label: &'a str,
    pub ingested_at: &'a str,
    /// Hash of the ledger before the partition, when known.
    pub prior_hash: Option<&'a str>,
}

/// Verifies a committed partition's manifest before it is sequenced: the right range and dataset,
/// a well-formed checksum, one row per ledger, chain hashes that link to the previous partition,
/// the backfill's `ingested_at`, and (when known) the Parquet file's size. Returns the checkpoint
/// it moves to.
pub fn verify_manifest(
    manifest: &Manifest,
    seal: &SealCheck,
    range: LedgerRange,
    expected: &Expected,
    parquet_size: Option<u64>,
) -> Result<CheckpointStatus, String> {
    let expect = bronze::publish::Expect {
        range,
        network: expected.network,
        era_id: expected.era_id,
        version_label: expected.version_label,
        seal: Some(seal),
        parquet_size,
        prior_hash: expected.prior_hash,
        ingested_at: Some(expected.ingested_at),
    };
    bronze::sequence::policy::accept(manifest, &expect)
        .map(crate::sequencer::checkpoint_status)
        .map_err(|refused| refused.to_string())
}

fn overlaps(a: LedgerRange, b: LedgerRange) -> bool {
    a.start <= b.end && b.start <= a.end
}

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Reasons recorded for Job failures (as opposed to faults found in storage).
fn is_job_failure(reason: &str) -> bool {
    !matches!(reason, reason::VERIFICATION_FAILED | reason::AUDIT_CONFLICT)
}

/// Plans one reconcile, in steps: classify the observed Jobs, carry retries decided earlier,
/// stop at a fault the sequencer found, schedule new Jobs, then derive the phase, the events,
/// the conditions and the progress from what was decided.
pub fn plan(input: &PlanInput) -> Plan {
    let previous = input.previous.cloned().unwrap_or_default();
    let ctx = Context::new(input, &previous);
    let mut work = Work::default();
    let mut rebuild = Rebuild::start(&ctx, &mut work.events);
    rebuild.apply_sequenced(&ctx, ctx.seq.rebuilt.as_ref(), &mut work.events);
    classify_jobs(&ctx, &mut work);
    rebuild.classify(&ctx, &mut work);
    carry_retries(&ctx, &mut work);
    block_at_fault(&ctx, &mut work);
    // The rebuild and the backfill share the Job slots (see `plan::rebuild`).
    rebuild.schedule(&ctx, &mut work, rebuild.first_share(&ctx));
    schedule(&ctx, &mut work);
    rebuild.schedule(&ctx, &mut work, u32::MAX);
    work_events(&ctx, &mut work);
    let rebuilding = rebuild.in_progress();
    let (rebuild, rebuild_history) = rebuild.finish(&ctx, &mut work.events);
    work.failed.sort_by_key(|(r, _)| *r);
    work.failed.dedup_by_key(|(r, _)| *r);
    work.running
        .sort_by_key(|r| r.range.parse::<LedgerRange>().ok());

    let state = phase(&ctx, &work);
    phase_event(&ctx, &state, &mut work.events);
    let health = health(&ctx, &mut work.events);
    let conditions = conditions(&ctx, &work, &state, &health);
    let (progress, ledgers_per_second) = progress(&ctx);
    let mut requeue = requeue(&ctx, state.phase, &health);
    if rebuilding {
        requeue = requeue.min(Duration::from_secs(60));
    }

    let seq = ctx.seq;
    let status = BronzeBackfillStatus {
        phase: Some(state.phase),
        message: Some(state.message),
        observed_generation: input.generation,
        conditions,
        ingested_at: Some(input.ingested_at.to_string()),
        checkpoint: seq.checkpoint.clone(),
        pas: seq.outbox.as_ref().map(|outbox| PasStatus {
            chain_head: seq.chain_head.clone(),
            event_count: seq.event_count,
            outbox: outbox.clone(),
            undelivered: seq.undelivered,
        }),
        catalog: health.catalog,
        progress: Some(progress),
        last_committed_ledger: ctx.done_through,
        ledgers_per_second,
        tip_ledger: if ctx.spec.follows_tip() {
            input.tip
        } else {
            None
        },
        running_partitions: work.running,
        failed_partitions: work.failed.into_iter().map(|(_, f)| f).collect(),
        rebuild,
        rebuild_history,
    };
    Plan {
        create: work.create,
        delete: work.delete,
        harvest: work.harvest,
        status,
        events: work.events,
        requeue,
    }
}

/// What every step reads: the input and what follows from it directly.
struct Context<'a> {
    input: &'a PlanInput<'a>,
    spec: &'a BronzeBackfillSpec,
    grid: Grid,
    seq: &'a Sequenced,
    /// The checkpoint: the last ledger sequenced.
    done_through: Option<u32>,
    max_attempts: u32,
    previous: &'a BronzeBackfillStatus,
    previous_failures: BTreeMap<LedgerRange, &'a FailedRange>,
}

impl<'a> Context<'a> {
    fn new(input: &'a PlanInput<'a>, previous: &'a BronzeBackfillStatus) -> Self {
        Self {
            input,
            spec: input.spec,
            grid: Grid::of(input.spec),
            seq: input.sequenced,
            done_through: input
                .sequenced
                .checkpoint
                .as_ref()
                .map(|c| c.last_committed_ledger),
            max_attempts: input.spec.worker.max_attempts.max(1),
            previous,
            previous_failures: previous
                .failed_partitions
                .iter()
                .filter_map(|f| Some((f.range.parse::<LedgerRange>().ok()?, f)))
                .collect(),
        }
    }

    /// Whether every partition of `r` is sequenced.
    fn is_done(&self, r: LedgerRange) -> bool {
        self.done_through.is_some_and(|d| r.end <= d)
    }

    /// The backfill's own Jobs (not a rebuild's).
    fn backfill_jobs(&self) -> impl Iterator<Item = &'a ObservedJob> {
        self.input.jobs.iter().filter(|j| j.rebuild.is_none())
    }
}

/// What the planner has decided so far in this reconcile.
#[derive(Default)]
struct Work {
    create: Vec<JobRequest>,
    delete: Vec<String>,
    harvest: Vec<String>,
    events: Vec<Note>,
    running: Vec<RunningRange>,
    failed: Vec<(LedgerRange, FailedRange)>,
    /// Ranges that must not get a new Job now (a Job exists or is being deleted).
    occupied: Vec<LedgerRange>,
    /// The attempt number of the next Job for a range whose previous Job failed retryably.
    next_attempt: BTreeMap<LedgerRange, u32>,
    active: u32,
    /// The lowest range that failed for good: nothing from there on gets a Job.
    blocked_at: Option<u32>,
}

impl Work {
    fn block(&mut self, at: u32) {
        self.blocked_at = Some(self.blocked_at.map_or(at, |b| b.min(at)));
    }

    /// A failed Job: recorded (with an event when new), then deleted to run again or, when it
    /// cannot be retried, a block on its range.
    fn fail_job(
        &mut self,
        ctx: &Context,
        job: &ObservedJob,
        (reason, message): (&str, String),
        exit_code: Option<i32>,
        retry: bool,
    ) {
        record_failure(
            &mut self.failed,
            &mut self.events,
            &ctx.previous_failures,
            job,
            reason,
            message,
            exit_code,
            retry,
        );
        self.occupied.push(job.range);
        if retry {
            self.delete.push(job.name.clone());
            self.next_attempt.insert(job.range, job.attempt + 1);
        } else {
            self.block(job.range.start);
        }
    }
}

/// Step 1: each observed Job is running, done (harvest it), outside the range (delete it),
/// committed ahead of the checkpoint, or failed (retry or block).
fn classify_jobs(ctx: &Context, work: &mut Work) {
    // Rebuild Jobs are the rebuild's (`plan::rebuild`).
    let mut jobs: Vec<&ObservedJob> = ctx.backfill_jobs().collect();
    jobs.sort_by_key(|j| (j.range, j.attempt));
    for job in jobs {
        let outside = ctx
            .grid
            .last_ledger()
            .is_some_and(|last| job.range.start > last);
        match &job.state {
            _ if outside => {
                // The range shrank under it (ledgerEnd lowered): nothing of it is wanted.
                work.delete.push(job.name.clone());
                work.occupied.push(job.range);
            }
            JobState::Active => {
                work.active += 1;
                work.occupied.push(job.range);
                work.running.push(RunningRange {
                    range: job.range.to_string(),
                    job: job.name.clone(),
                    attempt: job.attempt,
                });
            }
            // Failed and done: its partitions got committed and sequenced anyway (a later
            // attempt).
            JobState::Succeeded | JobState::Failed(_) if ctx.is_done(job.range) => {
                if !job.harvested {
                    work.harvest.push(job.name.clone());
                }
            }
            JobState::Succeeded => {
                let seq = ctx.seq;
                let lost = seq.fault.is_none()
                    && seq.waiting_for.is_some_and(|w| job.range.contains(w.start));
                if !lost {
                    work.occupied.push(job.range); // committed ahead; waits for earlier ranges
                    continue;
                }
                // It says done, yet its first unsequenced partition has no manifest: the data
                // was removed (or never written). Run the range again.
                let message = format!(
                    "Job {} completed but partition {} has no committed manifest",
                    job.name,
                    seq.waiting_for.map(|w| w.to_string()).unwrap_or_default()
                );
                let retry = job.attempt < ctx.max_attempts;
                work.fail_job(ctx, job, (reason::MISSING_MANIFEST, message), None, retry);
            }
            JobState::Failed(failure) => {
                // Follow mode: its worker found an object missing that has not arrived yet.
                let late = ctx.input.hole.filter(|h| {
                    ctx.spec.follows_tip()
                        && failure.kind() == reason::BAD_INPUT
                        && overlaps(job.range, LedgerRange::new(h.start, h.end))
                });
                let retry =
                    late.is_some() || (failure.retryable() && job.attempt < ctx.max_attempts);
                let mut message = if failure.message.is_empty() {
                    failure.reason.clone()
                } else {
                    failure.message.clone()
                };
                if let Some(hole) = late {
                    message = format!(
                        "{message}; {} is not in the datastore yet: the range runs again once it is",
                        hole.describe()
                    );
                }
                work.fail_job(
                    ctx,
                    job,
                    (failure.kind(), message),
                    failure.exit_code,
                    retry,
                );
            }
        }
    }
}

/// Step 2: retries decided in an earlier reconcile whose Job is gone now keep their attempt
/// count. A final failure whose Job is gone was cleared by the user (deleting the Job = try
/// again).
fn carry_retries(ctx: &Context, work: &mut Work) {
    for (range, record) in &ctx.previous_failures {
        let job_gone = !ctx.backfill_jobs().any(|j| overlaps(j.range, *range));
        if job_gone && record.retrying && is_job_failure(&record.reason) && !ctx.is_done(*range) {
            work.next_attempt
                .entry(*range)
                .or_insert(record.attempts.saturating_add(1));
            work.failed.push((*range, (*record).clone()));
        }
    }
}

/// Step 3: a committed partition the sequencer cannot take blocks everything from it on.
fn block_at_fault(ctx: &Context, work: &mut Work) {
    let Some(fault) = &ctx.seq.fault else {
        return;
    };
    work.block(fault.range.start);
    let new = !ctx
        .previous_failures
        .get(&fault.range)
        .is_some_and(|f| f.reason == fault.reason && f.message == fault.message);
    if new {
        work.events.push(Note {
            warning: true,
            reason: fault.reason,
            message: format!("partition {}: {}", fault.range, fault.message),
        });
    }
    work.failed.push((
        fault.range,
        FailedRange {
            range: fault.range.to_string(),
            job: String::new(),
            reason: fault.reason.to_string(),
            message: fault.message.clone(),
            exit_code: None,
            attempts: 0,
            retrying: false,
        },
    ));
}

/// Step 4: new Jobs for the lowest unfinished ranges without a Job, up to the concurrency cap,
/// below the horizon (follow mode) and below a block.
fn schedule(ctx: &Context, work: &mut Work) {
    let (spec, input, grid) = (ctx.spec, ctx.input, &ctx.grid);
    let horizon = if spec.follows_tip() {
        // Only ledgers below the first missing object: a Job over a hole would fail.
        match input.hole {
            Some(hole) => input.tip.map(|t| t.min(hole.start.saturating_sub(1))),
            None => input.tip,
        }
    } else {
        grid.last_ledger()
    };
    let Some(horizon) = horizon.filter(|_| !spec.suspend) else {
        return;
    };
    let mut slots = spec.max_concurrent_jobs.max(1).saturating_sub(work.active);
    let mut cursor = grid.next_partition(ctx.done_through);
    // Bounded look-ahead past ranges that already have Jobs.
    let mut looked = 0;
    while slots > 0 && looked < 10_000 {
        let Some(partition) = cursor else { break };
        let range = grid.job_range_of(partition);
        if range.end > horizon {
            break; // follow mode: the tip does not cover this range yet
        }
        if work.blocked_at.is_some_and(|b| range.end >= b) {
            break; // ranges below a final failure still run; nothing from it on
        }
        if !work.occupied.iter().any(|o| overlaps(*o, range)) {
            let attempt = work.next_attempt.get(&range).copied().unwrap_or(1);
            let name = job_name(input.name, range);
            work.running.push(RunningRange {
                range: range.to_string(),
                job: name.clone(),
                attempt,
            });
            work.failed.retain(|(r, _)| *r != range);
            work.create.push(JobRequest {
                name,
                range,
                attempt,
                rebuild: None,
            });
            slots -= 1;
        }
        looked += 1;
        cursor = range.end.checked_add(1).and_then(|n| grid.partition_of(n));
    }
}

/// Step 5a: events for the Jobs created and the partitions sequenced.
fn work_events(ctx: &Context, work: &mut Work) {
    let create = &work.create;
    if !create.is_empty() {
        let ranges: Vec<String> = create.iter().take(8).map(|c| c.range.to_string()).collect();
        let more = create.len().saturating_sub(ranges.len());
        work.events.push(Note {
            warning: false,
            reason: reason::JOBS_CREATED,
            message: format!(
                "created {} Job(s) for ranges {}{}",
                create.len(),
                ranges.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ),
        });
    }
    let newly = &ctx.seq.newly;
    if let (Some(first), Some(last)) = (newly.first(), newly.last()) {
        work.events.push(Note {
            warning: false,
            reason: reason::COMMITTED,
            message: format!(
                "sequenced {} partition(s) {}-{}; checkpoint at ledger {}",
                newly.len(),
                first.start,
                last.end,
                last.end
            ),
        });
    }
}

/// The phase and what the other steps need to know about how it was reached.
struct PhaseState {
    phase: Phase,
    message: String,
    /// Jobs are running or were just created.
    in_flight: bool,
    /// A Job succeeded over partitions not sequenced yet.
    waiting: bool,
    blocked: bool,
}

/// Step 5b: the phase and its message.
fn phase(ctx: &Context, work: &Work) -> PhaseState {
    let (spec, input, seq) = (ctx.spec, ctx.input, ctx.seq);
    let active = work.active;
    let waiting = ctx
        .backfill_jobs()
        .any(|j| j.state == JobState::Succeeded && !ctx.is_done(j.range));
    let finished =
        ctx.grid.last_ledger().is_some() && ctx.grid.next_partition(ctx.done_through).is_none();
    let in_flight = active > 0 || !work.create.is_empty();
    let blocked = work.blocked_at.is_some();
    // Follow mode: the object the next Job waits for, when it is what holds planning back.
    let waiting_for_object = input
        .hole
        .filter(|_| spec.follows_tip())
        .filter(|h| input.tip.is_some_and(|tip| h.start <= tip))
        .map(Hole::describe);
    let (phase, message) = if blocked {
        let (range, f) = work
            .failed
            .iter()
            .find(|(_, f)| !f.retrying)
            .cloned()
            .unwrap_or_else(|| (LedgerRange::new(0, 0), fallback_failure()));
        (
            Phase::Failed,
            format!(
                "partition {range} failed ({}): {}; delete the failed Job (or fix the data) to try again",
                f.reason, f.message
            ),
        )
    } else if finished {
        (
            Phase::Succeeded,
            format!(
                "all {} partitions committed",
                ctx.grid.total_partitions().unwrap_or(0)
            ),
        )
    } else if spec.suspend {
        (
            Phase::Suspended,
            if active > 0 {
                format!("suspended; {active} running Job(s) finishing")
            } else {
                "suspended".to_string()
            },
        )
    } else if spec.follows_tip() && !in_flight && !waiting && !seq.more {
        (
            Phase::Following,
            match (input.tip, waiting_for_object.as_ref()) {
                (Some(tip), Some(missing)) => format!(
                    "waiting for {missing}: newer ledgers up to {tip} are in the datastore (objects arriving out of order)"
                ),
                (Some(tip), None) => format!("caught up with the datastore tip (ledger {tip})"),
                (None, _) => "waiting for the datastore tip".to_string(),
            },
        )
    } else if ctx.done_through.is_none() && !in_flight && !waiting {
        (Phase::Pending, "nothing started yet".to_string())
    } else {
        let running = format!("{} Job(s) running", active as usize + work.create.len());
        (
            Phase::Running,
            match &waiting_for_object {
                Some(missing) => format!("{running}; waiting for {missing}"),
                None => running,
            },
        )
    };
    PhaseState {
        phase,
        message,
        in_flight,
        waiting,
        blocked,
    }
}

/// Step 5c: an event when the phase changes to one worth telling.
fn phase_event(ctx: &Context, state: &PhaseState, events: &mut Vec<Note>) {
    let before = ctx.previous.phase;
    if before == Some(state.phase) {
        return;
    }
    let note = match state.phase {
        Phase::Suspended => Some((false, reason::SUSPENDED)),
        Phase::Succeeded => Some((false, reason::SUCCEEDED)),
        Phase::Failed => Some((true, reason::FAILED)),
        Phase::Following => Some((false, reason::CAUGHT_UP)),
        Phase::Running if before == Some(Phase::Suspended) => Some((false, reason::RESUMED)),
        _ => None,
    };
    if let Some((warning, reason)) = note {
        events.push(Note {
            warning,
            reason,
            message: state.message.clone(),
        });
    }
}

/// Storage and catalog trouble, as the conditions and requeue need it.
struct Health {
    /// The reason for `seq.trouble`.
    trouble_reason: &'static str,
    catalog: Option<CatalogStatus>,
    /// A lenient catalog's error: sequencing goes on, the rows are written later.
    catalog_behind: Option<String>,
}

/// Step 5d: storage and catalog trouble, with an event when it starts and when the catalog
/// catches up.
fn health(ctx: &Context, events: &mut Vec<Note>) -> Health {
    let (seq, previous) = (ctx.seq, ctx.previous);
    // A catalog failure is reported as the catalog's (in strict mode it is also the trouble).
    let catalog_error = seq.catalog.as_ref().and_then(|c| c.error.clone());
    let trouble_reason = match (&seq.trouble, &catalog_error) {
        (Some(t), Some(c)) if t.starts_with(c.as_str()) => reason::CATALOG_UNAVAILABLE,
        _ => reason::STORAGE_UNAVAILABLE,
    };
    if let Some(trouble) = &seq.trouble {
        let known = previous
            .conditions
            .iter()
            .any(|c| c.type_ == "Degraded" && c.message == *trouble);
        if !known {
            events.push(Note {
                warning: true,
                reason: trouble_reason,
                message: trouble.clone(),
            });
        }
    }
    let catalog = seq
        .catalog
        .as_ref()
        .map(|c| catalog_status(c, previous.catalog.as_ref(), &ctx.grid, ctx.done_through));
    let catalog_behind = catalog
        .as_ref()
        .filter(|c| !c.strict)
        .and_then(|c| c.last_error.clone());
    if let Some(message) = &catalog_behind
        && seq.trouble.is_none()
        && previous
            .catalog
            .as_ref()
            .and_then(|c| c.last_error.as_ref())
            != Some(message)
    {
        events.push(Note {
            warning: true,
            reason: reason::CATALOG_BEHIND,
            message: format!(
                "{message}; sequencing goes on (catalog.strict is false) and the missing rows are written when the catalog is back"
            ),
        });
    }
    if let (Some(now), Some(before)) = (&catalog, &previous.catalog)
        && now.last_error.is_none()
        && now.unrecorded_partitions == 0
        && (before.last_error.is_some() || before.unrecorded_partitions > 0)
    {
        events.push(Note {
            warning: false,
            reason: reason::CATALOG_CAUGHT_UP,
            message: format!(
                "every sequenced partition has its catalog rows{}",
                now.recorded_through
                    .map(|l| format!(" (through ledger {l})"))
                    .unwrap_or_default()
            ),
        });
    }
    Health {
        trouble_reason,
        catalog,
        catalog_behind,
    }
}

/// Step 6a: the four conditions, always all present, in [`CONDITION_TYPES`] order.
fn conditions(ctx: &Context, work: &Work, state: &PhaseState, health: &Health) -> Vec<Condition> {
    let (previous, input, seq) = (ctx.previous, ctx.input, ctx.seq);
    let phase = state.phase;
    let degraded = work.failed.first().map(|(r, f)| {
        (
            if f.retrying {
                reason::RETRYING
            } else {
                reason::PARTITION_FAILED
            },
            format!("partition {r}: {} ({})", f.message, f.reason),
        )
    });
    vec![
        condition(
            previous,
            "Progressing",
            state.in_flight || seq.more || (state.waiting && !state.blocked),
            match phase {
                Phase::Running => (reason::JOBS_RUNNING, state.message.clone()),
                _ => (phase.as_str(), state.message.clone()),
            },
            input,
        ),
        condition(
            previous,
            "Complete",
            phase == Phase::Succeeded,
            (
                if phase == Phase::Succeeded {
                    reason::SUCCEEDED
                } else {
                    reason::IN_PROGRESS
                },
                String::new(),
            ),
            input,
        ),
        condition(
            previous,
            "Degraded",
            degraded.is_some() || seq.trouble.is_some() || health.catalog_behind.is_some(),
            match (&degraded, &seq.trouble, &health.catalog_behind) {
                (Some((reason, msg)), _, _) => (*reason, msg.clone()),
                (None, Some(trouble), _) => (health.trouble_reason, trouble.clone()),
                (None, None, Some(msg)) => (reason::CATALOG_BEHIND, msg.clone()),
                (None, None, None) => (reason::HEALTHY, String::new()),
            },
            input,
        ),
        condition(
            previous,
            "Suspended",
            ctx.spec.suspend,
            (
                if ctx.spec.suspend {
                    reason::SPEC_SUSPEND
                } else {
                    reason::NOT_SUSPENDED
                },
                String::new(),
            ),
            input,
        ),
    ]
}

/// Step 6b: partitions committed out of the total, and the rate.
fn progress(ctx: &Context) -> (ProgressStatus, Option<f64>) {
    let (grid, previous, now) = (&ctx.grid, ctx.previous, ctx.input.now);
    let last_ledger = ctx.done_through;
    let committed = grid.partitions_through(last_ledger);
    let total = grid.total_partitions();
    let percent = total.map(|t| {
        committed
            .saturating_mul(100)
            .checked_div(t)
            .map_or(100, |p| p as u32)
    });
    let summary = match (total, percent) {
        (Some(t), Some(p)) => format!("{committed}/{t} ({p}%)"),
        _ => format!("{committed}/-"),
    };
    let (started_at, started_from) = match &previous.progress {
        Some(p) => (p.started_at.clone(), p.started_from_ledger),
        None => (
            rfc3339(now),
            last_ledger.unwrap_or(grid.first_ledger().saturating_sub(1)),
        ),
    };
    // Re-derived only when the checkpoint moves: a rate recomputed from the clock on every pass
    // would change the status on every pass, and each status write wakes the controller again
    // (a hot loop while idle). So it is the average as of the last commit.
    let moved = previous.last_committed_ledger != last_ledger || previous.progress.is_none();
    let ledgers_per_second = if !moved {
        previous.ledgers_per_second
    } else {
        DateTime::parse_from_rfc3339(&started_at)
            .ok()
            .map(|t| (now - t.with_timezone(&Utc)).num_milliseconds() as f64 / 1000.0)
            .filter(|secs| *secs >= 1.0)
            .map(|secs| {
                let ledgers = f64::from(
                    last_ledger
                        .unwrap_or(started_from)
                        .saturating_sub(started_from),
                );
                (ledgers / secs * 100.0).round() / 100.0
            })
    };
    let progress = ProgressStatus {
        committed_partitions: committed,
        total_partitions: total,
        percent,
        summary,
        started_at,
        started_from_ledger: started_from,
    };
    (progress, ledgers_per_second)
}

/// Step 7: when to reconcile again if nothing else wakes the controller.
fn requeue(ctx: &Context, phase: Phase, health: &Health) -> Duration {
    let seq = ctx.seq;
    if seq.more {
        Duration::from_secs(1)
    } else if seq.trouble.is_some() {
        Duration::from_secs(15)
    } else if health.catalog_behind.is_some() {
        // Lenient catalog: come back soon to write the missing rows.
        Duration::from_secs(30)
    } else {
        match phase {
            Phase::Following => {
                Duration::from_secs(u64::from(ctx.spec.source.poll_interval_seconds.max(1)))
            }
            Phase::Running | Phase::Pending => Duration::from_secs(60),
            Phase::Suspended | Phase::Failed => Duration::from_secs(300),
            Phase::Succeeded => Duration::from_secs(1800),
        }
    }
}

/// `status.catalog` from what the sequencer saw; an unreadable catalog keeps the last known
/// `recordedThrough`.
fn catalog_status(
    seq: &CatalogProgress,
    previous: Option<&CatalogStatus>,
    grid: &Grid,
    done_through: Option<u32>,
) -> CatalogStatus {
    let recorded_through = match seq.recorded_through {
        Some(known) => known,
        None => previous.and_then(|p| p.recorded_through),
    };
    let unrecorded = grid
        .partitions_through(done_through)
        .saturating_sub(grid.partitions_through(recorded_through));
    CatalogStatus {
        database: seq.database.clone(),
        strict: seq.strict,
        recorded_through,
        unrecorded_partitions: unrecorded,
        last_error: seq.error.clone(),
    }
}

/// The status when storage cannot be read before anything can be planned (the backfill's
/// `ingestedAt` is unknown and storage is the only place left to learn it): everything known
/// stays, no Job is planned, and Degraded says why.
pub fn storage_down(
    previous: Option<&BronzeBackfillStatus>,
    generation: Option<i64>,
    problem: &str,
    now: DateTime<Utc>,
) -> BronzeBackfillStatus {
    let phase = previous.and_then(|p| p.phase).unwrap_or(Phase::Pending);
    let message = format!("cannot read storage: {problem}");
    stalled(
        previous,
        generation,
        (phase, message),
        reason::STORAGE_UNAVAILABLE,
        problem,
        now,
    )
}

/// The status of a backfill the operator cannot run as configured (e.g. no worker image):
/// phase Failed, `Degraded` with reason `Config`; nothing is planned until the spec (or the
/// operator's defaults) change.
pub fn misconfigured(
    previous: Option<&BronzeBackfillStatus>,
    generation: Option<i64>,
    problem: &str,
    now: DateTime<Utc>,
) -> BronzeBackfillStatus {
    let message = format!("configuration: {problem}");
    stalled(
        previous,
        generation,
        (Phase::Failed, message),
        reason::CONFIG,
        problem,
        now,
    )
}

/// `previous` with `phase`/`message`, `Degraded` true for `reason`, the other conditions kept.
fn stalled(
    previous: Option<&BronzeBackfillStatus>,
    generation: Option<i64>,
    (phase, message): (Phase, String),
    reason: &str,
    problem: &str,
    now: DateTime<Utc>,
) -> BronzeBackfillStatus {
    let mut status = previous.cloned().unwrap_or_default();
    status.phase = Some(phase);
    status.message = Some(message);
    status.observed_generation = generation;
    let previous = previous.cloned().unwrap_or_default();
    let keep = |type_: &str| {
        previous
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .cloned()
    };
    let since = |type_: &str, value: &str| {
        previous
            .conditions
            .iter()
            .find(|c| c.type_ == type_ && c.status == value)
            .map_or_else(|| rfc3339(now), |c| c.last_transition_time.clone())
    };
    status.conditions = CONDITION_TYPES
        .iter()
        .map(|t| match (*t, keep(t)) {
            ("Degraded", _) => Condition {
                type_: "Degraded".into(),
                status: "True".into(),
                reason: reason.into(),
                message: problem.to_string(),
                last_transition_time: since("Degraded", "True"),
                observed_generation: generation,
            },
            (_, Some(c)) => c,
            (t, None) => Condition {
                type_: t.to_string(),
                status: "False".into(),
                reason: reason.into(),
                message: String::new(),
                last_transition_time: since(t, "False"),
                observed_generation: generation,
            },
        })
        .collect();
    status
}

fn fallback_failure() -> FailedRange {
    FailedRange {
        range: String::new(),
        job: String::new(),
        reason: reason::UNKNOWN.into(),
        message: String::new(),
        exit_code: None,
        attempts: 0,
        retrying: false,
    }
}

#[allow(clippy::too_many_arguments)]
fn record_failure(
    failed: &mut Vec<(LedgerRange, FailedRange)>,
    events: &mut Vec<Note>,
    previous: &BTreeMap<LedgerRange, &FailedRange>,
    job: &ObservedJob,
    reason: &str,
    message: String,
    exit_code: Option<i32>,
    retrying: bool,
) {
    let new = !previous
        .get(&job.range)
        .is_some_and(|f| f.job == job.name && f.attempts == job.attempt && f.reason == reason);
    if new {
        events.push(Note {
            warning: true,
            reason: if retrying {
                reason::JOB_FAILED_RETRYING
            } else {
                reason::JOB_FAILED
            },
            message: format!(
                "Job {} (range {}, attempt {}) failed: {reason}: {message}",
                job.name, job.range, job.attempt
            ),
        });
    }
    failed.push((
        job.range,
        FailedRange {
            range: job.range.to_string(),
            job: job.name.clone(),
            reason: reason.to_string(),
            message,
            exit_code,
            attempts: job.attempt,
            retrying,
        },
    ));
}

/// A condition, keeping the previous transition time while its status does not change.
fn condition(
    previous: &BronzeBackfillStatus,
    type_: &str,
    status: bool,
    (reason, message): (&str, String),
    input: &PlanInput,
) -> Condition {
    let status = if status { "True" } else { "False" };
    let since = previous
        .conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| rfc3339(input.now));
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message,
        last_transition_time: since,
        observed_generation: input.generation,
    }
}

pub mod reason;
pub mod rebuild;

use rebuild::Rebuild;
pub use rebuild::{Rebuilt, rebuild_job_name};

#[cfg(test)]
mod props;
#[cfg(test)]
mod rebuild_tests;
#[cfg(test)]
mod tests;
