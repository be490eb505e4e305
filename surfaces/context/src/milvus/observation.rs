//! The Milvus state one plan is computed from, and the ladder proposed from it without I/O.
//!
//! Milvus 2.3 has no row-level security and no partition-level privileges, so the narrowest
//! rung it can enforce is one collection for one role: `context.quarantine_source` is always
//! rejected with that reason, `context.revoke_index` revokes the agent role's privileges on the
//! collection, and `context.quarantine_index` revokes them from every configured role.

use std::collections::{BTreeMap, BTreeSet};

use firebreak_containment::plane::{Observation, PlanInput, PlaneError, Proposal};
use serde::{Deserialize, Serialize};

use super::config::{ADMIN_ROLE, PUBLIC_ROLE};
use super::grpc::COLLECTION;
use super::rungs::{quarantine_index, quarantine_source, revoke_index, MilvusSpec};
use super::PLANE;
use crate::shared::breached;

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

    pub(crate) fn agent_privileges(&self) -> BTreeSet<String> {
        self.on_collection(&self.agent_grants)
            .map(|g| g.privilege.clone())
            .collect()
    }

    /// Why revoking the agent role's grants on the collection would not stop the agent's user
    /// from retrieving there: another grant covers it, and Milvus has no deny.
    pub(crate) fn uncuttable(&self) -> Option<String> {
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

/// What every rung's proposal reads besides the state: the breach and what it would cost.
pub(crate) struct Ladder<'a> {
    pub state: &'a MilvusState,
    pub index: &'a str,
    /// What the proposals act on, e.g. `milvus collection default.kb (index kb)`.
    pub target: String,
    /// The privileges the agent's role holds on the collection now (the pre-image).
    pub held: BTreeSet<String>,
    /// Why no revoke of the agent's role cuts the agent off, if none does.
    pub uncuttable: Option<String>,
    /// The agent role's grants on everything but this collection: every rung keeps them.
    pub kept_elsewhere: BTreeSet<Grant>,
    /// The in-envelope uses revoking the agent role's grants breaks.
    pub in_envelope: Vec<String>,
}

impl Observation<MilvusSpec> for MilvusState {
    fn candidates(&self, input: &PlanInput<'_>) -> Result<Vec<Proposal<MilvusSpec>>, PlaneError> {
        let Some((index, source)) = breached(input) else {
            return Err(PlaneError::Invalid {
                plane: PLANE,
                detail: "the alert's parameter is not a context parameter {index, source}".into(),
            });
        };
        let c = &self.collection;
        let held = self.agent_privileges();
        let mut in_envelope: Vec<String> = input
            .envelope
            .context()
            .permitted
            .into_iter()
            .filter(|e| e.value.index == index)
            .map(|e| match &e.value.source {
                Some(s) => format!("source {s} in index {index}"),
                None => format!("index {index}"),
            })
            .collect();
        if !held.is_empty() {
            in_envelope.extend(self.sharing.iter().map(|agent| {
                format!(
                    "other agent {agent} (same role {}) loses index {index}",
                    self.agent_role
                )
            }));
        }
        let ladder = Ladder {
            state: self,
            index,
            target: format!(
                "milvus collection {}.{} (index {index})",
                c.database, c.collection
            ),
            uncuttable: self.uncuttable(),
            kept_elsewhere: self
                .agent_grants
                .iter()
                .filter(|g| !(g.object == COLLECTION && g.object_name == c.collection))
                .cloned()
                .collect(),
            held,
            in_envelope,
        };
        Ok(vec![
            quarantine_source::propose(&ladder, source),
            revoke_index::propose(&ladder),
            quarantine_index::propose(&ladder),
        ])
    }
}

/// Privileges as an operator reads them.
pub(crate) fn list(privileges: &BTreeSet<String>) -> String {
    if privileges.is_empty() {
        "none".into()
    } else {
        privileges.iter().cloned().collect::<Vec<_>>().join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::{QUARANTINE_INDEX, QUARANTINE_SOURCE, REVOKE_INDEX};
    use crate::milvus::rungs::Revocation;
    use crate::milvus::Milvus;
    use crate::shared::testing;
    use firebreak_containment::plane::Plane;

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

    fn plan(state: &MilvusState, index: &str, source: Option<&str>) -> Vec<Proposal<MilvusSpec>> {
        testing::plan(state, OBSERVED, index, source)
    }

    /// The revocation a proposal carries; panics on the rejected rung 0.
    fn revocation(p: &Proposal<MilvusSpec>) -> &Revocation {
        match &p.spec {
            MilvusSpec::RevokeIndex(r) | MilvusSpec::QuarantineIndex(r) => r,
            other => panic!("not a revocation: {other:?}"),
        }
    }

    #[test]
    fn an_index_outside_the_envelope_is_revoked_for_the_agent_at_zero_blast_radius() {
        let c = plan(&state("secrets"), "secrets", Some("email:x"));
        let kinds: Vec<_> = c.iter().map(|c| Milvus::kind_of(&c.spec).name).collect();
        assert_eq!(
            kinds,
            [
                QUARANTINE_SOURCE.name,
                REVOKE_INDEX.name,
                QUARANTINE_INDEX.name
            ]
        );
        assert!(!c[0].blocks);
        assert!(
            matches!(&c[0].spec, MilvusSpec::QuarantineSource(s) if s.source.as_deref() == Some("email:x")),
            "{:?}",
            c[0].spec
        );
        assert!(c[0]
            .rejected
            .as_deref()
            .unwrap_or("")
            .contains("not enforceable in Milvus 2.3"));
        assert_eq!(c[1].blast_radius.broken, 0);
        assert!(c[1].rejected.is_none());
        let spec = revocation(&c[1]);
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
        assert_eq!(revocation(&c[2]).revoked.len(), 2);
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
        assert!(revocation(&c[1]).revoked["agent_a"].is_empty());
    }
}
