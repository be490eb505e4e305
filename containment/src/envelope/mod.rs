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

// In the document the value's fields sit beside `closure`, `count` and `sessions`. Serialising
// flattens the value; deserialising goes through the dimension's entry type
// (`ObservedValue::Entry`), which spells every field out and refuses any other: `flatten` cannot
// be combined with `deny_unknown_fields`, and a typo (`sorce:`) would otherwise widen the entry
// (there: to the whole index) without a word. (A `//` comment: doc comments become the CRD's
// descriptions.)
/// One observed behaviour with its closure rule and confidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Observed<T> {
    #[serde(flatten)]
    pub value: T,
    pub closure: Closure,
    pub count: u64,
    pub sessions: u64,
}

impl<'de, T> Deserialize<'de> for Observed<T>
where
    T: ObservedValue,
    T::Entry: Deserialize<'de>,
{
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::Entry::deserialize(deserializer).map(Into::into)
    }
}

/// A dimension's value type, and the shape one of its entries has in the document.
pub trait ObservedValue: Sized {
    /// The value's fields, then `closure`, `count`, `sessions`; an unknown field is refused, and
    /// the error names its path (`spec.context.observed[0].sorce`) and the fields the entry takes.
    type Entry: Into<Observed<Self>>;
}

impl<T> Observed<T> {
    pub fn is_confident(&self, threshold: &ConfidenceThreshold) -> bool {
        self.count >= threshold.min_count && self.sessions >= threshold.min_sessions
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
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
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ToolUse {
    /// The MCP server's name at the Firebreak gateway.
    pub server: String,
    pub tool: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContextUse {
    pub index: String,
    /// The source (provenance) within the index; absent: the whole index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DelegationEdge {
    /// The agent delegated to.
    pub to: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mechanism: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkDestination {
    /// A DNS name or pattern, an address, or a CIDR.
    pub destination: String,
    /// Absent: any port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProcessUse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syscall: Option<String>,
}

/// The document shape of each dimension's entries: [`ObservedValue::Entry`].
///
/// Each struct repeats its value type's fields (the conversion below fails to compile if the
/// two drift apart) and adds the confidence fields, with `deny_unknown_fields`.
mod entry {
    use serde::Deserialize;

    use super::{
        Closure, ContextUse, DelegationEdge, IdentityUse, NetworkDestination, Observed,
        ObservedValue, ProcessUse, ToolUse,
    };

    macro_rules! observed_from {
        ($entry:ident => $value:ident { $($field:ident),* }) => {
            impl From<$entry> for Observed<$value> {
                fn from(e: $entry) -> Self {
                    Observed {
                        value: $value { $($field: e.$field),* },
                        closure: e.closure,
                        count: e.count,
                        sessions: e.sessions,
                    }
                }
            }

            impl ObservedValue for $value {
                type Entry = $entry;
            }
        };
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub struct Identity {
        action: String,
        resource: String,
        closure: Closure,
        count: u64,
        sessions: u64,
    }
    observed_from!(Identity => IdentityUse { action, resource });

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub struct Tool {
        server: String,
        tool: String,
        closure: Closure,
        count: u64,
        sessions: u64,
    }
    observed_from!(Tool => ToolUse { server, tool });

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub struct Context {
        index: String,
        #[serde(default)]
        source: Option<String>,
        closure: Closure,
        count: u64,
        sessions: u64,
    }
    observed_from!(Context => ContextUse { index, source });

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub struct Delegation {
        to: String,
        #[serde(default)]
        mechanism: Option<String>,
        closure: Closure,
        count: u64,
        sessions: u64,
    }
    observed_from!(Delegation => DelegationEdge { to, mechanism });

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub struct Network {
        destination: String,
        #[serde(default)]
        port: Option<u16>,
        closure: Closure,
        count: u64,
        sessions: u64,
    }
    observed_from!(Network => NetworkDestination { destination, port });

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub struct Process {
        #[serde(default)]
        exec: Option<String>,
        #[serde(default)]
        path: Option<String>,
        #[serde(default)]
        syscall: Option<String>,
        closure: Closure,
        count: u64,
        sessions: u64,
    }
    observed_from!(Process => ProcessUse { exec, path, syscall });
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
#[serde(
    rename_all = "camelCase",
    deny_unknown_fields,
    bound(deserialize = "Observed<T>: Deserialize<'de>")
)]
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

    pub fn delegation(&self) -> Split<'_, DelegationEdge> {
        split(&self.spec.delegation.observed, &self.spec.confidence)
    }

    pub fn network(&self) -> Split<'_, NetworkDestination> {
        split(&self.spec.network.observed, &self.spec.confidence)
    }

    pub fn process(&self) -> Split<'_, ProcessUse> {
        split(&self.spec.process.observed, &self.spec.confidence)
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
mod tests;
