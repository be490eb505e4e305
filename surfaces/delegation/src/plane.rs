//! The delegation control plane: `delegation.sever_edge` → `delegation.isolate_inbound` →
//! `delegation.pause_graph`, enforced by the shims reading the [`Feed`].

use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use firebreak_containment::agent::AgentKey;
use firebreak_containment::alert::Parameter;
use firebreak_containment::envelope::{Envelope, EnvelopeStore};
use firebreak_containment::ids::IncidentId;
use firebreak_containment::plan::BlastRadius;
use firebreak_containment::plane::{
    Change, Check, KindSpec, Observation, Outcome, PlanInput, Plane, PlaneError, Proposal, Route,
    Verification,
};
use serde::{Deserialize, Serialize};

use crate::feed::{Feed, Rule};

const PLANE: &str = "delegation feed";

pub static SEVER_EDGE: KindSpec =
    KindSpec::immediate("delegation", "delegation.sever_edge", 0, false);
pub static ISOLATE_INBOUND: KindSpec =
    KindSpec::immediate("delegation", "delegation.isolate_inbound", 1, false);
pub static PAUSE_GRAPH: KindSpec =
    KindSpec::immediate("delegation", "delegation.pause_graph", 2, true);

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

fn malformed_parties(input: &PlanInput<'_>) -> Vec<(&'static str, String)> {
    let Some((from, to)) = breached(input) else {
        return Vec::new();
    };
    [("from", from.0), ("to", to)]
        .into_iter()
        .filter_map(|(field, key)| AgentKey::check(&key).err().map(|reason| (field, reason)))
        .collect()
}

/// The feed rule an action holds, on whose document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub agent: AgentKey,
    #[serde(flatten)]
    pub rule: Rule,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeRef {
    pub from: AgentKey,
    pub to: String,
}

/// What the action journals: everything `change` and `check` need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DelegationSpec {
    /// The agent the alert is about.
    pub agent: AgentKey,
    pub incident: IncidentId,
    /// The breached edge: verification asks the feed whether it is refused.
    pub edge: EdgeRef,
    pub hold: Hold,
}

struct DelegationObservation {
    edges: Arc<Vec<Edge>>,
    /// The alert's `from`/`to` that are no agent key (a graph node's name): shims match edges
    /// by agent key, so a rule on them would refuse nothing.
    malformed: Vec<(&'static str, String)>,
}

fn invalid(detail: impl Into<String>) -> PlaneError {
    PlaneError::Invalid {
        plane: PLANE,
        detail: detail.into(),
    }
}

impl Observation<DelegationSpec> for DelegationObservation {
    fn candidates(
        &self,
        input: &PlanInput<'_>,
    ) -> Result<Vec<Proposal<DelegationSpec>>, PlaneError> {
        let (from, to) = breached(input)
            .ok_or_else(|| invalid("a delegation alert needs parameter {from?, to}"))?;
        if to.is_empty() {
            return Err(invalid(
                "parameter.to is empty; name the callee's agent key",
            ));
        }
        if let Some((field, reason)) = self.malformed.first() {
            return Err(invalid(format!(
                "parameter.{field}: {reason}; shims match edges by agent key, so a cut on it \
                 would refuse nothing: send the agent key, not a graph node or crew member name"
            )));
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
                Hold {
                    agent: from.clone(),
                    rule: Rule::Severed { to: to.clone() },
                },
                format!("the edge {from} → {to} only"),
                broken(&|e| e.from == from && e.to == to),
            ),
            (
                Hold {
                    agent: callee,
                    rule: Rule::InboundIsolated,
                },
                format!("every edge into {to}, from every caller"),
                broken(&|e| e.to == to),
            ),
            (
                Hold {
                    agent: from.clone(),
                    rule: Rule::Paused,
                },
                format!("every edge from and into {from}: its graph waits"),
                broken(&|e| e.from == from || e.to == from.0),
            ),
        ];
        Ok(rungs
            .into_iter()
            .map(|(hold, granularity, blast_radius)| {
                let target = format!("{} at the Firebreak policy feed", hold.agent);
                let spec = DelegationSpec {
                    agent: input.alert.agent.key(),
                    incident: input.incident.clone(),
                    edge: EdgeRef {
                        from: from.clone(),
                        to: to.clone(),
                    },
                    hold,
                };
                Proposal {
                    blast_radius,
                    inverse: "release this incident's hold on the feed rule".into(),
                    verify: format!("the feed documents refuse the edge {from} → {to}"),
                    ..Proposal::new(target, granularity, spec)
                }
            })
            .collect())
    }
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
impl Plane for DelegationPlane {
    const KEY: &'static str = "feed";
    const ROUTE: Route = Route::Delegation;
    const KINDS: &'static [&'static KindSpec] = &[&SEVER_EDGE, &ISOLATE_INBOUND, &PAUSE_GRAPH];
    const IN_PROCESS: bool = true;
    type Spec = DelegationSpec;

    fn kind_of(spec: &DelegationSpec) -> &'static KindSpec {
        match spec.hold.rule {
            Rule::InboundIsolated => &ISOLATE_INBOUND,
            Rule::Paused => &PAUSE_GRAPH,
            // Only the three rules above are ever proposed; a spec naming another is refused
            // by `change`, and reads as the narrowest rung until then.
            _ => &SEVER_EDGE,
        }
    }

    fn handles(&self, input: &PlanInput<'_>) -> bool {
        breached(input).is_some()
    }

    async fn observe(
        &self,
        input: &PlanInput<'_>,
    ) -> Result<Box<dyn Observation<DelegationSpec>>, PlaneError> {
        let edges = self.edges.read().unwrap_or_else(|p| p.into_inner()).clone();
        Ok(Box::new(DelegationObservation {
            edges,
            malformed: malformed_parties(input),
        }))
    }

    async fn change(&self, spec: &DelegationSpec, change: Change) -> Result<Outcome, PlaneError> {
        let Hold { agent, rule } = &spec.hold;
        if !matches!(
            rule,
            Rule::Severed { .. } | Rule::InboundIsolated | Rule::Paused
        ) {
            return Err(invalid(format!(
                "a delegation spec holds severed, inboundIsolated or paused, not {rule:?}"
            )));
        }
        let holder = spec.incident.as_str();
        Ok(match change {
            Change::Apply => Outcome {
                changed: self.feed.set(agent, rule, holder),
                detail: format!("{rule:?} on {agent} in force at the feed"),
            },
            Change::Revert => Outcome {
                changed: self.feed.clear(agent, rule, holder),
                detail: format!("{rule:?} on {agent} released at the feed"),
            },
        })
    }

    async fn check(&self, spec: &DelegationSpec, check: Check) -> Result<Verification, PlaneError> {
        let Hold { agent, rule } = &spec.hold;
        let edge = format!("{} → {}", spec.edge.from, spec.edge.to);
        let refusal = self.refusal(&spec.edge);
        let held = self.feed.holds(agent, rule, spec.incident.as_str());
        Ok(match check {
            Check::Applied => Verification::that(
                refusal.is_some() && held,
                match refusal {
                    Some(why) => format!("the feed refuses {edge}: {why}"),
                    None => format!("the feed still allows {edge}"),
                },
            ),
            // Another incident may hold its own rule on this edge: only ours must be gone.
            Check::Reverted => Verification::that(
                !held,
                format!(
                    "hold of incident {} {}; {edge} is {}",
                    spec.incident,
                    if held { "still in force" } else { "released" },
                    refusal.map_or_else(|| "allowed".to_string(), |why| format!("refused: {why}"))
                ),
            ),
        })
    }

    fn verify_deadline(&self) -> Duration {
        // The feed is in this process: in effect the moment apply returns.
        Duration::from_secs(1)
    }
}

#[cfg(test)]
mod tests {
    use firebreak_containment::ids::PlanId;
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

    fn candidates(plane: &DelegationPlane, to: &str) -> Vec<Proposal<DelegationSpec>> {
        observed(plane, &format!("c/n/Deployment/{to}")).expect("candidates")
    }

    /// What the plane proposes for an alert `a → to` (`to` as the alert spells it).
    fn observed(
        plane: &DelegationPlane,
        to: &str,
    ) -> Result<Vec<Proposal<DelegationSpec>>, PlaneError> {
        let store = store();
        let alert = Alert::from_json(
            serde_json::json!({"id": "x", "source": "t", "time": "2026-11-22T05:00:00Z",
                "agent": {"cluster": "c", "namespace": "n", "workload": "Deployment/a", "serviceAccount": "a"},
                "dimension": "delegation", "parameter": {"to": to},
                "tier": "attack-attempt", "severity": "critical"})
            .to_string()
            .as_bytes(),
        )
        .expect("alert");
        let envelope = store.get(&alert.agent.key()).expect("a's envelope");
        let incident = IncidentId::from("inc-1");
        let input = PlanInput {
            incident: &incident,
            plan: &PlanId::nth(&incident, 1),
            alert: &alert,
            envelope,
        };
        DelegationObservation {
            edges: plane.edges.read().expect("edges").clone(),
            malformed: malformed_parties(&input),
        }
        .candidates(&input)
    }

    #[test]
    fn a_callee_that_is_no_agent_key_is_refused_not_cut() {
        let plane = DelegationPlane::new(Feed::default(), &store());
        // A LangGraph node name, and a key missing its Kind.
        for to in ["researcher_node", "c/n/researcher"] {
            let err = observed(&plane, to).expect_err("refused").to_string();
            assert!(
                err.contains("parameter.to") && err.contains(to) && err.contains("agent key"),
                "{err}"
            );
        }
        assert_eq!(plane.feed.version(), plane.feed.epoch(), "nothing written");
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
        let sever = candidates(&plane, "b").remove(0).spec;
        assert_eq!(DelegationPlane::kind_of(&sever), &SEVER_EDGE);
        let check = |c| plane.check(&sever, c);
        let change = |c| plane.change(&sever, c);
        assert!(!check(Check::Applied).await.expect("verify").ok);
        assert!(change(Change::Apply).await.expect("apply").changed);
        let version = feed.version();
        assert!(!change(Change::Apply).await.expect("re-apply").changed);
        assert_eq!(feed.version(), version, "a re-apply writes nothing");
        assert!(check(Check::Applied).await.expect("verify").ok);
        let a = feed
            .document(&AgentKey("c/n/Deployment/a".into()))
            .expect("a");
        assert_eq!(a.refuses_edge("c/n/Deployment/c", None), None);
        assert!(!check(Check::Reverted).await.expect("verify").ok);
        assert!(change(Change::Revert).await.expect("revert").changed);
        assert!(!change(Change::Revert).await.expect("re-revert").changed);
        assert!(check(Check::Reverted).await.expect("verify").ok);
        assert!(!check(Check::Applied).await.expect("verify").ok);
    }

    #[tokio::test]
    async fn a_spec_holding_a_foreign_rule_is_refused_and_writes_nothing() {
        let feed = Feed::default();
        let plane = DelegationPlane::new(feed.clone(), &store());
        let mut spec = candidates(&plane, "b").remove(0).spec;
        spec.hold.rule = Rule::RevokedTool {
            server: "s".into(),
            tool: "t".into(),
        };
        let version = feed.version();
        let err = plane
            .change(&spec, Change::Apply)
            .await
            .expect_err("refused");
        assert!(
            err.to_string()
                .contains("severed, inboundIsolated or paused"),
            "{err}"
        );
        assert_eq!(feed.version(), version, "nothing written");
    }

    #[test]
    fn each_rung_names_its_kind() {
        let plane = DelegationPlane::new(Feed::default(), &store());
        let kinds: Vec<_> = candidates(&plane, "b")
            .iter()
            .map(|p| DelegationPlane::kind_of(&p.spec).name)
            .collect();
        assert_eq!(
            kinds,
            [SEVER_EDGE.name, ISOLATE_INBOUND.name, PAUSE_GRAPH.name]
        );
    }
}
