//! Real MCP software on loopback for the gateway's tests and benchmark: a FastMCP server and
//! `@modelcontextprotocol/server-everything` as upstreams, the official Python client as agent.
//!
//! Every child holds a pipe to this process on its stdin and exits when it closes, so servers
//! started once per binary (in statics, never dropped) still die with the test binary.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

fn env(name: &str) -> Result<String> {
    std::env::var(name).with_context(|| {
        format!("{name} is not set; run the tests through ./scripts/test (or eval \"$(./scripts/test --env)\")")
    })
}

/// A script of this folder, found from whichever package includes the harness.
pub fn script(name: &str) -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .map(|dir| dir.join("tests/e2e/tools"))
        .find(|dir| dir.is_dir())
        .unwrap_or_else(|| manifest.join("tests/e2e/tools"))
        .join(name)
}

pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// server-everything's entry point (`node ENTRY stdio|streamableHttp`).
pub fn everything_entry() -> Result<PathBuf> {
    Ok(PathBuf::from(env("FIREBREAK_MCP_EVERYTHING")?).join("dist/index.js"))
}

/// An upstream MCP server process.
pub struct Server {
    child: Child,
    stdin: Option<ChildStdin>,
    pub port: u16,
    /// The streamable HTTP endpoint.
    pub url: String,
}

impl Server {
    fn spawn(mut command: Command, port: u16) -> Result<Server> {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {command:?}"))?;
        let stdin = child.stdin.take();
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = child.try_wait()? {
                bail!("{command:?} exited with {status} before listening");
            }
            if Instant::now() > deadline {
                bail!("{command:?} did not listen on {port} within 60 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Server {
            child,
            stdin,
            port,
            url: format!("http://127.0.0.1:{port}/mcp"),
        })
    }

    /// FastMCP (mcp 2.x `MCPServer`), tools `echo`, `add`, `export_payouts`; counts requests.
    pub fn fastmcp() -> Result<Server> {
        let port = free_port()?;
        let mut command = Command::new(env("FIREBREAK_MCP_PYTHON")?);
        command
            .arg(script("fastmcp_server.py"))
            .arg(port.to_string());
        Server::spawn(command, port)
    }

    /// `@modelcontextprotocol/server-everything` over streamable HTTP (2025-11-25).
    pub fn everything() -> Result<Server> {
        Server::everything_on(free_port()?)
    }

    /// The same on a given port, e.g. to start it again where a stopped one listened.
    pub fn everything_on(port: u16) -> Result<Server> {
        let entry = everything_entry()?;
        // node ignores its stdin: a shell holds the pipe and stops node when it closes.
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg("node \"$0\" streamableHttp & pid=$!; cat >/dev/null; kill $pid")
            .arg(entry)
            .env("PORT", port.to_string());
        Server::spawn(command, port)
    }

    /// How many HTTP requests reached the FastMCP server's /mcp.
    pub async fn count(&self) -> Result<u64> {
        let text = reqwest::get(format!("http://127.0.0.1:{}/count", self.port))
            .await?
            .text()
            .await?;
        text.trim().parse().context("count is a number")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// What the agent saw for one `tools/call`.
#[derive(Debug)]
pub struct Called {
    pub is_error: bool,
    pub text: String,
}

/// One agent: the official Python MCP client in its own process, session kept open.
pub struct Agent {
    _child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Agent {
    /// `mode`: `2026-07-28`, `legacy` for the 2025-11-25 initialize handshake, or `auto`.
    pub async fn start(url: &str, token: &str, mode: &str) -> Result<Agent> {
        let mut child = tokio::process::Command::new(env("FIREBREAK_MCP_PYTHON")?)
            .arg(script("agent.py"))
            .args([url, token, mode])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start agent.py")?;
        let stdin = child.stdin.take().context("agent stdin")?;
        let stdout = child.stdout.take().context("agent stdout")?;
        let mut agent = Agent {
            _child: child,
            stdin,
            lines: BufReader::new(stdout).lines(),
        };
        let ready = agent.read().await?;
        if ready["ready"] != json!(true) {
            bail!("agent did not connect to {url}: {ready}");
        }
        Ok(agent)
    }

    async fn read(&mut self) -> Result<Value> {
        let line = tokio::time::timeout(Duration::from_secs(30), self.lines.next_line())
            .await
            .context("agent answered nothing within 30 s")??
            .ok_or_else(|| anyhow!("agent exited"))?;
        Ok(serde_json::from_str(&line)?)
    }

    async fn ask(&mut self, command: Value) -> Result<Value> {
        let mut line = serde_json::to_vec(&command)?;
        line.push(b'\n');
        self.stdin.write_all(&line).await?;
        let answer = self.read().await?;
        if let Some(e) = answer.get("error") {
            bail!("agent failed: {e}");
        }
        Ok(answer)
    }

    pub async fn list(&mut self) -> Result<Vec<String>> {
        let answer = self.ask(json!({"op": "list"})).await?;
        Ok(serde_json::from_value(answer["tools"].clone())?)
    }

    /// Opens a 2026-07-28 `subscriptions/listen` stream for tool-list changes.
    pub async fn listen(&mut self) -> Result<()> {
        self.ask(json!({"op": "listen"})).await.map(drop)
    }

    /// The protocol version the connection settled on (`mode: auto` probes `server/discover`).
    pub async fn version(&mut self) -> Result<String> {
        let answer = self.ask(json!({"op": "version"})).await?;
        Ok(answer["version"].as_str().unwrap_or_default().to_string())
    }

    /// How many tool-list-changed events the listen stream delivered so far.
    pub async fn events(&mut self) -> Result<u64> {
        let answer = self.ask(json!({"op": "events"})).await?;
        answer["events"].as_u64().context("events is a count")
    }

    pub async fn call(&mut self, tool: &str, args: Value) -> Result<Called> {
        let answer = self
            .ask(json!({"op": "call", "tool": tool, "args": args}))
            .await?;
        Ok(Called {
            is_error: answer["isError"] == json!(true),
            text: answer["text"].as_str().unwrap_or_default().to_string(),
        })
    }

    /// Calls `tool` until the gateway refuses it (at most 5 s); returns the refusal's text.
    pub async fn until_refused(&mut self, tool: &str, args: &Value) -> Result<String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let called = self.call(tool, args.clone()).await?;
            if called.is_error {
                return Ok(called.text);
            }
            if Instant::now() > deadline {
                bail!("the gateway still serves {tool} after 5 s: {called:?}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
