//! The Milvus control plane: per-agent index cut-off with Milvus' own RBAC.
//!
//! `context.revoke_index` revokes the agent role's privileges on one collection
//! (`OperatePrivilege`, type Revoke, object `Collection`); its inverse grants exactly those back.
//! Both are read back with `SelectGrant`. Milvus 2.3 cannot hide one source, so
//! `context.quarantine_source` is planned as rejected with that reason.

mod config;
mod grpc;
mod ladder;

use std::collections::{BTreeMap, BTreeSet};

use firebreak_containment::alert::Parameter;
use firebreak_containment::plan::Candidate;
use firebreak_containment::surface::{Op, PlanInput, Step, SurfaceError};

pub use config::{Credentials, MilvusCollection, MilvusContextConfig, PasswordSource};
pub use ladder::{CollectionRef, Grant, MilvusState, RevokeSpec};

use crate::plane::check;
use crate::ContextError;
use config::{ADMIN_ROLE, PUBLIC_ROLE};
use grpc::{MilvusClient, OperatePrivilegeType};

/// Names this control plane in errors and plans.
pub const PLANE: &str = "milvus context store";

pub struct Milvus {
    config: MilvusContextConfig,
    credentials: Credentials,
}

impl Milvus {
    /// Validates the config and reads the password; connects only when asked to act.
    pub fn new(config: MilvusContextConfig) -> Result<Milvus, ContextError> {
        config.validate()?;
        let credentials = config.credentials()?;
        Ok(Milvus {
            config,
            credentials,
        })
    }

    pub fn config(&self) -> &MilvusContextConfig {
        &self.config
    }

    async fn client(&self, database: &str) -> Result<MilvusClient, ContextError> {
        MilvusClient::connect(&self.config.address, &self.credentials, database).await
    }

    async fn observe_state(&self, input: &PlanInput<'_>) -> Result<MilvusState, ContextError> {
        let Parameter::Context { index, .. } = &input.alert.parameter else {
            return Err(ContextError::Surface(SurfaceError::Invalid {
                plane: PLANE,
                detail: "the alert's parameter is not a context parameter {index, source}; send it with dimension context".into(),
            }));
        };
        let entry = self.config.collection_for_index(index).ok_or_else(|| {
            ContextError::MilvusUnknownIndex {
                index: index.clone(),
                known: self
                    .config
                    .collections
                    .iter()
                    .map(|c| c.index_name().to_string())
                    .collect(),
            }
        })?;
        let agent = input.alert.agent.key().to_string();
        let role = self
            .config
            .roles
            .get(&agent)
            .ok_or_else(|| ContextError::MilvusUnknownAgent(agent.clone()))?;
        let database = &self.config.database;
        let mut client = self.client(database).await?;
        if !client.has_collection(&entry.collection).await? {
            return Err(ContextError::UnknownCollection {
                collection: entry.collection.clone(),
                database: database.clone(),
            });
        }
        let existing = client.roles().await?;
        if !existing.contains(role) {
            return Err(ContextError::MilvusUnknownRole {
                role: role.clone(),
                field: format!("roles.{agent}"),
            });
        }
        let agent_grants = client.grants(role, None).await?;
        let public_grants = client.grants(PUBLIC_ROLE, None).await?;
        // The agent connects as a user, which may hold roles beside its configured one.
        let users = client.users_of(role).await?;
        let mut siblings = BTreeSet::new();
        let mut admin_users = BTreeSet::new();
        for user in &users {
            for held in client.roles_of(user).await? {
                if held == ADMIN_ROLE {
                    admin_users.insert(user.clone());
                } else if held != *role && held != PUBLIC_ROLE {
                    siblings.insert(held);
                }
            }
        }
        let mut sibling_grants = BTreeSet::new();
        for sibling in &siblings {
            sibling_grants.extend(client.grants(sibling, None).await?);
        }
        let mut others = BTreeMap::new();
        let mut sharing = Vec::new();
        for (other_agent, other_role) in &self.config.roles {
            if other_agent == &agent {
                continue;
            }
            if other_role == role {
                sharing.push(other_agent.clone());
            } else if existing.contains(other_role) && !others.contains_key(other_role) {
                let grants = client.grants(other_role, Some(&entry.collection)).await?;
                others.insert(other_role.clone(), (other_agent.clone(), grants));
            }
        }
        Ok(MilvusState {
            collection: CollectionRef {
                index: entry.index_name().to_string(),
                database: database.clone(),
                collection: entry.collection.clone(),
            },
            agent_role: role.clone(),
            agent_grants,
            public_grants,
            users,
            sibling_grants,
            admin_users,
            others,
            sharing,
        })
    }

    async fn dispatch(&self, action: &Candidate, op: Op) -> Result<Step, ContextError> {
        let spec = RevokeSpec::from_candidate(action).map_err(ContextError::Surface)?;
        let c = &spec.collection;
        let what = format!("collection {} (index {})", c.collection, c.index);
        let mut client = self.client(&c.database).await?;
        match op {
            Op::Apply | Op::Revert => {
                let mut done = Vec::new();
                for (role, privileges) in &spec.revoked {
                    let now = privileges_on(&mut client, role, &c.collection).await?;
                    let (todo, kind): (BTreeSet<&String>, _) = if op == Op::Apply {
                        (
                            privileges.intersection(&now).collect(),
                            OperatePrivilegeType::Revoke,
                        )
                    } else {
                        (
                            privileges.difference(&now).collect(),
                            OperatePrivilegeType::Grant,
                        )
                    };
                    for privilege in todo {
                        client.operate(kind, role, &c.collection, privilege).await?;
                        done.push(format!("{privilege} of role {role}"));
                    }
                }
                let verb = if op == Op::Apply {
                    "revoked"
                } else {
                    "granted back"
                };
                Ok(if done.is_empty() {
                    Step::unchanged(format!(
                        "already in place: nothing left to be {verb} on {what}"
                    ))
                } else {
                    Step::changed(format!("{verb} {} on {what}", done.join(", ")))
                })
            }
            Op::Verify | Op::VerifyReverted => {
                let mut problems = Vec::new();
                for (role, privileges) in &spec.revoked {
                    let now = privileges_on(&mut client, role, &c.collection).await?;
                    if op == Op::Verify && !now.is_empty() {
                        problems.push(format!("role {role} still holds {} on {what}", join(&now)));
                    }
                    let missing: BTreeSet<String> = privileges.difference(&now).cloned().collect();
                    if op == Op::VerifyReverted && !missing.is_empty() {
                        problems.push(format!(
                            "role {role} lacks {} on {what} after the revert",
                            join(&missing)
                        ));
                    }
                }
                // Only right after applying: later, other incidents may legitimately have
                // changed the grants this action kept.
                if op == Op::Verify {
                    let mut by_role: BTreeMap<&str, Vec<&Grant>> = BTreeMap::new();
                    for g in &spec.kept {
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
                let roles: Vec<&String> = spec.revoked.keys().collect();
                Ok(check(
                    problems,
                    if op == Op::Verify {
                        format!(
                            "SelectGrant read back: roles {roles:?} hold no privilege on {what}; {} other grant(s) untouched",
                            spec.kept.len()
                        )
                    } else {
                        format!(
                            "SelectGrant read back: roles {roles:?} hold their privileges on {what} again"
                        )
                    },
                ))
            }
        }
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

crate::shared::context_control_plane!(Milvus);
