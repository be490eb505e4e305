//! Rung 2, `context.quarantine_index` (approval only): every configured role's privileges on
//! one collection are revoked; roles Firebreak was not told about keep theirs.

use std::collections::BTreeMap;

use firebreak_containment::plan::BlastRadius;
use firebreak_containment::plane::Proposal;

use super::{MilvusSpec, Revocation};
use crate::milvus::observation::Ladder;

pub(crate) fn propose(ladder: &Ladder<'_>) -> Proposal<MilvusSpec> {
    let state = ladder.state;
    let collection = &state.collection.collection;
    let mut revoked = BTreeMap::from([(state.agent_role.clone(), ladder.held.clone())]);
    let mut items = ladder.in_envelope.clone();
    for (other, (agent, grants)) in &state.others {
        if grants.is_empty() {
            continue;
        }
        revoked.insert(
            other.clone(),
            grants.iter().map(|g| g.privilege.clone()).collect(),
        );
        items.push(format!(
            "other agent {agent} (role {other}) loses index {}",
            ladder.index
        ));
    }
    let roles: Vec<&String> = revoked.keys().collect();
    let verify = format!(
        "SelectGrant read back: roles {roles:?} hold no privilege on collection {collection}"
    );
    let spec = MilvusSpec::QuarantineIndex(Revocation {
        collection: state.collection.clone(),
        revoked,
        kept: ladder.kept_elsewhere.clone(),
    });
    Proposal {
        blast_radius: BlastRadius::of(items),
        inverse: "grant every role exactly the privileges revoked from it again".into(),
        verify,
        rejected: ladder.uncuttable.clone(),
        notes: vec![format!(
            "roles not under context.milvus.roles keep their grants on collection {collection}"
        )],
        ..Proposal::new(
            format!("{}: every configured role", ladder.target),
            "one whole index (collection), for every configured agent".into(),
            spec,
        )
    }
}
