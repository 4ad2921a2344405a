//! The minimum Rust version: declared once in the workspace's `[workspace.package]`, inherited by
//! every crate, and at least what every locked dependency declares. Only one toolchain exists
//! where the tests run, so this checks the declarations (and what `cargo metadata` resolves from
//! them) rather than building with that exact toolchain.

use std::process::Command;

use serde_json::Value;

use crate::common::*;

type Version = Vec<u32>;

/// `1.89` and `1.89.0` are the same version.
fn parse(v: &str) -> Version {
    let mut parts: Version = v
        .split('.')
        .map(|p| p.parse().unwrap_or_else(|_| panic!("version {v}")))
        .collect();
    parts.resize(3, 0);
    parts
}

/// `rust-version` of the workspace root's `[workspace.package]`.
pub fn workspace_msrv() -> String {
    let text = read("Cargo.toml");
    let section = text
        .split("\n[")
        .find(|s| s.starts_with("workspace.package]"))
        .expect("[workspace.package] in Cargo.toml");
    let line = section
        .lines()
        .find(|l| l.starts_with("rust-version = \""))
        .expect("rust-version in [workspace.package]");
    line.split('"').nth(1).unwrap().to_string()
}

fn cargo(args: &[&str]) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(&cargo)
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("{cargo}: {e}"));
    assert!(
        out.status.success(),
        "{cargo} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `cargo metadata` for the host (offline: the build already fetched what the host needs; the
/// other platforms' crates are not needed to read their declarations).
fn metadata() -> Value {
    let host = cargo(&["-vV"])
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .expect("host in cargo -vV");
    let json = cargo(&[
        "metadata",
        "--format-version",
        "1",
        "--offline",
        "--locked",
        "--filter-platform",
        &host,
    ]);
    serde_json::from_str(&json).unwrap()
}

#[test]
fn every_crate_inherits_the_workspace_msrv_and_no_dependency_needs_more() {
    let msrv = workspace_msrv();
    let meta = metadata();
    let members: Vec<&str> = meta["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    assert!(members.len() >= 5, "{members:?}");
    let mut highest: Option<(Version, String)> = None;
    for package in meta["packages"].as_array().unwrap() {
        let name = package["name"].as_str().unwrap();
        let declared = package["rust_version"].as_str();
        if members.contains(&package["id"].as_str().unwrap()) {
            // The declaration itself, so no crate can carry its own number.
            let manifest = package["manifest_path"].as_str().unwrap();
            let text = std::fs::read_to_string(manifest).unwrap();
            assert!(
                text.lines().any(|l| l == "rust-version.workspace = true"),
                "{manifest}: declare `rust-version.workspace = true`"
            );
            assert_eq!(declared, Some(msrv.as_str()), "cargo metadata: {name}");
        } else if let Some(v) = declared {
            let v = parse(v);
            if highest.as_ref().is_none_or(|(h, _)| v > *h) {
                highest = Some((v, name.to_string()));
            }
        }
    }
    let (need, by) = highest.expect("dependencies declare rust-version");
    assert!(
        need <= parse(&msrv),
        "{by} needs Rust {need:?}, the workspace declares {msrv}"
    );
}

#[test]
fn the_getting_started_guide_names_the_msrv() {
    let msrv = workspace_msrv();
    let guide = read("docs/getting-started.md");
    assert!(
        guide.contains(&format!("Rust toolchain ({msrv} or newer)")),
        "docs/getting-started.md must name Rust {msrv}"
    );
}
