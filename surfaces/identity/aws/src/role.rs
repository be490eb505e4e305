//! The observed state of one IAM role: what the blast radius is computed against.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::policy::{Context, NamedPolicy, PolicyDocument};

/// One policy as observed, with the text it came from (sizes count against IAM quotas).
#[derive(Debug, Clone)]
pub struct ObservedPolicy {
    /// Inline: the policy name. Managed: the policy ARN.
    pub id: String,
    pub name: String,
    pub document: PolicyDocument,
    pub raw: Value,
}

/// A snapshot of a role: its inline and attached managed policies and its trust policy.
#[derive(Debug, Clone)]
pub struct RoleState {
    pub arn: String,
    pub name: String,
    pub inline: Vec<ObservedPolicy>,
    pub managed: Vec<ObservedPolicy>,
    pub trust: ObservedPolicy,
    /// The EKS Pod Identity associations around the role; `None` when no EKS cluster is
    /// configured (Firebreak then cannot see them).
    pub pod_identity: Option<PodIdentity>,
}

/// One EKS Pod Identity association, as described: everything needed to create it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Association {
    pub id: String,
    pub namespace: String,
    pub service_account: String,
    pub role_arn: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_role_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_session_tags: Option<bool>,
}

impl Association {
    pub fn uses(&self, role_arn: &str) -> bool {
        self.role_arn == role_arn || self.target_role_arn.as_deref() == Some(role_arn)
    }

    pub fn service_account(&self) -> String {
        format!("{}/{}", self.namespace, self.service_account)
    }

    /// The session tags EKS puts on this association's credentials, as far as a policy can
    /// rely on them (pod name and uid vary); empty when session tags are disabled.
    pub fn session_context(&self) -> Context {
        if self.disable_session_tags == Some(true) {
            return Context::default();
        }
        session_context(&self.namespace, &self.service_account)
    }
}

/// `aws:PrincipalTag/kubernetes-namespace` and `…/kubernetes-service-account` of one
/// ServiceAccount's Pod Identity sessions.
pub fn session_context(namespace: &str, service_account: &str) -> Context {
    Context::default()
        .with(PRINCIPAL_TAG_NAMESPACE, namespace)
        .with(PRINCIPAL_TAG_SERVICE_ACCOUNT, service_account)
}

pub const PRINCIPAL_TAG_NAMESPACE: &str = "aws:PrincipalTag/kubernetes-namespace";
pub const PRINCIPAL_TAG_SERVICE_ACCOUNT: &str = "aws:PrincipalTag/kubernetes-service-account";

/// What one EKS cluster's Pod Identity associations say about a role and the agent.
#[derive(Debug, Clone)]
pub struct PodIdentity {
    pub cluster: String,
    /// The agent's associations with this role (EKS allows one per ServiceAccount); empty
    /// means the link is cut.
    pub agent: Vec<Association>,
    /// Other ServiceAccounts' associations with this role: they share its permissions.
    pub sharing: Vec<Association>,
}

/// IAM quota: all inline policies of one role share 10,240 characters, whitespace excluded.
pub const INLINE_BUDGET: usize = 10_240;

impl RoleState {
    /// Every identity policy of the role, as the evaluator wants them.
    pub fn policies(&self) -> Vec<NamedPolicy<'_>> {
        self.inline
            .iter()
            .chain(&self.managed)
            .map(|p| NamedPolicy {
                name: &p.name,
                document: &p.document,
            })
            .collect()
    }

    /// Characters the role's inline policies use, whitespace excluded (as IAM counts them).
    pub fn inline_chars_used_except(&self, except: &str) -> usize {
        self.inline
            .iter()
            .filter(|p| p.name != except)
            .map(|p| iam_size(&p.raw))
            .sum()
    }

    pub fn inline_policy(&self, name: &str) -> Option<&ObservedPolicy> {
        self.inline.iter().find(|p| p.name == name)
    }

    pub fn account(&self) -> Option<&str> {
        self.arn.split(':').nth(4)
    }
}

/// Size of a policy document as IAM counts it: compact JSON without whitespace.
pub fn iam_size(document: &Value) -> usize {
    document
        .to_string()
        .chars()
        .filter(|c| !c.is_whitespace())
        .count()
}

/// `arn:aws:iam::123456789012:role/path/name` → `name`.
pub fn role_name_from_arn(arn: &str) -> Option<&str> {
    let rest = arn.strip_prefix("arn:")?;
    let mut parts = rest.splitn(5, ':');
    let (_partition, service, _region, _account, resource) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    if service != "iam" {
        return None;
    }
    let path = resource.strip_prefix("role/")?;
    path.rsplit('/').next().filter(|n| !n.is_empty())
}

/// IAM returns policy documents URL-encoded (RFC 3986); some emulators return them plain.
pub fn decode_document(text: &str) -> Result<Value, String> {
    let decoded = if text.trim_start().starts_with('{') {
        std::borrow::Cow::Borrowed(text)
    } else {
        urlencoding::decode(text)
            .map_err(|e| format!("policy document is not URL-encoded UTF-8: {e}"))?
    };
    serde_json::from_str(&decoded).map_err(|e| format!("policy document is not JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_come_from_arns_with_paths() {
        assert_eq!(
            role_name_from_arn("arn:aws:iam::123456789012:role/payment-agent"),
            Some("payment-agent")
        );
        assert_eq!(
            role_name_from_arn("arn:aws:iam::123456789012:role/agents/prod/payment-agent"),
            Some("payment-agent")
        );
        assert_eq!(role_name_from_arn("arn:aws:s3:::bucket"), None);
        assert_eq!(role_name_from_arn("arn:aws:iam::1:user/bob"), None);
        assert_eq!(role_name_from_arn("not an arn"), None);
    }

    #[test]
    fn documents_decode_url_encoded_or_plain() {
        let plain = r#"{"Version":"2012-10-17","Statement":[]}"#;
        let encoded = urlencoding::encode(plain);
        assert_eq!(decode_document(plain), decode_document(&encoded));
        assert!(decode_document("%7Bnot json").is_err());
    }

    #[test]
    fn iam_size_ignores_whitespace() {
        let v = serde_json::json!({"Statement": [{"Sid": "A B"}]});
        assert_eq!(iam_size(&v), v.to_string().len() - 1);
    }
}
