//! `aws.detach_policy`: one managed policy detached from the role. It takes every permission
//! of that policy, from every session of the role; chosen only when that breaks nothing the
//! envelope needs. Rollback attaches it again.

use firebreak_containment::plane::{Change, Check, Outcome, PlaneError, Proposal, Verification};
use serde::{Deserialize, Serialize};

use super::{AwsSpec, Baseline, Removal};
use crate::client::Iam;
use crate::policy::Request;
use crate::role::{ObservedPolicy, RoleState};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    pub role_name: String,
    pub policy_arn: String,
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
            spec: AwsSpec::DetachPolicy(Spec {
                role_name: role.name.clone(),
                policy_arn: policy.id.clone(),
            }),
            granularity: format!(
                "every permission of managed policy {} on role {}",
                policy.name, role.name
            ),
            inverse: format!("attach {} again", policy.id),
            verify: format!("list the role's attached policies: {} is absent", policy.id),
        },
    )
}

pub(crate) async fn change(iam: &Iam, spec: &Spec, change: Change) -> Result<Outcome, PlaneError> {
    let (role, arn) = (&spec.role_name, &spec.policy_arn);
    let attached = iam.attached(role, arn).await?;
    Ok(match (change, attached) {
        (Change::Apply, false) => Outcome::unchanged(format!("{arn} is not attached to {role}")),
        (Change::Apply, true) => match iam.detach(role, arn).await? {
            true => Outcome::changed(format!("detached {arn} from {role}")),
            false => Outcome::unchanged(format!("{arn} was not attached to {role}")),
        },
        (Change::Revert, true) => Outcome::unchanged(format!("{arn} is attached")),
        (Change::Revert, false) => {
            iam.attach(role, arn).await?;
            Outcome::changed(format!("attached {arn} to {role} again"))
        }
    })
}

pub(crate) async fn check(
    iam: &Iam,
    spec: &Spec,
    check: Check,
) -> Result<Verification, PlaneError> {
    let (role, arn) = (&spec.role_name, &spec.policy_arn);
    let attached = iam.attached(role, arn).await?;
    Ok(match (check, attached) {
        (Check::Applied, true) => Verification::failed(format!("{arn} is still attached")),
        (Check::Applied, false) => Verification::ok(format!("{arn} is detached from {role}")),
        (Check::Reverted, true) => Verification::ok(format!("{arn} is attached to {role}")),
        (Check::Reverted, false) => Verification::failed(format!("{arn} is not attached")),
    })
}
