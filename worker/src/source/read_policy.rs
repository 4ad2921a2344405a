//! How the source survives a cloud store's bad moments, as pure logic: which failures are worth
//! another attempt, how long to wait before it, what to call the failure in logs and metrics, and
//! when a slow GET gets a second, hedged one.
//!
//! The copier reads objects in order through a bounded read-ahead, so one object that takes long
//! holds up everything behind it. Waits are therefore short (a first retry after about 50 ms,
//! not the seconds a lone request could afford), there are many of them (a 5% error rate must
//! not fail a 10,000-object partition), and a GET that takes far longer than GETs usually do is
//! raced by a second one rather than cut by a timeout: a stalled connection loses the race, a
//! legitimately slow large object is never killed (the first GET keeps going).

use std::time::Duration;

/// Attempts per source request at least (`perf.retry_attempts` may ask for more).
pub const MIN_ATTEMPTS: u32 = 10;
/// The first wait before retrying a source request (`perf.retry_backoff_ms` if shorter); doubled
/// per attempt up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(50);
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A GET still unanswered after this many times the usual GET time gets a hedged second GET.
pub const HEDGE_FACTOR: u32 = 4;
/// Bounds on when to hedge: never sooner than this (a busy store's normal jitter) ...
pub const MIN_HEDGE_AFTER: Duration = Duration::from_millis(200);
/// ... and never later than this.
pub const MAX_HEDGE_AFTER: Duration = Duration::from_secs(5);
/// The usual GET time assumed before any GET finished.
const INITIAL_GET_TIME: Duration = Duration::from_millis(250);

/// Why a source request failed, for `source_read_failures_total{cause}` and the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureCause {
    /// `503 SlowDown` / `429`: the store asks for fewer requests.
    Throttled,
    /// Any other 5xx (`500 InternalError`, ...).
    ServerError,
    /// No answer in time.
    Timeout,
    /// The connection failed or was reset, also mid-body.
    Connection,
    /// Anything else object_store reports as generic (retried all the same).
    Other,
}

impl FailureCause {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureCause::Throttled => "throttled",
            FailureCause::ServerError => "server_error",
            FailureCause::Timeout => "timeout",
            FailureCause::Connection => "connection",
            FailureCause::Other => "other",
        }
    }
}

/// Whether another attempt can help: network and server failures can, a missing object or
/// refused credentials cannot.
pub fn is_transient(error: &object_store::Error) -> bool {
    matches!(error, object_store::Error::Generic { .. })
}

/// Classifies a failed request from object_store's error chain.
pub fn failure_cause(error: &object_store::Error) -> FailureCause {
    use object_store::client::{HttpError, HttpErrorKind};
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    let mut text = String::new();
    while let Some(e) = current {
        if let Some(http) = e.downcast_ref::<HttpError>() {
            return match http.kind() {
                HttpErrorKind::Timeout => FailureCause::Timeout,
                HttpErrorKind::Connect | HttpErrorKind::Request | HttpErrorKind::Interrupted => {
                    FailureCause::Connection
                }
                HttpErrorKind::Decode | HttpErrorKind::Unknown => FailureCause::Other,
                // A future kind.
                #[allow(unreachable_patterns)]
                _ => FailureCause::Other,
            };
        }
        text.push_str(&e.to_string());
        text.push('\n');
        current = e.source();
    }
    // A status is only in the message (object_store's request error type is private).
    cause_from_message(&text)
}

fn cause_from_message(text: &str) -> FailureCause {
    let status = text.split("status code: ").nth(1).and_then(|rest| {
        rest.get(..3)
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
    });
    match status {
        Some("503" | "429") => FailureCause::Throttled,
        Some(s) if s.starts_with('5') => FailureCause::ServerError,
        _ if text.contains("SlowDown") => FailureCause::Throttled,
        _ if text.contains("InternalError") => FailureCause::ServerError,
        _ if text.contains("connection") || text.contains("body") => FailureCause::Connection,
        _ => FailureCause::Other,
    }
}

/// The first wait given `perf.retry_backoff_ms`: [`FIRST_BACKOFF`], or less if configured so.
pub fn first_backoff(retry_backoff_ms: u64) -> Duration {
    FIRST_BACKOFF.min(Duration::from_millis(retry_backoff_ms.max(1)))
}

/// The wait before attempt `attempt + 1` after `attempt` (from 1) failed: exponential from
/// `first` (see [`first_backoff`]), capped, with ±50% jitter from `noise` so that the requests
/// failed by one hiccup do not all come back at once.
pub fn backoff(attempt: u32, first: Duration, noise: u64) -> Duration {
    let base = first
        .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
        .min(MAX_BACKOFF);
    // noise → [0.5, 1.5)
    let factor = 0.5 + (mix(noise) >> 11) as f64 / (1u64 << 53) as f64;
    base.mul_f64(factor)
}

/// splitmix64's finaliser: cheap, well spread noise from a counter.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The usual GET time, as a moving average, and from it when to hedge.
#[derive(Debug)]
pub struct GetTimes {
    /// Moving average of successful GET times, in microseconds.
    average_us: std::sync::atomic::AtomicU64,
}

impl Default for GetTimes {
    fn default() -> Self {
        Self {
            average_us: std::sync::atomic::AtomicU64::new(INITIAL_GET_TIME.as_micros() as u64),
        }
    }
}

impl GetTimes {
    /// Records a successful GET's time (weight 1/16: a few slow ones do not move it much).
    pub fn record(&self, took: Duration) {
        use std::sync::atomic::Ordering;
        let took = took.as_micros().min(u128::from(u64::MAX)) as u64;
        let _ = self
            .average_us
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                Some(next_average(old, took))
            });
    }

    /// How long a GET may take before a hedged second one starts.
    pub fn hedge_after(&self) -> Duration {
        let average =
            Duration::from_micros(self.average_us.load(std::sync::atomic::Ordering::Relaxed));
        hedge_after(average)
    }
}

fn next_average(old: u64, sample: u64) -> u64 {
    if sample >= old {
        old + (sample - old) / 16
    } else {
        old - (old - sample) / 16
    }
}

/// [`HEDGE_FACTOR`] times the usual GET time, within [`MIN_HEDGE_AFTER`]..[`MAX_HEDGE_AFTER`].
pub fn hedge_after(usual: Duration) -> Duration {
    (usual * HEDGE_FACTOR).clamp(MIN_HEDGE_AFTER, MAX_HEDGE_AFTER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_starts_short_doubles_and_is_capped_with_jitter() {
        for noise in 0..200 {
            let first = backoff(1, FIRST_BACKOFF, noise);
            assert!(first >= Duration::from_millis(25) && first < Duration::from_millis(75));
            let third = backoff(3, FIRST_BACKOFF, noise);
            assert!(third >= Duration::from_millis(100) && third < Duration::from_millis(300));
            assert!(backoff(30, FIRST_BACKOFF, noise) < MAX_BACKOFF.mul_f64(1.5));
        }
        let spread: std::collections::BTreeSet<_> =
            (0..50).map(|n| backoff(1, FIRST_BACKOFF, n)).collect();
        assert!(spread.len() > 40, "jittered");
        // Ten attempts wait a bounded total: a stuck store fails the read within a minute.
        let total: Duration = (1..MIN_ATTEMPTS)
            .map(|a| backoff(a, FIRST_BACKOFF, 7))
            .sum();
        assert!(total < Duration::from_secs(60), "{total:?}");
        // A shorter perf.retry_backoff_ms shortens it; a longer one does not lengthen it.
        assert_eq!(first_backoff(10), Duration::from_millis(10));
        assert_eq!(first_backoff(1_000), FIRST_BACKOFF);
        assert!(backoff(1, first_backoff(10), 7) < Duration::from_millis(15));
    }

    #[test]
    fn statuses_and_messages_name_the_cause() {
        let text = "Generic S3 error: Error performing GET http://127.0.0.1:1/b/k in 1ms - Server returned non-2xx status code: 503 Service Unavailable: <Error><Code>SlowDown</Code></Error>";
        assert_eq!(cause_from_message(text), FailureCause::Throttled);
        assert_eq!(
            cause_from_message(
                "... status code: 500 Internal Server Error: <Code>InternalError</Code>"
            ),
            FailureCause::ServerError
        );
        assert_eq!(
            cause_from_message("... status code: 429 Too Many Requests"),
            FailureCause::Throttled
        );
        assert_eq!(
            cause_from_message("error decoding response body"),
            FailureCause::Connection
        );
        assert_eq!(cause_from_message("something odd"), FailureCause::Other);
    }

    #[test]
    fn only_generic_failures_are_retried() {
        let generic = object_store::Error::Generic {
            store: "S3",
            source: "boom".into(),
        };
        assert!(is_transient(&generic));
        let missing = object_store::Error::NotFound {
            path: "k".into(),
            source: "gone".into(),
        };
        assert!(!is_transient(&missing));
    }

    #[test]
    fn hedging_follows_the_usual_get_time_within_bounds() {
        assert_eq!(hedge_after(Duration::from_millis(50)), MIN_HEDGE_AFTER);
        assert_eq!(
            hedge_after(Duration::from_millis(100)),
            Duration::from_millis(400)
        );
        assert_eq!(hedge_after(Duration::from_secs(60)), MAX_HEDGE_AFTER);
        let times = GetTimes::default();
        assert_eq!(times.hedge_after(), Duration::from_secs(1));
        for _ in 0..200 {
            times.record(Duration::from_millis(60));
        }
        let learned = times.hedge_after();
        assert!(
            learned >= Duration::from_millis(240) && learned < Duration::from_millis(245),
            "{learned:?}"
        );
        // One stall barely moves it.
        times.record(Duration::from_secs(10));
        assert!(times.hedge_after() < Duration::from_secs(3));
    }
}
