//! The Milvus context ladder for one breach, computed from a [`MilvusState`] without I/O.
//!
//! Milvus 2.3 has no row-level security and no partition-level privileges, so the narrowest
//! rung it can enforce is one collection for one role: `context.quarantine_source` is always
//! rejected with that reason, `context.revoke_index` revokes the agent role's privileges on the
//! collection, and `context.quarantine_index` revokes them from every configured role.

use std::collections::{BTreeMap, BTreeSet};

use firebreak_containment::action::ActionKind;
use firebreak_containment::alert::Parameter;
use firebreak_containment::plan::{BlastRadius, Candidate, Enforcement};
use firebreak_containment::surface::{Observation, PlanInput, SurfaceError};
use serde::{Deserialize, Serialize};

use super::config::{ADMIN_ROLE, PUBLIC_ROLE};
use super::grpc::COLLECTION;
use super::PLANE;
use crate::shared::spec_value;

/// Privileges that let a holder retrieve chunks from a collection.
const RETRIEVAL: &[&str] = &["Search", "Query", "All"];

/// One privilege of one role on one object, as `SelectGrant` reports it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Grant {
    pub role: String,
    /// `Collection`, `Global` or `User`.
    pub object: String,
    /// A collection name, or `*`.
    pub object_name: String,
    pub privilege: String,
}

impl std::fmt::Display for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} on {} {}",
            self.privilege, self.object, self.object_name
        )
    }
}

/// The collection an action works on, as configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CollectionRef {
    /// The index name envelopes and alerts use.
    pub index: String,
    pub database: String,
    pub collection: String,
}

/// What `context.revoke_index` and `context.quarantine_index` do, journaled inside the intent:
/// revoke these privileges on the collection; the revert grants exactly them back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RevokeSpec {
    pub collection: CollectionRef,
    /// Role → the privileges it held on the collection when planned (the pre-image).
    pub revoked: BTreeMap<String, BTreeSet<String>>,
    /// Grants the action must leave alone (checked by verification): the agent role's grants
    /// elsewhere and the other roles' grants on this collection.
    pub kept: BTreeSet<Grant>,
}

impl RevokeSpec {
    pub fn from_candidate(c: &Candidate) -> Result<RevokeSpec, SurfaceError> {
        serde_json::from_value(c.spec.clone()).map_err(|e| SurfaceError::Invalid {
            plane: PLANE,
            detail: format!(
                "the journaled spec of {} is not a Milvus revocation ({e}); re-plan the incident",
                c.kind
            ),
        })
    }
}

/// The Milvus state one plan is computed from (read by `observe`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MilvusState {
    pub collection: CollectionRef,
    pub agent_role: String,
    /// Every grant the agent's role holds in the database now.
    pub agent_grants: BTreeSet<Grant>,
    /// Every grant of the `public` role (which every user holds) in the database now.
    pub public_grants: BTreeSet<Grant>,
    /// The users holding the agent's role (the agent connects as one of them).
    pub users: BTreeSet<String>,
    /// Every grant of the other roles those users hold (but `public` and `admin`).
    pub sibling_grants: BTreeSet<Grant>,
    /// Those of the users who also hold `admin`, which no revoke can cut.
    pub admin_users: BTreeSet<String>,
    /// The other configured roles' grants on this collection, keyed by role, with the agent
    /// each belongs to.
    pub others: BTreeMap<String, (String, BTreeSet<Grant>)>,
    /// Other agents configured with the agent's own role: they lose what it loses.
    pub sharing: Vec<String>,
}

impl MilvusState {
    fn on_collection<'a>(
        &'a self,
        grants: &'a BTreeSet<Grant>,
    ) -> impl Iterator<Item = &'a Grant> + 'a {
        grants
            .iter()
            .filter(|g| g.object == COLLECTION && g.object_name == self.collection.collection)
    }

    fn agent_privileges(&self) -> BTreeSet<String> {
        self.on_collection(&self.agent_grants)
            .map(|g| g.privilege.clone())
            .collect()
    }

    /// Why revoking the agent role's grants on the collection would not stop the agent's user
    /// from retrieving there: another grant covers it, and Milvus has no deny.
    fn uncuttable(&self) -> Option<String> {
        if let Some(user) = self.admin_users.first() {
            return Some(format!(
                "user {user} of role {} also holds role {ADMIN_ROLE}, which may do everything; take it away first, then re-plan",
                self.agent_role
            ));
        }
        let collection = &self.collection.collection;
        let covers = |g: &&Grant| {
            RETRIEVAL.contains(&g.privilege.as_str())
                && (g.object == "Global"
                    || (g.object == COLLECTION
                        && (g.object_name == "*"
                            || (g.object_name == *collection && g.role != self.agent_role))))
        };
        let g = self
            .agent_grants
            .iter()
            .chain(&self.public_grants)
            .chain(&self.sibling_grants)
            .find(covers)?;
        let holder = if g.role == PUBLIC_ROLE {
            format!("role {PUBLIC_ROLE}, which every user holds,")
        } else if g.role == self.agent_role {
            format!("role {}", g.role)
        } else {
            format!("role {}, which the agent's user also holds,", g.role)
        };
        Some(format!(
            "{holder} has {g}, so the agent could still retrieve from collection {collection} after the revoke (Milvus has no deny); narrow that grant, then re-plan"
        ))
    }
}

impl Observation for MilvusState {
    fn candidates(&self, input: &PlanInput<'_>) -> Result<Vec<Candidate>, SurfaceError> {
        let Parameter::Context { index, source } = &input.alert.parameter else {
            return Err(SurfaceError::Invalid {
                plane: PLANE,
                detail: "the alert's parameter is not a context parameter {index, source}".into(),
            });
        };
        let whole_index: Vec<String> = input
            .envelope
            .context()
            .permitted
            .into_iter()
            .filter(|e| e.value.index == *index)
            .map(|e| match &e.value.source {
                Some(s) => format!("source {s} in index {index}"),
                None => format!("index {index}"),
            })
            .collect();
        let c = &self.collection;
        let target = format!(
            "milvus collection {}.{} (index {index})",
            c.database, c.collection
        );
        let role = &self.agent_role;
        let held = self.agent_privileges();
        let uncuttable = self.uncuttable();
        let users: Vec<&String> = self.users.iter().collect();
        let mut out = Vec::new();

        out.push(Candidate {
            kind: ActionKind::ContextQuarantineSource,
            target: match source {
                Some(s) => format!("{target}: source {s} for role {role}"),
                None => target.clone(),
            },
            granularity: "one source of one index, for this agent only".into(),
            blast_radius: BlastRadius::default(),
            blocks: false,
            inverse: String::new(),
            verify: String::new(),
            enforcement: Enforcement::Durable,
            rejected: Some(match source {
                Some(_) => NO_SOURCE_QUARANTINE.into(),
                None => format!("the alert names no source, only an index; {NO_SOURCE_QUARANTINE}"),
            }),
            notes: vec![],
            spec: serde_json::Value::Null,
        });

        let kept_elsewhere: BTreeSet<Grant> = self
            .agent_grants
            .iter()
            .filter(|g| !(g.object == COLLECTION && g.object_name == c.collection))
            .cloned()
            .collect();
        let mut kept = kept_elsewhere.clone();
        kept.extend(
            self.others
                .values()
                .flat_map(|(_, grants)| grants.iter().cloned()),
        );
        let mut in_envelope = whole_index;
        if !held.is_empty() {
            in_envelope.extend(self.sharing.iter().map(|agent| {
                format!("other agent {agent} (same role {role}) loses index {index}")
            }));
        }
        let mut notes = vec![];
        if held.is_empty() {
            notes.push(format!(
                "role {role} holds no privilege on collection {} already: revoking changes nothing",
                c.collection
            ));
        }
        let verify = format!(
            "SelectGrant read back: role {role} holds no privilege on collection {}; its other grants and other roles' grants are unchanged",
            c.collection
        );
        out.push(Candidate {
            kind: ActionKind::ContextRevokeIndex,
            target: format!(
                "{target}: privileges {} of role {role} (users {users:?})",
                list(&held)
            ),
            granularity: "one index (collection), for this agent only".into(),
            blast_radius: BlastRadius::of(in_envelope.clone()),
            blocks: true,
            inverse: format!(
                "grant role {role} exactly the revoked privileges ({}) again",
                list(&held)
            ),
            verify,
            enforcement: Enforcement::Durable,
            rejected: uncuttable.clone(),
            notes,
            spec: spec_value(
                PLANE,
                &RevokeSpec {
                    collection: c.clone(),
                    revoked: BTreeMap::from([(role.clone(), held.clone())]),
                    kept,
                },
            )?,
        });

        let mut revoked = BTreeMap::from([(role.clone(), held)]);
        let mut items = in_envelope;
        for (other, (agent, grants)) in &self.others {
            if grants.is_empty() {
                continue;
            }
            revoked.insert(
                other.clone(),
                grants.iter().map(|g| g.privilege.clone()).collect(),
            );
            items.push(format!(
                "other agent {agent} (role {other}) loses index {index}"
            ));
        }
        let roles: Vec<&String> = revoked.keys().collect();
        out.push(Candidate {
            kind: ActionKind::ContextQuarantineIndex,
            target: format!("{target}: every configured role"),
            granularity: "one whole index (collection), for every configured agent".into(),
            blast_radius: BlastRadius::of(items),
            blocks: true,
            inverse: "grant every role exactly the privileges revoked from it again".into(),
            verify: format!(
                "SelectGrant read back: roles {roles:?} hold no privilege on collection {}",
                c.collection
            ),
            enforcement: Enforcement::Durable,
            rejected: uncuttable,
            notes: vec![format!(
                "roles not under context.milvus.roles keep their grants on collection {}",
                c.collection
            )],
            spec: spec_value(
                PLANE,
                &RevokeSpec {
                    collection: c.clone(),
                    revoked,
                    kept: kept_elsewhere,
                },
            )?,
        });
        Ok(out)
    }
}

/// Why Milvus cannot take the narrowest rung.
const NO_SOURCE_QUARANTINE: &str = "not enforceable in Milvus 2.3: it has no row-level security and its privileges stop at the collection (no partition-level privileges), so one source cannot be hidden from one agent in the store; that needs an enforcing retrieval proxy";

fn list(privileges: &BTreeSet<String>) -> String {
    if privileges.is_empty() {
        "none".into()
    } else {
        privileges.iter().cloned().collect::<Vec<_>>().join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::testing;

    const OBSERVED: &[&str] = &[
        r#"{index: kb, source: "wiki:handbook", closure: literal, count: 50, sessions: 9}"#,
        r#"{index: kb, source: "crm:accounts", closure: literal, count: 50, sessions: 9}"#,
    ];

    fn grant(role: &str, object: &str, name: &str, privilege: &str) -> Grant {
        Grant {
            role: role.into(),
            object: object.into(),
            object_name: name.into(),
            privilege: privilege.into(),
        }
    }

    fn state(index: &str) -> MilvusState {
        MilvusState {
            collection: CollectionRef {
                index: index.into(),
                database: "default".into(),
                collection: format!("{index}_chunks"),
            },
            agent_role: "agent_a".into(),
            agent_grants: BTreeSet::from([
                grant("agent_a", COLLECTION, &format!("{index}_chunks"), "Search"),
                grant("agent_a", COLLECTION, &format!("{index}_chunks"), "Query"),
                grant("agent_a", COLLECTION, "other_chunks", "Search"),
            ]),
            public_grants: BTreeSet::from([grant(
                PUBLIC_ROLE,
                "Global",
                "*",
                "DescribeCollection",
            )]),
            users: BTreeSet::from(["user_a".to_string()]),
            sibling_grants: BTreeSet::new(),
            admin_users: BTreeSet::new(),
            others: BTreeMap::from([(
                "agent_b".into(),
                (
                    "prod/rag/Deployment/agent-b".into(),
                    BTreeSet::from([grant(
                        "agent_b",
                        COLLECTION,
                        &format!("{index}_chunks"),
                        "Search",
                    )]),
                ),
            )]),
            sharing: vec![],
        }
    }

    fn plan(state: &MilvusState, index: &str, source: Option<&str>) -> Vec<Candidate> {
        testing::plan(state, OBSERVED, index, source)
    }

    #[test]
    fn an_index_outside_the_envelope_is_revoked_for_the_agent_at_zero_blast_radius() {
        let c = plan(&state("secrets"), "secrets", Some("email:x"));
        let kinds: Vec<_> = c.iter().map(|c| c.kind).collect();
        assert_eq!(
            kinds,
            [
                ActionKind::ContextQuarantineSource,
                ActionKind::ContextRevokeIndex,
                ActionKind::ContextQuarantineIndex
            ]
        );
        assert!(c[0]
            .rejected
            .as_deref()
            .unwrap_or("")
            .contains("not enforceable in Milvus 2.3"));
        assert_eq!(c[1].blast_radius.broken, 0);
        assert!(c[1].rejected.is_none());
        let spec = RevokeSpec::from_candidate(&c[1]).expect("spec");
        assert_eq!(
            spec.revoked,
            BTreeMap::from([(
                "agent_a".to_string(),
                BTreeSet::from(["Query".to_string(), "Search".to_string()])
            )])
        );
        // The agent's other collection and the other role's grant must survive.
        assert_eq!(spec.kept.len(), 2, "{:?}", spec.kept);
        assert_eq!(c[2].blast_radius.broken, 1, "{:?}", c[2].blast_radius);
        assert!(c[2].blast_radius.items[0].contains("agent-b"));
        assert_eq!(
            RevokeSpec::from_candidate(&c[2])
                .expect("spec")
                .revoked
                .len(),
            2
        );
    }

    #[test]
    fn revoking_an_index_in_the_envelope_counts_its_sources() {
        let c = plan(&state("kb"), "kb", None);
        assert_eq!(c[1].blast_radius.broken, 2);
        assert!(c[0]
            .rejected
            .as_deref()
            .unwrap_or("")
            .starts_with("the alert names no source"));
    }

    #[test]
    fn a_wildcard_or_public_grant_makes_the_revoke_unenforceable() {
        let mut s = state("kb");
        s.agent_grants
            .insert(grant("agent_a", COLLECTION, "*", "Search"));
        let c = plan(&s, "kb", None);
        assert!(c[1]
            .rejected
            .as_deref()
            .unwrap_or("")
            .contains("Search on Collection *"));
        let mut s = state("kb");
        s.public_grants
            .insert(grant(PUBLIC_ROLE, COLLECTION, "kb_chunks", "Query"));
        let c = plan(&s, "kb", None);
        assert!(c[1]
            .rejected
            .as_deref()
            .unwrap_or("")
            .contains("every user"));
    }

    #[test]
    fn agents_sharing_the_role_are_counted() {
        let mut s = state("kb");
        s.sharing = vec!["prod/rag/Deployment/agent-c".into()];
        let c = plan(&s, "kb", None);
        assert_eq!(c[1].blast_radius.broken, 3, "{:?}", c[1].blast_radius);
        assert!(c[1].blast_radius.items[2].contains("agent-c"));
    }

    #[test]
    fn an_already_revoked_index_says_so() {
        let mut s = state("kb");
        s.agent_grants.retain(|g| g.object_name != "kb_chunks");
        let c = plan(&s, "kb", None);
        assert!(c[1].notes[0].contains("already"));
        let spec = RevokeSpec::from_candidate(&c[1]).expect("spec");
        assert!(spec.revoked["agent_a"].is_empty());
    }
}
