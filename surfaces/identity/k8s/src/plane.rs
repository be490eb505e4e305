//! The Kubernetes RBAC control plane over `kube`: reads bindings and roles, removes one subject
//! with a JSON Patch guarded by `test` ops, verifies with SubjectAccessReviews.
//!
//! Writes are never re-sent blindly: each attempt re-reads the binding, re-plans the patch from
//! what it read (the subject's index may have moved) and guards it with that resourceVersion. A
//! failed `test` (422), a failed precondition (409) or a transient error (429, 5xx, transport)
//! starts the next attempt after a backoff; after [`ATTEMPTS`] the caller gets a `Conflict` or
//! `Unreachable` and re-plans the incident. Reads and reviews, which change nothing, are retried
//! the same bounded way.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use firebreak_containment::action::Surface;
use firebreak_containment::alert::{Dimension, Parameter};
use firebreak_containment::plan::Candidate;
use firebreak_containment::surface::{
    ControlPlane, Observation, Op, PlanInput, Step, SurfaceError,
};
use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, RemoveOperation, TestOperation};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{
    DeleteParams, ListParams, Patch as KubePatch, PatchParams, PostParams, Preconditions,
};
use kube::{Api, Client};
use serde_json::Value;

use crate::config::{AgentServiceAccount, K8sConfig};
use crate::identity::{identities_of, CloudIdentity, IdentityError};
use crate::ladder::{agent_subject, describe_subject, ActionSpec, K8sState};
use crate::permission::{parse_action, ResourceRequest};
use crate::rbac::{Binding, BindingKind, BindingRef, RbacState, Requester, RoleKey};
use crate::{K8sError, PLANE};

/// Tries per operation (reads, reviews, and read→patch cycles).
pub const ATTEMPTS: u32 = 4;
/// First backoff; doubled after each failed try (100, 200, 400 ms).
pub const BACKOFF: Duration = Duration::from_millis(100);

pub struct K8sRbac {
    client: Client,
    config: K8sConfig,
}

impl K8sRbac {
    /// Builds the client: `apiServer` as given (no credentials), else in-cluster, else kubeconfig.
    pub async fn new(config: K8sConfig) -> Result<K8sRbac, K8sError> {
        // rustls refuses to guess when the binary links two crypto providers (the AWS SDK brings
        // its own); an Err means one is installed already, which serves as well.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let mut kube_config = match &config.api_server {
            Some(url) => kube::Config::new(url.parse().map_err(|e| K8sError::Config {
                field: "apiServer",
                reason: format!("{url:?} is not a URL: {e}"),
            })?),
            None => kube::Config::infer().await.map_err(|e| K8sError::Config {
                field: "apiServer",
                reason: format!(
                    "not set, and neither in-cluster credentials nor a kubeconfig were found: {e}"
                ),
            })?,
        };
        // Our own bounded retries re-read before re-writing; kube's would re-send the same body.
        kube_config.default_retry = false;
        kube_config.connect_timeout = Some(Duration::from_secs(5));
        kube_config.read_timeout = Some(Duration::from_secs(15));
        for (key, agent) in &config.agents {
            if agent.namespace.is_empty() || agent.service_account.is_empty() {
                return Err(K8sError::Config {
                    field: "agents",
                    reason: format!("{key}: namespace and serviceAccount must not be empty"),
                });
            }
        }
        let client = Client::try_from(kube_config).map_err(|e| K8sError::Config {
            field: "apiServer",
            reason: format!("cannot build a Kubernetes client: {e}"),
        })?;
        Ok(K8sRbac { client, config })
    }

    /// The ServiceAccount the agent of `input` runs as, from `k8s.agents`.
    fn agent(&self, input: &PlanInput<'_>) -> Option<&AgentServiceAccount> {
        self.config.agents.get(&input.alert.agent.key().0)
    }

    /// The cloud identities ServiceAccount `namespace/name` maps to (IRSA, GKE, AKS).
    pub async fn resolve_identities(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Vec<CloudIdentity>, IdentityError> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
        let sa = retrying(|| api.get_opt(name))
            .await
            .map_err(|e| IdentityError::Api {
                namespace: namespace.into(),
                name: name.into(),
                detail: e.to_string(),
            })?
            .ok_or_else(|| IdentityError::NotFound {
                namespace: namespace.into(),
                name: name.into(),
            })?;
        identities_of(
            namespace,
            name,
            &sa.metadata.annotations.unwrap_or_default(),
            self.config.gke_workload_pool.as_ref(),
        )
    }

    /// Reads the bindings of every namespace the breach and the envelope touch, the roles they
    /// reference, and dry-runs each removal the ladder could propose. Nothing is written.
    pub async fn observe_state(
        &self,
        agent: &AgentServiceAccount,
        breach: ResourceRequest,
        envelope_namespaces: BTreeSet<String>,
    ) -> Result<K8sState, SurfaceError> {
        let sas: Api<ServiceAccount> = Api::namespaced(self.client.clone(), &agent.namespace);
        if retrying(|| sas.get_opt(&agent.service_account))
            .await
            .map_err(|e| api_error("reading the agent's ServiceAccount", e))?
            .is_none()
        {
            return Err(SurfaceError::Invalid {
                plane: PLANE,
                detail: format!(
                    "ServiceAccount {}/{} does not exist; fix k8s.agents for this agent",
                    agent.namespace, agent.service_account
                ),
            });
        }
        let mut rbac = RbacState::default();
        let all = ListParams::default();
        let crbs: Api<ClusterRoleBinding> = Api::all(self.client.clone());
        for crb in retrying(|| crbs.list(&all))
            .await
            .map_err(|e| api_error("listing ClusterRoleBindings", e))?
        {
            rbac.bindings.push(from_cluster_binding(crb));
        }
        let namespaces: BTreeSet<String> = envelope_namespaces
            .into_iter()
            .chain(breach.namespace.clone())
            .collect();
        for ns in &namespaces {
            let rbs: Api<RoleBinding> = Api::namespaced(self.client.clone(), ns);
            for rb in retrying(|| rbs.list(&all))
                .await
                .map_err(|e| api_error(&format!("listing RoleBindings in {ns}"), e))?
            {
                rbac.bindings.push(from_binding(rb, ns));
            }
        }
        let keys: BTreeSet<RoleKey> = rbac
            .bindings
            .iter()
            .map(|b| RoleKey::of(&b.id, &b.role_ref))
            .collect();
        for key in keys {
            let rules = self.read_role(&key).await?;
            rbac.roles.insert(key, rules);
        }

        let who = Requester::service_account(&agent.namespace, &agent.service_account);
        let mut dry_runs = BTreeMap::new();
        for grant in rbac.grants(&who, &breach) {
            let Some(binding) = rbac.binding(&grant.binding) else {
                continue;
            };
            let Some(index) = agent_subject(binding, agent) else {
                continue;
            };
            if dry_runs.contains_key(&binding.id) {
                continue;
            }
            let patch = guarded(
                &binding.resource_version,
                index,
                &binding.subjects[index],
                remove(index),
            );
            let outcome = retrying(|| self.patch(&binding.id, patch.clone(), true))
                .await
                .map(|_| ())
                .map_err(|e| e.to_string());
            dry_runs.insert(binding.id.clone(), outcome);
        }
        Ok(K8sState {
            agent: agent.clone(),
            breach,
            rbac,
            dry_runs,
        })
    }

    async fn read_role(
        &self,
        key: &RoleKey,
    ) -> Result<Option<Vec<k8s_openapi::api::rbac::v1::PolicyRule>>, SurfaceError> {
        let doing = format!("reading {} {}", key.kind, key.name);
        Ok(match (key.kind.as_str(), &key.namespace) {
            ("Role", Some(ns)) => {
                let api: Api<Role> = Api::namespaced(self.client.clone(), ns);
                retrying(|| api.get_opt(&key.name))
                    .await
                    .map_err(|e| api_error(&doing, e))?
                    .map(|r| r.rules.unwrap_or_default())
            }
            ("ClusterRole", None) => {
                let api: Api<ClusterRole> = Api::all(self.client.clone());
                retrying(|| api.get_opt(&key.name))
                    .await
                    .map_err(|e| api_error(&doing, e))?
                    .map(|r| r.rules.unwrap_or_default())
            }
            // A roleRef naming another kind is refused by the API server; it grants nothing.
            _ => None,
        })
    }

    /// The binding as it is now; `None` when it does not exist.
    async fn read_binding(&self, id: &BindingRef) -> Result<Option<Binding>, SurfaceError> {
        let doing = format!("reading {id}");
        match (&id.kind, &id.namespace) {
            (BindingKind::RoleBinding, Some(ns)) => {
                let api: Api<RoleBinding> = Api::namespaced(self.client.clone(), ns);
                Ok(retrying(|| api.get_opt(&id.name))
                    .await
                    .map_err(|e| api_error(&doing, e))?
                    .map(|b| from_binding(b, ns)))
            }
            (BindingKind::ClusterRoleBinding, None) => {
                let api: Api<ClusterRoleBinding> = Api::all(self.client.clone());
                Ok(retrying(|| api.get_opt(&id.name))
                    .await
                    .map_err(|e| api_error(&doing, e))?
                    .map(from_cluster_binding))
            }
            _ => Err(SurfaceError::Invalid {
                plane: PLANE,
                detail: format!("{id}: a RoleBinding needs a namespace, a ClusterRoleBinding none"),
            }),
        }
    }

    async fn patch(&self, id: &BindingRef, patch: Patch, dry_run: bool) -> kube::Result<()> {
        let params = PatchParams {
            dry_run,
            ..PatchParams::default()
        };
        let patch: KubePatch<()> = KubePatch::Json(patch);
        match &id.namespace {
            Some(ns) => Api::<RoleBinding>::namespaced(self.client.clone(), ns)
                .patch(&id.name, &params, &patch)
                .await
                .map(drop),
            None => Api::<ClusterRoleBinding>::all(self.client.clone())
                .patch(&id.name, &params, &patch)
                .await
                .map(drop),
        }
    }

    /// Whether `who` may do `req`, asked of the cluster's own authorizer.
    async fn review(&self, who: &Requester, req: &ResourceRequest) -> Result<bool, SurfaceError> {
        let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
        let review = SubjectAccessReview {
            metadata: ObjectMeta::default(),
            spec: SubjectAccessReviewSpec {
                user: (!who.user.is_empty()).then(|| who.user.clone()),
                groups: Some(who.groups.clone()),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(req.verb.clone()),
                    group: Some(req.group.clone()),
                    resource: Some(req.resource.clone()),
                    subresource: req.subresource.clone(),
                    namespace: req.namespace.clone(),
                    name: req.name.clone(),
                    ..ResourceAttributes::default()
                }),
                ..SubjectAccessReviewSpec::default()
            },
            status: None,
        };
        let params = PostParams::default();
        let answer = retrying(|| api.create(&params, &review))
            .await
            .map_err(|e| api_error("creating a SubjectAccessReview", e))?;
        Ok(answer.status.is_some_and(|s| s.allowed))
    }

    /// One read→plan→write cycle per attempt. `plan` decides from the fresh read: `Done` (already
    /// in target state, nothing written) or a write; `write` reports whether the attempt should
    /// be retried from a fresh read.
    async fn converge<P, W, Fut>(
        &self,
        id: &BindingRef,
        plan: P,
        write: W,
    ) -> Result<Step, SurfaceError>
    where
        P: Fn(Option<&Binding>) -> Result<Planned, SurfaceError>,
        W: Fn(Planned) -> Fut,
        Fut: Future<Output = kube::Result<String>>,
    {
        let mut delay = BACKOFF;
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            let current = self.read_binding(id).await?;
            let planned = plan(current.as_ref())?;
            if let Planned::Done(detail) = planned {
                return Ok(Step::unchanged(detail));
            }
            match write(planned).await {
                Ok(detail) => return Ok(Step::changed(detail)),
                Err(e) if is_stale_write(&e) || is_transient(&e) => {
                    tracing::warn!(binding = %id, attempt, error = %e, "write not applied; re-reading");
                    last = e.to_string();
                    if attempt < ATTEMPTS {
                        tokio::time::sleep(delay).await;
                        delay *= 2;
                    }
                }
                Err(e) => return Err(api_error(&format!("writing {id}"), e)),
            }
        }
        Err(SurfaceError::Conflict {
            plane: PLANE,
            detail: format!(
                "{id} kept changing or failing over {ATTEMPTS} guarded attempts (last: {last})"
            ),
        })
    }

    async fn remove_subject(&self, op: Op, spec: &RemoveSpec<'_>) -> Result<Step, SurfaceError> {
        let id = spec.binding;
        let who = Requester::service_account(&spec.agent.namespace, &spec.agent.service_account);
        match op {
            Op::Apply => {
                self.converge(
                    id,
                    |current| {
                        let binding = current.ok_or_else(|| gone(id))?;
                        Ok(match position(binding, spec.subject) {
                            None => Planned::Done(format!(
                                "{} is not a subject of {id}",
                                describe_subject(spec.subject)
                            )),
                            Some(i) => Planned::Patch(guarded(
                                &binding.resource_version,
                                i,
                                &binding.subjects[i],
                                remove(i),
                            )),
                        })
                    },
                    |planned| self.write_patch(id, planned, "removed", spec.subject),
                )
                .await
            }
            Op::Revert => {
                self.converge(
                    id,
                    |current| {
                        let binding = current.ok_or_else(|| gone(id))?;
                        if position(binding, spec.subject).is_some() {
                            return Ok(Planned::Done(format!(
                                "{} is a subject of {id}",
                                describe_subject(spec.subject)
                            )));
                        }
                        let rv = test(
                            &["metadata", "resourceVersion"],
                            Value::String(binding.resource_version.clone()),
                        );
                        let add = if binding.subjects.is_empty() {
                            // The API server omits an empty list: create it.
                            add(&["subjects"], serde_json::json!([spec.subject]))
                        } else {
                            // Back where it was, so the binding reads as before.
                            let at = spec.index.min(binding.subjects.len());
                            add(
                                &["subjects", &at.to_string()],
                                serde_json::json!(spec.subject),
                            )
                        };
                        Ok(Planned::Patch(Patch(vec![rv, add])))
                    },
                    |planned| self.write_patch(id, planned, "re-added", spec.subject),
                )
                .await
            }
            Op::Verify => {
                if self.review(&who, spec.breach).await? {
                    return Ok(Step::failed(format!(
                        "{} may still {}",
                        who.user,
                        spec.breach.describe()
                    )));
                }
                let Some(binding) = self.read_binding(id).await? else {
                    return Ok(Step::failed(format!(
                        "{id} no longer exists: its other subjects lost their access"
                    )));
                };
                let mut lost = Vec::new();
                let present: Vec<&Subject> = spec
                    .keep
                    .iter()
                    .filter(|s| position(&binding, s).is_some())
                    .collect();
                for subject in &present {
                    let requester = Requester::of_subject(subject, id.namespace.as_deref());
                    if !self.review(&requester, spec.breach).await? {
                        lost.push(describe_subject(subject));
                    }
                }
                Ok(if lost.is_empty() {
                    Step::ok(format!(
                        "SubjectAccessReview denies {} to {}; {} other subject(s) of {id} still allowed",
                        spec.breach.describe(),
                        who.user,
                        present.len()
                    ))
                } else {
                    Step::failed(format!(
                        "{} can no longer {} either; only the agent should have lost it",
                        lost.join(", "),
                        spec.breach.describe()
                    ))
                })
            }
            Op::VerifyReverted => self.verify_allowed(&who, spec.breach).await,
        }
    }

    async fn verify_allowed(
        &self,
        who: &Requester,
        breach: &ResourceRequest,
    ) -> Result<Step, SurfaceError> {
        Ok(if self.review(who, breach).await? {
            Step::ok(format!("{} may {} again", who.user, breach.describe()))
        } else {
            Step::failed(format!("{} may not {} yet", who.user, breach.describe()))
        })
    }

    async fn write_patch(
        &self,
        id: &BindingRef,
        planned: Planned,
        verb: &str,
        subject: &Subject,
    ) -> kube::Result<String> {
        let Planned::Patch(patch) = planned else {
            return Ok(String::new());
        };
        self.patch(id, patch, false).await?;
        Ok(format!("{verb} {} in {id}", describe_subject(subject)))
    }

    async fn delete_binding(&self, op: Op, spec: &DeleteSpec<'_>) -> Result<Step, SurfaceError> {
        let id = spec.binding;
        let who = Requester::service_account(&spec.agent.namespace, &spec.agent.service_account);
        match op {
            Op::Apply => {
                self.converge(
                    id,
                    |current| match current {
                        None => Ok(Planned::Done(format!("{id} is already gone"))),
                        Some(b) if spec.uid.is_some() && b.uid.as_ref() != spec.uid => {
                            Err(SurfaceError::Conflict {
                                plane: PLANE,
                                detail: format!(
                                    "{id} was re-created since the plan (another uid); re-plan"
                                ),
                            })
                        }
                        Some(b) => Ok(Planned::Delete(Preconditions {
                            uid: b.uid.clone(),
                            resource_version: Some(b.resource_version.clone()),
                        })),
                    },
                    |planned| async move {
                        let Planned::Delete(preconditions) = planned else {
                            return Ok(String::new());
                        };
                        let params = DeleteParams {
                            preconditions: Some(preconditions),
                            ..DeleteParams::default()
                        };
                        self.delete(id, &params).await?;
                        Ok(format!("deleted {id}"))
                    },
                )
                .await
            }
            Op::Revert => {
                self.converge(
                    id,
                    |current| match current {
                        Some(_) => Ok(Planned::Done(format!("{id} exists"))),
                        None => Ok(Planned::Create),
                    },
                    |_| async move {
                        self.create(id, spec.pre_image).await?;
                        Ok(format!("re-created {id} from its pre-image"))
                    },
                )
                .await
            }
            Op::Verify => {
                if self.read_binding(id).await?.is_some() {
                    return Ok(Step::failed(format!("{id} still exists")));
                }
                Ok(if self.review(&who, spec.breach).await? {
                    Step::failed(format!(
                        "{id} is gone but {} may still {}",
                        who.user,
                        spec.breach.describe()
                    ))
                } else {
                    Step::ok(format!(
                        "{id} is gone; SubjectAccessReview denies {} to {}",
                        spec.breach.describe(),
                        who.user
                    ))
                })
            }
            Op::VerifyReverted => {
                if self.read_binding(id).await?.is_none() {
                    return Ok(Step::failed(format!("{id} does not exist yet")));
                }
                self.verify_allowed(&who, spec.breach).await
            }
        }
    }

    async fn delete(&self, id: &BindingRef, params: &DeleteParams) -> kube::Result<()> {
        match &id.namespace {
            Some(ns) => Api::<RoleBinding>::namespaced(self.client.clone(), ns)
                .delete(&id.name, params)
                .await
                .map(drop),
            None => Api::<ClusterRoleBinding>::all(self.client.clone())
                .delete(&id.name, params)
                .await
                .map(drop),
        }
    }

    async fn create(&self, id: &BindingRef, pre_image: &Value) -> kube::Result<()> {
        let params = PostParams::default();
        match &id.namespace {
            Some(ns) => {
                let object: RoleBinding =
                    serde_json::from_value(pre_image.clone()).map_err(kube::Error::SerdeError)?;
                Api::<RoleBinding>::namespaced(self.client.clone(), ns)
                    .create(&params, &object)
                    .await
                    .map(drop)
            }
            None => {
                let object: ClusterRoleBinding =
                    serde_json::from_value(pre_image.clone()).map_err(kube::Error::SerdeError)?;
                Api::<ClusterRoleBinding>::all(self.client.clone())
                    .create(&params, &object)
                    .await
                    .map(drop)
            }
        }
    }
}

/// What one attempt will do after reading the binding.
enum Planned {
    Done(String),
    Patch(Patch),
    Delete(Preconditions),
    Create,
}

struct RemoveSpec<'a> {
    binding: &'a BindingRef,
    subject: &'a Subject,
    index: usize,
    agent: &'a AgentServiceAccount,
    breach: &'a ResourceRequest,
    keep: &'a [Subject],
}

struct DeleteSpec<'a> {
    binding: &'a BindingRef,
    uid: Option<&'a String>,
    pre_image: &'a Value,
    agent: &'a AgentServiceAccount,
    breach: &'a ResourceRequest,
}

#[async_trait]
impl ControlPlane for K8sRbac {
    fn surface(&self) -> Surface {
        Surface::K8s
    }

    /// An identity alert whose action is a Kubernetes verb (`k8s:<verb>`), about an agent with a
    /// ServiceAccount under `k8s.agents`.
    fn handles(&self, input: &PlanInput<'_>) -> bool {
        let Parameter::Identity { action, .. } = &input.alert.parameter else {
            return false;
        };
        input.alert.dimension == Dimension::Identity
            && parse_action(action).is_ok()
            && self.agent(input).is_some()
    }

    async fn observe(&self, input: &PlanInput<'_>) -> Result<Box<dyn Observation>, SurfaceError> {
        let Parameter::Identity { action, resource } = &input.alert.parameter else {
            return Err(SurfaceError::Unsupported {
                plane: PLANE,
                detail: format!("dimension {} is not identity", input.alert.dimension),
            });
        };
        let agent = self.agent(input).ok_or_else(|| SurfaceError::Invalid {
            plane: PLANE,
            detail: format!(
                "agent {} has no ServiceAccount under k8s.agents; add {{namespace, serviceAccount}} for it",
                input.alert.agent.key()
            ),
        })?;
        let breach =
            ResourceRequest::parse(action, resource).map_err(|e| SurfaceError::Invalid {
                plane: PLANE,
                detail: format!("parameter: {e}"),
            })?;
        let namespaces = input
            .envelope
            .identity()
            .permitted
            .iter()
            .filter_map(|e| ResourceRequest::parse(&e.value.action, &e.value.resource).ok())
            .filter_map(|r| r.namespace)
            .collect();
        Ok(Box::new(
            self.observe_state(agent, breach, namespaces).await?,
        ))
    }

    async fn run(&self, action: &Candidate, op: Op) -> Result<Step, SurfaceError> {
        match &ActionSpec::from_candidate(action)? {
            ActionSpec::RemoveSubject {
                binding,
                subject,
                index,
                agent,
                breach,
                keep,
                ..
            } => {
                self.remove_subject(
                    op,
                    &RemoveSpec {
                        binding,
                        subject,
                        index: *index,
                        agent,
                        breach,
                        keep,
                    },
                )
                .await
            }
            ActionSpec::DeleteBinding {
                binding,
                uid,
                pre_image,
                agent,
                breach,
                ..
            } => {
                self.delete_binding(
                    op,
                    &DeleteSpec {
                        binding,
                        uid: uid.as_ref(),
                        pre_image,
                        agent,
                        breach,
                    },
                )
                .await
            }
        }
    }

    fn verify_deadline(&self) -> Duration {
        self.config.verify_deadline
    }
}

/// Runs a call that changes nothing, retrying transient failures with exponential backoff.
async fn retrying<T, F, Fut>(mut call: F) -> kube::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = kube::Result<T>>,
{
    let mut delay = BACKOFF;
    let mut attempt = 1;
    loop {
        match call().await {
            Err(e) if is_transient(&e) && attempt < ATTEMPTS => {
                tracing::warn!(attempt, error = %e, "transient Kubernetes API error; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            other => return other,
        }
    }
}

fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// Worth another try: throttling, server errors, and failures to reach the server at all.
fn is_transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(status) => matches!(status.code, 429 | 500 | 502 | 503 | 504),
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

/// The write was computed from a state that no longer holds: a JSON Patch `test` failed (422)
/// or a delete precondition / create found another object (409).
fn is_stale_write(e: &kube::Error) -> bool {
    matches!(status_code(e), Some(409 | 422))
}

fn api_error(doing: &str, e: kube::Error) -> SurfaceError {
    let detail = format!("{doing}: {e}");
    match e {
        kube::Error::Api(status) if matches!(status.code, 401 | 403) => SurfaceError::Refused {
            plane: PLANE,
            detail: format!("{detail}; grant Firebreak's identity get/list/patch on (cluster)rolebindings, get on roles, serviceaccounts and create on subjectaccessreviews"),
        },
        ref e if is_transient(e) => SurfaceError::Unreachable { plane: PLANE, detail },
        _ => SurfaceError::Refused { plane: PLANE, detail },
    }
}

fn gone(id: &BindingRef) -> SurfaceError {
    SurfaceError::Conflict {
        plane: PLANE,
        detail: format!("{id} does not exist (deleted since the plan?); re-plan the incident"),
    }
}

/// Same subject: kind, name and (for ServiceAccounts) namespace; apiGroup defaults differ.
fn position(binding: &Binding, subject: &Subject) -> Option<usize> {
    binding.subjects.iter().position(|s| {
        s.kind == subject.kind && s.name == subject.name && s.namespace == subject.namespace
    })
}

fn test(path: &[&str], value: Value) -> PatchOperation {
    PatchOperation::Test(TestOperation {
        path: pointer(path),
        value,
    })
}

fn add(path: &[&str], value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation {
        path: pointer(path),
        value,
    })
}

fn remove(index: usize) -> PatchOperation {
    PatchOperation::Remove(RemoveOperation {
        path: pointer(&["subjects", &index.to_string()]),
    })
}

fn pointer(tokens: &[&str]) -> PointerBuf {
    PointerBuf::from_tokens(tokens.iter().copied())
}

/// `op`, applied only if the binding is still at `resource_version` with `subject` at `index`.
fn guarded(resource_version: &str, index: usize, subject: &Subject, op: PatchOperation) -> Patch {
    Patch(vec![
        test(
            &["metadata", "resourceVersion"],
            Value::String(resource_version.to_string()),
        ),
        test(
            &["subjects", &index.to_string()],
            serde_json::to_value(subject).unwrap_or(Value::Null),
        ),
        op,
    ])
}

fn from_binding(b: RoleBinding, namespace: &str) -> Binding {
    binding_of(
        BindingKind::RoleBinding,
        Some(namespace.to_string()),
        b.metadata,
        b.role_ref,
        b.subjects,
    )
}

fn from_cluster_binding(b: ClusterRoleBinding) -> Binding {
    binding_of(
        BindingKind::ClusterRoleBinding,
        None,
        b.metadata,
        b.role_ref,
        b.subjects,
    )
}

fn binding_of(
    kind: BindingKind,
    namespace: Option<String>,
    metadata: ObjectMeta,
    role_ref: k8s_openapi::api::rbac::v1::RoleRef,
    subjects: Option<Vec<Subject>>,
) -> Binding {
    Binding {
        id: BindingRef {
            kind,
            namespace,
            name: metadata.name.unwrap_or_default(),
        },
        uid: metadata.uid,
        resource_version: metadata.resource_version.unwrap_or_default(),
        role_ref,
        subjects: subjects.unwrap_or_default(),
        labels: metadata.labels.unwrap_or_default(),
        annotations: metadata.annotations.unwrap_or_default(),
    }
}
