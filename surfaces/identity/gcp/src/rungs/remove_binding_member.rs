//! `gcp.remove_binding_member` (rung 0): one member out of one binding of a project's IAM
//! policy. The binding's other members keep it; revert re-adds the member, re-creating the
//! binding with its condition if it has gone meanwhile.

use firebreak_containment::plane::{
    Change, Check, KindSpec, Outcome, PlaneError, Proposal, Verification,
};
use serde::{Deserialize, Serialize};

use super::read_back;
use crate::client::{Api, Edit, PolicyOf};
use crate::ladder::Ladder;
use crate::names::Permission;
use crate::plane::GcpSpec;
use crate::policy::{add_member, lists, remove_member, Binding};

pub static REMOVE_BINDING_MEMBER: KindSpec =
    KindSpec::durable("gcp", "gcp.remove_binding_member", 0, false);

/// Remove `member` from `binding` of `project`'s policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Spec {
    pub project: String,
    pub member: String,
    /// The binding as read: the pre-image revert restores the member into.
    pub binding: Binding,
    pub breach: Permission,
}

/// One candidate per binding that grants the breach to one of the agent's principals.
pub fn propose(ladder: &Ladder<'_>) -> Vec<Proposal<GcpSpec>> {
    let state = ladder.state;
    let all = ladder.principals();
    ladder
        .grants
        .iter()
        .map(|grant| {
            let after = state.without_member(&grant.project, &grant.binding, &grant.member);
            let still = state.breach_grants(&after, &all).into_iter().next();
            let keep = grant.binding.members.len() - 1;
            let mut notes = ladder.notes.clone();
            if let Some(c) = &grant.binding.condition {
                notes.push(format!(
                    "the binding is conditional ({}): treated as granting",
                    c.expression
                ));
            }
            Proposal {
                target: format!(
                    "projects/{} {} member {}",
                    grant.project, grant.binding, grant.member
                ),
                granularity: format!(
                    "one member of one binding: {} loses {} on project {}; the binding's {keep} other \
                     member(s) keep it",
                    grant.member, grant.binding, grant.project
                ),
                blast_radius: ladder.blast(ladder.uses(), &after, &all),
                blocks: still.is_none(),
                inverse: format!(
                    "re-add {} to {} on project {} (setIamPolicy with the etag)",
                    grant.member, grant.binding, grant.project
                ),
                verify: format!(
                    "getIamPolicy of project {} shows {} without {} and with its other members",
                    grant.project, grant.binding, grant.member
                ),
                rejected: still
                    .map(|s| format!("another binding still grants {}: {s}", state.breach)),
                notes,
                spec: GcpSpec::RemoveBindingMember(Spec {
                    project: grant.project.clone(),
                    member: grant.member.clone(),
                    binding: grant.binding.clone(),
                    breach: state.breach.clone(),
                }),
            }
        })
        .collect()
}

impl Spec {
    pub async fn change(&self, api: &Api, change: Change) -> Result<Outcome, PlaneError> {
        let Spec {
            project,
            member,
            binding,
            ..
        } = self;
        let of = PolicyOf::Project(project);
        match change {
            Change::Apply => {
                api.edit_policy(of, |policy| {
                    if remove_member(policy, binding, member) {
                        Edit::Write(format!("removed {member} from {binding} on {of}"))
                    } else {
                        Edit::Done(format!("{binding} on {of} does not list {member}"))
                    }
                })
                .await
            }
            Change::Revert => {
                api.edit_policy(of, |policy| {
                    if add_member(policy, binding, member) {
                        Edit::Write(format!("re-added {member} to {binding} on {of}"))
                    } else {
                        Edit::Done(format!("{binding} on {of} lists {member}"))
                    }
                })
                .await
            }
        }
    }

    /// Reads the project's policy back: the member is out of (or back in) the binding.
    pub async fn check(&self, api: &Api, check: Check) -> Result<Verification, PlaneError> {
        let of = PolicyOf::Project(&self.project);
        let policy = api.policy(of).await?;
        let listed = lists(&policy, &self.binding, &self.member);
        Ok(read_back(
            listed == (check == Check::Reverted),
            format!(
                "{} on {of} {} {}",
                self.binding,
                if listed { "lists" } else { "does not list" },
                self.member
            ),
        ))
    }
}
