//! Rung 0, `k8s.remove_rolebinding_subject`: the agent's own subject leaves one binding; the
//! binding's other subjects keep their access.

use firebreak_containment::plane::{
    Change, Check, KindSpec, Outcome, PlaneError, Proposal, Verification,
};
use k8s_openapi::api::rbac::v1::Subject;
use serde::{Deserialize, Serialize};

use super::{allowed_again, gone, guarded_addition, guarded_removal, position, K8sSpec};
use crate::cluster::{write_error, Cluster};
use crate::config::AgentServiceAccount;
use crate::observation::{describe_subject, Ladder};
use crate::permission::ResourceRequest;
use crate::rbac::{Binding, BindingRef, Requester};

pub static REMOVE_ROLEBINDING_SUBJECT: KindSpec =
    KindSpec::durable("k8s", "k8s.remove_rolebinding_subject", 0, false);

/// Remove `subject` from `binding`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Spec {
    pub binding: BindingRef,
    pub subject: Subject,
    /// Where the subject was when planned: the revert puts it back there.
    pub index: usize,
    pub agent: AgentServiceAccount,
    pub breach: ResourceRequest,
    /// The binding's other subjects: they must keep the breached permission.
    pub keep: Vec<Subject>,
}

pub(crate) fn propose(
    ladder: &Ladder<'_>,
    binding: &Binding,
    index: usize,
    subject: &Subject,
    gitops: Vec<String>,
) -> Proposal<K8sSpec> {
    let state = ladder.state;
    let role = format!("{} {}", binding.role_ref.kind, binding.role_ref.name);
    let after = state.rbac.without_subject(&binding.id, index);
    let still = ladder.still_granted_by(&after);
    let keep: Vec<Subject> = binding
        .subjects
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != index)
        .map(|(_, s)| s.clone())
        .collect();
    let mut notes = gitops;
    notes.extend(still.clone());
    let rejected = match state.dry_runs.get(&binding.id) {
        Some(Ok(())) => None,
        Some(Err(refusal)) => Some(format!(
            "the API server's dry run refused the patch: {refusal}"
        )),
        None => Some("the patch was not validated by a server-side dry run".into()),
    };
    let granularity = format!(
        "one subject of one binding: {} loses {role} through {}; the binding's {} other \
         subject(s) keep it",
        describe_subject(subject),
        binding.id,
        keep.len()
    );
    let spec = K8sSpec::RemoveSubject(Spec {
        binding: binding.id.clone(),
        subject: subject.clone(),
        index,
        agent: state.agent.clone(),
        breach: state.breach.clone(),
        keep,
    });
    Proposal {
        blast_radius: ladder.blast(&after),
        blocks: still.is_none(),
        inverse: format!(
            "re-add {} to {} (JSON Patch guarded by resourceVersion)",
            describe_subject(subject),
            binding.id
        ),
        verify: format!(
            "SubjectAccessReview: {} may no longer {}; the binding's other subjects still may",
            ladder.who.user,
            state.breach.describe()
        ),
        rejected,
        notes,
        ..Proposal::new(
            format!("{} subject {}", binding.id, describe_subject(subject)),
            granularity,
            spec,
        )
    }
}

/// One read, one guarded patch. The patch is planned from that read (the subject's index may
/// have moved since the plan); a binding edited between the two fails its `test` guard and is
/// a [`PlaneError::Conflict`], never a blind re-send.
pub(crate) async fn change(
    cluster: &Cluster,
    spec: &Spec,
    change: Change,
) -> Result<Outcome, PlaneError> {
    let id = &spec.binding;
    let who = describe_subject(&spec.subject);
    let binding = cluster.binding(id).await?.ok_or_else(|| gone(id))?;
    let (patch, done) = match (change, position(&binding, &spec.subject)) {
        (Change::Apply, None) => {
            return Ok(Outcome::unchanged(format!(
                "{who} is not a subject of {id}"
            )))
        }
        (Change::Revert, Some(_)) => {
            return Ok(Outcome::unchanged(format!("{who} is a subject of {id}")))
        }
        (Change::Apply, Some(i)) => (
            guarded_removal(&binding.resource_version, i, &spec.subject)?,
            format!("removed {who} from {id}"),
        ),
        (Change::Revert, None) => (
            guarded_addition(
                &binding.resource_version,
                &binding,
                spec.index,
                &spec.subject,
            )?,
            format!("re-added {who} to {id}"),
        ),
    };
    cluster
        .patch(id, patch, false)
        .await
        .map_err(|e| write_error(&format!("patching {id}"), e))?;
    Ok(Outcome::changed(done))
}

/// Asks the cluster's authorizer: the agent is denied, and every other subject still in the
/// binding is still allowed.
pub(crate) async fn check(
    cluster: &Cluster,
    spec: &Spec,
    check: Check,
) -> Result<Verification, PlaneError> {
    let id = &spec.binding;
    let who = Requester::service_account(&spec.agent.namespace, &spec.agent.service_account);
    if check == Check::Reverted {
        return allowed_again(cluster, &who, &spec.breach).await;
    }
    if cluster.review(&who, &spec.breach).await? {
        return Ok(Verification::failed(format!(
            "{} may still {}",
            who.user,
            spec.breach.describe()
        )));
    }
    let Some(binding) = cluster.binding(id).await? else {
        return Ok(Verification::failed(format!(
            "{id} no longer exists: its other subjects lost their access"
        )));
    };
    let present: Vec<&Subject> = spec
        .keep
        .iter()
        .filter(|s| position(&binding, s).is_some())
        .collect();
    let mut lost = Vec::new();
    for subject in &present {
        let requester = Requester::of_subject(subject, id.namespace.as_deref());
        if !cluster.review(&requester, &spec.breach).await? {
            lost.push(describe_subject(subject));
        }
    }
    Ok(if lost.is_empty() {
        Verification::ok(format!(
            "SubjectAccessReview denies {} to {}; {} other subject(s) of {id} still allowed",
            spec.breach.describe(),
            who.user,
            present.len()
        ))
    } else {
        Verification::failed(format!(
            "{} can no longer {} either; only the agent should have lost it",
            lost.join(", "),
            spec.breach.describe()
        ))
    })
}
