//! Configuration: one YAML file, with an embedded default so `firebreak serve` runs bare.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use firebreak_containment::budget::BudgetConfig;
use firebreak_containment::config::duration;
use firebreak_containment::{error, InputError};
use serde::Deserialize;

pub const EMBEDDED_DEFAULT: &str = include_str!("../../config/default.yaml");

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: Option<PathBuf>,
    pub envelopes: Option<PathBuf>,
    pub runbooks: Option<PathBuf>,
    pub api: ApiConfig,
    pub journal: JournalSection,
    pub budget: BudgetConfig,
    pub aws: AwsSection,
    #[serde(default)]
    pub context: ContextSection,
    /// The MCP tool gateway: absent = off.
    #[serde(default)]
    pub gateway: Option<firebreak_tools::GatewayConfig>,
    #[serde(default)]
    pub sources: SourcesSection,
    /// The policy feed for orchestrator shims (`/v1/feed`): absent = off, and with it the
    /// delegation surface.
    #[serde(default)]
    pub feed: Option<firebreak_delegation::FeedConfig>,
    /// Kubernetes RBAC (identity actions `k8s:<verb>`): absent = off.
    #[serde(default)]
    pub k8s: Option<firebreak_k8s::K8sConfig>,
    /// GCP IAM (permissions such as `storage.objects.get`): absent = off.
    #[serde(default)]
    pub gcp: Option<firebreak_gcp::GcpConfig>,
    /// Azure RBAC (operations such as `Microsoft.Storage/.../read`): absent = off.
    #[serde(default)]
    pub azure: Option<firebreak_azure::AzureConfig>,
    /// The eBPF egress enforcement point: set when the daemon runs as a node agent (root).
    #[serde(default)]
    pub network: Option<firebreak_ebpf::EgressConfig>,
    #[serde(default)]
    pub log: LogSection,
}

/// Where the journal's signed checkpoint and its key live, and how often it is signed.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JournalSection {
    pub checkpoint_key: Option<PathBuf>,
    pub checkpoint: Option<PathBuf>,
    pub checkpoint_every: std::num::NonZeroU64,
}

/// How the daemon writes its log (stderr; the level comes from `FIREBREAK_LOG`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LogSection {
    #[serde(default)]
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human lines (colour on a terminal).
    #[default]
    Text,
    /// One JSON object per line, for a log pipeline.
    Json,
}

/// The alert sources: HTTP endpoints (Kubescape, Falco, CloudEvents) and NATS JetStream.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourcesSection {
    /// The cluster name for alerts that do not carry one (Falco never does).
    #[serde(default = "default_cluster")]
    pub cluster: String,
    /// A JetStream durable consumer: absent = off.
    #[serde(default)]
    pub nats: Option<crate::sources::nats::NatsConfig>,
}

impl Default for SourcesSection {
    fn default() -> Self {
        Self {
            cluster: default_cluster(),
            nats: None,
        }
    }
}

fn default_cluster() -> String {
    "default".into()
}

/// The context (RAG) surface: absent = off.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContextSection {
    pub postgres: Option<firebreak_context::PostgresContextConfig>,
    pub milvus: Option<firebreak_context::MilvusContextConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiConfig {
    pub token_file: Option<PathBuf>,
    pub max_body_bytes: usize,
    /// New alerts taken in and not yet planned, at most; past it a new alert gets 429 with
    /// `Retry-After` before anything is recorded (resends are still answered).
    pub max_planning: std::num::NonZeroUsize,
    /// A second listener serving only `/metrics` and `/healthz`, without a token: Prometheus
    /// then needs no credential that can approve plans. Absent = metrics on `listen` only.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// Header-read and idle timeouts and the connection limit of each daemon listener.
    #[serde(default)]
    pub limits: firebreak_serving::Limits,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AwsSection {
    pub enabled: bool,
    pub region: String,
    pub endpoint: Option<String>,
    #[serde(deserialize_with = "duration")]
    pub verify_deadline: Duration,
    /// EKS Pod Identity (`aws.eks.cluster`, optional `aws.eks.endpoint`): absent = IRSA only.
    #[serde(default)]
    pub eks: Option<firebreak_aws::EksConfig>,
}

impl Config {
    /// The embedded default, with the config in `path` merged over it: a file names only what
    /// it changes (mappings merge key by key; a value, a list or `~` replaces).
    pub fn load(path: Option<&Path>) -> anyhow::Result<Config> {
        let Some(path) = path else {
            return InputError::from_yaml::<Config>(EMBEDDED_DEFAULT)
                .map_err(|e| anyhow::anyhow!("embedded default config: {e}"));
        };
        let origin = path.display();
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {origin}"))?;
        // Parsed alone first, so a syntax error points at a line of the user's file.
        let overlay: serde_yaml::Value =
            InputError::from_yaml(&text).map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
        let mut merged: serde_yaml::Value = serde_yaml::from_str(EMBEDDED_DEFAULT)
            .context("the embedded default config is not YAML")?;
        merge(&mut merged, overlay);
        serde_path_to_error::deserialize(merged).map_err(|e| {
            let path = e.path().to_string();
            let error = error::located(&path, &e.into_inner().to_string());
            anyhow::anyhow!("{origin}: {error}")
        })
    }

    /// `--data-dir` wins, then the config, then the environment's conventions.
    pub fn data_dir(&self, flag: Option<&Path>) -> anyhow::Result<PathBuf> {
        if let Some(dir) = flag
            .map(Path::to_path_buf)
            .or_else(|| self.data_dir.clone())
        {
            return Ok(dir);
        }
        if let Some(dir) = std::env::var_os("FIREBREAK_DATA_DIR") {
            return Ok(PathBuf::from(dir));
        }
        if let Some(xdg) = std::env::var_os("XDG_DATA_HOME") {
            return Ok(PathBuf::from(xdg).join("firebreak"));
        }
        let home = std::env::var_os("HOME")
            .context("no data dir: set --data-dir, FIREBREAK_DATA_DIR or HOME")?;
        Ok(PathBuf::from(home).join(".local/share/firebreak"))
    }
}

/// Merges `overlay` into `base`: mappings key by key, anything else replaced.
fn merge(base: &mut serde_yaml::Value, overlay: serde_yaml::Value) {
    match (base, overlay) {
        (serde_yaml::Value::Mapping(base), serde_yaml::Value::Mapping(overlay)) => {
            for (key, value) in overlay {
                match base.get_mut(&key) {
                    Some(slot) => merge(slot, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (slot, value) => *slot = value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> anyhow::Result<Config> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, text)?;
        Config::load(Some(&path))
    }

    #[test]
    fn a_file_names_only_what_it_changes() {
        let c = load_text("budget:\n  agentPerMinute: 2\ngateway: ~\n").expect("merged");
        assert_eq!(c.listen.port(), 8470, "kept from the default");
        assert_eq!(c.budget.agent_per_minute, 2);
        assert_eq!(
            c.budget.global_per_minute,
            Config::load(None)
                .expect("default")
                .budget
                .global_per_minute
        );
    }

    #[test]
    fn a_typo_in_a_merged_file_is_named_with_its_path() {
        let err = load_text("budget:\n  agentPerMinut: 2\n")
            .expect_err("typo")
            .to_string();
        assert!(
            err.contains("budget") && err.contains("agentPerMinut"),
            "{err}"
        );
    }

    #[test]
    fn embedded_default_parses() {
        let c = Config::load(None).expect("embedded config is valid");
        assert_eq!(c.listen.port(), 8470);
        assert_eq!(c.aws.verify_deadline, Duration::from_secs(300));
        assert_eq!(c.sources.cluster, "default");
    }

    #[test]
    fn bad_field_is_named() {
        let text = EMBEDDED_DEFAULT.replace("verifyDeadline: 5m", "verifyDeadline: soon");
        let err = InputError::from_yaml::<Config>(&text).expect_err("bad duration");
        assert_eq!(err.field, "aws.verifyDeadline");
    }

    /// Each overlay under config/examples/ loads over the embedded default and sets the section
    /// its file is named for, which also passes the checks its plane makes before connecting.
    #[test]
    fn every_example_config_loads() {
        fn section<'a, T>(file: &Path, key: &str, value: Option<&'a T>) -> &'a T {
            value.unwrap_or_else(|| panic!("{}: {key} is not set", file.display()))
        }
        fn valid<T, E: std::fmt::Display>(file: &Path, checked: Result<T, E>) {
            if let Err(e) = checked {
                panic!("{}: {e}", file.display());
            }
        }
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/examples");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
            .map(|entry| entry.expect("a directory entry").path())
            .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no *.yaml in {}", dir.display());
        for file in &files {
            let c = Config::load(Some(file))
                .unwrap_or_else(|e| panic!("{} does not load: {e:#}", file.display()));
            let name = file
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default();
            match name {
                "context-pgvector" => valid(
                    file,
                    section(file, "context.postgres", c.context.postgres.as_ref()).validate(),
                ),
                "context-milvus" => valid(
                    file,
                    section(file, "context.milvus", c.context.milvus.as_ref()).validate(),
                ),
                "gateway" => valid(file, section(file, "gateway", c.gateway.as_ref()).validate()),
                "delegation-feed" => valid(
                    file,
                    firebreak_delegation::FeedAuth::new(section(file, "feed", c.feed.as_ref())),
                ),
                "network-ebpf" => valid(file, section(file, "network", c.network.as_ref()).validate()),
                "k8s" => {
                    section(file, "k8s", c.k8s.as_ref());
                }
                "nats" => {
                    section(file, "sources.nats", c.sources.nats.as_ref());
                }
                "gcp" => {
                    section(file, "gcp", c.gcp.as_ref());
                }
                "azure" => {
                    section(file, "azure", c.azure.as_ref());
                }
                other => panic!(
                    "{}: which section does example {other:?} configure? Add it to every_example_config_loads",
                    file.display()
                ),
            }
        }
    }
}
