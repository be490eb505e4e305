//! Gateway benchmarks against a real FastMCP upstream on loopback:
//!
//! 1. `tools/call` through the gateway vs directly to the same upstream, same client, same run,
//!    calls interleaved (target: p50 ratio ≤ 1.05). Two clients: the official Python MCP client
//!    (what agents run) and a raw HTTP client (no client-side cost, so the gateway's share shows).
//! 2. Alert accepted → first refused call of that tool by that agent (target ≤ 10 ms).
//!
//! Run: `cargo bench -p firebreak-tools --bench gateway` with the `FIREBREAK_MCP_*` exports of
//! `./scripts/test --env`.

// Shared with the e2e test, which uses all of it; this binary needs only the servers.
#[allow(dead_code)]
#[path = "../../../tests/e2e/tools/harness.rs"]
mod harness;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use firebreak_containment::budget::BudgetConfig;
use firebreak_containment::engine::{Engine, EngineConfig, Parts, Request};
use firebreak_containment::incident::PlanStatus;
use firebreak_containment::journal::Journal;
use firebreak_containment::metrics::Metrics;
use firebreak_containment::plane::Planes;
use firebreak_containment::runbook::Runbooks;
use firebreak_containment::{Alert, Envelope, EnvelopeStore};
use firebreak_tools::{Gateway, GatewayConfig, Policy, ToolsPlane};
use harness::Server;
use serde_json::{json, Value};

const TOKEN: &str = "token-payment-agent-bench";
const AGENT: &str = "prod/payments/Deployment/payment-agent";

fn percentile(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(|a, b| a.total_cmp(b));
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i]
}

fn report(what: &str, direct: &mut [f64], gateway: &mut [f64]) {
    let (d50, g50) = (percentile(direct, 0.5), percentile(gateway, 0.5));
    let (d99, g99) = (percentile(direct, 0.99), percentile(gateway, 0.99));
    println!(
        "{what}: n={} direct p50 {:.0} µs p99 {:.0} µs | gateway p50 {:.0} µs p99 {:.0} µs | p50 ratio {:.3} (+{:.0} µs)",
        direct.len(),
        d50 * 1e6,
        d99 * 1e6,
        g50 * 1e6,
        g99 * 1e6,
        g50 / d50,
        (g50 - d50) * 1e6
    );
}

/// One stateless 2026-07-28 `tools/call`, as the Python SDK sends it.
fn call_body(tool: &str, id: u64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
        "name": tool, "arguments": {"text": "bench", "account": "acme"},
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                  "io.modelcontextprotocol/clientCapabilities": {},
                  "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "1"}}}})
}

/// Calls `tool`; returns whether the result was an error.
async fn call(client: &reqwest::Client, url: &str, tool: &str, id: u64) -> Result<bool> {
    let response = client
        .post(url)
        .bearer_auth(TOKEN)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", tool)
        .json(&call_body(tool, id))
        .send()
        .await?;
    let answer: Value = response.json().await?;
    if answer.get("result").is_none() {
        bail!("tools/call {tool} failed: {answer}");
    }
    Ok(answer["result"]["isError"] == json!(true))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let upstream = Server::fastmcp()?;
    let config: GatewayConfig = serde_json::from_value(json!({
        "listen": "127.0.0.1:0",
        "upstreams": {"fastmcp": {"url": upstream.url}},
        "agents": {TOKEN: AGENT},
    }))?;
    let policy = Arc::new(Policy::default());
    let plane = ToolsPlane::new(policy.clone(), ["fastmcp".to_string()]);
    let mut envelopes = EnvelopeStore::default();
    envelopes.insert(
        Envelope::from_yaml(
            "apiVersion: firebreak.dev/v1alpha1\nkind: Envelope\nmetadata: {name: payment-agent}\n\
             spec:\n  agent: {cluster: prod, namespace: payments, workload: Deployment/payment-agent, serviceAccount: payment-agent}\n\
             \x20 version: 1\n  status: converged\n  tools:\n    observed:\n\
             \x20     - {server: fastmcp, tool: echo, closure: literal, count: 50, sessions: 9}\n",
        )?,
        "payment-agent.yaml".into(),
    )?;
    let dir = tempfile::tempdir()?;
    let mut planes = Planes::default();
    planes.register(plane)?;
    let engine = Engine::open(Parts {
        journal: Journal::open(&dir.path().join("journal.db"))?,
        envelopes,
        runbooks: Runbooks::embedded()?,
        planes,
        metrics: Metrics::new()?,
        config: EngineConfig {
            // The benchmark contains one agent many times a minute on purpose.
            budget: BudgetConfig {
                global_per_minute: 100_000,
                namespace_per_minute: 100_000,
                agent_per_minute: 100_000,
            },
            verify_poll: Duration::from_millis(1),
            ..EngineConfig::default()
        },
    })?;
    policy.attach_engine(engine.clone());
    let gateway = Gateway::new(config, policy)?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let gateway_url = format!("http://{}/mcp/fastmcp", listener.local_addr()?);
    // The gateway gets its own runtime, as in the daemon: the benchmark's client must not
    // compete with it for the same worker threads.
    std::thread::spawn(move || -> Result<()> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            Ok(gateway.serve_on(listener, None).await?)
        })
    });

    // 1a. Raw HTTP client, interleaved.
    let client = reqwest::Client::new();
    let (mut direct, mut through) = (Vec::new(), Vec::new());
    for i in 0..2200u64 {
        for (url, samples) in [(&upstream.url, &mut direct), (&gateway_url, &mut through)] {
            let start = Instant::now();
            if call(&client, url, "echo", i).await? {
                bail!("echo failed");
            }
            if i >= 200 {
                samples.push(start.elapsed().as_secs_f64());
            }
        }
    }
    report("tools/call, raw HTTP client", &mut direct, &mut through);

    // 1b. The official Python client, interleaved in one process.
    let output =
        Command::new(std::env::var("FIREBREAK_MCP_PYTHON").context("FIREBREAK_MCP_PYTHON")?)
            .arg(harness::script("bench_client.py"))
            .args([&upstream.url, &gateway_url, TOKEN, "1000"])
            .stderr(Stdio::inherit())
            .output()?;
    let samples: Value = serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "bench_client.py printed {:?}",
            String::from_utf8_lossy(&output.stdout)
        )
    })?;
    let mut direct: Vec<f64> = serde_json::from_value(samples["direct"].clone())?;
    let mut through: Vec<f64> = serde_json::from_value(samples["gateway"].clone())?;
    report(
        "tools/call, official Python MCP client",
        &mut direct,
        &mut through,
    );

    // 2. Alert accepted → first refused call.
    // From `submit` called (journal + plan + apply) and from `submit` returned (the alert is
    // durable and planned: "accepted"); the automatic apply runs in the background.
    let (mut to_refusal, mut from_accepted) = (Vec::new(), Vec::new());
    for i in 0..200 {
        let alert = Alert::from_json(
            json!({"id": format!("bench-{i}"), "source": "bench", "time": "2026-11-22T05:00:00Z",
                   "agent": {"cluster": "prod", "namespace": "payments",
                             "workload": "Deployment/payment-agent", "serviceAccount": "payment-agent"},
                   "dimension": "tools", "parameter": {"server": "fastmcp", "tool": "export_payouts"},
                   "tier": "attack-attempt", "severity": "critical"})
            .to_string()
            .as_bytes(),
        )?;
        let start = Instant::now();
        let submitted = engine.submit(alert, Request::Runbook).await?;
        let accepted = Instant::now();
        let mut n = 0u64;
        while !call(&client, &gateway_url, "export_payouts", n).await? {
            n += 1;
            if start.elapsed() > Duration::from_secs(5) {
                bail!("no refusal within 5 s: {:?}", submitted.status);
            }
        }
        to_refusal.push(start.elapsed().as_secs_f64());
        from_accepted.push(accepted.elapsed().as_secs_f64());
        // Let the background apply finish verifying before rolling back.
        let plan = submitted.plan.as_ref().context("the alert was planned")?;
        let settled = engine.settled(&submitted.incident, &plan.id).await;
        if settled != Some(PlanStatus::Contained) {
            bail!("{} settled {settled:?}, not contained", plan.id);
        }
        engine.rollback(&submitted.incident, None).await?;
    }
    for (what, samples) in [
        ("alert submitted → first refused call", &mut to_refusal),
        (
            "alert accepted (submit returned) → first refused call",
            &mut from_accepted,
        ),
    ] {
        println!(
            "{what}: n={} p50 {:.2} ms p99 {:.2} ms max {:.2} ms",
            samples.len(),
            percentile(samples, 0.5) * 1e3,
            percentile(samples, 0.99) * 1e3,
            percentile(samples, 1.0) * 1e3
        );
    }
    Ok(())
}
