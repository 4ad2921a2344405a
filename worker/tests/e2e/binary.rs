//! The `bronze-copier` binary under test: a command sealed off from any cloud, its output as
//! text, and waiting for a background run.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary, with an environment that can never reach a cloud: no AWS/Google credentials,
/// no `CONFIG_FILE`, `RUST_LOG` or config override variables from the test's own environment.
pub fn copier() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bronze-copier"));
    for (key, _) in std::env::vars() {
        if key.starts_with("AWS_")
            || key.starts_with("GOOGLE_")
            || key == "CONFIG_FILE"
            || key == "RUST_LOG"
        {
            cmd.env_remove(key);
        }
    }
    for var in bronze::config::ENV_VARS.iter().map(|(v, _, _)| *v) {
        cmd.env_remove(var);
    }
    cmd.env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(Stdio::null());
    cmd
}

/// Runs `cmd` to its end.
pub fn exec(cmd: &mut Command) -> Output {
    cmd.output().expect("run bronze-copier")
}

/// stdout then stderr, for `contains` checks on what the binary printed.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Exit status, stdout and stderr, labelled: the message of a failed assertion.
pub fn describe(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `bronze-copier -config <config> --no-progress`, asserts the exit code and returns the
/// output (for configs written by hand rather than by the harness).
pub fn run_config(config: &Path, expect_code: i32) -> String {
    let out = exec(copier().arg("-config").arg(config).arg("--no-progress"));
    let log = text(&out);
    assert_eq!(
        out.status.code(),
        Some(expect_code),
        "unexpected exit; output:\n{log}"
    );
    log
}

/// Waits up to `seconds` for `done`, polling every 50 ms; whether it became true.
pub fn wait_until(seconds: u64, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    done()
}
