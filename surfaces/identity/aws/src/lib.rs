//! AWS IAM containment: the `aws.*` and `eks.*` ladder on the role of one IRSA or EKS Pod
//! Identity ServiceAccount.
//!
//! [`policy`] holds IAM's policy documents ([`policy::document`]) and a local evaluator of the
//! documented logic ([`policy::eval`]; moto has no SimulatePrincipalPolicy), [`rungs`] one file
//! per rung (spec, proposal, change, check), [`client`] the SDK calls, and [`plane::AwsIam`]
//! registers it all under the config key `aws`.

pub mod client;
pub mod glob;
pub mod plane;
pub mod policy;
pub mod role;
pub mod rungs;

pub use plane::{AwsConfig, AwsIam, EksConfig};
pub use rungs::AwsSpec;

const PLANE: &str = "aws-iam";
