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
