//! The attack: 1,100 idle connections must not stop `/healthz`. These tests check that
//! every probe is answered (within a bound far above any real latency: a probe stuck behind the
//! flood would take seconds); the latency itself is measured by `benches/flood.rs`.

mod common;

use std::time::Duration;

use common::{fetch, p99, raise_nofile, Server};
use firebreak_serving::Limits;
use tokio::net::TcpStream;
use tokio::time::Instant;

const IDLE: usize = 1100;
const PROBES: usize = 200;
/// Far above the measured p99 (BENCHMARKS.md); below what a probe stuck in the backlog takes.
const ANSWERED_WITHIN: Duration = Duration::from_secs(1);

/// Opens IDLE connections that never send a byte, then times PROBES sequential
/// `GET /healthz`, each on a fresh connection.
async fn flood_then_probe(server: &Server) -> (Vec<TcpStream>, Duration) {
    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        idle.push(TcpStream::connect(server.addr).await.unwrap());
    }
    let mut took = Vec::with_capacity(PROBES);
    for i in 0..PROBES {
        let start = Instant::now();
        let (status, body) = fetch(server.addr, "/healthz")
            .await
            .unwrap_or_else(|e| panic!("probe {i} failed: {e}"));
        took.push(start.elapsed());
        assert_eq!((status, body.as_str()), (200, "ok"), "probe {i}");
    }
    let p99 = p99(took.clone());
    let max = took.iter().max().copied().unwrap_or_default();
    let mean = took.iter().sum::<Duration>() / took.len() as u32;
    println!("{IDLE} idle connections: /healthz mean {mean:?}, p99 {p99:?}, max {max:?} over {PROBES} probes");
    (idle, p99)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_p99_within_50ms_under_1100_idle_connections() {
    let soft = raise_nofile(2 * IDLE as u64 + 256);
    // What the daemon does at start: the default limits fitted to the raised fd limit.
    let limits = Limits::default().clamp_to_nofile(soft, 2);
    assert!(limits.max_connections > IDLE, "{limits:?}");
    let server = Server::start(limits).await;
    let (idle, p99) = flood_then_probe(&server).await;
    // The flood is still parked (inside the limit, nothing to evict) and /healthz answered.
    assert_eq!(server.open(), IDLE as i64);
    assert!(
        p99 <= ANSWERED_WITHIN,
        "p99 {p99:?}: probes waited behind the flood"
    );
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_p99_within_50ms_when_the_flood_exceeds_max_connections() {
    // As on a host whose hard fd limit is 1,024: 1,100 idle connections cannot all be held.
    raise_nofile(2 * IDLE as u64 + 256);
    let limits = Limits::default().clamp_to_nofile(1024, 1);
    assert_eq!(limits.max_connections, 896);
    let server = Server::start(limits).await;
    let (idle, p99) = flood_then_probe(&server).await;
    assert!(server.open() <= 896);
    // Every connection past the limit took an idle one's slot; probes did too.
    assert!(
        server.closed("evicted") >= (IDLE - 896) as u64,
        "evicted {}",
        server.closed("evicted")
    );
    assert_eq!(server.metrics.refused.get(), 0);
    assert!(
        p99 <= ANSWERED_WITHIN,
        "p99 {p99:?}: probes waited behind the flood"
    );
    drop(idle);
}
