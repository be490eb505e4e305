//! OTLP/JSON trace files: `ExportTraceServiceRequest` documents as the OpenTelemetry Collector's
//! file exporter and OTLP/HTTP JSON write them.
//!
//! A file holds one document or several (JSON Lines, or concatenated). Keys are the OTLP/JSON
//! lowerCamelCase names. `traceId`/`spanId`/`parentSpanId` are hex (32/16 digits); integers
//! (`intValue`, `startTimeUnixNano`) may be JSON numbers or decimal strings; `kind` may be the
//! enum number or its name (`SPAN_KIND_CLIENT`). Fields the learner does not read are ignored.
//! Errors name the file, the line the document starts on, and the JSON path of the bad field.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    #[error("{}:{line}:{column}: not valid JSON: {reason}", file.display())]
    Syntax {
        file: PathBuf,
        line: usize,
        column: usize,
        reason: String,
    },
    #[error("{} (document starting on line {line}): {field}: {reason}", file.display())]
    Field {
        file: PathBuf,
        line: usize,
        field: String,
        reason: String,
    },
}

/// An attribute value (OTLP `AnyValue`).
#[derive(Debug, Clone, PartialEq)]
pub enum AnyValue {
    String(String),
    Bool(bool),
    Int(i64),
    Double(f64),
    /// Base64 text, kept as written.
    Bytes(String),
    Array(Vec<AnyValue>),
    KvList(Vec<(String, AnyValue)>),
    Empty,
}

impl AnyValue {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            AnyValue::String(s) => Some(s),
            _ => None,
        }
    }
}

pub type Attributes = BTreeMap<String, AnyValue>;

/// OTLP `Span.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    Unspecified,
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
}

/// One resource (the process that emitted spans) and where it was found, for the report.
#[derive(Debug, Clone)]
pub struct Resource {
    pub attributes: Attributes,
    pub file: PathBuf,
    pub field: String,
}

#[derive(Debug, Clone)]
pub struct Span {
    /// Lowercase hex.
    pub trace_id: String,
    /// Lowercase hex.
    pub span_id: String,
    pub parent_span_id: Option<String>,
    pub name: String,
    pub kind: SpanKind,
    pub start_unix_nano: u64,
    pub attributes: Attributes,
    /// Index into [`Batch::resources`].
    pub resource: usize,
    /// The span's JSON path in its file, for the report.
    pub field: String,
}

/// Everything read from the files so far.
#[derive(Debug, Default)]
pub struct Batch {
    pub resources: Vec<Resource>,
    pub spans: Vec<Span>,
}

/// Where a document is: for error messages.
struct Doc<'a> {
    file: &'a Path,
    line: usize,
}

impl Doc<'_> {
    fn error(&self, field: &str, reason: impl Into<String>) -> OtlpError {
        OtlpError::Field {
            file: self.file.to_path_buf(),
            line: self.line,
            field: field.to_string(),
            reason: reason.into(),
        }
    }
}

/// Parses every document of one file's text into `batch`.
pub fn parse_into(file: &Path, text: &str, batch: &mut Batch) -> Result<(), OtlpError> {
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    loop {
        let start = stream.byte_offset();
        let value = match stream.next() {
            None => return Ok(()),
            Some(Ok(value)) => value,
            Some(Err(e)) => {
                return Err(OtlpError::Syntax {
                    file: file.to_path_buf(),
                    line: e.line(),
                    column: e.column(),
                    reason: e.to_string(),
                })
            }
        };
        let skipped = text[start..].len() - text[start..].trim_start().len();
        let line = 1 + text[..start + skipped].matches('\n').count();
        document(&Doc { file, line }, &value, batch)?;
    }
}

fn document(doc: &Doc<'_>, value: &Value, batch: &mut Batch) -> Result<(), OtlpError> {
    let top = object(doc, value, "")?;
    for (i, rs) in array(doc, top, "resourceSpans", "")?.iter().enumerate() {
        let rs_path = format!("resourceSpans[{i}]");
        let rs = object(doc, rs, &rs_path)?;
        let res_path = format!("{rs_path}.resource");
        let attributes = match rs.get("resource") {
            None | Some(Value::Null) => Attributes::new(),
            Some(resource) => {
                let resource = object(doc, resource, &res_path)?;
                attributes(doc, resource, &res_path)?
            }
        };
        let resource = batch.resources.len();
        batch.resources.push(Resource {
            attributes,
            file: doc.file.to_path_buf(),
            field: res_path,
        });
        for (j, ss) in array(doc, rs, "scopeSpans", &rs_path)?.iter().enumerate() {
            let ss_path = format!("{rs_path}.scopeSpans[{j}]");
            let ss = object(doc, ss, &ss_path)?;
            for (k, span) in array(doc, ss, "spans", &ss_path)?.iter().enumerate() {
                let span_path = format!("{ss_path}.spans[{k}]");
                batch
                    .spans
                    .push(parse_span(doc, span, &span_path, resource)?);
            }
        }
    }
    Ok(())
}

fn parse_span(
    doc: &Doc<'_>,
    value: &Value,
    path: &str,
    resource: usize,
) -> Result<Span, OtlpError> {
    let span = object(doc, value, path)?;
    let trace_id = hex_id(doc, span, "traceId", path, 32)?
        .ok_or_else(|| doc.error(&join(path, "traceId"), "missing; every span needs one"))?;
    let span_id = hex_id(doc, span, "spanId", path, 16)?
        .ok_or_else(|| doc.error(&join(path, "spanId"), "missing; every span needs one"))?;
    let parent_span_id = hex_id(doc, span, "parentSpanId", path, 16)?;
    let name = match span.get("name") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => return Err(wrong_type(doc, &join(path, "name"), "a string", other)),
    };
    let kind = span_kind(doc, span.get("kind"), &join(path, "kind"))?;
    let start_unix_nano = match span.get("startTimeUnixNano") {
        None | Some(Value::Null) => 0,
        Some(v) => {
            let field = join(path, "startTimeUnixNano");
            let n = integer(doc, v, &field)?;
            u64::try_from(n).map_err(|_| doc.error(&field, format!("{n} is negative")))?
        }
    };
    Ok(Span {
        trace_id,
        span_id,
        parent_span_id,
        name,
        kind,
        start_unix_nano,
        attributes: attributes(doc, span, path)?,
        resource,
        field: path.to_string(),
    })
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn wrong_type(doc: &Doc<'_>, field: &str, expected: &str, got: &Value) -> OtlpError {
    doc.error(
        field,
        format!("expected {expected}, got {}", type_name(got)),
    )
}

fn object<'v>(
    doc: &Doc<'_>,
    value: &'v Value,
    path: &str,
) -> Result<&'v Map<String, Value>, OtlpError> {
    value.as_object().ok_or_else(|| {
        let field = if path.is_empty() { "(document)" } else { path };
        wrong_type(doc, field, "an object", value)
    })
}

/// An optional array field: absent or null is empty.
fn array<'v>(
    doc: &Doc<'_>,
    obj: &'v Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<&'v [Value], OtlpError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(other) => Err(wrong_type(doc, &join(path, key), "an array", other)),
    }
}

fn hex_id(
    doc: &Doc<'_>,
    obj: &Map<String, Value>,
    key: &str,
    path: &str,
    digits: usize,
) -> Result<Option<String>, OtlpError> {
    let field = join(path, key);
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) if s.len() == digits && s.bytes().all(|b| b.is_ascii_hexdigit()) => {
            if s.bytes().all(|b| b == b'0') {
                return Err(doc.error(&field, "all zeros is not a valid id"));
            }
            Ok(Some(s.to_ascii_lowercase()))
        }
        Some(Value::String(s)) => Err(doc.error(
            &field,
            format!(
                "expected {digits} hex digits, got {:?} (OTLP/JSON writes ids as hex, not base64)",
                truncate(s)
            ),
        )),
        Some(other) => Err(wrong_type(doc, &field, "a hex string", other)),
    }
}

fn truncate(s: &str) -> String {
    match s.char_indices().nth(40) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

fn span_kind(doc: &Doc<'_>, value: Option<&Value>, field: &str) -> Result<SpanKind, OtlpError> {
    const NAMES: [(&str, SpanKind); 6] = [
        ("SPAN_KIND_UNSPECIFIED", SpanKind::Unspecified),
        ("SPAN_KIND_INTERNAL", SpanKind::Internal),
        ("SPAN_KIND_SERVER", SpanKind::Server),
        ("SPAN_KIND_CLIENT", SpanKind::Client),
        ("SPAN_KIND_PRODUCER", SpanKind::Producer),
        ("SPAN_KIND_CONSUMER", SpanKind::Consumer),
    ];
    match value {
        None | Some(Value::Null) => Ok(SpanKind::Unspecified),
        Some(Value::String(name)) => NAMES
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, k)| *k)
            .ok_or_else(|| doc.error(field, format!("unknown span kind {:?}", truncate(name)))),
        Some(v) => {
            let n = integer(doc, v, field)?;
            usize::try_from(n)
                .ok()
                .and_then(|i| NAMES.get(i))
                .map(|(_, k)| *k)
                .ok_or_else(|| doc.error(field, format!("unknown span kind {n}, expected 0 to 5")))
        }
    }
}

/// An int64 written as a JSON integer or a decimal string (the protobuf JSON mapping).
fn integer(doc: &Doc<'_>, value: &Value, field: &str) -> Result<i64, OtlpError> {
    match value {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_u64().and_then(|u| i64::try_from(u).ok()))
            .ok_or_else(|| doc.error(field, format!("{n} is not a 64-bit integer"))),
        Value::String(s) => s
            .parse::<i64>()
            .or_else(|_| {
                s.parse::<u64>()
                    .map(|u| i64::try_from(u).unwrap_or(i64::MAX))
            })
            .map_err(|_| doc.error(field, format!("{:?} is not an integer", truncate(s)))),
        other => Err(wrong_type(doc, field, "an integer", other)),
    }
}

/// The `attributes` array of `obj`: `[{key, value: AnyValue}]`. A repeated key keeps the last.
fn attributes(
    doc: &Doc<'_>,
    obj: &Map<String, Value>,
    path: &str,
) -> Result<Attributes, OtlpError> {
    let mut out = Attributes::new();
    let base = join(path, "attributes");
    for (i, kv) in array(doc, obj, "attributes", path)?.iter().enumerate() {
        let (key, value) = key_value(doc, kv, &format!("{base}[{i}]"))?;
        out.insert(key, value);
    }
    Ok(out)
}

fn key_value(doc: &Doc<'_>, kv: &Value, path: &str) -> Result<(String, AnyValue), OtlpError> {
    let kv = object(doc, kv, path)?;
    let key = match kv.get("key") {
        Some(Value::String(k)) => k.clone(),
        None | Some(Value::Null) => return Err(doc.error(&join(path, "key"), "missing")),
        Some(other) => return Err(wrong_type(doc, &join(path, "key"), "a string", other)),
    };
    let value = match kv.get("value") {
        None | Some(Value::Null) => AnyValue::Empty,
        Some(v) => any_value(doc, v, &join(path, "value"))?,
    };
    Ok((key, value))
}

fn any_value(doc: &Doc<'_>, value: &Value, path: &str) -> Result<AnyValue, OtlpError> {
    const KINDS: &str =
        "stringValue, boolValue, intValue, doubleValue, bytesValue, arrayValue or kvlistValue";
    let obj = object(doc, value, path)?;
    let mut present = obj.iter().filter(|(_, v)| !v.is_null());
    let Some((kind, inner)) = present.next() else {
        return Ok(AnyValue::Empty);
    };
    if let Some((other, _)) = present.next() {
        return Err(doc.error(
            path,
            format!("holds both {kind} and {other}; an AnyValue holds one of {KINDS}"),
        ));
    }
    let field = join(path, kind);
    Ok(match (kind.as_str(), inner) {
        ("stringValue", Value::String(s)) => AnyValue::String(s.clone()),
        ("boolValue", Value::Bool(b)) => AnyValue::Bool(*b),
        ("intValue", v) => AnyValue::Int(integer(doc, v, &field)?),
        ("doubleValue", Value::Number(n)) => AnyValue::Double(n.as_f64().unwrap_or(f64::NAN)),
        ("doubleValue", Value::String(s)) => match s.as_str() {
            "NaN" | "Infinity" | "-Infinity" => AnyValue::Double(s.parse().unwrap_or(f64::NAN)),
            _ => return Err(doc.error(&field, format!("{:?} is not a number", truncate(s)))),
        },
        ("bytesValue", Value::String(s)) => AnyValue::Bytes(s.clone()),
        ("arrayValue", Value::Object(arr)) => {
            let mut items = Vec::new();
            for (i, item) in array(doc, arr, "values", &field)?.iter().enumerate() {
                items.push(any_value(doc, item, &format!("{field}.values[{i}]"))?);
            }
            AnyValue::Array(items)
        }
        ("kvlistValue", Value::Object(list)) => {
            let mut items = Vec::new();
            for (i, kv) in array(doc, list, "values", &field)?.iter().enumerate() {
                items.push(key_value(doc, kv, &format!("{field}.values[{i}]"))?);
            }
            AnyValue::KvList(items)
        }
        ("stringValue" | "bytesValue", other) => {
            return Err(wrong_type(doc, &field, "a string", other))
        }
        ("boolValue", other) => return Err(wrong_type(doc, &field, "a boolean", other)),
        ("doubleValue", other) => return Err(wrong_type(doc, &field, "a number", other)),
        ("arrayValue" | "kvlistValue", other) => {
            return Err(wrong_type(doc, &field, "an object with `values`", other))
        }
        (unknown, _) => {
            return Err(doc.error(
                &join(path, unknown),
                format!("unknown AnyValue field; expected one of {KINDS}"),
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Batch, OtlpError> {
        let mut batch = Batch::default();
        parse_into(Path::new("t.json"), text, &mut batch).map(|()| batch)
    }

    const SPAN: &str = r#"{"resourceSpans":[{"resource":{"attributes":[
        {"key":"k8s.namespace.name","value":{"stringValue":"payments"}}]},
      "scopeSpans":[{"spans":[{"traceId":"0AF7651916CD43DD8448EB211C80319C","spanId":"b7ad6b7169203331",
        "parentSpanId":"","name":"execute_tool refund","kind":3,"startTimeUnixNano":"1700000000000000000",
        "attributes":[{"key":"gen_ai.tool.name","value":{"stringValue":"refund"}},
                      {"key":"n","value":{"intValue":"42"}},
                      {"key":"l","value":{"arrayValue":{"values":[{"stringValue":"a"},{"intValue":7}]}}}]}]}]}]}"#;

    #[test]
    fn reads_the_otlp_json_encoding() {
        let batch = parse(SPAN).expect("valid");
        assert_eq!(batch.spans.len(), 1);
        let span = &batch.spans[0];
        assert_eq!(span.trace_id, "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(span.parent_span_id, None);
        assert_eq!(span.kind, SpanKind::Client);
        assert_eq!(span.start_unix_nano, 1_700_000_000_000_000_000);
        assert_eq!(span.attributes["n"], AnyValue::Int(42));
        assert_eq!(
            span.attributes["l"],
            AnyValue::Array(vec![AnyValue::String("a".into()), AnyValue::Int(7)])
        );
        assert_eq!(
            batch.resources[span.resource].attributes["k8s.namespace.name"].as_str(),
            Some("payments")
        );
    }

    #[test]
    fn json_lines_report_the_line_of_the_bad_document() {
        let good = SPAN.replace('\n', " ");
        let bad = good.replace("b7ad6b7169203331", "b7ad6b71692033");
        let err = parse(&format!("{good}\n\n{bad}\n")).expect_err("short span id");
        match err {
            OtlpError::Field { line, field, .. } => {
                assert_eq!(line, 3);
                assert_eq!(field, "resourceSpans[0].scopeSpans[0].spans[0].spanId");
            }
            other => panic!("expected a field error, got {other}"),
        }
    }

    #[test]
    fn errors_name_the_json_path() {
        let cases = [
            (
                SPAN.replace(r#"{"intValue":"42"}"#, r#"{"intValue":"forty"}"#),
                "resourceSpans[0].scopeSpans[0].spans[0].attributes[1].value.intValue",
            ),
            (
                SPAN.replace(r#""kind":3"#, r#""kind":9"#),
                "resourceSpans[0].scopeSpans[0].spans[0].kind",
            ),
            (
                SPAN.replace(r#""scopeSpans":["#, r#""scopeSpans":[7,"#),
                "resourceSpans[0].scopeSpans[0]",
            ),
            (
                SPAN.replace(
                    r#"{"stringValue":"refund"}"#,
                    r#"{"stringValue":"refund","boolValue":true}"#,
                ),
                "resourceSpans[0].scopeSpans[0].spans[0].attributes[0].value",
            ),
            (
                SPAN.replace(r#""traceId":"0AF7651916CD43DD8448EB211C80319C","#, ""),
                "resourceSpans[0].scopeSpans[0].spans[0].traceId",
            ),
        ];
        for (text, path) in cases {
            match parse(&text) {
                Err(OtlpError::Field { field, .. }) => assert_eq!(field, path),
                other => panic!("{path}: expected a field error, got {other:?}"),
            }
        }
    }

    #[test]
    fn syntax_errors_give_line_and_column() {
        let err = parse("{\n \"resourceSpans\": [,]}").expect_err("bad json");
        assert!(matches!(err, OtlpError::Syntax { line: 2, .. }), "{err}");
        assert!(err.to_string().starts_with("t.json:2:"), "{err}");
    }
}
