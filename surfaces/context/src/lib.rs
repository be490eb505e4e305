//! Firebreak's context surface: per-agent source quarantine and index revocation enforced by
//! the vector store itself, as two control planes that run side by side in one daemon:
//!
//! * [`PgVector`] (`context.postgres`): PostgreSQL + pgvector row-level security reading
//!   Firebreak-owned grant and quarantine rows;
//! * [`Milvus`] (`context.milvus`): Milvus RBAC, which can only cut whole collections.
//!
//! Both declare the same ladder ([`kinds`]); each handles only the alerts about its own
//! stores' indexes, and [`side_by_side::check`] refuses an index configured in both.

pub mod config;
pub mod kinds;
pub mod milvus;
pub mod postgres;
mod shared;
pub mod side_by_side;

use firebreak_containment::plane::PlaneError;

pub use config::{ddl, ChunkTable, PostgresContextConfig};
pub use kinds::{QUARANTINE_INDEX, QUARANTINE_SOURCE, REVOKE_INDEX};
pub use milvus::{Milvus, MilvusCollection, MilvusContextConfig, MilvusSpec, PasswordSource};
pub use postgres::{PgSpec, PgVector};

/// Names the pgvector control plane in errors and plans.
pub const PLANE: &str = "postgres context store";

#[derive(Debug, Clone, thiserror::Error)]
pub enum ContextError {
    #[error("context.postgres.{field}: {reason}")]
    Config { field: String, reason: String },
    #[error("cannot reach PostgreSQL: {0}; check context.postgres.dsn and that the server is up")]
    Unreachable(String),
    #[error("PostgreSQL is temporarily failing while {doing}: {detail}")]
    Busy { doing: String, detail: String },
    #[error("PostgreSQL failed while {doing}: {detail}")]
    Database { doing: String, detail: String },
    #[error("the alert's parameter is not a context parameter {{index, source}}; send it with dimension context")]
    NotContext,
    #[error("index {index:?} is not a configured store; known indexes: {known:?} (context.postgres.tables[].index)")]
    UnknownIndex { index: String, known: Vec<String> },
    #[error("agent {0} has no database role under context.postgres.roles; add one to contain it")]
    UnknownAgent(String),
    #[error("table {0} does not exist; fix context.postgres.tables[].table or create the table")]
    UnknownTable(String),
    #[error("table {table} has no column {column:?} (its {field}); every chunk must carry its source id and embedding: fix the config or add the column")]
    UnknownColumn {
        table: String,
        field: &'static str,
        column: String,
    },
    #[error("database role {role:?} ({field}) does not exist; create it or fix the config")]
    UnknownRole { role: String, field: String },
    #[error("source {id:?} has no chunk in {table}.{column}; check the alert's source id")]
    UnknownSource {
        id: String,
        table: String,
        column: String,
    },
    #[error("Firebreak's row-level security is not installed on {0}; run `firebreak context ddl` and apply it (or let the daemon install it)")]
    NotInstalled(String),
    #[error("cannot SET ROLE {role}: {detail}; grant that role to Firebreak's database user so it can verify as the agent")]
    SetRole { role: String, detail: String },
    #[error("context.milvus.{field}: {reason}")]
    MilvusConfig { field: String, reason: String },
    #[error("cannot reach Milvus: {0}; check context.milvus.address and that the server is up")]
    MilvusUnreachable(String),
    #[error("Milvus is temporarily failing while {doing}: {detail}")]
    MilvusBusy { doing: String, detail: String },
    #[error("Milvus failed while {doing}: {detail}")]
    Milvus { doing: String, detail: String },
    #[error("index {index:?} is not a configured Milvus collection; known indexes: {known:?} (context.milvus.collections[].index)")]
    MilvusUnknownIndex { index: String, known: Vec<String> },
    #[error("agent {0} has no Milvus role under context.milvus.roles; add one to contain it")]
    MilvusUnknownAgent(String),
    #[error("collection {collection:?} does not exist in Milvus database {database:?}; fix context.milvus.collections[].collection (or .database) or create it")]
    UnknownCollection {
        collection: String,
        database: String,
    },
    #[error("Milvus role {role:?} ({field}) does not exist; create it and grant it to the agent's user, or fix the config")]
    MilvusUnknownRole { role: String, field: String },
    #[error("index {index:?} is both {table} and {collection}; an index names one store, so rename one of them (their .index)")]
    SharedIndex {
        index: String,
        table: String,
        collection: String,
    },
    #[error(transparent)]
    Plane(PlaneError),
}

impl ContextError {
    /// The store an error came from, as plans and errors name it.
    fn plane(&self) -> &'static str {
        match self {
            ContextError::MilvusConfig { .. }
            | ContextError::MilvusUnreachable(_)
            | ContextError::MilvusBusy { .. }
            | ContextError::Milvus { .. }
            | ContextError::MilvusUnknownIndex { .. }
            | ContextError::MilvusUnknownAgent(_)
            | ContextError::UnknownCollection { .. }
            | ContextError::MilvusUnknownRole { .. } => milvus::PLANE,
            _ => PLANE,
        }
    }
}

/// What the engine's error policy reads: no answer is `Unreachable`, a store that is shedding
/// load `Unavailable`, a store that said no `Refused`, anything about the request `Invalid`.
impl From<ContextError> for PlaneError {
    fn from(e: ContextError) -> PlaneError {
        let plane = e.plane();
        let detail = e.to_string();
        match e {
            ContextError::Plane(p) => p,
            ContextError::Unreachable(_) | ContextError::MilvusUnreachable(_) => {
                PlaneError::Unreachable { plane, detail }
            }
            ContextError::Busy { .. } | ContextError::MilvusBusy { .. } => {
                PlaneError::Unavailable { plane, detail }
            }
            ContextError::Database { .. }
            | ContextError::SetRole { .. }
            | ContextError::Milvus { .. } => PlaneError::Refused { plane, detail },
            _ => PlaneError::Invalid { plane, detail },
        }
    }
}
