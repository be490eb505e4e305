//! Alert storm: 1,000,000 alerts over HTTP, duplicate-heavy (1,000 distinct alert ids across 100
//! agents, each resent ~1,000 times, as a node-agent resends one `uniqueID`), into the real
//! `firebreak serve` with its durable journal. Next to it, in the same run and with the same load
//! generator (one client thread driving 64 keep-alive HTTP/1.1 connections with hyper), a bare
//! axum endpoint that reads the body and answers 202: the ceiling any handler on this machine can
//! reach.
//!
//! Reports alerts/s for both, their ratio, and the daemon's peak RSS (VmHWM).
//!
//!   cargo bench -p firebreak --bench storm
//!   STORM_ALERTS=200000 cargo bench -p firebreak --bench storm

use std::io::Write;
use std::path::Path;
use std::process::Command;

use bytes::Bytes;

// Shared by the HTTP benches; each uses its part.
#[allow(dead_code)]
mod driver;
use driver::{drive, free_port, incident_count, serve, Load, Server};

const AGENTS: usize = 100;
const DISTINCT: usize = 1_000;
const CONNECTIONS: usize = 64;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(port) = args
        .iter()
        .position(|a| a == "--bare-server")
        .and_then(|i| args.get(i + 1))
    {
        bare_server(port);
        return;
    }
    if let Err(e) = run() {
        eprintln!("storm bench: {e}");
        std::process::exit(1);
    }
}

/// The ceiling: axum reading the body and answering a fixed JSON, nothing else.
fn bare_server(port: &str) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let app = axum::Router::new().route(
            "/v1/alerts",
            axum::routing::post(|body: axum::body::Bytes| async move {
                (
                    axum::http::StatusCode::ACCEPTED,
                    format!("{{\"received\":{}}}", body.len()),
                )
            }),
        );
        let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}"))
            .await
            .expect("bind");
        axum::serve(listener, app).await.expect("serve");
    });
}

fn run() -> Result<(), String> {
    let total: usize = std::env::var("STORM_ALERTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;

    let port = free_port()?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let bare = Server::spawn(
        Command::new(exe).args(["--bare-server", &port.to_string()]),
        port,
    )?;
    let mut ceiling = drive(Load::new(port, "", bodies(), total), CONNECTIONS)?;
    let bare_peak = bare.peak_rss_kib();
    drop(bare);

    let port = free_port()?;
    envelopes(dir.path())?;
    let (daemon, token) = serve(
        dir.path(),
        port,
        "",
        "{enabled: false, region: us-east-1, endpoint: ~, verifyDeadline: 5m}",
        &[],
    )?;
    let token = token.as_str();
    let mut daemon_run = drive(Load::new(port, token, bodies(), total), CONNECTIONS)?;
    let peak = daemon.peak_rss_kib();
    let journal = std::fs::metadata(dir.path().join("data/journal.db"))
        .map(|m| m.len())
        .unwrap_or(0);
    let incidents = incident_count(port, token)?;
    drop(daemon);

    println!(
        "storm: {total} alerts, {DISTINCT} distinct ids, {AGENTS} agents, \
         one client thread x {CONNECTIONS} keep-alive connections"
    );
    println!(
        "  bare axum ceiling: {:>10.0} req/s    p99 {:>6} us  peak RSS {:>6.1} MiB",
        ceiling.rate(),
        ceiling.percentile_micros(99),
        bare_peak as f64 / 1024.0
    );
    println!(
        "  firebreak serve:   {:>10.0} alerts/s p99 {:>6} us  peak RSS {:>6.1} MiB  \
         journal {:.1} MiB  incidents {incidents}  non-2xx {}",
        daemon_run.rate(),
        daemon_run.percentile_micros(99),
        peak as f64 / 1024.0,
        journal as f64 / 1_048_576.0,
        daemon_run.refused().0
    );
    println!(
        "  ratio firebreak / ceiling: {:.2}",
        daemon_run.rate() / ceiling.rate()
    );
    if let (refused @ 1.., first) = daemon_run.refused() {
        return Err(format!(
            "{refused} alerts were not accepted (first status {first:?})"
        ));
    }
    Ok(())
}

fn bodies() -> Vec<Bytes> {
    (0..DISTINCT).map(alert).collect()
}

/// Alert `i` of the rotation: agent `i % AGENTS`, a destination outside its envelope.
fn alert(i: usize) -> Bytes {
    let agent = i % AGENTS;
    Bytes::from(format!(
        r#"{{"id":"storm-{i}","source":"storm","time":"2026-12-01T02:47:00Z","agent":{{"cluster":"prod","namespace":"ns{agent}","workload":"Deployment/agent-{agent}","serviceAccount":"agent-{agent}"}},"dimension":"network","parameter":{{"destination":"exfil-{i}.example.net"}},"tier":"anomaly","severity":"high","evidence":{{}}}}"#
    ))
}

/// One envelope per agent; no control plane is enabled, so each distinct alert is journaled,
/// planned and escalated.
fn envelopes(dir: &Path) -> Result<(), String> {
    let envelopes = dir.join("data/envelopes");
    std::fs::create_dir_all(&envelopes).map_err(|e| e.to_string())?;
    for a in 0..AGENTS {
        let mut f = std::fs::File::create(envelopes.join(format!("agent-{a}.yaml")))
            .map_err(|e| e.to_string())?;
        write!(
            f,
            "apiVersion: firebreak.dev/v1alpha1\nkind: Envelope\nmetadata: {{name: agent-{a}}}\nspec:\n  agent: {{cluster: prod, namespace: ns{a}, workload: Deployment/agent-{a}, serviceAccount: agent-{a}}}\n  version: 1\n  status: converged\n  network:\n    observed:\n      - {{destination: api.example.com, closure: literal, count: 100, sessions: 10}}\n"
        )
        .map_err(|e| e.to_string())?;
    }
    Ok(())
}
