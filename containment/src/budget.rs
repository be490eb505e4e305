//! The blast-radius budget: caps automatic actions per minute, globally, per namespace and per
//! agent, so a flood of alerts can never become a mass shutdown.

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Duration, Utc};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BudgetConfig {
    pub global_per_minute: usize,
    pub namespace_per_minute: usize,
    pub agent_per_minute: usize,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self {
            global_per_minute: 20,
            namespace_per_minute: 5,
            agent_per_minute: 2,
        }
    }
}

const WINDOW: Duration = Duration::seconds(60);

/// Sliding one-minute windows of automatic actions taken, in wall-clock time so the journal's
/// timestamps can seed them after a restart.
#[derive(Debug)]
pub struct Budget {
    config: BudgetConfig,
    global: VecDeque<DateTime<Utc>>,
    namespaces: HashMap<String, VecDeque<DateTime<Utc>>>,
    agents: HashMap<String, VecDeque<DateTime<Utc>>>,
}

impl Budget {
    pub fn new(config: BudgetConfig) -> Self {
        Self {
            config,
            global: VecDeque::new(),
            namespaces: HashMap::new(),
            agents: HashMap::new(),
        }
    }

    /// Reserves one automatic action, or says which cap it would exceed.
    pub fn try_take(
        &mut self,
        namespace: &str,
        agent: &str,
        now: DateTime<Utc>,
    ) -> Result<(), String> {
        let checks = [
            (
                "global",
                self.config.global_per_minute,
                trim(&mut self.global, now),
            ),
            (
                "namespace",
                self.config.namespace_per_minute,
                trim(
                    self.namespaces.entry(namespace.to_string()).or_default(),
                    now,
                ),
            ),
            (
                "agent",
                self.config.agent_per_minute,
                trim(self.agents.entry(agent.to_string()).or_default(), now),
            ),
        ];
        if let Some((scope, cap, _)) = checks.iter().find(|(_, cap, used)| used >= cap) {
            return Err(format!(
                "the {scope} blast-radius budget of {cap} automatic action(s) per minute is spent"
            ));
        }
        self.record(namespace, agent, now);
        Ok(())
    }

    /// Counts an action taken at `at` (from the journal, after a restart), without checking.
    pub fn record(&mut self, namespace: &str, agent: &str, at: DateTime<Utc>) {
        let insert = |window: &mut VecDeque<DateTime<Utc>>| {
            let i = window.partition_point(|t| *t <= at);
            window.insert(i, at);
        };
        insert(&mut self.global);
        insert(self.namespaces.entry(namespace.to_string()).or_default());
        insert(self.agents.entry(agent.to_string()).or_default());
    }
}

fn trim(window: &mut VecDeque<DateTime<Utc>>, now: DateTime<Utc>) -> usize {
    while window.front().is_some_and(|t| now - *t >= WINDOW) {
        window.pop_front();
    }
    window.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_agent_cap_holds_and_recovers_after_a_minute() {
        let mut b = Budget::new(BudgetConfig {
            global_per_minute: 100,
            namespace_per_minute: 100,
            agent_per_minute: 2,
        });
        let t0 = Utc::now();
        assert!(b.try_take("ns", "a", t0).is_ok());
        assert!(b.try_take("ns", "a", t0).is_ok());
        let err = b.try_take("ns", "a", t0).expect_err("third in a minute");
        assert!(err.contains("agent"), "{err}");
        assert!(
            b.try_take("ns", "b", t0).is_ok(),
            "another agent has its own cap"
        );
        assert!(b.try_take("ns", "a", t0 + WINDOW).is_ok());
    }

    #[test]
    fn actions_recorded_from_the_journal_count_against_the_cap() {
        let mut b = Budget::new(BudgetConfig {
            global_per_minute: 100,
            namespace_per_minute: 100,
            agent_per_minute: 2,
        });
        let t0 = Utc::now();
        b.record("ns", "a", t0 - Duration::seconds(10));
        b.record("ns", "a", t0 - Duration::seconds(90));
        b.record("ns", "a", t0 - Duration::seconds(5));
        assert!(b.try_take("ns", "a", t0).is_err(), "two in the last minute");
        assert!(b.try_take("ns", "a", t0 + Duration::seconds(51)).is_ok());
    }

    #[test]
    fn a_storm_across_agents_stops_at_the_global_cap() {
        let mut b = Budget::new(BudgetConfig {
            global_per_minute: 5,
            namespace_per_minute: 100,
            agent_per_minute: 100,
        });
        let t0 = Utc::now();
        let taken = (0..1000)
            .filter(|i| {
                b.try_take(&format!("ns{i}"), &format!("agent{i}"), t0)
                    .is_ok()
            })
            .count();
        assert_eq!(taken, 5);
    }

    #[test]
    fn namespace_cap_holds() {
        let mut b = Budget::new(BudgetConfig {
            global_per_minute: 100,
            namespace_per_minute: 3,
            agent_per_minute: 100,
        });
        let t0 = Utc::now();
        let taken = (0..10)
            .filter(|i| b.try_take("payments", &format!("agent{i}"), t0).is_ok())
            .count();
        assert_eq!(taken, 3);
    }
}
