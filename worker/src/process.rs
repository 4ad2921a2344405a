//! Facts about this process.

/// Peak resident memory (VmHWM) in MiB, where the platform reports it.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// CPU time (user + system) this process has used so far, in seconds, where the platform
/// reports it. Unlike wall-clock time it hardly moves when other processes share the core, so
/// the benchmark compares CPU seconds as well as rates.
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    cpu_seconds_from_stat(&stat)
}

/// Parses utime + stime out of a `/proc/<pid>/stat` line. Linux reports them in USER_HZ ticks,
/// which the kernel ABI fixes at 100 per second.
fn cpu_seconds_from_stat(stat: &str) -> Option<f64> {
    const USER_HZ: f64 = 100.0;
    // The command name (field 2) is in parentheses and may contain spaces: skip past it.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of the line are the 12th and 13th after the name.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

#[cfg(test)]
mod tests {
    #[test]
    fn cpu_time_is_read_past_a_command_name_with_spaces() {
        let stat = "42 (a b) R 1 42 42 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 1 0 1 1 1";
        assert_eq!(super::cpu_seconds_from_stat(stat), Some(3.0));
    }

    #[test]
    fn cpu_time_grows_with_work() {
        let before = super::cpu_seconds().expect("linux reports it");
        let mut x = 0u64;
        let started = std::time::Instant::now();
        while started.elapsed() < std::time::Duration::from_millis(120) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let after = super::cpu_seconds().expect("linux reports it");
        assert!(after > before, "{before} -> {after}");
    }

    #[test]
    fn peak_rss_is_reported_on_linux() {
        let rss = super::peak_rss_mib().expect("linux reports VmHWM");
        assert!(rss > 0.5, "{rss}");
    }
}
