//! The GCP IAM control plane over the googleapis crates: reads project and service account IAM
//! policies, edits one binding with a guarded read-modify-write, creates and deletes IAM v2 deny
//! policies, disables and enables service accounts.
//!
//! Writes are never re-sent blindly: each attempt re-reads the policy (version 3), re-plans the
//! edit from what it read and sends it with that etag. `ABORTED` (409: the etag moved), throttling,
//! server errors and timeouts start the next attempt after a backoff; after [`ATTEMPTS`] the caller
//! gets a `Conflict` or `Unreachable` and nothing was written by the failed attempts. The SDK's own
//! retries are off: they would re-send the same body. Reads are retried the same bounded way.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use firebreak_containment::action::Surface;
use firebreak_containment::alert::{Dimension, Parameter};
use firebreak_containment::plan::Candidate;
use firebreak_containment::surface::{
    ControlPlane, Observation, Op, PlanInput, Step, SurfaceError,
};
use google_cloud_auth::credentials::{Builder as CredentialsBuilder, Credentials};
use google_cloud_gax::error::rpc::Code;
use google_cloud_gax::error::Error as ApiError;
use google_cloud_gax::exponential_backoff::ExponentialBackoffBuilder;
use google_cloud_gax::polling_error_policy::{Aip194Strict, PollingErrorPolicyExt};
use google_cloud_gax::retry_policy::NeverRetry;
use google_cloud_iam_admin_v1::client::Iam;
use google_cloud_iam_v1::model::{Binding as ApiBinding, GetPolicyOptions, Policy};
use google_cloud_iam_v2::client::Policies;
use google_cloud_iam_v2::model::{DenyRule, Policy as DenyPolicy, PolicyRule};
use google_cloud_lro::Poller;
use google_cloud_resourcemanager_v3::client::Projects;
use google_cloud_type::model::Expr;

use crate::config::GcpConfig;
use crate::ladder::{
    deny_parent, service_account_name, ActionSpec, Binding, Condition, GcpState, ProjectPolicy,
    ServiceAccountState,
};
use crate::names::{ksa_member, project_of, Permission, Principal, WI_USER_ROLE};
use crate::{GcpError, PLANE};

/// Tries per operation (reads, and read→edit→setIamPolicy cycles).
pub const ATTEMPTS: u32 = 4;
/// First backoff; doubled after each failed try (100, 200, 400 ms).
pub const BACKOFF: Duration = Duration::from_millis(100);
/// The policy version read and written: the only one that carries conditions faithfully.
pub const POLICY_VERSION: i32 = 3;
/// How long a deny policy's create or delete operation is awaited.
pub const OPERATION_DEADLINE: Duration = Duration::from_secs(120);

pub struct GcpIam {
    config: GcpConfig,
    projects: Projects,
    policies: Policies,
    iam: Iam,
    /// Role → included permissions, from `gcp.roles` and the Roles API.
    roles: Mutex<BTreeMap<String, BTreeSet<String>>>,
}

/// Whose IAM policy an edit reads and writes.
#[derive(Debug, Clone, Copy)]
enum PolicyOf<'a> {
    Project(&'a str),
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

/// What one attempt does after reading the policy.
enum Edit {
    /// Already in the target state.
    Done(String),
    /// The policy was edited in place; write it.
    Write(String),
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
        let backoff = ExponentialBackoffBuilder::new()
            .with_initial_delay(Duration::from_millis(100))
            .with_maximum_delay(Duration::from_secs(5))
            .clamp();
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
        let mut policies = Policies::builder()
            .with_credentials(credentials.clone())
            .with_retry_policy(NeverRetry)
            .with_attempt_timeout(config.request_timeout)
            .with_polling_backoff_policy(backoff)
            .with_polling_error_policy(Aip194Strict.with_time_limit(OPERATION_DEADLINE));
        let mut iam = Iam::builder()
            .with_credentials(credentials)
            .with_retry_policy(NeverRetry)
            .with_attempt_timeout(config.request_timeout);
        if let Some(url) = &config.endpoints.iam {
            policies = policies.with_endpoint(url);
            iam = iam.with_endpoint(url);
        }
        Ok(GcpIam {
            projects: projects
                .build()
                .await
                .map_err(endpoint_error("endpoints.resourceManager"))?,
            policies: policies
                .build()
                .await
                .map_err(endpoint_error("endpoints.iam"))?,
            iam: iam.build().await.map_err(endpoint_error("endpoints.iam"))?,
            roles: Mutex::new(config.roles.clone()),
            config,
        })
    }

    /// The agent's GCP principals: envelope principals written as GCP members. Other clouds'
    /// principals (ARNs, …) are not ours; a GCP-looking one that does not parse is an error.
    fn principals(input: &PlanInput<'_>) -> Result<Vec<Principal>, SurfaceError> {
        let mut out = Vec::new();
        for (i, text) in input.envelope.spec.identity.principals.iter().enumerate() {
            if !(text.starts_with("serviceAccount:") || text.starts_with("principal://")) {
                continue;
            }
            let principal = Principal::parse(text).map_err(|e| SurfaceError::Invalid {
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
    pub async fn observe_state(
        &self,
        input: &PlanInput<'_>,
        permission: &str,
        resource: &str,
    ) -> Result<GcpState, SurfaceError> {
        let invalid = |detail: String| SurfaceError::Invalid {
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
            let policy = self.read_policy(PolicyOf::Project(project)).await?;
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
            let account = retrying(|| self.iam.get_service_account().set_name(&name).send())
                .await
                .map_err(|e| match status_code(&e) {
                    Some(Code::NotFound) => invalid(format!(
                        "service account {email} (envelope spec.identity.principals) does not exist"
                    )),
                    _ => api_error(&format!("reading service account {email}"), e),
                })?;
            let policy = self.read_policy(PolicyOf::ServiceAccount(&name)).await?;
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
    ) -> Result<Result<BTreeSet<String>, String>, SurfaceError> {
        if let Some(perms) = self.cached_role(role) {
            return Ok(Ok(perms));
        }
        match retrying(|| self.iam.get_role().set_name(role).send()).await {
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

    async fn read_policy(&self, of: PolicyOf<'_>) -> Result<Policy, SurfaceError> {
        let options = GetPolicyOptions::new().set_requested_policy_version(POLICY_VERSION);
        let read = match of {
            PolicyOf::Project(project) => {
                let resource = format!("projects/{project}");
                retrying(|| {
                    self.projects
                        .get_iam_policy()
                        .set_resource(&resource)
                        .set_options(options.clone())
                        .send()
                })
                .await
            }
            PolicyOf::ServiceAccount(name) => {
                retrying(|| {
                    self.iam
                        .get_iam_policy()
                        .set_resource(name)
                        .set_options(options.clone())
                        .send()
                })
                .await
            }
        };
        read.map_err(|e| match (of, status_code(&e)) {
            (PolicyOf::Project(p), Some(Code::PermissionDenied | Code::NotFound)) => {
                SurfaceError::Refused {
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

    async fn write_policy(&self, of: PolicyOf<'_>, policy: Policy) -> Result<(), ApiError> {
        match of {
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
        }
    }

    /// One read→edit→write cycle per attempt, the write guarded by the etag just read.
    async fn converge<E>(&self, of: PolicyOf<'_>, edit: E) -> Result<Step, SurfaceError>
    where
        E: Fn(&mut Policy) -> Edit,
    {
        let mut delay = BACKOFF;
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            let mut policy = self.read_policy(of).await?;
            let detail = match edit(&mut policy) {
                Edit::Done(detail) => return Ok(Step::unchanged(detail)),
                Edit::Write(detail) => detail,
            };
            policy.version = POLICY_VERSION;
            match self.write_policy(of, policy).await {
                Ok(()) => return Ok(Step::changed(detail)),
                Err(e) if is_stale_write(&e) || is_transient(&e) => {
                    tracing::warn!(policy = %of, attempt, error = %e, "setIamPolicy not applied; re-reading");
                    last = e.to_string();
                    if attempt < ATTEMPTS {
                        tokio::time::sleep(delay).await;
                        delay *= 2;
                    }
                }
                Err(e) => return Err(api_error(&format!("setIamPolicy of {of}"), e)),
            }
        }
        Err(SurfaceError::Conflict {
            plane: PLANE,
            detail: format!(
                "the IAM policy of {of} kept changing or failing over {ATTEMPTS} etag-guarded attempts \
                 (last: {last}); none of them was applied"
            ),
        })
    }

    async fn remove_binding_member(
        &self,
        op: Op,
        project: &str,
        member: &str,
        binding: &Binding,
    ) -> Result<Step, SurfaceError> {
        let of = PolicyOf::Project(project);
        match op {
            Op::Apply => {
                self.converge(of, |policy| {
                    if remove_member(policy, binding, member) {
                        Edit::Write(format!("removed {member} from {binding} on {of}"))
                    } else {
                        Edit::Done(format!("{binding} on {of} does not list {member}"))
                    }
                })
                .await
            }
            Op::Revert => {
                self.converge(of, |policy| {
                    if add_member(policy, binding, member) {
                        Edit::Write(format!("re-added {member} to {binding} on {of}"))
                    } else {
                        Edit::Done(format!("{binding} on {of} lists {member}"))
                    }
                })
                .await
            }
            Op::Verify | Op::VerifyReverted => {
                let policy = self.read_policy(of).await?;
                let listed = lists(&policy, binding, member);
                let want = op == Op::VerifyReverted;
                Ok(check(
                    listed == want,
                    format!(
                        "{binding} on {of} {} {member}",
                        if listed { "lists" } else { "does not list" }
                    ),
                ))
            }
        }
    }

    async fn remove_wi_user(
        &self,
        op: Op,
        service_account: &str,
        member: &str,
        bindings: &[Binding],
    ) -> Result<Step, SurfaceError> {
        let of = PolicyOf::ServiceAccount(service_account);
        match op {
            Op::Apply => {
                self.converge(of, |policy| {
                    let slots: Vec<Binding> = policy
                        .bindings
                        .iter()
                        .map(from_api)
                        .filter(|b| b.role == WI_USER_ROLE)
                        .collect();
                    let mut removed = false;
                    for slot in &slots {
                        removed |= remove_member(policy, slot, member);
                    }
                    if removed {
                        Edit::Write(format!("removed {member} from {WI_USER_ROLE} on {of}"))
                    } else {
                        Edit::Done(format!("{WI_USER_ROLE} on {of} does not list {member}"))
                    }
                })
                .await
            }
            Op::Revert => {
                self.converge(of, |policy| {
                    let mut added = false;
                    for binding in bindings {
                        added |= add_member(policy, binding, member);
                    }
                    if added {
                        Edit::Write(format!("re-added {member} to {WI_USER_ROLE} on {of}"))
                    } else {
                        Edit::Done(format!("{WI_USER_ROLE} on {of} lists {member}"))
                    }
                })
                .await
            }
            Op::Verify | Op::VerifyReverted => {
                let policy = self.read_policy(of).await?;
                let listed = policy
                    .bindings
                    .iter()
                    .any(|b| b.role == WI_USER_ROLE && b.members.iter().any(|m| m == member));
                let restored = bindings.iter().all(|b| lists(&policy, b, member));
                let ok = if op == Op::Verify { !listed } else { restored };
                Ok(check(
                    ok,
                    format!(
                        "{WI_USER_ROLE} on {of} {} {member}",
                        if listed { "lists" } else { "does not list" }
                    ),
                ))
            }
        }
    }

    async fn deny_policy(
        &self,
        op: Op,
        project: &str,
        policy_id: &str,
        principals: &[String],
        permission: &str,
    ) -> Result<Step, SurfaceError> {
        let parent = deny_parent(project);
        let name = format!("{parent}/{policy_id}");
        match op {
            Op::Apply => {
                if let Some(existing) = self.read_deny(&name).await? {
                    return if denies(&existing, principals, permission) {
                        Ok(Step::unchanged(format!(
                            "deny policy {policy_id} exists on project {project}"
                        )))
                    } else {
                        Err(SurfaceError::Conflict {
                            plane: PLANE,
                            detail: format!(
                                "deny policy {policy_id} on project {project} exists with other rules; \
                                 Firebreak does not overwrite it (delete it or re-plan)"
                            ),
                        })
                    };
                }
                let rule = DenyRule::new()
                    .set_denied_principals(principals.iter().cloned())
                    .set_denied_permissions([permission.to_string()]);
                let policy = DenyPolicy::new()
                    .set_display_name(format!("Firebreak containment {policy_id}"))
                    .set_rules([PolicyRule::new()
                        .set_description(format!("Firebreak: deny {permission}"))
                        .set_deny_rule(rule)]);
                let created = self
                    .policies
                    .create_policy()
                    .set_parent(&parent)
                    .set_policy_id(policy_id)
                    .set_policy(policy)
                    .poller()
                    .until_done()
                    .await;
                match created {
                    Ok(_) => Ok(Step::changed(format!(
                        "created deny policy {policy_id} on project {project}: {} may not {permission}",
                        principals.join(", ")
                    ))),
                    // Another apply of this same action won the race.
                    Err(e) if status_code(&e) == Some(Code::AlreadyExists) => Ok(Step::unchanged(
                        format!("deny policy {policy_id} exists on project {project}"),
                    )),
                    Err(e) => Err(api_error(&format!("creating deny policy {policy_id}"), e)),
                }
            }
            Op::Revert => {
                let deleted = self
                    .policies
                    .delete_policy()
                    .set_name(&name)
                    .poller()
                    .until_done()
                    .await;
                match deleted {
                    Ok(_) => Ok(Step::changed(format!("deleted deny policy {policy_id}"))),
                    Err(e) if status_code(&e) == Some(Code::NotFound) => Ok(Step::unchanged(
                        format!("deny policy {policy_id} is already gone"),
                    )),
                    Err(e) => Err(api_error(&format!("deleting deny policy {policy_id}"), e)),
                }
            }
            Op::Verify => Ok(match self.read_deny(&name).await? {
                Some(p) if denies(&p, principals, permission) => Step::ok(format!(
                    "deny policy {policy_id} denies {permission} on project {project}"
                )),
                Some(_) => Step::failed(format!("deny policy {policy_id} exists with other rules")),
                None => Step::failed(format!("deny policy {policy_id} is not visible yet")),
            }),
            Op::VerifyReverted => Ok(match self.read_deny(&name).await? {
                Some(_) => Step::failed(format!("deny policy {policy_id} still exists")),
                None => Step::ok(format!("deny policy {policy_id} is gone")),
            }),
        }
    }

    async fn read_deny(&self, name: &str) -> Result<Option<DenyPolicy>, SurfaceError> {
        match retrying(|| self.policies.get_policy().set_name(name).send()).await {
            Ok(p) => Ok(Some(p)),
            Err(e) if status_code(&e) == Some(Code::NotFound) => Ok(None),
            Err(e) => Err(api_error(&format!("reading deny policy {name}"), e)),
        }
    }

    async fn disable_service_account(&self, op: Op, name: &str) -> Result<Step, SurfaceError> {
        let account = retrying(|| self.iam.get_service_account().set_name(name).send())
            .await
            .map_err(|e| api_error(&format!("reading {name}"), e))?;
        let disabled = account.disabled;
        let state = if disabled { "disabled" } else { "enabled" };
        match op {
            Op::Apply if disabled => Ok(Step::unchanged(format!("{name} is already disabled"))),
            Op::Revert if !disabled => Ok(Step::unchanged(format!("{name} is already enabled"))),
            Op::Apply => {
                // Disable and enable are idempotent: re-sending after a transient failure does
                // no more than the first send meant to.
                retrying(|| self.iam.disable_service_account().set_name(name).send())
                    .await
                    .map_err(|e| api_error(&format!("disabling {name}"), e))?;
                Ok(Step::changed(format!("disabled {name}")))
            }
            Op::Revert => {
                retrying(|| self.iam.enable_service_account().set_name(name).send())
                    .await
                    .map_err(|e| api_error(&format!("enabling {name}"), e))?;
                Ok(Step::changed(format!("enabled {name}")))
            }
            Op::Verify => Ok(check(disabled, format!("{name} reads back {state}"))),
            Op::VerifyReverted => Ok(check(!disabled, format!("{name} reads back {state}"))),
        }
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

fn check(ok: bool, detail: String) -> Step {
    if ok {
        Step::ok(detail)
    } else {
        Step::failed(format!("{detail} (IAM reads can lag writes; polling)"))
    }
}

fn from_api(b: &ApiBinding) -> Binding {
    Binding {
        role: b.role.clone(),
        members: b.members.clone(),
        condition: b.condition.as_ref().map(|c| Condition {
            title: c.title.clone(),
            description: c.description.clone(),
            expression: c.expression.clone(),
        }),
    }
}

fn to_api(b: &Binding, members: Vec<String>) -> ApiBinding {
    ApiBinding::new()
        .set_role(b.role.clone())
        .set_members(members)
        .set_or_clear_condition(b.condition.as_ref().map(|c| {
            Expr::new()
                .set_title(c.title.clone())
                .set_description(c.description.clone())
                .set_expression(c.expression.clone())
        }))
}

fn lists(policy: &Policy, slot: &Binding, member: &str) -> bool {
    policy
        .bindings
        .iter()
        .any(|b| from_api(b).same_slot(slot) && b.members.iter().any(|m| m == member))
}

/// Removes `member` from the binding in `slot` (dropping the binding once empty, as IAM does);
/// false when it was not there.
fn remove_member(policy: &mut Policy, slot: &Binding, member: &str) -> bool {
    let mut removed = false;
    for b in policy
        .bindings
        .iter_mut()
        .filter(|b| from_api(b).same_slot(slot))
    {
        let count = b.members.len();
        b.members.retain(|m| m != member);
        removed |= b.members.len() != count;
    }
    policy
        .bindings
        .retain(|b| !(b.members.is_empty() && from_api(b).same_slot(slot)));
    removed
}

/// Adds `member` to the binding in `slot`, re-creating the binding (with its condition) when it
/// is gone; false when it is listed already.
fn add_member(policy: &mut Policy, slot: &Binding, member: &str) -> bool {
    if lists(policy, slot, member) {
        return false;
    }
    match policy
        .bindings
        .iter_mut()
        .find(|b| from_api(b).same_slot(slot))
    {
        Some(b) => b.members.push(member.to_string()),
        None => policy.bindings.push(to_api(slot, vec![member.to_string()])),
    }
    true
}

fn denies(policy: &DenyPolicy, principals: &[String], permission: &str) -> bool {
    policy.rules.iter().any(|r| {
        r.deny_rule().is_some_and(|d| {
            principals.iter().all(|p| d.denied_principals.contains(p))
                && d.denied_permissions.iter().any(|x| x == permission)
        })
    })
}

#[async_trait]
impl ControlPlane for GcpIam {
    fn surface(&self) -> Surface {
        Surface::Gcp
    }

    /// An identity alert whose action is a GCP permission (`service.resource.verb`, optionally
    /// `gcp:`-prefixed), for an agent whose envelope names a GCP principal.
    fn handles(&self, input: &PlanInput<'_>) -> bool {
        let Parameter::Identity { action, .. } = &input.alert.parameter else {
            return false;
        };
        input.alert.dimension == Dimension::Identity
            && Permission::parse(action).is_ok()
            && input
                .envelope
                .spec
                .identity
                .principals
                .iter()
                .any(|p| Principal::parse(p).is_ok())
    }

    async fn observe(&self, input: &PlanInput<'_>) -> Result<Box<dyn Observation>, SurfaceError> {
        let Parameter::Identity { action, resource } = &input.alert.parameter else {
            return Err(SurfaceError::Unsupported {
                plane: PLANE,
                detail: format!("dimension {} is not identity", input.alert.dimension),
            });
        };
        Ok(Box::new(self.observe_state(input, action, resource).await?))
    }

    async fn run(&self, action: &Candidate, op: Op) -> Result<Step, SurfaceError> {
        match &ActionSpec::from_candidate(action)? {
            ActionSpec::RemoveBindingMember {
                project,
                member,
                binding,
                ..
            } => {
                self.remove_binding_member(op, project, member, binding)
                    .await
            }
            ActionSpec::DenyPolicy {
                project,
                policy_id,
                denied_principals,
                denied_permission,
                ..
            } => {
                self.deny_policy(op, project, policy_id, denied_principals, denied_permission)
                    .await
            }
            ActionSpec::RemoveWiUser {
                service_account,
                member,
                bindings,
            } => {
                self.remove_wi_user(op, service_account, member, bindings)
                    .await
            }
            ActionSpec::DisableServiceAccount { service_account } => {
                self.disable_service_account(op, service_account).await
            }
        }
    }

    fn verify_deadline(&self) -> Duration {
        self.config.verify_deadline
    }
}

/// Runs a call that changes nothing (or nothing more when repeated), retrying transient
/// failures with exponential backoff.
async fn retrying<T, F, Fut>(mut call: F) -> Result<T, ApiError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ApiError>>,
{
    let mut delay = BACKOFF;
    let mut attempt = 1;
    loop {
        match call().await {
            Err(e) if is_transient(&e) && attempt < ATTEMPTS => {
                tracing::warn!(attempt, error = %e, "transient GCP API error; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            other => return other,
        }
    }
}

fn status_code(e: &ApiError) -> Option<Code> {
    e.status().map(|s| s.code)
}

/// Worth another try: throttling, server errors, timeouts and failures to reach the server.
fn is_transient(e: &ApiError) -> bool {
    e.is_timeout()
        || e.is_io()
        || e.is_connect()
        || e.is_transport()
        || matches!(e.http_status_code(), Some(429 | 500 | 502 | 503 | 504))
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

/// The write was computed from a policy that no longer holds: its etag moved.
fn is_stale_write(e: &ApiError) -> bool {
    status_code(e) == Some(Code::Aborted) || e.http_status_code() == Some(409)
}

fn api_error(doing: &str, e: ApiError) -> SurfaceError {
    let detail = format!("{doing}: {e}");
    match status_code(&e) {
        Some(Code::PermissionDenied | Code::Unauthenticated) => SurfaceError::Refused {
            plane: PLANE,
            detail: format!(
                "{detail}; grant Firebreak's identity resourcemanager.projects.get/setIamPolicy, \
                 iam.denypolicies.*, iam.serviceAccounts.get/getIamPolicy/setIamPolicy/disable/enable \
                 and iam.roles.get"
            ),
        },
        Some(Code::Aborted) => SurfaceError::Conflict {
            plane: PLANE,
            detail,
        },
        _ if is_transient(&e) => SurfaceError::Unreachable {
            plane: PLANE,
            detail,
        },
        _ => SurfaceError::Refused {
            plane: PLANE,
            detail,
        },
    }
}
