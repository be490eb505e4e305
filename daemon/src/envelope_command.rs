//! `firebreak envelope …`: show, import, learn, fill from Kubescape, print the CRD. Part of the
//! `firebreak` binary.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Subcommand;
use firebreak_containment::envelope::Envelope;
use firebreak_containment::AgentRef;

use firebreak_daemon::app;
use firebreak_daemon::config::Config;
use firebreak_daemon::planes::Mode;

use crate::{print, render, BadInput, Output};

#[derive(Subcommand)]
pub(crate) enum EnvelopeCommand {
    /// Show one agent's envelope (cluster/namespace/Kind/name), or all.
    Show { agent: Option<String> },
    /// Validate an envelope file and install it in the envelope directory.
    Import { file: PathBuf },
    /// Learn envelopes from OpenTelemetry GenAI / MCP spans (OTLP JSON files): prints one
    /// Envelope YAML document per agent found, and the report (what stayed below the
    /// confidence threshold, as tail) on stderr.
    Learn {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Every span belongs to this agent (cluster/namespace/Kind/name); with --service-account.
        #[arg(long)]
        agent: Option<String>,
        /// The cluster of spans whose resource has no k8s.cluster.name.
        #[arg(long)]
        cluster: Option<String>,
        /// The ServiceAccount of spans whose resource has no k8s.serviceaccount.name.
        #[arg(long)]
        service_account: Option<String>,
        /// Occurrences needed before a value is permitted.
        #[arg(long, default_value_t = 5)]
        min_count: u64,
        /// Distinct sessions needed before a value is permitted.
        #[arg(long, default_value_t = 3)]
        min_sessions: u64,
        /// spec.version of the envelopes written.
        #[arg(long, default_value_t = 1)]
        version: u64,
    },
    /// Replace an envelope's process and network dimensions with what Kubescape learned for the
    /// workload, fetched from the cluster (kubeconfig or in-cluster); prints the new envelope
    /// YAML (import it with `envelope import`).
    Kubescape {
        /// The envelope to update.
        envelope: PathBuf,
        /// The namespace of the profiles.
        #[arg(long)]
        namespace: String,
        /// The workload Kubescape learned (label kubescape.io/workload-name).
        #[arg(long, required_unless_present = "profile")]
        workload: Option<String>,
        /// Profiles by name instead (e.g. a user-defined ContainerProfile); repeatable.
        #[arg(long)]
        profile: Vec<String>,
        /// The container, when the workload has several.
        #[arg(long)]
        container: Option<String>,
    },
    /// Print the Envelope CustomResourceDefinition (envelopes.firebreak.dev), generated from the types.
    Crd,
}

pub(crate) async fn envelope(
    command: EnvelopeCommand,
    out: Output,
    config: &Config,
    paths: &app::Paths,
) -> anyhow::Result<ExitCode> {
    match command {
        EnvelopeCommand::Show { agent } => {
            let store = firebreak_containment::EnvelopeStore::load_dir(&paths.envelopes)?;
            let mut shown: Vec<&Envelope> = store
                .iter()
                .filter(|e| agent.as_deref().is_none_or(|a| e.agent_key().0 == a))
                .collect();
            shown.sort_by_key(|e| e.agent_key());
            if shown.is_empty() {
                bail!(BadInput(match agent {
                    Some(a) => format!("no envelope for {a} in {}", paths.envelopes.display()),
                    None => format!(
                        "no envelopes in {}; import one with `firebreak envelope import FILE`",
                        paths.envelopes.display()
                    ),
                }));
            }
            print(out, &shown, || {
                shown.iter().map(|e| render::envelope(e)).collect()
            });
            Ok(ExitCode::SUCCESS)
        }
        EnvelopeCommand::Learn {
            files,
            agent,
            cluster,
            service_account,
            min_count,
            min_sessions,
            version,
        } => {
            let agent = match agent {
                Some(key) => Some(agent_ref(&key, service_account.as_deref())?),
                None => None,
            };
            let options = firebreak_envelopes::learn::LearnOptions {
                confidence: firebreak_containment::envelope::ConfidenceThreshold {
                    min_count,
                    min_sessions,
                },
                agent,
                cluster,
                service_account,
                stable_sessions: None,
                version,
            };
            let learned = firebreak_envelopes::learn::learn(&files, &options)
                .map_err(|e| BadInput(e.to_string()))?;
            let json =
                serde_json::json!({"envelopes": learned.envelopes, "report": learned.report});
            print(out, &json, || {
                eprint!("{}", learned.report);
                learned
                    .envelopes
                    .iter()
                    .filter_map(|e| serde_yaml::to_string(e).ok())
                    .map(|y| format!("---\n{y}"))
                    .collect()
            });
            Ok(ExitCode::SUCCESS)
        }
        EnvelopeCommand::Kubescape {
            envelope,
            namespace,
            workload,
            profile,
            container,
        } => {
            use firebreak_envelopes::{fetch, kubescape};
            let text = std::fs::read_to_string(&envelope)
                .with_context(|| format!("cannot read {}", envelope.display()))?;
            let mut current = Envelope::from_yaml(&text)
                .map_err(|e| BadInput(format!("{}: {e}", envelope.display())))?;
            let selector = match workload {
                Some(w) => fetch::ProfileSelector::Workload(w),
                None => fetch::ProfileSelector::Names(profile),
            };
            let client = kube::Client::try_default()
                .await
                .context("no Kubernetes client: set KUBECONFIG or run in a cluster")?;
            let profiles = fetch::fetch_profiles(client, &namespace, &selector).await?;
            let dimensions = kubescape::envelope_dimensions(
                &profiles,
                container.as_deref(),
                &current.spec.confidence,
            )
            .map_err(|e| BadInput(e.to_string()))?;
            let report = serde_json::to_value(&dimensions.report)?;
            dimensions.apply(&mut current.spec);
            let json = serde_json::json!({"envelope": current, "report": report});
            print(out, &json, || {
                serde_yaml::to_string(&current).unwrap_or_default()
            });
            Ok(ExitCode::SUCCESS)
        }
        EnvelopeCommand::Crd => {
            print!("{}", firebreak_envelopes::crd::definition_yaml());
            Ok(ExitCode::SUCCESS)
        }
        EnvelopeCommand::Import { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let envelope = Envelope::from_yaml(&text)
                .map_err(|e| BadInput(format!("{}: {e}", file.display())))?;
            let agent: &AgentRef = &envelope.spec.agent;
            let engine = app::engine(config, paths, false, Mode::Offline)
                .await?
                .engine;
            if engine.has_open_incident(agent).await {
                bail!(BadInput(format!(
                    "{} has an open incident: its envelope is frozen until the incident is rolled back or expires",
                    agent.key()
                )));
            }
            if let Some(current) = engine.envelopes().get(&agent.key()) {
                if envelope.spec.version <= current.spec.version {
                    bail!(BadInput(format!(
                        "spec.version {} is not newer than the installed version {} of {}",
                        envelope.spec.version,
                        current.spec.version,
                        agent.key()
                    )));
                }
            }
            std::fs::create_dir_all(&paths.envelopes)?;
            let target = paths.envelopes.join(envelope_file_name(agent));
            std::fs::write(&target, text)
                .with_context(|| format!("cannot write {}", target.display()))?;
            let json = serde_json::json!({"agent": agent.key(), "version": envelope.spec.version, "path": target});
            print(out, &json, || {
                format!(
                    "installed {} v{} at {}\n",
                    agent.key(),
                    envelope.spec.version,
                    target.display()
                )
            });
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `cluster/namespace/Kind/name` and a ServiceAccount as an agent.
fn agent_ref(key: &str, service_account: Option<&str>) -> anyhow::Result<AgentRef> {
    let parts: Vec<&str> = key.split('/').collect();
    let [cluster, namespace, kind, name] = parts.as_slice() else {
        bail!(BadInput(format!(
            "--agent {key:?}: expected cluster/namespace/Kind/name"
        )));
    };
    let agent = AgentRef {
        cluster: cluster.to_string(),
        namespace: namespace.to_string(),
        workload: format!("{kind}/{name}"),
        service_account: service_account
            .ok_or_else(|| BadInput("--agent needs --service-account".into()))?
            .to_string(),
    };
    agent
        .validate()
        .map_err(|e| BadInput(format!("--agent: {e}")))?;
    Ok(agent)
}

fn envelope_file_name(agent: &AgentRef) -> String {
    agent.key().0.replace('/', "_") + ".yaml"
}
