//! Rung 0, `context.quarantine_source`: one row of `firebreak.quarantined_sources` hides one
//! source of one index from the agent's role; every other source still answers it, and every
//! other agent still sees the source.

use std::collections::BTreeSet;

use deadpool_postgres::Pool;
use firebreak_containment::ids::IncidentId;
use firebreak_containment::plan::BlastRadius;
use firebreak_containment::plane::{Change, Check, Outcome, PlaneError, Proposal, Verification};
use serde::{Deserialize, Serialize};

use super::{KeyedRow, PgSpec, TableRef};
use crate::config::{ALL_AGENTS, SCHEMA};
use crate::postgres::db::{
    close, connection, db, index_permitted, quarantined_for, read_transaction, sources,
};
use crate::postgres::observation::Ladder;
use crate::shared::verdict;
use crate::{ContextError, PLANE};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Spec {
    pub table: TableRef,
    /// `None` when the alert names no source: the rung is proposed rejected, and cannot run.
    pub source: Option<String>,
    pub agent_role: String,
    pub incident: IncidentId,
    /// Other governed roles reading the index when planned: they must keep seeing the source.
    pub other_roles: Vec<String>,
}

pub(crate) fn propose(ladder: &Ladder<'_>, source: Option<&str>) -> Proposal<PgSpec> {
    let state = ladder.state;
    let role = &state.agent_role;
    let spec = PgSpec::QuarantineSource(Spec {
        table: state.table.clone(),
        source: source.map(str::to_string),
        agent_role: role.clone(),
        incident: ladder.incident.clone(),
        other_roles: state.other_roles.clone(),
    });
    let Some(src) = source else {
        return Proposal {
            blocks: false,
            rejected: Some("the alert names no source, only an index".into()),
            ..Proposal::new(
                ladder.target.clone(),
                "one source of one index, for this agent only".into(),
                spec,
            )
        };
    };
    Proposal {
        blast_radius: BlastRadius::of(ladder.of_source(src)),
        inverse: "delete the quarantine row (keyed by this incident)".into(),
        verify: format!(
            "{} returns no chunk of {src}, still returns every other source; other agents still see {src}",
            ladder.verify_as
        ),
        ..Proposal::new(
            format!("{}: source {src} for role {role}", ladder.target),
            format!("one source ({src}) of one index, for this agent only"),
            spec,
        )
    }
}

pub(crate) async fn change(
    pool: &Pool,
    spec: &Spec,
    change: Change,
) -> Result<Outcome, ContextError> {
    Row::of(spec, &spec.agent_role)?.change(pool, change).await
}

pub(crate) async fn check(
    pool: &Pool,
    spec: &Spec,
    check: Check,
) -> Result<Verification, ContextError> {
    Row::of(spec, &spec.agent_role)?.check(pool, check).await
}

/// One row of `firebreak.quarantined_sources`, keyed by (index, source, scope, incident):
/// `scope` is one agent role, or `*` for every agent (the approval-only rung).
pub(super) struct Row<'a> {
    pub table: &'a TableRef,
    pub source: &'a str,
    pub scope: &'a str,
    pub incident: &'a IncidentId,
    pub agent_role: &'a str,
    pub other_roles: &'a [String],
}

impl<'a> Row<'a> {
    fn of(spec: &'a Spec, scope: &'a str) -> Result<Row<'a>, ContextError> {
        let source = spec.source.as_deref().ok_or_else(|| {
            ContextError::Plane(PlaneError::Unsupported {
                plane: PLANE,
                detail: format!(
                    "the alert named no source of index {}, so no source can be quarantined; contain the index instead",
                    spec.table.index
                ),
            })
        })?;
        Ok(Row {
            table: &spec.table,
            source,
            scope,
            incident: &spec.incident,
            agent_role: &spec.agent_role,
            other_roles: &spec.other_roles,
        })
    }

    fn who(&self) -> String {
        if self.scope == ALL_AGENTS {
            "every agent".into()
        } else {
            format!("role {}", self.scope)
        }
    }

    /// Inserts (apply) or deletes (revert) the row; keyed by the incident, so a repeat finds it
    /// in place and another incident's row is never touched.
    pub async fn change(&self, pool: &Pool, change: Change) -> Result<Outcome, ContextError> {
        let (source, index, who) = (self.source, &self.table.index, self.who());
        KeyedRow {
            insert: (
                format!("INSERT INTO {SCHEMA}.quarantined_sources (index_name, source_id, agent_role, incident) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING"),
                "inserting the quarantine row",
            ),
            delete: (
                format!("DELETE FROM {SCHEMA}.quarantined_sources WHERE index_name = $1 AND source_id = $2 AND agent_role = $3 AND incident = $4"),
                "deleting the quarantine row",
            ),
            params: &[index, &self.source, &self.scope, &self.incident.as_str()],
            applied_is_present: true,
        }
        .set(
            pool,
            change,
            match change {
                Change::Apply => format!("quarantined source {source} of index {index} for {who}"),
                Change::Revert => {
                    format!("lifted the quarantine of source {source} of index {index} for {who}")
                }
            },
        )
        .await
    }

    /// Retrieves as the agent's role and as every other governed role, in a transaction rolled
    /// back after: each sees exactly what the grants and quarantine rows say it should, and the
    /// source is hidden from (or visible again to) the row's scope.
    pub async fn check(&self, pool: &Pool, check: Check) -> Result<Verification, ContextError> {
        let mut client = connection(pool).await?;
        let key: [&(dyn tokio_postgres::types::ToSql + Sync); 4] = [
            &self.table.index,
            &self.source,
            &self.scope,
            &self.incident.as_str(),
        ];
        let present = client
            .query_opt(
                &format!("SELECT 1 FROM {SCHEMA}.quarantined_sources WHERE index_name = $1 AND source_id = $2 AND agent_role = $3 AND incident = $4"),
                &key,
            )
            .await
            .map_err(db("reading the quarantine row"))?
            .is_some();
        let tx = read_transaction(&mut client).await?;
        let all = sources(&tx, self.table, None).await?;
        let mut problems = Vec::new();
        let mut roles = vec![self.agent_role.to_string()];
        roles.extend(self.other_roles.iter().cloned());
        for role in &roles {
            let hidden = quarantined_for(&tx, self.table, role).await?;
            let expected: BTreeSet<String> = if index_permitted(&tx, self.table, role).await? {
                all.difference(&hidden).cloned().collect()
            } else {
                BTreeSet::new()
            };
            let seen = sources(&tx, self.table, Some(role)).await?;
            if seen != expected {
                problems.push(format!(
                    "role {role} sees sources {seen:?}, expected {expected:?}"
                ));
            }
            // The row must decide what this action's scope sees, beyond the set comparison
            // (which also holds with other incidents' rows).
            let in_scope = self.scope == ALL_AGENTS || role == self.scope;
            if check == Check::Applied && in_scope && seen.contains(self.source) {
                problems.push(format!("role {role} still retrieves {}", self.source));
            }
        }
        close(tx).await?;
        let want = check == Check::Applied;
        if present != want {
            problems.push(format!(
                "the quarantine row is {}",
                if present { "still there" } else { "missing" }
            ));
        }
        Ok(verdict(
            problems,
            format!(
                "retrieval as {} checked: source {} {} for {}, every other source answers, other agents as expected",
                roles.join(", "),
                self.source,
                if want { "hidden" } else { "visible again" },
                self.who()
            ),
        ))
    }
}
