//! A checkpoint's ledger-header file, decoded (pure): gzip, then an RFC 5531 record-marked
//! stream of `LedgerHeaderHistoryEntry` XDR values, one per ledger. Whatever is wrong with the
//! bytes is said plainly: an HTML page or another non-gzip answer, a truncated gzip, a broken
//! record mark, an entry that is not valid XDR, a ledger that does not belong to the checkpoint.

use std::io::Read;

use sha2::{Digest, Sha256};

use super::layout::ledgers_of;

/// The largest decompressed file accepted: 64 headers take about 30 KB; anything near this is
/// not a ledger-header file (and a gzip bomb stops here).
pub const MAX_DECOMPRESSED: u64 = 16 * 1024 * 1024;

/// One ledger's `LedgerHeaderHistoryEntry`: its ledger hash and the exact XDR of its header.
/// The same shape serves both sides of a comparison: the archive's entry and the one inside a
/// datastore's `LedgerCloseMeta`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderEntry {
    pub ledger: u32,
    pub hash: [u8; 32],
    pub header: Vec<u8>,
}

/// A decoded checkpoint file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointFile {
    pub checkpoint: u32,
    /// Its path in the archive (`ledger/XX/YY/ZZ/ledger-XXYYZZWW.xdr.gz`).
    pub path: String,
    /// sha256 of the file's bytes as fetched (the gzip).
    pub sha256: [u8; 32],
    /// In ledger order, each ledger once.
    pub entries: Vec<HeaderEntry>,
}

impl CheckpointFile {
    /// The entry of `ledger`, if the file has one.
    pub fn entry(&self, ledger: u32) -> Option<&HeaderEntry> {
        self.entries
            .binary_search_by_key(&ledger, |e| e.ledger)
            .ok()
            .map(|i| &self.entries[i])
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    #[error(
        "an HTML page (or other markup), not a gzip file (it starts {start:?}): the archive URL is likely wrong or the server answered with an error page"
    )]
    Html { start: String },
    #[error("not a gzip file (first bytes {first})")]
    NotGzip { first: String },
    #[error("corrupt or truncated gzip: {message}")]
    Gzip { message: String },
    #[error("more than {MAX_DECOMPRESSED} bytes once decompressed: not a ledger-header file")]
    TooLarge,
    #[error("record {index} at byte {offset} of the decompressed stream: {why}")]
    Record {
        index: usize,
        offset: usize,
        why: String,
    },
    #[error("record {index}: not a valid LedgerHeaderHistoryEntry: {message}")]
    Xdr { index: usize, message: String },
    #[error(
        "record {index}: ledger {ledger} does not belong to checkpoint {checkpoint} (ledgers {first}-{checkpoint})"
    )]
    OutOfPlace {
        index: usize,
        ledger: u32,
        checkpoint: u32,
        first: u32,
    },
    #[error(
        "record {index}: ledger {ledger} follows ledger {previous} (entries must be in ledger order, each once)"
    )]
    OutOfOrder {
        index: usize,
        ledger: u32,
        previous: u32,
    },
}

/// Decodes the bytes of checkpoint `checkpoint`'s ledger-header file found at `path`.
pub fn decode_checkpoint_file(
    checkpoint: u32,
    path: &str,
    bytes: &[u8],
) -> Result<CheckpointFile, FileError> {
    let stream = gunzip(bytes)?;
    let range = ledgers_of(checkpoint);
    let mut entries: Vec<HeaderEntry> = Vec::new();
    for (index, (offset, record)) in records(&stream).enumerate() {
        let record = record.map_err(|why| FileError::Record { index, offset, why })?;
        let entry = parse_entry(&record).map_err(|message| FileError::Xdr { index, message })?;
        if !range.contains(entry.ledger) {
            return Err(FileError::OutOfPlace {
                index,
                ledger: entry.ledger,
                checkpoint,
                first: range.start,
            });
        }
        if let Some(previous) = entries.last().map(|e| e.ledger)
            && entry.ledger <= previous
        {
            return Err(FileError::OutOfOrder {
                index,
                ledger: entry.ledger,
                previous,
            });
        }
        entries.push(entry);
    }
    Ok(CheckpointFile {
        checkpoint,
        path: path.to_string(),
        sha256: Sha256::digest(bytes).into(),
        entries,
    })
}

/// What the bytes are, when they are not gzip: an HTML page is named as such.
pub fn sniff_not_gzip(bytes: &[u8]) -> Option<FileError> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        return None;
    }
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(64)]).into_owned();
    let lower = text.trim_start().to_ascii_lowercase();
    // `<!DOCTYPE html>`, `<html>`, `<?xml ...>` (an S3 error document): markup, not gzip.
    if lower.starts_with('<') {
        return Some(FileError::Html {
            start: text.trim_start().chars().take(40).collect(),
        });
    }
    Some(FileError::NotGzip {
        first: hex::encode(&bytes[..bytes.len().min(8)]),
    })
}

/// Decompresses a whole gzip file (several members are read as one stream, as gzip does).
pub fn gunzip(bytes: &[u8]) -> Result<Vec<u8>, FileError> {
    if let Some(e) = sniff_not_gzip(bytes) {
        return Err(e);
    }
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .take(MAX_DECOMPRESSED + 1)
        .read_to_end(&mut out)
        .map_err(|e| FileError::Gzip {
            message: match e.kind() {
                std::io::ErrorKind::UnexpectedEof => {
                    "the stream ends early (truncated download?)".to_string()
                }
                _ => e.to_string(),
            },
        })?;
    if out.len() as u64 > MAX_DECOMPRESSED {
        return Err(FileError::TooLarge);
    }
    Ok(out)
}

/// RFC 5531 record marking: each fragment is a big-endian u32 (bit 31: last fragment of the
/// record; bits 0-30: its length) and its bytes. Yields each record's offset and bytes.
pub fn records(stream: &[u8]) -> impl Iterator<Item = (usize, Result<Vec<u8>, String>)> + '_ {
    let mut at = 0usize;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || at >= stream.len() {
            return None;
        }
        let start = at;
        let mut record = Vec::new();
        loop {
            let Some(mark) = stream.get(at..at + 4) else {
                failed = true;
                return Some((
                    start,
                    Err(format!(
                        "{} bytes left, too few for a record mark",
                        stream.len() - at
                    )),
                ));
            };
            let mark = u32::from_be_bytes(mark.try_into().expect("4 bytes"));
            let (last, len) = (mark & 0x8000_0000 != 0, (mark & 0x7fff_ffff) as usize);
            let Some(fragment) = stream.get(at + 4..at + 4 + len) else {
                failed = true;
                return Some((
                    start,
                    Err(format!(
                        "the record mark says {len} bytes but {} are left",
                        stream.len() - at - 4
                    )),
                ));
            };
            record.extend_from_slice(fragment);
            at += 4 + len;
            if last {
                return Some((start, Ok(record)));
            }
        }
    })
}

/// Validates one `LedgerHeaderHistoryEntry` and reads its hash, header bytes and ledger number.
pub fn parse_entry(xdr: &[u8]) -> Result<HeaderEntry, String> {
    bronze_ledger::validate_xdr(
        "LedgerHeaderHistoryEntry",
        xdr,
        bronze_ledger::DEFAULT_DEPTH_LIMIT,
    )
    .map_err(|e| e.to_string())?;
    // hash (32), header, ext (a union whose only arm is v0: 4 bytes).
    let header = &xdr[32..xdr.len() - 4];
    Ok(HeaderEntry {
        ledger: ledger_seq_of_header(header)?,
        hash: xdr[..32].try_into().expect("32 bytes"),
        header: header.to_vec(),
    })
}

/// `ledgerSeq` of a `LedgerHeader`'s XDR (already validated): after ledgerVersion (4),
/// previousLedgerHash (32), scpValue (txSetHash 32, closeTime 8, upgrades<6> of opaque<128>,
/// ext: basic or a signature of nodeID 4+32 and opaque<64>), txSetResultHash and
/// bucketListHash (32 each).
pub fn ledger_seq_of_header(header: &[u8]) -> Result<u32, String> {
    let mut r = Reader {
        bytes: header,
        at: 4 + 32 + 32 + 8,
    };
    let upgrades = r.u32()?;
    for _ in 0..upgrades {
        r.opaque()?;
    }
    if r.u32()? == 1 {
        r.skip(4 + 32)?;
        r.opaque()?;
    }
    r.skip(64)?;
    r.u32()
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn skip(&mut self, n: usize) -> Result<(), String> {
        if self.at + n > self.bytes.len() {
            return Err(format!(
                "header ends at byte {} inside a field",
                self.bytes.len()
            ));
        }
        self.at += n;
        Ok(())
    }

    fn u32(&mut self) -> Result<u32, String> {
        let at = self.at;
        self.skip(4)?;
        Ok(u32::from_be_bytes(
            self.bytes[at..at + 4].try_into().expect("4 bytes"),
        ))
    }

    fn opaque(&mut self) -> Result<(), String> {
        let len = self.u32()? as usize;
        self.skip(len.div_ceil(4) * 4)
    }
}

/// The bytes of a ledger-header file as stellar-core writes one: each entry record-marked as
/// one last fragment, the whole gzipped. For tests and test archives.
pub fn encode_checkpoint_file(entries: &[Vec<u8>]) -> Vec<u8> {
    use std::io::Write;
    let mut stream = Vec::new();
    for entry in entries {
        stream.extend_from_slice(&(entry.len() as u32 | 0x8000_0000).to_be_bytes());
        stream.extend_from_slice(entry);
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&stream).expect("in memory");
    gz.finish().expect("in memory")
}
