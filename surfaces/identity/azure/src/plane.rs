//! The Azure control plane: resolves the agent's managed identity, reads its role assignments,
//! their role definitions and its federated credentials, proposes the `azure` ladder, and
//! carries out each rung (`rungs/`). Every ARM call is one attempt (see [`crate::arm`]); role
//! assignment writes are guarded by the plan's snapshot (see [`crate::guarded`]).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::TokenCredential;
use azure_identity::{
    ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId,
    WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};
use firebreak_containment::alert::Parameter;
use firebreak_containment::plane::{
    Change, Check, Cloud, KindSpec, Observation, Outcome, PlanInput, Plane, PlaneError, Route,
    Verification,
};
use serde::{Deserialize, Serialize};

use crate::arm::Arm;
use crate::config::{AzureConfig, CredentialKind};
use crate::ids::{parse_identity, parse_operation, ResourceId};
use crate::ladder::{AzureState, Breach, Principal};
use crate::roles::Assignments;
use crate::rungs::{
    delete_federated_credential, delete_role_assignment, narrow_role_assignment,
    DELETE_FEDERATED_CREDENTIAL, DELETE_ROLE_ASSIGNMENT, NARROW_ROLE_ASSIGNMENT,
};
use crate::{AzureError, PLANE};

/// What an Azure action does, journaled with its intent: one rung's spec, pre-images included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "rung", rename_all = "snake_case", deny_unknown_fields)]
pub enum AzureSpec {
    DeleteRoleAssignment(delete_role_assignment::Spec),
    NarrowRoleAssignment(narrow_role_assignment::Spec),
    DeleteFederatedCredential(delete_federated_credential::Spec),
}

/// Set by the AKS workload identity webhook in pods that use it.
const FEDERATED_TOKEN_FILE: &str = "AZURE_FEDERATED_TOKEN_FILE";

pub struct AzureRbac {
    arm: Arm,
    config: AzureConfig,
}

impl AzureRbac {
    /// Authenticates with `azure.credential` (workload identity on AKS, else managed identity).
    pub async fn new(config: AzureConfig) -> Result<AzureRbac, AzureError> {
        let credential = credential(&config)?;
        AzureRbac::with_credential(config, credential)
    }

    /// Authenticates with `credential` instead (another `azure_identity` credential, a test's).
    pub fn with_credential(
        config: AzureConfig,
        credential: Arc<dyn TokenCredential>,
    ) -> Result<AzureRbac, AzureError> {
        let endpoint = &config.arm_endpoint;
        if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
            return Err(AzureError::Config {
                field: "armEndpoint",
                reason: format!(
                    "{endpoint:?} is not an http(s) URL like https://management.azure.com"
                ),
            });
        }
        let arm = Arm::new(endpoint, credential, config.request_timeout).map_err(|e| {
            AzureError::Config {
                field: "armEndpoint",
                reason: format!("cannot build an HTTP client: {e}"),
            }
        })?;
        Ok(AzureRbac { arm, config })
    }

    /// The one user-assigned managed identity the envelope names.
    fn identity(input: &PlanInput<'_>) -> Result<ResourceId, PlaneError> {
        let principals = &input.envelope.spec.identity.principals;
        let identities: Vec<ResourceId> = principals
            .iter()
            .filter_map(|p| parse_identity(p).ok())
            .collect();
        match identities.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(PlaneError::Invalid {
                plane: PLANE,
                detail: format!(
                    "the envelope's spec.identity.principals {principals:?} names no user-assigned managed identity; \
                     add its id (/subscriptions/SUB/resourceGroups/RG/providers/Microsoft.ManagedIdentity/userAssignedIdentities/NAME)"
                ),
            }),
            many => Err(PlaneError::Invalid {
                plane: PLANE,
                detail: format!(
                    "the envelope's spec.identity.principals names {} managed identities; keep only the one the agent's \
                     ServiceAccount is federated with",
                    many.len()
                ),
            }),
        }
    }

    /// Reads the identity, its role assignments in every subscription the breach and the
    /// envelope touch, their role definitions and its federated credentials. Nothing is written.
    async fn state(&self, input: &PlanInput<'_>, breach: Breach) -> Result<AzureState, PlaneError> {
        let identity = Self::identity(input)?;
        let found = self
            .arm
            .identity(&identity)
            .await
            ?
            .ok_or_else(|| PlaneError::Invalid {
                plane: PLANE,
                detail: format!(
                    "managed identity {identity} does not exist (ARM answered 404); fix the envelope's spec.identity.principals"
                ),
            })?;
        let principal = Principal {
            identity: identity.clone(),
            principal_id: found.properties.principal_id,
            client_id: found.properties.client_id,
        };
        let Some(breach_subscription) = breach.resource.subscription() else {
            return Err(PlaneError::Invalid {
                plane: PLANE,
                detail: format!(
                    "parameter.resource {} is not inside a subscription (/subscriptions/SUB/…)",
                    breach.resource
                ),
            });
        };
        let mut subscriptions: BTreeSet<String> =
            BTreeSet::from([breach_subscription.to_ascii_lowercase()]);
        for entry in input.envelope.identity().permitted {
            if let Ok(r) = ResourceId::parse(&entry.value.resource) {
                subscriptions.extend(r.subscription().map(str::to_ascii_lowercase));
            }
        }
        let mut rbac = Assignments::default();
        for subscription in &subscriptions {
            let scope =
                ResourceId::parse(&format!("/subscriptions/{subscription}")).map_err(|e| {
                    PlaneError::Invalid {
                        plane: PLANE,
                        detail: e.to_string(),
                    }
                })?;
            // At a scope, `principalId eq` lists assignments at, above and below it.
            for a in self
                .arm
                .role_assignments(&scope, &principal.principal_id)
                .await?
            {
                if !rbac
                    .assignments
                    .iter()
                    .any(|b| b.id.eq_ignore_ascii_case(&a.id))
                {
                    rbac.assignments.push(a);
                }
            }
        }
        let roles: BTreeSet<String> = rbac
            .assignments
            .iter()
            .map(|a| a.properties.grant.role_definition_id.clone())
            .collect();
        for role in roles {
            // A role deleted since it was assigned grants nothing.
            if let Some(definition) = self.arm.role_definition(&role).await? {
                rbac.definitions
                    .insert(role.to_ascii_lowercase(), definition);
            }
        }
        let federated = self.arm.federated_credentials(&identity).await?;
        let agent = &input.alert.agent;
        Ok(AzureState {
            principal,
            breach,
            rbac,
            federated,
            subject: format!(
                "system:serviceaccount:{}:{}",
                agent.namespace, agent.service_account
            ),
            issuer: self.config.aks_oidc_issuer.clone(),
        })
    }
}

#[async_trait]
impl Plane for AzureRbac {
    const KEY: &'static str = "azure";
    const ROUTE: Route = Route::Identity(Cloud::Azure);
    const KINDS: &'static [&'static KindSpec] = &[
        &DELETE_ROLE_ASSIGNMENT,
        &NARROW_ROLE_ASSIGNMENT,
        &DELETE_FEDERATED_CREDENTIAL,
    ];
    type Spec = AzureSpec;

    fn kind_of(spec: &AzureSpec) -> &'static KindSpec {
        match spec {
            AzureSpec::DeleteRoleAssignment(_) => &DELETE_ROLE_ASSIGNMENT,
            AzureSpec::NarrowRoleAssignment(_) => &NARROW_ROLE_ASSIGNMENT,
            AzureSpec::DeleteFederatedCredential(_) => &DELETE_FEDERATED_CREDENTIAL,
        }
    }

    /// The envelope names exactly one user-assigned managed identity: the one this plane reads
    /// the role assignments and federated credentials of.
    fn handles(&self, input: &PlanInput<'_>) -> bool {
        Self::identity(input).is_ok()
    }

    async fn observe(
        &self,
        input: &PlanInput<'_>,
    ) -> Result<Box<dyn Observation<AzureSpec>>, PlaneError> {
        let Parameter::Identity { action, resource } = &input.alert.parameter else {
            return Err(PlaneError::Unsupported {
                plane: PLANE,
                detail: format!(
                    "a {} alert is not an identity alert; only those are routed to Azure RBAC",
                    input.alert.dimension()
                ),
            });
        };
        let invalid = |e: crate::ids::IdError, field: &str| PlaneError::Invalid {
            plane: PLANE,
            detail: format!("parameter.{field}: {e}"),
        };
        let breach = Breach {
            action: parse_operation(action)
                .map_err(|e| invalid(e, "action"))?
                .to_string(),
            resource: ResourceId::parse(resource).map_err(|e| invalid(e, "resource"))?,
        };
        Ok(Box::new(self.state(input, breach).await?))
    }

    async fn change(&self, spec: &AzureSpec, change: Change) -> Result<Outcome, PlaneError> {
        match spec {
            AzureSpec::DeleteRoleAssignment(s) => s.change(&self.arm, change).await,
            AzureSpec::NarrowRoleAssignment(s) => s.change(&self.arm, change).await,
            AzureSpec::DeleteFederatedCredential(s) => s.change(&self.arm, change).await,
        }
    }

    async fn check(&self, spec: &AzureSpec, check: Check) -> Result<Verification, PlaneError> {
        match spec {
            AzureSpec::DeleteRoleAssignment(s) => s.check(&self.arm, check).await,
            AzureSpec::NarrowRoleAssignment(s) => s.check(&self.arm, check).await,
            AzureSpec::DeleteFederatedCredential(s) => s.check(&self.arm, check).await,
        }
    }

    fn verify_deadline(&self) -> Duration {
        self.config.verify_deadline
    }
}

/// The `azure_identity` credential `config` asks for.
fn credential(config: &AzureConfig) -> Result<Arc<dyn TokenCredential>, AzureError> {
    let kind = config
        .credential
        .unwrap_or(if std::env::var_os(FEDERATED_TOKEN_FILE).is_some() {
            CredentialKind::WorkloadIdentity
        } else {
            CredentialKind::ManagedIdentity
        });
    let failed = |field: &'static str| {
        move |e: azure_core::Error| AzureError::Config {
            field,
            reason: format!("cannot build the {kind:?} credential: {e}"),
        }
    };
    match kind {
        CredentialKind::WorkloadIdentity => {
            let mut options = WorkloadIdentityCredentialOptions {
                client_id: config.client_id.clone(),
                tenant_id: config.tenant_id.clone(),
                ..WorkloadIdentityCredentialOptions::default()
            };
            if let Some(host) = &config.authority_host {
                if !host.starts_with("https://") {
                    return Err(AzureError::Config {
                        field: "authorityHost",
                        reason: format!(
                            "{host:?} must be an https URL (azure_identity refuses others)"
                        ),
                    });
                }
                let mut cloud = CustomConfiguration::default();
                cloud.authority_host = host.clone();
                options.credential_options.client_options.cloud =
                    Some(Arc::new(CloudConfiguration::Custom(cloud)));
            }
            Ok(WorkloadIdentityCredential::new(Some(options)).map_err(failed("credential"))?)
        }
        CredentialKind::ManagedIdentity => {
            let options = ManagedIdentityCredentialOptions {
                user_assigned_id: config.client_id.clone().map(UserAssignedId::ClientId),
                ..ManagedIdentityCredentialOptions::default()
            };
            Ok(ManagedIdentityCredential::new(Some(options)).map_err(failed("clientId"))?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_built_from_the_config_and_refuse_plain_http_authorities() {
        let managed = AzureConfig {
            credential: Some(CredentialKind::ManagedIdentity),
            client_id: Some("9a1c7f4e-0000-4000-8000-000000000001".into()),
            ..AzureConfig::default()
        };
        assert!(credential(&managed).is_ok());
        let workload = AzureConfig {
            credential: Some(CredentialKind::WorkloadIdentity),
            authority_host: Some("http://127.0.0.1:1".into()),
            ..AzureConfig::default()
        };
        let err = credential(&workload).unwrap_err().to_string();
        assert!(
            err.starts_with("azure.authorityHost:") && err.contains("https"),
            "{err}"
        );
        let bad_endpoint = AzureConfig {
            arm_endpoint: "management.azure.com".into(),
            ..AzureConfig::default()
        };
        let err = AzureRbac::with_credential(bad_endpoint, credential(&managed).unwrap())
            .err()
            .unwrap()
            .to_string();
        assert!(err.starts_with("azure.armEndpoint:"), "{err}");
    }
}
