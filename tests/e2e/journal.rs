//! The journal of the real `firebreak serve`, against a real moto, through the bad night.
//!
//! Tampering: one incident is contained (an inline deny on the role); the daemon stops; then
//! each tamper an intruder with the data dir can make: the target rewritten, the tail cut off,
//! the file deleted. Each start exits 4 naming the entry, `journal verify` agrees, and the deny
//! stays at IAM. The untouched copy starts, and its rollback removes the deny.
//!
//! Crashes: kill -9 at spread points while an alert is being taken in, 40 times; then every
//! sender retries. Every alert ends in exactly one incident with one plan, contained by exactly
//! one write at IAM.
//!
//! Budget: the blast-radius budget's window is folded from the journal at each start, so
//! restarts (kill -9 or SIGTERM) do not reset it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use firebreak_e2e::daemon::{DaemonOptions, Workspace};
use firebreak_e2e::moto;
use firebreak_e2e::seed_role;
use serde_json::Value;

// Shared with the AWS tests, which use the rest of it.
#[allow(dead_code)]
#[path = "aws/fixture.rs"]
mod fixture;
use fixture::{alert, envelope, fixture, trust, Fixture};

const BIN: &str = env!("CARGO_BIN_EXE_firebreak");
const S3_BROAD: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject","s3:PutObject"],"Resource":"arn:aws:s3:::*"}]}"#;
const BREACH: &str = "arn:aws:s3:::partner-payouts/*";

fn data(f: &Fixture) -> PathBuf {
    f.ws.path().join("data")
}

/// Copies the data dir aside (the daemon is stopped), so each case tampers a fresh copy.
fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

fn restore(saved: &Path, data: &Path) -> Result<()> {
    std::fs::remove_dir_all(data)?;
    copy_dir(saved, data)
}

/// Opens the journal as an intruder does: the append-only triggers dropped first.
fn tamper(data: &Path, sql: &str) -> Result<()> {
    let conn = rusqlite::Connection::open(data.join("journal.db"))?;
    conn.execute_batch(
        "DROP TRIGGER IF EXISTS journal_no_update; DROP TRIGGER IF EXISTS journal_no_delete;",
    )?;
    conn.execute_batch(sql)?;
    Ok(())
}

/// `serve` and `journal verify` both refuse with exit 4 and a message holding `names`.
fn refused(f: &Fixture, options: &DaemonOptions, names: &str) -> Result<()> {
    let (code, _, stderr) = f.ws.cli(options, &["serve"])?;
    assert_eq!(code, 4, "serve must refuse: {stderr}");
    assert!(stderr.contains(names), "serve names {names:?}: {stderr}");
    let (code, _, stderr) = f.ws.cli(options, &["journal", "verify"])?;
    assert_eq!(code, 4, "verify must refuse: {stderr}");
    assert!(stderr.contains(names), "verify names {names:?}: {stderr}");
    Ok(())
}

#[tokio::test]
async fn a_tampered_journal_is_refused_at_start_and_the_enforcement_point_is_untouched(
) -> Result<()> {
    let f = fixture("journal-agent", &[], &[("s3", S3_BROAD)]).await?;
    let options = f.options();
    let mut daemon = f.ws.start(&options).await?;
    let (status, body) = daemon
        .post(
            "/v1/alerts",
            &alert("j-1", &f.name, BREACH, "attack-attempt"),
        )
        .await?;
    assert_eq!(status, 202, "{body}");
    let incident = body["incident"]
        .as_str()
        .context("incident id")?
        .to_string();
    daemon
        .wait_status(&incident, "contained", Duration::from_secs(20))
        .await?;
    let deny = f.inline_names().await?;
    assert_eq!(deny.len(), 1, "one inline deny at IAM: {deny:?}");
    daemon.signal("TERM")?;
    daemon.wait_exit(Duration::from_secs(15)).await?;
    drop(daemon);

    let (code, stdout, stderr) = f.ws.cli(&options, &["journal", "verify"])?;
    assert_eq!(code, 0, "an untouched journal verifies: {stderr}");
    let entries: u64 = stdout
        .split(": ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("entry count in {stdout:?}"))?;
    assert!(entries >= 5, "{stdout}");
    assert!(
        stdout.contains(&format!("checkpoint seq {entries} ")),
        "the stop signed the head: {stdout}"
    );
    let saved = f.ws.path().join("saved");
    copy_dir(&data(&f), &saved)?;

    // The target rewritten to another role, as the issue's intruder did.
    tamper(
        &data(&f),
        &format!(
            "UPDATE journal SET body = replace(body, '{}', 'other-role') WHERE seq = 2",
            f.name
        ),
    )?;
    refused(&f, &options, "chain broken at seq 2")?;

    // The last three entries cut off: the chain that is left links up; the checkpoint does not.
    restore(&saved, &data(&f))?;
    tamper(
        &data(&f),
        &format!("DELETE FROM journal WHERE seq > {}", entries - 3),
    )?;
    refused(
        &f,
        &options,
        &format!("entries {}..={entries} were removed", entries - 2),
    )?;

    // The journal deleted: a loud refusal, not an empty start.
    restore(&saved, &data(&f))?;
    for name in ["journal.db", "journal.db-wal", "journal.db-shm"] {
        let _ = std::fs::remove_file(data(&f).join(name));
    }
    refused(&f, &options, "is missing")?;

    // None of it touched IAM; the untouched journal starts and its rollback lifts the deny.
    assert_eq!(f.inline_names().await?, deny, "the deny is still at IAM");
    restore(&saved, &data(&f))?;
    let daemon = f.ws.start(&options).await?;
    let (code, stdout, stderr) = daemon.cli(&["rollback", &incident, "--by", "alice"])?;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        f.inline_names().await?.is_empty(),
        "rollback removed the deny"
    );
    Ok(())
}

const ROUNDS: usize = 40;

/// Milliseconds after the POST begins at which round `i` is killed: every millisecond of
/// 0–19 (before the journal write, and between `alert-received` and `planned`), then every
/// 10 ms up to 210 (the IAM reads, the intent and the write, the check, after the answer).
fn kill_after(i: usize) -> Duration {
    let step = ((i * 17 + 3) % 40) as u64;
    Duration::from_millis(if step < 20 {
        step
    } else {
        20 + (step - 20) * 10
    })
}

#[tokio::test]
async fn kill_9_at_forty_points_leaves_every_alert_planned_once_and_written_once() -> Result<()> {
    let moto = moto::shared();
    let iam = moto.iam_client().await;
    let ws = Workspace::new(BIN)?;
    let names: Vec<String> = (0..ROUNDS).map(|i| format!("crash-agent-{i}")).collect();
    for name in &names {
        let managed = format!("{name}-s3");
        seed_role(
            &iam,
            name,
            &trust(name),
            &[],
            &[(managed.as_str(), S3_BROAD)],
        )
        .await?;
        ws.add_envelope(name, &envelope(name, "converged"))?;
    }
    let options = DaemonOptions {
        budget: (1000, 1000, 1000),
        ..DaemonOptions::new(moto.endpoint())
    };
    let alerts: Vec<Value> = names
        .iter()
        .enumerate()
        .map(|(i, name)| alert(&format!("crash-{i}"), name, BREACH, "attack-attempt"))
        .collect();

    let mut answered = 0;
    for (i, alert) in alerts.iter().enumerate() {
        let mut daemon = ws.start(&options).await?;
        let post = daemon.post("/v1/alerts", alert);
        let kill = async {
            tokio::time::sleep(kill_after(i)).await;
            daemon.signal("KILL")
        };
        // The POST may be answered, cut off, or never sent: all are the night's outcomes.
        let (posted, killed) = tokio::join!(post, kill);
        killed?;
        answered += usize::from(posted.is_ok_and(|(status, _)| status == 202));
        daemon.wait_exit(Duration::from_secs(10)).await?;
    }

    // Every sender retries; a journaled alert joins its incident, the rest open one each.
    let daemon = ws.start(&options).await?;
    let mut incidents = Vec::new();
    let mut joined = 0;
    for alert in &alerts {
        let (status, body) = daemon.post("/v1/alerts", alert).await?;
        assert!(status == 200 || status == 202, "{status} {body}");
        joined += usize::from(body["deduplicated"] == true);
        incidents.push(body["incident"].as_str().context("incident")?.to_string());
    }
    // The kills landed on both sides: some before the alert was journaled (the retry opens the
    // incident), some after (the retry joins it), some of those before the sender was answered.
    println!(
        "{answered} of {ROUNDS} answered before the kill; {joined} retries joined their incident"
    );
    assert!(
        joined > answered,
        "some kills fell between the journal and the answer"
    );
    assert!(joined < ROUNDS, "some kills fell before the journal write");
    for incident in &incidents {
        daemon
            .wait_status(incident, "contained", Duration::from_secs(30))
            .await?;
    }
    let (_, listed) = daemon.get("/v1/incidents").await?;
    let listed = listed["incidents"].as_array().context("incidents")?.clone();
    assert_eq!(listed.len(), ROUNDS, "one incident per alert: {listed:#?}");
    for incident in &listed {
        assert_eq!(incident["plans"], 1, "planned exactly once: {incident}");
        assert_eq!(incident["status"], "contained", "{incident}");
    }
    let requests = moto.iam_requests().await?;
    for name in &names {
        let writes = requests
            .iter()
            .filter(|r| r.action == "PutRolePolicy" && r.param("RoleName") == Some(name.as_str()))
            .count();
        assert_eq!(writes, 1, "{name}: exactly one deny written");
    }
    Ok(())
}

/// Six attack attempts for one agent in a few seconds, across two restarts (one kill -9, one
/// SIGTERM), against a budget of two automatic actions per agent per minute: the window is
/// folded from the journal at each start, so only the first two are acted on at IAM.
#[tokio::test]
async fn the_budget_window_is_taken_from_the_journal_across_restarts() -> Result<()> {
    let f = fixture("budget-agent", &[], &[("s3", S3_BROAD)]).await?;
    let options = DaemonOptions {
        budget: (100, 100, 2),
        ..f.options()
    };
    let mut statuses = Vec::new();
    for (round, stop) in ["KILL", "TERM", "TERM"].iter().enumerate() {
        let mut daemon = f.ws.start(&options).await?;
        for i in 0..2 {
            let resource = format!("arn:aws:s3:::exfil-{round}-{i}/*");
            let id = format!("budget-{round}-{i}");
            let (_, body) = daemon
                .post(
                    "/v1/alerts",
                    &alert(&id, "budget-agent", &resource, "attack-attempt"),
                )
                .await?;
            let incident = body["incident"].as_str().context("incident")?.to_string();
            let status = body["status"].as_str().unwrap_or_default().to_string();
            if status == "applying" {
                daemon
                    .wait_status(&incident, "contained", Duration::from_secs(30))
                    .await?;
            }
            statuses.push((status, body["plan"]["escalation"].clone()));
        }
        daemon.signal(stop)?;
        daemon.wait_exit(Duration::from_secs(10)).await?;
    }
    let automatic = statuses.iter().filter(|(s, _)| s == "applying").count();
    assert_eq!(
        automatic, 2,
        "two automatic actions in the minute: {statuses:?}"
    );
    for (status, escalation) in statuses.iter().skip(2) {
        assert_eq!(status, "awaiting-approval", "{statuses:?}");
        assert!(
            escalation
                .as_str()
                .is_some_and(|e| e.contains("agent blast-radius budget")),
            "{escalation}"
        );
    }
    assert_eq!(
        f.role_requests("PutRolePolicy").await?,
        2,
        "only the two budgeted denies reached IAM"
    );
    Ok(())
}
