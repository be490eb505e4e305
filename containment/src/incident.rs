//! Incidents as a projection of the journal: every state change is an [`Event`], journaled first,
//! then folded into the view through the plan state machine ([`crate::state`]). Restart = fold
//! the journal again; an event the state machine refuses stops the fold with its seq named.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::agent::AgentRef;
use crate::alert::{Alert, Dimension, Parameter};
use crate::ids::{IncidentId, PlanId};
use crate::plan::{Candidate, Plan};
use crate::plane::{Change, Check, FaultKind, Outcome, Verification};
use crate::state::{IllegalTransition, Phase};
pub use crate::state::{PlanStatus, RevertReason};

/// Everything that happens to an incident, in journal order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "kebab-case",
    rename_all_fields = "camelCase"
)]
pub enum Event {
    AlertReceived {
        alert: Box<Alert>,
        /// Sent by `contain --dry-run`: never deduplicated against, never remembered.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        rehearsal: bool,
    },
    AlertDeduplicated {
        alert: String,
        plan: PlanId,
    },
    /// A known alert id arrived with another body: refused, and recorded here.
    AlertConflict {
        alert: String,
        source: String,
        known_digest: String,
        new_digest: String,
    },
    Planned {
        plan: Box<Plan>,
    },
    Escalated {
        plan: Option<PlanId>,
        reason: String,
    },
    Approved {
        plan: PlanId,
        hash: String,
        by: String,
    },
    /// Journaled before the first mutating call; `action.spec` carries the pre-image.
    Intent {
        plan: PlanId,
        action: Box<Candidate>,
    },
    Applied {
        plan: PlanId,
        outcome: Outcome,
        /// Checks run until this instant; after it the plan reads verify-failed.
        verify_by: DateTime<Utc>,
    },
    /// A plane call failed; `retry_at` when the error policy retries it.
    PlaneFault {
        plan: PlanId,
        call: Call,
        fault: FaultKind,
        error: String,
        attempt: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_at: Option<DateTime<Utc>>,
    },
    Verified {
        plan: PlanId,
        verification: Verification,
    },
    VerifyFailed {
        plan: PlanId,
        detail: String,
    },
    Failed {
        plan: PlanId,
        error: String,
    },
    RevertIntent {
        plan: PlanId,
        reason: RevertReason,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    Reverted {
        plan: PlanId,
        outcome: Outcome,
        verify_by: DateTime<Utc>,
    },
    RevertVerified {
        plan: PlanId,
        verification: Verification,
    },
    RevertFailed {
        plan: PlanId,
        error: String,
    },
    Cancelled {
        plan: PlanId,
        reason: String,
    },
    /// An enforcement point Firebreak owns refused a call because of this plan (audit trail).
    CallRefused {
        plan: PlanId,
        agent: String,
        call: String,
    },
}

/// Which plane call a fault is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Call {
    Change(Change),
    Check(Check),
}

impl Call {
    pub fn as_str(self) -> &'static str {
        match self {
            Call::Change(Change::Apply) => "apply",
            Call::Change(Change::Revert) => "revert",
            Call::Check(Check::Applied) => "verify",
            Call::Check(Check::Reverted) => "verify-reverted",
        }
    }
}

impl Event {
    pub fn kind(&self) -> &'static str {
        match self {
            Event::AlertReceived { .. } => "alert-received",
            Event::AlertDeduplicated { .. } => "alert-deduplicated",
            Event::AlertConflict { .. } => "alert-conflict",
            Event::Planned { .. } => "planned",
            Event::Escalated { .. } => "escalated",
            Event::Approved { .. } => "approved",
            Event::Intent { .. } => "intent",
            Event::Applied { .. } => "applied",
            Event::PlaneFault { .. } => "plane-fault",
            Event::Verified { .. } => "verified",
            Event::VerifyFailed { .. } => "verify-failed",
            Event::Failed { .. } => "failed",
            Event::RevertIntent { .. } => "revert-intent",
            Event::Reverted { .. } => "reverted",
            Event::RevertVerified { .. } => "revert-verified",
            Event::RevertFailed { .. } => "revert-failed",
            Event::Cancelled { .. } => "cancelled",
            Event::CallRefused { .. } => "call-refused",
        }
    }

    /// The journal stores `kind` beside the body; this puts them back together.
    pub fn from_journal(kind: &str, body: &serde_json::Value) -> Result<Event, serde_json::Error> {
        let mut value = body.clone();
        if let Some(map) = value.as_object_mut() {
            map.insert("kind".into(), kind.into());
        }
        serde_json::from_value(value)
    }

    pub fn to_body(&self) -> Result<serde_json::Value, serde_json::Error> {
        let mut value = serde_json::to_value(self)?;
        if let Some(map) = value.as_object_mut() {
            map.remove("kind");
        }
        Ok(value)
    }

    /// The plan the event is about, when it is about one.
    pub fn plan(&self) -> Option<&PlanId> {
        match self {
            Event::AlertDeduplicated { plan, .. }
            | Event::Approved { plan, .. }
            | Event::Intent { plan, .. }
            | Event::Applied { plan, .. }
            | Event::PlaneFault { plan, .. }
            | Event::Verified { plan, .. }
            | Event::VerifyFailed { plan, .. }
            | Event::Failed { plan, .. }
            | Event::RevertIntent { plan, .. }
            | Event::Reverted { plan, .. }
            | Event::RevertVerified { plan, .. }
            | Event::RevertFailed { plan, .. }
            | Event::Cancelled { plan, .. }
            | Event::CallRefused { plan, .. } => Some(plan),
            Event::Planned { plan } => Some(&plan.id),
            Event::AlertReceived { .. } | Event::AlertConflict { .. } | Event::Escalated { .. } => {
                None
            }
        }
    }
}

/// One plan, its phase, and what happened to it, for display.
#[derive(Debug, Clone)]
pub struct PlanState {
    pub plan: Plan,
    pub phase: Phase,
    pub approved_by: Option<String>,
    pub intent_at: Option<DateTime<Utc>>,
    pub applied_at: Option<DateTime<Utc>>,
    pub verified_at: Option<DateTime<Utc>>,
    pub reverted_at: Option<DateTime<Utc>>,
    /// The last thing the control plane said about it.
    pub detail: Option<String>,
    pub duplicates: u64,
    /// Calls refused at an enforcement point Firebreak owns because of this plan.
    pub refused_calls: u64,
    /// Plane calls that failed (each journaled as a `plane-fault`).
    pub faults: u32,
}

impl PlanState {
    pub fn new(plan: Plan) -> PlanState {
        PlanState {
            phase: Phase::initial(&plan),
            plan,
            approved_by: None,
            intent_at: None,
            applied_at: None,
            verified_at: None,
            reverted_at: None,
            detail: None,
            duplicates: 0,
            refused_calls: 0,
            faults: 0,
        }
    }

    pub fn status(&self) -> PlanStatus {
        self.phase.status()
    }

    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        match self.phase {
            Phase::Contained { expires_at } => expires_at,
            _ => None,
        }
    }

    /// Moves the plan by `event` (which the state machine must allow) and records its details.
    fn advance(&mut self, at: DateTime<Utc>, event: &Event) -> Result<(), IllegalTransition> {
        self.phase = self.phase.on(event, &self.plan, at)?;
        match event {
            Event::AlertDeduplicated { .. } => self.duplicates += 1,
            Event::CallRefused { .. } => self.refused_calls += 1,
            Event::Approved { by, .. } => self.approved_by = Some(by.clone()),
            Event::Intent { .. } => self.intent_at = Some(at),
            Event::Applied { outcome, .. } => {
                self.applied_at = Some(at);
                self.detail = Some(outcome.detail.clone());
            }
            Event::PlaneFault { error, .. } => {
                self.faults += 1;
                self.detail = Some(error.clone());
            }
            Event::Verified { verification, .. } => {
                self.verified_at = Some(at);
                self.detail = Some(verification.detail.clone());
            }
            Event::Reverted { outcome, .. } => {
                self.reverted_at = Some(at);
                self.detail = Some(outcome.detail.clone());
            }
            Event::RevertVerified { verification, .. } => {
                self.detail = Some(verification.detail.clone())
            }
            Event::VerifyFailed { detail, .. }
            | Event::Failed { error: detail, .. }
            | Event::RevertFailed { error: detail, .. }
            | Event::Cancelled { reason: detail, .. } => self.detail = Some(detail.clone()),
            _ => {}
        }
        Ok(())
    }
}

/// The API's view of a plan: its status and the data of its phase.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PlanView<'a> {
    plan: &'a Plan,
    status: PlanStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    approved_by: &'a Option<String>,
    intent_at: Option<DateTime<Utc>>,
    applied_at: Option<DateTime<Utc>>,
    verified_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reverted_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    verify_by: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    revert_reason: Option<RevertReason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: &'a Option<String>,
    duplicates: u64,
    refused_calls: u64,
    faults: u32,
}

impl Serialize for PlanState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (verify_by, revert_reason) = match &self.phase {
            Phase::Applied { verify_by } => (Some(*verify_by), None),
            Phase::Reverting { reason, verify_by } => (*verify_by, Some(*reason)),
            Phase::RevertFailed { reason } => (None, Some(*reason)),
            _ => (None, None),
        };
        PlanView {
            plan: &self.plan,
            status: self.status(),
            approved_by: &self.approved_by,
            intent_at: self.intent_at,
            applied_at: self.applied_at,
            verified_at: self.verified_at,
            reverted_at: self.reverted_at,
            verify_by,
            expires_at: self.expires_at(),
            revert_reason,
            detail: &self.detail,
            duplicates: self.duplicates,
            refused_calls: self.refused_calls,
            faults: self.faults,
        }
        .serialize(s)
    }
}

/// One incident: alerts about one agent and one dimension, and the plans made for them.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Incident {
    pub id: IncidentId,
    pub agent: AgentRef,
    pub dimension: Dimension,
    pub opened_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Every alert received, as received (with its evidence).
    pub alerts: Vec<Alert>,
    pub plans: Vec<PlanState>,
    pub escalations: Vec<String>,
}

/// An event the fold cannot accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FoldError {
    #[error("{event} names plan {plan}, which incident {incident} does not have")]
    UnknownPlan {
        incident: IncidentId,
        plan: PlanId,
        event: &'static str,
    },
    #[error("{event} arrived before the incident's first alert-received")]
    NoIncident { event: &'static str },
    #[error("plan {plan}: {transition}")]
    Illegal {
        plan: PlanId,
        transition: IllegalTransition,
    },
    #[error("plan {plan} is planned twice")]
    DuplicatePlan { plan: PlanId },
}

impl Incident {
    /// A new incident opened by `alert` at `at`.
    pub fn open(id: IncidentId, at: DateTime<Utc>, alert: &Alert) -> Incident {
        Incident {
            id,
            agent: alert.agent.clone(),
            dimension: alert.dimension(),
            opened_at: at,
            updated_at: at,
            alerts: Vec::new(),
            plans: Vec::new(),
            escalations: Vec::new(),
        }
    }

    /// The plans that speak for the incident now: a plan that met a conflict is superseded by
    /// the re-plan made for the same alert, and stays in `plans` as history only.
    pub fn current_plans(&self) -> impl Iterator<Item = &PlanState> {
        self.plans.iter().enumerate().filter_map(|(i, p)| {
            let superseded = self.plans[i + 1..]
                .iter()
                .any(|later| later.plan.alert == p.plan.alert);
            (!superseded).then_some(p)
        })
    }

    /// The incident's status: the most urgent of its current plans'.
    pub fn status(&self) -> PlanStatus {
        const URGENCY: [PlanStatus; 13] = [
            PlanStatus::Failed,
            PlanStatus::RevertFailed,
            PlanStatus::VerifyFailed,
            PlanStatus::Applying,
            PlanStatus::Reverting,
            PlanStatus::AwaitingApproval,
            PlanStatus::Applied,
            PlanStatus::Contained,
            PlanStatus::Escalated,
            PlanStatus::Expired,
            PlanStatus::Reverted,
            PlanStatus::Cancelled,
            PlanStatus::DryRun,
        ];
        URGENCY
            .iter()
            .copied()
            .find(|s| self.current_plans().any(|p| p.status() == *s))
            .unwrap_or(PlanStatus::Escalated)
    }

    /// Open = something may still happen: dedupe attaches new alerts to it, the envelope stays frozen.
    pub fn is_open(&self) -> bool {
        self.plans.iter().any(|p| !p.status().is_terminal())
    }

    pub fn plan(&self, id: &PlanId) -> Option<&PlanState> {
        self.plans.iter().find(|p| &p.plan.id == id)
    }

    /// The live plan for this parameter, if any (one that acts or waits to act).
    pub fn live_plan_for(&self, parameter: &Parameter) -> Option<&PlanState> {
        self.plans.iter().find(|p| {
            &p.plan.parameter == parameter
                && !p.status().is_terminal()
                && p.status() != PlanStatus::Escalated
        })
    }

    /// The plan made for one alert id.
    pub fn plan_for_alert(&self, alert: &str) -> Option<&PlanState> {
        self.plans.iter().rev().find(|p| p.plan.alert == alert)
    }

    pub fn alert(&self, id: &str) -> Option<&Alert> {
        self.alerts.iter().find(|a| a.id == id)
    }

    /// Alerts received but never planned (a crash between the two).
    pub fn unplanned(&self) -> impl Iterator<Item = &Alert> {
        self.alerts
            .iter()
            .filter(|a| self.plan_for_alert(&a.id).is_none())
    }

    /// Folds one journaled event into the incident, through the state machine.
    pub fn apply(&mut self, at: DateTime<Utc>, event: &Event) -> Result<(), FoldError> {
        self.updated_at = at;
        match event {
            Event::AlertReceived { alert, .. } => self.alerts.push((**alert).clone()),
            Event::AlertConflict { .. } => {}
            Event::Escalated { reason, .. } => self.escalations.push(reason.clone()),
            Event::Planned { plan } => {
                if self.plan(&plan.id).is_some() {
                    return Err(FoldError::DuplicatePlan {
                        plan: plan.id.clone(),
                    });
                }
                self.plans.push(PlanState::new((**plan).clone()));
            }
            other => {
                let Some(plan_id) = other.plan() else {
                    return Ok(());
                };
                let incident = self.id.clone();
                let state = self
                    .plans
                    .iter_mut()
                    .find(|p| &p.plan.id == plan_id)
                    .ok_or_else(|| FoldError::UnknownPlan {
                        incident,
                        plan: plan_id.clone(),
                        event: other.kind(),
                    })?;
                state
                    .advance(at, other)
                    .map_err(|transition| FoldError::Illegal {
                        plan: plan_id.clone(),
                        transition,
                    })?;
            }
        }
        Ok(())
    }
}
