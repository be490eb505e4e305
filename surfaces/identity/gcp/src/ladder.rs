//! The GCP ladder for one breach, computed from an observed [`GcpState`] without I/O. Each rung
//! proposes itself from a [`Ladder`] (its file is under `rungs/`); this module holds what they
//! share: which bindings grant the breach, and what the envelope loses once some are gone.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use firebreak_containment::ids::IncidentId;
use firebreak_containment::plan::BlastRadius;
use firebreak_containment::plane::{Observation, PlanInput, PlaneError, Proposal};

use crate::names::{project_of, service_account_name, Permission, Principal, ACTION_PREFIX};
use crate::plane::GcpSpec;
use crate::policy::Binding;
use crate::rungs::{deny_policy, disable_service_account, remove_binding_member, remove_wi_user};
use crate::PLANE;

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

/// Everything the ladder needs, read by [`crate::GcpIam`]'s `observe`.
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

/// One way the agent holds a permission today.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub project: String,
    pub binding: Binding,
    pub member: String,
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
#[derive(Debug, Clone)]
pub struct Use {
    pub label: String,
    pub permission: Permission,
    pub project: Option<String>,
}

impl GcpState {
    pub fn role_grants(&self, role: &str, permission: &Permission) -> bool {
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

    /// The bindings of `projects` that grant the breach to one of `principals`.
    pub fn breach_grants(
        &self,
        projects: &[ProjectPolicy],
        principals: &[&Principal],
    ) -> Vec<Grant> {
        self.grants(
            projects,
            principals,
            &self.breach,
            self.breach_project.as_deref(),
        )
    }

    /// The policies with `member` removed from `binding` of `project`.
    pub fn without_member(
        &self,
        project: &str,
        binding: &Binding,
        member: &str,
    ) -> Vec<ProjectPolicy> {
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

/// What every rung proposes from: the state, the breach's grants and the envelope's uses.
pub struct Ladder<'a> {
    pub state: &'a GcpState,
    pub incident: &'a IncidentId,
    /// Every binding that grants the breach to one of the agent's principals today.
    pub grants: Vec<Grant>,
    /// Notes every candidate carries.
    pub notes: Vec<String>,
    uses: Vec<Use>,
    undetermined: Vec<String>,
}

impl Ladder<'_> {
    /// All of the agent's principals.
    pub fn principals(&self) -> Vec<&Principal> {
        self.state.principals.iter().collect()
    }

    pub fn uses(&self) -> &[Use] {
        &self.uses
    }

    /// In-envelope uses among `uses` granted today and not once `projects`/`principals` are what
    /// is left.
    pub fn blast(
        &self,
        uses: &[Use],
        projects: &[ProjectPolicy],
        principals: &[&Principal],
    ) -> BlastRadius {
        let all = self.principals();
        let state = self.state;
        let mut radius = BlastRadius::of(
            uses.iter()
                .filter(|u| {
                    let scope = u.project.as_deref();
                    !state
                        .grants(&state.projects, &all, &u.permission, scope)
                        .is_empty()
                        && state
                            .grants(projects, principals, &u.permission, scope)
                            .is_empty()
                })
                .map(|u| u.label.clone())
                .collect(),
        );
        radius.undetermined = self.undetermined.clone();
        radius
    }
}

/// A Google service account the breach is granted through, and what cutting it off leaves.
pub struct Through<'a> {
    pub account: &'a ServiceAccountState,
    /// `projects/-/serviceAccounts/EMAIL`.
    pub name: String,
    /// A binding that still grants the breach to the agent's other principals.
    pub still: Option<Grant>,
    /// The envelope's uses lost with every permission the account holds.
    pub blast_radius: BlastRadius,
}

impl Ladder<'_> {
    /// The agent's service accounts that hold one of the breach's grants.
    pub fn service_accounts(&self) -> Vec<Through<'_>> {
        let state = self.state;
        state
            .service_accounts
            .iter()
            .filter(|sa| {
                self.grants
                    .iter()
                    .any(|g| g.member == sa.principal.member())
            })
            .map(|sa| {
                let rest: Vec<&Principal> = state
                    .principals
                    .iter()
                    .filter(|p| **p != sa.principal)
                    .collect();
                Through {
                    account: sa,
                    name: service_account_name(&sa.email),
                    still: state
                        .breach_grants(&state.projects, &rest)
                        .into_iter()
                        .next(),
                    blast_radius: self.blast(&self.uses, &state.projects, &rest),
                }
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

const SCOPE_NOTE: &str =
    "only project IAM policies are read: a grant on the resource itself, a folder or \
     the organization would survive this action";

impl Observation<GcpSpec> for GcpState {
    fn candidates(&self, input: &PlanInput<'_>) -> Result<Vec<Proposal<GcpSpec>>, PlaneError> {
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
            return Err(PlaneError::Unsupported {
                plane: PLANE,
                detail,
            });
        }
        let (uses, undetermined) = envelope_uses(input);
        let mut notes = vec![SCOPE_NOTE.to_string()];
        notes.extend(self.role_notes());
        let ladder = Ladder {
            state: self,
            incident: input.incident,
            grants,
            notes,
            uses,
            undetermined,
        };
        // Narrowest rung first.
        let mut candidates = remove_binding_member::propose(&ladder);
        candidates.extend(deny_policy::propose(&ladder));
        candidates.extend(remove_wi_user::propose(&ladder));
        candidates.extend(disable_service_account::propose(&ladder));
        Ok(candidates)
    }
}

/// Items once each, in first-seen order.
pub fn dedup<T: PartialEq>(items: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut out = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use firebreak_containment::alert::Alert;
    use firebreak_containment::envelope::Envelope;
    use firebreak_containment::ids::PlanId;
    use firebreak_containment::plane::Plane;

    use super::*;
    use crate::names::WI_USER_ROLE;
    use crate::rungs::{
        DENY_POLICY, DISABLE_SERVICE_ACCOUNT, REMOVE_BINDING_MEMBER, REMOVE_WI_USER,
    };
    use crate::GcpIam;

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
        let principal = Principal::parse(GSA).expect("principal");
        GcpState {
            breach: Permission::parse("storage.objects.get").expect("permission"),
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

    fn plan(state: &GcpState) -> Result<Vec<Proposal<GcpSpec>>, PlaneError> {
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
        .expect("envelope");
        let alert = Alert::from_json(
            serde_json::json!({
                "id": "a", "source": "t", "time": "2026-11-22T02:47:00Z",
                "agent": {"cluster": "c", "namespace": "payments", "workload": "Deployment/agent", "serviceAccount": "agent"},
                "dimension": "identity",
                "parameter": {"action": "storage.objects.get", "resource": "//storage.googleapis.com/projects/_/buckets/keys"},
                "tier": "attack-attempt", "severity": "critical", "evidence": {}
            })
            .to_string()
            .as_bytes(),
        )
        .expect("alert");
        state.candidates(&PlanInput {
            incident: &IncidentId::from("inc-1"),
            plan: &PlanId::from("inc-1-p1"),
            alert: &alert,
            envelope: &envelope,
        })
    }

    fn kinds(candidates: &[Proposal<GcpSpec>]) -> Vec<&'static str> {
        candidates
            .iter()
            .map(|c| GcpIam::kind_of(&c.spec).name)
            .collect()
    }

    #[test]
    fn narrowest_rung_first_with_each_blast_radius() {
        let s = state(vec![binding(
            "roles/storage.objectViewer",
            &[GSA, "user:a@x.com"],
        )]);
        let c = plan(&s).expect("candidates");
        assert_eq!(
            kinds(&c),
            [
                REMOVE_BINDING_MEMBER.name,
                DENY_POLICY.name,
                REMOVE_WI_USER.name,
                DISABLE_SERVICE_ACCOUNT.name
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
        let GcpSpec::DenyPolicy(deny) = &c[1].spec else {
            panic!("{:?}", c[1].spec);
        };
        assert_eq!(deny.denied_permission, "storage.googleapis.com/objects.get");
        assert!(c
            .iter()
            .all(|c| c.notes.iter().any(|n| n.contains("roles/custom"))));
        let GcpSpec::RemoveBindingMember(spec) = &c[0].spec else {
            panic!("{:?}", c[0].spec);
        };
        assert_eq!(spec.member, GSA);
        assert_eq!(spec.binding.members.len(), 2, "pre-image as read");
    }

    #[test]
    fn removing_one_member_is_rejected_when_another_binding_still_grants() {
        let s = state(vec![
            binding("roles/storage.objectViewer", &[GSA]),
            binding("roles/storage.objectAdmin", &[GSA]),
        ]);
        let c = plan(&s).expect("candidates");
        let rung0: Vec<&Proposal<GcpSpec>> = c
            .iter()
            .filter(|c| GcpIam::kind_of(&c.spec) == &REMOVE_BINDING_MEMBER)
            .collect();
        assert_eq!(rung0.len(), 2, "one per granting binding");
        for r in rung0 {
            assert!(!r.blocks);
            let rejected = r.rejected.as_deref().unwrap_or_default();
            assert!(
                rejected.contains("another binding still grants storage.objects.get"),
                "{rejected}"
            );
        }
        let deny = c
            .iter()
            .find(|c| GcpIam::kind_of(&c.spec) == &DENY_POLICY)
            .expect("a deny candidate");
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
        let err = plan(&s).expect_err("nothing grants the breach");
        assert!(matches!(err, PlaneError::Unsupported { .. }), "{err}");
        let err = err.to_string();
        assert!(
            err.contains("no binding in project(s) acme-prod grants storage.objects.get"),
            "{err}"
        );
        assert!(err.contains("roles/custom was not expanded"), "{err}");
    }

    #[test]
    fn specs_journal_under_their_rung_and_decode_back() {
        let s = state(vec![binding("roles/storage.objectViewer", &[GSA])]);
        for c in plan(&s).expect("candidates") {
            let journaled = serde_json::to_value(&c.spec).expect("encodes");
            let kind = GcpIam::kind_of(&c.spec).name;
            assert_eq!(
                journaled["rung"].as_str().map(|r| format!("gcp.{r}")),
                Some(kind.to_string())
            );
            let back: GcpSpec = serde_json::from_value(journaled.clone()).expect("decodes");
            assert_eq!(back, c.spec);
            let mut extra = journaled;
            extra["surprise"] = serde_json::json!(1);
            let err = serde_json::from_value::<GcpSpec>(extra).expect_err("unknown field");
            assert!(
                err.to_string().contains("unknown field `surprise`"),
                "{err}"
            );
        }
    }
}
