//! The writer thread: group commit, and the checkpoint it signs after commits.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::Utc;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use super::{chain_hash, format_at, Anchor, Entry, JournalError, Prepared, GENESIS_HASH};

/// Soft cap on entries per transaction: bounds transaction size and the latency
/// of the waiters at the front of a large batch. A single `append_all` larger
/// than this is still written whole, because it must be atomic.
const MAX_BATCH_ENTRIES: usize = 1024;

pub(super) struct Request {
    pub(super) entries: Vec<Prepared>,
    /// Write the checkpoint after this batch whatever the count (shutdown, an operator).
    pub(super) checkpoint: bool,
    pub(super) reply: oneshot::Sender<Result<Vec<Entry>, JournalError>>,
}

/// The writer's view of the checkpoint: what it last signed and where the head is now.
pub(super) struct Anchored {
    pub(super) anchor: Anchor,
    pub(super) signed: u64,
    pub(super) head: (u64, String),
}

impl Anchored {
    /// Signs the head when `every` entries passed since the last checkpoint, or when forced.
    pub(super) fn after_commit(&mut self, force: bool) -> Result<(), JournalError> {
        let (seq, hash) = &self.head;
        if !force && seq.saturating_sub(self.signed) < self.anchor.every() {
            return Ok(());
        }
        let signed =
            self.anchor
                .write(*seq, hash)
                .map_err(|source| JournalError::CheckpointWrite {
                    path: self.anchor.path().to_path_buf(),
                    source: Arc::new(source),
                })?;
        // Forced ones (a stop, an operator) go to the log stream at info: a copy of the head
        // kept outside this host.
        if force {
            tracing::info!(seq, hash, mac = signed.mac, "journal checkpoint signed");
        } else {
            tracing::debug!(seq, hash, mac = signed.mac, "journal checkpoint signed");
        }
        self.signed = *seq;
        Ok(())
    }
}

pub(super) fn writer_loop(
    mut conn: Connection,
    mut rx: mpsc::Receiver<Request>,
    path: &Path,
    commits: &AtomicU64,
    mut anchored: Option<Anchored>,
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
                let forced = batch.iter().any(|r| r.checkpoint);
                let signed = match anchored.as_mut() {
                    Some(anchored) => {
                        if let Some(last) = written.iter().flatten().next_back() {
                            anchored.head = (last.seq, last.hash.clone());
                        }
                        anchored.after_commit(forced)
                    }
                    None => Ok(()),
                };
                if let Err(e) = &signed {
                    // The entries are committed; only the proof of the head lags.
                    tracing::error!(error = %e, "journal checkpoint not written");
                }
                // write_batch returns one Vec per request, in request order.
                for req in batch.into_iter().rev() {
                    let entries = written.pop().unwrap_or_default();
                    let answer = match &signed {
                        Err(JournalError::CheckpointWrite { path, source }) if req.checkpoint => {
                            Err(JournalError::CheckpointWrite {
                                path: path.clone(),
                                source: Arc::clone(source),
                            })
                        }
                        _ => Ok(entries),
                    };
                    // A closed receiver means the appender gave up; the entry is
                    // committed regardless, nothing to do.
                    let _ = req.reply.send(answer);
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
    // The journal closes: sign where it ends.
    if let Some(Err(e)) = anchored
        .as_mut()
        .filter(|a| a.signed < a.head.0)
        .map(|a| a.after_commit(true))
    {
        tracing::error!(error = %e, "journal checkpoint not written at close");
    }
}

/// Writes every request of the batch in one transaction. On error the
/// transaction is rolled back when `tx` drops, so nothing of the batch is visible.
pub(super) fn write_batch(
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
