//! The journal's head, signed and kept outside the journal file (docs/ARCHITECTURE.md,
//! "Journal integrity").
//!
//! The hash chain proves that the entries *in* the file link up; it cannot tell a file cut
//! short, or one rewritten and re-chained, from the real one. The checkpoint can: it names the
//! head (`seq`, `hash`) with an HMAC-SHA256 under a key the journal file does not hold. At open,
//! the entry at the checkpoint's `seq` must exist and carry the checkpoint's `hash`.
//!
//! The key is written once (0600) and must stay; a checkpoint without its key, a key whose
//! checkpoint vanished, and a journal gone while its checkpoint stays are all refusals.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chrono::{SecondsFormat, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::JournalError;

/// Fewest key bytes accepted: the generated key has 32 random bytes (64 hex characters).
const MIN_KEY_BYTES: usize = 32;

/// Domain separation: a MAC over a checkpoint can never be replayed as another kind of MAC.
const DOMAIN: &str = "firebreak-journal-checkpoint-v1";

/// Where the checkpoint is written, under which key, and how often.
#[derive(Clone)]
pub struct Anchor {
    /// Keyed once at open; cloned per MAC.
    keyed: Hmac<Sha256>,
    key_path: PathBuf,
    path: PathBuf,
    every: u64,
}

impl std::fmt::Debug for Anchor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key itself.
        f.debug_struct("Anchor")
            .field("key_path", &self.key_path)
            .field("path", &self.path)
            .field("every", &self.every)
            .finish()
    }
}

/// The signed head: what `journal.checkpoint` holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Checkpoint {
    /// The last entry covered; 0 for an empty journal.
    pub seq: u64,
    /// That entry's hash (the genesis hash for seq 0).
    pub hash: String,
    /// When it was signed (RFC 3339 UTC).
    pub at: String,
    /// Hex HMAC-SHA256 over the domain, seq, hash and at.
    pub mac: String,
}

impl Anchor {
    /// The anchor whose key is at `key_path`; `None` when neither the key nor a checkpoint at
    /// `path` exists yet (never anchored). `every`: entries between checkpoints (at least 1);
    /// a checkpoint is also written when the journal closes.
    pub fn load(key_path: &Path, path: &Path, every: u64) -> Result<Option<Anchor>, JournalError> {
        let key_error = |reason: String| JournalError::Key {
            path: key_path.to_path_buf(),
            reason,
        };
        let bytes = match std::fs::read(key_path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if path.exists() {
                    return Err(key_error(format!(
                        "it is missing while the checkpoint {} exists, so the checkpoint cannot be \
                         checked; restore the key (it is not recreated: a new key would accept any \
                         history)",
                        path.display()
                    )));
                }
                return Ok(None);
            }
            Err(e) => return Err(key_error(e.to_string())),
        };
        let mode = std::fs::metadata(key_path)
            .map_err(|e| key_error(e.to_string()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(key_error(format!(
                "it is readable or writable by group or others (mode {:o}); run `chmod 600 {}`",
                mode & 0o777,
                key_path.display()
            )));
        }
        let key = String::from_utf8_lossy(&bytes).trim().as_bytes().to_vec();
        if key.len() < MIN_KEY_BYTES {
            return Err(key_error(format!(
                "it has {} bytes, fewer than {MIN_KEY_BYTES}",
                key.len()
            )));
        }
        Self::keyed(&key, key_path, path, every).map(Some)
    }

    /// A new random key at `key_path` (0600, never over an existing file).
    pub fn create(key_path: &Path, path: &Path, every: u64) -> Result<Anchor, JournalError> {
        let key = hex::encode(rand::random::<[u8; 32]>());
        write_private(key_path, key.as_bytes(), true).map_err(|e| JournalError::Key {
            path: key_path.to_path_buf(),
            reason: format!("cannot create it: {e}"),
        })?;
        tracing::info!(key = %key_path.display(), "created the journal checkpoint key; keep it apart from the data dir's backups");
        Self::keyed(key.as_bytes(), key_path, path, every)
    }

    fn keyed(key: &[u8], key_path: &Path, path: &Path, every: u64) -> Result<Anchor, JournalError> {
        let keyed = Hmac::<Sha256>::new_from_slice(key).map_err(|e| JournalError::Key {
            path: key_path.to_path_buf(),
            reason: format!("HMAC refuses it: {e}"),
        })?;
        Ok(Anchor {
            keyed,
            key_path: key_path.to_path_buf(),
            path: path.to_path_buf(),
            every: every.max(1),
        })
    }

    /// Entries between checkpoints.
    pub fn every(&self) -> u64 {
        self.every
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn mac(&self, seq: u64, hash: &str, at: &str) -> Hmac<Sha256> {
        let mut mac = self.keyed.clone();
        mac.update(format!("{DOMAIN}\n{seq}\n{hash}\n{at}").as_bytes());
        mac
    }

    /// The checkpoint on disk, its MAC checked; `None` when there is none.
    pub fn read(&self) -> Result<Option<Checkpoint>, JournalError> {
        let invalid = |reason: String| JournalError::CheckpointInvalid {
            path: self.path.clone(),
            reason,
        };
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(invalid(e.to_string())),
        };
        let checkpoint: Checkpoint = serde_json::from_str(&text)
            .map_err(|e| invalid(format!("it is not a checkpoint: {e}")))?;
        let mac = hex::decode(&checkpoint.mac).map_err(|_| invalid("its mac is not hex".into()))?;
        self.mac(checkpoint.seq, &checkpoint.hash, &checkpoint.at)
            .verify_slice(&mac)
            .map_err(|_| {
                invalid(format!(
                    "its signature does not verify under the key {}: it was written by hand or \
                     under another key",
                    self.key_path.display()
                ))
            })?;
        Ok(Some(checkpoint))
    }

    /// Signs `(seq, hash)` and replaces the checkpoint atomically (temp file, fsync, rename,
    /// fsync of the directory), so a crash leaves the old checkpoint or the new one.
    pub fn write(&self, seq: u64, hash: &str) -> std::io::Result<Checkpoint> {
        let at = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
        let mac = hex::encode(self.mac(seq, hash, &at).finalize().into_bytes());
        let checkpoint = Checkpoint {
            seq,
            hash: hash.to_string(),
            at,
            mac,
        };
        let text = serde_json::to_vec(&checkpoint).map_err(std::io::Error::other)?;
        let tmp = self.path.with_extension("checkpoint.tmp");
        // A temp file left by a crash is simply replaced.
        let _ = std::fs::remove_file(&tmp);
        write_private(&tmp, &text, true)?;
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(checkpoint)
    }
}

/// Creates `path` with mode 0600 (never over an existing file) and writes `bytes`.
fn write_private(path: &Path, bytes: &[u8], sync: bool) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    if sync {
        file.sync_all()?;
    }
    Ok(())
}
