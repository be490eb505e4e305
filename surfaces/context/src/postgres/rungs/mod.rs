//! The pgvector ladder, one file per rung: each holds its typed spec, how it is proposed (blast
//! radius included), and its `change` and `check` against the store.

pub mod quarantine_index;
pub mod quarantine_source;
pub mod revoke_index;

use firebreak_containment::plane::Outcome;
use serde::{Deserialize, Serialize};

use crate::config::quote_ident;

/// What a pgvector action does, journaled with the intent: everything `change` and `check`
/// need, the pre-image included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "rung", rename_all = "snake_case", deny_unknown_fields)]
pub enum PgSpec {
    QuarantineSource(quarantine_source::Spec),
    RevokeIndex(revoke_index::Spec),
    QuarantineIndex(quarantine_index::Spec),
}

/// The chunk table an action works on, as configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TableRef {
    /// The index name envelopes and alerts use.
    pub index: String,
    /// `table` or `schema.table`.
    pub table: String,
    pub source_column: String,
}

impl TableRef {
    /// The table name quoted for SQL, schema-qualified as configured.
    pub fn quoted(&self) -> String {
        self.table
            .split('.')
            .map(quote_ident)
            .collect::<Vec<_>>()
            .join(".")
    }
}

/// A write keyed by the action: no row touched means the store was already in the target state.
fn outcome(rows: u64, detail: String) -> Outcome {
    if rows > 0 {
        Outcome::changed(detail)
    } else {
        Outcome::unchanged(format!("already in place: {detail}"))
    }
}
