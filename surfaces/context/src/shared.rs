//! What the two context planes (pgvector and Milvus) share: reading the breached index off an
//! alert, folding read-back problems into a verification, and the unit tests' planning
//! scaffold.

use firebreak_containment::alert::Parameter;
use firebreak_containment::plane::{PlanInput, Verification};

/// The `{index, source}` a context alert names; `None` for any other parameter.
pub(crate) fn breached<'a>(input: &'a PlanInput<'_>) -> Option<(&'a str, Option<&'a str>)> {
    match &input.alert.parameter {
        Parameter::Context { index, source } => Some((index, source.as_deref())),
        _ => None,
    }
}

/// `ok` with `detail` when the read-back found no problem, else the problems.
pub(crate) fn verdict(problems: Vec<String>, detail: String) -> Verification {
    if problems.is_empty() {
        Verification::ok(detail)
    } else {
        Verification::failed(problems.join("; "))
    }
}

/// Plans one context alert of agent-a against an observation, for the unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use firebreak_containment::alert::Alert;
    use firebreak_containment::envelope::Envelope;
    use firebreak_containment::plane::{Observation, PlanInput, Proposal};

    /// A critical context alert about Deployment `agent` in prod/rag retrieving from `index`
    /// (and `source`).
    pub(crate) fn alert(agent: &str, index: &str, source: Option<&str>) -> Alert {
        let mut parameter = serde_json::json!({"index": index});
        if let Some(s) = source {
            parameter["source"] = s.into();
        }
        let body = serde_json::json!({
            "id": "a", "source": "t", "time": "2026-11-22T02:47:00Z",
            "agent": {"cluster": "prod", "namespace": "rag", "workload": format!("Deployment/{agent}"), "serviceAccount": agent},
            "dimension": "context", "parameter": parameter,
            "tier": "attack-attempt", "severity": "critical", "evidence": {}
        });
        Alert::from_json(body.to_string().as_bytes()).expect("alert")
    }

    /// Agent-a's converged envelope; `observed` is its `spec.context.observed` list, one YAML
    /// flow map a line.
    pub(crate) fn envelope(observed: &[&str]) -> Envelope {
        Envelope::from_yaml(&format!(
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
        .expect("envelope")
    }

    pub(crate) fn plan<S>(
        observation: &impl Observation<S>,
        observed: &[&str],
        index: &str,
        source: Option<&str>,
    ) -> Vec<Proposal<S>> {
        let envelope = envelope(observed);
        let alert = alert("agent-a", index, source);
        let input = PlanInput {
            incident: &"inc-1".into(),
            plan: &"inc-1-p1".into(),
            alert: &alert,
            envelope: &envelope,
        };
        observation.candidates(&input).expect("candidates")
    }
}
