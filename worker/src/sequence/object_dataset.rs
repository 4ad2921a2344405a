//! The committed partitions of a dataset in any object store, read with the commit protocol's
//! own code ([`Committer::existing`]): what both drivers sequence from.

use futures::future::BoxFuture;
use object_store::ObjectStoreExt;

use super::replace::RebuildStore;
use super::store::{Committed, DatasetStore, ReadError};
use crate::partition::LedgerRange;
use crate::publish::{CommitError, Committer, DatasetLayout, Manifest, StagedRebuild};

/// The committed partitions of one dataset, in any object store.
pub struct ObjectDataset {
    committer: Committer,
}

impl ObjectDataset {
    pub fn new(committer: Committer) -> Self {
        Self { committer }
    }

    fn read_error(e: CommitError) -> ReadError {
        ReadError {
            transient: e.is_transient(),
            message: e.to_string(),
        }
    }
}

impl DatasetStore for ObjectDataset {
    fn committed(&self, range: LedgerRange) -> BoxFuture<'_, Result<Option<Committed>, ReadError>> {
        Box::pin(async move {
            let Some(found) = self
                .committer
                .existing(range)
                .await
                .map_err(Self::read_error)?
            else {
                return Ok(None);
            };
            let key = self
                .committer
                .location
                .key(&self.committer.layout.committed_file_key(&found.manifest));
            let parquet_size = match self.committer.location.store.head(&key).await {
                Ok(meta) => Some(meta.size),
                Err(object_store::Error::NotFound { .. }) => {
                    return Err(ReadError {
                        transient: false,
                        message: format!(
                            "{} is committed but its Parquet file {key} is missing",
                            found.manifest_key
                        ),
                    });
                }
                Err(e) => {
                    return Err(ReadError {
                        transient: true,
                        message: format!("storage head of {key} failed: {e}"),
                    });
                }
            };
            Ok(Some(Committed {
                manifest: found.manifest,
                parquet_size,
                seal: found.seal,
            }))
        })
    }

    fn first_committed(&self) -> BoxFuture<'_, Result<Option<Manifest>, ReadError>> {
        Box::pin(async move {
            let location = &self.committer.location;
            let dir = location.key(&self.committer.layout.dataset_dir());
            let listing = location
                .store
                .list_with_delimiter(Some(&dir))
                .await
                .map_err(|e| ReadError {
                    transient: !matches!(e, object_store::Error::NotFound { .. }),
                    message: format!("cannot list {}: {e}", location.uri_of(dir.as_ref())),
                });
            let listing = match listing {
                Ok(l) => l,
                Err(e) if !e.transient => return Ok(None),
                Err(e) => return Err(e),
            };
            let mut ranges: Vec<LedgerRange> = listing
                .common_prefixes
                .iter()
                .filter_map(|p| DatasetLayout::parse_partition_dir_name(p.filename()?))
                .collect();
            ranges.sort();
            // Folders without a manifest are uncommitted leftovers; look a little further.
            for range in ranges.into_iter().take(16) {
                if let Some(found) = self
                    .committer
                    .existing(range)
                    .await
                    .map_err(Self::read_error)?
                {
                    return Ok(Some(found.manifest));
                }
            }
            Ok(None)
        })
    }

    fn rebuilds(&self) -> Option<&dyn RebuildStore> {
        Some(self)
    }
}

impl RebuildStore for ObjectDataset {
    fn staged(
        &self,
        range: LedgerRange,
    ) -> BoxFuture<'_, Result<Option<StagedRebuild>, ReadError>> {
        Box::pin(async move {
            self.committer
                .staged_rebuild(range)
                .await
                .map_err(Self::read_error)
        })
    }

    fn swap<'a>(&'a self, manifest: &'a Manifest) -> BoxFuture<'a, Result<(), ReadError>> {
        Box::pin(async move {
            let staged = self.committer.layout.replacement_key(manifest.range());
            self.committer
                .replace(manifest, &staged)
                .await
                .map_err(Self::read_error)
        })
    }

    fn clear(&self, range: LedgerRange) -> BoxFuture<'_, Result<(), ReadError>> {
        Box::pin(async move {
            self.committer
                .clear_rebuild(range)
                .await
                .map_err(Self::read_error)
        })
    }
}
