//! zstd decompression of one batch object.
//!
//! Galexie writes frames without a content-size field, so the frame is streamed into a reusable
//! buffer instead of being decompressed in one call with a known size. The decompression context
//! is reused too (one per thread): creating one costs about as much as decompressing a small
//! early-history ledger.

use std::cell::RefCell;
use std::io::Read;

use zstd::zstd_safe::{DCtx, ResetDirective};

thread_local! {
    static CONTEXT: RefCell<DCtx<'static>> = RefCell::new(DCtx::create());
}

/// A batch larger than this after decompression is rejected rather than exhausting memory.
pub const MAX_DECOMPRESSED_BYTES: u64 = 2 * 1024 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("corrupt zstd data: {0}")]
    Zstd(std::io::Error),
    #[error("decompresses to more than {MAX_DECOMPRESSED_BYTES} bytes")]
    TooLarge,
    #[error("object is empty")]
    Empty,
}

/// Decompresses `compressed` into `out` (cleared first; its capacity is reused).
pub fn decompress_batch(compressed: &[u8], out: &mut Vec<u8>) -> Result<(), DecodeError> {
    out.clear();
    if compressed.is_empty() {
        return Err(DecodeError::Empty);
    }
    let read = CONTEXT.with_borrow_mut(|context| {
        // A frame left half-read by an earlier error must not leak into this one.
        context.reset(ResetDirective::SessionOnly).map_err(|code| {
            DecodeError::Zstd(std::io::Error::other(zstd::zstd_safe::get_error_name(code)))
        })?;
        zstd::stream::read::Decoder::with_context(compressed, context)
            .take(MAX_DECOMPRESSED_BYTES + 1)
            .read_to_end(out)
            .map_err(DecodeError::Zstd)
    })?;
    if read as u64 > MAX_DECOMPRESSED_BYTES {
        return Err(DecodeError::TooLarge);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_reuses_the_buffer() {
        let data: Vec<u8> = (0..100_000u32).flat_map(|i| i.to_be_bytes()).collect();
        let compressed = zstd::encode_all(&data[..], 3).unwrap();
        let mut out = Vec::new();
        decompress_batch(&compressed, &mut out).unwrap();
        assert_eq!(out, data);
        decompress_batch(&compressed, &mut out).unwrap();
        assert_eq!(out.len(), data.len());
    }

    #[test]
    fn a_frame_after_a_corrupt_one_decodes_on_the_same_thread() {
        let data = vec![42u8; 50_000];
        let compressed = zstd::encode_all(&data[..], 3).unwrap();
        let mut out = Vec::new();
        assert!(decompress_batch(&compressed[..compressed.len() / 2], &mut out).is_err());
        decompress_batch(&compressed, &mut out).unwrap();
        assert_eq!(out, data);
        // Concatenated frames still decode as one stream, as before.
        let mut twice = compressed.clone();
        twice.extend_from_slice(&compressed);
        decompress_batch(&twice, &mut out).unwrap();
        assert_eq!(out.len(), 2 * data.len());
    }

    #[test]
    fn corrupt_and_truncated_frames_are_errors() {
        let compressed = zstd::encode_all(&[7u8; 10_000][..], 3).unwrap();
        let mut out = Vec::new();
        assert!(matches!(
            decompress_batch(&compressed[..compressed.len() - 4], &mut out),
            Err(DecodeError::Zstd(_))
        ));
        assert!(matches!(
            decompress_batch(b"not zstd at all", &mut out),
            Err(DecodeError::Zstd(_))
        ));
        assert!(matches!(
            decompress_batch(b"", &mut out),
            Err(DecodeError::Empty)
        ));
    }
}
