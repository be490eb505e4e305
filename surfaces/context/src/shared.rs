//! What the two context planes (pgvector and Milvus) share: the `ControlPlane` glue, the
//! encoding of a rung's spec, and the unit tests' planning scaffold.

use firebreak_containment::surface::SurfaceError;
use serde::Serialize;

/// Implements `ControlPlane` for a context plane type. The type needs `config.roles` (agent key
/// to store role), `config.verify_deadline`, `observe_state` returning an `Observation` and
/// `dispatch`, both failing with `ContextError`. A macro because the trait is foreign and the
/// two planes have no common type to hang a generic impl on.
macro_rules! context_control_plane {
    ($plane:ty) => {
        #[::async_trait::async_trait]
        impl ::firebreak_containment::surface::ControlPlane for $plane {
            fn surface(&self) -> ::firebreak_containment::action::Surface {
                ::firebreak_containment::action::Surface::Context
            }

            fn handles(&self, input: &::firebreak_containment::surface::PlanInput<'_>) -> bool {
                input.alert.dimension == ::firebreak_containment::alert::Dimension::Context
                    && self
                        .config
                        .roles
                        .contains_key(&input.alert.agent.key().to_string())
            }

            async fn observe(
                &self,
                input: &::firebreak_containment::surface::PlanInput<'_>,
            ) -> Result<
                Box<dyn ::firebreak_containment::surface::Observation>,
                ::firebreak_containment::surface::SurfaceError,
            > {
                Ok(Box::new(self.observe_state(input).await?))
            }

            async fn run(
                &self,
                action: &::firebreak_containment::plan::Candidate,
                op: ::firebreak_containment::surface::Op,
            ) -> Result<
                ::firebreak_containment::surface::Step,
                ::firebreak_containment::surface::SurfaceError,
            > {
                Ok(self.dispatch(action, op).await?)
            }

            fn verify_deadline(&self) -> ::std::time::Duration {
                self.config.verify_deadline
            }
        }
    };
}
pub(crate) use context_control_plane;

/// A rung's spec as the JSON its candidate carries to `run`.
pub(crate) fn spec_value(
    plane: &'static str,
    spec: &impl Serialize,
) -> Result<serde_json::Value, SurfaceError> {
    serde_json::to_value(spec).map_err(|e| SurfaceError::Invalid {
        plane,
        detail: format!("cannot encode the action spec: {e}"),
    })
}

/// Plans one context alert of agent-a against an observation, for the ladders' unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use firebreak_containment::alert::Alert;
    use firebreak_containment::envelope::Envelope;
    use firebreak_containment::plan::Candidate;
    use firebreak_containment::surface::{Observation, PlanInput};

    /// `observed` is the envelope's `spec.context.observed` list, one YAML flow map a line.
    pub(crate) fn plan(
        observation: &impl Observation,
        observed: &[&str],
        index: &str,
        source: Option<&str>,
    ) -> Vec<Candidate> {
        let envelope = Envelope::from_yaml(&format!(
            r#"apiVersion: firebreak.dev/v1alpha1
kind: Envelope
metadata: {{name: agent-a, namespace: rag}}
spec:
  agent: {{cluster: prod, namespace: rag, workload: Deployment/agent-a, serviceAccount: agent-a}}
  version: 1
  status: converged
  context:
    observed:
{}
"#,
            observed
                .iter()
                .map(|o| format!("      - {o}"))
                .collect::<Vec<_>>()
                .join("\n")
        ))
        .expect("envelope");
        let mut parameter = serde_json::json!({"index": index});
        if let Some(s) = source {
            parameter["source"] = s.into();
        }
        let body = serde_json::json!({
            "id": "a", "source": "t", "time": "2026-11-22T02:47:00Z",
            "agent": {"cluster": "prod", "namespace": "rag", "workload": "Deployment/agent-a", "serviceAccount": "agent-a"},
            "dimension": "context", "parameter": parameter,
            "tier": "attack-attempt", "severity": "critical", "evidence": {}
        });
        let alert = Alert::from_json(body.to_string().as_bytes()).expect("alert");
        let input = PlanInput {
            incident: "inc-1",
            alert: &alert,
            envelope: &envelope,
        };
        observation.candidates(&input).expect("candidates")
    }
}
