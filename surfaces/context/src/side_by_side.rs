//! Both context planes in one daemon. They declare one ladder and each handles only the alerts
//! about its own store's indexes (`Plane::handles`, docs/adding-a-plane.md §3), so an index
//! must name one store: configured under both, both planes would plan for its alerts and each
//! would receive the other's actions. [`check`] refuses that before either plane is built.

use crate::milvus::MilvusContextConfig;
use crate::{ContextError, PostgresContextConfig};

/// Refuses a configuration where an index is both a pgvector table and a Milvus collection.
pub fn check(
    postgres: &PostgresContextConfig,
    milvus: &MilvusContextConfig,
) -> Result<(), ContextError> {
    for (t, table) in postgres.tables.iter().enumerate() {
        let index = table.index_name();
        if let Some(c) = milvus
            .collections
            .iter()
            .position(|c| c.index_name() == index)
        {
            return Err(ContextError::SharedIndex {
                index: index.to_string(),
                table: format!("context.postgres.tables[{t}]"),
                collection: format!("context.milvus.collections[{c}]"),
            });
        }
    }
    Ok(())
}

/// Pure: neither plane connects to anything here.
#[cfg(test)]
mod tests {
    use firebreak_containment::alert::Alert;
    use firebreak_containment::plane::{PlanInput, Plane, Planes, Route};

    use super::check;
    use crate::shared::testing::{alert, envelope};
    use crate::{Milvus, MilvusContextConfig, PgVector, PostgresContextConfig};

    fn pgvector_config() -> PostgresContextConfig {
        serde_json::from_value(serde_json::json!({
            "dsn": "host=/nonexistent user=firebreak dbname=rag",
            "tables": [{"table": "public.chunks", "sourceColumn": "source_id", "embeddingColumn": "embedding", "index": "kb"}],
            "roles": {
                "prod/rag/Deployment/agent-a": "agent_a",
                "prod/rag/Deployment/agent-b": "agent_b",
            },
        }))
        .expect("pgvector config")
    }

    fn milvus_config(password: &std::path::Path) -> MilvusContextConfig {
        serde_json::from_value(serde_json::json!({
            // Nothing listens there: the channel connects on first use, which never comes.
            "address": "127.0.0.1:9",
            "user": "root",
            "password": {"file": password},
            "collections": [
                {"collection": "secrets_chunks", "index": "secrets"},
                {"collection": "notes"},
            ],
            "roles": {"prod/rag/Deployment/agent-a": "agent_a"},
        }))
        .expect("milvus config")
    }

    fn tools_alert() -> Alert {
        let body = serde_json::json!({
            "id": "t", "source": "t", "time": "2026-11-22T02:47:00Z",
            "agent": {"cluster": "prod", "namespace": "rag", "workload": "Deployment/agent-a", "serviceAccount": "agent-a"},
            "dimension": "tools", "parameter": {"server": "s", "tool": "t"},
            "tier": "attack-attempt", "severity": "critical"
        });
        Alert::from_json(body.to_string().as_bytes()).expect("alert")
    }

    #[test]
    fn an_index_configured_in_both_stores_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let password = dir.path().join("password");
        let (pg, mut mv) = (pgvector_config(), milvus_config(&password));
        assert!(
            check(&pg, &mv).is_ok(),
            "kb, secrets and notes are distinct"
        );
        // A collection named like the table's index, without an index of its own.
        mv.collections.push(crate::MilvusCollection {
            collection: "kb".into(),
            index: None,
        });
        let err = check(&pg, &mv).expect_err("kb is in both stores");
        let text = err.to_string();
        assert!(
            text.contains("index \"kb\"")
                && text.contains("context.postgres.tables[0]")
                && text.contains("context.milvus.collections[2]"),
            "{text}"
        );
        assert!(matches!(
            firebreak_containment::plane::PlaneError::from(err),
            firebreak_containment::plane::PlaneError::Invalid { .. }
        ));
    }

    #[tokio::test]
    async fn pgvector_and_milvus_each_handle_only_their_own_indexes_and_register_together() {
        let dir = tempfile::tempdir().expect("tempdir");
        let password = dir.path().join("password");
        std::fs::write(&password, "s3cret\n").expect("write password");
        let (pg_config, mv_config) = (pgvector_config(), milvus_config(&password));
        check(&pg_config, &mv_config).expect("side by side");
        let pg = PgVector::new(pg_config).expect("pgvector plane");
        let mv = Milvus::new(mv_config).await.expect("milvus plane");
        let envelope = envelope(&[]);
        let (incident, plan) = ("inc-1".into(), "inc-1-p1".into());
        let input = |alert| PlanInput {
            incident: &incident,
            plan: &plan,
            alert,
            envelope: &envelope,
        };

        // (agent, index): does pgvector handle it, does Milvus?
        let cases: Vec<(&str, &str, bool, bool, Alert)> = [
            ("agent-a", "kb", true, false),
            ("agent-a", "secrets", false, true),
            ("agent-a", "notes", false, true),
            ("agent-a", "wiki", false, false),
            // Agent B has a database role but no Milvus role.
            ("agent-b", "kb", true, false),
            ("agent-b", "secrets", false, false),
            // Agent C has neither.
            ("agent-c", "kb", false, false),
            ("agent-c", "secrets", false, false),
        ]
        .into_iter()
        .map(|(agent, index, on_pg, on_milvus)| {
            (
                agent,
                index,
                on_pg,
                on_milvus,
                alert(agent, index, Some("email:x")),
            )
        })
        .collect();
        for (agent, index, on_pg, on_milvus, alerted) in &cases {
            let input = input(alerted);
            assert_eq!(pg.handles(&input), *on_pg, "pgvector, {agent} on {index}");
            assert_eq!(mv.handles(&input), *on_milvus, "milvus, {agent} on {index}");
        }
        let tools = tools_alert();
        assert!(!pg.handles(&input(&tools)) && !mv.handles(&input(&tools)));
        let alerts: Vec<(&str, Vec<&str>, Alert)> = [
            ("kb", vec![PgVector::KEY]),
            ("secrets", vec![Milvus::KEY]),
            ("wiki", vec![]),
        ]
        .into_iter()
        .map(|(index, keys)| (index, keys, alert("agent-a", index, None)))
        .collect();

        // One daemon: the shared declarations make one dense ladder, and the engine's routing
        // reaches exactly the plane that holds the index.
        let mut planes = Planes::default();
        planes.register(pg).expect("pgvector registers");
        planes
            .register(mv)
            .expect("milvus registers beside it, same ladder");
        let context: Vec<_> = planes
            .kinds()
            .iter()
            .filter(|k| k.ladder == "context")
            .map(|k| (k.name, k.rung, k.approval_only))
            .collect();
        assert_eq!(
            context,
            [
                ("context.quarantine_index", 2, true),
                ("context.quarantine_source", 0, false),
                ("context.revoke_index", 1, false),
            ]
        );
        for (index, expected, alerted) in &alerts {
            let input = input(alerted);
            let keys: Vec<String> = planes
                .for_input(Route::Context, &input)
                .map(|p| p.key().to_string())
                .collect();
            assert_eq!(keys, *expected, "{index}");
        }
    }
}
