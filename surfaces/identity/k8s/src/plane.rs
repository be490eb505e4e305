//! The Kubernetes RBAC control plane over `kube`: reads bindings and roles, removes one subject
//! with a JSON Patch guarded by `test` ops (or deletes the binding), verifies with
//! SubjectAccessReviews.
//!
//! Every call makes one attempt and answers with a typed [`PlaneError`] when it fails; the
//! engine retries transient faults and re-plans conflicts (docs/adding-a-plane.md §4).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_trait::async_trait;
use firebreak_containment::alert::Parameter;
use firebreak_containment::plane::{
    Change, Check, Cloud, KindSpec, Observation, Outcome, PlanInput, Plane, PlaneError, Route,
    Verification,
};
use kube::Client;

use crate::cluster::{api_error, Cluster};
use crate::config::{AgentServiceAccount, K8sConfig};
use crate::identity::{identities_of, CloudIdentity, IdentityError};
use crate::observation::{agent_subject, K8sState};
use crate::permission::ResourceRequest;
use crate::rbac::{RbacState, Requester, RoleKey};
use crate::rungs::{
    delete_binding, guarded_removal, remove_subject, K8sSpec, DELETE_ROLEBINDING,
    REMOVE_ROLEBINDING_SUBJECT,
};
use crate::{K8sError, PLANE};

pub struct K8sRbac {
    cluster: Cluster,
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
        // The engine retries transient faults (after re-reading, for writes); kube's own retry
        // would re-send the same body.
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
        Ok(K8sRbac {
            cluster: Cluster::new(client),
            config,
        })
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
        let sa = self
            .cluster
            .service_account(namespace, name)
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
    ) -> Result<K8sState, PlaneError> {
        let sa = self
            .cluster
            .service_account(&agent.namespace, &agent.service_account)
            .await
            .map_err(|e| api_error("reading the agent's ServiceAccount", e))?;
        if sa.is_none() {
            return Err(PlaneError::Invalid {
                plane: PLANE,
                detail: format!(
                    "ServiceAccount {}/{} does not exist; fix k8s.agents for this agent",
                    agent.namespace, agent.service_account
                ),
            });
        }
        let namespaces: BTreeSet<String> = envelope_namespaces
            .into_iter()
            .chain(breach.namespace.clone())
            .collect();
        let mut rbac = RbacState {
            bindings: self.cluster.bindings(&namespaces).await?,
            ..RbacState::default()
        };
        let keys: BTreeSet<RoleKey> = rbac
            .bindings
            .iter()
            .map(|b| RoleKey::of(&b.id, &b.role_ref))
            .collect();
        for key in keys {
            let rules = self.cluster.role(&key).await?;
            rbac.roles.insert(key, rules);
        }

        let who = Requester::service_account(&agent.namespace, &agent.service_account);
        let mut dry_runs = BTreeMap::new();
        for grant in rbac.grants(&who, &breach) {
            let Some(binding) = rbac.binding(&grant.binding) else {
                continue;
            };
            let Some((index, subject)) = agent_subject(binding, agent) else {
                continue;
            };
            if dry_runs.contains_key(&binding.id) {
                continue;
            }
            let patch = guarded_removal(&binding.resource_version, index, subject)?;
            let answer = match self.cluster.patch(&binding.id, patch, true).await {
                Ok(()) => Ok(()),
                // A server that did not answer refused nothing: the plan cannot be made yet.
                Err(e) => match api_error("dry-running the removal", e) {
                    PlaneError::Refused { detail, .. } => Err(detail),
                    transient => return Err(transient),
                },
            };
            dry_runs.insert(binding.id.clone(), answer);
        }
        Ok(K8sState {
            agent: agent.clone(),
            breach,
            rbac,
            dry_runs,
        })
    }
}

#[async_trait]
impl Plane for K8sRbac {
    const KEY: &'static str = "k8s";
    const ROUTE: Route = Route::Identity(Cloud::Kubernetes);
    const KINDS: &'static [&'static KindSpec] = &[&REMOVE_ROLEBINDING_SUBJECT, &DELETE_ROLEBINDING];
    type Spec = K8sSpec;

    fn kind_of(spec: &K8sSpec) -> &'static KindSpec {
        match spec {
            K8sSpec::RemoveSubject(_) => &REMOVE_ROLEBINDING_SUBJECT,
            K8sSpec::DeleteBinding(_) => &DELETE_ROLEBINDING,
        }
    }

    /// An agent with a ServiceAccount under `k8s.agents` (the engine routed `k8s:<verb>` here).
    fn handles(&self, input: &PlanInput<'_>) -> bool {
        self.agent(input).is_some()
    }

    async fn observe(
        &self,
        input: &PlanInput<'_>,
    ) -> Result<Box<dyn Observation<K8sSpec>>, PlaneError> {
        let Parameter::Identity { action, resource } = &input.alert.parameter else {
            return Err(PlaneError::Unsupported {
                plane: PLANE,
                detail: format!("dimension {} is not identity", input.alert.dimension()),
            });
        };
        let agent = self.agent(input).ok_or_else(|| PlaneError::Invalid {
            plane: PLANE,
            detail: format!(
                "agent {} has no ServiceAccount under k8s.agents; add {{namespace, serviceAccount}} for it",
                input.alert.agent.key()
            ),
        })?;
        let breach = ResourceRequest::parse(action, resource).map_err(|e| PlaneError::Invalid {
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

    async fn change(&self, spec: &K8sSpec, change: Change) -> Result<Outcome, PlaneError> {
        match spec {
            K8sSpec::RemoveSubject(s) => remove_subject::change(&self.cluster, s, change).await,
            K8sSpec::DeleteBinding(s) => delete_binding::change(&self.cluster, s, change).await,
        }
    }

    async fn check(&self, spec: &K8sSpec, check: Check) -> Result<Verification, PlaneError> {
        match spec {
            K8sSpec::RemoveSubject(s) => remove_subject::check(&self.cluster, s, check).await,
            K8sSpec::DeleteBinding(s) => delete_binding::check(&self.cluster, s, check).await,
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
    fn the_k8s_ladder_registers() {
        let mut kinds = Kinds::default();
        kinds.declare(K8sRbac::KINDS).expect("declare");
        assert_eq!(kinds.check_ladders(), Ok(()));
        assert!(DELETE_ROLEBINDING.approval_only && !REMOVE_ROLEBINDING_SUBJECT.approval_only);
    }
}
