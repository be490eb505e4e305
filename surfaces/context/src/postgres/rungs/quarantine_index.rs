//! Rung 2, `context.quarantine_index` (approval only), for every agent: one row of
//! `firebreak.quarantined_indexes` hides a whole index, or, when the alert names a poisoned
//! source, one all-agents row of `firebreak.quarantined_sources` hides that source.

use deadpool_postgres::Pool;
use firebreak_containment::ids::IncidentId;
use firebreak_containment::plan::BlastRadius;
use firebreak_containment::plane::{Change, Check, Outcome, Proposal, Verification};
use serde::{Deserialize, Serialize};

use super::quarantine_source::Row;
use super::{KeyedRow, PgSpec, TableRef};
use crate::config::{ALL_AGENTS, SCHEMA};
use crate::postgres::db::{close, connection, db, read_transaction, sources};
use crate::postgres::observation::Ladder;
use crate::shared::verdict;
use crate::ContextError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Spec {
    pub table: TableRef,
    /// `Some`: only this source, hidden from every agent; `None`: the whole index.
    pub source: Option<String>,
    pub agent_role: String,
    pub incident: IncidentId,
    /// Every other governed role reading the index when planned: they lose it too.
    pub other_roles: Vec<String>,
}

impl Spec {
    fn row(&self) -> Option<Row<'_>> {
        Some(Row {
            table: &self.table,
            source: self.source.as_deref()?,
            scope: ALL_AGENTS,
            incident: &self.incident,
            agent_role: &self.agent_role,
            other_roles: &self.other_roles,
        })
    }

    fn of(ladder: &Ladder<'_>, source: Option<&str>) -> PgSpec {
        let state = ladder.state;
        PgSpec::QuarantineIndex(Spec {
            table: state.table.clone(),
            source: source.map(str::to_string),
            agent_role: state.agent_role.clone(),
            incident: ladder.incident.clone(),
            other_roles: state.other_roles.clone(),
        })
    }
}

/// A poisoned source, hidden from every agent.
pub(crate) fn propose_source(ladder: &Ladder<'_>, source: &str) -> Proposal<PgSpec> {
    let mut items = ladder.of_source(source);
    items.extend(ladder.others(&format!("source {source} in index {}", ladder.index)));
    Proposal {
        blast_radius: BlastRadius::of(items),
        inverse: "delete the all-agents quarantine row (keyed by this incident)".into(),
        verify: format!(
            "{} and as every other agent role returns no chunk of {source}",
            ladder.verify_as
        ),
        notes: vec!["hiding a source from every agent is planned on the approval-only rung".into()],
        ..Proposal::new(
            format!("{}: source {source} for every agent", ladder.target),
            format!("one source ({source}) of one index, for every agent (a poisoned source)"),
            Spec::of(ladder, Some(source)),
        )
    }
}

/// The whole index, for every agent.
pub(crate) fn propose_index(ladder: &Ladder<'_>) -> Proposal<PgSpec> {
    let mut items = ladder.whole_index();
    items.extend(ladder.others(&format!("index {}", ladder.index)));
    Proposal {
        blast_radius: BlastRadius::of(items),
        inverse: "delete the index quarantine row (keyed by this incident)".into(),
        verify: format!(
            "{} and as every other agent role returns no chunk",
            ladder.verify_as
        ),
        ..Proposal::new(
            format!("{}: every agent", ladder.target),
            "one whole index, for every agent".into(),
            Spec::of(ladder, None),
        )
    }
}

pub(crate) async fn change(
    pool: &Pool,
    spec: &Spec,
    change: Change,
) -> Result<Outcome, ContextError> {
    if let Some(row) = spec.row() {
        return row.change(pool, change).await;
    }
    let index = &spec.table.index;
    KeyedRow {
        insert: (
            format!("INSERT INTO {SCHEMA}.quarantined_indexes (index_name, incident) VALUES ($1, $2) ON CONFLICT DO NOTHING"),
            "inserting the index quarantine row",
        ),
        delete: (
            format!("DELETE FROM {SCHEMA}.quarantined_indexes WHERE index_name = $1 AND incident = $2"),
            "deleting the index quarantine row",
        ),
        params: &[index, &spec.incident.as_str()],
        applied_is_present: true,
    }
    .set(
        pool,
        change,
        match change {
            Change::Apply => format!("quarantined index {index} for every agent"),
            Change::Revert => format!("lifted the quarantine of index {index}"),
        },
    )
    .await
}

/// The row is in place (or gone), and, once applied, no governed role retrieves anything.
pub(crate) async fn check(
    pool: &Pool,
    spec: &Spec,
    check: Check,
) -> Result<Verification, ContextError> {
    if let Some(row) = spec.row() {
        return row.check(pool, check).await;
    }
    let mut client = connection(pool).await?;
    let tx = read_transaction(&mut client).await?;
    let present = tx
        .query_opt(
            &format!("SELECT 1 FROM {SCHEMA}.quarantined_indexes WHERE index_name = $1 AND incident = $2"),
            &[&spec.table.index, &spec.incident.as_str()],
        )
        .await
        .map_err(db("reading the index quarantine row"))?
        .is_some();
    let applied = check == Check::Applied;
    let mut problems = Vec::new();
    if present != applied {
        problems.push(format!(
            "the index quarantine row is {}",
            if present { "still there" } else { "missing" }
        ));
    }
    if applied {
        for role in std::iter::once(&spec.agent_role).chain(&spec.other_roles) {
            if !sources(&tx, &spec.table, Some(role)).await?.is_empty() {
                problems.push(format!("role {role} still retrieves chunks"));
            }
        }
    }
    close(tx).await?;
    Ok(verdict(
        problems,
        format!(
            "index {} {} for every agent",
            spec.table.index,
            if applied {
                "returns nothing"
            } else {
                "answers again"
            }
        ),
    ))
}
