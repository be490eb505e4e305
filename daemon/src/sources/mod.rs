//! Alert sources (docs/ARCHITECTURE.md §Data path): Kubescape runtime alerts, Falco and
//! Falcosidekick events, CloudEvents. Each format is mapped to the native [`Alert`] by a pure
//! function; [`ingest`] then hands every alert to the same engine path as `POST /v1/alerts`.

pub mod cloudevents;
pub mod falco;
mod k8s_audit;
pub mod kubescape;
pub mod nats;

use chrono::{DateTime, Utc};
use firebreak_containment::alert::{Dimension, Parameter, Severity, Tier};
use firebreak_containment::engine::{Engine, EngineError, Request};
use firebreak_containment::{AgentRef, Alert, EnvelopeStore, InputError};
use prometheus::IntCounterVec;
use serde::Serialize;

/// What a source needs besides the bytes: the cluster to assume and the loaded envelopes (they
/// name the ServiceAccount when the alert does not).
pub struct Context<'a> {
    pub cluster: &'a str,
    pub envelopes: &'a EnvelopeStore,
}

/// One item of a source's body, mapped.
#[derive(Debug)]
pub enum Mapped {
    /// A deviation, ready for the engine.
    Alert(Box<Alert>),
    /// Not a deviation but worth knowing (Kubescape's `AlertLimitReached`): counted and logged.
    Signal { id: String, name: String },
    /// A valid alert naming nothing Firebreak can put in a parameter: escalated (logged and
    /// counted), never dropped silently and never blamed on the sender as bad input.
    Unmappable { id: String, reason: String },
}

/// One item that could not be mapped: its id when known, and which field is wrong.
#[derive(Debug)]
pub struct Rejected {
    pub id: Option<String>,
    pub error: InputError,
}

pub type Item = Result<Mapped, Rejected>;

/// Shared per-daemon state of the source endpoints.
#[derive(Clone)]
pub struct Sources {
    pub cluster: String,
    items: IntCounterVec,
}

impl Sources {
    /// Registers `firebreak_source_alerts_total{source, outcome}` beside the engine's metrics.
    pub fn new(
        config: &crate::config::SourcesSection,
        metrics: &firebreak_containment::metrics::Metrics,
    ) -> Result<Sources, prometheus::Error> {
        let items = IntCounterVec::new(
            prometheus::Opts::new(
                "source_alerts_total",
                "Items received on the source endpoints, by source and outcome (accepted, deduplicated, escalated, rejected, signal).",
            ),
            &["source", "outcome"],
        )?;
        metrics.registry.register(Box::new(items.clone()))?;
        Ok(Sources {
            cluster: config.cluster.clone(),
            items,
        })
    }

    /// Counts one item of `source` with its outcome.
    pub fn count(&self, source: &str, outcome: Outcome) {
        self.items
            .with_label_values(&[source, outcome.as_str()])
            .inc();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Accepted,
    Deduplicated,
    Escalated,
    Rejected,
    Signal,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Deduplicated => "deduplicated",
            Outcome::Escalated => "escalated",
            Outcome::Rejected => "rejected",
            Outcome::Signal => "signal",
        }
    }
}

/// The answer for one item.
#[derive(Debug, Serialize)]
pub struct ItemResult {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incident: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Submits every mapped alert like `POST /v1/alerts` does. Only a journal failure stops the
/// batch (nothing may act without a durable record); the sender's retry is deduplicated.
pub async fn ingest(
    engine: &Engine,
    sources: &Sources,
    source: &str,
    items: Vec<Item>,
) -> Result<Vec<ItemResult>, EngineError> {
    let mut results = Vec::with_capacity(items.len());
    for item in items {
        let result = match item {
            Err(Rejected { id, error }) => {
                tracing::warn!(source, id = ?id, field = %error.field, reason = %error.reason, "source alert rejected");
                ItemResult {
                    id,
                    outcome: Outcome::Rejected,
                    incident: None,
                    field: Some(error.field),
                    reason: Some(error.reason),
                }
            }
            Ok(Mapped::Signal { id, name }) => {
                tracing::warn!(source, id = %id, signal = %name, "source signal: the sender is dropping alerts");
                ItemResult {
                    id: Some(id),
                    outcome: Outcome::Signal,
                    incident: None,
                    field: None,
                    reason: Some(name),
                }
            }
            Ok(Mapped::Unmappable { id, reason }) => {
                tracing::warn!(source, id = %id, reason = %reason, "source alert escalated: unmappable");
                ItemResult {
                    id: Some(id),
                    outcome: Outcome::Escalated,
                    incident: None,
                    field: None,
                    reason: Some(reason),
                }
            }
            Ok(Mapped::Alert(alert)) => {
                let id = alert.id.clone();
                match engine.submit(*alert, Request::Runbook).await {
                    Ok(s) => {
                        let escalation = s.plan.and_then(|p| p.escalation);
                        ItemResult {
                            id: Some(id),
                            outcome: if s.deduplicated {
                                Outcome::Deduplicated
                            } else if escalation.is_some() {
                                Outcome::Escalated
                            } else {
                                Outcome::Accepted
                            },
                            reason: escalation.filter(|_| !s.deduplicated),
                            incident: Some(s.incident.to_string()),
                            field: None,
                        }
                    }
                    // No envelope: nothing can be planned, a human must look (docs/ARCHITECTURE.md §Guard, safety rule 2).
                    Err(e @ EngineError::UnknownAgent { .. }) => {
                        tracing::warn!(source, id = %id, reason = %e, "source alert escalated");
                        ItemResult {
                            id: Some(id),
                            outcome: Outcome::Escalated,
                            incident: None,
                            field: Some("agent".into()),
                            reason: Some(e.to_string()),
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        sources.count(source, result.outcome);
        results.push(result);
    }
    Ok(results)
}

/// A native alert under construction, remembering which source field each native field came
/// from so that validation errors name the field the sender wrote.
pub(crate) struct Draft {
    pub id: String,
    pub source: &'static str,
    pub time: DateTime<Utc>,
    pub agent: AgentRef,
    pub dimension: Dimension,
    pub parameter: serde_json::Value,
    pub severity: Severity,
    pub evidence: serde_json::Value,
    /// (native field, source field path) pairs, e.g. ("agent.namespace", "output_fields.k8s.ns.name").
    pub origins: Vec<(&'static str, String)>,
}

/// Every native parameter field maps back to the one source field the parameter came from.
pub fn parameter_origins(origin: String) -> [(&'static str, String); 5] {
    [
        ("parameter", origin.clone()),
        ("parameter.destination", origin.clone()),
        ("parameter.exec", origin.clone()),
        ("parameter.path", origin.clone()),
        ("parameter.syscall", origin),
    ]
}

impl Draft {
    pub fn finish(self) -> Result<Alert, InputError> {
        let origin = |e: InputError| -> InputError {
            match self.origins.iter().find(|(native, _)| *native == e.field) {
                Some((_, path)) => InputError::new(path.clone(), e.reason),
                None => e,
            }
        };
        if self.id.trim().is_empty() || self.id.len() > 128 {
            return Err(origin(InputError::new("id", "must be 1 to 128 characters")));
        }
        self.agent
            .validate()
            .map_err(|e| origin(e.within("agent")))?;
        let parameter = Parameter::parse(self.dimension, &self.parameter).map_err(&origin)?;
        Ok(Alert {
            id: self.id,
            source: self.source.to_string(),
            time: self.time,
            agent: self.agent,
            parameter,
            // Sources report what deviated, not intent: a human (or a runbook rule on
            // `anomaly`) decides; only native alerts can claim `attack-attempt`.
            tier: Tier::Anomaly,
            severity: self.severity,
            evidence: self.evidence,
        })
    }
}

/// The ServiceAccount for an agent the alert does not name it for: the loaded envelope's.
pub(crate) fn service_account(
    context: &Context<'_>,
    cluster: &str,
    namespace: &str,
    workload: &str,
    field: &str,
) -> Result<String, InputError> {
    let probe = AgentRef {
        cluster: cluster.to_string(),
        namespace: namespace.to_string(),
        workload: workload.to_string(),
        service_account: String::new(),
    };
    context
        .envelopes
        .get(&probe.key())
        .map(|e| e.spec.agent.service_account.clone())
        .ok_or_else(|| {
            InputError::new(
                field,
                format!(
                    "absent, and no envelope is loaded for {} to take it from",
                    probe.key()
                ),
            )
        })
}

/// Deserializes `T` from an already parsed value; errors name the field path under `parent`.
pub(crate) fn from_value<T: serde::de::DeserializeOwned>(
    value: &serde_json::Value,
    parent: &str,
) -> Result<T, InputError> {
    serde_path_to_error::deserialize(value)
        .map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." { String::new() } else { path };
            // The same wording as `InputError::from_json`.
            let reason = e
                .into_inner()
                .to_string()
                .replace("invalid type: ", "wrong type: ")
                .replace("unknown variant", "unknown value");
            InputError::new(field, reason)
        })
        .map_err(|e| {
            if parent.is_empty() {
                e
            } else {
                e.within(parent)
            }
        })
}

#[cfg(test)]
pub(crate) mod testing {
    use firebreak_containment::envelope::Envelope;
    use firebreak_containment::EnvelopeStore;
    use proptest::prelude::*;
    use serde_json::Value;

    /// Arbitrary JSON, with keys drawn mostly from the names the sources read so that the
    /// property tests reach the mapping code, not only the first type check.
    pub fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            "[a-zA-Z0-9/.:-]{0,12}".prop_map(Value::from),
        ];
        let key = prop_oneof![
            prop::sample::select(vec![
                "kind",
                "apiVersion",
                "spec",
                "alerts",
                "ruleID",
                "uniqueID",
                "alertName",
                "arguments",
                "domain",
                "exec",
                "path",
                "syscall",
                "workloadName",
                "workloadKind",
                "workloadNamespace",
                "clusterName",
                "infectedPID",
                "processTree",
                "childrenMap",
                "pid",
                "rule",
                "Rule",
                "time",
                "priority",
                "output_fields",
                "k8s.ns.name",
                "k8s.pod.name",
                "ka.user.name",
                "ka.target.resource",
                "ka.verb",
                "proc.cmdline",
                "fd.name",
                "evt.type",
                "evt.time",
                "specversion",
                "type",
                "source",
                "id",
                "data",
            ])
            .prop_map(str::to_string),
            "[a-z.]{1,8}",
        ];
        leaf.prop_recursive(4, 64, 8, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(key.clone(), inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// A store with one envelope for `cluster/namespace/Kind/name` running as `sa`.
    pub fn store(cluster: &str, namespace: &str, workload: &str, sa: &str) -> EnvelopeStore {
        let yaml = format!(
            "apiVersion: firebreak.dev/v1alpha1\nkind: Envelope\nmetadata: {{name: t}}\nspec:\n  agent: {{cluster: {cluster}, namespace: {namespace}, workload: {workload}, serviceAccount: {sa}}}\n  version: 1\n  status: converged\n"
        );
        let mut store = EnvelopeStore::default();
        store
            .insert(
                Envelope::from_yaml(&yaml).expect("test envelope"),
                "t.yaml".into(),
            )
            .expect("one envelope");
        store
    }
}
