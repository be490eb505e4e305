//! The journal's own tests: append, chain, group commit, atomicity, the writer's failures.
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
