//! Publishing partitions: where they go, the manifest that commits them, and the upload.

mod check;
mod commit;
mod layout;
mod manifest;
mod staged;
mod upload;

#[cfg(test)]
pub(crate) use check::fixtures;
pub use check::{Expect, Finding};
pub use commit::{CommitError, Committer, ExistingPartition};
pub use layout::{DatasetLayout, MANIFEST_FILE, REBUILD_MARKER_FILE, ReplacementNaming};
pub use manifest::{
    ChainInfo, Manifest, ManifestPartition, ManifestTable, PartitionSettings, Producer, SealCheck,
    WriterInfo, settings_differences,
};
pub use staged::StagedRebuild;
pub use upload::{UploadError, UploadSink, Uploader, start_upload};
