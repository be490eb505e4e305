//! The PostgreSQL + pgvector control plane: row-level security reading Firebreak-owned grant and
//! quarantine rows. Containment is one row; verification queries as the agent's own role.
//!
//! One connection pool, built with the plane, serves every observation, change and
//! verification poll; each call makes one attempt and answers with a typed error.

mod db;
pub mod observation;
pub mod rungs;

use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::Pool;
use firebreak_containment::plane::{
    Change, Check, KindSpec, Observation, Outcome, PlanInput, Plane, PlaneError, Route,
    Verification,
};

pub use observation::ContextState;
pub use rungs::{PgSpec, TableRef};

use crate::config::{ddl, quote_ident, PostgresContextConfig, SCHEMA};
use crate::kinds::{KINDS, QUARANTINE_INDEX, QUARANTINE_SOURCE, REVOKE_INDEX};
use crate::shared::breached;
use crate::ContextError;
use db::{check_installed, check_role, check_table, connection, db, db_detail, table_ref};

pub struct PgVector {
    config: PostgresContextConfig,
    pool: Pool,
}

impl PgVector {
    /// Validates the config and builds the pool; it connects when first asked to act.
    pub fn new(config: PostgresContextConfig) -> Result<PgVector, ContextError> {
        config.validate()?;
        let pool = db::pool(&config)?;
        Ok(PgVector { config, pool })
    }

    pub fn config(&self) -> &PostgresContextConfig {
        &self.config
    }

    /// Checks every configured table, column and role against the catalog, then installs the
    /// schema, functions and policies in one transaction. Nothing is written if a check fails.
    pub async fn install(&self) -> Result<(), ContextError> {
        let client = connection(&self.pool).await?;
        for table in &self.config.tables {
            check_table(&client, table).await?;
        }
        for (agent, role) in &self.config.roles {
            check_role(&client, role, &format!("roles.{agent}")).await?;
        }
        client
            .batch_execute(&ddl(&self.config))
            .await
            .map_err(|e| ContextError::Database {
                doing: "installing the row-level security policy".into(),
                detail: db_detail(&e),
            })
    }

    async fn observe_state(&self, input: &PlanInput<'_>) -> Result<ContextState, ContextError> {
        let (index, source) = breached(input).ok_or(ContextError::NotContext)?;
        let table =
            self.config
                .table_for_index(index)
                .ok_or_else(|| ContextError::UnknownIndex {
                    index: index.to_string(),
                    known: self
                        .config
                        .tables
                        .iter()
                        .map(|t| t.index_name().to_string())
                        .collect(),
                })?;
        let agent = input.alert.agent.key().to_string();
        let role = self
            .config
            .roles
            .get(&agent)
            .ok_or_else(|| ContextError::UnknownAgent(agent.clone()))?;
        let client = connection(&self.pool).await?;
        check_table(&client, table).await?;
        check_role(&client, role, &format!("roles.{agent}")).await?;
        check_installed(&client, table).await?;
        if let Some(source) = source {
            let sql = format!(
                "SELECT EXISTS (SELECT 1 FROM {} WHERE {}::text = $1)",
                table.quoted(),
                quote_ident(&table.source_column)
            );
            let row = client
                .query_one(&sql, &[&source])
                .await
                .map_err(db("looking the source up"))?;
            if !row.get::<_, bool>(0) {
                return Err(ContextError::UnknownSource {
                    id: source.to_string(),
                    table: table.table.clone(),
                    column: table.source_column.clone(),
                });
            }
        }
        let rows = client
            .query(
                &format!(
                    "SELECT agent_role FROM {SCHEMA}.index_grants WHERE index_name = $1 ORDER BY agent_role"
                ),
                &[&table.index_name()],
            )
            .await
            .map_err(db("reading the index grants"))?;
        let holders: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        Ok(ContextState {
            table: table_ref(table),
            agent_role: role.clone(),
            granted: holders.iter().any(|h| h == role),
            other_roles: holders.into_iter().filter(|h| h != role).collect(),
        })
    }
}

#[async_trait]
impl Plane for PgVector {
    const KEY: &'static str = "context.postgres";
    const ROUTE: Route = Route::Context;
    const KINDS: &'static [&'static KindSpec] = KINDS;
    type Spec = PgSpec;

    fn kind_of(spec: &PgSpec) -> &'static KindSpec {
        match spec {
            PgSpec::QuarantineSource(_) => &QUARANTINE_SOURCE,
            PgSpec::RevokeIndex(_) => &REVOKE_INDEX,
            PgSpec::QuarantineIndex(_) => &QUARANTINE_INDEX,
        }
    }

    /// The index is one of this store's tables, and the agent has a database role here: with
    /// Milvus configured too, each index reaches only the plane that holds it.
    fn handles(&self, input: &PlanInput<'_>) -> bool {
        breached(input).is_some_and(|(index, _)| self.config.table_for_index(index).is_some())
            && self.config.roles.contains_key(&input.alert.agent.key().0)
    }

    async fn observe(
        &self,
        input: &PlanInput<'_>,
    ) -> Result<Box<dyn Observation<PgSpec>>, PlaneError> {
        Ok(Box::new(self.observe_state(input).await?))
    }

    async fn change(&self, spec: &PgSpec, change: Change) -> Result<Outcome, PlaneError> {
        let pool = &self.pool;
        Ok(match spec {
            PgSpec::QuarantineSource(s) => rungs::quarantine_source::change(pool, s, change).await,
            PgSpec::RevokeIndex(s) => rungs::revoke_index::change(pool, s, change).await,
            PgSpec::QuarantineIndex(s) => rungs::quarantine_index::change(pool, s, change).await,
        }?)
    }

    async fn check(&self, spec: &PgSpec, check: Check) -> Result<Verification, PlaneError> {
        let pool = &self.pool;
        Ok(match spec {
            PgSpec::QuarantineSource(s) => rungs::quarantine_source::check(pool, s, check).await,
            PgSpec::RevokeIndex(s) => rungs::revoke_index::check(pool, s, check).await,
            PgSpec::QuarantineIndex(s) => rungs::quarantine_index::check(pool, s, check).await,
        }?)
    }

    fn verify_deadline(&self) -> Duration {
        self.config.verify_deadline
    }
}
