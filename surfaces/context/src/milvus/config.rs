//! `context.milvus` in the daemon config: the server, Firebreak's own credentials, which Milvus
//! collection is which context index, and which Milvus role each agent connects with.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::config::default_deadline;
use crate::ContextError;
use firebreak_containment::config::duration;

/// Milvus' built-in role every user holds implicitly.
pub const PUBLIC_ROLE: &str = "public";
/// Milvus' built-in role that may do everything; no grant of its can be revoked.
pub const ADMIN_ROLE: &str = "admin";

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MilvusContextConfig {
    /// `host:port` of the Milvus proxy's gRPC endpoint.
    pub address: String,
    /// Firebreak's Milvus user: `root`, or a user holding the built-in `admin` role (granting,
    /// revoking and reading other roles' grants needs it).
    pub user: String,
    /// Where that user's password is read from; never inline, so neither the config nor a log
    /// line ever carries it.
    pub password: PasswordSource,
    /// The Milvus database the collections live in.
    #[serde(default = "default_database")]
    pub database: String,
    pub collections: Vec<MilvusCollection>,
    /// Agent key (`cluster/namespace/Kind/name`) → the Milvus role its user holds.
    pub roles: BTreeMap<String, String>,
    #[serde(deserialize_with = "duration", default = "default_deadline")]
    pub verify_deadline: Duration,
}

/// Exactly one of `env` (an environment variable's name) or `file` (a path, e.g. a mounted
/// Kubernetes secret; one trailing newline is dropped).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordSource {
    #[serde(default)]
    pub env: Option<String>,
    #[serde(default)]
    pub file: Option<PathBuf>,
}

/// One collection of chunks.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MilvusCollection {
    pub collection: String,
    /// The index name envelopes and alerts use; the collection name when absent.
    #[serde(default)]
    pub index: Option<String>,
}

impl MilvusCollection {
    pub fn index_name(&self) -> &str {
        self.index.as_deref().unwrap_or(&self.collection)
    }
}

fn default_database() -> String {
    "default".into()
}

/// Firebreak's Milvus login. Its `Debug` never shows the password.
#[derive(Clone)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

fn bad<T>(field: impl Into<String>, reason: impl Into<String>) -> Result<T, ContextError> {
    Err(ContextError::MilvusConfig {
        field: field.into(),
        reason: reason.into(),
    })
}

impl MilvusContextConfig {
    /// Checks what serde cannot, before anything talks to Milvus.
    pub fn validate(&self) -> Result<(), ContextError> {
        match self.address.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
            _ => {
                return bad(
                    "address",
                    format!(
                        "expected host:port of the Milvus gRPC endpoint (e.g. milvus.rag:19530), got {:?}",
                        self.address
                    ),
                )
            }
        }
        if self.user.is_empty() {
            return bad("user", "name Firebreak's Milvus user (root or an admin)");
        }
        if self.password.env.is_some() == self.password.file.is_some() {
            return bad(
                "password",
                "set exactly one of env (a variable's name) or file (a path)",
            );
        }
        if self.database.is_empty() {
            return bad("database", "must not be empty (Milvus' own is `default`)");
        }
        if self.collections.is_empty() {
            return bad(
                "collections",
                "list at least one collection ({collection, index})",
            );
        }
        let mut indexes = BTreeMap::new();
        for (i, c) in self.collections.iter().enumerate() {
            if c.collection.is_empty() || c.collection == "*" {
                return bad(
                    format!("collections[{i}].collection"),
                    format!("{:?} is not a collection name", c.collection),
                );
            }
            if let Some(other) = indexes.insert(c.index_name().to_string(), i) {
                return bad(
                    format!("collections[{i}].index"),
                    format!(
                        "index {:?} is also collections[{other}]; give each collection its own index name",
                        c.index_name()
                    ),
                );
            }
        }
        for (agent, role) in &self.roles {
            if agent.split('/').count() != 4 {
                return bad(
                    format!("roles.{agent}"),
                    "keys are agents as cluster/namespace/Kind/name",
                );
            }
            if role.is_empty() || role == PUBLIC_ROLE || role == ADMIN_ROLE {
                return bad(
                    format!("roles.{agent}"),
                    format!(
                        "{role:?} cannot be contained: name the agent's own role, not a built-in one"
                    ),
                );
            }
        }
        Ok(())
    }

    pub fn collection_for_index(&self, index: &str) -> Option<&MilvusCollection> {
        self.collections.iter().find(|c| c.index_name() == index)
    }

    /// The agent a Milvus role belongs to, for blast-radius lines.
    pub fn agent_of(&self, role: &str) -> Option<&str> {
        self.roles
            .iter()
            .find(|(_, r)| *r == role)
            .map(|(agent, _)| agent.as_str())
    }

    /// Reads the password from where the config says. Called once, when the plane is built.
    pub fn credentials(&self) -> Result<Credentials, ContextError> {
        let password = match (&self.password.env, &self.password.file) {
            (Some(var), _) => std::env::var(var).or_else(|_| {
                bad(
                    "password.env",
                    format!("environment variable {var} is not set (or not UTF-8); export Firebreak's Milvus password in it"),
                )
            })?,
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).or_else(|e| {
                    bad(
                        "password.file",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                let text = text.strip_suffix('\n').unwrap_or(&text);
                text.strip_suffix('\r').unwrap_or(text).to_string()
            }
            (None, None) => {
                return bad(
                    "password",
                    "set exactly one of env (a variable's name) or file (a path)",
                )
            }
        };
        if password.is_empty() {
            return bad("password", "the password read is empty");
        }
        Ok(Credentials {
            user: self.user.clone(),
            password,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> MilvusContextConfig {
        serde_yaml::from_str(
            r#"
address: milvus.rag:19530
user: root
password: {env: FIREBREAK_TEST_MILVUS_PASSWORD}
collections:
  - {collection: kb_chunks, index: kb}
  - {collection: notes}
roles:
  prod/rag/Deployment/agent-a: agent_a
verifyDeadline: 10s
"#,
        )
        .expect("valid config")
    }

    #[test]
    fn config_parses_with_defaults() {
        let c = config();
        c.validate().expect("valid");
        assert_eq!(c.database, "default");
        assert_eq!(c.verify_deadline, Duration::from_secs(10));
        assert_eq!(
            c.collection_for_index("kb").map(|c| c.collection.as_str()),
            Some("kb_chunks")
        );
        assert_eq!(
            c.collection_for_index("notes")
                .map(|c| c.collection.as_str()),
            Some("notes")
        );
        assert_eq!(c.agent_of("agent_a"), Some("prod/rag/Deployment/agent-a"));
    }

    #[test]
    fn validation_names_the_field() {
        let mut c = config();
        c.address = "milvus.rag".into();
        assert!(c
            .validate()
            .expect_err("no port")
            .to_string()
            .contains("context.milvus.address"));
        let mut c = config();
        c.password.file = Some("/run/secret".into());
        assert!(c
            .validate()
            .expect_err("both")
            .to_string()
            .contains("exactly one"));
        let mut c = config();
        c.roles
            .insert("prod/rag/Deployment/b".into(), "public".into());
        assert!(c
            .validate()
            .expect_err("public")
            .to_string()
            .contains("built-in"));
        let mut c = config();
        c.collections.push(MilvusCollection {
            collection: "other".into(),
            index: Some("kb".into()),
        });
        assert!(c
            .validate()
            .expect_err("dup")
            .to_string()
            .contains("also collections[0]"));
        assert!(
            serde_yaml::from_str::<MilvusContextConfig>(
                "address: a:1\nuser: u\npassword: hunter2\ncollections: []\nroles: {}\n"
            )
            .is_err(),
            "an inline password is refused"
        );
    }

    #[test]
    fn the_password_comes_from_a_file_and_never_shows_in_debug() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("password");
        std::fs::write(&path, "s3cret\n").expect("write");
        let mut c = config();
        c.password = PasswordSource {
            env: None,
            file: Some(path),
        };
        let creds = c.credentials().expect("read");
        assert_eq!(creds.password, "s3cret");
        assert!(!format!("{creds:?}").contains("s3cret"));
        let mut c = config();
        c.password.env = Some("FIREBREAK_TEST_MILVUS_UNSET_VARIABLE".into());
        let err = c.credentials().expect_err("unset");
        assert!(
            err.to_string().contains("context.milvus.password.env"),
            "{err}"
        );
    }
}
