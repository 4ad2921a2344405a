//! Records the git revision the binary is built from as `BRONZE_GIT_SHA` (what `-version`,
//! manifests, PAS events and `build_info` report): the `BRONZE_GIT_SHA` variable when set (the
//! image build, whose context has no `.git`), else `git rev-parse HEAD` of the checkout, else
//! `unknown`.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=BRONZE_GIT_SHA");
    let from_env = std::env::var("BRONZE_GIT_SHA")
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty() && v != "unknown");
    let sha = from_env
        .or_else(git_head)
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=BRONZE_GIT_SHA={sha}");
}

/// `git rev-parse HEAD`, and rebuild triggers for when HEAD moves.
fn git_head() -> Option<String> {
    let sha = git(&["rev-parse", "HEAD"])?;
    if !(sha.len() == 40 && sha.chars().all(|c| c.is_ascii_hexdigit())) {
        return None;
    }
    // HEAD names the branch (or a commit); the branch's ref file, or packed-refs, moves on a
    // commit. Worktrees keep HEAD in their own git dir and refs in the common one.
    let mut watch = Vec::new();
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        watch.push(format!("{dir}/HEAD"));
    }
    if let Some(common) = git(&["rev-parse", "--path-format=absolute", "--git-common-dir"]) {
        watch.push(format!("{common}/packed-refs"));
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
            watch.push(format!("{common}/{branch}"));
        }
    }
    // Only files that exist: cargo reruns the script on every build for a missing one.
    for file in watch.iter().filter(|f| std::path::Path::new(f).exists()) {
        println!("cargo:rerun-if-changed={file}");
    }
    Some(sha)
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}
