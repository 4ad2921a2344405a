//! Progress: counters shared by builders and the sequencer, the runbook's log line
//! (`[copier] progress: N ledgers, P partitions, X ledgers/sec`) and, on a terminal, a progress
//! bar in its place (log lines are written around it: see [`crate::logging`]).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Progress {
    started: Instant,
    encoded_ledgers: AtomicU64,
    encoded_xdr_bytes: AtomicU64,
    committed_ledgers: AtomicU64,
    committed_partitions: AtomicU64,
    skipped_partitions: AtomicU64,
    bar: Option<ProgressBar>,
}

/// A snapshot for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProgressSnapshot {
    pub committed_ledgers: u64,
    pub committed_partitions: u64,
    pub skipped_partitions: u64,
    pub encoded_ledgers: u64,
    pub encoded_xdr_bytes: u64,
    pub elapsed: Duration,
}

impl ProgressSnapshot {
    pub fn ledgers_per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.committed_ledgers as f64 / secs
        } else {
            0.0
        }
    }
}

/// The runbook's progress line.
pub fn progress_line(s: &ProgressSnapshot) -> String {
    format!(
        "[copier] progress: {} ledgers, {} partitions, {:.2} ledgers/sec",
        s.committed_ledgers,
        s.committed_partitions,
        s.ledgers_per_second()
    )
}

impl Progress {
    /// `total_ledgers` is known for bounded runs; a bar is shown only when stderr is a terminal.
    pub fn new(total_ledgers: Option<u64>, show_bar: bool) -> Self {
        let bar = (show_bar && std::io::stderr().is_terminal()).then(|| {
            let bar = match total_ledgers {
                Some(total) => ProgressBar::new(total),
                None => ProgressBar::new_spinner(),
            };
            bar.set_draw_target(ProgressDrawTarget::stderr_with_hz(4));
            let template = if total_ledgers.is_some() {
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} ledgers ({per_sec}, eta {eta}) {msg}"
            } else {
                "{spinner} [{elapsed_precise}] {pos} ledgers ({per_sec}) {msg}"
            };
            bar.set_style(ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()));
            bar.enable_steady_tick(Duration::from_millis(250));
            // Log lines are written around the bar from now on.
            crate::logging::attach_bar(&bar);
            bar
        });
        Self {
            started: Instant::now(),
            encoded_ledgers: AtomicU64::new(0),
            encoded_xdr_bytes: AtomicU64::new(0),
            committed_ledgers: AtomicU64::new(0),
            committed_partitions: AtomicU64::new(0),
            skipped_partitions: AtomicU64::new(0),
            bar,
        }
    }

    pub fn ledger_encoded(&self, xdr_bytes: u64) {
        self.encoded_ledgers.fetch_add(1, Ordering::Relaxed);
        self.encoded_xdr_bytes
            .fetch_add(xdr_bytes, Ordering::Relaxed);
    }

    pub fn partition_committed(&self, ledgers: u64, adopted: bool) {
        self.committed_ledgers.fetch_add(ledgers, Ordering::Relaxed);
        self.committed_partitions.fetch_add(1, Ordering::Relaxed);
        if adopted {
            self.skipped_partitions.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(bar) = &self.bar {
            bar.inc(ledgers);
        }
    }

    pub fn snapshot(&self) -> ProgressSnapshot {
        ProgressSnapshot {
            committed_ledgers: self.committed_ledgers.load(Ordering::Relaxed),
            committed_partitions: self.committed_partitions.load(Ordering::Relaxed),
            skipped_partitions: self.skipped_partitions.load(Ordering::Relaxed),
            encoded_ledgers: self.encoded_ledgers.load(Ordering::Relaxed),
            encoded_xdr_bytes: self.encoded_xdr_bytes.load(Ordering::Relaxed),
            elapsed: self.started.elapsed(),
        }
    }

    /// Logs the runbook's progress line with structured fields, unless the log goes to the
    /// terminal that shows the bar (progress is shown once: there the bar, in a log the line).
    pub fn log(&self) {
        if self.bar.is_some() && std::io::stdout().is_terminal() {
            return;
        }
        let s = self.snapshot();
        tracing::info!(
            target: "copier",
            ledgers = s.committed_ledgers,
            partitions = s.committed_partitions,
            skipped = s.skipped_partitions,
            rate_per_sec = format!("{:.2}", s.ledgers_per_second()),
            "{}",
            progress_line(&s)
        );
    }

    /// Clears the bar from the screen (also done on drop, e.g. when a run fails).
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            crate::logging::detach_bar();
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_line_has_the_runbook_format() {
        let s = ProgressSnapshot {
            committed_ledgers: 150_000,
            committed_partitions: 15,
            skipped_partitions: 0,
            encoded_ledgers: 150_000,
            encoded_xdr_bytes: 0,
            elapsed: Duration::from_secs(2861),
        };
        assert_eq!(
            progress_line(&s),
            "[copier] progress: 150000 ledgers, 15 partitions, 52.43 ledgers/sec"
        );
    }
}
