//! Prometheus metrics of the operator, served at `/metrics` (see `main.rs`).

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::crd::{BronzeBackfillStatus, Phase};
use crate::reconcile::Error;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `ok` or the error's label.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackfillLabels {
    /// `namespace/name`
    pub backfill: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub backfill: String,
    pub phase: String,
}

pub struct Metrics {
    pub registry: Arc<Registry>,
    reconciliations: Family<ResultLabels, Counter>,
    reconcile_seconds: Histogram,
    jobs_created: Counter,
    partitions_sequenced: Family<BackfillLabels, Counter>,
    last_committed_ledger: Family<BackfillLabels, Gauge>,
    committed_partitions: Family<BackfillLabels, Gauge>,
    failed_partitions: Family<BackfillLabels, Gauge>,
    running_jobs: Family<BackfillLabels, Gauge>,
    phase: Family<PhaseLabels, Gauge>,
    total_partitions: Family<BackfillLabels, Gauge>,
    pas_undelivered: Family<BackfillLabels, Gauge>,
    catalog_unrecorded: Family<BackfillLabels, Gauge>,
    checkpoint_timestamp: Family<BackfillLabels, Gauge>,
    leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let reconciliations = Family::<ResultLabels, Counter>::default();
        let reconcile_seconds = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        let jobs_created = Counter::default();
        let partitions_sequenced = Family::<BackfillLabels, Counter>::default();
        let last_committed_ledger = Family::<BackfillLabels, Gauge>::default();
        let committed_partitions = Family::<BackfillLabels, Gauge>::default();
        let failed_partitions = Family::<BackfillLabels, Gauge>::default();
        let running_jobs = Family::<BackfillLabels, Gauge>::default();
        let phase = Family::<PhaseLabels, Gauge>::default();
        let total_partitions = Family::<BackfillLabels, Gauge>::default();
        let pas_undelivered = Family::<BackfillLabels, Gauge>::default();
        let catalog_unrecorded = Family::<BackfillLabels, Gauge>::default();
        let checkpoint_timestamp = Family::<BackfillLabels, Gauge>::default();
        let leader = Gauge::default();
        // One registry for the process: the operator's families under `bronze_operator_`, and
        // the worker library's (`bronze_copier_*`: PAS delivery and datastore retries, errors,
        // counted by `bronze::metrics` from code the operator runs) from their one store.
        let mut root = Registry::default();
        let r = root.sub_registry_with_prefix("bronze_operator");
        r.register(
            "reconciliations",
            "Reconciles by result",
            reconciliations.clone(),
        );
        r.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile",
            reconcile_seconds.clone(),
        );
        r.register(
            "leader",
            "1 while this replica runs the controller (the leader, or the only replica), else 0",
            leader.clone(),
        );
        r.register("jobs_created", "Worker Jobs created", jobs_created.clone());
        r.register(
            "partitions_sequenced",
            "Partitions verified and sequenced (checkpoint advanced, audit event appended)",
            partitions_sequenced.clone(),
        );
        r.register(
            "last_committed_ledger",
            "The checkpoint: last ledger committed and sequenced",
            last_committed_ledger.clone(),
        );
        r.register(
            "committed_partitions",
            "Partitions committed and sequenced",
            committed_partitions.clone(),
        );
        r.register(
            "failed_partitions",
            "Partitions reported failed (retrying or final)",
            failed_partitions.clone(),
        );
        r.register("running_jobs", "Worker Jobs running", running_jobs.clone());
        r.register("phase", "1 for the backfill's current phase", phase.clone());
        r.register(
            "total_partitions",
            "Partitions in the backfill's range (absent when following the tip)",
            total_partitions.clone(),
        );
        r.register(
            "pas_undelivered_events",
            "Audit events stored but not yet accepted by spec.pas.endpoint",
            pas_undelivered.clone(),
        );
        r.register(
            "catalog_unrecorded_partitions",
            "Sequenced partitions still without catalog rows",
            catalog_unrecorded.clone(),
        );
        r.register(
            "checkpoint_timestamp_seconds",
            "Unix time this operator last saw the checkpoint advance (absent until it does)",
            checkpoint_timestamp.clone(),
        );
        bronze::metrics::register(&mut root);
        Self {
            registry: Arc::new(root),
            reconciliations,
            reconcile_seconds,
            jobs_created,
            partitions_sequenced,
            last_committed_ledger,
            committed_partitions,
            failed_partitions,
            running_jobs,
            phase,
            total_partitions,
            pas_undelivered,
            catalog_unrecorded,
            checkpoint_timestamp,
            leader,
        }
    }
}

const PHASES: [Phase; 6] = [
    Phase::Pending,
    Phase::Running,
    Phase::Following,
    Phase::Suspended,
    Phase::Succeeded,
    Phase::Failed,
];

impl Metrics {
    pub fn reconciled(&self, took: Duration, error: Option<&Error>) {
        self.reconcile_seconds.observe(took.as_secs_f64());
        let result = error.map_or("ok", |e| e.metric_label()).to_string();
        self.reconciliations
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// Whether this replica runs the controller (`bronze_operator_leader`).
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    pub fn job_created(&self) {
        self.jobs_created.inc();
    }

    pub fn observe_status(&self, backfill: &str, status: &BronzeBackfillStatus, sequenced: usize) {
        let labels = BackfillLabels {
            backfill: backfill.to_string(),
        };
        self.partitions_sequenced
            .get_or_create(&labels)
            .inc_by(sequenced as u64);
        self.last_committed_ledger
            .get_or_create(&labels)
            .set(i64::from(status.last_committed_ledger.unwrap_or(0)));
        self.committed_partitions.get_or_create(&labels).set(
            status
                .progress
                .as_ref()
                .map_or(0, |p| p.committed_partitions as i64),
        );
        self.failed_partitions
            .get_or_create(&labels)
            .set(status.failed_partitions.len() as i64);
        self.running_jobs
            .get_or_create(&labels)
            .set(status.running_partitions.len() as i64);
        match status.progress.as_ref().and_then(|p| p.total_partitions) {
            Some(total) => {
                self.total_partitions
                    .get_or_create(&labels)
                    .set(i64::try_from(total).unwrap_or(i64::MAX));
            }
            None => {
                self.total_partitions.remove(&labels);
            }
        }
        self.pas_undelivered.get_or_create(&labels).set(
            status
                .pas
                .as_ref()
                .and_then(|p| p.undelivered)
                .map_or(0, |n| i64::try_from(n).unwrap_or(i64::MAX)),
        );
        match &status.catalog {
            Some(c) => {
                self.catalog_unrecorded
                    .get_or_create(&labels)
                    .set(i64::try_from(c.unrecorded_partitions).unwrap_or(i64::MAX));
            }
            None => {
                self.catalog_unrecorded.remove(&labels);
            }
        }
        if sequenced > 0 {
            self.checkpoint_timestamp
                .get_or_create(&labels)
                .set(chrono::Utc::now().timestamp());
        }
        for phase in PHASES {
            self.phase
                .get_or_create(&PhaseLabels {
                    backfill: backfill.to_string(),
                    phase: phase.as_str().to_string(),
                })
                .set(i64::from(status.phase == Some(phase)));
        }
    }

    /// Drops the series of a deleted backfill.
    pub fn forget(&self, backfill: &str) {
        let labels = BackfillLabels {
            backfill: backfill.to_string(),
        };
        self.partitions_sequenced.remove(&labels);
        self.last_committed_ledger.remove(&labels);
        self.committed_partitions.remove(&labels);
        self.failed_partitions.remove(&labels);
        self.running_jobs.remove(&labels);
        self.total_partitions.remove(&labels);
        self.pas_undelivered.remove(&labels);
        self.catalog_unrecorded.remove(&labels);
        self.checkpoint_timestamp.remove(&labels);
        for phase in PHASES {
            self.phase.remove(&PhaseLabels {
                backfill: backfill.to_string(),
                phase: phase.as_str().to_string(),
            });
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pas_catalog_and_progress_become_gauges_and_an_idle_reconcile_keeps_the_checkpoint_time() {
        let m = Metrics::default();
        let status = BronzeBackfillStatus {
            phase: Some(Phase::Running),
            progress: Some(crate::crd::ProgressStatus {
                committed_partitions: 3,
                total_partitions: Some(10),
                percent: Some(30),
                summary: "3/10 (30%)".into(),
                started_at: "2026-01-01T00:00:00Z".into(),
                started_from_ledger: 0,
            }),
            pas: Some(crate::crd::PasStatus {
                chain_head: None,
                event_count: 3,
                outbox: "s3://b/p_pas/".into(),
                undelivered: Some(2),
            }),
            catalog: Some(crate::crd::CatalogStatus {
                database: "postgres://u:***@db/x".into(),
                strict: false,
                recorded_through: None,
                unrecorded_partitions: 4,
                last_error: None,
            }),
            ..Default::default()
        };
        m.observe_status("ns/c", &status, 0);
        let text = m.render();
        for line in [
            "bronze_operator_total_partitions{backfill=\"ns/c\"} 10",
            "bronze_operator_committed_partitions{backfill=\"ns/c\"} 3",
            "bronze_operator_pas_undelivered_events{backfill=\"ns/c\"} 2",
            "bronze_operator_catalog_unrecorded_partitions{backfill=\"ns/c\"} 4",
        ] {
            assert!(text.contains(line), "{line} missing:\n{text}");
        }
        // Nothing sequenced yet: no checkpoint time to report.
        assert!(!text.contains("checkpoint_timestamp_seconds{"), "{text}");
    }

    #[test]
    fn status_becomes_per_backfill_series_and_deletion_removes_them() {
        let m = Metrics::default();
        let status = BronzeBackfillStatus {
            phase: Some(Phase::Running),
            last_committed_ledger: Some(1001),
            ..Default::default()
        };
        m.observe_status("ns/b", &status, 2);
        m.reconciled(Duration::from_millis(3), None);
        let text = m.render();
        assert!(
            text.contains("bronze_operator_last_committed_ledger{backfill=\"ns/b\"} 1001"),
            "{text}"
        );
        assert!(
            text.contains("bronze_operator_phase{backfill=\"ns/b\",phase=\"Running\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("bronze_operator_reconciliations_total{result=\"ok\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("bronze_operator_checkpoint_timestamp_seconds{backfill=\"ns/b\"} "),
            "{text}"
        );
        assert!(
            text.contains("bronze_operator_pas_undelivered_events{backfill=\"ns/b\"} 0"),
            "{text}"
        );
        m.forget("ns/b");
        assert!(!m.render().contains("ns/b"));
    }
}
