//! What a partition's manifest records about its check against the history archives
//! (docs/formats.md, `archive`): the checkpoint files its ledgers were compared with, each by
//! its path in the archive and the sha256 of its bytes, and the ledgers committed unchecked.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveAnchor {
    /// The archives consulted (`archive.url`, `archive.urls`).
    pub archives: Vec<String>,
    /// The checkpoint files the partition's ledgers were compared with, in ledger order.
    pub files: Vec<AnchorFile>,
    /// The first ledger committed without an archive entry to compare it with (beyond the
    /// newest checkpoint the archive had published, with `archive.allow_unanchored`); every
    /// ledger from it to the partition's end is unanchored. Absent when all were checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unanchored_from: Option<u32>,
    /// The trusted ledger (`archive.trusted_ledger`) the archive was checked against and the
    /// partition's ledgers proven to hash-link to through the archive's headers. Absent when
    /// none was set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted_ledger: Option<TrustedAnchor>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustedAnchor {
    pub sequence: u32,
    /// The trusted ledger hash, 64 lowercase hex digits.
    pub hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnchorFile {
    /// The file's path in the archive, e.g. `ledger/00/15/84/ledger-0015843f.xdr.gz`.
    pub path: String,
    /// `sha256:<hex>` of the file's bytes (the gzip, as fetched from the first archive, in
    /// configured order, that had it).
    pub sha256: String,
}
