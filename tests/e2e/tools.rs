//! End-to-end: Firebreak's MCP tool gateway between the official Python MCP client (both
//! protocol versions) and real upstreams (FastMCP, server-everything), driven by the engine.

#[path = "tools/harness.rs"]
mod harness;
#[path = "tools/modern.rs"]
mod modern;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use firebreak_containment::agent::AgentKey;
use firebreak_containment::engine::{Engine, EngineConfig, Parts, Progress, Request, Submitted};
use firebreak_containment::journal::Journal;
use firebreak_containment::metrics::Metrics;
use firebreak_containment::plane::Planes;
use firebreak_containment::runbook::Runbooks;
use firebreak_containment::{Alert, Envelope, EnvelopeStore, IncidentId, Mode, Plan, PlanStatus};
use firebreak_tools::{
    Authenticator, Decision, Gateway, GatewayConfig, Policy, TokenReview, TokenReviewConfig,
    ToolsPlane, REVOKE_TOOL,
};
use harness::{Agent, Server};
use serde_json::{json, Value};

const A_TOKEN: &str = "token-payment-agent-0001";
const B_TOKEN: &str = "token-billing-agent-0002";
const A: &str = "prod/payments/Deployment/payment-agent";
const B: &str = "prod/payments/Deployment/billing-agent";
const SA_TOKEN: &str = "eyJ-serviceaccount-token-of-payment-agent";
const REVIEWER_TOKEN: &str = "gateway-reviewer-token";

struct Upstreams {
    fastmcp: Server,
    everything: Server,
}

/// Shared upstreams: started once per test binary.
fn upstreams() -> &'static Upstreams {
    static UPSTREAMS: OnceLock<Upstreams> = OnceLock::new();
    UPSTREAMS.get_or_init(|| Upstreams {
        fastmcp: Server::fastmcp().expect("start the FastMCP upstream"),
        everything: Server::everything().expect("start server-everything"),
    })
}

fn envelope(workload: &str, tools: &[(&str, &str)]) -> Result<Envelope> {
    let observed: String = tools
        .iter()
        .map(|(server, tool)| {
            format!(
                "      - {{server: {server}, tool: {tool}, closure: literal, count: 50, sessions: 9}}\n"
            )
        })
        .collect();
    let yaml = format!(
        "apiVersion: firebreak.dev/v1alpha1\nkind: Envelope\nmetadata: {{name: {workload}}}\n\
         spec:\n  agent: {{cluster: prod, namespace: payments, workload: Deployment/{workload}, serviceAccount: {workload}}}\n\
         \x20 version: 3\n  status: converged\n  tools:\n    observed:\n{observed}"
    );
    Ok(Envelope::from_yaml(&yaml)?)
}

fn alert(id: &str, workload: &str, server: &str, tool: &str) -> Result<Alert> {
    let body = json!({
        "id": id, "source": "test", "time": "2026-11-22T05:00:00Z",
        "agent": {"cluster": "prod", "namespace": "payments",
                  "workload": format!("Deployment/{workload}"), "serviceAccount": workload},
        "dimension": "tools",
        "parameter": {"server": server, "tool": tool},
        "tier": "attack-attempt", "severity": "critical",
    });
    Ok(Alert::from_json(body.to_string().as_bytes())?)
}

/// One gateway + engine, sharing one policy, with its own journal.
struct Rig {
    engine: Engine,
    policy: Arc<Policy>,
    base: String,
    dir: tempfile::TempDir,
    /// What it was started with, so [`Rig::restart`] can start the same daemon again.
    upstreams: Value,
    extra: Value,
}

impl Rig {
    async fn start(upstreams: Value, extra: Value) -> Result<Rig> {
        Rig::open(upstreams, extra, tempfile::tempdir()?).await
    }

    /// A new daemon process on the journal in `dir`: an empty in-memory policy and a new
    /// gateway. Nothing is recovered until the test calls [`Engine::recover`].
    async fn open(upstreams: Value, extra: Value, dir: tempfile::TempDir) -> Result<Rig> {
        let mut config = json!({
            "listen": "127.0.0.1:0",
            "upstreams": upstreams.clone(),
            "agents": {A_TOKEN: A, B_TOKEN: B},
        });
        if let (Some(c), Some(e)) = (config.as_object_mut(), extra.as_object()) {
            c.extend(e.clone());
        }
        let config: GatewayConfig = serde_json::from_value(config)?;
        let policy = Arc::new(Policy::default());
        let plane = ToolsPlane::new(policy.clone(), config.upstreams.keys().cloned());
        let mut envelopes = EnvelopeStore::default();
        envelopes.insert(
            envelope(
                "payment-agent",
                &[
                    ("fastmcp", "echo"),
                    ("fastmcp", "add"),
                    ("everything", "echo"),
                    ("everything-stdio", "echo"),
                ],
            )?,
            "a.yaml".into(),
        )?;
        envelopes.insert(
            envelope(
                "billing-agent",
                &[
                    ("fastmcp", "export_payouts"),
                    ("everything", "get-sum"),
                    ("everything-stdio", "get-sum"),
                ],
            )?,
            "b.yaml".into(),
        )?;
        policy.set_envelopes(&envelopes, config.envelope_only);
        let mut planes = Planes::default();
        planes.register(plane)?;
        let engine = Engine::open(Parts {
            journal: Journal::open(&dir.path().join("journal.db"))?,
            envelopes,
            runbooks: Runbooks::embedded()?,
            planes,
            metrics: Metrics::new()?,
            config: EngineConfig {
                verify_poll: Duration::from_millis(5),
                ..EngineConfig::default()
            },
        })?;
        policy.attach_engine(engine.clone());
        let gateway = Gateway::new(config, policy.clone())?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move { gateway.serve_on(listener, None).await });
        Ok(Rig {
            engine,
            policy,
            base,
            dir,
            upstreams,
            extra,
        })
    }

    /// Stops this daemon's engine and starts a new process on the same journal.
    async fn restart(self) -> Result<Rig> {
        self.engine.shutdown();
        Rig::open(self.upstreams, self.extra, self.dir).await
    }

    /// Every kind of upstream: FastMCP and server-everything over HTTP, server-everything
    /// over stdio (spawned by the gateway).
    async fn shared(extra: Value) -> Result<Rig> {
        let u = upstreams();
        let entry = harness::everything_entry()?;
        Rig::start(
            json!({
                "fastmcp": {"url": u.fastmcp.url},
                "everything": {"url": u.everything.url},
                "everything-stdio": {"command": "node", "args": [entry, "stdio"]},
            }),
            extra,
        )
        .await
    }

    fn url(&self, upstream: &str) -> String {
        format!("{}/mcp/{upstream}", self.base)
    }

    /// The status the submitted alert's plan settles in (no longer applying or verifying).
    async fn settled(&self, submitted: &Submitted) -> Result<PlanStatus> {
        let plan = plan_of(submitted)?;
        tokio::time::timeout(
            Duration::from_secs(10),
            self.engine.settled(&submitted.incident, &plan.id),
        )
        .await
        .with_context(|| format!("plan {} did not settle within 10 s", plan.id))?
        .with_context(|| format!("plan {} is not in the engine's view", plan.id))
    }

    async fn journal_kinds(&self, incident: &IncidentId) -> Result<Vec<String>> {
        Ok(self
            .engine
            .journal()
            .entries_for(incident.as_str())?
            .into_iter()
            .map(|e| e.kind)
            .collect())
    }
}

/// The plan a submitted alert got (every alert in these tests is planned).
fn plan_of(submitted: &Submitted) -> Result<&Plan> {
    submitted
        .plan
        .as_ref()
        .with_context(|| format!("{} has no plan: {:?}", submitted.incident, submitted.status))
}

/// The issue's scenario on one upstream and one protocol version.
async fn revoke_one_tool(
    server: &str,
    (tool, args): (&str, Value),
    (other, other_args): (&str, Value),
    mode: &str,
) -> Result<()> {
    let rig = Rig::shared(json!({})).await?;
    let mut a = Agent::start(&rig.url(server), A_TOKEN, mode).await?;
    let mut b = Agent::start(&rig.url(server), B_TOKEN, mode).await?;
    // Both cache tools/list before anything happens.
    assert!(a.list().await?.iter().any(|t| t == tool));
    assert!(b.list().await?.iter().any(|t| t == tool));
    let before = a.call(tool, args.clone()).await?;
    assert!(!before.is_error, "before containment: {before:?}");

    // A dry run plans the real thing and changes nothing at the gateway.
    let dry = rig
        .engine
        .submit(
            alert("dry-1", "payment-agent", server, tool)?,
            Request::DryRun,
        )
        .await?;
    assert_eq!(dry.status, Progress::Plan(PlanStatus::DryRun));
    let chosen = plan_of(&dry)?.chosen.as_ref().context("a chosen action")?;
    assert_eq!(chosen.kind, REVOKE_TOOL.name);
    assert_eq!(
        chosen.blast_radius.broken, 0,
        "{tool} is outside the envelope"
    );
    assert_eq!(
        rig.policy.decide(&AgentKey(A.into()), server, tool),
        Decision::Allowed
    );
    assert!(
        !a.call(tool, args.clone()).await?.is_error,
        "dry run changed the gateway"
    );

    // The attack attempt is contained automatically. The gateway's policy is enforcement
    // Firebreak owns, so it is in force when `submit` answers: the very next call is refused.
    let submitted = rig
        .engine
        .submit(
            alert("atk-1", "payment-agent", server, tool)?,
            Request::Runbook,
        )
        .await?;
    let plan = plan_of(&submitted)?;
    assert_eq!(plan.mode, Mode::Auto, "{}", plan.mode_reason);
    let incident = submitted.incident.clone();
    let refused = a.call(tool, args.clone()).await?;
    assert!(
        refused.is_error,
        "stale success after containment: {refused:?}"
    );
    assert!(refused.text.contains(incident.as_str()), "{}", refused.text);
    assert_eq!(rig.settled(&submitted).await?, PlanStatus::Contained);

    // Nobody else and nothing else is touched.
    assert!(
        !b.call(tool, args.clone()).await?.is_error,
        "other agent affected"
    );
    let still = a.call(other, other_args).await?;
    assert!(!still.is_error, "other tool affected: {still:?}");
    let visible = a.list().await?;
    assert!(!visible.iter().any(|t| t == tool) && visible.iter().any(|t| t == other));

    // The refusal is in the journal.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !rig
        .journal_kinds(&incident)
        .await?
        .iter()
        .any(|k| k == "call-refused")
    {
        if Instant::now() > deadline {
            bail!("no call-refused entry in the journal of {incident}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // Rollback restores the tool.
    assert_eq!(
        rig.engine.rollback(&incident, None).await?,
        PlanStatus::Reverted
    );
    let after = a.call(tool, args).await?;
    assert!(!after.is_error, "after rollback: {after:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fastmcp_2026_07_28_client_loses_one_tool_on_the_next_call() -> Result<()> {
    revoke_one_tool(
        "fastmcp",
        ("export_payouts", json!({"account": "acme"})),
        ("echo", json!({"text": "hi"})),
        "2026-07-28",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fastmcp_2025_11_25_client_loses_one_tool_on_the_next_call() -> Result<()> {
    revoke_one_tool(
        "fastmcp",
        ("export_payouts", json!({"account": "acme"})),
        ("add", json!({"a": 1, "b": 2})),
        "legacy",
    )
    .await
}

/// server-everything's pair through `upstream`: `get-sum` revoked, `echo` kept.
async fn everything_loses_get_sum(upstream: &str, mode: &str) -> Result<()> {
    revoke_one_tool(
        upstream,
        ("get-sum", json!({"a": 1, "b": 2})),
        ("echo", json!({"message": "hi"})),
        mode,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_everything_client_loses_one_tool_on_the_next_call() -> Result<()> {
    everything_loses_get_sum("everything", "legacy").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_upstream_client_loses_one_tool_on_the_next_call() -> Result<()> {
    everything_loses_get_sum("everything-stdio", "legacy").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_daemon_reasserts_the_revocation_from_the_journal() -> Result<()> {
    let rig = Rig::shared(json!({})).await?;
    let submitted = rig
        .engine
        .submit(
            alert("atk-restart", "payment-agent", "fastmcp", "export_payouts")?,
            Request::Runbook,
        )
        .await?;
    assert_eq!(rig.settled(&submitted).await?, PlanStatus::Contained);
    let incident = submitted.incident.clone();

    // A new process: empty in-memory policy, a new gateway, the same journal.
    let rig = rig.restart().await?;
    let args = json!({"account": "acme"});
    let mut a = Agent::start(&rig.url("fastmcp"), A_TOKEN, "2026-07-28").await?;
    let mut b = Agent::start(&rig.url("fastmcp"), B_TOKEN, "2026-07-28").await?;
    let before = a.call("export_payouts", args.clone()).await?;
    assert!(
        !before.is_error,
        "the new process refused before recovering: {before:?}"
    );

    // Recovery re-applies the journaled revocation in the incident's task.
    assert_eq!(rig.engine.recover(), vec![incident.clone()]);
    let refused = a.until_refused("export_payouts", &args).await?;
    assert!(refused.contains(incident.as_str()), "{refused}");
    assert!(matches!(
        rig.policy.decide(&AgentKey(A.into()), "fastmcp", "export_payouts"),
        Decision::Revoked(r) if r.incident == incident
    ));
    let other = b.call("export_payouts", args).await?;
    assert!(!other.is_error, "another agent affected: {other:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_listen_gets_list_changed_for_its_agent_only() -> Result<()> {
    let rig = Rig::shared(json!({})).await?;
    let mut a = Agent::start(&rig.url("fastmcp"), A_TOKEN, "2026-07-28").await?;
    let mut b = Agent::start(&rig.url("fastmcp"), B_TOKEN, "2026-07-28").await?;
    a.listen().await?;
    b.listen().await?;
    let submitted = rig
        .engine
        .submit(
            alert("atk-sub", "payment-agent", "fastmcp", "export_payouts")?,
            Request::Runbook,
        )
        .await?;
    assert_eq!(rig.settled(&submitted).await?, PlanStatus::Contained);
    let deadline = Instant::now() + Duration::from_secs(5);
    while a.events().await? == 0 {
        if Instant::now() > deadline {
            bail!("A's subscriptions/listen stream got no tools list_changed");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(b.events().await?, 0, "B was told its tools changed");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelope_only_mode_hides_and_refuses_tools_outside_the_envelope() -> Result<()> {
    let rig = Rig::shared(json!({"envelopeOnly": true})).await?;
    let mut a = Agent::start(&rig.url("fastmcp"), A_TOKEN, "2026-07-28").await?;
    assert_eq!(a.list().await?, vec!["add".to_string(), "echo".to_string()]);
    let refused = a.call("export_payouts", json!({"account": "acme"})).await?;
    assert!(
        refused.is_error && refused.text.contains("envelope"),
        "{refused:?}"
    );
    assert!(!a.call("echo", json!({"text": "hi"})).await?.is_error);
    Ok(())
}

/// POSTs raw bytes to the gateway as agent A; returns (status, JSON body).
async fn raw(
    url: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<(StatusCode, Value)> {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await?;
    let status = StatusCode::from_u16(response.status().as_u16())?;
    let text = response.text().await?;
    Ok((
        status,
        serde_json::from_str(&text).with_context(|| format!("not JSON: {text}"))?,
    ))
}

/// One bad request and the JSON-RPC error it must get.
struct Case {
    what: &'static str,
    url: String,
    token: Option<&'static str>,
    headers: Vec<(&'static str, &'static str)>,
    body: Vec<u8>,
    status: u16,
    code: i64,
}

impl Case {
    fn new(
        what: &'static str,
        url: &str,
        token: Option<&'static str>,
        body: Vec<u8>,
        status: u16,
        code: i64,
    ) -> Case {
        Case {
            what,
            url: url.into(),
            token,
            headers: vec![],
            body,
            status,
            code,
        }
    }

    fn headers(mut self, headers: &[(&'static str, &'static str)]) -> Case {
        self.headers = headers.to_vec();
        self
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_json_rpc_error_and_nothing_reaches_the_upstream() -> Result<()> {
    // Its own upstream, so the request count is this test's alone.
    let upstream = Server::fastmcp()?;
    let rig = Rig::start(json!({"fastmcp": {"url": upstream.url}}), json!({})).await?;
    let url = rig.url("fastmcp");
    {
        // One real session teaches the gateway the upstream's tools.
        let mut a = Agent::start(&url, A_TOKEN, "2026-07-28").await?;
        a.list().await?;
    }
    let forwarded = upstream.count().await?;
    let call = |tool: &str| {
        json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
               "params": {"name": tool, "arguments": {"text": "x"}}})
        .to_string()
        .into_bytes()
    };
    let ok = Some(A_TOKEN);
    let batch = format!("[{}]", String::from_utf8_lossy(&call("echo"))).into_bytes();
    let oversize = vec![b' '; firebreak_tools::MAX_BODY_BYTES + 1];
    let bad_params = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":3}}"#;
    let name_mismatch = [("mcp-name", "add"), ("mcp-method", "tools/call")];
    let cases = [
        Case::new(
            "malformed",
            &url,
            ok,
            b"{\"jsonrpc\": \"2.0\",".to_vec(),
            400,
            -32700,
        ),
        Case::new("oversize", &url, ok, oversize, 413, -32600),
        Case::new("batch", &url, ok, batch, 400, -32600),
        Case::new("name mismatch", &url, ok, call("echo"), 400, -32020).headers(&name_mismatch),
        Case::new("method mismatch", &url, ok, call("echo"), 400, -32020)
            .headers(&[("mcp-method", "tools/list")]),
        Case::new(
            "unknown upstream",
            &rig.url("nope"),
            ok,
            call("echo"),
            404,
            -32600,
        ),
        Case::new("unknown tool", &url, ok, call("no_such_tool"), 200, -32602),
        Case::new("no token", &url, None, call("echo"), 401, -32600),
        Case::new("bad params", &url, ok, bad_params.to_vec(), 400, -32602),
    ];
    for Case {
        what,
        url,
        token,
        headers,
        body,
        status,
        code,
    } in cases
    {
        let (got, answer) = raw(&url, token, &headers, body).await?;
        assert_eq!(got.as_u16(), status, "{what}: {answer}");
        assert_eq!(answer["error"]["code"], json!(code), "{what}: {answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{what}"
        );
    }
    assert_eq!(
        upstream.count().await?,
        forwarded,
        "bad input reached the upstream"
    );
    // Still up, still serving.
    let mut a = Agent::start(&url, A_TOKEN, "2026-07-28").await?;
    assert!(!a.call("echo", json!({"text": "still up"})).await?.is_error);
    Ok(())
}

/// A strict fake of `POST /apis/authentication.k8s.io/v1/tokenreviews`: it refuses what the
/// API server refuses (wrong path/method, no or wrong bearer, unknown fields, wrong kind).
async fn fake_token_review() -> Result<String> {
    async fn review(headers: HeaderMap, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
        let status = |code: u16, reason: &str| {
            (
                StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST),
                Json(
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                            "reason": reason, "code": code}),
                ),
            )
        };
        if headers.get("authorization").and_then(|v| v.to_str().ok())
            != Some(&format!("Bearer {REVIEWER_TOKEN}"))
        {
            return status(401, "Unauthorized");
        }
        let keys_ok = body.as_object().is_some_and(|o| {
            o.keys()
                .all(|k| ["apiVersion", "kind", "spec", "metadata"].contains(&k.as_str()))
        }) && body["spec"].as_object().is_some_and(|s| {
            s.keys()
                .all(|k| ["token", "audiences"].contains(&k.as_str()))
        });
        if !keys_ok
            || body["apiVersion"] != "authentication.k8s.io/v1"
            || body["kind"] != "TokenReview"
            || !body["spec"]["token"].is_string()
        {
            return status(400, "BadRequest");
        }
        let audiences = body["spec"]["audiences"].clone();
        let result =
            if body["spec"]["token"] == SA_TOKEN && audiences == json!(["firebreak-gateway"]) {
                json!({"authenticated": true, "audiences": ["firebreak-gateway"],
                   "user": {"username": "system:serviceaccount:payments:payment-agent",
                            "uid": "3f1c", "groups": ["system:serviceaccounts"]}})
            } else {
                json!({"authenticated": false, "error": "invalid bearer token"})
            };
        let mut answer = body.clone();
        answer["status"] = result;
        (StatusCode::CREATED, Json(answer))
    }
    let app = Router::new().route("/apis/authentication.k8s.io/v1/tokenreviews", post(review));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_account_tokens_are_checked_by_token_review() -> Result<()> {
    let api = fake_token_review().await?;
    let config = |bearer: &str| TokenReviewConfig {
        api_server: api.clone(),
        bearer_token: bearer.into(),
        audiences: vec!["firebreak-gateway".into()],
        service_accounts: [("payments/payment-agent".to_string(), A.to_string())].into(),
    };
    let review = TokenReview::new(&config(REVIEWER_TOKEN))?;
    assert_eq!(
        review.authenticate(SA_TOKEN).await?,
        Some(AgentKey(A.into()))
    );
    assert_eq!(review.authenticate("forged").await?, None);
    let unauthorised = TokenReview::new(&config("wrong"))?;
    assert!(unauthorised.authenticate(SA_TOKEN).await.is_err());

    // Through the gateway: the ServiceAccount token is agent A, and A's revocations apply.
    let rig = Rig::shared(json!({"tokenReview": serde_json::to_value(json!({
        "apiServer": api, "bearerToken": REVIEWER_TOKEN, "audiences": ["firebreak-gateway"],
        "serviceAccounts": {"payments/payment-agent": A}}))?}))
    .await?;
    let mut a = Agent::start(&rig.url("fastmcp"), SA_TOKEN, "2026-07-28").await?;
    assert!(!a.call("echo", json!({"text": "hi"})).await?.is_error);
    let submitted = rig
        .engine
        .submit(
            alert("atk-sa", "payment-agent", "fastmcp", "echo")?,
            Request::Runbook,
        )
        .await?;
    // echo is in A's envelope: revoking it breaks one behaviour, so it waits for a human.
    let plan = plan_of(&submitted)?;
    assert_eq!(plan.mode, Mode::Approve, "{}", plan.mode_reason);
    assert_eq!(plan.chosen.as_ref().map(|c| c.blast_radius.broken), Some(1));
    assert_eq!(
        submitted.status,
        Progress::Plan(PlanStatus::AwaitingApproval)
    );
    assert!(!a.call("echo", json!({"text": "hi"})).await?.is_error);
    // Approved, A's revocation refuses the call made with the ServiceAccount token.
    rig.engine
        .approve(&submitted.incident, &plan.hash, "oncall")
        .await?;
    assert_eq!(rig.settled(&submitted).await?, PlanStatus::Contained);
    let refused = a.call("echo", json!({"text": "hi"})).await?;
    assert!(
        refused.is_error && refused.text.contains(submitted.incident.as_str()),
        "{refused:?}"
    );
    let mut forged =
        Agent::start(&rig.url("fastmcp"), "forged-token-0000000", "2026-07-28").await?;
    let denied = forged.call("echo", json!({"text": "hi"})).await;
    assert!(denied.is_err(), "{denied:?}");
    let (status, answer) = raw(&rig.url("fastmcp"), Some("forged"), &[], b"{}".to_vec()).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert!(answer["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("bearer token")));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_stream_gets_list_changed_for_its_agent_only() -> Result<()> {
    let rig = Rig::shared(json!({})).await?;
    let url = rig.url("fastmcp");
    let client = reqwest::Client::new();
    let mut open = Vec::new();
    for token in [A_TOKEN, B_TOKEN] {
        // The 2025-11-25 handshake, then the GET listen stream of that session.
        let init = client
            .post(&url)
            .bearer_auth(token)
            .header("accept", "application/json, text/event-stream")
            .json(
                &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {},
                "clientInfo": {"name": "listen-test", "version": "1"}}}),
            )
            .send()
            .await?;
        let session = init
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .context("a session id")?
            .to_string();
        init.bytes().await?;
        client
            .post(&url)
            .bearer_auth(token)
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", "2025-11-25")
            .header("accept", "application/json, text/event-stream")
            .json(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .send()
            .await?;
        let stream = client
            .get(&url)
            .bearer_auth(token)
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", "2025-11-25")
            .header("accept", "text/event-stream")
            .send()
            .await?;
        assert!(
            stream.status().is_success(),
            "listen stream: {}",
            stream.status()
        );
        open.push(stream);
    }
    let submitted = rig
        .engine
        .submit(
            alert("atk-listen", "payment-agent", "fastmcp", "export_payouts")?,
            Request::Runbook,
        )
        .await?;
    assert_eq!(rig.settled(&submitted).await?, PlanStatus::Contained);
    let mut b_stream = open.pop().context("B's stream")?;
    let mut a_stream = open.pop().context("A's stream")?;
    let mut seen = String::new();
    while !seen.contains("notifications/tools/list_changed") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), a_stream.chunk())
            .await
            .context("no list_changed on A's listen stream within 5 s")??
            .context("A's stream ended")?;
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    let b_got = tokio::time::timeout(Duration::from_millis(300), b_stream.chunk()).await;
    if let Ok(Ok(Some(chunk))) = b_got {
        assert!(
            !String::from_utf8_lossy(&chunk).contains("list_changed"),
            "B was told its tools changed"
        );
    }
    Ok(())
}

/// Raw `tools/call` over HTTP as agent A: the gateway's own answer (refusals never reach the
/// upstream, so no MCP session is needed for them).
async fn raw_call(rig: &Rig, upstream: &str, tool: &str) -> Result<Value> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                      "params": {"name": tool, "arguments": {}}});
    Ok(reqwest::Client::new()
        .post(rig.url(upstream))
        .bearer_auth(A_TOKEN)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .json(&body)
        .send()
        .await?
        .json()
        .await?)
}

/// Issue 14 §3: enforcement Firebreak owns is in force when the engine answers. Over 1,000
/// revocations, the first call after each answer is refused by the gateway, and not one call
/// reaches the upstream. Each incident is rolled back before the next alert, so every alert
/// opens an incident of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_revocation_is_in_force_when_the_engine_answers() -> Result<()> {
    const REVOCATIONS: usize = 1_000;
    // Its own upstream: every request it counts belongs to this test.
    let own = Server::fastmcp()?;
    let rig = Rig::start(json!({"fastmcp": {"url": own.url}}), json!({})).await?;
    let before = own.count().await?;
    for n in 0..REVOCATIONS {
        let tool = format!("probe-{n}");
        let submitted = rig
            .engine
            .submit(
                alert(&format!("imm-{n}"), "payment-agent", "fastmcp", &tool)?,
                Request::Operator("test".into()),
            )
            .await?;
        let answer = raw_call(&rig, "fastmcp", &tool).await?;
        assert_eq!(
            answer["result"]["isError"], true,
            "call {n} after the answer: {answer}"
        );
        let text = answer["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_default();
        assert!(
            text.contains("revoked"),
            "call {n}: {text} ({:?})",
            submitted.status
        );
        rig.engine
            .rollback(&submitted.incident, Some("test".into()))
            .await?;
    }
    assert_eq!(
        own.count().await?,
        before,
        "a call reached the upstream after an answer"
    );
    Ok(())
}
