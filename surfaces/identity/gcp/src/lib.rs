//! Firebreak's GCP IAM control plane, over the official googleapis crates (HTTP+JSON).
//!
//! * [`names`]: principals (`serviceAccount:…`, `principal://…`), permissions
//!   (`service.resource.verb`, also written `gcp:service.resource.verb`) and resource names.
//! * [`ladder`]: `gcp.remove_binding_member` → `gcp.deny_policy` → `gcp.remove_wi_user` →
//!   `gcp.disable_service_account`, computed without I/O from an observed [`ladder::GcpState`].
//! * [`plane::GcpIam`]: the control plane: guarded getIamPolicy/setIamPolicy (version 3, etag,
//!   re-read and re-plan on `ABORTED`), IAM v2 deny policies (long-running operations awaited),
//!   service account IAM policies, disable/enable.

pub mod config;
pub mod ladder;
pub mod names;
pub mod plane;

pub use config::{Endpoints, GcpConfig};
pub use names::{NameError, Permission, Principal};
pub use plane::GcpIam;

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
