//! What signing the journal's head costs an append: one entry per commit (the worst case for
//! checkpoints; group commit only amortizes them further), with no checkpoint (the baseline),
//! a checkpoint every 64 entries (the default), and one after every commit.
//!
//! Run: `cargo bench -p firebreak-containment --bench journal_checkpoint`.

use criterion::{criterion_group, criterion_main, Criterion};
use firebreak_containment::journal::{Journal, NewEntry};
use serde_json::json;

fn entry() -> NewEntry {
    NewEntry {
        incident: "inc-bench".into(),
        kind: "applied".into(),
        body: json!({"plan": "p-1", "spec": {"role": "payment-agent", "policy": "firebreak-deny"}}),
    }
}

fn appends(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut group = c.benchmark_group("journal_append");
    for (name, every) in [
        ("no checkpoint", None),
        ("every 64", Some(64)),
        ("every 1", Some(1)),
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("journal.db");
        let journal = match every {
            None => Journal::open(&path).expect("journal"),
            Some(every) => {
                Journal::open_anchored(
                    &path,
                    &dir.path().join("journal.key"),
                    &dir.path().join("journal.checkpoint"),
                    every,
                )
                .expect("anchored journal")
                .0
            }
        };
        group.bench_function(name, |b| {
            b.iter(|| runtime.block_on(journal.append(entry())).expect("append"))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = appends
}
criterion_main!(benches);
