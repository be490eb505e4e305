//! How a Kubernetes permission is written in alerts and envelopes.
//!
//! The identity dimension carries `{action, resource}`. For Kubernetes:
//!
//! * `action` is `k8s:<verb>` with a Kubernetes API verb (`k8s:get`, `k8s:list`, `k8s:create`,
//!   …). The `k8s:` prefix keeps the `service:Action` shape envelopes require and tells this
//!   plane apart from the cloud planes.
//! * `resource` is the REST path of the object below `/api/v1` or `/apis/GROUP/VERSION`, with the
//!   API group written after the resource the way `kubectl` does (`deployments.apps`):
//!
//!   | resource | means |
//!   |---|---|
//!   | `namespaces/payments/secrets/db-password` | the Secret `db-password` in `payments` |
//!   | `namespaces/payments/secrets` | every Secret in `payments` (list, watch, create) |
//!   | `namespaces/payments/pods/web-0/exec` | the `exec` subresource of Pod `web-0` |
//!   | `namespaces/payments/deployments.apps/api` | a Deployment (group `apps`) |
//!   | `secrets` | Secrets in every namespace |
//!   | `nodes/ip-10-0-0-1` | a cluster-scoped object |
//!   | `namespaces/payments` | the Namespace object `payments` itself |
//!
//! These are exactly the attributes of a `SubjectAccessReview`, so a breach is checked against
//! the cluster's own authorizer without translation.

use serde::{Deserialize, Serialize};

/// The `service` part of a Kubernetes identity action.
pub const ACTION_PREFIX: &str = "k8s:";

/// Verbs the Kubernetes authorizer knows (standard API verbs and RBAC's special ones).
pub const VERBS: &[&str] = &[
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
    "impersonate",
    "bind",
    "escalate",
    "use",
    "approve",
    "sign",
];

/// One request as the authorizer sees it: the `resourceAttributes` of a SubjectAccessReview.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRequest {
    pub verb: String,
    /// `""` for the core group.
    pub group: String,
    pub resource: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subresource: Option<String>,
    /// `None`: cluster-scoped, or every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PermissionError {
    #[error("action {0:?} is not a Kubernetes action; write it as k8s:<verb>, e.g. k8s:get")]
    NotKubernetes(String),
    #[error("action {action:?}: {verb:?} is not a Kubernetes API verb; use one of {}", VERBS.join(", "))]
    UnknownVerb { action: String, verb: String },
    #[error("resource {resource:?}: {reason}; write it as [namespaces/NS/]RESOURCE[.GROUP][/NAME[/SUBRESOURCE]], e.g. namespaces/payments/secrets/db-password")]
    Resource { resource: String, reason: String },
}

/// The verb of a `k8s:<verb>` action.
pub fn parse_action(action: &str) -> Result<&str, PermissionError> {
    let verb = action
        .strip_prefix(ACTION_PREFIX)
        .ok_or_else(|| PermissionError::NotKubernetes(action.to_string()))?;
    if VERBS.contains(&verb) {
        Ok(verb)
    } else {
        Err(PermissionError::UnknownVerb {
            action: action.to_string(),
            verb: verb.to_string(),
        })
    }
}

impl ResourceRequest {
    /// Parses an identity `{action, resource}` pair written as documented in this module.
    pub fn parse(action: &str, resource: &str) -> Result<ResourceRequest, PermissionError> {
        let verb = parse_action(action)?;
        let bad = |reason: &str| PermissionError::Resource {
            resource: resource.to_string(),
            reason: reason.to_string(),
        };
        let segments: Vec<&str> = resource.split('/').collect();
        if segments.iter().any(|s| s.is_empty()) {
            return Err(bad("it has an empty path segment"));
        }
        if segments.iter().any(|s| s.contains('*')) {
            return Err(bad(
                "wildcards are not requests; name one resource (leave the name out for all)",
            ));
        }
        // `namespaces/NS/…` with something after NS is a namespaced request; `namespaces/NS`
        // alone is the Namespace object, as in the REST path.
        let (namespace, rest) = match segments.as_slice() {
            ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
            all => (None, all),
        };
        let (qualified, name, subresource) = match rest {
            [resource] => (*resource, None, None),
            [resource, name] => (*resource, Some(name.to_string()), None),
            [resource, name, sub] => (*resource, Some(name.to_string()), Some(sub.to_string())),
            _ => return Err(bad("it has more segments than RESOURCE/NAME/SUBRESOURCE")),
        };
        let (resource_name, group) = match qualified.split_once('.') {
            Some((r, g)) => (r, g),
            None => (qualified, ""),
        };
        if !resource_name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        {
            return Err(bad(&format!(
                "{resource_name:?} is not a plural lower-case resource name such as secrets"
            )));
        }
        Ok(ResourceRequest {
            verb: verb.to_string(),
            group: group.to_string(),
            resource: resource_name.to_string(),
            subresource,
            namespace,
            name,
        })
    }

    /// `verb resource` as an operator reads it, e.g. `get secrets/db-password in payments`.
    pub fn describe(&self) -> String {
        let mut what = self.resource.clone();
        if !self.group.is_empty() {
            what = format!("{what}.{}", self.group);
        }
        if let Some(name) = &self.name {
            what = format!("{what}/{name}");
        }
        if let Some(sub) = &self.subresource {
            what = format!("{what}/{sub}");
        }
        match &self.namespace {
            Some(ns) => format!("{} {what} in {ns}", self.verb),
            None => format!("{} {what} (cluster-wide)", self.verb),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_documented_form() {
        let r = ResourceRequest::parse("k8s:get", "namespaces/payments/secrets/db").unwrap();
        assert_eq!(
            (
                r.namespace.as_deref(),
                r.resource.as_str(),
                r.name.as_deref()
            ),
            (Some("payments"), "secrets", Some("db"))
        );
        let r = ResourceRequest::parse("k8s:create", "namespaces/p/pods/web-0/exec").unwrap();
        assert_eq!(r.subresource.as_deref(), Some("exec"));
        let r = ResourceRequest::parse("k8s:patch", "namespaces/p/deployments.apps/api").unwrap();
        assert_eq!(
            (r.group.as_str(), r.resource.as_str()),
            ("apps", "deployments")
        );
        let r = ResourceRequest::parse("k8s:list", "secrets").unwrap();
        assert_eq!((r.namespace, r.name), (None, None));
        let r = ResourceRequest::parse("k8s:get", "namespaces/payments").unwrap();
        assert_eq!(
            (r.namespace, r.resource.as_str(), r.name.as_deref()),
            (None, "namespaces", Some("payments"))
        );
    }

    #[test]
    fn rejects_what_is_not_a_request() {
        assert!(matches!(
            ResourceRequest::parse("s3:GetObject", "secrets"),
            Err(PermissionError::NotKubernetes(_))
        ));
        assert!(matches!(
            ResourceRequest::parse("k8s:read", "secrets"),
            Err(PermissionError::UnknownVerb { .. })
        ));
        for bad in ["", "namespaces/p//x", "Secrets", "secrets/*", "a/b/c/d"] {
            assert!(
                matches!(
                    ResourceRequest::parse("k8s:get", bad),
                    Err(PermissionError::Resource { .. })
                ),
                "{bad:?} should not parse"
            );
        }
    }
}
