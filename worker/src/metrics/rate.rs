//! `ledgers_per_second` over a recent window, sampled on a timer: an average since the start
//! hides a stall (it stays high for hours), and a gauge set only on a commit freezes when
//! nothing is committed. This one falls to 0 one window after the last copied ledger.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

/// Samples of a monotonic total, and the rate over the last `window` (pure: the caller gives
/// the clock).
#[derive(Debug, Clone)]
pub struct RateWindow {
    window: Duration,
    samples: VecDeque<(Instant, u64)>,
}

impl RateWindow {
    pub fn new(window: Duration) -> Self {
        Self {
            window: window.max(Duration::from_millis(1)),
            samples: VecDeque::new(),
        }
    }

    /// Records `total` at `now`; the rate per second since the newest sample at least one
    /// window old (or since the oldest one, early in a run).
    pub fn observe(&mut self, now: Instant, total: u64) -> f64 {
        self.samples.push_back((now, total));
        while self
            .samples
            .get(1)
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) >= self.window)
        {
            self.samples.pop_front();
        }
        let (since, base) = self.samples[0];
        let span = now.saturating_duration_since(since).as_secs_f64();
        if span <= 0.0 {
            return 0.0;
        }
        total.saturating_sub(base) as f64 / span
    }
}

/// The background sampler of the gauge; it stops when dropped.
#[derive(Debug)]
pub struct RateTracker {
    task: JoinHandle<()>,
}

impl Drop for RateTracker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RateTracker {
    /// Starts sampling `ledgers_processed_total` into `ledgers_per_second` several times per
    /// window (at most once a second). Must run inside a Tokio runtime.
    pub fn start(window: Duration) -> RateTracker {
        let tick = (window / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
        let task = tokio::spawn(async move {
            let mut rate = RateWindow::new(window);
            let mut timer = tokio::time::interval(tick);
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                timer.tick().await;
                super::set_ledgers_per_second(
                    rate.observe(Instant::now(), super::ledgers_copied()),
                );
            }
        });
        RateTracker { task }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_covers_the_last_window_and_falls_to_zero_when_idle() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut r = RateWindow::new(Duration::from_secs(10));
        assert_eq!(r.observe(at(0), 0), 0.0);
        // Early in the run: since the first sample.
        assert_eq!(r.observe(at(5), 500), 100.0);
        assert_eq!(r.observe(at(10), 1000), 100.0);
        // Copying slows down: only the last 10 s count, not the average since the start.
        assert_eq!(r.observe(at(15), 1050), 55.0);
        assert_eq!(r.observe(at(20), 1100), 10.0);
        // Nothing copied for a whole window: 0, and it stays there.
        assert_eq!(r.observe(at(25), 1100), 5.0);
        assert_eq!(r.observe(at(30), 1100), 0.0);
        assert_eq!(r.observe(at(300), 1100), 0.0);
        // Copying again (measured since the last sample a window old: the timer ticks often).
        assert!(r.observe(at(305), 1600) > 0.0);
    }
}
