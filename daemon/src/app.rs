//! Assembling an engine from the config: journal, envelopes, runbooks, control planes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use firebreak_aws::{AwsConfig, AwsIam};
use firebreak_azure::AzureRbac;
use firebreak_containment::engine::{Engine, EngineConfig, Fault, Parts};
use firebreak_containment::journal::Journal;
use firebreak_containment::metrics::Metrics;
use firebreak_containment::runbook::Runbooks;
use firebreak_containment::surface::ControlPlane;
use firebreak_containment::EnvelopeStore;
use firebreak_context::{Milvus, PgVector};
use firebreak_delegation::{DelegationPlane, Feed, FeedAuth, Mirrored};
use firebreak_ebpf::EgressPlane;
use firebreak_gcp::GcpIam;
use firebreak_k8s::K8sRbac;
use firebreak_tools::{GatewayConfig, Policy, ToolsPlane};

use crate::config::Config;

pub struct Paths {
    pub data: PathBuf,
    pub envelopes: PathBuf,
    pub journal: PathBuf,
    pub token: PathBuf,
}

impl Paths {
    pub fn new(config: &Config, data_dir_flag: Option<&Path>) -> anyhow::Result<Paths> {
        let data = config.data_dir(data_dir_flag)?;
        Ok(Paths {
            envelopes: config
                .envelopes
                .clone()
                .unwrap_or_else(|| data.join("envelopes")),
            journal: data.join("journal.db"),
            token: config
                .api
                .token_file
                .clone()
                .unwrap_or_else(|| data.join("api-token")),
            data,
        })
    }
}

pub fn runbooks(config: &Config) -> anyhow::Result<Runbooks> {
    Ok(match &config.runbooks {
        Some(dir) => Runbooks::load_dir(dir)?,
        None => Runbooks::embedded()?,
    })
}

/// An engine and, when configured, the MCP gateway sharing the tools plane's policy and the
/// policy feed the delegation plane writes.
pub struct Built {
    pub engine: Engine,
    pub gateway: Option<(GatewayConfig, Arc<Policy>)>,
    pub feed: Option<(Feed, FeedAuth)>,
}

/// `plane`, mirrored into the policy feed when there is one, so shims see its blocks too.
fn mirrored<P: ControlPlane + 'static>(plane: P, feed: Option<&Feed>) -> Arc<dyn ControlPlane> {
    match feed {
        Some(feed) => Arc::new(Mirrored::new(plane, feed.clone())),
        None => Arc::new(plane),
    }
}

/// Opens the journal and everything else; folds the journal into the incident view.
/// `install` lets control planes that own schema (the context store's RLS) install it: only
/// `serve` does, so `plan` and dry runs stay free of writes.
pub async fn engine(config: &Config, paths: &Paths, install: bool) -> anyhow::Result<Built> {
    std::fs::create_dir_all(&paths.data)
        .with_context(|| format!("cannot create data dir {}", paths.data.display()))?;
    let journal = Journal::open(&paths.journal)?;
    let envelopes = EnvelopeStore::load_dir(&paths.envelopes)?;
    let mut planes: Vec<Arc<dyn ControlPlane>> = Vec::new();
    let feed = match &config.feed {
        Some(feed_config) => {
            let auth = FeedAuth::new(feed_config).context("feed.tokens")?;
            let feed = Feed::default();
            planes.push(Arc::new(DelegationPlane::new(feed.clone(), &envelopes)));
            Some((feed, auth))
        }
        None => None,
    };
    let feed_handle = feed.as_ref().map(|(f, _)| f);
    if config.aws.enabled {
        let aws = AwsIam::new(&AwsConfig {
            region: config.aws.region.clone(),
            endpoint: config.aws.endpoint.clone(),
            verify_deadline: config.aws.verify_deadline,
        })
        .await;
        planes.push(Arc::new(match &config.aws.eks {
            Some(eks) => aws.with_eks(eks),
            None => aws,
        }));
    }
    if let Some(gcp) = &config.gcp {
        planes.push(Arc::new(GcpIam::new(gcp.clone()).await.context(
            "cannot set up the GCP IAM plane (gcp:); it uses Application Default Credentials",
        )?));
    }
    if let Some(azure) = &config.azure {
        planes.push(Arc::new(
            AzureRbac::new(azure.clone())
                .await
                .context("cannot set up the Azure RBAC plane (azure:)")?,
        ));
    }
    if let Some(pg) = &config.context.postgres {
        let plane = PgVector::new(pg.clone())?;
        if install {
            plane
                .install()
                .await
                .context("cannot install the context store's row-level security")?;
        }
        planes.push(Arc::new(plane));
    }
    if let Some(milvus) = &config.context.milvus {
        planes.push(Arc::new(Milvus::new(milvus.clone())?));
    }
    if let Some(k8s) = &config.k8s {
        planes.push(Arc::new(
            K8sRbac::new(k8s.clone())
                .await
                .context("cannot set up the Kubernetes RBAC plane (k8s:)")?,
        ));
    }
    if let Some(network) = &config.network {
        let plane = EgressPlane::load(network).context(
            "cannot load the eBPF egress programs (network:); the node agent needs root and bpffs",
        )?;
        planes.push(mirrored(plane, feed_handle));
    }
    let gateway = config.gateway.clone().map(|gw| {
        let policy = Arc::new(Policy::default());
        policy.set_envelopes(&envelopes, gw.envelope_only);
        planes.push(mirrored(
            ToolsPlane::new(policy.clone(), gw.upstreams.keys().cloned()),
            feed_handle,
        ));
        (gw, policy)
    });
    let fault = match std::env::var("FIREBREAK_FAULT") {
        Ok(name) => Some(Fault::parse(&name).with_context(|| {
            format!("FIREBREAK_FAULT={name:?} is not a known fault (crash-after-intent, crash-before-ack)")
        })?),
        Err(_) => None,
    };
    let engine = Engine::open(Parts {
        journal,
        envelopes,
        runbooks: runbooks(config)?,
        planes,
        metrics: Metrics::new()?,
        config: EngineConfig {
            budget: config.budget,
            fault,
            verify_poll: Duration::from_millis(250),
        },
    })?;
    if let Some((_, policy)) = &gateway {
        policy.attach_engine(engine.clone());
    }
    tracing::info!(
        envelopes = engine.envelopes().len(),
        dir = %paths.envelopes.display(),
        "envelopes loaded"
    );
    Ok(Built {
        engine,
        gateway,
        feed,
    })
}

/// Reads the API token, creating it (0600) on first start. Never logs the token itself.
pub fn api_token(path: &Path) -> anyhow::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_string()),
        Ok(_) => anyhow::bail!(
            "API token file {} is empty; delete it to get a new one",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read API token {}", path.display()))
        }
    }
    let token = hex::encode(rand::random::<[u8; 32]>());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    write_private(path, &token)
        .with_context(|| format!("cannot write API token {}", path.display()))?;
    tracing::info!(path = %path.display(), "created an API token; send it as `Authorization: Bearer <token>`");
    Ok(token)
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())
}
