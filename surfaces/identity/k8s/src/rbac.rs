//! Kubernetes RBAC evaluated locally, following the documented authorizer: a request is allowed
//! when some ClusterRoleBinding, or some RoleBinding in the request's namespace, has a subject
//! matching the requester and a rule of its role matching the request. RBAC has no deny.
//!
//! Used for blast radius (which in-envelope permissions a removal breaks) before anything is
//! written; verification asks the cluster itself through a SubjectAccessReview.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::rbac::v1::{PolicyRule, RoleRef, Subject};
use serde::{Deserialize, Serialize};

use crate::permission::ResourceRequest;

pub const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// Which kind of binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum BindingKind {
    RoleBinding,
    ClusterRoleBinding,
}

/// Names one binding: `RoleBinding payments/reader` or `ClusterRoleBinding view-all`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BindingRef {
    pub kind: BindingKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

impl fmt::Display for BindingRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{:?} {ns}/{}", self.kind, self.name),
            None => write!(f, "{:?} {}", self.kind, self.name),
        }
    }
}

/// One RoleBinding or ClusterRoleBinding as read from the API.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    pub id: BindingRef,
    pub uid: Option<String>,
    pub resource_version: String,
    pub role_ref: RoleRef,
    pub subjects: Vec<Subject>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// Who asks: a user name and its groups, as the authenticator would present them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Requester {
    pub user: String,
    pub groups: Vec<String>,
}

impl Requester {
    /// A ServiceAccount's token authenticates as this user with these groups.
    pub fn service_account(namespace: &str, name: &str) -> Requester {
        Requester {
            user: service_account_user(namespace, name),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated".into(),
            ],
        }
    }

    /// The requester a binding subject stands for (a Group subject: a member of that group).
    pub fn of_subject(subject: &Subject, binding_namespace: Option<&str>) -> Requester {
        match subject.kind.as_str() {
            "ServiceAccount" => Requester::service_account(
                subject_namespace(subject, binding_namespace),
                &subject.name,
            ),
            "Group" => Requester {
                user: String::new(),
                groups: vec![subject.name.clone()],
            },
            _ => Requester {
                user: subject.name.clone(),
                groups: Vec::new(),
            },
        }
    }
}

pub fn service_account_user(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// A ServiceAccount subject without a namespace means the binding's namespace.
fn subject_namespace<'a>(subject: &'a Subject, binding_namespace: Option<&'a str>) -> &'a str {
    subject
        .namespace
        .as_deref()
        .or(binding_namespace)
        .unwrap_or_default()
}

/// Whether `subject` of a binding in `binding_namespace` matches `who`.
pub fn subject_matches(
    subject: &Subject,
    binding_namespace: Option<&str>,
    who: &Requester,
) -> bool {
    match subject.kind.as_str() {
        "User" => !who.user.is_empty() && subject.name == who.user,
        "Group" => who.groups.contains(&subject.name),
        "ServiceAccount" => {
            service_account_user(subject_namespace(subject, binding_namespace), &subject.name)
                == who.user
        }
        _ => false,
    }
}

/// Whether `subject` names exactly this ServiceAccount (not a group it belongs to): the subjects
/// `k8s.remove_rolebinding_subject` may remove.
pub fn names_service_account(
    subject: &Subject,
    binding_namespace: Option<&str>,
    namespace: &str,
    name: &str,
) -> bool {
    matches!(subject.kind.as_str(), "ServiceAccount" | "User")
        && subject_matches(
            subject,
            binding_namespace,
            &Requester {
                user: service_account_user(namespace, name),
                groups: Vec::new(),
            },
        )
}

fn rule_matches(rule: &PolicyRule, req: &ResourceRequest) -> bool {
    let any = |list: &Option<Vec<String>>, want: &str| {
        list.iter().flatten().any(|v| v == "*" || v == want)
    };
    if !(rule.verbs.iter().any(|v| v == "*" || *v == req.verb) && any(&rule.api_groups, &req.group))
    {
        return false;
    }
    let resource_ok = rule
        .resources
        .iter()
        .flatten()
        .any(|r| match &req.subresource {
            None => r == "*" || *r == req.resource,
            Some(sub) => *r == format!("{}/{sub}", req.resource) || *r == format!("*/{sub}"),
        });
    let names = rule.resource_names.as_deref().unwrap_or_default();
    let name_ok = names.is_empty()
        || req
            .name
            .as_ref()
            .is_some_and(|n| names.iter().any(|x| x == n));
    resource_ok && name_ok
}

/// Everything RBAC needs to answer for a set of namespaces: bindings and the rules of the roles
/// they reference (`None` when the role does not exist: such a binding grants nothing).
#[derive(Debug, Clone, Default)]
pub struct RbacState {
    pub bindings: Vec<Binding>,
    /// `Role ns/name` or `ClusterRole name` → its rules.
    pub roles: BTreeMap<RoleKey, Option<Vec<PolicyRule>>>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RoleKey {
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl RoleKey {
    /// The role a binding references: a Role lives in the binding's namespace.
    pub fn of(binding: &BindingRef, role_ref: &RoleRef) -> RoleKey {
        RoleKey {
            kind: role_ref.kind.clone(),
            namespace: match role_ref.kind.as_str() {
                "Role" => binding.namespace.clone(),
                _ => None,
            },
            name: role_ref.name.clone(),
        }
    }
}

/// One (binding, subject) pair through which a request is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub binding: BindingRef,
    pub subject: usize,
}

impl RbacState {
    /// Every (binding, subject) that allows `req` for `who`; empty means denied.
    pub fn grants(&self, who: &Requester, req: &ResourceRequest) -> Vec<Grant> {
        let mut out = Vec::new();
        for binding in &self.bindings {
            if binding.id.kind == BindingKind::RoleBinding && binding.id.namespace != req.namespace
            {
                continue;
            }
            let key = RoleKey::of(&binding.id, &binding.role_ref);
            let Some(Some(rules)) = self.roles.get(&key) else {
                continue;
            };
            if !rules.iter().any(|r| rule_matches(r, req)) {
                continue;
            }
            for (i, subject) in binding.subjects.iter().enumerate() {
                if subject_matches(subject, binding.id.namespace.as_deref(), who) {
                    out.push(Grant {
                        binding: binding.id.clone(),
                        subject: i,
                    });
                }
            }
        }
        out
    }

    pub fn allows(&self, who: &Requester, req: &ResourceRequest) -> bool {
        !self.grants(who, req).is_empty()
    }

    pub fn binding(&self, id: &BindingRef) -> Option<&Binding> {
        self.bindings.iter().find(|b| &b.id == id)
    }

    /// The state after removing subject `index` from `id`.
    pub fn without_subject(&self, id: &BindingRef, index: usize) -> RbacState {
        let mut next = self.clone();
        if let Some(b) = next.bindings.iter_mut().find(|b| &b.id == id) {
            if index < b.subjects.len() {
                b.subjects.remove(index);
            }
        }
        next
    }

    /// The state after deleting `id`.
    pub fn without_binding(&self, id: &BindingRef) -> RbacState {
        let mut next = self.clone();
        next.bindings.retain(|b| &b.id != id);
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(kind: &str, name: &str, ns: Option<&str>) -> Subject {
        Subject {
            api_group: (kind != "ServiceAccount").then(|| RBAC_GROUP.to_string()),
            kind: kind.into(),
            name: name.into(),
            namespace: ns.map(str::to_string),
        }
    }

    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> PolicyRule {
        let v = |l: &[&str]| Some(l.iter().map(|s| s.to_string()).collect());
        PolicyRule {
            verbs: l(verbs),
            api_groups: v(groups),
            resources: v(resources),
            resource_names: if names.is_empty() { None } else { v(names) },
            non_resource_urls: None,
        }
    }

    fn l(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn state(
        kind: BindingKind,
        ns: Option<&str>,
        role: &str,
        rules: Vec<PolicyRule>,
        subjects: Vec<Subject>,
    ) -> RbacState {
        let id = BindingRef {
            kind,
            namespace: ns.map(str::to_string),
            name: "b".into(),
        };
        let role_ref = RoleRef {
            api_group: RBAC_GROUP.into(),
            kind: role.into(),
            name: "r".into(),
        };
        let mut roles = BTreeMap::new();
        roles.insert(RoleKey::of(&id, &role_ref), Some(rules));
        RbacState {
            bindings: vec![Binding {
                id,
                uid: None,
                resource_version: "1".into(),
                role_ref,
                subjects,
                labels: BTreeMap::new(),
                annotations: BTreeMap::new(),
            }],
            roles,
        }
    }

    fn req(action: &str, resource: &str) -> ResourceRequest {
        ResourceRequest::parse(action, resource).unwrap()
    }

    #[test]
    fn role_binding_grants_only_in_its_namespace_and_by_subject() {
        let s = state(
            BindingKind::RoleBinding,
            Some("p"),
            "Role",
            vec![rule(&["get"], &[""], &["secrets"], &[])],
            vec![subject("ServiceAccount", "agent", None)],
        );
        let agent = Requester::service_account("p", "agent");
        assert!(s.allows(&agent, &req("k8s:get", "namespaces/p/secrets/x")));
        assert!(!s.allows(&agent, &req("k8s:get", "namespaces/q/secrets/x")));
        assert!(!s.allows(&agent, &req("k8s:get", "secrets")));
        assert!(!s.allows(&agent, &req("k8s:list", "namespaces/p/secrets")));
        assert!(!s.allows(
            &Requester::service_account("q", "agent"),
            &req("k8s:get", "namespaces/p/secrets/x")
        ));
    }

    #[test]
    fn wildcards_subresources_names_and_groups() {
        let s = state(
            BindingKind::ClusterRoleBinding,
            None,
            "ClusterRole",
            vec![
                rule(&["*"], &["apps"], &["deployments"], &[]),
                rule(&["get"], &[""], &["*/log"], &[]),
                rule(&["get"], &[""], &["configmaps"], &["only"]),
            ],
            vec![subject("Group", "system:serviceaccounts:p", None)],
        );
        let agent = Requester::service_account("p", "agent");
        assert!(s.allows(
            &agent,
            &req("k8s:delete", "namespaces/x/deployments.apps/d")
        ));
        assert!(!s.allows(&agent, &req("k8s:delete", "namespaces/x/deployments/d")));
        assert!(s.allows(&agent, &req("k8s:get", "namespaces/x/pods/p/log")));
        assert!(!s.allows(&agent, &req("k8s:get", "namespaces/x/pods/p")));
        assert!(s.allows(&agent, &req("k8s:get", "namespaces/x/configmaps/only")));
        assert!(!s.allows(&agent, &req("k8s:get", "namespaces/x/configmaps")));
        assert!(!names_service_account(
            &s.bindings[0].subjects[0],
            None,
            "p",
            "agent"
        ));
    }

    #[test]
    fn removal_is_simulated() {
        let s = state(
            BindingKind::RoleBinding,
            Some("p"),
            "ClusterRole",
            vec![rule(&["get"], &[""], &["secrets"], &[])],
            vec![
                subject("User", "alice", None),
                subject("ServiceAccount", "agent", Some("p")),
            ],
        );
        let agent = Requester::service_account("p", "agent");
        let r = req("k8s:get", "namespaces/p/secrets/x");
        assert_eq!(s.grants(&agent, &r)[0].subject, 1);
        let id = s.bindings[0].id.clone();
        assert!(!s.without_subject(&id, 1).allows(&agent, &r));
        let alice = Requester::of_subject(&s.bindings[0].subjects[0], Some("p"));
        assert!(s.without_subject(&id, 1).allows(&alice, &r));
        assert!(!s.without_binding(&id).allows(&alice, &r));
    }
}
