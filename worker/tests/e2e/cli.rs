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
