//! The Dockerfile, linted (no Docker daemon is needed): multi-stage, one stripped binary built
//! with the locked dependencies (`bronze-copier` a link to it), a pinned small runtime base, a
//! non-root numeric user, and an entrypoint and paths that the chart and the operator's worker
//! Jobs rely on. The image itself is built and run by the cluster tier (`make test-cluster`:
//! operator/tests/cluster/containers.rs).

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
fn builds_one_stripped_binary_in_a_separate_stage_with_locked_dependencies() {
    let ins = instructions();
    let froms: Vec<&String> = ins
        .iter()
        .filter(|(op, _)| op == "FROM")
        .map(|(_, r)| r)
        .collect();
    // build, debug-symbols, runtime-base, prebuilt, runtime (the default: last).
    assert!(froms[0].ends_with(" AS build"), "{froms:?}");
    assert_eq!(
        froms.last().map(|f| f.as_str()),
        Some("runtime-base AS runtime"),
        "the default target is the runtime from the build stage: {froms:?}"
    );
    assert!(
        froms.iter().any(|f| *f == "runtime-base AS prebuilt"),
        "{froms:?}"
    );
    assert!(
        froms.iter().any(|f| *f == "scratch AS debug-symbols"),
        "{froms:?}"
    );
    let build = ins
        .iter()
        .find(|(op, r)| op == "RUN" && r.contains("cargo build"))
        .expect("a RUN cargo build")
        .1
        .clone();
    for want in [
        // The image profile (fat LTO, one codegen unit: the image under 60 MB).
        "--profile image",
        "--locked",
        "--bin bronze-operator",
        // The debug info goes to its own stage, the image gets the binary without it.
        "objcopy --only-keep-debug",
        "objcopy --strip-all --add-gnu-debuglink",
        // One binary: `bronze-copier` is a link to it (operator/src/main.rs starts the copier).
        "ln -s bronze-operator /out/bronze-copier",
    ] {
        assert!(
            build.contains(want),
            "the build stage lacks {want}: {build}"
        );
    }
    let copies: Vec<&String> = ins
        .iter()
        .filter(|(op, _)| op == "COPY")
        .map(|(_, r)| r)
        .collect();
    assert!(
        copies
            .iter()
            .any(|c| *c == "--from=build /out/ /usr/local/bin/"),
        "the runtime gets the build stage's binary and link: {copies:?}"
    );
    let main = read("operator/src/main.rs");
    assert!(
        main.contains("bronze::copier::main()"),
        "bronze-operator starts the copier"
    );
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

/// Issue 23: the crates and the image label say Apache-2.0; the repository carries that text.
#[test]
fn the_license_file_matches_the_crates_and_the_image_label() {
    let cargo = read("Cargo.toml");
    assert!(
        cargo.contains("license = \"Apache-2.0\""),
        "workspace license"
    );
    assert!(
        read("Dockerfile").contains("org.opencontainers.image.licenses=\"Apache-2.0\""),
        "the image label"
    );
    let license = read("LICENSE");
    assert!(
        license.contains("Apache License") && license.contains("Version 2.0, January 2004"),
        "LICENSE is not the Apache License 2.0"
    );
    assert!(
        license.contains("END OF TERMS AND CONDITIONS"),
        "the whole text"
    );
}
