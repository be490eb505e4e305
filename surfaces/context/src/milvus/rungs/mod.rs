//! The Milvus ladder, one file per rung for how each is proposed. The two rungs Milvus can
//! enforce are the same mechanism (revoke a set of roles' privileges on one collection, grant
//! exactly them back), so they share [`Revocation`] and its `change` and `check`.

pub mod quarantine_index;
pub mod quarantine_source;
pub mod revoke_index;

use std::collections::{BTreeMap, BTreeSet};

use firebreak_containment::plane::{Change, Check, Outcome, PlaneError, Verification};
use serde::{Deserialize, Serialize};

use super::grpc::{MilvusClient, OperatePrivilegeType};
use super::observation::{CollectionRef, Grant};
use super::PLANE;
use crate::shared::verdict;
use crate::ContextError;

/// What a Milvus action does, journaled with the intent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "rung", rename_all = "snake_case", deny_unknown_fields)]
pub enum MilvusSpec {
    QuarantineSource(quarantine_source::Spec),
    RevokeIndex(Revocation),
    QuarantineIndex(Revocation),
}

/// Revoke these privileges on the collection; the revert grants exactly them back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Revocation {
    pub collection: CollectionRef,
    /// Role → the privileges it held on the collection when planned (the pre-image).
    pub revoked: BTreeMap<String, BTreeSet<String>>,
    /// Grants the action must leave alone (checked by verification): the agent role's grants
    /// elsewhere and, for one agent's revoke, the other roles' grants on this collection.
    pub kept: BTreeSet<Grant>,
}

impl Revocation {
    fn what(&self) -> String {
        let c = &self.collection;
        format!("collection {} (index {})", c.collection, c.index)
    }

    /// Revokes (apply) or grants back (revert) what is still to do, read from the server first:
    /// a repeat finds nothing left and changes nothing. Every role is read before anything is
    /// written, so a conflict leaves the grants as they were.
    ///
    /// A role holding a privilege on the collection that the plan did not see is a conflict:
    /// revoking only what was planned would leave it one, so the check could never pass. The
    /// engine re-plans from a fresh observation (docs/adding-a-plane.md §4).
    pub(crate) async fn change(
        &self,
        client: &mut MilvusClient,
        change: Change,
    ) -> Result<Outcome, ContextError> {
        let collection = &self.collection.collection;
        let mut todo = Vec::new();
        for (role, privileges) in &self.revoked {
            let now = privileges_on(client, role, collection).await?;
            let kind = match change {
                Change::Apply => {
                    let unplanned: BTreeSet<String> = now.difference(privileges).cloned().collect();
                    if !unplanned.is_empty() {
                        return Err(ContextError::Plane(PlaneError::Conflict {
                            plane: PLANE,
                            detail: format!(
                                "role {role} holds {} on {} since the plan was made",
                                join(&unplanned),
                                self.what()
                            ),
                        }));
                    }
                    OperatePrivilegeType::Revoke
                }
                Change::Revert => OperatePrivilegeType::Grant,
            };
            let pending: Vec<String> = match change {
                Change::Apply => privileges.intersection(&now).cloned().collect(),
                Change::Revert => privileges.difference(&now).cloned().collect(),
            };
            todo.extend(pending.into_iter().map(|p| (kind, role, p)));
        }
        let mut done = Vec::new();
        for (kind, role, privilege) in todo {
            client.operate(kind, role, collection, &privilege).await?;
            done.push(format!("{privilege} of role {role}"));
        }
        let verb = match change {
            Change::Apply => "revoked",
            Change::Revert => "granted back",
        };
        Ok(if done.is_empty() {
            Outcome::unchanged(format!(
                "already in place: nothing left to be {verb} on {}",
                self.what()
            ))
        } else {
            Outcome::changed(format!("{verb} {} on {}", done.join(", "), self.what()))
        })
    }

    /// Reads the grants back with `SelectGrant`.
    pub(crate) async fn check(
        &self,
        client: &mut MilvusClient,
        check: Check,
    ) -> Result<Verification, ContextError> {
        let (collection, what) = (&self.collection.collection, self.what());
        let mut problems = Vec::new();
        for (role, privileges) in &self.revoked {
            let now = privileges_on(client, role, collection).await?;
            let missing: BTreeSet<String> = privileges.difference(&now).cloned().collect();
            match check {
                Check::Applied if !now.is_empty() => {
                    problems.push(format!("role {role} still holds {} on {what}", join(&now)))
                }
                Check::Reverted if !missing.is_empty() => problems.push(format!(
                    "role {role} lacks {} on {what} after the revert",
                    join(&missing)
                )),
                _ => {}
            }
        }
        // Only right after applying: later, other incidents may legitimately have changed the
        // grants this action kept.
        if check == Check::Applied {
            let mut by_role: BTreeMap<&str, Vec<&Grant>> = BTreeMap::new();
            for g in &self.kept {
                by_role.entry(g.role.as_str()).or_default().push(g);
            }
            for (role, expected) in by_role {
                let now = client.grants(role, None).await?;
                for g in expected.into_iter().filter(|g| !now.contains(*g)) {
                    problems.push(format!(
                        "role {role} lost {g}, which this action must leave alone"
                    ));
                }
            }
        }
        let roles: Vec<&String> = self.revoked.keys().collect();
        Ok(verdict(
            problems,
            match check {
                Check::Applied => format!(
                    "SelectGrant read back: roles {roles:?} hold no privilege on {what}; {} other grant(s) untouched",
                    self.kept.len()
                ),
                Check::Reverted => format!(
                    "SelectGrant read back: roles {roles:?} hold their privileges on {what} again"
                ),
            },
        ))
    }
}

async fn privileges_on(
    client: &mut MilvusClient,
    role: &str,
    collection: &str,
) -> Result<BTreeSet<String>, ContextError> {
    Ok(client
        .grants(role, Some(collection))
        .await?
        .into_iter()
        .map(|g| g.privilege)
        .collect())
}

fn join(privileges: &BTreeSet<String>) -> String {
    privileges.iter().cloned().collect::<Vec<_>>().join(", ")
}
