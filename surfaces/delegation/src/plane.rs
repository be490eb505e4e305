//! The delegation control plane: `delegation.sever_edge` → `delegation.isolate_inbound` →
//! `delegation.pause_graph`, enforced by the shims reading the [`Feed`].

use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use firebreak_containment::action::{ActionKind, Surface};
use firebreak_containment::agent::AgentKey;
use firebreak_containment::alert::{Dimension, Parameter};
use firebreak_containment::envelope::{Envelope, EnvelopeStore};
use firebreak_containment::plan::{BlastRadius, Candidate, Enforcement};
use firebreak_containment::surface::{
    ControlPlane, Observation, Op, Outcome, PlanInput, Step, SurfaceError, Verification,
};
use serde::{Deserialize, Serialize};

use crate::feed::{Feed, Rule};

const PLANE: &str = "delegation feed";

/// One in-envelope delegation edge (a permitted entry of the caller's envelope).
#[derive(Debug, Clone)]
struct Edge {
    from: AgentKey,
    to: String,
    mechanism: Option<String>,
}

impl Edge {
    fn describe(&self) -> String {
        match &self.mechanism {
            Some(m) => format!("{} → {} ({m})", self.from, self.to),
            None => format!("{} → {}", self.from, self.to),
        }
    }
}

fn permitted_edges(envelope: &Envelope) -> impl Iterator<Item = Edge> + '_ {
    let from = envelope.agent_key();
    envelope
        .spec
        .delegation
        .observed
        .iter()
        .filter(|o| o.is_confident(&envelope.spec.confidence))
        .map(move |o| Edge {
            from: from.clone(),
            to: o.value.to.clone(),
            mechanism: o.value.mechanism.clone(),
        })
}

pub struct DelegationPlane {
    feed: Feed,
    /// Every agent's in-envelope edges: isolating B breaks edges found in other envelopes.
    edges: RwLock<Arc<Vec<Edge>>>,
}

impl DelegationPlane {
    pub fn new(feed: Feed, envelopes: &EnvelopeStore) -> Self {
        let plane = Self {
            feed,
            edges: RwLock::default(),
        };
        plane.set_envelopes(envelopes);
        plane
    }

    /// Reloads the edges and tells the feed which agents to serve (envelope holders and the
    /// agents they delegate to).
    pub fn set_envelopes(&self, envelopes: &EnvelopeStore) {
        let edges: Vec<Edge> = envelopes.iter().flat_map(permitted_edges).collect();
        self.feed.set_agents(
            envelopes
                .iter()
                .map(Envelope::agent_key)
                .chain(edges.iter().map(|e| AgentKey(e.to.clone()))),
        );
        *self.edges.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(edges);
    }
}

/// The breached edge of a delegation alert: `from` defaults to the alert's agent.
fn breached(input: &PlanInput<'_>) -> Option<(AgentKey, String)> {
    match &input.alert.parameter {
        Parameter::Delegation { from, to } => Some((
            from.clone()
                .map_or_else(|| input.alert.agent.key(), AgentKey),
            to.clone(),
        )),
        _ => None,
    }
}

/// The feed rule an action holds, on whose document.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Hold {
    agent: AgentKey,
    #[serde(flatten)]
    rule: Rule,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct EdgeRef {
    from: AgentKey,
    to: String,
}

/// What the action spec journals: everything `run` needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Spec {
    /// The agent the alert is about.
    agent: AgentKey,
    incident: String,
    /// The breached edge: verification asks the feed whether it is refused.
    edge: EdgeRef,
    hold: Hold,
}

struct DelegationObservation {
    edges: Arc<Vec<Edge>>,
}

impl Observation for DelegationObservation {
    fn candidates(&self, input: &PlanInput<'_>) -> Result<Vec<Candidate>, SurfaceError> {
        let (from, to) = breached(input).ok_or_else(|| SurfaceError::Invalid {
            plane: PLANE,
            detail: "a delegation alert needs parameter {from?, to}".into(),
        })?;
        if to.is_empty() {
            return Err(SurfaceError::Invalid {
                plane: PLANE,
                detail: "parameter.to is empty; name the callee's agent key".into(),
            });
        }
        // The plan's own envelope version wins over the snapshot for the alert's agent.
        let own = input.envelope.agent_key();
        let edges: Vec<Edge> = permitted_edges(input.envelope)
            .chain(self.edges.iter().filter(|e| e.from != own).cloned())
            .collect();
        let broken = |pred: &dyn Fn(&Edge) -> bool| {
            BlastRadius::of(
                edges
                    .iter()
                    .filter(|e| pred(e))
                    .map(Edge::describe)
                    .collect(),
            )
        };
        let callee = AgentKey(to.clone());
        let rungs = [
            (
                ActionKind::DelegationSeverEdge,
                Hold {
                    agent: from.clone(),
                    rule: Rule::Severed { to: to.clone() },
                },
                format!("the edge {from} → {to} only"),
                broken(&|e| e.from == from && e.to == to),
            ),
            (
                ActionKind::DelegationIsolateInbound,
                Hold {
                    agent: callee,
                    rule: Rule::InboundIsolated,
                },
                format!("every edge into {to}, from every caller"),
                broken(&|e| e.to == to),
            ),
            (
                ActionKind::DelegationPauseGraph,
                Hold {
                    agent: from.clone(),
                    rule: Rule::Paused,
                },
                format!("every edge from and into {from}: its graph waits"),
                broken(&|e| e.from == from || e.to == from.0),
            ),
        ];
        rungs
            .into_iter()
            .map(|(kind, hold, granularity, blast_radius)| {
                let spec = Spec {
                    agent: input.alert.agent.key(),
                    incident: input.incident.to_string(),
                    edge: EdgeRef {
                        from: from.clone(),
                        to: to.clone(),
                    },
                    hold,
                };
                Ok(Candidate {
                    kind,
                    target: format!("{} at the Firebreak policy feed", spec.hold.agent),
                    granularity,
                    blast_radius,
                    blocks: true,
                    inverse: "release this incident's hold on the feed rule".into(),
                    verify: format!("the feed documents refuse the edge {from} → {to}"),
                    enforcement: Enforcement::Immediate,
                    rejected: None,
                    notes: vec![],
                    spec: serde_json::to_value(&spec).map_err(|e| SurfaceError::Invalid {
                        plane: PLANE,
                        detail: format!("cannot encode the action spec: {e}"),
                    })?,
                })
            })
            .collect()
    }
}

fn parse_spec(action: &Candidate) -> Result<Spec, SurfaceError> {
    serde_json::from_value(action.spec.clone()).map_err(|e| SurfaceError::Invalid {
        plane: PLANE,
        detail: format!(
            "action spec of {} is not a delegation spec {{agent, incident, edge {{from, to}}, hold {{agent, rule}}}}: {e}",
            action.kind
        ),
    })
}

impl DelegationPlane {
    /// Why the feed, as served to shims, refuses the spec's edge (`None`: it allows it).
    fn refusal(&self, edge: &EdgeRef) -> Option<String> {
        let caller = self.feed.document(&edge.from)?;
        caller.refuses_edge(
            &edge.to,
            self.feed.document(&AgentKey(edge.to.clone())).as_ref(),
        )
    }
}

#[async_trait]
impl ControlPlane for DelegationPlane {
    fn surface(&self) -> Surface {
        Surface::Delegation
    }

    fn handles(&self, input: &PlanInput<'_>) -> bool {
        input.alert.dimension == Dimension::Delegation && breached(input).is_some()
    }

    async fn observe(&self, _input: &PlanInput<'_>) -> Result<Box<dyn Observation>, SurfaceError> {
        let edges = self.edges.read().unwrap_or_else(|p| p.into_inner()).clone();
        Ok(Box::new(DelegationObservation { edges }))
    }

    async fn run(&self, action: &Candidate, op: Op) -> Result<Step, SurfaceError> {
        let spec = parse_spec(action)?;
        let Hold { agent, rule } = &spec.hold;
        let edge = format!("{} → {}", spec.edge.from, spec.edge.to);
        Ok(match op {
            Op::Apply => Step::Changed(Outcome {
                changed: self.feed.set(agent, rule, &spec.incident),
                detail: format!("{} refused at the feed", action.granularity),
            }),
            Op::Verify => {
                let refusal = self.refusal(&spec.edge);
                let ok = refusal.is_some() && self.feed.holds(agent, rule, &spec.incident);
                Step::Checked(Verification {
                    ok,
                    detail: match refusal {
                        Some(why) => format!("the feed refuses {edge}: {why}"),
                        None => format!("the feed still allows {edge}"),
                    },
                })
            }
            Op::Revert => Step::Changed(Outcome {
                changed: self.feed.clear(agent, rule, &spec.incident),
                detail: format!("{} restored at the feed", action.granularity),
            }),
            Op::VerifyReverted => {
                // Another incident may hold its own rule on this edge: only ours must be gone.
                let ok = !self.feed.holds(agent, rule, &spec.incident);
                Step::Checked(Verification {
                    ok,
                    detail: format!(
                        "hold of incident {} {}; {edge} is {}",
                        spec.incident,
                        if ok { "released" } else { "still in force" },
                        self.refusal(&spec.edge)
                            .map_or_else(|| "allowed".to_string(), |why| format!("refused: {why}"))
                    ),
                })
            }
        })
    }

    fn verify_deadline(&self) -> Duration {
        // The feed is in this process: in effect the moment apply returns.
        Duration::from_secs(1)
    }
}

#[cfg(test)]
mod tests {
    use firebreak_containment::Alert;

    use super::*;

    fn envelope(name: &str, edges: &[(&str, u64)]) -> Envelope {
        let observed: String = edges
            .iter()
            .map(|(to, count)| {
                format!("      - {{to: c/n/Deployment/{to}, mechanism: handoff, closure: literal, count: {count}, sessions: 9}}\n")
            })
            .collect();
        Envelope::from_yaml(&format!(
            "apiVersion: firebreak.dev/v1alpha1\nkind: Envelope\nmetadata: {{name: {name}}}\nspec:\n  \
             agent: {{cluster: c, namespace: n, workload: Deployment/{name}, serviceAccount: {name}}}\n  \
             version: 1\n  status: converged\n  delegation:\n    observed:\n{observed}"
        ))
        .expect("envelope")
    }

    fn store() -> EnvelopeStore {
        let mut store = EnvelopeStore::default();
        for e in [
            envelope("a", &[("b", 50), ("c", 50), ("rare", 1)]),
            envelope("d", &[("b", 50)]),
            envelope("b", &[("a", 50)]),
        ] {
            let path = format!("{}.yaml", e.metadata.name).into();
            store.insert(e, path).expect("insert");
        }
        store
    }

    fn candidates(plane: &DelegationPlane, to: &str) -> Vec<Candidate> {
        let store = store();
        let alert = Alert::from_json(
            serde_json::json!({"id": "x", "source": "t", "time": "2026-11-22T05:00:00Z",
                "agent": {"cluster": "c", "namespace": "n", "workload": "Deployment/a", "serviceAccount": "a"},
                "dimension": "delegation", "parameter": {"to": format!("c/n/Deployment/{to}")},
                "tier": "attack-attempt", "severity": "critical"})
            .to_string()
            .as_bytes(),
        )
        .expect("alert");
        let envelope = store.get(&alert.agent.key()).expect("a's envelope");
        let input = PlanInput {
            incident: "inc-1",
            alert: &alert,
            envelope,
        };
        DelegationObservation {
            edges: plane.edges.read().expect("edges").clone(),
        }
        .candidates(&input)
        .expect("candidates")
    }

    #[test]
    fn blast_radius_counts_in_envelope_edges_per_rung() {
        let plane = DelegationPlane::new(Feed::default(), &store());
        let broken = |to| -> Vec<usize> {
            candidates(&plane, to)
                .iter()
                .map(|c| c.blast_radius.broken)
                .collect()
        };
        // a → rare is tail: severing it breaks nothing; isolating rare breaks nothing either;
        // pausing a breaks a → b, a → c and b → a.
        assert_eq!(broken("rare"), [0, 0, 3]);
        // Severing a → b breaks exactly that edge; isolating b also breaks d → b.
        assert_eq!(broken("b"), [1, 2, 3]);
    }

    #[tokio::test]
    async fn apply_is_idempotent_verify_reads_the_feed_and_revert_restores() {
        let feed = Feed::default();
        let plane = DelegationPlane::new(feed.clone(), &store());
        let sever = candidates(&plane, "b").remove(0);
        assert!(!plane.verify(&sever).await.expect("verify").ok);
        assert!(plane.apply(&sever).await.expect("apply").changed);
        let version = feed.version();
        assert!(!plane.apply(&sever).await.expect("re-apply").changed);
        assert_eq!(feed.version(), version, "a re-apply writes nothing");
        assert!(plane.verify(&sever).await.expect("verify").ok);
        let a = feed
            .document(&AgentKey("c/n/Deployment/a".into()))
            .expect("a");
        assert_eq!(a.refuses_edge("c/n/Deployment/c", None), None);
        assert!(plane.revert(&sever).await.expect("revert").changed);
        assert!(!plane.revert(&sever).await.expect("re-revert").changed);
        assert!(plane.verify_reverted(&sever).await.expect("verify").ok);
    }

    #[tokio::test]
    async fn a_malformed_spec_is_refused_naming_the_shape() {
        let plane = DelegationPlane::new(Feed::default(), &store());
        let mut action = candidates(&plane, "b").remove(0);
        action.spec = serde_json::json!({"agent": "c/n/Deployment/a"});
        let err = plane.apply(&action).await.expect_err("refused");
        assert!(err.to_string().contains("edge {from, to}"), "{err}");
    }
}
