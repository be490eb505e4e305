//! The K8s ladder for one breach, computed from an observed [`K8sState`] without I/O:
//! `k8s.remove_rolebinding_subject` (one subject of one binding) → `k8s.delete_rolebinding`
//! (the whole binding, every subject: approval only), each with its blast radius against the
//! envelope.

use std::collections::BTreeMap;

use firebreak_containment::action::ActionKind;
use firebreak_containment::alert::Parameter;
use firebreak_containment::plan::{BlastRadius, Candidate, Enforcement};
use firebreak_containment::surface::{Observation, PlanInput, SurfaceError};
use k8s_openapi::api::rbac::v1::Subject;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::AgentServiceAccount;
use crate::gitops::gitops_warnings;
use crate::permission::{ResourceRequest, ACTION_PREFIX};
use crate::rbac::{names_service_account, Binding, BindingRef, RbacState, Requester};
use crate::PLANE;

/// What a K8s action does, journaled inside the intent: everything needed to apply, verify and
/// undo it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum ActionSpec {
    /// Remove `subject` (found at `index` when planned) from `binding`.
    #[serde(rename_all = "camelCase")]
    RemoveSubject {
        binding: BindingRef,
        subject: Subject,
        index: usize,
        /// The binding's resourceVersion the plan was computed from.
        resource_version: String,
        agent: AgentServiceAccount,
        breach: ResourceRequest,
        /// The binding's other subjects: they must keep the breached permission.
        keep: Vec<Subject>,
    },
    /// Delete `binding`; `pre_image` is what revert re-creates.
    #[serde(rename_all = "camelCase")]
    DeleteBinding {
        binding: BindingRef,
        uid: Option<String>,
        resource_version: String,
        pre_image: Value,
        agent: AgentServiceAccount,
        breach: ResourceRequest,
    },
}

impl ActionSpec {
    pub fn from_candidate(c: &Candidate) -> Result<ActionSpec, SurfaceError> {
        serde_json::from_value(c.spec.clone()).map_err(|e| SurfaceError::Invalid {
            plane: PLANE,
            detail: format!(
                "action spec of {} is not a Kubernetes RBAC spec: {e}",
                c.kind
            ),
        })
    }

    fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// Everything the ladder needs, read by [`crate::K8sRbac::observe`].
#[derive(Debug, Clone)]
pub struct K8sState {
    pub agent: AgentServiceAccount,
    pub breach: ResourceRequest,
    pub rbac: RbacState,
    /// The API server's answer to a server-side dry run (`dryRun=All`) of each removal patch:
    /// `Err` carries its refusal.
    pub dry_runs: BTreeMap<BindingRef, Result<(), String>>,
}

/// The subject as an operator reads it.
pub fn describe_subject(s: &Subject) -> String {
    match &s.namespace {
        Some(ns) => format!("{} {ns}/{}", s.kind, s.name),
        None => format!("{} {}", s.kind, s.name),
    }
}

/// The index of the agent's own subject (ServiceAccount, or its User name) in `binding`.
pub fn agent_subject(binding: &Binding, agent: &AgentServiceAccount) -> Option<usize> {
    binding.subjects.iter().position(|s| {
        names_service_account(
            s,
            binding.id.namespace.as_deref(),
            &agent.namespace,
            &agent.service_account,
        )
    })
}

/// What `kubectl create` needs to bring the binding back: its spec and identifying metadata.
pub fn pre_image(binding: &Binding) -> Value {
    let kind = format!("{:?}", binding.id.kind);
    let mut metadata = serde_json::json!({"name": binding.id.name});
    if let Some(ns) = &binding.id.namespace {
        metadata["namespace"] = Value::String(ns.clone());
    }
    if !binding.labels.is_empty() {
        metadata["labels"] = serde_json::json!(binding.labels);
    }
    if !binding.annotations.is_empty() {
        metadata["annotations"] = serde_json::json!(binding.annotations);
    }
    let mut object = serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": kind,
        "metadata": metadata,
        "roleRef": binding.role_ref,
    });
    if !binding.subjects.is_empty() {
        object["subjects"] = serde_json::json!(binding.subjects);
    }
    object
}

/// The envelope's permitted Kubernetes uses, parsed; unparseable ones are reported as such.
fn envelope_requests(input: &PlanInput<'_>) -> (Vec<(String, ResourceRequest)>, Vec<String>) {
    let mut parsed = Vec::new();
    let mut undetermined = Vec::new();
    for entry in input.envelope.identity().permitted {
        let use_ = &entry.value;
        if !use_.action.starts_with(ACTION_PREFIX) {
            continue;
        }
        let label = format!("{} on {}", use_.action, use_.resource);
        match ResourceRequest::parse(&use_.action, &use_.resource) {
            Ok(req) => parsed.push((label, req)),
            Err(e) => undetermined.push(format!("{label} ({e})")),
        }
    }
    (parsed, undetermined)
}

impl K8sState {
    /// In-envelope uses allowed today and not in `after`.
    fn blast(
        &self,
        who: &Requester,
        envelope: &[(String, ResourceRequest)],
        undetermined: &[String],
        after: &RbacState,
    ) -> BlastRadius {
        let mut radius = BlastRadius::of(
            envelope
                .iter()
                .filter(|(_, req)| self.rbac.allows(who, req) && !after.allows(who, req))
                .map(|(label, _)| label.clone())
                .collect(),
        );
        radius.undetermined = undetermined.to_vec();
        radius
    }

    fn still_granted_by(&self, who: &Requester, after: &RbacState) -> Option<String> {
        let grants = after.grants(who, &self.breach);
        let first = grants.first()?;
        let subject = after
            .binding(&first.binding)
            .and_then(|b| b.subjects.get(first.subject))
            .map(describe_subject)
            .unwrap_or_default();
        Some(format!(
            "the breach stays allowed through {} (subject {subject})",
            first.binding
        ))
    }
}

impl Observation for K8sState {
    fn candidates(&self, input: &PlanInput<'_>) -> Result<Vec<Candidate>, SurfaceError> {
        let Parameter::Identity { .. } = &input.alert.parameter else {
            return Err(SurfaceError::Unsupported {
                plane: PLANE,
                detail: format!("dimension {} is not identity", input.alert.dimension),
            });
        };
        let who = Requester::service_account(&self.agent.namespace, &self.agent.service_account);
        let grants = self.rbac.grants(&who, &self.breach);
        if grants.is_empty() {
            return Err(SurfaceError::Unsupported {
                plane: PLANE,
                detail: format!(
                    "RBAC does not allow {} for {} today: no RoleBinding or ClusterRoleBinding to cut \
                     (another authorizer, e.g. a webhook, may allow it)",
                    self.breach.describe(),
                    who.user
                ),
            });
        }
        let (envelope, undetermined) = envelope_requests(input);
        let mut granting: Vec<&Binding> = Vec::new();
        for g in &grants {
            if let Some(b) = self.rbac.binding(&g.binding) {
                if !granting.iter().any(|x| x.id == b.id) {
                    granting.push(b);
                }
            }
        }

        let mut narrow = Vec::new();
        let mut broad = Vec::new();
        for binding in granting {
            let gitops = gitops_warnings(
                &binding.id.to_string(),
                &binding.labels,
                &binding.annotations,
            );
            let role = format!("{} {}", binding.role_ref.kind, binding.role_ref.name);
            let agent_index = agent_subject(binding, &self.agent);
            if let Some(index) = agent_index {
                let subject = &binding.subjects[index];
                let after = self.rbac.without_subject(&binding.id, index);
                let still = self.still_granted_by(&who, &after);
                let keep: Vec<Subject> = binding
                    .subjects
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != index)
                    .map(|(_, s)| s.clone())
                    .collect();
                let mut notes = gitops.clone();
                notes.extend(still.clone());
                let rejected = match self.dry_runs.get(&binding.id) {
                    Some(Ok(())) => None,
                    Some(Err(refusal)) => Some(format!(
                        "the API server's dry run refused the patch: {refusal}"
                    )),
                    None => Some("the patch was not validated by a server-side dry run".into()),
                };
                let spec = ActionSpec::RemoveSubject {
                    binding: binding.id.clone(),
                    subject: subject.clone(),
                    index,
                    resource_version: binding.resource_version.clone(),
                    agent: self.agent.clone(),
                    breach: self.breach.clone(),
                    keep: keep.clone(),
                };
                narrow.push(Candidate {
                    kind: ActionKind::K8sRemoveRolebindingSubject,
                    target: format!("{} subject {}", binding.id, describe_subject(subject)),
                    granularity: format!(
                        "one subject of one binding: {} loses {role} through {}; the binding's {} other \
                         subject(s) keep it",
                        describe_subject(subject),
                        binding.id,
                        keep.len()
                    ),
                    blast_radius: self.blast(&who, &envelope, &undetermined, &after),
                    blocks: still.is_none(),
                    inverse: format!(
                        "re-add {} to {} (JSON Patch guarded by resourceVersion)",
                        describe_subject(subject),
                        binding.id
                    ),
                    verify: format!(
                        "SubjectAccessReview: {} may no longer {}; the binding's other subjects still may",
                        who.user,
                        self.breach.describe()
                    ),
                    enforcement: Enforcement::Durable,
                    rejected,
                    notes,
                    spec: spec.to_value(),
                });
            }

            let after = self.rbac.without_binding(&binding.id);
            let mut notes = gitops;
            if agent_index.is_none() {
                notes.push(format!(
                    "{} grants the breach through a group the ServiceAccount belongs to, not by naming it: \
                     only deleting the binding cuts it",
                    binding.id
                ));
            }
            notes.extend(self.still_granted_by(&who, &after));
            let others: Vec<String> = binding
                .subjects
                .iter()
                .filter(|s| {
                    !names_service_account(
                        s,
                        binding.id.namespace.as_deref(),
                        &self.agent.namespace,
                        &self.agent.service_account,
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
            let spec = ActionSpec::DeleteBinding {
                binding: binding.id.clone(),
                uid: binding.uid.clone(),
                resource_version: binding.resource_version.clone(),
                pre_image: pre_image(binding),
                agent: self.agent.clone(),
                breach: self.breach.clone(),
            };
            broad.push(Candidate {
                kind: ActionKind::K8sDeleteRolebinding,
                target: binding.id.to_string(),
                granularity: format!(
                    "the whole binding: its {} subject(s) lose {role}",
                    binding.subjects.len()
                ),
                blast_radius: self.blast(&who, &envelope, &undetermined, &after),
                blocks: self.still_granted_by(&who, &after).is_none(),
                inverse: format!("re-create {} from its pre-image", binding.id),
                verify: format!(
                    "{} is gone and a SubjectAccessReview says {} may no longer {}",
                    binding.id,
                    who.user,
                    self.breach.describe()
                ),
                enforcement: Enforcement::Durable,
                rejected: None,
                notes,
                spec: spec.to_value(),
            });
        }
        narrow.extend(broad);
        Ok(narrow)
    }
}
