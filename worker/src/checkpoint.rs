//! The standalone checkpoint: `<dir>/checkpoint_<network>_<era_id>_<version_label>.json`
//! (docs/formats.md#checkpoint-standalone), written atomically after each committed partition.
//!
//! Only the file of the configured network, era and version is ever read (the original read
//! whichever `checkpoint_*.json` came first). The runbook's hand-written `checkpoint.json` is
//! honoured as a fallback when it names the same network, era and version.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::Config;

pub const LEGACY_FILE_NAME: &str = "checkpoint.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub copier_id: String,
    pub network: String,
    pub era_id: String,
    pub version_label: String,
    pub last_committed_ledger: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_committed_partition: Option<CommittedPartition>,
    pub updated_at: String,
    /// The backfill's fixed `ingested_at` (added field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingested_at: Option<String>,
    /// Hash of `last_committed_ledger`, to check the next partition's link (added field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_ledger_hash: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedPartition {
    pub start: u32,
    pub end: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub checksum: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(
        "checkpoint {path} is corrupt: {message} (fix or delete it; the committed partitions in storage are not affected)"
    )]
    Corrupt { path: PathBuf, message: String },
    #[error("checkpoint {path} belongs to {found}, not to {expected}")]
    WrongDataset {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("cannot {op} checkpoint {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Reads and writes the checkpoint of one network/era/version.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    dir: PathBuf,
    copier_id: String,
    network: String,
    era_id: String,
    version_label: String,
}

impl CheckpointStore {
    pub fn new(config: &Config) -> Self {
        Self {
            dir: PathBuf::from(&config.checkpoint.dir),
            copier_id: config.copier_id.clone(),
            network: config.era.network.clone(),
            era_id: config.era.era_id.clone(),
            version_label: config.era.version_label.clone(),
        }
    }

    pub fn file_name(network: &str, era_id: &str, version_label: &str) -> String {
        format!("checkpoint_{network}_{era_id}_{version_label}.json")
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(Self::file_name(
            &self.network,
            &self.era_id,
            &self.version_label,
        ))
    }

    fn identity(&self) -> String {
        format!("{}/{}/{}", self.network, self.era_id, self.version_label)
    }

    /// The checkpoint of this dataset, if one exists.
    pub fn load(&self) -> Result<Option<Checkpoint>, CheckpointError> {
        if let Some(cp) = read(&self.path())? {
            return self.check_identity(&self.path(), cp).map(Some);
        }
        let legacy = self.dir.join(LEGACY_FILE_NAME);
        match read(&legacy)? {
            Some(cp) if self.matches(&cp) => {
                tracing::info!(path = %legacy.display(), "using the runbook-style checkpoint.json");
                Ok(Some(cp))
            }
            Some(cp) => {
                tracing::warn!(
                    path = %legacy.display(),
                    found = %format!("{}/{}/{}", cp.network, cp.era_id, cp.version_label),
                    "ignoring checkpoint.json of another dataset"
                );
                Ok(None)
            }
            None => Ok(None),
        }
    }

    fn matches(&self, cp: &Checkpoint) -> bool {
        cp.network == self.network
            && cp.era_id == self.era_id
            && cp.version_label == self.version_label
    }

    fn check_identity(&self, path: &Path, cp: Checkpoint) -> Result<Checkpoint, CheckpointError> {
        if self.matches(&cp) {
            Ok(cp)
        } else {
            Err(CheckpointError::WrongDataset {
                path: path.to_path_buf(),
                found: format!("{}/{}/{}", cp.network, cp.era_id, cp.version_label),
                expected: self.identity(),
            })
        }
    }

    /// A checkpoint for this dataset at `last_committed_ledger`.
    pub fn at(
        &self,
        last_committed_ledger: u32,
        partition: Option<CommittedPartition>,
        ingested_at: Option<String>,
        last_ledger_hash: Option<String>,
    ) -> Checkpoint {
        Checkpoint {
            copier_id: self.copier_id.clone(),
            network: self.network.clone(),
            era_id: self.era_id.clone(),
            version_label: self.version_label.clone(),
            last_committed_ledger,
            last_committed_partition: partition,
            updated_at: crate::time::now_rfc3339_nanos(),
            ingested_at,
            last_ledger_hash,
        }
    }

    /// Writes atomically and durably ([`crate::atomic_file`]).
    pub fn save(&self, cp: &Checkpoint) -> Result<(), CheckpointError> {
        let path = self.path();
        let io = |op, source| CheckpointError::Io {
            op,
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(|e| io("create the directory of", e))?;
        let mut text = serde_json::to_vec_pretty(cp).expect("checkpoint serializes");
        text.push(b'\n');
        crate::atomic_file::replace(&path, &text).map_err(|e| io(e.op, e.source))
    }
}

fn read(path: &Path) -> Result<Option<Checkpoint>, CheckpointError> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CheckpointError::Io {
                op: "read",
                path: path.to_path_buf(),
                source,
            });
        }
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|e| CheckpointError::Corrupt {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &Path, network: &str) -> CheckpointStore {
        let mut c = Config::default();
        c.checkpoint.dir = dir.to_string_lossy().into();
        c.era.network = network.into();
        CheckpointStore::new(&c)
    }

    #[test]
    fn save_then_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), "testnet");
        assert_eq!(s.load().unwrap(), None);
        let cp = s.at(
            1001,
            Some(CommittedPartition {
                start: 2,
                end: 1001,
                checksum: "sha256:aa".into(),
            }),
            None,
            None,
        );
        s.save(&cp).unwrap();
        assert_eq!(s.load().unwrap(), Some(cp));
        assert!(
            dir.path()
                .join("checkpoint_testnet_pre_p23_v1.json")
                .exists()
        );
        assert!(
            !dir.path()
                .join("checkpoint_testnet_pre_p23_v1.json.tmp")
                .exists()
        );
    }

    #[test]
    fn another_datasets_checkpoint_is_never_picked() {
        let dir = tempfile::tempdir().unwrap();
        let other = store(dir.path(), "futurenet");
        other.save(&other.at(5000, None, None, None)).unwrap();
        let mine = store(dir.path(), "testnet");
        assert_eq!(mine.load().unwrap(), None);
    }

    #[test]
    fn corrupt_checkpoint_is_a_clear_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), "testnet");
        std::fs::write(s.path(), b"{\"copier_id\": ").unwrap();
        let err = s.load().unwrap_err();
        assert!(matches!(err, CheckpointError::Corrupt { .. }));
        assert!(
            err.to_string()
                .contains("checkpoint_testnet_pre_p23_v1.json"),
            "{err}"
        );
    }

    #[test]
    fn runbook_checkpoint_json_is_used_when_it_matches() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), "pubnet");
        std::fs::write(
            dir.path().join("checkpoint.json"),
            r#"{"copier_id":"bronze-copier-001","network":"pubnet","era_id":"pre_p23","version_label":"v1","last_committed_ledger":50000000,"updated_at":"2025-01-15T10:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(s.load().unwrap().unwrap().last_committed_ledger, 50_000_000);
        assert_eq!(store(dir.path(), "testnet").load().unwrap(), None);
    }

    #[test]
    fn a_file_under_our_name_with_another_identity_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), "testnet");
        let mut cp = s.at(10, None, None, None);
        cp.network = "pubnet".into();
        std::fs::write(s.path(), serde_json::to_vec(&cp).unwrap()).unwrap();
        assert!(matches!(
            s.load(),
            Err(CheckpointError::WrongDataset { .. })
        ));
    }
}
