//! `aws.trust_deny` (approval only): a Deny for this ServiceAccount in the role's trust policy
//! (IRSA: its token subject; Pod Identity: its request tags). It stops new credentials only:
//! sessions issued before it live on, so it is a link cut, followed by `aws.revoke_sessions`.

use firebreak_containment::plan::BlastRadius;
use firebreak_containment::plane::{Change, Check, Outcome, PlaneError, Proposal, Verification};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{sid, Agent, AwsSpec, Link, POD_IDENTITY_SERVICE};
use crate::client::{refused, Iam};
use crate::role::RoleState;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    pub role_name: String,
    pub statement: Value,
    pub pre_image: Value,
}

/// The trust-policy Deny that stops new credentials for the agent's ServiceAccount only, or
/// why there is none.
pub(crate) fn cut(role: &RoleState, agent: &Agent<'_>, link: &Link) -> Result<Value, String> {
    let sid = sid("FirebreakTrustDeny", &[&agent.subject]);
    match link {
        Link::Irsa(provider_arn) => {
            let issuer = provider_arn
                .split_once("oidc-provider/")
                .map(|(_, host)| host)
                .unwrap_or(provider_arn);
            Ok(json!({
                "Sid": sid,
                "Effect": "Deny",
                "Principal": {"Federated": provider_arn},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {"StringEquals": {format!("{issuer}:sub"): agent.subject}}
            }))
        }
        Link::PodIdentity => {
            if let Some(pi) = &role.pod_identity {
                if pi.agent.iter().any(|a| a.disable_session_tags == Some(true)) {
                    return Err(format!(
                        "the Pod Identity association of {} disables session tags: a Deny on request tags would never match; cut the link with eks.delete_pod_identity_association",
                        agent.name()
                    ));
                }
            }
            // EKS's Pod Identity agent calls AssumeRole and TagSession with these tags.
            let mut tags = serde_json::Map::new();
            tags.insert(
                "aws:RequestTag/kubernetes-namespace".into(),
                agent.namespace.into(),
            );
            tags.insert(
                "aws:RequestTag/kubernetes-service-account".into(),
                agent.service_account.into(),
            );
            if let Some(pi) = &role.pod_identity {
                tags.insert(
                    "aws:RequestTag/eks-cluster-name".into(),
                    pi.cluster.clone().into(),
                );
            }
            Ok(json!({
                "Sid": sid,
                "Effect": "Deny",
                "Principal": {"Service": POD_IDENTITY_SERVICE},
                "Action": ["sts:AssumeRole", "sts:TagSession"],
                "Condition": {"StringEquals": tags}
            }))
        }
        Link::Unknown => Err(format!(
            "the trust policy trusts neither an IRSA OIDC provider nor EKS Pod Identity ({POD_IDENTITY_SERVICE}): no ServiceAccount link to narrow"
        )),
    }
}

pub(crate) fn propose(
    role: &RoleState,
    agent: &Agent<'_>,
    cut: &Result<Value, String>,
    everything: BlastRadius,
) -> Proposal<AwsSpec> {
    let via = match cut {
        Ok(s) if s["Principal"]["Service"] == POD_IDENTITY_SERVICE => "Pod Identity",
        _ => "IRSA",
    };
    Proposal {
        blast_radius: everything,
        blocks: cut.is_ok(),
        inverse: "remove the Deny from the trust policy".into(),
        verify: "read back the trust policy: the Deny for this ServiceAccount is present".into(),
        rejected: cut.as_ref().err().cloned(),
        notes: vec![
            "cuts the federation link only: credentials issued before it stay valid until they expire (1 h by default); follow with aws.revoke_sessions".into(),
        ],
        ..Proposal::new(
            format!("{} trust policy", role.arn),
            format!("new {via} credentials for ServiceAccount {}", agent.subject),
            AwsSpec::TrustDeny(Spec {
                role_name: role.name.clone(),
                statement: cut.as_ref().cloned().unwrap_or(Value::Null),
                pre_image: role.trust.raw.clone(),
            }),
        )
    }
}

pub(crate) async fn change(iam: &Iam, spec: &Spec, change: Change) -> Result<Outcome, PlaneError> {
    let role = &spec.role_name;
    let mut trust = iam.trust_document(role).await?;
    let list = statement_list(&mut trust)?;
    let present = list.contains(&spec.statement);
    Ok(match (change, present) {
        (Change::Apply, true) => Outcome::unchanged("the trust policy already holds the deny"),
        (Change::Apply, false) => {
            list.push(spec.statement.clone());
            iam.put_trust(role, &trust).await?;
            Outcome::changed(format!("added a Deny to the trust policy of {role}"))
        }
        (Change::Revert, false) => Outcome::unchanged("the trust policy holds no Firebreak deny"),
        (Change::Revert, true) => {
            // Remove only our statement: later edits by others to the trust policy survive.
            list.retain(|s| s != &spec.statement);
            iam.put_trust(role, &trust).await?;
            Outcome::changed(format!("removed the Deny from the trust policy of {role}"))
        }
    })
}

pub(crate) async fn check(
    iam: &Iam,
    spec: &Spec,
    check: Check,
) -> Result<Verification, PlaneError> {
    let mut trust = iam.trust_document(&spec.role_name).await?;
    let present = statement_list(&mut trust)?.contains(&spec.statement);
    Ok(match (check, present) {
        (Check::Applied, true) => Verification::ok("the trust policy holds the deny"),
        (Check::Applied, false) => Verification::failed("the trust policy lacks the deny"),
        (Check::Reverted, true) => Verification::failed("the trust policy still holds the deny"),
        (Check::Reverted, false) => Verification::ok("the trust policy no longer holds the deny"),
    })
}

/// The `Statement` array of a document, made an array if IAM returned a single object.
fn statement_list(doc: &mut Value) -> Result<&mut Vec<Value>, PlaneError> {
    let obj = doc
        .as_object_mut()
        .ok_or_else(|| refused("the trust policy is not a JSON object"))?;
    let entry = obj
        .entry("Statement")
        .or_insert_with(|| Value::Array(vec![]));
    if !entry.is_array() {
        *entry = Value::Array(vec![entry.take()]);
    }
    entry
        .as_array_mut()
        .ok_or_else(|| refused("the trust policy Statement is not a list"))
}
