//! A real [moto](https://github.com/getmoto/moto) server on loopback, one per test binary.
//!
//! `./scripts/test` installs `moto[server]` into a venv and exports
//! `FIREBREAK_MOTO_SERVER=<venv>/bin/moto_server`; [`Moto::start`] runs that executable on a
//! free `127.0.0.1` port with moto's request recorder on, so tests can count the IAM calls
//! **the server received** ([`Moto::iam_requests`]), not what a client believes it sent.
//!
//! # Sharing and cleanup
//!
//! A test binary normally shares one server through [`shared`] (a `OnceLock`), and calls
//! [`Moto::reset`] / [`Moto::clear_requests`] itself. Tests in one binary run in parallel,
//! so tests that reset the server or count requests take [`Moto::exclusive`] first (or start
//! their own [`Moto`]).
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use firebreak_e2e::{moto, seed_role};
//! # const TRUST: &str = "{}"; const DOC: &str = "{}";
//! let moto = moto::shared();
//! let _guard = moto.exclusive().await;
//! moto.reset().await?;
//! let iam = moto.iam_client().await;
//! seed_role(&iam, "web", TRUST, &[("s3-read", DOC)], &[]).await?;
//! moto.clear_requests().await?;
//! // ... run Firebreak against moto.endpoint() ...
//! let writes = moto.mutating_iam_requests().await?;
//! assert!(writes.iter().all(|w| w.param("RoleName") == Some("web")));
//! # Ok(()) }
//! ```
//!
//! No orphan processes:
//! * [`Drop`] kills the child by PID and waits for it.
//! * A `static` is never dropped, so the child is also started with
//!   `prctl(PR_SET_PDEATHSIG, SIGKILL)`: the kernel kills it when the test process dies,
//!   however it dies. The parent-death signal fires when the *thread* that forked the child
//!   exits, not the process, so the child is forked from a dedicated owner thread that
//!   lives as long as the [`Moto`] (for [`shared`], as long as the process). Forking it from
//!   the test's own thread would kill the shared server as soon as the first test finished.
//!
//! # Counting requests
//!
//! With `MOTO_ENABLE_RECORDING=True` moto appends every request it handles (except the
//! `/moto-api/recorder/*` routes) to `MOTO_RECORDER_FILEPATH` as one JSON object
//! (`method`, `url`, `headers`, `body`, `body_encoded`) per line, *before* dispatching it, so
//! failed calls and SDK retries are counted too. [`Moto::iam_requests`] downloads that file
//! through `GET /moto-api/recorder/download-recording` and keeps the entries signed for the
//! `iam` service, decoding the `Action` from the form-encoded POST body (or the query string).
//! An IAM-signed request whose `Action` could not be recovered is an error, never skipped,
//! so a count can't silently come out low.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use aws_sdk_iam::error::DisplayErrorContext;
use base64::Engine as _;

/// Environment variable naming the `moto_server` executable (set by `./scripts/test`).
pub const MOTO_SERVER_ENV: &str = "FIREBREAK_MOTO_SERVER";

/// Region every test client uses.
pub const REGION: &str = "us-east-1";
/// Static access key id of the test clients (moto accepts any).
pub const ACCESS_KEY_ID: &str = "AKIAFIREBREAKTEST";
/// Static secret key of the test clients.
pub const SECRET_ACCESS_KEY: &str = "firebreak-test-secret";
/// moto's default account id, the account in every ARN it returns.
pub const ACCOUNT_ID: &str = "123456789012";

const READY_TIMEOUT: Duration = Duration::from_secs(20);
const START_ATTEMPTS: usize = 3;

/// A `moto_server` child process listening on `127.0.0.1:<port>`.
pub struct Moto {
    port: u16,
    pid: u32,
    kill: Option<mpsc::Sender<()>>,
    owner: Option<JoinHandle<()>>,
    exclusive: tokio::sync::Mutex<()>,
    log_path: PathBuf,
    // Holds the recording and the server log; removed after the child is gone.
    _dir: tempfile::TempDir,
}

/// The one server of this test binary, started on first use.
///
/// Panics (failing the calling test) if it can't start, e.g. when `FIREBREAK_MOTO_SERVER` is
/// unset; a later call tries again. Never dropped: the child dies with the test process
/// through its parent-death signal.
pub fn shared() -> &'static Moto {
    static SHARED: OnceLock<Moto> = OnceLock::new();
    SHARED.get_or_init(|| Moto::start().unwrap_or_else(|e| panic!("{e:#}")))
}

impl Moto {
    /// Starts a server on a free loopback port and waits (up to ~20 s) until it answers.
    pub fn start() -> Result<Moto> {
        let exe = std::env::var_os(MOTO_SERVER_ENV).ok_or_else(|| {
            anyhow!(
                "{MOTO_SERVER_ENV} is not set: run the tests with ./scripts/test, which installs \
                 moto into a venv and exports {MOTO_SERVER_ENV}=<venv>/bin/moto_server"
            )
        })?;
        let exe = PathBuf::from(exe);
        if !exe.is_file() {
            bail!(
                "{MOTO_SERVER_ENV}={} does not exist: run ./scripts/test to install moto",
                exe.display()
            );
        }
        let mut last_err = None;
        for _ in 0..START_ATTEMPTS {
            match Self::start_once(&exe) {
                Ok(moto) => return Ok(moto),
                // Another process may have taken the port between our probe and moto's bind.
                Err(StartError::PortTaken(e)) => last_err = Some(e),
                Err(StartError::Fatal(e)) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow!("moto_server did not start")))
    }

    fn start_once(exe: &Path) -> std::result::Result<Moto, StartError> {
        sweep_stale_dirs();
        let dir = tempfile::Builder::new()
            .prefix(&format!("{DIR_PREFIX}{}-", std::process::id()))
            .tempdir()
            .context("creating moto's temporary directory")?;
        let port = free_port().context("picking a free loopback port")?;
        let log_path = dir.path().join("moto_server.log");
        let log = std::fs::File::create(&log_path).context("creating moto's log file")?;

        let mut cmd = Command::new(exe);
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .current_dir(dir.path())
            .env("MOTO_ENABLE_RECORDING", "True")
            .env("MOTO_RECORDER_FILEPATH", dir.path().join("recording.jsonl"))
            .env("PYTHONUNBUFFERED", "1")
            .env_remove("MOTO_PORT")
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("duplicating moto's log file")?)
            .stderr(log);
        set_parent_death_signal(&mut cmd);

        let exited = Arc::new(Mutex::new(None));
        let (pid, kill, owner) = spawn_owned(cmd, exited.clone())
            .with_context(|| format!("spawning {}", exe.display()))?;
        let moto = Moto {
            port,
            pid,
            kill: Some(kill),
            owner: Some(owner),
            exclusive: tokio::sync::Mutex::new(()),
            log_path,
            _dir: dir,
        };

        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            // Also creates the (empty) recording file that download-recording reads.
            if post_blocking(port, "/moto-api/recorder/reset-recording").is_ok() {
                return Ok(moto);
            }
            if let Some(status) = *exited.lock().unwrap() {
                let log = moto.server_log();
                let err = anyhow!(
                    "moto_server ({}) exited with {status} before answering on port {port}; its \
                     output:\n{log}",
                    exe.display()
                );
                return Err(if log.contains("Address already in use") {
                    StartError::PortTaken(err)
                } else {
                    StartError::Fatal(err)
                });
            }
            if Instant::now() >= deadline {
                return Err(StartError::Fatal(anyhow!(
                    "moto_server ({}) did not answer on port {port} within {READY_TIMEOUT:?}; its \
                     output:\n{}",
                    exe.display(),
                    moto.server_log()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The loopback port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// PID of the `moto_server` process.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// What the server printed so far (its werkzeug access log and any traceback).
    pub fn server_log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_else(|e| format!("<unreadable: {e}>"))
    }

    /// Serializes the tests of one binary that reset the shared server or count its requests.
    /// Works across the per-test tokio runtimes; hold the guard for the whole test.
    pub async fn exclusive(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.exclusive.lock().await
    }

    /// An IAM client for this server: region us-east-1, static test credentials,
    /// `endpoint_url` set, nothing read from the environment or `~/.aws`.
    pub async fn iam_client(&self) -> aws_sdk_iam::Client {
        let config = aws_sdk_iam::Config::builder()
            .behavior_version(aws_sdk_iam::config::BehaviorVersion::latest())
            .region(aws_sdk_iam::config::Region::new(REGION))
            .credentials_provider(aws_sdk_iam::config::Credentials::new(
                ACCESS_KEY_ID,
                SECRET_ACCESS_KEY,
                None,
                None,
                "firebreak-e2e",
            ))
            .endpoint_url(self.endpoint())
            .build();
        aws_sdk_iam::Client::from_conf(config)
    }

    /// Wipes every backend (`POST /moto-api/reset`), then empties the recording and makes
    /// sure recording is on, so [`Moto::iam_requests`] starts from zero.
    pub async fn reset(&self) -> Result<()> {
        self.post("/moto-api/reset").await?;
        self.post("/moto-api/recorder/reset-recording").await?;
        self.post("/moto-api/recorder/start-recording").await?;
        Ok(())
    }

    /// Forgets the requests recorded so far; the server's state is kept.
    pub async fn clear_requests(&self) -> Result<()> {
        self.post("/moto-api/recorder/reset-recording").await
    }

    /// Every IAM request the server received since the last [`Moto::reset`] or
    /// [`Moto::clear_requests`], in the order moto handled them.
    pub async fn iam_requests(&self) -> Result<Vec<IamRequest>> {
        let url = format!("{}/moto-api/recorder/download-recording", self.endpoint());
        let resp = reqwest::Client::new()
            .get(&url)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = resp.status();
        let text = resp.text().await.with_context(|| format!("GET {url}"))?;
        if !status.is_success() {
            bail!("GET {url}: {status}: {text}");
        }
        parse_recording(&text)
    }

    /// The mutating subset of [`Moto::iam_requests`].
    pub async fn mutating_iam_requests(&self) -> Result<Vec<IamRequest>> {
        Ok(self
            .iam_requests()
            .await?
            .into_iter()
            .filter(IamRequest::is_mutating)
            .collect())
    }

    async fn post(&self, path: &str) -> Result<()> {
        let url = format!("{}{path}", self.endpoint());
        // A client per call: a reqwest pool is bound to the runtime that created it, and each
        // #[tokio::test] has its own runtime while the server is shared.
        let resp = reqwest::Client::new()
            .post(&url)
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            bail!("POST {url}: {status}: {body}");
        }
        Ok(())
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        // The owner thread kills the child by PID (std's `Child::kill`) and reaps it.
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
        if let Some(owner) = self.owner.take() {
            let _ = owner.join();
        }
    }
}

impl std::fmt::Debug for Moto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Moto")
            .field("endpoint", &self.endpoint())
            .field("pid", &self.pid)
            .finish()
    }
}

/// One IAM call as the server received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IamRequest {
    /// The `Action` parameter, e.g. `PutRolePolicy`.
    pub action: String,
    /// The other request parameters (query string and form body), percent-decoded, without
    /// `Action` and `Version`; e.g. `RoleName`, `PolicyName`, `PolicyDocument`.
    pub params: BTreeMap<String, String>,
}

impl IamRequest {
    /// True for anything that can change IAM state: every action except the read-only
    /// `Get*`, `List*`, `Simulate*` and `Generate*` families (`Generate*` only prepares
    /// reports).
    pub fn is_mutating(&self) -> bool {
        const READ_ONLY: [&str; 4] = ["Get", "List", "Simulate", "Generate"];
        !READ_ONLY.iter().any(|p| self.action.starts_with(p))
    }

    /// A parameter by name.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

/// Creates a role with `trust_policy_json`, puts each `(name, document)` of `inline` on it,
/// creates each `(name, document)` of `managed` as a customer managed policy and attaches it.
/// Returns the role's ARN.
pub async fn seed_role(
    client: &aws_sdk_iam::Client,
    name: &str,
    trust_policy_json: &str,
    inline: &[(&str, &str)],
    managed: &[(&str, &str)],
) -> Result<String> {
    let role = client
        .create_role()
        .role_name(name)
        .assume_role_policy_document(trust_policy_json)
        .send()
        .await
        .map_err(|e| anyhow!("CreateRole {name}: {}", DisplayErrorContext(e)))?
        .role
        .ok_or_else(|| anyhow!("CreateRole {name}: no role in the response"))?;
    for (policy_name, document) in inline {
        client
            .put_role_policy()
            .role_name(name)
            .policy_name(*policy_name)
            .policy_document(*document)
            .send()
            .await
            .map_err(|e| {
                anyhow!(
                    "PutRolePolicy {name}/{policy_name}: {}",
                    DisplayErrorContext(e)
                )
            })?;
    }
    for (policy_name, document) in managed {
        let arn = client
            .create_policy()
            .policy_name(*policy_name)
            .policy_document(*document)
            .send()
            .await
            .map_err(|e| anyhow!("CreatePolicy {policy_name}: {}", DisplayErrorContext(e)))?
            .policy
            .and_then(|p| p.arn)
            .ok_or_else(|| anyhow!("CreatePolicy {policy_name}: no ARN in the response"))?;
        client
            .attach_role_policy()
            .role_name(name)
            .policy_arn(&arn)
            .send()
            .await
            .map_err(|e| anyhow!("AttachRolePolicy {name} {arn}: {}", DisplayErrorContext(e)))?;
    }
    Ok(role.arn)
}

/// Parses a policy document as IAM (and moto) return it: URL-encoded JSON.
///
/// Percent-decodes when the text starts with `%` (or when it isn't JSON as is), then parses.
/// Compare the `Value`s, never the strings: moto also reorders keys. Panics with the text
/// when it isn't a JSON document, which fails the calling test.
pub fn decode_policy(s: &str) -> serde_json::Value {
    let raw = s.trim();
    let parsed = if raw.starts_with('%') {
        percent_decode(raw).and_then(|d| serde_json::from_str(&d).map_err(Into::into))
    } else {
        serde_json::from_str(raw)
            .map_err(anyhow::Error::from)
            .or_else(|_| {
                percent_decode(raw).and_then(|d| serde_json::from_str(&d).map_err(Into::into))
            })
    };
    parsed.unwrap_or_else(|e| panic!("not a policy document ({e:#}): {s}"))
}

fn percent_decode(s: &str) -> Result<String> {
    Ok(urlencoding::decode(s)
        .context("percent-decoding")?
        .into_owned())
}

enum StartError {
    PortTaken(anyhow::Error),
    Fatal(anyhow::Error),
}

impl From<anyhow::Error> for StartError {
    fn from(e: anyhow::Error) -> Self {
        StartError::Fatal(e)
    }
}

const DIR_PREFIX: &str = "firebreak-moto-";

/// Removes the temporary directories of test processes that are gone: a `static` [`Moto`]
/// is never dropped, so its directory outlives its process.
fn sweep_stale_dirs() {
    let tmp = std::env::temp_dir();
    let Ok(entries) = std::fs::read_dir(&tmp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(DIR_PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// The child gets SIGKILL when the thread that forked it exits (see the module docs).
fn set_parent_death_signal(cmd: &mut Command) {
    // SAFETY: getpid is async-signal-safe.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe calls (prctl, getppid, _exit); it allocates nothing on success.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // The parent died between fork and prctl: the signal will never come.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// Forks `cmd` from a thread that lives until the returned sender sends or is dropped, then
/// kills and reaps the child. Meanwhile it notes the child's exit status in `exited`.
fn spawn_owned(
    mut cmd: Command,
    exited: Arc<Mutex<Option<ExitStatus>>>,
) -> Result<(u32, mpsc::Sender<()>, JoinHandle<()>)> {
    let (ready_tx, ready_rx) = mpsc::channel();
    let (kill_tx, kill_rx) = mpsc::channel::<()>();
    let owner = std::thread::Builder::new()
        .name("moto-owner".into())
        .spawn(move || {
            let mut child = match cmd.spawn() {
                Ok(child) => child,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(child.id()));
            loop {
                match kill_rx.recv_timeout(Duration::from_millis(100)) {
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
                    Err(RecvTimeoutError::Timeout) => {
                        let mut exited = exited.lock().unwrap();
                        if exited.is_none() {
                            if let Ok(Some(status)) = child.try_wait() {
                                *exited = Some(status);
                            }
                        }
                    }
                }
            }
            let _ = child.kill();
            let _ = child.wait();
        })
        .context("spawning the moto owner thread")?;
    match ready_rx.recv() {
        Ok(Ok(pid)) => Ok((pid, kill_tx, owner)),
        Ok(Err(e)) => {
            let _ = owner.join();
            Err(e.into())
        }
        Err(_) => {
            let _ = owner.join();
            bail!("the moto owner thread died")
        }
    }
}

/// A bodiless POST over a raw socket: usable before any tokio runtime exists, and from
/// inside one (it only blocks briefly).
fn post_blocking(port: u16, path: &str) -> Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        bail!("POST {path}: {status}");
    }
    Ok(())
}

/// Parses moto's recording: JSON objects, one per line. Read as a stream of values rather
/// than by line, because concurrent requests can append a large entry and its newline in
/// two writes.
fn parse_recording(text: &str) -> Result<Vec<IamRequest>> {
    let mut out = Vec::new();
    for entry in serde_json::Deserializer::from_str(text).into_iter::<serde_json::Value>() {
        let entry = entry.context("parsing moto's recording")?;
        if let Some(request) = parse_entry(&entry)? {
            out.push(request);
        }
    }
    Ok(out)
}

fn parse_entry(entry: &serde_json::Value) -> Result<Option<IamRequest>> {
    let header = |name: &str| {
        entry["headers"].as_object().and_then(|headers| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .and_then(|(_, v)| v.as_str())
        })
    };
    if signing_service(header("authorization").unwrap_or_default()) != Some("iam") {
        return Ok(None);
    }
    let url = entry["url"].as_str().unwrap_or_default();
    let mut params = BTreeMap::new();
    if let Some((_, query)) = url.split_once('?') {
        params.extend(form_urlencoded::parse(query.as_bytes()).into_owned());
    }
    let body = entry["body"].as_str().unwrap_or_default();
    let body = if entry["body_encoded"].as_bool().unwrap_or(false) {
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .context("decoding a recorded body")?
    } else {
        body.as_bytes().to_vec()
    };
    let form = header("content-type").is_some_and(|t| t.contains("x-www-form-urlencoded"));
    if form || header("content-type").is_none() {
        params.extend(form_urlencoded::parse(&body).into_owned());
    }
    let Some(action) = params.remove("Action") else {
        bail!(
            "moto recorded an IAM request without an Action (was its body recorded?): {}",
            entry
        );
    };
    params.remove("Version");
    Ok(Some(IamRequest { action, params }))
}

/// The service of a SigV4 `Authorization` header:
/// `AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/iam/aws4_request, ...`.
fn signing_service(authorization: &str) -> Option<&str> {
    let credential = authorization.split("Credential=").nth(1)?;
    let scope = credential.split([',', ' ']).next()?;
    scope.split('/').nth(3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_service_reads_the_credential_scope() {
        let auth = "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/iam/aws4_request, \
                    SignedHeaders=host;x-amz-date, Signature=abc";
        assert_eq!(signing_service(auth), Some("iam"));
        assert_eq!(signing_service(""), None);
    }

    #[test]
    fn parses_form_bodies_and_skips_other_services() {
        let iam = serde_json::json!({
            "method": "POST",
            "url": "http://127.0.0.1:1/",
            "headers": {
                "Authorization": "AWS4-HMAC-SHA256 Credential=A/20260101/us-east-1/iam/aws4_request, S=x",
                "Content-Type": "application/x-www-form-urlencoded",
            },
            "body": base64::engine::general_purpose::STANDARD
                .encode("Action=PutRolePolicy&Version=2010-05-08&RoleName=r&PolicyDocument=%7B%22a%22%3A1%7D"),
            "body_encoded": true,
        });
        let sts = serde_json::json!({
            "method": "POST",
            "url": "http://127.0.0.1:1/",
            "headers": {"authorization": "AWS4-HMAC-SHA256 Credential=A/20260101/us-east-1/sts/aws4_request"},
            "body": "Action=GetCallerIdentity",
            "body_encoded": false,
        });
        let reset = serde_json::json!({
            "method": "POST", "url": "http://127.0.0.1:1/moto-api/reset",
            "headers": {}, "body": "", "body_encoded": false,
        });
        // A large entry whose newline landed after the next entry.
        let text = format!("{iam}{sts}\n\n{reset}\n");
        let requests = parse_recording(&text).unwrap();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].action, "PutRolePolicy");
        assert_eq!(requests[0].param("RoleName"), Some("r"));
        assert_eq!(requests[0].param("PolicyDocument"), Some("{\"a\":1}"));
        assert_eq!(requests[0].param("Version"), None);
        assert!(requests[0].is_mutating());
    }

    #[test]
    fn an_iam_request_without_action_is_an_error() {
        let entry = serde_json::json!({
            "method": "POST",
            "url": "http://127.0.0.1:1/",
            "headers": {"Authorization": "AWS4-HMAC-SHA256 Credential=A/2026/us-east-1/iam/aws4_request"},
            "body": "",
            "body_encoded": false,
        });
        assert!(parse_entry(&entry).is_err());
    }

    #[test]
    fn mutating_is_everything_but_reads() {
        let req = |action: &str| IamRequest {
            action: action.into(),
            params: BTreeMap::new(),
        };
        for read in [
            "GetRole",
            "ListRolePolicies",
            "SimulatePrincipalPolicy",
            "GenerateCredentialReport",
        ] {
            assert!(!req(read).is_mutating(), "{read}");
        }
        for write in [
            "CreateRole",
            "PutRolePolicy",
            "DetachRolePolicy",
            "TagRole",
            "UpdateAssumeRolePolicy",
        ] {
            assert!(req(write).is_mutating(), "{write}");
        }
    }

    #[test]
    fn decode_policy_handles_encoded_and_plain() {
        let want = serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow"}]});
        let encoded = "%7B%22Version%22%3A%20%222012-10-17%22%2C%20%22Statement%22%3A%20%5B%7B%22Effect%22%3A%20%22Allow%22%7D%5D%7D";
        assert_eq!(decode_policy(encoded), want);
        assert_eq!(decode_policy(&want.to_string()), want);
    }
}
