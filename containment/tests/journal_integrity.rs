//! The journal refuses to open on any history it cannot prove: each tamper case an operator or
//! an intruder can make to the files while the daemon is stopped.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use firebreak_containment::journal::{verify, Anchor, Journal, JournalError, NewEntry};
use rusqlite::Connection;
use serde_json::json;
use sha2::{Digest, Sha256};

struct Files {
    _dir: tempfile::TempDir,
    data: PathBuf,
    journal: PathBuf,
    key: PathBuf,
    checkpoint: PathBuf,
}

impl Files {
    fn new() -> Files {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        Files {
            journal: data.join("journal.db"),
            key: dir.path().join("secret").join("journal.key"),
            checkpoint: data.join("journal.checkpoint"),
            data,
            _dir: dir,
        }
    }

    fn open(&self, every: u64) -> Result<Journal, JournalError> {
        if let Some(dir) = self.key.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        Journal::open_anchored(&self.journal, &self.key, &self.checkpoint, every).map(|(j, _)| j)
    }

    /// Five entries written and the journal closed (which signs its head).
    async fn with_five(&self) {
        let journal = self.open(1000).unwrap();
        for i in 1..=5 {
            journal.append(entry(i)).await.unwrap();
        }
    }

    fn sql(&self, sql: &str) {
        let conn = Connection::open(&self.journal).unwrap();
        conn.execute_batch(
            "DROP TRIGGER IF EXISTS journal_no_update; DROP TRIGGER IF EXISTS journal_no_delete;",
        )
        .unwrap();
        conn.execute_batch(sql).unwrap();
    }

    fn checkpoint_seq(&self) -> u64 {
        let text = std::fs::read_to_string(&self.checkpoint).unwrap();
        serde_json::from_str::<serde_json::Value>(&text).unwrap()["seq"]
            .as_u64()
            .unwrap()
    }
}

fn entry(i: u64) -> NewEntry {
    NewEntry {
        incident: "inc-1".into(),
        kind: "event".into(),
        body: json!({"i": i, "role": "payment-agent"}),
    }
}

/// What an intruder who read the module docs does: recompute every hash from `from` on.
fn rechain(path: &Path) {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch("DROP TRIGGER IF EXISTS journal_no_update;")
        .unwrap();
    let rows: Vec<(u64, String, String, String, String)> = conn
        .prepare("SELECT seq, at, incident, kind, body FROM journal ORDER BY seq")
        .unwrap()
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut prev = "0".repeat(64);
    for (seq, at, incident, kind, body) in rows {
        let mut h = Sha256::new();
        h.update(format!("{prev}\n{seq}\n{at}\n{incident}\n{kind}\n{body}").as_bytes());
        let hash = hex::encode(h.finalize());
        conn.execute(
            "UPDATE journal SET prev_hash = ?1, hash = ?2 WHERE seq = ?3",
            rusqlite::params![prev, hash, seq],
        )
        .unwrap();
        prev = hash;
    }
}

#[tokio::test]
async fn an_untouched_journal_reopens_and_its_checkpoint_follows_the_head() {
    let f = Files::new();
    f.with_five().await;
    assert_eq!(f.checkpoint_seq(), 5, "closing signs the head");
    let journal = f.open(2).unwrap();
    journal.append(entry(6)).await.unwrap();
    assert_eq!(f.checkpoint_seq(), 5, "one entry is fewer than every=2");
    journal.append(entry(7)).await.unwrap();
    assert_eq!(f.checkpoint_seq(), 7);
    journal.append(entry(8)).await.unwrap();
    journal.checkpoint().await.unwrap();
    assert_eq!(
        f.checkpoint_seq(),
        8,
        "an explicit checkpoint signs at once"
    );
}

#[tokio::test]
async fn a_rewritten_middle_entry_is_refused_at_its_seq() {
    let f = Files::new();
    f.with_five().await;
    f.sql(r#"UPDATE journal SET body = '{"i":3,"role":"other-role"}' WHERE seq = 3"#);
    match f.open(1) {
        Err(JournalError::ChainBroken { seq: 3, .. }) => {}
        other => panic!("expected ChainBroken at 3, got {:?}", other.err()),
    }
}

#[tokio::test]
async fn a_deleted_middle_entry_is_refused_at_its_seq() {
    let f = Files::new();
    f.with_five().await;
    f.sql("DELETE FROM journal WHERE seq = 2");
    match f.open(1) {
        Err(JournalError::ChainBroken { seq: 2, reason }) => {
            assert!(reason.contains("missing"), "{reason}")
        }
        other => panic!("expected ChainBroken at 2, got {:?}", other.err()),
    }
}

#[tokio::test]
async fn a_truncated_tail_is_refused_against_the_checkpoint() {
    let f = Files::new();
    f.with_five().await;
    f.sql("DELETE FROM journal WHERE seq > 2");
    let err = f.open(1).err().expect("a truncated journal must not open");
    match &err {
        JournalError::CheckpointMismatch { seq: 5, reason } => {
            assert!(reason.contains("entries 3..=5 were removed"), "{reason}")
        }
        other => panic!("expected CheckpointMismatch at 5, got {other:?}"),
    }
}

#[tokio::test]
async fn a_rewrite_with_the_chain_recomputed_is_refused_against_the_checkpoint() {
    let f = Files::new();
    f.with_five().await;
    f.sql(r#"UPDATE journal SET body = '{"i":3,"role":"other-role"}' WHERE seq = 3"#);
    rechain(&f.journal);
    // The chain alone now verifies: only the checkpoint can tell.
    assert_eq!(
        Journal::open(&f.journal).unwrap().verify_chain().unwrap(),
        5
    );
    match f.open(1) {
        Err(JournalError::CheckpointMismatch { seq: 5, reason }) => {
            assert!(reason.contains("re-chained"), "{reason}")
        }
        other => panic!("expected CheckpointMismatch, got {:?}", other.err()),
    }
}

#[tokio::test]
async fn a_deleted_journal_with_a_surviving_checkpoint_is_refused_not_started_empty() {
    let f = Files::new();
    f.with_five().await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", f.journal.display()));
    }
    match f.open(1) {
        Err(JournalError::Missing { seq: 5, .. }) => {}
        other => panic!("expected Missing, got {:?}", other.err()),
    }
    assert!(!f.journal.exists(), "a refusal creates no empty journal");
}

#[tokio::test]
async fn a_checkpoint_edited_by_hand_does_not_verify() {
    let f = Files::new();
    f.with_five().await;
    let text = std::fs::read_to_string(&f.checkpoint).unwrap();
    std::fs::write(&f.checkpoint, text.replace("\"seq\":5", "\"seq\":2")).unwrap();
    match f.open(1) {
        Err(JournalError::CheckpointInvalid { reason, .. }) => {
            assert!(reason.contains("signature"), "{reason}")
        }
        other => panic!("expected CheckpointInvalid, got {:?}", other.err()),
    }
}

#[tokio::test]
async fn a_removed_checkpoint_or_key_is_refused() {
    let f = Files::new();
    f.with_five().await;
    let saved = std::fs::read(&f.checkpoint).unwrap();
    std::fs::remove_file(&f.checkpoint).unwrap();
    match f.open(1) {
        Err(JournalError::CheckpointMissing { entries: 5, .. }) => {}
        other => panic!("expected CheckpointMissing, got {:?}", other.err()),
    }
    std::fs::write(&f.checkpoint, saved).unwrap();
    std::fs::remove_file(&f.key).unwrap();
    match f.open(1) {
        Err(JournalError::Key { reason, .. }) => assert!(reason.contains("missing"), "{reason}"),
        other => panic!("expected a Key error, got {:?}", other.err()),
    }
}

#[tokio::test]
async fn a_key_readable_by_others_is_refused() {
    let f = Files::new();
    f.with_five().await;
    std::fs::set_permissions(&f.key, std::fs::Permissions::from_mode(0o644)).unwrap();
    match f.open(1) {
        Err(JournalError::Key { reason, .. }) => assert!(reason.contains("chmod 600"), "{reason}"),
        other => panic!("expected a Key error, got {:?}", other.err()),
    }
}

#[tokio::test]
async fn verify_reads_without_writing_and_agrees_with_open() {
    let f = Files::new();
    f.with_five().await;
    let anchor = Anchor::load(&f.key, &f.checkpoint, 1).unwrap().unwrap();
    let verified = verify(&f.journal, Some(&anchor)).unwrap();
    assert_eq!(verified.entries, 5);
    assert_eq!(verified.checkpoint.map(|c| c.seq), Some(5));
    f.sql("DELETE FROM journal WHERE seq = 5");
    assert!(matches!(
        verify(&f.journal, Some(&anchor)),
        Err(JournalError::CheckpointMismatch { seq: 5, .. })
    ));
}

#[tokio::test]
async fn the_journal_its_directory_and_its_key_are_owner_only() {
    let f = Files::new();
    f.with_five().await;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&f.data), 0o700, "data dir");
    assert_eq!(mode(&f.journal), 0o600, "journal");
    assert_eq!(mode(&f.key), 0o600, "key");
    assert_eq!(mode(&f.checkpoint), 0o600, "checkpoint");
    // An existing journal others can read is narrowed at open.
    std::fs::set_permissions(&f.journal, std::fs::Permissions::from_mode(0o644)).unwrap();
    let journal = f.open(1).unwrap();
    journal.append(entry(6)).await.unwrap();
    assert_eq!(mode(&f.journal), 0o600);
    let wal = PathBuf::from(format!("{}-wal", f.journal.display()));
    assert_eq!(mode(&wal), 0o600, "SQLite's WAL takes the journal's mode");
}
