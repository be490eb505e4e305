//! One file per rung of the `azure` ladder: its kind, its typed spec, how it is proposed from an
//! observation, and its change and check.

pub mod delete_federated_credential;
pub mod delete_role_assignment;
pub mod narrow_role_assignment;

pub use delete_federated_credential::DELETE_FEDERATED_CREDENTIAL;
pub use delete_role_assignment::DELETE_ROLE_ASSIGNMENT;
pub use narrow_role_assignment::NARROW_ROLE_ASSIGNMENT;
