//! Rung 0, `context.quarantine_source`: not enforceable in Milvus 2.3. It is still proposed,
//! rejected with the reason, so the plan shows why the narrowest rung was passed over.

use firebreak_containment::plane::{PlaneError, Proposal};
use serde::{Deserialize, Serialize};

use super::MilvusSpec;
use crate::milvus::observation::{CollectionRef, Ladder};
use crate::milvus::PLANE;

/// Why Milvus cannot take the narrowest rung.
pub const NO_SOURCE_QUARANTINE: &str = "not enforceable in Milvus 2.3: it has no row-level security and its privileges stop at the collection (no partition-level privileges), so one source cannot be hidden from one agent in the store; that needs an enforcing retrieval proxy";

/// The source the alert named, in the collection; recorded so the plan reads what was asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Spec {
    pub collection: CollectionRef,
    pub source: Option<String>,
}

pub(crate) fn propose(ladder: &Ladder<'_>, source: Option<&str>) -> Proposal<MilvusSpec> {
    let spec = MilvusSpec::QuarantineSource(Spec {
        collection: ladder.state.collection.clone(),
        source: source.map(str::to_string),
    });
    let target = match source {
        Some(s) => format!(
            "{}: source {s} for role {}",
            ladder.target, ladder.state.agent_role
        ),
        None => ladder.target.clone(),
    };
    Proposal {
        blocks: false,
        rejected: Some(match source {
            Some(_) => NO_SOURCE_QUARANTINE.into(),
            None => format!("the alert names no source, only an index; {NO_SOURCE_QUARANTINE}"),
        }),
        ..Proposal::new(
            target,
            "one source of one index, for this agent only".into(),
            spec,
        )
    }
}

/// What `change` and `check` answer for this rung.
pub(crate) fn unsupported(spec: &Spec) -> PlaneError {
    PlaneError::Unsupported {
        plane: PLANE,
        detail: format!(
            "context.quarantine_source on collection {}: {NO_SOURCE_QUARANTINE}; contain the index instead",
            spec.collection.collection
        ),
    }
}
