//! Row-level checks of one partition's Parquet file (blocking; small batches so memory stays
//! bounded): ledger sequence and hash links, xdr checksums and lengths, and every extracted
//! column re-derived from `xdr_bytes` with `bronze_ledger::extract_row`.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, TimestampMillisecondType, UInt32Type, UInt64Type};
use arrow_array::{
    Array, BinaryArray, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
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

/// The columns of one batch, typed (unsigned integers in the plain layout and signed ones in a
/// Delta table are both read as `i64`).
struct Columns<'a> {
    seq: Vec<i64>,
    hash: &'a StringArray,
    prev: &'a StringArray,
    close_time: &'a TimestampMillisecondArray,
    protocol: Vec<i64>,
    total_coins: &'a Int64Array,
    fee_pool: &'a Int64Array,
    tx_set_hash: &'a StringArray,
    tx_count: &'a Int32Array,
    op_count: &'a Int32Array,
    xdr: &'a BinaryArray,
    xdr_len: &'a Int32Array,
    xdr_sha: &'a StringArray,
    version: &'a StringArray,
    era: &'a StringArray,
    network: &'a StringArray,
    ingested: &'a TimestampMillisecondArray,
}

impl<'a> Columns<'a> {
    fn of(batch: &'a RecordBatch) -> Result<Columns<'a>, String> {
        let wrong_type = |name: &str| format!("column {name} has an unexpected type");
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
        let ints =
            |name: &'static str| integers(column(batch, name)).ok_or_else(|| wrong_type(name));
        Ok(Columns {
            seq: ints("ledger_sequence")?,
            hash: string("ledger_hash")?,
            prev: string("previous_ledger_hash")?,
            close_time: ts("close_time")?,
            protocol: ints("protocol_version")?,
            total_coins: i64s("total_coins")?,
            fee_pool: i64s("fee_pool")?,
            tx_set_hash: string("tx_set_hash")?,
            tx_count: i32s("tx_count")?,
            op_count: i32s("operation_count")?,
            xdr: column(batch, "xdr_bytes")
                .as_binary_opt::<i32>()
                .ok_or_else(|| wrong_type("xdr_bytes"))?,
            xdr_len: i32s("xdr_byte_length")?,
            xdr_sha: string("xdr_sha256")?,
            version: string("bronze_version")?,
            era: string("era_id")?,
            network: string("network")?,
            ingested: ts("ingested_at")?,
        })
    }
}

fn check_batch(
    batch: &RecordBatch,
    expected: &Expected,
    out: &mut RowsSummary,
    previous_hash: &mut Option<String>,
    f: &mut Findings,
) -> Result<(), String> {
    let c = Columns::of(batch)?;
    let Columns {
        hash,
        prev,
        xdr,
        xdr_len,
        xdr_sha,
        version,
        era,
        network,
        ingested,
        ..
    } = &c;
    for i in 0..batch.num_rows() {
        let row_index = out.rows;
        out.rows += 1;
        let expected_seq = i64::from(expected.range.start) + row_index as i64;
        let s = c.seq[i];
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
        compare_extracted(&c, i, &row, &at, f);
    }
    Ok(())
}

/// Each column of row `i` against the same field re-extracted from its `xdr_bytes` (`row`).
fn compare_extracted(
    c: &Columns<'_>,
    i: usize,
    row: &bronze_ledger::LedgerRow,
    at: &str,
    f: &mut Findings,
) {
    let close_millis = i64::try_from(row.close_time)
        .ok()
        .and_then(|t| t.checked_mul(1000));
    let compare: [(&'static str, String, String); 10] = [
        (
            "rows.ledger_sequence",
            row.ledger_sequence.to_string(),
            c.seq[i].to_string(),
        ),
        (
            "rows.ledger_hash",
            hex32(&row.ledger_hash).as_str().to_string(),
            c.hash.value(i).to_string(),
        ),
        (
            "rows.previous_ledger_hash",
            hex32(&row.previous_ledger_hash).as_str().to_string(),
            c.prev.value(i).to_string(),
        ),
        (
            "rows.close_time",
            close_millis.map_or("overflow".into(), |t| t.to_string()),
            c.close_time.value(i).to_string(),
        ),
        (
            "rows.protocol_version",
            row.protocol_version.to_string(),
            c.protocol[i].to_string(),
        ),
        (
            "rows.total_coins",
            row.total_coins.to_string(),
            c.total_coins.value(i).to_string(),
        ),
        (
            "rows.fee_pool",
            row.fee_pool.to_string(),
            c.fee_pool.value(i).to_string(),
        ),
        (
            "rows.tx_set_hash",
            hex32(&row.tx_set_hash).as_str().to_string(),
            c.tx_set_hash.value(i).to_string(),
        ),
        (
            "rows.tx_count",
            row.tx_count.to_string(),
            c.tx_count.value(i).to_string(),
        ),
        (
            "rows.operation_count",
            row.operation_count.to_string(),
            c.op_count.value(i).to_string(),
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
