//! The incident journal: an append-only, hash-chained event log in embedded SQLite.
//!
//! Every incident event is appended here *before* the daemon acts on it, so the
//! journal is the source of truth after a crash. Properties:
//!
//! * **Durable on return.** WAL mode with `synchronous=FULL`: a commit is fsynced
//!   before any waiter is answered.
//! * **Group commit.** One writer thread owns the write connection. Appenders send
//!   requests through a channel; the writer takes the first, drains whatever else
//!   is already queued, writes all of it in one transaction and answers everyone.
//!   Under load one fsync covers many entries.
//! * **Hash chain.** Each row carries `prev_hash` and
//!   `hash = sha256(prev_hash || "\n" || seq || "\n" || at || "\n" || incident || "\n" || kind || "\n" || body)`
//!   where `at` is RFC 3339 UTC with nanoseconds and `body` is canonical JSON
//!   (object keys sorted, no whitespace). The genesis `prev_hash` is 64 zeros.
//! * **Append-only in the database.** Triggers abort any UPDATE or DELETE, so a
//!   bug elsewhere in the process cannot rewrite history; [`Journal::verify_chain`]
//!   detects anyone who removes the triggers and does it anyway.
//! * **Anchored outside the file.** [`Journal::open_anchored`] verifies the chain and a signed
//!   checkpoint of the head ([`anchor`]) before anything is served, and keeps the checkpoint
//!   current (every N entries and when the journal closes), so truncation, re-chaining and a
//!   deleted journal are refused at start.
//! * **Owner-only.** The file (and the directories it creates) are 0600 / 0700: the journal holds
//!   every plan, target and operator name.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use crate::canonical::canonical_json;

pub mod anchor;
mod error;
mod writer;
pub use error::JournalError;
use writer::{writer_loop, Anchored, Request};
mod verify;
pub use anchor::{Anchor, Checkpoint};
pub use verify::verify;
use verify::walk;

/// `prev_hash` of the first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Schema version stored in `PRAGMA user_version`.
const SCHEMA_VERSION: i64 = 1;

/// Queued requests before `append` starts waiting for room (backpressure instead
/// of unbounded memory growth when the disk is slow).
const QUEUE_DEPTH: usize = 4096;

/// How long a connection waits for a lock held by another connection (the
/// reader during a checkpoint, or an operator's sqlite3 shell) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS journal (
    seq       INTEGER PRIMARY KEY,
    at        TEXT    NOT NULL,
    incident  TEXT    NOT NULL,
    kind      TEXT    NOT NULL,
    body      TEXT    NOT NULL,
    prev_hash TEXT    NOT NULL,
    hash      TEXT    NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS journal_incident ON journal (incident, seq);
CREATE TRIGGER IF NOT EXISTS journal_no_update BEFORE UPDATE ON journal
BEGIN
    SELECT RAISE(ABORT, 'journal is append-only: UPDATE is not allowed');
END;
CREATE TRIGGER IF NOT EXISTS journal_no_delete BEFORE DELETE ON journal
BEGIN
    SELECT RAISE(ABORT, 'journal is append-only: DELETE is not allowed');
END;
";

const SELECT_COLUMNS: &str = "SELECT seq, at, incident, kind, body, prev_hash, hash FROM journal";

/// An event to append. The journal assigns `seq`, `at` and the hashes.
#[derive(Clone, Debug)]
pub struct NewEntry {
    pub incident: String,
    pub kind: String,
    pub body: serde_json::Value,
}

/// A committed journal entry.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Entry {
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub incident: String,
    pub kind: String,
    pub body: serde_json::Value,
    /// Hex sha256 of the previous entry, or [`GENESIS_HASH`].
    pub prev_hash: String,
    /// Hex sha256 over this entry (see module docs).
    pub hash: String,
}

/// What verification established: the chain links up to `head`, and (when anchored) the
/// entry at the checkpoint's seq carries the checkpoint's hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub entries: u64,
    /// The last entry's hash, or [`GENESIS_HASH`] for an empty journal.
    pub head: String,
    pub checkpoint: Option<Checkpoint>,
}

/// Handle to the journal. Cheap to clone; all clones share one writer thread.
/// The writer stops (after finishing its current batch) when the last clone is dropped.
#[derive(Clone)]
pub struct Journal {
    inner: Arc<Inner>,
}

// Field order matters: `tx` must drop before `_writer` so the writer thread sees
// the channel close and exits before `WriterThread::drop` joins it.
struct Inner {
    path: PathBuf,
    tx: mpsc::Sender<Request>,
    reader: Mutex<Connection>,
    commits: Arc<AtomicU64>,
    _writer: WriterThread,
}

struct WriterThread(Option<JoinHandle<()>>);

impl Drop for WriterThread {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            // Joining makes shutdown deterministic (connection closed, WAL
            // checkpointed) so the same file can be reopened right away.
            if handle.join().is_err() {
                tracing::error!("journal writer thread panicked");
            }
        }
    }
}

/// An entry validated and serialized on the caller's task, so the writer thread
/// only does hashing and I/O.
struct Prepared {
    incident: String,
    kind: String,
    body_text: String,
    body: serde_json::Value,
}

impl Journal {
    /// Opens (creating if needed) the journal at `path` and starts its writer thread. No
    /// checkpoint: for tools and tests; the daemon opens with [`Journal::open_anchored`].
    pub fn open(path: &Path) -> Result<Journal, JournalError> {
        Self::start(path, None)
    }

    /// Verifies the journal against its chain and its signed checkpoint, refusing any break,
    /// then opens it and keeps the checkpoint current. A first start creates the key (0600)
    /// and signs the head it finds.
    pub fn open_anchored(
        path: &Path,
        key: &Path,
        checkpoint: &Path,
        every: u64,
    ) -> Result<(Journal, Verified), JournalError> {
        for file in [path, checkpoint] {
            if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
                create_private_dir(dir)?;
            }
        }
        let (anchor, created) = match Anchor::load(key, checkpoint, every)? {
            Some(anchor) => (anchor, false),
            None => (Anchor::create(key, checkpoint, every)?, true),
        };
        let verified = verify(path, Some(&anchor))?;
        if verified.checkpoint.is_none() && !created {
            return Err(JournalError::CheckpointMissing {
                path: checkpoint.to_path_buf(),
                key: key.to_path_buf(),
                entries: verified.entries,
            });
        }
        if created && verified.entries > 0 {
            tracing::warn!(
                entries = verified.entries,
                key = %key.display(),
                "journal had no checkpoint key: its chain verifies, but what happened to it \
                 before now cannot be proven; signing its head from now on"
            );
        }
        let signed = verified.checkpoint.as_ref().map(|c| c.seq);
        let mut anchored = Anchored {
            anchor,
            signed: signed.unwrap_or(0),
            head: (verified.entries, verified.head.clone()),
        };
        // A key without a checkpoint must never be a normal state, so a new key signs at once;
        // entries after the checkpoint (a crash) are covered from now on.
        if signed.is_none_or(|seq| seq < verified.entries) {
            anchored.after_commit(true)?;
        }
        let journal = Self::start(path, Some(anchored))?;
        Ok((journal, verified))
    }

    fn start(path: &Path, anchored: Option<Anchored>) -> Result<Journal, JournalError> {
        let path = path.to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_private_dir(dir)?;
        }
        private_file(&path)?;

        let conn = open_writer(&path)?;
        // The reader is opened after the writer so the file and schema exist.
        let reader = open_reader(&path)?;

        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let commits = Arc::new(AtomicU64::new(0));
        let handle = {
            let commits = Arc::clone(&commits);
            let writer_path = path.clone();
            std::thread::Builder::new()
                .name("journal-writer".into())
                .spawn(move || writer_loop(conn, rx, &writer_path, &commits, anchored))
                .map_err(|source| JournalError::Spawn {
                    path: path.clone(),
                    source,
                })?
        };

        Ok(Journal {
            inner: Arc::new(Inner {
                path,
                tx,
                reader: Mutex::new(reader),
                commits,
                _writer: WriterThread(Some(handle)),
            }),
        })
    }

    /// Appends one entry; resolves once the transaction containing it committed.
    ///
    /// If the future is dropped after the request was queued, the entry may
    /// still be written.
    pub async fn append(&self, entry: NewEntry) -> Result<Entry, JournalError> {
        let mut written = self.append_all(vec![entry]).await?;
        written.pop().ok_or_else(|| JournalError::WriterGone {
            path: self.inner.path.clone(),
        })
    }

    /// Appends all entries atomically (one transaction, consecutive seqs, in order).
    pub async fn append_all(&self, entries: Vec<NewEntry>) -> Result<Vec<Entry>, JournalError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let entries = entries
            .into_iter()
            .map(prepare)
            .collect::<Result<Vec<_>, _>>()?;
        self.request(entries, false).await
    }

    /// Signs the current head now (the daemon calls it when it stops). Without an anchor, a
    /// no-op.
    pub async fn checkpoint(&self) -> Result<(), JournalError> {
        self.request(Vec::new(), true).await.map(drop)
    }

    async fn request(
        &self,
        entries: Vec<Prepared>,
        checkpoint: bool,
    ) -> Result<Vec<Entry>, JournalError> {
        let (reply, rx) = oneshot::channel();
        let gone = || JournalError::WriterGone {
            path: self.inner.path.clone(),
        };
        self.inner
            .tx
            .send(Request {
                entries,
                checkpoint,
                reply,
            })
            .await
            .map_err(|_| gone())?;
        // A dropped reply sender means the writer died mid-batch.
        rx.await.map_err(|_| gone())?
    }

    /// All entries in seq order.
    pub fn entries(&self) -> Result<Vec<Entry>, JournalError> {
        self.query(&format!("{SELECT_COLUMNS} ORDER BY seq"), &[])
    }

    /// Entries of one incident in seq order.
    pub fn entries_for(&self, incident: &str) -> Result<Vec<Entry>, JournalError> {
        self.query(
            &format!("{SELECT_COLUMNS} WHERE incident = ?1 ORDER BY seq"),
            &[&incident],
        )
    }

    /// Recomputes every hash and link from the stored text. Returns the number of
    /// entries checked, or [`JournalError::ChainBroken`] at the first bad seq.
    pub fn verify_chain(&self) -> Result<u64, JournalError> {
        let reader = self.reader()?;
        walk(&reader, &self.inner.path, None).map(|walked| walked.entries)
    }

    /// Transactions committed by the writer since `open`.
    pub fn commits(&self) -> u64 {
        self.inner.commits.load(Ordering::Relaxed)
    }

    fn reader(&self) -> Result<std::sync::MutexGuard<'_, Connection>, JournalError> {
        self.inner.reader.lock().map_err(|_| JournalError::Poisoned)
    }

    fn query(
        &self,
        sql: &str,
        params: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<Entry>, JournalError> {
        let reader = self.reader()?;
        let read_err = |source| JournalError::Read {
            path: self.inner.path.clone(),
            source,
        };
        let mut stmt = reader.prepare_cached(sql).map_err(read_err)?;
        let raws = stmt
            .query_map(params, RawRow::from_row)
            .map_err(read_err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(read_err)?;
        raws.into_iter().map(RawRow::into_entry).collect()
    }
}

/// Creates `dir` (and missing parents) as 0700.
fn create_private_dir(dir: &Path) -> Result<(), JournalError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| JournalError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })
}

/// The journal file (and SQLite's -wal and -shm beside it, which take its mode) is 0600: a
/// new one is created so, an existing one readable by others is narrowed.
fn private_file(path: &Path) -> Result<(), JournalError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let not_writable = |source: std::io::Error| JournalError::CreateDir {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(not_writable(e)),
    }
    for suffix in ["", "-wal", "-shm"] {
        let file = PathBuf::from(format!("{}{suffix}", path.display()));
        let Ok(meta) = std::fs::metadata(&file) else {
            continue;
        };
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
                .map_err(not_writable)?;
            tracing::warn!(path = %file.display(), mode = format!("{:o}", mode & 0o777), "journal file was readable by others; narrowed to 0600");
        }
    }
    Ok(())
}

fn prepare(entry: NewEntry) -> Result<Prepared, JournalError> {
    // The hash pre-image separates fields with "\n"; a newline inside incident or
    // kind would let bytes move between the two fields without changing the hash.
    for (field, value) in [("incident", &entry.incident), ("kind", &entry.kind)] {
        if value.contains('\n') {
            return Err(JournalError::InvalidEntry {
                reason: format!("{field} {value:?} contains a newline"),
            });
        }
    }
    let body_text = canonical_json(&entry.body);
    // Return exactly what a later read yields (key order, float round-trip), so
    // an Entry from append equals the same Entry from entries().
    let body = serde_json::from_str(&body_text).map_err(|e| JournalError::InvalidEntry {
        reason: format!("body does not round-trip through JSON: {e}"),
    })?;
    Ok(Prepared {
        incident: entry.incident,
        kind: entry.kind,
        body_text,
        body,
    })
}

fn is_not_writable(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::ReadOnly | ErrorCode::CannotOpen | ErrorCode::PermissionDenied)
    )
}

fn open_writer(path: &Path) -> Result<Connection, JournalError> {
    let classify = |source: rusqlite::Error| {
        if is_not_writable(&source) {
            JournalError::NotWritable {
                path: path.to_path_buf(),
                source,
            }
        } else {
            JournalError::Open {
                path: path.to_path_buf(),
                source,
            }
        }
    };
    let mut conn = Connection::open(path).map_err(classify)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(classify)?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(classify)?;
    if !mode.eq_ignore_ascii_case("wal") {
        // Still durable with synchronous=FULL, just slower and readers block writers.
        tracing::warn!(path = %path.display(), mode, "journal could not switch to WAL mode");
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(classify)?;

    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(classify)?;
    if version > SCHEMA_VERSION {
        return Err(JournalError::NewerSchema {
            path: path.to_path_buf(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(classify)?;
    tx.execute_batch(SCHEMA).map_err(classify)?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(classify)?;
    tx.commit().map_err(classify)?;
    Ok(conn)
}

fn open_reader(path: &Path) -> Result<Connection, JournalError> {
    let err = |source| JournalError::Open {
        path: path.to_path_buf(),
        source,
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
    Ok(conn)
}

fn format_at(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

fn chain_hash(
    prev_hash: &str,
    seq: u64,
    at: &str,
    incident: &str,
    kind: &str,
    body: &str,
) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(b"\n");
    h.update(seq.to_string().as_bytes());
    h.update(b"\n");
    h.update(at.as_bytes());
    h.update(b"\n");
    h.update(incident.as_bytes());
    h.update(b"\n");
    h.update(kind.as_bytes());
    h.update(b"\n");
    h.update(body.as_bytes());
    hex::encode(h.finalize())
}

/// A row exactly as stored, before parsing; verify_chain hashes these bytes.
struct RawRow {
    seq: u64,
    at: String,
    incident: String,
    kind: String,
    body: String,
    prev_hash: String,
    hash: String,
}

impl RawRow {
    fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawRow> {
        Ok(RawRow {
            seq: row.get(0)?,
            at: row.get(1)?,
            incident: row.get(2)?,
            kind: row.get(3)?,
            body: row.get(4)?,
            prev_hash: row.get(5)?,
            hash: row.get(6)?,
        })
    }

    fn into_entry(self) -> Result<Entry, JournalError> {
        let seq = self.seq;
        let at = DateTime::parse_from_rfc3339(&self.at)
            .map_err(|e| JournalError::Corrupt {
                seq,
                reason: format!("timestamp {:?}: {e}", self.at),
            })?
            .with_timezone(&Utc);
        let body = serde_json::from_str(&self.body).map_err(|e| JournalError::Corrupt {
            seq,
            reason: format!("body is not JSON: {e}"),
        })?;
        Ok(Entry {
            seq,
            at,
            incident: self.incident,
            kind: self.kind,
            body,
            prev_hash: self.prev_hash,
            hash: self.hash,
        })
    }
}

#[cfg(test)]
mod tests;
