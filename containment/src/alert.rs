//! The native deviation alert (docs/ARCHITECTURE.md §Data path): one breached parameter of one dimension of one agent.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::agent::AgentRef;
use crate::error::InputError;

/// Largest alert body accepted anywhere (HTTP, CLI): alerts are small; a big one is an attack.
pub const MAX_ALERT_BYTES: usize = 64 * 1024;

const CONTROL_CHARACTERS: &str =
    "contains a control character (newline, tab, escape…); identifiers must be printable";

/// One axis of the envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dimension {
    Context,
    Tools,
    Identity,
    Delegation,
    Network,
    Process,
}

impl Dimension {
    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Context => "context",
            Dimension::Tools => "tools",
            Dimension::Identity => "identity",
            Dimension::Delegation => "delegation",
            Dimension::Network => "network",
            Dimension::Process => "process",
        }
    }
}

impl fmt::Display for Dimension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the detection layer classified the alert; runbooks match on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tier {
    /// A recognised attack pattern: the only tier runbooks contain without a human by default.
    AttackAttempt,
    /// Out of envelope, intent unknown.
    Anomaly,
    /// Worth recording, not worth acting on.
    Informational,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::AttackAttempt => "attack-attempt",
            Tier::Anomaly => "anomaly",
            Tier::Informational => "informational",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

/// The breached value, tagged by its dimension: serialized as `"dimension": …` beside
/// `"parameter": {…}`. (Deserialize reads back the journal; inbound alerts go through
/// [`Parameter::parse`], which validates.)
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "dimension", content = "parameter", rename_all = "lowercase")]
pub enum Parameter {
    /// A cloud or cluster permission exercised: `{action, resource}`.
    Identity { action: String, resource: String },
    /// A tool called on an MCP server: `{server, tool}`.
    Tools { server: String, tool: String },
    /// A retrieval: `{index, source}` (source optional: the whole index when absent).
    Context {
        index: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        source: Option<String>,
    },
    /// A delegation edge `{from, to}` (from defaults to the agent itself).
    Delegation {
        #[serde(skip_serializing_if = "Option::is_none")]
        from: Option<String>,
        to: String,
    },
    /// An egress destination `{destination, port?}`.
    Network {
        destination: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        port: Option<u16>,
    },
    /// A process behaviour `{exec? | path? | syscall?}` (Kubescape/Falco).
    Process {
        #[serde(skip_serializing_if = "Option::is_none")]
        exec: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        path: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        syscall: Option<String>,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityParam {
    action: String,
    resource: String,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ToolsParam {
    server: String,
    tool: String,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ContextParam {
    index: String,
    source: Option<String>,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DelegationParam {
    from: Option<String>,
    to: String,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworkParam {
    destination: String,
    port: Option<u16>,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProcessParam {
    exec: Option<String>,
    path: Option<String>,
    syscall: Option<String>,
}

impl Parameter {
    pub fn dimension(&self) -> Dimension {
        match self {
            Parameter::Identity { .. } => Dimension::Identity,
            Parameter::Tools { .. } => Dimension::Tools,
            Parameter::Context { .. } => Dimension::Context,
            Parameter::Delegation { .. } => Dimension::Delegation,
            Parameter::Network { .. } => Dimension::Network,
            Parameter::Process { .. } => Dimension::Process,
        }
    }

    /// Parses the `parameter` object for `dimension`; errors name `parameter.<field>`.
    pub fn parse(dimension: Dimension, value: &serde_json::Value) -> Result<Self, InputError> {
        if !value.is_object() {
            return Err(InputError::new(
                "parameter",
                format!("must be an object for dimension {dimension}"),
            ));
        }
        let bytes = value.to_string();
        let parsed =
            match dimension {
                Dimension::Identity => InputError::from_json::<IdentityParam>(bytes.as_bytes())
                    .map(|p| Parameter::Identity {
                        action: p.action,
                        resource: p.resource,
                    }),
                Dimension::Tools => {
                    InputError::from_json::<ToolsParam>(bytes.as_bytes()).map(|p| {
                        Parameter::Tools {
                            server: p.server,
                            tool: p.tool,
                        }
                    })
                }
                Dimension::Context => {
                    InputError::from_json::<ContextParam>(bytes.as_bytes()).map(|p| {
                        Parameter::Context {
                            index: p.index,
                            source: p.source,
                        }
                    })
                }
                Dimension::Delegation => InputError::from_json::<DelegationParam>(bytes.as_bytes())
                    .map(|p| Parameter::Delegation {
                        from: p.from,
                        to: p.to,
                    }),
                Dimension::Network => {
                    InputError::from_json::<NetworkParam>(bytes.as_bytes()).map(|p| {
                        Parameter::Network {
                            destination: p.destination,
                            port: p.port,
                        }
                    })
                }
                Dimension::Process => InputError::from_json::<ProcessParam>(bytes.as_bytes())
                    .and_then(|p| {
                        if p.exec.is_none() && p.path.is_none() && p.syscall.is_none() {
                            Err(InputError::new("", "needs one of exec, path or syscall"))
                        } else {
                            Ok(Parameter::Process {
                                exec: p.exec,
                                path: p.path,
                                syscall: p.syscall,
                            })
                        }
                    }),
            }
            .map_err(|e| e.within("parameter"))?;
        parsed.check_values()?;
        Ok(parsed)
    }

    fn check_values(&self) -> Result<(), InputError> {
        let fields: Vec<(&str, &str)> = match self {
            Parameter::Identity { action, resource } => {
                crate::envelope::IdentityUse::check_action(action)
                    .map_err(|reason| InputError::new("parameter.action", reason))?;
                vec![("action", action), ("resource", resource)]
            }
            Parameter::Tools { server, tool } => vec![("server", server), ("tool", tool)],
            Parameter::Context { index, source } => {
                let mut v = vec![("index", index.as_str())];
                if let Some(s) = source {
                    v.push(("source", s));
                }
                v
            }
            Parameter::Delegation { from, to } => {
                let mut v = vec![("to", to.as_str())];
                if let Some(f) = from {
                    v.push(("from", f));
                }
                v
            }
            Parameter::Network { destination, .. } => vec![("destination", destination)],
            Parameter::Process {
                exec,
                path,
                syscall,
            } => [("exec", exec), ("path", path), ("syscall", syscall)]
                .into_iter()
                .filter_map(|(name, value)| value.as_deref().map(|v| (name, v)))
                .collect(),
        };
        for (name, value) in fields {
            if value.chars().any(char::is_control) {
                return Err(InputError::new(
                    format!("parameter.{name}"),
                    CONTROL_CHARACTERS,
                ));
            }
            if value.trim().is_empty() {
                return Err(InputError::new(
                    format!("parameter.{name}"),
                    "must not be empty",
                ));
            }
            if value.len() > 2048 {
                return Err(InputError::new(
                    format!("parameter.{name}"),
                    "longer than 2048 characters",
                ));
            }
        }
        Ok(())
    }

    /// A short human form, e.g. `s3:PutObject on arn:aws:s3:::partner-payouts/*`.
    pub fn describe(&self) -> String {
        match self {
            Parameter::Identity { action, resource } => format!("{action} on {resource}"),
            Parameter::Tools { server, tool } => format!("tool {tool} on {server}"),
            Parameter::Context { index, source } => match source {
                Some(s) => format!("source {s} in index {index}"),
                None => format!("index {index}"),
            },
            Parameter::Delegation { from, to } => {
                format!("{} → {to}", from.as_deref().unwrap_or("self"))
            }
            Parameter::Network { destination, port } => match port {
                Some(p) => format!("{destination}:{p}"),
                None => destination.clone(),
            },
            Parameter::Process {
                exec,
                path,
                syscall,
            } => [exec, path, syscall]
                .iter()
                .filter_map(|v| v.as_deref())
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawAlert {
    id: String,
    source: String,
    time: DateTime<Utc>,
    agent: AgentRef,
    dimension: Dimension,
    parameter: serde_json::Value,
    tier: Tier,
    severity: Severity,
    #[serde(default)]
    evidence: serde_json::Value,
}

/// A validated deviation alert. (Deserialize reads back the journal; inbound alerts go through
/// [`Alert::from_json`], which validates.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub id: String,
    pub source: String,
    pub time: DateTime<Utc>,
    pub agent: AgentRef,
    /// `dimension` and `parameter`, one tagged value.
    #[serde(flatten)]
    pub parameter: Parameter,
    pub tier: Tier,
    pub severity: Severity,
    pub evidence: serde_json::Value,
}

impl Alert {
    pub fn dimension(&self) -> Dimension {
        self.parameter.dimension()
    }

    /// sha256 of the alert's canonical JSON: the same id with another body is another alert.
    pub fn digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let value = serde_json::to_value(self).unwrap_or_default();
        let text = crate::canonical::canonical_json(&value);
        hex::encode(Sha256::digest(text.as_bytes()))
    }

    /// Parses and validates a native alert. Every error names the field and the reason.
    /// Identifiers end up in logs and journals: control characters (a newline forging a log
    /// line) are refused, not escaped.
    pub fn from_json(bytes: &[u8]) -> Result<Alert, InputError> {
        if bytes.len() > MAX_ALERT_BYTES {
            return Err(InputError::new(
                "",
                format!(
                    "alert is {} bytes, at most {MAX_ALERT_BYTES} accepted",
                    bytes.len()
                ),
            ));
        }
        let raw: RawAlert = InputError::from_json(bytes)?;
        Self::from_raw(raw)
    }

    fn from_raw(raw: RawAlert) -> Result<Alert, InputError> {
        if raw.id.trim().is_empty() || raw.id.len() > 128 {
            return Err(InputError::new("id", "must be 1 to 128 characters"));
        }
        if raw.source.trim().is_empty() || raw.source.len() > 128 {
            return Err(InputError::new("source", "must be 1 to 128 characters"));
        }
        for (field, value) in [("id", &raw.id), ("source", &raw.source)] {
            if value.chars().any(char::is_control) {
                return Err(InputError::new(field, CONTROL_CHARACTERS));
            }
        }
        raw.agent.validate().map_err(|e| e.within("agent"))?;
        let parameter = Parameter::parse(raw.dimension, &raw.parameter)?;
        Ok(Alert {
            id: raw.id,
            source: raw.source,
            time: raw.time,
            agent: raw.agent,
            parameter,
            tier: raw.tier,
            severity: raw.severity,
            evidence: raw.evidence,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> serde_json::Value {
        serde_json::json!({
          "id": "a-7f3c", "source": "kubescape", "time": "2026-05-16T02:47:00Z",
          "agent": {"cluster": "prod-eks", "namespace": "payments",
                    "workload": "Deployment/payment-agent", "serviceAccount": "payment-agent"},
          "dimension": "identity",
          "parameter": {"action": "s3:PutObject", "resource": "arn:aws:s3:::partner-payouts/*"},
          "tier": "attack-attempt", "severity": "critical",
          "evidence": {}
        })
    }

    fn error_for(mutate: impl FnOnce(&mut serde_json::Value)) -> InputError {
        let mut v = example();
        mutate(&mut v);
        Alert::from_json(v.to_string().as_bytes()).expect_err("mutated alert must be rejected")
    }

    #[test]
    fn design_example_parses() {
        let alert = Alert::from_json(example().to_string().as_bytes()).expect("valid");
        assert_eq!(
            alert.parameter,
            Parameter::Identity {
                action: "s3:PutObject".into(),
                resource: "arn:aws:s3:::partner-payouts/*".into()
            }
        );
        assert_eq!(
            alert.agent.key().0,
            "prod-eks/payments/Deployment/payment-agent"
        );
    }

    #[test]
    fn unknown_dimension_names_the_field() {
        let e = error_for(|v| v["dimension"] = "telepathy".into());
        assert_eq!(e.field, "dimension");
        assert!(e.reason.contains("telepathy"), "{e}");
    }

    #[test]
    fn wrong_type_names_the_nested_field() {
        let e = error_for(|v| v["agent"]["namespace"] = 7.into());
        assert_eq!(e.field, "agent.namespace");
        assert!(e.reason.contains("wrong type"), "{e}");
    }

    #[test]
    fn missing_parameter_field_names_it() {
        let e = error_for(|v| v["parameter"] = serde_json::json!({"action": "s3:PutObject"}));
        assert_eq!(e.field, "parameter.resource");
        assert!(e.reason.contains("resource"), "{e}");
    }

    #[test]
    fn a_missing_top_level_field_is_named() {
        let e = error_for(|v| {
            v.as_object_mut().map(|o| o.remove("tier"));
        });
        assert_eq!(e.field, "tier", "{e}");
        let e = error_for(|v| {
            v["agent"]
                .as_object_mut()
                .map(|o| o.remove("serviceAccount"));
        });
        assert_eq!(e.field, "agent.serviceAccount", "{e}");
    }

    #[test]
    fn control_characters_in_identifiers_are_refused_with_the_field() {
        let forged = "export\n2026-12-07T02:47:00Z INFO contained incident=inc-0";
        let e = error_for(|v| v["id"] = forged.into());
        assert_eq!(e.field, "id");
        assert!(e.reason.contains("control character"), "{e}");
        let e = error_for(|v| v["source"] = "falco\u{1b}[2J".into());
        assert_eq!(e.field, "source");
        let e = error_for(|v| v["parameter"]["resource"] = forged.into());
        assert_eq!(e.field, "parameter.resource");
        let e = error_for(|v| v["agent"]["namespace"] = "default\nkube-system".into());
        assert_eq!(e.field, "agent.namespace");
        let e = error_for(|v| {
            v["dimension"] = "process".into();
            v["parameter"] = serde_json::json!({"exec": "/bin/sh\r"});
        });
        assert_eq!(e.field, "parameter.exec");
    }

    #[test]
    fn parameter_of_another_dimension_is_refused() {
        let e = error_for(|v| v["parameter"] = serde_json::json!({"server": "s", "tool": "t"}));
        assert!(e.field.starts_with("parameter"), "{e}");
    }

    #[test]
    fn malformed_workload_is_explained() {
        let e = error_for(|v| v["agent"]["workload"] = "payment-agent".into());
        assert_eq!(e.field, "agent.workload");
        assert!(e.reason.contains("Kind/name"), "{e}");
    }

    #[test]
    fn unknown_top_level_field_is_refused() {
        let e = error_for(|v| v["dimenson"] = "identity".into());
        assert!(e.reason.contains("dimenson"), "{e}");
    }

    #[test]
    fn malformed_json_is_an_error_not_a_panic() {
        let e = Alert::from_json(b"{\"id\": ").expect_err("truncated");
        assert!(e.reason.contains("EOF"), "{e}");
    }

    #[test]
    fn oversize_alert_is_refused_before_parsing() {
        let big = vec![b' '; MAX_ALERT_BYTES + 1];
        let e = Alert::from_json(&big).expect_err("too big");
        assert!(e.reason.contains("at most"), "{e}");
    }
}
