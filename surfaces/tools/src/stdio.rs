//! Upstreams spoken to over stdio: one child process per upstream, shared by every agent.
//!
//! A stdio server has exactly one client, so the gateway is that client: it does the
//! `initialize` handshake once, gives every agent request a gateway-unique id on the way in and
//! restores the agent's id on the way out. Server-to-client requests (sampling, elicitation)
//! cannot be routed to one agent over a shared pipe and are answered with an error.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use rmcp::model::ProtocolVersion;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::sync::{mpsc, oneshot, Mutex};
use tracing::warn;

/// How long one request may wait for the child's answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

type Pending = Arc<StdMutex<HashMap<u64, oneshot::Sender<Value>>>>;

pub(crate) struct StdioUpstream {
    command: String,
    args: Vec<String>,
    live: Mutex<Option<Arc<Child>>>,
}

struct Child {
    tx: mpsc::Sender<Vec<u8>>,
    pending: Pending,
    next: AtomicU64,
    alive: Arc<AtomicBool>,
    /// The child's `initialize` result, replayed to every agent that initializes.
    init: Value,
    _process: tokio::process::Child,
}

impl StdioUpstream {
    pub(crate) fn new(command: String, args: Vec<String>) -> Self {
        Self {
            command,
            args,
            live: Mutex::new(None),
        }
    }

    /// The running child, started (and initialized) on first use and again if it died.
    async fn child(&self) -> Result<Arc<Child>, String> {
        let mut live = self.live.lock().await;
        if let Some(child) = live.as_ref().filter(|c| c.alive.load(Ordering::Acquire)) {
            return Ok(child.clone());
        }
        let child = Arc::new(self.spawn().await?);
        *live = Some(child.clone());
        Ok(child)
    }

    async fn spawn(&self) -> Result<Child, String> {
        let mut process = Command::new(&self.command)
            .args(&self.args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.command))?;
        let (Some(mut stdin), Some(stdout)) = (process.stdin.take(), process.stdout.take()) else {
            return Err("the child has no stdio pipes".into());
        };
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(256);
        let pending: Pending = Arc::default();
        let alive = Arc::new(AtomicBool::new(true));
        tokio::spawn(async move {
            while let Some(mut line) = rx.recv().await {
                line.push(b'\n');
                if stdin.write_all(&line).await.is_err() {
                    return;
                }
            }
        });
        {
            let (pending, alive, tx) = (pending.clone(), alive.clone(), tx.clone());
            tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let Ok(message) = serde_json::from_str::<Value>(&line) else {
                        warn!(line, "stdio upstream wrote a line that is not JSON");
                        continue;
                    };
                    route(message, &pending, &tx).await;
                }
                alive.store(false, Ordering::Release);
                // Dropping the senders fails every request still waiting.
                pending.lock().unwrap_or_else(|e| e.into_inner()).clear();
            });
        }
        let mut child = Child {
            tx,
            pending,
            next: AtomicU64::new(1),
            alive,
            init: Value::Null,
            _process: process,
        };
        let answer = child
            .request(
                "initialize",
                json!({
                    "protocolVersion": ProtocolVersion::LATEST_WITH_INITIALIZE,
                    "capabilities": {},
                    "clientInfo": {"name": "firebreak-gateway", "version": env!("CARGO_PKG_VERSION")},
                }),
            )
            .await?;
        child.init = answer
            .get("result")
            .cloned()
            .ok_or_else(|| format!("initialize failed: {answer}"))?;
        child
            .notify("notifications/initialized", Value::Null)
            .await?;
        Ok(child)
    }

    /// Sends one agent request; returns the child's answer carrying the agent's `id`.
    pub(crate) async fn request(
        &self,
        id: &Value,
        method: &str,
        params: Value,
    ) -> Result<Value, String> {
        let child = self.child().await?;
        let mut answer = if method == "initialize" {
            json!({"jsonrpc": "2.0", "result": child.init.clone()})
        } else {
            child.request(method, params).await?
        };
        answer["id"] = id.clone();
        Ok(answer)
    }

    /// The child's `initialize` result (started first if need be), for `server/discover`.
    pub(crate) async fn init(&self) -> Result<Value, String> {
        Ok(self.child().await?.init.clone())
    }

    /// Passes an agent notification on; the handshake's own is the gateway's business.
    pub(crate) async fn notify(&self, method: &str, params: Value) -> Result<(), String> {
        if method == "notifications/initialized" {
            return Ok(());
        }
        self.child().await?.notify(method, params).await
    }
}

impl Child {
    async fn request(&self, method: &str, params: Value) -> Result<Value, String> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, tx);
        self.send(
            json!({"jsonrpc": "2.0", "id": id, "method": method}),
            params,
        )
        .await?;
        match tokio::time::timeout(REQUEST_TIMEOUT, rx).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => Err("the stdio upstream exited before answering".into()),
            Err(_) => {
                self.pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id);
                Err(format!("no answer to {method} within {REQUEST_TIMEOUT:?}"))
            }
        }
    }

    async fn notify(&self, method: &str, params: Value) -> Result<(), String> {
        self.send(json!({"jsonrpc": "2.0", "method": method}), params)
            .await
    }

    /// Writes one JSON-RPC message (with `params` unless null) to the child's stdin.
    async fn send(&self, mut message: Value, params: Value) -> Result<(), String> {
        if !params.is_null() {
            message["params"] = params;
        }
        let bytes = serde_json::to_vec(&message).map_err(|e| e.to_string())?;
        self.tx
            .send(bytes)
            .await
            .map_err(|_| "the stdio upstream exited".to_string())
    }
}

/// One message from the child: an answer goes to its waiter; a request is refused.
async fn route(message: Value, pending: &Pending, tx: &mpsc::Sender<Vec<u8>>) {
    let id = message.get("id").cloned();
    let is_answer = message.get("result").is_some() || message.get("error").is_some();
    match (id, is_answer) {
        (Some(id), true) => {
            let waiter = id
                .as_u64()
                .and_then(|n| pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&n));
            if let Some(waiter) = waiter {
                let _ = waiter.send(message);
            }
        }
        (Some(id), false) => {
            let refusal = json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601,
                "message": "the Firebreak gateway does not route server-to-client requests from a stdio upstream"}});
            if let Ok(bytes) = serde_json::to_vec(&refusal) {
                let _ = tx.send(bytes).await;
            }
        }
        // Notifications (logging, progress) have no single agent to go to over a shared pipe.
        (None, _) => {}
    }
}
