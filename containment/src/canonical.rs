//! Canonical JSON: the bytes hashed by the journal's chain and by alert digests, independent of
//! map order and of whether some crate in the build enables serde_json's `preserve_order`.

use std::fmt::Write as _;

/// Canonical JSON: no whitespace, object keys sorted by byte order at every
/// level. Done by hand rather than `serde_json::to_string` so the hash does not
/// depend on whether some crate in the build enables `preserve_order`.
pub fn canonical_json(value: &serde_json::Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => write_json_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_string(key, out);
                out.push(':');
                if let Some(v) = map.get(key) {
                    write_canonical(v, out);
                }
            }
            out.push('}');
        }
    }
}

fn write_json_string(s: &str, out: &mut String) {
    // Display of a string Value is its JSON encoding and cannot fail.
    let _ = write!(out, "{}", serde_json::Value::from(s));
}
