//! The real `firebreak serve` as an operator runs it: signals (SIGHUP is not a silent death,
//! SIGTERM drains and exits 0), JSON logs in which no input can forge a line, and alerts whose
//! identifiers carry control characters refused with the field named.

use std::time::Duration;

use anyhow::{Context, Result};
use firebreak_e2e::daemon::{free_port, DaemonOptions, Workspace};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_firebreak");

fn options() -> DaemonOptions {
    // No alert here reaches AWS: its endpoint points nowhere.
    let mut options = DaemonOptions::new("http://127.0.0.1:9".into());
    options.extra_config = "log:\n  format: json\n".into();
    options
}

#[tokio::test]
async fn metrics_have_their_own_listener_without_the_token_that_approves() -> Result<()> {
    let ws = Workspace::new(BIN)?;
    let mut opts = options();
    let port = free_port()?;
    opts.metrics_port = Some(port);
    let daemon = ws.start(&opts).await?;
    let metrics = format!("http://127.0.0.1:{port}");
    let scraped = reqwest::get(format!("{metrics}/metrics")).await?;
    assert_eq!(scraped.status(), 200);
    assert!(scraped.text().await?.contains("firebreak_open_incidents"));
    // Nothing but metrics and health on it, and the API still wants its token for /metrics.
    let listed = reqwest::get(format!("{metrics}/v1/incidents")).await?;
    assert_eq!(listed.status(), 404);
    let approve = reqwest::Client::new()
        .post(format!("{metrics}/v1/incidents/inc-x/approve"))
        .body("{}")
        .send()
        .await?;
    assert_eq!(approve.status(), 404);
    let api = reqwest::get(format!("{}/metrics", daemon.base)).await?;
    assert_eq!(api.status(), 401);
    Ok(())
}

fn alert(id: &str, namespace: &str) -> Value {
    json!({
        "id": id, "source": "test", "time": chrono::Utc::now(),
        "agent": {"cluster": "prod", "namespace": namespace,
                  "workload": "Deployment/payment-agent", "serviceAccount": "payment-agent"},
        "dimension": "tools", "parameter": {"server": "s", "tool": "t"},
        "tier": "anomaly", "severity": "high",
    })
}

/// Every line of the log, each one JSON object.
fn log_lines(log: &str) -> Result<Vec<Value>> {
    log.lines()
        .map(|line| serde_json::from_str(line).with_context(|| format!("not JSON: {line:?}")))
        .collect()
}

#[tokio::test]
async fn sighup_is_logged_and_survived_sigterm_drains_and_no_input_forges_a_log_line() -> Result<()>
{
    let ws = Workspace::new(BIN)?;
    let mut daemon = ws.start(&options()).await?;

    daemon.signal("HUP")?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        daemon.healthy().await,
        "SIGHUP killed the daemon:\n{}",
        daemon.log()
    );
    assert!(daemon.log().contains("SIGHUP"), "{}", daemon.log());

    let forged = "a-1\n{\"level\":\"INFO\",\"fields\":{\"message\":\"contained\"}}";
    for (body, field, reason) in [
        (alert(forged, "payments"), "id", "control character"),
        (
            alert("a-2", "payments\nkube-system"),
            "agent.namespace",
            "contains '\\n'",
        ),
    ] {
        let (status, answer) = daemon.post("/v1/alerts", &body).await?;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["error"]["field"], field, "{answer}");
        assert!(
            answer["error"]["reason"]
                .as_str()
                .is_some_and(|r| r.contains(reason)),
            "{answer}"
        );
    }
    let missing = json!({"id": "a-3", "source": "test", "time": chrono::Utc::now()});
    let (status, answer) = daemon.post("/v1/alerts", &missing).await?;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(
        answer["error"]["field"], "agent",
        "the first missing field: {answer}"
    );

    daemon.signal("TERM")?;
    let status = daemon.wait_exit(Duration::from_secs(30)).await?;
    assert!(
        status.success(),
        "SIGTERM exits 0: {status}\n{}",
        daemon.log()
    );
    let lines = log_lines(&daemon.log())?;
    let messages: Vec<&str> = lines
        .iter()
        .filter_map(|l| l["fields"]["message"].as_str())
        .collect();
    assert!(
        messages.iter().any(|m| m.contains("stopping"))
            && messages.iter().any(|m| m.starts_with("stopped")),
        "{messages:?}"
    );
    assert!(
        !messages.contains(&"contained"),
        "an alert id forged a log line: {messages:?}"
    );
    Ok(())
}

const FEED_TOKEN: &str = "feed-token-for-the-lifecycle-test-01";
const A: &str = "prod/agents/Deployment/a";
const B: &str = "prod/agents/Deployment/b";

fn delegation_envelope(name: &str, to: &str) -> String {
    format!(
        "apiVersion: firebreak.dev/v1alpha1\nkind: Envelope\nmetadata: {{name: {name}}}\nspec:\n  \
         agent: {{cluster: prod, namespace: agents, workload: Deployment/{name}, serviceAccount: {name}}}\n  \
         version: 2\n  status: converged\n  delegation:\n    observed:\n      \
         - {{to: {to}, mechanism: handoff, closure: literal, count: 1, sessions: 1}}\n"
    )
}

/// A's document as the daemon's feed serves it to shims.
async fn feed_document(base: &str) -> Result<Value> {
    let response = reqwest::Client::new()
        .get(format!("{base}/v1/feed?agent={A}"))
        .bearer_auth(FEED_TOKEN)
        .send()
        .await?;
    anyhow::ensure!(
        response.status() == 200,
        "GET /v1/feed: {}",
        response.status()
    );
    Ok(response.json().await?)
}

/// The daemon restarts between every step of a delegation incident; after each, the feed the
/// shims read (the enforcement point) holds exactly what the journal says, with a version
/// newer than any served before.
#[tokio::test]
async fn a_delegation_incident_survives_a_restart_between_every_step() -> Result<()> {
    let ws = Workspace::new(BIN)?;
    ws.add_envelope("a", &delegation_envelope("a", B))?;
    ws.add_envelope("b", &delegation_envelope("b", A))?;
    let mut opts = options();
    opts.extra_config += &format!("feed:\n  tokens: {{{FEED_TOKEN:?}: \"*\"}}\n");
    let alert_file = ws.path().join("d-1.json");
    let body = json!({
        "id": "d-1", "source": "test", "time": chrono::Utc::now(),
        "agent": {"cluster": "prod", "namespace": "agents", "workload": "Deployment/a", "serviceAccount": "a"},
        "dimension": "delegation", "parameter": {"to": B},
        "tier": "anomaly", "severity": "high",
    });
    std::fs::write(&alert_file, body.to_string())?;
    let alert_file = alert_file.display().to_string();

    let daemon = ws.start(&opts).await?;
    let before = feed_document(&daemon.base).await?;
    assert_eq!(before["severed"], json!([]), "{before}");
    let (code, stdout, stderr) = daemon.cli(&[
        "--output",
        "json",
        "contain",
        "--by",
        "alice",
        "--alert",
        &alert_file,
    ])?;
    assert_eq!(code, 0, "{stdout}{stderr}");
    let incident = serde_json::from_str::<Value>(&stdout)?["incident"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let severed = feed_document(&daemon.base).await?;
    assert_eq!(severed["severed"], json!([B]), "{severed}");
    drop(daemon);

    let daemon = ws.start(&opts).await?;
    let recovered = feed_document(&daemon.base).await?;
    assert_eq!(
        recovered["severed"],
        json!([B]),
        "re-asserted from the journal: {recovered}"
    );
    assert!(
        recovered["version"].as_u64() > severed["version"].as_u64(),
        "{recovered} after {severed}"
    );
    assert_eq!(daemon.incident(&incident).await?["status"], "contained");
    let (code, stdout, stderr) = daemon.cli(&["rollback", "--by", "alice", &incident])?;
    assert_eq!(code, 0, "{stdout}{stderr}");
    let released = feed_document(&daemon.base).await?;
    assert_eq!(released["severed"], json!([]), "{released}");
    drop(daemon);

    let daemon = ws.start(&opts).await?;
    let after = feed_document(&daemon.base).await?;
    assert_eq!(
        after["severed"],
        json!([]),
        "a rollback stays rolled back: {after}"
    );
    assert!(after["version"].as_u64() > released["version"].as_u64());
    assert_eq!(daemon.incident(&incident).await?["status"], "reverted");
    Ok(())
}
