//! The docs against the code: the references name every config key, environment variable, CLI
//! flag, exit code and CRD field; links resolve; every command block of the runbook and the
//! getting-started guide is run by a test or marked untested; the README stays short; the
//! code's comments point at docs that exist (`docs/<file>.md#<heading>`), not at documents
//! outside the repository.

use std::collections::BTreeSet;
use std::path::Path;

use clap::CommandFactory;
use serde_json::Value;

use crate::common::*;

/// Dotted paths of every leaf of a JSON value (`era.ledger_start`, ...).
fn leaf_keys(value: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaf_keys(v, &path, out);
            }
        }
        _ => {
            out.insert(prefix.to_string());
        }
    }
}

#[test]
fn the_configuration_reference_names_every_key_and_variable() {
    let doc = read("docs/configuration.md");
    let mut keys = BTreeSet::new();
    leaf_keys(
        &serde_json::to_value(bronze::config::Config::default()).unwrap(),
        "",
        &mut keys,
    );
    assert!(
        keys.contains("era.ledger_start") && keys.len() > 40,
        "{keys:?}"
    );
    let missing: Vec<_> = keys
        .iter()
        .filter(|k| !doc.contains(&format!("`{k}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/configuration.md lacks keys {missing:?}"
    );
    let vars: Vec<_> = bronze::config::ENV_VARS
        .iter()
        .filter(|(var, key, _)| !doc.contains(&format!("| `{key}` | `{var}` |")))
        .map(|(var, key, _)| format!("{var} ({key})"))
        .collect();
    assert!(
        vars.is_empty(),
        "docs/configuration.md lacks rows `key | VAR` for {vars:?}"
    );
}

#[test]
fn the_configuration_reference_names_every_flag_subcommand_and_exit_code() {
    let doc = read("docs/configuration.md");
    let cli = bronze::cli::Cli::command();
    let mut missing = Vec::new();
    let flags = |cmd: &clap::Command| -> Vec<String> {
        cmd.get_arguments()
            .filter_map(|a| a.get_long())
            .filter(|long| *long != "help" && !doc.contains(&format!("-{long}")))
            .map(|long| format!("{} --{long}", cmd.get_name()))
            .collect()
    };
    missing.extend(flags(&cli));
    for sub in cli.get_subcommands() {
        if !doc.contains(&format!("`{}", sub.get_name())) {
            missing.push(format!("subcommand {}", sub.get_name()));
        }
        missing.extend(flags(sub));
    }
    assert!(
        missing.is_empty(),
        "docs/configuration.md lacks {missing:?}"
    );
    use bronze::exit::*;
    for code in [OK, FAILURE, CONFIG, BAD_INPUT, CONFLICT, VERIFY_FAILED] {
        assert!(
            doc.contains(&format!("\n| {code} |")),
            "exit code {code} not in the table"
        );
    }
    assert!(doc.contains(&format!("| {SIGINT} / {SIGTERM} |")));
}

/// Field paths of a CRD schema node (`spec.source.mode`, `status.conditions[].type`).
fn schema_fields(node: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    // Kubernetes' own types are documented by Kubernetes.
    const NATIVE: [&str; 3] = [
        "spec.worker.resources",
        "spec.worker.tolerations",
        "spec.worker.nodeSelector",
    ];
    if let Some(props) = node["properties"].as_object() {
        for (k, v) in props {
            let path = format!("{prefix}.{k}");
            out.insert(path.clone());
            if NATIVE.contains(&path.as_str()) {
                continue;
            }
            schema_fields(v, &path, out);
            if v["items"].is_object() {
                schema_fields(&v["items"], &format!("{path}[]"), out);
            }
        }
    }
}

#[test]
fn the_crd_reference_names_every_field() {
    let doc = read("docs/crd-reference.md");
    let crd = serde_json::to_value(bronze_operator::crd::crd()).unwrap();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"];
    let mut fields = BTreeSet::new();
    schema_fields(&schema["spec"], "spec", &mut fields);
    schema_fields(&schema["status"], "status", &mut fields);
    assert!(fields.contains("spec.source.datastorePath"), "{fields:?}");
    let missing: Vec<_> = fields
        .iter()
        .filter(|f| !doc.contains(&format!("`{f}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/crd-reference.md lacks {missing:?} (regenerate its tables from crds/bronzebackfills.yaml)"
    );
}

fn markdown_files() -> Vec<String> {
    let mut files = files("docs", ".md");
    files.extend([
        "README.md".to_string(),
        format!("{CHART}/README.md"),
        "charts/README.md".to_string(),
    ]);
    files
}

/// The cells of a Markdown table row as GitHub splits them: on every `|` not escaped as `\|`
/// (inside code spans too), the outer pipes dropped.
fn table_cells(row: &str) -> usize {
    let inner = row.trim();
    let inner = inner.strip_prefix('|').unwrap_or(inner);
    let inner = inner
        .strip_suffix('|')
        .filter(|r| !r.ends_with('\\'))
        .unwrap_or(inner);
    let mut cells = 1;
    let mut escaped = false;
    for c in inner.chars() {
        match c {
            '\\' => escaped = !escaped,
            '|' if !escaped => cells += 1,
            _ => escaped = false,
        }
        if c != '\\' {
            escaped = false;
        }
    }
    cells
}

#[test]
fn table_cells_are_split_as_github_does() {
    assert_eq!(table_cells("| a | b |"), 2);
    assert_eq!(table_cells("| `a` | `false` || stop |"), 4);
    assert_eq!(table_cells("| a \\| b | c |"), 2);
}

/// Issue 23: 18 rows of docs/crd-reference.md held `||` and lost their meaning column on GitHub.
#[test]
fn every_table_row_has_as_many_cells_as_its_header() {
    let mut bad = Vec::new();
    for file in markdown_files() {
        let text = read(&file);
        let mut header: Option<usize> = None;
        let mut in_code = false;
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("```") {
                in_code = !in_code;
                continue;
            }
            if in_code || !line.trim_start().starts_with('|') {
                header = None;
                continue;
            }
            let cells = table_cells(line);
            match header {
                None => header = Some(cells),
                Some(want) if cells != want => bad.push(format!(
                    "{file}:{}: {cells} cells, header has {want}",
                    n + 1
                )),
                Some(_) => {}
            }
        }
    }
    assert!(
        bad.is_empty(),
        "table rows with the wrong number of cells:\n{}",
        bad.join("\n")
    );
}

#[test]
fn relative_links_resolve() {
    let mut broken = Vec::new();
    for file in markdown_files() {
        let text = read(&file);
        let base = Path::new(&file).parent().unwrap();
        for part in text.split("](").skip(1) {
            let target = part.split(')').next().unwrap();
            if target.starts_with("http") || target.starts_with('#') || target.contains(' ') {
                continue;
            }
            let path = target.split('#').next().unwrap();
            if !root().join(base).join(path).exists() {
                broken.push(format!("{file}: {target}"));
            }
        }
    }
    assert!(broken.is_empty(), "broken links: {broken:?}");
}

#[test]
fn every_command_block_is_tested_or_marked_untested() {
    for file in ["docs/runbook.md", "docs/getting-started.md"] {
        let text = read(file);
        let lines: Vec<&str> = text.lines().collect();
        let mut in_block = false;
        let mut shell_blocks = 0;
        for (i, line) in lines.iter().enumerate() {
            let fence = line.trim_start().starts_with("```");
            if fence && in_block {
                in_block = false;
                continue;
            }
            if !fence {
                continue;
            }
            in_block = true;
            let lang = line.trim_start().trim_start_matches('`').trim();
            if !matches!(lang, "bash" | "sh" | "shell" | "console" | "yaml") {
                continue;
            }
            let marker = lines[..i]
                .iter()
                .rev()
                .find(|l| !l.trim().is_empty())
                .copied()
                .unwrap_or("");
            let ok = marker.starts_with("<!-- runbook-test: ")
                || marker.starts_with("<!-- tested: ")
                || marker.starts_with("*untested")
                || (lang == "yaml" && marker.starts_with("<!-- example"));
            assert!(
                ok,
                "{file}:{}: a ```{lang} block must follow `<!-- runbook-test: run -->`, \
                 `<!-- tested: <test> -->` or `*untested (why)*`; found {marker:?}",
                i + 1
            );
            if lang != "yaml" {
                shell_blocks += 1;
            }
        }
        assert!(shell_blocks > 0, "{file} has no command blocks");
    }
    // Tested-elsewhere markers name a test file (or folder) that exists, and every test they
    // name (a snake_case word with at least three underscores) is a function in it.
    for file in ["docs/runbook.md", "docs/getting-started.md"] {
        for line in read(file).lines() {
            if let Some(rest) = line.trim().strip_prefix("<!-- tested: ") {
                let rest = rest.trim_end_matches(" -->");
                let path = rest.split_whitespace().next().unwrap();
                assert!(root().join(path).exists(), "{file}: {line} names no file");
                let sources = rust_sources(path);
                for test in rest
                    .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .filter(|w| w.matches('_').count() >= 3)
                {
                    assert!(
                        sources.contains(&format!("fn {test}(")),
                        "{file}: {line}: no `fn {test}` in {path}"
                    );
                }
            }
        }
    }
}

/// The text of a Rust file, or of every `.rs` file under a folder (workspace-relative).
fn rust_sources(path: &str) -> String {
    let full = root().join(path);
    if full.is_file() {
        return read(path);
    }
    let mut text = String::new();
    if full.is_dir() {
        for entry in std::fs::read_dir(&full).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().to_string();
            if name.ends_with(".rs") {
                text.push_str(&read(&format!("{path}/{name}")));
            }
        }
    }
    text
}

#[test]
fn the_readme_is_short_links_the_docs_and_keeps_its_two_commands() {
    let readme = read("README.md");
    assert!(
        readme.lines().count() <= 90,
        "README.md is getting long: move details to docs/"
    );
    assert!(readme.contains("make demo"));
    assert!(readme.contains("make test-deps && make test"));
    for page in files("docs", ".md") {
        let name = Path::new(&page)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .to_string();
        if name != "README.md" {
            assert!(
                readme.contains(&format!("docs/{name}")),
                "README.md does not link docs/{name}"
            );
        }
    }
}

/// GitHub's anchor for a Markdown heading: lower case, spaces to `-`, other punctuation dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// Every `.rs` file below `dir` (relative to the workspace root), recursively.
fn rust_files(dir: &str, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(root().join(dir)).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().to_string();
        let path = format!("{dir}/{name}");
        if root().join(&path).is_dir() {
            rust_files(&path, out);
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

#[test]
fn code_comments_point_into_the_repository() {
    let mut sources = Vec::new();
    for dir in ["ledger", "worker", "operator", "testkit", "ship"] {
        for sub in ["src", "tests"] {
            if root().join(dir).join(sub).is_dir() {
                rust_files(&format!("{dir}/{sub}"), &mut sources);
            }
        }
    }
    // This file names what it looks for.
    sources.retain(|f| f != "ship/tests/ship/docs.rs");
    let mut broken = Vec::new();
    for file in &sources {
        for (n, line) in read(file).lines().enumerate() {
            // A document outside the repository (the original's behaviour, by section).
            let lower = line.to_lowercase();
            if lower.contains("original's behaviour") || lower.contains("original-behaviour") {
                broken.push(format!("{file}:{}: {}", n + 1, line.trim()));
            }
            // docs/<name>.md#<anchor>: the file exists and has that heading.
            for part in line.split("docs/").skip(1) {
                let target: String = part
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || "-_.#".contains(*c))
                    .collect();
                let Some((doc, anchor_part)) = target.split_once(".md") else {
                    continue;
                };
                let doc = format!("docs/{doc}.md");
                let Ok(text) = std::fs::read_to_string(root().join(&doc)) else {
                    broken.push(format!("{file}:{}: no {doc}", n + 1));
                    continue;
                };
                if let Some(want) = anchor_part.strip_prefix('#') {
                    let found = text
                        .lines()
                        .filter_map(|l| l.strip_prefix('#'))
                        .map(|h| anchor(h.trim_start_matches('#')))
                        .any(|a| a == want);
                    if !found {
                        broken.push(format!("{file}:{}: no heading #{want} in {doc}", n + 1));
                    }
                }
            }
        }
    }
    assert!(
        broken.is_empty(),
        "references that do not resolve: {broken:#?}"
    );
}
