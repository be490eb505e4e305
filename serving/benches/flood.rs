//! `/healthz` latency under the attack, against the same server with no attack in the
//! same run: 200 sequential probes on fresh connections, first with no other connection open
//! (the baseline), then with 1,100 idle connections parked (inside the limit), then with the
//! limit cut to 896 as on a host stuck at 1,024 descriptors (every newcomer evicts an idle one).
//!
//! Run: `cargo bench -p firebreak-serving --bench flood`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use common::{fetch, raise_nofile, Server};
use firebreak_serving::Limits;
use tokio::net::TcpStream;
use tokio::time::Instant;

const IDLE: usize = 1100;
const PROBES: usize = 200;

struct Latency {
    p50: Duration,
    p99: Duration,
    max: Duration,
}

async fn probe(server: &Server) -> Latency {
    let mut took = Vec::with_capacity(PROBES);
    for i in 0..PROBES {
        let start = Instant::now();
        match fetch(server.addr, "/healthz").await {
            Ok((200, _)) => took.push(start.elapsed()),
            other => panic!("probe {i}: {other:?}"),
        }
    }
    took.sort();
    let at = |q: usize| took[(took.len() * q).div_ceil(100).saturating_sub(1)];
    Latency {
        p50: at(50),
        p99: at(99),
        max: took[took.len() - 1],
    }
}

async fn flooded(limits: Limits) -> Latency {
    let server = Server::start(limits).await;
    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        match TcpStream::connect(server.addr).await {
            Ok(s) => idle.push(s),
            Err(e) => panic!("flood connection: {e}"),
        }
    }
    let latency = probe(&server).await;
    drop(idle);
    latency
}

fn main() {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => panic!("runtime: {e}"),
    };
    runtime.block_on(async {
        let soft = raise_nofile(2 * IDLE as u64 + 256);
        let fitted = Limits::default().clamp_to_nofile(soft, 2);
        let baseline = probe(&Server::start(fitted).await).await;
        let parked = flooded(fitted).await;
        let evicting = flooded(Limits::default().clamp_to_nofile(1024, 1)).await;
        let ratio = |d: Duration| d.as_secs_f64() / baseline.p99.as_secs_f64();
        println!("case                         p50        p99        max        p99 / baseline");
        for (name, l) in [
            ("no other connection", &baseline),
            ("1,100 idle, within limit", &parked),
            ("1,100 idle, limit 896", &evicting),
        ] {
            println!(
                "{name:<28} {:<10.2?} {:<10.2?} {:<10.2?} {:.2}x",
                l.p50,
                l.p99,
                l.max,
                ratio(l.p99)
            );
        }
    });
}
