//! The copier on a real terminal (a tmux pane), read back as a screen: log lines and the
//! progress bar must not share a row, and no stale bar may be left behind (issue 15, item 5).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::binary::wait_until;
use crate::datastore::{Layout, generate_testnet};
use crate::follow::copy_ledgers;
use crate::harness::Harness;

/// A private tmux server (its own socket), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(dir: &Path, command: &str) -> Tmux {
        let socket = dir.join("tmux.sock").display().to_string();
        let tmux = Tmux { socket };
        // Wide and tall enough that no log line wraps and nothing scrolls away.
        tmux.run(&["new-session", "-d", "-x", "500", "-y", "100", command]);
        tmux
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            // The server needs a terminal type; a test's environment may have none.
            .env("TERM", "xterm-256color")
            .output()
            .unwrap_or_else(|e| panic!("tmux is needed (make test-deps installs it): {e}"));
        assert!(out.status.success(), "tmux {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// The screen's rows, without trailing blanks.
    fn screen(&self) -> Vec<String> {
        let text = self.run(&["capture-pane", "-p"]);
        let mut rows: Vec<String> = text.lines().map(|l| l.trim_end().to_string()).collect();
        while rows.last().is_some_and(|r| r.is_empty()) {
            rows.pop();
        }
        rows
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
    }
}

/// The bar's template starts with the spinner and `[HH:MM:SS]`; log lines start with a date.
fn is_bar(row: &str) -> bool {
    row.contains("] ") && row.contains(" ledgers (") && row.contains("[00:")
}

fn is_log(row: &str) -> bool {
    [" INFO ", " WARN ", " ERROR "]
        .iter()
        .any(|l| row.contains(l))
}

/// Rows that break the screen: a log line on the bar's row, or a bar that is not the last row.
fn garbled(rows: &[String]) -> Vec<String> {
    let last = rows.len().saturating_sub(1);
    rows.iter()
        .enumerate()
        .filter(|(i, r)| is_bar(r) && (is_log(r) || *i != last))
        .map(|(i, r)| format!("row {i}: {r}"))
        .collect()
}

#[test]
fn logs_and_the_progress_bar_share_a_terminal_cleanly() {
    let run = Harness::empty().range(2, 0);
    let staging = run.path("staging");
    generate_testnet(&staging, 50, Layout::ONE_PER_OBJECT);
    copy_ledgers(&staging, &run.datastore, 2, 25);
    let config = run.write_config();
    let script = run.path("copier.sh");
    let pid_file = run.path("copier.pid");
    // In the background of the pane's shell (still writing to the terminal) so that the test can
    // signal the copier alone and the shell stays to print its exit code.
    std::fs::write(
        &script,
        format!(
            "unset RUST_LOG CONFIG_FILE\nexport AWS_EC2_METADATA_DISABLED=true\n'{}' -config '{}' &\necho $! > '{}'\nwait $!\necho \"exit=$?\"\nsleep 600\n",
            env!("CARGO_BIN_EXE_bronze-copier"),
            config.display(),
            pid_file.display(),
        ),
    )
    .unwrap();
    let tmux = Tmux::start(run.dir(), &format!("sh '{}'", script.display()));
    let checkpoint = |ledger: u64| {
        wait_until(60, || {
            run.checkpoint()
                .and_then(|c| c["last_committed_ledger"].as_u64())
                == Some(ledger)
        })
    };
    assert!(checkpoint(21), "{}", tmux.screen().join("\n"));
    // More ledgers arrive: log lines while the bar is up.
    copy_ledgers(&staging, &run.datastore, 26, 45);
    assert!(checkpoint(41), "{}", tmux.screen().join("\n"));
    let mut bar_seen = false;
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(300));
        let rows = tmux.screen();
        bar_seen |= rows.iter().any(|r| is_bar(r));
        let bad = garbled(&rows);
        assert!(bad.is_empty(), "{bad:#?}\nscreen:\n{}", rows.join("\n"));
    }
    assert!(bar_seen, "no progress bar on the terminal");
    // SIGTERM: the bar is cleared, the log ends cleanly.
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let mut rows = Vec::new();
    let exited = wait_until(30, || {
        rows = tmux.screen();
        rows.iter().any(|r| r.starts_with("exit="))
    });
    assert!(exited, "{}", rows.join("\n"));
    assert!(rows.iter().any(|r| r == "exit=143"), "{}", rows.join("\n"));
    let bars: Vec<_> = rows.iter().filter(|r| is_bar(r)).collect();
    assert!(
        bars.is_empty(),
        "stale bars: {bars:#?}\n{}",
        rows.join("\n")
    );
    let committed = rows
        .iter()
        .filter(|r| is_log(r) && r.contains("committed partition"))
        .count();
    assert_eq!(committed, 4, "{}", rows.join("\n"));
    // Progress shown once: the bar, not also the progress lines.
    assert!(
        !rows.iter().any(|r| r.contains("[copier] progress")),
        "{}",
        rows.join("\n")
    );
}
