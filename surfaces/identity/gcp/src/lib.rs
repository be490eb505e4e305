//! Firebreak's GCP IAM control plane, over the official googleapis crates (HTTP+JSON).
//!
//! * [`names`]: principals (`serviceAccount:…`, `principal://…`), permissions
//!   (`service.resource.verb`, also written `gcp:service.resource.verb`) and resource names.
//! * [`policy`]: IAM v1 bindings and the edits made to a policy.
//! * [`client`]: the googleapis clients, one attempt per call, errors typed for the engine.
//! * [`ladder`]: the observed [`ladder::GcpState`] and what its rungs share.
//! * [`rungs`]: `gcp.remove_binding_member` → `gcp.deny_policy` → `gcp.remove_wi_user` →
//!   `gcp.disable_service_account`, one file each: spec, proposal, change and check.
//! * [`plane::GcpIam`]: the [`Plane`](firebreak_containment::plane::Plane) itself.

pub mod client;
pub mod config;
pub mod ladder;
pub mod names;
pub mod plane;
pub mod policy;
pub mod rungs;

pub use config::{Endpoints, GcpConfig};
pub use names::{NameError, Permission, Principal};
pub use plane::{GcpIam, GcpSpec};
pub use rungs::{DENY_POLICY, DISABLE_SERVICE_ACCOUNT, REMOVE_BINDING_MEMBER, REMOVE_WI_USER};

/// Names this control plane in errors and plans.
pub const PLANE: &str = "gcp iam";

/// Errors building the plane from its configuration.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GcpError {
    #[error("gcp.{field}: {reason}")]
    Config { field: &'static str, reason: String },
    #[error(
        "gcp: {0}; set GOOGLE_APPLICATION_CREDENTIALS or run on GKE/GCE with a service account"
    )]
    Credentials(String),
}
