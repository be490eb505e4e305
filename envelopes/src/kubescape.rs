//! Kubescape profiles → the `process` and `network` dimensions of one container's envelope.
//!
//! Reads `ApplicationProfile` (execs with args, opens, syscalls), `NetworkNeighborhood` (egress)
//! and `ContainerProfile` (the successor kind: both, for one container) as the Kubernetes API
//! returns them, in YAML or JSON, one object, several YAML documents, or a `…List` with `items`.
//! When any ContainerProfile is given it wins: ApplicationProfiles and NetworkNeighborhoods are
//! then reported as superseded and not read.
//!
//! Mapping:
//! - each distinct exec path → `process {exec}`, each distinct open path → `process {path}`,
//!   each syscall → `process {syscall}`. Paths with Kubescape's `⋯` or `*` are `structural`
//!   (matched by `firebreak_containment::matching::path`), the rest `literal`. The envelope keeps no
//!   args or open flags; [`ProfileDimensions::execs`] keeps the args.
//! - each egress neighbour → `network {destination, port}` for each of its DNS names (`dns` and
//!   `dnsNames`, spelled as Kubescape writes them, trailing dot included) and its `ipAddress`,
//!   times each port (no ports: any port). The protocol is not in the envelope type;
//!   [`ProfileDimensions::egress`] keeps it. A neighbour known only by pod/namespace selectors
//!   has no destination an address or name can match: it is listed in the report instead.
//! - confidence: Kubescape records no counts. A profile that finished learning
//!   (`kubescape.io/status: completed`) or was written by a person (no learning annotations) is
//!   Kubescape's statement that the behaviour is normal: its entries get exactly the threshold
//!   (`minCount`, `minSessions`) and are permitted. Entries of a profile still learning get count 1
//!   in 1 session: the tail.

use std::collections::BTreeMap;

use firebreak_containment::envelope::{
    Closure, ConfidenceThreshold, EnvelopeSpec, NetworkDestination, Observed, ObservedList,
    ProcessUse,
};
use firebreak_containment::matching::DYNAMIC_SEGMENT;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("{origin}: not valid YAML or JSON: {reason}")]
    Syntax { origin: String, reason: String },
    #[error("{origin} (document {document}): {field}: {reason}")]
    Field {
        origin: String,
        document: usize,
        field: String,
        reason: String,
    },
    #[error(
        "no Kubescape profile given (ApplicationProfile, NetworkNeighborhood or ContainerProfile)"
    )]
    NoProfiles,
    #[error("container {container:?} is in none of the profiles; they have: {}", available.join(", "))]
    UnknownContainer {
        container: String,
        available: Vec<String>,
    },
    #[error("the profiles describe several containers ({}); name one", available.join(", "))]
    AmbiguousContainer { available: Vec<String> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ProfileKind {
    ApplicationProfile,
    NetworkNeighborhood,
    ContainerProfile,
}

/// Whether Kubescape considers the profile complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProfileState {
    /// `kubescape.io/status: completed`.
    Completed,
    /// No learning annotations: written by a person (a user-defined profile).
    Authored,
    /// Any other status (`initializing`, `ready`, `learning`, …): still learning.
    Learning,
}

/// One profile object, reduced to what envelopes need.
#[derive(Debug, Clone)]
pub struct Profile {
    pub kind: ProfileKind,
    pub name: String,
    pub namespace: Option<String>,
    pub state: ProfileState,
    /// `namespace/Kind/name` from the `kubescape.io/workload-*` labels, when present.
    pub workload: Option<String>,
    /// Per container; a ContainerProfile has one, unnamed.
    pub containers: Vec<ContainerBehaviour>,
}

#[derive(Debug, Clone, Default)]
pub struct ContainerBehaviour {
    pub name: Option<String>,
    pub execs: Vec<Exec>,
    pub opens: Vec<String>,
    pub syscalls: Vec<String>,
    pub egress: Vec<Egress>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Exec {
    pub path: String,
    pub args: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Egress {
    pub identifier: String,
    /// `external` or `internal`.
    #[serde(rename = "type")]
    pub kind: String,
    pub dns_names: Vec<String>,
    pub ip_address: Option<String>,
    pub ports: Vec<Port>,
    /// Pod/namespace selectors (JSON), for neighbours Kubescape identified by labels.
    pub selectors: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Port {
    pub port: Option<u16>,
    pub protocol: String,
}

/// The two dimensions for one container, with the detail the envelope type cannot hold.
#[derive(Debug, Clone)]
pub struct ProfileDimensions {
    pub process: ObservedList<ProcessUse>,
    pub network: ObservedList<NetworkDestination>,
    /// Every distinct exec with its arguments.
    pub execs: Vec<Exec>,
    /// Every egress neighbour read, with protocols and selectors.
    pub egress: Vec<Egress>,
    pub report: ImportReport,
}

impl ProfileDimensions {
    /// Replaces the `process` and `network` dimensions of `spec` with these.
    pub fn apply(self, spec: &mut EnvelopeSpec) {
        spec.process = self.process;
        spec.network = self.network;
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportReport {
    pub container: String,
    /// `Kind/name (state)` of each profile read.
    pub used: Vec<String>,
    /// ApplicationProfiles and NetworkNeighborhoods not read because a ContainerProfile was given.
    pub superseded: Vec<String>,
    pub workload: Option<String>,
    /// Egress neighbours known only by selectors: `identifier: selectors`.
    pub unrepresentable: Vec<String>,
    pub tail: usize,
}

/// Parses one file's text (YAML or JSON; several documents or a `…List` allowed). `origin` names
/// the input in errors. Objects of other kinds are refused.
pub fn parse(origin: &str, text: &str) -> Result<Vec<Profile>, ProfileError> {
    let documents = documents(origin, text)?;
    let mut profiles = Vec::new();
    for (i, doc) in documents.iter().enumerate() {
        let document = i + 1;
        let field_error = |field: String, reason: String| ProfileError::Field {
            origin: origin.to_string(),
            document,
            field,
            reason,
        };
        match doc.get("items") {
            Some(Value::Array(items)) if kind_of(doc).is_some_and(|k| k.ends_with("List")) => {
                for (j, item) in items.iter().enumerate() {
                    profiles.push(object(item, &|f, r| {
                        field_error(format!("items[{j}].{f}"), r)
                    })?);
                }
            }
            _ => profiles.push(object(doc, &|f, r| field_error(f, r))?),
        }
    }
    Ok(profiles)
}

fn documents(origin: &str, text: &str) -> Result<Vec<Value>, ProfileError> {
    let syntax = |reason: String| ProfileError::Syntax {
        origin: origin.to_string(),
        reason,
    };
    if text.trim_start().starts_with('{') {
        return serde_json::Deserializer::from_str(text)
            .into_iter::<Value>()
            .collect::<Result<_, _>>()
            .map_err(|e| syntax(e.to_string()));
    }
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let value = Value::deserialize(doc).map_err(|e| syntax(e.to_string()))?;
        if !value.is_null() {
            out.push(value);
        }
    }
    Ok(out)
}

fn kind_of(doc: &Value) -> Option<&str> {
    doc.get("kind").and_then(Value::as_str)
}

/// One Kubernetes object; other kinds are an error naming `kind`.
fn object(
    doc: &Value,
    error: &dyn Fn(String, String) -> ProfileError,
) -> Result<Profile, ProfileError> {
    let kind = match kind_of(doc) {
        Some("ApplicationProfile") => ProfileKind::ApplicationProfile,
        Some("NetworkNeighborhood") => ProfileKind::NetworkNeighborhood,
        Some("ContainerProfile") => ProfileKind::ContainerProfile,
        Some(other) => {
            return Err(error(
                "kind".into(),
                format!(
                    "{other:?} is not ApplicationProfile, NetworkNeighborhood or ContainerProfile"
                ),
            ))
        }
        None => return Err(error("kind".into(), "missing or not a string".into())),
    };
    if doc.get("spec").is_none_or(Value::is_null) {
        return Err(error(
            "spec".into(),
            "missing: a LIST of Kubescape profiles returns metadata only; fetch each profile by name (kubectl get <kind> <name> -o yaml)".into(),
        ));
    }
    let raw: RawObject = serde_path_to_error::deserialize(doc).map_err(|e| {
        let field = e.path().to_string();
        error(field, e.into_inner().to_string())
    })?;
    let containers = match kind {
        ProfileKind::ContainerProfile => vec![behaviour(None, raw.spec, &error, "spec")?],
        _ => {
            let mut out = Vec::new();
            for (list, containers) in [
                ("containers", raw.spec.containers),
                ("initContainers", raw.spec.init_containers),
                ("ephemeralContainers", raw.spec.ephemeral_containers),
            ] {
                for (i, c) in containers.into_iter().enumerate() {
                    let path = format!("spec.{list}[{i}]");
                    let name = c.name.clone().filter(|n| !n.is_empty()).ok_or_else(|| {
                        error(
                            format!("{path}.name"),
                            "missing: every container is named".into(),
                        )
                    })?;
                    out.push(behaviour(Some(name), c, &error, &path)?);
                }
            }
            out
        }
    };
    let labels = &raw.metadata.labels;
    let label = |key: &str| labels.get(key).filter(|v| !v.is_empty());
    let workload = match (
        label("kubescape.io/workload-namespace"),
        label("kubescape.io/workload-kind"),
        label("kubescape.io/workload-name"),
    ) {
        (Some(ns), Some(kind), Some(name)) => Some(format!("{ns}/{kind}/{name}")),
        _ => None,
    };
    let annotations = &raw.metadata.annotations;
    let state = match annotations.get("kubescape.io/status").map(String::as_str) {
        Some("completed") => ProfileState::Completed,
        None if !annotations.contains_key("kubescape.io/completion") => ProfileState::Authored,
        _ => ProfileState::Learning,
    };
    Ok(Profile {
        kind,
        name: raw.metadata.name,
        namespace: raw.metadata.namespace,
        state,
        workload,
        containers,
    })
}

fn behaviour(
    name: Option<String>,
    raw: RawBehaviour,
    error: &dyn Fn(String, String) -> ProfileError,
    path: &str,
) -> Result<ContainerBehaviour, ProfileError> {
    let mut egress = Vec::with_capacity(raw.egress.len());
    for (i, n) in raw.egress.into_iter().enumerate() {
        let mut ports = Vec::with_capacity(n.ports.len());
        for (j, p) in n.ports.into_iter().enumerate() {
            let port = p
                .port
                .map(|v| {
                    u16::try_from(v).map_err(|_| {
                        error(
                            format!("{path}.egress[{i}].ports[{j}].port"),
                            format!("{v} is not a port (0 to 65535)"),
                        )
                    })
                })
                .transpose()?;
            ports.push(Port {
                port,
                protocol: p.protocol,
            });
        }
        let mut dns_names: Vec<String> = n.dns_names;
        if !n.dns.is_empty() && !dns_names.contains(&n.dns) {
            dns_names.insert(0, n.dns);
        }
        dns_names.retain(|d| !d.is_empty());
        let selectors = [
            ("namespaceSelector", n.namespace_selector),
            ("podSelector", n.pod_selector),
        ]
        .into_iter()
        .filter(|(_, s)| !s.is_null())
        .map(|(k, s)| format!("{k}={s}"))
        .collect::<Vec<_>>();
        egress.push(Egress {
            identifier: n.identifier,
            kind: n.kind,
            dns_names,
            ip_address: Some(n.ip_address).filter(|a| !a.is_empty()),
            ports,
            selectors: (!selectors.is_empty()).then(|| selectors.join(" ")),
        });
    }
    Ok(ContainerBehaviour {
        name,
        execs: raw
            .execs
            .into_iter()
            .map(|e| Exec {
                path: e.path,
                args: e.args,
            })
            .collect(),
        opens: raw.opens.into_iter().map(|o| o.path).collect(),
        syscalls: raw.syscalls,
        egress,
    })
}

/// The `process` and `network` dimensions for `container` (which may be omitted when the profiles
/// describe exactly one container).
pub fn envelope_dimensions(
    profiles: &[Profile],
    container: Option<&str>,
    confidence: &ConfidenceThreshold,
) -> Result<ProfileDimensions, ProfileError> {
    if profiles.is_empty() {
        return Err(ProfileError::NoProfiles);
    }
    let winners: Vec<&Profile> = if profiles
        .iter()
        .any(|p| p.kind == ProfileKind::ContainerProfile)
    {
        profiles
            .iter()
            .filter(|p| p.kind == ProfileKind::ContainerProfile)
            .collect()
    } else {
        profiles.iter().collect()
    };
    let superseded = profiles
        .iter()
        .filter(|p| !winners.iter().any(|w| std::ptr::eq(*w, *p)))
        .map(|p| format!("{:?}/{}", p.kind, p.name))
        .collect();
    let mut available: Vec<String> = winners
        .iter()
        .flat_map(|p| p.containers.iter().filter_map(|c| c.name.clone()))
        .collect();
    available.sort();
    available.dedup();
    let named_only = winners
        .iter()
        .all(|p| p.kind != ProfileKind::ContainerProfile);
    let container = match container {
        Some(c) if !named_only || available.iter().any(|a| a == c) => c.to_string(),
        Some(c) => {
            return Err(ProfileError::UnknownContainer {
                container: c.to_string(),
                available,
            })
        }
        None if available.len() <= 1 => available.first().cloned().unwrap_or_default(),
        None => return Err(ProfileError::AmbiguousContainer { available }),
    };

    let mut process: BTreeMap<ProcessKey, Weight> = BTreeMap::new();
    let mut network: BTreeMap<(String, Option<u16>), Weight> = BTreeMap::new();
    let mut execs = Vec::new();
    let mut egress = Vec::new();
    let mut unrepresentable = Vec::new();
    let mut used = Vec::new();
    let mut workload = None;
    for profile in &winners {
        let behaviours: Vec<&ContainerBehaviour> = profile
            .containers
            .iter()
            .filter(|c| c.name.as_deref().is_none_or(|n| n == container))
            .collect();
        if behaviours.is_empty() {
            continue;
        }
        used.push(format!(
            "{:?}/{} ({:?})",
            profile.kind, profile.name, profile.state
        ));
        workload = workload.or_else(|| profile.workload.clone());
        let weight = Weight::of(profile.state);
        for b in behaviours {
            for e in &b.execs {
                add(&mut process, ProcessKey::Exec(e.path.clone()), weight);
                execs.push(e.clone());
            }
            for path in &b.opens {
                add(&mut process, ProcessKey::Open(path.clone()), weight);
            }
            for s in &b.syscalls {
                add(&mut process, ProcessKey::Syscall(s.clone()), weight);
            }
            for n in &b.egress {
                let destinations: Vec<&String> = n.dns_names.iter().chain(&n.ip_address).collect();
                if destinations.is_empty() {
                    let selectors = n.selectors.as_deref().unwrap_or("no selectors");
                    unrepresentable.push(format!("{}: {selectors}", n.identifier));
                }
                let ports: Vec<Option<u16>> = if n.ports.is_empty() {
                    vec![None]
                } else {
                    n.ports.iter().map(|p| p.port).collect()
                };
                for d in destinations {
                    for port in &ports {
                        add(&mut network, (d.clone(), *port), weight);
                    }
                }
                egress.push(n.clone());
            }
        }
    }
    execs.sort();
    execs.dedup();

    let observe = |weight: Weight, closure: Closure| {
        let (count, sessions) = weight.confidence(confidence);
        (closure, count, sessions)
    };
    let process: Vec<Observed<ProcessUse>> = process
        .into_iter()
        .map(|(key, w)| {
            let (value, wild) = key.into_use();
            let (closure, count, sessions) = observe(
                w,
                if wild {
                    Closure::Structural
                } else {
                    Closure::Literal
                },
            );
            Observed {
                value,
                closure,
                count,
                sessions,
            }
        })
        .collect();
    let network: Vec<Observed<NetworkDestination>> = network
        .into_iter()
        .map(|((destination, port), w)| {
            let pattern = destination.contains('*') || destination.contains('/');
            let (closure, count, sessions) = observe(
                w,
                if pattern {
                    Closure::Structural
                } else {
                    Closure::Literal
                },
            );
            Observed {
                value: NetworkDestination { destination, port },
                closure,
                count,
                sessions,
            }
        })
        .collect();
    let tail = process
        .iter()
        .filter(|o| !o.is_confident(confidence))
        .count()
        + network
            .iter()
            .filter(|o| !o.is_confident(confidence))
            .count();
    Ok(ProfileDimensions {
        process: ObservedList { observed: process },
        network: ObservedList { observed: network },
        execs,
        egress,
        report: ImportReport {
            container,
            used,
            superseded,
            workload,
            unrepresentable,
            tail,
        },
    })
}

/// How much a profile vouches for its entries: a finished or authored profile fully, a profile
/// still learning as one sighting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Weight {
    Sighting,
    Vouched,
}

impl Weight {
    fn of(state: ProfileState) -> Self {
        match state {
            ProfileState::Completed | ProfileState::Authored => Weight::Vouched,
            ProfileState::Learning => Weight::Sighting,
        }
    }

    fn confidence(self, threshold: &ConfidenceThreshold) -> (u64, u64) {
        match self {
            Weight::Vouched => (threshold.min_count, threshold.min_sessions),
            Weight::Sighting => (1, 1),
        }
    }
}

/// The strongest weight any profile gave an entry wins.
fn add<K: Ord>(map: &mut BTreeMap<K, Weight>, key: K, weight: Weight) {
    let w = map.entry(key).or_insert(weight);
    *w = (*w).max(weight);
}

/// One process entry, ordered execs, then opens, then syscalls.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum ProcessKey {
    Exec(String),
    Open(String),
    Syscall(String),
}

impl ProcessKey {
    /// The envelope entry, and whether it is a pattern (Kubescape's `⋯` or `*` in a path).
    fn into_use(self) -> (ProcessUse, bool) {
        let wild = |p: &str| p.contains(DYNAMIC_SEGMENT) || p.contains('*');
        let none = ProcessUse {
            exec: None,
            path: None,
            syscall: None,
        };
        match self {
            ProcessKey::Exec(p) => (
                ProcessUse {
                    exec: Some(p.clone()),
                    ..none
                },
                wild(&p),
            ),
            ProcessKey::Open(p) => (
                ProcessUse {
                    path: Some(p.clone()),
                    ..none
                },
                wild(&p),
            ),
            ProcessKey::Syscall(s) => (
                ProcessUse {
                    syscall: Some(s),
                    ..none
                },
                false,
            ),
        }
    }
}

// What is read of the objects; every other field is ignored (Kubescape adds fields over time).
// `null` is common in real profiles (`dnsNames: null`) and reads as empty.

#[derive(Deserialize)]
struct RawObject {
    #[serde(default, deserialize_with = "null_default")]
    metadata: RawMeta,
    spec: RawBehaviour,
}

#[derive(Deserialize, Default)]
struct RawMeta {
    #[serde(default, deserialize_with = "null_default")]
    name: String,
    namespace: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_default")]
    annotations: BTreeMap<String, String>,
}

/// A profile's `spec` or one of its containers: the same fields at both levels (a
/// ContainerProfile's spec is one container's behaviour). No `flatten`, so error paths stay exact.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawBehaviour {
    name: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    containers: Vec<RawBehaviour>,
    #[serde(default, deserialize_with = "null_default")]
    init_containers: Vec<RawBehaviour>,
    #[serde(default, deserialize_with = "null_default")]
    ephemeral_containers: Vec<RawBehaviour>,
    #[serde(default, deserialize_with = "null_default")]
    execs: Vec<RawExec>,
    #[serde(default, deserialize_with = "null_default")]
    opens: Vec<RawOpen>,
    #[serde(default, deserialize_with = "null_default")]
    syscalls: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    egress: Vec<RawNeighbor>,
}

#[derive(Deserialize)]
struct RawExec {
    path: String,
    #[serde(default, deserialize_with = "null_default")]
    args: Vec<String>,
}

#[derive(Deserialize)]
struct RawOpen {
    path: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawNeighbor {
    #[serde(default, deserialize_with = "null_default")]
    identifier: String,
    #[serde(default, rename = "type", deserialize_with = "null_default")]
    kind: String,
    #[serde(default, deserialize_with = "null_default")]
    dns: String,
    #[serde(default, deserialize_with = "null_default")]
    dns_names: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    ip_address: String,
    #[serde(default, deserialize_with = "null_default")]
    ports: Vec<RawPort>,
    #[serde(default)]
    pod_selector: Value,
    #[serde(default)]
    namespace_selector: Value,
}

#[derive(Deserialize)]
struct RawPort {
    #[serde(default, deserialize_with = "null_default")]
    protocol: String,
    port: Option<i64>,
}

fn null_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Option::<T>::deserialize(deserializer).map(Option::unwrap_or_default)
}
