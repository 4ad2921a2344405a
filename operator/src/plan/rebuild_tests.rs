//! Unit tests of rebuild planning (`plan::rebuild`): each rule of its module docs.

use chrono::TimeZone;

use super::*;
use crate::crd::{RebuildPhase, RebuildRecord, RebuildSpec, RebuildStatus};
use crate::fixtures::{ledger_hash, spec};

const INGESTED: &str = "2025-01-15T10:00:00Z";

fn r(start: u32, end: u32) -> LedgerRange {
    LedgerRange::new(start, end)
}

fn checkpoint_at(end: u32) -> CheckpointStatus {
    CheckpointStatus {
        last_committed_ledger: end,
        partition_start: end.saturating_sub(9).max(1),
        partition_end: end,
        checksum: "sha256:00".into(),
        last_ledger_hash: Some(ledger_hash(end)),
    }
}

/// The fixture's backfill (ledgers 2-101, partitions of 10) asking for `rebuild`.
fn asking(id: &str, start: u32, end: u32) -> BronzeBackfillSpec {
    let mut s = spec();
    s.rebuild = Some(RebuildSpec {
        id: id.into(),
        ledger_start: start,
        ledger_end: end,
    });
    s
}

fn run(
    spec: &BronzeBackfillSpec,
    previous: Option<&BronzeBackfillStatus>,
    seq: &Sequenced,
    jobs: &[ObservedJob],
) -> Plan {
    plan(&PlanInput {
        name: "bbf",
        spec,
        generation: Some(3),
        previous,
        ingested_at: INGESTED,
        sequenced: seq,
        jobs,
        tip: None,
        hole: None,
        now: Utc.with_ymd_and_hms(2025, 1, 15, 12, 0, 0).unwrap(),
    })
}

fn committed_through(end: u32) -> Sequenced {
    Sequenced {
        checkpoint: Some(checkpoint_at(end)),
        ..Default::default()
    }
}

fn rebuild_job(id: &str, range: LedgerRange, state: JobState) -> ObservedJob {
    ObservedJob {
        name: rebuild_job_name("bbf", id, range),
        range,
        attempt: 1,
        state,
        harvested: false,
        ingested_at: Some(INGESTED.into()),
        rebuild: Some(id.into()),
    }
}

fn backfill_job(range: LedgerRange, state: JobState) -> ObservedJob {
    ObservedJob {
        rebuild: None,
        name: job_name("bbf", range),
        ..rebuild_job("", range, state)
    }
}

fn rebuild_of(plan: &Plan) -> &RebuildStatus {
    plan.status.rebuild.as_ref().expect("status.rebuild")
}

fn created(plan: &Plan) -> Vec<(u32, u32, Option<&str>)> {
    plan.create
        .iter()
        .map(|c| (c.range.start, c.range.end, c.rebuild.as_deref()))
        .collect()
}

/// Status after `plan`, as the next reconcile reads it.
fn then(plan: &Plan) -> BronzeBackfillStatus {
    plan.status.clone()
}

#[test]
fn a_rebuild_is_widened_to_whole_partitions_and_planned_over_the_committed_range() {
    let mut s = asking("2026-12-compression", 15, 38); // partitions 12-21, 22-31, 32-41
    s.max_concurrent_jobs = 4;
    let plan = run(&s, None, &committed_through(101), &[]);
    let status = rebuild_of(&plan);
    assert_eq!((status.ledger_start, status.ledger_end), (12, 41));
    assert_eq!(status.partitions_total, 3);
    assert_eq!(status.phase, RebuildPhase::Running);
    assert_eq!(
        created(&plan),
        [
            (12, 21, Some("2026-12-compression")),
            (22, 31, Some("2026-12-compression")),
            (32, 41, Some("2026-12-compression")),
        ]
    );
    assert!(plan.events.iter().any(|e| e.reason == "RebuildAccepted"));
    assert_eq!(status.summary, "2026-12-compression Running 0/3");
    // The backfill itself is done: its phase says so, the rebuild runs beside it.
    assert_eq!(plan.status.phase, Some(Phase::Succeeded));
    // Its Job names are not the backfill's names for the same ranges.
    assert_ne!(plan.create[0].name, job_name("bbf", r(12, 21)));
    assert_eq!(
        plan.create[0].name,
        rebuild_job_name("bbf", "2026-12-compression", r(12, 21))
    );
}

#[test]
fn rebuild_jobs_follow_the_job_grid_clipped_to_the_range() {
    let mut s = asking("a", 25, 71); // partitions 22-31 .. 62-71
    s.partitions_per_job = 3; // cells: 2-31, 32-61, 62-91
    s.max_concurrent_jobs = 10;
    let plan = run(&s, None, &committed_through(101), &[]);
    assert_eq!(
        created(&plan),
        [
            (22, 31, Some("a")),
            (32, 61, Some("a")),
            (62, 71, Some("a"))
        ]
    );
}

#[test]
fn a_range_not_all_committed_is_refused_with_nothing_planned() {
    let s = asking("a", 12, 41);
    let plan = run(&s, None, &committed_through(31), &[]);
    let status = rebuild_of(&plan);
    assert_eq!(status.phase, RebuildPhase::Failed);
    assert!(status.refused);
    assert!(
        status
            .message
            .contains("ledgers 12-41 are not all committed")
            && status.message.contains("checkpoint is at ledger 31"),
        "{}",
        status.message
    );
    assert!(plan.create.iter().all(|c| c.rebuild.is_none()));
    assert!(plan.events.iter().any(|e| e.reason == "RebuildRefused"));
    // Refused for good: once the range is committed, the same id still does nothing.
    let again = run(&s, Some(&then(&plan)), &committed_through(101), &[]);
    assert!(again.create.is_empty());
    assert!(rebuild_of(&again).refused);
    // A new id is accepted.
    let next = run(
        &asking("b", 12, 41),
        Some(&then(&again)),
        &committed_through(101),
        &[],
    );
    assert_eq!(rebuild_of(&next).phase, RebuildPhase::Running);
    assert_eq!(next.status.rebuild_history[0].id, "a");
}

#[test]
fn nothing_committed_refuses_a_rebuild() {
    let plan = run(&asking("a", 2, 11), None, &Sequenced::default(), &[]);
    assert!(rebuild_of(&plan).refused);
    assert!(
        rebuild_of(&plan)
            .message
            .contains("nothing is committed yet")
    );
}

#[test]
fn an_id_is_carried_out_once_and_names_one_range() {
    let done = BronzeBackfillStatus {
        rebuild: Some(RebuildStatus {
            id: "b".into(),
            ledger_start: 2,
            ledger_end: 11,
            phase: RebuildPhase::Succeeded,
            refused: false,
            partitions_done: 1,
            partitions_total: 1,
            partitions_identical: 0,
            done_through: Some(11),
            summary: "b Succeeded 1/1".into(),
            message: String::new(),
        }),
        rebuild_history: vec![RebuildRecord {
            id: "a".into(),
            ledger_start: 12,
            ledger_end: 21,
            phase: RebuildPhase::Succeeded,
        }],
        ..Default::default()
    };
    // The finished id asked again: nothing.
    let same = run(
        &asking("b", 2, 11),
        Some(&done),
        &committed_through(101),
        &[],
    );
    assert!(same.create.is_empty());
    assert_eq!(rebuild_of(&same).phase, RebuildPhase::Succeeded);
    // An id of the history with its range: nothing either.
    let old = run(
        &asking("a", 12, 21),
        Some(&done),
        &committed_through(101),
        &[],
    );
    assert!(old.create.is_empty());
    assert_eq!(rebuild_of(&old).id, "b");
    // An id of the history with another range (CEL sees only the previous spec): refused.
    let moved = run(
        &asking("a", 2, 21),
        Some(&done),
        &committed_through(101),
        &[],
    );
    assert!(moved.create.is_empty());
    let status = rebuild_of(&moved);
    assert!(status.refused, "{status:?}");
    assert!(
        status.message.contains("a new range needs a new id"),
        "{}",
        status.message
    );
}

#[test]
fn replacements_move_the_rebuild_on_and_finished_jobs_are_harvested() {
    let s = asking("a", 12, 31);
    let first = run(&s, None, &committed_through(101), &[]);
    assert_eq!(created(&first), [(12, 21, Some("a")), (22, 31, Some("a"))]);
    let jobs = [
        rebuild_job("a", r(12, 21), JobState::Succeeded),
        rebuild_job("a", r(22, 31), JobState::Active),
    ];
    // The sequencer replaced 12-21 (identical bytes): harvested, 1/2 done.
    let seq = Sequenced {
        rebuilt: Some(Rebuilt {
            id: "a".into(),
            done_through: Some(21),
            replaced: Vec::new(),
            identical: 1,
            fault: None,
            waiting_for: None,
        }),
        ..committed_through(101)
    };
    let second = run(&s, Some(&then(&first)), &seq, &jobs);
    assert_eq!(second.harvest, [rebuild_job_name("bbf", "a", r(12, 21))]);
    assert!(second.create.is_empty() && second.delete.is_empty());
    let status = rebuild_of(&second);
    assert_eq!(status.phase, RebuildPhase::Running);
    assert_eq!(
        (status.partitions_done, status.partitions_identical),
        (1, 1)
    );
    assert_eq!(status.summary, "a Running 1/2");
    // 22-31 replaced: Succeeded; the checkpoint did not move.
    let jobs = [rebuild_job("a", r(22, 31), JobState::Succeeded)];
    let seq = Sequenced {
        rebuilt: Some(Rebuilt {
            id: "a".into(),
            done_through: Some(31),
            replaced: Vec::new(),
            identical: 0,
            fault: None,
            waiting_for: None,
        }),
        ..committed_through(101)
    };
    let third = run(&s, Some(&then(&second)), &seq, &jobs);
    let status = rebuild_of(&third);
    assert_eq!(status.phase, RebuildPhase::Succeeded);
    assert_eq!(status.partitions_done, 2);
    assert!(
        status.message.contains("1 replaced, 1 identical"),
        "{}",
        status.message
    );
    assert_eq!(third.status.last_committed_ledger, Some(101));
    assert!(third.events.iter().any(|e| e.reason == "RebuildSucceeded"));
}

#[test]
fn rebuild_progress_from_status_alone_survives_a_restart() {
    // A restarted operator sees its status and the Jobs: nothing is planned again below
    // doneThrough, and the Jobs still to finish are not duplicated.
    let s = asking("a", 2, 41);
    let mut status = run(&s, None, &committed_through(101), &[]).status;
    let r0 = status.rebuild.as_mut().unwrap();
    r0.done_through = Some(21);
    r0.partitions_done = 2;
    let jobs = [rebuild_job("a", r(22, 31), JobState::Active)];
    let plan = run(&s, Some(&status), &committed_through(101), &jobs);
    assert_eq!(created(&plan), [(32, 41, Some("a"))]);
    assert_eq!(rebuild_of(&plan).partitions_done, 2);
}

#[test]
fn the_rebuild_and_the_backfill_share_the_job_slots() {
    // Backfill committed through 51; rebuild 2-41 asked; 4 slots: 2 each.
    let mut s = asking("a", 2, 41);
    s.max_concurrent_jobs = 4;
    let plan = run(&s, None, &committed_through(51), &[]);
    assert_eq!(
        created(&plan),
        [
            (2, 11, Some("a")),
            (12, 21, Some("a")),
            (52, 61, None),
            (62, 71, None)
        ]
    );
    // With the backfill's Jobs all running, the rebuild takes what is left, never more.
    let jobs: Vec<ObservedJob> = [r(52, 61), r(62, 71), r(72, 81)]
        .into_iter()
        .map(|range| backfill_job(range, JobState::Active))
        .collect();
    let plan = run(&s, None, &committed_through(51), &jobs);
    assert_eq!(created(&plan), [(2, 11, Some("a"))]);
    // A single slot: the rebuild gets it first (half of one, rounded up), then the backfill
    // waits for it.
    s.max_concurrent_jobs = 1;
    let plan = run(&s, None, &committed_through(51), &[]);
    assert_eq!(created(&plan), [(2, 11, Some("a"))]);
}

#[test]
fn a_failed_rebuild_job_fails_the_rebuild_and_leaves_the_backfill_alone() {
    let s = asking("a", 12, 21);
    let first = run(&s, None, &committed_through(101), &[]);
    let failure = JobState::Failed(JobFailure {
        reason: "PodFailurePolicy".into(),
        message: "exit 3: ledgers/FFFFFFF3--12.xdr.zst: ledger 12: invalid XDR".into(),
        exit_code: Some(3),
    });
    let jobs = [rebuild_job("a", r(12, 21), failure)];
    let plan = run(&s, Some(&then(&first)), &committed_through(101), &jobs);
    let status = rebuild_of(&plan);
    assert_eq!(status.phase, RebuildPhase::Failed);
    assert!(!status.refused);
    assert!(
        status.message.contains("FFFFFFF3--12.xdr.zst")
            && status
                .message
                .contains("committed partitions are unchanged")
            && status.message.contains("delete the Job to try again"),
        "{}",
        status.message
    );
    assert!(plan.create.is_empty() && plan.delete.is_empty());
    assert_eq!(plan.status.phase, Some(Phase::Succeeded));
    assert!(plan.status.failed_partitions.is_empty());
    assert!(plan.events.iter().any(|e| e.reason == "RebuildFailed"));
    // The user deletes the Job: the range runs again.
    let retry = run(&s, Some(&then(&plan)), &committed_through(101), &[]);
    assert_eq!(created(&retry), [(12, 21, Some("a"))]);
    assert_eq!(rebuild_of(&retry).phase, RebuildPhase::Running);
}

#[test]
fn a_finished_job_whose_partition_is_not_staged_runs_again() {
    let s = asking("a", 12, 31);
    let first = run(&s, None, &committed_through(101), &[]);
    let jobs = [
        rebuild_job("a", r(12, 21), JobState::Succeeded),
        rebuild_job("a", r(22, 31), JobState::Succeeded),
    ];
    let seq = Sequenced {
        rebuilt: Some(Rebuilt {
            id: "a".into(),
            waiting_for: Some(r(12, 21)),
            ..Default::default()
        }),
        ..committed_through(101)
    };
    let plan = run(&s, Some(&then(&first)), &seq, &jobs);
    assert_eq!(plan.delete, [rebuild_job_name("bbf", "a", r(12, 21))]);
    assert!(plan.create.is_empty());
    // Deleted: planned again at the next reconcile.
    let again = run(&s, Some(&then(&plan)), &seq, &jobs[1..]);
    assert_eq!(created(&again), [(12, 21, Some("a"))]);
}

#[test]
fn a_second_id_waits_for_the_running_rebuild() {
    let first = run(&asking("a", 12, 31), None, &committed_through(101), &[]);
    let jobs = [
        rebuild_job("a", r(12, 21), JobState::Active),
        rebuild_job("a", r(22, 31), JobState::Active),
    ];
    let s = asking("b", 52, 61);
    let queued = run(&s, Some(&then(&first)), &committed_through(101), &jobs);
    let status = rebuild_of(&queued);
    assert_eq!(status.id, "a");
    assert!(
        status.message.contains("rebuild b is queued"),
        "{}",
        status.message
    );
    assert!(queued.create.is_empty() && queued.delete.is_empty());
    // a ends; b starts, a goes to the history.
    let seq = Sequenced {
        rebuilt: Some(Rebuilt {
            id: "a".into(),
            done_through: Some(31),
            replaced: Vec::new(),
            ..Default::default()
        }),
        ..committed_through(101)
    };
    let done: Vec<ObservedJob> = jobs
        .iter()
        .map(|j| ObservedJob {
            state: JobState::Succeeded,
            ..j.clone()
        })
        .collect();
    let ended = run(&s, Some(&then(&queued)), &seq, &done);
    assert_eq!(rebuild_of(&ended).phase, RebuildPhase::Succeeded);
    let started = run(&s, Some(&then(&ended)), &committed_through(101), &done);
    assert_eq!(rebuild_of(&started).id, "b");
    assert_eq!(started.status.rebuild_history[0].id, "a");
    assert_eq!(created(&started), [(52, 61, Some("b"))]);
    // a's Jobs are harvested, not deleted.
    assert_eq!(started.harvest.len(), 2);
}

#[test]
fn removing_the_request_does_not_stop_a_started_rebuild_and_suspend_pauses_it() {
    let first = run(&asking("a", 12, 31), None, &committed_through(101), &[]);
    let mut s = spec();
    let jobs = [rebuild_job("a", r(12, 21), JobState::Active)];
    let plan = run(&s, Some(&then(&first)), &committed_through(101), &jobs);
    assert_eq!(created(&plan), [(22, 31, Some("a"))]);
    s.suspend = true;
    let paused = run(&s, Some(&then(&first)), &committed_through(101), &[]);
    assert!(paused.create.is_empty());
    assert_eq!(rebuild_of(&paused).phase, RebuildPhase::Pending);
    assert!(rebuild_of(&paused).message.contains("spec.suspend"));
}

#[test]
fn jobs_of_another_rebuild_are_deleted_when_running_and_harvested_when_done() {
    let s = asking("b", 12, 21);
    let jobs = [
        rebuild_job("old", r(22, 31), JobState::Active),
        rebuild_job("old", r(32, 41), JobState::Succeeded),
    ];
    let plan = run(&s, None, &committed_through(101), &jobs);
    assert_eq!(plan.delete, [rebuild_job_name("bbf", "old", r(22, 31))]);
    assert_eq!(plan.harvest, [rebuild_job_name("bbf", "old", r(32, 41))]);
    assert_eq!(created(&plan), [(12, 21, Some("b"))]);
}

#[test]
fn a_replacement_refused_by_the_sequencer_holds_the_rebuild() {
    let s = asking("a", 12, 21);
    let first = run(&s, None, &committed_through(101), &[]);
    let seq = Sequenced {
        rebuilt: Some(Rebuilt {
            id: "a".into(),
            done_through: None,
            replaced: Vec::new(),
            identical: 0,
            fault: Some("partition 12-21: the PAS chain holds another event".into()),
            waiting_for: None,
        }),
        ..committed_through(101)
    };
    let jobs = [rebuild_job("a", r(12, 21), JobState::Succeeded)];
    let plan = run(&s, Some(&then(&first)), &seq, &jobs);
    let status = rebuild_of(&plan);
    assert_eq!(status.phase, RebuildPhase::Failed);
    assert!(status.message.contains("PAS chain"), "{}", status.message);
    assert!(plan.harvest.is_empty());
}

mod props {
    //! Properties of rebuild planning over random grids, checkpoints, ranges and slot counts:
    //! a simulated cluster runs every Job planned (each succeeds before the next reconcile; the
    //! backfill's own Jobs past the checkpoint are never sequenced) and a simulated sequencer
    //! replaces rebuilt partitions in ledger order, until the rebuild ends.

    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn scenario() -> impl Strategy<Value = (BronzeBackfillSpec, u32, (u32, u32), u32)> {
        (
            1u32..=7,
            1u32..=4,
            1u32..=5,
            3u32..=30,
            any::<u16>(),
            any::<u16>(),
            0u32..4,
        )
            .prop_map(
                |(size, per_job, max_jobs, partitions, a, b, backfill_jobs)| {
                    let mut s = spec();
                    s.ledger_start = 2;
                    s.partition_size = size;
                    s.ledger_end = 1 + size * partitions;
                    s.partitions_per_job = per_job;
                    s.max_concurrent_jobs = max_jobs;
                    let committed = 1 + size * (1 + u32::from(a) % partitions);
                    let span = s.ledger_end - 1;
                    let (x, y) = (2 + u32::from(a) % span, 2 + u32::from(b) % span);
                    (s, committed, (x.min(y), x.max(y)), backfill_jobs)
                },
            )
    }

    proptest! {
        #[test]
        fn a_rebuild_covers_its_range_once_within_the_slots((s, committed, (x, y), running) in scenario()) {
            let mut s = s;
            s.rebuild = Some(RebuildSpec { id: "p".into(), ledger_start: x, ledger_end: y });
            let grid = Grid::of(&s);
            let widened = LedgerRange::new(
                grid.partition_of(x).unwrap().start,
                grid.partition_of(y).unwrap().end,
            );
            // Backfill Jobs past the checkpoint running at the start.
            let mut jobs: Vec<ObservedJob> = (0..running)
                .filter_map(|i| {
                    let p = grid.partition_of(committed + 1 + i * s.partition_size)?;
                    Some(backfill_job(grid.job_range_of(p), JobState::Active))
                })
                .collect();
            jobs.dedup_by_key(|j| j.range);
            let mut status: Option<BronzeBackfillStatus> = None;
            let mut done_through: Option<u32> = None;
            let mut rebuilt_by: BTreeMap<u32, String> = BTreeMap::new();
            for _ in 0..200 {
                let seq = Sequenced {
                    rebuilt: Some(Rebuilt { id: "p".into(), done_through, ..Default::default() }),
                    ..committed_through(committed)
                };
                let plan = run(&s, status.as_ref(), &seq, &jobs);
                let active = jobs.iter().filter(|j| j.state == JobState::Active).count();
                let rebuild_active = jobs
                    .iter()
                    .filter(|j| j.rebuild.is_some() && j.state == JobState::Active)
                    .count();
                // Never more than the slots (the backfill's own Jobs may fill them all).
                prop_assert!(
                    plan.create.is_empty()
                        || active + plan.create.len() <= s.max_concurrent_jobs as usize,
                    "{} active + {:?} > {}", active, created(&plan), s.max_concurrent_jobs
                );
                prop_assert!(rebuild_active <= s.max_concurrent_jobs as usize);
                let status_now = plan.status.rebuild.clone().unwrap();
                if !widened.end.le(&committed) {
                    prop_assert!(status_now.refused, "{status_now:?}");
                    prop_assert!(plan.create.iter().all(|c| c.rebuild.is_none()));
                    return Ok(());
                }
                for c in plan.create.iter().filter(|c| c.rebuild.is_some()) {
                    // Inside the range, whole partitions, at or below the checkpoint.
                    prop_assert!(widened.start <= c.range.start && c.range.end <= widened.end);
                    prop_assert!(c.range.end <= committed);
                    prop_assert_eq!(grid.partition_of(c.range.start).unwrap().start, c.range.start);
                    prop_assert_eq!(grid.partition_of(c.range.end).unwrap().end, c.range.end);
                    let mut at = c.range.start;
                    while at <= c.range.end {
                        let p = grid.partition_of(at).unwrap();
                        prop_assert!(
                            rebuilt_by.insert(p.start, c.name.clone()).is_none(),
                            "partition {p} planned twice"
                        );
                        at = p.end + 1;
                    }
                }
                prop_assert!(plan.create.iter().filter(|c| c.rebuild.is_none()).all(|c| c.range.end > committed));
                if status_now.phase == RebuildPhase::Succeeded {
                    prop_assert_eq!(status_now.partitions_done, status_now.partitions_total);
                    prop_assert_eq!(done_through, Some(widened.end));
                    let mut at = widened.start;
                    while at <= widened.end {
                        let p = grid.partition_of(at).unwrap();
                        prop_assert!(rebuilt_by.contains_key(&p.start), "{p} never rebuilt");
                        at = p.end + 1;
                    }
                    prop_assert_eq!(plan.status.checkpoint.as_ref().map(|c| c.last_committed_ledger), Some(committed));
                    return Ok(());
                }
                // The cluster: created Jobs exist; rebuild Jobs finish at once. The sequencer:
                // replaces, in order, the partitions whose Job succeeded.
                jobs.retain(|j| !plan.delete.contains(&j.name) && !plan.harvest.contains(&j.name));
                for c in &plan.create {
                    jobs.push(ObservedJob {
                        name: c.name.clone(),
                        rebuild: c.rebuild.clone(),
                        ..backfill_job(c.range, JobState::Active)
                    });
                }
                for j in jobs.iter_mut() {
                    j.state = JobState::Succeeded;
                }
                loop {
                    let next = done_through.map_or(widened.start, |d| d + 1);
                    let ready = next <= widened.end
                        && jobs.iter().any(|j| j.rebuild.is_some() && j.range.contains(next));
                    if !ready {
                        break;
                    }
                    done_through = Some(grid.partition_of(next).unwrap().end);
                }
                status = Some(plan.status);
            }
            prop_assert!(false, "the rebuild did not end");
        }
    }
}
