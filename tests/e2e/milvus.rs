//! Firebreak end to end on the context surface's Milvus plane: the real engine, in process,
//! and the plane driven directly through `Plane` (docs/adding-a-plane.md §6), against a real
//! Milvus 2.3 with RBAC on (the PyPI `milvus` build) in a private network namespace. Agents
//! search with pymilvus as their own users, so "refused" means Milvus refused a real search.
//! The last test runs the Milvus plane beside the pgvector one, against a real PostgreSQL too.
//!
//! One server per test binary; each test seeds its own collections, users and roles under its
//! own prefix, and acts as its own admin user, so the proxy's access log (which names the
//! caller) shows each test's calls apart.

#[path = "../../surfaces/context/tests/support/milvus.rs"]
mod milvus;
#[path = "../../surfaces/context/tests/support/postgres.rs"]
mod postgres;
#[path = "../../surfaces/context/tests/support/scenario.rs"]
mod scenario;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use firebreak_containment::plane::{erase, Change, Check, Plane, PlaneError, Planes};
use firebreak_containment::PlanStatus;
use firebreak_context::{
    side_by_side, Milvus, MilvusContextConfig, PgVector, PostgresContextConfig, QUARANTINE_INDEX,
    QUARANTINE_SOURCE, REVOKE_INDEX,
};
use milvus::milvus;
use scenario::{
    alert, candidate, plan_of, proposals, spec_of, Harness, Input, INJECTED, PERMITTED,
};
use serde_json::Value;
use tokio_postgres::Client;

const AGENT_A: &str = "prod/rag/Deployment/agent-a";
const AGENT_B: &str = "prod/rag/Deployment/agent-b";

/// One test's world, as seed.py made it.
struct Fixture {
    seeded: Value,
    config: MilvusContextConfig,
    _secrets: tempfile::TempDir,
}

impl Fixture {
    fn collection(&self, index: &str) -> String {
        self.seeded["collections"][index]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn agent(&self, agent: &str, field: &str) -> String {
        self.seeded["agents"][agent][field]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn firebreak_user(&self) -> String {
        self.config.user.clone()
    }

    /// A real top-k search as the agent's own user, on each index: whether Milvus answered.
    fn search(&self, agent: &str, indexes: &[&str]) -> Result<Vec<Value>> {
        let (user, password) = (self.agent(agent, "user"), self.agent(agent, "password"));
        let collections: Vec<String> = indexes.iter().map(|i| self.collection(i)).collect();
        let mut args = vec![milvus().address(), user.as_str(), password.as_str()];
        args.extend(collections.iter().map(String::as_str));
        let out = milvus().script("probe.py", &[&["search"], &args[..]].concat())?;
        Ok(collections.iter().map(|c| out[c].clone()).collect())
    }

    /// Every grant of both agents' roles, read as root with pymilvus.
    fn grants(&self) -> Result<Value> {
        let (a, b) = (self.agent("a", "role"), self.agent("b", "role"));
        milvus().script("probe.py", &["grants", milvus().address(), &a, &b])
    }
}

fn fixture(prefix: &str) -> Result<Fixture> {
    let server = milvus();
    let seeded = server.script("seed.py", &[server.address(), prefix])?;
    let secrets = tempfile::tempdir()?;
    let password_file = secrets.path().join("milvus-password");
    std::fs::write(
        &password_file,
        format!(
            "{}\n",
            seeded["firebreak"]["password"].as_str().unwrap_or_default()
        ),
    )?;
    let config: MilvusContextConfig = serde_json::from_value(serde_json::json!({
        "address": server.address(),
        "user": seeded["firebreak"]["user"],
        "password": {"file": password_file},
        "collections": [
            {"collection": seeded["collections"]["kb"], "index": "kb"},
            {"collection": seeded["collections"]["secrets"], "index": "secrets"},
        ],
        "roles": {
            AGENT_A: seeded["agents"]["a"]["role"],
            AGENT_B: seeded["agents"]["b"]["role"],
        },
        "verifyDeadline": "10s",
    }))?;
    Ok(Fixture {
        seeded,
        config,
        _secrets: secrets,
    })
}

/// Both agents' envelopes: they retrieve from `kb` only, never from `secrets`. Agent C has no
/// configured role.
async fn engine(config: &MilvusContextConfig) -> Result<Harness> {
    Harness::new(
        Milvus::new(config.clone()).await?,
        &["agent-a", "agent-b", "agent-c"],
        PERMITTED,
    )
}

fn answered(result: &Value) -> bool {
    result["ok"] == Value::Bool(true) && result["sources"].as_array().is_some_and(|s| !s.is_empty())
}

fn refused(result: &Value) -> bool {
    result["ok"] == Value::Bool(false) && result["code"] == "PERMISSION_DENIED"
}

/// Calls Firebreak's user made that can change a grant.
fn writes(calls: &[(String, String)]) -> Vec<&(String, String)> {
    calls
        .iter()
        .filter(|(method, _)| method == "OperatePrivilege")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_index_refuses_one_agents_search_on_one_collection_and_rollback_restores_it(
) -> Result<()> {
    let f = fixture("revoke")?;
    let before = f.grants()?;
    let h = engine(&f.config).await?;

    // Agent A retrieves from `secrets`, which is outside its envelope.
    let submitted = h
        .contain(alert("m-1", "agent-a", "secrets", Some(INJECTED))?)
        .await?;
    let plan = plan_of(&submitted)?;
    let chosen = plan.chosen.clone().context("a chosen action")?;
    assert_eq!(chosen.kind, REVOKE_INDEX);
    assert_eq!(chosen.plane, Milvus::KEY);
    assert_eq!(chosen.blast_radius.broken, 0, "{:?}", chosen.blast_radius);
    // Read from the server: the role's privileges there and the user it cuts off.
    let user_a = f.agent("a", "user");
    assert!(
        chosen.target.contains("privileges Query, Search of role")
            && chosen.target.contains(&format!("(users [\"{user_a}\"])")),
        "{}",
        chosen.target
    );
    let broad = candidate(&plan.candidates, &QUARANTINE_INDEX)?;
    assert!(
        broad.blast_radius.items.iter().any(|i| i.contains(AGENT_B)),
        "the whole-index rung names the other agent: {broad:?}"
    );
    assert_eq!(
        h.settled(&submitted).await?,
        PlanStatus::Contained,
        "{:?}",
        h.detail(&submitted.incident).await
    );

    let a = f.search("a", &["secrets", "kb"])?;
    assert!(refused(&a[0]), "A's search on secrets is refused: {}", a[0]);
    assert!(
        answered(&a[1]),
        "A's other collection still answers: {}",
        a[1]
    );
    let b = f.search("b", &["secrets", "kb"])?;
    assert!(b.iter().all(answered), "agent B is unaffected: {b:?}");
    let during = f.grants()?;
    let role_a = f.agent("a", "role");
    let secrets = f.collection("secrets");
    let expected_a: Vec<&Value> = before[&role_a]
        .as_array()
        .context("grants of A")?
        .iter()
        .filter(|g| g[1] != secrets.as_str())
        .collect();
    assert_eq!(
        during[&role_a]
            .as_array()
            .map(|g| g.iter().collect::<Vec<_>>()),
        Some(expected_a),
        "only A's grants on secrets are gone"
    );
    let role_b = f.agent("b", "role");
    assert_eq!(during[&role_b], before[&role_b], "B's grants are untouched");

    // Applying the journaled action again (a crash after the intent) finds it done already.
    let plane = erase(Milvus::new(f.config.clone()).await?);
    let again = plane.change(&chosen, Change::Apply).await?;
    assert!(!again.changed, "apply is idempotent: {again:?}");

    assert_eq!(h.rollback(&submitted.incident).await?, PlanStatus::Reverted);
    let a = f.search("a", &["secrets"])?;
    assert!(answered(&a[0]), "A searches secrets again: {}", a[0]);
    assert_eq!(f.grants()?, before, "exactly the revoked grants are back");
    let again = plane.change(&chosen, Change::Revert).await?;
    assert!(!again.changed, "revert is idempotent: {again:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_writes_nothing_and_reports_per_source_quarantine_as_not_enforceable() -> Result<()>
{
    let f = fixture("dryrun")?;
    let before = f.grants()?;
    let h = engine(&f.config).await?;
    let user = f.firebreak_user();
    let seen = milvus().calls_by(&user).len();

    // An injected source inside an index the agent uses: Milvus cannot hide one source.
    let submitted = h
        .dry_run(alert("m-2", "agent-a", "kb", Some(INJECTED))?)
        .await?;
    assert_eq!(submitted.plan_status(), Some(PlanStatus::DryRun));
    let plan = plan_of(&submitted)?;
    let source = candidate(&plan.candidates, &QUARANTINE_SOURCE)?;
    let reason = source.rejected.clone().unwrap_or_default();
    assert!(
        reason.contains("not enforceable in Milvus 2.3")
            && reason.contains("no row-level security")
            && reason.contains("no partition-level privileges"),
        "{reason}"
    );
    let chosen = plan.chosen.clone().context("a chosen action")?;
    assert_eq!(chosen.kind, REVOKE_INDEX);
    assert_eq!(
        chosen.blast_radius.broken, 3,
        "the three permitted sources of kb: {:?}",
        chosen.blast_radius
    );

    let calls = milvus().calls_by(&user)[seen..].to_vec();
    assert!(
        calls.iter().any(|(m, _)| m == "SelectGrant"),
        "the access log shows the dry run's reads, so it would show a write: {calls:?}"
    );
    assert!(writes(&calls).is_empty(), "the dry run wrote: {calls:?}");
    assert_eq!(f.grants()?, before, "grants identical before and after");
    let a = f.search("a", &["kb", "secrets"])?;
    assert!(a.iter().all(answered), "{a:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_precise_error_and_writes_nothing() -> Result<()> {
    let f = fixture("badinput")?;
    let before = f.grants()?;
    let user = f.firebreak_user();
    let seen = milvus().calls_by(&user).len();

    let mut missing_collection = f.config.clone();
    missing_collection.collections[1].collection = "badinput_nope".into();
    let mut missing_role = f.config.clone();
    missing_role
        .roles
        .insert(AGENT_A.into(), "badinput_no_such_role".into());
    let wrong_password = tempfile::NamedTempFile::new()?;
    std::fs::write(wrong_password.path(), "not-the-password")?;
    let mut bad_login = f.config.clone();
    bad_login.password.file = Some(wrong_password.path().to_path_buf());

    let cases = [
        // Not one of this server's collections: the plane does not handle it.
        (
            &f.config,
            "agent-a",
            "wiki",
            "no configured control plane can contain context for this agent",
        ),
        (
            &missing_collection,
            "agent-a",
            "secrets",
            "collection \"badinput_nope\" does not exist in Milvus database \"default\"",
        ),
        (
            &missing_role,
            "agent-a",
            "secrets",
            "Milvus role \"badinput_no_such_role\" (roles.prod/rag/Deployment/agent-a) does not exist",
        ),
        // An agent without a Milvus role: likewise not handled.
        (
            &f.config,
            "agent-c",
            "secrets",
            "no configured control plane can contain context for this agent",
        ),
        (
            &bad_login,
            "agent-a",
            "secrets",
            "check context.milvus.user and the password it reads",
        ),
    ];
    for (i, (config, agent, index, expect)) in cases.into_iter().enumerate() {
        let h = engine(config).await?;
        let submitted = h
            .contain(alert(&format!("b-{i}"), agent, index, None)?)
            .await?;
        let plan = plan_of(&submitted)?;
        assert!(plan.chosen.is_none(), "case {i}: nothing chosen");
        assert_eq!(
            submitted.plan_status(),
            Some(PlanStatus::Escalated),
            "case {i}"
        );
        let escalation = plan.escalation.clone().unwrap_or_default();
        assert!(escalation.contains(expect), "case {i}: {escalation}");
    }
    // A wrong password is Milvus saying no: escalated, never retried.
    let input = Input::new("badlogin", "agent-a", "secrets", None, PERMITTED)?;
    let err = Milvus::new(bad_login)
        .await?
        .observe(&input.get())
        .await
        .err()
        .context("a refused login")?;
    assert!(matches!(err, PlaneError::Refused { .. }), "{err}");

    // Agent A's user also holds agent B's role, which may search `secrets`: revoking A's role
    // would not cut A off, and Milvus has no deny, so the plan refuses the revoke and says why.
    let (role_b, user_a) = (f.agent("b", "role"), f.agent("a", "user"));
    let secrets = f.collection("secrets");
    milvus().script(
        "probe.py",
        &["add-user", milvus().address(), &role_b, &user_a],
    )?;
    let h = engine(&f.config).await?;
    let submitted = h
        .contain(alert("b-shared", "agent-a", "secrets", None)?)
        .await?;
    let plan = plan_of(&submitted)?;
    assert!(plan.chosen.is_none(), "nothing chosen");
    let revoke = candidate(&plan.candidates, &REVOKE_INDEX)?;
    let reason = revoke.rejected.clone().unwrap_or_default();
    assert!(
        reason.contains(&format!(
            "role {role_b}, which the agent's user also holds, has Query on Collection {secrets}"
        )) && reason.contains("Milvus has no deny"),
        "{reason}"
    );

    let calls = milvus().calls_by(&user)[seen..].to_vec();
    assert!(
        calls.iter().any(|(m, _)| m == "HasCollection"),
        "the access log shows the lookups: {calls:?}"
    );
    assert!(writes(&calls).is_empty(), "bad input wrote: {calls:?}");
    assert_eq!(f.grants()?, before);
    let a = f.search("a", &["secrets"])?;
    assert!(answered(&a[0]), "A still searches secrets: {}", a[0]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarantine_index_cuts_every_configured_agent_off_and_reverts() -> Result<()> {
    let f = fixture("quarantine")?;
    let before = f.grants()?;
    let plane = Milvus::new(f.config.clone()).await?;
    let input = Input::new("quarantine", "agent-a", "secrets", None, PERMITTED)?;
    // The approval-only rung, driven as an approved action would be.
    let broad = spec_of::<Milvus>(
        &proposals(&plane, &input).await?,
        &QUARANTINE_INDEX,
        "every configured role",
    )?;

    // The check reads the server, not the plan: before the change it fails.
    let early = plane.check(&broad, Check::Applied).await?;
    assert!(
        !early.ok && early.detail.contains("still holds"),
        "{early:?}"
    );

    let applied = plane.change(&broad, Change::Apply).await?;
    assert!(applied.changed, "{applied:?}");
    let verified = plane.check(&broad, Check::Applied).await?;
    assert!(verified.ok, "{verified:?}");
    for agent in ["a", "b"] {
        let r = f.search(agent, &["secrets", "kb"])?;
        assert!(refused(&r[0]), "{agent} is refused on secrets: {}", r[0]);
        assert!(answered(&r[1]), "{agent} still searches kb: {}", r[1]);
    }
    let again = plane.change(&broad, Change::Apply).await?;
    assert!(!again.changed, "apply is idempotent: {again:?}");

    let reverted = plane.change(&broad, Change::Revert).await?;
    assert!(reverted.changed, "{reverted:?}");
    let back = plane.check(&broad, Check::Reverted).await?;
    assert!(back.ok, "{back:?}");
    assert_eq!(f.grants()?, before);
    for agent in ["a", "b"] {
        let r = f.search(agent, &["secrets"])?;
        assert!(answered(&r[0]), "{agent} searches secrets again: {}", r[0]);
    }
    let again = plane.change(&broad, Change::Revert).await?;
    assert!(!again.changed, "revert is idempotent: {again:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_made_after_planning_is_a_conflict_and_nothing_is_revoked() -> Result<()> {
    let f = fixture("conflict")?;
    let plane = Milvus::new(f.config.clone()).await?;
    let input = Input::new("conflict", "agent-a", "secrets", None, PERMITTED)?;
    let planned = spec_of::<Milvus>(&proposals(&plane, &input).await?, &REVOKE_INDEX, "")?;

    // Between the plan and the change, someone grants A's role more on `secrets`.
    let (role_a, secrets) = (f.agent("a", "role"), f.collection("secrets"));
    milvus().script(
        "probe.py",
        &["grant", milvus().address(), &role_a, &secrets, "Insert"],
    )?;
    let granted = f.grants()?;
    let err = plane
        .change(&planned, Change::Apply)
        .await
        .err()
        .context("a conflict")?;
    assert!(
        matches!(&err, PlaneError::Conflict { detail, .. } if detail.contains("Insert")),
        "{err}"
    );
    assert_eq!(f.grants()?, granted, "nothing was revoked");
    let a = f.search("a", &["secrets"])?;
    assert!(answered(&a[0]), "{}", a[0]);

    // What the engine does next: a new plan from a fresh observation, which holds.
    let replanned = spec_of::<Milvus>(&proposals(&plane, &input).await?, &REVOKE_INDEX, "")?;
    assert!(plane.change(&replanned, Change::Apply).await?.changed);
    assert!(plane.check(&replanned, Check::Applied).await?.ok);
    let a = f.search("a", &["secrets", "kb"])?;
    assert!(refused(&a[0]) && answered(&a[1]), "{a:?}");
    assert!(plane.change(&replanned, Change::Revert).await?.changed);
    assert!(plane.check(&replanned, Check::Reverted).await?.ok);
    assert_eq!(f.grants()?, granted);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_channel_carries_every_call() -> Result<()> {
    let f = fixture("channel")?;
    let user = f.firebreak_user();
    // One plane, shared by the engine and this test, as the daemon shares it.
    let plane = Arc::new(Milvus::new(f.config.clone()).await?);
    let h = Harness::new(plane.clone(), &["agent-a", "agent-b"], PERMITTED)?;
    let submitted = h.contain(alert("c-1", "agent-a", "secrets", None)?).await?;
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
    assert!(refused(&f.search("a", &["secrets"])?[0]));
    assert_eq!(h.rollback(&submitted.incident).await?, PlanStatus::Reverted);
    assert!(answered(&f.search("a", &["secrets"])?[0]));

    let calls = milvus().calls_by(&user).len();
    let clients = milvus().clients_of(&user);
    assert!(calls > 25, "{calls} calls");
    assert_eq!(
        clients.len(),
        1,
        "{calls} calls came over one connection: {clients:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_a_transient_fault() -> Result<()> {
    let secrets = tempfile::tempdir()?;
    let password = secrets.path().join("password");
    std::fs::write(&password, "s3cret\n")?;
    let config: MilvusContextConfig = serde_json::from_value(serde_json::json!({
        // The discard port: nothing listens there.
        "address": "127.0.0.1:9",
        "user": "root",
        "password": {"file": password},
        "collections": [{"collection": "secrets_chunks", "index": "secrets"}],
        "roles": {AGENT_A: "agent_a"},
    }))?;
    let plane = Milvus::new(config).await?;
    let input = Input::new("unreachable", "agent-a", "secrets", None, PERMITTED)?;
    let err = plane
        .observe(&input.get())
        .await
        .err()
        .context("no server")?;
    assert!(matches!(err, PlaneError::Unreachable { .. }), "{err}");
    Ok(())
}

/// A pgvector store for the side-by-side test: index `kb` of four sources, agent A's role.
struct PgStore {
    db: String,
    admin: Client,
    config: PostgresContextConfig,
    role: String,
}

async fn pg_store(name: &str) -> Result<PgStore> {
    let pg = postgres::pg();
    let db = format!("t_{name}");
    let role = format!("{db}_agent_a");
    let root = postgres::connect(&pg.dsn("postgres")).await?;
    // One statement each: CREATE DATABASE cannot run in a multi-statement (implicit)
    // transaction.
    root.batch_execute(&format!("CREATE DATABASE {db}")).await?;
    root.batch_execute(&format!("CREATE ROLE {role} NOLOGIN"))
        .await?;
    let admin = postgres::connect(&pg.dsn(&db)).await?;
    admin
        .batch_execute(&format!(
            "CREATE EXTENSION vector;
             CREATE TABLE chunks (id bigserial PRIMARY KEY, source_id text NOT NULL, embedding vector(3) NOT NULL);
             INSERT INTO chunks (source_id, embedding)
               SELECT (ARRAY['wiki:handbook', 'wiki:policies', 'crm:accounts', '{INJECTED}'])[1 + i % 4],
                      ARRAY[random(), random(), random()]::vector(3)
               FROM generate_series(1, 400) i;
             GRANT SELECT ON chunks TO {role};"
        ))
        .await?;
    let config: PostgresContextConfig = serde_json::from_value(serde_json::json!({
        "dsn": pg.dsn(&db),
        "tables": [{"table": "public.chunks", "sourceColumn": "source_id", "embeddingColumn": "embedding", "index": "kb"}],
        "roles": {AGENT_A: role},
        "verifyDeadline": "10s",
    }))?;
    Ok(PgStore {
        db,
        admin,
        config,
        role,
    })
}

impl PgStore {
    /// Every source a top-k similarity query as the agent's role returns.
    async fn sources(&self) -> Result<BTreeSet<String>> {
        self.admin
            .batch_execute(&format!("SET ROLE {}", self.role))
            .await?;
        let rows = self
            .admin
            .query(
                "SELECT source_id FROM chunks ORDER BY embedding <-> '[0.5,0.5,0.5]' LIMIT 200",
                &[],
            )
            .await;
        self.admin.batch_execute("RESET ROLE").await?;
        Ok(rows?.iter().map(|r| r.get(0)).collect())
    }

    /// Statements the server ran on this store's database so far (the log is asynchronous).
    async fn statements(&self) -> usize {
        tokio::time::sleep(Duration::from_millis(300)).await;
        postgres::pg().statements(&self.db).len()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgvector_and_milvus_side_by_side_each_contain_only_their_own_alerts() -> Result<()> {
    let f = fixture("side")?;
    let store = pg_store("side").await?;
    // The daemon's context section: `kb` is a pgvector table; `secrets` and `vectors` are
    // Milvus collections. Agent A has a role in both stores.
    let mut milvus_config = f.config.clone();
    milvus_config.collections[0].index = Some("vectors".into());
    side_by_side::check(&store.config, &milvus_config)?;
    let pgvector = PgVector::new(store.config.clone())?;
    pgvector.install().await?;
    let mut planes = Planes::default();
    planes.register(pgvector)?;
    planes.register(Milvus::new(milvus_config).await?)?;
    let h = Harness::over(planes, &["agent-a", "agent-b"], PERMITTED)?;
    let all: BTreeSet<String> = ["wiki:handbook", "wiki:policies", "crm:accounts", INJECTED]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(store.sources().await?, all);
    let before = f.grants()?;
    let user = f.firebreak_user();

    // A Milvus alert: only Milvus plans and acts; PostgreSQL is never asked anything.
    let (pg_seen, mv_seen) = (store.statements().await, milvus().calls_by(&user).len());
    let on_milvus = h
        .contain(alert("s-1", "agent-a", "secrets", Some(INJECTED))?)
        .await?;
    let plan = plan_of(&on_milvus)?;
    assert!(
        plan.candidates.iter().all(|c| c.plane == Milvus::KEY),
        "{:?}",
        plan.candidates
    );
    assert_eq!(h.settled(&on_milvus).await?, PlanStatus::Contained);
    let a = f.search("a", &["secrets", "kb"])?;
    assert!(refused(&a[0]) && answered(&a[1]), "{a:?}");
    assert!(milvus().calls_by(&user).len() > mv_seen, "Milvus was asked");
    assert_eq!(store.statements().await, pg_seen, "PostgreSQL was not");
    assert_eq!(store.sources().await?, all);
    let milvus_contained = f.grants()?;

    // A pgvector alert: only pgvector plans and acts; Milvus is never asked anything.
    let (pg_seen, mv_seen) = (store.statements().await, milvus().calls_by(&user).len());
    let on_pg = h
        .contain(alert("s-2", "agent-a", "kb", Some(INJECTED))?)
        .await?;
    let plan = plan_of(&on_pg)?;
    assert!(
        plan.candidates.iter().all(|c| c.plane == PgVector::KEY),
        "{:?}",
        plan.candidates
    );
    assert_eq!(
        plan.chosen.as_ref().map(|c| c.kind.to_string()),
        Some(QUARANTINE_SOURCE.name.to_string())
    );
    assert_eq!(h.settled(&on_pg).await?, PlanStatus::Contained);
    assert!(store.statements().await > pg_seen, "PostgreSQL was asked");
    assert_eq!(milvus().calls_by(&user).len(), mv_seen, "Milvus was not");
    let mut without = all.clone();
    without.remove(INJECTED);
    assert_eq!(store.sources().await?, without);
    assert_eq!(f.grants()?, milvus_contained);
    let a = f.search("a", &["secrets", "kb"])?;
    assert!(refused(&a[0]) && answered(&a[1]), "{a:?}");

    // One agent, one dimension: one incident holding both plans. Its rollback takes each
    // action back to the plane that took it.
    assert_eq!(on_pg.incident, on_milvus.incident);
    let plans: Vec<_> = h
        .engine
        .incident(&on_pg.incident)
        .await
        .context("the incident")?
        .plans
        .iter()
        .map(|p| p.plan.chosen.as_ref().map(|c| c.plane.to_string()))
        .collect();
    assert_eq!(
        plans,
        [
            Some(Milvus::KEY.to_string()),
            Some(PgVector::KEY.to_string())
        ]
    );
    assert_eq!(h.rollback(&on_pg.incident).await?, PlanStatus::Reverted);
    assert_eq!(store.sources().await?, all);
    assert_eq!(f.grants()?, before);
    assert!(answered(&f.search("a", &["secrets"])?[0]));
    Ok(())
}
