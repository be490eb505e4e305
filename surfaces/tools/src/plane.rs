//! The tools control plane: the ladder `tools.revoke_tool` → `tools.revoke_server` →
//! `tools.revoke_all`, enforced by the gateway through the shared [`Policy`].

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use firebreak_containment::action::{ActionKind, Surface};
use firebreak_containment::alert::{Dimension, Parameter};
use firebreak_containment::plan::{BlastRadius, Candidate, Enforcement};
use firebreak_containment::surface::{
    ControlPlane, Observation, Op, Outcome, PlanInput, Step, SurfaceError, Verification,
};

use crate::policy::{Decision, Policy, Revocation, Scope};

const PLANE: &str = "tools gateway";

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

/// The breached (server, tool) of a tools alert.
fn breached<'a>(input: &'a PlanInput<'_>) -> Option<(&'a str, &'a str)> {
    match &input.alert.parameter {
        Parameter::Tools { server, tool } => Some((server, tool)),
        _ => None,
    }
}

/// Everything `observe` needs is in the envelope and the alert: the gateway's state is ours.
struct ToolsObservation;

impl Observation for ToolsObservation {
    fn candidates(&self, input: &PlanInput<'_>) -> Result<Vec<Candidate>, SurfaceError> {
        let (server, tool) = breached(input).ok_or_else(|| SurfaceError::Invalid {
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
                ActionKind::ToolsRevokeTool,
                Scope::Tool {
                    server: server.into(),
                    tool: tool.into(),
                },
                format!("tool {tool} on {server}, for {agent} only"),
            ),
            (
                ActionKind::ToolsRevokeServer,
                Scope::Server {
                    server: server.into(),
                },
                format!("every tool on {server}, for {agent} only"),
            ),
            (
                ActionKind::ToolsRevokeAll,
                Scope::All,
                format!("every tool on every server, for {agent} only"),
            ),
        ];
        Ok(rungs
            .into_iter()
            .map(|(kind, scope, granularity)| {
                let revocation = Revocation {
                    agent: agent.clone(),
                    scope,
                    incident: input.incident.to_string(),
                };
                Candidate {
                    kind,
                    target: format!("{agent} at the Firebreak MCP gateway"),
                    granularity,
                    blast_radius: broken(&revocation.scope),
                    blocks: true,
                    inverse: "remove the revocation from the gateway policy".into(),
                    verify: format!(
                        "a probe call of tool {tool} on {server} as {agent} through the gateway policy is refused"
                    ),
                    enforcement: Enforcement::Immediate,
                    rejected: None,
                    notes: vec![],
                    spec: serde_json::json!({
                        "revocation": revocation,
                        "probe": {"server": server, "tool": tool},
                    }),
                }
            })
            .collect())
    }
}

/// The revocation and the probe call journaled in the action spec.
fn parse_spec(action: &Candidate) -> Result<(Revocation, String, String), SurfaceError> {
    let invalid = |detail: String| SurfaceError::Invalid {
        plane: PLANE,
        detail,
    };
    let revocation: Revocation = serde_json::from_value(action.spec["revocation"].clone())
        .map_err(|e| invalid(format!("action spec has no valid revocation: {e}")))?;
    let probe = &action.spec["probe"];
    match (probe["server"].as_str(), probe["tool"].as_str()) {
        (Some(s), Some(t)) => Ok((revocation, s.to_string(), t.to_string())),
        _ => Err(invalid("action spec has no probe {server, tool}".into())),
    }
}

#[async_trait]
impl ControlPlane for ToolsPlane {
    fn surface(&self) -> Surface {
        Surface::Tools
    }

    fn handles(&self, input: &PlanInput<'_>) -> bool {
        input.alert.dimension == Dimension::Tools
            && breached(input).is_some_and(|(server, _)| self.upstreams.contains(server))
    }

    async fn observe(&self, _input: &PlanInput<'_>) -> Result<Box<dyn Observation>, SurfaceError> {
        Ok(Box::new(ToolsObservation))
    }

    async fn run(&self, action: &Candidate, op: Op) -> Result<Step, SurfaceError> {
        let (revocation, server, tool) = parse_spec(action)?;
        let agent = &revocation.agent;
        Ok(match op {
            Op::Apply => {
                let detail = format!("{} revoked for {agent}", action.granularity);
                let changed = self.policy.revoke(revocation);
                Step::Changed(Outcome { changed, detail })
            }
            Op::Verify => {
                let ok = matches!(
                    self.policy.decide(agent, &server, &tool),
                    Decision::Revoked(_)
                );
                Step::Checked(Verification {
                    ok,
                    detail: format!(
                        "probe of tool {tool} on {server} as {agent}: {}",
                        if ok { "refused" } else { "allowed" }
                    ),
                })
            }
            Op::Revert => {
                let changed = self.policy.restore(&revocation);
                Step::Changed(Outcome {
                    changed,
                    detail: format!("{} restored for {agent}", action.granularity),
                })
            }
            Op::VerifyReverted => {
                // Another incident may still hold its own revocation of the tool: only ours
                // must be gone.
                let ok = !self.policy.holds(&revocation);
                Step::Checked(Verification {
                    ok,
                    detail: format!(
                        "revocation of {} for {agent} {}; probe of tool {tool} on {server}: {:?}",
                        action.granularity,
                        if ok { "gone" } else { "still in force" },
                        self.policy.decide(agent, &server, &tool)
                    ),
                })
            }
        })
    }

    fn verify_deadline(&self) -> Duration {
        // The policy is in this process: in effect the moment apply returns.
        Duration::from_secs(1)
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

    fn candidates(tool: &str) -> Vec<Candidate> {
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
        let input = PlanInput {
            incident: "inc-1",
            alert: &alert,
            envelope: &envelope,
        };
        ToolsObservation.candidates(&input).expect("candidates")
    }

    #[test]
    fn blast_radius_counts_only_permitted_tools_of_the_agent() {
        let broken = |tool| -> Vec<(ActionKind, usize)> {
            candidates(tool)
                .iter()
                .map(|c| (c.kind, c.blast_radius.broken))
                .collect()
        };
        // The tail entry `rare` is not in-envelope: revoking it breaks nothing.
        assert_eq!(
            broken("rare"),
            [
                (ActionKind::ToolsRevokeTool, 0),
                (ActionKind::ToolsRevokeServer, 2),
                (ActionKind::ToolsRevokeAll, 3)
            ]
        );
        assert_eq!(broken("read")[0], (ActionKind::ToolsRevokeTool, 1));
    }

    #[tokio::test]
    async fn apply_is_idempotent_and_revert_restores() {
        let policy = Arc::new(Policy::default());
        let plane = ToolsPlane::new(policy.clone(), ["s1".to_string()]);
        let action = candidates("rare").remove(0);
        assert!(plane.apply(&action).await.expect("apply").changed);
        assert!(!plane.apply(&action).await.expect("re-apply").changed);
        assert!(plane.verify(&action).await.expect("verify").ok);
        let agent = firebreak_containment::agent::AgentKey("c/n/Deployment/a".into());
        assert_eq!(policy.decide(&agent, "s1", "read"), Decision::Allowed);
        assert!(plane.revert(&action).await.expect("revert").changed);
        assert!(plane.verify_reverted(&action).await.expect("verify").ok);
        assert!(!plane.verify(&action).await.expect("verify").ok);
    }
}
