//! Propagation latency: `DelegationPlane` apply/revert → the Python shim's `FeedClient`
//! receiving the new document over SSE on loopback. Wall-clock stamps on both sides of the
//! same machine; one change at a time (the next waits for the previous to arrive).
//!
//! `FIREBREAK_SHIM_PYTHON=… cargo bench -p firebreak-delegation --bench propagation`
//! (`FIREBREAK_BENCH_CHANGES`, default 200).

use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use axum::serve::ListenerExt;
use firebreak_containment::ids::{IncidentId, PlanId};
use firebreak_containment::plane::{Change, PlanInput, Plane};
use firebreak_containment::{Alert, Envelope, EnvelopeStore};
use firebreak_delegation::{feed, DelegationPlane, Feed, FeedAuth, FeedConfig};
use tokio::io::{AsyncBufReadExt, BufReader};

const AGENT: &str = "bench/agents/Deployment/a";
const TOKEN: &str = "bench-feed-token-000000000001";

fn now_ns() -> Result<u128> {
    Ok(SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos())
}

fn percentile(sorted: &[u128], p: f64) -> u128 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let python = std::env::var("FIREBREAK_SHIM_PYTHON").context(
        "FIREBREAK_SHIM_PYTHON is not set: run ./scripts/test --env, or scripts/install/delegation.sh",
    )?;
    let changes: usize = std::env::var("FIREBREAK_BENCH_CHANGES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);

    let envelope = Envelope::from_yaml(
        "apiVersion: firebreak.dev/v1alpha1\nkind: Envelope\nmetadata: {name: a}\nspec:\n  \
         agent: {cluster: bench, namespace: agents, workload: Deployment/a, serviceAccount: a}\n  \
         version: 1\n  status: converged\n",
    )?;
    let mut store = EnvelopeStore::default();
    store.insert(envelope.clone(), "a.yaml".into())?;
    let feed = Feed::default();
    let plane = DelegationPlane::new(feed.clone(), &store);
    let alert = Alert::from_json(
        serde_json::json!({"id": "bench", "source": "bench", "time": "2026-11-22T05:00:00Z",
            "agent": {"cluster": "bench", "namespace": "agents", "workload": "Deployment/a", "serviceAccount": "a"},
            "dimension": "delegation", "parameter": {"to": "bench/agents/Deployment/b"},
            "tier": "attack-attempt", "severity": "critical"})
        .to_string()
        .as_bytes(),
    )?;
    let incident = IncidentId::from("bench");
    let input = PlanInput {
        incident: &incident,
        plan: &PlanId::nth(&incident, 1),
        alert: &alert,
        envelope: &envelope,
    };
    let sever = plane
        .observe(&input)
        .await?
        .candidates(&input)?
        .remove(0)
        .spec;

    let config: FeedConfig = serde_json::from_value(serde_json::json!({"tokens": {TOKEN: "*"}}))?;
    let app = feed::router(feed.clone(), FeedAuth::new(&config)?, None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, app).await });

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/propagation_shim.py");
    let mut shim = tokio::process::Command::new(&python)
        .args([script, &url, TOKEN, AGENT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {python} {script}"))?;
    let mut lines = BufReader::new(shim.stdout.take().context("shim stdout")?).lines();
    // The initial document, then `ready`.
    loop {
        match lines.next_line().await? {
            Some(line) if line == "ready" => break,
            Some(_) => {}
            None => bail!("the shim exited before it was ready"),
        }
    }

    let mut latencies = Vec::with_capacity(changes);
    for i in 0..changes {
        let applied_at = now_ns()?;
        if i % 2 == 0 {
            plane.change(&sever, Change::Apply).await?;
        } else {
            plane.change(&sever, Change::Revert).await?;
        }
        let want = feed.version();
        loop {
            let line = tokio::time::timeout(Duration::from_secs(5), lines.next_line())
                .await
                .context("the shim received nothing within 5 s")??
                .context("the shim exited")?;
            let mut parts = line.split_whitespace();
            let version: u64 = parts.next().context("version")?.parse()?;
            let received: u128 = parts.next().context("time")?.parse()?;
            if version == want {
                latencies.push(received.saturating_sub(applied_at));
                break;
            }
        }
    }
    drop(shim.stdin.take());
    latencies.sort_unstable();
    let us = |ns: u128| ns as f64 / 1000.0;
    println!(
        "propagation apply → Python shim (SSE, loopback), {changes} changes: p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs",
        us(percentile(&latencies, 0.50)),
        us(percentile(&latencies, 0.99)),
        us(*latencies.last().context("no change measured")?),
    );
    Ok(())
}
