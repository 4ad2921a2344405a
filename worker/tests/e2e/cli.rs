//! The runbook's command line: `-config`, `-validate`, `-version`, `CONFIG_FILE`, and environment
//! variables overriding the file.

use crate::binary::{copier, exec, text};
use crate::harness::Harness;

#[test]
fn version_in_both_spellings() {
    for flag in ["-version", "--version"] {
        let out = exec(copier().arg(flag));
        assert_eq!(out.status.code(), Some(0));
        let text = text(&out);
        assert!(
            text.starts_with(&format!("bronze-copier {} (", env!("CARGO_PKG_VERSION"))),
            "{text}"
        );
    }
}

#[test]
fn validate_accepts_a_good_config_via_flag_or_config_file_env() {
    let run_dir = Harness::empty().range(2, 100);
    std::fs::create_dir_all(&run_dir.datastore).unwrap();
    let config = run_dir.write_config();
    let out = exec(copier().arg("-config").arg(&config).arg("-validate"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("configuration is valid"));
    let out = exec(copier().arg("--validate").env("CONFIG_FILE", &config));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn environment_overrides_the_file() {
    let run_dir = Harness::testnet(20).perf("max_in_flight_partitions", 1);
    let out = exec(
        run_dir
            .command(&["--no-progress"])
            .env("MAX_IN_FLIGHT_PARTITIONS", "8")
            .env("ERA_ID", "p23_test"),
    );
    let log = text(&out);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(log.contains("max_in_flight=8"), "{log}");
    assert!(
        run_dir
            .out_dir()
            .join("bronze/testnet/p23_test/v1/ledgers_lcm_raw/range=2-11/_manifest.json")
            .exists()
    );
}

#[test]
fn unknown_keys_are_warned_about() {
    let run_dir = Harness::empty()
        .range(2, 100)
        .yaml("eras: []\nsource_typo: 1\n");
    std::fs::create_dir_all(&run_dir.datastore).unwrap();
    let config = run_dir.write_config();
    let out = exec(copier().arg("-config").arg(&config).arg("-validate"));
    let log = text(&out);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(log.contains("source_typo") && log.contains("eras"), "{log}");
}

/// Issue 15 (7): `-version` names the git revision of a build from a checkout (build.rs), not
/// `unknown`.
#[test]
fn version_names_the_git_revision_of_the_checkout() {
    let head = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output();
    let Some(head) = head
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    else {
        eprintln!("not a git checkout: nothing to compare -version with");
        return;
    };
    let out = exec(copier().arg("-version"));
    assert_eq!(
        text(&out).trim(),
        format!("bronze-copier {} ({head})", env!("CARGO_PKG_VERSION"))
    );
}

/// Issue 15 (6): `-validate` is offline: it creates none of the directories it checks, whether
/// the config is good or bad.
#[test]
fn validate_creates_no_directory() {
    let mut run_dir = Harness::empty().range(2, 100).pas("");
    std::fs::create_dir_all(&run_dir.datastore).unwrap();
    let out = exec(&mut run_dir.command(&["-validate"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    run_dir.partition_size = 0;
    let out = exec(&mut run_dir.command(&["-validate"]));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    for dir in [run_dir.out_dir(), run_dir.state_dir(), run_dir.backup_dir()] {
        assert!(!dir.exists(), "{} was created", dir.display());
    }
}

/// Issue 15 (6): a file with several type errors gets all of them named, not just the first.
#[test]
fn validate_names_every_bad_field_of_the_file() {
    let run_dir = Harness::empty();
    let config = run_dir.path("bad.yaml");
    std::fs::write(
        &config,
        "era:\n  partition_size: big\n  ledger_end: soon\nperf:\n  workers: many\n",
    )
    .unwrap();
    let out = exec(copier().arg("-config").arg(&config).arg("-validate"));
    let log = text(&out);
    assert_eq!(out.status.code(), Some(2), "{log}");
    for field in ["era.partition_size", "era.ledger_end", "perf.workers"] {
        assert!(log.contains(field), "{field} not named:\n{log}");
    }
}

/// Issue 15 (7): with `logging.format: json` every stdout line of `-validate` is JSON, good
/// config or bad; the plain summary of a bad one goes to stderr.
#[test]
fn validate_output_follows_the_json_log_format() {
    let mut run_dir = Harness::empty()
        .range(2, 100)
        .yaml("logging:\n  format: json\n");
    std::fs::create_dir_all(&run_dir.datastore).unwrap();
    let json_lines = |out: &std::process::Output| -> Vec<serde_json::Value> {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}\n{}", text(out)))
            })
            .collect()
    };
    let out = exec(&mut run_dir.command(&["-validate"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        json_lines(&out)
            .iter()
            .any(|l| l["message"] == "configuration is valid"),
        "{}",
        text(&out)
    );
    run_dir.partition_size = 0;
    let out = exec(&mut run_dir.command(&["-validate"]));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        json_lines(&out)
            .iter()
            .any(|l| l["field"] == "era.partition_size"),
        "{}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("era.partition_size"),
        "{}",
        text(&out)
    );
}

/// Issue 15 (7): `LEDGER_END` inside a grid partition, then a larger one, leaves partitions
/// that `verify` calls off the grid; both runs say so at start.
#[test]
fn ledger_end_off_the_grid_is_warned_about_at_start() {
    let run_dir = Harness::testnet(40);
    let out = exec(run_dir.command(&["--no-progress"]).env("LEDGER_END", "15"));
    let log = text(&out);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(
        log.contains("WARN")
            && log.contains("era.ledger_end 15 is not the end of a grid partition")
            && log.contains("11 or 21"),
        "{log}"
    );
    assert_eq!(run_dir.committed(), vec![(2, 11), (12, 15)]);
    let out = exec(run_dir.command(&["--no-progress"]).env("LEDGER_END", "31"));
    let log = text(&out);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(
        log.contains("the checkpoint's last partition 12-15 is not a partition of the grid"),
        "{log}"
    );
    // What the warnings announced.
    let out = exec(run_dir.command(&["verify"]).env("LEDGER_END", "31"));
    assert!(
        text(&out)
            .lines()
            .any(|l| l.contains("partition=12-15 ") && l.contains("check=grid.off_grid")),
        "{}",
        text(&out)
    );
}
