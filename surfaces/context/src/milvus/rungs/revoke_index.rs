//! Rung 1, `context.revoke_index`: the agent role's privileges on one collection are revoked;
//! its grants elsewhere and every other role's grants stay.

use std::collections::BTreeMap;

use firebreak_containment::plan::BlastRadius;
use firebreak_containment::plane::Proposal;

use super::{MilvusSpec, Revocation};
use crate::milvus::observation::{list, Ladder};

pub(crate) fn propose(ladder: &Ladder<'_>) -> Proposal<MilvusSpec> {
    let state = ladder.state;
    let (role, collection) = (&state.agent_role, &state.collection.collection);
    let users: Vec<&String> = state.users.iter().collect();
    let mut kept = ladder.kept_elsewhere.clone();
    kept.extend(
        state
            .others
            .values()
            .flat_map(|(_, grants)| grants.iter().cloned()),
    );
    let mut notes = vec![];
    if ladder.held.is_empty() {
        notes.push(format!(
            "role {role} holds no privilege on collection {collection} already: revoking changes nothing"
        ));
    }
    let spec = MilvusSpec::RevokeIndex(Revocation {
        collection: state.collection.clone(),
        revoked: BTreeMap::from([(role.clone(), ladder.held.clone())]),
        kept,
    });
    Proposal {
        blast_radius: BlastRadius::of(ladder.in_envelope.clone()),
        inverse: format!(
            "grant role {role} exactly the revoked privileges ({}) again",
            list(&ladder.held)
        ),
        verify: format!(
            "SelectGrant read back: role {role} holds no privilege on collection {collection}; its other grants and other roles' grants are unchanged"
        ),
        rejected: ladder.uncuttable.clone(),
        notes,
        ..Proposal::new(
            format!(
                "{}: privileges {} of role {role} (users {users:?})",
                ladder.target,
                list(&ladder.held)
            ),
            "one index (collection), for this agent only".into(),
            spec,
        )
    }
}
