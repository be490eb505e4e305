//! `aws.delete_inline_policy`: one inline policy of the role deleted, its document journaled
//! as the pre-image so rollback puts back exactly what was there.

use firebreak_containment::plane::{Change, Check, Outcome, PlaneError, Proposal, Verification};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{AwsSpec, Baseline, Removal};
use crate::client::Iam;
use crate::policy::Request;
use crate::role::{ObservedPolicy, RoleState};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    pub role_name: String,
    pub policy_name: String,
    pub pre_image: Value,
}

pub(crate) fn propose(
    role: &RoleState,
    policy: &ObservedPolicy,
    breach: &Request<'_>,
    base: &Baseline<'_>,
) -> Proposal<AwsSpec> {
    role.remove_candidate(
        policy,
        breach,
        base,
        Removal {
            spec: AwsSpec::DeleteInlinePolicy(Spec {
                role_name: role.name.clone(),
                policy_name: policy.name.clone(),
                pre_image: policy.raw.clone(),
            }),
            granularity: format!(
                "every permission of inline policy {} on role {}",
                policy.name, role.name
            ),
            inverse: format!("put {} back from the journaled pre-image", policy.name),
            verify: format!("get {}: NoSuchEntity", policy.name),
        },
    )
}

pub(crate) async fn change(iam: &Iam, spec: &Spec, change: Change) -> Result<Outcome, PlaneError> {
    let (role, policy) = (&spec.role_name, &spec.policy_name);
    let current = iam.inline_document(role, policy).await?;
    Ok(match (change, current) {
        (Change::Apply, None) => Outcome::unchanged(format!("{policy} was already gone")),
        (Change::Apply, Some(_)) => match iam.delete_inline(role, policy).await? {
            true => Outcome::changed(format!("deleted inline policy {policy} of {role}")),
            false => Outcome::unchanged(format!("{policy} was already gone")),
        },
        (Change::Revert, Some(doc)) if doc == spec.pre_image => {
            Outcome::unchanged(format!("{policy} is in place"))
        }
        (Change::Revert, _) => {
            iam.put_inline(role, policy, &spec.pre_image).await?;
            Outcome::changed(format!("restored {policy} from its pre-image"))
        }
    })
}

pub(crate) async fn check(
    iam: &Iam,
    spec: &Spec,
    check: Check,
) -> Result<Verification, PlaneError> {
    let policy = &spec.policy_name;
    let current = iam.inline_document(&spec.role_name, policy).await?;
    Ok(match (check, current) {
        (Check::Applied, None) => Verification::ok(format!("{policy} is gone")),
        (Check::Applied, Some(_)) => Verification::failed(format!("{policy} still exists")),
        (Check::Reverted, Some(doc)) if doc == spec.pre_image => {
            Verification::ok(format!("{policy} matches its pre-image"))
        }
        (Check::Reverted, Some(_)) => {
            Verification::failed(format!("{policy} differs from its pre-image"))
        }
        (Check::Reverted, None) => Verification::failed(format!("{policy} is absent")),
    })
}
