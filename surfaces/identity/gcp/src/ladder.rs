//! The GCP ladder for one breach, computed from an observed [`GcpState`] without I/O:
//! `gcp.remove_binding_member` (one member of one binding) → `gcp.deny_policy` (IAM v2 deny of
//! one permission for the agent's principal) → `gcp.remove_wi_user` (the KSA's impersonation
//! link to the Google service account) → `gcp.disable_service_account` (approval only).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use firebreak_containment::action::ActionKind;
use firebreak_containment::plan::{BlastRadius, Candidate, Enforcement};
use firebreak_containment::surface::{Observation, PlanInput, SurfaceError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::names::{project_of, Permission, Principal, ACTION_PREFIX, WI_USER_ROLE};
use crate::PLANE;

/// An IAM condition, compared by title, description and expression like IAM does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    pub title: String,
    #[serde(default)]
    pub description: String,
    pub expression: String,
}

/// One IAM v1 binding. A policy holds at most one binding per role and condition, so those two
/// name it; `members` is what it held when read (the pre-image revert restores from).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Binding {
    pub role: String,
    pub members: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<Condition>,
}

impl Binding {
    /// Whether `other` is the same binding (same role and condition), whatever its members.
    pub fn same_slot(&self, other: &Binding) -> bool {
        self.role == other.role && self.condition == other.condition
    }
}

impl fmt::Display for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.condition {
            Some(c) => write!(f, "{} (condition {:?})", self.role, c.title),
            None => f.write_str(&self.role),
        }
    }
}

/// One project's IAM policy, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectPolicy {
    pub project: String,
    pub bindings: Vec<Binding>,
}

/// A Google service account the agent acts as, and its own IAM policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccountState {
    pub principal: Principal,
    pub email: String,
    pub disabled: bool,
    pub bindings: Vec<Binding>,
}

/// Everything the ladder needs, read by [`crate::GcpIam::observe`].
#[derive(Debug, Clone)]
pub struct GcpState {
    pub breach: Permission,
    pub resource: String,
    /// The project the breached resource names, if it names one.
    pub breach_project: Option<String>,
    /// The agent's principals (envelope `spec.identity.principals`).
    pub principals: Vec<Principal>,
    /// `serviceAccount:POOL[NS/KSA]` for the agent, when `gcp.workloadPool` is configured.
    pub ksa_member: Option<String>,
    pub projects: Vec<ProjectPolicy>,
    pub service_accounts: Vec<ServiceAccountState>,
    /// Role → its permissions, for every role the policies bind that could be expanded.
    pub roles: BTreeMap<String, BTreeSet<String>>,
    /// Role → why its permissions are unknown.
    pub unknown_roles: BTreeMap<String, String>,
}

/// What a GCP action does, journaled inside the intent: everything needed to apply, verify and
/// undo it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum ActionSpec {
    /// Remove `member` from `binding` of `project`'s policy; `binding` is the pre-image.
    #[serde(rename_all = "camelCase")]
    RemoveBindingMember {
        project: String,
        member: String,
        binding: Binding,
        breach: Permission,
    },
    /// Create deny policy `policy_id` on `project`.
    #[serde(rename_all = "camelCase")]
    DenyPolicy {
        project: String,
        policy_id: String,
        denied_principals: Vec<String>,
        denied_permission: String,
        breach: Permission,
    },
    /// Remove `member` from the `roles/iam.workloadIdentityUser` bindings of the service
    /// account; `bindings` are their pre-images.
    #[serde(rename_all = "camelCase")]
    RemoveWiUser {
        service_account: String,
        member: String,
        bindings: Vec<Binding>,
    },
    /// Disable the service account (revert: enable).
    #[serde(rename_all = "camelCase")]
    DisableServiceAccount { service_account: String },
}

impl ActionSpec {
    pub fn from_candidate(c: &Candidate) -> Result<ActionSpec, SurfaceError> {
        serde_json::from_value(c.spec.clone()).map_err(|e| SurfaceError::Invalid {
            plane: PLANE,
            detail: format!("action spec of {} is not a GCP IAM spec: {e}", c.kind),
        })
    }

    fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// `projects/-/serviceAccounts/EMAIL`.
pub fn service_account_name(email: &str) -> String {
    format!("projects/-/serviceAccounts/{email}")
}

/// The deny policy's id: the same for the same incident, project, permission and principals, so
/// a re-apply finds the policy it created; IAM wants `[a-z][a-z0-9-]{0,62}`.
pub fn deny_policy_id(
    incident: &str,
    project: &str,
    permission: &str,
    principals: &[String],
) -> String {
    let mut hash = Sha256::new();
    for part in [incident, project, permission]
        .into_iter()
        .chain(principals.iter().map(String::as_str))
    {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    format!("firebreak-{}", &hex::encode(hash.finalize())[..24])
}

/// The deny policy's attachment point, as the IAM v2 API wants it in a name.
pub fn deny_parent(project: &str) -> String {
    format!("policies/cloudresourcemanager.googleapis.com%2Fprojects%2F{project}/denypolicies")
}

/// One way the agent holds a permission today.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Grant {
    project: String,
    binding: Binding,
    member: String,
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} on project {} (member {})",
            self.binding, self.project, self.member
        )
    }
}

/// An in-envelope use of a GCP permission.
#[derive(Clone)]
struct Use {
    label: String,
    permission: Permission,
    project: Option<String>,
}

impl GcpState {
    fn role_grants(&self, role: &str, permission: &Permission) -> bool {
        self.roles
            .get(role)
            .is_some_and(|perms| perms.contains(permission.as_str()))
    }

    /// Every binding in `projects` that grants `permission` to one of `principals`, restricted to
    /// `scope` when the use names its project.
    fn grants(
        &self,
        projects: &[ProjectPolicy],
        principals: &[&Principal],
        permission: &Permission,
        scope: Option<&str>,
    ) -> Vec<Grant> {
        let mut out = Vec::new();
        for policy in projects {
            if scope.is_some_and(|s| s != policy.project) {
                continue;
            }
            for binding in &policy.bindings {
                if !self.role_grants(&binding.role, permission) {
                    continue;
                }
                for principal in principals {
                    let member = principal.member();
                    if binding.members.contains(&member) {
                        out.push(Grant {
                            project: policy.project.clone(),
                            binding: binding.clone(),
                            member,
                        });
                    }
                }
            }
        }
        out
    }

    fn breach_grants(&self, projects: &[ProjectPolicy], principals: &[&Principal]) -> Vec<Grant> {
        self.grants(
            projects,
            principals,
            &self.breach,
            self.breach_project.as_deref(),
        )
    }

    /// In-envelope uses granted today and not once `projects`/`principals` are what is left.
    fn blast(
        &self,
        uses: &[Use],
        undetermined: &[String],
        projects: &[ProjectPolicy],
        principals: &[&Principal],
    ) -> BlastRadius {
        let all: Vec<&Principal> = self.principals.iter().collect();
        let mut radius = BlastRadius::of(
            uses.iter()
                .filter(|u| {
                    let scope = u.project.as_deref();
                    !self
                        .grants(&self.projects, &all, &u.permission, scope)
                        .is_empty()
                        && self
                            .grants(projects, principals, &u.permission, scope)
                            .is_empty()
                })
                .map(|u| u.label.clone())
                .collect(),
        );
        radius.undetermined = undetermined.to_vec();
        radius
    }

    /// The policies with `member` removed from `binding` of `project`.
    fn without_member(&self, project: &str, binding: &Binding, member: &str) -> Vec<ProjectPolicy> {
        let mut projects = self.projects.clone();
        for policy in projects.iter_mut().filter(|p| p.project == project) {
            for b in policy.bindings.iter_mut().filter(|b| b.same_slot(binding)) {
                b.members.retain(|m| m != member);
            }
        }
        projects
    }

    fn role_notes(&self) -> Vec<String> {
        self.unknown_roles
            .iter()
            .map(|(role, why)| {
                format!("{role} was not expanded ({why}): list its permissions under gcp.roles")
            })
            .collect()
    }
}

/// The envelope's permitted GCP uses, parsed; unparseable ones are reported as such.
fn envelope_uses(input: &PlanInput<'_>) -> (Vec<Use>, Vec<String>) {
    let mut uses = Vec::new();
    let mut undetermined = Vec::new();
    for entry in input.envelope.identity().permitted {
        let u = &entry.value;
        let label = format!("{} on {}", u.action, u.resource);
        let Ok(permission) = Permission::parse(&u.action) else {
            if u.action.starts_with(ACTION_PREFIX) {
                undetermined.push(format!("{label} (not a GCP permission)"));
            }
            continue;
        };
        match project_of(&u.resource) {
            Ok(project) => uses.push(Use {
                label,
                permission,
                project,
            }),
            Err(e) => undetermined.push(format!("{label} ({e})")),
        }
    }
    (uses, undetermined)
}

fn dedup<T: PartialEq>(items: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut out = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

const SCOPE_NOTE: &str =
    "only project IAM policies are read: a grant on the resource itself, a folder or \
     the organization would survive this action";

impl Observation for GcpState {
    fn candidates(&self, input: &PlanInput<'_>) -> Result<Vec<Candidate>, SurfaceError> {
        let all: Vec<&Principal> = self.principals.iter().collect();
        let grants = self.breach_grants(&self.projects, &all);
        if grants.is_empty() {
            let mut detail = format!(
                "no binding in project(s) {} grants {} to {} ({SCOPE_NOTE})",
                self.projects
                    .iter()
                    .map(|p| p.project.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                self.breach,
                self.principals
                    .iter()
                    .map(Principal::member)
                    .collect::<Vec<_>>()
                    .join(", "),
            );
            for note in self.role_notes() {
                detail.push_str("; ");
                detail.push_str(&note);
            }
            return Err(SurfaceError::Unsupported {
                plane: PLANE,
                detail,
            });
        }
        let (uses, undetermined) = envelope_uses(input);
        let mut notes = vec![SCOPE_NOTE.to_string()];
        notes.extend(self.role_notes());
        let mut ladder = Vec::new();

        for grant in &grants {
            let after = self.without_member(&grant.project, &grant.binding, &grant.member);
            let still = self.breach_grants(&after, &all).into_iter().next();
            let keep = grant.binding.members.len() - 1;
            let mut grant_notes = notes.clone();
            if let Some(c) = &grant.binding.condition {
                grant_notes.push(format!(
                    "the binding is conditional ({}): treated as granting",
                    c.expression
                ));
            }
            let spec = ActionSpec::RemoveBindingMember {
                project: grant.project.clone(),
                member: grant.member.clone(),
                binding: grant.binding.clone(),
                breach: self.breach.clone(),
            };
            ladder.push(Candidate {
                kind: ActionKind::GcpRemoveBindingMember,
                target: format!("projects/{} {} member {}", grant.project, grant.binding, grant.member),
                granularity: format!(
                    "one member of one binding: {} loses {} on project {}; the binding's {keep} other \
                     member(s) keep it",
                    grant.member, grant.binding, grant.project
                ),
                blast_radius: self.blast(&uses, &undetermined, &after, &all),
                blocks: still.is_none(),
                inverse: format!(
                    "re-add {} to {} on project {} (setIamPolicy with the etag)",
                    grant.member, grant.binding, grant.project
                ),
                verify: format!(
                    "getIamPolicy of project {} shows {} without {} and with its other members",
                    grant.project, grant.binding, grant.member
                ),
                enforcement: Enforcement::Durable,
                rejected: still.map(|s| format!("another binding still grants {}: {s}", self.breach)),
                notes: grant_notes,
                spec: spec.to_value(),
            });
        }

        let granting_projects = dedup(grants.iter().map(|g| g.project.clone()));
        for project in &granting_projects {
            let principals: Vec<&Principal> = dedup(
                grants
                    .iter()
                    .filter(|g| &g.project == project)
                    .flat_map(|g| self.principals.iter().filter(|p| p.member() == g.member)),
            );
            let denied: Vec<String> = principals.iter().map(|p| p.deny_principal()).collect();
            let permission = self.breach.deny_form();
            let policy_id = deny_policy_id(input.incident, project, &permission, &denied);
            // The deny covers every resource of the project: the envelope's other uses of the
            // same permission there go too.
            let after: Vec<ProjectPolicy> = self
                .projects
                .iter()
                .map(|p| ProjectPolicy {
                    project: p.project.clone(),
                    bindings: if &p.project == project {
                        p.bindings
                            .iter()
                            .filter(|b| !self.role_grants(&b.role, &self.breach))
                            .cloned()
                            .collect()
                    } else {
                        p.bindings.clone()
                    },
                })
                .collect();
            let same_permission: Vec<Use> = uses
                .iter()
                .filter(|u| u.permission == self.breach)
                .cloned()
                .collect();
            let radius = self.blast(&same_permission, &undetermined, &after, &all);
            let elsewhere: Vec<String> = granting_projects
                .iter()
                .filter(|p| *p != project)
                .cloned()
                .collect();
            let mut deny_notes = notes.clone();
            deny_notes.push(format!(
                "GCP refuses a deny policy for a permission deny policies do not support; {} is \
                 checked by the create call",
                self.breach
            ));
            let spec = ActionSpec::DenyPolicy {
                project: project.clone(),
                policy_id: policy_id.clone(),
                denied_principals: denied.clone(),
                denied_permission: permission.clone(),
                breach: self.breach.clone(),
            };
            ladder.push(Candidate {
                kind: ActionKind::GcpDenyPolicy,
                target: format!("{}/{policy_id}", deny_parent(project)),
                granularity: format!(
                    "one permission ({permission}) for {} on every resource of project {project}; \
                     roles and bindings stay as they are",
                    denied.join(", ")
                ),
                blast_radius: radius,
                blocks: elsewhere.is_empty(),
                inverse: format!("delete deny policy {policy_id} (404 = already gone)"),
                verify: format!(
                    "deny policy {policy_id} exists on project {project} with its one rule"
                ),
                enforcement: Enforcement::Durable,
                rejected: (!elsewhere.is_empty()).then(|| {
                    format!(
                        "{} is also granted in project(s) {}",
                        self.breach,
                        elsewhere.join(", ")
                    )
                }),
                notes: deny_notes,
                spec: spec.to_value(),
            });
        }

        let mut broad = Vec::new();
        for sa in &self.service_accounts {
            if !grants.iter().any(|g| g.member == sa.principal.member()) {
                continue;
            }
            let rest: Vec<&Principal> = self
                .principals
                .iter()
                .filter(|p| **p != sa.principal)
                .collect();
            let still = self.breach_grants(&self.projects, &rest).into_iter().next();
            let radius = self.blast(&uses, &undetermined, &self.projects, &rest);
            let name = service_account_name(&sa.email);
            if let Some(member) = &self.ksa_member {
                let bindings: Vec<Binding> = sa
                    .bindings
                    .iter()
                    .filter(|b| b.role == WI_USER_ROLE && b.members.contains(member))
                    .cloned()
                    .collect();
                if !bindings.is_empty() {
                    let mut wi_notes = notes.clone();
                    wi_notes.push(format!(
                        "link cut only: access tokens already issued to the pod for {} live on until they \
                         expire (up to 1 h); permission-side rungs stop them",
                        sa.email
                    ));
                    let spec = ActionSpec::RemoveWiUser {
                        service_account: name.clone(),
                        member: member.clone(),
                        bindings,
                    };
                    broad.push(Candidate {
                        kind: ActionKind::GcpRemoveWiUser,
                        target: format!("{name} {WI_USER_ROLE} member {member}"),
                        granularity: format!(
                            "the agent's Kubernetes ServiceAccount can no longer impersonate {}: every \
                             permission it held through it goes",
                            sa.email
                        ),
                        blast_radius: radius.clone(),
                        blocks: still.is_none(),
                        inverse: format!("re-add {member} to {WI_USER_ROLE} on {name}"),
                        verify: format!("getIamPolicy of {name} shows {WI_USER_ROLE} without {member}"),
                        enforcement: Enforcement::Durable,
                        rejected: still.as_ref().map(|s| format!("the breach stays granted through {s}")),
                        notes: wi_notes,
                        spec: spec.to_value(),
                    });
                }
            }
            let mut disable_notes = notes.clone();
            disable_notes.push(format!(
                "every workload using {} loses every permission, not only this agent",
                sa.email
            ));
            if sa.disabled {
                disable_notes.push(format!("{} is already disabled", sa.email));
            }
            broad.push(Candidate {
                kind: ActionKind::GcpDisableServiceAccount,
                target: name.clone(),
                granularity: format!(
                    "the whole service account {}: every user of it loses everything",
                    sa.email
                ),
                blast_radius: radius,
                blocks: still.is_none(),
                inverse: format!("enable {name}"),
                verify: format!("{name} reads back disabled"),
                enforcement: Enforcement::Durable,
                rejected: still.map(|s| format!("the breach stays granted through {s}")),
                notes: disable_notes,
                spec: ActionSpec::DisableServiceAccount {
                    service_account: name,
                }
                .to_value(),
            });
        }
        broad.sort_by_key(|c| c.kind.rung());
        ladder.extend(broad);
        Ok(ladder)
    }
}

#[cfg(test)]
mod tests {
    use firebreak_containment::alert::Alert;
    use firebreak_containment::envelope::Envelope;

    use super::*;

    const GSA: &str = "serviceAccount:agent@acme-prod.iam.gserviceaccount.com";
    const KSA: &str = "serviceAccount:acme-prod.svc.id.goog[payments/agent]";

    fn binding(role: &str, members: &[&str]) -> Binding {
        Binding {
            role: role.into(),
            members: members.iter().map(|m| m.to_string()).collect(),
            condition: None,
        }
    }

    fn state(bindings: Vec<Binding>) -> GcpState {
        let principal = Principal::parse(GSA).unwrap();
        GcpState {
            breach: Permission::parse("storage.objects.get").unwrap(),
            resource: "//storage.googleapis.com/projects/_/buckets/keys".into(),
            breach_project: None,
            principals: vec![principal.clone()],
            ksa_member: Some(KSA.into()),
            projects: vec![ProjectPolicy {
                project: "acme-prod".into(),
                bindings,
            }],
            service_accounts: vec![ServiceAccountState {
                principal,
                email: "agent@acme-prod.iam.gserviceaccount.com".into(),
                disabled: false,
                bindings: vec![binding(WI_USER_ROLE, &[KSA])],
            }],
            roles: BTreeMap::from([
                (
                    "roles/storage.objectViewer".to_string(),
                    BTreeSet::from(["storage.objects.get".into(), "storage.objects.list".into()]),
                ),
                (
                    "roles/storage.objectAdmin".to_string(),
                    BTreeSet::from([
                        "storage.objects.get".into(),
                        "storage.objects.create".into(),
                    ]),
                ),
            ]),
            unknown_roles: BTreeMap::from([("roles/custom".to_string(), "not found".to_string())]),
        }
    }

    fn plan(state: &GcpState) -> Result<Vec<Candidate>, SurfaceError> {
        let envelope = Envelope::from_yaml(
            r#"apiVersion: firebreak.dev/v1alpha1
kind: Envelope
metadata: {name: agent, namespace: payments}
spec:
  agent: {cluster: c, namespace: payments, workload: Deployment/agent, serviceAccount: agent}
  version: 1
  status: converged
  identity:
    principals: ["serviceAccount:agent@acme-prod.iam.gserviceaccount.com"]
    observed:
      - {action: "gcp:storage.objects.list", resource: "//storage.googleapis.com/projects/_/buckets/invoices", closure: literal, count: 9, sessions: 9}
      - {action: "gcp:storage.objects.get", resource: "//storage.googleapis.com/projects/_/buckets/invoices", closure: literal, count: 9, sessions: 9}
      - {action: "s3:GetObject", resource: "arn:aws:s3:::x/*", closure: literal, count: 9, sessions: 9}
"#,
        )
        .unwrap();
        let alert = Alert::from_json(
            serde_json::json!({
                "id": "a", "source": "t", "time": "2026-11-22T02:47:00Z",
                "agent": {"cluster": "c", "namespace": "payments", "workload": "Deployment/agent", "serviceAccount": "agent"},
                "dimension": "identity",
                "parameter": {"action": "gcp:storage.objects.get", "resource": "//storage.googleapis.com/projects/_/buckets/keys"},
                "tier": "attack-attempt", "severity": "critical", "evidence": {}
            })
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        state.candidates(&PlanInput {
            incident: "inc-1",
            alert: &alert,
            envelope: &envelope,
        })
    }

    #[test]
    fn narrowest_rung_first_with_each_blast_radius() {
        let s = state(vec![binding(
            "roles/storage.objectViewer",
            &[GSA, "user:a@x.com"],
        )]);
        let c = plan(&s).unwrap();
        let kinds: Vec<ActionKind> = c.iter().map(|c| c.kind).collect();
        assert_eq!(
            kinds,
            [
                ActionKind::GcpRemoveBindingMember,
                ActionKind::GcpDenyPolicy,
                ActionKind::GcpRemoveWiUser,
                ActionKind::GcpDisableServiceAccount
            ]
        );
        // The binding carries list and get: both in-envelope uses go with the member.
        assert_eq!(c[0].blast_radius.broken, 2);
        assert!(c[0].blocks && c[0].rejected.is_none());
        // The deny takes get everywhere in the project: the envelope's own get of invoices too.
        assert_eq!(
            c[1].blast_radius.items,
            ["gcp:storage.objects.get on //storage.googleapis.com/projects/_/buckets/invoices"]
        );
        assert_eq!(
            c[1].spec["deniedPermission"],
            "storage.googleapis.com/objects.get"
        );
        assert!(c
            .iter()
            .all(|c| c.notes.iter().any(|n| n.contains("roles/custom"))));
        match ActionSpec::from_candidate(&c[0]).unwrap() {
            ActionSpec::RemoveBindingMember {
                member, binding, ..
            } => {
                assert_eq!(member, GSA);
                assert_eq!(binding.members.len(), 2, "pre-image as read");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn removing_one_member_is_rejected_when_another_binding_still_grants() {
        let s = state(vec![
            binding("roles/storage.objectViewer", &[GSA]),
            binding("roles/storage.objectAdmin", &[GSA]),
        ]);
        let c = plan(&s).unwrap();
        let rung0: Vec<&Candidate> = c
            .iter()
            .filter(|c| c.kind == ActionKind::GcpRemoveBindingMember)
            .collect();
        assert_eq!(rung0.len(), 2, "one per granting binding");
        for r in rung0 {
            assert!(!r.blocks);
            assert!(
                r.rejected
                    .as_deref()
                    .unwrap()
                    .contains("another binding still grants storage.objects.get"),
                "{:?}",
                r.rejected
            );
        }
        let deny = c
            .iter()
            .find(|c| c.kind == ActionKind::GcpDenyPolicy)
            .unwrap();
        assert!(
            deny.blocks && deny.rejected.is_none(),
            "a deny beats every allow"
        );
    }

    #[test]
    fn nothing_to_cut_is_unsupported_and_says_where_it_looked() {
        let s = state(vec![binding(
            "roles/storage.objectViewer",
            &["user:a@x.com"],
        )]);
        let err = plan(&s).unwrap_err().to_string();
        assert!(
            err.contains("no binding in project(s) acme-prod grants storage.objects.get"),
            "{err}"
        );
        assert!(err.contains("roles/custom was not expanded"), "{err}");
    }

    #[test]
    fn deny_policy_ids_are_deterministic_and_valid() {
        let a = deny_policy_id("inc-1", "p", "s.googleapis.com/a.b", &["x".into()]);
        assert_eq!(
            a,
            deny_policy_id("inc-1", "p", "s.googleapis.com/a.b", &["x".into()])
        );
        assert_ne!(
            a,
            deny_policy_id("inc-2", "p", "s.googleapis.com/a.b", &["x".into()])
        );
        assert!(a.len() <= 63 && a.starts_with("firebreak-"));
        assert!(a
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
    }
}
