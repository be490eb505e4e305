//! The tools control plane: the ladder `tools.revoke_tool` → `tools.revoke_server` →
//! `tools.revoke_all`, enforced by the gateway through the shared [`Policy`].

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use firebreak_containment::alert::Parameter;
use firebreak_containment::plan::BlastRadius;
use firebreak_containment::plane::{
    Change, Check, KindSpec, Observation, Outcome, PlanInput, Plane, PlaneError, Proposal, Route,
    Verification,
};
use serde::{Deserialize, Serialize};

use crate::policy::{Decision, Policy, Revocation, Scope};

const PLANE: &str = "tools gateway";

pub static REVOKE_TOOL: KindSpec = KindSpec::immediate("tools", "tools.revoke_tool", 0, false);
pub static REVOKE_SERVER: KindSpec = KindSpec::immediate("tools", "tools.revoke_server", 1, false);
pub static REVOKE_ALL: KindSpec = KindSpec::immediate("tools", "tools.revoke_all", 2, true);

pub struct ToolsPlane {
    policy: Arc<Policy>,
    upstreams: BTreeSet<String>,
}

impl ToolsPlane {
    /// `upstreams`: the server names the gateway fronts; alerts about others are not ours.
    pub fn new(policy: Arc<Policy>, upstreams: impl IntoIterator<Item = String>) -> Self {
        Self {
            policy,
            upstreams: upstreams.into_iter().collect(),
        }
    }
}

/// The probe call verification makes through the gateway's own decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    pub server: String,
    pub tool: String,
}

/// What the action journals: the revocation the gateway enforces and the breached call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolsSpec {
    pub revocation: Revocation,
    pub probe: Probe,
}

/// The breached (server, tool) of a tools alert.
fn breached<'a>(input: &'a PlanInput<'_>) -> Option<(&'a str, &'a str)> {
    match &input.alert.parameter {
        Parameter::Tools { server, tool } => Some((server, tool)),
        _ => None,
    }
}

/// Everything `observe` needs is in the envelope and the alert: the gateway's state is ours.
struct ToolsObservation;

impl Observation<ToolsSpec> for ToolsObservation {
    fn candidates(&self, input: &PlanInput<'_>) -> Result<Vec<Proposal<ToolsSpec>>, PlaneError> {
        let (server, tool) = breached(input).ok_or_else(|| PlaneError::Invalid {
            plane: PLANE,
            detail: "a tools alert needs parameter {server, tool}".into(),
        })?;
        let agent = input.alert.agent.key();
        let permitted = input.envelope.tools().permitted;
        let broken = |scope: &Scope| {
            BlastRadius::of(
                permitted
                    .iter()
                    .filter(|o| scope.covers(&o.value.server, &o.value.tool))
                    .map(|o| format!("tool {} on {}", o.value.tool, o.value.server))
                    .collect(),
            )
        };
        let rungs = [
            (
                Scope::Tool {
                    server: server.into(),
                    tool: tool.into(),
                },
                format!("tool {tool} on {server}, for {agent} only"),
            ),
            (
                Scope::Server {
                    server: server.into(),
                },
                format!("every tool on {server}, for {agent} only"),
            ),
            (
                Scope::All,
                format!("every tool on every server, for {agent} only"),
            ),
        ];
        Ok(rungs
            .into_iter()
            .map(|(scope, granularity)| {
                let blast_radius = broken(&scope);
                let spec = ToolsSpec {
                    revocation: Revocation {
                        agent: agent.clone(),
                        scope,
                        incident: input.incident.clone(),
                        plan: input.plan.clone(),
                    },
                    probe: Probe {
                        server: server.into(),
                        tool: tool.into(),
                    },
                };
                Proposal {
                    blast_radius,
                    inverse: "remove the revocation from the gateway policy".into(),
                    verify: format!(
                        "a probe call of tool {tool} on {server} as {agent} through the gateway policy is refused"
                    ),
                    ..Proposal::new(
                        format!("{agent} at the Firebreak MCP gateway"),
                        granularity,
                        spec,
                    )
                }
            })
            .collect())
    }
}

#[async_trait]
impl Plane for ToolsPlane {
    const KEY: &'static str = "gateway";
    const ROUTE: Route = Route::Tools;
    const KINDS: &'static [&'static KindSpec] = &[&REVOKE_TOOL, &REVOKE_SERVER, &REVOKE_ALL];
    const IN_PROCESS: bool = true;
    type Spec = ToolsSpec;

    fn kind_of(spec: &ToolsSpec) -> &'static KindSpec {
        match spec.revocation.scope {
            Scope::Tool { .. } => &REVOKE_TOOL,
            Scope::Server { .. } => &REVOKE_SERVER,
            Scope::All => &REVOKE_ALL,
        }
    }

    fn handles(&self, input: &PlanInput<'_>) -> bool {
        breached(input).is_some_and(|(server, _)| self.upstreams.contains(server))
    }

    async fn observe(
        &self,
        _input: &PlanInput<'_>,
    ) -> Result<Box<dyn Observation<ToolsSpec>>, PlaneError> {
        Ok(Box::new(ToolsObservation))
    }

    async fn change(&self, spec: &ToolsSpec, change: Change) -> Result<Outcome, PlaneError> {
        let what = describe(&spec.revocation.scope);
        let agent = &spec.revocation.agent;
        Ok(match change {
            Change::Apply => Outcome {
                changed: self.policy.revoke(spec.revocation.clone()),
                detail: format!("{what} revoked for {agent}"),
            },
            Change::Revert => Outcome {
                changed: self.policy.restore(&spec.revocation),
                detail: format!("{what} restored for {agent}"),
            },
        })
    }

    /// Asks the gateway's own decision function, the one every `tools/call` goes through.
    async fn check(&self, spec: &ToolsSpec, check: Check) -> Result<Verification, PlaneError> {
        let ToolsSpec { revocation, probe } = spec;
        let agent = &revocation.agent;
        let decision = self.policy.decide(agent, &probe.server, &probe.tool);
        Ok(match check {
            Check::Applied => {
                let ok = matches!(decision, Decision::Revoked(_));
                Verification::that(
                    ok,
                    format!(
                        "probe of tool {} on {} as {agent}: {}",
                        probe.tool,
                        probe.server,
                        if ok { "refused" } else { "allowed" }
                    ),
                )
            }
            // Another incident may still hold its own revocation of the tool: only ours must
            // be gone.
            Check::Reverted => {
                let gone = !self.policy.holds(revocation);
                Verification::that(
                    gone,
                    format!(
                        "revocation of {} for {agent} {}; probe of tool {} on {}: {decision:?}",
                        describe(&revocation.scope),
                        if gone { "gone" } else { "still in force" },
                        probe.tool,
                        probe.server,
                    ),
                )
            }
        })
    }

    fn verify_deadline(&self) -> Duration {
        // The policy is in this process: in effect the moment apply returns.
        Duration::from_secs(1)
    }
}

fn describe(scope: &Scope) -> String {
    match scope {
        Scope::Tool { server, tool } => format!("tool {tool} on {server}"),
        Scope::Server { server } => format!("every tool on {server}"),
        Scope::All => "every tool on every server".into(),
    }
}

#[cfg(test)]
mod tests {
    use firebreak_containment::{Alert, Envelope};

    use super::*;

    const ENVELOPE: &str = concat!(
        "apiVersion: firebreak.dev/v1alpha1\nkind: Envelope\nmetadata: {name: a}\nspec:\n",
        "  agent: {cluster: c, namespace: n, workload: Deployment/a, serviceAccount: a}\n",
        "  version: 1\n  status: converged\n  tools:\n    observed:\n",
        "      - {server: s1, tool: read, closure: literal, count: 50, sessions: 9}\n",
        "      - {server: s1, tool: write, closure: literal, count: 50, sessions: 9}\n",
        "      - {server: s2, tool: search, closure: literal, count: 50, sessions: 9}\n",
        "      - {server: s1, tool: rare, closure: literal, count: 1, sessions: 1}\n",
    );

    fn candidates(tool: &str) -> Vec<Proposal<ToolsSpec>> {
        let envelope = Envelope::from_yaml(ENVELOPE).expect("envelope");
        let alert = Alert::from_json(
            serde_json::json!({"id": "x", "source": "t", "time": "2026-11-22T05:00:00Z",
                "agent": {"cluster": "c", "namespace": "n", "workload": "Deployment/a", "serviceAccount": "a"},
                "dimension": "tools", "parameter": {"server": "s1", "tool": tool},
                "tier": "attack-attempt", "severity": "critical"})
            .to_string()
            .as_bytes(),
        )
        .expect("alert");
        let incident = "inc-1".into();
        let input = PlanInput {
            incident: &incident,
            plan: &"inc-1-p1".into(),
            alert: &alert,
            envelope: &envelope,
        };
        ToolsObservation.candidates(&input).expect("candidates")
    }

    #[test]
    fn blast_radius_counts_only_permitted_tools_of_the_agent() {
        let broken = |tool| -> Vec<(&str, usize)> {
            candidates(tool)
                .iter()
                .map(|c| (ToolsPlane::kind_of(&c.spec).name, c.blast_radius.broken))
                .collect()
        };
        // The tail entry `rare` is not in-envelope: revoking it breaks nothing.
        assert_eq!(
            broken("rare"),
            [
                (REVOKE_TOOL.name, 0),
                (REVOKE_SERVER.name, 2),
                (REVOKE_ALL.name, 3)
            ]
        );
        assert_eq!(broken("read")[0], (REVOKE_TOOL.name, 1));
    }

    #[tokio::test]
    async fn apply_is_idempotent_and_revert_restores() {
        let policy = Arc::new(Policy::default());
        let plane = ToolsPlane::new(policy.clone(), ["s1".to_string()]);
        let spec = candidates("rare").remove(0).spec;
        let change = |c| plane.change(&spec, c);
        assert!(change(Change::Apply).await.expect("apply").changed);
        assert!(!change(Change::Apply).await.expect("re-apply").changed);
        assert!(plane.check(&spec, Check::Applied).await.expect("verify").ok);
        let agent = firebreak_containment::agent::AgentKey("c/n/Deployment/a".into());
        assert_eq!(policy.decide(&agent, "s1", "read"), Decision::Allowed);
        assert!(change(Change::Revert).await.expect("revert").changed);
        assert!(
            plane
                .check(&spec, Check::Reverted)
                .await
                .expect("verify")
                .ok
        );
        assert!(!plane.check(&spec, Check::Applied).await.expect("verify").ok);
    }
}
