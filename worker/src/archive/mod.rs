//! Anchoring the copy to the network's own record: every ledger is compared with the entry the
//! Stellar history archives hold for it (same ledger hash, same header bytes) before its
//! partition is committed, and `verify` does the same for a dataset (docs/configuration.md,
//! `archive`).
//!
//! | file | what |
//! |---|---|
//! | `layout.rs` | pure: checkpoints (64 ledgers, named by the last) and their file paths |
//! | `file.rs` | pure: a checkpoint's `ledger-*.xdr.gz`: gzip, RFC 5531 record marks, `LedgerHeaderHistoryEntry` |
//! | `has.rs` | pure: the History Archive State (`.well-known/stellar-history.json`) |
//! | `compare.rs` | pure: a ledger against the archive's entry; archives against each other |
//! | `reader.rs` | I/O: one archive over HTTP(S), a local directory, S3 or GCS, with the source's read policy |
//! | `check.rs` | the files a partition needs, fetched once per process and cached; the partition's check |
//! | `write.rs` | an archive written from `LedgerCloseMeta`s as stellar-core lays it out (tests, benchmarks) |
//! | `trust.rs` | pure: the archive's own headers hash-linked to a trusted ledger (`archive.trusted_ledger`) |
//! | `anchor.rs` | what a manifest records: the files (path, sha256) and any unanchored ledgers |

mod anchor;
mod check;
mod compare;
mod error;
mod file;
mod has;
mod layout;
mod reader;
mod trust;
mod write;

pub use anchor::{AnchorFile, ArchiveAnchor, TrustedAnchor};
pub use check::{
    AgreedFile, ArchiveCheck, ArchiveSettings, CACHE_FILES, PartitionFiles, anchor_of,
    check_partition, disagreements,
};
pub use compare::{ArchivesDisagree, Difference, archives_agree, compare, entry_of_lcm};
pub use error::ArchiveError;
pub use file::{
    CheckpointFile, FileError, HeaderEntry, decode_checkpoint_file, encode_checkpoint_file, gunzip,
    parse_entry, records,
};
pub use has::{HasError, HistoryArchiveState, check_network, parse_has};
pub use layout::{
    CHECKPOINT_FREQUENCY, HAS_PATH, checkpoint_of, checkpoints_covering, ledger_file_path,
    ledgers_of,
};
pub use reader::{ArchiveReader, ArchiveUrl, ReadError, ReaderSettings, parse_archive_url};
pub use trust::{TrustError, TrustedChain, TrustedLedger, header_hash};
pub use write::{WriteError, WrittenArchive, write_archive};

#[cfg(test)]
mod tests;
