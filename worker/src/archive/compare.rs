//! The comparison itself (pure): a ledger as the datastore has it against the archive's entry
//! for it, and several archives against each other.

use super::file::{CheckpointFile, HeaderEntry};

/// The `LedgerHeaderHistoryEntry` inside a `LedgerCloseMeta`: its header entry and the entry's
/// exact XDR bytes (hash, header, ext), which is what an archive holds for the ledger.
pub fn entry_of_lcm(lcm: &[u8]) -> Result<(HeaderEntry, &[u8]), bronze_ledger::XdrError> {
    let l = bronze_ledger::header_layout(lcm)?;
    let seq = lcm[l.ledger_seq..l.ledger_seq + 4]
        .try_into()
        .expect("the layout points inside the header");
    let entry = HeaderEntry {
        ledger: u32::from_be_bytes(seq),
        hash: lcm[l.hash..l.hash + 32].try_into().expect("32 bytes"),
        header: lcm[l.header_range()].to_vec(),
    };
    // The entry's ext is a union whose only arm, v0, is 4 bytes.
    Ok((entry, &lcm[l.hash..l.header_end + 4]))
}

/// How a ledger differs from the archive's entry for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    /// The archive has no entry for the ledger in the file that should hold it.
    Missing,
    /// The ledger hashes differ.
    Hash { ours: [u8; 32], archive: [u8; 32] },
    /// Same hash, other header bytes (the first differing byte of the header XDR).
    Header { at: usize },
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Difference::Missing => write!(f, "the archive file has no entry for it"),
            Difference::Hash { ours, archive } => write!(
                f,
                "ledger hash {} in the datastore, {} in the archive",
                hex::encode(ours),
                hex::encode(archive)
            ),
            Difference::Header { at } => write!(
                f,
                "same ledger hash, but the header XDR differs from byte {at} on"
            ),
        }
    }
}

/// Compares `ours` with the archive's entry for the same ledger (`None`: they agree).
pub fn compare(ours: &HeaderEntry, archive: Option<&HeaderEntry>) -> Option<Difference> {
    let Some(archive) = archive else {
        return Some(Difference::Missing);
    };
    if ours.hash != archive.hash {
        return Some(Difference::Hash {
            ours: ours.hash,
            archive: archive.hash,
        });
    }
    if ours.header != archive.header {
        let at = ours
            .header
            .iter()
            .zip(&archive.header)
            .position(|(a, b)| a != b)
            .unwrap_or(ours.header.len().min(archive.header.len()));
        return Some(Difference::Header { at });
    }
    None
}

/// Two archives holding different entries for one ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivesDisagree {
    pub ledger: u32,
    /// The indexes (into the list compared) of the two archives.
    pub first: usize,
    pub second: usize,
}

/// Checks that the archives which have a checkpoint's file agree on every ledger either holds
/// (a ledger only one of them has is not a disagreement: the other's file may be older).
/// `files[i]` is archive `i`'s file, if it has one.
pub fn archives_agree(files: &[Option<&CheckpointFile>]) -> Result<(), ArchivesDisagree> {
    let present: Vec<(usize, &CheckpointFile)> = files
        .iter()
        .enumerate()
        .filter_map(|(i, f)| f.map(|f| (i, f)))
        .collect();
    let Some(&(first, reference)) = present.first() else {
        return Ok(());
    };
    for &(second, other) in &present[1..] {
        for entry in &other.entries {
            if let Some(theirs) = reference.entry(entry.ledger)
                && theirs != entry
            {
                return Err(ArchivesDisagree {
                    ledger: entry.ledger,
                    first,
                    second,
                });
            }
        }
    }
    Ok(())
}
