//! The metric names a Grafana dashboard or a Prometheus rule file queries, so tests can check
//! each one is exported by the binaries (a renamed metric must not leave an empty panel or an
//! alert that can never fire).

use std::collections::BTreeSet;

use serde_json::Value;

/// PromQL words that look like identifiers but are not metric names (aggregations included: they
/// may be followed by `by (…)` rather than `(`).
const KEYWORDS: &[&str] = &[
    "sum",
    "avg",
    "min",
    "max",
    "count",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "group",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
];

/// Metric names in one PromQL expression: identifiers outside `{…}`, `[…]`, `"…"` and the
/// label lists of `by`/`without`/`on`/`ignoring`/`group_*`, not followed by `(` (a function).
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    // Drop strings, selectors' label matchers and ranges; keep the rest.
    let mut text = String::new();
    let mut depth_brace = 0;
    let mut depth_bracket = 0;
    let mut in_string: Option<char> = None;
    for c in expr.chars() {
        if let Some(q) = in_string {
            if c == q {
                in_string = None;
            }
            continue;
        }
        match c {
            '"' | '\'' | '`' if depth_brace == 0 => in_string = Some(c),
            '{' => depth_brace += 1,
            '}' => depth_brace -= 1,
            '[' => depth_bracket += 1,
            ']' => depth_bracket -= 1,
            _ if depth_brace > 0 || depth_bracket > 0 => {}
            _ => text.push(c),
        }
        if matches!(c, '{' | '}' | '[' | ']') {
            text.push(' ');
        }
    }
    let chars: Vec<char> = text.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let mut skip_label_list = false;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_alphabetic() || c == '_' || c == ':' || c == '$' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | ':' | '$'))
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut j = i;
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            let is_call = chars.get(j) == Some(&'(');
            let lower = word.to_ascii_lowercase();
            if [
                "by",
                "without",
                "on",
                "ignoring",
                "group_left",
                "group_right",
            ]
            .contains(&lower.as_str())
                && is_call
            {
                skip_label_list = true;
            } else if !is_call && !KEYWORDS.contains(&lower.as_str()) && !word.starts_with('$') {
                names.insert(word);
            }
            continue;
        }
        if c == '(' && skip_label_list {
            // Skip the label list of a grouping modifier.
            while i < chars.len() && chars[i] != ')' {
                i += 1;
            }
            skip_label_list = false;
        }
        if c.is_ascii_digit() || c == '.' {
            // Numbers (also 1e3, 0x1f, durations such as 5m outside ranges).
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            continue;
        }
        i += 1;
    }
    names
}

/// Every PromQL expression of a Grafana dashboard: panels' (and rows' nested panels') `targets[].expr`
/// and query variables.
pub fn dashboard_exprs(dashboard: &Value) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(panels: &Value, out: &mut Vec<String>) {
        for p in panels.as_array().into_iter().flatten() {
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(e) = t["expr"].as_str() {
                    out.push(e.to_string());
                }
            }
            walk(&p["panels"], out);
        }
    }
    walk(&dashboard["panels"], &mut out);
    for v in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let q = v["query"]
            .as_str()
            .or_else(|| v["query"]["query"].as_str())
            .or_else(|| v["definition"].as_str());
        if v["type"] == "query"
            && let Some(q) = q
        {
            // label_values(metric{…}, label) / query_result(expr)
            let inner = q
                .strip_prefix("label_values(")
                .and_then(|r| r.rsplit_once(','))
                .map(|(m, _)| m.to_string())
                .or_else(|| {
                    q.strip_prefix("query_result(")
                        .and_then(|r| r.strip_suffix(')'))
                        .map(str::to_string)
                });
            out.push(inner.unwrap_or_else(|| q.to_string()));
        }
    }
    out
}

/// Whether the Prometheus text exposition `scrape` has a sample of `name`.
pub fn exported(scrape: &str, name: &str) -> bool {
    scrape.lines().filter(|l| !l.starts_with('#')).any(|l| {
        l.strip_prefix(name)
            .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(e: &str) -> Vec<String> {
        metric_names(e).into_iter().collect()
    }

    #[test]
    fn finds_metrics_and_skips_functions_labels_and_ranges() {
        assert_eq!(
            names(
                r#"sum by (backfill, phase) (rate(bronze_a_total{x="y",phase=~"Run.*"}[5m])) / on(backfill) group_left bronze_b > 0.5"#
            ),
            ["bronze_a_total", "bronze_b"]
        );
        assert_eq!(
            names("histogram_quantile(0.95, sum by (le) (rate(x_bucket[$__rate_interval])))"),
            ["x_bucket"]
        );
        assert_eq!(
            names("time() - c{backfill=~\"$backfill\"} offset 5m"),
            ["c"]
        );
        assert_eq!(names("absent(up{job=\"a\"} == 1)"), ["up"]);
        assert_eq!(
            names("changes(g[15m]) == 0 and on (backfill) p{phase=\"Running\"} == 1"),
            ["g", "p"]
        );
    }

    #[test]
    fn exported_matches_whole_names() {
        let scrape = "# HELP a x\na_total{l=\"1\"} 3\nb 1\n";
        assert!(exported(scrape, "a_total"));
        assert!(exported(scrape, "b"));
        assert!(!exported(scrape, "a"));
    }
}
