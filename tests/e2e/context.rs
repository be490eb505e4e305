//! Firebreak end to end on the context surface's pgvector plane: the real engine, in process,
//! and the plane driven directly through `Plane` (docs/adding-a-plane.md §6), against a real
//! PostgreSQL 16 + pgvector (the PyPI `pgserver` build) running as `nobody`. Every outcome is
//! read at the enforcement point: a similarity query run as the agent's own role.
//!
//! One server per test binary; each test gets its own database and roles, so tests run in
//! parallel and the statement log can be read per database (`log_line_prefix` names it).

#[path = "../../surfaces/context/tests/support/postgres.rs"]
mod postgres;
#[path = "../../surfaces/context/tests/support/scenario.rs"]
mod scenario;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use firebreak_containment::plane::{erase, Change, Check, Plane, PlaneError};
use firebreak_containment::PlanStatus;
use firebreak_context::{
    ddl, PgVector, PostgresContextConfig, QUARANTINE_INDEX, QUARANTINE_SOURCE, REVOKE_INDEX,
};
use postgres::{connect, pg};
use scenario::{
    alert, candidate, plan_of, proposals, spec_of, Harness, Input, Observed, INJECTED, PERMITTED,
};
use tokio_postgres::Client;

/// Whether any statement of a (possibly multi-statement) log entry writes.
fn is_mutating(entry: &str) -> bool {
    let code: String = entry
        .lines()
        .map(|l| l.split("--").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    code.split(';').any(|stmt| {
        let s = stmt.trim_start().to_ascii_uppercase();
        [
            "INSERT", "UPDATE", "DELETE", "CREATE", "ALTER", "DROP", "GRANT", "REVOKE", "TRUNCATE",
            "WITH", "DO", "COPY", "COMMENT", "MERGE",
        ]
        .iter()
        .any(|k| s.starts_with(k))
    })
}

/// A database of chunks: four sources in index `kb`, an HNSW index, two agents with roles.
struct Fixture {
    db: String,
    admin: Client,
    config: PostgresContextConfig,
    role_a: String,
    role_b: String,
}

const DIM: usize = 8;
const SOURCES: &[&str] = &[
    "wiki:handbook",
    "wiki:policies",
    "crm:accounts",
    "email:inj-4471",
];

fn embedding(i: usize) -> String {
    let v: Vec<String> = (0..DIM)
        .map(|d| format!("{:.4}", (((i * 31 + d * 17) % 97) as f64) / 97.0))
        .collect();
    format!("[{}]", v.join(","))
}

async fn fixture(name: &str) -> Result<Fixture> {
    let pg = pg();
    let db = format!("t_{name}");
    let root = connect(&pg.dsn("postgres")).await?;
    // Each test process has its own cluster, so the database is always new.
    root.batch_execute(&format!("CREATE DATABASE {db}")).await?;
    let (role_a, role_b) = (format!("{db}_agent_a"), format!("{db}_agent_b"));
    for r in [&role_a, &role_b] {
        root.batch_execute(&format!("CREATE ROLE {r} NOLOGIN"))
            .await?;
    }
    let admin = connect(&pg.dsn(&db)).await?;
    admin
        .batch_execute(&format!(
            "CREATE EXTENSION vector;
             CREATE TABLE chunks (id bigserial PRIMARY KEY, source_id text NOT NULL, body text NOT NULL, embedding vector({DIM}) NOT NULL);
             CREATE TABLE notes (id bigserial PRIMARY KEY, body text, embedding vector({DIM}));
             GRANT SELECT ON chunks, notes TO {role_a}, {role_b};"
        ))
        .await?;
    let mut values = Vec::new();
    for i in 0..2000 {
        let src = SOURCES[i % SOURCES.len()];
        values.push(format!("('{src}', 'chunk {i}', '{}')", embedding(i)));
    }
    admin
        .batch_execute(&format!(
            "INSERT INTO chunks (source_id, body, embedding) VALUES {};
             CREATE INDEX chunks_hnsw ON chunks USING hnsw (embedding vector_l2_ops);
             ANALYZE chunks;",
            values.join(",")
        ))
        .await?;
    let config: PostgresContextConfig = serde_json::from_value(serde_json::json!({
        "dsn": pg.dsn(&db),
        "tables": [{"table": "public.chunks", "sourceColumn": "source_id", "embeddingColumn": "embedding", "index": "kb"}],
        "roles": {
            "prod/rag/Deployment/agent-a": role_a,
            "prod/rag/Deployment/agent-b": role_b,
        },
        "verifyDeadline": "10s",
    }))?;
    Ok(Fixture {
        db,
        admin,
        config,
        role_a,
        role_b,
    })
}

/// What both agents' envelopes observed: the permitted sources, and the injected one once.
fn observed() -> Vec<Observed> {
    [PERMITTED, &[(INJECTED, 1, 1)]].concat()
}

/// The engine over one pgvector plane (its own pool). Agent C has an envelope but no database
/// role.
fn engine(config: &PostgresContextConfig) -> Result<Harness> {
    Harness::new(
        PgVector::new(config.clone())?,
        &["agent-a", "agent-b", "agent-c"],
        &observed(),
    )
}

/// The agent's retrieval: top-k by similarity, as its own role.
async fn retrieve(client: &Client, role: &str, k: i64) -> Result<Vec<String>> {
    let tx_sql = format!("SET ROLE {role}; SET enable_seqscan = off;");
    client.batch_execute(&tx_sql).await?;
    let rows = client
        .query(
            &format!(
                "SELECT source_id FROM chunks ORDER BY embedding <-> '{}' LIMIT $1",
                embedding(3)
            ),
            &[&k],
        )
        .await;
    client
        .batch_execute("RESET ROLE; RESET enable_seqscan")
        .await?;
    Ok(rows?.iter().map(|r| r.get(0)).collect())
}

/// Every source the role can read at all (one retrieval filtered per source).
async fn visible_sources(client: &Client, role: &str) -> Result<BTreeSet<String>> {
    let mut seen = BTreeSet::new();
    for src in SOURCES {
        client.batch_execute(&format!("SET ROLE {role}")).await?;
        let rows = client
            .query(
                &format!("SELECT source_id FROM chunks WHERE source_id = $1 ORDER BY embedding <-> '{}' LIMIT 3", embedding(7)),
                &[src],
            )
            .await;
        client.batch_execute("RESET ROLE").await?;
        if !rows?.is_empty() {
            seen.insert(src.to_string());
        }
    }
    Ok(seen)
}

async fn explain(client: &Client, role: &str) -> Result<String> {
    client.batch_execute(&format!("SET ROLE {role}")).await?;
    let rows = client
        .query(
            &format!(
                "EXPLAIN SELECT source_id FROM chunks ORDER BY embedding <-> '{}' LIMIT 5",
                embedding(3)
            ),
            &[],
        )
        .await;
    client.batch_execute("RESET ROLE").await?;
    Ok(rows?
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n"))
}

fn all_sources() -> BTreeSet<String> {
    SOURCES.iter().map(|s| s.to_string()).collect()
}

fn without(src: &str) -> BTreeSet<String> {
    let mut s = all_sources();
    s.remove(src);
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarantine_source_hides_it_from_one_agent_only_and_rolls_back() -> Result<()> {
    let f = fixture("quarantine").await?;
    let plane = PgVector::new(f.config.clone())?;
    plane.install().await?;
    // Installing twice changes nothing (idempotent DDL).
    plane.install().await?;
    assert_eq!(visible_sources(&f.admin, &f.role_a).await?, all_sources());
    let h = engine(&f.config)?;

    let submitted = h
        .contain(alert("a-1", "agent-a", "kb", Some(INJECTED))?)
        .await?;
    let plan = plan_of(&submitted)?;
    let chosen = plan.chosen.clone().context("a chosen action")?;
    assert_eq!(chosen.kind, QUARANTINE_SOURCE);
    assert_eq!(chosen.plane, PgVector::KEY);
    assert_eq!(chosen.blast_radius.broken, 0, "{:?}", chosen.blast_radius);
    let revoke = candidate(&plan.candidates, &REVOKE_INDEX)?;
    assert_eq!(
        revoke.blast_radius.broken, 3,
        "the three permitted sources of kb"
    );
    let broad: Vec<_> = plan
        .candidates
        .iter()
        .filter(|c| c.kind == QUARANTINE_INDEX)
        .collect();
    assert_eq!(broad.len(), 2, "all-agents source and whole index");
    assert!(
        broad
            .iter()
            .all(|c| c.blast_radius.items.iter().any(|i| i.contains(&f.role_b))),
        "the broad rungs name the other agent: {broad:?}"
    );
    assert_eq!(
        h.settled(&submitted).await?,
        PlanStatus::Contained,
        "{:?}",
        h.detail(&submitted.incident).await
    );

    let top = retrieve(&f.admin, &f.role_a, 40).await?;
    assert!(!top.iter().any(|s| s == INJECTED), "{top:?}");
    assert_eq!(top.len(), 40, "top-k still filled from the other sources");
    assert_eq!(
        visible_sources(&f.admin, &f.role_a).await?,
        without(INJECTED)
    );
    let explained = explain(&f.admin, &f.role_a).await?;
    assert!(
        explained.contains("chunks_hnsw"),
        "the HNSW index is still used:\n{explained}"
    );
    assert_eq!(visible_sources(&f.admin, &f.role_b).await?, all_sources());
    assert!(retrieve(&f.admin, &f.role_b, 40)
        .await?
        .iter()
        .any(|s| s == INJECTED));

    // Applying the journaled action again (a crash after the intent) finds the row in place.
    let again = erase(plane).change(&chosen, Change::Apply).await?;
    assert!(!again.changed, "apply is idempotent: {again:?}");

    assert_eq!(h.rollback(&submitted.incident).await?, PlanStatus::Reverted);
    assert_eq!(visible_sources(&f.admin, &f.role_a).await?, all_sources());
    let rows: i64 = f
        .admin
        .query_one("SELECT count(*) FROM firebreak.quarantined_sources", &[])
        .await?
        .get(0);
    assert_eq!(rows, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_index_cuts_one_agent_off_and_rollback_restores_the_grant() -> Result<()> {
    let f = fixture("revoke").await?;
    PgVector::new(f.config.clone())?.install().await?;
    let h = engine(&f.config)?;
    // No source named: only the index can be cut, for this agent.
    let submitted = h.contain(alert("a-2", "agent-a", "kb", None)?).await?;
    let chosen = plan_of(&submitted)?
        .chosen
        .clone()
        .context("a chosen action")?;
    assert_eq!(chosen.kind, REVOKE_INDEX);
    assert_eq!(
        h.settled(&submitted).await?,
        PlanStatus::Contained,
        "{:?}",
        h.detail(&submitted.incident).await
    );
    assert!(retrieve(&f.admin, &f.role_a, 5).await?.is_empty());
    assert_eq!(retrieve(&f.admin, &f.role_b, 5).await?.len(), 5);
    assert_eq!(h.rollback(&submitted.incident).await?, PlanStatus::Reverted);
    assert_eq!(retrieve(&f.admin, &f.role_a, 5).await?.len(), 5);
    assert_eq!(visible_sources(&f.admin, &f.role_a).await?, all_sources());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarantine_index_hides_a_source_or_the_whole_index_from_every_agent_and_reverts(
) -> Result<()> {
    let f = fixture("broad").await?;
    let plane = PgVector::new(f.config.clone())?;
    plane.install().await?;
    let input = Input::new("broad", "agent-a", "kb", Some(INJECTED), &observed())?;
    let proposed = proposals(&plane, &input).await?;
    // The approval-only rung, driven as an approved action would be.
    for (target, visible) in [
        ("for every agent", without(INJECTED)),
        (": every agent", BTreeSet::new()),
    ] {
        let spec = spec_of::<PgVector>(&proposed, &QUARANTINE_INDEX, target)?;
        // The check reads the store, not the plan: before the change it fails.
        let early = plane.check(&spec, Check::Applied).await?;
        assert!(!early.ok, "{target}: {early:?}");

        let applied = plane.change(&spec, Change::Apply).await?;
        assert!(applied.changed, "{target}: {applied:?}");
        let verified = plane.check(&spec, Check::Applied).await?;
        assert!(verified.ok, "{target}: {verified:?}");
        for role in [&f.role_a, &f.role_b] {
            assert_eq!(
                visible_sources(&f.admin, role).await?,
                visible,
                "{target}: what {role} retrieves"
            );
        }
        let again = plane.change(&spec, Change::Apply).await?;
        assert!(!again.changed, "{target}: apply is idempotent: {again:?}");

        let reverted = plane.change(&spec, Change::Revert).await?;
        assert!(reverted.changed, "{target}: {reverted:?}");
        let back = plane.check(&spec, Check::Reverted).await?;
        assert!(back.ok, "{target}: {back:?}");
        for role in [&f.role_a, &f.role_b] {
            assert_eq!(visible_sources(&f.admin, role).await?, all_sources());
        }
        let again = plane.change(&spec, Change::Revert).await?;
        assert!(!again.changed, "{target}: revert is idempotent: {again:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pool_serves_every_observation_change_and_verification_poll() -> Result<()> {
    const APP: &str = "firebreak_pool_test";
    const POOL_SIZE: usize = 4;
    let mut f = fixture("pool").await?;
    f.config.dsn = format!("{} application_name={APP}", f.config.dsn);
    // One plane, shared by the engine and this test, as the daemon shares it.
    let plane = Arc::new(PgVector::new(f.config.clone())?);
    plane.install().await?;
    let h = Harness::new(plane.clone(), &["agent-a", "agent-b"], &observed())?;

    let submitted = h
        .contain(alert("p-1", "agent-a", "kb", Some(INJECTED))?)
        .await?;
    assert_eq!(h.settled(&submitted).await?, PlanStatus::Contained);
    let chosen = plan_of(&submitted)?
        .chosen
        .clone()
        .context("a chosen action")?;
    // Twenty verification polls, as a slow propagation would make.
    let erased = erase(plane.clone());
    for _ in 0..20 {
        assert!(erased.check(&chosen, Check::Applied).await?.ok);
    }
    assert_eq!(
        visible_sources(&f.admin, &f.role_a).await?,
        without(INJECTED)
    );
    assert_eq!(h.rollback(&submitted.incident).await?, PlanStatus::Reverted);
    assert_eq!(visible_sources(&f.admin, &f.role_a).await?, all_sources());

    // Install, observe, apply, verify, 20 polls, revert, verify: the server saw the pool's
    // few sessions, not one per call.
    let sessions = pg().sessions(&f.db, APP);
    assert!(
        (1..=POOL_SIZE).contains(&sessions),
        "{sessions} sessions for 25+ calls"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_writes_nothing_at_the_server() -> Result<()> {
    let f = fixture("dryrun").await?;
    PgVector::new(f.config.clone())?.install().await?;
    let h = engine(&f.config)?;
    let before = pg().statements(&f.db).len();
    assert!(
        pg().statements(&f.db).iter().any(|s| is_mutating(s)),
        "the log shows the install's writes, so it would show a dry run's"
    );
    let submitted = h
        .dry_run(alert("a-3", "agent-a", "kb", Some(INJECTED))?)
        .await?;
    assert_eq!(submitted.plan_status(), Some(PlanStatus::DryRun));
    assert_eq!(
        plan_of(&submitted)?
            .chosen
            .as_ref()
            .map(|c| c.kind.to_string()),
        Some(QUARANTINE_SOURCE.name.to_string())
    );
    // The log is written asynchronously by the server: wait for the plan's reads to show up.
    let deadline = Instant::now() + Duration::from_secs(5);
    let during = loop {
        let all = pg().statements(&f.db);
        let during: Vec<String> = all[before..].to_vec();
        if during.iter().any(|s| s.contains("index_grants")) || Instant::now() > deadline {
            break during;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        during.iter().any(|s| s.contains("index_grants")),
        "the dry run read the grants: {during:?}"
    );
    let writes: Vec<&String> = during.iter().filter(|s| is_mutating(s)).collect();
    assert!(writes.is_empty(), "dry run wrote: {writes:?}");
    assert_eq!(visible_sources(&f.admin, &f.role_a).await?, all_sources());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_precise_error_and_changes_nothing() -> Result<()> {
    let f = fixture("badinput").await?;

    // A table without a source column: the install refuses before any DDL.
    let mut no_source = f.config.clone();
    no_source.tables[0].table = "public.notes".into();
    let before = pg().statements(&f.db).len();
    let err = PgVector::new(no_source)?
        .install()
        .await
        .expect_err("no source column");
    assert!(
        err.to_string().contains("has no column \"source_id\""),
        "{err}"
    );
    let mut unknown_table = f.config.clone();
    unknown_table.tables[0].table = "public.nope".into();
    let err = PgVector::new(unknown_table)?
        .install()
        .await
        .expect_err("no table");
    assert!(
        err.to_string().contains("public.nope does not exist"),
        "{err}"
    );
    let mut unknown_role = f.config.clone();
    unknown_role
        .roles
        .insert("prod/rag/Deployment/agent-a".into(), "no_such_role".into());
    let err = PgVector::new(unknown_role)?
        .install()
        .await
        .expect_err("no role");
    assert!(err.to_string().contains("\"no_such_role\""), "{err}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let writes: Vec<String> = pg().statements(&f.db)[before..]
        .iter()
        .filter(|s| is_mutating(s))
        .cloned()
        .collect();
    assert!(writes.is_empty(), "a refused install wrote: {writes:?}");

    PgVector::new(f.config.clone())?.install().await?;
    let h = engine(&f.config)?;
    let before = pg().statements(&f.db).len();
    for (id, agent, index, source, expect) in [
        // Not this store's index: the plane does not handle it, so no plane is asked.
        (
            "b-1",
            "agent-a",
            "wiki",
            Some(INJECTED),
            "no configured control plane can contain context for this agent",
        ),
        // An agent without a database role here: likewise.
        (
            "b-2",
            "agent-c",
            "kb",
            Some(INJECTED),
            "no configured control plane can contain context for this agent",
        ),
        (
            "b-3",
            "agent-a",
            "kb",
            Some("email:nope"),
            "source \"email:nope\" has no chunk in public.chunks.source_id",
        ),
    ] {
        let submitted = h.contain(alert(id, agent, index, source)?).await?;
        let plan = plan_of(&submitted)?;
        assert!(plan.chosen.is_none(), "{id}: nothing chosen");
        assert_eq!(submitted.plan_status(), Some(PlanStatus::Escalated), "{id}");
        let escalation = plan.escalation.clone().unwrap_or_default();
        assert!(escalation.contains(expect), "{id}: {escalation}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let writes: Vec<String> = pg().statements(&f.db)[before..]
        .iter()
        .filter(|s| is_mutating(s))
        .cloned()
        .collect();
    assert!(writes.is_empty(), "bad alerts wrote: {writes:?}");
    assert_eq!(visible_sources(&f.admin, &f.role_a).await?, all_sources());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_transient_and_a_refused_login_is_not() -> Result<()> {
    let f = fixture("faults").await?;
    PgVector::new(f.config.clone())?.install().await?;
    let input = Input::new("faults", "agent-a", "kb", Some(INJECTED), &observed())?;
    let proposed = proposals(&PgVector::new(f.config.clone())?, &input).await?;
    let spec = spec_of::<PgVector>(&proposed, &QUARANTINE_SOURCE, INJECTED)?;

    // No server behind this socket directory: the engine's policy retries (transient).
    let empty = tempfile::tempdir()?;
    let mut gone = f.config.clone();
    gone.dsn = format!(
        "host={} port=5432 user=postgres dbname={}",
        empty.path().display(),
        f.db
    );
    let gone = PgVector::new(gone)?;
    for err in [
        gone.observe(&input.get()).await.err().context("observe")?,
        gone.change(&spec, Change::Apply)
            .await
            .err()
            .context("change")?,
        gone.check(&spec, Check::Applied)
            .await
            .err()
            .context("check")?,
    ] {
        assert!(matches!(err, PlaneError::Unreachable { .. }), "{err}");
    }

    // A login the server does not know: refused, and escalated rather than retried.
    let mut stranger = f.config.clone();
    stranger.dsn = stranger.dsn.replace("user=postgres", "user=no_such_login");
    let err = PgVector::new(stranger)?
        .change(&spec, Change::Apply)
        .await
        .err()
        .context("a refused login")?;
    assert!(
        matches!(&err, PlaneError::Refused { detail, .. } if detail.contains("no_such_login")),
        "{err}"
    );
    assert_eq!(visible_sources(&f.admin, &f.role_a).await?, all_sources());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn printed_ddl_applied_by_a_dba_is_what_the_plane_expects() -> Result<()> {
    let f = fixture("ddl").await?;
    f.admin.batch_execute(&ddl(&f.config)).await?;
    f.admin.batch_execute(&ddl(&f.config)).await?;
    let h = engine(&f.config)?;
    let submitted = h
        .contain(alert("d-1", "agent-b", "kb", Some(INJECTED))?)
        .await?;
    assert_eq!(
        h.settled(&submitted).await?,
        PlanStatus::Contained,
        "{:?}",
        h.detail(&submitted.incident).await
    );
    assert_eq!(
        visible_sources(&f.admin, &f.role_b).await?,
        without(INJECTED)
    );
    assert_eq!(visible_sources(&f.admin, &f.role_a).await?, all_sources());
    // Re-running the DDL during an incident keeps the containment.
    f.admin.batch_execute(&ddl(&f.config)).await?;
    assert_eq!(
        visible_sources(&f.admin, &f.role_b).await?,
        without(INJECTED)
    );
    Ok(())
}
