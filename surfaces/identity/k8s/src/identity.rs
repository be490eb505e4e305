//! Which cloud identities a ServiceAccount's pods receive (docs/ARCHITECTURE.md §Planes, "Permissions beat links"):
//! the ladder of each cloud starts on the permissions of these identities, not on the link.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::GkeWorkloadPool;

/// IRSA: the IAM role the pod's web identity token can assume.
pub const IRSA_ROLE_ARN: &str = "eks.amazonaws.com/role-arn";
/// GKE Workload Identity: the Google service account the KSA impersonates.
pub const GKE_SERVICE_ACCOUNT: &str = "iam.gke.io/gcp-service-account";
/// AKS Workload Identity: the client id of the user-assigned managed identity (or app).
pub const AZURE_CLIENT_ID: &str = "azure.workload.identity/client-id";
/// AKS Workload Identity: the tenant, when it is not the cluster's.
pub const AZURE_TENANT_ID: &str = "azure.workload.identity/tenant-id";

/// A cloud identity a ServiceAccount maps to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cloud", rename_all = "camelCase")]
pub enum CloudIdentity {
    /// `arn:aws:iam::ACCOUNT:role/PATH/NAME` (IRSA).
    #[serde(rename_all = "camelCase")]
    AwsIamRole {
        arn: String,
        account: String,
        name: String,
    },
    /// `NAME@PROJECT.iam.gserviceaccount.com` (GKE Workload Identity, impersonation).
    #[serde(rename_all = "camelCase")]
    GcpServiceAccount { email: String, project: String },
    /// `principal://iam.googleapis.com/projects/NUM/locations/global/workloadIdentityPools/
    /// PROJECT.svc.id.goog/subject/ns/NS/sa/KSA` (GKE Workload Identity Federation, direct
    /// access: IAM grants name the KSA itself; no annotation is involved).
    #[serde(rename_all = "camelCase")]
    GcpPrincipal {
        principal: String,
        project_number: String,
        project_id: String,
        namespace: String,
        service_account: String,
    },
    /// A user-assigned managed identity or app registration (AKS Workload Identity).
    #[serde(rename_all = "camelCase")]
    AzureIdentity {
        client_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tenant_id: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("ServiceAccount {namespace}/{name} does not exist; check k8s.agents and the cluster")]
    NotFound { namespace: String, name: String },
    #[error("ServiceAccount {namespace}/{name}: annotation {key}={value:?} {reason}")]
    Annotation {
        namespace: String,
        name: String,
        key: &'static str,
        value: String,
        reason: String,
    },
    #[error("{0:?} is not a GKE workload identity principal: {1}")]
    Principal(String, String),
    #[error("k8s.gkeWorkloadPool.{field}: {reason}")]
    Pool { field: &'static str, reason: String },
    #[error("reading ServiceAccount {namespace}/{name}: {detail}")]
    Api {
        namespace: String,
        name: String,
        detail: String,
    },
}

/// The cloud identities of the ServiceAccount `namespace/name`, from its annotations (and, with
/// a GKE pool configured, the direct-access principal every KSA of that cluster is).
pub fn identities_of(
    namespace: &str,
    name: &str,
    annotations: &BTreeMap<String, String>,
    pool: Option<&GkeWorkloadPool>,
) -> Result<Vec<CloudIdentity>, IdentityError> {
    let bad = |key: &'static str, value: &str, reason: &str| IdentityError::Annotation {
        namespace: namespace.to_string(),
        name: name.to_string(),
        key,
        value: value.to_string(),
        reason: reason.to_string(),
    };
    let mut out = Vec::new();
    if let Some(arn) = annotations.get(IRSA_ROLE_ARN) {
        out.push(parse_role_arn(arn).map_err(|r| bad(IRSA_ROLE_ARN, arn, &r))?);
    }
    if let Some(email) = annotations.get(GKE_SERVICE_ACCOUNT) {
        out.push(parse_gsa(email).map_err(|r| bad(GKE_SERVICE_ACCOUNT, email, &r))?);
    }
    if let Some(pool) = pool {
        out.push(gke_principal(pool, namespace, name)?);
    }
    match (
        annotations.get(AZURE_CLIENT_ID),
        annotations.get(AZURE_TENANT_ID),
    ) {
        (Some(client), tenant) => {
            if !is_guid(client) {
                return Err(bad(
                    AZURE_CLIENT_ID,
                    client,
                    "is not a GUID such as 00000000-0000-0000-0000-000000000000",
                ));
            }
            if let Some(t) = tenant.filter(|t| !is_guid(t)) {
                return Err(bad(AZURE_TENANT_ID, t, "is not a GUID"));
            }
            out.push(CloudIdentity::AzureIdentity {
                client_id: client.to_ascii_lowercase(),
                tenant_id: tenant.map(|t| t.to_ascii_lowercase()),
            });
        }
        (None, Some(t)) => {
            return Err(bad(
                AZURE_TENANT_ID,
                t,
                &format!("is set without {AZURE_CLIENT_ID}: the webhook injects no identity"),
            ))
        }
        (None, None) => {}
    }
    Ok(out)
}

fn parse_role_arn(arn: &str) -> Result<CloudIdentity, String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ["arn", partition, "iam", "", account, resource] = parts.as_slice() else {
        return Err("is not an IAM ARN (arn:aws:iam::ACCOUNT:role/NAME)".into());
    };
    if !matches!(*partition, "aws" | "aws-cn" | "aws-us-gov") {
        return Err(format!("has unknown partition {partition:?}"));
    }
    if account.len() != 12 || !account.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!("has account {account:?}; expected 12 digits"));
    }
    let Some(path) = resource.strip_prefix("role/") else {
        return Err(format!("names {resource:?}, not role/NAME"));
    };
    let role = path.rsplit('/').next().unwrap_or_default();
    if role.is_empty()
        || role.len() > 64
        || !role
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
    {
        return Err(format!(
            "has role name {role:?}; IAM allows 1-64 of [A-Za-z0-9+=,.@_-]"
        ));
    }
    Ok(CloudIdentity::AwsIamRole {
        arn: arn.to_string(),
        account: account.to_string(),
        name: role.to_string(),
    })
}

fn parse_gsa(email: &str) -> Result<CloudIdentity, String> {
    let Some((account, domain)) = email.split_once('@') else {
        return Err("is not an email address NAME@PROJECT.iam.gserviceaccount.com".into());
    };
    let Some(project) = domain.strip_suffix(".iam.gserviceaccount.com") else {
        return Err(format!(
            "has domain {domain:?}; expected PROJECT.iam.gserviceaccount.com"
        ));
    };
    if !(6..=30).contains(&account.len()) || !is_gcp_id(account) {
        return Err(format!(
            "has account id {account:?}; expected 6-30 of [a-z0-9-] starting with a letter"
        ));
    }
    if !is_gcp_id(project) {
        return Err(format!(
            "has project id {project:?}; expected [a-z0-9-] starting with a letter"
        ));
    }
    Ok(CloudIdentity::GcpServiceAccount {
        email: email.to_string(),
        project: project.to_string(),
    })
}

/// The direct-access principal of KSA `namespace/name` in `pool`.
pub fn gke_principal(
    pool: &GkeWorkloadPool,
    namespace: &str,
    name: &str,
) -> Result<CloudIdentity, IdentityError> {
    if pool.project_number.is_empty() || !pool.project_number.chars().all(|c| c.is_ascii_digit()) {
        return Err(IdentityError::Pool {
            field: "projectNumber",
            reason: format!(
                "{:?} is not a project number (digits only)",
                pool.project_number
            ),
        });
    }
    if !(6..=30).contains(&pool.project_id.len()) || !is_gcp_id(&pool.project_id) {
        return Err(IdentityError::Pool {
            field: "projectId",
            reason: format!(
                "{:?} is not a project id (6-30 of [a-z0-9-], starting with a letter)",
                pool.project_id
            ),
        });
    }
    parse_gke_principal(&format!(
        "principal://iam.googleapis.com/projects/{}/locations/global/workloadIdentityPools/{}.svc.id.goog/subject/ns/{namespace}/sa/{name}",
        pool.project_number, pool.project_id
    ))
}

/// Parses the direct-access principal form, e.g. from an envelope's `identity.principals`.
pub fn parse_gke_principal(principal: &str) -> Result<CloudIdentity, IdentityError> {
    let bad = |why: &str| IdentityError::Principal(principal.to_string(), why.to_string());
    let rest = principal
        .strip_prefix("principal://iam.googleapis.com/projects/")
        .ok_or_else(|| bad("it must start with principal://iam.googleapis.com/projects/"))?;
    let parts: Vec<&str> = rest.split('/').collect();
    let [number, "locations", "global", "workloadIdentityPools", pool, "subject", "ns", namespace, "sa", name] =
        parts.as_slice()
    else {
        return Err(bad("expected projects/NUM/locations/global/workloadIdentityPools/PROJECT.svc.id.goog/subject/ns/NS/sa/KSA"));
    };
    if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit()) {
        return Err(bad("the project number must be digits"));
    }
    let project = pool
        .strip_suffix(".svc.id.goog")
        .filter(|p| is_gcp_id(p))
        .ok_or_else(|| bad("the pool must be PROJECT_ID.svc.id.goog"))?;
    if namespace.is_empty() || name.is_empty() {
        return Err(bad("namespace and ServiceAccount must not be empty"));
    }
    Ok(CloudIdentity::GcpPrincipal {
        principal: principal.to_string(),
        project_number: number.to_string(),
        project_id: project.to_string(),
        namespace: namespace.to_string(),
        service_account: name.to_string(),
    })
}

fn is_gcp_id(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.ends_with('-')
}

fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups
            .iter()
            .all(|g| g.chars().all(|c| c.is_ascii_hexdigit()))
}
