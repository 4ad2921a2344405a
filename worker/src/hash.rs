//! Hashes as text: the one place for the hex and `sha256:<hex>` forms used by rows, manifests,
//! the checkpoint, PAS events and the catalog.

/// `sha256:<hex>`, the checksum format of manifests, PAS events and the catalog.
pub fn checksum_string(sha256: &[u8; 32]) -> String {
    format!("sha256:{}", hex::encode(sha256))
}

/// A 32-byte hash from hex (either case); `None` unless exactly 64 hex digits.
pub fn parse_hash(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

/// 64 hex digits (either case).
pub fn is_hex_hash(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether two hex hashes are the same hash: hex compares in either case (manifests of the
/// original copier, PAS events, rows and the checkpoint need not agree on case).
pub fn same_hash(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Lowercase hex of a 32-byte value without a heap allocation per call.
pub fn hex32(bytes: &[u8; 32]) -> Hex32 {
    let mut out = [0u8; 64];
    hex::encode_to_slice(bytes, &mut out).expect("64 bytes hold 32 bytes of hex");
    Hex32(out)
}

pub struct Hex32([u8; 64]);

impl Hex32 {
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("hex is ASCII")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_forms_round_trip() {
        let bytes = [0xab; 32];
        let text = hex32(&bytes).as_str().to_string();
        assert_eq!(text, "ab".repeat(32));
        assert_eq!(parse_hash(&text.to_ascii_uppercase()), Some(bytes));
        assert!(is_hex_hash(&text) && !is_hex_hash(&text[1..]) && parse_hash("ab").is_none());
        assert_eq!(checksum_string(&bytes), format!("sha256:{text}"));
    }
}
