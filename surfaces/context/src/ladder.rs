//! The context ladder for one breach, computed from a [`ContextState`] without I/O:
//! `context.quarantine_source` → `context.revoke_index` → `context.quarantine_index`, each with
//! its blast radius against the envelope's context dimension.

use firebreak_containment::action::ActionKind;
use firebreak_containment::alert::Parameter;
use firebreak_containment::envelope::{ContextUse, Observed};
use firebreak_containment::plan::{BlastRadius, Candidate, Enforcement};
use firebreak_containment::surface::{Observation, PlanInput, SurfaceError};
use serde::{Deserialize, Serialize};

use crate::config::ALL_AGENTS;
use crate::shared::spec_value;
use crate::PLANE;

/// The chunk table an action works on, as configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TableRef {
    /// The index name envelopes and alerts use.
    pub index: String,
    /// `table` or `schema.table`.
    pub table: String,
    pub source_column: String,
}

/// What a context action does, journaled inside the intent: everything needed to apply, verify
/// and undo it, including the pre-image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum ActionSpec {
    /// One row in `firebreak.quarantined_sources`, keyed by (index, source, role, incident).
    /// `scope` is the agent's role, or `*` for every agent (approval only).
    #[serde(rename_all = "camelCase")]
    QuarantineSource {
        table: TableRef,
        source: String,
        scope: String,
        agent_role: String,
        incident: String,
        other_roles: Vec<String>,
    },
    /// Deletes the (role, index) row of `firebreak.index_grants`.
    #[serde(rename_all = "camelCase")]
    RevokeIndex {
        table: TableRef,
        agent_role: String,
        /// Whether the grant row existed when planned: only then does revert restore it.
        pre_image_granted: bool,
        other_roles: Vec<String>,
    },
    /// One row in `firebreak.quarantined_indexes`, keyed by (index, incident).
    #[serde(rename_all = "camelCase")]
    QuarantineIndex {
        table: TableRef,
        agent_role: String,
        incident: String,
        other_roles: Vec<String>,
    },
}

impl ActionSpec {
    pub fn from_candidate(c: &Candidate) -> Result<ActionSpec, SurfaceError> {
        serde_json::from_value(c.spec.clone()).map_err(|e| SurfaceError::Invalid {
            plane: PLANE,
            detail: format!(
                "the journaled spec of {} is not a context action ({e}); re-plan the incident",
                c.kind
            ),
        })
    }
}

/// The store state one plan is computed from (read by `observe`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextState {
    pub table: TableRef,
    pub agent_role: String,
    /// Whether the agent's role holds the grant row for this index now.
    pub granted: bool,
    /// Other governed roles that can read this index now.
    pub other_roles: Vec<String>,
}

impl Observation for ContextState {
    fn candidates(&self, input: &PlanInput<'_>) -> Result<Vec<Candidate>, SurfaceError> {
        let Parameter::Context { index, source } = &input.alert.parameter else {
            return Err(SurfaceError::Invalid {
                plane: PLANE,
                detail: "the alert's parameter is not a context parameter {index, source}".into(),
            });
        };
        let permitted: Vec<&Observed<ContextUse>> = input
            .envelope
            .context()
            .permitted
            .into_iter()
            .filter(|e| e.value.index == *index)
            .collect();
        let describe = |e: &ContextUse| match &e.source {
            Some(s) => format!("source {s} in index {}", e.index),
            None => format!("index {}", e.index),
        };
        let whole_index: Vec<String> = permitted.iter().map(|e| describe(&e.value)).collect();
        let others = |what: &str| -> Vec<String> {
            self.other_roles
                .iter()
                .map(|r| format!("other agent (role {r}) loses {what}"))
                .collect()
        };
        let table = &self.table;
        let target = format!("postgres table {} (index {index})", table.table);
        let verify_as = format!("a retrieval query as role {} (SET ROLE)", self.agent_role);
        let mut out = Vec::new();

        match source {
            Some(src) => {
                let in_envelope: Vec<String> = permitted
                    .iter()
                    .filter(|e| e.value.source.as_deref() == Some(src.as_str()))
                    .map(|e| describe(&e.value))
                    .collect();
                out.push(Candidate {
                    kind: ActionKind::ContextQuarantineSource,
                    target: format!("{target}: source {src} for role {}", self.agent_role),
                    granularity: format!("one source ({src}) of one index, for this agent only"),
                    blast_radius: BlastRadius::of(in_envelope.clone()),
                    blocks: true,
                    inverse: "delete the quarantine row (keyed by this incident)".into(),
                    verify: format!(
                        "{verify_as} returns no chunk of {src}, still returns every other source; other agents still see {src}"
                    ),
                    enforcement: Enforcement::Durable,
                    rejected: None,
                    notes: vec![],
                    spec: spec_value(PLANE, &ActionSpec::QuarantineSource {
                        table: table.clone(),
                        source: src.clone(),
                        scope: self.agent_role.clone(),
                        agent_role: self.agent_role.clone(),
                        incident: input.incident.to_string(),
                        other_roles: self.other_roles.clone(),
                    })?,
                });
                let mut items = in_envelope;
                items.extend(others(&format!("source {src} in index {index}")));
                out.push(Candidate {
                    kind: ActionKind::ContextQuarantineIndex,
                    target: format!("{target}: source {src} for every agent"),
                    granularity: format!(
                        "one source ({src}) of one index, for every agent (a poisoned source)"
                    ),
                    blast_radius: BlastRadius::of(items),
                    blocks: true,
                    inverse: "delete the all-agents quarantine row (keyed by this incident)".into(),
                    verify: format!(
                        "{verify_as} and as every other agent role returns no chunk of {src}"
                    ),
                    enforcement: Enforcement::Durable,
                    rejected: None,
                    notes: vec![
                        "hiding a source from every agent is planned on the approval-only rung"
                            .into(),
                    ],
                    spec: spec_value(
                        PLANE,
                        &ActionSpec::QuarantineSource {
                            table: table.clone(),
                            source: src.clone(),
                            scope: ALL_AGENTS.into(),
                            agent_role: self.agent_role.clone(),
                            incident: input.incident.to_string(),
                            other_roles: self.other_roles.clone(),
                        },
                    )?,
                });
            }
            None => out.push(Candidate {
                kind: ActionKind::ContextQuarantineSource,
                target: target.clone(),
                granularity: "one source of one index, for this agent only".into(),
                blast_radius: BlastRadius::default(),
                blocks: false,
                inverse: String::new(),
                verify: String::new(),
                enforcement: Enforcement::Durable,
                rejected: Some("the alert names no source, only an index".into()),
                notes: vec![],
                spec: serde_json::Value::Null,
            }),
        }

        let mut notes = vec![];
        if !self.granted {
            notes.push(format!(
                "role {} holds no grant on index {index} already: revoking changes nothing",
                self.agent_role
            ));
        }
        out.push(Candidate {
            kind: ActionKind::ContextRevokeIndex,
            target: format!("{target}: grant of role {}", self.agent_role),
            granularity: "one index, for this agent only".into(),
            blast_radius: BlastRadius::of(whole_index.clone()),
            blocks: true,
            inverse: "restore the grant row".into(),
            verify: format!("{verify_as} returns no chunk of the index; other agents still do"),
            enforcement: Enforcement::Durable,
            rejected: None,
            notes,
            spec: spec_value(
                PLANE,
                &ActionSpec::RevokeIndex {
                    table: table.clone(),
                    agent_role: self.agent_role.clone(),
                    pre_image_granted: self.granted,
                    other_roles: self.other_roles.clone(),
                },
            )?,
        });

        let mut items = whole_index;
        items.extend(others(&format!("index {index}")));
        out.push(Candidate {
            kind: ActionKind::ContextQuarantineIndex,
            target: format!("{target}: every agent"),
            granularity: "one whole index, for every agent".into(),
            blast_radius: BlastRadius::of(items),
            blocks: true,
            inverse: "delete the index quarantine row (keyed by this incident)".into(),
            verify: format!("{verify_as} and as every other agent role returns no chunk"),
            enforcement: Enforcement::Durable,
            rejected: None,
            notes: vec![],
            spec: spec_value(
                PLANE,
                &ActionSpec::QuarantineIndex {
                    table: table.clone(),
                    agent_role: self.agent_role.clone(),
                    incident: input.incident.to_string(),
                    other_roles: self.other_roles.clone(),
                },
            )?,
        });
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::testing;

    /// A tail source (`email:x`) beside two permitted ones in `kb`, and a second index.
    const OBSERVED: &[&str] = &[
        r#"{index: kb, source: "wiki:handbook", closure: literal, count: 50, sessions: 9}"#,
        r#"{index: kb, source: "crm:accounts", closure: literal, count: 50, sessions: 9}"#,
        r#"{index: kb, source: "email:x", closure: literal, count: 1, sessions: 1}"#,
        "{index: other, closure: literal, count: 50, sessions: 9}",
    ];

    fn state() -> ContextState {
        ContextState {
            table: TableRef {
                index: "kb".into(),
                table: "public.chunks".into(),
                source_column: "source_id".into(),
            },
            agent_role: "agent_a".into(),
            granted: true,
            other_roles: vec!["agent_b".into()],
        }
    }

    fn plan(source: Option<&str>) -> Vec<Candidate> {
        testing::plan(&state(), OBSERVED, "kb", source)
    }

    #[test]
    fn a_tail_source_is_quarantined_with_zero_blast_radius() {
        let c = plan(Some("email:x"));
        let kinds: Vec<_> = c.iter().map(|c| c.kind).collect();
        assert_eq!(
            kinds,
            [
                ActionKind::ContextQuarantineSource,
                ActionKind::ContextQuarantineIndex,
                ActionKind::ContextRevokeIndex,
                ActionKind::ContextQuarantineIndex
            ]
        );
        assert_eq!(c[0].blast_radius.broken, 0);
        // The two permitted sources of kb, not the tail one, not the other index.
        assert_eq!(c[2].blast_radius.broken, 2, "{:?}", c[2].blast_radius);
        // All agents: the other agent is touched.
        assert_eq!(c[1].blast_radius.broken, 1);
        assert_eq!(c[3].blast_radius.broken, 3);
        let spec = ActionSpec::from_candidate(&c[0]).expect("spec");
        assert!(
            matches!(spec, ActionSpec::QuarantineSource { ref scope, ref incident, .. } if scope == "agent_a" && incident == "inc-1")
        );
        let spec = ActionSpec::from_candidate(&c[1]).expect("spec");
        assert!(
            matches!(spec, ActionSpec::QuarantineSource { ref scope, .. } if scope == ALL_AGENTS)
        );
    }

    #[test]
    fn quarantining_a_permitted_source_counts_it() {
        let c = plan(Some("wiki:handbook"));
        assert_eq!(
            c[0].blast_radius.items,
            ["source wiki:handbook in index kb"]
        );
    }

    #[test]
    fn without_a_source_only_the_index_rungs_block() {
        let c = plan(None);
        assert!(!c[0].blocks);
        assert!(c[0].rejected.is_some());
        assert_eq!(c[1].kind, ActionKind::ContextRevokeIndex);
        assert!(c[1].blocks);
        let spec = ActionSpec::from_candidate(&c[1]).expect("spec");
        assert!(matches!(
            spec,
            ActionSpec::RevokeIndex {
                pre_image_granted: true,
                ..
            }
        ));
    }
}
