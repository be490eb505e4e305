//! The pgvector ladder, one file per rung: each holds its typed spec, how it is proposed (blast
//! radius included), and its `change` and `check` against the store.

pub mod quarantine_index;
pub mod quarantine_source;
pub mod revoke_index;

use deadpool_postgres::Pool;
use firebreak_containment::plane::{Change, Outcome};
use serde::{Deserialize, Serialize};
use tokio_postgres::types::ToSql;

use super::db::{connection, db};
use crate::config::quote_ident;
use crate::ContextError;

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

/// One bookkeeping row whose presence (a quarantine) or absence (a revoked grant) is the action.
/// Both statements are keyed, so a repeat touches nothing and reads as already in place.
pub(super) struct KeyedRow<'a> {
    /// `INSERT … ON CONFLICT DO NOTHING`, and what it is doing, for errors.
    pub insert: (String, &'static str),
    pub delete: (String, &'static str),
    pub params: &'a [&'a (dyn ToSql + Sync)],
    /// Applying inserts the row (a quarantine), or deletes it (a revoked grant).
    pub applied_is_present: bool,
}

impl KeyedRow<'_> {
    /// Puts the store in the state `change` asks for; `done` describes that state.
    pub async fn set(
        &self,
        pool: &Pool,
        change: Change,
        done: String,
    ) -> Result<Outcome, ContextError> {
        let client = connection(pool).await?;
        let (sql, doing) = if (change == Change::Apply) == self.applied_is_present {
            &self.insert
        } else {
            &self.delete
        };
        let rows = client
            .execute(sql.as_str(), self.params)
            .await
            .map_err(db(doing))?;
        Ok(outcome(rows, done))
    }
}
