//! The one in-memory policy the gateway enforces and the control plane writes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{OnceLock, RwLock};

use firebreak_containment::agent::AgentKey;
use firebreak_containment::engine::Engine;
use firebreak_containment::envelope::EnvelopeStore;
use firebreak_containment::ids::{IncidentId, PlanId};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// What one revocation covers, for one agent.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "scope")]
pub enum Scope {
    Tool { server: String, tool: String },
    Server { server: String },
    All,
}

impl Scope {
    pub(crate) fn covers(&self, server: &str, tool: &str) -> bool {
        match self {
            Scope::Tool { server: s, tool: t } => s == server && t == tool,
            Scope::Server { server: s } => s == server,
            Scope::All => true,
        }
    }
}

/// One revocation, as journaled in the action spec.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Revocation {
    pub agent: AgentKey,
    #[serde(flatten)]
    pub scope: Scope,
    pub incident: IncidentId,
    /// The plan that holds it: refused calls are journaled under it.
    pub plan: PlanId,
}

/// The gateway's answer for one `tools/call`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// Revoked by an incident's action.
    Revoked(Revocation),
    /// Envelope-only mode and the tool is not a permitted entry of the caller's envelope.
    OutsideEnvelope,
}

#[derive(Default)]
struct State {
    revocations: HashSet<Revocation>,
    /// Permitted (server, tool) per agent, for envelope-only mode.
    envelopes: HashMap<AgentKey, HashSet<(String, String)>>,
    envelope_only: bool,
    /// Tools each upstream listed, learned from the `tools/list` answers the gateway relays.
    catalogue: BTreeMap<String, HashSet<String>>,
}

/// Shared by the gateway (reads on every call) and [`crate::ToolsPlane`] (writes on apply/revert).
pub struct Policy {
    state: RwLock<State>,
    /// Agents whose visible tool set changed: their listen streams get `list_changed`.
    changes: broadcast::Sender<AgentKey>,
    /// Set once the engine exists (it is built after the planes, so it cannot be passed in).
    engine: OnceLock<Engine>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            state: RwLock::default(),
            changes: broadcast::channel(256).0,
            engine: OnceLock::new(),
        }
    }
}

impl Policy {
    /// Lets refused calls be journaled. Later calls are ignored: one engine per process.
    pub fn attach_engine(&self, engine: Engine) {
        let _ = self.engine.set(engine);
    }

    pub(crate) fn engine(&self) -> Option<&Engine> {
        self.engine.get()
    }

    /// Loads the permitted tools per agent and turns envelope-only mode on or off.
    pub fn set_envelopes(&self, store: &EnvelopeStore, envelope_only: bool) {
        let envelopes = store
            .iter()
            .map(|e| {
                let permitted = e
                    .tools()
                    .permitted
                    .iter()
                    .map(|o| (o.value.server.clone(), o.value.tool.clone()))
                    .collect();
                (e.agent_key(), permitted)
            })
            .collect();
        let mut state = self.write();
        state.envelopes = envelopes;
        state.envelope_only = envelope_only;
    }

    /// The decision for one call: the same path the gateway and verification take.
    pub fn decide(&self, agent: &AgentKey, server: &str, tool: &str) -> Decision {
        let state = self.read();
        if let Some(r) = state
            .revocations
            .iter()
            .find(|r| &r.agent == agent && r.scope.covers(server, tool))
        {
            return Decision::Revoked(r.clone());
        }
        if state.envelope_only
            && !state
                .envelopes
                .get(agent)
                .is_some_and(|p| p.contains(&(server.to_string(), tool.to_string())))
        {
            return Decision::OutsideEnvelope;
        }
        Decision::Allowed
    }

    /// Whether the upstream is known not to have the tool (it listed its tools and T was not
    /// among them). Unknown catalogue: `false`, the upstream decides.
    pub(crate) fn unknown_tool(&self, server: &str, tool: &str) -> bool {
        self.read()
            .catalogue
            .get(server)
            .is_some_and(|tools| !tools.contains(tool))
    }

    pub(crate) fn learn_tools<'a>(&self, server: &str, tools: impl Iterator<Item = &'a str>) {
        let mut state = self.write();
        let known = state.catalogue.entry(server.to_string()).or_default();
        known.extend(tools.map(str::to_string));
    }

    /// Adds a revocation; `false` when it was already in force (idempotent re-apply).
    pub(crate) fn revoke(&self, revocation: Revocation) -> bool {
        let agent = revocation.agent.clone();
        let added = self.write().revocations.insert(revocation);
        if added {
            let _ = self.changes.send(agent);
        }
        added
    }

    /// Removes a revocation; `false` when it was already gone.
    pub(crate) fn restore(&self, revocation: &Revocation) -> bool {
        let removed = self.write().revocations.remove(revocation);
        if removed {
            let _ = self.changes.send(revocation.agent.clone());
        }
        removed
    }

    pub(crate) fn holds(&self, revocation: &Revocation) -> bool {
        self.read().revocations.contains(revocation)
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<AgentKey> {
        self.changes.subscribe()
    }

    // A poisoned lock only means a panic elsewhere mid-update of plain sets: keep serving.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> AgentKey {
        AgentKey(s.into())
    }

    #[test]
    fn revocation_touches_one_agent_and_reapply_is_idempotent() {
        let p = Policy::default();
        let r = Revocation {
            agent: key("c/n/Deployment/a"),
            scope: Scope::Tool {
                server: "s".into(),
                tool: "t".into(),
            },
            incident: "inc-1".into(),
            plan: "inc-1-p1".into(),
        };
        assert!(p.revoke(r.clone()));
        assert!(!p.revoke(r.clone()), "second apply changes nothing");
        assert!(matches!(p.decide(&r.agent, "s", "t"), Decision::Revoked(_)));
        assert_eq!(p.decide(&r.agent, "s", "u"), Decision::Allowed);
        assert_eq!(
            p.decide(&key("c/n/Deployment/b"), "s", "t"),
            Decision::Allowed
        );
        assert!(p.restore(&r));
        assert!(!p.restore(&r));
        assert_eq!(p.decide(&r.agent, "s", "t"), Decision::Allowed);
    }
}
