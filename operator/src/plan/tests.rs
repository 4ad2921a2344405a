//! Unit tests of the planner: each rule of the module docs, one scenario at a time. The
//! properties over random interleavings are in `props.rs`.

use chrono::TimeZone;

use super::*;
use crate::fixtures::{ledger_hash, manifest_for, spec};

const INGESTED: &str = "2025-01-15T10:00:00Z";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 15, 12, 0, 0).unwrap()
}

fn run(
    spec: &BronzeBackfillSpec,
    previous: Option<&BronzeBackfillStatus>,
    seq: &Sequenced,
    jobs: &[ObservedJob],
    tip: Option<u32>,
) -> Plan {
    plan(&PlanInput {
        name: "bbf",
        spec,
        generation: Some(3),
        previous,
        ingested_at: INGESTED,
        sequenced: seq,
        jobs,
        tip,
        hole: None,
        now: now(),
    })
}

fn r(start: u32, end: u32) -> LedgerRange {
    LedgerRange::new(start, end)
}

fn job(range: LedgerRange, state: JobState) -> ObservedJob {
    ObservedJob {
        name: job_name("bbf", range),
        range,
        attempt: 1,
        state,
        harvested: false,
        ingested_at: Some(INGESTED.into()),
        rebuild: None,
    }
}

fn failed(reason: &str, exit_code: Option<i32>) -> JobState {
    JobState::Failed(JobFailure {
        reason: reason.into(),
        message: "boom".into(),
        exit_code,
    })
}

fn checkpoint_at(end: u32, size: u32) -> CheckpointStatus {
    CheckpointStatus {
        last_committed_ledger: end,
        partition_start: end + 1 - size,
        partition_end: end,
        checksum: "sha256:00".into(),
        last_ledger_hash: Some(ledger_hash(end)),
    }
}

fn ranges(plan: &Plan) -> Vec<(u32, u32)> {
    plan.create
        .iter()
        .map(|c| (c.range.start, c.range.end))
        .collect()
}

#[test]
fn job_names_are_deterministic_short_and_unique() {
    assert_eq!(job_name("pubnet-p23", r(2, 10_001)), "pubnet-p23-2-10001");
    let long = "a".repeat(80);
    let name = job_name(&long, r(4_000_000_000, 4_000_009_999));
    assert!(name.len() <= 63, "{name} is {} chars", name.len());
    assert!(name.ends_with("-4000000000-4000009999"));
    assert_eq!(name, job_name(&long, r(4_000_000_000, 4_000_009_999)));
    let other = format!("{}b", "a".repeat(79));
    assert_ne!(name, job_name(&other, r(4_000_000_000, 4_000_009_999)));
    let dotted = job_name("my.backfill", r(2, 11));
    assert!(
        !dotted.contains('.') && dotted.ends_with("-2-11"),
        "{dotted}"
    );
    assert!(backfill_label(&long).len() <= 63);
}

#[test]
fn job_ranges_are_whole_partitions_of_the_grid() {
    let mut s = spec();
    s.ledger_start = 1; // genesis: the first partition is 2-10
    s.ledger_end = 95;
    s.partitions_per_job = 3;
    let g = Grid::of(&s);
    assert_eq!(g.job_range_of(r(2, 10)), r(2, 30));
    assert_eq!(g.job_range_of(r(21, 30)), r(2, 30));
    assert_eq!(g.job_range_of(r(31, 40)), r(31, 60));
    assert_eq!(g.job_range_of(r(91, 95)), r(91, 95), "clipped at ledgerEnd");
    assert_eq!(g.total_partitions(), Some(10));
    assert_eq!(g.partitions_through(Some(30)), 3);
    // Every job range is a union of grid partitions.
    let pg = PartitionGrid::new(1, 95, 10);
    for p in pg.partitions_from(1) {
        let j = g.job_range_of(p);
        assert_eq!(pg.partition_of(j.start).unwrap().start, j.start);
        assert_eq!(pg.partition_of(j.end).unwrap().end, j.end);
    }
    // A grid of billions of partitions is handled without walking it.
    let mut huge = spec();
    huge.ledger_start = 2;
    huge.ledger_end = u32::MAX;
    huge.partition_size = 1;
    let g = Grid::of(&huge);
    assert_eq!(g.total_partitions(), Some(u64::from(u32::MAX) - 1));
    assert_eq!(g.job_range_of(r(u32::MAX, u32::MAX)), r(u32::MAX, u32::MAX));
}

#[test]
fn first_reconcile_starts_the_lowest_ranges_up_to_the_cap() {
    let s = spec(); // 2..=101 in partitions of 10, 2 Jobs at once
    let plan = run(&s, None, &Sequenced::default(), &[], None);
    assert_eq!(ranges(&plan), vec![(2, 11), (12, 21)]);
    assert_eq!(plan.create[0].name, "bbf-2-11");
    assert_eq!(plan.create[0].attempt, 1);
    let st = &plan.status;
    assert_eq!(st.phase, Some(Phase::Running));
    assert_eq!(st.observed_generation, Some(3));
    assert_eq!(st.ingested_at.as_deref(), Some(INGESTED));
    assert_eq!(st.running_partitions.len(), 2);
    let progress = st.progress.as_ref().unwrap();
    assert_eq!(progress.summary, "0/10 (0%)");
    let types: Vec<_> = st.conditions.iter().map(|c| c.type_.as_str()).collect();
    assert_eq!(types, CONDITION_TYPES);
    assert!(plan.events.iter().any(|e| e.reason == "JobsCreated"));
}

fn catalog_spec(strict: bool) -> BronzeBackfillSpec {
    let mut s = spec();
    s.catalog = Some(crate::crd::CatalogSpec {
        dsn_env: "BRONZE_CATALOG_DSN".into(),
        strict,
    });
    s
}

fn with_catalog(
    through: u32,
    strict: bool,
    recorded: Option<Option<u32>>,
    error: Option<&str>,
) -> Sequenced {
    Sequenced {
        checkpoint: Some(checkpoint_at(through, 10)),
        catalog: Some(CatalogProgress {
            database: "postgres://bronze:***@db/catalog".into(),
            strict,
            recorded_through: recorded,
            error: error.map(str::to_string),
        }),
        ..Default::default()
    }
}

fn degraded(plan: &Plan) -> &Condition {
    plan.status
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .unwrap()
}

#[test]
fn a_caught_up_catalog_is_in_status_and_healthy() {
    let s = catalog_spec(false);
    let plan = run(
        &s,
        None,
        &with_catalog(31, false, Some(Some(31)), None),
        &[],
        None,
    );
    let c = plan.status.catalog.as_ref().unwrap();
    assert_eq!(c.recorded_through, Some(31));
    assert_eq!(c.unrecorded_partitions, 0);
    assert_eq!(c.last_error, None);
    assert_eq!(c.database, "postgres://bronze:***@db/catalog");
    assert_eq!(degraded(&plan).status, "False");
    assert!(!plan.events.iter().any(|e| e.reason.starts_with("Catalog")));
    // Without spec.catalog there is no catalog status.
    let plain = run(&spec(), None, &Sequenced::default(), &[], None);
    assert_eq!(plain.status.catalog, None);
}

#[test]
fn lenient_catalog_behind_warns_once_degrades_and_comes_back_soon() {
    let s = catalog_spec(false);
    let seq = with_catalog(
        41,
        false,
        Some(Some(11)),
        Some("catalog: partition 12-21 not recorded: down"),
    );
    let first = run(&s, None, &seq, &[], None);
    let c = first.status.catalog.as_ref().unwrap();
    assert_eq!(c.recorded_through, Some(11));
    assert_eq!(c.unrecorded_partitions, 3);
    assert!(c.last_error.as_deref().unwrap().contains("12-21"));
    // The checkpoint moved on regardless.
    assert_eq!(first.status.last_committed_ledger, Some(41));
    let note = first
        .events
        .iter()
        .find(|e| e.reason == "CatalogBehind")
        .expect("a warning");
    assert!(note.warning);
    let d = degraded(&first);
    assert_eq!(
        (d.status.as_str(), d.reason.as_str()),
        ("True", "CatalogBehind")
    );
    assert!(first.requeue <= Duration::from_secs(30));
    // The same failure again: no second Event.
    let again = run(&s, Some(&first.status), &seq, &[], None);
    assert!(!again.events.iter().any(|e| e.reason == "CatalogBehind"));
    // The catalog cannot even be read: the last known recordedThrough stays.
    let unread = with_catalog(
        41,
        false,
        None,
        Some("catalog: cannot read the recorded partitions: down"),
    );
    let unread = run(&s, Some(&first.status), &unread, &[], None);
    assert_eq!(
        unread.status.catalog.as_ref().unwrap().recorded_through,
        Some(11)
    );
    // Caught up: healthy again, and said so.
    let ok = run(
        &s,
        Some(&again.status),
        &with_catalog(41, false, Some(Some(41)), None),
        &[],
        None,
    );
    assert_eq!(ok.status.catalog.as_ref().unwrap().unrecorded_partitions, 0);
    assert_eq!(degraded(&ok).status, "False");
    assert!(
        ok.events
            .iter()
            .any(|e| e.reason == "CatalogCaughtUp" && !e.warning)
    );
}

#[test]
fn strict_catalog_failure_is_the_trouble_and_reported_as_the_catalogs() {
    let s = catalog_spec(true);
    let message = "catalog: partition 22-31 not recorded: down";
    let mut seq = with_catalog(21, true, Some(Some(21)), Some(message));
    seq.trouble = Some(format!(
        "{message} (catalog.strict: the checkpoint waits until it is written)"
    ));
    let plan = run(&s, None, &seq, &[], None);
    assert_eq!(plan.status.last_committed_ledger, Some(21));
    let d = degraded(&plan);
    assert_eq!(
        (d.status.as_str(), d.reason.as_str()),
        ("True", "CatalogUnavailable")
    );
    let reasons: Vec<_> = plan.events.iter().map(|e| e.reason).collect();
    assert!(reasons.contains(&"CatalogUnavailable"), "{reasons:?}");
    assert!(!reasons.contains(&"StorageUnavailable"), "{reasons:?}");
    assert!(!reasons.contains(&"CatalogBehind"), "{reasons:?}");
    assert_eq!(plan.requeue, Duration::from_secs(15));
}

#[test]
fn the_cap_counts_running_jobs_and_skips_ranges_that_have_one() {
    let mut s = spec();
    s.max_concurrent_jobs = 3;
    let jobs = [
        job(r(12, 21), JobState::Active),
        job(r(22, 31), JobState::Succeeded), // done early, waits for 2-11
    ];
    let plan = run(&s, None, &Sequenced::default(), &jobs, None);
    assert_eq!(ranges(&plan), vec![(2, 11), (32, 41)]);
    let jobs = [
        job(r(2, 11), JobState::Active),
        job(r(12, 21), JobState::Active),
        job(r(22, 31), JobState::Active),
    ];
    assert!(
        run(&s, None, &Sequenced::default(), &jobs, None)
            .create
            .is_empty()
    );
}

#[test]
fn bad_input_is_reported_and_never_retried() {
    let s = spec();
    let jobs = [
        job(r(2, 11), failed("PodFailurePolicy", Some(3))),
        job(r(12, 21), JobState::Active),
    ];
    let plan = run(&s, None, &Sequenced::default(), &jobs, None);
    assert!(plan.create.is_empty(), "no new Jobs after a final failure");
    assert!(
        plan.delete.is_empty(),
        "the failed Job stays for inspection"
    );
    let st = &plan.status;
    assert_eq!(st.phase, Some(Phase::Failed));
    let f = &st.failed_partitions[0];
    assert_eq!(
        (f.range.as_str(), f.reason.as_str(), f.retrying),
        ("2-11", "BadInput", false)
    );
    assert_eq!(f.exit_code, Some(3));
    assert!(
        st.message
            .as_ref()
            .unwrap()
            .contains("delete the failed Job")
    );
    assert!(
        plan.events
            .iter()
            .any(|e| e.warning && e.reason == "JobFailed")
    );
    // The next reconcile says the same and emits no new failure event.
    let again = run(&s, Some(st), &Sequenced::default(), &jobs, None);
    assert_eq!(again.status.failed_partitions, st.failed_partitions);
    assert!(!again.events.iter().any(|e| e.reason == "JobFailed"));
    // The user deletes the failed Job: the range is tried again from attempt 1.
    let after = run(&s, Some(st), &Sequenced::default(), &jobs[1..], None);
    assert_eq!(ranges(&after), vec![(2, 11)]);
    assert_eq!(after.create[0].attempt, 1);
}

#[test]
fn retryable_failures_are_retried_up_to_max_attempts() {
    let s = spec();
    let mut j = job(r(2, 11), failed("BackoffLimitExceeded", None));
    let plan1 = run(
        &s,
        None,
        &Sequenced::default(),
        std::slice::from_ref(&j),
        None,
    );
    assert_eq!(plan1.delete, vec!["bbf-2-11".to_string()]);
    assert!(
        !ranges(&plan1).contains(&(2, 11)),
        "recreated only once the old Job is gone"
    );
    assert!(plan1.status.failed_partitions[0].retrying);
    assert_ne!(plan1.status.phase, Some(Phase::Failed));
    let plan2 = run(&s, Some(&plan1.status), &Sequenced::default(), &[], None);
    assert_eq!(plan2.create[0].range, r(2, 11));
    assert_eq!(plan2.create[0].attempt, 2);
    assert!(plan2.status.failed_partitions.is_empty());
    j.attempt = 3;
    let last = run(&s, Some(&plan2.status), &Sequenced::default(), &[j], None);
    assert!(last.delete.is_empty());
    assert_eq!(last.status.phase, Some(Phase::Failed));
    assert!(!last.status.failed_partitions[0].retrying);
}

#[test]
fn suspend_stops_new_jobs_and_lets_running_ones_finish() {
    let mut s = spec();
    s.suspend = true;
    let jobs = [job(r(2, 11), JobState::Active)];
    let plan = run(&s, None, &Sequenced::default(), &jobs, None);
    assert!(plan.create.is_empty() && plan.delete.is_empty());
    assert_eq!(plan.status.phase, Some(Phase::Suspended));
    assert!(plan.status.message.as_ref().unwrap().contains("1 running"));
    let suspended = plan
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "Suspended")
        .unwrap();
    assert_eq!(suspended.status, "True");
    s.suspend = false;
    let resumed = run(&s, Some(&plan.status), &Sequenced::default(), &jobs, None);
    assert_eq!(ranges(&resumed), vec![(12, 21)]);
    assert!(resumed.events.iter().any(|e| e.reason == "Resumed"));
}

#[test]
fn only_sequenced_jobs_are_harvested() {
    let s = spec();
    let seq = Sequenced {
        checkpoint: Some(checkpoint_at(11, 10)),
        newly: vec![r(2, 11)],
        ..Default::default()
    };
    let jobs = [
        job(r(2, 11), JobState::Succeeded),
        job(r(22, 31), JobState::Succeeded),
        ObservedJob {
            harvested: true,
            ..job(r(12, 21), JobState::Active)
        },
    ];
    let plan = run(&s, None, &seq, &jobs, None);
    assert_eq!(plan.harvest, vec!["bbf-2-11".to_string()]);
    assert_eq!(plan.status.progress.as_ref().unwrap().summary, "1/10 (10%)");
    assert_eq!(plan.status.last_committed_ledger, Some(11));
    assert!(plan.events.iter().any(|e| e.reason == "Committed"));
}

#[test]
fn a_completed_job_whose_partition_is_missing_runs_again() {
    let s = spec();
    let seq = Sequenced {
        waiting_for: Some(r(2, 11)),
        ..Default::default()
    };
    let plan = run(&s, None, &seq, &[job(r(2, 11), JobState::Succeeded)], None);
    assert_eq!(plan.delete, vec!["bbf-2-11".to_string()]);
    assert_eq!(plan.status.failed_partitions[0].reason, "MissingManifest");
}

#[test]
fn a_verification_fault_stops_the_backfill() {
    let s = spec();
    let seq = Sequenced {
        fault: Some(Fault {
            range: r(2, 11),
            reason: "VerificationFailed",
            message: "rows".into(),
        }),
        ..Default::default()
    };
    let plan = run(&s, None, &seq, &[job(r(2, 11), JobState::Succeeded)], None);
    assert!(plan.create.is_empty() && plan.delete.is_empty());
    assert_eq!(plan.status.phase, Some(Phase::Failed));
    assert_eq!(
        plan.status.failed_partitions[0].reason,
        "VerificationFailed"
    );
}

#[test]
fn follow_mode_plans_up_to_the_tip_then_follows() {
    let mut s = spec();
    s.ledger_end = 0;
    s.max_concurrent_jobs = 10;
    let plan = run(&s, None, &Sequenced::default(), &[], Some(35));
    assert_eq!(ranges(&plan), vec![(2, 11), (12, 21), (22, 31)]);
    assert_eq!(plan.status.progress.as_ref().unwrap().summary, "0/-");
    assert_eq!(plan.status.tip_ledger, Some(35));
    let seq = Sequenced {
        checkpoint: Some(checkpoint_at(31, 10)),
        ..Default::default()
    };
    let caught_up = run(&s, Some(&plan.status), &seq, &[], Some(35));
    assert!(caught_up.create.is_empty());
    assert_eq!(caught_up.status.phase, Some(Phase::Following));
    assert_eq!(caught_up.requeue, Duration::from_secs(30));
    assert!(caught_up.events.iter().any(|e| e.reason == "CaughtUp"));
}

fn run_with_hole(
    spec: &BronzeBackfillSpec,
    previous: Option<&BronzeBackfillStatus>,
    seq: &Sequenced,
    jobs: &[ObservedJob],
    tip: u32,
    hole: &Hole,
) -> Plan {
    plan(&PlanInput {
        name: "bbf",
        spec,
        generation: Some(3),
        previous,
        ingested_at: INGESTED,
        sequenced: seq,
        jobs,
        tip: Some(tip),
        hole: Some(hole),
        now: now(),
    })
}

fn hole_at(ledger: u32) -> Hole {
    Hole {
        key: format!(
            "FFFFFFFF--0-63999/{:08X}--{ledger}.xdr.zst",
            u32::MAX - ledger
        ),
        start: ledger,
        end: ledger,
    }
}

#[test]
fn follow_mode_plans_only_below_the_first_missing_object_and_names_it() {
    let mut s = spec();
    s.ledger_end = 0;
    s.max_concurrent_jobs = 10;
    // The tip (45) is there, ledger 25 is not: 22-31 and later wait.
    let hole = hole_at(25);
    let plan = run_with_hole(&s, None, &Sequenced::default(), &[], 45, &hole);
    assert_eq!(ranges(&plan), vec![(2, 11), (12, 21)]);
    assert_eq!(plan.status.phase, Some(Phase::Running));
    let message = plan.status.message.clone().unwrap();
    assert!(message.contains(&hole.key), "{message}");
    assert!(message.contains("ledger 25"), "{message}");
    // Below the hole everything is committed: Following, waiting for that object.
    let seq = Sequenced {
        checkpoint: Some(checkpoint_at(21, 10)),
        ..Default::default()
    };
    let waiting = run_with_hole(&s, Some(&plan.status), &seq, &[], 45, &hole);
    assert!(waiting.create.is_empty());
    assert_eq!(waiting.status.phase, Some(Phase::Following));
    let message = waiting.status.message.clone().unwrap();
    assert!(
        message.starts_with("waiting for datastore object") && message.contains(&hole.key),
        "{message}"
    );
    assert!(message.contains("up to 45"), "{message}");
    assert_eq!(waiting.requeue, Duration::from_secs(30), "polls for it");
    // A hole in the very first object: nothing is planned at all.
    let nothing = run_with_hole(&s, None, &Sequenced::default(), &[], 45, &hole_at(2));
    assert!(nothing.create.is_empty());
    assert_eq!(nothing.status.phase, Some(Phase::Following));
    // Bounded backfills are planned over the whole range: a hole there is bad input.
    let bounded = run_with_hole(&spec(), None, &Sequenced::default(), &[], 45, &hole);
    assert_eq!(
        ranges(&bounded),
        vec![(2, 11), (12, 21)],
        "cap 2, not the hole"
    );
    assert!(!bounded.status.message.unwrap().contains(&hole.key));
}

#[test]
fn follow_mode_retries_a_job_that_failed_over_a_late_object_once_it_arrives() {
    let mut s = spec();
    s.ledger_end = 0;
    s.worker.max_attempts = 1;
    let seq = Sequenced {
        checkpoint: Some(checkpoint_at(21, 10)),
        ..Default::default()
    };
    // Planned before the hole was seen; its worker exited 3 on the missing object.
    let mut j = job(r(22, 31), failed("PodFailurePolicy", Some(3)));
    j.attempt = 1;
    let hole = hole_at(25);
    let plan = run_with_hole(&s, None, &seq, std::slice::from_ref(&j), 45, &hole);
    assert_ne!(plan.status.phase, Some(Phase::Failed));
    assert_eq!(plan.delete, vec![j.name.clone()]);
    assert!(plan.create.is_empty(), "not before the object is there");
    let f = &plan.status.failed_partitions[0];
    assert!(f.retrying, "{f:?}");
    assert!(f.message.contains(&hole.key), "{}", f.message);
    // The object arrives (no hole): the range runs again, attempt 2, despite maxAttempts 1.
    let again = run(&s, Some(&plan.status), &seq, &[], Some(45));
    assert_eq!(ranges(&again), vec![(22, 31), (32, 41)]);
    assert_eq!(again.create[0].attempt, 2);
    // Without a hole the same failure is bad input, for good.
    let bad = run(&s, None, &seq, &[j], Some(45));
    assert_eq!(bad.status.phase, Some(Phase::Failed));
    assert!(!bad.status.failed_partitions[0].retrying);
}

#[test]
fn the_hole_window_runs_from_the_checkpoint_to_the_tip_two_rounds_ahead() {
    let mut s = spec();
    s.ledger_end = 0;
    s.max_concurrent_jobs = 2;
    assert_eq!(hole_window(&s, None, 1000), Some((2, 41)));
    assert_eq!(hole_window(&s, Some(21), 30), Some((22, 30)));
    assert_eq!(hole_window(&s, Some(21), 21), None, "caught up");
    assert_eq!(hole_window(&s, Some(u32::MAX), u32::MAX), None);
    s.partitions_per_job = 3;
    assert_eq!(hole_window(&s, Some(21), u32::MAX), Some((22, 141)));
}

#[test]
fn done_when_the_checkpoint_reaches_the_end() {
    let s = spec();
    let seq = Sequenced {
        checkpoint: Some(checkpoint_at(101, 10)),
        ..Default::default()
    };
    let plan = run(
        &s,
        None,
        &seq,
        &[job(r(92, 101), JobState::Succeeded)],
        None,
    );
    assert_eq!(plan.status.phase, Some(Phase::Succeeded));
    assert_eq!(plan.harvest, vec!["bbf-92-101".to_string()]);
    assert_eq!(plan.status.progress.as_ref().unwrap().percent, Some(100));
    let complete = plan
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "Complete")
        .unwrap();
    assert_eq!(complete.status, "True");
}

#[test]
fn a_range_without_ledgers_is_done_at_once() {
    let mut s = spec();
    s.ledger_start = 1;
    s.ledger_end = 1; // the genesis ledger has no close meta: nothing to copy
    let plan = run(&s, None, &Sequenced::default(), &[], None);
    assert!(plan.create.is_empty());
    assert_eq!(plan.status.phase, Some(Phase::Succeeded));
    assert_eq!(plan.status.progress.as_ref().unwrap().summary, "0/0 (100%)");
}

#[test]
fn condition_transition_times_are_kept_while_unchanged() {
    let s = spec();
    let mut earlier = run(&s, None, &Sequenced::default(), &[], None).status;
    for c in &mut earlier.conditions {
        c.last_transition_time = "2020-01-01T00:00:00Z".into();
    }
    let jobs = [
        job(r(2, 11), JobState::Active),
        job(r(12, 21), JobState::Active),
    ];
    let later = run(&s, Some(&earlier), &Sequenced::default(), &jobs, None).status;
    let progressing = later
        .conditions
        .iter()
        .find(|c| c.type_ == "Progressing")
        .unwrap();
    assert_eq!(progressing.last_transition_time, "2020-01-01T00:00:00Z");
    let mut s2 = s.clone();
    s2.suspend = true;
    let suspended = run(&s2, Some(&earlier), &Sequenced::default(), &jobs, None).status;
    let c = suspended
        .conditions
        .iter()
        .find(|c| c.type_ == "Suspended")
        .unwrap();
    assert_eq!(c.last_transition_time, rfc3339(now()));
}

#[test]
fn the_rate_is_measured_from_when_counting_started() {
    let s = spec();
    let mut previous = run(&s, None, &Sequenced::default(), &[], None).status;
    let p = previous.progress.as_mut().unwrap();
    p.started_at = rfc3339(now() - chrono::Duration::seconds(100));
    p.started_from_ledger = 1;
    let seq = Sequenced {
        checkpoint: Some(checkpoint_at(51, 10)),
        ..Default::default()
    };
    let plan = run(&s, Some(&previous), &seq, &[], None);
    assert_eq!(plan.status.ledgers_per_second, Some(0.5));
}

#[test]
fn verification_checks_link_rows_size_dataset_and_ingested_at() {
    let s = spec();
    let m = manifest_for(&s, r(12, 21), INGESTED);
    let prior = ledger_hash(11);
    let expected = Expected {
        network: "testnet",
        era_id: "p23",
        version_label: "v1",
        ingested_at: INGESTED,
        prior_hash: Some(&prior),
    };
    let cp = verify_manifest(&m, &SealCheck::Valid, r(12, 21), &expected, Some(1012)).unwrap();
    assert_eq!(cp.last_committed_ledger, 21);
    assert_eq!(cp.last_ledger_hash, Some(ledger_hash(21)));
    let wrong = ledger_hash(10);
    let err = verify_manifest(
        &m,
        &SealCheck::Valid,
        r(12, 21),
        &Expected {
            prior_hash: Some(&wrong),
            ..expected.clone()
        },
        None,
    )
    .unwrap_err();
    assert!(err.contains("links to previous hash"), "{err}");
    assert!(
        verify_manifest(&m, &SealCheck::Valid, r(12, 21), &expected, Some(5))
            .unwrap_err()
            .contains("bytes")
    );
    assert!(verify_manifest(&m, &SealCheck::Valid, r(2, 11), &expected, None).is_err());
    let other_time = Expected {
        ingested_at: "2025-01-16T10:00:00Z",
        ..expected.clone()
    };
    assert!(
        verify_manifest(&m, &SealCheck::Valid, r(12, 21), &other_time, None)
            .unwrap_err()
            .contains("ingested_at")
    );
    let same_instant = Expected {
        ingested_at: "2025-01-15T10:00:00.000Z",
        ..expected.clone()
    };
    assert!(verify_manifest(&m, &SealCheck::Valid, r(12, 21), &same_instant, None).is_ok());
    let mut rows = m.clone();
    rows.tables.values_mut().next().unwrap().row_count = 9;
    assert!(
        verify_manifest(&rows, &SealCheck::Valid, r(12, 21), &expected, None)
            .unwrap_err()
            .contains("rows")
    );
    let mut foreign = m.clone();
    foreign.partition.era_id = "other".into();
    assert!(
        verify_manifest(&foreign, &SealCheck::Valid, r(12, 21), &expected, None)
            .unwrap_err()
            .contains("belongs to")
    );
    let mut unchained = m;
    unchained.chain = None;
    assert!(verify_manifest(&unchained, &SealCheck::Valid, r(12, 21), &expected, None).is_err());
}

/// The catalog's `parquet_path` is built from the table's file name: a manifest naming another
/// file than the layout's is refused (it was not checked before the one manifest policy).
#[test]
fn verification_checks_the_table_file_name() {
    let s = spec();
    let mut m = manifest_for(&s, r(12, 21), INGESTED);
    let prior = ledger_hash(11);
    let expected = Expected {
        network: "testnet",
        era_id: "p23",
        version_label: "v1",
        ingested_at: INGESTED,
        prior_hash: Some(&prior),
    };
    assert!(verify_manifest(&m, &SealCheck::Valid, r(12, 21), &expected, None).is_ok());
    m.tables.values_mut().next().unwrap().file = "part-12-21.parquet.old".into();
    let err = verify_manifest(&m, &SealCheck::Valid, r(12, 21), &expected, None).unwrap_err();
    assert!(
        err.contains("part-12-21.parquet.old") && err.contains("not part-12-21.parquet"),
        "{err}"
    );
}

#[test]
fn verification_checks_the_manifest_self_checksum() {
    let s = spec();
    let m = manifest_for(&s, r(12, 21), INGESTED);
    let prior = ledger_hash(11);
    let expected = Expected {
        network: "testnet",
        era_id: "p23",
        version_label: "v1",
        ingested_at: INGESTED,
        prior_hash: Some(&prior),
    };
    let changed = SealCheck::Mismatch {
        recorded: "sha256:aa".into(),
        computed: "sha256:bb".into(),
    };
    let err = verify_manifest(&m, &changed, r(12, 21), &expected, None).unwrap_err();
    assert!(
        err.contains("manifest_sha256 is sha256:aa") && err.contains("sha256:bb"),
        "{err}"
    );
    let err = verify_manifest(&m, &SealCheck::Absent, r(12, 21), &expected, None).unwrap_err();
    assert!(err.contains("no manifest_sha256"), "{err}");
    // A real sealed manifest file checks out; one changed byte does not.
    let bytes = m.to_json();
    assert_eq!(Manifest::check_seal(&bytes), SealCheck::Valid);
    let text = String::from_utf8(bytes)
        .unwrap()
        .replace("2025-01-15T10:00:00Z", "2025-01-15T10:00:01Z");
    assert!(matches!(
        Manifest::check_seal(text.as_bytes()),
        SealCheck::Mismatch { .. }
    ));
}
