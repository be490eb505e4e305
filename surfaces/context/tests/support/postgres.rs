//! A PostgreSQL 16 + pgvector server (the PyPI `pgserver` build) for the context surface's
//! end-to-end test and benchmark, run as `nobody` because postgres refuses root.
//!
//! Shared by two targets that each use part of it.
#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use tokio_postgres::{Client, NoTls};

/// Directory holding `initdb` and `postgres` (set by `./scripts/test`).
const PG_BIN_ENV: &str = "FIREBREAK_PG_BIN";
const NOBODY: u32 = 65534;
const NOGROUP: u32 = 65534;
const PORT: u16 = 5432;

/// The postgres server of this test binary. Its postmaster is stopped by PID when the test
/// process exits (parent-death signal from the thread that owns it).
pub struct Pg {
    socket_dir: PathBuf,
    log: PathBuf,
}

pub fn pg() -> &'static Pg {
    static PG: OnceLock<Pg> = OnceLock::new();
    PG.get_or_init(|| Pg::start().unwrap_or_else(|e| panic!("{e:#}")))
}

impl Pg {
    fn start() -> Result<Pg> {
        let bin = PathBuf::from(std::env::var_os(PG_BIN_ENV).ok_or_else(|| {
            anyhow!("{PG_BIN_ENV} is not set: run the tests with ./scripts/test, which installs pgserver and exports it")
        })?);
        // Outside /root (which nobody cannot enter); the directory is removed on the next run.
        sweep_stale();
        let dir = std::env::temp_dir().join(format!("firebreak-pg-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let data = dir.join("data");
        let socket_dir = dir.join("sock");
        std::fs::create_dir_all(&socket_dir)?;
        for p in [&dir, &socket_dir] {
            chown_nobody(p)?;
        }
        let out = Command::new(bin.join("initdb"))
            .args([
                "-D",
                path_str(&data)?,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
            ])
            .uid(NOBODY)
            .gid(NOGROUP)
            .current_dir(&dir)
            .output()
            .context("running initdb")?;
        if !out.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let log = dir.join("postgres.log");
        let logfile = std::fs::File::create(&log)?;
        let mut cmd = Command::new(bin.join("postgres"));
        cmd.args(["-D", path_str(&data)?, "-k", path_str(&socket_dir)?, "-p"])
            .arg(PORT.to_string())
            .args([
                "-c",
                "listen_addresses=",
                "-c",
                "log_statement=all",
                // `connection authorized: user=… database=… application_name=…`: the tests
                // count the sessions a plane opens.
                "-c",
                "log_connections=on",
                "-c",
                "log_line_prefix=db=%d ",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=200",
            ])
            .uid(NOBODY)
            .gid(NOGROUP)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(logfile.try_clone()?)
            .stderr(logfile);
        // SAFETY: prctl is async-signal-safe; it runs in the child between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        // The parent-death signal fires when the spawning thread exits: spawn from a thread that
        // lives as long as the test process.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || match cmd.spawn() {
            Ok(mut child) => {
                let _ = tx.send(Ok(child.id()));
                let _ = child.wait();
            }
            Err(e) => {
                let _ = tx.send(Err(e));
            }
        });
        let pid = rx.recv()?.context("spawning postgres")?;
        let pg = Pg { socket_dir, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !pg.socket_dir.join(format!(".s.PGSQL.{PORT}")).exists() {
            if Instant::now() > deadline || !Path::new(&format!("/proc/{pid}")).exists() {
                bail!("postgres did not start; its log:\n{}", pg.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(pg)
    }

    pub fn dsn(&self, db: &str) -> String {
        format!(
            "host={} port={PORT} user=postgres dbname={db}",
            self.socket_dir.display()
        )
    }

    /// Sessions the server authorized on database `db` for `application` (the
    /// `application_name` a DSN sets), since it started.
    pub fn sessions(&self, db: &str, application: &str) -> usize {
        let needle = format!("database={db} application_name={application}");
        self.log_text()
            .lines()
            .filter(|l| l.contains("connection authorized:") && l.trim_end().ends_with(&needle))
            .count()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Statements the server logged for database `db`, multi-line ones joined.
    pub fn statements(&self, db: &str) -> Vec<String> {
        let prefix = format!("db={db} LOG:");
        let mut out: Vec<String> = Vec::new();
        let mut ours = false;
        for line in self.log_text().lines() {
            if let Some(rest) = line.strip_prefix(&prefix) {
                ours = true;
                // `statement: SQL` or `execute <name>: SQL`
                match rest.split_once(": ") {
                    Some((what, sql))
                        if what.trim() == "statement" || what.trim().starts_with("execute") =>
                    {
                        out.push(sql.to_string())
                    }
                    _ => ours = false,
                }
            } else if line.starts_with('\t') && ours {
                if let Some(last) = out.last_mut() {
                    last.push('\n');
                    last.push_str(line);
                }
            } else {
                ours = false;
            }
        }
        out
    }
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str()
        .ok_or_else(|| anyhow!("{} is not UTF-8", p.display()))
}

fn chown_nobody(p: &Path) -> Result<()> {
    std::os::unix::fs::chown(p, Some(NOBODY), Some(NOGROUP))
        .with_context(|| format!("chown nobody {}", p.display()))
}

/// Removes the directories of earlier test processes that are gone.
fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if let Some(pid) = name.strip_prefix("firebreak-pg-") {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

/// Connects, waiting out "the database system is starting up": postgres creates its socket
/// before it accepts sessions, and on a loaded machine the gap is seconds.
pub async fn connect(dsn: &str) -> Result<Client> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match tokio_postgres::connect(dsn, NoTls).await {
            Ok((client, conn)) => {
                tokio::spawn(conn);
                return Ok(client);
            }
            Err(e)
                if e.code() == Some(&tokio_postgres::error::SqlState::CANNOT_CONNECT_NOW)
                    && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}
