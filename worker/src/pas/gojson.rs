//! A JSON writer that produces exactly the bytes of Go's `encoding/json` (Go 1.22 and later), for
//! the values a PAS event holds: objects with a fixed field order (Go structs) or sorted keys (Go
//! maps), strings and integers.
//!
//! The original's emitted event hash is `sha256(json.Marshal(event))`, so a verifier or a chain
//! continuation must reproduce Go's bytes, not just equivalent JSON. `serde_json` differs from Go
//! in string escaping: Go escapes `<`, `>` and `&` (HTML safety), U+2028 and U+2029, and writes
//! other control characters as lowercase `\u00XX`. Indented output follows
//! `json.MarshalIndent(v, "", "  ")`.

/// A JSON value in Go's shape. Object members keep the order given (build maps sorted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GoValue {
    Str(String),
    Int(i64),
    Uint(u64),
    Object(Vec<(String, GoValue)>),
}

impl GoValue {
    pub fn str(s: &str) -> GoValue {
        GoValue::Str(s.to_string())
    }

    /// An object from a Go map: members sorted by key bytes, as `encoding/json` sorts map keys.
    pub fn sorted_object(mut members: Vec<(String, GoValue)>) -> GoValue {
        members.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        GoValue::Object(members)
    }
}

/// `json.Marshal`: compact.
pub fn to_compact(value: &GoValue) -> String {
    let mut out = String::new();
    write_value(&mut out, value, None, 0);
    out
}

/// `json.MarshalIndent(v, "", indent)`. No trailing newline, like Go.
pub fn to_indented(value: &GoValue, indent: &str) -> String {
    let mut out = String::new();
    write_value(&mut out, value, Some(indent), 0);
    out
}

fn newline(out: &mut String, indent: Option<&str>, depth: usize) {
    if let Some(unit) = indent {
        out.push('\n');
        for _ in 0..depth {
            out.push_str(unit);
        }
    }
}

fn write_value(out: &mut String, value: &GoValue, indent: Option<&str>, depth: usize) {
    match value {
        GoValue::Str(s) => write_string(out, s),
        GoValue::Int(n) => out.push_str(&n.to_string()),
        GoValue::Uint(n) => out.push_str(&n.to_string()),
        GoValue::Object(members) => {
            out.push('{');
            if members.is_empty() {
                out.push('}');
                return;
            }
            for (i, (key, member)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, indent, depth + 1);
                write_string(out, key);
                out.push(':');
                if indent.is_some() {
                    out.push(' ');
                }
                write_value(out, member, indent, depth + 1);
            }
            newline(out, indent, depth);
            out.push('}');
        }
    }
}

/// Go's `appendString` with `escapeHTML = true`.
pub fn write_string(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{0}'..='\u{1f}' => {
                let b = c as u8;
                out.push_str("\\u00");
                out.push(HEX[usize::from(b >> 4)] as char);
                out.push(HEX[usize::from(b & 0xf)] as char);
            }
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            // Everything else, DEL and all non-ASCII included, is written as is (UTF-8).
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> String {
        let mut out = String::new();
        write_string(&mut out, text);
        out
    }

    #[test]
    fn strings_are_escaped_like_go() {
        assert_eq!(s("a<b>&c"), r#""a\u003cb\u003e\u0026c""#);
        assert_eq!(s("q\"b\\"), r#""q\"b\\""#);
        assert_eq!(s("\n\r\t"), r#""\n\r\t""#);
        // Go 1.22+ writes \b and \f short (release notes: "Marshal and Encode now escape '\b'
        // and '\f' characters as \b and \f instead of \u0008 and \u000c").
        assert_eq!(s("\u{8}\u{c}"), r#""\b\f""#);
        assert_eq!(s("\u{0}\u{1}\u{1f}"), r#""\u0000\u0001\u001f""#);
        assert_eq!(s("\u{7f}é日本🚀"), "\"\u{7f}é日本🚀\"");
        assert_eq!(s("\u{2028}\u{2029}"), r#""\u2028\u2029""#);
        assert_eq!(s("/"), r#""/""#, "Go does not escape the solidus");
    }

    #[test]
    fn objects_compact_and_indented() {
        let v = GoValue::Object(vec![
            ("b".into(), GoValue::Uint(1)),
            (
                "a".into(),
                GoValue::sorted_object(vec![
                    ("z".into(), GoValue::Int(-2)),
                    ("é".into(), GoValue::str("x")),
                    ("B".into(), GoValue::Object(vec![])),
                ]),
            ),
        ]);
        assert_eq!(to_compact(&v), r#"{"b":1,"a":{"B":{},"z":-2,"é":"x"}}"#);
        assert_eq!(
            to_indented(&v, "  "),
            "{\n  \"b\": 1,\n  \"a\": {\n    \"B\": {},\n    \"z\": -2,\n    \"é\": \"x\"\n  }\n}"
        );
    }
}
