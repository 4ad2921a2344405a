//! `bronze-copier health`: the runbook's health-check script as a command. Reads the checkpoint
//! of the configured network/era/version (or a given file) and prints one line:
//!
//! | line | exit |
//! |---|---|
//! | `OK: Last committed ledger N (M min ago)` | 0 |
//! | `WARNING: Checkpoint not updated in N minutes` | 1 |
//! | `CRITICAL: Checkpoint file not found: PATH` / `CRITICAL: …corrupt…` | 2 |
//!
//! The age comes from the checkpoint's `updated_at` (the file's modification time when that is
//! unreadable), in whole minutes as the script computed it.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use chrono::{DateTime, Utc};

use crate::checkpoint::{Checkpoint, CheckpointStore, LEGACY_FILE_NAME};
use crate::config::Config;

pub const DEFAULT_MAX_AGE_MINUTES: u64 = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Warning,
    Critical,
}

impl Status {
    /// The exit code of the runbook's script (Nagios convention).
    pub fn exit_code(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::Warning => 1,
            Status::Critical => 2,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: Status,
    pub message: String,
}

impl Outcome {
    fn critical(message: String) -> Self {
        Self {
            status: Status::Critical,
            message,
        }
    }
}

/// What was found on disk.
#[derive(Debug)]
pub enum Observed {
    Missing(PathBuf),
    Unreadable {
        path: PathBuf,
        reason: String,
    },
    Found {
        checkpoint: Checkpoint,
        modified: Option<DateTime<Utc>>,
    },
}

/// The verdict (pure).
pub fn evaluate(observed: Observed, now: DateTime<Utc>, max_age_minutes: u64) -> Outcome {
    let (checkpoint, modified) = match observed {
        Observed::Missing(path) => {
            return Outcome::critical(format!(
                "CRITICAL: Checkpoint file not found: {}",
                path.display()
            ));
        }
        Observed::Unreadable { path, reason } => {
            return Outcome::critical(format!(
                "CRITICAL: Checkpoint file {} is unreadable: {reason}",
                path.display()
            ));
        }
        Observed::Found {
            checkpoint,
            modified,
        } => (checkpoint, modified),
    };
    let updated = DateTime::parse_from_rfc3339(&checkpoint.updated_at)
        .ok()
        .map(|t| t.with_timezone(&Utc))
        .or(modified);
    let Some(updated) = updated else {
        return Outcome::critical(format!(
            "CRITICAL: Checkpoint has no readable updated_at ({:?}) and no modification time",
            checkpoint.updated_at
        ));
    };
    // A clock behind the writer's counts as just updated.
    let age_minutes = (now - updated).num_minutes().max(0) as u64;
    if age_minutes > max_age_minutes {
        return Outcome {
            status: Status::Warning,
            message: format!("WARNING: Checkpoint not updated in {age_minutes} minutes"),
        };
    }
    Outcome {
        status: Status::Ok,
        message: format!(
            "OK: Last committed ledger {} ({age_minutes} min ago)",
            checkpoint.last_committed_ledger
        ),
    }
}

/// Reads the checkpoint at `path`.
pub fn observe_file(path: &Path) -> Observed {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Observed::Missing(path.to_path_buf());
        }
        Err(e) => {
            return Observed::Unreadable {
                path: path.to_path_buf(),
                reason: e.to_string(),
            };
        }
    };
    match serde_json::from_slice::<Checkpoint>(&bytes) {
        Ok(checkpoint) => Observed::Found {
            checkpoint,
            modified: std::fs::metadata(path)
                .and_then(|m| m.modified())
                .ok()
                .map(DateTime::<Utc>::from),
        },
        Err(e) => Observed::Unreadable {
            path: path.to_path_buf(),
            reason: format!("corrupt JSON: {e}"),
        },
    }
}

/// Reads the checkpoint of the dataset `config` describes: its own file, else the runbook's
/// `checkpoint.json` when that names the same dataset (as the copier itself resumes).
pub fn observe_config(config: &Config) -> Observed {
    if !config.checkpoint.enabled {
        return Observed::Unreadable {
            path: PathBuf::from(&config.checkpoint.dir),
            reason:
                "checkpoint.enabled is false in this configuration, so no checkpoint is written"
                    .into(),
        };
    }
    let store = CheckpointStore::new(config);
    let path = store.path();
    match observe_file(&path) {
        Observed::Missing(_) => {}
        Observed::Found { checkpoint, .. }
            if (
                checkpoint.network.as_str(),
                checkpoint.era_id.as_str(),
                checkpoint.version_label.as_str(),
            ) != (
                config.era.network.as_str(),
                config.era.era_id.as_str(),
                config.era.version_label.as_str(),
            ) =>
        {
            return Observed::Unreadable {
                path,
                reason: format!(
                    "it belongs to {}/{}/{}, not to the configured {}/{}/{}",
                    checkpoint.network,
                    checkpoint.era_id,
                    checkpoint.version_label,
                    config.era.network,
                    config.era.era_id,
                    config.era.version_label
                ),
            };
        }
        other => return other,
    }
    let legacy = PathBuf::from(&config.checkpoint.dir).join(LEGACY_FILE_NAME);
    match observe_file(&legacy) {
        Observed::Found {
            checkpoint,
            modified,
        } if checkpoint.network == config.era.network
            && checkpoint.era_id == config.era.era_id
            && checkpoint.version_label == config.era.version_label =>
        {
            Observed::Found {
                checkpoint,
                modified,
            }
        }
        _ => Observed::Missing(path),
    }
}

/// Runs the check and returns the line to print and the exit code.
pub fn check(observed: Observed, max_age_minutes: u64) -> Outcome {
    evaluate(
        observed,
        DateTime::<Utc>::from(SystemTime::now()),
        max_age_minutes,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint(updated_at: &str) -> Checkpoint {
        Checkpoint {
            copier_id: "c".into(),
            network: "testnet".into(),
            era_id: "pre_p23".into(),
            version_label: "v1".into(),
            last_committed_ledger: 1001,
            last_committed_partition: None,
            updated_at: updated_at.into(),
            ingested_at: None,
            last_ledger_hash: None,
        }
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn fresh_checkpoint_is_ok_with_the_runbook_line() {
        let o = evaluate(
            Observed::Found {
                checkpoint: checkpoint("2025-01-15T10:00:00Z"),
                modified: None,
            },
            at("2025-01-15T10:05:30Z"),
            60,
        );
        assert_eq!(o.status, Status::Ok);
        assert_eq!(o.message, "OK: Last committed ledger 1001 (5 min ago)");
    }

    #[test]
    fn stale_checkpoint_warns_with_its_age() {
        let o = evaluate(
            Observed::Found {
                checkpoint: checkpoint("2025-01-15T10:00:00Z"),
                modified: None,
            },
            at("2025-01-15T12:00:00Z"),
            60,
        );
        assert_eq!(o.status.exit_code(), 1);
        assert_eq!(o.message, "WARNING: Checkpoint not updated in 120 minutes");
    }

    #[test]
    fn exactly_the_threshold_is_still_ok_like_the_script() {
        let o = evaluate(
            Observed::Found {
                checkpoint: checkpoint("2025-01-15T10:00:00Z"),
                modified: None,
            },
            at("2025-01-15T11:00:59Z"),
            60,
        );
        assert_eq!(o.status, Status::Ok);
    }

    #[test]
    fn unreadable_updated_at_falls_back_to_the_file_time() {
        let o = evaluate(
            Observed::Found {
                checkpoint: checkpoint("yesterday"),
                modified: Some(at("2025-01-15T09:00:00Z")),
            },
            at("2025-01-15T10:30:00Z"),
            60,
        );
        assert_eq!(o.message, "WARNING: Checkpoint not updated in 90 minutes");
    }

    #[test]
    fn missing_and_corrupt_are_critical() {
        let o = evaluate(
            Observed::Missing("/s/checkpoint_x.json".into()),
            Utc::now(),
            60,
        );
        assert_eq!(o.status.exit_code(), 2);
        assert!(o.message.starts_with("CRITICAL: Checkpoint file not found"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.json");
        std::fs::write(&path, b"{\"copier_id\": ").unwrap();
        let o = check(observe_file(&path), 60);
        assert_eq!(o.status, Status::Critical);
        assert!(o.message.contains("corrupt JSON"), "{}", o.message);
    }
}
