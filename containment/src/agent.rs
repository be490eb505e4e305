//! Who an alert is about: one Kubernetes workload and its ServiceAccount.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::InputError;

/// One AI workload, keyed `cluster/namespace/Kind/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentRef {
    pub cluster: String,
    pub namespace: String,
    /// `Kind/name`, e.g. `Deployment/payment-agent`.
    pub workload: String,
    pub service_account: String,
}

impl AgentRef {
    /// The stable key envelopes, incidents and budgets are indexed by.
    pub fn key(&self) -> AgentKey {
        AgentKey(format!(
            "{}/{}/{}",
            self.cluster, self.namespace, self.workload
        ))
    }

    /// Checks what serde cannot: non-empty names, `Kind/name` shape, DNS-label-ish characters.
    pub fn validate(&self) -> Result<(), InputError> {
        for (field, value) in [
            ("cluster", &self.cluster),
            ("namespace", &self.namespace),
            ("serviceAccount", &self.service_account),
        ] {
            check_name(value).map_err(|reason| InputError::new(field, reason))?;
        }
        check_workload(&self.workload).map_err(|reason| InputError::new("workload", reason))
    }
}

/// `Kind/name`: an alphanumeric kind and a valid name.
fn check_workload(workload: &str) -> Result<(), String> {
    match workload.split_once('/') {
        Some((kind, name)) if !kind.is_empty() && !name.contains('/') => {
            if !kind.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(format!(
                    "kind {kind:?} must be alphanumeric, e.g. Deployment"
                ));
            }
            check_name(name)
        }
        _ => Err(format!(
            "expected Kind/name such as Deployment/payment-agent, got {workload:?}"
        )),
    }
}

fn check_name(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("must not be empty".into());
    }
    if value.len() > 253 {
        return Err(format!(
            "is {} characters, at most 253 allowed",
            value.len()
        ));
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':')))
    {
        return Err(format!(
            "contains {bad:?}; only letters, digits, '-', '.', '_' and ':' are allowed"
        ));
    }
    Ok(())
}

/// `cluster/namespace/Kind/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AgentKey(pub String);

impl AgentKey {
    /// Checks that `text` is `cluster/namespace/Kind/name`, by the rules an alert's agent
    /// follows; the reason names what is wrong.
    pub fn check(text: &str) -> Result<(), String> {
        let parts: Vec<&str> = text.split('/').collect();
        let [cluster, namespace, kind, name] = parts.as_slice() else {
            return Err(format!(
                "{text:?} is not cluster/namespace/Kind/name, e.g. prod/payments/Deployment/payment-agent"
            ));
        };
        [("cluster", *cluster), ("namespace", *namespace)]
            .into_iter()
            .try_for_each(|(part, value)| check_name(value).map_err(|e| format!("{part}: {e}")))
            .and_then(|()| {
                check_workload(&format!("{kind}/{name}")).map_err(|e| format!("workload: {e}"))
            })
            .map_err(|e| format!("{text:?}: {e}"))
    }
}

impl fmt::Display for AgentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for AgentRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.key())
    }
}
