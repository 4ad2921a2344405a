//! Read access to the committed partitions of a dataset, as the engine sees it.

use futures::future::BoxFuture;

use crate::partition::LedgerRange;
use crate::publish::{Manifest, SealCheck};

/// A storage read that failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ReadError {
    /// A network or server problem (retry later), as opposed to unreadable data.
    pub transient: bool,
    pub message: String,
}

/// A committed partition as found in storage.
#[derive(Debug, Clone, PartialEq)]
pub struct Committed {
    pub manifest: Manifest,
    /// Size of the Parquet file the manifest names, when the store can tell cheaply.
    pub parquet_size: Option<u64>,
    /// The manifest file's self-checksum (`manifest_sha256`) against its bytes.
    pub seal: SealCheck,
}

/// Read access to the dataset's committed partitions.
pub trait DatasetStore: Send + Sync {
    /// The committed partition of exactly `range`, if any.
    fn committed(&self, range: LedgerRange) -> BoxFuture<'_, Result<Option<Committed>, ReadError>>;
    /// The committed partition with the lowest start, if any (to recover `ingested_at`).
    fn first_committed(&self) -> BoxFuture<'_, Result<Option<Manifest>, ReadError>>;
    /// The partitions rebuilt beside the committed ones, when this store can hold them.
    fn rebuilds(&self) -> Option<&dyn super::replace::RebuildStore> {
        None
    }
}
