//! What can go wrong checking ledgers against history archives: each error names the archive,
//! the file's path in it and the ledger where there is one.

use super::compare::Difference;
use super::file::FileError;
use super::has::HasError;
use super::reader::ReadError;
use super::trust::TrustError;
use crate::partition::LedgerRange;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ArchiveError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("archive {url}: {path}: {source}")]
    File {
        url: String,
        path: String,
        source: FileError,
    },
    #[error("archive {url}: {path}: {source}")]
    Has {
        url: String,
        path: String,
        source: HasError,
    },
    #[error("archive {url}: no {path}: not a history archive (or not its root)")]
    NoHas { url: String, path: String },
    #[error(
        "checkpoint file {path} (ledgers of checkpoint {checkpoint}) is missing from {urls}, which published up to checkpoint {newest}"
    )]
    Missing {
        urls: String,
        path: String,
        checkpoint: u32,
        newest: u32,
    },
    #[error(
        "partition {range}: ledger {ledger} is beyond the newest checkpoint the archive ({urls}) has published ({newest}); wait for the archive, or set archive.allow_unanchored: true to commit such ledgers unchecked (recorded as unanchored in the manifest)"
    )]
    NotYetPublished {
        range: LedgerRange,
        ledger: u32,
        newest: u32,
        urls: String,
    },
    #[error(
        "archives disagree on ledger {ledger} ({path}): {first} and {second} hold different entries"
    )]
    ArchivesDisagree {
        ledger: u32,
        path: String,
        first: String,
        second: String,
    },
    #[error("archive.trusted_ledger: {why}")]
    TrustedInvalid { why: String },
    #[error(
        "archive.trusted_ledger {ledger} is outside the range of the archive ({urls}): {why}; choose a ledger the archive has published"
    )]
    TrustedOutside {
        ledger: u32,
        urls: String,
        why: String,
    },
    #[error("archive {urls}: {source}")]
    Trust { urls: String, source: TrustError },
    #[error(
        "partition {range}: ledger {ledger} disagrees with the history archive {url} ({path}): {difference}"
    )]
    Disagree {
        range: LedgerRange,
        ledger: u32,
        url: String,
        path: String,
        difference: Box<Difference>,
    },
}

impl ArchiveError {
    /// Whether the configuration is what is wrong (the URL, the network), as opposed to the
    /// data (disagreement, bad file) or the archive being unreachable.
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            ArchiveError::Read(ReadError::Open { .. } | ReadError::Redirect { .. })
                | ArchiveError::NoHas { .. }
                | ArchiveError::TrustedInvalid { .. }
                | ArchiveError::TrustedOutside { .. }
                | ArchiveError::Trust {
                    source: TrustError::Mismatch { .. } | TrustError::NotInArchive { .. },
                    ..
                }
                | ArchiveError::Has {
                    source: HasError::WrongNetwork { .. } | HasError::Html { .. },
                    ..
                }
        )
    }

    /// The archive could not be reached (after the read policy's retries).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            ArchiveError::Read(ReadError::Unreachable { .. } | ReadError::Status { .. })
        )
    }
}
