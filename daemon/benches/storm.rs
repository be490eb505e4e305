//! Alert storm: 1,000,000 alerts over HTTP, duplicate-heavy (1,000 distinct alert ids across 100
//! agents, each resent ~1,000 times, as a node-agent resends one `uniqueID`), into the real
//! `firebreak serve` with its durable journal. Next to it, in the same run and with the same load
//! generator (`wrk`, one thread, 64 connections), a bare axum endpoint that reads the body and
//! answers 202: the ceiling any handler on this machine can reach.
//!
//! Reports alerts/s for both, their ratio, and the daemon's peak RSS (VmHWM).
//!
//!   cargo bench -p firebreak --bench storm            (needs `wrk`: apt-get install wrk)
//!   STORM_ALERTS=200000 cargo bench -p firebreak --bench storm

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
    if Command::new("wrk").arg("--version").output().is_err() {
        return Err("wrk is not installed: apt-get install wrk".into());
    }
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let script = dir.path().join("storm.lua");
    std::fs::write(&script, lua(total)).map_err(|e| e.to_string())?;

    let port = free_port()?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let bare = Server::spawn(
        Command::new(exe).args(["--bare-server", &port.to_string()]),
        port,
    )?;
    let (bare_rate, _) = storm(&script, port, total)?;
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
    std::fs::write(&script, lua(total).replace("TOKEN", token.trim()))
        .map_err(|e| e.to_string())?;
    let (rate, errors) = storm(&script, port, total)?;
    let peak = daemon.peak_rss_kib();
    let journal = std::fs::metadata(dir.path().join("data/journal.db"))
        .map(|m| m.len())
        .unwrap_or(0);
    drop(daemon);

    println!("storm: {total} alerts, {DISTINCT} distinct ids, {AGENTS} agents, wrk 1 thread x {CONNECTIONS} connections");
    println!(
        "  bare axum ceiling: {bare_rate:>10.0} req/s   peak RSS {:>6.1} MiB",
        bare_peak as f64 / 1024.0
    );
    println!("  firebreak serve:   {rate:>10.0} alerts/s peak RSS {:>6.1} MiB   journal {:.1} MiB   non-2xx/errors {errors}",
        peak as f64 / 1024.0, journal as f64 / 1_048_576.0);
    println!("  ratio firebreak / ceiling: {:.2}", rate / bare_rate);
    Ok(())
}

/// Runs wrk until `total` requests are sent; returns (requests/s, non-2xx + socket errors).
fn storm(script: &Path, port: u16, total: usize) -> Result<(f64, u64), String> {
    let started = Instant::now();
    let out = Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{CONNECTIONS}"),
            "-d600s",
            "--latency",
            "-s",
        ])
        .arg(script)
        .arg(format!("http://127.0.0.1:{port}/v1/alerts"))
        .output()
        .map_err(|e| format!("wrk: {e}"))?;
    let elapsed = started.elapsed();
    let text = String::from_utf8_lossy(&out.stdout);
    let done: usize = text
        .lines()
        .find_map(|l| {
            l.trim()
                .split_once(" requests in ")
                .map(|(n, _)| n.trim().to_string())
        })
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| {
            format!(
                "cannot read wrk's output:\n{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    let errors: u64 = text
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            l.strip_prefix("Non-2xx or 3xx responses:")
                .map(|n| n.trim().parse::<u64>().unwrap_or(0))
                .or_else(|| l.starts_with("Socket errors:").then(|| socket_errors(l)))
        })
        .sum();
    if done + CONNECTIONS < total {
        return Err(format!(
            "wrk stopped after {done} of {total} requests:\n{text}"
        ));
    }
    Ok((done as f64 / elapsed.as_secs_f64(), errors))
}

fn socket_errors(line: &str) -> u64 {
    line.split(',')
        .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
        .sum()
}

/// wrk script: `DISTINCT` alert bodies in rotation; each thread stops after `total` requests.
fn lua(total: usize) -> String {
    format!(
        r#"
local bodies = {{}}
for i = 0, {distinct} - 1 do
  local agent = i % {agents}
  bodies[i + 1] = string.format('{{"id":"storm-%d","source":"storm","time":"2026-12-01T02:47:00Z","agent":{{"cluster":"prod","namespace":"ns%d","workload":"Deployment/agent-%d","serviceAccount":"agent-%d"}},"dimension":"network","parameter":{{"destination":"exfil-%d.example.net"}},"tier":"anomaly","severity":"high","evidence":{{}}}}', i, agent, agent, agent, i)
end
local sent = 0
local answered = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer TOKEN"
request = function()
  sent = sent + 1
  return wrk.format(nil, nil, nil, bodies[(sent % {distinct}) + 1])
end
-- wrk stops a thread only from response(): count answers there.
response = function(status, headers, body)
  answered = answered + 1
  if answered >= {total} then wrk.thread:stop() end
end
"#,
        distinct = DISTINCT,
        agents = AGENTS,
    )
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
