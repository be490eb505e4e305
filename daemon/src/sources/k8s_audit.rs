//! Falco events from the k8s_audit plugin (`ka.*` output fields): one Kubernetes API request.
//!
//! The agent is who made the request (`ka.user.name`, a ServiceAccount), never the object it
//! acted on (`ka.target.*`): an exec into pod `default/kubecon` is a breach of the caller's
//! identity envelope, an action `k8s:<verb>` on `namespaces/default/pods/kubecon/exec` in the
//! Kubernetes RBAC plane's terms. A request by a person or a node names no agent: it is
//! escalated as unmappable, not refused as bad input.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use firebreak_containment::alert::{Dimension, Severity};
use firebreak_containment::{AgentRef, InputError};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::{Context, Draft, Item, Mapped, Rejected};

/// What the Falco event carried besides its output fields.
pub(super) struct Audit<'a> {
    pub rule: &'a str,
    pub severity: Severity,
    pub time: Option<DateTime<Utc>>,
    pub fields: &'a BTreeMap<String, Value>,
    pub raw: &'a Value,
}

/// Whether the output fields are the k8s_audit plugin's.
pub(super) fn is_audit(fields: &BTreeMap<String, Value>) -> bool {
    fields.keys().any(|k| k.starts_with("ka."))
}

/// Subresources whose RBAC verb is `create` (a POST/upgrade), for rules whose output leaves
/// out `%ka.verb` (Falco's own "Attach/Exec Pod").
const CREATE_SUBRESOURCES: &[&str] = &["exec", "attach", "portforward"];

pub(super) fn map(audit: Audit<'_>, context: &Context<'_>, path: &dyn Fn(&str) -> String) -> Item {
    let text = |key: &str| super::falco::text(audit.fields, key);
    let field = |key: &str| path(&format!("output_fields.{key}"));
    let reject = |key: &str, reason: String| Rejected {
        id: None,
        error: InputError::new(field(key), reason),
    };
    let user = text("ka.user.name").ok_or_else(|| {
        reject(
            "ka.user.name",
            "missing: a k8s_audit event must say who made the request (add %ka.user.name to the rule's output)".into(),
        )
    })?;
    let time = audit.time.ok_or_else(|| Rejected {
        id: None,
        error: InputError::new(path("time"), "missing"),
    })?;
    let instant = text("ka.auditid").unwrap_or_else(|| time.to_rfc3339());
    let digest = Sha256::digest(format!("{}\0{instant}\0{user}", audit.rule));
    let id = format!("falco-{}", &hex::encode(digest)[..24]);
    let (verb, resource) = request(&text).map_err(|(key, reason)| reject(key, reason))?;
    let Some((namespace, account)) = service_account(&user) else {
        return Ok(Mapped::Unmappable {
            id,
            reason: format!(
                "k8s_audit: {resource} was acted on by {user:?}, which is not a ServiceAccount, so no agent made the request"
            ),
        });
    };
    let agents: Vec<&AgentRef> = context
        .envelopes
        .iter()
        .map(|e| &e.spec.agent)
        .filter(|a| {
            a.cluster == context.cluster && a.namespace == namespace && a.service_account == account
        })
        .collect();
    let agent = match agents.as_slice() {
        [agent] => (*agent).clone(),
        [] => {
            return Ok(Mapped::Unmappable {
                id,
                reason: format!(
                    "k8s_audit: no envelope is loaded for ServiceAccount {namespace}/{account} in cluster {}, so no agent can be named",
                    context.cluster
                ),
            })
        }
        many => {
            let keys: Vec<String> = many.iter().map(|a| a.key().to_string()).collect();
            return Ok(Mapped::Unmappable {
                id,
                reason: format!(
                    "k8s_audit: ServiceAccount {namespace}/{account} is shared by {}; the request cannot be pinned on one agent",
                    keys.join(", ")
                ),
            });
        }
    };
    let mut evidence = Map::new();
    evidence.insert("falco".into(), audit.raw.clone());
    Draft {
        id: id.clone(),
        source: "falco",
        time,
        agent,
        dimension: Dimension::Identity,
        parameter: json!({"action": format!("k8s:{verb}"), "resource": resource}),
        severity: audit.severity,
        evidence: Value::Object(evidence),
        origins: vec![
            ("agent.serviceAccount", field("ka.user.name")),
            ("parameter.action", field("ka.verb")),
            ("parameter.resource", field("ka.target.resource")),
        ],
    }
    .finish()
    .map(|a| Mapped::Alert(Box::new(a)))
    .map_err(|error| Rejected {
        id: Some(id),
        error,
    })
}

/// `system:serviceaccount:NAMESPACE:NAME` → (namespace, name).
fn service_account(user: &str) -> Option<(String, String)> {
    let rest = user.strip_prefix("system:serviceaccount:")?;
    let (namespace, name) = rest.split_once(':')?;
    (!namespace.is_empty() && !name.is_empty() && !name.contains(':'))
        .then(|| (namespace.to_string(), name.to_string()))
}

type Problem = (&'static str, String);

/// The verb and the resource in the RBAC plane's form:
/// `[namespaces/NS/]RESOURCE[.GROUP][/NAME[/SUBRESOURCE]]`, the group read from `ka.uri`.
fn request(text: &dyn Fn(&str) -> Option<String>) -> Result<(String, String), Problem> {
    let kind = text("ka.target.resource").ok_or((
        "ka.target.resource",
        "missing: add %ka.target.resource to the rule's output".to_string(),
    ))?;
    let subresource = text("ka.target.subresource");
    let verb = match text("ka.verb") {
        Some(verb) => verb,
        None if subresource
            .as_deref()
            .is_some_and(|s| CREATE_SUBRESOURCES.contains(&s)) =>
        {
            "create".to_string()
        }
        None => {
            return Err((
                "ka.verb",
                "missing: add %ka.verb to the rule's output (only exec, attach and portforward imply create)".into(),
            ))
        }
    };
    let group = text("ka.uri").and_then(|uri| api_group(&uri));
    let mut resource = String::new();
    if let Some(namespace) = text("ka.target.namespace") {
        resource.push_str(&format!("namespaces/{namespace}/"));
    }
    resource.push_str(&kind);
    if let Some(group) = group {
        resource.push_str(&format!(".{group}"));
    }
    if let Some(name) = text("ka.target.name") {
        resource.push_str(&format!("/{name}"));
        if let Some(subresource) = subresource {
            resource.push_str(&format!("/{subresource}"));
        }
    }
    Ok((verb, resource))
}

/// `/apis/GROUP/VERSION/...` → GROUP; the core group (`/api/v1/...`) has none.
fn api_group(uri: &str) -> Option<String> {
    let path = uri.split('?').next()?;
    let mut parts = path.trim_start_matches('/').split('/');
    (parts.next()? == "apis")
        .then(|| parts.next())
        .flatten()
        .filter(|g| !g.is_empty())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::falco;
    use crate::sources::testing::store;
    use firebreak_containment::{EnvelopeStore, Parameter};

    /// Falco's "Attach/Exec Pod" k8s_audit rule as it prints it: the target pod
    /// `default/kubecon`, the caller a ServiceAccount, no `%ka.verb` in the output.
    fn exec_into_kubecon(user: &str) -> Value {
        json!({
            "hostname": "falco-k8saudit-0",
            "output": "Attach/Exec to pod (user=... pod=kubecon resource=pods ns=default action=exec command=sh)",
            "priority": "Notice",
            "rule": "Attach/Exec Pod",
            "source": "k8s_audit",
            "tags": ["k8s", "mitre_execution"],
            "time": "2026-12-07T02:47:00.123456789Z",
            "output_fields": {
                "ka.auditid": "0d2b1b2e-8f3c-4f5e-9d0a-4c7e0e8b5a11",
                "ka.target.name": "kubecon",
                "ka.target.namespace": "default",
                "ka.target.resource": "pods",
                "ka.target.subresource": "exec",
                "ka.uri": "/api/v1/namespaces/default/pods/kubecon/exec?command=sh&container=app&stdin=true&tty=true",
                "ka.uri.param[command]": "sh",
                "ka.user.name": user
            }
        })
    }

    fn payment_agent() -> EnvelopeStore {
        store(
            "default",
            "payments",
            "Deployment/payment-agent",
            "payment-agent",
        )
    }

    fn map_one(event: &Value, envelopes: &EnvelopeStore) -> Item {
        let context = Context {
            cluster: "default",
            envelopes,
        };
        falco::map_value(event, &context, "")
    }

    #[test]
    fn an_exec_by_an_agents_service_account_is_that_agents_identity_breach() {
        let event = exec_into_kubecon("system:serviceaccount:payments:payment-agent");
        let Ok(Mapped::Alert(alert)) = map_one(&event, &payment_agent()) else {
            panic!("expected an alert: {:?}", map_one(&event, &payment_agent()));
        };
        assert_eq!(
            alert.agent.key().to_string(),
            "default/payments/Deployment/payment-agent",
            "the caller, not the target pod"
        );
        match &alert.parameter {
            Parameter::Identity { action, resource } => {
                assert_eq!(action, "k8s:create");
                assert_eq!(resource, "namespaces/default/pods/kubecon/exec");
            }
            other => panic!("expected an identity parameter, got {other:?}"),
        }
    }

    #[test]
    fn a_request_by_a_person_names_no_agent_and_is_escalated() {
        let event = exec_into_kubecon("kubernetes-admin");
        match map_one(&event, &payment_agent()) {
            Ok(Mapped::Unmappable { reason, .. }) => {
                assert!(reason.contains("kubernetes-admin"), "{reason}");
                assert!(
                    reason.contains("namespaces/default/pods/kubecon/exec"),
                    "{reason}"
                );
            }
            other => panic!("expected unmappable, got {other:?}"),
        }
    }

    #[test]
    fn a_service_account_without_an_envelope_is_escalated_naming_it() {
        let event = exec_into_kubecon("system:serviceaccount:default:builder");
        match map_one(&event, &payment_agent()) {
            Ok(Mapped::Unmappable { reason, .. }) => {
                assert!(reason.contains("default/builder"), "{reason}")
            }
            other => panic!("expected unmappable, got {other:?}"),
        }
    }

    #[test]
    fn a_rule_without_the_verb_or_the_caller_names_the_missing_field() {
        let mut event = exec_into_kubecon("system:serviceaccount:payments:payment-agent");
        event["output_fields"]["ka.target.subresource"] = Value::Null;
        match map_one(&event, &payment_agent()) {
            Err(Rejected { error, .. }) => assert_eq!(error.field, "output_fields.ka.verb"),
            other => panic!("expected a rejection, got {other:?}"),
        }
        let mut event = exec_into_kubecon("x");
        event["output_fields"]
            .as_object_mut()
            .map(|o| o.remove("ka.user.name"));
        match map_one(&event, &payment_agent()) {
            Err(Rejected { error, .. }) => {
                assert_eq!(error.field, "output_fields.ka.user.name")
            }
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn the_api_group_comes_from_the_uri() {
        assert_eq!(
            api_group("/apis/apps/v1/namespaces/p/deployments/api"),
            Some("apps".into())
        );
        assert_eq!(api_group("/api/v1/namespaces/p/secrets/db?x=1"), None);
    }
}
