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
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

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
    let mut ceiling = storm(port, "", total)?;
    let bare_peak = bare.peak_rss_kib();
    drop(bare);

    let port = free_port()?;
    let config = workspace(dir.path(), port)?;
    let daemon = Server::spawn(
        Command::new(env!("CARGO_BIN_EXE_firebreak"))
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .env("FIREBREAK_LOG", "warn"),
        port,
    )?;
    let token = std::fs::read_to_string(dir.path().join("data/api-token"))
        .map_err(|e| format!("no API token: {e}"))?;
    let mut daemon_run = storm(port, token.trim(), total)?;
    let peak = daemon.peak_rss_kib();
    let journal = std::fs::metadata(dir.path().join("data/journal.db"))
        .map(|m| m.len())
        .unwrap_or(0);
    let incidents = incident_count(port, token.trim())?;
    drop(daemon);

    println!(
        "storm: {total} alerts, {DISTINCT} distinct ids, {AGENTS} agents, \
         one client thread x {CONNECTIONS} keep-alive connections"
    );
    println!(
        "  bare axum ceiling: {:>10.0} req/s    p99 {:>6} us  peak RSS {:>6.1} MiB",
        ceiling.rate(),
        ceiling.p99_micros(),
        bare_peak as f64 / 1024.0
    );
    println!(
        "  firebreak serve:   {:>10.0} alerts/s p99 {:>6} us  peak RSS {:>6.1} MiB  \
         journal {:.1} MiB  incidents {incidents}  non-2xx {}",
        daemon_run.rate(),
        daemon_run.p99_micros(),
        peak as f64 / 1024.0,
        journal as f64 / 1_048_576.0,
        daemon_run.refused
    );
    println!(
        "  ratio firebreak / ceiling: {:.2}",
        daemon_run.rate() / ceiling.rate()
    );
    if daemon_run.refused > 0 {
        return Err(format!(
            "{} alerts were not accepted (first status {:?})",
            daemon_run.refused, daemon_run.first_refusal
        ));
    }
    Ok(())
}

/// What one storm measured.
struct Run {
    sent: usize,
    elapsed: Duration,
    refused: usize,
    first_refusal: Option<u16>,
    latencies_micros: Vec<u32>,
}

impl Run {
    fn rate(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64()
    }

    fn p99_micros(&mut self) -> u32 {
        self.latencies_micros.sort_unstable();
        let at = (self.latencies_micros.len() * 99 / 100).min(self.latencies_micros.len() - 1);
        self.latencies_micros[at]
    }
}

/// Sends `total` alerts to `/v1/alerts` over `CONNECTIONS` keep-alive connections driven by one
/// client thread (the server gets the other core), `DISTINCT` bodies in rotation.
fn storm(port: u16, token: &str, total: usize) -> Result<Run, String> {
    let bodies: Arc<Vec<Bytes>> = Arc::new((0..DISTINCT).map(alert).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let authorization = format!("Bearer {token}");
    runtime.block_on(async move {
        let started = Instant::now();
        let mut tasks = Vec::with_capacity(CONNECTIONS);
        for _ in 0..CONNECTIONS {
            tasks.push(tokio::spawn(connection(
                port,
                authorization.clone(),
                bodies.clone(),
                next.clone(),
                total,
            )));
        }
        let mut run = Run {
            sent: 0,
            elapsed: Duration::ZERO,
            refused: 0,
            first_refusal: None,
            latencies_micros: Vec::with_capacity(total),
        };
        for task in tasks {
            let part = task.await.map_err(|e| e.to_string())??;
            run.sent += part.sent;
            run.refused += part.refused;
            run.first_refusal = run.first_refusal.or(part.first_refusal);
            run.latencies_micros.extend(part.latencies_micros);
        }
        run.elapsed = started.elapsed();
        Ok(run)
    })
}

/// One keep-alive connection sending alerts until `total` have been taken.
async fn connection(
    port: u16,
    authorization: String,
    bodies: Arc<Vec<Bytes>>,
    next: Arc<AtomicUsize>,
    total: usize,
) -> Result<Run, String> {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    let mut run = Run {
        sent: 0,
        elapsed: Duration::ZERO,
        refused: 0,
        first_refusal: None,
        latencies_micros: Vec::new(),
    };
    loop {
        let n = next.fetch_add(1, Ordering::Relaxed);
        if n >= total {
            return Ok(run);
        }
        let request = hyper::Request::post("/v1/alerts")
            .header("host", "127.0.0.1")
            .header("content-type", "application/json")
            .header("authorization", &authorization)
            .body(Full::new(bodies[n % DISTINCT].clone()))
            .map_err(|e| e.to_string())?;
        let sent_at = Instant::now();
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("request {n}: {e}"))?;
        let status = response.status();
        response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("response {n}: {e}"))?;
        run.latencies_micros
            .push(sent_at.elapsed().as_micros().min(u32::MAX as u128) as u32);
        run.sent += 1;
        if !status.is_success() {
            run.refused += 1;
            run.first_refusal.get_or_insert(status.as_u16());
        }
    }
}

/// Alert `i` of the rotation: agent `i % AGENTS`, a destination outside its envelope.
fn alert(i: usize) -> Bytes {
    let agent = i % AGENTS;
    Bytes::from(format!(
        r#"{{"id":"storm-{i}","source":"storm","time":"2026-12-01T02:47:00Z","agent":{{"cluster":"prod","namespace":"ns{agent}","workload":"Deployment/agent-{agent}","serviceAccount":"agent-{agent}"}},"dimension":"network","parameter":{{"destination":"exfil-{i}.example.net"}},"tier":"anomaly","severity":"high","evidence":{{}}}}"#
    ))
}

/// How many incidents the daemon holds after the storm (one per distinct alert expected).
fn incident_count(port: u16, token: &str) -> Result<usize, String> {
    let mut stream =
        std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET /v1/incidents HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {token}\r\nconnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut stream, &mut text).map_err(|e| e.to_string())?;
    Ok(text.matches("\"openedAt\":").count())
}

/// A data dir with one envelope per agent and a config on `port`; no control plane is enabled,
/// so each distinct alert is journaled, planned and escalated.
fn workspace(dir: &Path, port: u16) -> Result<std::path::PathBuf, String> {
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
    let config = dir.join("config.yaml");
    let text = firebreak_config(dir, port);
    std::fs::write(&config, text).map_err(|e| e.to_string())?;
    Ok(config)
}

fn firebreak_config(dir: &Path, port: u16) -> String {
    format!(
        "listen: 127.0.0.1:{port}\ndataDir: {:?}\nenvelopes: ~\nrunbooks: ~\napi: {{tokenFile: ~, maxBodyBytes: 65536}}\nbudget: {{globalPerMinute: 1000000, namespacePerMinute: 1000000, agentPerMinute: 1000000}}\naws: {{enabled: false, region: us-east-1, endpoint: ~, verifyDeadline: 5m}}\n",
        dir.join("data").display().to_string()
    )
}

struct Server {
    child: Child,
}

impl Server {
    fn spawn(command: &mut Command, port: u16) -> Result<Server, String> {
        let child = command
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start server: {e}"))?;
        let server = Server { child };
        let until = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > until {
                return Err(format!("server on {port} did not start"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }

    /// Peak resident set size so far, from /proc (KiB).
    fn peak_rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.split_whitespace().next()?.parse().ok())
            })
            .unwrap_or(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}
