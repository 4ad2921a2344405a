//! The Dockerfile, linted (no Docker daemon is needed): multi-stage, both binaries built with
//! the locked dependencies, a pinned small runtime base, a non-root numeric user, and an
//! entrypoint and paths that the chart and the operator's worker Jobs rely on.

use crate::common::*;

/// The Dockerfile's instructions, with `\` continuations joined and comments dropped.
fn instructions() -> Vec<(String, String)> {
    let text = read("Dockerfile");
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (current.is_empty() && trimmed.is_empty()) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let (op, rest) = current.split_once(' ').unwrap_or((&current, ""));
        out.push((op.to_uppercase(), rest.trim().to_string()));
        current.clear();
    }
    out
}

fn arg_default(name: &str) -> String {
    instructions()
        .into_iter()
        .find_map(|(op, rest)| {
            (op == "ARG")
                .then(|| rest.strip_prefix(&format!("{name}=")).map(str::to_string))
                .flatten()
        })
        .unwrap_or_else(|| panic!("no ARG {name}=default"))
}

#[test]
fn builds_both_binaries_in_a_separate_stage_with_locked_dependencies() {
    let ins = instructions();
    let froms: Vec<&String> = ins
        .iter()
        .filter(|(op, _)| op == "FROM")
        .map(|(_, r)| r)
        .collect();
    assert_eq!(
        froms.len(),
        2,
        "multi-stage: a build stage and a runtime stage: {froms:?}"
    );
    assert!(froms[0].ends_with(" AS build"), "{froms:?}");
    let build = ins
        .iter()
        .find(|(op, r)| op == "RUN" && r.contains("cargo build"))
        .expect("a RUN cargo build")
        .1
        .clone();
    for want in ["--release", "--locked", "bronze-copier", "bronze-operator"] {
        assert!(build.contains(want), "cargo build lacks {want}: {build}");
    }
    let copies: Vec<&String> = ins
        .iter()
        .filter(|(op, r)| op == "COPY" && r.starts_with("--from=build"))
        .map(|(_, r)| r)
        .collect();
    for bin in ["bronze-copier", "bronze-operator"] {
        assert!(
            copies
                .iter()
                .any(|c| c.ends_with(&format!("/usr/local/bin/{bin}"))),
            "{bin} not copied into the runtime image: {copies:?}"
        );
    }
}

#[test]
fn base_images_are_pinned_and_the_toolchain_is_new_enough() {
    let rust = arg_default("RUST_IMAGE");
    let runtime = arg_default("RUNTIME_IMAGE");
    for image in [&rust, &runtime] {
        assert!(image.contains(':'), "{image} has no tag");
        assert!(!image.ends_with(":latest"), "{image} is not pinned");
    }
    // rust:X.Y.Z-...: an exact toolchain, at least the workspace's rust-version.
    let version = rust
        .strip_prefix("rust:")
        .and_then(|t| t.split('-').next())
        .unwrap_or_else(|| panic!("RUST_IMAGE {rust} is not rust:X.Y.Z-..."));
    let parse = |v: &str| -> Vec<u32> { v.split('.').map(|p| p.parse().unwrap()).collect() };
    let image = parse(version);
    assert_eq!(image.len(), 3, "{rust}: pin an exact toolchain X.Y.Z");
    let msrv = crate::toolchain::workspace_msrv();
    assert!(
        image >= parse(&msrv),
        "{rust} is older than the workspace's rust-version {msrv}"
    );
    assert!(
        runtime.starts_with("gcr.io/distroless/cc-") || runtime.starts_with("debian:"),
        "small glibc runtime expected: {runtime}"
    );
}

#[test]
fn runs_as_a_numeric_non_root_user_with_bronze_copier_as_entrypoint() {
    let ins = instructions();
    let user = ins
        .iter()
        .rev()
        .find(|(op, _)| op == "USER")
        .expect("USER")
        .1
        .clone();
    let uid: u32 = user
        .split(':')
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("USER {user}: numeric, so runAsNonRoot can check it"));
    assert!(uid > 0, "USER {user} is root");
    // The chart's podSecurityContext runs as the same user.
    let values = read(&format!("{CHART}/values.yaml"));
    assert!(
        values.contains(&format!("runAsUser: {uid}")),
        "chart runAsUser != image USER"
    );
    let entrypoint = &ins
        .iter()
        .rev()
        .find(|(op, _)| op == "ENTRYPOINT")
        .expect("ENTRYPOINT")
        .1;
    // Worker Jobs pass only `worker --range S-E` (and a rebuild's `--rebuild ID`) as args
    // (operator/src/job.rs).
    assert_eq!(entrypoint, r#"["/usr/local/bin/bronze-copier"]"#);
    let job = read("operator/src/job.rs");
    assert!(job.contains(r#""worker".into(),"#) && job.contains(r#""--range".into(),"#));
    assert!(
        !job.contains("command: Some("),
        "worker Jobs must use the image's entrypoint"
    );
}

#[test]
fn the_build_context_leaves_out_build_output_and_secrets_of_the_tree() {
    let ignore = read(".dockerignore");
    for want in ["target/", ".git/", ".venv/"] {
        assert!(
            ignore.lines().any(|l| l.trim() == want),
            ".dockerignore lacks {want}"
        );
    }
    let makefile = read("Makefile");
    assert!(makefile.contains("\nimage:"), "no `make image`");
}
