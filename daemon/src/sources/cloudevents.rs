//! CloudEvents 1.0 over HTTP, structured mode (`application/cloudevents+json`) and binary mode
//! (`ce-*` headers, the body is `data`). Two types are understood: Firebreak's own
//! `dev.firebreak.deviation.v1` (data = a native alert) and Falcosidekick's `falco.rule.output.v1`
//! (data = a Falco event).

use axum::http::{header, HeaderMap};
use firebreak_containment::{Alert, InputError};
use serde::Deserialize;
use serde_json::Value;

use super::{falco, Context, Item, Mapped, Rejected};

pub const DEVIATION: &str = "dev.firebreak.deviation.v1";
pub const FALCO: &str = "falco.rule.output.v1";

#[derive(Deserialize)]
struct Structured {
    specversion: String,
    id: String,
    source: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    data: Option<Value>,
    #[serde(default)]
    data_base64: Option<Value>,
}

/// Maps one event in either mode; `Err` = the event is unusable as a whole.
pub fn map(
    headers: &HeaderMap,
    bytes: &[u8],
    context: &Context<'_>,
) -> Result<Vec<Item>, InputError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if content_type.starts_with("application/cloudevents-batch") {
        return Err(InputError::new(
            "content-type",
            "batched CloudEvents are not accepted; send one event per request",
        ));
    }
    if content_type.starts_with("application/cloudevents") {
        let event: Structured = InputError::from_json(bytes)?;
        check(&event.specversion, &event.id, &event.source, "")?;
        if event.data_base64.is_some() {
            return Err(InputError::new(
                "data_base64",
                "binary data is not accepted; send the JSON in `data`",
            ));
        }
        let data = event
            .data
            .ok_or_else(|| InputError::new("data", "missing"))?;
        return Ok(vec![dispatch(&event.kind, "type", &data, context, "data")?]);
    }
    let ce = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| {
                InputError::new(
                    name,
                    "missing: send application/cloudevents+json (structured mode) or the ce-* headers (binary mode)",
                )
            })
    };
    let specversion = ce("ce-specversion")?;
    let (id, source, kind) = (ce("ce-id")?, ce("ce-source")?, ce("ce-type")?);
    check(&specversion, &id, &source, "ce-")?;
    if !(content_type.is_empty() || content_type.starts_with("application/json")) {
        return Err(InputError::new(
            "content-type",
            format!("data must be application/json, got {content_type:?}"),
        ));
    }
    let data: Value = InputError::from_json(bytes)?;
    Ok(vec![dispatch(&kind, "ce-type", &data, context, "")?])
}

fn check(specversion: &str, id: &str, source: &str, prefix: &str) -> Result<(), InputError> {
    if specversion != "1.0" {
        return Err(InputError::new(
            format!("{prefix}specversion"),
            format!("expected 1.0, got {specversion:?}"),
        ));
    }
    for (name, value) in [("id", id), ("source", source)] {
        if value.is_empty() {
            return Err(InputError::new(
                format!("{prefix}{name}"),
                "must not be empty",
            ));
        }
    }
    Ok(())
}

/// `at` is where `data` sits in the request ("data" in structured mode, the body in binary).
fn dispatch(
    kind: &str,
    kind_field: &str,
    data: &Value,
    context: &Context<'_>,
    at: &str,
) -> Result<Item, InputError> {
    match kind {
        DEVIATION => Ok(native(data, at)),
        FALCO => Ok(falco::map_value(data, context, at)),
        other => Err(InputError::new(
            kind_field,
            format!("unknown event type {other:?}; accepted: {DEVIATION}, {FALCO}"),
        )),
    }
}

fn native(data: &Value, at: &str) -> Item {
    let within = |e: InputError| if at.is_empty() { e } else { e.within(at) };
    let id = data.get("id").and_then(Value::as_str).map(str::to_string);
    // Validated exactly as `POST /v1/alerts` validates (unknown fields, sizes, agent shape).
    Alert::from_json(data.to_string().as_bytes())
        .map(|a| Mapped::Alert(Box::new(a)))
        .map_err(|e| Rejected {
            id,
            error: within(e),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::testing::store;
    use axum::http::HeaderValue;
    use firebreak_containment::{EnvelopeStore, Parameter};
    use proptest::prelude::*;
    use serde_json::json;

    const SHELL: &str = include_str!("../../../../shared/fixtures/falco/falco-terminal-shell.json");

    fn native_alert() -> Value {
        json!({
          "id": "a-7f3c", "source": "kubescape", "time": "2026-05-16T02:47:00Z",
          "agent": {"cluster": "prod-eks", "namespace": "payments",
                    "workload": "Deployment/payment-agent", "serviceAccount": "payment-agent"},
          "dimension": "identity",
          "parameter": {"action": "s3:PutObject", "resource": "arn:aws:s3:::partner-payouts/*"},
          "tier": "attack-attempt", "severity": "critical", "evidence": {}
        })
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn structured(kind: &str, data: Value) -> Vec<u8> {
        json!({"specversion": "1.0", "id": "e1", "source": "/test", "type": kind, "data": data})
            .to_string()
            .into_bytes()
    }

    fn map_one(h: &HeaderMap, body: &[u8], envelopes: &EnvelopeStore) -> Result<Item, InputError> {
        let context = Context {
            cluster: "default",
            envelopes,
        };
        map(h, body, &context).map(|mut v| v.remove(0))
    }

    const STRUCTURED: &[(&str, &str)] = &[("content-type", "application/cloudevents+json")];

    #[test]
    fn structured_native_alert() {
        let body = structured(DEVIATION, native_alert());
        let Ok(Ok(Mapped::Alert(alert))) =
            map_one(&headers(STRUCTURED), &body, &EnvelopeStore::default())
        else {
            panic!("must map");
        };
        assert_eq!(alert.id, "a-7f3c");
    }

    #[test]
    fn binary_falco_event_from_the_fixture() {
        let h = headers(&[
            ("content-type", "application/json"),
            ("ce-specversion", "1.0"),
            ("ce-id", "6a0e9a5c"),
            ("ce-source", "falco.org"),
            ("ce-type", FALCO),
        ]);
        let envelopes = store("default", "default", "Pod/alpine", "default");
        let Ok(Ok(Mapped::Alert(alert))) = map_one(&h, SHELL.as_bytes(), &envelopes) else {
            panic!("must map");
        };
        assert_eq!(alert.source, "falco");
        assert!(matches!(alert.parameter, Parameter::Process { .. }));
    }

    #[test]
    fn errors_name_the_field() {
        let none = EnvelopeStore::default();
        let e = map_one(
            &headers(STRUCTURED),
            &structured("com.example.other", json!({})),
            &none,
        )
        .expect_err("unknown type");
        assert_eq!(e.field, "type");
        let mut bad = native_alert();
        bad["agent"]["namespace"] = 7.into();
        let Ok(Err(r)) = map_one(&headers(STRUCTURED), &structured(DEVIATION, bad), &none) else {
            panic!("bad data must be rejected");
        };
        assert_eq!(r.error.field, "data.agent.namespace");
        let e = map_one(&headers(&[("ce-specversion", "1.0")]), b"{}", &none).expect_err("no id");
        assert_eq!(e.field, "ce-id");
        let e = map_one(&HeaderMap::new(), b"{}", &none).expect_err("neither mode");
        assert_eq!(e.field, "ce-specversion");
        let body =
            json!({"specversion": "0.3", "id": "e", "source": "s", "type": DEVIATION, "data": {}});
        let e = map_one(&headers(STRUCTURED), body.to_string().as_bytes(), &none).expect_err("0.3");
        assert_eq!(e.field, "specversion");
    }

    #[test]
    fn a_key_named_twice_inside_data_or_parameter_is_refused_naming_it() {
        let none = EnvelopeStore::default();
        let body = String::from_utf8(structured(DEVIATION, native_alert())).unwrap_or_default();
        let twice = body.replace(
            r#""resource":"arn:aws:s3:::partner-payouts/*""#,
            r#""resource":"arn:aws:s3:::partner-payouts/*","resource":"arn:aws:s3:::invoices/*""#,
        );
        assert_ne!(twice, body, "the fixture names parameter.resource");
        let e = map_one(&headers(STRUCTURED), twice.as_bytes(), &none).expect_err("duplicate");
        assert_eq!(e.field, "data.parameter.resource");
        let twice = body.replace(r#""tier":"#, r#""tier":"anomaly","tier":"#);
        let e = map_one(&headers(STRUCTURED), twice.as_bytes(), &none).expect_err("duplicate");
        assert_eq!(e.field, "data.tier");
    }

    proptest! {
        #[test]
        fn arbitrary_json_never_panics(value in crate::sources::testing::json()) {
            let none = EnvelopeStore::default();
            let _ = map_one(&headers(STRUCTURED), value.to_string().as_bytes(), &none);
            let _ = map_one(&headers(STRUCTURED), &structured(DEVIATION, value.clone()), &none);
            let _ = map_one(&headers(STRUCTURED), &structured(FALCO, value), &none);
        }
    }
}
