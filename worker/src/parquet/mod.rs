//! The `ledgers_lcm_raw` table: its Arrow schema and a streaming Parquet writer.

mod page_codec;
mod schema;
mod writer;
mod xdr_column;

pub use schema::{COLUMNS, IntegerTypes, ledgers_lcm_raw_schema, ledgers_lcm_raw_schema_with};
pub use writer::{
    LedgerRecord, PartitionFileSummary, PartitionWriter, WriterError, WriterSettings, codec,
};
