//! The GCP IAM control plane: reads project and service account IAM policies (version 3) and
//! the roles they bind, proposes the `gcp` ladder, and carries out each rung (`rungs/`).
//!
//! Every call makes one attempt (see [`crate::client`]): a policy edit is one etag-guarded
//! read-modify-write, and a moved etag is a `Conflict` the engine answers with a fresh plan.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use firebreak_containment::alert::Parameter;
use firebreak_containment::plane::{
    Change, Check, Cloud, KindSpec, Observation, Outcome, PlanInput, Plane, PlaneError, Route,
    Verification,
};
use google_cloud_auth::credentials::{Builder as CredentialsBuilder, Credentials};
use google_cloud_gax::error::rpc::Code;
use serde::{Deserialize, Serialize};

use crate::client::{api_error, status_code, Api, PolicyOf};
use crate::config::GcpConfig;
use crate::ladder::{GcpState, ProjectPolicy, ServiceAccountState};
use crate::names::{ksa_member, project_of, service_account_name, Permission, Principal};
use crate::policy::from_api;
use crate::rungs::{
    deny_policy, disable_service_account, remove_binding_member, remove_wi_user, DENY_POLICY,
    DISABLE_SERVICE_ACCOUNT, REMOVE_BINDING_MEMBER, REMOVE_WI_USER,
};
use crate::{GcpError, PLANE};

/// What a GCP action does, journaled with its intent: one rung's spec, pre-images included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "rung", rename_all = "snake_case", deny_unknown_fields)]
pub enum GcpSpec {
    RemoveBindingMember(remove_binding_member::Spec),
    DenyPolicy(deny_policy::Spec),
    RemoveWiUser(remove_wi_user::Spec),
    DisableServiceAccount(disable_service_account::Spec),
}

pub struct GcpIam {
    config: GcpConfig,
    api: Api,
    /// Role → included permissions, from `gcp.roles` and the Roles API.
    roles: Mutex<BTreeMap<String, BTreeSet<String>>>,
}

impl GcpIam {
    /// Builds the clients with Application Default Credentials.
    pub async fn new(config: GcpConfig) -> Result<GcpIam, GcpError> {
        let credentials = CredentialsBuilder::default()
            .build()
            .map_err(|e| GcpError::Credentials(e.to_string()))?;
        GcpIam::with_credentials(config, credentials).await
    }

    /// Builds the clients with the given credentials (tests: a local token endpoint).
    pub async fn with_credentials(
        config: GcpConfig,
        credentials: Credentials,
    ) -> Result<GcpIam, GcpError> {
        validate(&config)?;
        // rustls refuses to guess when the binary links two crypto providers; an Err means one
        // is installed already, which serves as well.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        Ok(GcpIam {
            api: Api::new(&config, credentials).await?,
            roles: Mutex::new(config.roles.clone()),
            config,
        })
    }

    /// The agent's GCP principals: envelope principals written as GCP members. Other clouds'
    /// principals (ARNs, …) are not ours; a GCP-looking one that does not parse is an error.
    fn principals(input: &PlanInput<'_>) -> Result<Vec<Principal>, PlaneError> {
        let mut out = Vec::new();
        for (i, text) in input.envelope.spec.identity.principals.iter().enumerate() {
            if !(text.starts_with("serviceAccount:") || text.starts_with("principal://")) {
                continue;
            }
            let principal = Principal::parse(text).map_err(|e| PlaneError::Invalid {
                plane: PLANE,
                detail: format!("envelope spec.identity.principals[{i}]: {e}"),
            })?;
            if !out.contains(&principal) {
                out.push(principal);
            }
        }
        Ok(out)
    }

    /// Reads everything the ladder needs. Nothing is written.
    async fn state(
        &self,
        input: &PlanInput<'_>,
        permission: &str,
        resource: &str,
    ) -> Result<GcpState, PlaneError> {
        let invalid = |detail: String| PlaneError::Invalid {
            plane: PLANE,
            detail,
        };
        let breach =
            Permission::parse(permission).map_err(|e| invalid(format!("parameter.action: {e}")))?;
        let breach_project =
            project_of(resource).map_err(|e| invalid(format!("parameter.resource: {e}")))?;
        let principals = Self::principals(input)?;
        if principals.is_empty() {
            return Err(invalid(format!(
                "the envelope of {} names no GCP principal in spec.identity.principals; add \
                 serviceAccount:NAME@PROJECT.iam.gserviceaccount.com or its principal:// identifier",
                input.alert.agent.key()
            )));
        }
        let read: Vec<&String> = match &breach_project {
            Some(p) if !self.config.projects.contains(p) => {
                return Err(invalid(format!(
                    "parameter.resource names project {p}, which is not under gcp.projects ({}); add it \
                     there to let Firebreak read and edit its IAM policy",
                    self.config.projects.join(", ")
                )))
            }
            Some(p) => vec![p],
            None => self.config.projects.iter().collect(),
        };
        let mut projects = Vec::new();
        for project in read {
            let policy = self.api.policy(PolicyOf::Project(project)).await?;
            projects.push(ProjectPolicy {
                project: project.clone(),
                bindings: policy.bindings.iter().map(from_api).collect(),
            });
        }
        let mut service_accounts = Vec::new();
        for principal in &principals {
            let Principal::ServiceAccount { email } = principal else {
                continue;
            };
            let name = service_account_name(email);
            let account =
                self.api
                    .service_account(&name)
                    .await
                    .map_err(|e| match status_code(&e) {
                        Some(Code::NotFound) => invalid(format!(
                        "service account {email} (envelope spec.identity.principals) does not exist"
                    )),
                        _ => api_error(&format!("reading service account {email}"), e),
                    })?;
            let policy = self.api.policy(PolicyOf::ServiceAccount(&name)).await?;
            service_accounts.push(ServiceAccountState {
                principal: principal.clone(),
                email: email.clone(),
                disabled: account.disabled,
                bindings: policy.bindings.iter().map(from_api).collect(),
            });
        }
        let wanted: BTreeSet<String> = projects
            .iter()
            .flat_map(|p| p.bindings.iter().map(|b| b.role.clone()))
            .collect();
        let mut roles = BTreeMap::new();
        let mut unknown_roles = BTreeMap::new();
        for role in wanted {
            match self.role_permissions(&role).await? {
                Ok(perms) => {
                    roles.insert(role, perms);
                }
                Err(why) => {
                    unknown_roles.insert(role, why);
                }
            }
        }
        let ksa_member = self.config.pool_domain().map(|pool| {
            ksa_member(
                &pool,
                &input.alert.agent.namespace,
                &input.alert.agent.service_account,
            )
        });
        Ok(GcpState {
            breach,
            resource: resource.to_string(),
            breach_project,
            principals,
            ksa_member,
            projects,
            service_accounts,
            roles,
            unknown_roles,
        })
    }

    /// `role`'s permissions from `gcp.roles`, the cache, or the Roles API; `Err` says why unknown.
    async fn role_permissions(
        &self,
        role: &str,
    ) -> Result<Result<BTreeSet<String>, String>, PlaneError> {
        if let Some(perms) = self.cached_role(role) {
            return Ok(Ok(perms));
        }
        match self.api.role(role).await {
            Ok(found) => {
                let perms: BTreeSet<String> = found.included_permissions.into_iter().collect();
                if let Ok(mut cache) = self.roles.lock() {
                    cache.insert(role.to_string(), perms.clone());
                }
                Ok(Ok(perms))
            }
            Err(e)
                if matches!(
                    status_code(&e),
                    Some(Code::NotFound | Code::PermissionDenied)
                ) =>
            {
                Ok(Err(format!("the Roles API answered {e}")))
            }
            Err(e) if e.is_binding() => Ok(Err("not a role name the Roles API takes".into())),
            Err(e) => Err(api_error(&format!("expanding {role}"), e)),
        }
    }

    fn cached_role(&self, role: &str) -> Option<BTreeSet<String>> {
        self.roles.lock().ok()?.get(role).cloned()
    }
}

fn validate(config: &GcpConfig) -> Result<(), GcpError> {
    let project_id = |p: &str| {
        (6..=30).contains(&p.len())
            && p.starts_with(|c: char| c.is_ascii_lowercase())
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    if config.projects.is_empty() {
        return Err(GcpError::Config {
            field: "projects",
            reason: "list at least one project id whose IAM policy Firebreak may edit".into(),
        });
    }
    for p in config.projects.iter().chain(&config.workload_pool) {
        if !project_id(p) {
            return Err(GcpError::Config {
                field: if config.projects.contains(p) {
                    "projects"
                } else {
                    "workloadPool"
                },
                reason: format!(
                    "{p:?} is not a project id (6-30 lowercase letters, digits and hyphens, starting with a letter)"
                ),
            });
        }
    }
    for (role, perms) in &config.roles {
        for perm in perms {
            Permission::parse(perm).map_err(|e| GcpError::Config {
                field: "roles",
                reason: format!("{role}: {e}"),
            })?;
        }
    }
    Ok(())
}

#[async_trait]
impl Plane for GcpIam {
    const KEY: &'static str = "gcp";
    const ROUTE: Route = Route::Identity(Cloud::Gcp);
    const KINDS: &'static [&'static KindSpec] = &[
        &REMOVE_BINDING_MEMBER,
        &DENY_POLICY,
        &REMOVE_WI_USER,
        &DISABLE_SERVICE_ACCOUNT,
    ];
    type Spec = GcpSpec;

    fn kind_of(spec: &GcpSpec) -> &'static KindSpec {
        match spec {
            GcpSpec::RemoveBindingMember(_) => &REMOVE_BINDING_MEMBER,
            GcpSpec::DenyPolicy(_) => &DENY_POLICY,
            GcpSpec::RemoveWiUser(_) => &REMOVE_WI_USER,
            GcpSpec::DisableServiceAccount(_) => &DISABLE_SERVICE_ACCOUNT,
        }
    }

    /// The envelope names a GCP principal (a Google service account or a Workload Identity
    /// principal) this plane can find in IAM policies.
    fn handles(&self, input: &PlanInput<'_>) -> bool {
        input
            .envelope
            .spec
            .identity
            .principals
            .iter()
            .any(|p| Principal::parse(p).is_ok())
    }

    async fn observe(
        &self,
        input: &PlanInput<'_>,
    ) -> Result<Box<dyn Observation<GcpSpec>>, PlaneError> {
        let Parameter::Identity { action, resource } = &input.alert.parameter else {
            return Err(PlaneError::Unsupported {
                plane: PLANE,
                detail: format!(
                    "a {} alert is not an identity alert; only those are routed to GCP IAM",
                    input.alert.dimension()
                ),
            });
        };
        Ok(Box::new(self.state(input, action, resource).await?))
    }

    async fn change(&self, spec: &GcpSpec, change: Change) -> Result<Outcome, PlaneError> {
        match spec {
            GcpSpec::RemoveBindingMember(s) => s.change(&self.api, change).await,
            GcpSpec::DenyPolicy(s) => s.change(&self.api, change).await,
            GcpSpec::RemoveWiUser(s) => s.change(&self.api, change).await,
            GcpSpec::DisableServiceAccount(s) => s.change(&self.api, change).await,
        }
    }

    async fn check(&self, spec: &GcpSpec, check: Check) -> Result<Verification, PlaneError> {
        match spec {
            GcpSpec::RemoveBindingMember(s) => s.check(&self.api, check).await,
            GcpSpec::DenyPolicy(s) => s.check(&self.api, check).await,
            GcpSpec::RemoveWiUser(s) => s.check(&self.api, check).await,
            GcpSpec::DisableServiceAccount(s) => s.check(&self.api, check).await,
        }
    }

    fn verify_deadline(&self) -> Duration {
        self.config.verify_deadline
    }
}

#[cfg(test)]
mod tests {
    use firebreak_containment::plane::Kinds;

    use super::*;

    #[test]
    fn the_gcp_ladder_is_dense_and_ends_in_approval() {
        let mut kinds = Kinds::default();
        kinds.declare(GcpIam::KINDS).expect("declare");
        assert_eq!(kinds.check_ladders(), Ok(()));
        let ladder: Vec<(&str, u8, bool)> = kinds
            .iter()
            .filter(|k| k.ladder == "gcp")
            .map(|k| (k.name, k.rung, k.approval_only))
            .collect();
        assert_eq!(
            ladder,
            [
                ("gcp.deny_policy", 1, false),
                ("gcp.disable_service_account", 3, true),
                ("gcp.remove_binding_member", 0, false),
                ("gcp.remove_wi_user", 2, false),
            ]
        );
    }
}
