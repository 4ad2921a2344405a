//! What `verify` found: one line per finding, and a summary line.

use std::fmt;

use crate::partition::LedgerRange;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Damage, loss or inconsistency: `verify` fails.
    Problem,
    /// Worth knowing, not damage (an uncommitted leftover, a lagging heads file).
    Warning,
}

/// One finding: which partition, which object, which check, expected vs found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    pub range: Option<LedgerRange>,
    /// Object key or file path.
    pub object: String,
    /// Dotted name of the check (`parquet.sha256`, `pas.link`, ...).
    pub check: &'static str,
    pub detail: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = match self.severity {
            Severity::Problem => "PROBLEM",
            Severity::Warning => "WARNING",
        };
        let range = self
            .range
            .map_or_else(|| "-".to_string(), |r| r.to_string());
        write!(
            f,
            "{label} partition={range} check={} object={}: {}",
            self.check, self.object, self.detail
        )
    }
}

/// All findings of a run, plus what was covered.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub findings: Vec<Finding>,
    /// Committed partitions examined (manifest readable).
    pub partitions: usize,
    /// Ledgers those partitions cover.
    pub ledgers: u64,
}

impl Report {
    pub fn problem(
        &mut self,
        range: Option<LedgerRange>,
        object: impl Into<String>,
        check: &'static str,
        detail: impl Into<String>,
    ) {
        self.push(Severity::Problem, range, object, check, detail);
    }

    pub fn warning(
        &mut self,
        range: Option<LedgerRange>,
        object: impl Into<String>,
        check: &'static str,
        detail: impl Into<String>,
    ) {
        self.push(Severity::Warning, range, object, check, detail);
    }

    fn push(
        &mut self,
        severity: Severity,
        range: Option<LedgerRange>,
        object: impl Into<String>,
        check: &'static str,
        detail: impl Into<String>,
    ) {
        self.findings.push(Finding {
            severity,
            range,
            object: object.into(),
            check,
            detail: detail.into(),
        });
    }

    pub fn problems(&self) -> usize {
        self.count(Severity::Problem)
    }

    pub fn warnings(&self) -> usize {
        self.count(Severity::Warning)
    }

    fn count(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == severity)
            .count()
    }

    pub fn is_clean(&self) -> bool {
        self.problems() == 0
    }

    /// Findings in ledger order (those without a partition last), problems before warnings.
    pub fn sorted(&self) -> Vec<&Finding> {
        let mut all: Vec<&Finding> = self.findings.iter().collect();
        all.sort_by_key(|f| {
            (
                f.range.is_none(),
                f.range.map(|r| (r.start, r.end)),
                f.severity,
            )
        });
        all
    }

    /// `verified N partitions, M ledgers: OK` or `...: K problems`.
    pub fn summary(&self) -> String {
        let head = format!(
            "verified {} partition{}, {} ledger{}",
            self.partitions,
            plural(self.partitions as u64),
            self.ledgers,
            plural(self.ledgers)
        );
        let warnings = match self.warnings() {
            0 => String::new(),
            n => format!(" ({n} warning{})", plural(n as u64)),
        };
        match self.problems() {
            0 => format!("{head}: OK{warnings}"),
            n => format!("{head}: {n} problem{}{warnings}", plural(n as u64)),
        }
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_summary() {
        let mut r = Report {
            partitions: 3,
            ledgers: 300,
            ..Default::default()
        };
        assert_eq!(r.summary(), "verified 3 partitions, 300 ledgers: OK");
        r.warning(None, "x", "grid.off_grid", "w");
        r.problem(
            Some(LedgerRange::new(2, 101)),
            "k",
            "parquet.sha256",
            "expected a, found b",
        );
        assert_eq!(
            r.summary(),
            "verified 3 partitions, 300 ledgers: 1 problem (1 warning)"
        );
        assert_eq!(
            r.sorted()[0].to_string(),
            "PROBLEM partition=2-101 check=parquet.sha256 object=k: expected a, found b"
        );
    }
}
