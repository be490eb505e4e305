//! A Milvus 2.3 server with RBAC on (the PyPI `milvus` build: etcd, rocksmq and local storage in
//! one process tree) for the context surface's Milvus test, with the pymilvus scripts beside
//! that test to seed it and to search as an agent.
//!
//! Milvus binds every interface on fixed ports, so it runs inside a private network namespace
//! reached over a veth pair at a private /30 derived from this process's id. A detached
//! watchdog kills the namespace's processes by id, deletes the namespace and removes the data
//! directory once this test process is gone, however it ends.
//!
//! Milvus 2.3 allows 10 roles by default, two of them built in (`proxy.maxRoleNum`). The
//! launcher's `--extra-config` only rewrites keys its template has, and that one is not among
//! them, so it is raised through Milvus' environment source instead (`PROXY_MAXROLENUM`): each
//! test seeds its own roles.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

/// The `milvus-server` launcher and the python with pymilvus (set by `./scripts/test`).
const SERVER_ENV: &str = "FIREBREAK_MILVUS_SERVER";
const PYTHON_ENV: &str = "FIREBREAK_MILVUS_PYTHON";
const GRPC_PORT: u16 = 19530;
const HEALTH_PORT: u16 = 9091;
const NS_PREFIX: &str = "fbmv-";
/// Roles the server allows, the two built-in ones included.
const MAX_ROLES: &str = "64";

pub struct MilvusServer {
    address: String,
    dir: PathBuf,
    python: PathBuf,
}

pub fn milvus() -> &'static MilvusServer {
    static SERVER: OnceLock<MilvusServer> = OnceLock::new();
    SERVER.get_or_init(|| MilvusServer::start().unwrap_or_else(|e| panic!("{e:#}")))
}

/// `ip …`, failing with its stderr.
fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn env_path(name: &str) -> Result<PathBuf> {
    std::env::var_os(name).map(PathBuf::from).ok_or_else(|| {
        anyhow!("{name} is not set: run the tests with ./scripts/test, or eval \"$(./scripts/test --env)\" first")
    })
}

impl MilvusServer {
    fn start() -> Result<MilvusServer> {
        let server = env_path(SERVER_ENV)?;
        let python = env_path(PYTHON_ENV)?;
        sweep_stale();
        let pid = std::process::id();
        let ns = format!("{NS_PREFIX}{pid}");
        let (host_if, ns_if) = (format!("fbmvh{pid}"), format!("fbmvn{pid}"));
        // 10.250.0.0/16 split into /30s: host .1, Milvus .2 of this process's one.
        let base = u32::from(Ipv4Addr::new(10, 250, 0, 0)) + (pid % 16384) * 4;
        let (host_ip, ns_ip) = (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2));
        let dir = std::env::temp_dir().join(format!("firebreak-milvus-{pid}"));
        std::fs::create_dir_all(&dir)?;

        // The watchdog first, so that a failed start is cleaned up too.
        let cleanup = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
             for p in $(ip netns pids {ns}); do kill -9 $p; done; \
             ip netns del {ns}; ip link del {host_if} 2>/dev/null; rm -rf {dir}",
            dir = dir.display()
        );
        std::os::unix::process::CommandExt::process_group(
            Command::new("sh").args(["-c", &cleanup]),
            0,
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("spawning the cleanup watchdog")?;

        ip(&["netns", "add", &ns])?;
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
        ])?;
        ip(&["link", "set", &ns_if, "netns", &ns])?;
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &host_if])?;
        ip(&["link", "set", &host_if, "up"])?;
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{ns_ip}/30"),
            "dev",
            &ns_if,
        ])?;
        ip(&["-n", &ns, "link", "set", &ns_if, "up"])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;

        let log = std::fs::File::create(dir.join("server.log"))?;
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns])
            .arg(&server)
            .arg("--data")
            .arg(dir.join("milvus"))
            .args([
                "--authorization-enabled",
                "true",
                // The proxy's access log (one line per API call, with the caller) goes to
                // stdout, i.e. logs/milvus-stdout.log: the tests count writes there.
                "--extra-config",
                "proxy.accessLog.enable=true",
            ])
            .env("PROXY_MAXROLENUM", MAX_ROLES)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", server.display()))?;
        let me = MilvusServer {
            address: format!("{ns_ip}:{GRPC_PORT}"),
            dir,
            python,
        };
        let deadline = Instant::now() + Duration::from_secs(240);
        while !healthy(ns_ip) {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "milvus-server exited ({status}); its log:\n{}",
                    me.log_tail()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "Milvus did not become healthy in 240 s; its log:\n{}",
                    me.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        // The reaper thread owns the child, so it never lingers as a zombie.
        std::thread::spawn(move || child.wait());
        Ok(me)
    }

    /// `host:port` of the gRPC endpoint, inside the private namespace.
    pub fn address(&self) -> &str {
        &self.address
    }

    fn logs(&self) -> PathBuf {
        self.dir.join("milvus").join("logs")
    }

    fn log_tail(&self) -> String {
        let mut out = String::new();
        for file in [
            self.dir.join("server.log"),
            self.logs().join("milvus-stderr.log"),
        ] {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- {}\n", file.display()));
            out.push_str(&lines[lines.len().saturating_sub(40)..].join("\n"));
            out.push('\n');
        }
        out
    }

    /// The proxy's access-log lines of calls made as `user`, as `(method, status)`.
    pub fn calls_by(&self, user: &str) -> Vec<(String, String)> {
        let text =
            std::fs::read_to_string(self.logs().join("milvus-stdout.log")).unwrap_or_default();
        let tag = format!("[ACCESS] <{user}: ");
        text.lines()
            .filter_map(|line| {
                let rest = &line[line.find(&tag)? + tag.len()..];
                // `addr> Method [status: OK] …`
                let mut words = rest.split_once("> ")?.1.split(' ');
                let method = words.next()?.to_string();
                let status = rest
                    .split_once("[status: ")
                    .and_then(|(_, s)| s.split_once(']'))
                    .map(|(s, _)| s.to_string())
                    .unwrap_or_default();
                Some((method, status))
            })
            .collect()
    }

    /// The client addresses (one per connection) of the calls made as `user`.
    pub fn clients_of(&self, user: &str) -> std::collections::BTreeSet<String> {
        let text =
            std::fs::read_to_string(self.logs().join("milvus-stdout.log")).unwrap_or_default();
        let tag = format!("[ACCESS] <{user}: ");
        text.lines()
            .filter_map(|line| {
                let rest = &line[line.find(&tag)? + tag.len()..];
                Some(rest.split_once("> ")?.0.to_string())
            })
            .collect()
    }

    /// Runs one of the pymilvus scripts beside the test and parses the JSON it prints.
    pub fn script(&self, name: &str, args: &[&str]) -> Result<serde_json::Value> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/e2e/milvus")
            .join(name);
        let out = Command::new(&self.python)
            .arg(&path)
            .args(args)
            .output()
            .with_context(|| format!("running {}", path.display()))?;
        if !out.status.success() {
            bail!(
                "{name} {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        serde_json::from_slice(&out.stdout).with_context(|| {
            format!(
                "{name} printed no JSON: {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }
}

/// Whether the health endpoint answers OK and the gRPC port accepts connections.
fn healthy(ip: Ipv4Addr) -> bool {
    let timeout = Duration::from_millis(500);
    let Ok(mut health) = TcpStream::connect_timeout(&SocketAddr::from((ip, HEALTH_PORT)), timeout)
    else {
        return false;
    };
    let _ = health.set_read_timeout(Some(Duration::from_secs(2)));
    let mut body = String::new();
    health
        .write_all(b"GET /healthz HTTP/1.0\r\n\r\n")
        .and_then(|_| health.read_to_string(&mut body))
        .is_ok()
        && body.contains("OK")
        && TcpStream::connect_timeout(&SocketAddr::from((ip, GRPC_PORT)), timeout).is_ok()
}

/// Removes the namespaces and directories of earlier test processes that are gone without
/// their watchdog having run (e.g. the machine rebooted mid-test).
fn sweep_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(pid) = name.strip_prefix(NS_PREFIX) else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if let Ok(pids) = Command::new("ip").args(["netns", "pids", name]).output() {
            for p in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", p]).status();
            }
        }
        let _ = ip(&["netns", "del", name]);
        let _ = ip(&["link", "del", &format!("fbmvh{pid}")]);
        let _ =
            std::fs::remove_dir_all(std::env::temp_dir().join(format!("firebreak-milvus-{pid}")));
    }
}
