//! The AWS control plane: one IAM client (and one EKS client for Pod Identity), the ladder of
//! [`crate::rungs`], registered under the config key `aws`.

use std::time::Duration;

use async_trait::async_trait;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::SdkConfig;
use firebreak_containment::plane::{
    Change, Check, Cloud, KindSpec, Observation, Outcome, PlanInput, Plane, PlaneError, Route,
    Verification,
};
use serde::Deserialize;

use crate::client::{Eks, Iam};
use crate::role::{role_name_from_arn, Association, PodIdentity};
use crate::rungs::{
    delete_association, delete_inline_policy, detach_policy, inline_deny, revoke_sessions,
    trust_deny, AwsSpec, KINDS,
};
use crate::PLANE;

/// Where and how to reach IAM. `endpoint` overrides IAM's endpoint only; credentials and other
/// endpoints come from the standard AWS chain (`AWS_ENDPOINT_URL`, `AWS_PROFILE`, IRSA, instance
/// roles, …).
#[derive(Debug, Clone)]
pub struct AwsConfig {
    pub region: String,
    pub endpoint: Option<String>,
    pub verify_deadline: Duration,
}

impl Default for AwsConfig {
    fn default() -> Self {
        Self {
            region: "us-east-1".into(),
            endpoint: None,
            verify_deadline: Duration::from_secs(300),
        }
    }
}

/// The EKS cluster whose Pod Identity associations link ServiceAccounts to roles (config
/// `aws.eks`: `cluster`, optional `endpoint`). Credentials and region are IAM's.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EksConfig {
    /// The EKS cluster name (not its ARN).
    pub cluster: String,
    /// Overrides the EKS endpoint (tests, VPC endpoints).
    #[serde(default)]
    pub endpoint: Option<String>,
}

pub struct AwsIam {
    iam: Iam,
    sdk: SdkConfig,
    eks: Option<Eks>,
    verify_deadline: Duration,
}

/// Every call gets a deadline, and one attempt: the engine's error policy owns retries.
fn client_behaviour() -> (TimeoutConfig, RetryConfig) {
    (
        TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .operation_attempt_timeout(Duration::from_secs(20))
            .build(),
        RetryConfig::disabled(),
    )
}

impl AwsIam {
    /// Credentials and region from the standard AWS chain.
    pub async fn new(config: &AwsConfig) -> AwsIam {
        let (timeouts, retries) = client_behaviour();
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(config.region.clone()))
            .timeout_config(timeouts)
            .retry_config(retries)
            .load()
            .await;
        AwsIam::from_sdk_config(&sdk, config)
    }

    /// With an SDK config the caller built (its credentials and region); `config.endpoint`
    /// still overrides IAM's endpoint.
    pub fn from_sdk_config(sdk: &SdkConfig, config: &AwsConfig) -> AwsIam {
        let (timeouts, retries) = client_behaviour();
        let mut iam = aws_sdk_iam::config::Builder::from(sdk)
            .timeout_config(timeouts)
            .retry_config(retries);
        if let Some(endpoint) = &config.endpoint {
            iam = iam.endpoint_url(endpoint);
        }
        AwsIam {
            iam: Iam {
                client: aws_sdk_iam::Client::from_conf(iam.build()),
            },
            sdk: sdk.clone(),
            eks: None,
            verify_deadline: config.verify_deadline,
        }
    }

    /// Sees the Pod Identity associations of one EKS cluster: resolves the agent's role from
    /// them when the envelope names none, and offers `eks.delete_pod_identity_association`.
    pub fn with_eks(mut self, config: &EksConfig) -> AwsIam {
        let (timeouts, retries) = client_behaviour();
        let mut eks = aws_sdk_eks::config::Builder::from(&self.sdk)
            .timeout_config(timeouts)
            .retry_config(retries);
        if let Some(endpoint) = &config.endpoint {
            eks = eks.endpoint_url(endpoint);
        }
        self.eks = Some(Eks {
            client: aws_sdk_eks::Client::from_conf(eks.build()),
            cluster: config.cluster.clone(),
        });
        self
    }

    /// Reads everything the ladder needs about one role. Read-only calls only.
    pub async fn observe_role(&self, role_arn: &str) -> Result<crate::role::RoleState, PlaneError> {
        self.iam.observe_role(role_arn).await
    }

    fn eks(&self) -> Result<&Eks, PlaneError> {
        self.eks.as_ref().ok_or_else(|| PlaneError::Unsupported {
            plane: PLANE,
            detail: "no EKS cluster is configured (aws.eks.cluster): Pod Identity associations are out of reach".into(),
        })
    }

    /// The agent's role from its Pod Identity association (among the cluster's `associations`),
    /// for envelopes that name no role.
    fn resolve_role(
        eks: &Eks,
        associations: &[Association],
        namespace: &str,
        service_account: &str,
    ) -> Result<String, PlaneError> {
        let mut found = associations
            .iter()
            .filter(|a| a.namespace == namespace && a.service_account == service_account);
        match (found.next(), found.count()) {
            (Some(a), 0) => Ok(a.role_arn.clone()),
            (None, _) => Err(PlaneError::Invalid {
                plane: PLANE,
                detail: format!(
                    "the envelope names no IAM role and ServiceAccount {namespace}/{service_account} has no Pod Identity association in EKS cluster {}: add the role ARN to the envelope's identity.principals or check aws.eks.cluster",
                    eks.cluster
                ),
            }),
            (Some(_), more) => Err(PlaneError::Invalid {
                plane: PLANE,
                detail: format!(
                    "ServiceAccount {namespace}/{service_account} has {} Pod Identity associations in EKS cluster {}: name the role in the envelope's identity.principals",
                    more + 1,
                    eks.cluster
                ),
            }),
        }
    }

    /// Who reaches `role_arn` through the cluster's `associations`: the agent and the others.
    fn pod_identity(
        eks: &Eks,
        associations: Vec<Association>,
        role_arn: &str,
        namespace: &str,
        service_account: &str,
    ) -> PodIdentity {
        let (agent, sharing) = associations
            .into_iter()
            .filter(|a| a.uses(role_arn))
            .partition(|a| a.namespace == namespace && a.service_account == service_account);
        PodIdentity {
            cluster: eks.cluster.clone(),
            agent,
            sharing,
        }
    }
}

#[async_trait]
impl Plane for AwsIam {
    const KEY: &'static str = "aws";
    const ROUTE: Route = Route::Identity(Cloud::Aws);
    const KINDS: &'static [&'static KindSpec] = KINDS;
    type Spec = AwsSpec;

    fn kind_of(spec: &AwsSpec) -> &'static KindSpec {
        spec.kind()
    }

    fn handles(&self, input: &PlanInput<'_>) -> bool {
        role_arn(input).is_some() || self.eks.is_some()
    }

    async fn observe(
        &self,
        input: &PlanInput<'_>,
    ) -> Result<Box<dyn Observation<AwsSpec>>, PlaneError> {
        let agent = &input.alert.agent;
        // One read of the cluster's associations serves both the role lookup and the blast
        // radius over ServiceAccounts sharing the role.
        let eks = match &self.eks {
            Some(eks) => Some((eks, eks.associations(&eks.cluster, None).await?)),
            None => None,
        };
        let arn = match (role_arn(input), &eks) {
            (Some(arn), _) => arn.to_string(),
            (None, Some((eks, all))) => {
                Self::resolve_role(eks, all, &agent.namespace, &agent.service_account)?
            }
            (None, None) => {
                return Err(PlaneError::Unsupported {
                    plane: PLANE,
                    detail: "the envelope names no IAM role principal and no EKS cluster is configured (aws.eks.cluster) to resolve it from Pod Identity".into(),
                })
            }
        };
        let mut state = self.iam.observe_role(&arn).await?;
        if let Some((eks, all)) = eks {
            state.pod_identity = Some(Self::pod_identity(
                eks,
                all,
                &state.arn,
                &agent.namespace,
                &agent.service_account,
            ));
        }
        Ok(Box::new(state))
    }

    async fn change(&self, spec: &AwsSpec, change: Change) -> Result<Outcome, PlaneError> {
        match spec {
            AwsSpec::InlineDeny(s) => inline_deny::change(&self.iam, s, change).await,
            AwsSpec::DetachPolicy(s) => detach_policy::change(&self.iam, s, change).await,
            AwsSpec::DeleteInlinePolicy(s) => {
                delete_inline_policy::change(&self.iam, s, change).await
            }
            AwsSpec::TrustDeny(s) => trust_deny::change(&self.iam, s, change).await,
            AwsSpec::RevokeSessions(s) => revoke_sessions::change(&self.iam, s, change).await,
            AwsSpec::DeletePodIdentityAssociation(s) => {
                delete_association::change(self.eks()?, s, change).await
            }
        }
    }

    async fn check(&self, spec: &AwsSpec, check: Check) -> Result<Verification, PlaneError> {
        match spec {
            AwsSpec::InlineDeny(s) => inline_deny::check(&self.iam, s, check).await,
            AwsSpec::DetachPolicy(s) => detach_policy::check(&self.iam, s, check).await,
            AwsSpec::DeleteInlinePolicy(s) => {
                delete_inline_policy::check(&self.iam, s, check).await
            }
            AwsSpec::TrustDeny(s) => trust_deny::check(&self.iam, s, check).await,
            AwsSpec::RevokeSessions(s) => revoke_sessions::check(&self.iam, s, check).await,
            AwsSpec::DeletePodIdentityAssociation(s) => {
                delete_association::check(self.eks()?, s, check).await
            }
        }
    }

    fn verify_deadline(&self) -> Duration {
        self.verify_deadline
    }
}

fn role_arn<'a>(input: &PlanInput<'a>) -> Option<&'a str> {
    input
        .envelope
        .spec
        .identity
        .principals
        .iter()
        .map(String::as_str)
        .find(|p| role_name_from_arn(p).is_some())
}
