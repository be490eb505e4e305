//! The real `firebreak serve` as an operator runs it: signals (SIGHUP is not a silent death,
//! SIGTERM drains and exits 0), JSON logs in which no input can forge a line, alerts whose
//! identifiers carry control characters refused with the field named, a control plane that
//! never answers, intake past `api.maxPlanning`, and a local client parking idle connections.

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

fn identity_envelope(name: &str) -> String {
    format!(
        "apiVersion: firebreak.dev/v1alpha1\nkind: Envelope\nmetadata: {{name: {name}}}\nspec:\n  \
         agent: {{cluster: prod, namespace: payments, workload: Deployment/{name}, serviceAccount: {name}}}\n  \
         version: 1\n  status: converged\n  identity:\n    principals: [arn:aws:iam::123456789012:role/{name}]\n"
    )
}

fn identity_alert(id: &str, name: &str) -> Value {
    json!({
        "id": id, "source": "test", "time": chrono::Utc::now(),
        "agent": {"cluster": "prod", "namespace": "payments",
                  "workload": format!("Deployment/{name}"), "serviceAccount": name},
        "dimension": "identity",
        "parameter": {"action": "s3:PutObject", "resource": "arn:aws:s3:::partner-payouts/*"},
        "tier": "attack-attempt", "severity": "critical",
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plane_that_never_answers_holds_only_its_alert_and_intake_past_the_limit_is_shed(
) -> Result<()> {
    // IAM at a listener that accepts (the kernel's backlog) and never answers.
    let hole = std::net::TcpListener::bind("127.0.0.1:0")?;
    let ws = Workspace::new(BIN)?;
    ws.add_envelope("stuck", &identity_envelope("stuck"))?;
    ws.add_envelope("other", &identity_envelope("other"))?;
    let mut opts = DaemonOptions::new(format!("http://{}", hole.local_addr()?));
    opts.max_planning = Some(1);
    let daemon = ws.start(&opts).await?;

    let stuck = identity_alert("stuck-1", "stuck");
    let planning = daemon.post("/v1/alerts", &stuck);
    let meanwhile = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Everything else answers while the stuck read holds its incident.
        let started = std::time::Instant::now();
        let (listed, _) = daemon.get("/v1/incidents").await?;
        assert_eq!(listed, 200);
        assert!(daemon.healthy().await);
        // The one planning permit is held: a new alert is shed before anything is recorded.
        let response = reqwest::Client::new()
            .post(format!("{}/v1/alerts", daemon.base))
            .bearer_auth(&daemon.token)
            .json(&identity_alert("other-1", "other"))
            .send()
            .await?;
        assert_eq!(response.status(), 429);
        assert_eq!(
            response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()),
            Some("1")
        );
        // A resend of the stuck alert is answered from the view, not queued behind the read.
        let (status, again) = daemon.post("/v1/alerts", &stuck).await?;
        assert_eq!(
            (status, again["deduplicated"].clone()),
            (200, json!(true)),
            "{again}"
        );
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(2),
            "the daemon waited on the stuck plane: {took:?}"
        );
        let metrics = daemon.metrics().await?;
        assert!(
            metrics.contains("firebreak_alerts_total{outcome=\"shed\"} 1"),
            "{metrics}"
        );
        let (_, list) = daemon.get("/v1/incidents").await?;
        let incidents = list["incidents"].as_array().cloned().unwrap_or_default();
        assert_eq!(
            incidents.len(),
            1,
            "the shed alert left no incident: {list}"
        );
        anyhow::Ok(())
    };
    tokio::select! {
        checked = meanwhile => checked?,
        answered = planning => anyhow::bail!("the stuck plan answered early: {answered:?}"),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_client_parking_1100_idle_connections_does_not_take_healthz_down() -> Result<()> {
    let ws = Workspace::new(BIN)?;
    let daemon = ws.start(&options()).await?;
    let addr = daemon.base.trim_start_matches("http://").to_string();
    // This process holds the client ends: make room for them.
    let (soft, _) = firebreak_serving::raise_nofile_limit()?;
    anyhow::ensure!(
        soft > 1300,
        "the test needs 1,300 descriptors; the hard limit gives {soft}"
    );
    let mut parked = Vec::with_capacity(1100);
    for _ in 0..1100 {
        parked.push(tokio::net::TcpStream::connect(&addr).await?);
    }
    for probe in 0..50 {
        let answered = tokio::time::timeout(Duration::from_secs(2), daemon.healthy()).await;
        assert_eq!(
            answered.ok(),
            Some(true),
            "probe {probe} behind 1,100 idle connections"
        );
    }
    let metrics = daemon.metrics().await?;
    assert!(
        metrics.contains("firebreak_http_connections_open{listener=\"api\"}"),
        "{metrics}"
    );
    drop(parked);
    Ok(())
}
