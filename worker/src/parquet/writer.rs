//! Streams ledgers into one Parquet file with bounded memory.
//!
//! The small columns are collected into Arrow batches of a few hundred rows and encoded by the
//! parquet crate's column writers; `xdr_bytes`, nearly all of the data, is encoded by hand
//! (`xdr_column.rs`) to avoid copying each ledger over and over. A row group is closed whenever
//! its encoded size reaches `row_group_bytes`, so memory does not grow with the partition. The output goes through a hashing sink: the sha256 and size of the file are
//! known the moment it is finished, without reading it back. The bytes depend only on the rows
//! and the settings, so the same input always gives the same file.

use crate::config::Compression as CodecName;
use std::io::Write;
use std::sync::Arc;

use crate::hash::hex32;

use arrow_array::ArrayRef;
use arrow_array::builder::{
    Int32Builder, Int64Builder, StringBuilder, TimestampMillisecondBuilder, UInt32Builder,
    UInt64Builder,
};
use bronze_ledger::LedgerRow;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::{ArrowColumnWriter, ArrowRowGroupWriterFactory, compute_leaves};
use parquet::basic::{Compression, Encoding, GzipLevel, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnPath;
use sha2::{Digest, Sha256};

use super::schema::{IntegerTypes, ledgers_lcm_raw_schema_with};
use super::xdr_column::XdrColumnChunk;

/// Rows per Arrow batch of the small columns.
const BATCH_ROWS: usize = 256;
/// Index of `xdr_bytes` among the columns.
const XDR_COLUMN: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    #[error("parquet encoding failed: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("arrow batch could not be built: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("unknown parquet compression {0:?}")]
    UnknownCompression(String),
    #[error("ledger {seq}: {field} = {value} does not fit the column type")]
    OutOfRange {
        seq: u32,
        field: &'static str,
        value: u64,
    },
}

/// What the writer needs besides the rows.
#[derive(Debug, Clone)]
pub struct WriterSettings {
    pub compression: CodecName,
    pub compression_level: Option<i32>,
    pub row_group_bytes: usize,
    pub network: String,
    pub era_id: String,
    pub version_label: String,
    /// `ingested_at` for every row, fixed per backfill.
    pub ingested_at_millis: i64,
    /// The types of `ledger_sequence` and `protocol_version`: unsigned in the plain layout (the
    /// original's bytes), signed in a Delta table (docs/formats.md).
    pub integers: IntegerTypes,
}

impl WriterSettings {
    pub fn properties(&self) -> Result<WriterProperties, WriterError> {
        let compression = codec(self.compression, self.compression_level)?;
        let mut builder = WriterProperties::builder()
            .set_compression(compression)
            .set_created_by(format!("bronze-copier version {}", crate::VERSION))
            .set_statistics_truncate_length(Some(64))
            .set_column_index_truncate_length(Some(64));
        // Unique values gain nothing from a dictionary; large blobs gain nothing from statistics.
        for column in [
            "ledger_hash",
            "previous_ledger_hash",
            "tx_set_hash",
            "xdr_sha256",
            "xdr_bytes",
        ] {
            builder = builder
                .set_column_dictionary_enabled(ColumnPath::from(column), false)
                .set_column_encoding(ColumnPath::from(column), Encoding::PLAIN);
        }
        builder = builder
            .set_column_statistics_enabled(ColumnPath::from("xdr_bytes"), EnabledStatistics::None);
        Ok(builder.build())
    }
}

/// The Parquet codec for a config value.
pub fn codec(name: CodecName, level: Option<i32>) -> Result<Compression, WriterError> {
    let bad = || WriterError::UnknownCompression(format!("{name} level {level:?}"));
    Ok(match name {
        CodecName::Zstd => Compression::ZSTD(match level {
            Some(l) => ZstdLevel::try_new(l).map_err(|_| bad())?,
            None => ZstdLevel::default(),
        }),
        CodecName::Gzip => Compression::GZIP(match level {
            Some(l) => {
                GzipLevel::try_new(u32::try_from(l).map_err(|_| bad())?).map_err(|_| bad())?
            }
            None => GzipLevel::default(),
        }),
        CodecName::Snappy => Compression::SNAPPY,
        CodecName::Lz4 => Compression::LZ4_RAW,
        CodecName::None => Compression::UNCOMPRESSED,
    })
}

/// One ledger as it goes into the table.
pub struct LedgerRecord<'a> {
    pub row: &'a LedgerRow,
    pub xdr: &'a [u8],
    pub xdr_sha256: [u8; 32],
}

/// Size and checksum of a finished file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionFileSummary {
    pub rows: u64,
    pub byte_size: u64,
    pub sha256: [u8; 32],
}

/// A sink that hashes and counts what passes through it.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The small columns of the pending rows, as Arrow builders (`xdr_bytes` is not among them: it
/// goes straight into [`XdrColumnChunk`]).
struct Columns {
    ledger_sequence: UInt64Builder,
    ledger_hash: StringBuilder,
    previous_ledger_hash: StringBuilder,
    close_time: TimestampMillisecondBuilder,
    protocol_version: UInt32Builder,
    total_coins: Int64Builder,
    fee_pool: Int64Builder,
    tx_set_hash: StringBuilder,
    tx_count: Int32Builder,
    operation_count: Int32Builder,
    xdr_byte_length: Int32Builder,
    xdr_sha256: StringBuilder,
    rows: usize,
}

impl Columns {
    fn new() -> Self {
        let hex_col = || StringBuilder::with_capacity(BATCH_ROWS, BATCH_ROWS * 64);
        Self {
            ledger_sequence: UInt64Builder::with_capacity(BATCH_ROWS),
            ledger_hash: hex_col(),
            previous_ledger_hash: hex_col(),
            close_time: TimestampMillisecondBuilder::with_capacity(BATCH_ROWS),
            protocol_version: UInt32Builder::with_capacity(BATCH_ROWS),
            total_coins: Int64Builder::with_capacity(BATCH_ROWS),
            fee_pool: Int64Builder::with_capacity(BATCH_ROWS),
            tx_set_hash: hex_col(),
            tx_count: Int32Builder::with_capacity(BATCH_ROWS),
            operation_count: Int32Builder::with_capacity(BATCH_ROWS),
            xdr_byte_length: Int32Builder::with_capacity(BATCH_ROWS),
            xdr_sha256: hex_col(),
            rows: 0,
        }
    }
}

/// `ledger_sequence` and `protocol_version` as the layout stores them (the values were range
/// checked when pushed: a ledger sequence is a `u32`, a protocol version was checked to fit).
fn integer_arrays(
    integers: IntegerTypes,
    sequence: arrow_array::UInt64Array,
    protocol: arrow_array::UInt32Array,
) -> (ArrayRef, ArrayRef) {
    match integers {
        IntegerTypes::Unsigned => (Arc::new(sequence), Arc::new(protocol)),
        IntegerTypes::Signed => (
            Arc::new(arrow_array::Int64Array::from_iter_values(
                sequence.values().iter().map(|v| *v as i64),
            )),
            Arc::new(arrow_array::Int32Array::from_iter_values(
                protocol.values().iter().map(|v| *v as i32),
            )),
        ),
    }
}

/// Column writers of the open row group.
struct RowGroup {
    /// One per column in file order; the one at [`XDR_COLUMN`] is never written (that column
    /// is [`XdrColumnChunk`]'s).
    writers: Vec<ArrowColumnWriter>,
    rows: u64,
}

/// Writes one partition's Parquet file into `W`.
pub struct PartitionWriter<W: Write + Send> {
    file: SerializedFileWriter<HashingWriter<W>>,
    factory: ArrowRowGroupWriterFactory,
    row_group: Option<RowGroup>,
    row_groups_written: usize,
    xdr: XdrColumnChunk,
    columns: Columns,
    settings: WriterSettings,
    rows_total: u64,
}

impl<W: Write + Send> PartitionWriter<W> {
    pub fn new(sink: W, settings: WriterSettings) -> Result<Self, WriterError> {
        let sink = HashingWriter {
            inner: sink,
            hasher: Sha256::new(),
            written: 0,
        };
        // The Arrow writer sets up the file (schema, Arrow schema metadata, properties); rows are
        // then written column by column through its serialized writer.
        let schema = ledgers_lcm_raw_schema_with(settings.integers);
        let (file, factory) = ArrowWriter::try_new(sink, schema, Some(settings.properties()?))?
            .into_serialized_writer()?;
        // xdr_bytes is compressed as the file's properties say for that column.
        let descr = file.schema_descr().column(XDR_COLUMN);
        let compression = file.properties().compression(descr.path());
        let xdr = XdrColumnChunk::new(descr, compression)?;
        Ok(Self {
            file,
            factory,
            row_group: None,
            row_groups_written: 0,
            xdr,
            columns: Columns::new(),
            settings,
            rows_total: 0,
        })
    }

    /// Appends one ledger. Rows must arrive in ledger order (the caller validates it).
    pub fn push(&mut self, record: &LedgerRecord<'_>) -> Result<(), WriterError> {
        let row = record.row;
        let c = &mut self.columns;
        let seq = row.ledger_sequence;
        let as_i32 = |field: &'static str, value: u64| {
            i32::try_from(value).map_err(|_| WriterError::OutOfRange { seq, field, value })
        };
        let close_millis = i64::try_from(row.close_time)
            .ok()
            .and_then(|s| s.checked_mul(1000))
            .ok_or(WriterError::OutOfRange {
                seq,
                field: "close_time",
                value: row.close_time,
            })?;
        let tx_count = as_i32("tx_count", u64::from(row.tx_count))?;
        let operation_count = as_i32("operation_count", u64::from(row.operation_count))?;
        let xdr_byte_length = as_i32("xdr_byte_length", record.xdr.len() as u64)?;
        if self.settings.integers == IntegerTypes::Signed {
            as_i32("protocol_version", u64::from(row.protocol_version))?;
        }
        c.ledger_sequence.append_value(u64::from(seq));
        c.ledger_hash.append_value(hex32(&row.ledger_hash).as_str());
        c.previous_ledger_hash
            .append_value(hex32(&row.previous_ledger_hash).as_str());
        c.close_time.append_value(close_millis);
        c.protocol_version.append_value(row.protocol_version);
        c.total_coins.append_value(row.total_coins);
        c.fee_pool.append_value(row.fee_pool);
        c.tx_set_hash.append_value(hex32(&row.tx_set_hash).as_str());
        c.tx_count.append_value(tx_count);
        c.operation_count.append_value(operation_count);
        c.xdr_byte_length.append_value(xdr_byte_length);
        c.xdr_sha256
            .append_value(hex32(&record.xdr_sha256).as_str());
        c.rows += 1;
        self.xdr.push(record.xdr)?;
        if c.rows >= BATCH_ROWS {
            self.write_pending()?;
        }
        if self.row_group_bytes() >= self.settings.row_group_bytes {
            self.write_pending()?;
            self.close_row_group()?;
        }
        Ok(())
    }

    /// Encoded size of the open row group (the pending rows' small columns aside: a few hundred
    /// bytes a row).
    fn row_group_bytes(&self) -> usize {
        let small: usize = self.row_group.as_ref().map_or(0, |g| {
            g.writers
                .iter()
                .map(ArrowColumnWriter::get_estimated_total_bytes)
                .sum()
        });
        small + self.xdr.encoded_bytes()
    }

    /// Encodes the pending rows' small columns into the open row group.
    fn write_pending(&mut self) -> Result<(), WriterError> {
        let rows = self.columns.rows;
        if rows == 0 {
            return Ok(());
        }
        let c = &mut self.columns;
        let constant = |value: &str| -> ArrayRef {
            let mut b = StringBuilder::with_capacity(rows, rows * value.len());
            for _ in 0..rows {
                b.append_value(value);
            }
            Arc::new(b.finish())
        };
        let ingested = {
            let mut b = TimestampMillisecondBuilder::with_capacity(rows);
            for _ in 0..rows {
                b.append_value(self.settings.ingested_at_millis);
            }
            Arc::new(b.finish().with_timezone("UTC")) as ArrayRef
        };
        let (ledger_sequence, protocol_version) = integer_arrays(
            self.settings.integers,
            c.ledger_sequence.finish(),
            c.protocol_version.finish(),
        );
        // In file order, without xdr_bytes.
        let arrays: [ArrayRef; 16] = [
            ledger_sequence,
            Arc::new(c.ledger_hash.finish()),
            Arc::new(c.previous_ledger_hash.finish()),
            Arc::new(c.close_time.finish().with_timezone("UTC")),
            protocol_version,
            Arc::new(c.total_coins.finish()),
            Arc::new(c.fee_pool.finish()),
            Arc::new(c.tx_set_hash.finish()),
            Arc::new(c.tx_count.finish()),
            Arc::new(c.operation_count.finish()),
            Arc::new(c.xdr_byte_length.finish()),
            Arc::new(c.xdr_sha256.finish()),
            constant(&self.settings.version_label),
            constant(&self.settings.era_id),
            constant(&self.settings.network),
            ingested,
        ];
        c.rows = 0;
        if self.row_group.is_none() {
            self.row_group = Some(RowGroup {
                writers: self
                    .factory
                    .create_column_writers(self.row_groups_written)?,
                rows: 0,
            });
        }
        let group = self.row_group.as_mut().expect("opened above");
        let schema = ledgers_lcm_raw_schema_with(self.settings.integers);
        let small_columns = (0..schema.fields().len()).filter(|&i| i != XDR_COLUMN);
        for (index, array) in small_columns.zip(arrays) {
            for leaf in compute_leaves(schema.field(index), &array)? {
                group.writers[index].write(&leaf)?;
            }
        }
        group.rows += rows as u64;
        self.rows_total += rows as u64;
        Ok(())
    }

    /// Writes the open row group to the file: its columns in file order, `xdr_bytes` from
    /// [`XdrColumnChunk`].
    fn close_row_group(&mut self) -> Result<(), WriterError> {
        let Some(group) = self.row_group.take() else {
            return Ok(());
        };
        debug_assert_eq!(group.rows, self.xdr.rows() as u64);
        let mut row_group = self.file.next_row_group()?;
        for (index, writer) in group.writers.into_iter().enumerate() {
            if index == XDR_COLUMN {
                self.xdr.append_to(&mut row_group)?;
            } else {
                writer.close()?.append_to_row_group(&mut row_group)?;
            }
        }
        row_group.close()?;
        self.row_groups_written += 1;
        Ok(())
    }

    /// Rows pushed so far.
    pub fn rows(&self) -> u64 {
        self.rows_total + self.columns.rows as u64
    }

    /// Finishes the file and returns its summary and the sink.
    pub fn finish(mut self) -> Result<(PartitionFileSummary, W), WriterError> {
        self.write_pending()?;
        self.close_row_group()?;
        let rows = self.rows_total;
        // Writes the footer.
        let sink = self.file.into_inner()?;
        let summary = PartitionFileSummary {
            rows,
            byte_size: sink.written,
            sha256: sink.hasher.finalize().into(),
        };
        Ok((summary, sink.inner))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(compression: &str) -> WriterSettings {
        WriterSettings {
            compression: compression.parse().unwrap(),
            compression_level: None,
            row_group_bytes: 1024 * 1024,
            network: "testnet".into(),
            era_id: "pre_p23".into(),
            version_label: "v1".into(),
            ingested_at_millis: 1_700_000_000_000,
            integers: IntegerTypes::Unsigned,
        }
    }

    fn row(seq: u32) -> LedgerRow {
        LedgerRow {
            lcm_version: 1,
            ledger_sequence: seq,
            ledger_hash: [seq as u8; 32],
            previous_ledger_hash: [seq.wrapping_sub(1) as u8; 32],
            close_time: 1_700_000_000 + u64::from(seq),
            protocol_version: 21,
            total_coins: 1,
            fee_pool: 2,
            tx_set_hash: [9; 32],
            tx_count: 3,
            operation_count: 4,
            tx_processing_count: 3,
        }
    }

    fn blob_for(seq: u32, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u32 ^ seq.wrapping_mul(2654435761)) as u8)
            .collect()
    }

    fn write_file(rows: u32, blob: usize, s: WriterSettings) -> (PartitionFileSummary, Vec<u8>) {
        let mut w = PartitionWriter::new(Vec::new(), s).unwrap();
        for seq in 1..=rows {
            let xdr = blob_for(seq, blob);
            let r = row(seq);
            w.push(&LedgerRecord {
                row: &r,
                xdr: &xdr,
                xdr_sha256: Sha256::digest(&xdr).into(),
            })
            .unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn summary_matches_the_bytes_written() {
        let (summary, bytes) = write_file(10, 1000, settings("zstd"));
        assert_eq!(summary.rows, 10);
        assert_eq!(summary.byte_size, bytes.len() as u64);
        assert_eq!(summary.sha256, <[u8; 32]>::from(Sha256::digest(&bytes)));
        assert_eq!(&bytes[..4], b"PAR1");
    }

    #[test]
    fn same_rows_give_identical_bytes() {
        assert_eq!(
            write_file(50, 3000, settings("zstd")).1,
            write_file(50, 3000, settings("zstd")).1
        );
    }

    #[test]
    fn row_groups_are_bounded_by_bytes() {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let (_, bytes) = write_file(600, 20_000, settings("none"));
        let reader = SerializedFileReader::new(bytes::Bytes::from(bytes)).unwrap();
        let meta = reader.metadata();
        // 12 MB of rows with a 1 MiB limit: a dozen row groups, each closed by the ledger that
        // took it over the limit (plus the small columns of up to a batch of rows).
        assert!(
            meta.num_row_groups() >= 10,
            "{} row groups",
            meta.num_row_groups()
        );
        let rows: i64 = meta.row_groups().iter().map(|g| g.num_rows()).sum();
        assert_eq!(rows, 600);
        for g in meta.row_groups() {
            let bound = (1024 * 1024 + 20_004 + BATCH_ROWS * 400) as i64;
            assert!(
                g.compressed_size() < bound,
                "row group of {} bytes",
                g.compressed_size()
            );
        }
    }

    /// The hand-encoded xdr_bytes pages (and the rest) read back with the parquet crate's own
    /// reader and codecs, for every codec, across several pages and row groups.
    #[test]
    fn every_codec_reads_back_with_the_parquet_reader() {
        use arrow_array::{Array, BinaryArray, UInt64Array};
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        let (rows, blob) = (120u32, 30_000);
        for name in ["zstd", "snappy", "lz4", "gzip", "none"] {
            let (summary, bytes) = write_file(rows, blob, settings(name));
            let file = bytes::Bytes::from(bytes);
            let reader = ParquetRecordBatchReaderBuilder::try_new(file.clone())
                .unwrap()
                .build()
                .unwrap();
            let mut seq = 0u32;
            for batch in reader {
                let batch = batch.unwrap();
                let xdr = batch
                    .column_by_name("xdr_bytes")
                    .unwrap()
                    .as_any()
                    .downcast_ref::<BinaryArray>()
                    .unwrap()
                    .clone();
                let seqs = batch
                    .column_by_name("ledger_sequence")
                    .unwrap()
                    .as_any()
                    .downcast_ref::<UInt64Array>()
                    .unwrap()
                    .clone();
                for i in 0..batch.num_rows() {
                    seq += 1;
                    assert_eq!(seqs.value(i), u64::from(seq), "{name}");
                    assert_eq!(
                        xdr.value(i),
                        blob_for(seq, blob).as_slice(),
                        "{name} row {seq}"
                    );
                }
            }
            assert_eq!(seq, rows, "{name}");
            assert_eq!(summary.rows, u64::from(rows));
            use parquet::file::reader::{FileReader, SerializedFileReader};
            let meta = SerializedFileReader::new(file).unwrap().metadata().clone();
            if name == "none" {
                // 3.6 MB with a 1 MiB limit; compressed, the pattern fits in one group.
                assert!(
                    meta.num_row_groups() >= 3,
                    "{} row groups",
                    meta.num_row_groups()
                );
            }
            let column = meta.row_group(0).column(XDR_COLUMN);
            assert_eq!(column.column_path().string(), "xdr_bytes");
            assert_eq!(
                column.compression(),
                codec(name.parse().unwrap(), None).unwrap()
            );
        }
    }

    #[test]
    fn every_codec_is_accepted_and_unknown_is_not() {
        for name in ["zstd", "snappy", "lz4", "gzip", "none"] {
            assert!(codec(name.parse().unwrap(), None).is_ok(), "{name}");
        }
        assert!(codec(CodecName::Zstd, Some(99)).is_err());
        assert!("brotli-ish".parse::<CodecName>().is_err());
    }

    /// The plain layout is the original's format: its bytes must not change. These digests were
    /// computed with the writer as it was before the signed layout existed (same rows, same
    /// settings); any change of the plain layout's bytes fails here. (The footer's `created_by`
    /// names the package version: a version bump changes them, deliberately.)
    #[test]
    fn the_plain_layout_is_byte_identical_to_before() {
        for (name, golden) in GOLDEN_PLAIN {
            let (summary, _) = write_file(50, 3000, settings(name));
            assert_eq!(hex::encode(summary.sha256), golden, "{name}");
        }
    }

    const GOLDEN_PLAIN: [(&str, &str); 3] = [
        (
            "zstd",
            "2a8c8c048503087819c219c6746ae4fd07a501f801d574fd892a9b0c467b4918",
        ),
        (
            "snappy",
            "71ee604a3f0c564b2083df77035f830153301e26931a3f05767dc82916251254",
        ),
        (
            "none",
            "e093758edef17a73634f3d76a630d5dfda56cff742adf15a78b38c8a7dfa5db5",
        ),
    ];

    /// The Delta table's layout: `ledger_sequence` plain INT64 and `protocol_version` plain INT32
    /// (no unsigned annotation), read back as int64/int32, with signed min/max statistics; every
    /// other column exactly as in the plain layout.
    #[test]
    fn the_signed_layout_writes_plain_int64_and_int32_with_signed_statistics() {
        use arrow_array::{Array, Int32Array, Int64Array};
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        use parquet::basic::{LogicalType, Type as PhysicalType};
        use parquet::file::statistics::Statistics;
        let signed = WriterSettings {
            integers: IntegerTypes::Signed,
            ..settings("zstd")
        };
        let (_, bytes) = write_file(300, 500, signed);
        let file = bytes::Bytes::from(bytes);
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
        let meta = builder.metadata().clone();
        let descr = meta.file_metadata().schema_descr();
        for (index, physical) in [(0, PhysicalType::INT64), (4, PhysicalType::INT32)] {
            let column = descr.column(index);
            assert_eq!(column.physical_type(), physical, "{}", column.name());
            assert!(
                !matches!(
                    column.logical_type_ref(),
                    Some(LogicalType::Integer(int)) if !int.is_signed
                ),
                "{} must not be annotated unsigned",
                column.name()
            );
        }
        let stats = meta.row_group(0).column(0).statistics().unwrap();
        let Statistics::Int64(s) = stats else {
            panic!("ledger_sequence statistics {stats:?}")
        };
        assert_eq!((*s.min_opt().unwrap(), *s.max_opt().unwrap()), (1, 300));
        let schema = builder.schema().clone();
        assert_eq!(IntegerTypes::of_schema(&schema), Some(IntegerTypes::Signed));
        let mut seq = 0i64;
        for batch in builder.build().unwrap() {
            let batch = batch.unwrap();
            let seqs = batch
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap();
            let protocols = batch
                .column(4)
                .as_any()
                .downcast_ref::<Int32Array>()
                .unwrap();
            for i in 0..batch.num_rows() {
                seq += 1;
                assert_eq!(seqs.value(i), seq);
                assert_eq!(protocols.value(i), 21);
            }
        }
        assert_eq!(seq, 300);
        // The other 15 columns are the plain layout's.
        let plain = ledgers_lcm_raw_schema_with(IntegerTypes::Unsigned);
        for i in (0..17).filter(|i| *i != 0 && *i != 4) {
            assert_eq!(schema.field(i), plain.field(i));
        }
    }

    #[test]
    fn a_protocol_version_beyond_a_signed_int32_is_refused_in_the_signed_layout() {
        let mut w = PartitionWriter::new(
            Vec::new(),
            WriterSettings {
                integers: IntegerTypes::Signed,
                ..settings("none")
            },
        )
        .unwrap();
        let mut r = row(7);
        r.protocol_version = u32::MAX;
        let err = w
            .push(&LedgerRecord {
                row: &r,
                xdr: b"x",
                xdr_sha256: [0; 32],
            })
            .unwrap_err();
        assert!(
            err.to_string().contains("ledger 7: protocol_version"),
            "{err}"
        );
    }
}
