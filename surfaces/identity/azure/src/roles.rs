//! Azure RBAC evaluated locally: which of one principal's role assignments grant an operation on
//! a resource, following the documented rules (allowed = `actions` minus `notActions`, or for
//! data operations `dataActions` minus `notDataActions`; `*` matches any run of characters;
//! case-insensitive; `*` in `actions` never grants a data operation). No deny assignments:
//! users cannot create them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::arm::RoleAssignment;
use crate::ids::ResourceId;

/// One `permissions` block of a role definition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Permission {
    #[serde(default)]
    pub actions: Vec<String>,
    #[serde(default)]
    pub not_actions: Vec<String>,
    #[serde(default)]
    pub data_actions: Vec<String>,
    #[serde(default)]
    pub not_data_actions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleDefinitionProperties {
    pub role_name: String,
    #[serde(default)]
    pub permissions: Vec<Permission>,
}

/// `GET {roleDefinitionId}?api-version=2022-04-01`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleDefinition {
    pub id: String,
    pub name: String,
    pub properties: RoleDefinitionProperties,
}

/// Whether `pattern` (with `*` wildcards) matches the operation, ignoring case.
pub fn matches(pattern: &str, operation: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    let operation = operation.to_ascii_lowercase();
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = operation.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty(); // no `*`: the whole operation must equal the pattern
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

fn any(patterns: &[String], operation: &str) -> bool {
    patterns.iter().any(|p| matches(p, operation))
}

impl RoleDefinition {
    pub fn role_name(&self) -> &str {
        &self.properties.role_name
    }

    /// Whether the role allows `operation`, a data operation when `data`.
    pub fn grants(&self, operation: &str, data: bool) -> bool {
        self.properties.permissions.iter().any(|p| {
            if data {
                any(&p.data_actions, operation) && !any(&p.not_data_actions, operation)
            } else {
                any(&p.actions, operation) && !any(&p.not_actions, operation)
            }
        })
    }

    /// Whether the role lists `operation` among its data actions (allowed or excluded).
    fn names_data_action(&self, operation: &str) -> bool {
        self.properties
            .permissions
            .iter()
            .any(|p| any(&p.data_actions, operation) || any(&p.not_data_actions, operation))
    }
}

/// The role assignments of one principal and the definitions of their roles.
#[derive(Debug, Clone, Default)]
pub struct Assignments {
    pub assignments: Vec<RoleAssignment>,
    /// By lowercase role definition id.
    pub definitions: BTreeMap<String, RoleDefinition>,
}

impl Assignments {
    pub fn definition(&self, assignment: &RoleAssignment) -> Option<&RoleDefinition> {
        self.definitions.get(
            &assignment
                .properties
                .grant
                .role_definition_id
                .to_ascii_lowercase(),
        )
    }

    /// ARM does not say whether an operation is a data operation; the roles do. An operation
    /// one of the principal's roles lists under `dataActions` is one (Azure's operation names
    /// are either data or control, never both). One no role lists is evaluated as a control
    /// operation, which is right for it: no role grants it as data either way.
    pub fn is_data_action(&self, operation: &str) -> bool {
        self.definitions
            .values()
            .any(|d| d.names_data_action(operation))
    }

    /// The assignments that let the principal perform `operation` on `resource`.
    pub fn granting(&self, operation: &str, resource: &ResourceId) -> Vec<&RoleAssignment> {
        let data = self.is_data_action(operation);
        self.assignments
            .iter()
            .filter(|a| a.scope().is_some_and(|s| s.covers(resource)))
            .filter(|a| {
                self.definition(a)
                    .is_some_and(|d| d.grants(operation, data))
            })
            .collect()
    }

    pub fn allows(&self, operation: &str, resource: &ResourceId) -> bool {
        !self.granting(operation, resource).is_empty()
    }

    /// The same principal after `remove` is deleted and `add` created.
    pub fn replaced(&self, remove: &RoleAssignment, add: &[RoleAssignment]) -> Assignments {
        let mut assignments: Vec<RoleAssignment> = self
            .assignments
            .iter()
            .filter(|a| !a.id.eq_ignore_ascii_case(&remove.id))
            .cloned()
            .collect();
        assignments.extend(add.iter().cloned());
        Assignments {
            assignments,
            definitions: self.definitions.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(permissions: Permission) -> RoleDefinition {
        RoleDefinition {
            id: "/providers/Microsoft.Authorization/roleDefinitions/r".into(),
            name: "r".into(),
            properties: RoleDefinitionProperties {
                role_name: "R".into(),
                permissions: vec![permissions],
            },
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    const BLOB_READ: &str = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read";

    #[test]
    fn wildcards_match_runs_of_characters_case_insensitively() {
        assert!(matches("*", "Microsoft.Compute/virtualMachines/read"));
        assert!(matches("Microsoft.Storage/*", BLOB_READ));
        assert!(matches("*/read", BLOB_READ));
        assert!(matches("microsoft.storage/*/blobs/READ", BLOB_READ));
        assert!(matches(BLOB_READ, BLOB_READ));
        assert!(!matches("Microsoft.Storage/*/write", BLOB_READ));
        assert!(!matches(
            "Microsoft.Storage/storageAccounts/read",
            BLOB_READ
        ));
        assert!(!matches("Microsoft.Compute/*", BLOB_READ));
        assert!(!matches(
            "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read/x",
            BLOB_READ
        ));
    }

    #[test]
    fn not_actions_subtract_and_star_actions_never_grant_data() {
        let owner = role(Permission {
            actions: strings(&["*"]),
            ..Permission::default()
        });
        assert!(owner.grants("Microsoft.Storage/storageAccounts/delete", false));
        assert!(!owner.grants(BLOB_READ, true), "Owner has no dataActions");
        let contributor = role(Permission {
            actions: strings(&["*"]),
            not_actions: strings(&[
                "Microsoft.Authorization/*/Delete",
                "Microsoft.Authorization/*/Write",
            ]),
            ..Permission::default()
        });
        assert!(!contributor.grants("Microsoft.Authorization/roleAssignments/write", false));
        assert!(contributor.grants("Microsoft.Authorization/roleAssignments/read", false));
        let reader = role(Permission {
            data_actions: strings(&[
                "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/*",
            ]),
            not_data_actions: strings(&["*/blobs/delete"]),
            ..Permission::default()
        });
        assert!(reader.grants(BLOB_READ, true));
        assert!(!reader.grants(
            "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/delete",
            true
        ));
        assert!(!reader.grants(BLOB_READ, false));
    }
}
