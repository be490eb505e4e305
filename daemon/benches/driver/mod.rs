//! The load driver the HTTP benches share: keep-alive HTTP/1.1 connections driven by hyper from
//! one client thread (so the server under test, in its own process, gets the other core), and
//! the server's process with its peak RSS.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

/// What one load measured: how many requests, their statuses and client-side latencies.
#[derive(Default)]
pub struct Run {
    pub sent: usize,
    pub elapsed: Duration,
    pub statuses: BTreeMap<u16, usize>,
    latencies_micros: Vec<u32>,
}

impl Run {
    pub fn rate(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64()
    }

    /// Nearest-rank percentile `p` (0–100) of the latencies, in µs.
    pub fn percentile_micros(&mut self, p: usize) -> u32 {
        self.latencies_micros.sort_unstable();
        let n = self.latencies_micros.len();
        if n == 0 {
            return 0;
        }
        self.latencies_micros[(n * p / 100).min(n - 1)]
    }

    /// Answers outside 2xx, and the first such status.
    pub fn refused(&self) -> (usize, Option<u16>) {
        let refused: Vec<(u16, usize)> = self
            .statuses
            .iter()
            .filter(|(status, _)| !(200..300).contains(*status))
            .map(|(status, n)| (*status, *n))
            .collect();
        (
            refused.iter().map(|(_, n)| n).sum(),
            refused.first().map(|(status, _)| *status),
        )
    }

    fn absorb(&mut self, part: Run) {
        self.sent += part.sent;
        for (status, n) in part.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        self.latencies_micros.extend(part.latencies_micros);
    }
}

/// Requests to send: body `n % bodies.len()` for the n-th, until `total` are taken or `stop`.
pub struct Load {
    pub port: u16,
    pub authorization: String,
    pub bodies: Vec<Bytes>,
    pub total: usize,
    /// Whether a shed alert (429) is sent again after its `Retry-After`, as a sender would.
    pub retry_shed: bool,
    /// A pause after each answer (a paced prober rather than a flood).
    pub pause: Duration,
    next: AtomicUsize,
    stop: AtomicBool,
}

impl Load {
    pub fn new(port: u16, token: &str, bodies: Vec<Bytes>, total: usize) -> Load {
        Load {
            port,
            authorization: format!("Bearer {token}"),
            bodies,
            total,
            retry_shed: false,
            pause: Duration::ZERO,
            next: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        }
    }

    /// The same load, each shed alert sent again after its `Retry-After`.
    pub fn retrying_shed(self) -> Load {
        Load {
            retry_shed: true,
            ..self
        }
    }

    /// The same load with `pause` after each answer.
    pub fn paced(self, pause: Duration) -> Load {
        Load { pause, ..self }
    }

    /// Ends the load after the requests in flight.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Drives the load over `connections` connections on the current runtime.
    pub async fn drive(self: &Arc<Self>, connections: usize) -> Result<Run, String> {
        let started = Instant::now();
        let tasks: Vec<_> = (0..connections)
            .map(|_| tokio::spawn(connection(self.clone())))
            .collect();
        let mut run = Run::default();
        for task in tasks {
            run.absorb(task.await.map_err(|e| e.to_string())??);
        }
        run.elapsed = started.elapsed();
        Ok(run)
    }
}

/// Runs `load` on a current-thread runtime of its own: one client thread.
pub fn drive(load: Load, connections: usize) -> Result<Run, String> {
    runtime()?.block_on(Arc::new(load).drive(connections))
}

pub fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

/// One keep-alive connection sending alerts until the load is taken or stopped.
async fn connection(load: Arc<Load>) -> Result<Run, String> {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", load.port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    let mut run = Run::default();
    loop {
        let n = load.next.fetch_add(1, Ordering::Relaxed);
        if n >= load.total || load.stop.load(Ordering::Relaxed) {
            return Ok(run);
        }
        loop {
            let status = send(&mut sender, &load, n, &mut run).await?;
            if status != 429 || !load.retry_shed {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        if !load.pause.is_zero() {
            tokio::time::sleep(load.pause).await;
        }
    }
}

/// Sends request `n` of the load; records its status and latency.
async fn send(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    load: &Load,
    n: usize,
    run: &mut Run,
) -> Result<u16, String> {
    let request = hyper::Request::post("/v1/alerts")
        .header("host", "127.0.0.1")
        .header("content-type", "application/json")
        .header("authorization", &load.authorization)
        .body(Full::new(load.bodies[n % load.bodies.len()].clone()))
        .map_err(|e| e.to_string())?;
    let sent_at = Instant::now();
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("request {n}: {e}"))?;
    let status = response.status().as_u16();
    response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("response {n}: {e}"))?;
    run.latencies_micros
        .push(sent_at.elapsed().as_micros().min(u32::MAX as u128) as u32);
    run.sent += 1;
    *run.statuses.entry(status).or_default() += 1;
    Ok(status)
}

/// `GET path` with the bearer token, on a fresh connection; the body as text.
pub fn get(port: u16, token: &str, path: &str) -> Result<String, String> {
    let mut stream =
        std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {token}\r\nconnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut stream, &mut text).map_err(|e| e.to_string())?;
    Ok(text)
}

/// How many incidents the daemon holds.
pub fn incident_count(port: u16, token: &str) -> Result<usize, String> {
    Ok(get(port, token, "/v1/incidents")?
        .matches("\"openedAt\":")
        .count())
}

/// The real `firebreak serve` (log level warn) on `port` with its data under `dir`, envelopes
/// already in `dir/data/envelopes`, the budget out of the way; `api` adds keys to the `api`
/// section, `aws` is the whole `aws` section. Returns the server and its API token.
pub fn serve(
    dir: &Path,
    port: u16,
    api: &str,
    aws: &str,
    envs: &[(&str, &str)],
) -> Result<(Server, String), String> {
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{port}\ndataDir: {:?}\nenvelopes: ~\nrunbooks: ~\n\
             api: {{tokenFile: ~, maxBodyBytes: 65536{api}}}\n\
             budget: {{globalPerMinute: 1000000, namespacePerMinute: 1000000, agentPerMinute: 1000000}}\n\
             aws: {aws}\n",
            dir.join("data").display().to_string()
        ),
    )
    .map_err(|e| e.to_string())?;
    let server = Server::spawn(
        Command::new(env!("CARGO_BIN_EXE_firebreak"))
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .envs(envs.iter().copied())
            .env("FIREBREAK_LOG", "warn"),
        port,
    )?;
    let token = std::fs::read_to_string(dir.join("data/api-token"))
        .map_err(|e| format!("no API token: {e}"))?;
    Ok((server, token.trim().to_string()))
}

/// A server process, killed when dropped.
pub struct Server {
    child: Child,
}

impl Server {
    /// Spawns `command` and waits until `port` accepts.
    pub fn spawn(command: &mut Command, port: u16) -> Result<Server, String> {
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
    pub fn peak_rss_kib(&self) -> u64 {
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

pub fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}
