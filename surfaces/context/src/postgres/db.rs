//! PostgreSQL access shared by the pgvector plane's rungs: the one connection pool, the catalog
//! checks, the reads verification makes as an agent's role, and how a failure reads.

use std::collections::BTreeSet;
use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime, Transaction,
};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

use super::rungs::TableRef;
use crate::config::{quote_ident, ChunkTable, PostgresContextConfig, POLICY, SCHEMA};
use crate::ContextError;

/// Connections the plane keeps: one action and its verification poll rarely need more.
const POOL_SIZE: usize = 4;
/// How long connecting (TCP and authentication) or waiting for a free connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A peer that stops acknowledging what is sent is given up after this long.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(15);

/// The plane's pool, built once; it connects lazily, on the first call that needs it.
pub(crate) fn pool(config: &PostgresContextConfig) -> Result<Pool, ContextError> {
    let mut pg =
        tokio_postgres::Config::from_str(&config.dsn).map_err(|e| ContextError::Config {
            field: "dsn".into(),
            reason: format!("not a libpq connection string or postgresql:// URL: {e}"),
        })?;
    if pg.get_tcp_user_timeout().is_none() {
        pg.tcp_user_timeout(TCP_USER_TIMEOUT);
    }
    let manager = Manager::from_config(
        pg,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(POOL_SIZE)
        .runtime(Runtime::Tokio1)
        .create_timeout(Some(CONNECT_TIMEOUT))
        .wait_timeout(Some(CONNECT_TIMEOUT))
        .recycle_timeout(Some(CONNECT_TIMEOUT))
        .build()
        .map_err(|e| ContextError::Config {
            field: "dsn".into(),
            reason: format!("cannot build the connection pool: {e}"),
        })
}

/// A pooled connection.
pub(crate) async fn connection(pool: &Pool) -> Result<Object, ContextError> {
    pool.get().await.map_err(|e| match e {
        PoolError::Backend(e) => classify("connecting", e),
        other => ContextError::Unreachable(other.to_string()),
    })
}

/// A read-only transaction for verification: the caller rolls it back, so the `SET LOCAL
/// ROLE`s it makes end with it and a pooled connection is handed back as it was.
pub(crate) async fn read_transaction(client: &mut Object) -> Result<Transaction<'_>, ContextError> {
    client
        .transaction()
        .await
        .map_err(db("opening a read transaction"))
}

pub(crate) async fn close(tx: Transaction<'_>) -> Result<(), ContextError> {
    tx.rollback()
        .await
        .map_err(db("closing the read transaction"))
}

pub(crate) fn table_ref(t: &ChunkTable) -> TableRef {
    TableRef {
        index: t.index_name().to_string(),
        table: t.table.clone(),
        source_column: t.source_column.clone(),
    }
}

pub(crate) async fn check_table(client: &Client, table: &ChunkTable) -> Result<(), ContextError> {
    let row = client
        .query_one("SELECT to_regclass($1)::oid", &[&table.quoted()])
        .await
        .map_err(db("looking the table up"))?;
    let Some(oid) = row.get::<_, Option<u32>>(0) else {
        return Err(ContextError::UnknownTable(table.table.clone()));
    };
    for (field, column) in [
        ("sourceColumn", &table.source_column),
        ("embeddingColumn", &table.embedding_column),
    ] {
        let found = client
            .query_opt(
                "SELECT 1 FROM pg_attribute WHERE attrelid = $1 AND attname = $2 AND attnum > 0 AND NOT attisdropped",
                &[&oid, column],
            )
            .await
            .map_err(db("looking the column up"))?;
        if found.is_none() {
            return Err(ContextError::UnknownColumn {
                table: table.table.clone(),
                field,
                column: column.clone(),
            });
        }
    }
    Ok(())
}

pub(crate) async fn check_role(
    client: &Client,
    role: &str,
    field: &str,
) -> Result<(), ContextError> {
    let found = client
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])
        .await
        .map_err(db("looking the role up"))?;
    match found {
        Some(_) => Ok(()),
        None => Err(ContextError::UnknownRole {
            role: role.to_string(),
            field: field.to_string(),
        }),
    }
}

pub(crate) async fn check_installed(
    client: &Client,
    table: &ChunkTable,
) -> Result<(), ContextError> {
    let row = client
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL AND EXISTS (SELECT 1 FROM pg_policy WHERE polrelid = to_regclass($2) AND polname = $3)",
            &[&format!("{SCHEMA}.index_grants"), &table.quoted(), &POLICY],
        )
        .await
        .map_err(db("checking the policy"))?;
    if row.get::<_, bool>(0) {
        Ok(())
    } else {
        Err(ContextError::NotInstalled(table.table.clone()))
    }
}

/// Distinct sources the table returns, as `role` (SET LOCAL ROLE) or as Firebreak itself.
pub(crate) async fn sources(
    tx: &tokio_postgres::Transaction<'_>,
    table: &TableRef,
    role: Option<&str>,
) -> Result<BTreeSet<String>, ContextError> {
    if let Some(role) = role {
        tx.batch_execute(&format!("SET LOCAL ROLE {}", quote_ident(role)))
            .await
            .map_err(|e| ContextError::SetRole {
                role: role.to_string(),
                detail: db_detail(&e),
            })?;
    }
    let rows = tx
        .query(
            &format!(
                "SELECT DISTINCT {}::text FROM {} WHERE {0} IS NOT NULL",
                quote_ident(&table.source_column),
                table.quoted()
            ),
            &[],
        )
        .await
        .map_err(db("querying the chunks"))?;
    if role.is_some() {
        tx.batch_execute("RESET ROLE")
            .await
            .map_err(db("resetting the role"))?;
    }
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

pub(crate) async fn quarantined_for(
    tx: &tokio_postgres::Transaction<'_>,
    table: &TableRef,
    role: &str,
) -> Result<BTreeSet<String>, ContextError> {
    let row = tx
        .query_one(
            &format!("SELECT {SCHEMA}.quarantined_sources_for($1, $2)"),
            &[&table.index, &role],
        )
        .await
        .map_err(db("reading the quarantined sources"))?;
    Ok(row.get::<_, Vec<String>>(0).into_iter().collect())
}

pub(crate) async fn index_permitted(
    tx: &tokio_postgres::Transaction<'_>,
    table: &TableRef,
    role: &str,
) -> Result<bool, ContextError> {
    let row = tx
        .query_one(
            &format!("SELECT {SCHEMA}.index_permitted($1, $2)"),
            &[&table.index, &role],
        )
        .await
        .map_err(db("reading the index grants"))?;
    Ok(row.get(0))
}

pub(crate) fn db(doing: &'static str) -> impl Fn(tokio_postgres::Error) -> ContextError {
    move |e| classify(doing, e)
}

/// A failure as the engine's error policy reads it: no server at the other end, a server
/// shedding load or breaking a tie (retried), or a refusal (escalated).
fn classify(doing: &str, e: tokio_postgres::Error) -> ContextError {
    let io = std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>());
    match e.code() {
        None if e.is_closed() || io => ContextError::Unreachable(format!("{doing}: {e}")),
        Some(code) if is_transient(code) => ContextError::Busy {
            doing: doing.into(),
            detail: db_detail(&e),
        },
        _ => ContextError::Database {
            doing: doing.into(),
            detail: db_detail(&e),
        },
    }
}

/// SQLSTATEs a later attempt can succeed past: connection failures, shutdowns and start-ups,
/// exhausted resources, serialization failures, deadlocks, lock and statement timeouts.
fn is_transient(code: &SqlState) -> bool {
    let code = code.code();
    code.starts_with("08")
        || code.starts_with("53")
        || matches!(
            code,
            "57P01" | "57P02" | "57P03" | "57014" | "40001" | "40P01" | "55P03"
        )
}

pub(crate) fn db_detail(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{} ({})", d.message(), d.code().code()),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_faults_a_later_attempt_can_pass_are_transient() {
        for code in [
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::T_R_DEADLOCK_DETECTED,
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::TOO_MANY_CONNECTIONS,
            SqlState::QUERY_CANCELED,
            SqlState::CONNECTION_FAILURE,
        ] {
            assert!(is_transient(&code), "{code:?}");
        }
        for code in [
            SqlState::INSUFFICIENT_PRIVILEGE,
            SqlState::UNDEFINED_TABLE,
            SqlState::INVALID_PASSWORD,
            SqlState::UNIQUE_VIOLATION,
        ] {
            assert!(!is_transient(&code), "{code:?}");
        }
    }
}
