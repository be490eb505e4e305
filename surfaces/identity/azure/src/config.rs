//! `azure` in the daemon config.

use std::time::Duration;

use firebreak_containment::config::duration;
use serde::Deserialize;

/// How to reach ARM, how to authenticate, and which AKS issuer the agents' tokens come from.
///
/// ```yaml
/// azure:
///   armEndpoint: https://management.azure.com      # optional; the default
///   credential: workloadIdentity                    # optional: workloadIdentity | managedIdentity;
///                                                   # default: workloadIdentity when
///                                                   # AZURE_FEDERATED_TOKEN_FILE is set (AKS)
///   authorityHost: https://login.microsoftonline.com   # optional; default AZURE_AUTHORITY_HOST
///   tenantId: 72f988bf-86f1-41af-91ab-2d7cd011db47     # optional; default AZURE_TENANT_ID
///   clientId: 9a1c7f4e-0000-4000-8000-000000000001     # optional; default AZURE_CLIENT_ID
///   aksOidcIssuer: https://eastus.oic.prod-aks.azure.com/TENANT/CLUSTER/   # optional
///   verifyDeadline: 15m
///   requestTimeout: 30s
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AzureConfig {
    /// Azure Resource Manager's base URL; the token audience is `{armEndpoint}/.default`.
    #[serde(default = "default_arm_endpoint")]
    pub arm_endpoint: String,
    /// Which `azure_identity` credential authenticates Firebreak.
    #[serde(default)]
    pub credential: Option<CredentialKind>,
    /// Entra ID authority for workload identity (sovereign clouds); must be https.
    #[serde(default)]
    pub authority_host: Option<String>,
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// Client id of Firebreak's own identity (workload identity, or a user-assigned managed
    /// identity on the node).
    #[serde(default)]
    pub client_id: Option<String>,
    /// The AKS cluster's OIDC issuer URL: a federated credential is the agent's link only if
    /// its issuer is this one. When absent, the subject alone is matched (and the plan says so).
    #[serde(default)]
    pub aks_oidc_issuer: Option<String>,
    /// How long verification may poll: Azure RBAC changes take up to 10 minutes to propagate.
    #[serde(deserialize_with = "duration", default = "default_deadline")]
    pub verify_deadline: Duration,
    /// Per HTTP request to ARM (connect and answer). A request that times out is one failed
    /// attempt, reported as unreachable; the engine decides whether to try again.
    #[serde(deserialize_with = "duration", default = "default_request_timeout")]
    pub request_timeout: Duration,
}

/// The `azure_identity` credential Firebreak authenticates with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CredentialKind {
    /// AKS workload identity: a projected ServiceAccount token exchanged at Entra ID
    /// (`AZURE_FEDERATED_TOKEN_FILE`, `AZURE_CLIENT_ID`, `AZURE_TENANT_ID`).
    WorkloadIdentity,
    /// The node's or VM's managed identity (IMDS), user-assigned when `clientId` is set.
    ManagedIdentity,
}

impl Default for AzureConfig {
    fn default() -> Self {
        AzureConfig {
            arm_endpoint: default_arm_endpoint(),
            credential: None,
            authority_host: None,
            tenant_id: None,
            client_id: None,
            aks_oidc_issuer: None,
            verify_deadline: default_deadline(),
            request_timeout: default_request_timeout(),
        }
    }
}

fn default_arm_endpoint() -> String {
    "https://management.azure.com".into()
}

fn default_deadline() -> Duration {
    Duration::from_secs(15 * 60)
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_documented_shape_and_rejects_typos() {
        let config: AzureConfig = serde_yaml::from_str(
            "armEndpoint: http://127.0.0.1:1\n\
             credential: managedIdentity\n\
             clientId: c\n\
             aksOidcIssuer: https://issuer.example/\n\
             verifyDeadline: 2m\n",
        )
        .unwrap();
        assert_eq!(config.verify_deadline, Duration::from_secs(120));
        assert_eq!(config.request_timeout, Duration::from_secs(30));
        assert_eq!(config.credential, Some(CredentialKind::ManagedIdentity));
        assert_eq!(
            AzureConfig::default().verify_deadline,
            Duration::from_secs(900)
        );
        let err = serde_yaml::from_str::<AzureConfig>("armEndpont: x").unwrap_err();
        assert!(
            err.to_string().contains("unknown field `armEndpont`"),
            "{err}"
        );
        let err = serde_yaml::from_str::<AzureConfig>("verifyDeadline: soon").unwrap_err();
        assert!(err.to_string().contains("not a duration"), "{err}");
        let err = serde_yaml::from_str::<AzureConfig>("credential: cli").unwrap_err();
        assert!(err.to_string().contains("workloadIdentity"), "{err}");
    }
}
