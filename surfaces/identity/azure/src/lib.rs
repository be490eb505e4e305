//! Firebreak's Azure identity control plane: ARM role assignments and the federated identity
//! credentials that link an AKS ServiceAccount to a user-assigned managed identity.
//!
//! * [`ids`]: ARM resource ids (and the scopes role assignments apply at) and Azure operation
//!   names as alerts and envelopes write them.
//! * [`roles`]: role definitions (`actions` / `notActions` / `dataActions` with `*` wildcards)
//!   and the assignments of one principal, evaluated locally for blast radius.
//! * [`arm`]: a small typed ARM client over `reqwest`, authenticated by an `azure_core`
//!   `TokenCredential` (from `azure_identity` in production); one attempt per call.
//! * [`guarded`]: role assignment writes checked against the plan's snapshot.
//! * [`ladder`]: the observed [`ladder::AzureState`] and what its rungs share.
//! * [`rungs`]: `azure.delete_role_assignment` → `azure.narrow_role_assignment` →
//!   `azure.delete_federated_credential`, one file each: spec, proposal, change and check.
//! * [`plane::AzureRbac`]: the [`Plane`](firebreak_containment::plane::Plane) itself.

pub mod arm;
pub mod config;
pub mod guarded;
pub mod ids;
pub mod ladder;
pub mod plane;
pub mod roles;
pub mod rungs;

pub use arm::ArmError;
pub use config::{AzureConfig, CredentialKind};
pub use plane::{AzureRbac, AzureSpec};
pub use rungs::{DELETE_FEDERATED_CREDENTIAL, DELETE_ROLE_ASSIGNMENT, NARROW_ROLE_ASSIGNMENT};

/// Names this control plane in errors and plans.
pub const PLANE: &str = "azure rbac";

/// Errors building the plane from its configuration.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AzureError {
    #[error("azure.{field}: {reason}")]
    Config { field: &'static str, reason: String },
}
