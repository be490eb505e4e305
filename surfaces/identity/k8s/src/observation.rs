//! What one plan is computed from: the RBAC state read by [`crate::K8sRbac`]'s `observe`, and
//! the ladder proposed from it without I/O, each rung with its blast radius against the
//! envelope.

use std::collections::BTreeMap;

use firebreak_containment::alert::Parameter;
use firebreak_containment::plan::BlastRadius;
use firebreak_containment::plane::{Observation, PlanInput, PlaneError, Proposal};
use k8s_openapi::api::rbac::v1::Subject;

use crate::config::AgentServiceAccount;
use crate::gitops::gitops_warnings;
use crate::permission::{ResourceRequest, ACTION_PREFIX};
use crate::rbac::{names_service_account, Binding, BindingRef, RbacState, Requester};
use crate::rungs::{delete_binding, remove_subject, K8sSpec};
use crate::PLANE;

/// Everything the ladder needs, read by `observe`.
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

/// The agent's own subject (its ServiceAccount, or its User name) in `binding`, and where.
pub fn agent_subject<'a>(
    binding: &'a Binding,
    agent: &AgentServiceAccount,
) -> Option<(usize, &'a Subject)> {
    binding.subjects.iter().enumerate().find(|(_, s)| {
        names_service_account(
            s,
            binding.id.namespace.as_deref(),
            &agent.namespace,
            &agent.service_account,
        )
    })
}

/// What every rung's proposal reads besides the state: who the agent is, and the envelope's
/// permitted Kubernetes uses (parsed; unparseable ones reported as undetermined).
pub(crate) struct Ladder<'a> {
    pub state: &'a K8sState,
    pub who: Requester,
    envelope: Vec<(String, ResourceRequest)>,
    undetermined: Vec<String>,
}

impl<'a> Ladder<'a> {
    fn new(state: &'a K8sState, input: &PlanInput<'_>) -> Ladder<'a> {
        let mut envelope = Vec::new();
        let mut undetermined = Vec::new();
        for entry in input.envelope.identity().permitted {
            let use_ = &entry.value;
            if !use_.action.starts_with(ACTION_PREFIX) {
                continue;
            }
            let label = format!("{} on {}", use_.action, use_.resource);
            match ResourceRequest::parse(&use_.action, &use_.resource) {
                Ok(req) => envelope.push((label, req)),
                Err(e) => undetermined.push(format!("{label} ({e})")),
            }
        }
        Ladder {
            state,
            who: Requester::service_account(&state.agent.namespace, &state.agent.service_account),
            envelope,
            undetermined,
        }
    }

    /// In-envelope uses allowed today and not in `after`.
    pub fn blast(&self, after: &RbacState) -> BlastRadius {
        let mut radius = BlastRadius::of(
            self.envelope
                .iter()
                .filter(|(_, req)| {
                    self.state.rbac.allows(&self.who, req) && !after.allows(&self.who, req)
                })
                .map(|(label, _)| label.clone())
                .collect(),
        );
        radius.undetermined = self.undetermined.clone();
        radius
    }

    /// Why the breach would stay allowed in `after`, if it would.
    pub fn still_granted_by(&self, after: &RbacState) -> Option<String> {
        let grants = after.grants(&self.who, &self.state.breach);
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

impl Observation<K8sSpec> for K8sState {
    fn candidates(&self, input: &PlanInput<'_>) -> Result<Vec<Proposal<K8sSpec>>, PlaneError> {
        let Parameter::Identity { .. } = &input.alert.parameter else {
            return Err(PlaneError::Unsupported {
                plane: PLANE,
                detail: format!("dimension {} is not identity", input.alert.dimension()),
            });
        };
        let ladder = Ladder::new(self, input);
        let grants = self.rbac.grants(&ladder.who, &self.breach);
        if grants.is_empty() {
            return Err(PlaneError::Unsupported {
                plane: PLANE,
                detail: format!(
                    "RBAC does not allow {} for {} today: no RoleBinding or ClusterRoleBinding to cut \
                     (another authorizer, e.g. a webhook, may allow it)",
                    self.breach.describe(),
                    ladder.who.user
                ),
            });
        }
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
            let named = agent_subject(binding, &self.agent);
            if let Some((index, subject)) = named {
                narrow.push(remove_subject::propose(
                    &ladder,
                    binding,
                    index,
                    subject,
                    gitops.clone(),
                ));
            }
            broad.push(delete_binding::propose(
                &ladder,
                binding,
                named.is_some(),
                gitops,
            ));
        }
        narrow.extend(broad);
        Ok(narrow)
    }
}
