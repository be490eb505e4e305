//! The PostgreSQL + pgvector control plane: row-level security reading Firebreak-owned grant and
//! quarantine rows. Containment is one row; verification queries as the agent's own role.

use std::collections::BTreeSet;
use std::str::FromStr;

use firebreak_containment::alert::Parameter;
use firebreak_containment::plan::Candidate;
use firebreak_containment::surface::{Op, Outcome, PlanInput, Step, Verification};
use tokio_postgres::{Client, NoTls, Transaction};

use crate::config::{ddl, quote_ident, ChunkTable, PostgresContextConfig, ALL_AGENTS, SCHEMA};
use crate::ladder::{ActionSpec, ContextState, TableRef};
use crate::ContextError;

pub struct PgVector {
    config: PostgresContextConfig,
    pg: tokio_postgres::Config,
}

impl PgVector {
    /// Validates the config; connects only when asked to act.
    pub fn new(config: PostgresContextConfig) -> Result<PgVector, ContextError> {
        config.validate()?;
        let pg =
            tokio_postgres::Config::from_str(&config.dsn).map_err(|e| ContextError::Config {
                field: "dsn".into(),
                reason: format!("not a libpq connection string or postgresql:// URL: {e}"),
            })?;
        Ok(PgVector { config, pg })
    }

    pub fn config(&self) -> &PostgresContextConfig {
        &self.config
    }

    async fn connect(&self) -> Result<Client, ContextError> {
        let (client, connection) = self
            .pg
            .connect(NoTls)
            .await
            .map_err(|e| ContextError::Unreachable(e.to_string()))?;
        // The connection drives the socket; it ends when the client is dropped.
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "postgres connection closed");
            }
        });
        Ok(client)
    }

    /// Checks every configured table, column and role against the catalog, then installs the
    /// schema, functions and policies in one transaction. Nothing is written if a check fails.
    pub async fn install(&self) -> Result<(), ContextError> {
        let client = self.connect().await?;
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
        let Parameter::Context { index, source } = &input.alert.parameter else {
            return Err(ContextError::NotContext);
        };
        let table =
            self.config
                .table_for_index(index)
                .ok_or_else(|| ContextError::UnknownIndex {
                    index: index.clone(),
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
        let client = self.connect().await?;
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
                .query_one(&sql, &[source])
                .await
                .map_err(db("looking the source up"))?;
            if !row.get::<_, bool>(0) {
                return Err(ContextError::UnknownSource {
                    id: source.clone(),
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

fn table_ref(t: &ChunkTable) -> TableRef {
    TableRef {
        index: t.index_name().to_string(),
        table: t.table.clone(),
        source_column: t.source_column.clone(),
    }
}

fn quoted_table(t: &TableRef) -> String {
    t.table
        .split('.')
        .map(quote_ident)
        .collect::<Vec<_>>()
        .join(".")
}

async fn check_table(client: &Client, table: &ChunkTable) -> Result<(), ContextError> {
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

async fn check_role(client: &Client, role: &str, field: &str) -> Result<(), ContextError> {
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

async fn check_installed(client: &Client, table: &ChunkTable) -> Result<(), ContextError> {
    let row = client
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL AND EXISTS (SELECT 1 FROM pg_policy WHERE polrelid = to_regclass($2) AND polname = $3)",
            &[&format!("{SCHEMA}.index_grants"), &table.quoted(), &crate::config::POLICY],
        )
        .await
        .map_err(db("checking the policy"))?;
    if row.get::<_, bool>(0) {
        Ok(())
    } else {
        Err(ContextError::NotInstalled(table.table.clone()))
    }
}

fn db(doing: &'static str) -> impl Fn(tokio_postgres::Error) -> ContextError {
    move |e| ContextError::Database {
        doing: doing.into(),
        detail: db_detail(&e),
    }
}

fn db_detail(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{} ({})", d.message(), d.code().code()),
        None => e.to_string(),
    }
}

impl PgVector {
    async fn dispatch(&self, action: &Candidate, op: Op) -> Result<Step, ContextError> {
        let spec = ActionSpec::from_candidate(action).map_err(ContextError::Surface)?;
        let mut client = self.connect().await?;
        match spec {
            ActionSpec::QuarantineSource {
                table,
                source,
                scope,
                agent_role,
                incident,
                other_roles,
            } => {
                let key: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
                    [&table.index, &source, &scope, &incident];
                match op {
                    Op::Apply => {
                        let n = client
                            .execute(
                                &format!("INSERT INTO {SCHEMA}.quarantined_sources (index_name, source_id, agent_role, incident) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING"),
                                &key,
                            )
                            .await
                            .map_err(db("inserting the quarantine row"))?;
                        Ok(outcome(
                            n,
                            format!(
                                "quarantined source {source} of index {} for {}",
                                table.index,
                                who(&scope)
                            ),
                        ))
                    }
                    Op::Revert => {
                        let n = client
                            .execute(
                                &format!("DELETE FROM {SCHEMA}.quarantined_sources WHERE index_name = $1 AND source_id = $2 AND agent_role = $3 AND incident = $4"),
                                &key,
                            )
                            .await
                            .map_err(db("deleting the quarantine row"))?;
                        Ok(outcome(
                            n,
                            format!(
                                "lifted the quarantine of source {source} of index {} for {}",
                                table.index,
                                who(&scope)
                            ),
                        ))
                    }
                    Op::Verify | Op::VerifyReverted => {
                        let present = client
                            .query_opt(
                                &format!("SELECT 1 FROM {SCHEMA}.quarantined_sources WHERE index_name = $1 AND source_id = $2 AND agent_role = $3 AND incident = $4"),
                                &key,
                            )
                            .await
                            .map_err(db("reading the quarantine row"))?
                            .is_some();
                        let tx = client
                            .transaction()
                            .await
                            .map_err(db("opening a read transaction"))?;
                        let all = sources(&tx, &table, None).await?;
                        let mut problems = Vec::new();
                        let mut roles = vec![agent_role.clone()];
                        roles.extend(other_roles);
                        for role in &roles {
                            let hidden = quarantined_for(&tx, &table, role).await?;
                            let expected: BTreeSet<String> =
                                if index_permitted(&tx, &table, role).await? {
                                    all.difference(&hidden).cloned().collect()
                                } else {
                                    BTreeSet::new()
                                };
                            let seen = sources(&tx, &table, Some(role)).await?;
                            if seen != expected {
                                problems.push(format!(
                                    "role {role} sees sources {:?}, expected {:?}",
                                    seen, expected
                                ));
                            }
                            // The row must decide what this action's scope sees, beyond the
                            // set comparison (which also holds with other incidents' rows).
                            let in_scope = scope == ALL_AGENTS || *role == scope;
                            if op == Op::Verify && in_scope && seen.contains(&source) {
                                problems.push(format!("role {role} still retrieves {source}"));
                            }
                        }
                        tx.rollback()
                            .await
                            .map_err(db("closing the read transaction"))?;
                        let want = op == Op::Verify;
                        if present != want {
                            problems.push(format!(
                                "the quarantine row is {}",
                                if present { "still there" } else { "missing" }
                            ));
                        }
                        Ok(check(problems, format!(
                            "retrieval as {} checked: source {source} {} for {}, every other source answers, other agents as expected",
                            roles.join(", "),
                            if want { "hidden" } else { "visible again" },
                            who(&scope)
                        )))
                    }
                }
            }
            ActionSpec::RevokeIndex {
                table,
                agent_role,
                pre_image_granted,
                other_roles,
            } => {
                let key: [&(dyn tokio_postgres::types::ToSql + Sync); 2] =
                    [&agent_role, &table.index];
                match op {
                    Op::Apply => {
                        let n = client
                            .execute(
                                &format!("DELETE FROM {SCHEMA}.index_grants WHERE agent_role = $1 AND index_name = $2"),
                                &key,
                            )
                            .await
                            .map_err(db("deleting the grant row"))?;
                        Ok(outcome(n, format!("revoked index {} from role {agent_role}", table.index)))
                    }
                    Op::Revert if !pre_image_granted => Ok(outcome(
                        0,
                        format!("role {agent_role} held no grant on index {} before: nothing to restore", table.index),
                    )),
                    Op::Revert => {
                        let n = client
                            .execute(
                                &format!("INSERT INTO {SCHEMA}.index_grants (agent_role, index_name) VALUES ($1, $2) ON CONFLICT DO NOTHING"),
                                &key,
                            )
                            .await
                            .map_err(db("restoring the grant row"))?;
                        Ok(outcome(n, format!("restored the grant of index {} to role {agent_role}", table.index)))
                    }
                    Op::Verify | Op::VerifyReverted => {
                        let tx = client.transaction().await.map_err(db("opening a read transaction"))?;
                        let granted = tx
                            .query_opt(
                                &format!("SELECT 1 FROM {SCHEMA}.index_grants WHERE agent_role = $1 AND index_name = $2"),
                                &key,
                            )
                            .await
                            .map_err(db("reading the grant row"))?
                            .is_some();
                        let any = !sources(&tx, &table, None).await?.is_empty();
                        let mut problems = Vec::new();
                        let agent_sees = !sources(&tx, &table, Some(&agent_role)).await?.is_empty();
                        let want_granted = op == Op::VerifyReverted && pre_image_granted;
                        if granted != want_granted {
                            problems.push(format!("the grant row of role {agent_role} is {}", if granted { "present" } else { "absent" }));
                        }
                        if op == Op::Verify && agent_sees {
                            problems.push(format!("role {agent_role} still retrieves chunks"));
                        }
                        if op == Op::VerifyReverted && want_granted && any && !agent_sees && index_permitted(&tx, &table, &agent_role).await? {
                            problems.push(format!("role {agent_role} retrieves nothing after the grant was restored"));
                        }
                        for role in &other_roles {
                            if any && index_permitted(&tx, &table, role).await?
                                && sources(&tx, &table, Some(role)).await?.is_empty()
                            {
                                problems.push(format!("other agent role {role} lost the index"));
                            }
                        }
                        tx.rollback().await.map_err(db("closing the read transaction"))?;
                        Ok(check(problems, format!(
                            "retrieval as {agent_role} checked: index {} {}; other agents still read it",
                            table.index,
                            if op == Op::Verify { "returns nothing" } else { "answers again" }
                        )))
                    }
                }
            }
            ActionSpec::QuarantineIndex {
                table,
                agent_role,
                incident,
                other_roles,
            } => {
                let key: [&(dyn tokio_postgres::types::ToSql + Sync); 2] =
                    [&table.index, &incident];
                match op {
                    Op::Apply => {
                        let n = client
                            .execute(
                                &format!("INSERT INTO {SCHEMA}.quarantined_indexes (index_name, incident) VALUES ($1, $2) ON CONFLICT DO NOTHING"),
                                &key,
                            )
                            .await
                            .map_err(db("inserting the index quarantine row"))?;
                        Ok(outcome(
                            n,
                            format!("quarantined index {} for every agent", table.index),
                        ))
                    }
                    Op::Revert => {
                        let n = client
                            .execute(
                                &format!("DELETE FROM {SCHEMA}.quarantined_indexes WHERE index_name = $1 AND incident = $2"),
                                &key,
                            )
                            .await
                            .map_err(db("deleting the index quarantine row"))?;
                        Ok(outcome(
                            n,
                            format!("lifted the quarantine of index {}", table.index),
                        ))
                    }
                    Op::Verify | Op::VerifyReverted => {
                        let tx = client
                            .transaction()
                            .await
                            .map_err(db("opening a read transaction"))?;
                        let present = tx
                            .query_opt(
                                &format!("SELECT 1 FROM {SCHEMA}.quarantined_indexes WHERE index_name = $1 AND incident = $2"),
                                &key,
                            )
                            .await
                            .map_err(db("reading the index quarantine row"))?
                            .is_some();
                        let mut problems = Vec::new();
                        if present != (op == Op::Verify) {
                            problems.push(format!(
                                "the index quarantine row is {}",
                                if present { "still there" } else { "missing" }
                            ));
                        }
                        if op == Op::Verify {
                            let mut roles = vec![agent_role.clone()];
                            roles.extend(other_roles);
                            for role in &roles {
                                if !sources(&tx, &table, Some(role)).await?.is_empty() {
                                    problems.push(format!("role {role} still retrieves chunks"));
                                }
                            }
                        }
                        tx.rollback()
                            .await
                            .map_err(db("closing the read transaction"))?;
                        Ok(check(
                            problems,
                            format!(
                                "index {} {} for every agent",
                                table.index,
                                if op == Op::Verify {
                                    "returns nothing"
                                } else {
                                    "answers again"
                                }
                            ),
                        ))
                    }
                }
            }
        }
    }
}

fn who(scope: &str) -> String {
    if scope == ALL_AGENTS {
        "every agent".into()
    } else {
        format!("role {scope}")
    }
}

fn outcome(rows: u64, detail: String) -> Step {
    Step::Changed(Outcome {
        changed: rows > 0,
        detail: if rows > 0 {
            detail
        } else {
            format!("already in place: {detail}")
        },
    })
}

pub(crate) fn check(problems: Vec<String>, detail: String) -> Step {
    Step::Checked(if problems.is_empty() {
        Verification { ok: true, detail }
    } else {
        Verification {
            ok: false,
            detail: problems.join("; "),
        }
    })
}

/// Distinct sources the table returns, as `role` (SET LOCAL ROLE) or as Firebreak itself.
/// Runs inside `tx`, which the caller rolls back: verification writes nothing.
async fn sources(
    tx: &Transaction<'_>,
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
                quoted_table(table)
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

async fn quarantined_for(
    tx: &Transaction<'_>,
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

async fn index_permitted(
    tx: &Transaction<'_>,
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

crate::shared::context_control_plane!(PgVector);
