//! A small typed client for exactly the ARM endpoints Firebreak needs: role assignments, role
//! definitions, user-assigned managed identities and their federated identity credentials.
//!
//! One HTTP client, built once, with connect and read timeouts; one request per call. Nothing
//! here retries: the engine does, for every plane alike, after the error says what happened
//! (`impl From<ArmError> for PlaneError`): throttling and server errors are `Unavailable`,
//! timeouts and connection failures `Unreachable`. Every write is idempotent by name in ARM (a
//! PUT of identical properties, a DELETE of something gone), so the engine's retry is safe.

use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use firebreak_containment::plane::PlaneError;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::ids::ResourceId;
use crate::roles::RoleDefinition;
use crate::PLANE;

/// `Microsoft.Authorization` roleAssignments and roleDefinitions.
pub const AUTHORIZATION_API: &str = "2022-04-01";
/// `Microsoft.ManagedIdentity` userAssignedIdentities and federatedIdentityCredentials.
pub const MANAGED_IDENTITY_API: &str = "2023-01-31";
/// Pages of a list followed before giving up (ARM pages hold hundreds of items).
const MAX_PAGES: usize = 100;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ArmError {
    #[error("getting an ARM access token failed: {0}; check azure.credential, azure.tenantId, azure.clientId and the workload identity environment (AZURE_FEDERATED_TOKEN_FILE)")]
    Credential(String),
    #[error("{doing}: {detail}")]
    Transport { doing: String, detail: String },
    #[error("{doing}: HTTP {status} {code}: {message}")]
    Status {
        doing: String,
        status: u16,
        code: String,
        message: String,
    },
    #[error("{doing}: the response is not the documented shape: {detail}")]
    Decode { doing: String, detail: String },
}

impl ArmError {
    pub fn status(&self) -> Option<u16> {
        match self {
            ArmError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl From<ArmError> for PlaneError {
    fn from(e: ArmError) -> PlaneError {
        let detail = e.to_string();
        match e {
            // No answer, or no token to ask with (Entra ID or IMDS unreachable, or refusing).
            ArmError::Transport { .. } | ArmError::Credential(_) => PlaneError::Unreachable {
                plane: PLANE,
                detail,
            },
            ArmError::Status {
                status: 401 | 403, ..
            } => PlaneError::Refused {
                plane: PLANE,
                detail: format!(
                    "{detail}; grant Firebreak's identity Microsoft.Authorization/roleAssignments/read, write, delete and \
                     roleDefinitions/read (e.g. Role Based Access Control Administrator), and \
                     Microsoft.ManagedIdentity/userAssignedIdentities/read and federatedIdentityCredentials/read, write, \
                     delete (Managed Identity Contributor)"
                ),
            },
            ArmError::Status { status: 409, .. } => PlaneError::Conflict {
                plane: PLANE,
                detail,
            },
            ArmError::Status {
                status: 408 | 429 | 500..=599,
                ..
            } => PlaneError::Unavailable {
                plane: PLANE,
                detail,
            },
            ArmError::Status { .. } => PlaneError::Refused {
                plane: PLANE,
                detail,
            },
            ArmError::Decode { .. } => PlaneError::Invalid {
                plane: PLANE,
                detail,
            },
        }
    }
}

/// Who gets which role, on which condition: what a role assignment PUT carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Grant {
    pub role_definition_id: String,
    pub principal_id: String,
    /// Always sent: without it ARM may not find a just-created service principal yet.
    pub principal_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl Grant {
    /// Same role, principal and condition; ARM ids compare case-insensitively.
    pub fn same_as(&self, other: &Grant) -> bool {
        self.role_definition_id
            .eq_ignore_ascii_case(&other.role_definition_id)
            && self.principal_id.eq_ignore_ascii_case(&other.principal_id)
            && self.principal_type == other.principal_type
            && self.condition == other.condition
            && self.condition_version == other.condition_version
            && self.description == other.description
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssignmentProperties {
    pub scope: String,
    #[serde(flatten)]
    pub grant: Grant,
}

/// `{scope}/providers/Microsoft.Authorization/roleAssignments/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleAssignment {
    pub id: String,
    pub name: String,
    pub properties: AssignmentProperties,
}

impl RoleAssignment {
    /// The assignment `name` of `grant` at `scope`, as ARM will answer it once created.
    pub fn at(scope: &ResourceId, name: &str, grant: Grant) -> RoleAssignment {
        let scope = scope.as_str().trim_end_matches('/');
        RoleAssignment {
            id: format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{name}"),
            name: name.to_string(),
            properties: AssignmentProperties {
                scope: if scope.is_empty() {
                    "/".into()
                } else {
                    scope.into()
                },
                grant,
            },
        }
    }

    pub fn scope(&self) -> Option<ResourceId> {
        ResourceId::parse(&self.properties.scope).ok()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentityProperties {
    pub principal_id: String,
    pub client_id: String,
    #[serde(default)]
    pub tenant_id: Option<String>,
}

/// `GET …/Microsoft.ManagedIdentity/userAssignedIdentities/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagedIdentity {
    pub id: String,
    pub name: String,
    pub properties: IdentityProperties,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Federation {
    pub issuer: String,
    pub subject: String,
    pub audiences: Vec<String>,
}

/// `…/userAssignedIdentities/{identity}/federatedIdentityCredentials/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FederatedCredential {
    pub id: String,
    pub name: String,
    pub properties: Federation,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page<T> {
    value: Vec<T>,
    #[serde(default)]
    next_link: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

#[derive(Serialize)]
struct Properties<'a, T> {
    properties: &'a T,
}

/// Whether a PUT created the resource (201) or found it identical (200).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    Created,
    Unchanged,
}

/// Whether a DELETE removed the resource (200) or found it gone (204).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delete {
    Deleted,
    AlreadyGone,
}

pub struct Arm {
    http: reqwest::Client,
    endpoint: String,
    credential: Arc<dyn TokenCredential>,
    token_scope: String,
    timeout: Duration,
}

impl Arm {
    pub fn new(
        endpoint: &str,
        credential: Arc<dyn TokenCredential>,
        timeout: Duration,
    ) -> Result<Arm, reqwest::Error> {
        let endpoint = endpoint.trim_end_matches('/').to_string();
        Ok(Arm {
            http: reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(timeout)
                .build()?,
            token_scope: format!("{endpoint}/.default"),
            endpoint,
            credential,
            timeout,
        })
    }

    pub async fn role_assignments(
        &self,
        scope: &ResourceId,
        principal_id: &str,
    ) -> Result<Vec<RoleAssignment>, ArmError> {
        let path = format!(
            "{}/providers/Microsoft.Authorization/roleAssignments",
            scope.as_str().trim_end_matches('/')
        );
        let filter = format!("principalId eq '{principal_id}'");
        self.list(
            &path,
            AUTHORIZATION_API,
            Some(&filter),
            &format!("listing the role assignments of principal {principal_id} at {scope}"),
        )
        .await
    }

    pub async fn role_assignment(&self, id: &str) -> Result<Option<RoleAssignment>, ArmError> {
        self.get(
            id,
            AUTHORIZATION_API,
            &format!("reading role assignment {id}"),
        )
        .await
    }

    pub async fn put_role_assignment(&self, assignment: &RoleAssignment) -> Result<Put, ArmError> {
        self.put(
            &assignment.id,
            AUTHORIZATION_API,
            &assignment.properties.grant,
            &format!("role assignment {}", assignment.id),
        )
        .await
    }

    pub async fn delete_role_assignment(&self, id: &str) -> Result<Delete, ArmError> {
        self.delete(
            id,
            AUTHORIZATION_API,
            &format!("deleting role assignment {id}"),
        )
        .await
    }

    pub async fn role_definition(&self, id: &str) -> Result<Option<RoleDefinition>, ArmError> {
        self.get(
            id,
            AUTHORIZATION_API,
            &format!("reading role definition {id}"),
        )
        .await
    }

    pub async fn identity(&self, id: &ResourceId) -> Result<Option<ManagedIdentity>, ArmError> {
        self.get(
            id.as_str(),
            MANAGED_IDENTITY_API,
            &format!("reading managed identity {id}"),
        )
        .await
    }

    pub async fn federated_credentials(
        &self,
        identity: &ResourceId,
    ) -> Result<Vec<FederatedCredential>, ArmError> {
        self.list(
            &format!("{identity}/federatedIdentityCredentials"),
            MANAGED_IDENTITY_API,
            None,
            &format!("listing the federated identity credentials of {identity}"),
        )
        .await
    }

    pub async fn federated_credential(
        &self,
        id: &str,
    ) -> Result<Option<FederatedCredential>, ArmError> {
        self.get(
            id,
            MANAGED_IDENTITY_API,
            &format!("reading federated identity credential {id}"),
        )
        .await
    }

    pub async fn put_federated_credential(
        &self,
        credential: &FederatedCredential,
    ) -> Result<Put, ArmError> {
        self.put(
            &credential.id,
            MANAGED_IDENTITY_API,
            &credential.properties,
            &format!("federated identity credential {}", credential.id),
        )
        .await
    }

    pub async fn delete_federated_credential(&self, id: &str) -> Result<Delete, ArmError> {
        self.delete(
            id,
            MANAGED_IDENTITY_API,
            &format!("deleting federated identity credential {id}"),
        )
        .await
    }

    async fn get<T: DeserializeOwned>(
        &self,
        id: &str,
        api_version: &str,
        doing: &str,
    ) -> Result<Option<T>, ArmError> {
        let url = self.url(id, api_version, None);
        match self.send(Method::GET, &url, None, doing).await {
            Ok((_, body)) => decode(&body, doing).map(Some),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn list<T: DeserializeOwned>(
        &self,
        path: &str,
        api_version: &str,
        filter: Option<&str>,
        doing: &str,
    ) -> Result<Vec<T>, ArmError> {
        let mut url = self.url(path, api_version, filter);
        let mut items = Vec::new();
        for _ in 0..MAX_PAGES {
            let (_, body) = self.send(Method::GET, &url, None, doing).await?;
            let page: Page<T> = decode(&body, doing)?;
            items.extend(page.value);
            match page.next_link {
                Some(next) => url = next,
                None => return Ok(items),
            }
        }
        Err(ArmError::Decode {
            doing: doing.into(),
            detail: format!("more than {MAX_PAGES} pages of nextLink"),
        })
    }

    /// PUTs `{"properties": …}` to `id`; `what` names the resource in errors.
    async fn put<P: Serialize>(
        &self,
        id: &str,
        api_version: &str,
        properties: &P,
        what: &str,
    ) -> Result<Put, ArmError> {
        let body =
            serde_json::to_value(Properties { properties }).map_err(|e| ArmError::Decode {
                doing: format!("encoding {what}"),
                detail: e.to_string(),
            })?;
        let url = self.url(id, api_version, None);
        let (status, _) = self
            .send(Method::PUT, &url, Some(&body), &format!("creating {what}"))
            .await?;
        Ok(if status == StatusCode::CREATED {
            Put::Created
        } else {
            Put::Unchanged
        })
    }

    async fn delete(&self, id: &str, api_version: &str, doing: &str) -> Result<Delete, ArmError> {
        let url = self.url(id, api_version, None);
        let (status, _) = self.send(Method::DELETE, &url, None, doing).await?;
        Ok(if status == StatusCode::NO_CONTENT {
            Delete::AlreadyGone
        } else {
            Delete::Deleted
        })
    }

    fn url(&self, path: &str, api_version: &str, filter: Option<&str>) -> String {
        let mut url = format!("{}{path}?api-version={api_version}", self.endpoint);
        if let Some(filter) = filter {
            url.push_str("&$filter=");
            url.push_str(&urlencoding::encode(filter));
        }
        url
    }

    /// One request, sent once; any non-2xx answer is an [`ArmError::Status`].
    async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<&serde_json::Value>,
        doing: &str,
    ) -> Result<(StatusCode, Vec<u8>), ArmError> {
        let token = self
            .credential
            .get_token(&[&self.token_scope], None)
            .await
            .map_err(|e| ArmError::Credential(e.to_string()))?;
        let mut request = self
            .http
            .request(method, url)
            .bearer_auth(token.token.secret());
        if let Some(body) = body {
            request = request.json(body);
        }
        let transport = |e: reqwest::Error| ArmError::Transport {
            doing: doing.into(),
            detail: if e.is_timeout() {
                format!(
                    "no answer within azure.requestTimeout ({} ms): {e}",
                    self.timeout.as_millis()
                )
            } else {
                e.to_string()
            },
        };
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(transport)?.to_vec();
        if status.is_success() {
            return Ok((status, bytes));
        }
        let (code, message) = match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(b) => (b.error.code, b.error.message),
            Err(_) => (
                "(no ARM error body)".into(),
                String::from_utf8_lossy(&bytes).chars().take(300).collect(),
            ),
        };
        Err(ArmError::Status {
            doing: doing.into(),
            status: status.as_u16(),
            code,
            message,
        })
    }
}

fn decode<T: DeserializeOwned>(body: &[u8], doing: &str) -> Result<T, ArmError> {
    serde_json::from_slice(body).map_err(|e| ArmError::Decode {
        doing: doing.into(),
        detail: e.to_string(),
    })
}
