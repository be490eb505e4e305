//! Graceful shutdown: stop accepting, let requests in flight finish.

mod common;

use std::time::Duration;

use common::{closed_after, read_response, request, Server};
use firebreak_serving::Limits;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

#[tokio::test]
async fn shutdown_finishes_the_slow_request_and_refuses_new_connections() {
    let mut server = Server::start(Limits::default()).await;
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(request("/hold", false).as_bytes())
        .await
        .unwrap();
    server.entered.recv().await.unwrap();
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    idle.write_all(request("/healthz", false).as_bytes())
        .await
        .unwrap();
    assert_eq!(read_response(&mut idle).await.unwrap(), (200, "ok".into()));

    server.shutdown();

    // The listener closes: new connects are refused.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match TcpStream::connect(server.addr).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
            // Raced with the listener's close: reset, not served. Try again.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("{e}"),
            Ok(_) => {}
        }
        assert!(Instant::now() < deadline, "still accepting after shutdown");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The idle keep-alive connection is closed at once; the slow request is not.
    let took = closed_after(&mut idle, Duration::from_secs(2)).await;
    assert!(took.is_some(), "idle connection kept open during shutdown");
    assert!(
        !server.served.is_finished(),
        "returned with a request in flight"
    );

    server.release.add_permits(1);
    let (status, body) = read_response(&mut slow).await.unwrap();
    assert_eq!((status, body.as_str()), (200, "held"));
    // Keep-alive is off once draining: the server closes after the response.
    assert!(closed_after(&mut slow, Duration::from_secs(2))
        .await
        .is_some());
    timeout(Duration::from_secs(2), &mut server.served)
        .await
        .expect("serve did not return after the last connection ended")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_half_sent_request_cannot_hold_shutdown_open() {
    let header_read_timeout = Duration::from_millis(300);
    let mut server = Server::start(Limits {
        header_read_timeout,
        ..Limits::default()
    })
    .await;
    let mut half = TcpStream::connect(server.addr).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n")
        .await
        .unwrap();
    server.wait_open(1).await;
    let start = Instant::now();
    server.shutdown();
    timeout(Duration::from_secs(2), &mut server.served)
        .await
        .expect("a half-sent request kept serve from returning")
        .unwrap()
        .unwrap();
    assert!(start.elapsed() <= header_read_timeout + Duration::from_millis(500));
    assert!(closed_after(&mut half, Duration::from_secs(1))
        .await
        .is_some());
}

#[tokio::test]
async fn invalid_limits_are_refused_before_serving() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let limits = Limits {
        max_connections: 0,
        ..Limits::default()
    };
    let e = firebreak_serving::serve(listener, axum::Router::new(), limits, async {})
        .await
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    assert!(e.to_string().contains("maxConnections = 0"), "{e}");
}
