//! `gcp.remove_wi_user` (rung 2): cuts the Workload Identity link, the agent's Kubernetes
//! ServiceAccount member in `roles/iam.workloadIdentityUser` on the Google service account it
//! impersonates. Only proposed when `gcp.workloadPool` names the pool.

use firebreak_containment::plane::{
    Change, Check, KindSpec, Outcome, PlaneError, Proposal, Verification,
};
use serde::{Deserialize, Serialize};

use super::read_back;
use crate::client::{Api, Edit, PolicyOf};
use crate::ladder::Ladder;
use crate::names::WI_USER_ROLE;
use crate::plane::GcpSpec;
use crate::policy::{add_member, from_api, lists, remove_member, role_lists, Binding};

pub static REMOVE_WI_USER: KindSpec = KindSpec::durable("gcp", "gcp.remove_wi_user", 2, false);

/// Remove `member` from the `roles/iam.workloadIdentityUser` bindings of the service account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Spec {
    /// `projects/-/serviceAccounts/EMAIL`.
    pub service_account: String,
    /// `serviceAccount:POOL[NAMESPACE/KSA]`.
    pub member: String,
    /// The bindings that listed the member, as read: the pre-images revert restores.
    pub bindings: Vec<Binding>,
}

/// One candidate per service account the breach goes through whose policy links the agent.
pub fn propose(ladder: &Ladder<'_>) -> Vec<Proposal<GcpSpec>> {
    let Some(member) = &ladder.state.ksa_member else {
        return Vec::new();
    };
    ladder
        .service_accounts()
        .into_iter()
        .filter_map(|through| {
            let bindings: Vec<Binding> = through
                .account
                .bindings
                .iter()
                .filter(|b| b.role == WI_USER_ROLE && b.members.contains(member))
                .cloned()
                .collect();
            if bindings.is_empty() {
                return None;
            }
            let email = &through.account.email;
            let name = through.name;
            let mut notes = ladder.notes.clone();
            notes.push(format!(
                "link cut only: access tokens already issued to the pod for {email} live on until they \
                 expire (up to 1 h); permission-side rungs stop them"
            ));
            Some(Proposal {
                target: format!("{name} {WI_USER_ROLE} member {member}"),
                granularity: format!(
                    "the agent's Kubernetes ServiceAccount can no longer impersonate {email}: every \
                     permission it held through it goes"
                ),
                blast_radius: through.blast_radius,
                blocks: through.still.is_none(),
                inverse: format!("re-add {member} to {WI_USER_ROLE} on {name}"),
                verify: format!("getIamPolicy of {name} shows {WI_USER_ROLE} without {member}"),
                rejected: through
                    .still
                    .map(|s| format!("the breach stays granted through {s}")),
                notes,
                spec: GcpSpec::RemoveWiUser(Spec {
                    service_account: name,
                    member: member.clone(),
                    bindings,
                }),
            })
        })
        .collect()
}

impl Spec {
    pub async fn change(&self, api: &Api, change: Change) -> Result<Outcome, PlaneError> {
        let Spec {
            service_account,
            member,
            bindings,
        } = self;
        let of = PolicyOf::ServiceAccount(service_account);
        match change {
            // Every binding of the role goes, whatever its condition: the link is the member.
            Change::Apply => {
                api.edit_policy(of, |policy| {
                    let slots: Vec<Binding> = policy
                        .bindings
                        .iter()
                        .map(from_api)
                        .filter(|b| b.role == WI_USER_ROLE)
                        .collect();
                    let mut removed = false;
                    for slot in &slots {
                        removed |= remove_member(policy, slot, member);
                    }
                    if removed {
                        Edit::Write(format!("removed {member} from {WI_USER_ROLE} on {of}"))
                    } else {
                        Edit::Done(format!("{WI_USER_ROLE} on {of} does not list {member}"))
                    }
                })
                .await
            }
            Change::Revert => {
                api.edit_policy(of, |policy| {
                    let mut added = false;
                    for binding in bindings {
                        added |= add_member(policy, binding, member);
                    }
                    if added {
                        Edit::Write(format!("re-added {member} to {WI_USER_ROLE} on {of}"))
                    } else {
                        Edit::Done(format!("{WI_USER_ROLE} on {of} lists {member}"))
                    }
                })
                .await
            }
        }
    }

    /// Reads the service account's policy back: no binding of the role lists the member, or
    /// every pre-image binding lists it again.
    pub async fn check(&self, api: &Api, check: Check) -> Result<Verification, PlaneError> {
        let of = PolicyOf::ServiceAccount(&self.service_account);
        let policy = api.policy(of).await?;
        let listed = role_lists(&policy, WI_USER_ROLE, &self.member);
        let ok = match check {
            Check::Applied => !listed,
            Check::Reverted => self
                .bindings
                .iter()
                .all(|b| lists(&policy, b, &self.member)),
        };
        Ok(read_back(
            ok,
            format!(
                "{WI_USER_ROLE} on {of} {} {}",
                if listed { "lists" } else { "does not list" },
                self.member
            ),
        ))
    }
}
