//! The commit protocol. The Parquet file is uploaded first (see `upload`); the manifest is
//! written last with a conditional create and is the commit marker. So:
//! * a partition without a manifest is not committed, and its leftover file is simply replaced;
//! * a committed partition is never overwritten unless `allow_overwrite`; then its new file is
//!   built beside it (`part-S-E.parquet.replacing`) and, once every check has passed,
//!   [`Committer::replace`] un-commits it (manifest deleted), moves the new file into place and
//!   commits the new manifest: a crash mid-way leaves it uncommitted, never mismatched. In a
//!   Delta table the new file gets a new name instead, and the manifest is overwritten in one
//!   put after it is in place: the partition is never uncommitted, the old file never touched.

use std::sync::Arc;

use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use super::layout::DatasetLayout;
use super::manifest::{Manifest, SealCheck};
use crate::partition::LedgerRange;
use crate::store::Location;

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error(
        "partition already exists: ledgers_lcm_raw range={range} ({key}: {why}); set era.allow_overwrite to replace it"
    )]
    Conflict {
        range: LedgerRange,
        key: String,
        why: String,
    },
    /// A rebuild (`bronze-copier worker --rebuild`) met a partition that is not committed.
    #[error(
        "partition ledgers_lcm_raw range={range} is not committed ({key} is missing): a rebuild replaces committed partitions only"
    )]
    NotCommitted { range: LedgerRange, key: String },
    #[error("committed manifest {key} is unreadable: {message}")]
    CorruptManifest { key: String, message: String },
    #[error("storage {op} of {key} failed: {source}")]
    Store {
        op: &'static str,
        key: String,
        source: object_store::Error,
    },
}

impl CommitError {
    pub fn is_transient(&self) -> bool {
        matches!(self, CommitError::Store { .. })
    }
}

/// A committed partition found in storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingPartition {
    pub manifest: Manifest,
    pub manifest_key: String,
    /// What the file's `manifest_sha256` self-checksum says about its bytes.
    pub seal: SealCheck,
}

#[derive(Clone, Debug)]
pub struct Committer {
    pub location: Location,
    pub layout: DatasetLayout,
    pub allow_overwrite: bool,
}

impl Committer {
    fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.location.store
    }

    /// The object at `key`, or `None` when there is none.
    pub(crate) async fn read_if_present(
        &self,
        key: &object_store::path::Path,
    ) -> Result<Option<bytes::Bytes>, CommitError> {
        let bytes = match self.store().get(key).await {
            Ok(found) => found.bytes().await,
            Err(e) => Err(e),
        };
        match bytes {
            Ok(b) => Ok(Some(b)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(source) => Err(CommitError::Store {
                op: "read",
                key: key.to_string(),
                source,
            }),
        }
    }

    /// The committed partition at exactly `range`, if any.
    pub async fn existing(
        &self,
        range: LedgerRange,
    ) -> Result<Option<ExistingPartition>, CommitError> {
        let key = self.location.key(&self.layout.manifest_key(range));
        let Some(bytes) = self.read_if_present(&key).await? else {
            return Ok(None);
        };
        let manifest = Manifest::from_json(&bytes).map_err(|e| CommitError::CorruptManifest {
            key: key.to_string(),
            message: e.to_string(),
        })?;
        if manifest.range() != range {
            return Err(CommitError::CorruptManifest {
                key: key.to_string(),
                message: format!("it describes range {} instead of {range}", manifest.range()),
            });
        }
        Ok(Some(ExistingPartition {
            manifest,
            manifest_key: key.to_string(),
            seal: Manifest::check_seal(&bytes),
        }))
    }

    /// Deletes the manifest of `range` so the partition is no longer committed (overwrite only).
    pub async fn uncommit(&self, range: LedgerRange) -> Result<(), CommitError> {
        let key = self.location.key(&self.layout.manifest_key(range));
        match self.store().delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(CommitError::Store {
                op: "delete",
                key: key.to_string(),
                source,
            }),
        }
    }

    /// Replaces the committed partition `manifest` describes with the file built at
    /// `replacement_key`. Call it only after everything that could refuse the replacement has
    /// agreed (see the sequencer).
    ///
    /// When `manifest` names the file the committed manifest names (the plain layout): un-commit
    /// (delete the manifest), move the file into place, commit the new manifest, so no reader
    /// ever takes the new bytes for the old manifest's. When it names another file (a Delta
    /// table's replacement, [`DatasetLayout::replacement_file_name`]): copy the file to its new
    /// name, then overwrite the manifest in one put; the old file stays as it was for readers
    /// of the log's older versions (removed by the log cleanup), and the partition is never
    /// uncommitted.
    pub async fn replace(
        &self,
        manifest: &Manifest,
        replacement_key: &str,
    ) -> Result<(), CommitError> {
        let range = manifest.range();
        let to_name = self.layout.committed_file_key(manifest);
        let committed = self.existing(range).await?;
        let renamed = committed
            .as_ref()
            .is_some_and(|c| self.layout.committed_file_key(&c.manifest) != to_name);
        if !renamed {
            self.uncommit(range).await?;
        }
        let from = self.location.key(replacement_key);
        let to = self.location.key(&to_name);
        let store_err = |op, key: &object_store::path::Path| {
            let key = key.to_string();
            move |source| CommitError::Store { op, key, source }
        };
        self.store()
            .copy(&from, &to)
            .await
            .map_err(store_err("move into place", &to))?;
        match renamed {
            true => self.overwrite_manifest(manifest).await?,
            false => self.commit(manifest).await?,
        }
        self.discard(replacement_key).await
    }

    /// Puts `manifest` over the committed one (a replacement under a new file name).
    async fn overwrite_manifest(&self, manifest: &Manifest) -> Result<(), CommitError> {
        let key = self
            .location
            .key(&self.layout.manifest_key(manifest.range()));
        self.store()
            .put(&key, PutPayload::from(manifest.to_json()))
            .await
            .map(|_| ())
            .map_err(|source| CommitError::Store {
                op: "overwrite",
                key: key.to_string(),
                source,
            })
    }

    /// Deletes a replacement file that is not needed (or no longer needed).
    pub async fn discard(&self, replacement_key: &str) -> Result<(), CommitError> {
        let key = self.location.key(replacement_key);
        match self.store().delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(CommitError::Store {
                op: "delete",
                key: key.to_string(),
                source,
            }),
        }
    }

    /// Writes the manifest with a conditional create. If a manifest is already there, an
    /// identical commit (same file checksum) is accepted as done; anything else is a conflict
    /// unless overwriting is allowed.
    pub async fn commit(&self, manifest: &Manifest) -> Result<(), CommitError> {
        let range = manifest.range();
        let key = self.location.key(&self.layout.manifest_key(range));
        let payload = PutPayload::from(manifest.to_json());
        let create = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self.store().put_opts(&key, payload.clone(), create).await {
            Ok(_) => return Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => {}
            Err(source) => {
                return Err(CommitError::Store {
                    op: "create",
                    key: key.to_string(),
                    source,
                });
            }
        }
        let existing = self.existing(range).await?.map(|e| e.manifest);
        let same_file = existing.as_ref().and_then(|m| m.primary()) == manifest.primary();
        if same_file {
            return Ok(());
        }
        if !self.allow_overwrite {
            return Err(CommitError::Conflict {
                range,
                key: key.to_string(),
                why: "another manifest with a different checksum was committed first".into(),
            });
        }
        self.store()
            .put(&key, payload)
            .await
            .map(|_| ())
            .map_err(|source| CommitError::Store {
                op: "overwrite",
                key: key.to_string(),
                source,
            })
    }
}
