//! The `ledgers_lcm_raw` table: its Arrow schema and a streaming Parquet writer.

mod page_codec;
mod schema;
mod writer;
mod xdr_column;

pub use schema::{COLUMNS, ledgers_lcm_raw_schema};
pub use writer::{
    LedgerRecord, PartitionFileSummary, PartitionWriter, WriterError, WriterSettings, codec,
};
