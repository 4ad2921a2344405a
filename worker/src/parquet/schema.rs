//! Arrow schema of `ledgers_lcm_raw`: the 17 columns of the original, in its order, all required.

use std::sync::{Arc, LazyLock};

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Column names in file order.
pub const COLUMNS: [&str; 17] = [
    "ledger_sequence",
    "ledger_hash",
    "previous_ledger_hash",
    "close_time",
    "protocol_version",
    "total_coins",
    "fee_pool",
    "tx_set_hash",
    "tx_count",
    "operation_count",
    "xdr_bytes",
    "xdr_byte_length",
    "xdr_sha256",
    "bronze_version",
    "era_id",
    "network",
    "ingested_at",
];

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let utc_millis = || DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
    let types = [
        DataType::UInt64,
        DataType::Utf8,
        DataType::Utf8,
        utc_millis(),
        DataType::UInt32,
        DataType::Int64,
        DataType::Int64,
        DataType::Utf8,
        DataType::Int32,
        DataType::Int32,
        DataType::Binary,
        DataType::Int32,
        DataType::Utf8,
        DataType::Utf8,
        DataType::Utf8,
        DataType::Utf8,
        utc_millis(),
    ];
    let fields: Vec<Field> = COLUMNS
        .iter()
        .zip(types)
        .map(|(name, ty)| Field::new(*name, ty, false))
        .collect();
    Arc::new(Schema::new(fields))
});

/// The table's schema (shared).
pub fn ledgers_lcm_raw_schema() -> SchemaRef {
    SCHEMA.clone()
}
