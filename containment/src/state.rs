//! Where one plan stands, as a checked state machine: each phase carries what only it has, and
//! [`Phase::on`] is the only way from one phase to the next. Replaying a journal through it
//! refuses any order the engine could not have written (docs/ARCHITECTURE.md §State).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::incident::Event;
use crate::plan::{Mode, Plan};

/// Why an action was undone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RevertReason {
    Rollback,
    TtlExpired,
}

/// One plan's phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// A rehearsal: nothing happens to it.
    DryRun,
    /// No candidate blocks the breach (or a plane could not be read): a human looks.
    Escalated,
    AwaitingApproval,
    /// Approved, or automatic: due to act; no intent journaled yet.
    Due,
    /// The intent is journaled: the change may exist at the plane, not yet confirmed.
    Applying,
    /// Applied; the enforcement point is checked until `verify_by`.
    Applied {
        verify_by: DateTime<Utc>,
    },
    /// Verified at the enforcement point; reverted at `expires_at` when the plan has a TTL.
    Contained {
        expires_at: Option<DateTime<Utc>>,
    },
    /// Applied but never verified by its deadline: a human looks; rollback still works.
    VerifyFailed,
    /// The change failed; `acted` when its intent was journaled (rollback then reverts it).
    Failed {
        acted: bool,
    },
    /// Being undone; `verify_by` is set once the revert itself succeeded.
    Reverting {
        reason: RevertReason,
        verify_by: Option<DateTime<Utc>>,
    },
    /// The undo failed or was never verified: a human looks; rollback retries it.
    RevertFailed {
        reason: RevertReason,
    },
    Reverted,
    Expired,
    Cancelled,
}

/// The public status names (HTTP API, CLI); one per phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlanStatus {
    DryRun,
    Escalated,
    AwaitingApproval,
    Applying,
    Applied,
    Contained,
    VerifyFailed,
    Failed,
    Reverting,
    RevertFailed,
    Reverted,
    Expired,
    Cancelled,
}

impl PlanStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PlanStatus::DryRun => "dry-run",
            PlanStatus::Escalated => "escalated",
            PlanStatus::AwaitingApproval => "awaiting-approval",
            PlanStatus::Applying => "applying",
            PlanStatus::Applied => "applied",
            PlanStatus::Contained => "contained",
            PlanStatus::VerifyFailed => "verify-failed",
            PlanStatus::Failed => "failed",
            PlanStatus::Reverting => "reverting",
            PlanStatus::RevertFailed => "revert-failed",
            PlanStatus::Reverted => "reverted",
            PlanStatus::Expired => "expired",
            PlanStatus::Cancelled => "cancelled",
        }
    }

    /// Statuses after which nothing more happens to the plan.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            PlanStatus::DryRun | PlanStatus::Reverted | PlanStatus::Expired | PlanStatus::Cancelled
        )
    }
}

/// An event that cannot follow the phase it was journaled in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{event} cannot follow {from}")]
pub struct IllegalTransition {
    pub from: &'static str,
    pub event: &'static str,
}

impl Phase {
    /// The phase a freshly planned plan starts in.
    pub fn initial(plan: &Plan) -> Phase {
        match (plan.mode, &plan.chosen) {
            (Mode::DryRun, _) => Phase::DryRun,
            (_, None) => Phase::Escalated,
            (Mode::Approve, Some(_)) => Phase::AwaitingApproval,
            (Mode::Auto, Some(_)) => Phase::Due,
        }
    }

    pub fn status(&self) -> PlanStatus {
        match self {
            Phase::DryRun => PlanStatus::DryRun,
            Phase::Escalated => PlanStatus::Escalated,
            Phase::AwaitingApproval => PlanStatus::AwaitingApproval,
            Phase::Due | Phase::Applying => PlanStatus::Applying,
            Phase::Applied { .. } => PlanStatus::Applied,
            Phase::Contained { .. } => PlanStatus::Contained,
            Phase::VerifyFailed => PlanStatus::VerifyFailed,
            Phase::Failed { .. } => PlanStatus::Failed,
            Phase::Reverting { .. } => PlanStatus::Reverting,
            Phase::RevertFailed { .. } => PlanStatus::RevertFailed,
            Phase::Reverted => PlanStatus::Reverted,
            Phase::Expired => PlanStatus::Expired,
            Phase::Cancelled => PlanStatus::Cancelled,
        }
    }

    /// Whether the action may exist at the control plane (so rollback must revert it).
    pub fn may_have_acted(&self) -> bool {
        matches!(
            self,
            Phase::Applying
                | Phase::Applied { .. }
                | Phase::Contained { .. }
                | Phase::VerifyFailed
                | Phase::Failed { acted: true }
                | Phase::Reverting { .. }
                | Phase::RevertFailed { .. }
        )
    }

    /// The phase after `event`, journaled at `at`, or why `event` cannot happen now.
    pub fn on(
        &self,
        event: &Event,
        plan: &Plan,
        at: DateTime<Utc>,
    ) -> Result<Phase, IllegalTransition> {
        let illegal = || IllegalTransition {
            from: self.status().as_str(),
            event: event.kind(),
        };
        Ok(match (self, event) {
            // Records about the plan that do not move it.
            (_, Event::AlertDeduplicated { .. } | Event::CallRefused { .. }) => self.clone(),
            (
                Phase::Applying | Phase::Applied { .. } | Phase::Reverting { .. },
                Event::PlaneFault { .. },
            ) => self.clone(),
            (Phase::AwaitingApproval, Event::Approved { .. }) => Phase::Due,
            (Phase::Due, Event::Intent { .. }) => Phase::Applying,
            (Phase::Applying, Event::Applied { verify_by, .. }) => Phase::Applied {
                verify_by: *verify_by,
            },
            (Phase::Applied { .. }, Event::Verified { .. }) => Phase::Contained {
                expires_at: plan
                    .ttl_seconds
                    .and_then(|s| chrono::Duration::try_seconds(i64::try_from(s).ok()?))
                    .map(|ttl| at + ttl),
            },
            (Phase::Applied { .. }, Event::VerifyFailed { .. }) => Phase::VerifyFailed,
            (Phase::Due, Event::Failed { .. }) => Phase::Failed { acted: false },
            (Phase::Applying, Event::Failed { .. }) => Phase::Failed { acted: true },
            (phase, Event::RevertIntent { reason, .. }) if phase.may_have_acted() => {
                if let Phase::Reverting { .. } = phase {
                    return Err(illegal());
                }
                Phase::Reverting {
                    reason: *reason,
                    verify_by: None,
                }
            }
            (
                Phase::Reverting {
                    reason,
                    verify_by: None,
                },
                Event::Reverted { verify_by, .. },
            ) => Phase::Reverting {
                reason: *reason,
                verify_by: Some(*verify_by),
            },
            (
                Phase::Reverting {
                    reason,
                    verify_by: Some(_),
                },
                Event::RevertVerified { .. },
            ) => match reason {
                RevertReason::Rollback => Phase::Reverted,
                RevertReason::TtlExpired => Phase::Expired,
            },
            (Phase::Reverting { reason, .. }, Event::RevertFailed { .. }) => {
                Phase::RevertFailed { reason: *reason }
            }
            (
                Phase::Escalated
                | Phase::AwaitingApproval
                | Phase::Due
                | Phase::Failed { acted: false },
                Event::Cancelled { .. },
            ) => Phase::Cancelled,
            _ => return Err(illegal()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::Event;
    use crate::plane::{Outcome, Verification};

    fn plan(mode: Mode) -> Plan {
        let json = serde_json::json!({
            "id": "inc-1-p1", "incident": "inc-1", "alert": "a",
            "agent": {"cluster": "c", "namespace": "n", "workload": "Deployment/a", "serviceAccount": "a"},
            "dimension": "tools", "parameter": {"server": "s", "tool": "t"},
            "envelopeVersion": 1, "mode": mode, "modeReason": "test",
            "chosen": null, "candidates": [], "ttlSeconds": 60, "hash": ""
        });
        serde_json::from_value(json).expect("plan")
    }

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-07T02:47:00Z")
            .expect("time")
            .with_timezone(&Utc)
    }

    fn id() -> crate::ids::PlanId {
        "inc-1-p1".into()
    }

    #[test]
    fn the_happy_path_and_its_ttl() {
        let p = plan(Mode::Auto);
        let mut phase = Phase::Due;
        let steps = [
            Event::Intent {
                plan: id(),
                action: Box::new(crate::plan::sample_candidate(&TEST_KIND, 0)),
            },
            Event::Applied {
                plan: id(),
                outcome: Outcome::changed("x"),
                verify_by: at(),
            },
            Event::Verified {
                plan: id(),
                verification: Verification::ok("y"),
            },
        ];
        for e in &steps {
            phase = phase.on(e, &p, at()).expect("legal");
        }
        assert_eq!(
            phase,
            Phase::Contained {
                expires_at: Some(at() + chrono::Duration::seconds(60))
            }
        );
    }

    static TEST_KIND: crate::plane::KindSpec = crate::plane::KindSpec {
        name: "test.kind",
        ladder: "test",
        rung: 0,
        approval_only: false,
        enforcement: crate::plan::Enforcement::Durable,
    };

    #[test]
    fn a_late_verified_after_reverted_is_refused() {
        let p = plan(Mode::Auto);
        let late = Event::Verified {
            plan: id(),
            verification: Verification::ok("late"),
        };
        let err = Phase::Reverted.on(&late, &p, at()).expect_err("illegal");
        assert_eq!(err.from, "reverted");
        assert_eq!(err.event, "verified");
        let applying_twice = Event::Intent {
            plan: id(),
            action: Box::new(crate::plan::sample_candidate(&TEST_KIND, 0)),
        };
        assert!(Phase::Applying.on(&applying_twice, &p, at()).is_err());
        let approve_auto = Event::Approved {
            plan: id(),
            hash: String::new(),
            by: "x".into(),
        };
        assert!(Phase::Due.on(&approve_auto, &p, at()).is_err());
    }

    #[test]
    fn revert_paths_end_in_reverted_or_expired() {
        let p = plan(Mode::Auto);
        for (reason, end) in [
            (RevertReason::Rollback, Phase::Reverted),
            (RevertReason::TtlExpired, Phase::Expired),
        ] {
            let mut phase = Phase::Contained { expires_at: None };
            for e in [
                Event::RevertIntent {
                    plan: id(),
                    reason,
                    by: None,
                },
                Event::Reverted {
                    plan: id(),
                    outcome: Outcome::changed("gone"),
                    verify_by: at(),
                },
                Event::RevertVerified {
                    plan: id(),
                    verification: Verification::ok("gone"),
                },
            ] {
                phase = phase.on(&e, &p, at()).expect("legal");
            }
            assert_eq!(phase, end);
        }
        assert!(Phase::Cancelled
            .on(
                &Event::RevertIntent {
                    plan: id(),
                    reason: RevertReason::Rollback,
                    by: None
                },
                &p,
                at()
            )
            .is_err());
    }
}
