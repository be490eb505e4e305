//! The gateway's configuration (the `gateway:` block of the daemon config).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use firebreak_containment::agent::AgentKey;
use serde::Deserialize;

/// Where the gateway listens, which MCP servers it fronts and who may call through it.
///
/// Upstream names are the `server` of the envelope's `spec.tools.observed` entries and of
/// `tools` alerts; agents reach upstream `NAME` at `http://LISTEN/mcp/NAME`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewayConfig {
    pub listen: SocketAddr,
    pub upstreams: BTreeMap<String, Upstream>,
    /// Bearer token → agent key (`cluster/namespace/Kind/name`).
    #[serde(default)]
    pub agents: BTreeMap<String, String>,
    /// Kubernetes ServiceAccount tokens, checked by TokenReview, as a second way in.
    #[serde(default)]
    pub token_review: Option<TokenReviewConfig>,
    /// Hide and refuse every tool outside the caller's envelope (permitted entries only).
    #[serde(default)]
    pub envelope_only: bool,
    /// Header-read and idle timeouts and the connection limit of the gateway's listener.
    #[serde(default)]
    pub limits: firebreak_serving::Limits,
}

/// An upstream MCP server: `url` (streamable HTTP) or `command` + `args` (stdio, spawned by
/// the gateway on first use and shared by every agent).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Upstream {
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub command: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
}

/// How ServiceAccount tokens are reviewed and which agent each ServiceAccount is.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenReviewConfig {
    /// The API server, e.g. `https://kubernetes.default.svc`.
    pub api_server: String,
    /// The gateway's own token, allowed to create TokenReviews.
    pub bearer_token: String,
    /// Audiences the reviewed token must carry (empty: the API server's default).
    #[serde(default)]
    pub audiences: Vec<String>,
    /// `namespace/serviceaccount` → agent key.
    pub service_accounts: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("gateway.{field}: {reason}")]
    Invalid { field: String, reason: String },
}

impl GatewayConfig {
    /// Checks what serde cannot: agent keys shaped `cluster/namespace/Kind/name`, http(s) URLs,
    /// names usable in a URL path.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field: String, reason: String| Err(ConfigError::Invalid { field, reason });
        if self.upstreams.is_empty() {
            return invalid("upstreams".into(), "configure at least one upstream".into());
        }
        for (name, upstream) in &self.upstreams {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                return invalid(
                    format!("upstreams.{name}"),
                    "names may hold only letters, digits, '-', '_' and '.'".into(),
                );
            }
            match (&upstream.url, &upstream.command) {
                (Some(url), None) => {
                    if !(url.starts_with("http://") || url.starts_with("https://")) {
                        return invalid(
                            format!("upstreams.{name}.url"),
                            format!("expected an http(s) URL, got {url:?}"),
                        );
                    }
                    if !upstream.args.is_empty() {
                        return invalid(
                            format!("upstreams.{name}.args"),
                            "args belong to a command; remove them or use command".into(),
                        );
                    }
                }
                (None, Some(command)) if !command.is_empty() => {}
                _ => {
                    return invalid(
                        format!("upstreams.{name}"),
                        "set exactly one of url (streamable HTTP) or command (+ args, stdio)"
                            .into(),
                    )
                }
            }
        }
        for (token, agent) in &self.agents {
            if token.len() < 16 {
                return invalid(
                    format!("agents.{agent}"),
                    "tokens must be at least 16 characters".into(),
                );
            }
            check_agent(agent).map_err(|reason| ConfigError::Invalid {
                field: "agents".into(),
                reason,
            })?;
        }
        if let Some(review) = &self.token_review {
            for (sa, agent) in &review.service_accounts {
                if sa.split('/').count() != 2 {
                    return invalid(
                        format!("tokenReview.serviceAccounts.{sa}"),
                        "expected namespace/serviceaccount".into(),
                    );
                }
                check_agent(agent).map_err(|reason| ConfigError::Invalid {
                    field: format!("tokenReview.serviceAccounts.{sa}"),
                    reason,
                })?;
            }
        }
        Ok(())
    }
}

/// Parses an agent key `cluster/namespace/Kind/name`.
pub(crate) fn check_agent(agent: &str) -> Result<AgentKey, String> {
    let parts: Vec<&str> = agent.split('/').collect();
    if parts.len() != 4 || parts.iter().any(|p| p.is_empty()) {
        return Err(format!(
            "expected cluster/namespace/Kind/name such as prod/payments/Deployment/payment-agent, got {agent:?}"
        ));
    }
    Ok(AgentKey(agent.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<GatewayConfig, String> {
        let c: GatewayConfig = serde_json::from_str(json).map_err(|e| e.to_string())?;
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }

    #[test]
    fn unknown_fields_and_bad_agents_are_refused() {
        let ok = r#"{"listen":"127.0.0.1:0","upstreams":{"a":{"url":"http://x/mcp"}},
                     "agents":{"0123456789abcdef":"c/ns/Deployment/a"}}"#;
        assert!(parse(ok).is_ok());
        let extra = ok.replace("\"listen\"", "\"lsten\":1,\"listen\"");
        assert!(parse(&extra).unwrap_err().contains("unknown field"));
        let bad = ok.replace("c/ns/Deployment/a", "payment-agent");
        assert!(parse(&bad)
            .unwrap_err()
            .contains("cluster/namespace/Kind/name"));
        let both = ok.replace(
            r#""url":"http://x/mcp""#,
            r#""url":"http://x/mcp","command":"node""#,
        );
        assert!(parse(&both).unwrap_err().contains("exactly one"));
        let stdio = ok.replace(
            r#""url":"http://x/mcp""#,
            r#""command":"node","args":["s.js"]"#,
        );
        assert!(parse(&stdio).is_ok());
        let short = ok.replace("0123456789abcdef", "short");
        assert!(parse(&short).unwrap_err().contains("16 characters"));
    }
}
