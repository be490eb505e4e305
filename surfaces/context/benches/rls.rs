//! Cost of Firebreak's restrictive RLS policy on a top-k similarity query: 100,000 chunks from
//! 5,000 sources, HNSW index, 1,000 sources quarantined for the agent. The same query runs,
//! interleaved, as the table owner (RLS bypassed: no policy) and as the agent's role (policy
//! applied); the ratio of the two is the result.
//!
//! `FIREBREAK_PG_BIN=… cargo bench -p firebreak-context --bench rls` (./scripts/test --env
//! prints the exports).

#[path = "../tests/support/postgres.rs"]
mod postgres;

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use firebreak_context::{PgVector, PostgresContextConfig};
use tokio_postgres::Client;

const CHUNKS: usize = 100_000;
const SOURCES: usize = 5_000;
const QUARANTINED: usize = 1_000;
const DIM: usize = 32;
const K: i64 = 10;
const WARMUP: usize = 300;
const RUNS: usize = 2_000;

fn query_vector(i: usize) -> String {
    // Deterministic pseudo-random vectors (an LCG) so runs are comparable.
    let mut x = (i as u64)
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let v: Vec<String> = (0..DIM)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            format!("{:.5}", (x >> 33) as f64 / (1u64 << 31) as f64)
        })
        .collect();
    format!("[{}]", v.join(","))
}

async fn timed(client: &Client, sql: &str, i: usize) -> Result<Duration> {
    let v = query_vector(i);
    let start = Instant::now();
    let rows = client.query(sql, &[&v, &K]).await?;
    let took = start.elapsed();
    if rows.len() as i64 != K {
        bail!("top-{K} returned {} rows", rows.len());
    }
    Ok(took)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let pg = postgres::pg();
    let root = postgres::connect(&pg.dsn("postgres")).await?;
    // Each run starts its own cluster: the database and role are always new.
    root.batch_execute("CREATE DATABASE bench").await?;
    root.batch_execute("CREATE ROLE bench_agent NOLOGIN")
        .await?;
    let owner = postgres::connect(&pg.dsn("bench")).await?;
    let setup = Instant::now();
    owner
        .batch_execute(&format!(
            "CREATE EXTENSION IF NOT EXISTS vector;
             CREATE TABLE chunks (id bigserial PRIMARY KEY, source_id text NOT NULL, embedding vector({DIM}) NOT NULL);
             INSERT INTO chunks (source_id, embedding)
               SELECT 'src-' || (i % {SOURCES}),
                      (SELECT array_agg(random() + g * 0 + i * 0) FROM generate_series(1, {DIM}) g)::vector({DIM})
               FROM generate_series(1, {CHUNKS}) i;
             SET maintenance_work_mem = '512MB';
             CREATE INDEX chunks_hnsw ON chunks USING hnsw (embedding vector_l2_ops);
             ANALYZE chunks;
             GRANT SELECT ON chunks TO bench_agent;"
        ))
        .await?;
    let config: PostgresContextConfig = serde_json::from_value(serde_json::json!({
        "dsn": pg.dsn("bench"),
        "tables": [{"table": "public.chunks", "sourceColumn": "source_id", "embeddingColumn": "embedding", "index": "kb"}],
        "roles": {"prod/rag/Deployment/bench-agent": "bench_agent"},
    }))?;
    PgVector::new(config)?.install().await?;
    owner
        .batch_execute(&format!(
            "INSERT INTO firebreak.quarantined_sources (index_name, source_id, agent_role, incident)
               SELECT 'kb', 'src-' || i, 'bench_agent', 'bench' FROM generate_series(0, {}) i;",
            QUARANTINED - 1
        ))
        .await?;
    println!(
        "setup (load {CHUNKS} chunks, HNSW build, install): {:.1?}",
        setup.elapsed()
    );

    let agent = postgres::connect(&pg.dsn("bench")).await?;
    agent.batch_execute("SET ROLE bench_agent").await?;
    let sql = format!(
        "SELECT id, source_id FROM chunks ORDER BY embedding <-> $1::text::vector({DIM}) LIMIT $2"
    );

    let explain = format!(
        "EXPLAIN SELECT id, source_id FROM chunks ORDER BY embedding <-> '{}' LIMIT {K}",
        query_vector(0)
    );
    for (who, c) in [("owner", &owner), ("agent", &agent)] {
        let text: Vec<String> = c
            .query(&explain, &[])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if !text.iter().any(|l| l.contains("chunks_hnsw")) {
            bail!(
                "as {who} the query does not use the HNSW index:\n{}",
                text.join("\n")
            );
        }
    }
    let rows = agent.query(&sql, &[&query_vector(1), &K]).await?;
    let leaked = rows
        .iter()
        .filter(|r| {
            let s: String = r.get(1);
            s.strip_prefix("src-")
                .and_then(|n| n.parse::<usize>().ok())
                .is_some_and(|n| n < QUARANTINED)
        })
        .count();
    if leaked > 0 {
        bail!("the agent retrieved {leaked} quarantined chunks");
    }

    for i in 0..WARMUP {
        timed(&owner, &sql, i).await?;
        timed(&agent, &sql, i).await?;
    }
    let (mut without, mut with) = (Vec::with_capacity(RUNS), Vec::with_capacity(RUNS));
    for i in 0..RUNS {
        let q = WARMUP + i;
        // Alternate which goes first so neither side always gets the warmer cache.
        if i % 2 == 0 {
            without.push(timed(&owner, &sql, q).await?);
            with.push(timed(&agent, &sql, q).await?);
        } else {
            with.push(timed(&agent, &sql, q).await?);
            without.push(timed(&owner, &sql, q).await?);
        }
    }
    without.sort();
    with.sort();
    let mean = |v: &[Duration]| v.iter().map(|d| micros(*d)).sum::<f64>() / v.len() as f64;
    println!("top-{K} similarity, {CHUNKS} chunks, {SOURCES} sources, {QUARANTINED} quarantined for the agent, {RUNS} queries each");
    println!(
        "{:<28} {:>10} {:>10} {:>10} {:>10}",
        "", "mean µs", "p50 µs", "p95 µs", "p99 µs"
    );
    for (name, v) in [
        ("without policy (owner)", &without),
        ("with policy (agent role)", &with),
    ] {
        println!(
            "{name:<28} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
            mean(v),
            micros(pct(v, 0.5)),
            micros(pct(v, 0.95)),
            micros(pct(v, 0.99))
        );
    }
    println!(
        "ratio with/without: mean {:.3}, p50 {:.3}, p99 {:.3} (target ≤ 1.2)",
        mean(&with) / mean(&without),
        micros(pct(&with, 0.5)) / micros(pct(&without, 0.5)),
        micros(pct(&with, 0.99)) / micros(pct(&without, 0.99))
    );
    Ok(())
}
