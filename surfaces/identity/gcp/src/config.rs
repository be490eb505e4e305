//! `gcp` in the daemon config.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use firebreak_containment::config::duration;
use serde::Deserialize;

/// Which projects' IAM policies Firebreak reads and edits, and how it reaches GCP.
///
/// ```yaml
/// gcp:
///   projects: [acme-prod]                # project ids whose IAM policies are read and edited
///   workloadPool: acme-prod              # optional: the GKE pool project, for the
///                                        # serviceAccount:acme-prod.svc.id.goog[NS/KSA] member
///   verifyDeadline: 10m                  # how long verification may poll (IAM takes 2-7+ min)
///   requestTimeout: 30s                  # one HTTP attempt
///   roles:                               # optional: role → permissions, used before (and
///     roles/storage.objectViewer: [storage.objects.get, storage.objects.list]  # instead of)
///                                        # asking the IAM Roles API
///   endpoints:                           # optional: tests and private endpoints only
///     resourceManager: http://127.0.0.1:8080
///     iam: http://127.0.0.1:8080
/// ```
///
/// Credentials are Application Default Credentials (`GOOGLE_APPLICATION_CREDENTIALS`, gcloud's
/// ADC file, or the metadata server / GKE Workload Identity).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GcpConfig {
    /// Project ids whose IAM policies hold the agents' bindings. The project is the narrowest
    /// resource this version edits: resource-level, folder and organization policies are not read.
    pub projects: Vec<String>,
    /// The project id of the GKE workload identity pool (`PROJECT.svc.id.goog`). Needed for
    /// `gcp.remove_wi_user`, which edits the `serviceAccount:PROJECT.svc.id.goog[NS/KSA]` member.
    #[serde(default)]
    pub workload_pool: Option<String>,
    #[serde(deserialize_with = "duration", default = "default_verify_deadline")]
    pub verify_deadline: Duration,
    #[serde(deserialize_with = "duration", default = "default_request_timeout")]
    pub request_timeout: Duration,
    /// Role → the permissions it includes. Roles not listed are expanded with the IAM Roles API
    /// (`roles.get` / `projects.roles.get`, `includedPermissions`) and cached.
    #[serde(default)]
    pub roles: BTreeMap<String, BTreeSet<String>>,
    #[serde(default)]
    pub endpoints: Endpoints,
}

/// Endpoint overrides; absent: the public Google endpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Endpoints {
    /// Cloud Resource Manager v3 (projects' IAM policies).
    #[serde(default)]
    pub resource_manager: Option<String>,
    /// IAM: v1 (service accounts, roles) and v2 (deny policies).
    #[serde(default)]
    pub iam: Option<String>,
}

impl GcpConfig {
    /// A config for `projects` with every other field at its default.
    pub fn for_projects(projects: Vec<String>) -> GcpConfig {
        GcpConfig {
            projects,
            workload_pool: None,
            verify_deadline: default_verify_deadline(),
            request_timeout: default_request_timeout(),
            roles: BTreeMap::new(),
            endpoints: Endpoints::default(),
        }
    }

    /// `PROJECT.svc.id.goog`, when a pool is configured.
    pub fn pool_domain(&self) -> Option<String> {
        self.workload_pool
            .as_ref()
            .map(|p| format!("{p}.svc.id.goog"))
    }
}

fn default_verify_deadline() -> Duration {
    Duration::from_secs(600)
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_documented_shape_and_rejects_typos() {
        let config: GcpConfig = serde_yaml::from_str(
            "projects: [acme-prod]\n\
             workloadPool: acme-prod\n\
             verifyDeadline: 5m\n\
             roles:\n  roles/storage.objectViewer: [storage.objects.get]\n\
             endpoints: {resourceManager: 'http://127.0.0.1:1', iam: 'http://127.0.0.1:2'}\n",
        )
        .unwrap();
        assert_eq!(config.verify_deadline, Duration::from_secs(300));
        assert_eq!(config.request_timeout, Duration::from_secs(30));
        assert_eq!(
            config.pool_domain().as_deref(),
            Some("acme-prod.svc.id.goog")
        );
        assert!(config.roles["roles/storage.objectViewer"].contains("storage.objects.get"));
        let err = serde_yaml::from_str::<GcpConfig>("projects: [a]\nproject: b").unwrap_err();
        assert!(err.to_string().contains("unknown field `project`"), "{err}");
        let err =
            serde_yaml::from_str::<GcpConfig>("projects: [a]\nverifyDeadline: soon").unwrap_err();
        assert!(err.to_string().contains("not a duration"), "{err}");
        let err = serde_yaml::from_str::<GcpConfig>("workloadPool: a").unwrap_err();
        assert!(
            err.to_string().contains("missing field `projects`"),
            "{err}"
        );
    }
}
