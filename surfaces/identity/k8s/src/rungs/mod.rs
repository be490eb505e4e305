//! The K8s ladder, one file per rung: `k8s.remove_rolebinding_subject` (one subject of one
//! binding) → `k8s.delete_rolebinding` (the whole binding, every subject: approval only). Each
//! file holds its kind, its typed spec, how it is proposed and its `change` and `check`.

pub mod delete_binding;
pub mod remove_subject;

use firebreak_containment::plane::{PlaneError, Verification};
use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, RemoveOperation, TestOperation};
use k8s_openapi::api::rbac::v1::Subject;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cluster::Cluster;
use crate::observation::describe_subject;
use crate::permission::ResourceRequest;
use crate::rbac::{Binding, BindingRef, Requester};
use crate::PLANE;

pub use delete_binding::DELETE_ROLEBINDING;
pub use remove_subject::REMOVE_ROLEBINDING_SUBJECT;

/// What a K8s action does, journaled with the intent: everything `change` and `check` need,
/// the pre-image included.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rung", rename_all = "snake_case", deny_unknown_fields)]
pub enum K8sSpec {
    RemoveSubject(remove_subject::Spec),
    DeleteBinding(delete_binding::Spec),
}

/// The binding was there when planned and is not now: the plan no longer describes the cluster.
fn gone(id: &BindingRef) -> PlaneError {
    PlaneError::Conflict {
        plane: PLANE,
        detail: format!("{id} does not exist (deleted since the plan?)"),
    }
}

/// Same subject: kind, name and (for ServiceAccounts) namespace; apiGroup defaults differ.
fn position(binding: &Binding, subject: &Subject) -> Option<usize> {
    binding.subjects.iter().position(|s| {
        s.kind == subject.kind && s.name == subject.name && s.namespace == subject.namespace
    })
}

fn subject_value(subject: &Subject) -> Result<Value, PlaneError> {
    serde_json::to_value(subject).map_err(|e| PlaneError::Invalid {
        plane: PLANE,
        detail: format!(
            "subject {} does not encode as JSON: {e}",
            describe_subject(subject)
        ),
    })
}

fn pointer(tokens: &[&str]) -> PointerBuf {
    PointerBuf::from_tokens(tokens.iter().copied())
}

fn test(path: &[&str], value: Value) -> PatchOperation {
    PatchOperation::Test(TestOperation {
        path: pointer(path),
        value,
    })
}

fn same_version(resource_version: &str) -> PatchOperation {
    test(
        &["metadata", "resourceVersion"],
        Value::String(resource_version.to_string()),
    )
}

/// Removes subject `index`, only if the binding is still at `resource_version` with `subject`
/// there: a binding edited meanwhile fails the `test` (422) instead of losing another subject.
pub(crate) fn guarded_removal(
    resource_version: &str,
    index: usize,
    subject: &Subject,
) -> Result<Patch, PlaneError> {
    let at = index.to_string();
    Ok(Patch(vec![
        same_version(resource_version),
        test(&["subjects", &at], subject_value(subject)?),
        PatchOperation::Remove(RemoveOperation {
            path: pointer(&["subjects", &at]),
        }),
    ]))
}

/// Adds `subject` at `index` (or as the first of a list the API server omitted for being
/// empty), only if the binding is still at `resource_version`.
fn guarded_addition(
    resource_version: &str,
    binding: &Binding,
    index: usize,
    subject: &Subject,
) -> Result<Patch, PlaneError> {
    let value = subject_value(subject)?;
    let add = if binding.subjects.is_empty() {
        PatchOperation::Add(AddOperation {
            path: pointer(&["subjects"]),
            value: Value::Array(vec![value]),
        })
    } else {
        // Back where it was, so the binding reads as before.
        let at = index.min(binding.subjects.len()).to_string();
        PatchOperation::Add(AddOperation {
            path: pointer(&["subjects", &at]),
            value,
        })
    };
    Ok(Patch(vec![same_version(resource_version), add]))
}

/// After a revert: the agent may do the breach again, per the cluster's authorizer.
async fn allowed_again(
    cluster: &Cluster,
    who: &Requester,
    breach: &ResourceRequest,
) -> Result<Verification, PlaneError> {
    let allowed = cluster.review(who, breach).await?;
    Ok(Verification::that(
        allowed,
        format!(
            "{} may{} {}{}",
            who.user,
            if allowed { "" } else { " not" },
            breach.describe(),
            if allowed { " again" } else { " yet" }
        ),
    ))
}
