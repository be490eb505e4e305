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

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use crate::canonical::canonical_json;

/// `prev_hash` of the first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Schema version stored in `PRAGMA user_version`.
const SCHEMA_VERSION: i64 = 1;

/// Soft cap on entries per transaction: bounds transaction size and the latency
/// of the waiters at the front of a large batch. A single `append_all` larger
/// than this is still written whole, because it must be atomic.
const MAX_BATCH_ENTRIES: usize = 1024;

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

#[derive(thiserror::Error, Debug)]
pub enum JournalError {
    #[error("cannot create journal directory {path}: {source}; create it or fix the data dir permissions")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("journal at {path} is not writable ({source}): check the data dir permissions and free space")]
    NotWritable {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },

    #[error("cannot open journal at {path} ({source}): check that the path is a firebreak journal (SQLite) and not corrupted; restore from backup or point the data dir elsewhere")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },

    #[error("journal at {path} has schema version {found}, this build supports up to {supported}: upgrade firebreak or use a different data dir")]
    NewerSchema {
        path: PathBuf,
        found: i64,
        supported: i64,
    },

    #[error("cannot start the journal writer thread for {path} ({source}): the host is out of threads or memory; free resources and restart")]
    Spawn {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("invalid journal entry: {reason}; fix the caller")]
    InvalidEntry { reason: String },

    /// The batch transaction failed; none of its entries were recorded. Shared
    /// by every waiter of the batch, hence the `Arc`.
    #[error("journal write to {path} failed, the event was NOT recorded ({source}): check disk space and permissions, then retry")]
    Write {
        path: PathBuf,
        #[source]
        source: Arc<rusqlite::Error>,
    },

    #[error("journal writer for {path} has stopped, the event was NOT recorded: see earlier errors in the log and restart the daemon")]
    WriterGone { path: PathBuf },

    #[error("cannot read journal at {path} ({source}): check the file permissions and that no other process holds a write lock for long")]
    Read {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },

    #[error("journal entry seq {seq} is unreadable: {reason}; the file was altered outside firebreak, preserve it for forensics")]
    Corrupt { seq: u64, reason: String },

    #[error("journal chain broken at seq {seq}: {reason}; the journal was altered outside firebreak, preserve the file for forensics and do not trust entries from seq {seq} on")]
    ChainBroken { seq: u64, reason: String },

    #[error("journal reader lock poisoned by an earlier panic: restart the daemon")]
    Poisoned,
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

struct Request {
    entries: Vec<Prepared>,
    reply: oneshot::Sender<Result<Vec<Entry>, JournalError>>,
}

impl Journal {
    /// Opens (creating if needed) the journal at `path` and starts its writer thread.
    pub fn open(path: &Path) -> Result<Journal, JournalError> {
        let path = path.to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| JournalError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }

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
                .spawn(move || writer_loop(conn, rx, &writer_path, &commits))
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
        let (reply, rx) = oneshot::channel();
        let gone = || JournalError::WriterGone {
            path: self.inner.path.clone(),
        };
        self.inner
            .tx
            .send(Request { entries, reply })
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
        let read_err = |source| JournalError::Read {
            path: self.inner.path.clone(),
            source,
        };
        let mut stmt = reader
            .prepare(&format!("{SELECT_COLUMNS} ORDER BY seq"))
            .map_err(read_err)?;
        let mut rows = stmt.query([]).map_err(read_err)?;

        let mut expected_seq: u64 = 1;
        let mut prev_hash = GENESIS_HASH.to_string();
        while let Some(row) = rows.next().map_err(read_err)? {
            let raw = RawRow::from_row(row).map_err(read_err)?;
            if raw.seq != expected_seq {
                return Err(JournalError::ChainBroken {
                    seq: expected_seq,
                    reason: format!(
                        "seq {expected_seq} is missing (next stored seq is {})",
                        raw.seq
                    ),
                });
            }
            if raw.prev_hash != prev_hash {
                return Err(JournalError::ChainBroken {
                    seq: raw.seq,
                    reason: "prev_hash does not match the hash of the previous entry".into(),
                });
            }
            let computed = chain_hash(
                &raw.prev_hash,
                raw.seq,
                &raw.at,
                &raw.incident,
                &raw.kind,
                &raw.body,
            );
            if computed != raw.hash {
                return Err(JournalError::ChainBroken {
                    seq: raw.seq,
                    reason: "stored hash does not match the entry's contents".into(),
                });
            }
            prev_hash = raw.hash;
            expected_seq += 1;
        }
        Ok(expected_seq - 1)
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

fn writer_loop(
    mut conn: Connection,
    mut rx: mpsc::Receiver<Request>,
    path: &Path,
    commits: &AtomicU64,
) {
    // Blocks for the first request, then takes whatever else is already queued.
    while let Some(first) = rx.blocking_recv() {
        let mut queued = first.entries.len();
        let mut batch = vec![first];
        while queued < MAX_BATCH_ENTRIES {
            match rx.try_recv() {
                Ok(req) => {
                    queued += req.entries.len();
                    batch.push(req);
                }
                Err(_) => break,
            }
        }

        match write_batch(&mut conn, &batch) {
            Ok(mut written) => {
                commits.fetch_add(1, Ordering::Relaxed);
                // write_batch returns one Vec per request, in request order.
                for req in batch.into_iter().rev() {
                    let entries = written.pop().unwrap_or_default();
                    // A closed receiver means the appender gave up; the entry is
                    // committed regardless, nothing to do.
                    let _ = req.reply.send(Ok(entries));
                }
            }
            Err(source) => {
                tracing::error!(
                    path = %path.display(),
                    error = %source,
                    entries = queued,
                    "journal batch failed; rolled back"
                );
                let source = Arc::new(source);
                for req in batch {
                    let _ = req.reply.send(Err(JournalError::Write {
                        path: path.to_path_buf(),
                        source: Arc::clone(&source),
                    }));
                }
            }
        }
    }
}

/// Writes every request of the batch in one transaction. On error the
/// transaction is rolled back when `tx` drops, so nothing of the batch is visible.
fn write_batch(
    conn: &mut Connection,
    batch: &[Request],
) -> Result<Vec<Vec<Entry>>, rusqlite::Error> {
    // IMMEDIATE takes the write lock up front; the tail is re-read inside the
    // transaction instead of cached, so a failed batch or another writer on the
    // same file can never fork the chain (a duplicate seq hits the primary key).
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let tail: Option<(u64, String)> = tx
        .query_row(
            "SELECT seq, hash FROM journal ORDER BY seq DESC LIMIT 1",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    let (mut seq, mut prev_hash) = tail.unwrap_or_else(|| (0, GENESIS_HASH.to_string()));

    let mut out = Vec::with_capacity(batch.len());
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO journal (seq, at, incident, kind, body, prev_hash, hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for req in batch {
            let mut written = Vec::with_capacity(req.entries.len());
            for p in &req.entries {
                seq += 1;
                let at = Utc::now();
                let at_text = format_at(&at);
                let hash = chain_hash(
                    &prev_hash,
                    seq,
                    &at_text,
                    &p.incident,
                    &p.kind,
                    &p.body_text,
                );
                insert.execute(params![
                    seq,
                    at_text,
                    p.incident,
                    p.kind,
                    p.body_text,
                    prev_hash,
                    hash
                ])?;
                written.push(Entry {
                    seq,
                    at,
                    incident: p.incident.clone(),
                    kind: p.kind.clone(),
                    body: p.body.clone(),
                    prev_hash: std::mem::replace(&mut prev_hash, hash.clone()),
                    hash,
                });
            }
            out.push(written);
        }
    }
    tx.commit()?;
    Ok(out)
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
mod tests {
    use super::*;
    use serde_json::json;

    fn new(incident: &str, kind: &str, body: serde_json::Value) -> NewEntry {
        NewEntry {
            incident: incident.into(),
            kind: kind.into(),
            body,
        }
    }

    fn temp_journal() -> (tempfile::TempDir, PathBuf, Journal) {
        let dir = tempfile::tempdir().unwrap();
        // A nested path also exercises parent-directory creation.
        let path = dir.path().join("data").join("journal.db");
        let journal = Journal::open(&path).unwrap();
        (dir, path, journal)
    }

    #[tokio::test]
    async fn append_and_read_back() {
        let (_dir, _path, j) = temp_journal();
        let a = j
            .append(new(
                "inc-1",
                "alert_received",
                json!({"b": 2, "a": [1, {"z": null, "y": 1.5}]}),
            ))
            .await
            .unwrap();
        let b = j
            .append(new("inc-1", "planned", json!({"steps": 3})))
            .await
            .unwrap();

        assert_eq!(a.seq, 1);
        assert_eq!(a.prev_hash, GENESIS_HASH);
        assert_eq!(b.seq, 2);
        assert_eq!(b.prev_hash, a.hash);
        assert_eq!(a.hash.len(), 64);
        assert_eq!(j.entries().unwrap(), vec![a.clone(), b]);
        assert_eq!(
            canonical_json(&a.body),
            r#"{"a":[1,{"y":1.5,"z":null}],"b":2}"#
        );
        assert_eq!(j.verify_chain().unwrap(), 2);
    }

    #[tokio::test]
    async fn reopen_continues_seq_and_chain() {
        let (_dir, path, j) = temp_journal();
        j.append(new("inc-1", "a", json!(1))).await.unwrap();
        let last = j.append(new("inc-1", "b", json!(2))).await.unwrap();
        drop(j);

        let j = Journal::open(&path).unwrap();
        assert_eq!(j.commits(), 0);
        let next = j.append(new("inc-2", "c", json!(3))).await.unwrap();
        assert_eq!(next.seq, 3);
        assert_eq!(next.prev_hash, last.hash);
        assert_eq!(j.verify_chain().unwrap(), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_appends_are_group_committed() {
        const N: usize = 200;
        let (_dir, _path, j) = temp_journal();
        let barrier = Arc::new(tokio::sync::Barrier::new(N));
        let tasks: Vec<_> = (0..N)
            .map(|i| {
                let j = j.clone();
                let barrier = Arc::clone(&barrier);
                tokio::spawn(async move {
                    barrier.wait().await;
                    j.append(new(
                        &format!("inc-{}", i % 7),
                        "alert_received",
                        json!({ "i": i }),
                    ))
                    .await
                })
            })
            .collect();
        let mut seqs = Vec::new();
        for t in tasks {
            seqs.push(t.await.unwrap().unwrap().seq);
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=N as u64).collect::<Vec<_>>());
        assert_eq!(j.verify_chain().unwrap(), N as u64);
        assert!(j.commits() < N as u64, "commits = {}", j.commits());
    }

    #[tokio::test]
    async fn tampering_breaks_chain_at_that_seq() {
        let (_dir, path, j) = temp_journal();
        for i in 0..5 {
            j.append(new("inc-1", "event", json!({ "i": i })))
                .await
                .unwrap();
        }
        assert_eq!(j.verify_chain().unwrap(), 5);

        let raw = Connection::open(&path).unwrap();
        raw.execute_batch(
            "DROP TRIGGER journal_no_update;
             UPDATE journal SET body = '{\"i\":99}' WHERE seq = 3;",
        )
        .unwrap();

        match j.verify_chain() {
            Err(JournalError::ChainBroken { seq, .. }) => assert_eq!(seq, 3),
            other => panic!("expected ChainBroken at seq 3, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn update_and_delete_are_rejected_by_triggers() {
        let (_dir, path, j) = temp_journal();
        let e = j.append(new("inc-1", "event", json!({}))).await.unwrap();

        let raw = Connection::open(&path).unwrap();
        let update = raw.execute("UPDATE journal SET kind = 'forged' WHERE seq = 1", []);
        let delete = raw.execute("DELETE FROM journal WHERE seq = 1", []);
        assert!(update.unwrap_err().to_string().contains("append-only"));
        assert!(delete.unwrap_err().to_string().contains("append-only"));
        assert_eq!(j.entries().unwrap(), vec![e]);
    }

    #[tokio::test]
    async fn append_all_is_atomic() {
        let (_dir, path, j) = temp_journal();
        j.append(new("inc-1", "first", json!(0))).await.unwrap();
        let before = j.commits();

        // Success: consecutive seqs, one transaction.
        let batch = j
            .append_all(vec![
                new("inc-1", "applying", json!(1)),
                new("inc-1", "applied", json!(2)),
                new("inc-1", "verified", json!(3)),
            ])
            .await
            .unwrap();
        assert_eq!(
            batch.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![2, 3, 4]
        );
        assert_eq!(j.commits(), before + 1);

        // Failure in the middle of a batch: nothing of it is visible.
        let raw = Connection::open(&path).unwrap();
        raw.execute_batch(
            "CREATE TRIGGER poison BEFORE INSERT ON journal WHEN NEW.kind = 'poison'
             BEGIN SELECT RAISE(ABORT, 'poisoned'); END;",
        )
        .unwrap();
        let err = j
            .append_all(vec![
                new("inc-2", "ok", json!(1)),
                new("inc-2", "poison", json!(2)),
                new("inc-2", "ok", json!(3)),
            ])
            .await
            .unwrap_err();
        assert!(matches!(err, JournalError::Write { .. }), "{err:?}");
        assert!(err.to_string().contains("NOT recorded"));
        assert!(j.entries_for("inc-2").unwrap().is_empty());
        assert_eq!(j.entries().unwrap().len(), 4);

        // The writer survives and the chain continues without a gap.
        let next = j.append(new("inc-2", "ok", json!(4))).await.unwrap();
        assert_eq!(next.seq, 5);
        assert_eq!(j.verify_chain().unwrap(), 5);
    }

    #[tokio::test]
    async fn entries_for_filters_by_incident() {
        let (_dir, _path, j) = temp_journal();
        for (inc, kind) in [("a", "1"), ("b", "2"), ("a", "3"), ("c", "4"), ("a", "5")] {
            j.append(new(inc, kind, json!(null))).await.unwrap();
        }
        let a = j.entries_for("a").unwrap();
        assert_eq!(a.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 3, 5]);
        assert!(a.iter().all(|e| e.incident == "a"));
        assert_eq!(j.entries_for("b").unwrap().len(), 1);
        assert!(j.entries_for("missing").unwrap().is_empty());
    }

    #[tokio::test]
    async fn newline_in_incident_or_kind_is_rejected() {
        let (_dir, _path, j) = temp_journal();
        let err = j
            .append(new("inc\n1", "event", json!(1)))
            .await
            .unwrap_err();
        assert!(matches!(err, JournalError::InvalidEntry { .. }), "{err:?}");
        let err = j
            .append(new("inc-1", "ev\nent", json!(1)))
            .await
            .unwrap_err();
        assert!(matches!(err, JournalError::InvalidEntry { .. }), "{err:?}");
        assert!(j.entries().unwrap().is_empty());
    }

    /// A journal whose "writer" is `fake`, to simulate a dead writer thread.
    fn journal_with_fake_writer(
        dir: &tempfile::TempDir,
        fake: impl FnOnce(mpsc::Receiver<Request>) + Send + 'static,
    ) -> Journal {
        let path = dir.path().join("journal.db");
        drop(open_writer(&path).unwrap());
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let handle = std::thread::spawn(move || fake(rx));
        Journal {
            inner: Arc::new(Inner {
                reader: Mutex::new(open_reader(&path).unwrap()),
                path,
                tx,
                commits: Arc::new(AtomicU64::new(0)),
                _writer: WriterThread(Some(handle)),
            }),
        }
    }

    #[tokio::test]
    async fn dead_writer_fails_append_instead_of_hanging() {
        let dir = tempfile::tempdir().unwrap();
        let timeout = Duration::from_secs(5);

        // Writer gone before the request is sent.
        let j = journal_with_fake_writer(&dir, drop);
        let res = tokio::time::timeout(timeout, j.append(new("i", "k", json!(1)))).await;
        assert!(
            matches!(res, Ok(Err(JournalError::WriterGone { .. }))),
            "{res:?}"
        );

        // Writer dies mid-batch, after taking the request: its reply sender drops.
        let j = journal_with_fake_writer(&dir, |mut rx| drop(rx.blocking_recv()));
        let res = tokio::time::timeout(timeout, j.append(new("i", "k", json!(1)))).await;
        assert!(
            matches!(res, Ok(Err(JournalError::WriterGone { .. }))),
            "{res:?}"
        );
        assert!(j.entries().unwrap().is_empty());
    }

    #[tokio::test]
    async fn unwritable_dir_reports_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        // A regular file where the parent directory should be.
        let blocker = dir.path().join("blocker");
        std::fs::write(&blocker, b"").unwrap();
        let err = Journal::open(&blocker.join("journal.db")).err().unwrap();
        assert!(matches!(err, JournalError::CreateDir { .. }), "{err:?}");
        assert!(err.to_string().contains("permissions"));
    }
}
