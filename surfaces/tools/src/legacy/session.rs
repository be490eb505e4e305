//! The gateway's own 2025-11-25 session with an HTTP upstream, and the forwarding of each
//! 2026-07-28 request inside it.

use super::*;

/// The gateway's own 2025-11-25 session with an HTTP upstream.
pub(crate) struct Session {
    id: Option<String>,
    version: String,
    init: Value,
}

/// One HTTP upstream as the gateway's translation sees it.
pub(crate) struct HttpUpstream {
    name: String,
    url: String,
    era: OnceCell<Era>,
    session: Mutex<Option<Arc<Session>>>,
    next: AtomicU64,
}

/// Rewrites an answer before the agent gets it (the gateway's `tools/list` filter).
pub(crate) type Edit = Box<dyn Fn(&mut Value) + Send + Sync>;

impl HttpUpstream {
    pub(crate) fn new(name: &str, url: &str) -> Self {
        Self {
            name: name.into(),
            url: url.into(),
            era: OnceCell::new(),
            session: Mutex::new(None),
            next: AtomicU64::new(1),
        }
    }

    /// What the upstream speaks; probed once. A failed probe is no verdict and is retried.
    pub(crate) async fn era(&self, client: &reqwest::Client) -> Result<Era, LegacyError> {
        self.era
            .get_or_try_init(|| self.bounded("server/discover probe", self.probe(client)))
            .await
            .copied()
    }

    async fn probe(&self, client: &reqwest::Client) -> Result<Era, LegacyError> {
        let body = json!({"jsonrpc": "2.0", "id": "firebreak-probe", "method": "server/discover",
            "params": {"_meta": {VERSION_META: MODERN,
                "io.modelcontextprotocol/clientCapabilities": {},
                "io.modelcontextprotocol/clientInfo": client_info()}}});
        let response = self
            .request(client)
            .header(VERSION_HEADER, MODERN)
            .header("mcp-method", "server/discover")
            .json(&body)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = response.status();
        if status.is_server_error() {
            return Err(LegacyError::Probe {
                upstream: self.name.clone(),
                status,
            });
        }
        Ok(era_of(&first_answer(response).await.unwrap_or(Value::Null)))
    }

    /// The upstream's `initialize` result, for `server/discover`.
    pub(crate) async fn init(&self, client: &reqwest::Client) -> Result<Value, LegacyError> {
        Ok(self.session(client).await?.init.clone())
    }

    async fn session(&self, client: &reqwest::Client) -> Result<Arc<Session>, LegacyError> {
        let mut live = self.session.lock().await;
        if let Some(session) = live.as_ref() {
            return Ok(session.clone());
        }
        let session = Arc::new(self.bounded("initialize", self.open(client)).await?);
        *live = Some(session.clone());
        Ok(session)
    }

    /// A new session in place of `stale`, unless another request already replaced it.
    async fn reopen(
        &self,
        client: &reqwest::Client,
        stale: &Arc<Session>,
    ) -> Result<Arc<Session>, LegacyError> {
        let mut live = self.session.lock().await;
        if let Some(session) = live.as_ref().filter(|s| !Arc::ptr_eq(s, stale)) {
            return Ok(session.clone());
        }
        *live = None;
        let session = Arc::new(self.bounded("initialize", self.open(client)).await?);
        *live = Some(session.clone());
        Ok(session)
    }

    /// The 2025-11-25 handshake: `initialize`, then `notifications/initialized`.
    async fn open(&self, client: &reqwest::Client) -> Result<Session, LegacyError> {
        let body = json!({"jsonrpc": "2.0", "id": self.next.fetch_add(1, Ordering::Relaxed),
            "method": "initialize", "params": {"protocolVersion": LEGACY, "capabilities": {},
            "clientInfo": client_info()}});
        let response = self
            .request(client)
            .json(&body)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = response.status();
        let id = response
            .headers()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let answer = first_answer(response).await.unwrap_or(Value::Null);
        let handshake = |detail: String| LegacyError::Handshake {
            upstream: self.name.clone(),
            detail,
        };
        let init = match answer.get("result") {
            Some(result) if status.is_success() => result.clone(),
            _ => return Err(handshake(format!("HTTP {status}: {answer}"))),
        };
        let session = Session {
            id,
            version: init["protocolVersion"].as_str().unwrap_or(LEGACY).into(),
            init,
        };
        let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let done = self
            .in_session(client, &session)
            .json(&initialized)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        if !done.status().is_success() {
            return Err(handshake(format!(
                "notifications/initialized got HTTP {}",
                done.status()
            )));
        }
        Ok(session)
    }

    /// Forwards one agent request inside the gateway's session and returns the agent's
    /// answer, reshaped, as JSON or as a stream like the upstream's.
    pub(crate) async fn forward(
        self: &Arc<Self>,
        client: &reqwest::Client,
        agent_id: Value,
        method: String,
        params: Value,
        edit: Edit,
    ) -> Response {
        let params = legacy_params(params);
        let mut session = match self.session(client).await {
            Ok(s) => s,
            Err(e) => return error_response(&agent_id, &e.to_string()),
        };
        let mut reopened = false;
        loop {
            let id = self.next.fetch_add(1, Ordering::Relaxed);
            let mut body = json!({"jsonrpc": "2.0", "id": id, "method": method});
            if !params.is_null() {
                body["params"] = params.clone();
            }
            let response = match self.in_session(client, &session).json(&body).send().await {
                Ok(r) => r,
                Err(e) => return error_response(&agent_id, &self.unreachable(e).to_string()),
            };
            let status = response.status();
            if status != StatusCode::BAD_REQUEST && status != StatusCode::NOT_FOUND {
                return self
                    .answer(client, session, response, method, agent_id, edit)
                    .await;
            }
            let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
            let bytes = response.bytes().await.unwrap_or_default();
            // The spec says 404 for a session the server no longer has; server-everything
            // (the TypeScript SDK's example) says 400 "No valid session ID provided".
            let gone = status == StatusCode::NOT_FOUND
                || String::from_utf8_lossy(&bytes)
                    .to_ascii_lowercase()
                    .contains("session");
            if gone && !reopened && session.id.is_some() {
                reopened = true;
                session = match self.reopen(client, &session).await {
                    Ok(s) => s,
                    Err(e) => return error_response(&agent_id, &e.to_string()),
                };
                continue;
            }
            return self.buffered(status, content_type, &bytes, &method, &agent_id, &edit);
        }
    }

    /// A whole JSON answer (or an error the upstream gave instead of one).
    fn buffered(
        &self,
        status: StatusCode,
        content_type: Option<HeaderValue>,
        bytes: &[u8],
        method: &str,
        agent_id: &Value,
        edit: &Edit,
    ) -> Response {
        let is_sse = content_type
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let message = if is_sse {
            let mut splitter = sse::EventSplitter::default();
            let mut events = splitter.push(bytes);
            events.extend(splitter.finish());
            events
                .iter()
                .filter_map(|e| sse::data(e))
                .filter_map(|d| serde_json::from_str::<Value>(&d).ok())
                .find(is_answer)
        } else {
            serde_json::from_slice::<Value>(bytes).ok()
        };
        match message.map(|m| relay(method, agent_id, m)) {
            Some(Relay::Send(mut message)) => {
                edit(&mut message);
                json_response(status, &message)
            }
            _ => error_response(
                agent_id,
                &format!(
                    "upstream {} answered {method} with HTTP {status} and no JSON-RPC answer: {}",
                    self.name,
                    String::from_utf8_lossy(bytes)
                ),
            ),
        }
    }

    async fn answer(
        self: &Arc<Self>,
        client: &reqwest::Client,
        session: Arc<Session>,
        response: reqwest::Response,
        method: String,
        agent_id: Value,
        edit: Edit,
    ) -> Response {
        let status = response.status();
        let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
        let is_sse = content_type
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !is_sse {
            let bytes = response.bytes().await.unwrap_or_default();
            return self.buffered(status, content_type, &bytes, &method, &agent_id, &edit);
        }
        // Streamed as it comes (progress, then the answer), re-framed without the
        // upstream's event ids: a 2026-07-28 agent cannot resume a stream of the
        // gateway's session.
        let (tx, rx) = mpsc::channel::<Bytes>(64);
        let (upstream, client) = (self.clone(), client.clone());
        tokio::spawn(async move {
            let mut splitter = sse::EventSplitter::default();
            let mut stream = response.bytes_stream();
            while let Some(Ok(chunk)) = stream.next().await {
                for event in splitter.push(&chunk) {
                    let Some(message) =
                        sse::data(&event).and_then(|d| serde_json::from_str::<Value>(&d).ok())
                    else {
                        continue;
                    };
                    match relay(&method, &agent_id, message) {
                        Relay::Send(mut message) => {
                            edit(&mut message);
                            if tx.send(sse::event(&message.to_string())).await.is_err() {
                                return;
                            }
                        }
                        Relay::Decline(id) => upstream.decline(&client, &session, id).await,
                        Relay::Drop => {}
                    }
                }
            }
        });
        let body = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv()
                .await
                .map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
        });
        let mut out = Response::new(Body::from_stream(body));
        *out.status_mut() = status;
        out.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        out
    }

    /// Answers a server-to-client request of the upstream with an error, so the tool that
    /// asked fails instead of waiting for an answer no agent can give.
    async fn decline(&self, client: &reqwest::Client, session: &Session, id: Value) {
        let refusal = json!({"jsonrpc": "2.0", "id": id, "error": {
            "code": ErrorCode::METHOD_NOT_FOUND.0,
            "message": format!("the Firebreak gateway does not route server-to-client requests to {MODERN} agents, which have none")}});
        if let Err(e) = self.in_session(client, session).json(&refusal).send().await {
            warn!(upstream = self.name, error = %e, "cannot decline a server request");
        }
    }

    fn request(&self, client: &reqwest::Client) -> reqwest::RequestBuilder {
        client
            .post(&self.url)
            .header(header::ACCEPT, "application/json, text/event-stream")
    }

    fn in_session(&self, client: &reqwest::Client, session: &Session) -> reqwest::RequestBuilder {
        let request = self
            .request(client)
            .header(VERSION_HEADER, session.version.as_str());
        match &session.id {
            Some(id) => request.header(SESSION_HEADER, id.as_str()),
            None => request,
        }
    }

    fn unreachable(&self, source: reqwest::Error) -> LegacyError {
        LegacyError::Unreachable {
            upstream: self.name.clone(),
            url: self.url.clone(),
            source,
        }
    }

    async fn bounded<T>(
        &self,
        what: &'static str,
        work: impl std::future::Future<Output = Result<T, LegacyError>>,
    ) -> Result<T, LegacyError> {
        tokio::time::timeout(HANDSHAKE_TIMEOUT, work)
            .await
            .map_err(|_| LegacyError::Timeout {
                upstream: self.name.clone(),
                what,
            })?
    }
}
