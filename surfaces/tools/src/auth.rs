//! Who is calling: bearer tokens from the config, or Kubernetes ServiceAccount tokens checked
//! by TokenReview.

use std::collections::HashMap;

use async_trait::async_trait;
use firebreak_containment::agent::AgentKey;
use serde_json::json;

use crate::config::{check_agent, ConfigError, TokenReviewConfig};

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("TokenReview at {url} failed: {detail}; check tokenReview.apiServer and the gateway's RBAC (create tokenreviews)")]
    Review { url: String, detail: String },
}

/// One way of mapping a bearer token to an agent. `Ok(None)`: this authenticator does not know
/// the token (the next one is asked).
#[async_trait]
pub trait Authenticator: Send + Sync {
    async fn authenticate(&self, token: &str) -> Result<Option<AgentKey>, AuthError>;
}

/// Static tokens from `gateway.agents`.
pub struct StaticTokens {
    agents: HashMap<String, AgentKey>,
}

impl StaticTokens {
    pub fn new<'a>(
        pairs: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Result<Self, ConfigError> {
        let mut agents = HashMap::new();
        for (token, agent) in pairs {
            let key = check_agent(agent).map_err(|reason| ConfigError::Invalid {
                field: "agents".into(),
                reason,
            })?;
            agents.insert(token.clone(), key);
        }
        Ok(Self { agents })
    }
}

#[async_trait]
impl Authenticator for StaticTokens {
    async fn authenticate(&self, token: &str) -> Result<Option<AgentKey>, AuthError> {
        Ok(self.agents.get(token).cloned())
    }
}

/// Kubernetes `authentication.k8s.io/v1` TokenReview: the API server says whose token it is;
/// the ServiceAccount is mapped to an agent by `tokenReview.serviceAccounts`.
pub struct TokenReview {
    client: reqwest::Client,
    url: String,
    bearer: String,
    audiences: Vec<String>,
    service_accounts: HashMap<String, AgentKey>,
}

impl TokenReview {
    pub fn new(config: &TokenReviewConfig) -> Result<Self, ConfigError> {
        let mut service_accounts = HashMap::new();
        for (sa, agent) in &config.service_accounts {
            let key = check_agent(agent).map_err(|reason| ConfigError::Invalid {
                field: format!("tokenReview.serviceAccounts.{sa}"),
                reason,
            })?;
            service_accounts.insert(sa.clone(), key);
        }
        Ok(Self {
            client: reqwest::Client::new(),
            url: format!(
                "{}/apis/authentication.k8s.io/v1/tokenreviews",
                config.api_server.trim_end_matches('/')
            ),
            bearer: config.bearer_token.clone(),
            audiences: config.audiences.clone(),
            service_accounts,
        })
    }
}

#[async_trait]
impl Authenticator for TokenReview {
    async fn authenticate(&self, token: &str) -> Result<Option<AgentKey>, AuthError> {
        let fail = |detail: String| AuthError::Review {
            url: self.url.clone(),
            detail,
        };
        let mut spec = json!({ "token": token });
        if !self.audiences.is_empty() {
            spec["audiences"] = json!(self.audiences);
        }
        let body = json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": spec,
        });
        let response = self
            .client
            .post(&self.url)
            .bearer_auth(&self.bearer)
            .json(&body)
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(fail(format!("HTTP {status}")));
        }
        let review: serde_json::Value = response.json().await.map_err(|e| fail(e.to_string()))?;
        let status = &review["status"];
        if status["authenticated"] != json!(true) {
            return Ok(None);
        }
        // A token minted for another audience must not open the gateway.
        if !self.audiences.is_empty() {
            let granted = status["audiences"].as_array().cloned().unwrap_or_default();
            if !self.audiences.iter().any(|a| granted.contains(&json!(a))) {
                return Ok(None);
            }
        }
        let Some(user) = status["user"]["username"].as_str() else {
            return Ok(None);
        };
        let Some(sa) = user.strip_prefix("system:serviceaccount:") else {
            return Ok(None);
        };
        let Some((namespace, name)) = sa.split_once(':') else {
            return Ok(None);
        };
        Ok(self
            .service_accounts
            .get(&format!("{namespace}/{name}"))
            .cloned())
    }
}
