//! `add.stats` of a partition's file: `numRecords` from the manifest, `minValues`/`maxValues`
//! of the small numeric and time columns from the Parquet footer's row-group statistics,
//! `nullCount` 0 for every column (all 17 are required). Readers prune on these (a query on
//! `ledger_sequence` or `close_time` opens only the files that can match).

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use parquet::file::statistics::Statistics;
use serde_json::{Map, Value, json};

use crate::parquet::{COLUMNS, IntegerTypes};

/// How a column's min/max is written in the stats JSON.
#[derive(Clone, Copy)]
enum Kind {
    Number,
    /// Milliseconds since the epoch, written as an ISO-8601 UTC timestamp.
    TimestampMillis,
}

/// The columns with min/max statistics (the rest are hashes and payload: no useful pruning).
const STAT_COLUMNS: [(&str, Kind); 9] = [
    ("ledger_sequence", Kind::Number),
    ("close_time", Kind::TimestampMillis),
    ("protocol_version", Kind::Number),
    ("total_coins", Kind::Number),
    ("fee_pool", Kind::Number),
    ("tx_count", Kind::Number),
    ("operation_count", Kind::Number),
    ("xdr_byte_length", Kind::Number),
    // The same value in every row of a backfill, but a filter on it still prunes.
    ("ingested_at", Kind::TimestampMillis),
];

/// The footer's min and max of `column` over all row groups (`None` when a row group has none).
fn column_min_max(meta: &ParquetMetaData, column: &str) -> Option<(i64, i64)> {
    let mut acc: Option<(i64, i64)> = None;
    for rg in meta.row_groups() {
        let col = rg
            .columns()
            .iter()
            .find(|c| c.column_descr().name() == column)?;
        let (lo, hi) = match col.statistics()? {
            Statistics::Int64(s) => (*s.min_opt()?, *s.max_opt()?),
            Statistics::Int32(s) => (i64::from(*s.min_opt()?), i64::from(*s.max_opt()?)),
            _ => return None,
        };
        acc = Some(match acc {
            None => (lo, hi),
            Some((a, b)) => (a.min(lo), b.max(hi)),
        });
    }
    acc
}

fn value_of(kind: Kind, v: i64) -> Option<Value> {
    match kind {
        Kind::Number => Some(json!(v)),
        Kind::TimestampMillis => DateTime::from_timestamp_millis(v)
            .map(|t| json!(t.to_rfc3339_opts(SecondsFormat::Millis, true))),
    }
}

/// The integer types of `ledger_sequence` and `protocol_version` in a file's footer (`None` for
/// a file of neither layout).
pub fn integer_types_of_footer(meta: &ParquetMetaData) -> Option<IntegerTypes> {
    let file = meta.file_metadata();
    let schema =
        parquet::arrow::parquet_to_arrow_schema(file.schema_descr(), file.key_value_metadata())
            .ok()?;
    IntegerTypes::of_schema(&schema)
}

/// The stats JSON string of a file with `row_count` rows and footer `meta` (pure).
pub fn stats_json(row_count: u64, meta: Option<&ParquetMetaData>) -> String {
    let mut min = Map::new();
    let mut max = Map::new();
    if let Some(meta) = meta {
        for (column, kind) in STAT_COLUMNS {
            if let Some((lo, hi)) = column_min_max(meta, column)
                && let (Some(lo), Some(hi)) = (value_of(kind, lo), value_of(kind, hi))
            {
                min.insert(column.to_string(), lo);
                max.insert(column.to_string(), hi);
            }
        }
    }
    let null_count: Map<String, Value> =
        COLUMNS.iter().map(|c| (c.to_string(), json!(0))).collect();
    json!({
        "numRecords": row_count,
        "minValues": min,
        "maxValues": max,
        "nullCount": null_count,
    })
    .to_string()
}

/// The footer of the Parquet object `key` of `size` bytes: one ranged read of the file's tail
/// (two when the footer is larger than the first guess).
pub async fn read_footer(
    store: &dyn ObjectStore,
    key: &ObjectPath,
    size: u64,
) -> Result<ParquetMetaData, String> {
    const GUESS: u64 = 64 * 1024;
    if size < 12 {
        return Err(format!(
            "{key}: {size} bytes is too small for a Parquet file"
        ));
    }
    let start = size.saturating_sub(GUESS);
    let tail: Bytes = store
        .get_range(key, start..size)
        .await
        .map_err(|e| format!("{key}: cannot read the footer: {e}"))?;
    let n = tail.len();
    if &tail[n - 4..] != b"PAR1" {
        return Err(format!("{key}: not a Parquet file (no PAR1 at the end)"));
    }
    let len = u64::from(u32::from_le_bytes(
        tail[n - 8..n - 4].try_into().expect("4 bytes"),
    ));
    let footer_start = size
        .checked_sub(8 + len)
        .ok_or_else(|| format!("{key}: footer length {len} exceeds the file size {size}"))?;
    let footer: Bytes = if footer_start >= start {
        tail.slice((footer_start - start) as usize..n - 8)
    } else {
        store
            .get_range(key, footer_start..size - 8)
            .await
            .map_err(|e| format!("{key}: cannot read the footer: {e}"))?
    };
    ParquetMetaDataReader::decode_metadata(&footer)
        .map_err(|e| format!("{key}: cannot decode the Parquet footer: {e}"))
}
