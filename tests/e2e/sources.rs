//! Alert sources end to end: the real `firebreak` binary fed the real Kubescape, Falco and
//! Falcosidekick payloads from `../shared/fixtures`, over its authenticated HTTP API.
//!
//! No control plane handles `network` or `process` here, so every mapped alert must be recorded
//! as an incident and escalated; no AWS call happens (the IAM endpoint is a closed port).

use anyhow::Result;
use firebreak_e2e::daemon::{Daemon, DaemonOptions, Workspace};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_firebreak");
const R0005: &str =
    include_str!("../../../shared/fixtures/kubescape/http-exporter-body-R0005.json");
const SHELL: &str = include_str!("../../../shared/fixtures/falco/falco-terminal-shell.json");
const SIDEKICK: &str = include_str!("../../../shared/fixtures/falco/falcosidekick-test-input.json");

fn envelope(cluster: &str, namespace: &str, workload: &str, sa: &str) -> String {
    format!(
        "apiVersion: firebreak.dev/v1alpha1\nkind: Envelope\nmetadata: {{name: {sa}, namespace: {namespace}}}\n\
         spec:\n  agent: {{cluster: {cluster}, namespace: {namespace}, workload: {workload}, serviceAccount: {sa}}}\n  \
         version: 2\n  status: converged\n  \
         network:\n    observed:\n      - {{destination: api.example.com, closure: literal, count: 100, sessions: 10}}\n"
    )
}

/// A daemon with the envelopes of the fixtures' two workloads: the Kubescape webapp (cluster
/// from the alert's `clusterName`) and Falco's bare pod `alpine` (cluster from `sources.cluster`).
async fn daemon() -> Result<(Workspace, Daemon)> {
    let ws = Workspace::new(BIN)?;
    ws.add_envelope(
        "webapp",
        &envelope(
            "bobexample",
            "webapp",
            "Deployment/webapp-mywebapp",
            "mywebapp",
        ),
    )?;
    ws.add_envelope(
        "alpine",
        &envelope("default", "default", "Pod/alpine", "default"),
    )?;
    let daemon = ws
        .start(&DaemonOptions::new("http://127.0.0.1:9".into()))
        .await?;
    Ok((ws, daemon))
}

/// The single result of a one-item answer.
fn only(body: &Value) -> &Value {
    let results = body["results"].as_array().expect("results list");
    assert_eq!(results.len(), 1, "{body:#}");
    &results[0]
}

async fn post_with(
    d: &Daemon,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<(u16, Value)> {
    let mut request = reqwest::Client::new()
        .post(format!("{}{path}", d.base))
        .bearer_auth(&d.token)
        .body(body.to_string());
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await?))
}

#[tokio::test]
async fn kubescape_batch_is_mapped_escalated_and_deduplicated() -> Result<()> {
    let (_ws, d) = daemon().await?;
    let (status, body) = d
        .post_raw("/v1/runtimealerts", R0005.as_bytes().to_vec())
        .await?;
    assert_eq!(status, 202, "{body:#}");
    let result = only(&body);
    assert_eq!(result["id"], "0b80141cea771029450509ea63514032");
    assert_eq!(result["outcome"], "escalated", "{body:#}");
    assert!(
        result["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("no configured control plane"),
        "{body:#}"
    );
    let id = result["incident"]
        .as_str()
        .expect("incident id")
        .to_string();
    let incident = d.incident(&id).await?;
    assert_eq!(incident["status"], "escalated", "{incident:#}");
    assert_eq!(incident["dimension"], "network");
    assert_eq!(incident["agent"]["cluster"], "bobexample");
    assert_eq!(incident["agent"]["workload"], "Deployment/webapp-mywebapp");
    assert_eq!(incident["agent"]["serviceAccount"], "mywebapp");
    assert_eq!(
        incident["plans"][0]["plan"]["parameter"],
        json!({"destination": "google.com."})
    );

    // The exporter re-sends: same uniqueID, same incident, nothing new (also on the other path).
    let (status, body) = d
        .post_raw("/v1/alerts/kubescape", R0005.as_bytes().to_vec())
        .await?;
    assert_eq!(status, 200, "{body:#}");
    assert_eq!(only(&body)["outcome"], "deduplicated");
    assert_eq!(only(&body)["incident"], id.as_str());
    let (_, list) = d.get("/v1/incidents").await?;
    assert_eq!(
        list["incidents"].as_array().map(Vec::len),
        Some(1),
        "{list:#}"
    );
    Ok(())
}

#[tokio::test]
async fn alert_limit_reached_is_a_signal_not_an_incident() -> Result<()> {
    let (_ws, d) = daemon().await?;
    let mut body: Value = serde_json::from_str(R0005)?;
    body["spec"]["alerts"] = json!([{
        "alertName": "AlertLimitReached", "ruleID": "AlertLimitReached", "severity": 1000,
        "message": "Alert limit reached", "hostName": "node-1"
    }]);
    let (status, answer) = d.post("/v1/runtimealerts", &body).await?;
    assert_eq!(status, 200, "{answer:#}");
    assert_eq!(only(&answer)["outcome"], "signal");
    let (_, list) = d.get("/v1/incidents").await?;
    assert_eq!(list["incidents"], json!([]));
    let metrics = d.metrics().await?;
    assert!(
        metrics.contains(r#"firebreak_source_alerts_total{outcome="signal",source="kubescape"} 1"#),
        "{metrics}"
    );
    Ok(())
}

#[tokio::test]
async fn falco_and_cloudevents_map_to_the_same_incident() -> Result<()> {
    let (_ws, d) = daemon().await?;
    let (status, body) = d
        .post_raw("/v1/alerts/falco", SHELL.as_bytes().to_vec())
        .await?;
    assert_eq!(status, 202, "{body:#}");
    let result = only(&body);
    assert_eq!(result["outcome"], "escalated", "{body:#}");
    let id = result["incident"].as_str().expect("incident").to_string();
    let incident = d.incident(&id).await?;
    assert_eq!(incident["dimension"], "process");
    assert_eq!(incident["agent"]["cluster"], "default");
    assert_eq!(incident["agent"]["workload"], "Pod/alpine");
    assert_eq!(
        incident["plans"][0]["plan"]["parameter"],
        json!({"exec": "sh"})
    );

    // Falcosidekick's CloudEvents output (binary mode) carrying the same event: same dedupe key.
    let (status, body) = post_with(
        &d,
        "/v1/alerts/cloudevents",
        &[
            ("content-type", "application/json"),
            ("ce-specversion", "1.0"),
            ("ce-id", "2c1f3b0e-1"),
            ("ce-source", "falco.org"),
            ("ce-type", "falco.rule.output.v1"),
        ],
        SHELL,
    )
    .await?;
    assert_eq!(status, 200, "{body:#}");
    assert_eq!(only(&body)["outcome"], "deduplicated");
    assert_eq!(only(&body)["incident"], id.as_str());

    // Structured mode carrying a native alert.
    let native = json!({
        "id": "ce-native-1", "source": "detector", "time": "2026-11-22T02:47:00Z",
        "agent": {"cluster": "bobexample", "namespace": "webapp",
                  "workload": "Deployment/webapp-mywebapp", "serviceAccount": "mywebapp"},
        "dimension": "network", "parameter": {"destination": "evil.example", "port": 443},
        "tier": "anomaly", "severity": "high", "evidence": {}
    });
    let event = json!({"specversion": "1.0", "id": "e-1", "source": "/detector",
                       "type": "dev.firebreak.deviation.v1", "data": native});
    let (status, body) = post_with(
        &d,
        "/v1/alerts/cloudevents",
        &[("content-type", "application/cloudevents+json")],
        &event.to_string(),
    )
    .await?;
    assert_eq!(status, 202, "{body:#}");
    assert_eq!(only(&body)["id"], "ce-native-1");
    assert_eq!(only(&body)["outcome"], "escalated");
    Ok(())
}

#[tokio::test]
async fn bad_input_names_the_field_and_the_daemon_stays_up() -> Result<()> {
    let (_ws, d) = daemon().await?;
    // Falcosidekick's own test event has no Kubernetes fields: no agent to attribute it to.
    let (status, body) = d
        .post_raw("/v1/alerts/falco", SIDEKICK.as_bytes().to_vec())
        .await?;
    assert_eq!(status, 400, "{body:#}");
    assert_eq!(
        body["error"]["field"], "output_fields.k8s.ns.name",
        "{body:#}"
    );

    let mut wrong: Value = serde_json::from_str(R0005)?;
    wrong["spec"]["alerts"][0]["workloadName"] = json!(7);
    let (status, body) = d.post("/v1/runtimealerts", &wrong).await?;
    assert_eq!(status, 400, "{body:#}");
    assert_eq!(body["error"]["field"], "spec.alerts[0].workloadName");

    let (status, body) = d
        .post("/v1/alerts/kubescape", &json!({"kind": "RuntimeAlerts"}))
        .await?;
    assert_eq!(status, 400, "{body:#}");
    // A missing field is named in the reason (serde reports it at its parent, here the root).
    assert!(
        body["error"]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("apiVersion"),
        "{body:#}"
    );

    for path in ["/v1/alerts/kubescape", "/v1/alerts/falco"] {
        let (status, body) = d.post_raw(path, b"{\"rule\": ".to_vec()).await?;
        assert_eq!(status, 400, "{path}: {body:#}");
        assert!(
            body["error"]["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("EOF"),
            "{body:#}"
        );
    }

    let (status, body) = post_with(
        &d,
        "/v1/alerts/cloudevents",
        &[("content-type", "application/cloudevents+json")],
        r#"{"specversion": "1.0", "id": "1", "source": "s", "type": "com.example.other", "data": {}}"#,
    )
    .await?;
    assert_eq!(status, 400, "{body:#}");
    assert_eq!(body["error"]["field"], "type");

    let unauthenticated = reqwest::Client::new()
        .post(format!("{}/v1/alerts/falco", d.base))
        .body(SHELL)
        .send()
        .await?;
    assert_eq!(unauthenticated.status().as_u16(), 401);

    assert!(d.healthy().await, "log:\n{}", d.log());
    let (_, list) = d.get("/v1/incidents").await?;
    assert_eq!(list["incidents"], json!([]), "bad input changes nothing");
    Ok(())
}
