//! [`Mirrored`]: a control plane decorator that also records the tools and network planes'
//! containments in the feed, so shims and sidecars reading only the feed see them too.

use std::time::Duration;

use async_trait::async_trait;
use firebreak_containment::action::{ActionKind, Surface};
use firebreak_containment::agent::AgentKey;
use firebreak_containment::plan::Candidate;
use firebreak_containment::surface::{
    ControlPlane, Observation, Op, Outcome, PlanInput, Step, SurfaceError, Verification,
};
use serde::Deserialize;

use crate::feed::{Feed, Rule};

const PLANE: &str = "feed mirror";

/// Wraps `inner`; applying or reverting `tools.revoke_*` or `network.block_egress` also
/// writes the feed, and verification also reads it. Other kinds pass through untouched.
pub struct Mirrored<P> {
    inner: P,
    feed: Feed,
}

impl<P: ControlPlane> Mirrored<P> {
    pub fn new(inner: P, feed: Feed) -> Self {
        Self { inner, feed }
    }
}

/// `spec.revocation` of the tools plane (surfaces/tools `Revocation`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolsRevocation {
    agent: AgentKey,
    scope: String,
    server: Option<String>,
    tool: Option<String>,
    incident: String,
}

/// The network plane's spec.
#[derive(Deserialize)]
struct NetworkBlock {
    agent: AgentKey,
    destination: String,
    port: Option<u16>,
    incident: Option<String>,
}

/// One feed hold: rule on the agent's document, held by the incident.
struct Mirror {
    agent: AgentKey,
    rule: Rule,
    holder: String,
}

fn invalid(action: &Candidate, detail: String) -> SurfaceError {
    SurfaceError::Invalid {
        plane: PLANE,
        detail: format!("{}: {detail}", action.kind),
    }
}

/// The feed hold an action implies, read before anything is written so a bad spec changes
/// nothing anywhere.
fn mirror_of(action: &Candidate) -> Result<Option<Mirror>, SurfaceError> {
    match action.kind {
        ActionKind::ToolsRevokeTool
        | ActionKind::ToolsRevokeServer
        | ActionKind::ToolsRevokeAll => {
            let r: ToolsRevocation = serde_json::from_value(action.spec["revocation"].clone())
                .map_err(|e| {
                    invalid(
                        action,
                        format!("spec.revocation is not {{agent, scope, server?, tool?, incident}}: {e}"),
                    )
                })?;
            let every = || "*".to_string();
            let (server, tool) = match (r.scope.as_str(), r.server, r.tool) {
                ("tool", Some(server), Some(tool)) => (server, tool),
                ("server", Some(server), _) => (server, every()),
                ("all", _, _) => (every(), every()),
                (scope, _, _) => {
                    return Err(invalid(
                        action,
                        format!("spec.revocation scope {scope:?} lacks the server/tool it names (tool needs both, server needs server)"),
                    ))
                }
            };
            Ok(Some(Mirror {
                agent: r.agent,
                rule: Rule::RevokedTool { server, tool },
                holder: r.incident,
            }))
        }
        ActionKind::NetworkBlockEgress => {
            let b: NetworkBlock = serde_json::from_value(action.spec.clone()).map_err(|e| {
                invalid(
                    action,
                    format!("spec is not {{agent, destination, port: number|null}}: {e}"),
                )
            })?;
            Ok(Some(Mirror {
                agent: b.agent,
                rule: Rule::BlockedDestination {
                    destination: b.destination,
                    port: b.port,
                },
                // Without an incident every block of this destination is one hold.
                holder: b
                    .incident
                    .unwrap_or_else(|| ActionKind::NetworkBlockEgress.as_str().to_string()),
            }))
        }
        _ => Ok(None),
    }
}

#[async_trait]
impl<P: ControlPlane> ControlPlane for Mirrored<P> {
    fn surface(&self) -> Surface {
        self.inner.surface()
    }

    fn handles(&self, input: &PlanInput<'_>) -> bool {
        self.inner.handles(input)
    }

    async fn observe(&self, input: &PlanInput<'_>) -> Result<Box<dyn Observation>, SurfaceError> {
        self.inner.observe(input).await
    }

    async fn run(&self, action: &Candidate, op: Op) -> Result<Step, SurfaceError> {
        let mirror = mirror_of(action)?;
        let step = self.inner.run(action, op).await?;
        let Some(Mirror {
            agent,
            rule,
            holder,
        }) = mirror
        else {
            return Ok(step);
        };
        let held = || self.feed.holds(&agent, &rule, &holder);
        Ok(match (op, step) {
            (Op::Apply, Step::Changed(o)) => {
                let fed = self.feed.set(&agent, &rule, &holder);
                Step::Changed(Outcome {
                    changed: o.changed || fed,
                    detail: format!("{}; recorded in the feed", o.detail),
                })
            }
            (Op::Revert, Step::Changed(o)) => {
                let fed = self.feed.clear(&agent, &rule, &holder);
                Step::Changed(Outcome {
                    changed: o.changed || fed,
                    detail: format!("{}; released in the feed", o.detail),
                })
            }
            (Op::Verify, Step::Checked(v)) => {
                let fed = held();
                Step::Checked(Verification {
                    ok: v.ok && fed,
                    detail: format!(
                        "{}; feed {}",
                        v.detail,
                        if fed { "holds it" } else { "lacks it" }
                    ),
                })
            }
            (Op::VerifyReverted, Step::Checked(v)) => {
                let gone = !held();
                Step::Checked(Verification {
                    ok: v.ok && gone,
                    detail: format!(
                        "{}; feed {}",
                        v.detail,
                        if gone {
                            "released it"
                        } else {
                            "still holds it"
                        }
                    ),
                })
            }
            // The inner plane answered the wrong kind of step: the caller reports that bug.
            (_, step) => step,
        })
    }

    fn verify_deadline(&self) -> Duration {
        self.inner.verify_deadline()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use firebreak_containment::{Alert, Envelope};
    use firebreak_tools::{Policy, ToolsPlane};
    use serde_json::json;

    use super::*;

    fn input_for(parameter: serde_json::Value, dimension: &str) -> (Alert, Envelope) {
        let alert = Alert::from_json(
            json!({"id": "x", "source": "t", "time": "2026-11-22T05:00:00Z",
                "agent": {"cluster": "c", "namespace": "n", "workload": "Deployment/a", "serviceAccount": "a"},
                "dimension": dimension, "parameter": parameter,
                "tier": "attack-attempt", "severity": "critical"})
            .to_string()
            .as_bytes(),
        )
        .expect("alert");
        let envelope = Envelope::from_yaml(
            "apiVersion: firebreak.dev/v1alpha1\nkind: Envelope\nmetadata: {name: a}\nspec:\n  \
             agent: {cluster: c, namespace: n, workload: Deployment/a, serviceAccount: a}\n  \
             version: 1\n  status: converged\n",
        )
        .expect("envelope");
        (alert, envelope)
    }

    async fn candidates<P: ControlPlane>(
        plane: &P,
        alert: &Alert,
        envelope: &Envelope,
    ) -> Vec<Candidate> {
        let input = PlanInput {
            incident: "inc-1",
            alert,
            envelope,
        };
        plane
            .observe(&input)
            .await
            .expect("observe")
            .candidates(&input)
            .expect("candidates")
    }

    #[tokio::test]
    async fn the_real_tools_plane_is_mirrored_per_rung_and_released_on_revert() {
        let feed = Feed::default();
        let plane = Mirrored::new(
            ToolsPlane::new(Arc::new(Policy::default()), ["s1".to_string()]),
            feed.clone(),
        );
        let (alert, envelope) = input_for(json!({"server": "s1", "tool": "export"}), "tools");
        let agent = alert.agent.key();
        let rungs = candidates(&plane, &alert, &envelope).await;
        for (action, (server, tool)) in
            rungs
                .iter()
                .zip([("s1", "export"), ("s1", "*"), ("*", "*")])
        {
            assert!(plane.apply(action).await.expect("apply").changed);
            assert!(!plane.apply(action).await.expect("re-apply").changed);
            assert!(plane.verify(action).await.expect("verify").ok);
            let doc = feed.document(&agent).expect("document");
            assert_eq!(
                (
                    doc.revoked_tools[0].server.as_str(),
                    doc.revoked_tools[0].tool.as_str()
                ),
                (server, tool),
                "{}",
                action.kind
            );
            assert!(plane.revert(action).await.expect("revert").changed);
            assert!(plane.verify_reverted(action).await.expect("verify").ok);
            assert!(feed
                .document(&agent)
                .expect("document")
                .revoked_tools
                .is_empty());
        }
    }

    /// Stands in for the eBPF plane, which is not in this workspace yet: only its spec matters.
    struct Egress;

    #[async_trait]
    impl ControlPlane for Egress {
        fn surface(&self) -> Surface {
            Surface::Network
        }
        fn handles(&self, _: &PlanInput<'_>) -> bool {
            true
        }
        async fn observe(&self, _: &PlanInput<'_>) -> Result<Box<dyn Observation>, SurfaceError> {
            unreachable!("not planned here")
        }
        async fn run(&self, _: &Candidate, op: Op) -> Result<Step, SurfaceError> {
            Ok(match op {
                Op::Apply | Op::Revert => Step::unchanged("map entry as asked".into()),
                Op::Verify | Op::VerifyReverted => Step::ok("probe connect as expected".into()),
            })
        }
        fn verify_deadline(&self) -> Duration {
            Duration::from_secs(1)
        }
    }

    fn egress_action(spec: serde_json::Value) -> Candidate {
        Candidate {
            kind: ActionKind::NetworkBlockEgress,
            target: "cgroup".into(),
            granularity: "one destination".into(),
            blast_radius: Default::default(),
            blocks: true,
            inverse: String::new(),
            verify: String::new(),
            enforcement: firebreak_containment::plan::Enforcement::Immediate,
            rejected: None,
            notes: vec![],
            spec,
        }
    }

    #[tokio::test]
    async fn block_egress_is_recorded_with_its_port_and_a_bad_spec_writes_nothing() {
        let feed = Feed::default();
        let plane = Mirrored::new(Egress, feed.clone());
        let agent = AgentKey("c/n/Deployment/a".into());
        let action = egress_action(
            json!({"agent": agent, "destination": "203.0.113.7", "port": 443, "incident": "inc-9"}),
        );
        assert!(
            plane.apply(&action).await.expect("apply").changed,
            "the feed changed"
        );
        assert!(plane.verify(&action).await.expect("verify").ok);
        let doc = feed.document(&agent).expect("document");
        assert_eq!(doc.blocked_destinations[0].port, Some(443));
        assert!(plane.revert(&action).await.expect("revert").changed);
        assert!(plane.verify_reverted(&action).await.expect("verify").ok);

        let version = feed.version();
        let bad =
            egress_action(json!({"agent": agent, "destination": "203.0.113.7", "port": "https"}));
        let err = plane.apply(&bad).await.expect_err("refused");
        assert!(err.to_string().contains("port: number|null"), "{err}");
        assert_eq!(feed.version(), version, "nothing written");
    }
}
