//! AWS IAM containment: the `aws.*` ladder on one IRSA role.
//!
//! [`policy`] evaluates the documented IAM logic locally (moto has no SimulatePrincipalPolicy),
//! [`ladder`] turns an observed [`role::RoleState`] into candidates with their blast radius, and
//! [`plane::AwsIam`] talks to IAM.

pub mod glob;
pub mod ladder;
pub mod plane;
pub mod policy;
pub mod role;

pub use plane::{AwsConfig, AwsIam};

const PLANE: &str = "aws-iam";
