//! The engine (docs/ARCHITECTURE.md §Engine): a router that dedupes under a short lock, and one
//! task per incident that observes, plans, applies and verifies with no shared lock held
//! across network I/O or fsync. The in-memory view is the fold of the journal through the plan
//! state machine; a restart folds it again and resumes whatever was in flight.

pub mod policy;
mod router;
mod schedule;
mod task;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use self::router::{AlertKey, Routed, Router};
use self::task::Command;
use crate::agent::AgentRef;
use crate::alert::Alert;
use crate::budget::BudgetConfig;
use crate::envelope::EnvelopeStore;
pub use crate::guard::Request;
use crate::guard::{Guard, GuardInput};
use crate::ids::{IncidentId, PlanId};
use crate::incident::{Event, Incident};
use crate::journal::{Journal, JournalError};
use crate::metrics::Metrics;
use crate::plan::{Mode, Plan};
use crate::plane::{PlanInput, Planes, Route};
use crate::runbook::Runbooks;
use crate::state::PlanStatus;

pub use policy::ErrorPolicy;

/// Deliberate crash points, for proving recovery (set by `FIREBREAK_FAULT`). Never set in
/// production configs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Abort the process right after the intent is durable, before the control plane is called.
    CrashAfterIntent,
    /// Abort a streaming source right after its alert is journaled, before the ack.
    CrashBeforeAck,
}

impl Fault {
    pub fn parse(name: &str) -> Option<Fault> {
        match name {
            "crash-after-intent" => Some(Fault::CrashAfterIntent),
            "crash-before-ack" => Some(Fault::CrashBeforeAck),
            _ => None,
        }
    }
}

/// How old (or how far in the future) an alert's `time` may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    pub max_age: Duration,
    pub max_skew: Duration,
}

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub budget: BudgetConfig,
    pub fault: Option<Fault>,
    /// First verification poll interval; it doubles up to 15 s until the plane's deadline.
    pub verify_poll: Duration,
    /// Retries, re-plans and call deadlines.
    pub errors: ErrorPolicy,
    /// Alerts outside it are refused; `None` accepts any time.
    pub freshness: Option<Freshness>,
    /// New alerts taken in and not yet planned, at most: past it a new alert is refused
    /// ([`EngineError::Overloaded`]) before anything is recorded, while resends are still
    /// answered. Intake then never outruns planning by more than this.
    pub max_planning: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            budget: BudgetConfig::default(),
            fault: None,
            verify_poll: Duration::from_millis(500),
            errors: ErrorPolicy::default(),
            freshness: None,
            max_planning: DEFAULT_MAX_PLANNING,
        }
    }
}

/// Enough for a burst of distinct breaches across a fleet; small enough that the last one in
/// is planned within seconds, not minutes.
pub const DEFAULT_MAX_PLANNING: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("unknown agent {agent}: no envelope is loaded for it; import one with `firebreak envelope import FILE`")]
    UnknownAgent { agent: String },
    #[error("no incident {0}; list them with `firebreak incidents list`")]
    UnknownIncident(IncidentId),
    #[error("plan hash {given} does not match the plan awaiting approval ({current}); re-read the incident and approve what it shows")]
    PlanHashMismatch { given: String, current: String },
    #[error("plan {plan} was already approved by {by}; an approval executes at most once")]
    AlreadyApproved { plan: PlanId, by: String },
    #[error("incident {0} has no plan awaiting approval")]
    NothingToApprove(IncidentId),
    #[error("the journal failed: {0}; Firebreak will not act without a durable record")]
    Journal(#[from] JournalError),
    #[error("alert {id} from {source_name} was already received with other content (digest {known}, now {new}); give a changed alert a new id")]
    AlertConflict {
        id: String,
        source_name: String,
        known: String,
        new: String,
    },
    #[error("alert time {time} is {why}; check the sender's clock, or widen alerts.maxAge / alerts.maxSkew")]
    Stale { time: DateTime<Utc>, why: String },
    #[error("journal entry seq {seq} cannot be replayed: {reason}; the journal was altered or written by another version, preserve it for forensics")]
    History { seq: u64, reason: String },
    #[error("cannot encode a journal event: {0}")]
    Encode(String),
    #[error("the engine is stopping; retry against the running daemon")]
    Stopping,
    #[error("{limit} new alerts are being planned, the most taken in at once (maxPlanning); nothing was recorded: retry in a second")]
    Overloaded { limit: usize },
}

/// Where an answered alert stands: still being planned, or its plan's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Progress {
    Planning,
    #[serde(untagged)]
    Plan(PlanStatus),
}

/// What happened to a submitted alert.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Submitted {
    pub incident: IncidentId,
    pub deduplicated: bool,
    pub status: Progress,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
}

impl Submitted {
    pub fn plan_status(&self) -> Option<PlanStatus> {
        match self.status {
            Progress::Plan(s) => Some(s),
            Progress::Planning => None,
        }
    }
}

/// The parts an engine is made of.
pub struct Parts {
    pub journal: Journal,
    pub envelopes: EnvelopeStore,
    pub runbooks: Runbooks,
    pub planes: Planes,
    pub metrics: Metrics,
    pub config: EngineConfig,
}

/// What every incident task shares.
pub(crate) struct Shared {
    journal: Journal,
    envelopes: EnvelopeStore,
    guard: Guard,
    planes: Planes,
    metrics: Metrics,
    config: EngineConfig,
    router: Router,
    /// Every incident task, so a stop can wait for the steps in flight.
    tasks: tokio_util::task::TaskTracker,
    /// One permit per new alert between intake and its plan.
    intake: Arc<tokio::sync::Semaphore>,
}

#[derive(Clone)]
pub struct Engine {
    shared: Arc<Shared>,
}

impl Engine {
    /// Builds the engine and folds the journal into the incident view. Nothing runs until
    /// [`Engine::recover`]; an event the state machine refuses stops the fold.
    pub fn open(parts: Parts) -> Result<Engine, EngineError> {
        let guard = Guard::new(parts.runbooks, parts.config.budget);
        let mut incidents: BTreeMap<IncidentId, (Incident, Vec<(AlertKey, String)>)> =
            BTreeMap::new();
        for entry in parts.journal.entries()? {
            let history = |reason: String| EngineError::History {
                seq: entry.seq,
                reason,
            };
            let event = Event::from_journal(&entry.kind, &entry.body)
                .map_err(|e| history(format!("{} does not parse: {e}", entry.kind)))?;
            let id = IncidentId::from(entry.incident.clone());
            if let Event::AlertReceived { alert, .. } = &event {
                incidents
                    .entry(id.clone())
                    .or_insert_with(|| (Incident::open(id.clone(), entry.at, alert), Vec::new()));
            }
            let (incident, seen) = incidents.get_mut(&id).ok_or_else(|| {
                history(format!("{} before the incident's first alert", entry.kind))
            })?;
            incident
                .apply(entry.at, &event)
                .map_err(|e| history(e.to_string()))?;
            match &event {
                Event::AlertReceived {
                    alert,
                    rehearsal: false,
                } => seen.push((AlertKey::of(alert), alert.digest())),
                Event::Planned { plan } if plan.mode == Mode::Auto && plan.chosen.is_some() => {
                    guard.charged(&plan.agent.namespace, &plan.agent.key().0, entry.at)
                }
                _ => {}
            }
        }
        let router = Router::default();
        for (incident, seen) in incidents.into_values() {
            router.restore(incident, seen);
        }
        let intake = Arc::new(tokio::sync::Semaphore::new(
            parts.config.max_planning.max(1),
        ));
        Ok(Engine {
            shared: Arc::new(Shared {
                intake,
                journal: parts.journal,
                envelopes: parts.envelopes,
                guard,
                planes: parts.planes,
                metrics: parts.metrics,
                config: parts.config,
                router,
                tasks: tokio_util::task::TaskTracker::new(),
            }),
        })
    }

    /// Starts the task of every incident with work left: alerts journaled but never planned,
    /// intents without results, verifications and TTLs to re-arm, reverts to finish, in-process
    /// enforcement to re-assert. Returns the incidents resumed.
    pub fn recover(&self) -> Vec<IncidentId> {
        let mut resumed = Vec::new();
        for incident in self.shared.router.views() {
            let work = incident.is_open() || incident.unplanned().next().is_some();
            if work
                && self
                    .shared
                    .router
                    .send(&self.shared, &incident.id, Command::Resume)
                    .is_ok()
            {
                info!(incident = %incident.id, "resumed from the journal");
                resumed.push(incident.id.clone());
            }
        }
        resumed
    }

    /// Stops every incident task (they finish the step at hand); later calls answer `Stopping`.
    pub fn shutdown(&self) {
        self.shared.router.close();
    }

    /// Stops taking work and waits, at most `within`, for every incident's step in flight
    /// (a plane call, a journal write) to finish. False when some were still running: they
    /// are journaled as intents, and the next start resumes them.
    pub async fn drain(&self, within: Duration) -> bool {
        self.shutdown();
        self.shared.tasks.close();
        tokio::time::timeout(within, self.shared.tasks.wait())
            .await
            .is_ok()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// The metrics text, with the gauges computed from the view at this instant.
    pub fn render_metrics(&self) -> String {
        let views = self.shared.router.views();
        let open = views.iter().filter(|i| i.is_open()).count();
        let awaiting = views
            .iter()
            .flat_map(|i| &i.plans)
            .filter(|p| p.status() == PlanStatus::AwaitingApproval)
            .count();
        self.shared.metrics.open_incidents.set(open as i64);
        self.shared.metrics.awaiting_approval.set(awaiting as i64);
        self.shared.metrics.render()
    }

    pub fn envelopes(&self) -> &EnvelopeStore {
        &self.shared.envelopes
    }

    pub fn planes(&self) -> &Planes {
        &self.shared.planes
    }

    /// The fault injected for this run (`FIREBREAK_FAULT`), for the parts outside the engine.
    pub fn fault(&self) -> Option<Fault> {
        self.shared.config.fault
    }

    pub fn journal(&self) -> &Journal {
        &self.shared.journal
    }

    pub async fn incident(&self, id: &IncidentId) -> Option<Incident> {
        let view = self.shared.router.view(id)?;
        let incident = view.borrow().as_deref().cloned();
        incident
    }

    pub async fn incidents(&self) -> Vec<Incident> {
        self.shared
            .router
            .views()
            .into_iter()
            .map(|i| (*i).clone())
            .collect()
    }

    /// Plans without journaling or acting: `firebreak plan`.
    pub async fn plan_only(&self, alert: &Alert) -> Result<Plan, EngineError> {
        self.check_alert(alert)?;
        let incident = incident_id(alert);
        self.shared
            .plan(
                &incident,
                PlanId::nth(&incident, 1),
                alert,
                &Request::DryRun,
            )
            .await
    }

    /// Takes one validated alert through dedupe and into its incident's task; answers once it
    /// is planned (and, for enforcement Firebreak owns in `auto` mode, in force). A resend is
    /// answered from the view, without waiting on any planning.
    pub async fn submit(&self, alert: Alert, request: Request) -> Result<Submitted, EngineError> {
        self.check_alert(&alert)?;
        let indexed = request != Request::DryRun;
        // Taken before routing, which records the alert: a shed alert leaves no trace, so its
        // retry is new. Without a permit only a resend (or a conflict) is answered.
        let permit = self.shared.intake.clone().try_acquire_owned().ok();
        if permit.is_none() && !(indexed && self.shared.router.knows(&alert)) {
            self.shared
                .metrics
                .alerts
                .with_label_values(&["shed"])
                .inc();
            return Err(EngineError::Overloaded {
                limit: self.shared.config.max_planning,
            });
        }
        let incident = match self
            .shared
            .router
            .route(&alert, indexed, incident_id(&alert))
        {
            Routed::To(incident) => incident,
            Routed::Resend(incident, view) => {
                self.shared
                    .metrics
                    .alerts
                    .with_label_values(&["deduplicated"])
                    .inc();
                let answer = view
                    .borrow()
                    .as_ref()
                    .map(|i| task::answer(i, i.plan_for_alert(&alert.id), true));
                return Ok(answer.unwrap_or(Submitted {
                    incident,
                    deduplicated: true,
                    status: Progress::Planning,
                    plan: None,
                }));
            }
            Routed::Conflict {
                incident,
                known_digest,
            } => {
                let new = alert.digest();
                let _ = self.shared.router.send(
                    &self.shared,
                    &incident,
                    Command::Conflict {
                        alert: alert.id.clone(),
                        source: alert.source.clone(),
                        known_digest: known_digest.clone(),
                        new_digest: new.clone(),
                    },
                );
                return Err(EngineError::AlertConflict {
                    id: alert.id,
                    source_name: alert.source,
                    known: known_digest,
                    new,
                });
            }
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        let command = Command::Alert {
            alert: Box::new(alert),
            request,
            reply,
            intake: permit,
        };
        self.send(&incident, command)?;
        answer.await.map_err(|_| EngineError::Stopping)?
    }

    /// Approves the plan awaiting approval whose hash is `hash`; it executes in the background.
    pub async fn approve(
        &self,
        incident: &IncidentId,
        hash: &str,
        by: &str,
    ) -> Result<PlanId, EngineError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let command = Command::Approve {
            hash: hash.to_string(),
            by: by.to_string(),
            reply,
        };
        self.send(incident, command)?;
        answer.await.map_err(|_| EngineError::Stopping)?
    }

    /// Undoes every action of the incident (newest first), cancels plans still waiting, and
    /// answers once every undo is verified (or has failed). Pre-empts a verification in flight.
    pub async fn rollback(
        &self,
        incident: &IncidentId,
        by: Option<String>,
    ) -> Result<PlanStatus, EngineError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.send(incident, Command::Rollback { by, reply })?;
        answer.await.map_err(|_| EngineError::Stopping)?
    }

    /// Submits and waits for the plan to settle: the answer an operator acting now expects
    /// (contained, verify-failed, awaiting approval …) rather than `applying`.
    pub async fn submit_settled(
        &self,
        alert: Alert,
        request: Request,
    ) -> Result<Submitted, EngineError> {
        let mut submitted = self.submit(alert, request).await?;
        if let Some(plan) = &submitted.plan {
            if let Some(status) = self.settled(&submitted.incident, &plan.id).await {
                submitted.status = Progress::Plan(status);
            }
        }
        Ok(submitted)
    }

    /// Waits until the plan is no longer applying, verifying or reverting, and returns its
    /// status (`None` if there is no such plan).
    pub async fn settled(&self, incident: &IncidentId, plan: &PlanId) -> Option<PlanStatus> {
        let mut view = self.shared.router.view(incident)?;
        loop {
            let status = view
                .borrow()
                .as_ref()
                .and_then(|i| i.plan(plan).map(|p| p.status()));
            match status {
                Some(PlanStatus::Applying | PlanStatus::Applied | PlanStatus::Reverting) => {}
                None if view.borrow().is_none() => {}
                other => return other,
            }
            if view.changed().await.is_err() {
                return None;
            }
        }
    }

    /// Journals a call refused at an enforcement point Firebreak owns, for the audit trail.
    pub fn record_refused_call(
        &self,
        incident: &IncidentId,
        plan: Option<&PlanId>,
        agent: &str,
        call: &str,
    ) {
        let command = Command::CallRefused {
            plan: plan.cloned(),
            agent: agent.to_string(),
            call: call.to_string(),
        };
        if self.send(incident, command).is_err() {
            warn!(incident = %incident, "cannot record a refused call: no such incident");
        }
    }

    /// Whether the agent has an open incident (its envelope is frozen meanwhile).
    pub async fn has_open_incident(&self, agent: &AgentRef) -> bool {
        self.shared
            .router
            .views()
            .iter()
            .any(|i| &i.agent == agent && i.is_open())
    }

    fn send(&self, incident: &IncidentId, command: Command) -> Result<(), EngineError> {
        self.shared
            .router
            .send(&self.shared, incident, command)
            .map_err(|_| {
                if self.shared.router.view(incident).is_some() {
                    EngineError::Stopping
                } else {
                    EngineError::UnknownIncident(incident.clone())
                }
            })
    }

    /// What every alert must pass before anything is recorded: a known agent, a fresh time.
    fn check_alert(&self, alert: &Alert) -> Result<(), EngineError> {
        if self.shared.envelopes.get(&alert.agent.key()).is_none() {
            return Err(EngineError::UnknownAgent {
                agent: alert.agent.key().0,
            });
        }
        if let Some(f) = self.shared.config.freshness {
            let now = Utc::now();
            let age = now - alert.time;
            let max_age = chrono::Duration::from_std(f.max_age).unwrap_or(chrono::Duration::MAX);
            let skew = chrono::Duration::from_std(f.max_skew).unwrap_or(chrono::Duration::MAX);
            let why = if age > max_age {
                Some(format!(
                    "older than {}",
                    humantime::format_duration(f.max_age)
                ))
            } else if -age > skew {
                Some(format!(
                    "more than {} in the future",
                    humantime::format_duration(f.max_skew)
                ))
            } else {
                None
            };
            if let Some(why) = why {
                return Err(EngineError::Stale {
                    time: alert.time,
                    why,
                });
            }
        }
        Ok(())
    }
}

impl Shared {
    /// Observes every plane on the alert's route (no lock held) and decides.
    async fn plan(
        &self,
        incident: &IncidentId,
        plan: PlanId,
        alert: &Alert,
        request: &Request,
    ) -> Result<Plan, EngineError> {
        let envelope =
            self.envelopes
                .get(&alert.agent.key())
                .ok_or_else(|| EngineError::UnknownAgent {
                    agent: alert.agent.key().0,
                })?;
        let input = PlanInput {
            incident,
            plan: &plan,
            alert,
            envelope,
        };
        let mut candidates = Vec::new();
        let mut problems = Vec::new();
        match Route::of(&alert.parameter) {
            None => problems.push(format!(
                "{} names no control plane Firebreak knows",
                alert.parameter.describe()
            )),
            Some(route) => {
                let planes: Vec<_> = self.planes.for_input(route, &input).cloned().collect();
                if planes.is_empty() {
                    problems.push(format!(
                        "no configured control plane can contain {route} for this agent"
                    ));
                }
                for plane in planes {
                    match self.observe(plane.as_ref(), &input).await {
                        Ok(mut c) => candidates.append(&mut c),
                        Err(e) => problems.push(e.to_string()),
                    }
                }
            }
        }
        let started = Instant::now();
        let decided = self.guard.decide(GuardInput {
            incident,
            plan,
            alert,
            envelope_version: envelope.spec.version,
            envelope_status: envelope.spec.status,
            candidates,
            problems,
            request,
            now: Utc::now(),
        });
        self.metrics
            .decision_seconds
            .observe(started.elapsed().as_secs_f64());
        if decided.budget_spent {
            self.metrics.budget_exhausted.inc();
        }
        Ok(decided.plan)
    }

    /// A plane's candidates, with transient faults retried briefly (reads change nothing).
    async fn observe(
        &self,
        plane: &dyn crate::plane::DynPlane,
        input: &PlanInput<'_>,
    ) -> Result<Vec<crate::plan::Candidate>, crate::plane::PlaneError> {
        let policy = self.config.errors;
        let mut attempt = 1;
        loop {
            match self.bounded(plane.candidates(input)).await {
                Err(e) if e.kind() == crate::plane::FaultKind::Transient && attempt < 3 => {
                    self.metrics
                        .plane_faults
                        .with_label_values(&[e.plane(), e.kind().as_str()])
                        .inc();
                    warn!(plane = %plane.key(), attempt, error = %e, "observe failed; retrying");
                    tokio::time::sleep(policy.backoff_for(attempt)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

/// A fresh incident id: unique per (agent, dimension, alert, instant).
fn incident_id(alert: &Alert) -> IncidentId {
    let mut h = Sha256::new();
    h.update(alert.agent.key().0.as_bytes());
    h.update(alert.dimension().as_str().as_bytes());
    h.update(alert.id.as_bytes());
    h.update(
        Utc::now()
            .timestamp_nanos_opt()
            .unwrap_or_default()
            .to_le_bytes(),
    );
    h.update(rand_suffix().to_le_bytes());
    IncidentId::from(format!("inc-{}", &hex::encode(h.finalize())[..12]))
}

/// A per-process counter, so two ids made in the same nanosecond still differ.
fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
