//! The engine side of the context surface's end-to-end tests, whatever the store: agents'
//! envelopes, context alerts, the real engine in process over the planes under test, and the
//! plane input for driving one plane directly through `Plane` (docs/adding-a-plane.md §6).
//!
//! Shared by two targets that each use part of it.
#![allow(dead_code)]

use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use firebreak_containment::alert::Alert;
use firebreak_containment::engine::{Engine, EngineConfig, Parts, Submitted};
use firebreak_containment::envelope::{Envelope, EnvelopeStore};
use firebreak_containment::ids::{IncidentId, PlanId};
use firebreak_containment::journal::Journal;
use firebreak_containment::metrics::Metrics;
use firebreak_containment::plan::{Candidate, Plan};
use firebreak_containment::plane::{KindSpec, PlanInput, Plane, Planes, Proposal};
use firebreak_containment::runbook::Runbooks;
use firebreak_containment::PlanStatus;

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

/// How long a plan may take to settle (apply and verify, or revert and verify).
const SETTLE: Duration = Duration::from_secs(60);

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
    pub fn new<P: Plane>(plane: P, agents: &[&str], observed: &[Observed]) -> Result<Self> {
        let mut planes = Planes::default();
        planes.register(plane)?;
        Harness::over(planes, agents, observed)
    }

    /// An engine over every plane of `planes`, as the daemon registers them.
    pub fn over(planes: Planes, agents: &[&str], observed: &[Observed]) -> Result<Self> {
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
            planes,
            metrics: Metrics::new()?,
            config: EngineConfig {
                verify_poll: Duration::from_millis(50),
                ..EngineConfig::default()
            },
        })?;
        Ok(Harness { engine, _dir: dir })
    }

    /// Submits an operator's containment (`firebreak contain`): approved by them, it executes.
    pub async fn contain(&self, alert: Alert) -> Result<Submitted> {
        Ok(self
            .engine
            .submit(
                alert,
                firebreak_containment::engine::Request::Operator("t".into()),
            )
            .await?)
    }

    /// Submits a dry run: planned from a real observation, nothing changed.
    pub async fn dry_run(&self, alert: Alert) -> Result<Submitted> {
        Ok(self
            .engine
            .submit(alert, firebreak_containment::engine::Request::DryRun)
            .await?)
    }

    /// The status the submitted alert's plan settles in (no longer applying or verifying).
    pub async fn settled(&self, submitted: &Submitted) -> Result<PlanStatus> {
        let plan = plan_of(submitted)?;
        tokio::time::timeout(SETTLE, self.engine.settled(&submitted.incident, &plan.id))
            .await
            .with_context(|| format!("plan {} did not settle within {SETTLE:?}", plan.id))?
            .with_context(|| format!("plan {} is not in the engine's view", plan.id))
    }

    /// Rolls the incident back, as an operator.
    pub async fn rollback(&self, incident: &IncidentId) -> Result<PlanStatus> {
        Ok(
            tokio::time::timeout(SETTLE, self.engine.rollback(incident, Some("t".into())))
                .await
                .with_context(|| {
                    format!("rollback of {incident} did not finish within {SETTLE:?}")
                })??,
        )
    }

    /// What the engine recorded about the incident's last plan (the plane's last detail).
    pub async fn detail(&self, incident: &IncidentId) -> Option<String> {
        self.engine
            .incident(incident)
            .await
            .and_then(|i| i.plans.last().and_then(|p| p.detail.clone()))
    }
}

/// The plan a submitted alert got (every alert in these tests is planned).
pub fn plan_of(submitted: &Submitted) -> Result<&Plan> {
    submitted
        .plan
        .as_ref()
        .with_context(|| format!("{} has no plan: {:?}", submitted.incident, submitted.status))
}

/// The plan's first candidate of this kind.
pub fn candidate<'a>(candidates: &'a [Candidate], kind: &KindSpec) -> Result<&'a Candidate> {
    candidates
        .iter()
        .find(|c| c.kind == kind)
        .with_context(|| format!("{} considered", kind.name))
}

/// What a plane is asked to plan for, owned, so a test can drive the plane itself.
pub struct Input {
    incident: IncidentId,
    plan: PlanId,
    alert: Alert,
    envelope: Envelope,
}

impl Input {
    /// Agent `agent`'s alert about `index` (and `source`), against an envelope observing
    /// `observed`; `tag` makes the incident (which keys the quarantine rows) this test's own.
    pub fn new(
        tag: &str,
        agent: &str,
        index: &str,
        source: Option<&str>,
        observed: &[Observed],
    ) -> Result<Input> {
        let incident = IncidentId::from(format!("inc-{tag}"));
        Ok(Input {
            plan: PlanId::nth(&incident, 1),
            incident,
            alert: alert(tag, agent, index, source)?,
            envelope: envelope(agent, observed)?,
        })
    }

    pub fn get(&self) -> PlanInput<'_> {
        PlanInput {
            incident: &self.incident,
            plan: &self.plan,
            alert: &self.alert,
            envelope: &self.envelope,
        }
    }
}

/// Observes (reads only) and proposes, as the engine would, with the plane itself.
pub async fn proposals<P: Plane>(plane: &P, input: &Input) -> Result<Vec<Proposal<P::Spec>>> {
    let input = input.get();
    if !plane.handles(&input) {
        anyhow::bail!("{} does not handle this alert", P::KEY);
    }
    let observed = plane.observe(&input).await?;
    Ok(observed.candidates(&input)?)
}

/// The proposals' spec of this kind whose target contains `target`.
pub fn spec_of<P: Plane>(
    proposals: &[Proposal<P::Spec>],
    kind: &KindSpec,
    target: &str,
) -> Result<P::Spec>
where
    P::Spec: Clone,
{
    proposals
        .iter()
        .find(|p| P::kind_of(&p.spec) == kind && p.target.contains(target))
        .map(|p| p.spec.clone())
        .with_context(|| format!("{} proposed on {target}", kind.name))
}
