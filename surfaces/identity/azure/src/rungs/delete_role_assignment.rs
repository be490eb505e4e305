//! `azure.delete_role_assignment` (rung 0): deletes one role assignment that grants the breach,
//! the narrowest-scoped first. Revert re-creates it under the same name from its snapshot.

use firebreak_containment::plane::{
    Change, Check, KindSpec, Outcome, PlaneError, Proposal, Verification,
};
use serde::{Deserialize, Serialize};

use crate::arm::{Arm, RoleAssignment};
use crate::guarded::{ensure_deleted, ensure_present, granted_by, still_there};
use crate::ladder::{describe, Breach, Ladder, Principal};
use crate::plane::AzureSpec;

pub static DELETE_ROLE_ASSIGNMENT: KindSpec =
    KindSpec::durable("azure", "azure.delete_role_assignment", 0, false);

/// Delete `assignment`; revert re-PUTs it under the same name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Spec {
    /// The assignment as read: the pre-image revert restores.
    pub assignment: RoleAssignment,
    pub role_name: String,
    pub principal: Principal,
    pub breach: Breach,
}

/// One candidate per assignment granting the breach.
pub fn propose(ladder: &Ladder<'_>) -> Vec<Proposal<AzureSpec>> {
    let state = ladder.state;
    ladder
        .granting
        .iter()
        .map(|a| {
            let role = state.role_name(a);
            let after = state.rbac.replaced(a, &[]);
            let still = state.still_granted(&after);
            Proposal {
                target: a.id.clone(),
                granularity: format!(
                    "one role assignment: {} loses {}",
                    state.principal.identity,
                    describe(a, &role)
                ),
                blast_radius: ladder.blast(&after),
                blocks: still.is_none(),
                inverse: format!(
                    "re-create role assignment {} ({}) under the same name from its snapshot",
                    a.name,
                    describe(a, &role)
                ),
                verify: format!(
                    "ARM answers 404 for {} and no longer lists it for principal {}",
                    a.id, state.principal.principal_id
                ),
                rejected: still,
                notes: state.notes(a),
                spec: AzureSpec::DeleteRoleAssignment(Spec {
                    assignment: (*a).clone(),
                    role_name: role,
                    principal: state.principal.clone(),
                    breach: state.breach.clone(),
                }),
            }
        })
        .collect()
}

impl Spec {
    fn what(&self) -> String {
        format!(
            "role assignment {} ({})",
            self.assignment.name,
            describe(&self.assignment, &self.role_name)
        )
    }

    pub async fn change(&self, arm: &Arm, change: Change) -> Result<Outcome, PlaneError> {
        let what = self.what();
        Ok(match change {
            Change::Apply => {
                if ensure_deleted(arm, &self.assignment).await? {
                    Outcome::changed(format!("deleted {what}"))
                } else {
                    Outcome::unchanged(format!("{what} is already gone"))
                }
            }
            Change::Revert => {
                if ensure_present(arm, &self.assignment).await? {
                    Outcome::changed(format!("re-created {what} from its snapshot"))
                } else {
                    Outcome::unchanged(format!("{what} exists already"))
                }
            }
        })
    }

    /// Reads ARM: the assignment is gone by name and from the principal's list, or the grant
    /// is back (under its name, or an equivalent one someone made meanwhile).
    pub async fn check(&self, arm: &Arm, check: Check) -> Result<Verification, PlaneError> {
        let what = self.what();
        let a = &self.assignment;
        Ok(match check {
            Check::Applied => match still_there(arm, a).await? {
                None => Verification::ok(format!(
                    "{what} is gone: {} is no longer granted through it",
                    self.breach.describe()
                )),
                Some(still) => Verification::failed(format!("{still} (propagating)")),
            },
            Check::Reverted => match granted_by(arm, a).await? {
                Some(name) => Verification::ok(format!(
                    "{} is granted again by {name}",
                    describe(a, &self.role_name)
                )),
                None => Verification::failed(format!("ARM does not return {what} yet")),
            },
        })
    }
}
