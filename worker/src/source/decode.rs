//! zstd decompression of one batch object.
//!
//! Galexie writes frames without a content-size field, so the frame is streamed into a reusable
//! buffer instead of being decompressed in one call with a known size.

use std::io::Read;

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
    let decoder =
        zstd::stream::read::Decoder::with_buffer(compressed).map_err(DecodeError::Zstd)?;
    let read = decoder
        .take(MAX_DECOMPRESSED_BYTES + 1)
        .read_to_end(out)
        .map_err(DecodeError::Zstd)?;
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
