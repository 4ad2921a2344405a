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

/// The one spelling of an instant Bronze writes wherever a backfill's `ingested_at` goes (status,
/// Job env and annotation, manifests, checkpoint): RFC 3339 in UTC with milliseconds, e.g.
/// `2026-12-07T21:17:45.000Z`. `None` when `text` is not RFC 3339. Two spellings of one instant
/// (`...45Z`, `...45.000Z`, `...46+01:00`) give the same text.
pub fn canonical_rfc3339(text: &str) -> Option<String> {
    rfc3339_to_millis(text).map(millis_to_rfc3339)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_round_trip() {
        let text = "2025-01-15T10:00:00.123Z";
        assert_eq!(millis_to_rfc3339(rfc3339_to_millis(text).unwrap()), text);
    }

    #[test]
    fn one_instant_has_one_canonical_spelling() {
        let canonical = "2026-12-07T21:17:45.000Z";
        for spelling in [
            "2026-12-07T21:17:45Z",
            "2026-12-07T21:17:45.000Z",
            "2026-12-07T21:17:45.0004Z",
            "2026-12-07T22:17:45+01:00",
            "2026-12-07T21:17:45.000+00:00",
        ] {
            assert_eq!(
                canonical_rfc3339(spelling).as_deref(),
                Some(canonical),
                "{spelling}"
            );
        }
        assert_ne!(
            canonical_rfc3339("2026-12-07T21:17:46Z").as_deref(),
            Some(canonical)
        );
        assert_eq!(canonical_rfc3339("yesterday"), None);
    }
}
