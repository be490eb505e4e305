//! The PostgreSQL + pgvector context store: its configuration and the DDL Firebreak installs.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::ContextError;
use firebreak_containment::config::duration;

/// The Firebreak-owned schema holding the grants and quarantine rows the policy reads.
pub const SCHEMA: &str = "firebreak";
/// Name of the restrictive policy on every configured chunk table.
pub const POLICY: &str = "firebreak_containment";
/// Name of the permissive policy added only where RLS was off, so enabling RLS hides nothing.
pub const BASELINE_POLICY: &str = "firebreak_baseline";
/// `agent_role` value of a quarantine row that applies to every agent.
pub const ALL_AGENTS: &str = "*";

/// `context.postgres` in the daemon config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PostgresContextConfig {
    /// libpq-style connection string (`host=… user=… dbname=…` or `postgresql://…`). The role
    /// needs to own the chunk tables (or be superuser) and be a member of every agent role, so
    /// that verification can `SET ROLE` to it.
    pub dsn: String,
    pub tables: Vec<ChunkTable>,
    /// Agent key (`cluster/namespace/Kind/name`) → the database role the agent connects as.
    pub roles: BTreeMap<String, String>,
    #[serde(deserialize_with = "duration", default = "default_deadline")]
    pub verify_deadline: Duration,
}

/// One table of chunks: every row carries the id of the source it was cut from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChunkTable {
    /// `table` or `schema.table`.
    pub table: String,
    pub source_column: String,
    pub embedding_column: String,
    /// The index name envelopes and alerts use; the table name when absent.
    #[serde(default)]
    pub index: Option<String>,
}

impl ChunkTable {
    pub fn index_name(&self) -> &str {
        self.index.as_deref().unwrap_or(&self.table)
    }

    /// The table name quoted for SQL, schema-qualified as configured.
    pub fn quoted(&self) -> String {
        self.table
            .split('.')
            .map(quote_ident)
            .collect::<Vec<_>>()
            .join(".")
    }

    /// `(schema, table)`; the schema is `None` when the search path decides.
    pub fn parts(&self) -> (Option<&str>, &str) {
        match self.table.split_once('.') {
            Some((schema, table)) => (Some(schema), table),
            None => (None, &self.table),
        }
    }
}

pub(crate) fn default_deadline() -> Duration {
    Duration::from_secs(30)
}

impl PostgresContextConfig {
    /// Checks what serde cannot, before anything touches the database.
    pub fn validate(&self) -> Result<(), ContextError> {
        let bad = |field: String, reason: String| Err(ContextError::Config { field, reason });
        if self.tables.is_empty() {
            return bad(
                "tables".into(),
                "list at least one chunk table (table, sourceColumn, embeddingColumn)".into(),
            );
        }
        let mut indexes = BTreeMap::new();
        for (i, t) in self.tables.iter().enumerate() {
            let parts: Vec<&str> = t.table.split('.').collect();
            if parts.len() > 2 || parts.iter().any(|p| p.is_empty()) {
                return bad(
                    format!("tables[{i}].table"),
                    format!("expected table or schema.table, got {:?}", t.table),
                );
            }
            for (field, value) in [
                ("sourceColumn", &t.source_column),
                ("embeddingColumn", &t.embedding_column),
            ] {
                if value.is_empty() {
                    return bad(format!("tables[{i}].{field}"), "must not be empty".into());
                }
            }
            if let Some(other) = indexes.insert(t.index_name().to_string(), i) {
                return bad(
                    format!("tables[{i}].index"),
                    format!(
                        "index {:?} is also tables[{other}]; give each table its own index name",
                        t.index_name()
                    ),
                );
            }
        }
        for (agent, role) in &self.roles {
            if agent.split('/').count() != 4 {
                return bad(
                    format!("roles.{agent}"),
                    "keys are agents as cluster/namespace/Kind/name".into(),
                );
            }
            if role.is_empty() || role == ALL_AGENTS {
                return bad(
                    format!("roles.{agent}"),
                    format!("{role:?} is not a database role name"),
                );
            }
        }
        Ok(())
    }

    pub fn table_for_index(&self, index: &str) -> Option<&ChunkTable> {
        self.tables.iter().find(|t| t.index_name() == index)
    }
}

/// Quotes an SQL identifier (`"` doubled), so configured names can never inject SQL.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes an SQL string literal (`'` doubled; standard_conforming_strings is on since 9.1).
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// The DDL Firebreak installs, as one transaction a DBA can review and run with `psql -f`.
///
/// Idempotent: re-running it changes no containment state. Governed (role, index) pairs get
/// their grant only when first registered, so a re-run never lifts a revocation.
pub fn ddl(config: &PostgresContextConfig) -> String {
    let s = SCHEMA;
    let mut out = format!(
        r#"-- Firebreak context containment: restrictive row-level security on the chunk tables.
BEGIN;
CREATE SCHEMA IF NOT EXISTS {s};
-- (agent role, index) pairs Firebreak governs; roles not listed here are never filtered.
CREATE TABLE IF NOT EXISTS {s}.agent_indexes (
    agent_role text NOT NULL,
    index_name text NOT NULL,
    PRIMARY KEY (agent_role, index_name)
);
-- A governed agent reads an index only while it holds a grant row (context.revoke_index deletes it).
CREATE TABLE IF NOT EXISTS {s}.index_grants (
    agent_role text NOT NULL,
    index_name text NOT NULL,
    PRIMARY KEY (agent_role, index_name)
);
-- One row hides one source of one index from one agent role, or from every agent ('{all}').
CREATE TABLE IF NOT EXISTS {s}.quarantined_sources (
    index_name text NOT NULL,
    source_id text NOT NULL,
    agent_role text NOT NULL,
    incident text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (index_name, source_id, agent_role, incident)
);
-- One row hides a whole index from every governed agent (context.quarantine_index).
CREATE TABLE IF NOT EXISTS {s}.quarantined_indexes (
    index_name text NOT NULL,
    incident text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (index_name, incident)
);
REVOKE ALL ON ALL TABLES IN SCHEMA {s} FROM PUBLIC;
GRANT USAGE ON SCHEMA {s} TO PUBLIC;
-- The chunk policy probes this table per candidate row; each agent sees only its own rows.
ALTER TABLE {s}.quarantined_sources ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS own_rows ON {s}.quarantined_sources;
CREATE POLICY own_rows ON {s}.quarantined_sources FOR SELECT TO PUBLIC
    USING (agent_role = current_user::text OR agent_role = '{all}');
GRANT SELECT ON {s}.quarantined_sources TO PUBLIC;
-- Grants are read through this function (SECURITY DEFINER), once per query; verification
-- reads an agent's quarantined sources through the second one.
-- plpgsql, not sql: it keeps its query plans for the session instead of re-planning per call.
CREATE OR REPLACE FUNCTION {s}.index_permitted(idx text, who text) RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN NOT EXISTS (SELECT 1 FROM {s}.agent_indexes g WHERE g.agent_role = who AND g.index_name = idx)
        OR (EXISTS (SELECT 1 FROM {s}.index_grants g WHERE g.agent_role = who AND g.index_name = idx)
            AND NOT EXISTS (SELECT 1 FROM {s}.quarantined_indexes q WHERE q.index_name = idx));
END $$;
CREATE OR REPLACE FUNCTION {s}.quarantined_sources_for(idx text, who text) RETURNS text[]
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(array_agg(DISTINCT q.source_id), '{{}}')
    FROM {s}.quarantined_sources q
    WHERE q.index_name = idx AND (q.agent_role = who OR q.agent_role = '{all}')
$$;
"#,
        all = ALL_AGENTS
    );
    let pairs: Vec<String> = config
        .roles
        .values()
        .flat_map(|role| {
            config.tables.iter().map(move |t| {
                format!(
                    "({}, {})",
                    quote_literal(role),
                    quote_literal(t.index_name())
                )
            })
        })
        .collect();
    if !pairs.is_empty() {
        out.push_str(&format!(
            "WITH registered AS (\n    INSERT INTO {s}.agent_indexes (agent_role, index_name) VALUES {}\n    ON CONFLICT DO NOTHING RETURNING agent_role, index_name\n)\nINSERT INTO {s}.index_grants SELECT agent_role, index_name FROM registered ON CONFLICT DO NOTHING;\n",
            pairs.join(", ")
        ));
    }
    for t in &config.tables {
        let table = t.quoted();
        let idx = quote_literal(t.index_name());
        let src = quote_ident(&t.source_column);
        out.push_str(&format!(
            r#"DO $$ BEGIN
    IF NOT (SELECT relrowsecurity FROM pg_class WHERE oid = {regclass}::regclass) THEN
        ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
        CREATE POLICY {BASELINE_POLICY} ON {table} AS PERMISSIVE FOR ALL TO PUBLIC USING (true) WITH CHECK (true);
    END IF;
END $$;
DROP POLICY IF EXISTS {POLICY} ON {table};
-- OFFSET 0 keeps the quarantine check a primary-key probe per candidate row: a top-k HNSW
-- scan looks at a few dozen rows, far fewer than hashing every quarantined source per query.
CREATE POLICY {POLICY} ON {table} AS RESTRICTIVE FOR SELECT TO PUBLIC USING (
    (SELECT {s}.index_permitted({idx}, current_user::text))
    AND NOT EXISTS (SELECT 1 FROM {s}.quarantined_sources q
                    WHERE q.index_name = {idx} AND q.source_id = {table}.{src}::text
                      AND q.agent_role IN (current_user::text, '{all}') OFFSET 0)
);
"#,
            regclass = quote_literal(&table),
            all = ALL_AGENTS,
        ));
    }
    out.push_str("COMMIT;\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> PostgresContextConfig {
        serde_yaml::from_str(
            r#"
dsn: host=/tmp user=postgres
tables:
  - {table: rag.chunks, sourceColumn: source_id, embeddingColumn: embedding, index: kb}
roles:
  prod/payments/Deployment/payment-agent: payment_agent
verifyDeadline: 10s
"#,
        )
        .expect("valid config")
    }

    #[test]
    fn config_parses_and_validates() {
        let c = config();
        c.validate().expect("valid");
        assert_eq!(c.verify_deadline, Duration::from_secs(10));
        assert_eq!(
            c.table_for_index("kb").map(|t| t.quoted()).as_deref(),
            Some("\"rag\".\"chunks\"")
        );
    }

    #[test]
    fn unknown_fields_and_bad_durations_are_refused() {
        let err = serde_yaml::from_str::<PostgresContextConfig>(
            "dsn: x\ntables: []\nroles: {}\nextra: 1\n",
        )
        .expect_err("unknown field");
        assert!(err.to_string().contains("extra"), "{err}");
        let err = serde_yaml::from_str::<PostgresContextConfig>(
            "dsn: x\ntables: []\nroles: {}\nverifyDeadline: soon\n",
        )
        .expect_err("bad duration");
        assert!(err.to_string().contains("30s, 5m or 1h"), "{err}");
    }

    #[test]
    fn validation_names_the_field() {
        let mut c = config();
        c.roles.insert("payment-agent".into(), "x".into());
        let err = c.validate().expect_err("bad agent key");
        assert!(err.to_string().contains("roles.payment-agent"), "{err}");

        let mut c = config();
        c.tables[0].table = "a.b.c".into();
        assert!(c
            .validate()
            .expect_err("bad table")
            .to_string()
            .contains("tables[0].table"));

        let mut c = config();
        c.tables.push(c.tables[0].clone());
        assert!(c
            .validate()
            .expect_err("dup")
            .to_string()
            .contains("also tables[0]"));
    }

    #[test]
    fn ddl_quotes_names_and_is_one_transaction() {
        let mut c = config();
        c.tables[0].index = Some("kb'; DROP TABLE x; --".into());
        let text = ddl(&c);
        assert!(text.starts_with("-- Firebreak"));
        assert!(text.trim_end().ends_with("COMMIT;"));
        assert!(text.contains("'kb''; DROP TABLE x; --'"), "{text}");
        assert!(text.contains("AS RESTRICTIVE FOR SELECT"));
        assert!(text.contains("\"rag\".\"chunks\""));
    }
}
