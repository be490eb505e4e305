//! How GCP principals, permissions and resources are written in envelopes and alerts, and the
//! forms IAM v1 bindings and IAM v2 deny policies want them in.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The role that lets a Kubernetes ServiceAccount impersonate a Google service account.
pub const WI_USER_ROLE: &str = "roles/iam.workloadIdentityUser";

/// An identity action may carry this prefix (`gcp:storage.objects.get`) where the alert format
/// wants `service:Action`; the permission is what follows it.
pub const ACTION_PREFIX: &str = "gcp:";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error(
        "{0:?} is not a GCP principal: expected serviceAccount:NAME@PROJECT.iam.gserviceaccount.com \
         or principal://iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/\
         POOL/subject/ns/NAMESPACE/sa/KSA"
    )]
    Principal(String),
    #[error(
        "{0:?} is not a GCP permission: expected service.resource.verb such as storage.objects.get"
    )]
    Permission(String),
    #[error(
        "{0:?} is not a full resource name: expected //SERVICE.googleapis.com/... such as \
         //storage.googleapis.com/projects/_/buckets/b"
    )]
    Resource(String),
}

/// Who the agent acts as in GCP: an envelope `spec.identity.principals` entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Principal {
    /// A Google service account the pod impersonates through GKE Workload Identity.
    #[serde(rename_all = "camelCase")]
    ServiceAccount { email: String },
    /// The Kubernetes ServiceAccount itself, granted access directly through the pool.
    #[serde(rename_all = "camelCase")]
    WorkloadIdentity {
        project_number: String,
        pool: String,
        namespace: String,
        service_account: String,
    },
}

const WI_PRINCIPAL: &str = "principal://iam.googleapis.com/projects/";

impl Principal {
    pub fn parse(text: &str) -> Result<Principal, NameError> {
        let bad = || NameError::Principal(text.to_string());
        if let Some(email) = text.strip_prefix("serviceAccount:") {
            let (name, domain) = email.split_once('@').ok_or_else(bad)?;
            let plain = |s: &str| {
                !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
            };
            if !plain(name) || !plain(domain) || !domain.ends_with(".gserviceaccount.com") {
                return Err(bad());
            }
            return Ok(Principal::ServiceAccount {
                email: email.to_string(),
            });
        }
        let rest = text.strip_prefix(WI_PRINCIPAL).ok_or_else(bad)?;
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            [number, "locations", "global", "workloadIdentityPools", pool, "subject", "ns", ns, "sa", ksa]
                if !number.is_empty()
                    && number.chars().all(|c| c.is_ascii_digit())
                    && pool.ends_with(".svc.id.goog")
                    && !ns.is_empty()
                    && !ksa.is_empty() =>
            {
                Ok(Principal::WorkloadIdentity {
                    project_number: number.to_string(),
                    pool: pool.to_string(),
                    namespace: ns.to_string(),
                    service_account: ksa.to_string(),
                })
            }
            _ => Err(bad()),
        }
    }

    /// The member string IAM v1 bindings list.
    pub fn member(&self) -> String {
        match self {
            Principal::ServiceAccount { email } => format!("serviceAccount:{email}"),
            Principal::WorkloadIdentity {
                project_number,
                pool,
                namespace,
                service_account,
            } => format!(
                "{WI_PRINCIPAL}{project_number}/locations/global/workloadIdentityPools/{pool}/subject/ns/{namespace}/sa/{service_account}"
            ),
        }
    }

    /// The principal identifier IAM v2 deny rules take.
    pub fn deny_principal(&self) -> String {
        match self {
            Principal::ServiceAccount { email } => {
                format!("principal://iam.googleapis.com/projects/-/serviceAccounts/{email}")
            }
            Principal::WorkloadIdentity { .. } => self.member(),
        }
    }

    /// `projects/-/serviceAccounts/EMAIL` for a Google service account.
    pub fn service_account_name(&self) -> Option<String> {
        match self {
            Principal::ServiceAccount { email } => Some(service_account_name(email)),
            Principal::WorkloadIdentity { .. } => None,
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.member())
    }
}

/// `projects/-/serviceAccounts/EMAIL`: the name the IAM API takes for a service account.
pub fn service_account_name(email: &str) -> String {
    format!("projects/-/serviceAccounts/{email}")
}

/// `serviceAccount:POOL[NAMESPACE/KSA]`: the member `roles/iam.workloadIdentityUser` lists on a
/// Google service account to let that Kubernetes ServiceAccount impersonate it.
pub fn ksa_member(pool_domain: &str, namespace: &str, service_account: &str) -> String {
    format!("serviceAccount:{pool_domain}[{namespace}/{service_account}]")
}

/// A GCP permission, `service.resource.verb` (a few have more dotted parts after the service).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Permission(String);

impl Permission {
    /// Reads `storage.objects.get` or `gcp:storage.objects.get`.
    pub fn parse(action: &str) -> Result<Permission, NameError> {
        let text = action.strip_prefix(ACTION_PREFIX).unwrap_or(action);
        let parts: Vec<&str> = text.split('.').collect();
        let word = |p: &&str| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric());
        if parts.len() >= 3 && parts.iter().all(word) {
            Ok(Permission(text.to_string()))
        } else {
            Err(NameError::Permission(action.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The IAM v2 form, `SERVICE_FQDN/resource.verb` (`storage.googleapis.com/objects.get`).
    pub fn deny_form(&self) -> String {
        let (service, rest) = self.0.split_once('.').unwrap_or((&self.0, ""));
        let host = match service {
            // The one service whose permission prefix is not its API host's first label.
            "resourcemanager" => "cloudresourcemanager",
            other => other,
        };
        format!("{host}.googleapis.com/{rest}")
    }
}

impl TryFrom<String> for Permission {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, NameError> {
        Permission::parse(&s)
    }
}

impl From<Permission> for String {
    fn from(p: Permission) -> String {
        p.0
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The project id a full resource name names (`//…/projects/ID/…`), if it names one: bucket
/// names carry `projects/_`, which says nothing.
pub fn project_of(resource: &str) -> Result<Option<String>, NameError> {
    let rest = resource
        .strip_prefix("//")
        .filter(|r| r.split('/').next().is_some_and(|h| h.contains('.')))
        .ok_or_else(|| NameError::Resource(resource.to_string()))?;
    let mut parts = rest.split('/').skip(1);
    while let Some(part) = parts.next() {
        if part == "projects" {
            return Ok(parts
                .next()
                .filter(|p| !p.is_empty() && *p != "_" && *p != "-")
                .map(str::to_string));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WI: &str = "principal://iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/acme-prod.svc.id.goog/subject/ns/payments/sa/payment-agent";

    #[test]
    fn principals_round_trip_to_members_and_deny_form() {
        let sa =
            Principal::parse("serviceAccount:agent@acme-prod.iam.gserviceaccount.com").unwrap();
        assert_eq!(
            sa.member(),
            "serviceAccount:agent@acme-prod.iam.gserviceaccount.com"
        );
        assert_eq!(
            sa.deny_principal(),
            "principal://iam.googleapis.com/projects/-/serviceAccounts/agent@acme-prod.iam.gserviceaccount.com"
        );
        let wi = Principal::parse(WI).unwrap();
        assert_eq!(wi.member(), WI);
        assert_eq!(wi.deny_principal(), WI);
        assert_eq!(wi.service_account_name(), None);
        for bad in [
            "user:alice@example.com",
            "serviceAccount:agent",
            "serviceAccount:agent@example.com",
            "principal://iam.googleapis.com/projects/abc/locations/global/workloadIdentityPools/p.svc.id.goog/subject/ns/a/sa/b",
            "principal://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p.svc.id.goog/subject/ns//sa/b",
        ] {
            assert!(Principal::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn permissions_take_both_spellings_and_map_to_v2() {
        let p = Permission::parse("gcp:storage.objects.get").unwrap();
        assert_eq!(p, Permission::parse("storage.objects.get").unwrap());
        assert_eq!(p.deny_form(), "storage.googleapis.com/objects.get");
        assert_eq!(
            Permission::parse("resourcemanager.projects.setIamPolicy")
                .unwrap()
                .deny_form(),
            "cloudresourcemanager.googleapis.com/projects.setIamPolicy"
        );
        for bad in [
            "s3:GetObject",
            "storage.objects",
            "storage..get",
            "storage.objects/get",
        ] {
            assert!(Permission::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn resources_name_their_project_when_they_can() {
        assert_eq!(
            project_of("//cloudresourcemanager.googleapis.com/projects/acme-prod").unwrap(),
            Some("acme-prod".into())
        );
        assert_eq!(
            project_of("//storage.googleapis.com/projects/_/buckets/b").unwrap(),
            None
        );
        assert!(project_of("projects/acme-prod").is_err());
        assert_eq!(
            ksa_member("p.svc.id.goog", "ns", "ksa"),
            "serviceAccount:p.svc.id.goog[ns/ksa]"
        );
    }
}
