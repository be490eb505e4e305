//! What can go wrong with the journal, each saying what to do.

use std::path::PathBuf;
use std::sync::Arc;

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

    #[error("journal checkpoint key {path} cannot be used: {reason}")]
    Key { path: PathBuf, reason: String },

    #[error("journal checkpoint {path} cannot be trusted: {reason}; preserve the data dir for forensics and restore the checkpoint and its key from backup")]
    CheckpointInvalid { path: PathBuf, reason: String },

    #[error("journal does not match its signed checkpoint at seq {seq}: {reason}; the journal was truncated, rewritten or replaced outside firebreak: preserve the data dir for forensics and restore the journal from a backup taken at or after that checkpoint")]
    CheckpointMismatch { seq: u64, reason: String },

    #[error("journal {path} is missing, but checkpoint {checkpoint} says it held {seq} entries: restore the journal from backup (firebreak will not start on an empty history)")]
    Missing {
        path: PathBuf,
        checkpoint: PathBuf,
        seq: u64,
    },

    #[error("journal checkpoint {path} is missing although its key {key} exists (the journal holds {entries} entries): restore the checkpoint from backup; if you removed it on purpose, remove the key too to re-anchor the journal as it is now")]
    CheckpointMissing {
        path: PathBuf,
        key: PathBuf,
        entries: u64,
    },

    #[error("cannot write the journal checkpoint {path} ({source}): check the permissions and free space of its directory")]
    CheckpointWrite {
        path: PathBuf,
        #[source]
        source: Arc<std::io::Error>,
    },
}

impl JournalError {
    /// The history cannot be proven: altered, cut short, deleted, or its checkpoint or key is
    /// gone. As opposed to a journal that is merely unreachable (permissions, disk).
    pub fn is_unprovable(&self) -> bool {
        matches!(
            self,
            JournalError::Corrupt { .. }
                | JournalError::ChainBroken { .. }
                | JournalError::Key { .. }
                | JournalError::CheckpointInvalid { .. }
                | JournalError::CheckpointMismatch { .. }
                | JournalError::Missing { .. }
                | JournalError::CheckpointMissing { .. }
        )
    }
}
