//! The MCP gateway: a JSON-RPC-aware reverse proxy for streamable HTTP.
//!
//! Why a proxy and not rmcp's server + client: terminating each session in rmcp and re-issuing
//! it upstream would re-encode every message, drop what rmcp does not model (new methods,
//! `_meta` extensions, session ids, SSE event ids for resumption) and double the per-call cost.
//! The gateway only needs to read `tools/call` and `tools/list`; everything else passes through
//! byte for byte. rmcp's model types validate what it reads and shape what it writes (errors,
//! the refusal result, `list_changed`).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use firebreak_containment::agent::AgentKey;
use futures_util::StreamExt;
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ContentBlock, ErrorCode, ErrorData, JsonRpcError,
    JsonRpcNotification, JsonRpcResponse, JsonRpcVersion2_0, RequestId,
    ToolListChangedNotification,
};
use serde::Deserialize;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::auth::{AuthError, Authenticator, StaticTokens, TokenReview};
use crate::config::{ConfigError, GatewayConfig};
use crate::legacy::{self, Era, HttpUpstream, LegacyError, Step};
use crate::message::{parse_message, Message};
use crate::policy::{Decision, Policy, Revocation};
use crate::sse;
use crate::stdio::StdioUpstream;

mod streams;

/// Largest JSON-RPC body accepted from an agent; MCP requests are small, bigger ones are abuse.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("invalid gateway config: {0}")]
    Config(#[from] ConfigError),
    #[error("cannot listen on {addr}: {source}; pick a free address in gateway.listen")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("the gateway stopped serving: {0}")]
    Serve(std::io::Error),
    #[error("cannot build the upstream HTTP client: {0}")]
    Client(reqwest::Error),
}

/// The gateway: config, authenticators, and the policy it shares with [`crate::ToolsPlane`].
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

struct Inner {
    config: GatewayConfig,
    upstreams: BTreeMap<String, Target>,
    policy: Arc<Policy>,
    authenticators: Vec<Box<dyn Authenticator>>,
    client: reqwest::Client,
    /// Per HTTP upstream: its protocol and the gateway's own 2025-11-25 session, for
    /// 2026-07-28 agents (see [`legacy`]).
    legacy: BTreeMap<String, Arc<HttpUpstream>>,
}

/// How one upstream is reached.
enum Target {
    Http(String),
    Stdio(StdioUpstream),
}

/// Request headers passed upstream besides every `Mcp-*` one. `Authorization` is the agent's
/// credential for the gateway and never leaves it.
const FORWARDED: [HeaderName; 3] = [header::ACCEPT, header::CONTENT_TYPE, header::CACHE_CONTROL];
const LAST_EVENT_ID: &str = "last-event-id";

impl Gateway {
    pub fn new(config: GatewayConfig, policy: Arc<Policy>) -> Result<Gateway, GatewayError> {
        config.validate()?;
        let mut authenticators: Vec<Box<dyn Authenticator>> =
            vec![Box::new(StaticTokens::new(&config.agents)?)];
        if let Some(review) = &config.token_review {
            authenticators.push(Box::new(TokenReview::new(review)?));
        }
        let upstreams = config
            .upstreams
            .iter()
            .map(|(name, u)| {
                let target = match (&u.url, &u.command) {
                    (Some(url), _) => Target::Http(url.clone()),
                    (None, command) => Target::Stdio(StdioUpstream::new(
                        command.clone().unwrap_or_default(),
                        u.args.clone(),
                    )),
                };
                (name.clone(), target)
            })
            .collect();
        let legacy = config
            .upstreams
            .iter()
            .filter_map(|(name, u)| {
                Some((
                    name.clone(),
                    Arc::new(HttpUpstream::new(name, u.url.as_deref()?)),
                ))
            })
            .collect();
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .build()
            .map_err(GatewayError::Client)?;
        Ok(Gateway {
            inner: Arc::new(Inner {
                config,
                upstreams,
                policy,
                authenticators,
                client,
                legacy,
            }),
        })
    }

    pub fn policy(&self) -> &Arc<Policy> {
        &self.inner.policy
    }

    /// The routes: `/mcp/{upstream}` (POST, GET listen stream, DELETE) and `/healthz`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/mcp/{upstream}", any(handle))
            .route("/healthz", axum::routing::get(|| async { "ok" }))
            .with_state(self.clone())
    }

    /// Serves on an already bound listener (tests bind port 0), with the config's limits:
    /// an agent that opens idle connections cannot lock the others out.
    pub async fn serve_on(
        &self,
        listener: TcpListener,
        metrics: Option<firebreak_serving::Metrics>,
    ) -> Result<(), GatewayError> {
        firebreak_serving::serve_with_metrics(
            listener,
            self.router(),
            self.inner.config.limits,
            metrics,
            std::future::pending(),
        )
        .await
        .map_err(GatewayError::Serve)
    }
}

/// Binds `config.listen` and serves until the process ends. Call
/// [`Policy::attach_engine`] once the engine is built so refused calls are journaled.
pub async fn serve(
    config: GatewayConfig,
    policy: Arc<Policy>,
    metrics: Option<firebreak_serving::Metrics>,
) -> Result<(), GatewayError> {
    let addr = config.listen;
    let gateway = Gateway::new(config, policy)?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| GatewayError::Bind { addr, source })?;
    info!(%addr, "MCP gateway listening");
    gateway.serve_on(listener, metrics).await
}

/// A JSON-RPC error, in rmcp's shape. Nothing was forwarded.
fn rpc_error(status: StatusCode, id: Option<&Value>, code: ErrorCode, message: String) -> Response {
    let id = id.and_then(|v| serde_json::from_value::<RequestId>(v.clone()).ok());
    let body = JsonRpcError::new(id, ErrorData::new(code, message, None));
    json_response(status, &body)
}

fn json_response<T: serde::Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            Bytes::from(bytes),
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn handle(
    State(gw): State<Gateway>,
    Path(upstream): Path<String>,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let agent = match gw.authenticate(&headers).await {
        Ok(Some(agent)) => agent,
        Ok(None) => {
            return rpc_error(
                StatusCode::UNAUTHORIZED,
                None,
                ErrorCode::INVALID_REQUEST,
                "unknown or missing bearer token; send Authorization: Bearer <token> configured in gateway.agents or a ServiceAccount token".into(),
            )
        }
        Err(e) => {
            warn!(error = %e, "authentication failed");
            return rpc_error(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                ErrorCode::INTERNAL_ERROR,
                e.to_string(),
            );
        }
    };
    let Some(target) = gw.inner.upstreams.get(&upstream) else {
        return rpc_error(
            StatusCode::NOT_FOUND,
            None,
            ErrorCode::INVALID_REQUEST,
            format!(
                "unknown upstream {upstream:?}; configured: {}",
                gw.inner
                    .config
                    .upstreams
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    };
    match (method, target) {
        (Method::POST, _) => gw.post(agent, &upstream, target, headers, body).await,
        (Method::GET, Target::Http(url)) => gw.listen(agent, Some(url), headers).await,
        (Method::GET, Target::Stdio(_)) => gw.listen(agent, None, headers).await,
        (Method::DELETE, Target::Http(url)) => {
            gw.forward(Method::DELETE, url, &headers, Bytes::new())
                .await
        }
        // The stdio child's one session outlives any agent's.
        (Method::DELETE, Target::Stdio(_)) => StatusCode::NO_CONTENT.into_response(),
        (other, _) => (
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{other} is not part of MCP streamable HTTP; use POST, GET or DELETE"),
        )
            .into_response(),
    }
}

impl Gateway {
    async fn authenticate(&self, headers: &HeaderMap) -> Result<Option<AgentKey>, AuthError> {
        let Some(token) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return Ok(None);
        };
        for auth in &self.inner.authenticators {
            if let Some(agent) = auth.authenticate(token.trim()).await? {
                return Ok(Some(agent));
            }
        }
        Ok(None)
    }

    async fn post(
        &self,
        agent: AgentKey,
        upstream: &str,
        target: &Target,
        headers: HeaderMap,
        body: Body,
    ) -> Response {
        let bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
            Ok(b) => b,
            Err(_) => {
                return rpc_error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    None,
                    ErrorCode::INVALID_REQUEST,
                    format!("body larger than {MAX_BODY_BYTES} bytes, or unreadable"),
                )
            }
        };
        let mut msg = match parse_message(&bytes) {
            Ok(m) => m,
            Err((code, message, id)) => {
                return rpc_error(StatusCode::BAD_REQUEST, id.as_ref(), code, message)
            }
        };
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        if let (Some(h), Some(m)) = (header("mcp-method"), msg.method.as_deref()) {
            if h != m {
                return rpc_error(
                    StatusCode::BAD_REQUEST,
                    msg.id.as_ref(),
                    ErrorCode::HEADER_MISMATCH,
                    format!("Mcp-Method header {h:?} does not match the body's method {m:?}"),
                );
            }
        }
        if msg.method.as_deref() == Some("tools/call") {
            let params = match CallToolRequestParams::deserialize(&msg.params) {
                Ok(p) => p,
                Err(e) => {
                    return rpc_error(
                        StatusCode::BAD_REQUEST,
                        msg.id.as_ref(),
                        ErrorCode::INVALID_PARAMS,
                        format!("invalid tools/call params: {e}"),
                    )
                }
            };
            let tool = params.name.as_ref();
            if let Some(h) = header("mcp-name") {
                if h != tool {
                    return rpc_error(
                        StatusCode::BAD_REQUEST,
                        msg.id.as_ref(),
                        ErrorCode::HEADER_MISMATCH,
                        format!("Mcp-Name header {h:?} does not match the tool in the body {tool:?}; refused"),
                    );
                }
            }
            if let Some(refusal) = self.refuse(&agent, upstream, tool, msg.id.as_ref(), &headers) {
                return refusal;
            }
        }
        if let Some(version) = legacy::modern_version(&headers, &msg.params) {
            match self
                .translate(&agent, upstream, target, &version, msg)
                .await
            {
                Ok(translated) => return translated,
                Err(passed) => msg = passed,
            }
        }
        match (msg.method.as_deref(), target) {
            (Some("tools/list"), Target::Http(url)) => {
                self.list(&agent, upstream, url, &headers, bytes).await
            }
            (Some("subscriptions/listen"), Target::Http(url)) => {
                self.subscribe(agent, url, &headers, bytes, &msg).await
            }
            (_, Target::Http(url)) => self.forward(Method::POST, url, &headers, bytes).await,
            (_, Target::Stdio(child)) => self.stdio(&agent, upstream, child, msg, false).await,
        }
    }

    /// A 2026-07-28 request for an upstream that speaks only 2025-11-25, translated; the
    /// message back when the upstream speaks 2026-07-28 itself and it passes through.
    async fn translate(
        &self,
        agent: &AgentKey,
        upstream: &str,
        target: &Target,
        version: &str,
        msg: Message,
    ) -> Result<Response, Message> {
        let client = &self.inner.client;
        let http = match (target, self.inner.legacy.get(upstream)) {
            (Target::Http(_), Some(http)) => match http.era(client).await {
                Ok(Era::Modern) => return Err(msg),
                Ok(Era::Legacy) => Some(http),
                Err(e) => return Ok(translation_failed(msg.id.as_ref(), &e)),
            },
            _ => None,
        };
        let id = msg.id.clone().unwrap_or(Value::Null);
        let step = legacy::step(upstream, version, msg.method.as_deref(), msg.id.is_some());
        Ok(match (step, target, http) {
            (Step::Refuse(error), ..) => {
                let id = serde_json::from_value::<RequestId>(id).ok();
                json_response(StatusCode::OK, &JsonRpcError::new(id, error))
            }
            (Step::Accept, ..) => StatusCode::ACCEPTED.into_response(),
            (Step::Listen, ..) => self.own_listen(agent.clone(), &id, &msg.params),
            (Step::Discover, _, Some(http)) => {
                legacy::discover_answer(upstream, &id, http.init(client).await)
            }
            (Step::Discover, Target::Stdio(child), _) => {
                let init = child.init().await;
                legacy::discover_answer(upstream, &id, init.map_err(LegacyError::stdio(upstream)))
            }
            (Step::Forward, _, Some(http)) => {
                let method = msg.method.unwrap_or_default();
                let edit: legacy::Edit = match method.as_str() {
                    "tools/list" => {
                        let (gw, agent, upstream) =
                            (self.clone(), agent.clone(), upstream.to_string());
                        Box::new(move |m: &mut Value| {
                            gw.filter_tools(&agent, &upstream, m);
                        })
                    }
                    _ => Box::new(|_: &mut Value| {}),
                };
                http.forward(client, id, method, msg.params, edit).await
            }
            (Step::Forward, Target::Stdio(child), _) => {
                self.stdio(agent, upstream, child, msg, true).await
            }
            // Every HTTP upstream has its `HttpUpstream`; without one, pass through.
            (_, Target::Http(_), None) => return Err(msg),
        })
    }

    /// One message to a stdio upstream; answers are JSON (there is no stream to hold open).
    async fn stdio(
        &self,
        agent: &AgentKey,
        upstream: &str,
        child: &StdioUpstream,
        msg: Message,
        modern: bool,
    ) -> Response {
        let Message { id, method, params } = msg;
        let result = match (id, method) {
            (Some(id), Some(method)) => {
                let params = if modern {
                    legacy::legacy_params(params)
                } else {
                    params
                };
                child.request(&id, &method, params).await.map(|mut answer| {
                    if method == "tools/list" {
                        self.filter_tools(agent, upstream, &mut answer);
                    }
                    if modern {
                        legacy::modern_answer(&method, &mut answer);
                    }
                    Some(answer)
                })
            }
            (None, Some(method)) => child.notify(&method, params).await.map(|()| None),
            // An agent's answer to a server request: none are routed over a shared pipe.
            (_, None) => Ok(None),
        };
        match result {
            Ok(Some(answer)) => json_response(StatusCode::OK, &answer),
            Ok(None) => StatusCode::ACCEPTED.into_response(),
            Err(e) => {
                warn!(upstream, error = %e, "stdio upstream failed");
                rpc_error(
                    StatusCode::BAD_GATEWAY,
                    None,
                    ErrorCode::INTERNAL_ERROR,
                    format!(
                        "upstream {upstream} failed: {e}; check its command in gateway.upstreams"
                    ),
                )
            }
        }
    }

    /// Learns the upstream's tools from a `tools/list` answer and drops those this agent may
    /// not call. Returns whether `message` was a `tools/list` answer.
    fn filter_tools(&self, agent: &AgentKey, upstream: &str, message: &mut Value) -> bool {
        let Some(tools) = message
            .get_mut("result")
            .and_then(|r| r.get_mut("tools"))
            .and_then(Value::as_array_mut)
        else {
            return false;
        };
        self.inner
            .policy
            .learn_tools(upstream, tools.iter().filter_map(|t| t["name"].as_str()));
        tools.retain(|t| {
            t["name"].as_str().is_some_and(|name| {
                self.inner.policy.decide(agent, upstream, name) == Decision::Allowed
            })
        });
        true
    }

    /// The answer to a `tools/call` the policy refuses, or `None` to forward it.
    fn refuse(
        &self,
        agent: &AgentKey,
        upstream: &str,
        tool: &str,
        id: Option<&Value>,
        headers: &HeaderMap,
    ) -> Option<Response> {
        let text = match self.inner.policy.decide(agent, upstream, tool) {
            Decision::Allowed => {
                if self.inner.policy.unknown_tool(upstream, tool) {
                    return Some(rpc_error(
                        StatusCode::OK,
                        id,
                        ErrorCode::INVALID_PARAMS,
                        format!("unknown tool {tool:?} on {upstream}; call tools/list for the tools it has"),
                    ));
                }
                return None;
            }
            Decision::Revoked(revocation) => {
                let text = format!(
                    "Firebreak refused tool {tool} on {upstream}: revoked for this agent by incident {}",
                    revocation.incident
                );
                self.audit(revocation, agent, upstream, tool);
                text
            }
            Decision::OutsideEnvelope => format!(
                "Firebreak refused tool {tool} on {upstream}: outside this agent's envelope (envelope-only mode)"
            ),
        };
        let Some(id) = id.and_then(|v| serde_json::from_value::<RequestId>(v.clone()).ok()) else {
            return Some(rpc_error(
                StatusCode::BAD_REQUEST,
                None,
                ErrorCode::INVALID_REQUEST,
                "tools/call is a request: it needs an \"id\"".into(),
            ));
        };
        let mut result = CallToolResult::error(vec![ContentBlock::text(text)]);
        // `resultType` exists from 2026-07-28 on; older clients must not see it.
        if headers
            .get("mcp-protocol-version")
            .and_then(|v| v.to_str().ok())
            .is_none_or(|v| v < "2026-07-28")
        {
            result.result_type = None;
        }
        let body = JsonRpcResponse {
            jsonrpc: JsonRpcVersion2_0,
            id,
            result,
        };
        Some(json_response(StatusCode::OK, &body))
    }

    /// Journals a refused call under the incident and plan that revoked it, off the call path.
    fn audit(&self, revocation: Revocation, agent: &AgentKey, upstream: &str, tool: &str) {
        if let Some(engine) = self.inner.policy.engine() {
            let call = format!("tool {tool} on server {upstream}");
            engine.record_refused_call(
                &revocation.incident,
                Some(&revocation.plan),
                &agent.0,
                &call,
            );
        }
    }

    /// `tools/list`: forwarded, then filtered to what this agent may call.
    async fn list(
        &self,
        agent: &AgentKey,
        upstream: &str,
        url: &str,
        headers: &HeaderMap,
        bytes: Bytes,
    ) -> Response {
        let response = match self.send(Method::POST, url, headers, bytes).await {
            Ok(r) => r,
            Err(e) => return e,
        };
        let (status, out_headers) = (response.status(), response_headers(response.headers()));
        let is_sse = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let body = match response.bytes().await {
            Ok(b) => b,
            Err(e) => return upstream_failed(url, &e),
        };
        let filter = |text: &str| -> Option<String> {
            let mut value: Value = serde_json::from_str(text).ok()?;
            self.filter_tools(agent, upstream, &mut value)
                .then(|| serde_json::to_string(&value).ok())
                .flatten()
        };
        let body = if is_sse {
            let mut splitter = sse::EventSplitter::default();
            let mut out = Vec::with_capacity(body.len());
            let mut events = splitter.push(&body);
            events.extend(splitter.finish());
            for event in events {
                match sse::data(&event).as_deref().and_then(filter) {
                    Some(data) => out.extend_from_slice(&sse::with_data(&event, &data)),
                    None => out.extend_from_slice(&event),
                }
            }
            Bytes::from(out)
        } else {
            match std::str::from_utf8(&body).ok().and_then(filter) {
                Some(text) => Bytes::from(text),
                None => body,
            }
        };
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = status;
        *response.headers_mut() = out_headers;
        response
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<reqwest::Response, Response> {
        let mut request = self.inner.client.request(method, url).body(body);
        for (name, value) in headers {
            if FORWARDED.contains(name)
                || name.as_str().starts_with("mcp-")
                || name.as_str() == LAST_EVENT_ID
            {
                request = request.header(name, value);
            }
        }
        request.send().await.map_err(|e| upstream_failed(url, &e))
    }

    /// Passes the request through and streams the answer back unchanged.
    async fn forward(
        &self,
        method: Method,
        url: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Response {
        match self.send(method, url, headers, body).await {
            Ok(r) => relay(r).await,
            Err(e) => e,
        }
    }
}

/// Streams SSE answers through as they come; buffers JSON ones so the agent gets a
/// `Content-Length` body in one write instead of a chunked stream.
async fn relay(response: reqwest::Response) -> Response {
    let status = response.status();
    let headers = response_headers(response.headers());
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let body = if is_json {
        let url = response.url().to_string();
        match response.bytes().await {
            Ok(bytes) => Body::from(bytes),
            Err(e) => return upstream_failed(&url, &e),
        }
    } else {
        Body::from_stream(response.bytes_stream())
    };
    let mut out = Response::new(body);
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    out
}

/// Response headers passed back: the content type, caching and every `Mcp-*` one.
fn response_headers(from: &HeaderMap) -> HeaderMap {
    from.iter()
        .filter(|(name, _)| {
            *name == header::CONTENT_TYPE
                || *name == header::CACHE_CONTROL
                || name.as_str().starts_with("mcp-")
        })
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect()
}

fn translation_failed(id: Option<&Value>, e: &LegacyError) -> Response {
    warn!(error = %e, "cannot translate for a 2026-07-28 agent");
    rpc_error(
        StatusCode::BAD_GATEWAY,
        id,
        ErrorCode::INTERNAL_ERROR,
        e.to_string(),
    )
}

fn upstream_failed(url: &str, e: &reqwest::Error) -> Response {
    warn!(url, error = %e, "upstream MCP server failed");
    rpc_error(
        StatusCode::BAD_GATEWAY,
        None,
        ErrorCode::INTERNAL_ERROR,
        format!("upstream {url} failed: {e}; check that the MCP server is running"),
    )
}
