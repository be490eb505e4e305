//! `firebreak`: the containment daemon and its command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use firebreak_containment::engine::{Engine, Request};
use firebreak_containment::ids::IncidentId;
use firebreak_containment::incident::PlanStatus;
use firebreak_containment::runbook::Runbooks;
use firebreak_containment::Alert;
use serde_json::{json, Value};

use firebreak_daemon::client::Answer;
use firebreak_daemon::config::{Config, LogFormat};
use firebreak_daemon::planes::{LeftOut, Mode};
use firebreak_daemon::{app, http, ingest, planes, render, sources};

mod envelope_command;
use envelope_command::{envelope, EnvelopeCommand};

#[derive(Parser)]
#[command(
    name = "firebreak",
    version,
    about = "The smallest containment that puts an AI agent back inside its envelope."
)]
struct Cli {
    /// Config file (YAML). Default: the embedded default config.
    #[arg(long, global = true, env = "FIREBREAK_CONFIG")]
    config: Option<PathBuf>,
    /// Data dir (journal, envelopes, API token). Overrides the config.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (HTTP API on the configured address, and the MCP gateway when configured).
    Serve,
    /// Run only the MCP tool gateway (with its engine, so revocations survive restarts).
    Gateway,
    /// Print the plan for an alert; change nothing, journal nothing.
    Plan {
        /// Alert JSON file, or - for stdin.
        #[arg(long)]
        alert: PathBuf,
    },
    /// Plan, apply and verify one alert now, through the running daemon; running it is your
    /// approval of the plan (approval-only rungs still wait for `approve`).
    Contain {
        /// Alert JSON file, or - for stdin.
        #[arg(long)]
        alert: PathBuf,
        /// Plan and journal a rehearsal; make no change at any control plane.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        operator: Operator,
    },
    /// Approve the plan waiting on an incident (by the hash `incidents show` prints).
    Approve {
        id: IncidentId,
        #[arg(long)]
        plan_hash: String,
        /// Who approves: journaled with the plan.
        #[arg(long, env = "FIREBREAK_OPERATOR")]
        by: String,
    },
    /// Undo every action of an incident and verify the undo, through the running daemon.
    Rollback {
        id: IncidentId,
        #[command(flatten)]
        operator: Operator,
    },
    /// List or show incidents.
    Incidents {
        #[command(subcommand)]
        command: IncidentsCommand,
    },
    /// Show or import envelopes.
    Envelope {
        #[command(subcommand)]
        command: EnvelopeCommand,
    },
    /// Validate runbooks.
    Runbook {
        #[command(subcommand)]
        command: RunbookCommand,
    },
    /// Send a line-oriented alert source (a file, or - / nothing for stdin) to the running daemon.
    Ingest {
        #[arg(value_enum)]
        format: IngestFormat,
        file: Option<PathBuf>,
    },
    /// The incident journal.
    Journal {
        #[command(subcommand)]
        command: JournalCommand,
    },
    /// The context (RAG) surface.
    Context {
        #[command(subcommand)]
        command: ContextCommand,
    },
}

#[derive(clap::Args)]
struct Operator {
    /// Who acts: journaled with the plan or the revert.
    #[arg(long, env = "FIREBREAK_OPERATOR")]
    by: String,
    /// Act on the data dir without the daemon (it must be stopped). Planes that enforce only
    /// inside the daemon (the tool gateway, the policy feed) are left out.
    #[arg(long)]
    offline: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum IngestFormat {
    /// Kubescape node-agent stdout exporter lines (`kubectl logs -f ds/node-agent -n kubescape`).
    KubescapeStdout,
}

#[derive(Subcommand)]
enum ContextCommand {
    /// Print the row-level-security DDL for the configured PostgreSQL store, for a DBA to apply.
    Ddl,
}

#[derive(Subcommand)]
enum IncidentsCommand {
    List,
    Show { id: IncidentId },
}

#[derive(Subcommand)]
enum JournalCommand {
    /// Check every link of the chain and the signed checkpoint, without starting (safe beside
    /// a running daemon). Exit 0 proven, 4 not (the first bad entry is named), 1 unreadable.
    Verify,
}

#[derive(Subcommand)]
enum RunbookCommand {
    /// Validate every *.yaml runbook in DIR; errors name the file and the field.
    Check { dir: PathBuf },
}

/// Exit codes: 0 contained or planned; 1 error; 2 bad input; 3 not contained (waiting, failed);
/// 4 the journal's history cannot be proven (nothing was served or changed).
const EXIT_NOT_CONTAINED: u8 = 3;
const EXIT_UNPROVABLE: u8 = 4;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("firebreak: {e:#}");
            return ExitCode::from(2);
        }
    };
    init_tracing(
        matches!(cli.command, Command::Serve | Command::Gateway),
        config.log.format,
    );
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("firebreak: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, config)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("firebreak: {e:#}");
            ExitCode::from(if e.downcast_ref::<BadInput>().is_some() {
                2
            } else if e.downcast_ref::<app::JournalRefused>().is_some() {
                EXIT_UNPROVABLE
            } else {
                1
            })
        }
    }
}

/// Errors about what the user gave us (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct BadInput(String);

fn init_tracing(daemon: bool, format: LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("FIREBREAK_LOG").unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(if daemon { "info" } else { "warn" })
        });
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        // One JSON object per line: a field cannot forge another line.
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}

async fn run(cli: Cli, config: Config) -> anyhow::Result<ExitCode> {
    let paths = app::Paths::new(&config, cli.data_dir.as_deref())?;
    let out = cli.output;
    match cli.command {
        Command::Serve => serve(config, paths).await,
        Command::Gateway => {
            let _lock = app::lock(&paths, "firebreak gateway")?;
            let built = app::engine(&config, &paths, true, Mode::Daemon).await?;
            let (gateway, policy) = built.gateway.ok_or_else(|| {
                BadInput("gateway is not configured; add a gateway: section to the config".into())
            })?;
            built.engine.recover();
            let soft = open_file_limit();
            let gateway = firebreak_tools::GatewayConfig {
                limits: listener_limits(gateway.limits, soft, 1)?,
                ..gateway
            };
            let metrics = connection_metrics(&built.engine, "gateway")?;
            firebreak_tools::serve(gateway, policy, Some(metrics)).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Plan { alert } => {
            let alert = read_alert(&alert)?;
            let engine = app::engine(&config, &paths, false, Mode::Daemon)
                .await?
                .engine;
            let plan = engine.plan_only(&alert).await?;
            print(out, &plan, || render::plan(&plan));
            Ok(ExitCode::SUCCESS)
        }
        Command::Contain {
            alert,
            dry_run,
            operator,
        } => {
            let alert = read_alert(&alert)?;
            let answer = if operator.offline {
                contain_offline(&config, &paths, alert, dry_run, &operator.by).await?
            } else {
                let body = json!({"alert": alert, "by": operator.by, "dryRun": dry_run});
                refused_as_bad_input(daemon(&config, &paths)?.post("/v1/contain", &body).await?)?
            };
            let status: Option<PlanStatus> = serde_json::from_value(answer["status"].clone()).ok();
            let plan: Option<firebreak_containment::Plan> =
                serde_json::from_value(answer["plan"].clone()).ok();
            print(out, &answer, || {
                format!(
                    "{}\nincident {}\nstatus: {}{}\n",
                    plan.as_ref().map(render::plan).unwrap_or_default(),
                    answer["incident"].as_str().unwrap_or("?"),
                    status
                        .map(render::status)
                        .unwrap_or_else(|| "planning".into()),
                    answer["detail"]
                        .as_str()
                        .map(|d| format!(" ({d})"))
                        .unwrap_or_default()
                )
            });
            Ok(match status {
                Some(PlanStatus::Contained | PlanStatus::DryRun) => ExitCode::SUCCESS,
                _ => ExitCode::from(EXIT_NOT_CONTAINED),
            })
        }
        Command::Approve { id, plan_hash, by } => {
            let body = json!({"planHash": plan_hash, "by": by});
            let answer = refused_as_bad_input(
                daemon(&config, &paths)?
                    .post(&format!("/v1/incidents/{id}/approve"), &body)
                    .await?,
            )?;
            print(out, &answer, || {
                format!(
                    "{id}: plan {} approved by {by}; it executes now (follow it with `firebreak incidents show {id}`)\n",
                    answer["plan"].as_str().unwrap_or("?")
                )
            });
            Ok(ExitCode::SUCCESS)
        }
        Command::Rollback { id, operator } => {
            let status = if operator.offline {
                let _lock = app::lock(&paths, "firebreak rollback --offline")?;
                let (engine, left_out) = offline_engine(&config, &paths).await?;
                let refused = engine.incident(&id).await.and_then(|incident| {
                    incident
                        .plans
                        .iter()
                        .find_map(|p| LeftOut::refuse(&left_out, &p.plan.parameter).err())
                });
                let status = match refused {
                    Some(refusal) => Err(anyhow::Error::from(refusal)),
                    None => engine
                        .rollback(&id, Some(operator.by.clone()))
                        .await
                        .map_err(anyhow::Error::from),
                };
                engine.shutdown();
                status?
            } else {
                let answer = refused_as_bad_input(
                    daemon(&config, &paths)?
                        .post(
                            &format!("/v1/incidents/{id}/rollback"),
                            &json!({"by": operator.by}),
                        )
                        .await?,
                )?;
                serde_json::from_value(answer["status"].clone())
                    .context("the daemon's rollback answer has no status")?
            };
            let json = json!({"incident": id, "status": status});
            print(out, &json, || format!("{id}: {}\n", render::status(status)));
            Ok(match status {
                PlanStatus::Reverted
                | PlanStatus::Cancelled
                | PlanStatus::Expired
                | PlanStatus::DryRun => ExitCode::SUCCESS,
                _ => ExitCode::from(EXIT_NOT_CONTAINED),
            })
        }
        Command::Incidents { command } => {
            let engine = app::engine(&config, &paths, false, Mode::Offline)
                .await?
                .engine;
            match command {
                IncidentsCommand::List => {
                    let incidents = engine.incidents().await;
                    let json = json!({"incidents": incidents.iter().map(http::summary).collect::<Vec<_>>()});
                    print(out, &json, || render::incident_list(&incidents));
                }
                IncidentsCommand::Show { id } => {
                    let incident = engine.incident(&id).await.ok_or_else(|| {
                        BadInput(format!(
                            "no incident {id}; list them with `firebreak incidents list`"
                        ))
                    })?;
                    print(out, &http::detail(&incident), || {
                        render::incident(&incident)
                    });
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Envelope { command } => envelope(command, out, &config, &paths).await,
        Command::Ingest {
            format: IngestFormat::KubescapeStdout,
            file,
        } => {
            let target =
                ingest::Target::of(config.listen, &paths.token, config.api.max_body_bytes)?;
            let summary = ingest::kubescape_stdout(&target, file).await?;
            print(out, &summary, || summary.text());
            Ok(if summary.rejected + summary.oversize > 0 {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Journal {
            command: JournalCommand::Verify,
        } => {
            let verified = app::verify_journal(&paths)?;
            let checkpoint = verified.checkpoint.as_ref();
            let json = json!({
                "journal": paths.journal,
                "entries": verified.entries,
                "head": verified.head,
                "checkpoint": checkpoint.map(|c| json!({"seq": c.seq, "at": c.at})),
            });
            print(out, &json, || {
                format!(
                    "journal {}: {} entries, chain verified; head {}; checkpoint {}\n",
                    paths.journal.display(),
                    verified.entries,
                    verified.head,
                    checkpoint.map_or("none (no entries yet)".into(), |c| format!(
                        "seq {} signed {} verified",
                        c.seq, c.at
                    ))
                )
            });
            Ok(ExitCode::SUCCESS)
        }
        Command::Context {
            command: ContextCommand::Ddl,
        } => {
            let pg = config.context.postgres.as_ref().ok_or_else(|| {
                BadInput("context.postgres is not configured; add it to the config (see config/default.yaml)".into())
            })?;
            print!("{}", firebreak_context::ddl(pg));
            Ok(ExitCode::SUCCESS)
        }
        Command::Runbook {
            command: RunbookCommand::Check { dir },
        } => {
            let kinds = planes::all_kinds()?;
            let runbooks = Runbooks::load_dir(&dir, &kinds).map_err(|e| BadInput(e.to_string()))?;
            let json = serde_json::json!({"ok": true, "rules": runbooks.rules()});
            print(out, &json, || {
                format!(
                    "{}: {} rule(s), all valid\n",
                    dir.display(),
                    runbooks.rules().len()
                )
            });
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The daemon of this config, as an API client.
fn daemon(config: &Config, paths: &app::Paths) -> anyhow::Result<ingest::Target> {
    ingest::Target::of(config.listen, &paths.token, config.api.max_body_bytes)
}

/// The daemon's 4xx is the user's mistake (exit code 2), named by field.
fn refused_as_bad_input(answer: Answer) -> anyhow::Result<Value> {
    match answer {
        Answer::Ok(value) => Ok(value),
        Answer::Refused { field, reason } if field.is_empty() => Err(BadInput(reason).into()),
        Answer::Refused { field, reason } => Err(BadInput(format!("{field}: {reason}")).into()),
    }
}

/// An engine on the data dir for `--offline`: planes that enforce only inside the daemon are
/// left out, and the caller holds the data dir's lock.
async fn offline_engine(
    config: &Config,
    paths: &app::Paths,
) -> anyhow::Result<(Engine, Vec<LeftOut>)> {
    let built = app::engine(config, paths, false, Mode::Offline).await?;
    if !built.daemon_only.is_empty() {
        let keys: Vec<&str> = built.daemon_only.iter().map(|l| l.key).collect();
        eprintln!(
            "firebreak: --offline leaves out {} (they enforce only inside the running daemon)",
            keys.join(", ")
        );
    }
    Ok((built.engine, built.daemon_only))
}

async fn contain_offline(
    config: &Config,
    paths: &app::Paths,
    alert: Alert,
    dry_run: bool,
    by: &str,
) -> anyhow::Result<Value> {
    let _lock = app::lock(paths, "firebreak contain --offline")?;
    let (engine, left_out) = offline_engine(config, paths).await?;
    if let Err(refusal) = LeftOut::refuse(&left_out, &alert.parameter) {
        engine.shutdown();
        return Err(refusal.into());
    }
    if !dry_run {
        // A TTL is a timer in the daemon: with none running, nothing would revert the action
        // when it expires. Refused before anything is journaled or changed.
        let preview = engine.plan_only(&alert).await;
        if let Ok(Some(ttl)) = preview.as_ref().map(|p| p.ttl_seconds) {
            engine.shutdown();
            anyhow::bail!(
                "--offline cannot honour this plan's TTL ({}, {}): nothing reverts it while no \
                 daemon runs. Contain through the running daemon (without --offline), or match \
                 a runbook rule without `ttl`",
                humantime::format_duration(Duration::from_secs(ttl)),
                preview.map(|p| p.mode_reason).unwrap_or_default()
            );
        }
    }
    let request = if dry_run {
        Request::DryRun
    } else {
        Request::Operator(by.to_string())
    };
    let result = async {
        let submitted = engine.submit_settled(alert, request).await?;
        anyhow::Ok(serde_json::to_value(&submitted)?)
    }
    .await;
    engine.shutdown();
    result
}

async fn serve(config: Config, paths: app::Paths) -> anyhow::Result<ExitCode> {
    let _lock = app::lock(&paths, "firebreak serve")?;
    let token = app::api_token(&paths.token)?;
    let app::Built {
        engine,
        gateway,
        feed,
        ..
    } = app::engine(&config, &paths, true, Mode::Daemon).await?;
    let resumed = engine.recover();
    tracing::info!(incidents = resumed.len(), "incidents resumed");
    // Every listener shares the process's descriptors: each gets its share, with headroom.
    let soft = open_file_limit();
    let listeners =
        1 + usize::from(gateway.is_some()) + usize::from(config.api.metrics_listen.is_some());
    let limits = listener_limits(config.api.limits, soft, listeners)?;
    if let Some((gateway, policy)) = gateway {
        tracing::info!(addr = %gateway.listen, "MCP tool gateway serving");
        let gateway = firebreak_tools::GatewayConfig {
            limits: listener_limits(gateway.limits, soft, listeners)?,
            ..gateway
        };
        let metrics = connection_metrics(&engine, "gateway")?;
        tokio::spawn(async move {
            if let Err(e) = firebreak_tools::serve(gateway, policy, Some(metrics)).await {
                tracing::error!(error = %e, "the MCP tool gateway stopped");
            }
        });
    }
    let sources = sources::Sources::new(&config.sources, engine.metrics())?;
    if let Some(nats) = config.sources.nats.clone() {
        tokio::spawn(
            sources::nats::NatsSource {
                config: nats,
                engine: engine.clone(),
                sources: sources.clone(),
            }
            .run(),
        );
    }
    let api = http::Api {
        engine: engine.clone(),
        token: Arc::from(token),
        sources,
    };
    if let Some(addr) = config.api.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on api.metricsListen {addr}"))?;
        tracing::info!(addr = %listener.local_addr()?, "metrics serving (no token)");
        let metrics = http::metrics_router(api.clone());
        let counted = connection_metrics(&engine, "metrics")?;
        tokio::spawn(async move {
            let served = firebreak_serving::serve_with_metrics(
                listener,
                metrics,
                limits,
                Some(counted),
                std::future::pending(),
            );
            if let Err(e) = served.await {
                tracing::error!(error = %e, "the metrics listener stopped");
            }
        });
    }
    let mut router = http::router(api, config.api.max_body_bytes);
    if let Some((feed, auth)) = feed {
        router = router.merge(firebreak_delegation::feed::router(
            feed,
            auth,
            Some(engine.clone()),
        ));
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}; is another firebreak running?",
                config.listen
            )
        })?;
    tracing::info!(addr = %listener.local_addr()?, data = %paths.data.display(), "firebreak serving");
    let stop = Arc::new(tokio::sync::Notify::new());
    let server = firebreak_serving::serve_with_metrics(
        listener,
        router,
        limits,
        Some(connection_metrics(&engine, "api")?),
        {
            let stop = stop.clone();
            async move { stop.notified().await }
        },
    );
    let server = tokio::spawn(server);
    stopped().await;
    stop.notify_one();
    // Requests in flight finish; feed streams never end by themselves, so the wait is bounded.
    match tokio::time::timeout(DRAIN, server).await {
        Ok(served) => served??,
        Err(_) => tracing::warn!(
            within = ?DRAIN,
            "connections still open (feed streams); closing them"
        ),
    }
    if engine.drain(DRAIN).await {
        tracing::info!("stopped: every step in flight finished");
    } else {
        tracing::warn!(within = ?DRAIN, "stopped with steps in flight; they are journaled and the next start resumes them");
    }
    // The head the next start must find, signed now rather than when the last handle drops.
    if let Err(e) = engine.journal().checkpoint().await {
        tracing::error!(error = %e, "journal checkpoint not signed at stop");
    }
    Ok(ExitCode::SUCCESS)
}

/// Raises the soft open-file limit to the hard one (idle connections must not exhaust it),
/// and says what it is.
fn open_file_limit() -> u64 {
    match firebreak_serving::raise_nofile_limit() {
        Ok((soft, hard)) => {
            tracing::info!(soft, hard, "open-file limit");
            soft
        }
        Err(e) => {
            // The classic default: the limits are then cut to fit it.
            tracing::warn!(error = %e, "cannot raise the open-file limit; assuming 1024");
            1024
        }
    }
}

/// A listener's configured limits, checked, and kept within its share of the descriptors.
fn listener_limits(
    limits: firebreak_serving::Limits,
    soft: u64,
    listeners: usize,
) -> anyhow::Result<firebreak_serving::Limits> {
    limits
        .validate()
        .map_err(|e| BadInput(format!("limits: {e}")))?;
    Ok(limits.clamp_to_nofile(soft, listeners))
}

/// Connection counters of one listener, registered with the engine's metrics.
fn connection_metrics(
    engine: &firebreak_containment::engine::Engine,
    listener: &str,
) -> anyhow::Result<firebreak_serving::Metrics> {
    let metrics = firebreak_serving::Metrics::new(listener)?;
    metrics.register(&engine.metrics().registry)?;
    Ok(metrics)
}

/// How long a stop waits for connections, then for the engine's steps in flight.
const DRAIN: Duration = Duration::from_secs(10);

/// SIGINT or SIGTERM (what `kill PID` and Kubernetes send). SIGHUP, which would otherwise
/// kill the process silently, is logged and ignored: configuration is read at start.
async fn stopped() {
    use tokio::signal::unix::{signal, SignalKind};
    let (mut term, mut hangup) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(term), Ok(hangup)) => (term, hangup),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM/SIGHUP; stop with SIGINT");
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!(signal = "SIGINT", "stopping");
            return;
        }
    };
    loop {
        let signal = tokio::select! {
            _ = tokio::signal::ctrl_c() => "SIGINT",
            _ = term.recv() => "SIGTERM",
            _ = hangup.recv() => {
                tracing::warn!(signal = "SIGHUP", "ignored: configuration, envelopes and runbooks are read at start; restart to apply changes");
                continue;
            }
        };
        tracing::info!(signal, "stopping");
        return;
    }
}

fn read_alert(path: &Path) -> anyhow::Result<Alert> {
    let bytes = if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin().take_limit(), &mut buf)?;
        buf
    } else {
        std::fs::read(path).with_context(|| format!("cannot read alert {}", path.display()))?
    };
    Alert::from_json(&bytes).map_err(|e| BadInput(format!("{}: {e}", path.display())).into())
}

trait TakeLimit {
    fn take_limit(self) -> std::io::Take<std::io::Stdin>;
}

impl TakeLimit for std::io::Stdin {
    /// One byte more than an alert may be, so oversize input is reported as such.
    fn take_limit(self) -> std::io::Take<std::io::Stdin> {
        std::io::Read::take(
            self,
            firebreak_containment::alert::MAX_ALERT_BYTES as u64 + 1,
        )
    }
}

fn print<T: serde::Serialize>(out: Output, value: &T, text: impl FnOnce() -> String) {
    match out {
        Output::Json => match serde_json::to_string_pretty(value) {
            Ok(s) => println!("{s}"),
            Err(e) => eprintln!("firebreak: cannot encode output: {e}"),
        },
        Output::Text => print!("{}", text()),
    }
}
