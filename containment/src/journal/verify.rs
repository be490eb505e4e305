//! Proving the journal: every link of the chain, and the signed checkpoint of its head.

use std::path::Path;

use rusqlite::Connection;

use super::{
    chain_hash, open_reader, Anchor, JournalError, RawRow, Verified, GENESIS_HASH, SELECT_COLUMNS,
};

/// Verifies the journal at `path` without opening it for writing (it may be served by a
/// running daemon meanwhile): the chain, and when `anchor` is given its checkpoint.
pub fn verify(path: &Path, anchor: Option<&Anchor>) -> Result<Verified, JournalError> {
    let checkpoint = anchor.map(Anchor::read).transpose()?.flatten();
    if !path.exists() {
        return match (&checkpoint, anchor) {
            (Some(c), Some(anchor)) if c.seq > 0 => Err(JournalError::Missing {
                path: path.to_path_buf(),
                checkpoint: anchor.path().to_path_buf(),
                seq: c.seq,
            }),
            _ => Ok(Verified {
                entries: 0,
                head: GENESIS_HASH.into(),
                checkpoint,
            }),
        };
    }
    let conn = open_reader(path)?;
    let walked = walk(&conn, path, checkpoint.as_ref().map(|c| c.seq))?;
    if let Some(c) = &checkpoint {
        if c.seq > walked.entries {
            return Err(JournalError::CheckpointMismatch {
                seq: c.seq,
                reason: format!(
                    "the journal ends at seq {}, the checkpoint signed at {} covers seq {}: \
                     entries {}..={} were removed",
                    walked.entries,
                    c.at,
                    c.seq,
                    walked.entries + 1,
                    c.seq
                ),
            });
        }
        let stored = walked.hash_at.as_deref().unwrap_or(GENESIS_HASH);
        if stored != c.hash {
            return Err(JournalError::CheckpointMismatch {
                seq: c.seq,
                reason: format!(
                    "entry {} has hash {stored}, the checkpoint signed at {} says {}: entries \
                     1..={} were rewritten and re-chained",
                    c.seq, c.at, c.hash, c.seq
                ),
            });
        }
    }
    Ok(Verified {
        entries: walked.entries,
        head: walked.head,
        checkpoint,
    })
}

/// One pass over the stored rows.
pub(super) struct Walked {
    pub(super) entries: u64,
    head: String,
    /// The hash stored at the seq asked for.
    hash_at: Option<String>,
}

/// Recomputes every link and hash in seq order; the first bad seq is the error.
pub(super) fn walk(
    conn: &Connection,
    path: &Path,
    at: Option<u64>,
) -> Result<Walked, JournalError> {
    let read_err = |source| JournalError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut stmt = conn
        .prepare(&format!("{SELECT_COLUMNS} ORDER BY seq"))
        .map_err(read_err)?;
    let mut rows = stmt.query([]).map_err(read_err)?;

    let mut expected_seq: u64 = 1;
    let mut prev_hash = GENESIS_HASH.to_string();
    let mut hash_at = None;
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
        if Some(raw.seq) == at {
            hash_at = Some(raw.hash.clone());
        }
        prev_hash = raw.hash;
        expected_seq += 1;
    }
    Ok(Walked {
        entries: expected_seq - 1,
        head: prev_hash,
        hash_at,
    })
}
