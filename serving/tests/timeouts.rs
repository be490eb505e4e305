//! Half-sent requests, idle keep-alive connections, and SSE streams that outlive the idle
//! timeout.

mod common;

use std::time::Duration;

use common::{closed_after, read_response, request, Server};
use firebreak_serving::Limits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{sleep, Instant};

const SHORT: Duration = Duration::from_millis(300);
const LONG: Duration = Duration::from_secs(5);

fn limits(header_read_timeout: Duration, idle_timeout: Duration) -> Limits {
    Limits {
        header_read_timeout,
        idle_timeout,
        ..Limits::default()
    }
}

/// Closed at the header timeout (with slack for a loaded 2-core host), not before.
fn assert_near(took: Option<Duration>, expected: Duration, what: &str) {
    let took = took.unwrap_or_else(|| panic!("{what}: still open after the wait"));
    assert!(
        took >= expected - Duration::from_millis(50)
            && took <= expected + Duration::from_millis(500),
        "{what}: closed after {took:?}, expected about {expected:?}"
    );
}

#[tokio::test]
async fn half_sent_request_is_closed_after_header_read_timeout() {
    let server = Server::start(limits(SHORT, LONG)).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let start = Instant::now();
    // The head never ends: no blank line.
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n")
        .await
        .unwrap();
    let took = closed_after(&mut s, LONG).await.map(|_| start.elapsed());
    assert_near(took, SHORT, "half-sent head");
    assert_eq!(server.closed("header_timeout"), 1);
}

#[tokio::test]
async fn trickled_header_bytes_do_not_extend_the_deadline() {
    let server = Server::start(limits(SHORT, LONG)).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    let start = Instant::now();
    let head = b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaa";
    let mut closed = None;
    for byte in head {
        if s.write_all(&[*byte]).await.is_err() {
            break;
        }
        if closed_after(&mut s, Duration::from_millis(50))
            .await
            .is_some()
        {
            closed = Some(start.elapsed());
            break;
        }
    }
    assert_near(closed, SHORT, "slowloris head");
}

#[tokio::test]
async fn connection_that_never_sends_is_closed_after_header_read_timeout() {
    let server = Server::start(limits(SHORT, LONG)).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    assert_near(closed_after(&mut s, LONG).await, SHORT, "silent connection");
}

#[tokio::test]
async fn idle_keep_alive_connection_is_closed_after_idle_timeout() {
    let idle = Duration::from_millis(400);
    let server = Server::start(limits(LONG, idle)).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(request("/healthz", false).as_bytes())
        .await
        .unwrap();
    assert_eq!(read_response(&mut s).await.unwrap(), (200, "ok".into()));
    assert_near(closed_after(&mut s, LONG).await, idle, "idle keep-alive");
    assert_eq!(server.closed("idle"), 1);
    assert_eq!(server.closed("header_timeout"), 0);
}

#[tokio::test]
async fn keep_alive_outlives_a_shorter_header_read_timeout() {
    // hyper's own header timer would close this at 300 ms: the idle timeout rules here.
    let server = Server::start(limits(SHORT, Duration::from_secs(2))).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    for _ in 0..2 {
        s.write_all(request("/healthz", false).as_bytes())
            .await
            .unwrap();
        assert_eq!(read_response(&mut s).await.unwrap(), (200, "ok".into()));
        sleep(3 * SHORT).await;
    }
    assert_eq!(server.closed("header_timeout"), 0);
}

#[tokio::test]
async fn sse_stream_is_not_cut_by_idle_timeout() {
    let server = Server::start(limits(SHORT, SHORT)).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    // Four events 500 ms apart: each gap is longer than the idle timeout, and the whole
    // stream (2 s) is several times it.
    s.write_all(request("/sse?n=4&ms=500", true).as_bytes())
        .await
        .unwrap();
    let start = Instant::now();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("text/event-stream"), "{text}");
    let ticks = (0..4)
        .filter(|i| text.contains(&format!("data: tick {i}\n")))
        .count();
    assert_eq!(ticks, 4, "{text}");
    assert!(start.elapsed() >= Duration::from_millis(1900));
    assert_eq!(server.closed("idle"), 0);
}

#[tokio::test]
async fn after_an_sse_stream_ends_the_idle_timeout_applies_again() {
    let server = Server::start(limits(LONG, SHORT)).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(request("/sse?n=2&ms=400", false).as_bytes())
        .await
        .unwrap();
    // Chunked: the stream's end is the zero-length chunk.
    let mut raw = Vec::new();
    let mut buf = [0u8; 1024];
    while !raw.ends_with(b"\r\n0\r\n\r\n") {
        let n = s.read(&mut buf).await.unwrap();
        assert!(
            n > 0,
            "closed mid-stream: {}",
            String::from_utf8_lossy(&raw)
        );
        raw.extend_from_slice(&buf[..n]);
    }
    assert_near(closed_after(&mut s, LONG).await, SHORT, "idle after SSE");
}
