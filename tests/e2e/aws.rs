//! Firebreak end to end on AWS IAM: the real `firebreak` binary against a real moto server.
//!
//! Each test seeds its own role (unique names), so tests share one moto per binary; the dry-run
//! test starts its own moto so that every write the server receives can be counted.

use std::time::Duration;

use anyhow::Result;
use firebreak_aws::policy::{CompiledPolicies, NamedPolicy, Permit, PolicyDocument, Request};
use firebreak_e2e::daemon::DaemonOptions;
use firebreak_e2e::moto::{self, Moto};
use serde_json::{json, Value};

#[path = "aws/fixture.rs"]
mod fixture;
use fixture::{alert, fixture, fixture_on, Fixture};

#[path = "aws/cli.rs"]
mod cli;

const BIN: &str = env!("CARGO_BIN_EXE_firebreak");
const WAIT: Duration = Duration::from_secs(20);

const S3_BROAD: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject","s3:PutObject"],"Resource":"arn:aws:s3:::*"}]}"#;
const LEDGER: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"dynamodb:GetItem","Resource":"arn:aws:dynamodb:us-east-1:123456789012:table/ledger"}]}"#;
const REPORTS: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::reports/*"}]}"#;
const PAYOUTS_WRITER: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:PutObject","Resource":"arn:aws:s3:::partner-payouts/*"}]}"#;
const IAM_STAR: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iam:*","Resource":"*"}]}"#;

fn candidate<'a>(plan: &'a Value, kind: &str) -> &'a Value {
    plan["candidates"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["kind"] == kind))
        .unwrap_or(&Value::Null)
}

#[tokio::test]
async fn a_shared_managed_policy_breach_is_contained_by_an_inline_deny_with_zero_blast_radius(
) -> Result<()> {
    let f = fixture(
        "agent-a",
        &[("ledger-read", LEDGER)],
        &[("s3", S3_BROAD), ("reports", REPORTS)],
    )
    .await?;
    let attached_before = f.attached().await?;
    let ledger_before = f.inline_document("ledger-read").await?;
    let daemon = f.ws.start(&f.options()).await?;

    let (status, body) = daemon
        .post(
            "/v1/alerts",
            &alert(
                "a-1",
                "agent-a",
                "arn:aws:s3:::partner-payouts/*",
                "anomaly",
            ),
        )
        .await?;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        body["status"], "awaiting-approval",
        "anomaly tier waits for a human: {body}"
    );
    let plan = &body["plan"];
    assert_eq!(plan["chosen"]["kind"], "aws.inline_deny");
    assert_eq!(plan["chosen"]["blastRadius"]["broken"], 0);
    let detach = candidate(plan, "aws.detach_policy");
    assert_eq!(
        detach["blastRadius"]["broken"], 2,
        "detaching the shared s3 policy breaks two in-envelope uses: {detach}"
    );
    assert!(
        detach["rejected"]
            .as_str()
            .is_some_and(|r| r.contains("breaks 2")),
        "{detach}"
    );
    assert_eq!(
        f.role_requests("PutRolePolicy").await?,
        1,
        "only the seeding write so far"
    );

    let incident = body["incident"].as_str().unwrap_or_default().to_string();
    let (status, approved) = daemon
        .post(
            &format!("/v1/incidents/{incident}/approve"),
            &json!({"planHash": plan["hash"]}),
        )
        .await?;
    assert_eq!(status, 202, "{approved}");
    daemon.wait_status(&incident, "contained", WAIT).await?;

    let policy = format!("firebreak-{incident}");
    assert!(f.inline_names().await?.contains(&policy));
    let doc = f.inline_document(&policy).await?;
    let statements = doc["Statement"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        statements.len(),
        1,
        "no IAM-write protection needed for this role: {doc}"
    );
    assert_eq!(statements[0]["Effect"], "Deny");
    assert_eq!(statements[0]["Action"], json!(["s3:PutObject"]));
    assert_eq!(
        statements[0]["Resource"],
        json!(["arn:aws:s3:::partner-payouts/*"])
    );
    assert_eq!(
        f.attached().await?,
        attached_before,
        "managed policies untouched"
    );
    assert_eq!(
        f.inline_document("ledger-read").await?,
        ledger_before,
        "other inline policy untouched"
    );

    let (status, rolled) = daemon
        .post(&format!("/v1/incidents/{incident}/rollback"), &json!({}))
        .await?;
    assert_eq!(
        (status, rolled["status"].clone()),
        (200, json!("reverted")),
        "{rolled}"
    );
    assert!(
        !f.inline_names().await?.contains(&policy),
        "the deny is gone after rollback"
    );
    assert_eq!(f.attached().await?, attached_before);
    assert_eq!(f.inline_document("ledger-read").await?, ledger_before);
    Ok(())
}

#[tokio::test]
async fn a_policy_wholly_outside_the_envelope_is_named_and_the_narrower_deny_still_wins(
) -> Result<()> {
    let f = fixture(
        "agent-b",
        &[("ledger-read", LEDGER)],
        &[("payouts", PAYOUTS_WRITER), ("reports", REPORTS)],
    )
    .await?;
    let (code, stdout, stderr) = f.ws.cli(
        &f.options(),
        &[
            "--output",
            "json",
            "plan",
            "--alert",
            &write_alert(&f, "b-1", "arn:aws:s3:::partner-payouts/*")?,
        ],
    )?;
    assert_eq!(code, 0, "{stderr}");
    let plan: Value = serde_json::from_str(&stdout)?;
    assert_eq!(plan["chosen"]["kind"], "aws.inline_deny");
    let detach = candidate(&plan, "aws.detach_policy");
    assert!(
        detach["target"]
            .as_str()
            .is_some_and(|t| t.ends_with("policy/agent-b-payouts")),
        "{detach}"
    );
    assert_eq!(detach["blocks"], true);
    assert_eq!(
        detach["blastRadius"]["broken"], 0,
        "the payouts policy grants nothing in the envelope"
    );
    let reason = detach["rejected"].as_str().unwrap_or_default();
    assert!(
        reason.contains("same blast radius") && reason.contains("aws.inline_deny"),
        "{reason}"
    );
    let trust = candidate(&plan, "aws.trust_deny");
    assert_eq!(
        trust["blastRadius"]["broken"], 1,
        "a trust cut stops the in-envelope ledger reads (report reads are not in the envelope): {trust}"
    );
    assert!(candidate(&plan, "aws.revoke_sessions")["rejected"]
        .as_str()
        .is_some_and(|r| r.contains("IRSA")));
    Ok(())
}

fn write_alert(f: &Fixture, id: &str, resource: &str) -> Result<String> {
    let path = f.ws.path().join(format!("{id}.json"));
    std::fs::write(&path, alert(id, &f.name, resource, "anomaly").to_string())?;
    Ok(path.display().to_string())
}

#[tokio::test]
async fn a_dry_run_makes_zero_writes_at_the_iam_server() -> Result<()> {
    // Its own moto: every request the server receives belongs to this test.
    let own: &'static Moto = Box::leak(Box::new(Moto::start()?));
    let f = fixture_on(
        own,
        "agent-c",
        &[("ledger-read", LEDGER)],
        &[("s3", S3_BROAD)],
        "converged",
    )
    .await?;
    own.clear_requests().await?;
    let alert_file = write_alert(&f, "c-1", "arn:aws:s3:::partner-payouts/*")?;

    let (code, stdout, stderr) = f.ws.cli(
        &f.options(),
        &[
            "--output",
            "json",
            "contain",
            "--dry-run",
            "--offline",
            "--by",
            "rehearsal",
            "--alert",
            &alert_file,
        ],
    )?;
    assert_eq!(code, 0, "{stderr}");
    let out: Value = serde_json::from_str(&stdout)?;
    assert_eq!(out["status"], "dry-run");
    assert_eq!(
        out["plan"]["chosen"]["kind"], "aws.inline_deny",
        "the rehearsal shows the real plan"
    );
    let (code, _, stderr) = f.ws.cli(&f.options(), &["plan", "--alert", &alert_file])?;
    assert_eq!(code, 0, "{stderr}");

    let requests = own.iam_requests().await?;
    assert!(
        requests.iter().any(|r| r.action == "GetRole"),
        "the plan did read the role: {requests:?}"
    );
    let writes: Vec<_> = requests.iter().filter(|r| r.is_mutating()).collect();
    assert!(writes.is_empty(), "a dry run wrote to IAM: {writes:?}");
    Ok(())
}

#[tokio::test]
async fn the_same_alert_posted_twice_gives_one_action() -> Result<()> {
    let f = fixture("agent-d", &[("ledger-read", LEDGER)], &[("s3", S3_BROAD)]).await?;
    let daemon = f.ws.start(&f.options()).await?;
    let a = alert(
        "d-1",
        "agent-d",
        "arn:aws:s3:::partner-payouts/*",
        "attack-attempt",
    );
    let (first, second) =
        tokio::join!(daemon.post("/v1/alerts", &a), daemon.post("/v1/alerts", &a));
    let (first, second) = (first?, second?);
    let mut statuses = [first.0, second.0];
    statuses.sort();
    assert_eq!(
        statuses,
        [200, 202],
        "one accepted, one deduplicated: {first:?} {second:?}"
    );
    assert_eq!(first.1["incident"], second.1["incident"]);
    let incident = first.1["incident"].as_str().unwrap_or_default().to_string();
    daemon.wait_status(&incident, "contained", WAIT).await?;

    // A detector re-sending the same breach under a new id is folded in too.
    let (status, again) = daemon
        .post(
            "/v1/alerts",
            &alert(
                "d-2",
                "agent-d",
                "arn:aws:s3:::partner-payouts/*",
                "attack-attempt",
            ),
        )
        .await?;
    assert_eq!(
        (status, again["deduplicated"].clone()),
        (200, json!(true)),
        "{again}"
    );
    assert_eq!(
        f.role_requests("PutRolePolicy").await?,
        2,
        "seeding + exactly one containment write"
    );
    let (_, list) = daemon.get("/v1/incidents").await?;
    assert_eq!(list["incidents"].as_array().map(Vec::len), Some(1));
    Ok(())
}

#[tokio::test]
async fn a_daemon_killed_between_intent_and_apply_acts_exactly_once_after_restart() -> Result<()> {
    let f = fixture("agent-e", &[("ledger-read", LEDGER)], &[("s3", S3_BROAD)]).await?;
    let mut crashing =
        f.ws.start(&DaemonOptions {
            fault: Some("crash-after-intent"),
            ..f.options()
        })
        .await?;
    // The incident's task may abort before or after the answer is sent: both are a crash
    // between intent and apply.
    let answer = crashing
        .post(
            "/v1/alerts",
            &alert(
                "e-1",
                "agent-e",
                "arn:aws:s3:::partner-payouts/*",
                "attack-attempt",
            ),
        )
        .await;
    if let Ok((status, body)) = &answer {
        assert_eq!(*status, 202, "{body}");
    }
    let exit = crashing.wait_exit(WAIT).await?;
    assert!(!exit.success(), "the fault aborts the daemon");
    assert_eq!(
        f.role_requests("PutRolePolicy").await?,
        1,
        "crashed before the first containment write"
    );
    drop(crashing);

    let daemon = f.ws.start(&f.options()).await?;
    let (_, list) = daemon.get("/v1/incidents").await?;
    let incident = list["incidents"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let contained = daemon.wait_status(&incident, "contained", WAIT).await?;
    assert!(
        daemon.log().contains("resumed from the journal"),
        "{}",
        daemon.log()
    );
    assert_eq!(
        f.role_requests("PutRolePolicy").await?,
        2,
        "seeding + exactly one containment write"
    );
    assert!(contained["plans"][0]["intentAt"].is_string());
    drop(daemon);

    // A second restart finds nothing to do and writes nothing.
    let daemon = f.ws.start(&f.options()).await?;
    daemon.wait_status(&incident, "contained", WAIT).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(f.role_requests("PutRolePolicy").await?, 2);
    Ok(())
}

#[tokio::test]
async fn a_replayed_approval_executes_once() -> Result<()> {
    let f = fixture("agent-f", &[("ledger-read", LEDGER)], &[("s3", S3_BROAD)]).await?;
    let daemon = f.ws.start(&f.options()).await?;
    let (_, body) = daemon
        .post(
            "/v1/alerts",
            &alert(
                "f-1",
                "agent-f",
                "arn:aws:s3:::partner-payouts/*",
                "anomaly",
            ),
        )
        .await?;
    let incident = body["incident"].as_str().unwrap_or_default().to_string();
    let path = format!("/v1/incidents/{incident}/approve");

    let (status, wrong) = daemon
        .post(&path, &json!({"planHash": "0".repeat(64)}))
        .await?;
    assert_eq!(
        (status, wrong["error"]["field"].clone()),
        (409, json!("planHash")),
        "{wrong}"
    );

    let approval = json!({"planHash": body["plan"]["hash"]});
    let (a, b, c) = tokio::join!(
        daemon.post(&path, &approval),
        daemon.post(&path, &approval),
        daemon.post(&path, &approval)
    );
    let mut statuses = vec![a?.0, b?.0, c?.0];
    statuses.sort();
    assert_eq!(statuses, vec![202, 409, 409]);
    daemon.wait_status(&incident, "contained", WAIT).await?;
    let (status, _) = daemon.post(&path, &approval).await?;
    assert_eq!(status, 409, "a replay after execution is refused too");
    assert_eq!(
        f.role_requests("PutRolePolicy").await?,
        2,
        "seeding + exactly one containment write"
    );
    Ok(())
}

#[tokio::test]
async fn an_agent_holding_iam_star_gets_its_iam_writes_denied_too() -> Result<()> {
    let f = fixture(
        "agent-g",
        &[("ledger-read", LEDGER), ("admin", IAM_STAR)],
        &[("s3", S3_BROAD)],
    )
    .await?;
    let daemon = f.ws.start(&f.options()).await?;
    let (_, body) = daemon
        .post(
            "/v1/alerts",
            &alert(
                "g-1",
                "agent-g",
                "arn:aws:s3:::partner-payouts/*",
                "attack-attempt",
            ),
        )
        .await?;
    let chosen = &body["plan"]["chosen"];
    assert_eq!(chosen["kind"], "aws.inline_deny");
    assert!(
        chosen["notes"]
            .as_array()
            .is_some_and(|n| n.iter().any(|n| n
                .as_str()
                .is_some_and(|n| n.contains("cannot delete its own containment")))),
        "{chosen}"
    );
    let incident = body["incident"].as_str().unwrap_or_default().to_string();
    daemon.wait_status(&incident, "contained", WAIT).await?;
    let doc = f.inline_document(&format!("firebreak-{incident}")).await?;
    let protect = doc["Statement"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["Sid"] == "FirebreakProtectContainment"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(protect["Effect"], "Deny", "{doc}");
    // The escape actions: new or other principals and credentials, and role assumption (no
    // identity policy grants sts:AssumeRole, but a trust policy the agent wrote would).
    let escapes = ["iam:CreateUser", "iam:CreateAccessKey", "sts:AssumeRole"];
    for action in [
        "iam:DeleteRolePolicy",
        "iam:PutRolePolicy",
        "iam:DetachRolePolicy",
    ]
    .into_iter()
    .chain(escapes)
    {
        assert!(
            protect["Action"]
                .as_array()
                .is_some_and(|a| a.contains(&json!(action))),
            "{action} not denied: {doc}"
        );
    }
    let escape_note = chosen["notes"]
        .as_array()
        .and_then(|n| {
            n.iter()
                .filter_map(Value::as_str)
                .find(|n| n.contains("escape actions"))
        })
        .unwrap_or_default();
    for action in escapes {
        assert!(
            escape_note.contains(action),
            "the plan does not name {action}: {chosen}"
        );
    }

    // At the enforcement point: every inline policy of the role as moto holds it now, the
    // agent's iam:* included, evaluated together; the deny read back wins for each escape.
    let mut documents = Vec::new();
    for name in f.inline_names().await? {
        let raw = f.inline_document(&name).await?;
        documents.push((name, PolicyDocument::from_json_value(&raw)?));
    }
    let named: Vec<NamedPolicy<'_>> = documents
        .iter()
        .map(|(name, document)| NamedPolicy { name, document })
        .collect();
    let policies = CompiledPolicies::new(&named);
    let ours = format!("firebreak-{incident}");
    for action in escapes {
        let eval = policies.evaluate(&Request {
            action,
            resource: "*",
        });
        assert_eq!(eval.permit, Permit::NotAllowed, "{action}: {eval:?}");
        assert!(eval.denied_by.contains(&ours), "{action}: {eval:?}");
    }
    Ok(())
}

#[tokio::test]
async fn bad_input_gets_a_precise_error_and_changes_nothing() -> Result<()> {
    let f = fixture("agent-h", &[("ledger-read", LEDGER)], &[("s3", S3_BROAD)]).await?;
    let daemon = f.ws.start(&f.options()).await?;
    let good = alert(
        "h-1",
        "agent-h",
        "arn:aws:s3:::partner-payouts/*",
        "attack-attempt",
    );
    let mut wrong_type = good.clone();
    wrong_type["agent"]["namespace"] = json!(42);
    let mut unknown_dimension = good.clone();
    unknown_dimension["dimension"] = json!("telepathy");
    let mut unknown_agent = good.clone();
    unknown_agent["agent"]["workload"] = json!("Deployment/nobody");
    let mut missing = good.clone();
    missing["parameter"] = json!({"action": "s3:PutObject"});
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("malformed JSON", b"{\"id\": ".to_vec(), 400, "id"),
        (
            "wrong type",
            wrong_type.to_string().into_bytes(),
            400,
            "agent.namespace",
        ),
        (
            "unknown dimension",
            unknown_dimension.to_string().into_bytes(),
            400,
            "dimension",
        ),
        (
            "missing parameter field",
            missing.to_string().into_bytes(),
            400,
            "parameter.resource",
        ),
        (
            "unknown agent",
            unknown_agent.to_string().into_bytes(),
            404,
            "agent",
        ),
        ("oversize body", vec![b' '; 70_000], 413, ""),
    ];
    for (what, body, want, field) in cases {
        let (status, answer) = daemon.post_raw("/v1/alerts", body).await?;
        assert_eq!(status, want, "{what}: {answer}");
        assert_eq!(answer["error"]["field"], field, "{what}: {answer}");
        assert!(
            answer["error"]["reason"]
                .as_str()
                .is_some_and(|r| !r.is_empty()),
            "{what}: {answer}"
        );
    }
    let unauthenticated = reqwest::Client::new()
        .post(format!("{}/v1/alerts", daemon.base))
        .body(good.to_string())
        .send()
        .await?;
    assert_eq!(unauthenticated.status().as_u16(), 401);
    let (status, _) = daemon
        .post("/v1/incidents/inc-nope/approve", &json!({"planHash": "x"}))
        .await?;
    assert_eq!(status, 404);
    let (status, answer) = daemon
        .post("/v1/incidents/inc-nope/approve", &json!({"plan": 1}))
        .await?;
    assert_eq!(status, 400, "{answer}");

    assert!(daemon.healthy().await, "the daemon stays up");
    let (_, list) = daemon.get("/v1/incidents").await?;
    assert_eq!(list["incidents"], json!([]), "nothing was recorded");
    assert_eq!(
        f.role_requests("PutRolePolicy").await?,
        1,
        "only the seeding write"
    );
    let (_, metrics) = daemon.get("/metrics").await?;
    assert!(
        metrics
            .as_str()
            .is_some_and(|m| m.contains("firebreak_alerts_total{outcome=\"rejected\"} 6")),
        "{metrics}"
    );
    Ok(())
}

const SHORT_TTL_RUNBOOK: &str = r#"apiVersion: firebreak.dev/v1alpha1
kind: Runbook
metadata: {name: short-ttl}
spec:
  rules:
    - name: contain-briefly
      mode: auto
      broadestWithoutApproval: [aws.inline_deny]
      ttl: 2s
"#;

#[tokio::test]
async fn a_ttl_expiry_reverts_and_verifies_the_revert() -> Result<()> {
    let f = fixture("agent-i", &[("ledger-read", LEDGER)], &[("s3", S3_BROAD)]).await?;
    let daemon =
        f.ws.start(&DaemonOptions {
            runbook: Some(SHORT_TTL_RUNBOOK.into()),
            ..f.options()
        })
        .await?;
    let (_, body) = daemon
        .post(
            "/v1/alerts",
            &alert(
                "i-1",
                "agent-i",
                "arn:aws:s3:::partner-payouts/*",
                "anomaly",
            ),
        )
        .await?;
    let incident = body["incident"].as_str().unwrap_or_default().to_string();
    daemon.wait_status(&incident, "contained", WAIT).await?;
    assert!(f
        .inline_names()
        .await?
        .contains(&format!("firebreak-{incident}")));
    daemon.wait_status(&incident, "expired", WAIT).await?;
    assert!(
        !f.inline_names()
            .await?
            .contains(&format!("firebreak-{incident}")),
        "expiry removed the deny"
    );
    Ok(())
}

#[tokio::test]
async fn a_flood_of_alerts_stops_at_the_budget_and_escalates() -> Result<()> {
    let f = fixture("agent-j", &[("ledger-read", LEDGER)], &[("s3", S3_BROAD)]).await?;
    let daemon =
        f.ws.start(&DaemonOptions {
            budget: (100, 100, 2),
            ..f.options()
        })
        .await?;
    let mut statuses = Vec::new();
    for i in 0..6 {
        let (_, body) = daemon
            .post(
                "/v1/alerts",
                &alert(
                    &format!("j-{i}"),
                    "agent-j",
                    &format!("arn:aws:s3:::exfil-{i}/*"),
                    "attack-attempt",
                ),
            )
            .await?;
        statuses.push((
            body["status"].as_str().unwrap_or_default().to_string(),
            body["plan"]["escalation"].clone(),
        ));
    }
    let automatic = statuses.iter().filter(|(s, _)| s == "applying").count();
    assert_eq!(
        automatic, 2,
        "two automatic actions per agent per minute: {statuses:?}"
    );
    for (status, escalation) in statuses.iter().skip(2) {
        assert_eq!(status, "awaiting-approval");
        assert!(
            escalation.as_str().is_some_and(|e| e.contains("budget")),
            "{escalation}"
        );
    }
    let (_, metrics) = daemon.get("/metrics").await?;
    assert!(
        metrics
            .as_str()
            .is_some_and(|m| m.contains("firebreak_budget_exhausted_total 4")),
        "{metrics}"
    );
    Ok(())
}

#[tokio::test]
async fn a_learning_envelope_is_planned_and_escalated_but_never_acted_on() -> Result<()> {
    let f = fixture_on(
        moto::shared(),
        "agent-k",
        &[("ledger-read", LEDGER)],
        &[("s3", S3_BROAD)],
        "learning",
    )
    .await?;
    let daemon = f.ws.start(&f.options()).await?;
    let (status, body) = daemon
        .post(
            "/v1/alerts",
            &alert(
                "k-1",
                "agent-k",
                "arn:aws:s3:::partner-payouts/*",
                "attack-attempt",
            ),
        )
        .await?;
    assert_eq!(status, 202);
    assert_eq!(body["status"], "awaiting-approval", "{body}");
    assert!(body["plan"]["escalation"]
        .as_str()
        .is_some_and(|e| e.contains("learning")));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        f.role_requests("PutRolePolicy").await?,
        1,
        "only the seeding write"
    );
    Ok(())
}
