//! `gcp.deny_policy` (rung 1): an IAM v2 deny policy on the project, denying the one breached
//! permission to the agent's principals. Roles and bindings stay as they are, and a deny beats
//! every allow. Its id is derived from the incident, so a re-apply finds the policy it created.

use firebreak_containment::plane::{
    Change, Check, KindSpec, Outcome, PlaneError, Proposal, Verification,
};
use google_cloud_gax::error::rpc::Code;
use google_cloud_iam_v2::model::{DenyRule, Policy as DenyPolicy, PolicyRule};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::client::{api_error, status_code, Api};
use crate::ladder::{dedup, Ladder, ProjectPolicy, Use};
use crate::names::{Permission, Principal};
use crate::plane::GcpSpec;
use crate::PLANE;

pub static DENY_POLICY: KindSpec = KindSpec::durable("gcp", "gcp.deny_policy", 1, false);

/// Create deny policy `policy_id` on `project`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Spec {
    pub project: String,
    pub policy_id: String,
    /// In IAM v2 form (`principal://…`).
    pub denied_principals: Vec<String>,
    /// In IAM v2 form (`storage.googleapis.com/objects.get`).
    pub denied_permission: String,
    pub breach: Permission,
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

/// One candidate per project whose policy grants the breach; it blocks only when no other
/// project grants it too.
pub fn propose(ladder: &Ladder<'_>) -> Vec<Proposal<GcpSpec>> {
    let state = ladder.state;
    let all = ladder.principals();
    let projects = dedup(ladder.grants.iter().map(|g| g.project.clone()));
    projects
        .iter()
        .map(|project| {
            let principals: Vec<&Principal> = dedup(
                ladder
                    .grants
                    .iter()
                    .filter(|g| &g.project == project)
                    .flat_map(|g| state.principals.iter().filter(|p| p.member() == g.member)),
            );
            let denied: Vec<String> = principals.iter().map(|p| p.deny_principal()).collect();
            let permission = state.breach.deny_form();
            let policy_id = deny_policy_id(ladder.incident.as_str(), project, &permission, &denied);
            // The deny covers every resource of the project: the envelope's other uses of the
            // same permission there go too.
            let after: Vec<ProjectPolicy> = state
                .projects
                .iter()
                .map(|p| ProjectPolicy {
                    project: p.project.clone(),
                    bindings: if &p.project == project {
                        p.bindings
                            .iter()
                            .filter(|b| !state.role_grants(&b.role, &state.breach))
                            .cloned()
                            .collect()
                    } else {
                        p.bindings.clone()
                    },
                })
                .collect();
            let same_permission: Vec<Use> = ladder
                .uses()
                .iter()
                .filter(|u| u.permission == state.breach)
                .cloned()
                .collect();
            let elsewhere: Vec<&str> = projects
                .iter()
                .filter(|p| *p != project)
                .map(String::as_str)
                .collect();
            let mut notes = ladder.notes.clone();
            notes.push(format!(
                "GCP refuses a deny policy for a permission deny policies do not support; {} is \
                 checked by the create call",
                state.breach
            ));
            Proposal {
                target: format!("{}/{policy_id}", deny_parent(project)),
                granularity: format!(
                    "one permission ({permission}) for {} on every resource of project {project}; \
                     roles and bindings stay as they are",
                    denied.join(", ")
                ),
                blast_radius: ladder.blast(&same_permission, &after, &all),
                blocks: elsewhere.is_empty(),
                inverse: format!("delete deny policy {policy_id} (404 = already gone)"),
                verify: format!(
                    "deny policy {policy_id} exists on project {project} with its one rule"
                ),
                rejected: (!elsewhere.is_empty()).then(|| {
                    format!(
                        "{} is also granted in project(s) {}",
                        state.breach,
                        elsewhere.join(", ")
                    )
                }),
                notes,
                spec: GcpSpec::DenyPolicy(Spec {
                    project: project.clone(),
                    policy_id,
                    denied_principals: denied,
                    denied_permission: permission,
                    breach: state.breach.clone(),
                }),
            }
        })
        .collect()
}

impl Spec {
    fn name(&self) -> String {
        format!("{}/{}", deny_parent(&self.project), self.policy_id)
    }

    /// Whether `policy` has a rule denying this spec's permission to all its principals.
    fn denied_by(&self, policy: &DenyPolicy) -> bool {
        policy.rules.iter().any(|r| {
            r.deny_rule().is_some_and(|d| {
                self.denied_principals
                    .iter()
                    .all(|p| d.denied_principals.contains(p))
                    && d.denied_permissions.contains(&self.denied_permission)
            })
        })
    }

    pub async fn change(&self, api: &Api, change: Change) -> Result<Outcome, PlaneError> {
        let Spec {
            project,
            policy_id,
            denied_principals,
            denied_permission,
            ..
        } = self;
        match change {
            Change::Apply => {
                if let Some(existing) = api.deny_policy(&self.name()).await? {
                    return if self.denied_by(&existing) {
                        Ok(Outcome::unchanged(format!(
                            "deny policy {policy_id} exists on project {project}"
                        )))
                    } else {
                        Err(PlaneError::Conflict {
                            plane: PLANE,
                            detail: format!(
                                "deny policy {policy_id} on project {project} exists with other rules; \
                                 Firebreak does not overwrite it (delete it or re-plan)"
                            ),
                        })
                    };
                }
                let rule = DenyRule::new()
                    .set_denied_principals(denied_principals.iter().cloned())
                    .set_denied_permissions([denied_permission.clone()]);
                let policy = DenyPolicy::new()
                    .set_display_name(format!("Firebreak containment {policy_id}"))
                    .set_rules([PolicyRule::new()
                        .set_description(format!("Firebreak: deny {denied_permission}"))
                        .set_deny_rule(rule)]);
                match api
                    .create_deny_policy(&deny_parent(project), policy_id, policy)
                    .await
                {
                    Ok(()) => Ok(Outcome::changed(format!(
                        "created deny policy {policy_id} on project {project}: {} may not \
                         {denied_permission}",
                        denied_principals.join(", ")
                    ))),
                    // An earlier attempt of this same apply created it (its answer was lost).
                    Err(e) if status_code(&e) == Some(Code::AlreadyExists) => {
                        Ok(Outcome::unchanged(format!(
                            "deny policy {policy_id} exists on project {project}"
                        )))
                    }
                    Err(e) => Err(api_error(&format!("creating deny policy {policy_id}"), e)),
                }
            }
            Change::Revert => match api.delete_deny_policy(&self.name()).await {
                Ok(()) => Ok(Outcome::changed(format!("deleted deny policy {policy_id}"))),
                Err(e) if status_code(&e) == Some(Code::NotFound) => Ok(Outcome::unchanged(
                    format!("deny policy {policy_id} is already gone"),
                )),
                Err(e) => Err(api_error(&format!("deleting deny policy {policy_id}"), e)),
            },
        }
    }

    /// Reads the deny policy itself: the rule IAM enforces.
    pub async fn check(&self, api: &Api, check: Check) -> Result<Verification, PlaneError> {
        let Spec {
            project,
            policy_id,
            denied_permission,
            ..
        } = self;
        let found = api.deny_policy(&self.name()).await?;
        Ok(match (check, found) {
            (Check::Applied, Some(p)) if self.denied_by(&p) => Verification::ok(format!(
                "deny policy {policy_id} denies {denied_permission} on project {project}"
            )),
            (Check::Applied, Some(_)) => {
                Verification::failed(format!("deny policy {policy_id} exists with other rules"))
            }
            (Check::Applied, None) => {
                Verification::failed(format!("deny policy {policy_id} is not visible yet"))
            }
            (Check::Reverted, Some(_)) => {
                Verification::failed(format!("deny policy {policy_id} still exists"))
            }
            (Check::Reverted, None) => Verification::ok(format!("deny policy {policy_id} is gone")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
