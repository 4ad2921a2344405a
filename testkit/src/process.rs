//! Child server processes: own process group, log file, readiness polling, kill on Drop, and a
//! watchdog that kills the group if the test process itself dies without running destructors
//! (SIGKILL, Ctrl-C, abort).

use std::fs::File;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// A server started by us, in a process group of its own, with a watchdog in another.
pub(crate) struct ServerProcess {
    name: String,
    child: Child,
    logs: Vec<PathBuf>,
    watchdog: Option<Child>,
    killed: bool,
}

impl ServerProcess {
    /// Spawn `cmd` in a new process group with stdout and stderr appended to `log`. If this test
    /// process dies without dropping the handle, a watchdog kills the group and removes
    /// `cleanup_dir` (the server's temp dir).
    pub(crate) fn spawn(
        name: &str,
        mut cmd: Command,
        log: &Path,
        cleanup_dir: &Path,
    ) -> ServerProcess {
        let out = File::create(log).unwrap_or_else(|e| {
            panic!(
                "bronze-testkit: cannot create {name} log {}: {e}",
                log.display()
            )
        });
        let err = out
            .try_clone()
            .unwrap_or_else(|e| panic!("bronze-testkit: cannot dup {name} log handle: {e}"));
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("bronze-testkit: cannot spawn {name} ({cmd:?}): {e}"));
        let pgid = child.id();
        let watchdog = spawn_watchdog(&format!(
            "kill -KILL -{pgid}; rm -rf {}",
            shell_quote(cleanup_dir)
        ));
        ServerProcess {
            name: name.to_string(),
            child,
            logs: vec![log.to_path_buf()],
            watchdog,
            killed: false,
        }
    }

    /// Also show this file in [`ServerProcess::log_tail`] (e.g. a server's own error log).
    pub(crate) fn add_log(&mut self, log: &Path) {
        self.logs.push(log.to_path_buf());
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(status)` once the server has exited.
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The last lines of every log of this server, labelled, for error messages.
    pub(crate) fn log_tail(&self) -> String {
        self.logs
            .iter()
            .map(|l| {
                format!(
                    "--- last lines of {} ---\n{}",
                    l.display(),
                    tail_of_file(l, 40)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Poll `probe` until it returns true. Fails (with the logs) when the server exits first or
    /// `timeout` passes. `probe` errors are kept to explain a time-out.
    pub(crate) fn wait_ready(
        &mut self,
        timeout: Duration,
        mut probe: impl FnMut() -> Result<bool, String>,
    ) -> Result<Duration, StartError> {
        let started = Instant::now();
        let mut last;
        let mut pause = Duration::from_millis(20);
        loop {
            if let Some(status) = self.exited() {
                return Err(StartError {
                    exited: true,
                    message: format!(
                        "{} (pid {}) exited with {status} before it was ready\n{}",
                        self.name,
                        self.pid(),
                        self.log_tail()
                    ),
                });
            }
            match probe() {
                Ok(true) => return Ok(started.elapsed()),
                Ok(false) => last = "probe said not ready".into(),
                Err(e) => last = e,
            }
            if started.elapsed() > timeout {
                return Err(StartError {
                    exited: false,
                    message: format!(
                        "{} (pid {}) not ready after {timeout:?}; last probe: {last}\n{}",
                        self.name,
                        self.pid(),
                        self.log_tail()
                    ),
                });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }

    /// Kill the whole process group (server and its children) and the watchdog, and reap.
    pub(crate) fn kill(&mut self) {
        if self.killed {
            return;
        }
        self.killed = true;
        let pgid = Pid::from_raw(self.child.id() as i32);
        // ESRCH just means everything is already gone.
        let _ = killpg(pgid, Signal::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
        kill_watchdog(self.watchdog.take());
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Why a server did not start. `exited` = it died (port taken, bad config): worth a retry on
/// another port; otherwise it timed out.
#[derive(Debug)]
pub(crate) struct StartError {
    pub(crate) exited: bool,
    pub(crate) message: String,
}

/// Start a `sh`, in a process group of its own, that runs `cleanup` once this test process is
/// gone (checked every second). Stop it with [`kill_watchdog`] when the server is stopped normally.
pub(crate) fn spawn_watchdog(cleanup: &str) -> Option<Child> {
    let script = format!("while kill -0 \"$1\" 2>/dev/null; do sleep 1; done; {cleanup}");
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(script)
        .arg("bronze-testkit-watchdog")
        .arg(std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    // Without a watchdog only an abnormal death of the test process would leak the server.
    cmd.spawn().ok()
}

/// Quote a path for `sh`.
pub(crate) fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', "'\\''"))
}

/// Kill a watchdog (and its `sleep`), and reap it.
pub(crate) fn kill_watchdog(watchdog: Option<Child>) {
    if let Some(mut w) = watchdog {
        let _ = killpg(Pid::from_raw(w.id() as i32), Signal::SIGKILL);
        let _ = w.wait();
    }
}

/// The last `lines` lines of a file, lossily decoded; a note if it cannot be read.
pub(crate) fn tail_of_file(path: &Path, lines: usize) -> String {
    let mut bytes = Vec::new();
    match File::open(path).and_then(|mut f| f.read_to_end(&mut bytes)) {
        Ok(_) => tail_of_text(&String::from_utf8_lossy(&bytes), lines),
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

pub(crate) fn tail_of_text(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    if all.is_empty() {
        "(empty)".into()
    } else {
        all[start..].join("\n")
    }
}

/// Run a short command to completion; panic with its output when it fails.
pub(crate) fn run_checked(what: &str, cmd: &mut Command) -> std::process::Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("bronze-testkit: cannot run {what} ({cmd:?}): {e}"));
    if !out.status.success() {
        panic!(
            "bronze-testkit: {what} failed with {}: {cmd:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            out.status,
            tail_of_text(&String::from_utf8_lossy(&out.stdout), 60),
            tail_of_text(&String::from_utf8_lossy(&out.stderr), 60),
        );
    }
    out
}

/// Can a TCP connection to 127.0.0.1:port be opened right now?
pub(crate) fn port_open(port: u16) -> Result<bool, String> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
        Ok(_) => Ok(true),
        Err(e) => Err(format!("connect 127.0.0.1:{port}: {e}")),
    }
}
