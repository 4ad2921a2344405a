//! Writing a history archive's ledger-header files from `LedgerCloseMeta`s, exactly as
//! stellar-core lays them out (each ledger's own `LedgerHeaderHistoryEntry`, record-marked,
//! gzipped, at its checkpoint's path, and a HAS naming the newest checkpoint and the network).
//! For tests and benchmarks: an archive that agrees with a datastore, which a test can then
//! make disagree.

use std::collections::BTreeMap;
use std::path::Path;

use super::compare::entry_of_lcm;
use super::file::encode_checkpoint_file;
use super::layout::{HAS_PATH, checkpoint_of, ledger_file_path, ledgers_of};

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("ledger {index} of the input: {source}")]
    Xdr {
        index: usize,
        source: bronze_ledger::XdrError,
    },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenArchive {
    /// The newest checkpoint written (the HAS's `currentLedger`); 0 if none was complete.
    pub newest: u32,
    /// Each checkpoint file's path, in order.
    pub files: Vec<String>,
}

/// Writes into `dir` the ledger-header file of every checkpoint the ledgers of `lcms` complete
/// (a checkpoint missing only ledger 1, the genesis ledger no datastore holds, counts as
/// complete), and the HAS. Ledgers of an incomplete last checkpoint are left out, as
/// stellar-core publishes only complete checkpoints.
pub fn write_archive<'a>(
    dir: &Path,
    passphrase: &str,
    lcms: impl IntoIterator<Item = &'a [u8]>,
) -> Result<WrittenArchive, WriteError> {
    let mut by_checkpoint: BTreeMap<u32, BTreeMap<u32, Vec<u8>>> = BTreeMap::new();
    for (index, lcm) in lcms.into_iter().enumerate() {
        let (entry, xdr) = entry_of_lcm(lcm).map_err(|source| WriteError::Xdr { index, source })?;
        by_checkpoint
            .entry(checkpoint_of(entry.ledger))
            .or_default()
            .insert(entry.ledger, xdr.to_vec());
    }
    let mut written = WrittenArchive {
        newest: 0,
        files: Vec::new(),
    };
    for (checkpoint, entries) in by_checkpoint {
        let from = ledgers_of(checkpoint).start.max(2);
        if !(from..=checkpoint).all(|l| entries.contains_key(&l)) {
            continue;
        }
        let path = ledger_file_path(checkpoint);
        let records: Vec<Vec<u8>> = entries.into_values().collect();
        put(dir, &path, &encode_checkpoint_file(&records))?;
        written.files.push(path);
        written.newest = checkpoint;
    }
    let has = serde_json::json!({
        "version": 2,
        "server": "bronze test archive",
        "currentLedger": written.newest,
        "networkPassphrase": passphrase,
        "currentBuckets": [],
    });
    put(
        dir,
        HAS_PATH,
        &serde_json::to_vec_pretty(&has).expect("json"),
    )?;
    Ok(written)
}

fn put(dir: &Path, rel: &str, bytes: &[u8]) -> Result<(), WriteError> {
    let path = dir.join(rel);
    let io = |source| WriteError::Io {
        path: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(path.parent().expect("a file under dir")).map_err(io)?;
    std::fs::write(&path, bytes).map_err(io)
}
