//! `azure.narrow_role_assignment` (rung 1): a broad assignment granting the breach is replaced
//! by the same role at the narrowest scopes covering the envelope's uses it grants, none of which
//! covers the breached resource. The narrowed assignments have deterministic names, so a
//! re-apply after a crash finds the ones it created.

use firebreak_containment::plane::{
    Change, Check, KindSpec, Outcome, PlaneError, Proposal, Verification,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::arm::{Arm, Delete, Grant, RoleAssignment};
use crate::guarded::{ensure_deleted, ensure_present, granted_by, still_there};
use crate::ids::ResourceId;
use crate::ladder::{Breach, Ladder, Principal};
use crate::plane::AzureSpec;

pub static NARROW_ROLE_ASSIGNMENT: KindSpec =
    KindSpec::durable("azure", "azure.narrow_role_assignment", 1, false);

/// Namespace of the UUID v5 names of narrowed role assignments (ARM wants GUID names).
const NARROW_NAMESPACE: Uuid = Uuid::from_u128(0x6f1d_2c4e_8a3b_4e5f_9c7d_1b2a_3c4d_5e6f);

/// Create `narrow`, then delete `original`; revert re-PUTs `original`, then deletes `narrow`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Spec {
    /// The broad assignment as read: the pre-image revert restores.
    pub original: RoleAssignment,
    pub narrow: Vec<RoleAssignment>,
    pub role_name: String,
    pub principal: Principal,
    pub breach: Breach,
}

/// The deterministic name of the assignment narrowing `original` to `scope` for `incident`:
/// re-applying after a crash finds the same names.
pub fn narrow_name(incident: &str, original: &RoleAssignment, scope: &ResourceId) -> String {
    let key = format!(
        "{incident}\n{}\n{}",
        original.id.to_ascii_lowercase(),
        scope.as_str().to_ascii_lowercase()
    );
    Uuid::new_v5(&NARROW_NAMESPACE, key.as_bytes()).to_string()
}

/// One candidate per granting assignment scoped above the breached resource that leaves some
/// of the envelope's uses a narrower scope.
pub fn propose(ladder: &Ladder<'_>) -> Vec<Proposal<AzureSpec>> {
    ladder
        .granting
        .iter()
        .filter_map(|a| narrowed(ladder, a))
        .collect()
}

/// `None` when the assignment is at the resource itself, or nothing the envelope uses is left.
fn narrowed(ladder: &Ladder<'_>, a: &RoleAssignment) -> Option<Proposal<AzureSpec>> {
    let state = ladder.state;
    let incident = ladder.incident.as_str();
    let scope = a.scope()?;
    if !scope.covers(&state.breach.resource) || scope.same(&state.breach.resource) {
        return None;
    }
    let definition = state.rbac.definition(a)?;
    let mut scopes: Vec<ResourceId> = Vec::new();
    for u in &ladder.uses {
        let data = state.rbac.is_data_action(&u.operation);
        if !scope.covers(&u.resource) || !definition.grants(&u.operation, data) {
            continue;
        }
        if let Some(narrow) = ResourceId::narrowest_excluding(&u.resource, &state.breach.resource) {
            if !scopes.iter().any(|s| s.same(&narrow)) {
                scopes.push(narrow);
            }
        }
    }
    // A scope inside another one adds nothing.
    let kept: Vec<ResourceId> = scopes
        .iter()
        .filter(|s| !scopes.iter().any(|o| !o.same(s) && o.covers(s)))
        .cloned()
        .collect();
    if kept.is_empty() {
        return None;
    }
    let role = definition.role_name().to_string();
    let narrow: Vec<RoleAssignment> = kept
        .iter()
        .map(|s| {
            let grant = Grant {
                description: Some(format!(
                    "Firebreak incident {incident}: {role} narrowed from role assignment {} at {}",
                    a.name, a.properties.scope
                )),
                ..a.properties.grant.clone()
            };
            RoleAssignment::at(s, &narrow_name(incident, a, s), grant)
        })
        .collect();
    let after = state.rbac.replaced(a, &narrow);
    let still = state.still_granted(&after);
    let scopes_text: Vec<&str> = kept.iter().map(ResourceId::as_str).collect();
    Some(Proposal {
        target: a.id.clone(),
        granularity: format!(
            "{} keeps {role} only at {}, no longer at {}",
            state.principal.identity,
            scopes_text.join(", "),
            a.properties.scope
        ),
        blast_radius: ladder.blast(&after),
        blocks: still.is_none(),
        inverse: format!(
            "re-create role assignment {} at {} from its snapshot, then delete the {} narrowed one(s)",
            a.name,
            a.properties.scope,
            narrow.len()
        ),
        verify: format!(
            "ARM answers 404 for {} and returns each narrowed assignment",
            a.id
        ),
        rejected: still,
        notes: state.notes(a),
        spec: AzureSpec::NarrowRoleAssignment(Spec {
            original: a.clone(),
            narrow,
            role_name: role,
            principal: state.principal.clone(),
            breach: state.breach.clone(),
        }),
    })
}

impl Spec {
    pub async fn change(&self, arm: &Arm, change: Change) -> Result<Outcome, PlaneError> {
        let Spec {
            original,
            narrow,
            role_name: role,
            ..
        } = self;
        let scopes: Vec<&str> = narrow.iter().map(|a| a.properties.scope.as_str()).collect();
        let what = format!(
            "{role} at {} narrowed to {}",
            original.properties.scope,
            scopes.join(", ")
        );
        match change {
            // Narrow assignments first, so the envelope's uses never lose their grant. A call
            // that fails midway leaves only additions; the engine's retry finds them (200).
            Change::Apply => {
                let mut changed = false;
                for a in narrow {
                    changed |= ensure_present(arm, a).await?;
                }
                changed |= ensure_deleted(arm, original).await?;
                Ok(if changed {
                    Outcome::changed(what)
                } else {
                    Outcome::unchanged(format!("{what}: already in place"))
                })
            }
            // The original first, for the same reason.
            Change::Revert => {
                let mut changed = ensure_present(arm, original).await?;
                for a in narrow {
                    changed |= arm.delete_role_assignment(&a.id).await? == Delete::Deleted;
                }
                let detail = format!(
                    "{role} at {} restored; {} narrowed assignment(s) removed",
                    original.properties.scope,
                    narrow.len()
                );
                Ok(if changed {
                    Outcome::changed(detail)
                } else {
                    Outcome::unchanged(format!("{detail} already"))
                })
            }
        }
    }

    /// Reads ARM: the original is gone and every narrowed grant is there, or the reverse.
    pub async fn check(&self, arm: &Arm, check: Check) -> Result<Verification, PlaneError> {
        let Spec {
            original,
            narrow,
            role_name: role,
            ..
        } = self;
        match check {
            Check::Applied => {
                if let Some(still) = still_there(arm, original).await? {
                    return Ok(Verification::failed(format!("{still} (propagating)")));
                }
                for a in narrow {
                    if granted_by(arm, a).await?.is_none() {
                        return Ok(Verification::failed(format!(
                            "ARM does not return narrowed role assignment {} at {} yet",
                            a.name, a.properties.scope
                        )));
                    }
                }
                let scopes: Vec<&str> =
                    narrow.iter().map(|a| a.properties.scope.as_str()).collect();
                Ok(Verification::ok(format!(
                    "{role} at {} narrowed to {}",
                    original.properties.scope,
                    scopes.join(", ")
                )))
            }
            Check::Reverted => {
                if granted_by(arm, original).await?.is_none() {
                    return Ok(Verification::failed(format!(
                        "ARM does not return role assignment {} yet",
                        original.name
                    )));
                }
                for a in narrow {
                    if let Some(still) = still_there(arm, a).await? {
                        return Ok(Verification::failed(still));
                    }
                }
                Ok(Verification::ok(format!(
                    "{role} at {} is back",
                    original.properties.scope
                )))
            }
        }
    }
}
