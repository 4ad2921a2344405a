//! `bronze-copier health`: the runbook's three outcomes (and a corrupt checkpoint) from the real
//! binary, with `-config` and with `--checkpoint`.

use crate::binary::{copier, describe};
use crate::harness::Harness;

fn health(args: &[&str]) -> (Option<i32>, String) {
    let out = copier().arg("health").args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    )
}

#[test]
fn health_reports_missing_fresh_stale_and_corrupt_checkpoints() {
    let work = Harness::pubnet(8).partition_size(8); // ledgers 2..=9
    let config = work.write_config();
    let config_arg = config.to_str().unwrap();

    let (code, line) = health(&["-config", config_arg]);
    assert_eq!(code, Some(2), "{line}");
    assert!(
        line.starts_with("CRITICAL: Checkpoint file not found"),
        "{line}"
    );

    let out = work.run();
    assert!(out.status.success(), "{}", describe(&out));
    let (code, line) = health(&["-config", config_arg]);
    assert_eq!(
        (code, line.as_str()),
        (Some(0), "OK: Last committed ledger 9 (0 min ago)")
    );

    // Two hours without an update.
    let path = work.checkpoint_path();
    let mut cp: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let two_hours_ago = chrono::Utc::now() - chrono::Duration::minutes(120);
    cp["updated_at"] = two_hours_ago.to_rfc3339().into();
    std::fs::write(&path, serde_json::to_vec_pretty(&cp).unwrap()).unwrap();
    let (code, line) = health(&["-config", config_arg]);
    assert_eq!(
        (code, line.as_str()),
        (Some(1), "WARNING: Checkpoint not updated in 120 minutes")
    );
    let (code, line) = health(&[
        "--checkpoint",
        path.to_str().unwrap(),
        "--max-age-minutes",
        "180",
    ]);
    assert_eq!(
        (code, line.as_str()),
        (Some(0), "OK: Last committed ledger 9 (120 min ago)")
    );

    std::fs::write(&path, b"{\"copier_id\": \"e2e\", ").unwrap();
    let (code, line) = health(&["-checkpoint", path.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{line}");
    assert!(
        line.starts_with("CRITICAL:") && line.contains("corrupt"),
        "{line}"
    );
}
