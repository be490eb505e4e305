//! Incidents as a projection of the journal: every state change is an [`Event`], journaled first,
//! then folded into the in-memory view. Restart = fold the journal again.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::agent::AgentRef;
use crate::alert::{Alert, Dimension, Parameter};
use crate::plan::{Candidate, Mode, Plan};
use crate::surface::{Outcome, Verification};

/// Why an action was undone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RevertReason {
    Rollback,
    TtlExpired,
}

/// Everything that happens to an incident, in journal order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Event {
    AlertReceived {
        alert: Box<Alert>,
    },
    AlertDeduplicated {
        alert: String,
        plan: String,
    },
    Planned {
        plan: Box<Plan>,
    },
    Escalated {
        plan: Option<String>,
        reason: String,
    },
    Approved {
        plan: String,
        hash: String,
        by: String,
    },
    /// Journaled before the first mutating call; `action.spec` carries the pre-image.
    Intent {
        plan: String,
        action: Box<Candidate>,
    },
    Applied {
        plan: String,
        outcome: Outcome,
    },
    Verified {
        plan: String,
        verification: Verification,
    },
    VerifyFailed {
        plan: String,
        detail: String,
    },
    Failed {
        plan: String,
        error: String,
    },
    RevertIntent {
        plan: String,
        reason: RevertReason,
    },
    Reverted {
        plan: String,
        outcome: Outcome,
    },
    RevertVerified {
        plan: String,
        verification: Verification,
    },
    RevertFailed {
        plan: String,
        error: String,
    },
    Cancelled {
        plan: String,
        reason: String,
    },
    /// An enforcement point Firebreak owns refused a call because of this plan (audit trail).
    CallRefused {
        plan: String,
        agent: String,
        call: String,
    },
}

impl Event {
    pub fn kind(&self) -> &'static str {
        match self {
            Event::AlertReceived { .. } => "alert-received",
            Event::AlertDeduplicated { .. } => "alert-deduplicated",
            Event::Planned { .. } => "planned",
            Event::Escalated { .. } => "escalated",
            Event::Approved { .. } => "approved",
            Event::Intent { .. } => "intent",
            Event::Applied { .. } => "applied",
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

    pub fn to_body(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        if let Some(map) = value.as_object_mut() {
            map.remove("kind");
        }
        value
    }
}

/// Where one plan stands. The public names are the `status` strings of the HTTP API and CLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlanStatus {
    DryRun,
    /// No candidate blocks the breach (or the control plane could not be read): a human looks.
    Escalated,
    AwaitingApproval,
    /// Approved or automatic, intent not yet journaled or apply in flight.
    Applying,
    /// Applied; verification still polling.
    Applied,
    Contained,
    VerifyFailed,
    Failed,
    Reverting,
    Reverted,
    Expired,
    Cancelled,
}

impl PlanStatus {
    /// Statuses after which nothing more happens to the plan.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            PlanStatus::DryRun | PlanStatus::Reverted | PlanStatus::Expired | PlanStatus::Cancelled
        )
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanState {
    pub plan: Plan,
    pub status: PlanStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    /// Set once the intent is journaled: from then on the action may exist at the control plane.
    pub intent_at: Option<DateTime<Utc>>,
    pub applied_at: Option<DateTime<Utc>>,
    pub verified_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revert_reason: Option<RevertReason>,
    /// Whether the revert was journaled as done at the control plane (verification may lag).
    pub reverted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub duplicates: u64,
    /// Calls refused at an enforcement point Firebreak owns because of this plan.
    pub refused_calls: u64,
}

/// One incident: alerts about one agent and one dimension, and the plans made for them.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Incident {
    pub id: String,
    pub agent: AgentRef,
    pub dimension: Dimension,
    pub opened_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub alerts: Vec<String>,
    pub plans: Vec<PlanState>,
    pub escalations: Vec<String>,
}

impl Incident {
    /// The incident's status: the most urgent of its plans'.
    pub fn status(&self) -> PlanStatus {
        const URGENCY: [PlanStatus; 12] = [
            PlanStatus::Failed,
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
            .find(|s| self.plans.iter().any(|p| p.status == *s))
            .unwrap_or(PlanStatus::Escalated)
    }

    /// Open = something may still happen: dedupe attaches new alerts to it, the envelope stays frozen.
    pub fn is_open(&self) -> bool {
        self.plans.iter().any(|p| !p.status.is_terminal())
    }

    pub fn plan(&self, id: &str) -> Option<&PlanState> {
        self.plans.iter().find(|p| p.plan.id == id)
    }

    /// The live plan for this parameter, if any (one that acts or waits to act).
    pub fn live_plan_for(&self, parameter: &Parameter) -> Option<&PlanState> {
        self.plans.iter().find(|p| {
            &p.plan.parameter == parameter
                && !p.status.is_terminal()
                && p.status != PlanStatus::Escalated
        })
    }
}

/// All incidents, folded from journal events.
#[derive(Debug, Default)]
pub struct Incidents {
    by_id: BTreeMap<String, Incident>,
    /// Alert ids already planned for (dry runs excluded, so a rehearsal never swallows the real one).
    seen_alerts: BTreeMap<String, String>,
}

impl Incidents {
    pub fn get(&self, id: &str) -> Option<&Incident> {
        self.by_id.get(id)
    }

    pub fn all(&self) -> impl Iterator<Item = &Incident> {
        self.by_id.values()
    }

    /// The incident and plan an alert id was already planned in: a resend of the same alert.
    pub fn repeat_of(&self, alert_id: &str) -> Option<(&Incident, &PlanState)> {
        let incident = self.by_id.get(self.seen_alerts.get(alert_id)?)?;
        let plan = incident.plans.iter().find(|p| p.plan.alert == alert_id)?;
        Some((incident, plan))
    }

    pub fn open_for(&self, agent: &AgentRef, dimension: Dimension) -> Option<&Incident> {
        self.by_id
            .values()
            .find(|i| &i.agent == agent && i.dimension == dimension && i.is_open())
    }

    pub fn has_open_incident(&self, agent: &AgentRef) -> bool {
        self.by_id
            .values()
            .any(|i| &i.agent == agent && i.is_open())
    }

    /// Folds one journaled event into the view.
    pub fn apply(&mut self, incident: &str, at: DateTime<Utc>, event: &Event) {
        if let Event::AlertReceived { alert } = event {
            let entry = self
                .by_id
                .entry(incident.to_string())
                .or_insert_with(|| Incident {
                    id: incident.to_string(),
                    agent: alert.agent.clone(),
                    dimension: alert.dimension,
                    opened_at: at,
                    updated_at: at,
                    alerts: Vec::new(),
                    plans: Vec::new(),
                    escalations: Vec::new(),
                });
            entry.alerts.push(alert.id.clone());
            entry.updated_at = at;
            return;
        }
        let Some(inc) = self.by_id.get_mut(incident) else {
            return;
        };
        inc.updated_at = at;
        match event {
            Event::AlertReceived { .. } => {}
            Event::Planned { plan } => {
                let status = match (plan.mode, &plan.chosen) {
                    (Mode::DryRun, _) => PlanStatus::DryRun,
                    (_, None) => PlanStatus::Escalated,
                    (Mode::Approve, Some(_)) => PlanStatus::AwaitingApproval,
                    (Mode::Auto, Some(_)) => PlanStatus::Applying,
                };
                if plan.mode != Mode::DryRun {
                    self.seen_alerts
                        .insert(plan.alert.clone(), incident.to_string());
                }
                inc.plans.push(PlanState {
                    plan: (**plan).clone(),
                    status,
                    approved_by: None,
                    intent_at: None,
                    applied_at: None,
                    verified_at: None,
                    expires_at: None,
                    revert_reason: None,
                    reverted: false,
                    detail: None,
                    duplicates: 0,
                    refused_calls: 0,
                });
            }
            Event::Escalated { reason, .. } => inc.escalations.push(reason.clone()),
            other => {
                let Some(plan_id) = plan_of(other) else {
                    return;
                };
                let Some(state) = inc.plans.iter_mut().find(|p| p.plan.id == plan_id) else {
                    return;
                };
                advance(state, at, other);
            }
        }
    }
}

fn plan_of(event: &Event) -> Option<&str> {
    match event {
        Event::AlertDeduplicated { plan, .. }
        | Event::Approved { plan, .. }
        | Event::Intent { plan, .. }
        | Event::Applied { plan, .. }
        | Event::Verified { plan, .. }
        | Event::VerifyFailed { plan, .. }
        | Event::Failed { plan, .. }
        | Event::RevertIntent { plan, .. }
        | Event::Reverted { plan, .. }
        | Event::RevertVerified { plan, .. }
        | Event::RevertFailed { plan, .. }
        | Event::Cancelled { plan, .. }
        | Event::CallRefused { plan, .. } => Some(plan),
        Event::AlertReceived { .. } | Event::Planned { .. } | Event::Escalated { .. } => None,
    }
}

fn advance(state: &mut PlanState, at: DateTime<Utc>, event: &Event) {
    match event {
        Event::AlertDeduplicated { .. } => state.duplicates += 1,
        Event::Approved { by, .. } => {
            state.approved_by = Some(by.clone());
            state.status = PlanStatus::Applying;
        }
        Event::Intent { .. } => {
            state.intent_at = Some(at);
            state.status = PlanStatus::Applying;
        }
        Event::Applied { outcome, .. } => {
            state.applied_at = Some(at);
            state.status = PlanStatus::Applied;
            state.detail = Some(outcome.detail.clone());
        }
        Event::Verified { verification, .. } => {
            state.verified_at = Some(at);
            state.status = PlanStatus::Contained;
            state.detail = Some(verification.detail.clone());
            state.expires_at = state
                .plan
                .ttl_seconds
                .and_then(|s| chrono::Duration::try_seconds(s as i64))
                .map(|ttl| at + ttl);
        }
        Event::VerifyFailed { detail, .. } => {
            state.status = PlanStatus::VerifyFailed;
            state.detail = Some(detail.clone());
        }
        Event::Failed { error, .. } => {
            state.status = PlanStatus::Failed;
            state.detail = Some(error.clone());
        }
        Event::RevertIntent { reason, .. } => {
            state.revert_reason = Some(*reason);
            state.status = PlanStatus::Reverting;
        }
        Event::Reverted { outcome, .. } => {
            state.reverted = true;
            state.detail = Some(outcome.detail.clone());
        }
        Event::RevertVerified { verification, .. } => {
            state.detail = Some(verification.detail.clone());
            state.status = match state.revert_reason {
                Some(RevertReason::TtlExpired) => PlanStatus::Expired,
                _ => PlanStatus::Reverted,
            };
        }
        Event::RevertFailed { error, .. } => {
            state.detail = Some(error.clone());
        }
        Event::Cancelled { reason, .. } => {
            state.status = PlanStatus::Cancelled;
            state.detail = Some(reason.clone());
        }
        Event::CallRefused { .. } => state.refused_calls += 1,
        Event::AlertReceived { .. } | Event::Planned { .. } | Event::Escalated { .. } => {}
    }
}
