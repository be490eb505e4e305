//! `aws.revoke_sessions` (approval only): the documented "revoke active sessions", a
//! daemon-owned inline Deny of everything for credentials issued before the moment of apply
//! (`aws:TokenIssueTime`). Alone it does nothing against IRSA or Pod Identity (the pod gets
//! fresh credentials), so it is proposed only once the link is cut.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_iam::primitives::{DateTime, DateTimeFormat};
use firebreak_containment::plan::BlastRadius;
use firebreak_containment::plane::{
    Change, Check, Outcome, PlanInput, PlaneError, Proposal, Verification,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{
    merge_statements, parse_statement, revocation_policy_name, trusts_pod_identity, Agent, AwsSpec,
    Link, SessionScope,
};
use crate::client::{parse, refused, Iam};
use crate::policy::{deny_statement, PolicyDocument, Statement};
use crate::role::RoleState;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    pub role_name: String,
    pub policy_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<SessionScope>,
}

/// How the agent's link to the role is already cut, if it is: revoking sessions before
/// that is pointless, the pod would get fresh credentials at once.
pub(crate) fn link_cut(
    role: &RoleState,
    agent: &Agent<'_>,
    link: &Link,
    trust_cut: Option<&Value>,
) -> Option<String> {
    let no_association = role
        .pod_identity
        .as_ref()
        .filter(|pi| pi.agent.is_empty())
        .map(|pi| {
            format!(
                "no Pod Identity association of {} in cluster {} uses the role",
                agent.name(),
                pi.cluster
            )
        });
    let denied = trust_cut
        .and_then(parse_statement)
        .is_some_and(|ours| role.trust.document.statements.contains(&ours))
        .then(|| {
            format!(
                "the trust policy holds Firebreak's Deny for {}",
                agent.subject
            )
        });
    match link {
        // A role trusting both IRSA and Pod Identity: the IRSA deny leaves Pod Identity open.
        Link::Irsa(_) if trusts_pod_identity(&role.trust.document) => {
            denied.zip(no_association).map(|(a, b)| format!("{a}; {b}"))
        }
        Link::Irsa(_) | Link::Unknown => denied,
        Link::PodIdentity => denied.or(no_association),
    }
}

pub(crate) fn propose(
    role: &RoleState,
    input: &PlanInput<'_>,
    scope: Option<&SessionScope>,
    cut: Option<String>,
    mut radius: BlastRadius,
) -> Proposal<AwsSpec> {
    let policy_name = revocation_policy_name(input.incident);
    if scope.is_none() {
        radius.items.extend(role.sharing().iter().map(|other| {
            format!(
                "every session of ServiceAccount {} issued before the revocation (it shares the role)",
                other.service_account()
            )
        }));
        radius.broken = radius.items.len();
    }
    let example = merge_statements(&[], &[revocation_statement("2026-01-01T00:00:00Z", scope)]);
    let rejected = match &cut {
        None => Some(
            "only after a trust cut: alone it does nothing, the pod gets fresh credentials (IRSA re-assumes, Pod Identity re-issues); cut the link first with aws.trust_deny or eks.delete_pod_identity_association"
                .to_string(),
        ),
        Some(_) => role.over_budget(&policy_name, &example.to_value(), "the revocation"),
    };
    let mut notes = vec![
        "denies every action to credentials issued before the moment of apply (aws:TokenIssueTime); credentials issued later are governed by the cut link".to_string(),
    ];
    notes.extend(cut.iter().map(|why| format!("the link is cut: {why}")));
    let granularity = match scope {
        Some(s) => format!(
            "sessions of ServiceAccount {}/{} on role {} issued before the revocation",
            s.namespace, s.service_account, role.name
        ),
        None => format!(
            "every session of role {} issued before the revocation",
            role.name
        ),
    };
    Proposal {
        blast_radius: radius,
        blocks: cut.is_some(),
        inverse: format!("delete inline policy {policy_name}"),
        verify: format!(
            "read back {policy_name}: a Deny of everything before the issue time of apply"
        ),
        rejected,
        notes,
        ..Proposal::new(
            role.arn.clone(),
            granularity,
            AwsSpec::RevokeSessions(Spec {
                role_name: role.name.clone(),
                policy_name,
                scope: scope.cloned(),
            }),
        )
    }
}

/// The cut-off the policy revokes before, if it holds exactly Firebreak's revocation.
async fn read(iam: &Iam, spec: &Spec) -> Result<(bool, Option<String>), PlaneError> {
    let current = iam
        .inline_document(&spec.role_name, &spec.policy_name)
        .await?;
    let cutoff = match &current {
        Some(doc) => revocation_cutoff(&parse(doc, &spec.policy_name)?, spec.scope.as_ref()),
        None => None,
    };
    Ok((current.is_some(), cutoff))
}

pub(crate) async fn change(iam: &Iam, spec: &Spec, change: Change) -> Result<Outcome, PlaneError> {
    let (role, policy) = (&spec.role_name, &spec.policy_name);
    let (exists, revokes_before) = read(iam, spec).await?;
    Ok(match (change, revokes_before, exists) {
        (Change::Apply, Some(cutoff), _) => Outcome::unchanged(format!(
            "{policy} already revokes sessions issued before {cutoff}"
        )),
        (Change::Apply, None, _) => {
            let cutoff = issue_time_cutoff()?;
            let document =
                merge_statements(&[], &[revocation_statement(&cutoff, spec.scope.as_ref())]);
            iam.put_inline(role, policy, &document.to_value()).await?;
            Outcome::changed(format!(
                "put {policy} on {role}: sessions issued before {cutoff} are denied everything"
            ))
        }
        (Change::Revert, _, false) => Outcome::unchanged(format!("{policy} was already gone")),
        (Change::Revert, _, true) => match iam.delete_inline(role, policy).await? {
            true => Outcome::changed(format!("deleted {policy}")),
            false => Outcome::unchanged(format!("{policy} was already gone")),
        },
    })
}

pub(crate) async fn check(
    iam: &Iam,
    spec: &Spec,
    check: Check,
) -> Result<Verification, PlaneError> {
    let policy = &spec.policy_name;
    let (exists, revokes_before) = read(iam, spec).await?;
    Ok(match (check, revokes_before, exists) {
        (Check::Applied, Some(cutoff), _) => Verification::ok(format!(
            "{policy} read back: sessions issued before {cutoff} are denied"
        )),
        (Check::Applied, None, _) => {
            Verification::failed(format!("{policy} does not hold the session revocation"))
        }
        (Check::Reverted, _, false) => Verification::ok(format!("{policy} is gone")),
        (Check::Reverted, _, true) => Verification::failed(format!("{policy} still exists")),
    })
}

/// The revocation Deny: every action, for credentials issued before `issued_before` (ISO 8601),
/// limited to one ServiceAccount's sessions when `scope` is set.
pub fn revocation_statement(issued_before: &str, scope: Option<&SessionScope>) -> Statement {
    let mut condition = json!({"DateLessThan": {"aws:TokenIssueTime": issued_before}});
    if let Some(scope) = scope {
        condition["StringEquals"] = scope.tags();
    }
    let mut statement = deny_statement(REVOCATION_SID, &["*".to_string()], &["*".to_string()]);
    statement.condition = Some(condition);
    statement
}

pub const REVOCATION_SID: &str = "FirebreakRevokeOlderSessions";

/// The issue-time cut-off of a revocation policy, if it is exactly Firebreak's revocation.
fn revocation_cutoff(doc: &PolicyDocument, scope: Option<&SessionScope>) -> Option<String> {
    doc.statements.iter().find_map(|s| {
        let cutoff = s
            .condition
            .as_ref()?
            .get("DateLessThan")?
            .get("aws:TokenIssueTime")?
            .as_str()?;
        (s.sid.as_deref() == Some(REVOCATION_SID) && *s == revocation_statement(cutoff, scope))
            .then(|| cutoff.to_string())
    })
}

/// Now, rounded up to the next second (ISO 8601): every credential issued up to the moment of
/// apply is older.
fn issue_time_cutoff() -> Result<String, PlaneError> {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| refused(&format!("the system clock is before 1970: {e}")))?;
    let seconds = i64::try_from(since_epoch.as_secs())
        .map_err(|e| refused(&format!("the system clock is out of range: {e}")))?;
    DateTime::from_secs(seconds + 1)
        .fmt(DateTimeFormat::DateTime)
        .map_err(|e| refused(&format!("cannot format the revocation time: {e}")))
}
