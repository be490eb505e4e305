//! The CLI on AWS: `contain`, `incidents`, `rollback` through the running daemon, and what
//! `--offline` refuses to do without one.

use super::*;

#[tokio::test]
async fn the_cli_contains_lists_shows_and_rolls_back_through_the_daemon() -> Result<()> {
    let f = fixture("agent-l", &[("ledger-read", LEDGER)], &[("s3", S3_BROAD)]).await?;
    let opts = f.options();
    let alert_file = write_alert(&f, "l-1", "arn:aws:s3:::partner-payouts/*")?;

    // Without a daemon, contain says how to reach one (or to go --offline) and changes nothing.
    let (code, _, stderr) =
        f.ws.cli(&opts, &["contain", "--by", "alice", "--alert", &alert_file])?;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("firebreak serve"), "{stderr}");
    assert!(
        !f.inline_names()
            .await?
            .iter()
            .any(|n| n.starts_with("firebreak-")),
        "nothing written"
    );

    let daemon = f.ws.start(&opts).await?;
    let (code, stdout, stderr) = daemon.cli(&[
        "--output",
        "json",
        "contain",
        "--by",
        "alice",
        "--alert",
        &alert_file,
    ])?;
    assert_eq!(code, 0, "contain exits 0 once contained: {stdout}{stderr}");
    let out: Value = serde_json::from_str(&stdout)?;
    assert_eq!(out["status"], "contained");
    let incident = out["incident"].as_str().unwrap_or_default().to_string();
    assert!(f
        .inline_names()
        .await?
        .contains(&format!("firebreak-{incident}")));
    // The daemon acted: its own view has the incident, with the operator named.
    let shown = daemon.incident(&incident).await?;
    assert_eq!(shown["status"], "contained", "{shown}");
    assert_eq!(shown["plans"][0]["approvedBy"], "alice", "{shown}");

    // While the daemon runs, --offline is refused: one process acts on a journal.
    let (code, _, stderr) = daemon.cli(&["rollback", "--offline", "--by", "alice", &incident])?;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("lock"), "{stderr}");

    let (code, stdout, stderr) = daemon.cli(&["rollback", "--by", "alice", &incident])?;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("reverted"), "{stdout}");
    assert!(!f
        .inline_names()
        .await?
        .contains(&format!("firebreak-{incident}")));
    drop(daemon);

    let (code, list, _) = f.ws.cli(&opts, &["incidents", "list"])?;
    assert_eq!(code, 0);
    assert!(
        list.contains(&incident) && list.contains("reverted"),
        "{list}"
    );
    let (code, shown, _) = f.ws.cli(&opts, &["incidents", "show", &incident])?;
    assert_eq!(code, 0);
    assert!(
        shown.contains("approved by alice") && shown.contains("aws.inline_deny"),
        "{shown}"
    );

    let (code, _, stderr) = f.ws.cli(&opts, &["incidents", "show", "inc-missing"])?;
    assert_eq!(code, 2, "an unknown incident is bad input");
    assert!(stderr.contains("inc-missing"), "{stderr}");

    let bad = f.ws.path().join("bad-runbooks");
    std::fs::create_dir_all(&bad)?;
    std::fs::write(
        bad.join("bad.yaml"),
        SHORT_TTL_RUNBOOK.replace("mode: auto", "mode: yolo"),
    )?;
    let (code, _, stderr) =
        f.ws.cli(&opts, &["runbook", "check", &bad.display().to_string()])?;
    assert_eq!(code, 2);
    assert!(
        stderr.contains("bad.yaml")
            && stderr.contains("spec.rules[0].mode")
            && stderr.contains("yolo"),
        "{stderr}"
    );
    let (code, stdout, _) = f.ws.cli(
        &opts,
        &[
            "runbook",
            "check",
            &format!("{}/../runbooks", env!("CARGO_MANIFEST_DIR")),
        ],
    )?;
    assert_eq!(code, 0, "the shipped runbooks are valid: {stdout}");
    Ok(())
}

/// The default runbook gives every plan a 24 h TTL.
const NO_TTL_RUNBOOK: &str = r#"apiVersion: firebreak.dev/v1alpha1
kind: Runbook
metadata: {name: no-ttl}
spec:
  rules:
    - name: contain-until-rolled-back
      mode: auto
      broadestWithoutApproval: [aws.inline_deny]
"#;

#[tokio::test]
async fn an_offline_contain_refuses_a_ttl_that_nothing_would_enforce() -> Result<()> {
    let f = fixture(
        "agent-offline-ttl",
        &[("ledger-read", LEDGER)],
        &[("s3", S3_BROAD)],
    )
    .await?;
    let alert_file = write_alert(&f, "ttl-1", "arn:aws:s3:::partner-payouts/*")?;
    let contain = [
        "contain",
        "--offline",
        "--by",
        "alice",
        "--alert",
        &alert_file,
    ];

    let (code, _, stderr) = f.ws.cli(&f.options(), &contain)?;
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("cannot honour this plan's TTL (1day"),
        "the refusal names the TTL: {stderr}"
    );
    assert!(
        f.inline_names().await? == ["ledger-read"],
        "nothing written at IAM"
    );
    let (_, listed, _) =
        f.ws.cli(&f.options(), &["--output", "json", "incidents", "list"])?;
    assert_eq!(
        serde_json::from_str::<Value>(&listed)?["incidents"],
        json!([]),
        "nothing journaled"
    );

    // A rule without a TTL leaves nothing to a timer: the offline contain acts and verifies.
    let options = DaemonOptions {
        runbook: Some(NO_TTL_RUNBOOK.into()),
        ..f.options()
    };
    let (code, stdout, stderr) = f.ws.cli(&options, &contain)?;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(
        f.inline_names().await?.len(),
        2,
        "the deny beside ledger-read"
    );
    Ok(())
}
