//! Kubescape profiles read from the Kubernetes API.
//!
//! Kubescape's storage serves its profiles through an aggregated API whose LIST answers metadata
//! only (profiles are large): the profiles of a workload are chosen from the LISTs, then each is
//! fetched by name with GET and read by [`crate::kubescape::parse`].

use std::fmt;

use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::Client;
use serde_json::Value;

use crate::kubescape::{parse, Profile, ProfileError};

pub const GROUP: &str = "spdx.softwarecomposition.kubescape.io";
pub const VERSION: &str = "v1beta1";
/// The label Kubescape puts on the profiles it learns for a workload.
pub const WORKLOAD_LABEL: &str = "kubescape.io/workload-name";

/// The kinds read, as `(kind, plural)`.
pub const KINDS: [(&str, &str); 3] = [
    ("ApplicationProfile", "applicationprofiles"),
    ("NetworkNeighborhood", "networkneighborhoods"),
    ("ContainerProfile", "containerprofiles"),
];

/// Which profiles of a namespace to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProfileSelector {
    /// Those Kubescape learned for the workload: label `kubescape.io/workload-name` equal to it.
    Workload(String),
    /// These profiles by `metadata.name`, of whichever kind (e.g. a user-defined ContainerProfile,
    /// bound to pods by their label `kubescape.io/user-defined-profile`). Each must exist.
    Names(Vec<String>),
}

impl ProfileSelector {
    fn selects(&self, name: &str, workload: Option<&str>) -> bool {
        match self {
            ProfileSelector::Workload(w) => workload == Some(w.as_str()),
            ProfileSelector::Names(names) => names.iter().any(|n| n == name),
        }
    }
}

impl fmt::Display for ProfileSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProfileSelector::Workload(w) => write!(f, "workload {w:?} (label {WORKLOAD_LABEL})"),
            ProfileSelector::Names(names) => write!(f, "profile names {}", names.join(", ")),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("cannot reach the Kubernetes API while {action}: {source}; check the kubeconfig or in-cluster credentials and that the API server is up")]
    Unreachable {
        action: String,
        #[source]
        source: kube::Error,
    },
    #[error("the Kubernetes API refused {action}: {code} {reason}: {message}")]
    Refused {
        action: String,
        code: u16,
        reason: String,
        message: String,
    },
    #[error("the Kubernetes API serves none of applicationprofiles, networkneighborhoods, containerprofiles in {GROUP}/{VERSION}: install Kubescape with its storage component")]
    NotServed,
    #[error(
        "no Kubescape profile for {selector} in namespace {namespace:?}; it has: {}",
        listing(available)
    )]
    NoneFound {
        namespace: String,
        selector: String,
        available: Vec<String>,
    },
    #[error("Kubescape profile(s) {} not in namespace {namespace:?}; it has: {}", missing.join(", "), listing(available))]
    MissingNames {
        namespace: String,
        missing: Vec<String>,
        available: Vec<String>,
    },
    #[error("{kind} {namespace}/{name} was listed but is gone when fetched by name (404): deleted or replaced meanwhile, as Kubescape does when a workload rolls out; fetch again")]
    Vanished {
        kind: String,
        namespace: String,
        name: String,
    },
    #[error("{kind} {namespace}/{name} fetched by name has no spec: the API answered metadata only, which only a LIST should")]
    MissingSpec {
        kind: String,
        namespace: String,
        name: String,
    },
    #[error(transparent)]
    Profile(#[from] ProfileError),
}

fn listing(available: &[String]) -> String {
    if available.is_empty() {
        "no profiles".into()
    } else {
        available.join(", ")
    }
}

impl FetchError {
    fn from_kube(action: String, error: kube::Error) -> FetchError {
        match error {
            kube::Error::Api(status) => FetchError::Refused {
                action,
                code: status.code,
                reason: status.reason,
                message: status.message,
            },
            source => FetchError::Unreachable { action, source },
        }
    }
}

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: GROUP.into(),
        version: VERSION.into(),
        api_version: format!("{GROUP}/{VERSION}"),
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// The Kubescape profiles in `namespace` that `selector` chooses, each fetched in full and
/// parsed. Kinds the API does not serve (older Kubescape has no ContainerProfile) are skipped.
pub async fn fetch_profiles(
    client: Client,
    namespace: &str,
    selector: &ProfileSelector,
) -> Result<Vec<Profile>, FetchError> {
    let mut served = 0;
    let mut available = Vec::new();
    let mut chosen = Vec::new();
    for (kind, plural) in KINDS {
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), namespace, &resource(kind, plural));
        let list = match api.list(&ListParams::default()).await {
            Ok(list) => list,
            // The collection itself is missing: this kind is not served.
            Err(kube::Error::Api(status)) if status.is_not_found() => continue,
            Err(e) => {
                return Err(FetchError::from_kube(
                    format!("listing {plural}.{GROUP} in namespace {namespace:?}"),
                    e,
                ))
            }
        };
        served += 1;
        for item in list.items {
            let Some(name) = item.metadata.name else {
                continue;
            };
            let workload = item
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(WORKLOAD_LABEL))
                .map(String::as_str);
            available.push(match workload {
                Some(w) => format!("{kind}/{name} ({WORKLOAD_LABEL}={w})"),
                None => format!("{kind}/{name}"),
            });
            if selector.selects(&name, workload) {
                chosen.push((kind, api.clone(), name));
            }
        }
    }
    if served == 0 {
        return Err(FetchError::NotServed);
    }
    if let ProfileSelector::Names(names) = selector {
        let missing: Vec<String> = names
            .iter()
            .filter(|n| !chosen.iter().any(|(_, _, c)| c == *n))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(FetchError::MissingNames {
                namespace: namespace.into(),
                missing,
                available,
            });
        }
    }
    if chosen.is_empty() {
        return Err(FetchError::NoneFound {
            namespace: namespace.into(),
            selector: selector.to_string(),
            available,
        });
    }
    let mut profiles = Vec::with_capacity(chosen.len());
    for (kind, api, name) in chosen {
        let object = api.get(&name).await.map_err(|e| match e {
            kube::Error::Api(status) if status.is_not_found() => FetchError::Vanished {
                kind: kind.into(),
                namespace: namespace.into(),
                name: name.clone(),
            },
            e => FetchError::from_kube(format!("getting {kind} {namespace}/{name}"), e),
        })?;
        if object.data.get("spec").is_none_or(Value::is_null) {
            return Err(FetchError::MissingSpec {
                kind: kind.into(),
                namespace: namespace.into(),
                name,
            });
        }
        let origin = format!("{kind} {namespace}/{name}");
        let text = serde_json::to_string(&object).map_err(|e| ProfileError::Syntax {
            origin: origin.clone(),
            reason: e.to_string(),
        })?;
        profiles.extend(parse(&origin, &text)?);
    }
    Ok(profiles)
}
