//! The one error policy (docs/ARCHITECTURE.md §Errors): what a plane fault leads to, decided by
//! its kind. Transient faults are retried with bounded, growing backoff; a conflict re-plans;
//! everything else stops and escalates.

use std::time::Duration;

use crate::plane::FaultKind;

/// What to do after a failed plane call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Try the same call again after this long.
    Retry(Duration),
    /// The target changed: make a new plan from a fresh observation.
    Replan,
    /// Give up: the plan fails (or its revert fails) and a human is told.
    Stop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorPolicy {
    /// Attempts of one change before it fails (the first included).
    pub attempts: u32,
    /// First backoff; it doubles per attempt up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// New plans made for one alert after conflicts before the incident escalates.
    pub replans: u32,
    /// Deadline of every single plane call (observe, change, check).
    pub call_timeout: Duration,
}

impl Default for ErrorPolicy {
    fn default() -> Self {
        Self {
            attempts: 5,
            backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            replans: 3,
            call_timeout: Duration::from_secs(30),
        }
    }
}

impl ErrorPolicy {
    /// The next step after attempt number `attempt` (1-based) failed with `kind`.
    pub fn after(&self, kind: FaultKind, attempt: u32) -> Next {
        match kind {
            FaultKind::Transient if attempt < self.attempts => {
                Next::Retry(self.backoff_for(attempt))
            }
            FaultKind::Conflict => Next::Replan,
            _ => Next::Stop,
        }
    }

    pub fn backoff_for(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_faults_back_off_then_stop_conflicts_replan_denials_stop() {
        let p = ErrorPolicy::default();
        assert_eq!(
            p.after(FaultKind::Transient, 1),
            Next::Retry(Duration::from_millis(200))
        );
        assert_eq!(
            p.after(FaultKind::Transient, 3),
            Next::Retry(Duration::from_millis(800))
        );
        assert_eq!(p.after(FaultKind::Transient, 5), Next::Stop);
        assert_eq!(p.after(FaultKind::Conflict, 1), Next::Replan);
        assert_eq!(p.after(FaultKind::Denied, 1), Next::Stop);
        assert_eq!(p.after(FaultKind::Invalid, 1), Next::Stop);
        assert_eq!(p.backoff_for(30), p.max_backoff);
    }
}
