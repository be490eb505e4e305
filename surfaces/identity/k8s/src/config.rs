//! `k8s` in the daemon config.

use std::collections::BTreeMap;
use std::time::Duration;

use firebreak_containment::config::duration;
use serde::{Deserialize, Serialize};

/// How to reach the cluster and which ServiceAccount each agent runs as.
///
/// ```yaml
/// k8s:
///   apiServer: https://127.0.0.1:6443   # optional; default: in-cluster, then kubeconfig
///   agents:
///     prod-eks/payments/Deployment/payment-agent: {namespace: payments, serviceAccount: payment-agent}
///   verifyDeadline: 30s
///   gkeWorkloadPool: {projectId: acme-prod, projectNumber: "123456789012"}   # optional
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct K8sConfig {
    /// The API server URL, without credentials (tests, port-forwards). When absent the client
    /// is configured like kubectl: in-cluster ServiceAccount first, then `$KUBECONFIG`.
    #[serde(default)]
    pub api_server: Option<String>,
    /// Agent key (`cluster/namespace/Kind/name`) → the ServiceAccount it runs as.
    #[serde(default)]
    pub agents: BTreeMap<String, AgentServiceAccount>,
    /// How long verification may poll: RBAC changes reach every API server within seconds.
    #[serde(deserialize_with = "duration", default = "default_deadline")]
    pub verify_deadline: Duration,
    /// The GKE cluster's workload identity pool, for the direct-access `principal://` form.
    #[serde(default)]
    pub gke_workload_pool: Option<GkeWorkloadPool>,
}

impl Default for K8sConfig {
    fn default() -> Self {
        K8sConfig {
            api_server: None,
            agents: BTreeMap::new(),
            verify_deadline: default_deadline(),
            gke_workload_pool: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentServiceAccount {
    pub namespace: String,
    pub service_account: String,
}

/// `PROJECT_ID.svc.id.goog` and the project number IAM principals are written with.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GkeWorkloadPool {
    pub project_id: String,
    pub project_number: String,
}

fn default_deadline() -> Duration {
    Duration::from_secs(30)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_documented_shape_and_rejects_typos() {
        let config: K8sConfig = serde_yaml::from_str(
            "apiServer: http://127.0.0.1:6443\n\
             agents:\n  c/payments/Deployment/a: {namespace: payments, serviceAccount: a}\n\
             verifyDeadline: 45s\n\
             gkeWorkloadPool: {projectId: acme-prod, projectNumber: '42'}\n",
        )
        .unwrap();
        assert_eq!(config.verify_deadline, Duration::from_secs(45));
        assert_eq!(
            config.agents["c/payments/Deployment/a"].service_account,
            "a"
        );
        let err = serde_yaml::from_str::<K8sConfig>("agent: {}").unwrap_err();
        assert!(err.to_string().contains("unknown field `agent`"), "{err}");
        let err = serde_yaml::from_str::<K8sConfig>("verifyDeadline: soon").unwrap_err();
        assert!(err.to_string().contains("not a duration"), "{err}");
    }
}
