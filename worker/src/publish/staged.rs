//! Rebuilt partitions waiting beside their committed ones (the operator's `spec.rebuild`): a
//! rebuild Job (`bronze-copier worker --rebuild ID`) uploads the new file to
//! [`super::DatasetLayout::replacement_key`] and then writes a marker
//! ([`super::DatasetLayout::rebuild_marker_key`]) holding the rebuild's id and the new manifest, sealed.
//! Nothing committed changes: the operator's sequencer checks the marker and, only then, swaps
//! the file in with [`Committer::replace`], exactly as the standalone's overwrite does.

use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use super::commit::{CommitError, Committer};
use super::manifest::{Manifest, SealCheck};
use crate::partition::LedgerRange;

/// The marker's JSON.
#[derive(Serialize, Deserialize)]
struct Marker {
    rebuild_id: String,
    /// The new manifest exactly as it will be committed (sealed JSON text).
    manifest: String,
}

/// A partition rebuilt for a rebuild, as its marker says.
#[derive(Debug, Clone, PartialEq)]
pub struct StagedRebuild {
    pub rebuild_id: String,
    pub manifest: Manifest,
    /// The new manifest's `manifest_sha256` against its bytes.
    pub seal: SealCheck,
    /// Size of the rebuilt file beside the committed one (`None` once it was moved into place).
    pub parquet_size: Option<u64>,
}

impl Committer {
    /// Records that `manifest`'s partition was rebuilt at its replacement key for `rebuild_id`
    /// (written last: the file is complete when the marker exists).
    pub async fn stage_rebuild(
        &self,
        rebuild_id: &str,
        manifest: &Manifest,
    ) -> Result<(), CommitError> {
        let marker = Marker {
            rebuild_id: rebuild_id.to_string(),
            manifest: String::from_utf8_lossy(&manifest.to_json()).into_owned(),
        };
        let key = self
            .location
            .key(&self.layout.rebuild_marker_key(manifest.range()));
        let body = serde_json::to_vec_pretty(&marker).expect("a marker serializes");
        self.location
            .store
            .put(&key, PutPayload::from(body))
            .await
            .map(|_| ())
            .map_err(|source| CommitError::Store {
                op: "write",
                key: key.to_string(),
                source,
            })
    }

    /// The rebuild staged beside the committed partition `range`, if any.
    pub async fn staged_rebuild(
        &self,
        range: LedgerRange,
    ) -> Result<Option<StagedRebuild>, CommitError> {
        let key = self.location.key(&self.layout.rebuild_marker_key(range));
        let Some(bytes) = self.read_if_present(&key).await? else {
            return Ok(None);
        };
        let corrupt = |message: String| CommitError::CorruptManifest {
            key: key.to_string(),
            message,
        };
        let marker: Marker = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        let manifest =
            Manifest::from_json(marker.manifest.as_bytes()).map_err(|e| corrupt(e.to_string()))?;
        if manifest.range() != range {
            return Err(corrupt(format!(
                "it describes range {} instead of {range}",
                manifest.range()
            )));
        }
        let file = self.location.key(&self.layout.replacement_key(range));
        let parquet_size = match self.location.store.head(&file).await {
            Ok(meta) => Some(meta.size),
            Err(object_store::Error::NotFound { .. }) => None,
            Err(source) => {
                return Err(CommitError::Store {
                    op: "head",
                    key: file.to_string(),
                    source,
                });
            }
        };
        Ok(Some(StagedRebuild {
            rebuild_id: marker.rebuild_id,
            seal: Manifest::check_seal(marker.manifest.as_bytes()),
            manifest,
            parquet_size,
        }))
    }

    /// Removes what a rebuild left beside the partition `range`: the rebuilt file, then the
    /// marker.
    pub async fn clear_rebuild(&self, range: LedgerRange) -> Result<(), CommitError> {
        self.discard(&self.layout.replacement_key(range)).await?;
        self.discard(&self.layout.rebuild_marker_key(range)).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::publish::DatasetLayout;
    use crate::store::Location;

    #[tokio::test]
    async fn a_staged_rebuild_reads_back_sealed_and_clears() {
        let committer = Committer {
            location: Location {
                store: Arc::new(object_store::memory::InMemory::new()),
                root: Default::default(),
                uri: "memory:///".into(),
            },
            layout: DatasetLayout {
                prefix: String::new(),
                network: "testnet".into(),
                era_id: "p23".into(),
                version_label: "v1".into(),
            },
            allow_overwrite: false,
        };
        let range = LedgerRange::new(12, 21);
        assert_eq!(committer.staged_rebuild(range).await.unwrap(), None);
        let manifest = crate::publish::fixtures::manifest(range);
        let file = committer
            .location
            .key(&committer.layout.replacement_key(range));
        committer
            .location
            .store
            .put(&file, PutPayload::from(vec![7u8; 42]))
            .await
            .unwrap();
        committer.stage_rebuild("r1", &manifest).await.unwrap();
        let staged = committer.staged_rebuild(range).await.unwrap().unwrap();
        assert_eq!(staged.rebuild_id, "r1");
        assert_eq!(staged.seal, SealCheck::Valid);
        assert_eq!(staged.parquet_size, Some(42));
        assert_eq!(staged.manifest.primary(), manifest.primary());
        committer.clear_rebuild(range).await.unwrap();
        assert_eq!(committer.staged_rebuild(range).await.unwrap(), None);
    }
}
