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
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnchorFile {
    /// The file's path in the archive, e.g. `ledger/00/15/84/ledger-0015843f.xdr.gz`.
    pub path: String,
    /// `sha256:<hex>` of the file's bytes (the gzip, as fetched from the first archive, in
    /// configured order, that had it).
    pub sha256: String,
}
