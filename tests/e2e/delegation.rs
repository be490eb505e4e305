//! End-to-end: the delegation plane driven by the engine writes the policy feed, served on
//! loopback; the Python shims (real LangGraph, CrewAI, AutoGen AgentChat and A2A programs,
//! scripted without an LLM) follow it live and see the severing and the rollback.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use firebreak_containment::agent::AgentKey;
use firebreak_containment::budget::BudgetConfig;
use firebreak_containment::engine::{Engine, EngineConfig, Parts, Request};
use firebreak_containment::ids::{IncidentId, PlanId};
use firebreak_containment::incident::PlanStatus;
use firebreak_containment::journal::Journal;
use firebreak_containment::metrics::Metrics;
use firebreak_containment::plane::{Change, Check, PlanInput, Plane, Planes, Proposal};
use firebreak_containment::runbook::Runbooks;
use firebreak_containment::{Alert, Envelope, EnvelopeStore};
use firebreak_delegation::feed::{self, Document};
use firebreak_delegation::{
    DelegationPlane, DelegationSpec, Feed, FeedAuth, FeedConfig, ISOLATE_INBOUND, PAUSE_GRAPH,
    SEVER_EDGE,
};
use serde_json::{json, Value};

const A: &str = "prod/agents/Deployment/a";
const B: &str = "prod/agents/Deployment/b";
const C: &str = "prod/agents/Deployment/c";
const TOKEN: &str = "feed-token-for-every-agent-0001";
/// May read only C's document.
const C_TOKEN: &str = "feed-token-for-agent-c-only-0002";

/// A delegates to C routinely; A → B was seen once (tail), so severing it breaks nothing.
fn envelope(name: &str, edges: &[(&str, u64)]) -> Result<Envelope> {
    let observed: String = edges
        .iter()
        .map(|(to, count)| {
            format!("      - {{to: {to}, mechanism: handoff, closure: literal, count: {count}, sessions: {count}}}\n")
        })
        .collect();
    Ok(Envelope::from_yaml(&format!(
        "apiVersion: firebreak.dev/v1alpha1\nkind: Envelope\nmetadata: {{name: {name}}}\nspec:\n  \
         agent: {{cluster: prod, namespace: agents, workload: Deployment/{name}, serviceAccount: {name}}}\n  \
         version: 2\n  status: converged\n  delegation:\n    observed:\n{observed}"
    ))?)
}

fn envelopes() -> Result<EnvelopeStore> {
    let mut store = EnvelopeStore::default();
    store.insert(envelope("a", &[(C, 40), (B, 1)])?, "a.yaml".into())?;
    store.insert(envelope("b", &[(C, 40)])?, "b.yaml".into())?;
    store.insert(envelope("c", &[])?, "c.yaml".into())?;
    Ok(store)
}

fn alert(id: &str, to: &str) -> Result<Alert> {
    let body = json!({
        "id": id, "source": "test", "time": "2026-11-22T05:00:00Z",
        "agent": {"cluster": "prod", "namespace": "agents", "workload": "Deployment/a", "serviceAccount": "a"},
        "dimension": "delegation", "parameter": {"to": to},
        "tier": "attack-attempt", "severity": "critical",
    });
    Ok(Alert::from_json(body.to_string().as_bytes())?)
}

/// The feed and a test-only control route (contain / roll back through the engine) on one
/// loopback listener, as the daemon would mount them.
struct Rig {
    engine: Engine,
    feed: Feed,
    plane: Arc<DelegationPlane>,
    store: EnvelopeStore,
    base: String,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    dir: tempfile::TempDir,
}

impl Rig {
    async fn start() -> Result<Rig> {
        Rig::open(tempfile::tempdir()?).await
    }

    /// A daemon on the journal in `dir`: a new feed (a new epoch), nothing recovered yet.
    async fn open(dir: tempfile::TempDir) -> Result<Rig> {
        let store = envelopes()?;
        let feed = Feed::default();
        let plane = Arc::new(DelegationPlane::new(feed.clone(), &store));
        let engine = Engine::open(Parts {
            journal: Journal::open(&dir.path().join("journal.db"))?,
            envelopes: store.clone(),
            runbooks: Runbooks::embedded()?,
            planes: {
                let mut planes = Planes::default();
                planes.register(plane.clone())?;
                planes
            },
            metrics: Metrics::new()?,
            config: EngineConfig {
                verify_poll: Duration::from_millis(5),
                // The shim suite contains and rolls back A → B once per framework test.
                budget: BudgetConfig {
                    global_per_minute: 100,
                    namespace_per_minute: 100,
                    agent_per_minute: 100,
                },
                ..EngineConfig::default()
            },
        })?;
        let config: FeedConfig = serde_json::from_value(json!({
            "tokens": {TOKEN: "*", C_TOKEN: [C]}
        }))?;
        let app = feed::router(feed.clone(), FeedAuth::new(&config)?, Some(engine.clone())).merge(
            Router::new()
                .route("/control/contain", post(contain))
                .route("/control/rollback", post(rollback))
                .with_state(engine.clone()),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        use axum::serve::ListenerExt;
        let listener = listener.tap_io(|tcp| {
            // Events are small and latency-bound: no Nagle.
            let _ = tcp.set_nodelay(true);
        });
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Rig {
            engine,
            feed,
            plane,
            store,
            base,
            server,
            dir,
        })
    }

    /// The daemon stops and a new one starts on the same journal and re-asserts what it holds.
    async fn restart(self) -> Result<Rig> {
        self.engine.shutdown();
        self.server.abort();
        let rig = Rig::open(self.dir).await?;
        rig.engine.recover();
        Ok(rig)
    }

    async fn document(&self, agent: &str) -> Result<Document> {
        let (status, body) = self.get(TOKEN, &format!("?agent={agent}")).await?;
        if status != StatusCode::OK {
            bail!("GET feed of {agent}: {status} {body}");
        }
        Ok(serde_json::from_value(body)?)
    }

    async fn candidates(&self, alert: &Alert) -> Result<Vec<Proposal<DelegationSpec>>> {
        let incident = IncidentId::from("inc-direct");
        let input = PlanInput {
            incident: &incident,
            plan: &PlanId::nth(&incident, 1),
            alert,
            envelope: self.store.get(&alert.agent.key()).context("a's envelope")?,
        };
        Ok(self.plane.observe(&input).await?.candidates(&input)?)
    }

    async fn get(&self, token: &str, query: &str) -> Result<(StatusCode, Value)> {
        let resp = reqwest::Client::new()
            .get(format!("{}/v1/feed{query}", self.base))
            .bearer_auth(token)
            .send()
            .await?;
        let status = StatusCode::from_u16(resp.status().as_u16())?;
        Ok((status, resp.json().await?))
    }
}

fn fail(e: impl std::fmt::Display) -> (StatusCode, Json<Value>) {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(json!({"error": e.to_string()})),
    )
}

/// `{"alert": id, "to": agent}` → contained through the runbook; answers the incident.
async fn contain(
    State(engine): State<Engine>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let (Some(id), Some(to)) = (body["alert"].as_str(), body["to"].as_str()) else {
        return fail("need {alert, to}");
    };
    let submitted = match alert(id, to) {
        Ok(alert) => engine.submit(alert, Request::Runbook).await,
        Err(e) => return fail(e),
    };
    let submitted = match submitted {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let Some(plan) = submitted.plan.as_ref() else {
        return fail("the alert was answered without a plan");
    };
    // Immediate rungs are enforced before the engine answers; settled confirms the verdict.
    match engine.settled(&submitted.incident, &plan.id).await {
        Some(PlanStatus::Contained) => (
            StatusCode::OK,
            Json(json!({"incident": submitted.incident})),
        ),
        status => fail(format!("incident is {status:?}, not contained")),
    }
}

async fn rollback(
    State(engine): State<Engine>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let Some(incident) = body["incident"].as_str() else {
        return fail("need {incident}");
    };
    match engine
        .rollback(&IncidentId::from(incident), Some("shim-suite".into()))
        .await
    {
        Ok(status) => (
            StatusCode::OK,
            Json(json!({"status": format!("{status:?}")})),
        ),
        Err(e) => fail(e),
    }
}

fn shim_python() -> Result<String> {
    std::env::var("FIREBREAK_SHIM_PYTHON").context(
        "FIREBREAK_SHIM_PYTHON is not set: run ./scripts/test, or eval \"$(./scripts/test --env)\" first",
    )
}

fn shims_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shims/python")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn langgraph_crewai_autogen_and_a2a_shims_follow_severing_and_rollback_live() -> Result<()> {
    let python = shim_python()?;
    let rig = Rig::start().await?;
    let out = tokio::process::Command::new(&python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"])
        .current_dir(shims_dir())
        .env("FIREBREAK_FEED_URL", &rig.base)
        .env("FIREBREAK_FEED_TOKEN", TOKEN)
        .env("FIREBREAK_FEED_C_TOKEN", C_TOKEN)
        .env("FIREBREAK_CONTROL_URL", format!("{}/control", rig.base))
        .env("FIREBREAK_AGENTS", format!("{A},{B},{C}"))
        .env("CREWAI_DISABLE_TELEMETRY", "true")
        .env("OTEL_SDK_DISABLED", "true")
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("cannot run {python} -m pytest"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    if !out.status.success() {
        bail!(
            "the shim tests failed ({}):\n{stdout}\n{stderr}",
            out.status
        );
    }
    assert!(
        stdout.contains(" passed") && !stdout.contains(" skipped"),
        "{stdout}"
    );
    // Every containment the shims saw went through the engine and was rolled back.
    assert!(!rig.engine.incidents().await.is_empty());
    // The shims reported what they refused: journaled under the incidents that refused it.
    let journaled = refused_calls(&rig, Duration::from_secs(5)).await?;
    assert!(
        journaled
            .iter()
            .any(|call| call.contains(&format!("{A} → {B}"))),
        "{journaled:?}"
    );
    assert!(rig.engine.metrics().refused_calls.get() >= journaled.len() as u64);
    let a = rig.feed.document(&AgentKey(A.into())).context("a")?;
    assert!(a.severed.is_empty() && !a.paused, "{a:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_rung_is_applied_verified_streamed_and_reverted_through_the_served_feed() -> Result<()>
{
    let rig = Rig::start().await?;
    let rungs = rig.candidates(&alert("direct-1", B)?).await?;
    let kinds: Vec<(&str, usize)> = rungs
        .iter()
        .map(|c| {
            (
                DelegationPlane::kind_of(&c.spec).name,
                c.blast_radius.broken,
            )
        })
        .collect();
    // Severing a → b (tail) breaks nothing; isolating b breaks nothing (only a → b, tail, goes
    // into b); pausing a breaks a → c.
    assert_eq!(
        kinds,
        [
            (SEVER_EDGE.name, 0),
            (ISOLATE_INBOUND.name, 0),
            (PAUSE_GRAPH.name, 1),
        ]
    );

    // One SSE subscriber on b's document: it must see every version, first event at once.
    let mut stream = Events::open(&rig, B, None).await?;
    let first = stream.next().await?;
    assert_eq!(
        first.version,
        rig.feed.epoch(),
        "nothing changed in this epoch"
    );

    for proposal in &rungs {
        let action = &proposal.spec;
        let kind = DelegationPlane::kind_of(action);
        assert!(
            rig.plane.change(action, Change::Apply).await?.changed,
            "{}",
            kind.name
        );
        assert!(
            !rig.plane.change(action, Change::Apply).await?.changed,
            "idempotent apply"
        );
        let verified = rig.plane.check(action, Check::Applied).await?;
        assert!(verified.ok, "{}: {}", kind.name, verified.detail);
        let (_, a) = rig.get(TOKEN, &format!("?agent={A}")).await?;
        let (_, b) = rig.get(TOKEN, &format!("?agent={B}")).await?;
        let (_, c) = rig.get(TOKEN, &format!("?agent={C}")).await?;
        let a: Document = serde_json::from_value(a)?;
        let b: Document = serde_json::from_value(b)?;
        let c: Document = serde_json::from_value(c)?;
        assert!(a.refuses_edge(B, Some(&b)).is_some(), "{}", kind.name);
        if kind == &SEVER_EDGE {
            assert_eq!(b.severed_from, [A]);
            assert_eq!(a.refuses_edge(C, Some(&c)), None, "a → c untouched");
        } else if kind == &ISOLATE_INBOUND {
            assert!(b.inbound_isolated);
        } else {
            assert!(a.paused && a.refuses_edge(C, Some(&c)).is_some());
        }
        // Pausing a changes a's document only.
        let b_changes = kind != &PAUSE_GRAPH;
        if b_changes {
            assert_eq!(
                stream.next().await?,
                b,
                "the stream carries what GET serves"
            );
        }
        assert!(rig.plane.change(action, Change::Revert).await?.changed);
        if b_changes {
            let restored = stream.next().await?;
            assert!(restored.version > b.version, "versions only grow");
            assert!(restored.severed_from.is_empty() && !restored.inbound_isolated);
        }
        assert!(
            !rig.plane.change(action, Change::Revert).await?.changed,
            "idempotent revert"
        );
        assert!(rig.plane.check(action, Check::Reverted).await?.ok);
        assert!(
            !rig.plane.check(action, Check::Applied).await?.ok,
            "reverted: allowed again"
        );
    }
    let (_, a) = rig.get(TOKEN, &format!("?agent={A}")).await?;
    let a: Document = serde_json::from_value(a)?;
    assert_eq!(a.refuses_edge(B, None), None);

    // Reconnecting with the version already seen resends nothing until the next change.
    let doc = rig.feed.document(&AgentKey(B.into())).context("b")?;
    let seen = doc.version;
    let mut resumed = Events::open(&rig, B, Some(format!("{}.{seen}", doc.epoch))).await?;
    rig.plane.change(&rungs[1].spec, Change::Apply).await?;
    let next = resumed.next().await?;
    assert!(next.version > seen && next.inbound_isolated, "{next:?}");
    rig.plane.change(&rungs[1].spec, Change::Revert).await?;
    Ok(())
}

/// Reads a feed SSE response event by event.
struct Events {
    resp: reqwest::Response,
    buf: String,
}

impl Events {
    async fn open(rig: &Rig, agent: &str, last_event_id: Option<String>) -> Result<Events> {
        let mut req = reqwest::Client::new()
            .get(format!("{}/v1/feed/stream?agent={agent}", rig.base))
            .bearer_auth(TOKEN);
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        Ok(Events {
            resp: req.send().await?.error_for_status()?,
            buf: String::new(),
        })
    }

    /// The next event's document (keep-alive comments are skipped).
    async fn next(&mut self) -> Result<Document> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data:")) {
                    return Ok(serde_json::from_str(data.trim())?);
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.resp.chunk()).await {
                Ok(Ok(Some(chunk))) => self.buf.push_str(&String::from_utf8_lossy(&chunk)),
                Ok(Ok(None)) => bail!("stream ended: {:?}", self.buf),
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => bail!("no event within 5 s: {:?}", self.buf),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_unknown_agents_and_malformed_policy_get_clear_errors() -> Result<()> {
    let rig = Rig::start().await?;
    let (status, body) = rig
        .get("wrong-token-0000000000", &format!("?agent={A}"))
        .await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("bearer token")),
        "{body}"
    );

    let ghost = "prod/agents/Deployment/ghost";
    for path in ["", "/stream"] {
        let (status, body) = rig.get(TOKEN, &format!("{path}?agent={ghost}")).await?;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert!(
            body["error"].as_str().is_some_and(|e| e.contains(ghost)),
            "{body}"
        );
    }
    let (status, body) = rig.get(C_TOKEN, &format!("?agent={A}")).await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains(A)),
        "{body}"
    );
    let (status, _) = rig.get(C_TOKEN, &format!("?agent={C}")).await?;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = rig.get(TOKEN, "").await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("agent is required")),
        "{body}"
    );
    let (status, body) = rig
        .get(TOKEN, &format!("/stream?agent={A}&version=latest"))
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("\"latest\"")),
        "{body}"
    );

    // A malformed feed config names what is wrong and never echoes a token.
    let config: FeedConfig =
        serde_json::from_value(json!({"tokens": {"secret-but-short": ["a/b"]}}))?;
    let err = FeedAuth::new(&config).expect_err("refused").to_string();
    assert!(err.contains("\"a/b\"") && !err.contains("secret"), "{err}");
    let err = serde_json::from_value::<FeedConfig>(json!({"tokens": {TOKEN: "everyone"}}))
        .expect_err("refused")
        .to_string();
    assert!(err.contains("\"everyone\""), "{err}");

    // A journaled spec holding a rule no delegation rung holds is refused before anything is
    // written (the engine decodes specs by type; this is the plane's own refusal).
    let mut action = rig.candidates(&alert("direct-2", B)?).await?.remove(0).spec;
    action.hold.rule = feed::Rule::RevokedTool {
        server: "s".into(),
        tool: "t".into(),
    };
    let version = rig.feed.version();
    let err = rig
        .plane
        .change(&action, Change::Apply)
        .await
        .expect_err("refused")
        .to_string();
    assert!(err.contains("severed, inboundIsolated or paused"), "{err}");
    assert_eq!(rig.feed.version(), version);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_plans_the_sever_and_changes_no_feed_version() -> Result<()> {
    let rig = Rig::start().await?;
    let (_, before) = rig.get(TOKEN, &format!("?agent={A}")).await?;
    let version = rig.feed.version();
    let dry = rig
        .engine
        .submit(alert("dry-1", B)?, Request::DryRun)
        .await?;
    assert_eq!(dry.plan_status(), Some(PlanStatus::DryRun));
    let plan = dry.plan.as_ref().context("a plan")?;
    let chosen = plan.chosen.as_ref().context("a choice")?;
    assert_eq!(chosen.kind, SEVER_EDGE);
    assert_eq!(
        chosen.blast_radius.broken, 0,
        "a → b is outside the envelope"
    );
    assert_eq!(rig.feed.version(), version, "a dry run wrote the feed");
    let (_, after) = rig.get(TOKEN, &format!("?agent={A}")).await?;
    assert_eq!(before, after);
    Ok(())
}

/// The `call` of every `call-refused` entry, once at least one is journaled (reports arrive
/// in the background).
async fn refused_calls(rig: &Rig, within: Duration) -> Result<Vec<String>> {
    let deadline = Instant::now() + within;
    loop {
        let calls: Vec<String> = rig
            .engine
            .journal()
            .entries()?
            .into_iter()
            .filter(|e| e.kind == "call-refused")
            .filter_map(|e| e.body["call"].as_str().map(str::to_string))
            .collect();
        if !calls.is_empty() || Instant::now() > deadline {
            return Ok(calls);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn report(rig: &Rig, token: &str, body: Value) -> Result<(StatusCode, Value)> {
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/feed/refusals", rig.base))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await?;
    let status = StatusCode::from_u16(resp.status().as_u16())?;
    Ok((status, resp.json().await?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_a_shim_reports_is_journaled_under_the_incident_that_severed_the_edge(
) -> Result<()> {
    let rig = Rig::start().await?;
    let incident = sever(&rig, "report-1").await?;
    // Nothing refuses a → c: answered, nothing journaled.
    let (status, body) = report(&rig, TOKEN, json!({"from": A, "to": C})).await?;
    assert_eq!(
        (status, body["incidents"].clone()),
        (StatusCode::OK, json!([]))
    );
    // c's token reads neither a nor b; a malformed body names what is wrong.
    let (status, _) = report(&rig, C_TOKEN, json!({"from": A, "to": B})).await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = report(&rig, TOKEN, json!({"from": A, "too": B})).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"].as_str().unwrap_or_default().contains("too"),
        "{body}"
    );
    let (status, body) = report(&rig, TOKEN, json!({"from": "a\nforged", "to": B})).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(rig
        .engine
        .journal()
        .entries()?
        .iter()
        .all(|e| e.kind != "call-refused"));

    let (status, body) = report(&rig, TOKEN, json!({"from": A, "to": B})).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["incidents"], json!([incident.as_str()]));
    let calls = refused_calls(&rig, Duration::from_secs(5)).await?;
    assert_eq!(calls, [format!("delegation {A} → {B}")]);
    let entry = rig
        .engine
        .journal()
        .entries_for(incident.as_str())?
        .into_iter()
        .find(|e| e.kind == "call-refused")
        .context("call-refused under the severing incident")?;
    assert!(entry.body["plan"]
        .as_str()
        .is_some_and(|p| p.starts_with(incident.as_str())));
    assert_eq!(rig.engine.metrics().refused_calls.get(), 1);
    let view = rig.engine.incident(&incident).await.context("incident")?;
    assert_eq!(view.plans.iter().map(|p| p.refused_calls).sum::<u64>(), 1);
    Ok(())
}

/// Contains `a → b` through the engine under the runbook; answers the incident.
async fn sever(rig: &Rig, id: &str) -> Result<IncidentId> {
    let submitted = rig.engine.submit(alert(id, B)?, Request::Runbook).await?;
    let plan = submitted.plan.as_ref().context("a plan")?;
    let status = rig.engine.settled(&submitted.incident, &plan.id).await;
    anyhow::ensure!(status == Some(PlanStatus::Contained), "{id}: {status:?}");
    Ok(submitted.incident)
}

/// The reproduction: a shim that cached a high version from the old daemon must take
/// the restarted daemon's documents, both ways a shim can resume (an `EPOCH.VERSION` event id,
/// or a bare version from an older shim); and what the new daemon recovered from the journal
/// is in its feed before any new alert.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_daemon_serves_newer_versions_and_a_cached_shim_resyncs() -> Result<()> {
    let rig = Rig::start().await?;
    for round in 0..2 {
        let incident = sever(&rig, &format!("before-{round}")).await?;
        rig.engine.rollback(&incident, Some("test".into())).await?;
    }
    let held = sever(&rig, "held-across-restart").await?;
    let cached = rig.document(A).await?;
    assert_eq!(cached.severed, [B], "{cached:?}");

    let rig = rig.restart().await?;
    // The new daemon re-asserted the held sever from the journal: same decision, newer version.
    let recovered = rig.document(A).await?;
    assert_eq!(
        recovered.severed,
        [B],
        "recovered from the journal: {recovered:?}"
    );
    assert_ne!(recovered.epoch, cached.epoch);
    assert!(
        recovered.version > cached.version,
        "{recovered:?} vs {cached:?}"
    );
    rig.engine.rollback(&held, Some("test".into())).await?;

    // A shim resuming with the old daemon's event id is resynced at once (another epoch)…
    let mut resumed = Events::open(&rig, A, Some(format!("{}.{}", cached.epoch, u64::MAX))).await?;
    let first = resumed.next().await?;
    assert!(
        first.severed.is_empty(),
        "the rollback is what it sees: {first:?}"
    );
    // …and so is an older shim with a bare version: every version now is newer than it.
    let mut bare = Events::open(&rig, A, Some(cached.version.to_string())).await?;
    let current = bare.next().await?;
    assert!(
        current.version > cached.version,
        "{current:?} vs cached {cached:?}"
    );
    let incident = sever(&rig, "after-restart").await?;
    let seen = bare.next().await?;
    assert!(
        seen.version > current.version && seen.severed == [B],
        "{seen:?} after {current:?}"
    );
    let refused = seen.refuses_edge(B, None);
    assert!(refused.is_some_and(|r| r.contains("severed")));
    rig.engine.rollback(&incident, Some("test".into())).await?;
    Ok(())
}

/// A delegation alert whose `to` is a graph node name: no shim would match a rule on it, so it
/// is escalated with the reason, never "contained".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_naming_a_node_not_an_agent_is_escalated_not_contained() -> Result<()> {
    let rig = Rig::start().await?;
    let version = rig.feed.version();
    let submitted = rig
        .engine
        .submit(alert("node-1", "researcher_node")?, Request::Runbook)
        .await?;
    assert_eq!(submitted.plan_status(), Some(PlanStatus::Escalated));
    let plan = submitted.plan.as_ref().context("a plan")?;
    assert!(plan.chosen.is_none(), "{plan:?}");
    let reason = plan.escalation.as_deref().unwrap_or_default();
    assert!(
        reason.contains("researcher_node") && reason.contains("agent key"),
        "{reason}"
    );
    assert_eq!(rig.feed.version(), version, "the feed was written");
    Ok(())
}
