//! Role assignment writes guarded by the plan's snapshot, shared by the two role assignment
//! rungs. Role assignments have no etag: before a delete the assignment is read and compared
//! with the snapshot (another grant under the name is a `Conflict`); the delete's status says
//! whether it changed anything (200) or found it gone (204). Restores PUT the snapshot under the
//! same name: 201 created, 200 already identical; a 409 means the name or the same grant exists
//! already, which is then read to decide between done and `Conflict`.

use firebreak_containment::plane::PlaneError;

use crate::arm::{Arm, Delete, Put, RoleAssignment};
use crate::PLANE;

/// The assignment `a` stands for: its own name with the same grant, or (when ARM refused a
/// second assignment of the same grant) an equivalent one at the same scope.
pub async fn granted_by(arm: &Arm, a: &RoleAssignment) -> Result<Option<String>, PlaneError> {
    if let Some(current) = arm.role_assignment(&a.id).await? {
        if current.properties.grant.same_as(&a.properties.grant) {
            return Ok(Some(current.name));
        }
        return Err(PlaneError::Conflict {
            plane: PLANE,
            detail: format!(
                "role assignment {} now grants {} to {}, not the snapshot's {} to {}",
                a.name,
                current.properties.grant.role_definition_id,
                current.properties.grant.principal_id,
                a.properties.grant.role_definition_id,
                a.properties.grant.principal_id
            ),
        });
    }
    let Some(scope) = a.scope() else {
        return Ok(None);
    };
    let grant = &a.properties.grant;
    Ok(arm
        .role_assignments(&scope, &grant.principal_id)
        .await?
        .into_iter()
        .find(|b| {
            b.properties.scope.eq_ignore_ascii_case(&a.properties.scope)
                && b.properties
                    .grant
                    .role_definition_id
                    .eq_ignore_ascii_case(&grant.role_definition_id)
        })
        .map(|b| b.name))
}

/// PUTs `a` from its snapshot; `true` when it created it.
pub async fn ensure_present(arm: &Arm, a: &RoleAssignment) -> Result<bool, PlaneError> {
    match arm.put_role_assignment(a).await {
        Ok(Put::Created) => Ok(true),
        Ok(Put::Unchanged) => Ok(false),
        // RoleAssignmentExists (the grant exists under another name) or
        // RoleAssignmentUpdateNotPermitted (the name holds another grant).
        Err(e) if e.status() == Some(409) => match granted_by(arm, a).await? {
            Some(_) => Ok(false),
            None => Err(e.into()),
        },
        Err(e) => Err(e.into()),
    }
}

/// Deletes `a` unless its name now holds another grant; `true` when it deleted it.
pub async fn ensure_deleted(arm: &Arm, a: &RoleAssignment) -> Result<bool, PlaneError> {
    if let Some(current) = arm.role_assignment(&a.id).await? {
        if !current.properties.grant.same_as(&a.properties.grant) {
            return Err(PlaneError::Conflict {
                plane: PLANE,
                detail: format!(
                    "role assignment {} changed since the plan (role {}, principal {})",
                    a.id,
                    current.properties.grant.role_definition_id,
                    current.properties.grant.principal_id
                ),
            });
        }
    }
    Ok(arm.delete_role_assignment(&a.id).await? == Delete::Deleted)
}

/// `None` when ARM no longer returns `a`, neither by name nor in the principal's list; else
/// what it still returns.
pub async fn still_there(arm: &Arm, a: &RoleAssignment) -> Result<Option<String>, PlaneError> {
    if arm.role_assignment(&a.id).await?.is_some() {
        return Ok(Some(format!("ARM still returns role assignment {}", a.id)));
    }
    let Some(scope) = a.scope() else {
        return Ok(None);
    };
    let listed = arm
        .role_assignments(&scope, &a.properties.grant.principal_id)
        .await?
        .iter()
        .any(|b| b.id.eq_ignore_ascii_case(&a.id));
    Ok(listed.then(|| format!("ARM still lists role assignment {} at {scope}", a.name)))
}
