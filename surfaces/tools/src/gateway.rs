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
use axum::serve::ListenerExt;
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
use crate::policy::{Decision, Policy, Revocation};
use crate::sse;
use crate::stdio::StdioUpstream;

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

    /// Serves on an already bound listener (tests bind port 0).
    pub async fn serve_on(&self, listener: TcpListener) -> Result<(), GatewayError> {
        // Without TCP_NODELAY a response written as headers + body waits ~40 ms for the
        // client's delayed ACK (Nagle), which would dwarf the upstream call itself.
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                warn!(error = %e, "cannot set TCP_NODELAY");
            }
        });
        axum::serve(listener, self.router())
            .await
            .map_err(GatewayError::Serve)
    }
}

/// Binds `config.listen` and serves until the process ends. Call
/// [`Policy::attach_engine`] once the engine is built so refused calls are journaled.
pub async fn serve(config: GatewayConfig, policy: Arc<Policy>) -> Result<(), GatewayError> {
    let addr = config.listen;
    let gateway = Gateway::new(config, policy)?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| GatewayError::Bind { addr, source })?;
    info!(%addr, "MCP gateway listening");
    gateway.serve_on(listener).await
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

/// The parts of one JSON-RPC message the gateway acts on.
struct Message {
    id: Option<Value>,
    method: Option<String>,
    params: Value,
}

/// Validates one JSON-RPC 2.0 message (no batches: MCP removed them in 2025-06-18).
fn parse_message(bytes: &[u8]) -> Result<Message, (ErrorCode, String, Option<Value>)> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        (
            ErrorCode::PARSE_ERROR,
            format!("body is not JSON: {e}"),
            None,
        )
    })?;
    let Value::Object(mut obj) = value else {
        let what = if value.is_array() {
            "JSON-RPC batches are not supported by MCP; send one message per request"
        } else {
            "a JSON-RPC message must be an object"
        };
        return Err((ErrorCode::INVALID_REQUEST, what.into(), None));
    };
    let id = obj.get("id").cloned();
    if obj.get("jsonrpc") != Some(&Value::String("2.0".into())) {
        return Err((
            ErrorCode::INVALID_REQUEST,
            "\"jsonrpc\" must be \"2.0\"".into(),
            id,
        ));
    }
    if let Some(id) = &id {
        if serde_json::from_value::<RequestId>(id.clone()).is_err() {
            return Err((
                ErrorCode::INVALID_REQUEST,
                "\"id\" must be a string or an integer".into(),
                None,
            ));
        }
    }
    let method = match obj.get("method") {
        None => None,
        Some(Value::String(m)) => Some(m.clone()),
        Some(_) => {
            return Err((
                ErrorCode::INVALID_REQUEST,
                "\"method\" must be a string".into(),
                id,
            ))
        }
    };
    if method.is_none()
        && !(id.is_some() && (obj.contains_key("result") || obj.contains_key("error")))
    {
        return Err((
            ErrorCode::INVALID_REQUEST,
            "a message needs \"method\" (request, notification) or \"id\" with \"result\"/\"error\" (response)".into(),
            id,
        ));
    }
    let params = obj.remove("params").unwrap_or(Value::Null);
    Ok(Message { id, method, params })
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
        let msg = match parse_message(&bytes) {
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
        match msg.method.as_deref() {
            Some("tools/call") => {
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
                if let Some(refusal) =
                    self.refuse(&agent, upstream, tool, msg.id.as_ref(), &headers)
                {
                    return refusal;
                }
            }
            Some("tools/list") => {
                if let Target::Http(url) = target {
                    return self.list(&agent, upstream, url, &headers, bytes).await;
                }
            }
            Some("subscriptions/listen") => {
                if let Target::Http(url) = target {
                    return self.subscribe(agent, url, &headers, bytes, &msg).await;
                }
            }
            _ => {}
        }
        match target {
            Target::Http(url) => self.forward(Method::POST, url, &headers, bytes).await,
            Target::Stdio(child) => self.stdio(&agent, upstream, child, msg).await,
        }
    }

    /// One message to a stdio upstream; answers are JSON (there is no stream to hold open).
    async fn stdio(
        &self,
        agent: &AgentKey,
        upstream: &str,
        child: &StdioUpstream,
        msg: Message,
    ) -> Response {
        let Message { id, method, params } = msg;
        let result = match (id, method) {
            (Some(id), Some(method)) => {
                child.request(&id, &method, params).await.map(|mut answer| {
                    if method == "tools/list" {
                        self.filter_tools(agent, upstream, &mut answer);
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
            engine.record_refused_call(&revocation.incident, &revocation.plan, &agent.0, &call);
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

    /// The agent's listen stream, with `list_changed` injected when its tools change. An
    /// upstream without one (405) still gets the gateway's own.
    async fn listen(&self, agent: AgentKey, url: Option<&str>, headers: HeaderMap) -> Response {
        let changes = self.inner.policy.subscribe();
        let upstream = match url {
            None => None,
            Some(url) => match self.send(Method::GET, url, &headers, Bytes::new()).await {
                Ok(r) if r.status().is_success() => Some(r),
                Ok(r) if r.status() == StatusCode::METHOD_NOT_ALLOWED => None,
                Ok(r) => return relay(r).await,
                Err(e) => return e,
            },
        };
        let notification = serde_json::to_string(&JsonRpcNotification {
            jsonrpc: JsonRpcVersion2_0,
            notification: ToolListChangedNotification::default(),
        })
        .unwrap_or_default();
        inject(agent, changes, upstream, notification)
    }

    /// A 2026-07-28 `subscriptions/listen` stream: forwarded, and when it asked for
    /// `toolsListChanged`, this agent's changes are injected stamped with its subscription id.
    async fn subscribe(
        &self,
        agent: AgentKey,
        url: &str,
        headers: &HeaderMap,
        bytes: Bytes,
        msg: &Message,
    ) -> Response {
        let changes = self.inner.policy.subscribe();
        let response = match self.send(Method::POST, url, headers, bytes).await {
            Ok(r) => r,
            Err(e) => return e,
        };
        let wants_tools = msg.params["notifications"]["toolsListChanged"] == Value::Bool(true);
        let is_stream = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let Some(id) = msg
            .id
            .clone()
            .filter(|_| wants_tools && is_stream && response.status().is_success())
        else {
            return relay(response).await;
        };
        let notification = serde_json::json!({
            "jsonrpc": "2.0",
            "method": "notifications/tools/list_changed",
            "params": {"_meta": {"io.modelcontextprotocol/subscriptionId": id}},
        });
        inject(agent, changes, Some(response), notification.to_string())
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

/// Relays `upstream`'s event stream (or an empty one of the gateway's own) and adds
/// `notification` whenever this agent's tools change. Whole events only, so an injected one
/// never lands inside an upstream event.
fn inject(
    agent: AgentKey,
    mut changes: tokio::sync::broadcast::Receiver<AgentKey>,
    upstream: Option<reqwest::Response>,
    notification: String,
) -> Response {
    let mut out_headers = upstream
        .as_ref()
        .map(|r| response_headers(r.headers()))
        .unwrap_or_default();
    out_headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let mut splitter = sse::EventSplitter::default();
        let mut stream = upstream.map(|r| r.bytes_stream());
        loop {
            let next_chunk = async {
                match stream.as_mut() {
                    Some(s) => s.next().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                chunk = next_chunk => match chunk {
                    Some(Ok(chunk)) => {
                        // Whole events only, so an injected one never lands mid-event.
                        for event in splitter.push(&chunk) {
                            if tx.send(event).await.is_err() { return; }
                        }
                    }
                    _ => return,
                },
                changed = changes.recv() => match changed {
                    Ok(who) if who != agent => {}
                    // Lagged: something changed, maybe for this agent; say so.
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        if tx.send(sse::event(&notification)).await.is_err() { return; }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    let mut response = Response::new(Body::from_stream(body));
    *response.headers_mut() = out_headers;
    response
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

fn upstream_failed(url: &str, e: &reqwest::Error) -> Response {
    warn!(url, error = %e, "upstream MCP server failed");
    rpc_error(
        StatusCode::BAD_GATEWAY,
        None,
        ErrorCode::INTERNAL_ERROR,
        format!("upstream {url} failed: {e}; check that the MCP server is running"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_and_broken_messages_are_refused_with_their_code() {
        let code = |b: &[u8]| parse_message(b).err().map(|(c, _, _)| c);
        assert_eq!(code(b"{"), Some(ErrorCode::PARSE_ERROR));
        assert_eq!(
            code(b"[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\"}]"),
            Some(ErrorCode::INVALID_REQUEST)
        );
        assert_eq!(
            code(b"{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"x\"}"),
            Some(ErrorCode::INVALID_REQUEST)
        );
        assert_eq!(
            code(b"{\"jsonrpc\":\"2.0\",\"id\":[1],\"method\":\"x\"}"),
            Some(ErrorCode::INVALID_REQUEST)
        );
        assert_eq!(
            code(b"{\"jsonrpc\":\"2.0\",\"id\":1}"),
            Some(ErrorCode::INVALID_REQUEST)
        );
        assert!(parse_message(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}").is_ok());
        assert!(
            parse_message(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}")
                .is_ok()
        );
    }
}
