//! The MCP tool gateway inside the real `firebreak serve`, between the official Python MCP
//! client and a FastMCP upstream: `firebreak contain` (a client of the daemon) revokes one tool
//! at the gateway the daemon serves, and `--offline` refuses to act on a breach only the
//! daemon's memory can enforce.

// Shared with the tools tests, which use the rest of it.
#[allow(dead_code)]
#[path = "tools/harness.rs"]
mod harness;

use anyhow::{bail, Result};
use firebreak_e2e::daemon::{DaemonOptions, Workspace};
use harness::{Agent, Server};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_firebreak");
const TOKEN: &str = "token-payment-agent-0001";

const ENVELOPE: &str = "apiVersion: firebreak.dev/v1alpha1\nkind: Envelope\n\
metadata: {name: payment-agent}\nspec:\n  \
agent: {cluster: prod, namespace: payments, workload: Deployment/payment-agent, serviceAccount: payment-agent}\n  \
version: 3\n  status: converged\n  tools:\n    observed:\n      \
- {server: fastmcp, tool: echo, closure: literal, count: 50, sessions: 9}\n";

fn alert(id: &str) -> Value {
    json!({
        "id": id, "source": "test", "time": chrono::Utc::now(),
        "agent": {"cluster": "prod", "namespace": "payments",
                  "workload": "Deployment/payment-agent", "serviceAccount": "payment-agent"},
        "dimension": "tools",
        "parameter": {"server": "fastmcp", "tool": "export_payouts"},
        "tier": "anomaly", "severity": "high",
    })
}

/// A daemon config with the gateway in front of `upstream`; AWS points nowhere (no tools alert
/// reaches it).
fn options(upstream: &str, gateway_port: u16) -> DaemonOptions {
    let mut options = DaemonOptions::new("http://127.0.0.1:9".into());
    options.extra_config = format!(
        "gateway:\n  listen: 127.0.0.1:{gateway_port}\n  \
         upstreams:\n    fastmcp: {{url: {upstream:?}}}\n  \
         agents: {{{TOKEN:?}: prod/payments/Deployment/payment-agent}}\n"
    );
    options
}

#[tokio::test]
async fn contain_through_the_daemon_revokes_the_tool_at_its_gateway_and_offline_refuses(
) -> Result<()> {
    let upstream = Server::fastmcp()?;
    let ws = Workspace::new(BIN)?;
    ws.add_envelope("payment-agent", ENVELOPE)?;
    let gateway_port = harness::free_port()?;
    let opts = options(&upstream.url, gateway_port);
    let first = ws.path().join("t-1.json");
    std::fs::write(&first, alert("t-1").to_string())?;
    let first = first.display().to_string();

    let daemon = ws.start(&opts).await?;
    let url = format!("http://127.0.0.1:{gateway_port}/mcp/fastmcp");
    let mut agent = Agent::start(&url, TOKEN, "2026-07-28").await?;
    let payout = json!({"account": "acme"});
    let before = agent.call("export_payouts", payout.clone()).await?;
    assert!(!before.is_error, "served before the incident: {before:?}");

    let (code, stdout, stderr) = daemon.cli(&[
        "--output", "json", "contain", "--by", "alice", "--alert", &first,
    ])?;
    assert_eq!(code, 0, "{stdout}{stderr}");
    let out: Value = serde_json::from_str(&stdout)?;
    assert_eq!(out["status"], "contained", "{out:#}");
    assert_eq!(
        out["plan"]["chosen"]["kind"], "tools.revoke_tool",
        "{out:#}"
    );
    // The enforcement point: the daemon's gateway refuses the tool on the next call, and the
    // rest of the envelope keeps working.
    let refusal = agent.until_refused("export_payouts", &payout).await?;
    assert!(refusal.contains("export_payouts"), "{refusal}");
    let echo = agent.call("echo", json!({"text": "still here"})).await?;
    assert!(!echo.is_error, "{echo:?}");
    let incident = out["incident"].as_str().unwrap_or_default().to_string();
    drop(agent);
    drop(daemon);

    // Without the daemon, --offline will not contain (nothing would stay in force) nor roll
    // back (nothing in this process holds the revocation) a tools breach, and journals nothing.
    let journal = |ws: &Workspace| -> Result<String> {
        let (code, shown, stderr) = ws.cli(&opts, &["--output", "json", "incidents", "list"])?;
        if code != 0 {
            bail!("incidents list: {stderr}");
        }
        Ok(shown)
    };
    let before = journal(&ws)?;
    let second = ws.path().join("t-2.json");
    std::fs::write(&second, alert("t-2").to_string())?;
    let second = second.display().to_string();
    let (code, _, stderr) = ws.cli(
        &opts,
        &["contain", "--offline", "--by", "alice", "--alert", &second],
    )?;
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("gateway") && stderr.contains("firebreak serve"),
        "{stderr}"
    );
    let (code, _, stderr) = ws.cli(
        &opts,
        &["rollback", "--offline", "--by", "alice", &incident],
    )?;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("gateway"), "{stderr}");
    assert_eq!(journal(&ws)?, before, "nothing journaled");

    // The restarted daemon still refuses the tool: the revocation is in the journal.
    let daemon = ws.start(&opts).await?;
    let mut agent = Agent::start(&url, TOKEN, "2026-07-28").await?;
    agent.until_refused("export_payouts", &payout).await?;
    let (code, stdout, stderr) = daemon.cli(&["rollback", "--by", "alice", &incident])?;
    assert_eq!(code, 0, "{stdout}{stderr}");
    let after = agent.call("export_payouts", payout).await?;
    assert!(
        !after.is_error,
        "served again after the rollback: {after:?}"
    );
    Ok(())
}
