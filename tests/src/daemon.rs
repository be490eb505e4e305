//! The real `firebreak` binary as a daemon: its own config, data dir and port; killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

use crate::moto::{ACCESS_KEY_ID, SECRET_ACCESS_KEY};

/// How a test wants its daemon.
#[derive(Clone)]
pub struct DaemonOptions {
    pub iam_endpoint: String,
    /// Runbook YAML; `None` = the embedded default runbook.
    pub runbook: Option<String>,
    /// `budget:` block of the config.
    pub budget: (usize, usize, usize),
    /// `FIREBREAK_FAULT` for this run.
    pub fault: Option<&'static str>,
    pub verify_deadline: &'static str,
    /// YAML appended to the generated config (e.g. a `sources:` section).
    pub extra_config: String,
    /// `api.metricsListen`'s port: metrics without a token on their own listener.
    pub metrics_port: Option<u16>,
    /// `api.maxPlanning`; `None` = the default.
    pub max_planning: Option<usize>,
}

impl DaemonOptions {
    pub fn new(iam_endpoint: String) -> Self {
        Self {
            iam_endpoint,
            runbook: None,
            budget: (100, 100, 100),
            fault: None,
            verify_deadline: "10s",
            extra_config: String::new(),
            metrics_port: None,
            max_planning: None,
        }
    }
}

/// A data dir with its config and envelopes: outlives daemon restarts.
pub struct Workspace {
    dir: tempfile::TempDir,
    bin: PathBuf,
}

impl Workspace {
    pub fn new(bin: &str) -> Result<Workspace> {
        Ok(Workspace {
            dir: tempfile::tempdir()?,
            bin: PathBuf::from(bin),
        })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn envelopes(&self) -> PathBuf {
        self.dir.path().join("data/envelopes")
    }

    /// Writes an envelope YAML into the envelope directory.
    pub fn add_envelope(&self, name: &str, yaml: &str) -> Result<()> {
        std::fs::create_dir_all(self.envelopes())?;
        std::fs::write(self.envelopes().join(format!("{name}.yaml")), yaml)?;
        Ok(())
    }

    fn write_config(&self, options: &DaemonOptions, port: u16) -> Result<PathBuf> {
        let runbooks = match &options.runbook {
            Some(text) => {
                let dir = self.dir.path().join("runbooks");
                std::fs::create_dir_all(&dir)?;
                std::fs::write(dir.join("test.yaml"), text)?;
                format!("{:?}", dir.display().to_string())
            }
            None => "~".into(),
        };
        let (global, namespace, agent) = options.budget;
        let config = format!(
            "listen: 127.0.0.1:{port}\n\
             dataDir: {data:?}\n\
             envelopes: ~\n\
             runbooks: {runbooks}\n\
             api:\n  tokenFile: ~\n  maxBodyBytes: 65536\n  metricsListen: {metrics}\n  maxPlanning: {planning}\n\
             budget:\n  globalPerMinute: {global}\n  namespacePerMinute: {namespace}\n  agentPerMinute: {agent}\n\
             aws:\n  enabled: true\n  region: us-east-1\n  endpoint: {endpoint:?}\n  verifyDeadline: {deadline}\n",
            data = self.dir.path().join("data").display().to_string(),
            endpoint = options.iam_endpoint,
            deadline = options.verify_deadline,
            planning = options
                .max_planning
                .unwrap_or(firebreak_containment::engine::DEFAULT_MAX_PLANNING),
            metrics = options
                .metrics_port
                .map_or("~".to_string(), |port| format!("127.0.0.1:{port}")),
        );
        let path = self.dir.path().join("config.yaml");
        std::fs::write(&path, config + &options.extra_config)?;
        Ok(path)
    }

    /// Runs a one-shot CLI command against this workspace; returns (exit code, stdout, stderr).
    pub fn cli(&self, options: &DaemonOptions, args: &[&str]) -> Result<(i32, String, String)> {
        let config = self.write_config(options, free_port()?)?;
        run_cli(&self.bin, &config, args)
    }

    /// Starts `firebreak serve` and waits until `/healthz` answers.
    pub async fn start(&self, options: &DaemonOptions) -> Result<Daemon> {
        let port = free_port()?;
        let config = self.write_config(options, port)?;
        let log = self.dir.path().join(format!("daemon-{port}.log"));
        let mut command = Command::new(&self.bin);
        command
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .envs(aws_env())
            .env("FIREBREAK_LOG", "info,firebreak_containment=debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?);
        match options.fault {
            Some(f) => command.env("FIREBREAK_FAULT", f),
            None => command.env_remove("FIREBREAK_FAULT"),
        };
        let child = command.spawn().context("cannot start firebreak serve")?;
        let mut daemon = Daemon {
            child,
            base: format!("http://127.0.0.1:{port}"),
            token: String::new(),
            log,
            bin: self.bin.clone(),
            config,
        };
        daemon.wait_healthy().await?;
        daemon.token = std::fs::read_to_string(self.dir.path().join("data/api-token"))?
            .trim()
            .to_string();
        Ok(daemon)
    }
}

/// One CLI run with `config`: (exit code, stdout, stderr).
fn run_cli(bin: &Path, config: &Path, args: &[&str]) -> Result<(i32, String, String)> {
    let out = Command::new(bin)
        .arg("--config")
        .arg(config)
        .args(args)
        .envs(aws_env())
        .output()
        .context("cannot run firebreak")?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// The fake credentials and region every process talking to moto is started with.
pub fn aws_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
        ("AWS_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]
}

pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub struct Daemon {
    child: Child,
    pub base: String,
    pub token: String,
    log: PathBuf,
    bin: PathBuf,
    config: PathBuf,
}

impl Daemon {
    /// Runs a CLI command against this running daemon (same config: its port, its token);
    /// returns (exit code, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> Result<(i32, String, String)> {
        run_cli(&self.bin, &self.config, args)
    }

    async fn wait_healthy(&self) -> Result<()> {
        let until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < until {
            if let Ok(r) = reqwest::get(format!("{}/healthz", self.base)).await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("firebreak did not become healthy; log:\n{}", self.log())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `signal` (`HUP`, `TERM` or `KILL`) to the daemon's process, by its PID. A direct
    /// syscall, not a `kill` process: a crash test's kill lands when it says, not a fork later.
    pub fn signal(&self, signal: &str) -> Result<()> {
        let number = match signal {
            "HUP" => libc::SIGHUP,
            "TERM" => libc::SIGTERM,
            "KILL" => libc::SIGKILL,
            other => bail!("no such signal in the harness: {other}"),
        };
        let pid = libc::pid_t::try_from(self.child.id()).context("pid out of range")?;
        // SAFETY: kill(2) takes plain integers; the pid is our own child, not yet reaped.
        if unsafe { libc::kill(pid, number) } != 0 {
            bail!(
                "kill -{signal} {pid} failed: {}",
                std::io::Error::last_os_error()
            );
        }
        Ok(())
    }

    /// Waits for the process to exit by itself (e.g. a fault-injected crash).
    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let until = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > until {
                bail!("firebreak did not exit within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> Result<String> {
        Ok(reqwest::Client::new()
            .get(format!("{}/metrics", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?
            .text()
            .await?)
    }

    pub async fn healthy(&self) -> bool {
        reqwest::get(format!("{}/healthz", self.base))
            .await
            .is_ok_and(|r| r.status().is_success())
    }

    /// POSTs `body` (raw bytes) with the token; returns (status, JSON body or the text).
    pub async fn post_raw(&self, path: &str, body: Vec<u8>) -> Result<(u16, Value)> {
        let request = reqwest::Client::new()
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body);
        self.send(request).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<(u16, Value)> {
        self.post_raw(path, body.to_string().into_bytes()).await
    }

    pub async fn get(&self, path: &str) -> Result<(u16, Value)> {
        self.send(reqwest::Client::new().get(format!("{}{path}", self.base)))
            .await
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<(u16, Value)> {
        let response = request.bearer_auth(&self.token).send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    pub async fn incident(&self, id: &str) -> Result<Value> {
        let (status, body) = self.get(&format!("/v1/incidents/{id}")).await?;
        if status != 200 {
            bail!("GET incident {id}: {status} {body}");
        }
        Ok(body)
    }

    /// Polls the incident until its status is `want`; fails with the incident and the log.
    pub async fn wait_status(&self, id: &str, want: &str, timeout: Duration) -> Result<Value> {
        let until = Instant::now() + timeout;
        loop {
            let incident = self.incident(id).await?;
            if incident["status"] == want {
                return Ok(incident);
            }
            if Instant::now() > until {
                return Err(anyhow!(
                    "incident {id} is {} not {want} after {timeout:?}:\n{incident:#}\nlog:\n{}",
                    incident["status"],
                    self.log()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
