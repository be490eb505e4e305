//! The pgvector store state one plan is computed from, and the ladder proposed from it without
//! I/O: `context.quarantine_source` → `context.revoke_index` → `context.quarantine_index`, each
//! with its blast radius against the envelope's context dimension.

use firebreak_containment::envelope::ContextUse;
use firebreak_containment::ids::IncidentId;
use firebreak_containment::plane::{Observation, PlanInput, PlaneError, Proposal};

use super::rungs::{quarantine_index, quarantine_source, revoke_index, PgSpec, TableRef};
use crate::shared::breached;
use crate::PLANE;

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

/// What every rung's proposal reads besides the state: the breach and the envelope's permitted
/// uses of its index.
pub(crate) struct Ladder<'a> {
    pub state: &'a ContextState,
    pub index: &'a str,
    pub incident: &'a IncidentId,
    permitted: Vec<&'a ContextUse>,
    /// What the proposals act on, e.g. `postgres table public.chunks (index kb)`.
    pub target: String,
    /// How verification retrieves, in words.
    pub verify_as: String,
}

fn describe(e: &ContextUse) -> String {
    match &e.source {
        Some(s) => format!("source {s} in index {}", e.index),
        None => format!("index {}", e.index),
    }
}

impl Ladder<'_> {
    /// Every permitted use of the index: what cutting the whole index breaks.
    pub fn whole_index(&self) -> Vec<String> {
        self.permitted.iter().map(|e| describe(e)).collect()
    }

    /// The permitted uses of one source of the index.
    pub fn of_source(&self, source: &str) -> Vec<String> {
        self.permitted
            .iter()
            .filter(|e| e.source.as_deref() == Some(source))
            .map(|e| describe(e))
            .collect()
    }

    /// One line per other agent role that loses `what`.
    pub fn others(&self, what: &str) -> Vec<String> {
        self.state
            .other_roles
            .iter()
            .map(|r| format!("other agent (role {r}) loses {what}"))
            .collect()
    }
}

impl Observation<PgSpec> for ContextState {
    fn candidates(&self, input: &PlanInput<'_>) -> Result<Vec<Proposal<PgSpec>>, PlaneError> {
        let Some((index, source)) = breached(input) else {
            return Err(PlaneError::Invalid {
                plane: PLANE,
                detail: "the alert's parameter is not a context parameter {index, source}".into(),
            });
        };
        let ladder = Ladder {
            state: self,
            index,
            incident: input.incident,
            permitted: input
                .envelope
                .context()
                .permitted
                .into_iter()
                .map(|e| &e.value)
                .filter(|e| e.index == index)
                .collect(),
            target: format!("postgres table {} (index {index})", self.table.table),
            verify_as: format!("a retrieval query as role {} (SET ROLE)", self.agent_role),
        };
        let mut out = vec![quarantine_source::propose(&ladder, source)];
        if let Some(source) = source {
            out.push(quarantine_index::propose_source(&ladder, source));
        }
        out.push(revoke_index::propose(&ladder));
        out.push(quarantine_index::propose_index(&ladder));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ALL_AGENTS;
    use crate::kinds::{QUARANTINE_INDEX, QUARANTINE_SOURCE, REVOKE_INDEX};
    use crate::postgres::PgVector;
    use crate::shared::testing;
    use firebreak_containment::plane::Plane;

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

    fn plan(source: Option<&str>) -> Vec<Proposal<PgSpec>> {
        testing::plan(&state(), OBSERVED, "kb", source)
    }

    fn kinds(c: &[Proposal<PgSpec>]) -> Vec<&'static str> {
        c.iter().map(|c| PgVector::kind_of(&c.spec).name).collect()
    }

    #[test]
    fn a_tail_source_is_quarantined_with_zero_blast_radius() {
        let c = plan(Some("email:x"));
        assert_eq!(
            kinds(&c),
            [
                QUARANTINE_SOURCE.name,
                QUARANTINE_INDEX.name,
                REVOKE_INDEX.name,
                QUARANTINE_INDEX.name
            ]
        );
        assert_eq!(c[0].blast_radius.broken, 0);
        // The two permitted sources of kb, not the tail one, not the other index.
        assert_eq!(c[2].blast_radius.broken, 2, "{:?}", c[2].blast_radius);
        // All agents: the other agent is touched.
        assert_eq!(c[1].blast_radius.broken, 1);
        assert_eq!(c[3].blast_radius.broken, 3);
        assert!(
            matches!(&c[0].spec, PgSpec::QuarantineSource(s)
                if s.agent_role == "agent_a" && s.incident == "inc-1" && s.source.as_deref() == Some("email:x")),
            "{:?}",
            c[0].spec
        );
        assert!(
            matches!(&c[1].spec, PgSpec::QuarantineIndex(s) if s.source.as_deref() == Some("email:x")),
            "{:?}",
            c[1].spec
        );
        assert!(
            matches!(&c[3].spec, PgSpec::QuarantineIndex(s) if s.source.is_none()),
            "{:?}",
            c[3].spec
        );
        assert!(c[1].notes[0].contains("approval-only"), "{:?}", c[1].notes);
        assert!(
            c[1].target.ends_with("for every agent") && !c[1].target.contains(ALL_AGENTS),
            "{}",
            c[1].target
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
        assert_eq!(
            kinds(&c),
            [
                QUARANTINE_SOURCE.name,
                REVOKE_INDEX.name,
                QUARANTINE_INDEX.name
            ]
        );
        assert!(!c[0].blocks);
        assert!(c[0].rejected.is_some());
        assert!(matches!(&c[0].spec, PgSpec::QuarantineSource(s) if s.source.is_none()));
        assert!(c[1].blocks);
        assert!(matches!(
            &c[1].spec,
            PgSpec::RevokeIndex(s) if s.pre_image_granted
        ));
    }

    #[test]
    fn a_spec_round_trips_through_its_journaled_form_and_unknown_fields_are_refused() {
        let spec = plan(Some("email:x")).remove(0).spec;
        let json = serde_json::to_value(&spec).expect("encode");
        assert_eq!(json["rung"], "quarantine_source");
        assert_eq!(
            serde_json::from_value::<PgSpec>(json.clone()).ok(),
            Some(spec)
        );
        let mut extra = json;
        extra["scope"] = "*".into();
        assert!(serde_json::from_value::<PgSpec>(extra).is_err());
    }
}
