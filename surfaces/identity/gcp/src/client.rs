//! The googleapis clients the plane uses, built once and reused, and one request per method.
//!
//! Nothing here retries: the engine's error policy does, the same way for every plane. The SDK's
//! own retries are off too (they would re-send the same body). Every error comes back typed by
//! [`api_error`]: a moved etag is a `Conflict` (the engine re-plans from a fresh read), throttling
//! and server errors are `Unavailable`, timeouts and connection failures `Unreachable`.

use std::fmt;
use std::time::Duration;

use firebreak_containment::plane::{Outcome, PlaneError};
use google_cloud_auth::credentials::Credentials;
use google_cloud_gax::error::rpc::Code;
use google_cloud_gax::error::Error as ApiError;
use google_cloud_gax::polling_error_policy::{Aip194Strict, PollingErrorPolicyExt};
use google_cloud_gax::retry_policy::NeverRetry;
use google_cloud_iam_admin_v1::client::Iam;
use google_cloud_iam_admin_v1::model::{Role, ServiceAccount};
use google_cloud_iam_v1::model::{GetPolicyOptions, Policy};
use google_cloud_iam_v2::client::Policies;
use google_cloud_iam_v2::model::Policy as DenyPolicy;
use google_cloud_lro::{Poller, PollingResult};
use google_cloud_resourcemanager_v3::client::Projects;

use crate::config::GcpConfig;
use crate::{GcpError, PLANE};

/// The policy version read and written: the only one that carries conditions faithfully.
pub const POLICY_VERSION: i32 = 3;
/// How long a deny policy's create or delete operation is awaited.
pub const OPERATION_DEADLINE: Duration = Duration::from_secs(120);
/// Wait before the first poll of an operation; doubled per poll up to [`POLL_MAX`].
const POLL_FIRST: Duration = Duration::from_millis(100);
const POLL_MAX: Duration = Duration::from_secs(5);

pub struct Api {
    projects: Projects,
    policies: Policies,
    iam: Iam,
}

/// Whose IAM policy an edit reads and writes.
#[derive(Debug, Clone, Copy)]
pub enum PolicyOf<'a> {
    Project(&'a str),
    /// `projects/-/serviceAccounts/EMAIL`.
    ServiceAccount(&'a str),
}

impl fmt::Display for PolicyOf<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyOf::Project(p) => write!(f, "project {p}"),
            PolicyOf::ServiceAccount(name) => f.write_str(name),
        }
    }
}

/// What an edit found in the policy it was handed.
pub enum Edit {
    /// Already in the target state: nothing to write.
    Done(String),
    /// The policy was edited in place; write it.
    Write(String),
}

impl Api {
    pub async fn new(config: &GcpConfig, credentials: Credentials) -> Result<Api, GcpError> {
        let endpoint_error = |field: &'static str| {
            move |e: google_cloud_gax::client_builder::Error| GcpError::Config {
                field,
                reason: format!("cannot build the client: {e}"),
            }
        };
        let mut projects = Projects::builder()
            .with_credentials(credentials.clone())
            .with_retry_policy(NeverRetry)
            .with_attempt_timeout(config.request_timeout);
        if let Some(url) = &config.endpoints.resource_manager {
            projects = projects.with_endpoint(url);
        }
        // Bounds how long an operation is awaited (see `finish`); a failed poll ends the call.
        let mut policies = Policies::builder()
            .with_credentials(credentials.clone())
            .with_retry_policy(NeverRetry)
            .with_attempt_timeout(config.request_timeout)
            .with_polling_error_policy(Aip194Strict.with_time_limit(OPERATION_DEADLINE));
        let mut iam = Iam::builder()
            .with_credentials(credentials)
            .with_retry_policy(NeverRetry)
            .with_attempt_timeout(config.request_timeout);
        if let Some(url) = &config.endpoints.iam {
            policies = policies.with_endpoint(url);
            iam = iam.with_endpoint(url);
        }
        Ok(Api {
            projects: projects
                .build()
                .await
                .map_err(endpoint_error("endpoints.resourceManager"))?,
            policies: policies
                .build()
                .await
                .map_err(endpoint_error("endpoints.iam"))?,
            iam: iam.build().await.map_err(endpoint_error("endpoints.iam"))?,
        })
    }

    /// The IAM policy of `of`, at [`POLICY_VERSION`].
    pub async fn policy(&self, of: PolicyOf<'_>) -> Result<Policy, PlaneError> {
        let options = GetPolicyOptions::new().set_requested_policy_version(POLICY_VERSION);
        let read = match of {
            PolicyOf::Project(project) => {
                self.projects
                    .get_iam_policy()
                    .set_resource(format!("projects/{project}"))
                    .set_options(options)
                    .send()
                    .await
            }
            PolicyOf::ServiceAccount(name) => {
                self.iam
                    .get_iam_policy()
                    .set_resource(name)
                    .set_options(options)
                    .send()
                    .await
            }
        };
        read.map_err(|e| match (of, status_code(&e)) {
            (PolicyOf::Project(p), Some(Code::PermissionDenied | Code::NotFound)) => {
                PlaneError::Refused {
                    plane: PLANE,
                    detail: format!(
                        "getIamPolicy of project {p}: {e}; the project does not exist or Firebreak's \
                         identity lacks resourcemanager.projects.getIamPolicy on it (check gcp.projects)"
                    ),
                }
            }
            _ => api_error(&format!("reading the IAM policy of {of}"), e),
        })
    }

    /// One guarded read-modify-write: reads the policy, lets `edit` change it, and writes it with
    /// the etag just read. Never re-sent: when the etag moved (`ABORTED`) nothing was written and
    /// the answer is a `Conflict`, so the engine re-plans from a fresh read.
    pub async fn edit_policy(
        &self,
        of: PolicyOf<'_>,
        edit: impl FnOnce(&mut Policy) -> Edit,
    ) -> Result<Outcome, PlaneError> {
        let mut policy = self.policy(of).await?;
        let detail = match edit(&mut policy) {
            Edit::Done(detail) => return Ok(Outcome::unchanged(detail)),
            Edit::Write(detail) => detail,
        };
        policy.version = POLICY_VERSION;
        let written = match of {
            PolicyOf::Project(project) => self
                .projects
                .set_iam_policy()
                .set_resource(format!("projects/{project}"))
                .set_policy(policy)
                .send()
                .await
                .map(drop),
            PolicyOf::ServiceAccount(name) => self
                .iam
                .set_iam_policy()
                .set_resource(name)
                .set_policy(policy)
                .send()
                .await
                .map(drop),
        };
        match written {
            Ok(()) => Ok(Outcome::changed(detail)),
            Err(e) if is_stale_write(&e) => Err(PlaneError::Conflict {
                plane: PLANE,
                detail: format!(
                    "setIamPolicy of {of} was refused because the policy changed after it was read \
                     (its etag moved: {e}); nothing was written"
                ),
            }),
            Err(e) => Err(api_error(&format!("setIamPolicy of {of}"), e)),
        }
    }

    /// The raw answer: callers decide what `NOT_FOUND` means for them.
    pub async fn service_account(&self, name: &str) -> Result<ServiceAccount, ApiError> {
        self.iam.get_service_account().set_name(name).send().await
    }

    /// Disables or enables a service account; both are idempotent at IAM.
    pub async fn set_disabled(&self, name: &str, disabled: bool) -> Result<(), PlaneError> {
        let sent = if disabled {
            self.iam
                .disable_service_account()
                .set_name(name)
                .send()
                .await
        } else {
            self.iam
                .enable_service_account()
                .set_name(name)
                .send()
                .await
        };
        sent.map(drop).map_err(|e| {
            let doing = if disabled { "disabling" } else { "enabling" };
            api_error(&format!("{doing} {name}"), e)
        })
    }

    /// The raw answer: an unknown role is an answer for the ladder, not a failure.
    pub async fn role(&self, name: &str) -> Result<Role, ApiError> {
        self.iam.get_role().set_name(name).send().await
    }

    /// The deny policy `name`, `None` when it does not exist.
    pub async fn deny_policy(&self, name: &str) -> Result<Option<DenyPolicy>, PlaneError> {
        match self.policies.get_policy().set_name(name).send().await {
            Ok(p) => Ok(Some(p)),
            Err(e) if status_code(&e) == Some(Code::NotFound) => Ok(None),
            Err(e) => Err(api_error(&format!("reading deny policy {name}"), e)),
        }
    }

    /// Creates the deny policy and awaits its operation. The raw answer: `ALREADY_EXISTS` is
    /// success for an idempotent apply.
    pub async fn create_deny_policy(
        &self,
        parent: &str,
        id: &str,
        policy: DenyPolicy,
    ) -> Result<(), ApiError> {
        let poller = self
            .policies
            .create_policy()
            .set_parent(parent)
            .set_policy_id(id)
            .set_policy(policy)
            .poller();
        finish(poller).await.map(drop)
    }

    /// Deletes the deny policy and awaits its operation. The raw answer: `NOT_FOUND` is success
    /// for an idempotent revert.
    pub async fn delete_deny_policy(&self, name: &str) -> Result<(), ApiError> {
        let poller = self.policies.delete_policy().set_name(name).poller();
        finish(poller).await.map(drop)
    }
}

/// Awaits an operation: polls while it runs (that is waiting, not retrying), and ends the call
/// on the first failed poll or once [`OPERATION_DEADLINE`] has passed. A retried change then
/// finds what the operation did.
async fn finish<R, M>(mut poller: impl Poller<R, M>) -> Result<R, ApiError> {
    let mut wait = POLL_FIRST;
    loop {
        match poller.poll().await {
            Some(PollingResult::Completed(result)) => return result,
            Some(PollingResult::PollingError(e)) => return Err(e),
            Some(PollingResult::InProgress(_)) => {}
            None => {
                return Err(ApiError::exhausted(
                    "the operation's poller ended without a result",
                ))
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(POLL_MAX);
    }
}

pub fn status_code(e: &ApiError) -> Option<Code> {
    e.status().map(|s| s.code)
}

/// The write was computed from a policy that no longer holds: its etag moved.
fn is_stale_write(e: &ApiError) -> bool {
    status_code(e) == Some(Code::Aborted)
        || (e.http_status_code() == Some(409) && status_code(e) != Some(Code::AlreadyExists))
}

/// Throttling or a server error: the API answered, and may answer better soon.
fn is_unavailable(e: &ApiError) -> bool {
    matches!(e.http_status_code(), Some(429 | 500 | 502 | 503 | 504))
        || matches!(
            status_code(e),
            Some(
                Code::Unavailable
                    | Code::ResourceExhausted
                    | Code::Internal
                    | Code::DeadlineExceeded
            )
        )
}

/// No answer: timed out, or the server could not be reached.
fn is_unreachable(e: &ApiError) -> bool {
    e.is_timeout() || e.is_io() || e.is_connect() || e.is_transport()
}

pub fn api_error(doing: &str, e: ApiError) -> PlaneError {
    let detail = format!("{doing}: {e}");
    if matches!(
        status_code(&e),
        Some(Code::PermissionDenied | Code::Unauthenticated)
    ) {
        return PlaneError::Refused {
            plane: PLANE,
            detail: format!(
                "{detail}; grant Firebreak's identity resourcemanager.projects.get/setIamPolicy, \
                 iam.denypolicies.*, iam.serviceAccounts.get/getIamPolicy/setIamPolicy/disable/enable \
                 and iam.roles.get"
            ),
        };
    }
    if is_stale_write(&e) {
        PlaneError::Conflict {
            plane: PLANE,
            detail,
        }
    } else if is_unavailable(&e) {
        PlaneError::Unavailable {
            plane: PLANE,
            detail,
        }
    } else if e.is_exhausted() {
        PlaneError::Unavailable {
            plane: PLANE,
            detail: format!(
                "{detail}; the operation had not finished within {}s",
                OPERATION_DEADLINE.as_secs()
            ),
        }
    } else if is_unreachable(&e) {
        PlaneError::Unreachable {
            plane: PLANE,
            detail,
        }
    } else {
        PlaneError::Refused {
            plane: PLANE,
            detail,
        }
    }
}
