//! Properties of planning + sequencing over random interleavings of Job successes, retryable
//! and bad-input failures, reconciles that crash half-way, status loss, operator restarts and
//! TTL expiry. The operator side runs the real code (`sequencer::sequence`,
//! `sequencer::resolve_ingested_at`, `plan`); storage is an in-memory version with the real
//! semantics (commit markers); the PAS chain is either the in-memory outbox
//! ([`crate::fixtures::MemoryOutbox`]) or the real one ([`crate::PAS::PasOutboxLog`]: the worker's
//! PAS stream over an in-memory object store), checked by reading the stored events back. The
//! "cluster" applies the plan's actions and plays the Jobs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::TimeZone;
use futures::executor::block_on;
use proptest::prelude::*;

use super::*;
use crate::fixtures::{MemoryDataset, MemoryOutbox, OutboxEvent, manifest_for, spec};
use crate::sequencer::{SequenceStart, resolve_ingested_at, sequence};

/// The PAS chain under test.
#[allow(clippy::large_enum_variant)] // one per test case
enum Pas {
    Memory(MemoryOutbox),
    /// The operator's real PAS stream over an in-memory object store. `PAS` is replaced on a
    /// restart (a new process reads the chain back from the outbox).
    Real {
        config: bronze::config::Config,
        outbox: Arc<bronze::pas::ObjectStoreOutbox>,
        pas: crate::pas::PasOutboxLog,
    },
}

impl Pas {
    fn real(spec: &BronzeBackfillSpec) -> Self {
        let config = crate::pas::pas_config(spec).unwrap();
        let location = bronze::store::Location {
            store: Arc::new(object_store::memory::InMemory::new()),
            root: Default::default(),
            uri: "memory:///".into(),
        };
        let outbox = Arc::new(bronze::pas::ObjectStoreOutbox::new(
            location,
            &config.storage.prefix,
        ));
        let pas = crate::pas::PasOutboxLog::with_outbox(config.clone(), outbox.clone());
        Pas::Real {
            config,
            outbox,
            pas,
        }
    }

    fn log(&self) -> &dyn crate::sequencer::PasLog {
        match self {
            Pas::Memory(m) => m,
            Pas::Real { pas, .. } => pas,
        }
    }

    fn restart(&mut self) {
        if let Pas::Real {
            config,
            outbox,
            pas,
        } = self
        {
            *pas = crate::pas::PasOutboxLog::with_outbox(config.clone(), outbox.clone());
        }
    }

    /// The stored events by range (for the real outbox: read back, every hash checked).
    fn events(&self) -> BTreeMap<LedgerRange, OutboxEvent> {
        match self {
            Pas::Memory(m) => m.events.lock().unwrap().clone(),
            Pas::Real { config, outbox, .. } => {
                use bronze::pas::Outbox;
                let layout = bronze::publish::DatasetLayout::from_config(config);
                let chain = bronze::pas::ChainId::of_layout(&layout);
                let entries = block_on(outbox.load(&chain)).unwrap();
                entries
                    .into_iter()
                    .map(|e| {
                        let event = e.parsed.unwrap();
                        assert_eq!(event.compute_hash(), event.chain.event_hash);
                        assert_eq!(
                            e.bytes,
                            event.to_indented_json().as_bytes(),
                            "the writer's format"
                        );
                        let prev =
                            Some(event.chain.prev_event_hash.clone()).filter(|p| !p.is_empty());
                        let checksums = event.tables.values().map(|t| t.checksum.clone()).collect();
                        (
                            e.name_range,
                            OutboxEvent {
                                prev,
                                checksums,
                                hash: event.chain.event_hash,
                            },
                        )
                    })
                    .collect()
            }
        }
    }
}

#[derive(Clone, Debug)]
enum Step {
    /// A full reconcile: status written, Job actions applied.
    Reconcile,
    /// Sequencing ran (events appended), then the operator died before writing the status.
    CrashBeforeStatus,
    /// The status was written, then the operator died before touching any Job.
    CrashAfterStatus,
    /// The n-th active Job runs to the end of its range (or to a bad partition: exit 3).
    Succeed(usize),
    /// The n-th active Job commits `k` partitions, then fails retryably (exit 1).
    FailRetryable(usize, usize),
    /// The status is lost (restored from a backup without it, edited away, ...).
    LoseStatus,
    /// The TTL controller deletes harvested Jobs.
    TtlExpires,
    /// The operator process restarts (its PAS stream is opened again from the outbox).
    Restart,
    /// A second operator (own process, same resource) reconciles once, then goes away.
    Rival,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => Just(Step::Reconcile),
        1 => Just(Step::CrashBeforeStatus),
        1 => Just(Step::CrashAfterStatus),
        5 => (0..8usize).prop_map(Step::Succeed),
        2 => (0..8usize, 0..3usize).prop_map(|(n, k)| Step::FailRetryable(n, k)),
        1 => Just(Step::LoseStatus),
        1 => Just(Step::TtlExpires),
        1 => Just(Step::Restart),
        1 => Just(Step::Rival),
    ]
}

#[derive(Clone, Debug)]
struct SimJob {
    range: LedgerRange,
    attempt: u32,
    state: JobState,
    harvested: bool,
    ingested_at: String,
}

struct World {
    spec: BronzeBackfillSpec,
    grid: PartitionGrid,
    storage: MemoryDataset,
    pas: Pas,
    jobs: BTreeMap<String, SimJob>,
    status: Option<BronzeBackfillStatus>,
    now: DateTime<Utc>,
    /// The resource's `metadata.creationTimestamp`.
    created: DateTime<Utc>,
    /// First ledgers of partitions whose datastore objects are corrupt.
    bad: BTreeSet<u32>,
    /// Ranges whose Job has failed with bad input: they must never get another Job.
    bad_failures_seen: BTreeSet<LedgerRange>,
    status_lost: bool,
}

impl World {
    fn new(spec: BronzeBackfillSpec, bad: BTreeSet<u32>, real_pas: bool) -> Self {
        Self {
            grid: PartitionGrid::new(spec.ledger_start, spec.ledger_end, spec.partition_size),
            pas: if real_pas {
                Pas::real(&spec)
            } else {
                Pas::Memory(MemoryOutbox::default())
            },
            spec,
            storage: MemoryDataset::default(),
            jobs: BTreeMap::new(),
            status: None,
            now: Utc.with_ymd_and_hms(2025, 1, 15, 12, 0, 0).unwrap(),
            created: Utc.with_ymd_and_hms(2025, 1, 15, 11, 59, 58).unwrap(),
            bad,
            bad_failures_seen: BTreeSet::new(),
            status_lost: false,
        }
    }

    fn partitions(&self) -> Vec<LedgerRange> {
        self.grid.partitions_from(self.spec.ledger_start).collect()
    }

    fn observed(&self) -> Vec<ObservedJob> {
        self.jobs
            .iter()
            .map(|(name, j)| ObservedJob {
                name: name.clone(),
                range: j.range,
                attempt: j.attempt,
                state: j.state.clone(),
                harvested: j.harvested,
                ingested_at: Some(j.ingested_at.clone()),
                rebuild: None,
            })
            .collect()
    }

    /// One reconcile with the real operator code; `persist` says how far it gets.
    fn reconcile(&mut self, write_status: bool, act: bool) -> Option<Plan> {
        self.now += chrono::Duration::seconds(7);
        let jobs = self.observed();
        let (ingested_at, seq) = block_on(async {
            let at = resolve_ingested_at(
                &self.spec,
                self.status.as_ref(),
                &jobs,
                &self.storage,
                self.created,
            )
            .await
            .unwrap();
            let seq = sequence(
                &self.spec,
                &at,
                SequenceStart::from_status(self.status.as_ref()),
                &self.storage,
                Some(self.pas.log()),
                None,
                4, // small, so catching up after a status loss takes several reconciles
            )
            .await;
            (at, seq)
        });
        if !write_status {
            return None;
        }
        let plan = plan(&PlanInput {
            name: "bbf",
            spec: &self.spec,
            generation: Some(1),
            previous: self.status.as_ref(),
            ingested_at: &ingested_at,
            sequenced: &seq,
            jobs: &jobs,
            tip: None,
            hole: None,
            now: self.now,
        });
        self.status = Some(plan.status.clone());
        self.status_lost = false;
        if act {
            for name in &plan.delete {
                self.jobs.remove(name);
            }
            for name in &plan.harvest {
                if let Some(j) = self.jobs.get_mut(name) {
                    j.harvested = true;
                }
            }
            for c in &plan.create {
                assert!(
                    !self.jobs.contains_key(&c.name),
                    "Job {} created twice",
                    c.name
                );
                assert!(
                    !self.bad_failures_seen.contains(&c.range),
                    "range {} failed with bad input and got another Job",
                    c.range
                );
                self.jobs.insert(
                    c.name.clone(),
                    SimJob {
                        range: c.range,
                        attempt: c.attempt,
                        state: JobState::Active,
                        harvested: false,
                        ingested_at: ingested_at.clone(),
                    },
                );
            }
        }
        Some(plan)
    }

    fn active(&self) -> Vec<String> {
        self.jobs
            .iter()
            .filter(|(_, j)| j.state == JobState::Active)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Plays the worker of Job `name`: commits its partitions in order (adopting committed
    /// ones), stopping at a bad partition (exit 3) or after `fail_after` partitions (exit 1).
    fn run_job(&mut self, name: &str, fail_after: Option<usize>) {
        let job = self.jobs[name].clone();
        let parts: Vec<LedgerRange> = self
            .grid
            .partitions_from(job.range.start)
            .take_while(|p| p.end <= job.range.end)
            .collect();
        let mut state = JobState::Succeeded;
        for (i, p) in parts.iter().enumerate() {
            if self.bad.contains(&p.start) {
                state = JobState::Failed(JobFailure {
                    reason: "PodFailurePolicy".into(),
                    message: "failed with exit code 3".into(),
                    exit_code: Some(3),
                });
                self.bad_failures_seen.insert(job.range);
                break;
            }
            if fail_after == Some(i) {
                state = JobState::Failed(JobFailure {
                    reason: "BackoffLimitExceeded".into(),
                    message: "Job has reached the specified backoff limit".into(),
                    exit_code: None,
                });
                break;
            }
            self.storage
                .commit(manifest_for(&self.spec, *p, &job.ingested_at));
        }
        self.jobs.get_mut(name).unwrap().state = state;
    }

    fn apply(&mut self, step: &Step) {
        match step {
            Step::Reconcile => {
                self.reconcile(true, true);
            }
            Step::CrashBeforeStatus => {
                self.reconcile(false, false);
            }
            Step::CrashAfterStatus => {
                self.reconcile(true, false);
            }
            Step::Succeed(n) | Step::FailRetryable(n, _) => {
                let active = self.active();
                if active.is_empty() {
                    return;
                }
                let name = active[n % active.len()].clone();
                let fail_after = match step {
                    Step::FailRetryable(_, k) => Some(*k),
                    _ => None,
                };
                self.run_job(&name, fail_after);
            }
            Step::LoseStatus => {
                self.status = None;
                self.status_lost = true;
            }
            Step::TtlExpires => self.jobs.retain(|_, j| !j.harvested),
            Step::Restart => self.pas.restart(),
            Step::Rival => {
                // Another process: its own PAS stream, the shared status and cluster.
                let mine = std::mem::replace(&mut self.pas, Pas::Memory(MemoryOutbox::default()));
                let rival = match &mine {
                    Pas::Memory(m) => Pas::Memory(m.clone()),
                    Pas::Real { config, outbox, .. } => Pas::Real {
                        config: config.clone(),
                        outbox: outbox.clone(),
                        pas: crate::pas::PasOutboxLog::with_outbox(config.clone(), outbox.clone()),
                    },
                };
                self.pas = rival;
                self.reconcile(true, true);
                self.pas = mine;
            }
        }
    }

    /// Invariants that hold after every step.
    fn check(&self, before: Option<u32>) {
        let partitions = self.partitions();
        let events = self.pas.events();
        // The outbox is a gap-free chain over a prefix of the grid: one event per partition,
        // each linked to the one before.
        let mut prev: Option<String> = None;
        for (i, (range, event)) in events.iter().enumerate() {
            assert_eq!(*range, partitions[i], "outbox has a gap before {range}");
            assert_eq!(
                event.prev, prev,
                "event of {range} does not link to its predecessor"
            );
            assert!(
                self.storage.has(*range),
                "event for uncommitted partition {range}"
            );
            prev = Some(event.hash.clone());
        }
        let Some(status) = &self.status else { return };
        let checkpoint = status.checkpoint.as_ref().map(|c| c.last_committed_ledger);
        // The checkpoint only covers a contiguous prefix of committed partitions, and only moves
        // forward (a lost status restarts from nothing and catches up).
        if let (Some(b), Some(c)) = (before, checkpoint) {
            assert!(c >= b, "checkpoint went back from {b} to {c}");
        }
        if before.is_some() {
            assert!(checkpoint.is_some(), "checkpoint disappeared");
        }
        let sequenced: Vec<&LedgerRange> = partitions
            .iter()
            .filter(|p| checkpoint.is_some_and(|c| p.end <= c))
            .collect();
        for p in &sequenced {
            assert!(
                self.storage.has(**p),
                "checkpoint {checkpoint:?} covers uncommitted {p}"
            );
            assert!(
                events.contains_key(*p),
                "sequenced partition {p} has no event"
            );
        }
        let pas = status.pas.as_ref().unwrap();
        assert_eq!(pas.event_count, sequenced.len() as u64);
        assert_eq!(
            pas.chain_head,
            sequenced.last().map(|p| events[*p].hash.clone()),
            "status chain head is not the event of the checkpoint's partition"
        );
        // The concurrency cap holds.
        let active = self.active().len() as u32;
        assert!(
            active <= self.spec.max_concurrent_jobs,
            "{active} Jobs active"
        );
    }
}

fn scenario() -> impl Strategy<Value = (BronzeBackfillSpec, BTreeSet<u32>, Vec<Step>)> {
    (
        prop_oneof![Just(1u32), Just(2), Just(100)],
        1u32..5,
        1u32..12,
        1u32..4,
        1u32..4,
        proptest::option::weighted(0.3, 0usize..12),
        proptest::collection::vec(step(), 1..60),
    )
        .prop_map(|(start, size, partitions, per_job, cap, bad, steps)| {
            let mut s = spec();
            s.ledger_start = start;
            s.partition_size = size;
            s.ledger_end = (start + size * partitions - 1).max(2); // ledger 1 has no meta
            s.partitions_per_job = per_job;
            s.max_concurrent_jobs = cap;
            s.worker.max_attempts = 1000; // retries are not the point here; see the unit tests
            let grid = PartitionGrid::new(s.ledger_start, s.ledger_end, s.partition_size);
            let all: Vec<LedgerRange> = grid.partitions_from(start).collect();
            let bad = bad
                .and_then(|i| all.get(i % all.len()).map(|p| p.start))
                .into_iter()
                .collect();
            (s, bad, steps)
        })
}

proptest! {
    // Modest for CI; PROPTEST_CASES=5000 for a deeper local run.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(96),
        ..ProptestConfig::default()
    })]

    #[test]
    fn sequencing_is_safe_and_live_under_any_interleaving((spec, bad, steps) in scenario()) {
        run_scenario(spec, bad, steps, false)?;
    }

    /// The same, with the operator's real PAS chain (`bronze::pas` over an object store).
    #[test]
    fn with_the_real_pas_chain((spec, bad, steps) in scenario()) {
        run_scenario(spec, bad, steps, true)?;
    }
}

fn run_scenario(
    spec: BronzeBackfillSpec,
    bad: BTreeSet<u32>,
    steps: Vec<Step>,
    real_pas: bool,
) -> Result<(), TestCaseError> {
    let mut world = World::new(spec, bad, real_pas);
    for step in &steps {
        let before = if world.status_lost || matches!(step, Step::LoseStatus) {
            None
        } else {
            world
                .status
                .as_ref()
                .and_then(|s| s.checkpoint.as_ref())
                .map(|c| c.last_committed_ledger)
        };
        world.apply(step);
        world.check(before);
        // Once a reconcile has seen a bad-input failure, the status reports it.
        if matches!(step, Step::Reconcile) {
            let status = world.status.as_ref().unwrap();
            for range in &world.bad_failures_seen {
                if world
                    .jobs
                    .values()
                    .any(|j| j.range == *range && matches!(j.state, JobState::Failed(_)))
                {
                    prop_assert!(
                        status
                            .failed_partitions
                            .iter()
                            .any(|f| f.range == range.to_string()
                                && f.reason == "BadInput"
                                && !f.retrying),
                        "bad input of {range} not in status"
                    );
                    prop_assert_eq!(status.phase, Some(Phase::Failed));
                }
            }
        }
    }
    // Liveness: with every Job allowed to finish, the backfill ends, and where it ends is
    // exactly determined by the bad input.
    for _ in 0..500 {
        let before = world
            .status
            .as_ref()
            .and_then(|s| s.checkpoint.as_ref())
            .map(|c| c.last_committed_ledger);
        let plan = world.reconcile(true, true).unwrap();
        world.check(before);
        let active = world.active();
        for name in &active {
            world.run_job(name, None);
        }
        let settled = plan.requeue > std::time::Duration::from_secs(1) // no sequencing left
                && plan.status.phase != Some(Phase::Running);
        if active.is_empty() && plan.create.is_empty() && plan.delete.is_empty() && settled {
            break;
        }
    }
    let status = world.status.clone().unwrap();
    let partitions = world.partitions();
    let events = world.pas.events();
    match world.bad.iter().next() {
        None => {
            prop_assert_eq!(status.phase, Some(Phase::Succeeded), "{:?}", status.message);
            prop_assert_eq!(status.last_committed_ledger, Some(world.spec.ledger_end));
            prop_assert_eq!(events.len(), partitions.len(), "one event per partition");
        }
        Some(bad_start) => {
            prop_assert_eq!(status.phase, Some(Phase::Failed));
            let expected = bad_start
                .checked_sub(1)
                .filter(|l| *l >= partitions[0].start);
            prop_assert_eq!(status.last_committed_ledger, expected);
            prop_assert!(
                status
                    .failed_partitions
                    .iter()
                    .any(|f| f.reason == "BadInput")
            );
            prop_assert_eq!(
                events.len(),
                partitions.iter().filter(|p| p.start < *bad_start).count()
            );
        }
    }
    Ok(())
}
