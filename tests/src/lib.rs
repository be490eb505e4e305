//! Test harness of Firebreak's end-to-end tests: real servers on loopback.
//!
//! Run everything through `./scripts/test`, which installs the servers (moto, …) and exports
//! where they are (`FIREBREAK_MOTO_SERVER`, …).

pub mod azure_api;
pub mod daemon;
pub mod eks_api;
pub mod fake;
pub mod gcp_api;
pub mod kube_api;
pub mod moto;

pub use moto::{decode_policy, seed_role, IamRequest, Moto};
