//! Firebreak's Azure identity control plane: ARM role assignments and the federated identity
//! credentials that link an AKS ServiceAccount to a user-assigned managed identity.
//!
//! * [`ids`]: ARM resource ids (and the scopes role assignments apply at) and Azure operation
//!   names as alerts and envelopes write them.
//! * [`roles`]: role definitions (`actions` / `notActions` / `dataActions` with `*` wildcards)
//!   and the assignments of one principal, evaluated locally for blast radius.
//! * [`arm`]: a small typed ARM client over `reqwest`, authenticated by an `azure_core`
//!   `TokenCredential` (from `azure_identity` in production).
//! * [`ladder`]: `azure.delete_role_assignment` → `azure.narrow_role_assignment` →
//!   `azure.delete_federated_credential`, computed without I/O from an observed
//!   [`ladder::AzureState`].
//! * [`plane::AzureRbac`]: the control plane: observe, apply, verify, revert.

pub mod arm;
pub mod config;
pub mod ids;
pub mod ladder;
pub mod plane;
pub mod roles;

pub use arm::ArmError;
pub use config::{AzureConfig, CredentialKind};
pub use plane::AzureRbac;

/// Names this control plane in errors and plans.
pub const PLANE: &str = "azure rbac";

/// Errors building the plane from its configuration.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AzureError {
    #[error("azure.{field}: {reason}")]
    Config { field: &'static str, reason: String },
}
