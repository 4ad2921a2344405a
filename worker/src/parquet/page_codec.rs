//! Compression of the hand-encoded `xdr_bytes` pages (`xdr_column.rs`) with the file's codec,
//! producing exactly the formats the parquet crate's own codecs produce (and every Parquet
//! reader expects): a zstd frame, a raw snappy block, a gzip stream, an LZ4 block (LZ4_RAW).
//! The parquet crate only exports its codecs behind its `experimental` feature, which drags in
//! the whole of arrow; the same libraries are used here directly instead.

use std::io::Write;

use parquet::basic::Compression;
use parquet::errors::ParquetError;

pub(crate) enum PageCodec {
    Uncompressed,
    Zstd(zstd::bulk::Compressor<'static>),
    Snappy(Box<snap::raw::Encoder>),
    Gzip(flate2::Compression),
    Lz4Raw,
}

impl PageCodec {
    pub(crate) fn new(compression: Compression) -> Result<Self, ParquetError> {
        let unsupported = || ParquetError::NYI(format!("{compression} pages for xdr_bytes"));
        Ok(match compression {
            Compression::UNCOMPRESSED => Self::Uncompressed,
            Compression::ZSTD(level) => Self::Zstd(
                zstd::bulk::Compressor::new(level.compression_level())
                    .map_err(|e| ParquetError::External(Box::new(e)))?,
            ),
            Compression::SNAPPY => Self::Snappy(Box::new(snap::raw::Encoder::new())),
            Compression::GZIP(level) => {
                Self::Gzip(flate2::Compression::new(level.compression_level()))
            }
            Compression::LZ4_RAW => Self::Lz4Raw,
            _ => return Err(unsupported()),
        })
    }

    /// The page as stored: `page` compressed, or `None` when the codec is `UNCOMPRESSED`.
    pub(crate) fn compress(&mut self, page: &[u8]) -> Result<Option<Vec<u8>>, ParquetError> {
        let external = |e: Box<dyn std::error::Error + Send + Sync>| ParquetError::External(e);
        Ok(Some(match self {
            Self::Uncompressed => return Ok(None),
            Self::Zstd(compressor) => compressor.compress(page)?,
            Self::Snappy(encoder) => encoder
                .compress_vec(page)
                .map_err(|e| external(Box::new(e)))?,
            Self::Gzip(level) => {
                let mut encoder = flate2::write::GzEncoder::new(Vec::new(), *level);
                encoder.write_all(page)?;
                encoder.finish()?
            }
            Self::Lz4Raw => lz4_flex::block::compress(page),
        }))
    }
}
