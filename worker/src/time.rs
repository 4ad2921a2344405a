//! Timestamps in the formats the original wrote (RFC 3339 with nanoseconds, UTC).

use chrono::{DateTime, SecondsFormat, Utc};

pub fn now_rfc3339_nanos() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Milliseconds since the epoch of an RFC 3339 timestamp.
pub fn rfc3339_to_millis(text: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// An RFC 3339 timestamp (millisecond precision) for epoch milliseconds.
pub fn millis_to_rfc3339(millis: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(millis)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_round_trip() {
        let text = "2025-01-15T10:00:00.123Z";
        assert_eq!(millis_to_rfc3339(rfc3339_to_millis(text).unwrap()), text);
    }
}
