//! The `envelopes.firebreak.dev` CustomResourceDefinition, its schema generated from Rust types.
//!
//! The `spec` schema is derived from `firebreak_containment::envelope::EnvelopeSpec` itself
//! (containment's `schema` feature), so the CRD cannot drift from what the daemon's loader reads;
//! the types' doc comments become the CRD's descriptions.
//!
//! The schema is rewritten into a Kubernetes *structural* schema: no `$ref`, no `$schema`, no
//! `additionalProperties: false` (Kubernetes prunes unknown fields instead; the daemon's loader
//! still refuses them), `nullable` instead of `null` types, one `enum` instead of a `oneOf` per
//! documented variant, integer formats Kubernetes knows.

use firebreak_containment::envelope::{EnvelopeSpec, API_VERSION};
use schemars::generate::SchemaSettings;
use serde_json::{json, Map, Value};

pub const GROUP: &str = "firebreak.dev";
pub const PLURAL: &str = "envelopes";

/// The CustomResourceDefinition as JSON (`serde_yaml::to_string` gives the YAML `kubectl apply`
/// takes).
pub fn definition() -> Value {
    let version = API_VERSION
        .strip_prefix(&format!("{GROUP}/"))
        .unwrap_or(API_VERSION);
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{PLURAL}.{GROUP}")},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": "Envelope",
                "listKind": "EnvelopeList",
                "plural": PLURAL,
                "singular": "envelope",
                "shortNames": ["fbenv"],
            },
            "versions": [{
                "name": version,
                "served": true,
                "storage": true,
                "schema": {"openAPIV3Schema": {
                    "description": "An AI agent's behavioural envelope: what it was observed doing, per dimension, with confidence.",
                    "type": "object",
                    "required": ["spec"],
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "metadata": {"type": "object"},
                        "spec": spec_schema(),
                    },
                }},
                "additionalPrinterColumns": [
                    {"name": "Workload", "type": "string", "jsonPath": ".spec.agent.workload"},
                    {"name": "Status", "type": "string", "jsonPath": ".spec.status"},
                    {"name": "Version", "type": "integer", "jsonPath": ".spec.version"},
                ],
            }],
        },
    })
}

/// The CRD as YAML.
pub fn definition_yaml() -> String {
    // A `Value` built from `json!` always serialises.
    serde_yaml::to_string(&definition()).unwrap_or_default()
}

/// The structural schema of `spec`.
pub fn spec_schema() -> Value {
    let mut settings = SchemaSettings::openapi3();
    settings.inline_subschemas = true;
    let schema = settings
        .into_generator()
        .into_root_schema_for::<EnvelopeSpec>();
    let mut value = schema.to_value();
    structural(&mut value);
    value
}

/// Rewrites a generated schema into what Kubernetes accepts as structural.
fn structural(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for key in ["$schema", "$defs", "definitions", "components", "title"] {
                map.remove(key);
            }
            if map.get("additionalProperties") == Some(&Value::Bool(false)) {
                map.remove("additionalProperties");
            }
            unit_variants(map);
            nullable_types(map);
            if let Some(Value::String(format)) = map.get("format") {
                let known = match format.as_str() {
                    "uint8" | "uint16" | "int8" | "int16" | "int32" => Some("int32"),
                    "uint32" | "uint64" | "uint" | "int64" | "int" => Some("int64"),
                    _ => None,
                };
                match known {
                    Some(k) => {
                        map.insert("format".into(), Value::String(k.into()));
                    }
                    None => {
                        map.remove("format");
                    }
                }
            }
            for v in map.values_mut() {
                structural(v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(structural),
        _ => {}
    }
}

/// schemars gives an enum whose variants have doc comments a `oneOf` of one-value enums, which a
/// structural schema may not use: folds it into one `enum`, the variants' docs into the description.
fn unit_variants(map: &mut Map<String, Value>) {
    let Some(Value::Array(options)) = map.get("oneOf") else {
        return;
    };
    let mut values = Vec::new();
    let mut docs = Vec::new();
    for option in options {
        let one = option.get("enum").and_then(Value::as_array);
        let (Some([value]), Some("string")) = (
            one.map(Vec::as_slice),
            option.get("type").and_then(Value::as_str),
        ) else {
            return;
        };
        if let (Some(name), Some(doc)) = (
            value.as_str(),
            option.get("description").and_then(Value::as_str),
        ) {
            docs.push(format!("`{name}`: {doc}"));
        }
        values.push(value.clone());
    }
    let description = map
        .get("description")
        .and_then(Value::as_str)
        .into_iter()
        .chain(docs.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ");
    map.remove("oneOf");
    map.insert("type".into(), Value::String("string".into()));
    map.insert("enum".into(), Value::Array(values));
    if !description.is_empty() {
        map.insert("description".into(), Value::String(description));
    }
}

/// `type: [T, "null"]` → `type: T, nullable: true`; `anyOf: [S, {type: null}]` → `S` nullable.
fn nullable_types(map: &mut Map<String, Value>) {
    if let Some(Value::Array(types)) = map.get("type") {
        let rest: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
        if rest.len() == 1 && rest.len() < types.len() {
            map.insert("type".into(), rest[0].clone());
            map.insert("nullable".into(), Value::Bool(true));
        }
    }
    for key in ["anyOf", "oneOf"] {
        let Some(Value::Array(options)) = map.get(key) else {
            continue;
        };
        let is_null = |o: &Value| o.get("type") == Some(&Value::String("null".into()));
        let rest: Vec<Value> = options.iter().filter(|o| !is_null(o)).cloned().collect();
        if rest.len() == 1 && rest.len() < options.len() {
            map.remove(key);
            if let Value::Object(inner) = &rest[0] {
                for (k, v) in inner {
                    map.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
            map.insert("nullable".into(), Value::Bool(true));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use firebreak_containment::envelope as real;

    const EXAMPLE: &str = include_str!("../../config/examples/aws/envelope.yaml");

    /// The subset of OpenAPI v3 validation the generated schema uses: type, nullable, required,
    /// properties, items, enum, minimum, maximum. Returns the path of every violation.
    fn violations(schema: &Value, value: &Value, path: &str, out: &mut Vec<String>) {
        if value.is_null() && schema.get("nullable") == Some(&Value::Bool(true)) {
            return;
        }
        let type_ok = match schema.get("type").and_then(Value::as_str) {
            Some("object") => value.is_object(),
            Some("array") => value.is_array(),
            Some("string") => value.is_string(),
            Some("integer") => value.is_i64() || value.is_u64(),
            Some("boolean") => value.is_boolean(),
            _ => true,
        };
        if !type_ok {
            out.push(format!("{path}: wrong type"));
            return;
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
            if !allowed.contains(value) {
                out.push(format!("{path}: not one of {allowed:?}"));
            }
        }
        if let (Some(min), Some(n)) = (
            schema.get("minimum").and_then(Value::as_f64),
            value.as_f64(),
        ) {
            if n < min {
                out.push(format!("{path}: below {min}"));
            }
        }
        if let (Some(max), Some(n)) = (
            schema.get("maximum").and_then(Value::as_f64),
            value.as_f64(),
        ) {
            if n > max {
                out.push(format!("{path}: above {max}"));
            }
        }
        if let (Some(required), Some(obj)) = (
            schema.get("required").and_then(Value::as_array),
            value.as_object(),
        ) {
            for r in required.iter().filter_map(Value::as_str) {
                if !obj.contains_key(r) {
                    out.push(format!("{path}.{r}: required"));
                }
            }
        }
        if let (Some(props), Some(obj)) = (
            schema.get("properties").and_then(Value::as_object),
            value.as_object(),
        ) {
            for (k, v) in obj {
                if let Some(s) = props.get(k) {
                    violations(s, v, &format!("{path}.{k}"), out);
                }
            }
        }
        if let (Some(items), Some(arr)) = (schema.get("items"), value.as_array()) {
            for (i, v) in arr.iter().enumerate() {
                violations(items, v, &format!("{path}[{i}]"), out);
            }
        }
    }

    fn check(value: &Value) -> Vec<String> {
        let crd = definition();
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        let mut out = Vec::new();
        violations(schema, value, "", &mut out);
        out
    }

    fn example() -> Value {
        let yaml: serde_yaml::Value = serde_yaml::from_str(EXAMPLE).expect("yaml");
        serde_json::to_value(yaml).expect("json")
    }

    #[test]
    fn the_example_envelope_satisfies_the_schema() {
        assert_eq!(check(&example()), Vec::<String>::new());
        let mut missing = example();
        missing["spec"]
            .as_object_mut()
            .expect("spec")
            .remove("agent");
        assert_eq!(check(&missing), vec![".spec.agent: required".to_string()]);
        let mut bad = example();
        bad["spec"]["status"] = Value::String("sleeping".into());
        assert_eq!(check(&bad).len(), 1);
    }

    #[test]
    fn crd_names_match_what_envelope_documents_use() {
        let crd = definition();
        let e = real::Envelope::from_yaml(EXAMPLE).expect("example");
        let group = crd["spec"]["group"].as_str().expect("group");
        let version = crd["spec"]["versions"][0]["name"]
            .as_str()
            .expect("version");
        assert_eq!(format!("{group}/{version}"), e.api_version);
        assert_eq!(crd["spec"]["names"]["kind"], Value::String(e.kind));
        assert_eq!(crd["metadata"]["name"], "envelopes.firebreak.dev");
        assert!(definition_yaml().starts_with("apiVersion: apiextensions.k8s.io/v1\n"));
    }

    /// Every node Kubernetes would refuse in a structural schema is gone.
    #[test]
    fn the_schema_is_structural() {
        fn walk(v: &Value, path: &str) {
            if let Value::Object(map) = v {
                for banned in [
                    "$ref",
                    "$schema",
                    "anyOf",
                    "oneOf",
                    "allOf",
                    "$defs",
                    "definitions",
                ] {
                    assert!(!map.contains_key(banned), "{path} has {banned}");
                }
                assert_ne!(
                    map.get("additionalProperties"),
                    Some(&Value::Bool(false)),
                    "{path}"
                );
                if let Some(t) = map.get("type") {
                    assert!(t.is_string(), "{path}: type {t}");
                }
                if map.contains_key("properties") {
                    assert_eq!(
                        map.get("type"),
                        Some(&Value::String("object".into())),
                        "{path}"
                    );
                }
                if let Some(Value::String(f)) = map.get("format") {
                    assert!(f == "int32" || f == "int64", "{path}: format {f}");
                }
                for (k, child) in map {
                    walk(child, &format!("{path}.{k}"));
                }
            }
            if let Value::Array(items) = v {
                for (i, child) in items.iter().enumerate() {
                    walk(child, &format!("{path}[{i}]"));
                }
            }
        }
        walk(&definition(), "");
    }

    /// A field is required in the schema exactly when the daemon's loader needs it.
    #[test]
    fn required_fields_agree_with_the_daemon_loader() {
        fn paths(v: &Value, at: Vec<String>, out: &mut Vec<Vec<String>>) {
            if let Value::Object(map) = v {
                for (k, child) in map {
                    let mut p = at.clone();
                    p.push(k.clone());
                    out.push(p.clone());
                    paths(child, p, out);
                }
            } else if let Value::Array(items) = v {
                if let Some(first) = items.first() {
                    let mut p = at;
                    p.push("0".into());
                    paths(first, p, out);
                }
            }
        }
        fn remove(v: &mut Value, path: &[String]) {
            let (last, parents) = path.split_last().expect("non-empty");
            let mut node = v;
            for p in parents {
                node = match p.parse::<usize>() {
                    Ok(i) => &mut node[i],
                    Err(_) => &mut node[p.as_str()],
                };
            }
            node.as_object_mut().expect("object").remove(last);
        }
        let mut all = Vec::new();
        paths(&example()["spec"], vec!["spec".into()], &mut all);
        assert!(all.len() > 20, "the example exercises many fields");
        for path in all {
            let mut doc = example();
            remove(&mut doc, &path);
            let yaml = serde_yaml::to_string(&doc).expect("yaml");
            let loader = real::Envelope::from_yaml(&yaml).is_ok();
            let schema = check(&doc).is_empty();
            assert_eq!(
                loader,
                schema,
                "removing {} : loader {loader}, schema {schema}",
                path.join(".")
            );
        }
    }
}
