//! Rung 1, `context.revoke_index`: deleting the agent role's row of `firebreak.index_grants`
//! cuts it off one whole index; other agents keep reading it.

use deadpool_postgres::Pool;
use firebreak_containment::plan::BlastRadius;
use firebreak_containment::plane::{Change, Check, Outcome, Proposal, Verification};
use serde::{Deserialize, Serialize};

use super::{outcome, KeyedRow, PgSpec, TableRef};
use crate::config::SCHEMA;
use crate::postgres::db::{close, connection, db, index_permitted, read_transaction, sources};
use crate::postgres::observation::Ladder;
use crate::shared::verdict;
use crate::ContextError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Spec {
    pub table: TableRef,
    pub agent_role: String,
    /// Whether the grant row existed when planned: only then does the revert restore it.
    pub pre_image_granted: bool,
    /// Other governed roles reading the index when planned: they must keep it.
    pub other_roles: Vec<String>,
}

pub(crate) fn propose(ladder: &Ladder<'_>) -> Proposal<PgSpec> {
    let state = ladder.state;
    let (role, index) = (&state.agent_role, ladder.index);
    let mut notes = vec![];
    if !state.granted {
        notes.push(format!(
            "role {role} holds no grant on index {index} already: revoking changes nothing"
        ));
    }
    let spec = PgSpec::RevokeIndex(Spec {
        table: state.table.clone(),
        agent_role: role.clone(),
        pre_image_granted: state.granted,
        other_roles: state.other_roles.clone(),
    });
    Proposal {
        blast_radius: BlastRadius::of(ladder.whole_index()),
        inverse: "restore the grant row".into(),
        verify: format!(
            "{} returns no chunk of the index; other agents still do",
            ladder.verify_as
        ),
        notes,
        ..Proposal::new(
            format!("{}: grant of role {role}", ladder.target),
            "one index, for this agent only".into(),
            spec,
        )
    }
}

pub(crate) async fn change(
    pool: &Pool,
    spec: &Spec,
    change: Change,
) -> Result<Outcome, ContextError> {
    let (role, index) = (&spec.agent_role, &spec.table.index);
    if change == Change::Revert && !spec.pre_image_granted {
        return Ok(outcome(
            0,
            format!("role {role} held no grant on index {index} before: nothing to restore"),
        ));
    }
    KeyedRow {
        insert: (
            format!("INSERT INTO {SCHEMA}.index_grants (agent_role, index_name) VALUES ($1, $2) ON CONFLICT DO NOTHING"),
            "restoring the grant row",
        ),
        delete: (
            format!("DELETE FROM {SCHEMA}.index_grants WHERE agent_role = $1 AND index_name = $2"),
            "deleting the grant row",
        ),
        params: &[role, index],
        applied_is_present: false,
    }
    .set(
        pool,
        change,
        match change {
            Change::Apply => format!("revoked index {index} from role {role}"),
            Change::Revert => format!("restored the grant of index {index} to role {role}"),
        },
    )
    .await
}

/// Retrieves as the agent's role and every other governed role, in a transaction rolled back
/// after: the agent gets nothing (or answers again), the others still read the index.
pub(crate) async fn check(
    pool: &Pool,
    spec: &Spec,
    check: Check,
) -> Result<Verification, ContextError> {
    let (role, table) = (&spec.agent_role, &spec.table);
    let mut client = connection(pool).await?;
    let tx = read_transaction(&mut client).await?;
    let granted = tx
        .query_opt(
            &format!(
                "SELECT 1 FROM {SCHEMA}.index_grants WHERE agent_role = $1 AND index_name = $2"
            ),
            &[role, &table.index],
        )
        .await
        .map_err(db("reading the grant row"))?
        .is_some();
    let any = !sources(&tx, table, None).await?.is_empty();
    let agent_sees = !sources(&tx, table, Some(role)).await?.is_empty();
    let mut problems = Vec::new();
    let want_granted = check == Check::Reverted && spec.pre_image_granted;
    if granted != want_granted {
        problems.push(format!(
            "the grant row of role {role} is {}",
            if granted { "present" } else { "absent" }
        ));
    }
    if check == Check::Applied && agent_sees {
        problems.push(format!("role {role} still retrieves chunks"));
    }
    if check == Check::Reverted
        && want_granted
        && any
        && !agent_sees
        && index_permitted(&tx, table, role).await?
    {
        problems.push(format!(
            "role {role} retrieves nothing after the grant was restored"
        ));
    }
    for other in &spec.other_roles {
        if any
            && index_permitted(&tx, table, other).await?
            && sources(&tx, table, Some(other)).await?.is_empty()
        {
            problems.push(format!("other agent role {other} lost the index"));
        }
    }
    close(tx).await?;
    Ok(verdict(
        problems,
        format!(
            "retrieval as {role} checked: index {} {}; other agents still read it",
            table.index,
            if check == Check::Applied {
                "returns nothing"
            } else {
                "answers again"
            }
        ),
    ))
}
