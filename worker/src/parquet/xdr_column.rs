//! The `xdr_bytes` column chunk of one row group, encoded by hand.
//!
//! Why not the Arrow writer: for this column it copies every ledger four more times (into an
//! Arrow builder, into the encoder's page buffer as it doubles, into a levels+values buffer, and
//! once more when the compressor's output buffer is grown with `realloc`), which cost more than
//! a tenth of the copier's CPU. Here each ledger is copied once, into a reused page buffer that
//! already holds the PLAIN encoding (`u32` little-endian length, then the bytes), and the page is
//! compressed straight from it with the file's codec.
//!
//! The chunk is ordinary Parquet: v1 data pages of whole rows (about `PAGE_BYTES` each, like the
//! Arrow writer's default), no statistics (as configured for this column before), an offset
//! index, and encodings `PLAIN` + `RLE`; it is spliced into the row group with
//! [`SerializedRowGroupWriter::append_column`].

use bytes::Bytes;
use parquet::basic::{Compression, Encoding, EncodingMask, PageType};
use parquet::column::page::{CompressedPage, Page, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::ParquetError;
use parquet::file::metadata::{ColumnChunkMetaData, OffsetIndexBuilder, PageEncodingStats};
use parquet::file::writer::{SerializedPageWriter, SerializedRowGroupWriter, TrackedWrite};
use parquet::schema::types::ColumnDescPtr;
use std::io::Write;

use super::page_codec::PageCodec;

/// Target size of one uncompressed data page (the Arrow writer's default page size). Pages end
/// on a row boundary, so a page holds at least one ledger.
pub(crate) const PAGE_BYTES: usize = 1024 * 1024;

/// Builds the `xdr_bytes` column chunk of the current row group.
pub(crate) struct XdrColumnChunk {
    descr: ColumnDescPtr,
    compression: Compression,
    codec: PageCodec,
    /// PLAIN-encoded values of the open page; reused from page to page.
    page: Vec<u8>,
    page_rows: usize,
    /// Finished pages (headers and data) of this row group.
    chunk: TrackedWrite<Vec<u8>>,
    rows: i64,
    uncompressed_bytes: i64,
    pages: i32,
    offsets: OffsetIndexBuilder,
}

impl XdrColumnChunk {
    pub(crate) fn new(
        descr: ColumnDescPtr,
        compression: Compression,
    ) -> Result<Self, ParquetError> {
        Ok(Self {
            descr,
            compression,
            codec: PageCodec::new(compression)?,
            page: Vec::with_capacity(PAGE_BYTES + 1024 * 1024),
            page_rows: 0,
            chunk: TrackedWrite::new(Vec::new()),
            rows: 0,
            uncompressed_bytes: 0,
            pages: 0,
            offsets: OffsetIndexBuilder::new(),
        })
    }

    /// Appends one ledger's XDR as the next row.
    pub(crate) fn push(&mut self, xdr: &[u8]) -> Result<(), ParquetError> {
        let len = u32::try_from(xdr.len())
            .map_err(|_| ParquetError::General(format!("a {} byte value", xdr.len())))?;
        self.page.extend_from_slice(&len.to_le_bytes());
        self.page.extend_from_slice(xdr);
        self.page_rows += 1;
        if self.page.len() >= PAGE_BYTES {
            self.flush_page()?;
        }
        Ok(())
    }

    /// Rows pushed into this row group so far.
    pub(crate) fn rows(&self) -> i64 {
        self.rows + self.page_rows as i64
    }

    /// Encoded size so far: finished pages plus the open page (uncompressed).
    pub(crate) fn encoded_bytes(&self) -> usize {
        self.chunk.bytes_written() + self.page.len()
    }

    fn flush_page(&mut self) -> Result<(), ParquetError> {
        if self.page_rows == 0 {
            return Ok(());
        }
        let uncompressed = self.page.len();
        let data = match self.codec.compress(&self.page)? {
            Some(compressed) => Bytes::from(compressed),
            None => Bytes::copy_from_slice(&self.page),
        };
        let page = Page::DataPage {
            buf: data,
            num_values: self.page_rows as u32,
            encoding: Encoding::PLAIN,
            def_level_encoding: Encoding::RLE,
            rep_level_encoding: Encoding::RLE,
            statistics: None,
        };
        let spec = SerializedPageWriter::new(&mut self.chunk)
            .write_page(CompressedPage::new(page, uncompressed))?;
        let size = i32::try_from(spec.compressed_size)
            .map_err(|_| ParquetError::General("a data page over 2 GiB".into()))?;
        self.offsets
            .append_offset_and_size(spec.offset as i64, size);
        self.offsets.append_row_count(self.page_rows as i64);
        self.uncompressed_bytes += spec.uncompressed_size as i64;
        self.rows += self.page_rows as i64;
        self.pages += 1;
        self.page.clear();
        self.page_rows = 0;
        Ok(())
    }

    /// Closes the chunk and splices it into `row_group` (as its next column); leaves `self`
    /// empty for the next row group.
    pub(crate) fn append_to<W: Write + Send>(
        &mut self,
        row_group: &mut SerializedRowGroupWriter<'_, W>,
    ) -> Result<(), ParquetError> {
        self.flush_page()?;
        let chunk = std::mem::replace(&mut self.chunk, TrackedWrite::new(Vec::new()));
        let compressed = chunk.bytes_written() as i64;
        let bytes = Bytes::from(chunk.into_inner()?);
        let metadata = ColumnChunkMetaData::builder(self.descr.clone())
            .set_compression(self.compression)
            .set_encodings_mask(EncodingMask::new_from_encodings(
                [Encoding::PLAIN, Encoding::RLE].iter(),
            ))
            .set_page_encoding_stats(vec![PageEncodingStats {
                page_type: PageType::DATA_PAGE,
                encoding: Encoding::PLAIN,
                count: self.pages,
            }])
            .set_total_compressed_size(compressed)
            .set_total_uncompressed_size(self.uncompressed_bytes)
            .set_num_values(self.rows)
            .set_data_page_offset(0)
            .build()?;
        let close = ColumnCloseResult {
            bytes_written: compressed as u64,
            rows_written: self.rows as u64,
            metadata,
            bloom_filter: None,
            column_index: None,
            offset_index: Some(std::mem::take(&mut self.offsets).build()),
        };
        self.rows = 0;
        self.uncompressed_bytes = 0;
        self.pages = 0;
        row_group.append_column(&bytes, close)
    }
}
