//! The behavioural envelope: what one agent was observed doing, per dimension, with confidence.
//!
//! One YAML document per agent (`kind: Envelope`), shaped like a Kubernetes custom resource so
//! detection and enforcement can both address it in the cluster.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::agent::{AgentKey, AgentRef};
use crate::error::InputError;

/// Where learning stands, which decides whether Firebreak may act on the envelope by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum EnvelopeStatus {
    /// Still observing: never acted on automatically.
    Learning,
    /// Learned: no new behaviour in the most recent sessions.
    Converged,
    /// Pinned by an operator (or by an open incident).
    Frozen,
}

/// How an entry generalises from what was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Closure {
    /// Exactly the values seen.
    Literal,
    /// A pattern over the values seen (wildcards in the value).
    Structural,
    /// A range or rate over the values seen.
    Distribution,
}

/// Entries need `minCount` occurrences across `minSessions` distinct sessions to be permitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfidenceThreshold {
    pub min_count: u64,
    pub min_sessions: u64,
}

impl Default for ConfidenceThreshold {
    fn default() -> Self {
        Self {
            min_count: 5,
            min_sessions: 3,
        }
    }
}

/// One observed behaviour with its closure rule and confidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Observed<T> {
    #[serde(flatten)]
    pub value: T,
    pub closure: Closure,
    pub count: u64,
    pub sessions: u64,
}

impl<T> Observed<T> {
    pub fn is_confident(&self, threshold: &ConfidenceThreshold) -> bool {
        self.count >= threshold.min_count && self.sessions >= threshold.min_sessions
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct IdentityUse {
    /// A cloud permission in its cloud's notation: `service:Action` (AWS `s3:GetObject`,
    /// Kubernetes `k8s:get`), `service.resource.verb` (GCP `storage.objects.get`) or
    /// `Provider.Namespace/type/action` (Azure `Microsoft.Storage/storageAccounts/read`).
    pub action: String,
    pub resource: String,
}

impl IdentityUse {
    /// The cloud whose notation `action` is written in, or why it is not a cloud permission.
    pub fn check_action(action: &str) -> Result<crate::plane::Cloud, String> {
        crate::plane::Cloud::of_action(action).ok_or_else(|| {
            format!(
                "{action:?} is not a cloud permission: expected service:Action (AWS s3:PutObject, Kubernetes k8s:get), service.resource.verb (GCP storage.objects.get) or Provider.Namespace/type/action (Azure Microsoft.Storage/storageAccounts/read)"
            )
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ToolUse {
    /// The MCP server's name at the Firebreak gateway.
    pub server: String,
    pub tool: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ContextUse {
    pub index: String,
    /// The source (provenance) within the index; absent: the whole index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct DelegationEdge {
    /// The agent delegated to.
    pub to: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mechanism: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct NetworkDestination {
    /// A DNS name or pattern, an address, or a CIDR.
    pub destination: String,
    /// Absent: any port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ProcessUse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syscall: Option<String>,
}

/// Identity: the principals the agent runs as, and the permissions it exercised.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IdentityDimension {
    /// Cloud principals seen acting for this agent, e.g. an IAM role ARN.
    #[serde(default)]
    pub principals: Vec<String>,
    #[serde(default)]
    pub observed: Vec<Observed<IdentityUse>>,
}

/// A dimension that is only a list of observations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObservedList<T> {
    // A path, not `default`: serde would demand `T: Default`. The turbofish lets schemars, which
    // calls the path to document the default, infer the type.
    #[serde(default = "Vec::<Observed<T>>::new")]
    pub observed: Vec<Observed<T>>,
}

impl<T> Default for ObservedList<T> {
    fn default() -> Self {
        Self {
            observed: Vec::new(),
        }
    }
}

/// What one agent was observed doing, per dimension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvelopeSpec {
    pub agent: AgentRef,
    pub version: u64,
    pub status: EnvelopeStatus,
    #[serde(default)]
    pub confidence: ConfidenceThreshold,
    #[serde(default)]
    pub identity: IdentityDimension,
    #[serde(default)]
    pub tools: ObservedList<ToolUse>,
    #[serde(default)]
    pub context: ObservedList<ContextUse>,
    #[serde(default)]
    pub delegation: ObservedList<DelegationEdge>,
    #[serde(default)]
    pub network: ObservedList<NetworkDestination>,
    #[serde(default)]
    pub process: ObservedList<ProcessUse>,
}

/// Kubernetes object metadata. Unlike the rest of the document it accepts fields it does not
/// know and drops them: the API server adds `uid`, `resourceVersion`, `managedFields`, … to an
/// Envelope custom resource, and `kubectl get envelope NAME -o yaml` must import unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

pub const API_VERSION: &str = "firebreak.dev/v1alpha1";

/// An agent's envelope document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Envelope {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: EnvelopeSpec,
}

/// A split of one dimension's entries: permitted ones and the tail (seen, not confident).
pub struct Split<'a, T> {
    pub permitted: Vec<&'a Observed<T>>,
    pub tail: Vec<&'a Observed<T>>,
}

impl Envelope {
    /// Parses one YAML document; errors name the field path.
    pub fn from_yaml(text: &str) -> Result<Envelope, InputError> {
        let envelope: Envelope = InputError::from_yaml(text)?;
        if envelope.kind != "Envelope" {
            return Err(InputError::new(
                "kind",
                format!("expected Envelope, got {:?}", envelope.kind),
            ));
        }
        if envelope.api_version != API_VERSION {
            return Err(InputError::new(
                "apiVersion",
                format!("expected {API_VERSION}, got {:?}", envelope.api_version),
            ));
        }
        envelope
            .spec
            .agent
            .validate()
            .map_err(|e| e.within("spec.agent"))?;
        for (i, entry) in envelope.spec.identity.observed.iter().enumerate() {
            IdentityUse::check_action(&entry.value.action).map_err(|reason| {
                InputError::new(format!("spec.identity.observed[{i}].action"), reason)
            })?;
        }
        Ok(envelope)
    }

    pub fn agent_key(&self) -> AgentKey {
        self.spec.agent.key()
    }

    pub fn identity(&self) -> Split<'_, IdentityUse> {
        split(&self.spec.identity.observed, &self.spec.confidence)
    }

    pub fn tools(&self) -> Split<'_, ToolUse> {
        split(&self.spec.tools.observed, &self.spec.confidence)
    }

    pub fn context(&self) -> Split<'_, ContextUse> {
        split(&self.spec.context.observed, &self.spec.confidence)
    }
}

fn split<'a, T>(entries: &'a [Observed<T>], threshold: &ConfidenceThreshold) -> Split<'a, T> {
    let (permitted, tail) = entries.iter().partition(|e| e.is_confident(threshold));
    Split { permitted, tail }
}

#[derive(Debug, thiserror::Error)]
pub enum EnvelopeLoadError {
    #[error("cannot read envelope directory {path}: {source}; create it or set `envelopes:` in the config")]
    Directory {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {error}")]
    Invalid { path: PathBuf, error: InputError },
    #[error("{path} and {other} both describe agent {agent}; keep one envelope per agent")]
    Duplicate {
        path: PathBuf,
        other: PathBuf,
        agent: AgentKey,
    },
}

/// Every loaded envelope, indexed by agent key: the planner's in-memory view.
#[derive(Debug, Default, Clone)]
pub struct EnvelopeStore {
    by_agent: HashMap<AgentKey, (Envelope, PathBuf)>,
}

impl EnvelopeStore {
    /// Loads every `*.yaml` / `*.yml` in `dir`. A missing directory is an empty store.
    pub fn load_dir(dir: &Path) -> Result<EnvelopeStore, EnvelopeLoadError> {
        let mut store = EnvelopeStore::default();
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(store),
            Err(source) => {
                return Err(EnvelopeLoadError::Directory {
                    path: dir.to_path_buf(),
                    source,
                })
            }
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
            .collect();
        paths.sort();
        for path in paths {
            let text =
                std::fs::read_to_string(&path).map_err(|source| EnvelopeLoadError::File {
                    path: path.clone(),
                    source,
                })?;
            let envelope =
                Envelope::from_yaml(&text).map_err(|error| EnvelopeLoadError::Invalid {
                    path: path.clone(),
                    error,
                })?;
            store.insert(envelope, path)?;
        }
        Ok(store)
    }

    pub fn insert(&mut self, envelope: Envelope, path: PathBuf) -> Result<(), EnvelopeLoadError> {
        let key = envelope.agent_key();
        if let Some((_, other)) = self.by_agent.get(&key) {
            return Err(EnvelopeLoadError::Duplicate {
                path,
                other: other.clone(),
                agent: key,
            });
        }
        self.by_agent.insert(key, (envelope, path));
        Ok(())
    }

    pub fn get(&self, agent: &AgentKey) -> Option<&Envelope> {
        self.by_agent.get(agent).map(|(e, _)| e)
    }

    pub fn len(&self) -> usize {
        self.by_agent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_agent.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Envelope> {
        self.by_agent.values().map(|(e, _)| e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../config/examples/aws/envelope.yaml");

    #[test]
    fn example_envelope_loads_with_tail_separated() {
        let e = Envelope::from_yaml(EXAMPLE).expect("example is valid");
        let split = e.identity();
        assert!(!split.permitted.is_empty());
        assert!(
            split
                .tail
                .iter()
                .all(|t| !t.is_confident(&e.spec.confidence)),
            "tail entries must be below the threshold"
        );
        assert!(!split.tail.is_empty(), "the example shows a tail entry");
    }

    #[test]
    fn permissions_of_every_cloud_are_accepted_and_prose_is_not() {
        for action in [
            "s3:PutObject",
            "iam:*",
            "k8s:get",
            "storage.objects.get",
            "resourcemanager.projects.setIamPolicy",
            "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read",
            "Microsoft.Authorization/*/read",
        ] {
            assert!(IdentityUse::check_action(action).is_ok(), "{action}");
        }
        for action in [
            "",
            "PutObject",
            "s3 PutObject",
            "storage.objects",
            ":x",
            "Microsoft/x",
            "a b.c.d",
        ] {
            let reason = IdentityUse::check_action(action).expect_err(action);
            assert!(reason.contains("GCP storage.objects.get"), "{reason}");
        }
        let bad = EXAMPLE.replacen("action: s3:", "action: s3 ", 1);
        let err = Envelope::from_yaml(&bad).expect_err("prose is no permission");
        assert_eq!(err.field, "spec.identity.observed[0].action");
    }

    #[test]
    fn a_custom_resource_as_kubectl_prints_it_loads_and_spec_typos_still_fail() {
        let printed = EXAMPLE.replacen(
            "metadata:\n",
            "metadata:\n  uid: 6f1c2a9e-0000-4000-8000-000000000001\n  resourceVersion: \"48213\"\n  generation: 3\n  creationTimestamp: \"2026-12-01T02:47:00Z\"\n  labels: {app: payment-agent}\n  managedFields: [{manager: kubectl, operation: Apply}]\n",
            1,
        );
        assert_ne!(printed, EXAMPLE, "the example has a metadata block");
        let cr = Envelope::from_yaml(&printed).expect("kubectl's output loads");
        assert_eq!(cr, Envelope::from_yaml(EXAMPLE).expect("example"));
        let typo = printed.replacen("  status: converged", "  status: converged\n  stauts: x", 1);
        let err = Envelope::from_yaml(&typo).expect_err("a spec typo");
        assert!(err.to_string().contains("stauts"), "{err}");
    }

    #[test]
    fn wrong_status_names_the_field() {
        let bad = EXAMPLE.replace("status: converged", "status: sleeping");
        let err = Envelope::from_yaml(&bad).expect_err("invalid status");
        assert_eq!(err.field, "spec.status");
        assert!(err.reason.contains("sleeping"), "{err}");
    }

    #[test]
    fn wrong_kind_is_refused() {
        let bad = EXAMPLE.replace("kind: Envelope", "kind: Runbook");
        let err = Envelope::from_yaml(&bad).expect_err("wrong kind");
        assert_eq!(err.field, "kind");
    }

    #[test]
    fn directory_load_refuses_two_envelopes_for_one_agent() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a.yaml"), EXAMPLE).expect("write");
        std::fs::write(dir.path().join("b.yaml"), EXAMPLE).expect("write");
        let err = EnvelopeStore::load_dir(dir.path()).expect_err("duplicate");
        assert!(matches!(err, EnvelopeLoadError::Duplicate { .. }), "{err}");
    }

    #[test]
    fn directory_load_names_the_file_of_a_bad_envelope() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("bad.yaml"), "kind: Envelope\n").expect("write");
        let err = EnvelopeStore::load_dir(dir.path()).expect_err("bad");
        assert!(err.to_string().contains("bad.yaml"), "{err}");
    }
}
