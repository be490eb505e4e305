//! The blast-radius budget: caps automatic actions per minute, globally, per namespace and per
//! agent, so a flood of alerts can never become a mass shutdown.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

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

const WINDOW: Duration = Duration::from_secs(60);

/// Sliding one-minute windows of automatic actions taken.
#[derive(Debug)]
pub struct Budget {
    config: BudgetConfig,
    global: VecDeque<Instant>,
    namespaces: HashMap<String, VecDeque<Instant>>,
    agents: HashMap<String, VecDeque<Instant>>,
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
    pub fn try_take(&mut self, namespace: &str, agent: &str, now: Instant) -> Result<(), String> {
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
        self.global.push_back(now);
        self.namespaces
            .entry(namespace.to_string())
            .or_default()
            .push_back(now);
        self.agents
            .entry(agent.to_string())
            .or_default()
            .push_back(now);
        Ok(())
    }
}

fn trim(window: &mut VecDeque<Instant>, now: Instant) -> usize {
    while window
        .front()
        .is_some_and(|t| now.duration_since(*t) >= WINDOW)
    {
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
        let t0 = Instant::now();
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
    fn a_storm_across_agents_stops_at_the_global_cap() {
        let mut b = Budget::new(BudgetConfig {
            global_per_minute: 5,
            namespace_per_minute: 100,
            agent_per_minute: 100,
        });
        let t0 = Instant::now();
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
        let t0 = Instant::now();
        let taken = (0..10)
            .filter(|i| b.try_take("payments", &format!("agent{i}"), t0).is_ok())
            .count();
        assert_eq!(taken, 3);
    }
}
