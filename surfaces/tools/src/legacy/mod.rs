//! Agents on MCP 2026-07-28 in front of upstreams that speak only 2025-11-25.
//!
//! The gateway is the 2025-11-25 client of such an upstream: a stdio child is initialized once
//! (`stdio.rs`); over HTTP the gateway opens one session of its own per upstream and forwards
//! each stateless 2026-07-28 request inside it under a gateway-unique id. Answers get the
//! 2026-07-28 shape (`resultType`, `ttlMs`/`cacheScope` on cacheable results) and
//! `server/discover` is answered from the upstream's `initialize` result. What has no
//! 2026-07-28 form is refused with a JSON-RPC error saying what to do instead. A 2025-11-25
//! agent never comes here: its messages pass through unchanged.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use futures_util::StreamExt;
use rmcp::model::{
    DiscoverResult, ErrorCode, ErrorData, InitializeResult, ProtocolVersion, ResultType,
    SubscriptionFilter,
};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{mpsc, Mutex, OnceCell};
use tracing::warn;

use crate::sse;

mod session;
pub(crate) use session::{Edit, HttpUpstream};

pub(crate) const MODERN: &str = "2026-07-28";
const LEGACY: &str = "2025-11-25";
const VERSION_HEADER: &str = "mcp-protocol-version";
const SESSION_HEADER: &str = "mcp-session-id";
/// `_meta` keys of 2026-07-28 requests: the per-request handshake (version, client info and
/// capabilities, log level) that a 2025-11-25 session did once.
const META_PREFIX: &str = "io.modelcontextprotocol/";
const VERSION_META: &str = "io.modelcontextprotocol/protocolVersion";
const SUBSCRIPTION_META: &str = "io.modelcontextprotocol/subscriptionId";
/// `mcp_types.methods.CACHEABLE_METHODS` of 2026-07-28: results that require `ttlMs` and
/// `cacheScope`.
const CACHEABLE: [&str; 6] = [
    "prompts/list",
    "resources/list",
    "resources/read",
    "resources/templates/list",
    "server/discover",
    "tools/list",
];
/// 2026-07-28 requests that are the same request in 2025-11-25: forwarded, answer reshaped.
const SAME_IN_BOTH: [&str; 8] = [
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/read",
    "resources/templates/list",
    "completion/complete",
];
/// Bounds the probe and the handshake, which no agent request is waiting on yet.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub(crate) enum LegacyError {
    #[error("upstream {upstream} ({url}) failed: {source}; check that the MCP server is running")]
    Unreachable {
        upstream: String,
        url: String,
        source: reqwest::Error,
    },
    #[error("upstream {upstream} answered the gateway's server/discover probe with HTTP {status}; it is probed again on the next request")]
    Probe {
        upstream: String,
        status: StatusCode,
    },
    #[error("upstream {upstream} refused the gateway's 2025-11-25 initialize: {detail}")]
    Handshake { upstream: String, detail: String },
    #[error("upstream {upstream}'s initialize result is not a 2025-11-25 InitializeResult ({source}); server/discover cannot be answered from it")]
    Init {
        upstream: String,
        source: serde_json::Error,
    },
    #[error(
        "upstream {upstream} did not answer the gateway's {what} within {HANDSHAKE_TIMEOUT:?}"
    )]
    Timeout {
        upstream: String,
        what: &'static str,
    },
}

/// The protocol an HTTP upstream speaks, learned once from a `server/discover` probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Era {
    /// Speaks 2026-07-28 itself: requests pass through.
    Modern,
    /// 2025-11-25 only: the gateway translates.
    Legacy,
}

/// The version of an agent's request when it is 2026-07-28 or later: its
/// `MCP-Protocol-Version` header, or, with neither that header nor a session, the version
/// its `_meta` names.
pub(crate) fn modern_version(headers: &HeaderMap, params: &Value) -> Option<String> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let version = match header(VERSION_HEADER) {
        Some(v) => v,
        None if header(SESSION_HEADER).is_none() => params["_meta"][VERSION_META].as_str()?,
        None => return None,
    };
    (version >= MODERN).then(|| version.to_string())
}

/// What the gateway does with one 2026-07-28 message for a 2025-11-25 upstream.
#[derive(Debug, PartialEq)]
pub(crate) enum Step {
    /// Answered from the upstream's `initialize` result.
    Discover,
    /// The gateway's own listen stream.
    Listen,
    /// Forwarded (in the gateway's session over HTTP); the answer is reshaped.
    Forward,
    /// A notification or an answer: 2026-07-28 defines no client notification an upstream
    /// needs (cancelling is closing the request) and sends no server requests, so `202`.
    Accept,
    Refuse(ErrorData),
}

pub(crate) fn step(upstream: &str, version: &str, method: Option<&str>, is_request: bool) -> Step {
    if version != MODERN {
        return Step::Refuse(ErrorData::new(
            ErrorCode::UNSUPPORTED_PROTOCOL_VERSION,
            format!(
                "upstream {upstream} speaks only MCP {LEGACY} and the gateway translates it for {MODERN}, not {version}; use {MODERN} or {LEGACY}"
            ),
            Some(json!({"requested": version, "supported": [LEGACY, MODERN]})),
        ));
    }
    match (method, is_request) {
        (Some("server/discover"), true) => Step::Discover,
        (Some("subscriptions/listen"), true) => Step::Listen,
        (Some(m), true) if SAME_IN_BOTH.contains(&m) => Step::Forward,
        (Some(m), true) => Step::Refuse(ErrorData::new(
            ErrorCode::METHOD_NOT_FOUND,
            format!(
                "{m} cannot be translated: upstream {upstream} speaks only MCP {LEGACY}, and the gateway translates {MODERN} requests for it only for server/discover, subscriptions/listen and {}; for anything else connect with the {LEGACY} initialize handshake (Python SDK Client mode=\"legacy\")",
                SAME_IN_BOTH.join(", ")
            ),
            None,
        )),
        _ => Step::Accept,
    }
}

/// A 2026-07-28 request's params as a 2025-11-25 upstream gets them: without the
/// `io.modelcontextprotocol/*` `_meta` keys (`progressToken` and the agent's own stay).
pub(crate) fn legacy_params(mut params: Value) -> Value {
    if let Some(obj) = params.as_object_mut() {
        if let Some(meta) = obj.get_mut("_meta").and_then(Value::as_object_mut) {
            meta.retain(|key, _| !key.starts_with(META_PREFIX));
            if meta.is_empty() {
                obj.remove("_meta");
            }
        }
    }
    params
}

/// Reshapes a 2025-11-25 answer to `method` into its 2026-07-28 form, in place.
pub(crate) fn modern_answer(method: &str, message: &mut Value) {
    if let Some(result) = message.get_mut("result").and_then(Value::as_object_mut) {
        result
            .entry("resultType")
            .or_insert_with(|| json!(ResultType::COMPLETE.as_str()));
        if CACHEABLE.contains(&method) {
            // Private and stale at once: the gateway filters answers per agent and a
            // revocation changes them at any moment, so no cache may reuse one.
            result.insert("ttlMs".into(), json!(0));
            result.insert("cacheScope".into(), json!("private"));
        }
    }
    // SEP-2164: "resource not found" is INVALID_PARAMS from 2026-07-28 on.
    if let Some(code) = message.get_mut("error").and_then(|e| e.get_mut("code")) {
        if *code == json!(ErrorCode::RESOURCE_NOT_FOUND.0) {
            *code = json!(ErrorCode::INVALID_PARAMS.0);
        }
    }
}

/// 2026-07-28's `server/discover` from a 2025-11-25 `initialize` result.
pub(crate) fn discover(init: &Value) -> Result<DiscoverResult, serde_json::Error> {
    let init = InitializeResult::deserialize(init)?;
    let mut capabilities = init.capabilities;
    // Tool-list changes are the gateway's own (revocations) and reach every listen stream.
    // Prompt/resource changes and resource updates would come on the upstream session's GET
    // stream, shared by every agent, and are not relayed; log messages are per session there.
    if let Some(tools) = capabilities.tools.as_mut() {
        tools.list_changed = Some(true);
    }
    if let Some(prompts) = capabilities.prompts.as_mut() {
        prompts.list_changed = None;
    }
    if let Some(resources) = capabilities.resources.as_mut() {
        resources.list_changed = None;
        resources.subscribe = None;
    }
    capabilities.logging = None;
    let mut versions = vec![ProtocolVersion::V_2026_07_28];
    if init.protocol_version != ProtocolVersion::V_2026_07_28 {
        versions.insert(0, init.protocol_version);
    }
    let mut result = DiscoverResult::new(versions, capabilities).with_server_info(init.server_info);
    result.instructions = init.instructions;
    Ok(result)
}

/// The first event of the gateway's own listen stream, and whether `toolsListChanged` is
/// honoured, the one notification the gateway sends itself.
pub(crate) fn acknowledged(id: &Value, params: &Value) -> Result<(String, bool), String> {
    let requested = SubscriptionFilter::deserialize(&params["notifications"])
        .map_err(|e| format!("invalid subscriptions/listen notifications: {e}"))?;
    let mut offered = SubscriptionFilter::default();
    offered.tools_list_changed = Some(true);
    let honoured = requested.intersection(&offered);
    let wants_tools = honoured.tools_list_changed == Some(true);
    let ack = json!({
        "jsonrpc": "2.0",
        "method": "notifications/subscriptions/acknowledged",
        "params": {"notifications": honoured, "_meta": {SUBSCRIPTION_META: id}},
    });
    Ok((ack.to_string(), wants_tools))
}

/// `notifications/tools/list_changed` stamped for the listen stream `id`.
pub(crate) fn list_changed(id: &Value) -> String {
    json!({
        "jsonrpc": "2.0",
        "method": "notifications/tools/list_changed",
        "params": {"_meta": {SUBSCRIPTION_META: id}},
    })
    .to_string()
}

/// What one message from the upstream, on its way to an agent, becomes.
#[derive(Debug, PartialEq)]
enum Relay {
    Send(Value),
    Drop,
    /// A server-to-client request: 2026-07-28 has none and one session serves every agent,
    /// so the upstream is told no (this is its id).
    Decline(Value),
}

fn relay(method: &str, agent_id: &Value, mut message: Value) -> Relay {
    let is_answer = message.get("result").is_some() || message.get("error").is_some();
    let request_id = message.get("id").cloned();
    match (request_id, message.get("method").and_then(Value::as_str)) {
        // An answer, or an error the upstream could not tie to a request (no id).
        (_, None) if is_answer => {
            message["id"] = agent_id.clone();
            modern_answer(method, &mut message);
            Relay::Send(message)
        }
        (Some(id), Some(_)) => Relay::Decline(id),
        // Progress belongs to the agent's request (its own progressToken).
        (None, Some("notifications/progress")) => Relay::Send(message),
        // List changes and resource updates go on listen streams only; log messages were
        // not asked for (2026-07-28 asks per request, the gateway's session never did).
        _ => Relay::Drop,
    }
}

impl LegacyError {
    /// For a stdio child that failed to start or initialize.
    pub(crate) fn stdio(upstream: &str) -> impl Fn(String) -> LegacyError + '_ {
        move |detail| LegacyError::Handshake {
            upstream: upstream.into(),
            detail,
        }
    }
}

/// The agent's `server/discover` answer from the upstream's `initialize` result.
pub(crate) fn discover_answer(
    upstream: &str,
    id: &Value,
    init: Result<Value, LegacyError>,
) -> Response {
    let result = init.and_then(|init| {
        discover(&init).map_err(|source| LegacyError::Init {
            upstream: upstream.into(),
            source,
        })
    });
    match result {
        Ok(result) => json_response(
            StatusCode::OK,
            &json!({"jsonrpc": "2.0", "id": id, "result": result}),
        ),
        Err(e) => error_response(id, &e.to_string()),
    }
}

fn client_info() -> Value {
    json!({"name": "firebreak-gateway", "version": env!("CARGO_PKG_VERSION")})
}

fn is_answer(message: &Value) -> bool {
    message.get("id").is_some()
        && (message.get("result").is_some() || message.get("error").is_some())
}

/// Modern when the upstream answered `server/discover` with a 2026-07-28 (or later) version,
/// or refused the version naming only later ones; anything else (a 400 "Server not
/// initialized", method not found, no JSON-RPC at all) is a 2025-11-25 server.
fn era_of(answer: &Value) -> Era {
    let modern = |list: &Value| {
        list.as_array()
            .is_some_and(|l| l.iter().filter_map(Value::as_str).any(|v| v >= MODERN))
    };
    let refused_version =
        answer["error"]["code"] == json!(ErrorCode::UNSUPPORTED_PROTOCOL_VERSION.0);
    if modern(&answer["result"]["supportedVersions"])
        || (refused_version && modern(&answer["error"]["data"]["supported"]))
    {
        Era::Modern
    } else {
        Era::Legacy
    }
}

/// The first JSON-RPC answer in a JSON body or an event stream.
async fn first_answer(response: reqwest::Response) -> Option<Value> {
    let is_sse = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if !is_sse {
        return serde_json::from_slice(&response.bytes().await.ok()?).ok();
    }
    let mut splitter = sse::EventSplitter::default();
    let mut stream = response.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        for event in splitter.push(&chunk) {
            let message = sse::data(&event).and_then(|d| serde_json::from_str::<Value>(&d).ok());
            if let Some(message) = message.filter(is_answer) {
                return Some(message);
            }
        }
    }
    None
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut out = Response::new(Body::from(body.to_string()));
    *out.status_mut() = status;
    out.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    out
}

/// A JSON-RPC error for the agent's request: the upstream failed, nothing useful came back.
fn error_response(agent_id: &Value, message: &str) -> Response {
    warn!(message, "translated request failed");
    json_response(
        StatusCode::BAD_GATEWAY,
        &json!({"jsonrpc": "2.0", "id": agent_id,
                "error": {"code": ErrorCode::INTERNAL_ERROR.0, "message": message}}),
    )
}

#[cfg(test)]
mod tests;
