//! The Azure control plane: resolves the agent's managed identity, reads its role assignments,
//! their role definitions and its federated credentials; deletes, narrows and restores role
//! assignments; cuts and restores the federated credential.
//!
//! Role assignments have no etag. Before each delete the assignment is read and compared with
//! the plan's snapshot (a different grant under the name is a `Conflict`); the delete's status
//! says whether it changed anything (200) or found it gone (204). Restores PUT the snapshot
//! under the same name: 201 created, 200 already identical; a 409 means the name or the same
//! grant exists already, which is then read to decide between done and `Conflict`.

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
use firebreak_containment::action::Surface;
use firebreak_containment::alert::{Dimension, Parameter};
use firebreak_containment::plan::Candidate;
use firebreak_containment::surface::{
    ControlPlane, Observation, Op, PlanInput, Step, SurfaceError,
};

use crate::arm::{Arm, ArmError, Delete, FederatedCredential, Put, RoleAssignment};
use crate::config::{AzureConfig, CredentialKind};
use crate::ids::{parse_identity, parse_operation, ResourceId};
use crate::ladder::{ActionSpec, AzureState, Breach, Principal};
use crate::roles::Assignments;
use crate::{AzureError, PLANE};

pub use crate::arm::{ATTEMPTS, BACKOFF};

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
    fn identity(input: &PlanInput<'_>) -> Result<ResourceId, SurfaceError> {
        let principals = &input.envelope.spec.identity.principals;
        let identities: Vec<ResourceId> = principals
            .iter()
            .filter_map(|p| parse_identity(p).ok())
            .collect();
        match identities.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(SurfaceError::Invalid {
                plane: PLANE,
                detail: format!(
                    "the envelope's spec.identity.principals {principals:?} names no user-assigned managed identity; \
                     add its id (/subscriptions/SUB/resourceGroups/RG/providers/Microsoft.ManagedIdentity/userAssignedIdentities/NAME)"
                ),
            }),
            many => Err(SurfaceError::Invalid {
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
    pub async fn observe_state(
        &self,
        input: &PlanInput<'_>,
        breach: Breach,
    ) -> Result<AzureState, SurfaceError> {
        let identity = Self::identity(input)?;
        let found = self
            .arm
            .identity(&identity)
            .await
            .map_err(surface_error)?
            .ok_or_else(|| SurfaceError::Invalid {
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
            return Err(SurfaceError::Invalid {
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
                    SurfaceError::Invalid {
                        plane: PLANE,
                        detail: e.to_string(),
                    }
                })?;
            // At a scope, `principalId eq` lists assignments at, above and below it.
            for a in self
                .arm
                .role_assignments(&scope, &principal.principal_id)
                .await
                .map_err(surface_error)?
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
            if let Some(definition) = self
                .arm
                .role_definition(&role)
                .await
                .map_err(surface_error)?
            {
                rbac.definitions
                    .insert(role.to_ascii_lowercase(), definition);
            }
        }
        let federated = self
            .arm
            .federated_credentials(&identity)
            .await
            .map_err(surface_error)?;
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

    /// The assignment `a` stands for: its own name with the same grant, or (when ARM refused a
    /// second assignment of the same grant) an equivalent one at the same scope.
    async fn granted_by(&self, a: &RoleAssignment) -> Result<Option<String>, SurfaceError> {
        if let Some(current) = self
            .arm
            .role_assignment(&a.id)
            .await
            .map_err(surface_error)?
        {
            if current.properties.grant.same_as(&a.properties.grant) {
                return Ok(Some(current.name));
            }
            return Err(SurfaceError::Conflict {
                plane: PLANE,
                detail: format!(
                    "role assignment {} now grants {} to {}, not the snapshot's {} to {}",
                    a.name,
                    current.properties.grant.role_definition_id,
                    current.properties.grant.principal_id,
                    a.properties.grant.role_definition_id,
                    a.properties.grant.principal_id
                ),
            });
        }
        let Some(scope) = a.scope() else {
            return Ok(None);
        };
        let grant = &a.properties.grant;
        Ok(self
            .arm
            .role_assignments(&scope, &grant.principal_id)
            .await
            .map_err(surface_error)?
            .into_iter()
            .find(|b| {
                b.properties.scope.eq_ignore_ascii_case(&a.properties.scope)
                    && b.properties
                        .grant
                        .role_definition_id
                        .eq_ignore_ascii_case(&grant.role_definition_id)
            })
            .map(|b| b.name))
    }

    /// PUTs `a` from its snapshot; `true` when it created it.
    async fn ensure_present(&self, a: &RoleAssignment) -> Result<bool, SurfaceError> {
        match self.arm.put_role_assignment(a).await {
            Ok(Put::Created) => Ok(true),
            Ok(Put::Unchanged) => Ok(false),
            // RoleAssignmentExists (the grant exists under another name) or
            // RoleAssignmentUpdateNotPermitted (the name holds another grant).
            Err(e) if e.status() == Some(409) => match self.granted_by(a).await? {
                Some(_) => Ok(false),
                None => Err(surface_error(e)),
            },
            Err(e) => Err(surface_error(e)),
        }
    }

    /// Deletes `a` unless its name now holds another grant; `true` when it deleted it.
    async fn ensure_deleted(&self, a: &RoleAssignment) -> Result<bool, SurfaceError> {
        if let Some(current) = self
            .arm
            .role_assignment(&a.id)
            .await
            .map_err(surface_error)?
        {
            if !current.properties.grant.same_as(&a.properties.grant) {
                return Err(SurfaceError::Conflict {
                    plane: PLANE,
                    detail: format!(
                        "role assignment {} changed since the plan (role {}, principal {})",
                        a.id,
                        current.properties.grant.role_definition_id,
                        current.properties.grant.principal_id
                    ),
                });
            }
        }
        Ok(self
            .arm
            .delete_role_assignment(&a.id)
            .await
            .map_err(surface_error)?
            == Delete::Deleted)
    }

    /// Whether ARM no longer returns `a`, neither by name nor in the principal's list.
    async fn absent(&self, a: &RoleAssignment) -> Result<Option<String>, SurfaceError> {
        if self
            .arm
            .role_assignment(&a.id)
            .await
            .map_err(surface_error)?
            .is_some()
        {
            return Ok(Some(format!("ARM still returns role assignment {}", a.id)));
        }
        let Some(scope) = a.scope() else {
            return Ok(None);
        };
        let listed = self
            .arm
            .role_assignments(&scope, &a.properties.grant.principal_id)
            .await
            .map_err(surface_error)?
            .iter()
            .any(|b| b.id.eq_ignore_ascii_case(&a.id));
        Ok(listed.then(|| format!("ARM still lists role assignment {} at {scope}", a.name)))
    }

    async fn delete_assignment(
        &self,
        op: Op,
        a: &RoleAssignment,
        role: &str,
        breach: &Breach,
    ) -> Result<Step, SurfaceError> {
        let what = format!(
            "role assignment {} ({role} at {})",
            a.name, a.properties.scope
        );
        Ok(match op {
            Op::Apply => {
                if self.ensure_deleted(a).await? {
                    Step::changed(format!("deleted {what}"))
                } else {
                    Step::unchanged(format!("{what} is already gone"))
                }
            }
            Op::Verify => match self.absent(a).await? {
                None => Step::ok(format!(
                    "{what} is gone: {} is no longer granted through it",
                    breach.describe()
                )),
                Some(still) => Step::failed(format!("{still} (propagating)")),
            },
            Op::Revert => {
                if self.ensure_present(a).await? {
                    Step::changed(format!("re-created {what} from its snapshot"))
                } else {
                    Step::unchanged(format!("{what} exists already"))
                }
            }
            Op::VerifyReverted => match self.granted_by(a).await? {
                Some(name) => Step::ok(format!(
                    "{role} at {} is granted again by {name}",
                    a.properties.scope
                )),
                None => Step::failed(format!("ARM does not return {what} yet")),
            },
        })
    }

    async fn narrow_assignment(
        &self,
        op: Op,
        original: &RoleAssignment,
        narrow: &[RoleAssignment],
        role: &str,
    ) -> Result<Step, SurfaceError> {
        let scopes: Vec<&str> = narrow.iter().map(|a| a.properties.scope.as_str()).collect();
        let what = format!(
            "{role} at {} narrowed to {}",
            original.properties.scope,
            scopes.join(", ")
        );
        Ok(match op {
            // Narrow assignments first, so the envelope's uses never lose their grant.
            Op::Apply => {
                let mut changed = false;
                for a in narrow {
                    changed |= self.ensure_present(a).await?;
                }
                changed |= self.ensure_deleted(original).await?;
                if changed {
                    Step::changed(what)
                } else {
                    Step::unchanged(format!("{what}: already in place"))
                }
            }
            Op::Verify => {
                if let Some(still) = self.absent(original).await? {
                    return Ok(Step::failed(format!("{still} (propagating)")));
                }
                for a in narrow {
                    if self.granted_by(a).await?.is_none() {
                        return Ok(Step::failed(format!(
                            "ARM does not return narrowed role assignment {} at {} yet",
                            a.name, a.properties.scope
                        )));
                    }
                }
                Step::ok(what)
            }
            // The original first, for the same reason.
            Op::Revert => {
                let mut changed = self.ensure_present(original).await?;
                for a in narrow {
                    changed |= self
                        .arm
                        .delete_role_assignment(&a.id)
                        .await
                        .map_err(surface_error)?
                        == Delete::Deleted;
                }
                let detail = format!(
                    "{role} at {} restored; {} narrowed assignment(s) removed",
                    original.properties.scope,
                    narrow.len()
                );
                if changed {
                    Step::changed(detail)
                } else {
                    Step::unchanged(format!("{detail} already"))
                }
            }
            Op::VerifyReverted => {
                if self.granted_by(original).await?.is_none() {
                    return Ok(Step::failed(format!(
                        "ARM does not return role assignment {} yet",
                        original.name
                    )));
                }
                for a in narrow {
                    if let Some(still) = self.absent(a).await? {
                        return Ok(Step::failed(still));
                    }
                }
                Step::ok(format!("{role} at {} is back", original.properties.scope))
            }
        })
    }

    async fn delete_federated(
        &self,
        op: Op,
        c: &FederatedCredential,
    ) -> Result<Step, SurfaceError> {
        let what = format!(
            "federated identity credential {} ({} from {})",
            c.name, c.properties.subject, c.properties.issuer
        );
        let current = match op {
            Op::Apply | Op::Revert => self
                .arm
                .federated_credential(&c.id)
                .await
                .map_err(surface_error)?,
            Op::Verify | Op::VerifyReverted => None,
        };
        if let Some(current) = &current {
            if current.properties != c.properties {
                return Err(SurfaceError::Conflict {
                    plane: PLANE,
                    detail: format!(
                        "federated identity credential {} changed since the plan (now subject {} from {})",
                        c.name, current.properties.subject, current.properties.issuer
                    ),
                });
            }
        }
        Ok(match op {
            Op::Apply => match self
                .arm
                .delete_federated_credential(&c.id)
                .await
                .map_err(surface_error)?
            {
                Delete::Deleted => Step::changed(format!(
                    "deleted {what}; tokens issued before stay valid for up to 24 hours"
                )),
                Delete::AlreadyGone => Step::unchanged(format!("{what} is already gone")),
            },
            Op::Revert => match self
                .arm
                .put_federated_credential(c)
                .await
                .map_err(surface_error)?
            {
                Put::Created => Step::changed(format!("re-created {what} from its snapshot")),
                Put::Unchanged => Step::unchanged(format!("{what} exists already")),
            },
            Op::Verify => match self
                .arm
                .federated_credential(&c.id)
                .await
                .map_err(surface_error)?
            {
                None => Step::ok(format!("{what} is gone: no new tokens for the agent")),
                Some(_) => Step::failed(format!("ARM still returns {what}")),
            },
            Op::VerifyReverted => match self
                .arm
                .federated_credential(&c.id)
                .await
                .map_err(surface_error)?
            {
                Some(current) if current.properties == c.properties => {
                    Step::ok(format!("{what} is back"))
                }
                Some(_) => Step::failed(format!("{what} exists with other properties")),
                None => Step::failed(format!("ARM does not return {what} yet")),
            },
        })
    }
}

#[async_trait]
impl ControlPlane for AzureRbac {
    fn surface(&self) -> Surface {
        Surface::Azure
    }

    /// An identity alert whose action is an Azure operation (`Microsoft.X/…`), about an agent
    /// whose envelope names a user-assigned managed identity.
    fn handles(&self, input: &PlanInput<'_>) -> bool {
        let Parameter::Identity { action, .. } = &input.alert.parameter else {
            return false;
        };
        input.alert.dimension == Dimension::Identity
            && parse_operation(action).is_ok()
            && Self::identity(input).is_ok()
    }

    async fn observe(&self, input: &PlanInput<'_>) -> Result<Box<dyn Observation>, SurfaceError> {
        let Parameter::Identity { action, resource } = &input.alert.parameter else {
            return Err(SurfaceError::Unsupported {
                plane: PLANE,
                detail: format!("dimension {} is not identity", input.alert.dimension),
            });
        };
        let invalid = |e: crate::ids::IdError, field: &str| SurfaceError::Invalid {
            plane: PLANE,
            detail: format!("parameter.{field}: {e}"),
        };
        let breach = Breach {
            action: parse_operation(action)
                .map_err(|e| invalid(e, "action"))?
                .to_string(),
            resource: ResourceId::parse(resource).map_err(|e| invalid(e, "resource"))?,
        };
        Ok(Box::new(self.observe_state(input, breach).await?))
    }

    async fn run(&self, action: &Candidate, op: Op) -> Result<Step, SurfaceError> {
        match &ActionSpec::from_candidate(action)? {
            ActionSpec::DeleteAssignment {
                assignment,
                role_name,
                breach,
                ..
            } => {
                self.delete_assignment(op, assignment, role_name, breach)
                    .await
            }
            ActionSpec::NarrowAssignment {
                original,
                narrow,
                role_name,
                ..
            } => {
                self.narrow_assignment(op, original, narrow, role_name)
                    .await
            }
            ActionSpec::DeleteFederatedCredential { credential, .. } => {
                self.delete_federated(op, credential).await
            }
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

fn surface_error(e: ArmError) -> SurfaceError {
    let detail = e.to_string();
    match e.status() {
        Some(401 | 403) => SurfaceError::Refused {
            plane: PLANE,
            detail: format!(
                "{detail}; grant Firebreak's identity Microsoft.Authorization/roleAssignments/read, write, delete and \
                 roleDefinitions/read (e.g. Role Based Access Control Administrator), and \
                 Microsoft.ManagedIdentity/userAssignedIdentities/read and federatedIdentityCredentials/read, write, \
                 delete (Managed Identity Contributor)"
            ),
        },
        Some(409) => SurfaceError::Conflict { plane: PLANE, detail },
        _ if e.is_transient() || matches!(e, ArmError::Credential(_)) => {
            SurfaceError::Unreachable { plane: PLANE, detail }
        }
        _ if matches!(e, ArmError::Decode { .. }) => SurfaceError::Invalid { plane: PLANE, detail },
        _ => SurfaceError::Refused { plane: PLANE, detail },
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
