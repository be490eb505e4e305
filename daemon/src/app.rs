//! Assembling an engine from the config: journal, envelopes, runbooks, control planes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use firebreak_containment::engine::{Engine, EngineConfig, Fault, Parts};
use firebreak_containment::journal::{self, Anchor, Journal, JournalError, Verified};
use firebreak_containment::metrics::Metrics;
use firebreak_containment::plane::Kinds;
use firebreak_containment::runbook::Runbooks;
use firebreak_containment::EnvelopeStore;
use firebreak_delegation::{Feed, FeedAuth};
use firebreak_tools::{GatewayConfig, Policy};

use crate::config::Config;
use crate::planes::{self, Mode};

pub struct Paths {
    pub data: PathBuf,
    pub envelopes: PathBuf,
    pub journal: PathBuf,
    /// The journal's signed head, and the key that signs it.
    pub checkpoint: PathBuf,
    pub checkpoint_key: PathBuf,
    pub checkpoint_every: u64,
    pub token: PathBuf,
    /// Held by whoever acts on this data dir: the daemon, or `--offline`.
    pub lock: PathBuf,
}

impl Paths {
    pub fn new(config: &Config, data_dir_flag: Option<&Path>) -> anyhow::Result<Paths> {
        let data = config.data_dir(data_dir_flag)?;
        Ok(Paths {
            envelopes: config
                .envelopes
                .clone()
                .unwrap_or_else(|| data.join("envelopes")),
            journal: data.join("journal.db"),
            checkpoint: config
                .journal
                .checkpoint
                .clone()
                .unwrap_or_else(|| data.join("journal.checkpoint")),
            checkpoint_key: config
                .journal
                .checkpoint_key
                .clone()
                .unwrap_or_else(|| data.join("journal.key")),
            checkpoint_every: config.journal.checkpoint_every.get(),
            token: config
                .api
                .token_file
                .clone()
                .unwrap_or_else(|| data.join("api-token")),
            lock: data.join("lock"),
            data,
        })
    }
}

/// The exclusive hold on a data dir: one process acts on a journal at a time. Released when
/// dropped (or when the process dies: it is an OS file lock).
pub struct DataDirLock {
    _file: std::fs::File,
}

/// Creates the data dir owner-only (0700), and narrows an existing one: it holds the journal,
/// the API token and the checkpoint key.
pub fn private_data_dir(paths: &Paths) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let dir = &paths.data;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create data dir {}", dir.display()))?;
    let mode = std::fs::metadata(dir)?.permissions().mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).with_context(
            || {
                format!(
                    "data dir {} is open to others; run `chmod 700` on it",
                    dir.display()
                )
            },
        )?;
        tracing::warn!(dir = %dir.display(), mode = format!("{:o}", mode & 0o777), "data dir was open to others; narrowed to 0700");
    }
    Ok(())
}

/// Takes the data dir's lock, or says who holds it.
pub fn lock(paths: &Paths, who: &str) -> anyhow::Result<DataDirLock> {
    private_data_dir(paths)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&paths.lock)
        .with_context(|| format!("cannot open {}", paths.lock.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(DataDirLock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "{who}: another firebreak holds {} (a running daemon acts on this data dir); \
             send the command to it (without --offline), or stop it first",
            paths.lock.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", paths.lock.display()))
        }
    }
}

pub fn runbooks(config: &Config, kinds: &Kinds) -> anyhow::Result<Runbooks> {
    Ok(match &config.runbooks {
        Some(dir) => Runbooks::load_dir(dir, kinds)?,
        None => Runbooks::embedded()?,
    })
}

/// An engine and, when configured, the MCP gateway sharing the tools plane's policy and the
/// policy feed the delegation plane writes.
pub struct Built {
    pub engine: Engine,
    pub gateway: Option<(GatewayConfig, Arc<Policy>)>,
    pub feed: Option<(Feed, FeedAuth)>,
    /// Planes configured but left out because only the running daemon enforces them.
    pub daemon_only: Vec<planes::LeftOut>,
}

/// Opens the journal and everything else; folds the journal into the incident view.
pub async fn engine(
    config: &Config,
    paths: &Paths,
    install: bool,
    mode: Mode,
) -> anyhow::Result<Built> {
    private_data_dir(paths)?;
    let (journal, verified) = Journal::open_anchored(
        &paths.journal,
        &paths.checkpoint_key,
        &paths.checkpoint,
        paths.checkpoint_every,
    )
    .map_err(refused)?;
    tracing::info!(
        entries = verified.entries,
        head = verified.head,
        checkpoint = verified
            .checkpoint
            .map(|c| format!("seq {} signed {}", c.seq, c.at)),
        "journal verified"
    );
    let envelopes = EnvelopeStore::load_dir(&paths.envelopes)?;
    let planes::Built {
        planes,
        gateway,
        feed,
        daemon_only,
    } = planes::build(config, &envelopes, install, mode).await?;
    let fault = match std::env::var("FIREBREAK_FAULT") {
        Ok(name) => Some(Fault::parse(&name).with_context(|| {
            format!("FIREBREAK_FAULT={name:?} is not a known fault (crash-after-intent, crash-before-ack)")
        })?),
        Err(_) => None,
    };
    let runbooks = runbooks(config, planes.kinds())?;
    let engine = Engine::open(Parts {
        journal,
        envelopes,
        runbooks,
        planes,
        metrics: Metrics::new()?,
        config: EngineConfig {
            budget: config.budget,
            fault,
            verify_poll: Duration::from_millis(250),
            max_planning: config.api.max_planning.get(),
            ..EngineConfig::default()
        },
    })?;
    if let Some((_, policy)) = &gateway {
        policy.attach_engine(engine.clone());
    }
    tracing::info!(
        envelopes = engine.envelopes().len(),
        dir = %paths.envelopes.display(),
        "envelopes loaded"
    );
    Ok(Built {
        engine,
        gateway,
        feed,
        daemon_only,
    })
}

/// The journal cannot be proven (tampered, truncated, deleted, or its checkpoint or key gone):
/// nothing is served, and the CLI exits 4.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct JournalRefused(pub JournalError);

/// Tags a journal error the CLI reports with exit 4.
pub fn refused(e: JournalError) -> anyhow::Error {
    if e.is_unprovable() {
        JournalRefused(e).into()
    } else {
        e.into()
    }
}

/// `journal verify`: the chain and the checkpoint, read-only. A journal with entries but no
/// anchor (written before checkpoints existed, or its key and checkpoint both removed) is not
/// proven.
pub fn verify_journal(paths: &Paths) -> anyhow::Result<Verified> {
    let anchor = Anchor::load(
        &paths.checkpoint_key,
        &paths.checkpoint,
        paths.checkpoint_every,
    )
    .map_err(refused)?;
    let verified = journal::verify(&paths.journal, anchor.as_ref()).map_err(refused)?;
    if anchor.is_some() && verified.checkpoint.is_none() {
        return Err(JournalRefused(JournalError::CheckpointMissing {
            path: paths.checkpoint.clone(),
            key: paths.checkpoint_key.clone(),
            entries: verified.entries,
        })
        .into());
    }
    if anchor.is_none() && verified.entries > 0 {
        return Err(JournalRefused(JournalError::Key {
            path: paths.checkpoint_key.clone(),
            reason: format!(
                "it does not exist, so the {} entries' chain verifies but truncation and \
                 re-chaining cannot be ruled out; the next `serve` creates a key and signs the \
                 head from then on",
                verified.entries
            ),
        })
        .into());
    }
    Ok(verified)
}

/// The shortest API token accepted: the one `serve` generates is 64 hex characters.
pub const MIN_TOKEN_BYTES: usize = 32;

/// Reads the API token, creating it (0600) on first start. Never logs the token itself. A token
/// file others can read, or a token short enough to guess, is refused: it approves plans.
pub fn api_token(path: &Path) -> anyhow::Result<String> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let mode = std::fs::metadata(path)?.permissions().mode();
            if mode & 0o077 != 0 {
                anyhow::bail!(
                    "API token file {} is readable or writable by group or others (mode {:o}); \
                     run `chmod 600 {}`",
                    path.display(),
                    mode & 0o777,
                    path.display()
                );
            }
            let token = text.trim();
            if token.len() < MIN_TOKEN_BYTES {
                anyhow::bail!(
                    "API token in {} has {} bytes, fewer than {MIN_TOKEN_BYTES}; delete the file \
                     to get a new one, or write a longer random token",
                    path.display(),
                    token.len()
                );
            }
            return Ok(token.to_string());
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read API token {}", path.display()))
        }
    }
    let token = hex::encode(rand::random::<[u8; 32]>());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    write_private(path, &token)
        .with_context(|| format!("cannot write API token {}", path.display()))?;
    tracing::info!(path = %path.display(), "created an API token; send it as `Authorization: Bearer <token>`");
    Ok(token)
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_generated_token_is_private_and_read_back() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("api-token");
        let token = api_token(&path).expect("created");
        assert_eq!(token.len(), 64);
        let mode = std::fs::metadata(&path).expect("file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(api_token(&path).expect("read back"), token);
    }

    #[test]
    fn a_token_others_can_read_or_short_enough_to_guess_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("api-token");
        write_private(&path, "x").expect("write");
        let err = api_token(&path).expect_err("1 byte").to_string();
        assert!(err.contains("1 bytes, fewer than 32"), "{err}");
        std::fs::write(&path, "a".repeat(64)).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = api_token(&path).expect_err("world-readable").to_string();
        assert!(
            err.contains("mode 644") && err.contains("chmod 600"),
            "{err}"
        );
    }
}
