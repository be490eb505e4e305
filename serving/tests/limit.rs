//! What happens at maxConnections.

mod common;

use std::time::Duration;

use common::{closed_after, fetch, is_closed, read_response, request, Server};
use firebreak_serving::Limits;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const MAX: usize = 3;

fn limits() -> Limits {
    Limits {
        max_connections: MAX,
        ..Limits::default()
    }
}

/// `MAX` connections, each with a `/hold` request in flight.
async fn fill_with_busy(server: &mut Server) -> Vec<TcpStream> {
    let mut busy = Vec::new();
    for _ in 0..MAX {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(request("/hold", true).as_bytes())
            .await
            .unwrap();
        server.entered.recv().await.unwrap();
        busy.push(s);
    }
    busy
}

#[tokio::test]
async fn at_the_limit_with_every_connection_busy_the_next_is_closed_then_served_once_one_ends() {
    let mut server = Server::start(limits()).await;
    let mut busy = fill_with_busy(&mut server).await;

    let mut next = TcpStream::connect(server.addr).await.unwrap();
    let _ = next.write_all(request("/healthz", true).as_bytes()).await;
    let took = closed_after(&mut next, Duration::from_secs(2))
        .await
        .expect("the connection past the limit was not closed");
    assert!(took < Duration::from_millis(500), "closed after {took:?}");
    assert_eq!(server.metrics.refused.get(), 1);
    // Nothing busy was cut to make room.
    for s in &mut busy {
        assert!(!is_closed(s).await);
    }

    // One slow request finishes and its connection closes: its slot is free again.
    server.release.add_permits(1);
    let mut first = busy.remove(0);
    assert_eq!(
        read_response(&mut first).await.unwrap(),
        (200, "held".into())
    );
    drop(first);
    server.wait_open((MAX - 1) as i64).await;
    assert_eq!(
        fetch(server.addr, "/healthz").await.unwrap(),
        (200, "ok".into())
    );

    server.release.add_permits(MAX);
    for mut s in busy {
        assert_eq!(read_response(&mut s).await.unwrap(), (200, "held".into()));
    }
}

#[tokio::test]
async fn at_the_limit_a_new_client_takes_the_slot_of_the_longest_idle_connection() {
    let server = Server::start(limits()).await;
    let mut idle = Vec::new();
    for _ in 0..MAX {
        idle.push(TcpStream::connect(server.addr).await.unwrap());
        // Distinct ages, so "longest idle" is the first.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.wait_open(MAX as i64).await;
    assert_eq!(
        fetch(server.addr, "/healthz").await.unwrap(),
        (200, "ok".into())
    );
    assert!(is_closed(&mut idle[0]).await, "the oldest was not evicted");
    assert!(!is_closed(&mut idle[1]).await);
    assert!(!is_closed(&mut idle[2]).await);
    assert_eq!(server.closed("evicted"), 1);
    assert_eq!(server.metrics.refused.get(), 0);
}

#[tokio::test]
async fn a_busy_connection_is_never_evicted() {
    let mut server = Server::start(limits()).await;
    // One busy, the rest idle keep-alive.
    let mut busy = TcpStream::connect(server.addr).await.unwrap();
    busy.write_all(request("/hold", true).as_bytes())
        .await
        .unwrap();
    server.entered.recv().await.unwrap();
    let mut idle = Vec::new();
    for _ in 1..MAX {
        idle.push(served_and_kept(&server).await);
    }
    // Each newcomer evicts an idle one; once only the busy one is left to evict, none can.
    for _ in 1..MAX {
        idle.push(served_and_kept(&server).await);
    }
    assert!(!is_closed(&mut busy).await);
    server.release.add_permits(1);
    assert_eq!(
        read_response(&mut busy).await.unwrap(),
        (200, "held".into())
    );
}

/// A new connection whose `/healthz` was answered, kept open (idle) afterwards.
async fn served_and_kept(server: &Server) -> TcpStream {
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(request("/healthz", false).as_bytes())
        .await
        .unwrap();
    assert_eq!(read_response(&mut s).await.unwrap(), (200, "ok".into()));
    s
}
