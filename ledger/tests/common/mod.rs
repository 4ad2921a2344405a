//! Shared test helpers: loading the real ledger samples and computing expected row values with
//! the independent oracle (a full stellar-xdr decode).
#![allow(dead_code)] // each test binary uses a different subset

use std::fs::File;
use std::path::{Path, PathBuf};

use bronze_ledger::LedgerRow;
use stellar_xdr::{
    FeeBumpTransactionInnerTx, GeneralizedTransactionSet, LedgerCloseMeta, LedgerCloseMetaBatch,
    LedgerHeaderHistoryEntry, Limits, ReadXdr, TransactionEnvelope, TransactionPhase,
    TxSetComponent, WriteXdr,
};

/// The depth limit stellar-xdr is run with, same as ours.
pub fn limits() -> Limits {
    Limits::depth(bronze_ledger::DEFAULT_DEPTH_LIMIT)
}

pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// Decompress a whole zstd file. Galexie frames carry no content size, so stream it.
pub fn unzstd(path: &Path) -> Vec<u8> {
    let f = File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    zstd::stream::decode_all(f).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn files(dir: &str, suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(data_dir().join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no {suffix} files in {dir}");
    v
}

fn name(p: &Path) -> String {
    format!(
        "{}/{}",
        p.parent().unwrap().file_name().unwrap().to_string_lossy(),
        p.file_name().unwrap().to_string_lossy()
    )
}

/// Batch objects (zstd of LedgerCloseMetaBatch): the pubnet ledger and the testnet datastore.
pub fn batches() -> Vec<(String, Vec<u8>)> {
    let mut v = Vec::new();
    for p in files("pubnet", ".xdr.zstd") {
        v.push((name(&p), unzstd(&p)));
    }
    for p in files("testnet-datastore-testbucket", ".xdr.zst") {
        v.push((name(&p), unzstd(&p)));
    }
    v
}

/// Split a record-marked stream (u32 big-endian length with bit 31 set, then the record).
pub fn record_marked(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let mark = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
        assert!(
            mark & 0x8000_0000 != 0,
            "record mark without last-fragment bit"
        );
        let len = (mark & 0x7fff_ffff) as usize;
        out.push(bytes[at + 4..at + 4 + len].to_vec());
        at += 4 + len;
    }
    out
}

/// Every single-LCM sample (name, exact LCM XDR), small ones first. Batch members are cut out
/// with stellar-xdr (decode the batch, re-encode each LCM), independently of our splitter.
pub fn lcm_samples() -> Vec<(String, Vec<u8>)> {
    let mut v = Vec::new();
    for dir in ["stellar-core-protocols", "testnet-sdk-fixtures"] {
        for p in files(dir, ".xdr") {
            v.push((name(&p), std::fs::read(&p).unwrap()));
        }
    }
    for (n, batch) in batches() {
        let b = LedgerCloseMetaBatch::from_xdr(&batch, limits()).unwrap();
        for (i, lcm) in b.ledger_close_metas.iter().enumerate() {
            v.push((format!("{n}#{i}"), lcm.to_xdr(Limits::none()).unwrap()));
        }
    }
    for p in files("pubnet-variants", ".xdr.zst") {
        v.push((name(&p), unzstd(&p)));
    }
    v
}

/// The large synthetic Soroban ledgers (record-marked streams).
pub fn loadtest_samples() -> Vec<(String, Vec<u8>)> {
    let mut v = Vec::new();
    for p in files("standalone-loadtest", ".xdr.zstd") {
        for (i, lcm) in record_marked(&unzstd(&p)).into_iter().enumerate() {
            v.push((format!("{}#{i}", name(&p)), lcm));
        }
    }
    v
}

/// The real 372 KB pubnet ledger 53,312,000.
pub fn pubnet_lcm() -> Vec<u8> {
    let (_, batch) = batches()
        .into_iter()
        .find(|(n, _)| n.starts_with("pubnet/"))
        .unwrap();
    let b = LedgerCloseMetaBatch::from_xdr(&batch, limits()).unwrap();
    b.ledger_close_metas[0].to_xdr(Limits::none()).unwrap()
}

/// Smallest real sample (used where every prefix or many mutations are tried).
pub fn small_lcm(name_part: &str) -> Vec<u8> {
    let p = files("stellar-core-protocols", ".xdr")
        .into_iter()
        .find(|p| p.to_string_lossy().contains(name_part))
        .unwrap_or_else(|| panic!("no sample matching {name_part}"));
    std::fs::read(p).unwrap()
}

fn envelope_ops(e: &TransactionEnvelope) -> u32 {
    let n = match e {
        TransactionEnvelope::TxV0(e) => e.tx.operations.len(),
        TransactionEnvelope::Tx(e) => e.tx.operations.len(),
        TransactionEnvelope::TxFeeBump(e) => match &e.tx.inner_tx {
            FeeBumpTransactionInnerTx::Tx(inner) => inner.tx.operations.len(),
        },
    };
    n as u32
}

fn generalized_envelopes(set: &GeneralizedTransactionSet) -> Vec<&TransactionEnvelope> {
    let GeneralizedTransactionSet::V1(v1) = set;
    let mut out = Vec::new();
    for phase in v1.phases.iter() {
        match phase {
            TransactionPhase::V0(components) => {
                for c in components.iter() {
                    let TxSetComponent::TxsetCompTxsMaybeDiscountedFee(c) = c;
                    out.extend(c.txs.iter());
                }
            }
            TransactionPhase::V1(parallel) => {
                for stage in parallel.execution_stages.iter() {
                    for cluster in stage.0.iter() {
                        out.extend(cluster.0.iter());
                    }
                }
            }
        }
    }
    out
}

/// The row computed from a full stellar-xdr decode.
pub fn oracle_row(lcm: &LedgerCloseMeta) -> LedgerRow {
    let (version, lhhe, envelopes, processing): (u32, &LedgerHeaderHistoryEntry, Vec<_>, usize) =
        match lcm {
            LedgerCloseMeta::V0(v) => (
                0,
                &v.ledger_header,
                v.tx_set.txs.iter().collect(),
                v.tx_processing.len(),
            ),
            LedgerCloseMeta::V1(v) => (
                1,
                &v.ledger_header,
                generalized_envelopes(&v.tx_set),
                v.tx_processing.len(),
            ),
            LedgerCloseMeta::V2(v) => (
                2,
                &v.ledger_header,
                generalized_envelopes(&v.tx_set),
                v.tx_processing.len(),
            ),
        };
    let h = &lhhe.header;
    LedgerRow {
        lcm_version: version,
        ledger_sequence: h.ledger_seq,
        ledger_hash: lhhe.hash.0,
        previous_ledger_hash: h.previous_ledger_hash.0,
        close_time: h.scp_value.close_time.0,
        protocol_version: h.ledger_version,
        total_coins: h.total_coins,
        fee_pool: h.fee_pool,
        tx_set_hash: h.scp_value.tx_set_hash.0,
        tx_count: envelopes.len() as u32,
        operation_count: envelopes.iter().map(|e| envelope_ops(e)).sum(),
        tx_processing_count: processing as u32,
    }
}

// --- deterministic mutation (fuzz.rs, differential.rs) ----------------------------------------

/// xorshift64*: deterministic, dependency-free.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Values that hit XDR decision points: flags, small discriminants, lengths, sign bits.
const INTERESTING: [u32; 12] = [
    0,
    1,
    2,
    3,
    4,
    5,
    8,
    32,
    100,
    0x7fff_ffff,
    0x8000_0000,
    u32::MAX,
];

pub fn mutate(rng: &mut Rng, src: &[u8]) -> Vec<u8> {
    let mut m = src.to_vec();
    let rounds = 1 + rng.below(3);
    for _ in 0..rounds {
        if m.len() < 8 {
            break;
        }
        let word = rng.below(m.len() / 4) * 4;
        match rng.below(7) {
            // Random byte anywhere.
            0 => {
                let i = rng.below(m.len());
                m[i] = rng.next() as u8;
            }
            // Flip one bit.
            1 => {
                let i = rng.below(m.len());
                m[i] ^= 1 << rng.below(8);
            }
            // Aligned word set to an interesting value.
            2 | 3 => {
                let v = INTERESTING[rng.below(INTERESTING.len())];
                m[word..word + 4].copy_from_slice(&v.to_be_bytes());
            }
            // Aligned word nudged by +-1 (counts, discriminants, lengths).
            4 => {
                let v = u32::from_be_bytes(m[word..word + 4].try_into().unwrap());
                let v = if rng.below(2) == 0 {
                    v.wrapping_add(1)
                } else {
                    v.wrapping_sub(1)
                };
                m[word..word + 4].copy_from_slice(&v.to_be_bytes());
            }
            // Insert or delete four bytes.
            5 => {
                if rng.below(2) == 0 {
                    m.splice(word..word, (rng.next() as u32).to_be_bytes());
                } else {
                    m.drain(word..word + 4);
                }
            }
            // Truncate.
            _ => {
                let n = rng.below(m.len());
                m.truncate(n);
            }
        }
    }
    m
}
