//! A benchmark, not a check of behaviour (ignored by default; `make bench-cluster` runs it): a few
//! hundred small partitions over as many Jobs, one partition per Job, on the real control plane.
//! Prints wall time, Jobs per minute, status writes per partition (counted from a watch of the
//! BronzeBackfill: each change of its status), reconciles per partition and their mean time.
//! It still asserts the outcome (every partition committed once, one linear audit chain, every
//! Pod exited 0) so a figure never comes from a broken run.
//!
//! `BRONZE_BENCH_PARTITIONS` (default 300) partitions of [`PARTITION`] small ledgers,
//! `BRONZE_BENCH_JOBS` (default 8) Jobs at once, `BRONZE_BENCH_TTL` (default: the spec's default,
//! an hour) as `worker.ttlSecondsAfterHarvest`: how long finished Jobs stay, listed by every
//! reconcile.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bronze_operator::crd::BronzeBackfill;
use futures::StreamExt;
use kube::runtime::watcher;
use serde_json::json;

use crate::harness::*;
use crate::kubelet::Faults;

fn env_u32(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The sum of the samples of `name` (all label sets).
fn metric_sum(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name} ")) || l.starts_with(&format!("{name}{{")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
#[ignore = "a benchmark (minutes): make bench-cluster"]
async fn a_few_hundred_partitions_over_many_jobs() {
    let partitions = env_u32("BRONZE_BENCH_PARTITIONS", 300);
    let jobs_at_once = env_u32("BRONZE_BENCH_JOBS", 8);
    let ttl = std::env::var("BRONZE_BENCH_TTL")
        .ok()
        .and_then(|v| v.parse::<u32>().ok());
    let Some(env) = TestEnv::start("scale").await else {
        return;
    };
    let ledgers = partitions * PARTITION;
    let last = 2 + ledgers - 1;
    let started = Instant::now();
    let ds = Datastore::generate_small(&env.dir.path().join("datastore"), ledgers);
    env.upload(&ds, None);
    say(&format!(
        "scale: {ledgers} small ledgers generated and uploaded in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    let operator = env.operator(OperatorOptions::named("op-a")).await;
    let kubelet = env.kubelet(Faults::default());

    // Status writes: every change of the backfill's status seen by a watch.
    let status_writes = Arc::new(AtomicU64::new(0));
    let watch = {
        let writes = status_writes.clone();
        let stream = watcher(
            env.backfills(),
            watcher::Config::default().fields("metadata.name=scale"),
        );
        tokio::spawn(async move {
            let mut last_status = None;
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                let (watcher::Event::Apply(b) | watcher::Event::InitApply(b)) = (match event {
                    Ok(e) => e,
                    Err(_) => continue,
                }) else {
                    continue;
                };
                let b: BronzeBackfill = b;
                let status = serde_json::to_value(&b.status).unwrap();
                if last_status.as_ref() != Some(&status) {
                    if !status.is_null() {
                        writes.fetch_add(1, Ordering::Relaxed);
                    }
                    last_status = Some(status);
                }
            }
        })
    };

    let started = Instant::now();
    let mut extra = json!({"partitionsPerJob": 1, "maxConcurrentJobs": jobs_at_once});
    if let Some(ttl) = ttl {
        extra["worker"] = json!({"ttlSecondsAfterHarvest": ttl});
    }
    env.create("scale", env.spec(last, extra)).await;
    // Sample progress and the operator's reconcile counters every few seconds: whether the time
    // per reconcile grows with the partitions already committed.
    let mut samples: Vec<(f64, u64, f64, f64)> = Vec::new();
    let b = loop {
        let b = env.backfills().get("scale").await.unwrap();
        let s = b.status.clone().unwrap_or_default();
        never_failed(&s);
        let metrics = operator.metrics();
        samples.push((
            started.elapsed().as_secs_f64(),
            s.progress.as_ref().map_or(0, |p| p.committed_partitions),
            metric_sum(&metrics, "bronze_operator_reconciliations_total"),
            metric_sum(&metrics, "bronze_operator_reconcile_duration_seconds_sum"),
        ));
        if s.phase == Some(bronze_operator::crd::Phase::Succeeded) {
            break b;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3600),
            "not done in an hour"
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
    };
    let wall = started.elapsed();
    let mut previous = (0.0, 0, 0.0, 0.0);
    for &(at, done, reconciles, seconds) in &samples {
        if reconciles > previous.2 {
            say(&format!(
                "scale: t={at:.0}s committed {done}: {:.0} reconciles, mean {:.0} ms, {:.2} partitions/s",
                reconciles - previous.2,
                1000.0 * (seconds - previous.3) / (reconciles - previous.2),
                (done - previous.1) as f64 / (at - previous.0).max(0.001)
            ));
        }
        previous = (at, done, reconciles, seconds);
    }
    // The last status write may still be on its way to the watch.
    tokio::time::sleep(Duration::from_secs(1)).await;
    watch.abort();

    let status = b.status.unwrap();
    assert_eq!(status.last_committed_ledger, Some(last));
    let committed = manifests(&env);
    assert_eq!(committed.len(), partitions as usize);
    assert_one_linear_chain(&env, last);
    let record = kubelet.record();
    assert!(record.ended.iter().all(|(_, _, c)| *c == 0), "{record:?}");

    let metrics = operator.metrics();
    let jobs = metric_sum(&metrics, "bronze_operator_jobs_created_total");
    let reconciles = metric_sum(&metrics, "bronze_operator_reconciliations_total");
    let reconcile_s = metric_sum(&metrics, "bronze_operator_reconcile_duration_seconds_sum");
    let writes = status_writes.load(Ordering::Relaxed) as f64;
    let status_bytes = serde_json::to_vec(&status).unwrap().len();
    let p = f64::from(partitions);
    let minutes = wall.as_secs_f64() / 60.0;
    say(&format!(
        "== cluster: {partitions} partitions of {PARTITION} small ledgers, one per Job, {jobs_at_once} Jobs at once, \
         ttlSecondsAfterHarvest {ttl:?}: \
         wall {:.1} s, {:.1} Jobs/min ({jobs} Jobs, {} Pods), {:.2} partitions/s; \
         status writes {writes} ({:.2} per partition), final status {status_bytes} bytes; \
         reconciles {reconciles} ({:.2} per partition), mean reconcile {:.1} ms",
        wall.as_secs_f64(),
        jobs / minutes,
        record.ended.len(),
        p / wall.as_secs_f64(),
        writes / p,
        reconciles / p,
        1000.0 * reconcile_s / reconciles.max(1.0),
    ));
    kubelet.stop().await;
}
