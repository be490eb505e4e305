//! AWS IAM containment: the `aws.*` and `eks.*` ladder on the role of one IRSA or EKS Pod
//! Identity ServiceAccount.
//!
//! [`policy`] evaluates the documented IAM logic locally (moto has no SimulatePrincipalPolicy),
//! [`ladder`] turns an observed [`role::RoleState`] into candidates with their blast radius, and
//! [`plane::AwsIam`] talks to IAM and to EKS (Pod Identity associations).

pub mod glob;
pub mod ladder;
pub mod plane;
pub mod policy;
pub mod role;

pub use plane::{AwsConfig, AwsIam, EksConfig};

const PLANE: &str = "aws-iam";
