//! `GET /v1/feed` (one JSON document) and `GET /v1/feed/stream` (SSE, one event per version),
//! authenticated by the bearer tokens of the `feed:` config block.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use firebreak_containment::agent::AgentKey;
use firebreak_containment::engine::Engine;
use firebreak_containment::IncidentId;
use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::{Document, Feed};

/// How often an idle stream carries a comment: shims count the feed unreachable once they
/// have heard nothing for longer than their staleness (default 15 s, three of these).
pub const KEEP_ALIVE: Duration = Duration::from_secs(5);

/// Shortest bearer token accepted: anything shorter is guessable.
const MIN_TOKEN_CHARS: usize = 16;

/// The `feed:` block of the daemon config.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FeedConfig {
    /// Bearer token → the agent keys it may read, or `"*"` for every agent.
    pub tokens: BTreeMap<String, TokenScope>,
}

/// What one token may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenScope {
    Every,
    Agents(Vec<String>),
}

impl<'de> Deserialize<'de> for TokenScope {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ScopeVisitor;
        impl<'de> Visitor<'de> for ScopeVisitor {
            type Value = TokenScope;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("\"*\" or a list of agent keys (cluster/namespace/Kind/name)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TokenScope, E> {
                if v == "*" {
                    Ok(TokenScope::Every)
                } else {
                    Err(E::custom(format!(
                        "expected \"*\" or a list of agent keys, got the string {v:?}"
                    )))
                }
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<TokenScope, A::Error> {
                let mut agents = Vec::new();
                while let Some(agent) = seq.next_element::<String>()? {
                    agents.push(agent);
                }
                Ok(TokenScope::Agents(agents))
            }
        }
        d.deserialize_any(ScopeVisitor)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FeedConfigError {
    #[error("feed.tokens is empty; add at least one token, e.g. {{\"<32 hex chars>\": \"*\"}}")]
    NoTokens,
    #[error("feed.tokens entry #{index} has a token of {chars} characters; use at least {MIN_TOKEN_CHARS} random characters")]
    ShortToken { index: usize, chars: usize },
    #[error("feed.tokens entry #{index}: agent {agent:?} is not cluster/namespace/Kind/name, e.g. prod/payments/Deployment/payment-agent")]
    BadAgent { index: usize, agent: String },
    #[error("feed.tokens entry #{index} lists no agent; list agent keys or use \"*\"")]
    NoAgents { index: usize },
}

/// Checked tokens, ready for the router. Build with [`FeedAuth::new`].
#[derive(Debug, Clone)]
pub struct FeedAuth {
    tokens: HashMap<String, TokenScope>,
}

impl FeedAuth {
    pub fn new(config: &FeedConfig) -> Result<FeedAuth, FeedConfigError> {
        if config.tokens.is_empty() {
            return Err(FeedConfigError::NoTokens);
        }
        // Entries are named by position: a token must never appear in an error or a log.
        for (index, (token, scope)) in config.tokens.iter().enumerate() {
            let chars = token.chars().count();
            if chars < MIN_TOKEN_CHARS {
                return Err(FeedConfigError::ShortToken { index, chars });
            }
            if let TokenScope::Agents(agents) = scope {
                if agents.is_empty() {
                    return Err(FeedConfigError::NoAgents { index });
                }
                if let Some(agent) = agents.iter().find(|a| AgentKey::check(a).is_err()) {
                    return Err(FeedConfigError::BadAgent {
                        index,
                        agent: agent.clone(),
                    });
                }
            }
        }
        Ok(FeedAuth {
            tokens: config.tokens.clone().into_iter().collect(),
        })
    }

    fn scope(&self, headers: &HeaderMap) -> Option<&TokenScope> {
        let token = headers
            .get(AUTHORIZATION)?
            .to_str()
            .ok()?
            .strip_prefix("Bearer ")?;
        self.tokens.get(token.trim())
    }
}

#[derive(Clone)]
struct Shared {
    feed: Feed,
    auth: Arc<FeedAuth>,
    engine: Option<Engine>,
}

/// The feed's routes; the daemon merges them into its app. Every route needs a token. Refusals
/// shims report are journaled through `engine` under the incidents that hold the rules (a
/// feed without one answers which incidents, and journals nothing).
pub fn router(feed: Feed, auth: FeedAuth, engine: Option<Engine>) -> Router {
    Router::new()
        .route("/v1/feed", get(document))
        .route("/v1/feed/stream", get(stream))
        .route("/v1/feed/refusals", post(refusal))
        .with_state(Shared {
            feed,
            auth: Arc::new(auth),
            engine,
        })
}

/// What a shim reports when it refused a delegation: the edge, as agent keys.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Refused {
    from: String,
    to: String,
}

/// `POST /v1/feed/refusals`: journals `call-refused` under every incident whose rule refuses
/// the edge, and answers which. A token may report an edge it can read either end of.
async fn refusal(
    State(shared): State<Shared>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<serde_json::Value>, Refusal> {
    let bad = |message: String| Refusal::new(StatusCode::BAD_REQUEST, message);
    let refused: Refused = serde_json::from_slice(&body)
        .map_err(|e| bad(format!("body must be {{\"from\": KEY, \"to\": KEY}}: {e}")))?;
    for (field, key) in [("from", &refused.from), ("to", &refused.to)] {
        AgentKey::check(key).map_err(|e| bad(format!("{field}: {e}")))?;
    }
    let from = authorize(&shared, &headers, &FeedQuery::agent(&refused.from))
        .or_else(|_| authorize(&shared, &headers, &FeedQuery::agent(&refused.to)))?;
    let (caller, callee) = (AgentKey(refused.from), AgentKey(refused.to));
    let incidents = shared.feed.refusing(&caller, &callee);
    let call = format!("delegation {caller} → {callee}");
    if let Some(engine) = &shared.engine {
        for incident in &incidents {
            let incident = IncidentId::from(incident.as_str());
            engine.record_refused_call(&incident, None, &from.0, &call);
        }
    }
    Ok(Json(serde_json::json!({ "incidents": incidents })))
}

/// Query strings are read as text so every mistake gets a JSON error naming the parameter.
#[derive(Deserialize, Default)]
struct FeedQuery {
    agent: Option<String>,
    version: Option<String>,
}

impl FeedQuery {
    fn agent(agent: &str) -> FeedQuery {
        FeedQuery {
            agent: Some(agent.to_string()),
            version: None,
        }
    }
}

/// A refused request: its status and a message saying what to fix, served as JSON.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    message: String,
}

impl Refusal {
    fn new(status: StatusCode, message: String) -> Refusal {
        Refusal { status, message }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// The agent a request may read.
fn authorize(shared: &Shared, headers: &HeaderMap, query: &FeedQuery) -> Result<AgentKey, Refusal> {
    let Some(scope) = shared.auth.scope(headers) else {
        return Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            "missing or unknown bearer token; send Authorization: Bearer <a token from feed.tokens>"
                .into(),
        ));
    };
    let Some(agent) = query.agent.as_deref().filter(|a| !a.is_empty()) else {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "query parameter agent is required: ?agent=cluster/namespace/Kind/name".into(),
        ));
    };
    let allowed = match scope {
        TokenScope::Every => true,
        TokenScope::Agents(agents) => agents.iter().any(|a| a == agent),
    };
    if !allowed {
        return Err(Refusal::new(
            StatusCode::FORBIDDEN,
            format!(
                "this token may not read agent {agent}; add it to the token's list in feed.tokens"
            ),
        ));
    }
    Ok(AgentKey(agent.to_string()))
}

fn unknown(agent: &AgentKey) -> Refusal {
    Refusal::new(
        StatusCode::NOT_FOUND,
        format!("unknown agent {agent}: the feed has no envelope and no rule for it; check the key (cluster/namespace/Kind/name)"),
    )
}

async fn document(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<FeedQuery>,
) -> Result<Json<Document>, Refusal> {
    let agent = authorize(&shared, &headers, &query)?;
    shared
        .feed
        .document(&agent)
        .map(Json)
        .ok_or_else(|| unknown(&agent))
}

/// What the client already has: `Last-Event-ID` (what EventSource resends on reconnect, the
/// `epoch.version` of the last event) or `?version=` (a version, or `epoch.version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    epoch: Option<u64>,
    version: u64,
}

impl Seen {
    /// Whether `doc` is news to this client: another epoch always is (resync).
    fn is_older_than(&self, doc: &Document) -> bool {
        self.epoch.is_some_and(|e| e != doc.epoch) || doc.version > self.version
    }
}

fn seen_version(headers: &HeaderMap, query: &FeedQuery) -> Result<Option<Seen>, Refusal> {
    let given = headers
        .get("last-event-id")
        .map(|v| ("Last-Event-ID header", v.to_str().unwrap_or("(not text)")))
        .or(query
            .version
            .as_deref()
            .map(|v| ("query parameter version", v)));
    let Some((name, text)) = given else {
        return Ok(None);
    };
    let parsed = match text.trim().split_once('.') {
        Some((epoch, version)) => {
            epoch
                .parse()
                .ok()
                .zip(version.parse().ok())
                .map(|(epoch, version)| Seen {
                    epoch: Some(epoch),
                    version,
                })
        }
        None => text.trim().parse().ok().map(|version| Seen {
            epoch: None,
            version,
        }),
    };
    parsed.map(Some).ok_or_else(|| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            format!(
                "{name} must be a feed version (a non-negative integer, or EPOCH.VERSION as the \
                 stream's event ids), got {text:?}"
            ),
        )
    })
}

async fn stream(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<FeedQuery>,
) -> Result<Response, Refusal> {
    let agent = authorize(&shared, &headers, &query)?;
    let seen = seen_version(&headers, &query)?;
    if shared.feed.document(&agent).is_none() {
        return Err(unknown(&agent));
    }
    let rx = shared.feed.subscribe();
    let events = futures_util::stream::unfold((rx, seen), move |(mut rx, seen)| {
        let agent = agent.clone();
        async move {
            loop {
                let doc = rx.borrow_and_update().document(&agent);
                match doc {
                    // The agent was forgotten: nothing more to say on this stream.
                    None => return None,
                    Some(doc) if seen.is_none_or(|s| s.is_older_than(&doc)) => {
                        let sent = Seen {
                            epoch: Some(doc.epoch),
                            version: doc.version,
                        };
                        return Some((Ok::<_, Infallible>(event(&doc)), (rx, Some(sent))));
                    }
                    Some(_) => {}
                }
                rx.changed().await.ok()?;
            }
        }
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response())
}

fn event(doc: &Document) -> Event {
    // A document is plain strings, numbers and booleans: serializing it cannot fail.
    let data = serde_json::to_string(doc).unwrap_or_default();
    Event::default()
        .event("policy")
        .id(format!("{}.{}", doc.epoch, doc.version))
        .data(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_from_another_epoch_resyncs_whatever_its_version() {
        let feed = crate::Feed::with_epoch(1_000);
        let agent = AgentKey("c/n/Deployment/a".into());
        feed.set_agents([agent.clone()]);
        let doc = feed.document(&agent).expect("known");
        let seen = |id: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("last-event-id", id.parse().expect("header"));
            seen_version(&headers, &FeedQuery::default()).expect("parses")
        };
        let current = seen(&format!("1000.{}", doc.version)).expect("given");
        assert!(!current.is_older_than(&doc), "up to date");
        let other_epoch = seen("999999999.999999999").expect("given");
        assert!(other_epoch.is_older_than(&doc), "another epoch resyncs");
        assert!(
            seen("5").expect("given").is_older_than(&doc),
            "a plain version compares"
        );
        let mut headers = HeaderMap::new();
        headers.insert("last-event-id", "1.x".parse().expect("header"));
        let refusal = seen_version(&headers, &FeedQuery::default()).expect_err("refused");
        assert_eq!(refusal.status, StatusCode::BAD_REQUEST);
        assert!(
            refusal.message.contains("EPOCH.VERSION"),
            "{}",
            refusal.message
        );
    }

    fn config(json: &str) -> Result<FeedAuth, String> {
        let config: FeedConfig = serde_json::from_str(json).map_err(|e| e.to_string())?;
        FeedAuth::new(&config).map_err(|e| e.to_string())
    }

    #[test]
    fn tokens_are_star_or_agent_lists_and_every_mistake_is_named() {
        assert!(config(r#"{"tokens":{"0123456789abcdef":"*"}}"#).is_ok());
        assert!(config(r#"{"tokens":{"0123456789abcdef":["c/n/Deployment/a"]}}"#).is_ok());
        let err = |json| config(json).expect_err("must be refused");
        assert!(err(r#"{"tokens":{"0123456789abcdef":"all"}}"#).contains("got the string \"all\""));
        assert!(err(r#"{"tokens":{"short":"*"}}"#).contains("5 characters"));
        assert!(err(r#"{"tokens":{"0123456789abcdef":["a/b"]}}"#).contains("\"a/b\""));
        assert!(err(r#"{"tokens":{"0123456789abcdef":[]}}"#).contains("lists no agent"));
        assert!(err(r#"{"tokens":{}}"#).contains("empty"));
        assert!(err(r#"{"tokns":{}}"#).contains("unknown field"));
    }
}
