//! The engine side of the context surface's end-to-end tests, whatever the store: agents'
//! envelopes, context alerts, and the real engine in process over one control plane.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use firebreak_containment::action::ActionKind;
use firebreak_containment::alert::Alert;
use firebreak_containment::engine::{Engine, EngineConfig, Parts};
use firebreak_containment::envelope::{Envelope, EnvelopeStore};
use firebreak_containment::journal::Journal;
use firebreak_containment::metrics::Metrics;
use firebreak_containment::plan::Candidate;
use firebreak_containment::runbook::Runbooks;
use firebreak_containment::surface::ControlPlane;

/// The source an alert reports as injected.
pub const INJECTED: &str = "email:inj-4471";

/// One observed source of index `kb` in an envelope: (source, count, sessions).
pub type Observed = (&'static str, u32, u32);

/// The sources of `kb` every agent's envelope permits.
pub const PERMITTED: &[Observed] = &[
    ("wiki:handbook", 800, 90),
    ("wiki:policies", 300, 40),
    ("crm:accounts", 120, 20),
];

/// A converged envelope of Deployment `agent` in prod/rag that retrieves `observed` from `kb`.
pub fn envelope(agent: &str, observed: &[Observed]) -> Result<Envelope> {
    let observed: String = observed
        .iter()
        .map(|(source, count, sessions)| {
            format!("      - {{index: kb, source: \"{source}\", closure: literal, count: {count}, sessions: {sessions}}}\n")
        })
        .collect();
    Ok(Envelope::from_yaml(&format!(
        r#"apiVersion: firebreak.dev/v1alpha1
kind: Envelope
metadata: {{name: {agent}, namespace: rag}}
spec:
  agent: {{cluster: prod, namespace: rag, workload: Deployment/{agent}, serviceAccount: {agent}}}
  version: 4
  status: converged
  context:
    observed:
{observed}"#
    ))?)
}

/// A critical context alert about Deployment `agent` retrieving from `index` (and `source`).
pub fn alert(id: &str, agent: &str, index: &str, source: Option<&str>) -> Result<Alert> {
    let mut parameter = serde_json::json!({"index": index});
    if let Some(s) = source {
        parameter["source"] = s.into();
    }
    let body = serde_json::json!({
        "id": id, "source": "test", "time": "2026-11-22T02:47:00Z",
        "agent": {"cluster": "prod", "namespace": "rag", "workload": format!("Deployment/{agent}"), "serviceAccount": agent},
        "dimension": "context", "parameter": parameter,
        "tier": "attack-attempt", "severity": "critical", "evidence": {}
    });
    Alert::from_json(body.to_string().as_bytes()).map_err(|e| anyhow!("{e}"))
}

/// The engine and the directory holding its journal and envelopes.
pub struct Harness {
    pub engine: Engine,
    _dir: tempfile::TempDir,
}

impl Harness {
    /// An engine over `plane` alone, with one envelope per agent observing `observed`.
    pub fn new(
        plane: Arc<dyn ControlPlane>,
        agents: &[&str],
        observed: &[Observed],
    ) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut envelopes = EnvelopeStore::default();
        for agent in agents {
            envelopes.insert(
                envelope(agent, observed)?,
                dir.path().join(format!("{agent}.yaml")),
            )?;
        }
        let engine = Engine::open(Parts {
            journal: Journal::open(&dir.path().join("journal.db"))?,
            envelopes,
            runbooks: Runbooks::embedded()?,
            planes: vec![plane],
            metrics: Metrics::new()?,
            config: EngineConfig {
                verify_poll: Duration::from_millis(50),
                ..EngineConfig::default()
            },
        })?;
        Ok(Harness { engine, _dir: dir })
    }

    /// What the engine recorded about the incident's last plan (verification detail).
    pub async fn detail(&self, incident: &str) -> Option<String> {
        self.engine
            .incident(incident)
            .await
            .and_then(|i| i.plans.last().and_then(|p| p.detail.clone()))
    }
}

/// The plan's candidate of this kind.
pub fn candidate(candidates: &[Candidate], kind: ActionKind) -> Result<&Candidate> {
    candidates
        .iter()
        .find(|c| c.kind == kind)
        .with_context(|| format!("{kind} considered"))
}
