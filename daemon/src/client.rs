//! The command line as a client of the running daemon: `contain`, `approve` and `rollback`
//! go through its API, so the process that enforces in-process planes (the gateway, the feed)
//! is the one that acts.

use serde_json::Value;

use crate::ingest::Target;

/// What the daemon answered: success, or its `{error: {field, reason}}`.
pub enum Answer {
    Ok(Value),
    /// A 4xx: the request was wrong; `field` and `reason` say why.
    Refused {
        field: String,
        reason: String,
    },
}

impl Target {
    /// POSTs `body` to `path` and reads the JSON answer.
    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Answer> {
        let url = format!("{}{path}", self.url);
        let response = reqwest::Client::new()
            .post(&url)
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot reach the daemon at {}: {e}; start it with `firebreak serve`, or pass --offline to act on the data dir without it",
                    self.url
                )
            })?;
        let status = response.status();
        let answer: Value = response
            .json()
            .await
            .map_err(|e| anyhow::anyhow!("the daemon's answer to {path} is not JSON: {e}"))?;
        let error = |key: &str| {
            answer["error"][key]
                .as_str()
                .unwrap_or_default()
                .to_string()
        };
        if status.is_client_error() {
            return Ok(Answer::Refused {
                field: error("field"),
                reason: error("reason"),
            });
        }
        if !status.is_success() {
            anyhow::bail!(
                "the daemon failed ({status}) on {path}: {}",
                error("reason")
            );
        }
        Ok(Answer::Ok(answer))
    }
}
