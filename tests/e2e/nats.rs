//! NATS JetStream as an alert source, end to end: a real `nats-server -js` and the real
//! `firebreak serve` consuming it with a durable pull consumer. Proves ack-after-journal
//! (a crash between the two is redelivered) and that redeliveries are deduplicated.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use async_nats::jetstream;
use firebreak_e2e::daemon::{Daemon, DaemonOptions, Workspace};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_firebreak");
const R0005: &str =
    include_str!("../../../shared/fixtures/kubescape/http-exporter-body-R0005.json");
const STREAM: &str = "FIREBREAK_ALERTS";
const DURABLE: &str = "firebreak";

/// A `nats-server` with JetStream on a free loopback port; killed on drop.
struct NatsServer {
    child: Child,
    url: String,
    _store: tempfile::TempDir,
}

impl NatsServer {
    async fn start() -> Result<NatsServer> {
        let bin = std::env::var("FIREBREAK_NATS_SERVER").map(PathBuf::from).context(
            "FIREBREAK_NATS_SERVER is not set: run ./scripts/test, or eval \"$(./scripts/test --env)\" first",
        )?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let store = tempfile::tempdir()?;
        let child = Command::new(&bin)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let server = NatsServer {
            child,
            url: format!("nats://127.0.0.1:{port}"),
            _store: store,
        };
        let until = Instant::now() + Duration::from_secs(10);
        while async_nats::connect(&server.url).await.is_err() {
            if Instant::now() > until {
                bail!("nats-server did not start on {}", server.url);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(server)
    }

    async fn jetstream(&self) -> Result<jetstream::Context> {
        Ok(jetstream::new(async_nats::connect(&self.url).await?))
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn workspace() -> Result<Workspace> {
    let ws = Workspace::new(BIN)?;
    for (name, cluster, namespace, workload, sa) in [
        (
            "webapp",
            "bobexample",
            "webapp",
            "Deployment/webapp-mywebapp",
            "mywebapp",
        ),
        (
            "scraper",
            "prod",
            "research",
            "Deployment/scraper",
            "scraper",
        ),
    ] {
        ws.add_envelope(
            name,
            &format!(
                "apiVersion: firebreak.dev/v1alpha1\nkind: Envelope\nmetadata: {{name: {name}}}\n\
                 spec:\n  agent: {{cluster: {cluster}, namespace: {namespace}, workload: {workload}, serviceAccount: {sa}}}\n  \
                 version: 1\n  status: converged\n  \
                 network:\n    observed:\n      - {{destination: api.example.com, closure: literal, count: 100, sessions: 10}}\n"
            ),
        )?;
    }
    Ok(ws)
}

fn options(nats: &NatsServer, fault: Option<&'static str>) -> DaemonOptions {
    let mut options = DaemonOptions::new("http://127.0.0.1:9".into());
    options.fault = fault;
    options.extra_config = format!(
        "sources:\n  nats:\n    url: {:?}\n    stream: {STREAM}\n    durable: {DURABLE}\n    ackWait: 2s\n    subjects:\n      alerts.native: native\n      alerts.kubescape: kubescape\n",
        nats.url
    );
    options
}

fn native_alert(id: &str) -> Vec<u8> {
    json!({
        "id": id, "source": "nats-test", "time": "2026-12-01T02:47:00Z",
        "agent": {"cluster": "prod", "namespace": "research",
                  "workload": "Deployment/scraper", "serviceAccount": "scraper"},
        "dimension": "network", "parameter": {"destination": "exfil.example.net"},
        "tier": "anomaly", "severity": "high", "evidence": {}
    })
    .to_string()
    .into_bytes()
}

/// Waits until the daemon has created its stream, then publishes and awaits the store's ack.
async fn publish(js: &jetstream::Context, subject: &str, payload: Vec<u8>) -> Result<()> {
    let until = Instant::now() + Duration::from_secs(10);
    while js.get_stream(STREAM).await.is_err() {
        if Instant::now() > until {
            bail!("the daemon did not create stream {STREAM}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    js.publish(subject.to_string(), payload.into())
        .await?
        .await?;
    Ok(())
}

async fn incidents(d: &Daemon) -> Result<Vec<Value>> {
    let (status, body) = d.get("/v1/incidents").await?;
    assert_eq!(status, 200, "{body:#}");
    Ok(body["incidents"].as_array().cloned().unwrap_or_default())
}

async fn wait_incidents(d: &Daemon, want: usize) -> Result<Vec<Value>> {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let list = incidents(d).await?;
        if list.len() >= want {
            return Ok(list);
        }
        if Instant::now() > until {
            bail!("{} incident(s), want {want}; log:\n{}", list.len(), d.log());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the durable consumer has nothing pending and nothing unacknowledged.
async fn wait_drained(js: &jetstream::Context) -> Result<jetstream::consumer::Info> {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let mut consumer: jetstream::consumer::PullConsumer = js
            .get_stream(STREAM)
            .await?
            .get_consumer(DURABLE)
            .await
            .map_err(|e| anyhow::anyhow!("consumer {DURABLE}: {e}"))?;
        let info = consumer.info().await?.clone();
        if info.num_pending == 0 && info.num_ack_pending == 0 {
            return Ok(info);
        }
        if Instant::now() > until {
            bail!(
                "consumer not drained: {} pending, {} unacknowledged",
                info.num_pending,
                info.num_ack_pending
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn metric(d: &Daemon, source: &str, outcome: &str) -> Result<u64> {
    let text = d.metrics().await?;
    let needle =
        format!("firebreak_source_alerts_total{{outcome=\"{outcome}\",source=\"{source}\"}} ");
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix(&needle))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0))
}

#[tokio::test]
async fn alerts_from_jetstream_are_journaled_acknowledged_and_deduplicated() -> Result<()> {
    let nats = NatsServer::start().await?;
    let ws = workspace()?;
    let d = ws.start(&options(&nats, None)).await?;
    let js = nats.jetstream().await?;
    publish(&js, "alerts.native", native_alert("nats-1")).await?;
    publish(&js, "alerts.native", native_alert("nats-1")).await?;
    publish(&js, "alerts.kubescape", R0005.as_bytes().to_vec()).await?;
    // Bad input is terminated, never redelivered, and never opens an incident.
    publish(&js, "alerts.native", b"{\"id\": \"bad\"}".to_vec()).await?;

    let list = wait_incidents(&d, 2).await?;
    wait_drained(&js).await?;
    let mut agents: Vec<String> = list
        .iter()
        .map(|i| i["agent"].as_str().unwrap_or_default().to_string())
        .collect();
    agents.sort();
    assert_eq!(
        agents,
        [
            "bobexample/webapp/Deployment/webapp-mywebapp",
            "prod/research/Deployment/scraper"
        ],
        "{list:#?}"
    );
    assert_eq!(metric(&d, "native", "deduplicated").await?, 1);
    assert_eq!(metric(&d, "native", "rejected").await?, 1);
    assert!(
        d.log().contains("source alert rejected"),
        "the bad message is logged with its field"
    );
    // Nothing comes back after the ack wait: every message was acknowledged or terminated.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(incidents(&d).await?.len(), 2);
    assert_eq!(metric(&d, "native", "rejected").await?, 1);
    Ok(())
}

#[tokio::test]
async fn a_crash_between_journal_and_ack_is_redelivered_and_deduplicated() -> Result<()> {
    let nats = NatsServer::start().await?;
    let ws = workspace()?;
    let mut crashing = ws.start(&options(&nats, Some("crash-before-ack"))).await?;
    let js = nats.jetstream().await?;
    publish(&js, "alerts.native", native_alert("nats-crash")).await?;
    let status = crashing.wait_exit(Duration::from_secs(20)).await?;
    assert!(!status.success(), "the fault aborts the daemon");

    // The alert was journaled before the crash, and NATS still holds it unacknowledged.
    let d = ws.start(&options(&nats, None)).await?;
    let list = wait_incidents(&d, 1).await?;
    assert_eq!(list.len(), 1, "{list:#?}");
    let info = wait_drained(&js).await?;
    assert!(
        info.delivered.stream_sequence >= 1,
        "the message was delivered"
    );
    assert_eq!(
        metric(&d, "native", "deduplicated").await?,
        1,
        "the redelivery is recognised as the journaled alert; log:\n{}",
        d.log()
    );
    assert_eq!(incidents(&d).await?.len(), 1);
    Ok(())
}
