//! The reasons the operator writes: in `status.failedPartitions[].reason`, in the conditions'
//! `reason`, and on Kubernetes Events. Alerts, dashboards and the docs match on these strings,
//! so each is spelt once, here (docs/crd-reference.md and docs/operator.md name them).

// Why a range failed (`failedPartitions[].reason`, Events `JobFailed*`), from the worker's
// exit code (`bronze::exit`) or the Job's condition.
/// Exit code 2: the worker's configuration.
pub const CONFIG: &str = "Config";
/// Exit code 3 (or the pod failure policy without an exit code): bad data in the datastore.
pub const BAD_INPUT: &str = "BadInput";
/// Exit code 4: output that conflicts with what is committed.
pub const CONFLICT: &str = "Conflict";
/// The Job ran past `activeDeadlineSeconds`.
pub const DEADLINE_EXCEEDED: &str = "DeadlineExceeded";
/// Any other failure: transient, retried while attempts are left.
pub const RETRYABLE: &str = "Retryable";
/// A Job succeeded but its range has no committed manifest.
pub const MISSING_MANIFEST: &str = "MissingManifest";

// Faults the sequencer finds in storage (not Job failures: they are never retried).
/// A committed partition's manifest or hash link does not check.
pub const VERIFICATION_FAILED: &str = "VerificationFailed";
/// The PAS chain already holds a different event for a partition.
pub const AUDIT_CONFLICT: &str = "AuditConflict";

// Condition `Degraded`.
pub const RETRYING: &str = "Retrying";
pub const PARTITION_FAILED: &str = "PartitionFailed";
pub const STORAGE_UNAVAILABLE: &str = "StorageUnavailable";
pub const CATALOG_UNAVAILABLE: &str = "CatalogUnavailable";
pub const CATALOG_BEHIND: &str = "CatalogBehind";
pub const HEALTHY: &str = "Healthy";
// Condition `Progressing` while Jobs run (otherwise the phase's name).
pub const JOBS_RUNNING: &str = "JobsRunning";
// Condition `Complete` (`Succeeded` is also the Event of that phase).
pub const SUCCEEDED: &str = "Succeeded";
pub const IN_PROGRESS: &str = "InProgress";
// Condition `Suspended` (`Suspended` is the Event of that phase).
pub const SPEC_SUSPEND: &str = "SpecSuspend";
pub const NOT_SUSPENDED: &str = "NotSuspended";

// Events only.
pub const JOBS_CREATED: &str = "JobsCreated";
pub const COMMITTED: &str = "Committed";
pub const JOB_FAILED: &str = "JobFailed";
pub const JOB_FAILED_RETRYING: &str = "JobFailedRetrying";
pub const CATALOG_CAUGHT_UP: &str = "CatalogCaughtUp";
pub const SUSPENDED: &str = "Suspended";
pub const RESUMED: &str = "Resumed";
pub const FAILED: &str = "Failed";
pub const CAUGHT_UP: &str = "CaughtUp";
/// `spec.rebuild`: a rebuild accepted, refused (nothing changed), done, or failed.
pub const REBUILD_ACCEPTED: &str = "RebuildAccepted";
pub const REBUILD_REFUSED: &str = "RebuildRefused";
pub const REBUILD_SUCCEEDED: &str = "RebuildSucceeded";
pub const REBUILD_FAILED: &str = "RebuildFailed";
/// Rebuilt partitions swapped in (each with a `bronze_partition_replaced` PAS event).
pub const REPLACED: &str = "Replaced";
/// A failure without a record (should not happen; keeps the Failed message whole).
pub const UNKNOWN: &str = "Unknown";
