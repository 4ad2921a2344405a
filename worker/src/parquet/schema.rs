//! Arrow schema of `ledgers_lcm_raw`: the 17 columns of the original, in its order, all required,
//! in one of two physical layouts that differ only in the integer types of `ledger_sequence` and
//! `protocol_version` ([`IntegerTypes`]).

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

/// How `ledger_sequence` and `protocol_version` are stored (docs/formats.md).
///
/// * `Unsigned` (the original copier's format, and the plain layout's): Parquet `INT(64,
///   unsigned)` and `INT(32, unsigned)`, Arrow `uint64`/`uint32`.
/// * `Signed` (the Delta table's, `storage.table_format: delta`): plain `INT64` and `INT32`,
///   Arrow `int64`/`int32`, Delta `long`/`integer`. Delta has no unsigned types, and readers built
///   on delta-kernel, Polars' native scan and Spark refuse or cannot prune unsigned columns. Every
///   ledger sequence and protocol version fits, so nothing is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IntegerTypes {
    #[default]
    Unsigned,
    Signed,
}

impl IntegerTypes {
    /// The name used in the Delta table's configuration and in messages.
    pub fn name(self) -> &'static str {
        match self {
            IntegerTypes::Unsigned => "unsigned",
            IntegerTypes::Signed => "signed",
        }
    }

    pub fn from_name(name: &str) -> Option<IntegerTypes> {
        match name {
            "unsigned" => Some(IntegerTypes::Unsigned),
            "signed" => Some(IntegerTypes::Signed),
            _ => None,
        }
    }

    /// The layout of a file from its Arrow schema (`None`: neither, e.g. a foreign file).
    pub fn of_schema(schema: &Schema) -> Option<IntegerTypes> {
        let ty = |name: &str| {
            schema
                .field_with_name(name)
                .ok()
                .map(|f| f.data_type().clone())
        };
        match (ty("ledger_sequence")?, ty("protocol_version")?) {
            (DataType::UInt64, DataType::UInt32) => Some(IntegerTypes::Unsigned),
            (DataType::Int64, DataType::Int32) => Some(IntegerTypes::Signed),
            _ => None,
        }
    }
}

impl std::fmt::Display for IntegerTypes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

fn schema_of(integers: IntegerTypes) -> SchemaRef {
    let utc_millis = || DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
    let (sequence, protocol) = match integers {
        IntegerTypes::Unsigned => (DataType::UInt64, DataType::UInt32),
        IntegerTypes::Signed => (DataType::Int64, DataType::Int32),
    };
    let types = [
        sequence,
        DataType::Utf8,
        DataType::Utf8,
        utc_millis(),
        protocol,
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
}

static UNSIGNED: LazyLock<SchemaRef> = LazyLock::new(|| schema_of(IntegerTypes::Unsigned));
static SIGNED: LazyLock<SchemaRef> = LazyLock::new(|| schema_of(IntegerTypes::Signed));

/// The table's schema in the original's (plain) layout (shared).
pub fn ledgers_lcm_raw_schema() -> SchemaRef {
    UNSIGNED.clone()
}

/// The table's schema in the layout `integers` (shared).
pub fn ledgers_lcm_raw_schema_with(integers: IntegerTypes) -> SchemaRef {
    match integers {
        IntegerTypes::Unsigned => UNSIGNED.clone(),
        IntegerTypes::Signed => SIGNED.clone(),
    }
}
