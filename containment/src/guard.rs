//! Where approval is decided, in one place: the runbook rule's mode, then the safety rules
//! that override it (no action without an envelope that converged, approval-only rungs, the
//! blast radius a rule allows, the budget), then who asked. Pure but for the budget.
//! docs/ARCHITECTURE.md §Guard.

use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::alert::Alert;
use crate::budget::{Budget, BudgetConfig};
use crate::envelope::EnvelopeStatus;
use crate::ids::{IncidentId, PlanId};
use crate::plan::{Candidate, Mode, Plan};
use crate::planner;
use crate::runbook::Runbooks;

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

/// What the runbook would have decided, shown on a dry run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WouldBe {
    pub mode: Mode,
    pub reason: String,
}

/// The mode of one plan and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub mode: Mode,
    pub reason: String,
    pub escalation: Option<String>,
    pub ttl_seconds: Option<u64>,
}

/// Everything one decision needs.
pub struct GuardInput<'a> {
    pub incident: &'a IncidentId,
    pub plan: PlanId,
    pub alert: &'a Alert,
    pub envelope_version: u64,
    pub envelope_status: EnvelopeStatus,
    pub candidates: Vec<Candidate>,
    /// Control planes that could not be read: they escalate, never silently shrink the plan.
    pub problems: Vec<String>,
    pub request: &'a Request,
    pub now: DateTime<Utc>,
}

/// A sealed plan, and whether the budget refused it automatic mode.
pub struct Decided {
    pub plan: Plan,
    pub budget_spent: bool,
}

pub struct Guard {
    runbooks: Runbooks,
    budget: Mutex<Budget>,
}

impl Guard {
    pub fn new(runbooks: Runbooks, budget: BudgetConfig) -> Guard {
        Guard {
            runbooks,
            budget: Mutex::new(Budget::new(budget)),
        }
    }

    pub fn runbooks(&self) -> &Runbooks {
        &self.runbooks
    }

    /// Counts an automatic action the journal shows was taken at `at` (restart, failover).
    pub fn charged(&self, namespace: &str, agent: &str, at: DateTime<Utc>) {
        if let Ok(mut b) = self.budget.lock() {
            b.record(namespace, agent, at);
        }
    }

    /// Candidates → plan: choose, apply the runbook and the safety rules, reserve budget.
    pub fn decide(&self, input: GuardInput<'_>) -> Decided {
        let (chosen, candidates) = planner::choose(input.candidates);
        let mut verdict = self.verdict(input.alert, input.envelope_status, chosen.as_ref());
        if !input.problems.is_empty() {
            let problems = input.problems.join("; ");
            verdict.escalation = Some(match verdict.escalation {
                Some(e) => format!("{e}; {problems}"),
                None => problems,
            });
        }
        let mut would_be = None;
        let mut budget_spent = false;
        match input.request {
            Request::DryRun => {
                would_be = Some(WouldBe {
                    mode: verdict.mode,
                    reason: verdict.reason.clone(),
                });
                verdict.mode = Mode::DryRun;
                verdict.reason = "dry run requested: nothing is changed".into();
            }
            Request::Operator(by) => {
                verdict.mode = Mode::Approve;
                verdict.reason = format!("contained by hand by {by}");
            }
            Request::Runbook if verdict.mode == Mode::Auto && chosen.is_some() => {
                let taken = match self.budget.lock() {
                    Ok(mut b) => b.try_take(
                        &input.alert.agent.namespace,
                        &input.alert.agent.key().0,
                        input.now,
                    ),
                    Err(_) => Err("the budget is unavailable".to_string()),
                };
                if let Err(spent) = taken {
                    budget_spent = true;
                    verdict.mode = Mode::Approve;
                    verdict.reason = format!("{}, but {spent}", verdict.reason);
                    verdict.escalation = Some(spent);
                }
            }
            Request::Runbook => {}
        }
        let plan = Plan {
            id: input.plan,
            incident: input.incident.clone(),
            alert: input.alert.id.clone(),
            agent: input.alert.agent.clone(),
            parameter: input.alert.parameter.clone(),
            envelope_version: Some(input.envelope_version),
            mode: verdict.mode,
            mode_reason: verdict.reason,
            would_be,
            chosen,
            candidates,
            escalation: verdict.escalation,
            ttl_seconds: verdict.ttl_seconds,
            hash: String::new(),
        }
        .seal();
        Decided { plan, budget_spent }
    }

    /// The first matching rule, then the safety rules that override it.
    pub fn verdict(
        &self,
        alert: &Alert,
        envelope: EnvelopeStatus,
        chosen: Option<&Candidate>,
    ) -> Verdict {
        let Some(rule) = self.runbooks.rule_for(alert) else {
            return Verdict {
                mode: Mode::Approve,
                reason: "no runbook rule matches: waiting for approval".into(),
                escalation: Some("no runbook rule matches this alert".into()),
                ttl_seconds: None,
            };
        };
        let mut verdict = Verdict {
            mode: rule.mode,
            reason: format!("runbook rule {:?}", rule.name),
            escalation: None,
            ttl_seconds: rule.ttl.map(|d| d.as_secs()),
        };
        let Some(chosen) = chosen else {
            verdict.mode = Mode::Approve;
            verdict.reason = "no candidate blocks the breach".into();
            verdict.escalation = Some("no containment action blocks the breached parameter".into());
            return verdict;
        };
        if envelope == EnvelopeStatus::Learning {
            verdict.escalation = Some(
                "the agent's envelope is still learning: Firebreak will not act on its own".into(),
            );
            if verdict.mode == Mode::Auto {
                verdict.mode = Mode::Approve;
                verdict.reason =
                    format!("{} says auto, but the envelope is learning", verdict.reason);
            }
            return verdict;
        }
        if verdict.mode != Mode::Auto {
            return verdict;
        }
        let allowed = self
            .runbooks
            .allows_without_approval(rule, &chosen.ladder, chosen.rung);
        let downgrade = if chosen.approval_only {
            Some(format!("{} is an approval-only rung", chosen.kind))
        } else if !allowed {
            Some(format!(
                "{} is broader than this rule allows without approval",
                chosen.kind
            ))
        } else if chosen.blast_radius.broken > rule.max_auto_blast_radius {
            Some(format!(
                "blast radius {} exceeds the {} allowed automatically",
                chosen.blast_radius.broken, rule.max_auto_blast_radius
            ))
        } else if !chosen.blast_radius.undetermined.is_empty() {
            Some(format!(
                "the effect on {} in-envelope behaviour(s) is undetermined",
                chosen.blast_radius.undetermined.len()
            ))
        } else {
            None
        };
        if let Some(why) = downgrade {
            verdict.mode = Mode::Approve;
            verdict.reason = format!("{} says auto, but {why}", verdict.reason);
        }
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::sample_candidate;
    use crate::testing::{kinds, BROADEST, NARROW, RUNBOOK, WIDE};

    fn alert(tier: &str) -> Alert {
        let v = serde_json::json!({
          "id": "a-1", "source": "test", "time": "2026-05-16T02:47:00Z",
          "agent": {"cluster": "c", "namespace": "payments",
                    "workload": "Deployment/payment-agent", "serviceAccount": "payment-agent"},
          "dimension": "identity",
          "parameter": {"action": "s3:PutObject", "resource": "arn:aws:s3:::x/*"},
          "tier": tier, "severity": "critical"
        });
        Alert::from_json(v.to_string().as_bytes()).expect("valid alert")
    }

    fn guard(budget: BudgetConfig) -> Guard {
        Guard::new(
            Runbooks::parse("test", RUNBOOK, &kinds()).expect("runbook"),
            budget,
        )
    }

    fn decide(g: &Guard, tier: &str, request: &Request, chosen: Candidate) -> Plan {
        let incident = IncidentId::from("inc-1");
        let a = alert(tier);
        g.decide(GuardInput {
            plan: PlanId::nth(&incident, 1),
            incident: &incident,
            alert: &a,
            envelope_version: 1,
            envelope_status: EnvelopeStatus::Converged,
            candidates: vec![chosen],
            problems: vec![],
            request,
            now: Utc::now(),
        })
        .plan
    }

    #[test]
    fn attack_attempt_with_zero_blast_on_the_narrowest_rung_is_auto() {
        let g = guard(BudgetConfig::default());
        let v = g.verdict(
            &alert("attack-attempt"),
            EnvelopeStatus::Converged,
            Some(&sample_candidate(&NARROW, 0)),
        );
        assert_eq!(v.mode, Mode::Auto, "{v:?}");
        assert_eq!(v.ttl_seconds, Some(24 * 3600));
    }

    #[test]
    fn blast_broader_rungs_approval_only_and_learning_all_wait() {
        let g = guard(BudgetConfig::default());
        let attack = alert("attack-attempt");
        let v = g.verdict(
            &attack,
            EnvelopeStatus::Converged,
            Some(&sample_candidate(&NARROW, 1)),
        );
        assert!(
            v.mode == Mode::Approve && v.reason.contains("blast radius 1"),
            "{v:?}"
        );
        let v = g.verdict(
            &attack,
            EnvelopeStatus::Converged,
            Some(&sample_candidate(&WIDE, 0)),
        );
        assert!(
            v.mode == Mode::Approve && v.reason.contains("broader"),
            "{v:?}"
        );
        let v = g.verdict(
            &attack,
            EnvelopeStatus::Converged,
            Some(&sample_candidate(&BROADEST, 0)),
        );
        assert!(
            v.mode == Mode::Approve && v.reason.contains("approval-only"),
            "{v:?}"
        );
        let v = g.verdict(
            &attack,
            EnvelopeStatus::Learning,
            Some(&sample_candidate(&NARROW, 0)),
        );
        assert!(v.mode == Mode::Approve && v.escalation.is_some(), "{v:?}");
        let v = g.verdict(
            &alert("anomaly"),
            EnvelopeStatus::Converged,
            Some(&sample_candidate(&NARROW, 0)),
        );
        assert_eq!(v.mode, Mode::Approve);
    }

    #[test]
    fn a_dry_run_says_what_the_real_run_would_do() {
        let g = guard(BudgetConfig::default());
        let plan = decide(
            &g,
            "attack-attempt",
            &Request::DryRun,
            sample_candidate(&NARROW, 0),
        );
        assert_eq!(plan.mode, Mode::DryRun);
        let would = plan.would_be.expect("wouldBe");
        assert_eq!(would.mode, Mode::Auto);
        assert!(
            would
                .reason
                .contains("attack-attempts-contain-automatically"),
            "{would:?}"
        );
    }

    #[test]
    fn the_budget_turns_auto_into_approve_past_its_cap() {
        let g = guard(BudgetConfig {
            global_per_minute: 100,
            namespace_per_minute: 100,
            agent_per_minute: 1,
        });
        let first = decide(
            &g,
            "attack-attempt",
            &Request::Runbook,
            sample_candidate(&NARROW, 0),
        );
        let second = decide(
            &g,
            "attack-attempt",
            &Request::Runbook,
            sample_candidate(&NARROW, 0),
        );
        assert_eq!(first.mode, Mode::Auto);
        assert_eq!(second.mode, Mode::Approve);
        assert!(second.escalation.is_some_and(|e| e.contains("agent")));
    }

    #[test]
    fn an_operator_request_is_approved_by_them() {
        let g = guard(BudgetConfig::default());
        let plan = decide(
            &g,
            "anomaly",
            &Request::Operator("alice".into()),
            sample_candidate(&NARROW, 0),
        );
        assert_eq!(plan.mode, Mode::Approve);
        assert!(plan.mode_reason.contains("alice"));
    }
}
