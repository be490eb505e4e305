//! Listen streams: the agent's tool-list changes injected into the upstream's stream (or the
//! gateway's own), for both protocol versions.

use super::*;

impl Gateway {
    /// The gateway's own listen stream for a 2025-11-25 upstream: acknowledged, then this
    /// agent's tool-list changes.
    pub(super) fn own_listen(&self, agent: AgentKey, id: &Value, params: &Value) -> Response {
        match legacy::acknowledged(id, params) {
            Ok((ack, wants_tools)) => inject(
                agent,
                self.inner.policy.subscribe(),
                None,
                Some(ack),
                wants_tools.then(|| legacy::list_changed(id)),
            ),
            Err(message) => rpc_error(
                StatusCode::BAD_REQUEST,
                Some(id),
                ErrorCode::INVALID_PARAMS,
                message,
            ),
        }
    }

    /// The agent's listen stream, with `list_changed` injected when its tools change. An
    /// upstream without one (405) still gets the gateway's own.
    pub(super) async fn listen(
        &self,
        agent: AgentKey,
        url: Option<&str>,
        headers: HeaderMap,
    ) -> Response {
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
        inject(agent, changes, upstream, None, Some(notification))
    }

    /// A 2026-07-28 `subscriptions/listen` stream: forwarded, and when it asked for
    /// `toolsListChanged`, this agent's changes are injected stamped with its subscription id.
    pub(super) async fn subscribe(
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
        let notification = legacy::list_changed(&id);
        inject(agent, changes, Some(response), None, Some(notification))
    }
}

/// Relays `upstream`'s event stream (or an empty one of the gateway's own, opened by `first`)
/// and adds `notification` whenever this agent's tools change. Whole events only, so an
/// injected one never lands inside an upstream event.
fn inject(
    agent: AgentKey,
    mut changes: tokio::sync::broadcast::Receiver<AgentKey>,
    upstream: Option<reqwest::Response>,
    first: Option<String>,
    notification: Option<String>,
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
        if let Some(first) = first {
            if tx.send(sse::event(&first)).await.is_err() {
                return;
            }
        }
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
                        let Some(notification) = notification.as_deref() else { continue };
                        if tx.send(sse::event(notification)).await.is_err() { return; }
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
