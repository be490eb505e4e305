//! A real server on a loopback port, and a raw HTTP/1.1 client that shows exactly what the
//! server did to the socket (answered, closed, reset).
#![allow(dead_code)]

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event, Sse};
use axum::routing::get;
use axum::Router;
use firebreak_serving::{Limits, Metrics};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};

#[derive(Clone)]
struct Gates {
    /// `/hold` waits for a permit here: the test decides when a slow request finishes.
    release: Arc<Semaphore>,
    entered: mpsc::UnboundedSender<()>,
}

pub struct Server {
    pub addr: SocketAddr,
    pub metrics: Metrics,
    pub release: Arc<Semaphore>,
    pub entered: mpsc::UnboundedReceiver<()>,
    stop: Option<oneshot::Sender<()>>,
    pub served: JoinHandle<io::Result<()>>,
}

impl Server {
    pub async fn start(limits: Limits) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (entered_tx, entered) = mpsc::unbounded_channel();
        let release = Arc::new(Semaphore::new(0));
        let router = Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route("/hold", get(hold))
            .route("/sse", get(sse))
            .with_state(Gates {
                release: release.clone(),
                entered: entered_tx,
            });
        let metrics = Metrics::new("test").unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(firebreak_serving::serve_with_metrics(
            listener,
            router,
            limits,
            Some(metrics.clone()),
            async move {
                let _ = stopped.await;
            },
        ));
        Server {
            addr,
            metrics,
            release,
            entered,
            stop: Some(stop),
            served,
        }
    }

    pub fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    pub fn open(&self) -> i64 {
        self.metrics.open.get()
    }

    pub fn closed(&self, reason: &str) -> u64 {
        self.metrics.closed.with_label_values(&[reason]).get()
    }

    /// Waits until the server counts `n` connections open.
    pub async fn wait_open(&self, n: i64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.open() != n {
            assert!(
                Instant::now() < deadline,
                "server has {} connections open, expected {n}",
                self.open()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

async fn hold(State(g): State<Gates>) -> &'static str {
    let _ = g.entered.send(());
    if let Ok(permit) = g.release.acquire().await {
        permit.forget();
    }
    "held"
}

#[derive(serde::Deserialize)]
struct SseQuery {
    n: u32,
    ms: u64,
}

async fn sse(
    Query(q): Query<SseQuery>,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let every = Duration::from_millis(q.ms);
    Sse::new(futures_util::stream::unfold(0, move |i| async move {
        if i == q.n {
            return None;
        }
        tokio::time::sleep(every).await;
        Some((Ok(Event::default().data(format!("tick {i}"))), i + 1))
    }))
}

pub fn request(path: &str, close: bool) -> String {
    let connection = if close { "close" } else { "keep-alive" };
    format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: {connection}\r\n\r\n")
}

/// One request on a fresh connection, read to the server's close: (status, body).
pub async fn fetch(addr: SocketAddr, path: &str) -> io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    s.write_all(request(path, true).as_bytes()).await?;
    let mut raw = Vec::new();
    timeout(Duration::from_secs(5), s.read_to_end(&mut raw))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no response in 5s"))??;
    parse(&raw)
}

pub fn parse(raw: &[u8]) -> io::Result<(u16, String)> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, format!("{text:?}")))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, head.to_string()))?;
    Ok((status, body.to_string()))
}

/// One response on a keep-alive connection, read by its Content-Length.
pub async fn read_response(s: &mut TcpStream) -> io::Result<(u16, String)> {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        raw.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&raw).to_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await?;
    raw.extend_from_slice(&body);
    parse(&raw)
}

/// How long until the server closes `s` (EOF or reset), waiting at most `within`.
pub async fn closed_after(s: &mut TcpStream, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    timeout(within, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return start.elapsed(),
                Ok(_) => continue,
            }
        }
    })
    .await
    .ok()
}

/// Whether the server has already closed `s`, without waiting.
pub async fn is_closed(s: &mut TcpStream) -> bool {
    closed_after(s, Duration::from_millis(20)).await.is_some()
}

pub fn p99(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    let rank = (samples.len() * 99).div_ceil(100);
    samples[rank.saturating_sub(1)]
}

/// The test process holds both ends of every connection: make room for them.
pub fn raise_nofile(needed: u64) -> u64 {
    let (soft, hard) = firebreak_serving::raise_nofile_limit().unwrap();
    assert!(
        soft >= needed,
        "this test needs {needed} descriptors; the hard limit is {hard} (raise it: ulimit -Hn)"
    );
    soft
}
