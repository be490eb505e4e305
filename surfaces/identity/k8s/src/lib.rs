//! Firebreak's Kubernetes identity surface: RBAC subject removal and ServiceAccount identity
//! resolution.
//!
//! * [`permission`]: how a Kubernetes permission is written in alerts and envelopes
//!   (`k8s:<verb>` on `[namespaces/NS/]RESOURCE[.GROUP][/NAME[/SUBRESOURCE]]`).
//! * [`rbac`]: the documented RBAC authorizer, evaluated locally for blast radius.
//! * [`observation`]: the state one plan is computed from, and the ladder proposed from it
//!   without I/O.
//! * [`rungs`]: `k8s.remove_rolebinding_subject` → `k8s.delete_rolebinding`, one file each
//!   (spec, proposal, change, check).
//! * [`plane::K8sRbac`]: the control plane over `kube`: guarded JSON Patches, server-side dry
//!   runs, SubjectAccessReview verification.
//! * [`identity`]: the cloud identities a ServiceAccount maps to (IRSA, GKE, AKS).

mod cluster;
pub mod config;
pub mod gitops;
pub mod identity;
pub mod observation;
pub mod permission;
pub mod plane;
pub mod rbac;
pub mod rungs;

pub use config::{AgentServiceAccount, GkeWorkloadPool, K8sConfig};
pub use identity::{CloudIdentity, IdentityError};
pub use permission::ResourceRequest;
pub use plane::K8sRbac;
pub use rungs::{K8sSpec, DELETE_ROLEBINDING, REMOVE_ROLEBINDING_SUBJECT};

/// Names this control plane in errors and plans.
pub const PLANE: &str = "kubernetes rbac";

/// Errors building the plane from its configuration.
#[derive(Debug, Clone, thiserror::Error)]
pub enum K8sError {
    #[error("k8s.{field}: {reason}")]
    Config { field: &'static str, reason: String },
}
