//! The archive checked against a trusted ledger (`archive.trusted_ledger`), as stellar-core
//! checks an archive before it trusts it (pure): the archive's header for the trusted ledger
//! must hash to the trusted hash, and every ledger the copy is checked against must hash-link
//! to it through the archive's own headers: forward (each header's `previousLedgerHash` is the
//! hash of the header before) and back (the header before hashes to the `previousLedgerHash`
//! of the one after). What is proven so far is one interval of ledgers around the trusted one,
//! kept as its two ends only: extending it takes the checkpoint files between.

use sha2::{Digest, Sha256};

use super::file::{CheckpointFile, HeaderEntry};
use super::layout::ledgers_of;

/// A ledger whose hash the user trusts (copied from a block explorer or their own
/// stellar-core), e.g. `archive.trusted_ledger: {sequence: 1410111, hash: "ab12..."}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustedLedger {
    pub sequence: u32,
    pub hash: [u8; 32],
}

impl TrustedLedger {
    /// Parses the hash (64 hex digits, either case).
    pub fn parse(sequence: u32, hash: &str) -> Result<Self, String> {
        if sequence == 0 {
            return Err("the sequence must be a ledger number (1 or more)".into());
        }
        let bytes = hex::decode(hash.trim()).map_err(|e| format!("the hash is not hex: {e}"))?;
        let hash: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| format!("the hash has {} bytes, not 32", b.len()))?;
        Ok(Self { sequence, hash })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    #[error(
        "the archive has no entry for the trusted ledger {ledger} in {path} (archive.trusted_ledger is outside the archive's range)"
    )]
    NotInArchive { ledger: u32, path: String },
    #[error(
        "ledger {ledger} ({path}): the archive's header hashes to {archive}, not to the trusted hash {trusted} (archive.trusted_ledger): this archive is not the record the trusted hash comes from; nothing is trusted from it"
    )]
    Mismatch {
        ledger: u32,
        path: String,
        trusted: String,
        archive: String,
    },
    #[error(
        "ledger {ledger} ({path}): the archive records ledger hash {recorded} but its header hashes to {computed}: the archive file is corrupt"
    )]
    EntryHash {
        ledger: u32,
        path: String,
        recorded: String,
        computed: String,
    },
    #[error("ledger {ledger} ({path}) does not hash-link to the trusted ledger {trusted}: {why}")]
    Broken {
        ledger: u32,
        path: String,
        trusted: u32,
        why: String,
    },
}

/// `sha256` of a header's XDR: its ledger hash.
pub fn header_hash(header: &[u8]) -> [u8; 32] {
    Sha256::digest(header).into()
}

/// `header.previousLedgerHash` (after `ledgerVersion`).
fn previous_hash(header: &[u8]) -> [u8; 32] {
    header[4..36].try_into().expect("a validated header")
}

/// An archive entry whose recorded hash is the hash of its header.
fn checked_entry<'a>(entry: &'a HeaderEntry, path: &str) -> Result<&'a HeaderEntry, TrustError> {
    let computed = header_hash(&entry.header);
    if computed != entry.hash {
        return Err(TrustError::EntryHash {
            ledger: entry.ledger,
            path: path.to_string(),
            recorded: hex::encode(entry.hash),
            computed: hex::encode(computed),
        });
    }
    Ok(entry)
}

/// The ledgers proven to hash-link to the trusted one: `low..=high`, with the hash the ledger
/// before `low` must have and the hash of `high`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedChain {
    pub trusted: TrustedLedger,
    pub low: u32,
    low_previous: [u8; 32],
    pub high: u32,
    high_hash: [u8; 32],
}

impl TrustedChain {
    /// Starts from the trusted ledger's checkpoint file: its entry must hash to the trusted
    /// hash; the rest of the file is then linked to it both ways.
    pub fn start(trusted: TrustedLedger, file: &CheckpointFile) -> Result<Self, TrustError> {
        let entry = file
            .entry(trusted.sequence)
            .ok_or_else(|| TrustError::NotInArchive {
                ledger: trusted.sequence,
                path: file.path.clone(),
            })?;
        let computed = header_hash(&entry.header);
        if computed != trusted.hash {
            return Err(TrustError::Mismatch {
                ledger: trusted.sequence,
                path: file.path.clone(),
                trusted: hex::encode(trusted.hash),
                archive: hex::encode(computed),
            });
        }
        checked_entry(entry, &file.path)?;
        let mut chain = Self {
            trusted,
            low: trusted.sequence,
            low_previous: previous_hash(&entry.header),
            high: trusted.sequence,
            high_hash: trusted.hash,
        };
        chain.extend_forward(file)?;
        chain.extend_back(file)?;
        Ok(chain)
    }

    /// Whether every ledger of `first..=last` is proven.
    pub fn covers(&self, first: u32, last: u32) -> bool {
        self.low <= first && last <= self.high
    }

    fn broken(&self, ledger: u32, path: &str, why: String) -> TrustError {
        TrustError::Broken {
            ledger,
            path: path.to_string(),
            trusted: self.trusted.sequence,
            why,
        }
    }

    /// Links the ledgers of `file` after `high` (the file of `high`'s checkpoint or of the
    /// next): each must be the next ledger, its header hashing to its recorded hash and naming
    /// the one before as its previous ledger.
    pub fn extend_forward(&mut self, file: &CheckpointFile) -> Result<(), TrustError> {
        let wanted = ledgers_of(file.checkpoint);
        let after = self.high;
        for entry in file.entries.iter().filter(|e| e.ledger > after) {
            let next = self.high + 1;
            if entry.ledger != next {
                return Err(self.broken(
                    next,
                    &file.path,
                    format!(
                        "the file has no entry for it (the next is ledger {})",
                        entry.ledger
                    ),
                ));
            }
            let entry = checked_entry(entry, &file.path)?;
            let previous = previous_hash(&entry.header);
            if previous != self.high_hash {
                return Err(self.broken(
                    next,
                    &file.path,
                    format!(
                        "its previousLedgerHash is {}, but ledger {} hashes to {}",
                        hex::encode(previous),
                        self.high,
                        hex::encode(self.high_hash)
                    ),
                ));
            }
            self.high = next;
            self.high_hash = entry.hash;
        }
        if self.high < wanted.end {
            return Err(self.broken(
                self.high + 1,
                &file.path,
                format!(
                    "the file ends at ledger {} (checkpoint {} holds ledgers {wanted})",
                    self.high, file.checkpoint
                ),
            ));
        }
        Ok(())
    }

    /// Links the ledgers of `file` before `low` (the file of `low`'s checkpoint or of the
    /// one before), newest first: each must be the ledger before, its header hashing to the
    /// `previousLedgerHash` of the ledger after it.
    pub fn extend_back(&mut self, file: &CheckpointFile) -> Result<(), TrustError> {
        let wanted = ledgers_of(file.checkpoint);
        let before_low = self.low;
        for entry in file.entries.iter().rev().filter(|e| e.ledger < before_low) {
            let before = self.low - 1;
            if entry.ledger != before {
                return Err(self.broken(
                    before,
                    &file.path,
                    format!(
                        "the file has no entry for it (the one before ledger {} is {})",
                        self.low, entry.ledger
                    ),
                ));
            }
            let entry = checked_entry(entry, &file.path)?;
            if entry.hash != self.low_previous {
                return Err(self.broken(
                    before,
                    &file.path,
                    format!(
                        "it hashes to {}, but ledger {} names {} as its previous ledger",
                        hex::encode(entry.hash),
                        self.low,
                        hex::encode(self.low_previous)
                    ),
                ));
            }
            self.low = before;
            self.low_previous = previous_hash(&entry.header);
        }
        // The genesis ledger (1) is in no datastore, and archives built from one lack it.
        if self.low > wanted.start.max(2) {
            return Err(self.broken(
                self.low - 1,
                &file.path,
                format!(
                    "the file starts at ledger {} (checkpoint {} holds ledgers {wanted})",
                    self.low, file.checkpoint
                ),
            ));
        }
        Ok(())
    }
}
