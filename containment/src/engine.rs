//! The engine: alert → incident → plan → (approve) → intent → apply → verify → TTL / rollback.
//!
//! Every state change is journaled before it is acted on and folded into [`Incidents`]; a
//! restart folds the journal again and resumes whatever was in flight ([`Engine::recover`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;
use tracing::{info, info_span, warn, Instrument};

use crate::action::Surface;
use crate::alert::Alert;
use crate::budget::{Budget, BudgetConfig};
use crate::envelope::{EnvelopeStatus, EnvelopeStore};
use crate::incident::{Event, Incident, Incidents, PlanStatus, RevertReason};
use crate::journal::{Journal, JournalError, NewEntry};
use crate::metrics::Metrics;
use crate::plan::{Candidate, Mode, Plan};
use crate::planner;
use crate::runbook::Runbooks;
use crate::surface::{ControlPlane, PlanInput, SurfaceError, Verification};

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

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub budget: BudgetConfig,
    pub fault: Option<Fault>,
    /// First verification poll interval; it doubles up to 15 s until the plane's deadline.
    pub verify_poll: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            budget: BudgetConfig::default(),
            fault: None,
            verify_poll: Duration::from_millis(500),
        }
    }
}

/// Who asked for the plan, which decides its mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// The runbook decides (alerts from sources).
    Runbook,
    /// Plan and journal, change nothing (`contain --dry-run`).
    DryRun,
    /// An operator runs containment by hand (`contain`): the plan counts as approved by them.
    Operator(String),
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("unknown agent {agent}: no envelope is loaded for it; import one with `firebreak envelope import FILE`")]
    UnknownAgent { agent: String },
    #[error("no incident {0}; list them with `firebreak incidents list`")]
    UnknownIncident(String),
    #[error("plan hash {given} does not match the plan awaiting approval ({current}); re-read the incident and approve what it shows")]
    PlanHashMismatch { given: String, current: String },
    #[error("plan {plan} was already approved by {by}; an approval executes at most once")]
    AlreadyApproved { plan: String, by: String },
    #[error("incident {0} has no plan awaiting approval")]
    NothingToApprove(String),
    #[error("the journal failed: {0}; Firebreak will not act without a durable record")]
    Journal(#[from] JournalError),
    #[error("no control plane is configured for {0:?}; enable it in the config")]
    NoPlane(Surface),
}

/// What happened to a submitted alert.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Submitted {
    pub incident: String,
    pub deduplicated: bool,
    pub status: PlanStatus,
    pub plan: Plan,
}

/// The parts an engine is made of.
pub struct Parts {
    pub journal: Journal,
    pub envelopes: EnvelopeStore,
    pub runbooks: Runbooks,
    pub planes: Vec<Arc<dyn ControlPlane>>,
    pub metrics: Metrics,
    pub config: EngineConfig,
}

#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    journal: Journal,
    envelopes: EnvelopeStore,
    runbooks: Runbooks,
    planes: Vec<Arc<dyn ControlPlane>>,
    incidents: Mutex<Incidents>,
    budget: StdMutex<Budget>,
    /// One lock per incident: apply, rollback and expiry of one incident never interleave.
    action_locks: StdMutex<HashMap<String, Arc<Mutex<()>>>>,
    metrics: Metrics,
    config: EngineConfig,
}

impl Engine {
    /// Builds the engine and folds the journal into the incident view.
    pub fn open(parts: Parts) -> Result<Engine, EngineError> {
        let mut incidents = Incidents::default();
        for entry in parts.journal.entries()? {
            match Event::from_journal(&entry.kind, &entry.body) {
                Ok(event) => incidents.apply(&entry.incident, entry.at, &event),
                Err(e) => {
                    warn!(seq = entry.seq, kind = %entry.kind, error = %e, "journal entry not understood; skipped")
                }
            }
        }
        let open = incidents.all().filter(|i| i.is_open()).count();
        parts.metrics.open_incidents.set(open as i64);
        Ok(Engine {
            inner: Arc::new(Inner {
                journal: parts.journal,
                envelopes: parts.envelopes,
                runbooks: parts.runbooks,
                planes: parts.planes,
                incidents: Mutex::new(incidents),
                budget: StdMutex::new(Budget::new(parts.config.budget)),
                action_locks: StdMutex::new(HashMap::new()),
                metrics: parts.metrics,
                config: parts.config,
            }),
        })
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub fn envelopes(&self) -> &EnvelopeStore {
        &self.inner.envelopes
    }

    /// The fault injected for this run (`FIREBREAK_FAULT`), for the parts outside the engine.
    pub fn fault(&self) -> Option<Fault> {
        self.inner.config.fault
    }

    pub fn journal(&self) -> &Journal {
        &self.inner.journal
    }

    pub async fn incident(&self, id: &str) -> Option<Incident> {
        self.inner.incidents.lock().await.get(id).cloned()
    }

    pub async fn incidents(&self) -> Vec<Incident> {
        self.inner.incidents.lock().await.all().cloned().collect()
    }

    /// Plans without journaling or acting: `firebreak plan`.
    pub async fn plan_only(&self, alert: &Alert) -> Result<Plan, EngineError> {
        let incident = incident_id(alert);
        self.make_plan(&incident, 1, alert, &Request::DryRun).await
    }

    /// Takes one validated alert through dedupe, planning and the runbook. Automatic plans are
    /// executed in the background; the returned status is the one right after planning.
    pub async fn submit(&self, alert: Alert, request: Request) -> Result<Submitted, EngineError> {
        let span = info_span!("alert", alert = %alert.id, agent = %alert.agent.key());
        async move {
            if self.inner.envelopes.get(&alert.agent.key()).is_none() {
                return Err(EngineError::UnknownAgent {
                    agent: alert.agent.key().0,
                });
            }
            // Dedupe and planning happen under the incidents lock so two copies of one alert
            // can never both produce an action.
            let mut incidents = self.inner.incidents.lock().await;
            if request != Request::DryRun {
                // A resend of an alert already planned for carries nothing new: answered from
                // memory, not journaled, so a retry storm costs no disk and no memory per copy.
                let deduplicated = |incident: String, plan: Plan, status: PlanStatus| {
                    self.inner
                        .metrics
                        .alerts
                        .with_label_values(&["deduplicated"])
                        .inc();
                    Submitted {
                        incident,
                        deduplicated: true,
                        status,
                        plan,
                    }
                };
                if let Some((inc, p)) = incidents.repeat_of(&alert.id) {
                    return Ok(deduplicated(inc.id.clone(), p.plan.clone(), p.status));
                }
                // A distinct alert for what a live plan already covers.
                let duplicate_of =
                    incidents
                        .open_for(&alert.agent, alert.dimension)
                        .and_then(|inc| {
                            inc.live_plan_for(&alert.parameter)
                                .map(|p| (inc.id.clone(), p.plan.clone(), p.status))
                        });
                if let Some((incident, plan, status)) = duplicate_of {
                    self.record(
                        &mut incidents,
                        &incident,
                        Event::AlertDeduplicated {
                            alert: alert.id.clone(),
                            plan: plan.id.clone(),
                        },
                    )
                    .await?;
                    return Ok(deduplicated(incident, plan, status));
                }
            }
            let (incident, index) = match incidents
                .open_for(&alert.agent, alert.dimension)
                .filter(|_| request != Request::DryRun)
            {
                Some(open) => (open.id.clone(), open.plans.len() + 1),
                None => (incident_id(&alert), 1),
            };
            self.inner
                .metrics
                .alerts
                .with_label_values(&["accepted"])
                .inc();
            self.record(
                &mut incidents,
                &incident,
                Event::AlertReceived {
                    alert: Box::new(alert.clone()),
                },
            )
            .await?;
            let plan = self.make_plan(&incident, index, &alert, &request).await?;
            info!(incident = %incident, plan = %plan.id, mode = plan.mode.as_str(),
                  chosen = ?plan.chosen.as_ref().map(|c| c.kind.as_str()), "planned");
            self.inner
                .metrics
                .plans
                .with_label_values(&[plan.mode.as_str()])
                .inc();
            self.record(
                &mut incidents,
                &incident,
                Event::Planned {
                    plan: Box::new(plan.clone()),
                },
            )
            .await?;
            if let Some(reason) = &plan.escalation {
                self.inner.metrics.escalations.inc();
                warn!(incident = %incident, reason = %reason, "escalated");
                self.record(
                    &mut incidents,
                    &incident,
                    Event::Escalated {
                        plan: Some(plan.id.clone()),
                        reason: reason.clone(),
                    },
                )
                .await?;
            }
            if let (Request::Operator(by), Some(_)) = (&request, &plan.chosen) {
                self.record(
                    &mut incidents,
                    &incident,
                    Event::Approved {
                        plan: plan.id.clone(),
                        hash: plan.hash.clone(),
                        by: by.clone(),
                    },
                )
                .await?;
            }
            let status = incidents
                .get(&incident)
                .and_then(|i| i.plan(&plan.id))
                .map(|p| p.status)
                .unwrap_or(PlanStatus::Escalated);
            self.refresh_open_gauge(&incidents);
            drop(incidents);
            if status == PlanStatus::Applying && request == Request::Runbook {
                self.spawn_execute(incident.clone(), plan.id.clone());
            }
            Ok(Submitted {
                incident,
                deduplicated: false,
                status,
                plan,
            })
        }
        .instrument(span)
        .await
    }

    async fn make_plan(
        &self,
        incident: &str,
        index: usize,
        alert: &Alert,
        request: &Request,
    ) -> Result<Plan, EngineError> {
        let envelope = self
            .inner
            .envelopes
            .get(&alert.agent.key())
            .ok_or_else(|| EngineError::UnknownAgent {
                agent: alert.agent.key().0,
            })?;
        let input = PlanInput {
            incident,
            alert,
            envelope,
        };
        let mut candidates = Vec::new();
        let mut problems = Vec::new();
        let planes: Vec<_> = self
            .inner
            .planes
            .iter()
            .filter(|p| p.handles(&input))
            .collect();
        if planes.is_empty() {
            problems.push(format!(
                "no configured control plane can contain dimension {} for this agent",
                alert.dimension
            ));
        }
        for plane in planes {
            match plane.observe(&input).await {
                Ok(observed) => match observed.candidates(&input) {
                    Ok(mut c) => candidates.append(&mut c),
                    Err(e) => problems.push(e.to_string()),
                },
                Err(e) => problems.push(e.to_string()),
            }
        }
        let started = Instant::now();
        let plan = decide(
            &self.inner.runbooks,
            &self.inner.budget,
            &self.inner.metrics,
            DecideInput {
                incident,
                index,
                alert,
                envelope_version: envelope.spec.version,
                envelope_status: envelope.spec.status,
                candidates,
                problems,
                request,
            },
        );
        self.inner
            .metrics
            .decision_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(plan)
    }

    /// Journals `event` for `incident` and folds it into the view. Nothing acts before this returns.
    async fn record(
        &self,
        incidents: &mut Incidents,
        incident: &str,
        event: Event,
    ) -> Result<(), EngineError> {
        let entry = self
            .inner
            .journal
            .append(NewEntry {
                incident: incident.to_string(),
                kind: event.kind().to_string(),
                body: event.to_body(),
            })
            .await?;
        incidents.apply(incident, entry.at, &event);
        Ok(())
    }

    async fn record_locked(&self, incident: &str, event: Event) -> Result<(), EngineError> {
        let mut incidents = self.inner.incidents.lock().await;
        self.record(&mut incidents, incident, event).await?;
        self.refresh_open_gauge(&incidents);
        Ok(())
    }

    fn refresh_open_gauge(&self, incidents: &Incidents) {
        let open = incidents.all().filter(|i| i.is_open()).count();
        self.inner.metrics.open_incidents.set(open as i64);
    }

    /// Approves the plan awaiting approval whose hash is `hash`; executes it in the background.
    pub async fn approve(
        &self,
        incident: &str,
        hash: &str,
        by: &str,
    ) -> Result<String, EngineError> {
        let mut incidents = self.inner.incidents.lock().await;
        let inc = incidents
            .get(incident)
            .ok_or_else(|| EngineError::UnknownIncident(incident.to_string()))?;
        if let Some(done) = inc
            .plans
            .iter()
            .find(|p| p.plan.hash == hash && p.approved_by.is_some())
        {
            return Err(EngineError::AlreadyApproved {
                plan: done.plan.id.clone(),
                by: done.approved_by.clone().unwrap_or_default(),
            });
        }
        let awaiting: Vec<_> = inc
            .plans
            .iter()
            .filter(|p| p.status == PlanStatus::AwaitingApproval)
            .collect();
        let Some(plan) = awaiting.iter().find(|p| p.plan.hash == hash) else {
            return match awaiting.last() {
                Some(current) => Err(EngineError::PlanHashMismatch {
                    given: hash.to_string(),
                    current: current.plan.hash.clone(),
                }),
                None => Err(EngineError::NothingToApprove(incident.to_string())),
            };
        };
        let plan_id = plan.plan.id.clone();
        self.record(
            &mut incidents,
            incident,
            Event::Approved {
                plan: plan_id.clone(),
                hash: hash.to_string(),
                by: by.to_string(),
            },
        )
        .await?;
        drop(incidents);
        info!(incident, plan = %plan_id, by, "approved");
        self.spawn_execute(incident.to_string(), plan_id.clone());
        Ok(plan_id)
    }

    fn spawn_execute(&self, incident: String, plan: String) {
        let engine = self.clone();
        tokio::spawn(async move {
            if let Err(e) = engine.execute(&incident, &plan).await {
                warn!(incident, plan, error = %e, "execution stopped");
            }
        });
    }

    fn action_lock(&self, incident: &str) -> Arc<Mutex<()>> {
        let mut locks = match self.inner.action_locks.lock() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        };
        locks.entry(incident.to_string()).or_default().clone()
    }

    fn plane(&self, surface: Surface) -> Result<Arc<dyn ControlPlane>, EngineError> {
        self.inner
            .planes
            .iter()
            .find(|p| p.surface() == surface)
            .cloned()
            .ok_or(EngineError::NoPlane(surface))
    }

    /// Intent → apply → verify for one plan. Idempotent: resumes from wherever the journal says
    /// the plan stands, and does nothing for a plan that is not due to act.
    pub async fn execute(&self, incident: &str, plan_id: &str) -> Result<PlanStatus, EngineError> {
        let span = info_span!("incident", incident, plan = plan_id);
        async move {
            let lock = self.action_lock(incident);
            let _guard = lock.lock().await;
            let state = self.plan_state(incident, plan_id).await?;
            let Some(action) = state.plan.chosen.clone() else {
                return Ok(state.status);
            };
            let plane = self.plane(action.kind.surface())?;
            let kind = action.kind.as_str();
            if state.status == PlanStatus::Applying {
                if state.intent_at.is_none() {
                    self.record_locked(
                        incident,
                        Event::Intent {
                            plan: plan_id.to_string(),
                            action: Box::new(action.clone()),
                        },
                    )
                    .await?;
                    if self.inner.config.fault == Some(Fault::CrashAfterIntent) {
                        warn!("fault injection: aborting after the intent was journaled");
                        std::process::abort();
                    }
                }
                match plane.apply(&action).await {
                    Ok(outcome) => {
                        info!(kind, changed = outcome.changed, "applied");
                        self.inner
                            .metrics
                            .actions
                            .with_label_values(&[kind, "applied"])
                            .inc();
                        self.record_locked(
                            incident,
                            Event::Applied {
                                plan: plan_id.to_string(),
                                outcome,
                            },
                        )
                        .await?;
                    }
                    Err(e) => {
                        warn!(kind, error = %e, "apply failed");
                        self.inner
                            .metrics
                            .actions
                            .with_label_values(&[kind, "failed"])
                            .inc();
                        self.record_locked(
                            incident,
                            Event::Failed {
                                plan: plan_id.to_string(),
                                error: e.to_string(),
                            },
                        )
                        .await?;
                        return Ok(PlanStatus::Failed);
                    }
                }
            } else if state.status != PlanStatus::Applied {
                return Ok(state.status);
            }
            let verification = self
                .poll(plane.verify_deadline(), || plane.verify(&action))
                .await;
            let status = if verification.ok {
                self.inner
                    .metrics
                    .actions
                    .with_label_values(&[kind, "contained"])
                    .inc();
                self.record_locked(
                    incident,
                    Event::Verified {
                        plan: plan_id.to_string(),
                        verification,
                    },
                )
                .await?;
                self.schedule_expiry(incident, plan_id).await;
                PlanStatus::Contained
            } else {
                warn!(kind, detail = %verification.detail, "verification failed");
                self.inner
                    .metrics
                    .actions
                    .with_label_values(&[kind, "verify-failed"])
                    .inc();
                self.inner.metrics.escalations.inc();
                self.record_locked(
                    incident,
                    Event::VerifyFailed {
                        plan: plan_id.to_string(),
                        detail: verification.detail,
                    },
                )
                .await?;
                PlanStatus::VerifyFailed
            };
            Ok(status)
        }
        .instrument(span)
        .await
    }

    async fn plan_state(
        &self,
        incident: &str,
        plan_id: &str,
    ) -> Result<crate::incident::PlanState, EngineError> {
        self.inner
            .incidents
            .lock()
            .await
            .get(incident)
            .and_then(|i| i.plan(plan_id))
            .cloned()
            .ok_or_else(|| EngineError::UnknownIncident(format!("{incident} (plan {plan_id})")))
    }

    /// Polls `check` with doubling intervals until it says ok or `deadline` passes.
    async fn poll<F, Fut>(&self, deadline: Duration, check: F) -> Verification
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Verification, SurfaceError>>,
    {
        let until = Instant::now() + deadline;
        let mut interval = self.inner.config.verify_poll;
        loop {
            let last = match check().await {
                Ok(v) if v.ok => return v,
                Ok(v) => v,
                Err(e) => Verification {
                    ok: false,
                    detail: e.to_string(),
                },
            };
            if Instant::now() + interval > until {
                return Verification {
                    ok: false,
                    detail: format!("not verified within {deadline:?}: {}", last.detail),
                };
            }
            tokio::time::sleep(interval).await;
            interval = (interval * 2).min(Duration::from_secs(15));
        }
    }

    async fn schedule_expiry(&self, incident: &str, plan_id: &str) {
        let Ok(state) = self.plan_state(incident, plan_id).await else {
            return;
        };
        let Some(expires_at) = state.expires_at else {
            return;
        };
        let wait = (expires_at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        let engine = self.clone();
        let (incident, plan_id) = (incident.to_string(), plan_id.to_string());
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            if let Err(e) = engine.expire(&incident, &plan_id).await {
                warn!(incident, plan = plan_id, error = %e, "TTL expiry failed");
            }
        });
    }

    async fn expire(&self, incident: &str, plan_id: &str) -> Result<(), EngineError> {
        let lock = self.action_lock(incident);
        let _guard = lock.lock().await;
        let state = self.plan_state(incident, plan_id).await?;
        if matches!(
            state.status,
            PlanStatus::Contained | PlanStatus::Applied | PlanStatus::VerifyFailed
        ) {
            info!(incident, plan = plan_id, "TTL expired: reverting");
            self.revert_plan(incident, &state, RevertReason::TtlExpired)
                .await?;
        }
        Ok(())
    }

    /// Undoes every action of the incident (newest first) and cancels plans still waiting.
    pub async fn rollback(&self, incident: &str) -> Result<PlanStatus, EngineError> {
        let span = info_span!("incident", incident);
        async move {
            let lock = self.action_lock(incident);
            let _guard = lock.lock().await;
            let plans = self
                .incident(incident)
                .await
                .ok_or_else(|| EngineError::UnknownIncident(incident.to_string()))?
                .plans;
            for state in plans.iter().rev() {
                if state.status.is_terminal() {
                    continue;
                }
                if state.intent_at.is_some() {
                    self.revert_plan(incident, state, RevertReason::Rollback)
                        .await?;
                } else {
                    self.record_locked(
                        incident,
                        Event::Cancelled {
                            plan: state.plan.id.clone(),
                            reason: "rolled back before it was applied".into(),
                        },
                    )
                    .await?;
                }
            }
            self.incident(incident)
                .await
                .map(|i| i.status())
                .ok_or_else(|| EngineError::UnknownIncident(incident.to_string()))
        }
        .instrument(span)
        .await
    }

    async fn revert_plan(
        &self,
        incident: &str,
        state: &crate::incident::PlanState,
        reason: RevertReason,
    ) -> Result<(), EngineError> {
        let Some(action) = state.plan.chosen.clone() else {
            return Ok(());
        };
        let plane = self.plane(action.kind.surface())?;
        let plan = state.plan.id.clone();
        let kind = action.kind.as_str();
        if state.status != PlanStatus::Reverting {
            self.record_locked(
                incident,
                Event::RevertIntent {
                    plan: plan.clone(),
                    reason,
                },
            )
            .await?;
        }
        if !state.reverted {
            match plane.revert(&action).await {
                Ok(outcome) => {
                    self.record_locked(
                        incident,
                        Event::Reverted {
                            plan: plan.clone(),
                            outcome,
                        },
                    )
                    .await?
                }
                Err(e) => {
                    warn!(kind, error = %e, "revert failed");
                    self.inner.metrics.escalations.inc();
                    self.record_locked(
                        incident,
                        Event::RevertFailed {
                            plan,
                            error: e.to_string(),
                        },
                    )
                    .await?;
                    return Ok(());
                }
            }
        }
        let verification = self
            .poll(plane.verify_deadline(), || plane.verify_reverted(&action))
            .await;
        let result = match reason {
            RevertReason::Rollback => "reverted",
            RevertReason::TtlExpired => "expired",
        };
        if verification.ok {
            self.inner
                .metrics
                .actions
                .with_label_values(&[kind, result])
                .inc();
            self.record_locked(incident, Event::RevertVerified { plan, verification })
                .await
        } else {
            self.inner.metrics.escalations.inc();
            self.record_locked(
                incident,
                Event::RevertFailed {
                    plan,
                    error: verification.detail,
                },
            )
            .await
        }
    }

    /// Resumes whatever the journal shows in flight: intents without a result are applied again
    /// (idempotently: the control plane is read first, so nothing is applied twice), approved or
    /// automatic plans without intent are executed, reverts are finished, TTLs rescheduled.
    pub async fn recover(&self) -> Vec<String> {
        let mut resumed = Vec::new();
        for inc in self.incidents().await {
            for state in &inc.plans {
                let plan = state.plan.id.clone();
                match state.status {
                    PlanStatus::Applying | PlanStatus::Applied => {
                        resumed.push(format!("{}: resume {}", inc.id, plan));
                        self.spawn_execute(inc.id.clone(), plan);
                    }
                    PlanStatus::Reverting => {
                        resumed.push(format!("{}: finish revert of {}", inc.id, plan));
                        let (engine, id, state) = (self.clone(), inc.id.clone(), state.clone());
                        tokio::spawn(async move {
                            let lock = engine.action_lock(&id);
                            let _guard = lock.lock().await;
                            let reason = state.revert_reason.unwrap_or(RevertReason::Rollback);
                            if let Err(e) = engine.revert_plan(&id, &state, reason).await {
                                warn!(incident = id, error = %e, "resumed revert failed");
                            }
                        });
                    }
                    PlanStatus::Contained | PlanStatus::VerifyFailed => {
                        self.reassert_immediate(&inc.id, state).await;
                        if state.expires_at.is_some() {
                            self.schedule_expiry(&inc.id, &plan).await;
                        }
                    }
                    _ => {}
                }
            }
        }
        for line in &resumed {
            info!(what = %line, "recovered from journal");
        }
        resumed
    }

    /// Enforcement points Firebreak owns (gateway, feed, eBPF maps) may keep their state in
    /// memory: after a restart, apply their actions again (idempotently) from the journal.
    async fn reassert_immediate(&self, incident: &str, state: &crate::incident::PlanState) {
        let Some(action) = &state.plan.chosen else {
            return;
        };
        if action.enforcement != crate::plan::Enforcement::Immediate {
            return;
        }
        let result = match self.plane(action.kind.surface()) {
            Ok(plane) => plane.apply(action).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(outcome) => {
                info!(incident, plan = %state.plan.id, detail = %outcome.detail, "re-asserted after restart")
            }
            Err(error) => {
                self.inner.metrics.escalations.inc();
                warn!(incident, plan = %state.plan.id, %error, "cannot re-assert after restart");
            }
        }
    }

    /// Journals a call refused at an enforcement point Firebreak owns, for the audit trail.
    pub async fn record_refused_call(
        &self,
        incident: &str,
        plan: &str,
        agent: &str,
        call: &str,
    ) -> Result<(), EngineError> {
        self.record_locked(
            incident,
            Event::CallRefused {
                plan: plan.to_string(),
                agent: agent.to_string(),
                call: call.to_string(),
            },
        )
        .await
    }

    /// Whether the agent has an open incident (its envelope is frozen meanwhile).
    pub async fn has_open_incident(&self, agent: &crate::agent::AgentRef) -> bool {
        self.inner.incidents.lock().await.has_open_incident(agent)
    }
}

/// A fresh incident id: unique per (agent, dimension, alert, instant).
fn incident_id(alert: &Alert) -> String {
    let mut h = Sha256::new();
    h.update(alert.agent.key().0.as_bytes());
    h.update(alert.dimension.as_str().as_bytes());
    h.update(alert.id.as_bytes());
    h.update(
        Utc::now()
            .timestamp_nanos_opt()
            .unwrap_or_default()
            .to_le_bytes(),
    );
    format!("inc-{}", &hex::encode(h.finalize())[..12])
}

/// Everything the pure decision needs.
pub struct DecideInput<'a> {
    pub incident: &'a str,
    pub index: usize,
    pub alert: &'a Alert,
    pub envelope_version: u64,
    pub envelope_status: EnvelopeStatus,
    pub candidates: Vec<Candidate>,
    /// Control planes that could not be read: they escalate, never silently shrink the plan.
    pub problems: Vec<String>,
    pub request: &'a Request,
}

/// Candidates → plan: choose, apply the runbook and the safety rules, reserve budget. No I/O.
pub fn decide(
    runbooks: &Runbooks,
    budget: &StdMutex<Budget>,
    metrics: &Metrics,
    input: DecideInput<'_>,
) -> Plan {
    let (chosen, candidates) = planner::choose(input.candidates);
    let decision = runbooks.decide(input.alert, input.envelope_status, chosen.as_ref());
    let (mut mode, mut reason, mut escalation) =
        (decision.mode, decision.reason, decision.escalation);
    if !input.problems.is_empty() {
        let problems = input.problems.join("; ");
        escalation = Some(match escalation {
            Some(e) => format!("{e}; {problems}"),
            None => problems,
        });
    }
    match input.request {
        Request::DryRun => {
            mode = Mode::DryRun;
            reason = "dry run requested: nothing is changed".into();
        }
        Request::Operator(by) => {
            mode = Mode::Approve;
            reason = format!("contained by hand by {by}");
        }
        Request::Runbook if mode == Mode::Auto && chosen.is_some() => {
            let taken = match budget.lock() {
                Ok(mut b) => b.try_take(
                    &input.alert.agent.namespace,
                    &input.alert.agent.key().0,
                    Instant::now(),
                ),
                Err(_) => Err("the budget is unavailable".to_string()),
            };
            if let Err(spent) = taken {
                metrics.budget_exhausted.inc();
                mode = Mode::Approve;
                reason = format!("{reason}, but {spent}");
                escalation = Some(spent);
            }
        }
        Request::Runbook => {}
    }
    Plan {
        id: format!("{}-p{}", input.incident, input.index),
        incident: input.incident.to_string(),
        alert: input.alert.id.clone(),
        agent: input.alert.agent.clone(),
        dimension: input.alert.dimension,
        parameter: input.alert.parameter.clone(),
        envelope_version: Some(input.envelope_version),
        mode,
        mode_reason: reason,
        chosen,
        candidates,
        escalation,
        ttl_seconds: decision.ttl.map(|d| d.as_secs()),
        hash: String::new(),
    }
    .seal()
}
