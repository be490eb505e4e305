//! Firebreak end to end on the context surface's Milvus plane: the real engine, in process,
//! against a real Milvus 2.3 with RBAC on (the PyPI `milvus` build) in a private network
//! namespace. Agents search with pymilvus as their own users, so "refused" means Milvus
//! refused a real search.
//!
//! One server per test binary; each test seeds its own collections, users and roles under its
//! own prefix, and acts as its own admin user, so the proxy's access log (which names the
//! caller) shows each test's calls apart.

#[path = "../../surfaces/context/tests/support/milvus.rs"]
mod milvus;
#[path = "../../surfaces/context/tests/support/scenario.rs"]
mod scenario;

use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use firebreak_containment::action::ActionKind;
use firebreak_containment::engine::Request;
use firebreak_containment::incident::PlanStatus;
use firebreak_containment::surface::ControlPlane;
use firebreak_context::{Milvus, MilvusContextConfig};
use milvus::milvus;
use scenario::{alert, candidate, Harness, INJECTED, PERMITTED};
use serde_json::Value;

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
fn engine(config: &MilvusContextConfig) -> Result<Harness> {
    Harness::new(
        Arc::new(Milvus::new(config.clone())?),
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
    let h = engine(&f.config)?;

    // Agent A retrieves from `secrets`, which is outside its envelope.
    let submitted = h
        .engine
        .submit(
            alert("m-1", "agent-a", "secrets", Some(INJECTED))?,
            Request::Operator("t".into()),
        )
        .await?;
    let chosen = submitted.plan.chosen.clone().context("a chosen action")?;
    assert_eq!(chosen.kind, ActionKind::ContextRevokeIndex);
    assert_eq!(chosen.blast_radius.broken, 0, "{:?}", chosen.blast_radius);
    // Read from the server: the role's privileges there and the user it cuts off.
    let user_a = f.agent("a", "user");
    assert!(
        chosen.target.contains("privileges Query, Search of role")
            && chosen.target.contains(&format!("(users [\"{user_a}\"])")),
        "{}",
        chosen.target
    );
    let broad = candidate(
        &submitted.plan.candidates,
        ActionKind::ContextQuarantineIndex,
    )?;
    assert!(
        broad.blast_radius.items.iter().any(|i| i.contains(AGENT_B)),
        "the whole-index rung names the other agent: {broad:?}"
    );
    assert_eq!(submitted.status, PlanStatus::Applying);

    let status = h
        .engine
        .execute(&submitted.incident, &submitted.plan.id)
        .await?;
    assert_eq!(
        status,
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

    // Applying again finds the privileges gone already.
    let plane = Milvus::new(f.config.clone())?;
    let again = plane.apply(&chosen).await.map_err(|e| anyhow!("{e}"))?;
    assert!(!again.changed, "apply is idempotent: {again:?}");

    assert_eq!(
        h.engine.rollback(&submitted.incident).await?,
        PlanStatus::Reverted
    );
    let a = f.search("a", &["secrets"])?;
    assert!(answered(&a[0]), "A searches secrets again: {}", a[0]);
    assert_eq!(f.grants()?, before, "exactly the revoked grants are back");
    let again = plane.revert(&chosen).await.map_err(|e| anyhow!("{e}"))?;
    assert!(!again.changed, "revert is idempotent: {again:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_writes_nothing_and_reports_per_source_quarantine_as_not_enforceable() -> Result<()>
{
    let f = fixture("dryrun")?;
    let before = f.grants()?;
    let h = engine(&f.config)?;
    let user = f.firebreak_user();
    let seen = milvus().calls_by(&user).len();

    // An injected source inside an index the agent uses: Milvus cannot hide one source.
    let submitted = h
        .engine
        .submit(
            alert("m-2", "agent-a", "kb", Some(INJECTED))?,
            Request::DryRun,
        )
        .await?;
    assert_eq!(submitted.status, PlanStatus::DryRun);
    let source = candidate(
        &submitted.plan.candidates,
        ActionKind::ContextQuarantineSource,
    )?;
    let reason = source.rejected.clone().unwrap_or_default();
    assert!(
        reason.contains("not enforceable in Milvus 2.3")
            && reason.contains("no row-level security")
            && reason.contains("no partition-level privileges"),
        "{reason}"
    );
    let chosen = submitted.plan.chosen.clone().context("a chosen action")?;
    assert_eq!(chosen.kind, ActionKind::ContextRevokeIndex);
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
        (
            &f.config,
            "agent-a",
            "wiki",
            "index \"wiki\" is not a configured Milvus collection; known indexes: [\"kb\", \"secrets\"]",
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
        (
            &f.config,
            "agent-c",
            "secrets",
            "no configured control plane can contain dimension context for this agent",
        ),
        (
            &bad_login,
            "agent-a",
            "secrets",
            "check context.milvus.user and the password it reads",
        ),
    ];
    for (i, (config, agent, index, expect)) in cases.into_iter().enumerate() {
        let h = engine(config)?;
        let submitted = h
            .engine
            .submit(
                alert(&format!("b-{i}"), agent, index, None)?,
                Request::Operator("t".into()),
            )
            .await?;
        assert!(submitted.plan.chosen.is_none(), "case {i}: nothing chosen");
        let escalation = submitted.plan.escalation.clone().unwrap_or_default();
        assert!(escalation.contains(expect), "case {i}: {escalation}");
    }

    // Agent A's user also holds agent B's role, which may search `secrets`: revoking A's role
    // would not cut A off, and Milvus has no deny, so the plan refuses the revoke and says why.
    // (Milvus 2.3 allows 10 roles; the four tests' eight fill it, so no new role here.)
    let (role_b, user_a) = (f.agent("b", "role"), f.agent("a", "user"));
    let secrets = f.collection("secrets");
    milvus().script(
        "probe.py",
        &["add-user", milvus().address(), &role_b, &user_a],
    )?;
    let h = engine(&f.config)?;
    let submitted = h
        .engine
        .submit(
            alert("b-shared", "agent-a", "secrets", None)?,
            Request::Operator("t".into()),
        )
        .await?;
    assert!(submitted.plan.chosen.is_none(), "nothing chosen");
    let revoke = candidate(&submitted.plan.candidates, ActionKind::ContextRevokeIndex)?;
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
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarantine_index_cuts_every_configured_agent_off_and_reverts() -> Result<()> {
    let f = fixture("quarantine")?;
    let before = f.grants()?;
    let h = engine(&f.config)?;
    let submitted = h
        .engine
        .submit(alert("m-3", "agent-a", "secrets", None)?, Request::DryRun)
        .await?;
    // Planned, never chosen (approval only, and it touches agent B): applied here as an
    // operator-approved action would be.
    let broad = candidate(
        &submitted.plan.candidates,
        ActionKind::ContextQuarantineIndex,
    )?
    .clone();
    let plane = Milvus::new(f.config.clone())?;

    // Verification reads the server, not the plan: before applying it fails.
    let early = plane.verify(&broad).await.map_err(|e| anyhow!("{e}"))?;
    assert!(
        !early.ok && early.detail.contains("still holds"),
        "{early:?}"
    );

    let applied = plane.apply(&broad).await.map_err(|e| anyhow!("{e}"))?;
    assert!(applied.changed, "{applied:?}");
    let verified = plane.verify(&broad).await.map_err(|e| anyhow!("{e}"))?;
    assert!(verified.ok, "{verified:?}");
    for agent in ["a", "b"] {
        let r = f.search(agent, &["secrets", "kb"])?;
        assert!(refused(&r[0]), "{agent} is refused on secrets: {}", r[0]);
        assert!(answered(&r[1]), "{agent} still searches kb: {}", r[1]);
    }

    let reverted = plane.revert(&broad).await.map_err(|e| anyhow!("{e}"))?;
    assert!(reverted.changed, "{reverted:?}");
    let back = plane
        .verify_reverted(&broad)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    assert!(back.ok, "{back:?}");
    assert_eq!(f.grants()?, before);
    for agent in ["a", "b"] {
        let r = f.search(agent, &["secrets"])?;
        assert!(answered(&r[0]), "{agent} searches secrets again: {}", r[0]);
    }
    Ok(())
}
