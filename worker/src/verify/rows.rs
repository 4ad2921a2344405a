//! Row-level checks of one partition's Parquet file (blocking; small batches so memory stays
//! bounded): ledger sequence and hash links, xdr checksums and lengths, and every extracted
//! column re-derived from `xdr_bytes` with `bronze_ledger::extract_row`.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, TimestampMillisecondType, UInt32Type, UInt64Type};
use arrow_array::{Array, RecordBatch};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sha2::{Digest, Sha256};

use crate::hash::hex32;
use crate::parquet::{COLUMNS, IntegerTypes};
use crate::partition::LedgerRange;

/// Rows per batch: `xdr_bytes` can be megabytes per row.
const BATCH_ROWS: usize = 64;
/// Detailed lines per check and partition; the rest are counted.
const DETAIL_LIMIT: usize = 3;

/// What the rows must say.
#[derive(Debug, Clone)]
pub struct Expected {
    pub range: LedgerRange,
    pub network: String,
    pub era_id: String,
    pub version_label: String,
    /// From the manifest, when recorded there.
    pub ingested_at_millis: Option<i64>,
    /// Keep each row's `LedgerHeaderHistoryEntry` (for the archive check).
    pub collect_headers: bool,
}

/// What the rows say.
#[derive(Debug, Clone, Default)]
pub struct RowsSummary {
    pub rows: u64,
    /// `previous_ledger_hash` of the first row.
    pub first_previous_hash: Option<String>,
    pub first_hash: Option<String>,
    pub last_hash: Option<String>,
    /// The integer types of `ledger_sequence` and `protocol_version` in the file's schema.
    pub integers: Option<IntegerTypes>,
    /// (check, detail)
    pub findings: Vec<(&'static str, String)>,
    /// Each row's ledger header entry, with [`Expected::collect_headers`].
    pub headers: Vec<crate::archive::HeaderEntry>,
}

/// Collects findings per check, keeping the first few in detail.
#[derive(Default)]
struct Findings {
    shown: Vec<(&'static str, String)>,
    counts: BTreeMap<&'static str, usize>,
}

impl Findings {
    fn add(&mut self, check: &'static str, detail: impl FnOnce() -> String) {
        let n = self.counts.entry(check).or_default();
        *n += 1;
        if *n <= DETAIL_LIMIT {
            self.shown.push((check, detail()));
        }
    }

    fn finish(mut self) -> Vec<(&'static str, String)> {
        for (check, n) in &self.counts {
            if *n > DETAIL_LIMIT {
                self.shown.push((
                    check,
                    format!("... and {} more rows failing this check", n - DETAIL_LIMIT),
                ));
            }
        }
        self.shown
    }
}

/// Reads the file at `path` and checks every row against `expected`.
pub fn check_rows(path: &Path, expected: &Expected) -> RowsSummary {
    let mut out = RowsSummary::default();
    let mut f = Findings::default();
    if let Err(message) = read(path, expected, &mut out, &mut f) {
        f.add("parquet.read", || message);
    }
    let r = expected.range;
    if out.rows != r.len() {
        f.add("rows.sequence", || {
            format!(
                "expected {} rows (ledgers {r}), found {}",
                r.len(),
                out.rows
            )
        });
    }
    out.findings = f.finish();
    out
}

fn read(
    path: &Path,
    expected: &Expected,
    out: &mut RowsSummary,
    f: &mut Findings,
) -> Result<(), String> {
    let file = File::open(path).map_err(|e| format!("cannot open the download: {e}"))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| format!("not a readable Parquet file: {e}"))?;
    let names: Vec<String> = builder
        .schema()
        .fields()
        .iter()
        .map(|c| c.name().clone())
        .collect();
    out.integers = IntegerTypes::of_schema(builder.schema());
    if names != COLUMNS {
        f.add("parquet.schema", || {
            format!("expected columns {COLUMNS:?}, found {names:?}")
        });
        return Ok(());
    }
    let reader = builder
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| format!("cannot read the row groups: {e}"))?;
    let mut previous_hash: Option<String> = None;
    for batch in reader {
        let batch = batch.map_err(|e| format!("cannot decode rows: {e}"))?;
        check_batch(&batch, expected, out, &mut previous_hash, f)?;
    }
    out.last_hash = previous_hash;
    Ok(())
}

/// The values of an integer column of either layout (`ledger_sequence`: uint64 or int64;
/// `protocol_version`: uint32 or int32), widened to i64 (`None` for any other type).
fn integers(array: &dyn Array) -> Option<Vec<i64>> {
    if let Some(a) = array.as_primitive_opt::<UInt64Type>() {
        return Some(a.values().iter().map(|v| *v as i64).collect());
    }
    if let Some(a) = array.as_primitive_opt::<Int64Type>() {
        return Some(a.values().to_vec());
    }
    if let Some(a) = array.as_primitive_opt::<UInt32Type>() {
        return Some(a.values().iter().map(|v| i64::from(*v)).collect());
    }
    array
        .as_primitive_opt::<Int32Type>()
        .map(|a| a.values().iter().map(|v| i64::from(*v)).collect())
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> &'a dyn Array {
    batch
        .column_by_name(name)
        .expect("schema checked before reading")
        .as_ref()
}

fn check_batch(
    batch: &RecordBatch,
    expected: &Expected,
    out: &mut RowsSummary,
    previous_hash: &mut Option<String>,
    f: &mut Findings,
) -> Result<(), String> {
    let wrong_type = |name: &str| format!("column {name} has an unexpected type");
    // Unsigned in the plain layout, signed in a Delta table (both read here).
    let seq =
        integers(column(batch, "ledger_sequence")).ok_or_else(|| wrong_type("ledger_sequence"))?;
    let string = |name: &'static str| {
        column(batch, name)
            .as_string_opt::<i32>()
            .ok_or_else(|| wrong_type(name))
    };
    let ts = |name: &'static str| {
        column(batch, name)
            .as_primitive_opt::<TimestampMillisecondType>()
            .ok_or_else(|| wrong_type(name))
    };
    let i64s = |name: &'static str| {
        column(batch, name)
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(|| wrong_type(name))
    };
    let i32s = |name: &'static str| {
        column(batch, name)
            .as_primitive_opt::<Int32Type>()
            .ok_or_else(|| wrong_type(name))
    };
    let hash = string("ledger_hash")?;
    let prev = string("previous_ledger_hash")?;
    let close_time = ts("close_time")?;
    let protocol = integers(column(batch, "protocol_version"))
        .ok_or_else(|| wrong_type("protocol_version"))?;
    let total_coins = i64s("total_coins")?;
    let fee_pool = i64s("fee_pool")?;
    let tx_set_hash = string("tx_set_hash")?;
    let tx_count = i32s("tx_count")?;
    let op_count = i32s("operation_count")?;
    let xdr = column(batch, "xdr_bytes")
        .as_binary_opt::<i32>()
        .ok_or_else(|| wrong_type("xdr_bytes"))?;
    let xdr_len = i32s("xdr_byte_length")?;
    let xdr_sha = string("xdr_sha256")?;
    let version = string("bronze_version")?;
    let era = string("era_id")?;
    let network = string("network")?;
    let ingested = ts("ingested_at")?;

    for i in 0..batch.num_rows() {
        let row_index = out.rows;
        out.rows += 1;
        let expected_seq = i64::from(expected.range.start) + row_index as i64;
        let s = seq[i];
        let at = format!("row {row_index} (ledger {s})");
        if s != expected_seq {
            f.add("rows.sequence", || {
                format!("{at}: expected ledger_sequence {expected_seq}, found {s}")
            });
        }
        let h = hash.value(i);
        let p = prev.value(i);
        match previous_hash.as_deref() {
            None => {
                out.first_previous_hash = Some(p.to_string());
                out.first_hash = Some(h.to_string());
            }
            Some(before) if before != p => f.add("rows.link", || {
                format!("{at}: previous_ledger_hash expected {before} (hash of the row before), found {p}")
            }),
            Some(_) => {}
        }
        *previous_hash = Some(h.to_string());

        let bytes = xdr.value(i);
        let digest = hex::encode(Sha256::digest(bytes));
        if digest != xdr_sha.value(i) {
            f.add("rows.xdr_sha256", || {
                format!(
                    "{at}: expected {digest} (sha256 of xdr_bytes), found {}",
                    xdr_sha.value(i)
                )
            });
        }
        if i64::from(xdr_len.value(i)) != bytes.len() as i64 {
            f.add("rows.xdr_byte_length", || {
                format!(
                    "{at}: expected {} (length of xdr_bytes), found {}",
                    bytes.len(),
                    xdr_len.value(i)
                )
            });
        }
        for (check, found, want) in [
            (
                "rows.bronze_version",
                version.value(i),
                expected.version_label.as_str(),
            ),
            ("rows.era_id", era.value(i), expected.era_id.as_str()),
            ("rows.network", network.value(i), expected.network.as_str()),
        ] {
            if found != want {
                f.add(check, || {
                    format!("{at}: expected {want:?}, found {found:?}")
                });
            }
        }
        if let Some(want) = expected.ingested_at_millis
            && ingested.value(i) != want
        {
            f.add("rows.ingested_at", || {
                format!(
                    "{at}: expected {want} ms (manifest ingested_at), found {}",
                    ingested.value(i)
                )
            });
        }

        let row = match bronze_ledger::extract_row(bytes) {
            Ok(r) => r,
            Err(e) => {
                f.add("rows.xdr", || {
                    format!("{at}: xdr_bytes is not a valid LedgerCloseMeta: {e}")
                });
                continue;
            }
        };
        if expected.collect_headers
            && let Ok((entry, _)) = crate::archive::entry_of_lcm(bytes)
        {
            out.headers.push(entry);
        }
        if !bronze_ledger::header_hash_matches(bytes).unwrap_or(false) {
            f.add("rows.header_hash", || {
                format!("{at}: the ledger hash in xdr_bytes is not the sha256 of its ledger header")
            });
        }
        let close_millis = i64::try_from(row.close_time)
            .ok()
            .and_then(|c| c.checked_mul(1000));
        let compare: [(&'static str, String, String); 10] = [
            (
                "rows.ledger_sequence",
                row.ledger_sequence.to_string(),
                s.to_string(),
            ),
            (
                "rows.ledger_hash",
                hex32(&row.ledger_hash).as_str().to_string(),
                h.to_string(),
            ),
            (
                "rows.previous_ledger_hash",
                hex32(&row.previous_ledger_hash).as_str().to_string(),
                p.to_string(),
            ),
            (
                "rows.close_time",
                close_millis.map_or("overflow".into(), |c| c.to_string()),
                close_time.value(i).to_string(),
            ),
            (
                "rows.protocol_version",
                row.protocol_version.to_string(),
                protocol[i].to_string(),
            ),
            (
                "rows.total_coins",
                row.total_coins.to_string(),
                total_coins.value(i).to_string(),
            ),
            (
                "rows.fee_pool",
                row.fee_pool.to_string(),
                fee_pool.value(i).to_string(),
            ),
            (
                "rows.tx_set_hash",
                hex32(&row.tx_set_hash).as_str().to_string(),
                tx_set_hash.value(i).to_string(),
            ),
            (
                "rows.tx_count",
                row.tx_count.to_string(),
                tx_count.value(i).to_string(),
            ),
            (
                "rows.operation_count",
                row.operation_count.to_string(),
                op_count.value(i).to_string(),
            ),
        ];
        for (check, want, found) in compare {
            if want != found {
                f.add(check, || {
                    format!("{at}: expected {want} (re-extracted from xdr_bytes), found {found}")
                });
            }
        }
    }
    Ok(())
}
