//! How many partitions one worker Pod builds at once, and whether the Pod's resources fit that.
//!
//! A worker Job builds `min(partitionsPerJob, maxInFlightPartitions)` partitions concurrently, and
//! each partition in flight costs about one core and, on pubnet-sized ledgers, 250-330 MiB at
//! peak (docs/scaling.md). So the number in flight and `spec.worker.resources` go together:
//!
//! * `maxInFlightPartitions` unset and a CPU request set: the number in flight is derived from
//!   the request (one partition per requested core, at least one), not the worker's default of 4,
//!   so a one-core Pod never builds four partitions on one core;
//! * a memory limit below what the partitions in flight need ([`MIB_PER_PARTITION`] each, plus
//!   [`MIB_BASE`]) is refused before any Job is created: such a Pod would be OOM-killed at the
//!   first large ledgers, retried, and killed again;
//! * more partitions in flight than requested cores (set explicitly) is allowed (the copy is
//!   partly I/O-bound) and reported as a warning.
//!
//! Pure functions; the reconciler applies them through [`crate::job::WorkerDefaults::apply`].

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::crd::BronzeBackfillSpec;

/// The worker's own default (`perf.max_in_flight_partitions`).
pub const WORKER_DEFAULT_IN_FLIGHT: u32 = 4;
/// Peak memory of one partition in flight on pubnet-sized ledgers (measured 250-330 MiB), with a
/// margin.
pub const MIB_PER_PARTITION: u64 = 384;
/// The process's own memory besides the partitions (runtime, clients, buffers).
pub const MIB_BASE: u64 = 128;

/// Where the number of partitions in flight came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InFlightSource {
    /// `spec.worker.maxInFlightPartitions`.
    Explicit,
    /// One per core of `spec.worker.resources.requests.cpu`.
    CpuRequest,
    /// The worker's default.
    WorkerDefault,
}

/// The partitions one worker Pod builds at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InFlight {
    /// What the worker is configured with (`perf.max_in_flight_partitions`).
    pub configured: u32,
    /// What actually runs at once: `configured`, capped by `partitionsPerJob`.
    pub effective: u32,
    pub source: InFlightSource,
}

/// The number of partitions a worker Pod of `spec` builds at once.
pub fn in_flight(spec: &BronzeBackfillSpec) -> InFlight {
    let per_job = spec.partitions_per_job.max(1);
    let (configured, source) = match (spec.worker.max_in_flight_partitions, cpu_request(spec)) {
        (Some(n), _) => (n.max(1), InFlightSource::Explicit),
        (None, Some(cores)) => (
            (cores.floor() as u32).clamp(1, 256),
            InFlightSource::CpuRequest,
        ),
        (None, None) => (WORKER_DEFAULT_IN_FLIGHT, InFlightSource::WorkerDefault),
    };
    InFlight {
        configured,
        effective: configured.min(per_job),
        source,
    }
}

/// Whether a worker Pod of `spec` has the resources for the partitions it builds at once:
/// `Err` (the backfill is refused, nothing created) when its memory limit is too small,
/// `Ok(Some(warning))` when it builds more partitions at once than it requests cores.
pub fn check_resources(spec: &BronzeBackfillSpec) -> Result<Option<String>, String> {
    let shape = in_flight(spec);
    let n = u64::from(shape.effective);
    let needed_mib = MIB_BASE + n * MIB_PER_PARTITION;
    if let Some(limit) = memory_limit(spec)? {
        let limit_mib = limit / (1024 * 1024);
        if limit_mib < needed_mib {
            return Err(format!(
                "spec.worker.resources.limits.memory ({limit_mib} MiB) is below what a worker Pod \
                 building {n} partition(s) at once needs (about {needed_mib} MiB: {MIB_PER_PARTITION} \
                 MiB per partition in flight plus {MIB_BASE} MiB); it would be OOM-killed. Raise the \
                 limit, or lower spec.worker.maxInFlightPartitions or spec.partitionsPerJob \
                 (docs/scaling.md#recipe-32-cores-of-workers-on-pubnet)"
            ));
        }
    }
    let warning = match (shape.source, cpu_request(spec)) {
        (InFlightSource::Explicit, Some(cores)) if f64::from(shape.effective) > cores => {
            Some(format!(
                "worker Pods build {} partitions at once (spec.worker.maxInFlightPartitions) on \
                 {cores} requested CPU; each partition in flight uses about one core",
                shape.effective
            ))
        }
        _ => None,
    };
    Ok(warning)
}

fn cpu_request(spec: &BronzeBackfillSpec) -> Option<f64> {
    let resources = spec.worker.resources.as_ref()?;
    let q = resources.requests.as_ref()?.get("cpu")?;
    cpu_cores(q)
}

fn memory_limit(spec: &BronzeBackfillSpec) -> Result<Option<u64>, String> {
    let Some(q) = spec
        .worker
        .resources
        .as_ref()
        .and_then(|r| r.limits.as_ref())
        .and_then(|l| l.get("memory"))
    else {
        return Ok(None);
    };
    memory_bytes(q).map(Some).ok_or_else(|| {
        format!(
            "spec.worker.resources.limits.memory {:?} is not a Kubernetes quantity",
            q.0
        )
    })
}

/// Cores of a CPU quantity (`500m`, `2`, `1.5`); `None` when it is not one.
pub fn cpu_cores(q: &Quantity) -> Option<f64> {
    let text = q.0.trim();
    let value = match text.strip_suffix('m') {
        Some(milli) => milli.parse::<f64>().ok()? / 1000.0,
        None => text.parse::<f64>().ok()?,
    };
    (value.is_finite() && value >= 0.0).then_some(value)
}

/// Bytes of a memory quantity (`512Mi`, `2Gi`, `1G`, `1e9`, `2048`); `None` when it is not one.
pub fn memory_bytes(q: &Quantity) -> Option<u64> {
    const SUFFIXES: [(&str, f64); 12] = [
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("Pi", 1125899906842624.0),
        ("Ei", 1152921504606846976.0),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    let text = q.0.trim();
    let (number, factor) = SUFFIXES
        .iter()
        .find_map(|(suffix, factor)| text.strip_suffix(suffix).map(|n| (n, *factor)))
        .unwrap_or((text, 1.0));
    let value = number.parse::<f64>().ok()? * factor;
    (value.is_finite() && value >= 0.0).then_some(value as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use k8s_openapi::api::core::v1::ResourceRequirements;
    use std::collections::BTreeMap;

    fn q(s: &str) -> Quantity {
        Quantity(s.to_string())
    }

    fn spec_with(cpu: Option<&str>, memory_limit: Option<&str>) -> BronzeBackfillSpec {
        let mut spec = fixtures::spec();
        let requests: BTreeMap<String, Quantity> =
            cpu.map(|c| ("cpu".to_string(), q(c))).into_iter().collect();
        let limits: BTreeMap<String, Quantity> = memory_limit
            .map(|m| ("memory".to_string(), q(m)))
            .into_iter()
            .collect();
        spec.worker.resources = Some(ResourceRequirements {
            requests: Some(requests),
            limits: Some(limits),
            ..Default::default()
        });
        spec
    }

    #[test]
    fn quantities_parse_as_kubernetes_writes_them() {
        assert_eq!(cpu_cores(&q("500m")), Some(0.5));
        assert_eq!(cpu_cores(&q("2")), Some(2.0));
        assert_eq!(cpu_cores(&q("1.5")), Some(1.5));
        assert_eq!(cpu_cores(&q("two")), None);
        assert_eq!(memory_bytes(&q("512Mi")), Some(512 << 20));
        assert_eq!(memory_bytes(&q("2Gi")), Some(2 << 30));
        assert_eq!(memory_bytes(&q("1G")), Some(1_000_000_000));
        assert_eq!(memory_bytes(&q("1e9")), Some(1_000_000_000));
        assert_eq!(memory_bytes(&q("2048")), Some(2048));
        assert_eq!(memory_bytes(&q("lots")), None);
    }

    #[test]
    fn partitions_in_flight_follow_the_cpu_request_unless_set() {
        let mut spec = spec_with(Some("1"), None);
        spec.partitions_per_job = 10;
        let shape = in_flight(&spec);
        assert_eq!((shape.configured, shape.effective), (1, 1));
        assert_eq!(shape.source, InFlightSource::CpuRequest);

        let spec_half = {
            let mut s = spec_with(Some("500m"), None);
            s.partitions_per_job = 10;
            s
        };
        assert_eq!(in_flight(&spec_half).configured, 1, "at least one");

        let mut four = spec_with(Some("4"), None);
        four.partitions_per_job = 2;
        assert_eq!(in_flight(&four).effective, 2, "capped by partitionsPerJob");

        let mut explicit = spec_with(Some("1"), None);
        explicit.partitions_per_job = 10;
        explicit.worker.max_in_flight_partitions = Some(3);
        let shape = in_flight(&explicit);
        assert_eq!(
            (shape.effective, shape.source),
            (3, InFlightSource::Explicit)
        );

        let mut none = fixtures::spec();
        none.partitions_per_job = 10;
        none.worker.resources = None;
        assert_eq!(in_flight(&none).effective, WORKER_DEFAULT_IN_FLIGHT);
    }

    #[test]
    fn a_memory_limit_below_the_partitions_in_flight_is_refused() {
        let mut spec = spec_with(Some("4"), Some("1Gi"));
        spec.partitions_per_job = 10;
        let refused = check_resources(&spec).unwrap_err();
        assert!(refused.contains("1024 MiB"), "{refused}");
        assert!(refused.contains("4 partition(s)"), "{refused}");
        assert!(refused.contains("maxInFlightPartitions"), "{refused}");

        // Four in flight fit in 2 GiB (4 x 384 + 128 = 1664 MiB).
        let mut fits = spec_with(Some("4"), Some("2Gi"));
        fits.partitions_per_job = 10;
        assert_eq!(check_resources(&fits), Ok(None));

        let mut bad = spec_with(None, Some("plenty"));
        bad.partitions_per_job = 1;
        assert!(check_resources(&bad).unwrap_err().contains("\"plenty\""));
    }

    #[test]
    fn more_partitions_than_cores_set_explicitly_is_a_warning() {
        let mut spec = spec_with(Some("1"), Some("4Gi"));
        spec.partitions_per_job = 10;
        spec.worker.max_in_flight_partitions = Some(4);
        let warning = check_resources(&spec).unwrap().expect("a warning");
        assert!(warning.contains("4 partitions at once"), "{warning}");
    }

    #[test]
    fn the_shipped_examples_and_chart_block_are_accepted() {
        for path in [
            "../examples/bronzebackfill-minio.yaml",
            "../examples/bronzebackfill-pubnet-gcs.yaml",
            "../examples/bronzebackfill-pubnet.yaml",
            "../examples/bronzebackfill-testnet-volume.yaml",
        ] {
            let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
            let text = std::fs::read_to_string(&full).unwrap();
            let backfill: crate::crd::BronzeBackfill = serde_yaml_ng::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: {e}", full.display()));
            assert_eq!(
                check_resources(&backfill.spec),
                Ok(None),
                "{} does not fit its own resources",
                full.display()
            );
        }
    }
}
