//! Arbitrary input never panics the parsers, and a wrong value is reported at its own path.

use std::path::Path;

use firebreak_envelopes::kubescape::{self, ProfileError};
use firebreak_envelopes::learn::{learn_texts, LearnError, LearnOptions};
use firebreak_envelopes::otlp::OtlpError;
use proptest::prelude::*;
use serde_json::{json, Value};

const NN: &str =
    include_str!("../../../shared/fixtures/kubescape/networkneighborhood-operator.json");

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[a-zA-Z0-9⋯./*-]{0,12}".prop_map(Value::String),
        // Names the parsers look for, so random documents reach deep code.
        prop::sample::select(vec![
            "resourceSpans",
            "scopeSpans",
            "spans",
            "traceId",
            "spanId",
            "attributes",
            "stringValue",
            "0af7651916cd43dd8448eb211c80319c",
            "b7ad6b7169203331",
            "execute_tool",
            "invoke_agent",
            "ContainerProfile",
            "ApplicationProfile",
            "NetworkNeighborhood",
        ])
        .prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop::sample::select(vec![
                        "resourceSpans",
                        "resource",
                        "scopeSpans",
                        "spans",
                        "traceId",
                        "spanId",
                        "parentSpanId",
                        "name",
                        "kind",
                        "attributes",
                        "key",
                        "value",
                        "stringValue",
                        "intValue",
                        "arrayValue",
                        "kvlistValue",
                        "values",
                        "startTimeUnixNano",
                        "apiVersion",
                        "metadata",
                        "spec",
                        "containers",
                        "execs",
                        "opens",
                        "syscalls",
                        "egress",
                        "ports",
                        "port",
                        "dnsNames",
                        "ipAddress",
                        "items",
                        "path",
                        "args",
                    ]),
                    inner,
                ),
                0..6,
            )
            .prop_map(|kvs| Value::Object(
                kvs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
            )),
        ]
    })
}

/// A valid export with one tool call.
fn valid_otlp() -> Value {
    json!({"resourceSpans": [{
        "resource": {"attributes": [
            {"key": "k8s.cluster.name", "value": {"stringValue": "c"}},
            {"key": "k8s.namespace.name", "value": {"stringValue": "n"}},
            {"key": "k8s.deployment.name", "value": {"stringValue": "d"}},
            {"key": "k8s.serviceaccount.name", "value": {"stringValue": "s"}},
        ]},
        "scopeSpans": [{"spans": [{
            "traceId": "0af7651916cd43dd8448eb211c80319c",
            "spanId": "b7ad6b7169203331",
            "name": "execute_tool t",
            "kind": 3,
            "startTimeUnixNano": "1",
            "attributes": [
                {"key": "gen_ai.operation.name", "value": {"stringValue": "execute_tool"}},
                {"key": "mcp.server.name", "value": {"stringValue": "m"}},
            ],
        }]}],
    }]})
}

/// Paths of the valid export where a wrong value must be reported.
const OTLP_PATHS: &[&str] = &[
    "resourceSpans[0]",
    "resourceSpans[0].resource",
    "resourceSpans[0].resource.attributes[1]",
    "resourceSpans[0].resource.attributes[1].value",
    "resourceSpans[0].scopeSpans[0]",
    "resourceSpans[0].scopeSpans[0].spans[0]",
    "resourceSpans[0].scopeSpans[0].spans[0].traceId",
    "resourceSpans[0].scopeSpans[0].spans[0].spanId",
    "resourceSpans[0].scopeSpans[0].spans[0].kind",
    "resourceSpans[0].scopeSpans[0].spans[0].startTimeUnixNano",
    "resourceSpans[0].scopeSpans[0].spans[0].attributes[0].key",
    "resourceSpans[0].scopeSpans[0].spans[0].attributes[1].value",
];

fn pointer(path: &str) -> String {
    path.replace('[', ".")
        .replace(']', "")
        .split('.')
        .fold(String::new(), |acc, p| format!("{acc}/{p}"))
}

fn learn_one(text: &str) -> Result<(), LearnError> {
    learn_texts(&[(Path::new("f.json"), text)], &LearnOptions::default()).map(|_| ())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_json_never_panics_the_learner(doc in arbitrary_json()) {
        if let Err(LearnError::Otlp(OtlpError::Field { field, .. })) = learn_one(&doc.to_string()) {
            prop_assert!(!field.is_empty());
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_learner(text in "\\PC{0,200}") {
        let _ = learn_one(&text);
    }

    /// Replacing one value of a valid export with a value of another shape is either accepted or
    /// reported at that path or below it.
    #[test]
    fn a_wrong_value_is_reported_at_its_path(
        which in 0..OTLP_PATHS.len(),
        replacement in arbitrary_json(),
    ) {
        let path = OTLP_PATHS[which];
        let mut doc = valid_otlp();
        *doc.pointer_mut(&pointer(path)).expect("path exists") = replacement;
        match learn_one(&doc.to_string()) {
            Err(LearnError::Otlp(OtlpError::Field { field, .. })) => {
                prop_assert!(field.starts_with(path), "{} reported for a change at {}", field, path);
            }
            Err(LearnError::Otlp(other)) => prop_assert!(false, "{}", other),
            _ => {}
        }
    }

    #[test]
    fn arbitrary_json_never_panics_the_profile_reader(doc in arbitrary_json()) {
        if let Ok(profiles) = kubescape::parse("p.json", &doc.to_string()) {
            let _ = kubescape::envelope_dimensions(&profiles, None, &Default::default());
        }
    }

    #[test]
    fn arbitrary_text_never_panics_the_profile_reader(text in "\\PC{0,200}") {
        let _ = kubescape::parse("p.yaml", &text);
    }

    /// Replacing one value of the real NetworkNeighborhood is reported at that path or below.
    #[test]
    fn a_wrong_profile_value_is_reported_at_its_path(
        which in 0..6usize,
        replacement in arbitrary_json(),
    ) {
        let path = [
            "spec.containers[0]",
            "spec.containers[0].egress[0]",
            "spec.containers[0].egress[0].ports[0].port",
            "spec.containers[0].egress[0].dnsNames",
            "spec.containers[0].egress[1].ipAddress",
            "metadata.labels",
        ][which];
        let mut doc: Value = serde_json::from_str(NN).expect("fixture");
        *doc.pointer_mut(&pointer(path)).expect("path exists") = replacement;
        if let Err(ProfileError::Field { field, .. }) = kubescape::parse("nn.json", &doc.to_string()) {
            prop_assert!(field.starts_with(path), "{} reported for a change at {}", field, path);
        }
    }
}
