//! An agent on AWS IAM for the daemon's end-to-end tests: a role seeded on moto, the agent's
//! envelope naming it, and alerts about it. Shared by tests/e2e/aws.rs and tests/e2e/journal.rs.

use anyhow::Result;
use firebreak_e2e::daemon::{DaemonOptions, Workspace};
use firebreak_e2e::moto::{self, Moto};
use firebreak_e2e::{decode_policy, seed_role};
use serde_json::{json, Value};

use super::BIN;

pub const ISSUER: &str = "oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B716D3041E";

pub fn trust(service_account: &str) -> String {
    json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow",
        "Principal": {"Federated": format!("arn:aws:iam::123456789012:oidc-provider/{ISSUER}")},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {format!("{ISSUER}:sub"): format!("system:serviceaccount:payments:{service_account}")}}
    }]})
    .to_string()
}

/// An agent `name` in namespace payments whose role is `name`, with the walk-through envelope.
pub fn envelope(name: &str, status: &str) -> String {
    format!(
        r#"apiVersion: firebreak.dev/v1alpha1
kind: Envelope
metadata: {{name: {name}, namespace: payments}}
spec:
  agent: {{cluster: prod-eks, namespace: payments, workload: Deployment/{name}, serviceAccount: {name}}}
  version: 3
  status: {status}
  identity:
    principals: [arn:aws:iam::123456789012:role/{name}]
    observed:
      - {{action: s3:GetObject, resource: "arn:aws:s3:::invoices/*", closure: structural, count: 900, sessions: 80}}
      - {{action: s3:PutObject, resource: "arn:aws:s3:::payment-receipts/*", closure: structural, count: 400, sessions: 60}}
      - {{action: dynamodb:GetItem, resource: "arn:aws:dynamodb:us-east-1:123456789012:table/ledger", closure: literal, count: 5000, sessions: 200}}
      - {{action: sqs:SendMessage, resource: "arn:aws:sqs:us-east-1:123456789012:events", closure: literal, count: 1, sessions: 1}}
"#
    )
}

pub fn alert(id: &str, name: &str, resource: &str, tier: &str) -> Value {
    json!({
        "id": id, "source": "test", "time": "2026-11-22T02:47:00Z",
        "agent": {"cluster": "prod-eks", "namespace": "payments",
                  "workload": format!("Deployment/{name}"), "serviceAccount": name},
        "dimension": "identity",
        "parameter": {"action": "s3:PutObject", "resource": resource},
        "tier": tier, "severity": "critical", "evidence": {}
    })
}

pub struct Fixture {
    pub moto: &'static Moto,
    pub iam: aws_sdk_iam::Client,
    pub ws: Workspace,
    pub name: String,
}

/// A role `name` with the given inline and managed policies, and an agent whose envelope uses it.
pub async fn fixture(
    name: &str,
    inline: &[(&str, &str)],
    managed: &[(&str, &str)],
) -> Result<Fixture> {
    fixture_on(moto::shared(), name, inline, managed, "converged").await
}

pub async fn fixture_on(
    moto: &'static Moto,
    name: &str,
    inline: &[(&str, &str)],
    managed: &[(&str, &str)],
    status: &str,
) -> Result<Fixture> {
    let iam = moto.iam_client().await;
    let managed: Vec<(String, &str)> = managed
        .iter()
        .map(|(n, d)| (format!("{name}-{n}"), *d))
        .collect();
    let managed_refs: Vec<(&str, &str)> = managed.iter().map(|(n, d)| (n.as_str(), *d)).collect();
    seed_role(&iam, name, &trust(name), inline, &managed_refs).await?;
    let ws = Workspace::new(BIN)?;
    ws.add_envelope(name, &envelope(name, status))?;
    Ok(Fixture {
        moto,
        iam,
        ws,
        name: name.to_string(),
    })
}

impl Fixture {
    pub fn options(&self) -> DaemonOptions {
        DaemonOptions::new(self.moto.endpoint())
    }

    /// Every request moto received naming this fixture's role, by action.
    pub async fn role_requests(&self, action: &str) -> Result<usize> {
        Ok(self
            .moto
            .iam_requests()
            .await?
            .iter()
            .filter(|r| r.action == action && r.param("RoleName") == Some(self.name.as_str()))
            .count())
    }

    pub async fn inline_names(&self) -> Result<Vec<String>> {
        Ok(self
            .iam
            .list_role_policies()
            .role_name(&self.name)
            .send()
            .await?
            .policy_names()
            .to_vec())
    }

    pub async fn inline_document(&self, policy: &str) -> Result<Value> {
        let out = self
            .iam
            .get_role_policy()
            .role_name(&self.name)
            .policy_name(policy)
            .send()
            .await?;
        Ok(decode_policy(out.policy_document()))
    }

    pub async fn attached(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = self
            .iam
            .list_attached_role_policies()
            .role_name(&self.name)
            .send()
            .await?
            .attached_policies()
            .iter()
            .filter_map(|p| p.policy_name().map(str::to_string))
            .collect();
        names.sort();
        Ok(names)
    }
}
