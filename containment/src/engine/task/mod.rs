//! One task per incident (docs/ARCHITECTURE.md §Engine): it alone journals its incident's
//! events, so nothing about one incident interleaves, and nothing it does holds a lock another
//! incident waits on. It observes, plans, applies and verifies; waiting is a timer in its
//! [`Schedule`], and a command (a rollback, say) pre-empts a check in flight.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::{info, info_span, warn, Instrument};

use super::policy::Next;
use super::schedule::{Due, Schedule};
use super::{EngineError, Fault, Progress, Shared, Submitted};
use crate::alert::Alert;
use crate::guard::Request;
use crate::ids::{IncidentId, PlanId};
use crate::incident::{Call, Event, Incident, PlanState};
use crate::journal::NewEntry;
use crate::plan::{Candidate, Enforcement, Plan};
use crate::plane::{Change, Check, DynPlane, PlaneError, Verification};
use crate::state::{Phase, PlanStatus, RevertReason};

type Reply<T> = oneshot::Sender<Result<T, EngineError>>;

mod drive;

/// What an incident's task is asked to do.
pub(crate) enum Command {
    Alert {
        alert: Box<Alert>,
        request: Request,
        reply: Reply<Submitted>,
        /// The intake permit: held by the task until the alert is planned, so a sender that
        /// hangs up does not free its place while the planning goes on.
        intake: Option<tokio::sync::OwnedSemaphorePermit>,
    },
    Approve {
        hash: String,
        by: String,
        reply: Reply<PlanId>,
    },
    /// Answered once every undo has settled (verified or failed).
    Rollback {
        by: Option<String>,
        reply: Reply<PlanStatus>,
    },
    /// A known alert id arrived with another body.
    Conflict {
        alert: String,
        source: String,
        known_digest: String,
        new_digest: String,
    },
    /// `plan`: the plan whose enforcement refused it; `None` when the enforcement point knows
    /// only the incident (the policy feed): the incident's latest plan in force.
    CallRefused {
        plan: Option<PlanId>,
        agent: String,
        call: String,
    },
    /// After a restart: plan what was received but never planned, take every plan to its next
    /// step, re-assert what in-process enforcement points lost.
    Resume,
}

/// Whether a step left the plan ready for its next step, or waiting.
enum Flow {
    Continue,
    Wait,
}

pub(crate) struct Task {
    shared: Weak<Shared>,
    id: IncidentId,
    incident: Option<Incident>,
    view: watch::Sender<Option<Arc<Incident>>>,
    rx: mpsc::UnboundedReceiver<Command>,
    /// Commands that arrived while a check was in flight (and pre-empted it).
    pending: VecDeque<Command>,
    schedule: Schedule,
    /// Failed attempts of the current call, per plan (checks and changes).
    attempts: HashMap<PlanId, u32>,
    /// Re-plans after conflicts, per alert.
    replans: HashMap<String, u32>,
    rollback_waiters: Vec<Reply<PlanStatus>>,
}

/// The answer an alert gets from the incident as it stands: the plan made for it (or, for a
/// distinct alert a live plan already covers, that plan).
pub(crate) fn answer(
    incident: &Incident,
    plan: Option<&PlanState>,
    deduplicated: bool,
) -> Submitted {
    Submitted {
        incident: incident.id.clone(),
        deduplicated,
        status: plan.map_or(Progress::Planning, |p| Progress::Plan(p.status())),
        plan: plan.map(|p| p.plan.clone()),
    }
}

impl Task {
    pub fn spawn(
        shared: &Arc<Shared>,
        id: IncidentId,
        rx: mpsc::UnboundedReceiver<Command>,
        view: watch::Sender<Option<Arc<Incident>>>,
    ) {
        let incident = view.borrow().as_deref().cloned();
        let span = info_span!("incident", incident = %id);
        let task = Task {
            shared: Arc::downgrade(shared),
            id,
            incident,
            view,
            rx,
            pending: VecDeque::new(),
            schedule: Schedule::default(),
            attempts: HashMap::new(),
            replans: HashMap::new(),
            rollback_waiters: Vec::new(),
        };
        shared.tasks.spawn(task.run().instrument(span));
    }

    async fn run(mut self) {
        loop {
            let command = match self.pending.pop_front() {
                Some(c) => Some(c),
                None => {
                    let next = self.schedule.next();
                    tokio::select! {
                        c = self.rx.recv() => match c {
                            Some(c) => Some(c),
                            None => return,
                        },
                        () = sleep_until(next) => None,
                    }
                }
            };
            let Some(shared) = self.shared.upgrade() else {
                return;
            };
            match command {
                Some(c) => self.handle(&shared, c).await,
                None => self.fire(&shared).await,
            }
            self.answer_rollbacks();
        }
    }

    async fn handle(&mut self, shared: &Shared, command: Command) {
        match command {
            Command::Alert {
                alert,
                request,
                reply,
                intake,
            } => {
                self.on_alert(shared, *alert, request, reply).await;
                drop(intake);
            }
            Command::Approve { hash, by, reply } => {
                let result = self.approve(shared, &hash, &by).await;
                let approved = result.as_ref().ok().cloned();
                let _ = reply.send(result);
                if let Some(plan) = approved {
                    self.drive(shared, &plan).await;
                }
            }
            Command::Rollback { by, reply } => self.rollback(shared, by, reply).await,
            Command::Conflict {
                alert,
                source,
                known_digest,
                new_digest,
            } => {
                let event = Event::AlertConflict {
                    alert,
                    source,
                    known_digest,
                    new_digest,
                };
                if let Err(e) = self.record(shared, event).await {
                    warn!(error = %e, "cannot journal an alert conflict");
                }
            }
            Command::CallRefused { plan, agent, call } => {
                let in_force = || {
                    self.incident.as_ref().and_then(|incident| {
                        incident
                            .current_plans()
                            .filter(|p| {
                                matches!(p.status(), PlanStatus::Applied | PlanStatus::Contained)
                            })
                            .last()
                            .map(|p| p.plan.id.clone())
                    })
                };
                let Some(plan) = plan.or_else(in_force) else {
                    warn!(
                        agent,
                        call, "a refused call names no plan in force; not journaled"
                    );
                    return;
                };
                let event = Event::CallRefused { plan, agent, call };
                match self.record(shared, event).await {
                    Ok(()) => shared.metrics.refused_calls.inc(),
                    Err(e) => warn!(error = %e, "cannot journal a refused call"),
                }
            }
            Command::Resume => self.resume(shared).await,
        }
    }

    /// Runs every timer that is due (stopping early when a command pre-empted one).
    async fn fire(&mut self, shared: &Shared) {
        while self.pending.is_empty() {
            let Some(due) = self.schedule.pop_due(Instant::now()) else {
                return;
            };
            match due {
                Due::Step(plan) => self.drive(shared, &plan).await,
                Due::Expire(plan) => self.expire(shared, &plan).await,
            }
        }
    }

    // ---------------------------------------------------------------------------------------
    // Alerts and plans
    // ---------------------------------------------------------------------------------------

    async fn on_alert(
        &mut self,
        shared: &Shared,
        alert: Alert,
        request: Request,
        reply: Reply<Submitted>,
    ) {
        // A distinct alert for what a live plan already covers carries nothing new.
        let live = match (&self.incident, &request) {
            (Some(incident), Request::Runbook | Request::Operator(_)) => incident
                .live_plan_for(&alert.parameter)
                .map(|p| p.plan.id.clone()),
            _ => None,
        };
        if let Some(plan) = live {
            shared
                .metrics
                .alerts
                .with_label_values(&["deduplicated"])
                .inc();
            let event = Event::AlertDeduplicated {
                alert: alert.id.clone(),
                plan: plan.clone(),
            };
            let result = self.record(shared, event).await.and_then(|()| {
                self.incident
                    .as_ref()
                    .map(|i| answer(i, i.plan(&plan), true))
                    .ok_or_else(|| EngineError::UnknownIncident(self.id.clone()))
            });
            let _ = reply.send(result);
            return;
        }
        let received = Event::AlertReceived {
            alert: Box::new(alert.clone()),
            rehearsal: request == Request::DryRun,
        };
        if let Err(e) = self.record(shared, received).await {
            shared.router.forget(&alert);
            let _ = reply.send(Err(e));
            return;
        }
        shared.metrics.alerts.with_label_values(&["accepted"]).inc();
        match self.plan_alert(shared, &alert, &request).await {
            Ok(plan) => {
                let immediate = plan
                    .chosen
                    .as_ref()
                    .is_some_and(|c| c.enforcement == Enforcement::Immediate);
                let due = self.phase(&plan.id) == Some(Phase::Due);
                // Enforcement Firebreak owns is in force before the answer says so.
                if immediate && due {
                    self.drive(shared, &plan.id).await;
                }
                let answered = self
                    .incident
                    .as_ref()
                    .map(|i| answer(i, i.plan(&plan.id), false))
                    .ok_or_else(|| EngineError::UnknownIncident(self.id.clone()));
                let _ = reply.send(answered);
                if due && !immediate {
                    self.drive(shared, &plan.id).await;
                }
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    /// Observes every plane on the alert's route, decides, and journals the plan (and, for an
    /// operator's request, their approval).
    async fn plan_alert(
        &mut self,
        shared: &Shared,
        alert: &Alert,
        request: &Request,
    ) -> Result<Plan, EngineError> {
        let index = self.incident.as_ref().map_or(0, |i| i.plans.len()) + 1;
        let plan = shared
            .plan(&self.id, PlanId::nth(&self.id, index), alert, request)
            .await?;
        info!(plan = %plan.id, mode = plan.mode.as_str(),
              chosen = ?plan.chosen.as_ref().map(|c| c.kind.to_string()), "planned");
        shared
            .metrics
            .plans
            .with_label_values(&[plan.mode.as_str()])
            .inc();
        self.record(
            shared,
            Event::Planned {
                plan: Box::new(plan.clone()),
            },
        )
        .await?;
        if let Some(reason) = &plan.escalation {
            shared.metrics.escalations.inc();
            warn!(reason = %reason, "escalated");
            let event = Event::Escalated {
                plan: Some(plan.id.clone()),
                reason: reason.clone(),
            };
            self.record(shared, event).await?;
        }
        if let (Request::Operator(by), Some(_)) = (request, &plan.chosen) {
            let event = Event::Approved {
                plan: plan.id.clone(),
                hash: plan.hash.clone(),
                by: by.clone(),
            };
            self.record(shared, event).await?;
        }
        Ok(plan)
    }

    async fn approve(
        &mut self,
        shared: &Shared,
        hash: &str,
        by: &str,
    ) -> Result<PlanId, EngineError> {
        let incident = self
            .incident
            .as_ref()
            .ok_or_else(|| EngineError::UnknownIncident(self.id.clone()))?;
        if let Some(done) = incident
            .plans
            .iter()
            .find(|p| p.plan.hash == hash && p.approved_by.is_some())
        {
            return Err(EngineError::AlreadyApproved {
                plan: done.plan.id.clone(),
                by: done.approved_by.clone().unwrap_or_default(),
            });
        }
        let awaiting: Vec<&PlanState> = incident
            .plans
            .iter()
            .filter(|p| p.phase == Phase::AwaitingApproval)
            .collect();
        let Some(plan) = awaiting.iter().find(|p| p.plan.hash == hash) else {
            return Err(match awaiting.last() {
                Some(current) => EngineError::PlanHashMismatch {
                    given: hash.to_string(),
                    current: current.plan.hash.clone(),
                },
                None => EngineError::NothingToApprove(self.id.clone()),
            });
        };
        let plan = plan.plan.id.clone();
        let event = Event::Approved {
            plan: plan.clone(),
            hash: hash.to_string(),
            by: by.to_string(),
        };
        self.record(shared, event).await?;
        info!(plan = %plan, by, "approved");
        Ok(plan)
    }

    /// After a conflict: a new plan for the same alert, from a fresh observation.
    async fn replan(&mut self, shared: &Shared, failed: &PlanId) {
        let Some(state) = self.state(failed) else {
            return;
        };
        let alert_id = state.plan.alert.clone();
        let count = self.replans.entry(alert_id.clone()).or_default();
        *count += 1;
        if *count > shared.config.errors.replans {
            let reason = format!(
                "the target kept changing: {} plans for alert {alert_id} met a conflict",
                shared.config.errors.replans + 1
            );
            shared.metrics.escalations.inc();
            let event = Event::Escalated {
                plan: Some(failed.clone()),
                reason,
            };
            if let Err(e) = self.record(shared, event).await {
                warn!(error = %e, "cannot journal an escalation");
            }
            return;
        }
        let Some(alert) = self
            .incident
            .as_ref()
            .and_then(|i| i.alert(&alert_id))
            .cloned()
        else {
            return;
        };
        // The runbook decides again: a human approved the old plan, not this one.
        match self.plan_alert(shared, &alert, &Request::Runbook).await {
            Ok(plan) => {
                shared.metrics.replans.inc();
                self.schedule.arm(Instant::now(), Due::Step(plan.id));
            }
            Err(e) => warn!(error = %e, "re-plan failed"),
        }
    }

    // ---------------------------------------------------------------------------------------
    // The journal and the view
    // ---------------------------------------------------------------------------------------

    /// Journals `event` for this incident, folds it in, and publishes the new view.
    async fn record(&mut self, shared: &Shared, event: Event) -> Result<(), EngineError> {
        let body = event
            .to_body()
            .map_err(|e| EngineError::Encode(e.to_string()))?;
        if self.incident.is_none() && !matches!(event, Event::AlertReceived { .. }) {
            return Err(EngineError::UnknownIncident(self.id.clone()));
        }
        let entry = shared
            .journal
            .append(NewEntry {
                incident: self.id.to_string(),
                kind: event.kind().to_string(),
                body,
            })
            .await?;
        let incident = match (&mut self.incident, &event) {
            (Some(incident), _) => incident,
            (None, Event::AlertReceived { alert, .. }) => {
                self.incident
                    .insert(Incident::open(self.id.clone(), entry.at, alert))
            }
            (None, _) => return Err(EngineError::UnknownIncident(self.id.clone())),
        };
        incident
            .apply(entry.at, &event)
            .map_err(|e| EngineError::History {
                seq: entry.seq,
                reason: e.to_string(),
            })?;
        self.view.send_replace(Some(Arc::new(incident.clone())));
        Ok(())
    }

    fn state(&self, plan: &PlanId) -> Option<&PlanState> {
        self.incident.as_ref()?.plan(plan)
    }

    fn phase(&self, plan: &PlanId) -> Option<Phase> {
        self.state(plan).map(|s| s.phase.clone())
    }

    /// The plan's action and the plane registered under its key; a plan whose plane is gone
    /// fails (or its revert fails) with the reason.
    async fn action_and_plane(
        &mut self,
        shared: &Shared,
        plan: &PlanId,
    ) -> Option<(Candidate, Arc<dyn DynPlane>)> {
        let state = self.state(plan)?;
        let action = state.plan.chosen.clone()?;
        let reverting = matches!(state.phase, Phase::Reverting { .. });
        match shared.planes.get(&action.plane) {
            Some(plane) => Some((action, plane.clone())),
            None => {
                let error = format!(
                    "no control plane is registered under {}; configure it, then roll back or re-plan",
                    action.plane
                );
                let event = if reverting {
                    Event::RevertFailed {
                        plan: plan.clone(),
                        error,
                    }
                } else {
                    Event::Failed {
                        plan: plan.clone(),
                        error,
                    }
                };
                let _ = self.record(shared, event).await;
                None
            }
        }
    }
}

fn flow(recorded: Result<(), EngineError>) -> Flow {
    match recorded {
        Ok(()) => Flow::Continue,
        Err(e) => {
            warn!(error = %e, "cannot journal; the plan waits");
            Flow::Wait
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// The tokio instant of a wall-clock time (now, if it has passed).
fn instant_at(at: DateTime<Utc>) -> Instant {
    let wait = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
    Instant::now() + wait
}

impl Shared {
    /// A plane call under the error policy's deadline: no answer in time is a transient fault.
    pub(crate) async fn bounded<T>(
        &self,
        call: impl Future<Output = Result<T, PlaneError>>,
    ) -> Result<T, PlaneError> {
        let limit = self.config.errors.call_timeout;
        match tokio::time::timeout(limit, call).await {
            Ok(result) => result,
            Err(_) => Err(PlaneError::Unreachable {
                plane: "control plane",
                detail: format!("no answer within {limit:?}"),
            }),
        }
    }

    fn count_action(&self, action: &Candidate, result: &str) {
        self.metrics
            .actions
            .with_label_values(&[action.kind.as_str(), result])
            .inc();
    }

    fn count_fault(&self, error: &PlaneError) {
        self.metrics
            .plane_faults
            .with_label_values(&[error.plane(), error.kind().as_str()])
            .inc();
    }
}
