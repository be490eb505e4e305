//! Rung 1, `k8s.delete_rolebinding` (approval only): the whole binding goes, every subject loses
//! its role; the revert re-creates it from its pre-image.

use std::collections::BTreeMap;

use firebreak_containment::plane::{
    Change, Check, KindSpec, Outcome, PlaneError, Proposal, Verification,
};
use k8s_openapi::api::rbac::v1::{RoleRef, Subject};
use kube::api::Preconditions;
use serde::{Deserialize, Serialize};

use super::{allowed_again, K8sSpec};
use crate::cluster::{status_code, write_error, Cluster};
use crate::config::AgentServiceAccount;
use crate::observation::{describe_subject, Ladder};
use crate::permission::ResourceRequest;
use crate::rbac::{names_service_account, Binding, BindingRef, Requester};
use crate::PLANE;

pub static DELETE_ROLEBINDING: KindSpec =
    KindSpec::durable("k8s", "k8s.delete_rolebinding", 1, true);

/// Delete `binding`; `pre_image` is what the revert re-creates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Spec {
    pub binding: BindingRef,
    /// The object planned against: one re-created since (another uid) is not deleted.
    pub uid: Option<String>,
    pub pre_image: PreImage,
    pub agent: AgentServiceAccount,
    pub breach: ResourceRequest,
}

/// What `kubectl create` needs to bring the binding back: its role, subjects and the metadata
/// that identifies its owner (GitOps labels and annotations).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PreImage {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    pub role_ref: RoleRef,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subjects: Vec<Subject>,
}

impl PreImage {
    pub fn of(binding: &Binding) -> PreImage {
        PreImage {
            labels: binding.labels.clone(),
            annotations: binding.annotations.clone(),
            role_ref: binding.role_ref.clone(),
            subjects: binding.subjects.clone(),
        }
    }
}

/// `named`: whether the binding names the agent itself (otherwise it grants through a group,
/// and only this rung cuts it).
pub(crate) fn propose(
    ladder: &Ladder<'_>,
    binding: &Binding,
    named: bool,
    gitops: Vec<String>,
) -> Proposal<K8sSpec> {
    let state = ladder.state;
    let role = format!("{} {}", binding.role_ref.kind, binding.role_ref.name);
    let after = state.rbac.without_binding(&binding.id);
    let still = ladder.still_granted_by(&after);
    let mut notes = gitops;
    if !named {
        notes.push(format!(
            "{} grants the breach through a group the ServiceAccount belongs to, not by naming it: \
             only deleting the binding cuts it",
            binding.id
        ));
    }
    notes.extend(still.clone());
    let others: Vec<String> = binding
        .subjects
        .iter()
        .filter(|s| {
            !names_service_account(
                s,
                binding.id.namespace.as_deref(),
                &state.agent.namespace,
                &state.agent.service_account,
            )
        })
        .map(describe_subject)
        .collect();
    if !others.is_empty() {
        notes.push(format!(
            "every other subject of the binding loses {role} too: {}",
            others.join(", ")
        ));
    }
    let spec = K8sSpec::DeleteBinding(Spec {
        binding: binding.id.clone(),
        uid: binding.uid.clone(),
        pre_image: PreImage::of(binding),
        agent: state.agent.clone(),
        breach: state.breach.clone(),
    });
    Proposal {
        blast_radius: ladder.blast(&after),
        blocks: still.is_none(),
        inverse: format!("re-create {} from its pre-image", binding.id),
        verify: format!(
            "{} is gone and a SubjectAccessReview says {} may no longer {}",
            binding.id,
            ladder.who.user,
            state.breach.describe()
        ),
        notes,
        ..Proposal::new(
            binding.id.to_string(),
            format!(
                "the whole binding: its {} subject(s) lose {role}",
                binding.subjects.len()
            ),
            spec,
        )
    }
}

/// One read, one write: a delete preconditioned on the object read (uid, resourceVersion), or a
/// create from the pre-image. Another writer between the two is a [`PlaneError::Conflict`].
pub(crate) async fn change(
    cluster: &Cluster,
    spec: &Spec,
    change: Change,
) -> Result<Outcome, PlaneError> {
    let id = &spec.binding;
    let current = cluster.binding(id).await?;
    match (change, current) {
        (Change::Apply, None) => Ok(Outcome::unchanged(format!("{id} is already gone"))),
        (Change::Apply, Some(b)) if spec.uid.is_some() && b.uid != spec.uid => {
            Err(PlaneError::Conflict {
                plane: PLANE,
                detail: format!("{id} was re-created since the plan (another uid)"),
            })
        }
        (Change::Apply, Some(b)) => {
            let preconditions = Preconditions {
                uid: b.uid,
                resource_version: Some(b.resource_version),
            };
            match cluster.delete(id, preconditions).await {
                Ok(()) => Ok(Outcome::changed(format!("deleted {id}"))),
                // Deleted by someone else since the read: it is gone, as wanted.
                Err(e) if status_code(&e) == Some(404) => {
                    Ok(Outcome::unchanged(format!("{id} is already gone")))
                }
                Err(e) => Err(write_error(&format!("deleting {id}"), e)),
            }
        }
        (Change::Revert, Some(_)) => Ok(Outcome::unchanged(format!("{id} exists"))),
        (Change::Revert, None) => {
            cluster
                .create(id, &spec.pre_image)
                .await
                .map_err(|e| write_error(&format!("re-creating {id}"), e))?;
            Ok(Outcome::changed(format!(
                "re-created {id} from its pre-image"
            )))
        }
    }
}

pub(crate) async fn check(
    cluster: &Cluster,
    spec: &Spec,
    check: Check,
) -> Result<Verification, PlaneError> {
    let id = &spec.binding;
    let who = Requester::service_account(&spec.agent.namespace, &spec.agent.service_account);
    let exists = cluster.binding(id).await?.is_some();
    match check {
        Check::Applied if exists => Ok(Verification::failed(format!("{id} still exists"))),
        Check::Applied => {
            let allowed = cluster.review(&who, &spec.breach).await?;
            Ok(if allowed {
                Verification::failed(format!(
                    "{id} is gone but {} may still {}",
                    who.user,
                    spec.breach.describe()
                ))
            } else {
                Verification::ok(format!(
                    "{id} is gone; SubjectAccessReview denies {} to {}",
                    spec.breach.describe(),
                    who.user
                ))
            })
        }
        Check::Reverted if !exists => Ok(Verification::failed(format!("{id} does not exist yet"))),
        Check::Reverted => allowed_again(cluster, &who, &spec.breach).await,
    }
}
