//! The independent oracle: what every column of the output must hold, computed with the
//! reference `stellar-xdr` library, and a check of a Parquet file (read with pyarrow) against it.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use sha2::{Digest, Sha256};
use stellar_xdr::{
    FeeBumpTransactionInnerTx, GeneralizedTransactionSet, LedgerCloseMeta, LedgerCloseMetaBatch,
    Limits, ReadXdr, TransactionEnvelope, TransactionPhase, TxSetComponent, WriteXdr,
};

use crate::datastore::{object_files, unzstd};

/// `ingested_at` of the harness's configs (2025-01-15T10:00:00Z), in milliseconds.
pub const INGESTED_AT_MS: i64 = 1_736_935_200_000;

/// The labels (`network`, `era_id`, `bronze_version`) of the harness's testnet runs.
pub const TESTNET_LABELS: (&str, &str, &str) = ("testnet", "pre_p23", "v1");

/// `sha256:<hex>` of a file, as manifests record checksums.
pub fn sha256_file(path: &Path) -> String {
    format!(
        "sha256:{}",
        hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
    )
}

/// What each column must hold for one ledger, computed by the reference decoder.
#[derive(Debug, Clone, PartialEq)]
pub struct Expected {
    pub ledger_sequence: u64,
    pub ledger_hash: String,
    pub previous_ledger_hash: String,
    pub close_time_ms: i64,
    pub protocol_version: u64,
    pub total_coins: i64,
    pub fee_pool: i64,
    pub tx_set_hash: String,
    pub tx_count: i64,
    pub operation_count: i64,
    pub xdr_hex: String,
    pub xdr_len: i64,
    pub xdr_sha256: String,
}

fn envelope_ops(e: &TransactionEnvelope) -> usize {
    match e {
        TransactionEnvelope::TxV0(e) => e.tx.operations.len(),
        TransactionEnvelope::Tx(e) => e.tx.operations.len(),
        TransactionEnvelope::TxFeeBump(e) => match &e.tx.inner_tx {
            FeeBumpTransactionInnerTx::Tx(inner) => inner.tx.operations.len(),
        },
    }
}

fn generalized(set: &GeneralizedTransactionSet) -> Vec<&TransactionEnvelope> {
    let GeneralizedTransactionSet::V1(v1) = set;
    let mut out = Vec::new();
    for phase in v1.phases.iter() {
        match phase {
            TransactionPhase::V0(components) => {
                for TxSetComponent::TxsetCompTxsMaybeDiscountedFee(c) in components.iter() {
                    out.extend(c.txs.iter());
                }
            }
            TransactionPhase::V1(p) => {
                for stage in p.execution_stages.iter() {
                    for cluster in stage.0.iter() {
                        out.extend(cluster.0.iter());
                    }
                }
            }
        }
    }
    out
}

pub fn expected_for(lcm: &LedgerCloseMeta) -> Expected {
    let (entry, envelopes) = match lcm {
        LedgerCloseMeta::V0(v) => (&v.ledger_header, v.tx_set.txs.iter().collect::<Vec<_>>()),
        LedgerCloseMeta::V1(v) => (&v.ledger_header, generalized(&v.tx_set)),
        LedgerCloseMeta::V2(v) => (&v.ledger_header, generalized(&v.tx_set)),
    };
    let h = &entry.header;
    let xdr = lcm.to_xdr(Limits::none()).unwrap();
    Expected {
        ledger_sequence: u64::from(h.ledger_seq),
        ledger_hash: hex::encode(entry.hash.0),
        previous_ledger_hash: hex::encode(h.previous_ledger_hash.0),
        close_time_ms: h.scp_value.close_time.0 as i64 * 1000,
        protocol_version: u64::from(h.ledger_version),
        total_coins: h.total_coins,
        fee_pool: h.fee_pool,
        tx_set_hash: hex::encode(h.scp_value.tx_set_hash.0),
        tx_count: envelopes.len() as i64,
        operation_count: envelopes.iter().map(|e| envelope_ops(e)).sum::<usize>() as i64,
        xdr_len: xdr.len() as i64,
        xdr_sha256: hex::encode(Sha256::digest(&xdr)),
        xdr_hex: hex::encode(&xdr),
    }
}

/// Expected rows of every ledger in a local datastore, decoded with the reference library.
pub fn expected_rows(datastore: &Path) -> BTreeMap<u64, Expected> {
    let mut out = BTreeMap::new();
    for file in object_files(datastore) {
        let xdr = unzstd(&std::fs::read(&file).unwrap());
        let batch = LedgerCloseMetaBatch::from_xdr(&xdr, Limits::none()).unwrap();
        for lcm in batch.ledger_close_metas.iter() {
            let e = expected_for(lcm);
            out.insert(e.ledger_sequence, e);
        }
    }
    out
}

/// The 17 columns (docs/formats.md#parquet-ledgers_lcm_raw), with the Arrow types pyarrow reports and Parquet's physical
/// and logical types.
pub const SCHEMA: [(&str, &str, &str); 17] = [
    ("ledger_sequence", "uint64", "INT64"),
    ("ledger_hash", "string", "BYTE_ARRAY"),
    ("previous_ledger_hash", "string", "BYTE_ARRAY"),
    ("close_time", "timestamp[ms, tz=UTC]", "INT64"),
    ("protocol_version", "uint32", "INT32"),
    ("total_coins", "int64", "INT64"),
    ("fee_pool", "int64", "INT64"),
    ("tx_set_hash", "string", "BYTE_ARRAY"),
    ("tx_count", "int32", "INT32"),
    ("operation_count", "int32", "INT32"),
    ("xdr_bytes", "binary", "BYTE_ARRAY"),
    ("xdr_byte_length", "int32", "INT32"),
    ("xdr_sha256", "string", "BYTE_ARRAY"),
    ("bronze_version", "string", "BYTE_ARRAY"),
    ("era_id", "string", "BYTE_ARRAY"),
    ("network", "string", "BYTE_ARRAY"),
    ("ingested_at", "timestamp[ms, tz=UTC]", "INT64"),
];

/// Reads a Parquet file with pyarrow and checks schema and every value against the oracle.
/// Returns the ledger sequences it holds.
pub fn check_parquet_with_pyarrow(
    path: &Path,
    expected: &BTreeMap<u64, Expected>,
    labels: (&str, &str, &str),
    ingested_at_ms: Option<i64>,
) -> Vec<u64> {
    let dump = bronze_testkit::parquet_dump(path);
    let fields = dump["arrow_schema"].as_array().unwrap();
    assert_eq!(fields.len(), 17, "{path:?}");
    for ((name, arrow_type, physical), (field, column)) in SCHEMA
        .iter()
        .zip(fields.iter().zip(dump["columns"].as_array().unwrap()))
    {
        assert_eq!(field["name"], *name);
        assert_eq!(field["type"], *arrow_type, "{name}");
        assert_eq!(field["nullable"], false, "{name} must be required");
        assert_eq!(column["physical_type"], *physical, "{name}");
    }
    let values = &dump["values"];
    let col = |name: &str| values[name].as_array().unwrap().clone();
    let seqs: Vec<u64> = col("ledger_sequence")
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    for (i, seq) in seqs.iter().enumerate() {
        let e = expected
            .get(seq)
            .unwrap_or_else(|| panic!("unexpected ledger {seq} in {path:?}"));
        let columns: [(&str, Value); 15] = [
            ("ledger_hash", e.ledger_hash.clone().into()),
            (
                "previous_ledger_hash",
                e.previous_ledger_hash.clone().into(),
            ),
            ("close_time", e.close_time_ms.into()),
            ("protocol_version", e.protocol_version.into()),
            ("total_coins", e.total_coins.into()),
            ("fee_pool", e.fee_pool.into()),
            ("tx_set_hash", e.tx_set_hash.clone().into()),
            ("tx_count", e.tx_count.into()),
            ("operation_count", e.operation_count.into()),
            ("xdr_bytes", e.xdr_hex.clone().into()),
            ("xdr_byte_length", e.xdr_len.into()),
            ("xdr_sha256", e.xdr_sha256.clone().into()),
            ("network", labels.0.into()),
            ("era_id", labels.1.into()),
            ("bronze_version", labels.2.into()),
        ];
        for (name, want) in columns {
            assert_eq!(values[name][i], want, "ledger {seq}, column {name}");
        }
        if let Some(ms) = ingested_at_ms {
            assert_eq!(values["ingested_at"][i], Value::from(ms), "ledger {seq}");
        }
    }
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "rows sorted and contiguous: {seqs:?}"
    );
    seqs
}
