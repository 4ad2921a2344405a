//! Logging to stdout (text or JSON), like the original; `RUST_LOG` refines the configured level.
//!
//! On a terminal the progress bar (stderr) and the log (stdout) share the screen: each log line
//! is written with the bar [suspended](indicatif::ProgressBar::suspend) (cleared, then redrawn
//! below the line), so no line lands on the bar's row and no stale bar is left behind.

use std::io::Write;
use std::sync::Mutex;

use indicatif::ProgressBar;
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogLevel};
use tracing_subscriber::fmt::format::FmtSpan;

/// The bar on screen, if any: log lines are written around it.
static BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

fn bar() -> std::sync::MutexGuard<'static, Option<ProgressBar>> {
    BAR.lock().unwrap_or_else(|p| p.into_inner())
}

/// Log lines are written around `bar` until [`detach_bar`].
pub fn attach_bar(bar_to_show: &ProgressBar) {
    *bar() = Some(bar_to_show.clone());
}

/// The bar is gone (finished or cleared): log lines are written directly again.
pub fn detach_bar() {
    *bar() = None;
}

/// Collects one formatted event (the formatter writes it in pieces) and writes it whole to
/// stdout when dropped, with the bar suspended if one is shown.
#[derive(Default)]
pub struct LogLine(Vec<u8>);

impl Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let write = || {
            let mut out = std::io::stdout().lock();
            // Nowhere to report a failed log write.
            let _ = out.write_all(&self.0).and_then(|()| out.flush());
        };
        let shown = bar().clone();
        match shown {
            Some(bar) if !bar.is_finished() => bar.suspend(write),
            _ => write(),
        }
    }
}

/// Installs the global subscriber. Safe to call once per process.
pub fn init(format: LogFormat, level: LogLevel) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level.as_str()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(LogLine::default)
        .with_span_events(FmtSpan::NONE);
    let result = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
    let _ = result;
}
