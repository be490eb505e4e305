//! An incident's scheduled re-checks: the next verification poll, the retry of a failed call,
//! the TTL. Waiting is a timer the incident's task selects on, never a sleep under a lock.

use std::collections::BTreeMap;

use tokio::time::Instant;

use crate::ids::PlanId;

/// What is due when a timer fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    /// Take the plan's next step (a check, or a retried change).
    Step(PlanId),
    /// The plan's TTL has run out: revert it.
    Expire(PlanId),
}

impl Due {
    fn plan(&self) -> &PlanId {
        match self {
            Due::Step(p) | Due::Expire(p) => p,
        }
    }
}

/// Timers by instant; at most one per plan (a new one replaces the old).
#[derive(Debug, Default)]
pub struct Schedule {
    timers: BTreeMap<(Instant, u64), Due>,
    next_seq: u64,
}

impl Schedule {
    /// Arms `due` at `at`, replacing whatever was armed for its plan.
    pub fn arm(&mut self, at: Instant, due: Due) {
        self.cancel(due.plan());
        self.next_seq += 1;
        self.timers.insert((at, self.next_seq), due);
    }

    pub fn cancel(&mut self, plan: &PlanId) {
        self.timers.retain(|_, d| d.plan() != plan);
    }

    /// When the next timer fires.
    pub fn next(&self) -> Option<Instant> {
        self.timers.keys().next().map(|(at, _)| *at)
    }

    /// Takes the earliest timer if it is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Due> {
        let key = *self.timers.keys().next().filter(|(at, _)| *at <= now)?;
        self.timers.remove(&key)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn one_timer_per_plan_earliest_first() {
        let mut s = Schedule::default();
        let now = Instant::now();
        let (a, b) = (PlanId::from("a"), PlanId::from("b"));
        s.arm(now + Duration::from_secs(5), Due::Step(a.clone()));
        s.arm(now + Duration::from_secs(1), Due::Step(b.clone()));
        s.arm(now + Duration::from_secs(3), Due::Expire(a.clone()));
        assert_eq!(s.next(), Some(now + Duration::from_secs(1)));
        assert_eq!(s.pop_due(now), None, "nothing due yet");
        let later = now + Duration::from_secs(10);
        assert_eq!(s.pop_due(later), Some(Due::Step(b)));
        assert_eq!(s.pop_due(later), Some(Due::Expire(a.clone())));
        assert_eq!(s.pop_due(later), None, "the replaced timer is gone");
        s.arm(now, Due::Step(a.clone()));
        s.cancel(&a);
        assert_eq!(s.next(), None);
    }
}
