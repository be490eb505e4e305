//! The policy feed: what each agent's shims and gateways must refuse, versioned per agent.
//!
//! Control planes write rules (each held by an incident, so two incidents holding the same rule
//! release it independently); shims read one JSON document per agent, by poll or by SSE.
//!
//! The feed lives in the daemon's memory and is rebuilt from the journal on every start, while
//! shims outlive the daemon. So versions never go back: each feed has an `epoch` (its start, in
//! µs since the Unix epoch), documents nothing changed in this epoch carry the epoch as their
//! version, and every change takes `max(last + 1, now in µs)`. A restarted or standby daemon's
//! documents are newer than anything an older one served, and a shim that sees another epoch
//! takes the document whatever its version (the clock may have stepped back).

mod http;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use firebreak_containment::agent::AgentKey;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

pub use http::{router, FeedAuth, FeedConfig, FeedConfigError, TokenScope, KEEP_ALIVE};

/// One thing an agent's enforcement points must refuse.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "camelCase")]
pub enum Rule {
    /// The edge from this agent to `to` (an agent key) is cut.
    Severed { to: String },
    /// No caller may reach this agent.
    InboundIsolated,
    /// Every edge from and into this agent is cut: its graph waits.
    Paused,
    /// `tool` on `server` (`*` for every tool, or every server) is refused at the gateway.
    RevokedTool { server: String, tool: String },
    /// Egress to `destination` (on `port`, or every port) is blocked.
    BlockedDestination {
        destination: String,
        port: Option<u16>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolRef {
    pub server: String,
    pub tool: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestinationRef {
    pub destination: String,
    pub port: Option<u16>,
}

/// What `GET /v1/feed?agent=` serves and every SSE event carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Document {
    pub agent: AgentKey,
    /// The feed that served it: a different epoch means resync, not compare.
    pub epoch: u64,
    /// Increases with every change to this document, across daemon restarts.
    pub version: u64,
    /// Agents this agent may no longer delegate to.
    pub severed: Vec<String>,
    /// Callers whose edge into this agent is cut: a callee-side shim refuses them.
    pub severed_from: Vec<String>,
    pub inbound_isolated: bool,
    pub paused: bool,
    pub revoked_tools: Vec<ToolRef>,
    pub blocked_destinations: Vec<DestinationRef>,
}

impl Document {
    /// Why the edge `self → to` is refused, if it is: the decision every shim makes, given the
    /// caller's document and (when it can read it) the callee's.
    pub fn refuses_edge(&self, to: &str, callee: Option<&Document>) -> Option<String> {
        let from = &self.agent;
        if self.paused {
            return Some(format!("{from} is paused"));
        }
        if self.severed.iter().any(|t| t == to) {
            return Some(format!("edge {from} → {to} is severed"));
        }
        let callee = callee?;
        if callee.inbound_isolated {
            return Some(format!("{to} is isolated from every caller"));
        }
        if callee.paused {
            return Some(format!("{to} is paused"));
        }
        None
    }
}

#[derive(Debug, Default)]
struct Entry {
    version: u64,
    /// Each rule in force with the incidents holding it.
    holds: BTreeMap<Rule, BTreeSet<String>>,
}

/// The feed's whole state; the watch channel carries it so subscribers wake on every change.
#[derive(Debug)]
pub(crate) struct State {
    epoch: u64,
    /// The last version handed out, across agents (the epoch until something changes).
    version: u64,
    /// Agents with an envelope: served even before anything is contained.
    known: BTreeSet<AgentKey>,
    entries: HashMap<AgentKey, Entry>,
}

impl State {
    fn new(epoch: u64) -> State {
        State {
            epoch,
            version: epoch,
            known: BTreeSet::new(),
            entries: HashMap::new(),
        }
    }

    fn hold(&mut self, agent: &AgentKey, rule: &Rule, holder: &str) -> bool {
        let holders = self
            .entries
            .entry(agent.clone())
            .or_default()
            .holds
            .entry(rule.clone())
            .or_default();
        let first = holders.is_empty();
        if !holders.insert(holder.to_string()) {
            return false;
        }
        if first {
            self.bump(agent, rule);
        }
        true
    }

    fn release(&mut self, agent: &AgentKey, rule: &Rule, holder: &str) -> bool {
        let Some(entry) = self.entries.get_mut(agent) else {
            return false;
        };
        let Some(holders) = entry.holds.get_mut(rule) else {
            return false;
        };
        if !holders.remove(holder) {
            return false;
        }
        if holders.is_empty() {
            entry.holds.remove(rule);
            self.bump(agent, rule);
        }
        true
    }

    /// A rule appeared or disappeared: every document showing it gets a new version.
    fn bump(&mut self, agent: &AgentKey, rule: &Rule) {
        self.version = (self.version + 1).max(micros_since_unix_epoch());
        let version = self.version;
        self.entries.entry(agent.clone()).or_default().version = version;
        if let Rule::Severed { to } = rule {
            // The callee's `severedFrom` changed too.
            self.entries
                .entry(AgentKey(to.clone()))
                .or_default()
                .version = version;
        }
    }

    /// The incidents whose rules refuse `from → to`, by the same rules as
    /// [`Document::refuses_edge`]: what a shim's refusal rests on.
    fn refusing(&self, from: &AgentKey, to: &AgentKey) -> BTreeSet<String> {
        let held = |agent: &AgentKey, rule: &Rule| {
            self.entries
                .get(agent)
                .and_then(|e| e.holds.get(rule))
                .into_iter()
                .flatten()
                .cloned()
                .collect::<Vec<_>>()
        };
        let severed = Rule::Severed { to: to.0.clone() };
        [
            held(from, &Rule::Paused),
            held(from, &severed),
            held(to, &Rule::InboundIsolated),
            held(to, &Rule::Paused),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    fn holds(&self, agent: &AgentKey, rule: &Rule, holder: &str) -> bool {
        self.entries
            .get(agent)
            .and_then(|e| e.holds.get(rule))
            .is_some_and(|h| h.contains(holder))
    }

    pub(crate) fn document(&self, agent: &AgentKey) -> Option<Document> {
        let entry = self.entries.get(agent);
        if entry.is_none() && !self.known.contains(agent) {
            return None;
        }
        let mut doc = Document {
            agent: agent.clone(),
            epoch: self.epoch,
            version: entry.map_or(self.epoch, |e| e.version),
            severed: Vec::new(),
            severed_from: Vec::new(),
            inbound_isolated: false,
            paused: false,
            revoked_tools: Vec::new(),
            blocked_destinations: Vec::new(),
        };
        for rule in entry.iter().flat_map(|e| e.holds.keys()) {
            match rule {
                Rule::Severed { to } => doc.severed.push(to.clone()),
                Rule::InboundIsolated => doc.inbound_isolated = true,
                Rule::Paused => doc.paused = true,
                Rule::RevokedTool { server, tool } => doc.revoked_tools.push(ToolRef {
                    server: server.clone(),
                    tool: tool.clone(),
                }),
                Rule::BlockedDestination { destination, port } => {
                    doc.blocked_destinations.push(DestinationRef {
                        destination: destination.clone(),
                        port: *port,
                    })
                }
            }
        }
        let severed_into_me = Rule::Severed {
            to: agent.0.clone(),
        };
        doc.severed_from = self
            .entries
            .iter()
            .filter(|(_, e)| e.holds.contains_key(&severed_into_me))
            .map(|(caller, _)| caller.0.clone())
            .collect();
        doc.severed_from.sort();
        Some(doc)
    }
}

/// The feed, shared by the control planes that write it and the HTTP router that serves it.
/// Cheap to clone.
#[derive(Clone)]
pub struct Feed {
    state: Arc<watch::Sender<State>>,
}

fn micros_since_unix_epoch() -> u64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
}

impl Default for Feed {
    /// A feed whose epoch is now.
    fn default() -> Self {
        Feed::with_epoch(micros_since_unix_epoch())
    }
}

impl Feed {
    pub fn with_epoch(epoch: u64) -> Feed {
        Self {
            state: Arc::new(watch::Sender::new(State::new(epoch))),
        }
    }

    pub fn epoch(&self) -> u64 {
        self.state.borrow().epoch
    }

    /// Agents the feed serves before anything is contained (those with an envelope). Replaces
    /// the previous set; agents holding rules are served regardless.
    pub fn set_agents(&self, agents: impl IntoIterator<Item = AgentKey>) {
        let known = agents.into_iter().collect();
        // No document changes: subscribers need not wake.
        self.state.send_if_modified(|s| {
            s.known = known;
            false
        });
    }

    /// Puts `rule` in force for `agent` on behalf of `holder` (an incident). False when
    /// `holder` already held it (idempotent).
    pub fn set(&self, agent: &AgentKey, rule: &Rule, holder: &str) -> bool {
        self.state.send_if_modified(|s| s.hold(agent, rule, holder))
    }

    /// Releases `holder`'s hold; the rule leaves the document once nobody holds it. False when
    /// `holder` did not hold it (idempotent).
    pub fn clear(&self, agent: &AgentKey, rule: &Rule, holder: &str) -> bool {
        self.state
            .send_if_modified(|s| s.release(agent, rule, holder))
    }

    pub fn holds(&self, agent: &AgentKey, rule: &Rule, holder: &str) -> bool {
        self.state.borrow().holds(agent, rule, holder)
    }

    /// The incidents holding the rules that refuse `from → to` (none: nothing refuses it).
    pub fn refusing(&self, from: &AgentKey, to: &AgentKey) -> Vec<String> {
        self.state.borrow().refusing(from, to).into_iter().collect()
    }

    /// The document shims get for `agent`; `None` for an agent the feed does not know.
    pub fn document(&self, agent: &AgentKey) -> Option<Document> {
        self.state.borrow().document(agent)
    }

    /// The last version handed out to any document: unchanged means nothing was written.
    pub fn version(&self) -> u64 {
        self.state.borrow().version
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<State> {
        self.state.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> AgentKey {
        AgentKey(format!("c/n/Deployment/{name}"))
    }

    fn severed(name: &str) -> Rule {
        Rule::Severed { to: key(name).0 }
    }

    #[test]
    fn holds_are_per_incident_and_versions_only_grow() {
        let feed = Feed::default();
        let (a, b) = (key("a"), key("b"));
        assert!(feed.set(&a, &severed("b"), "inc-1"));
        assert!(!feed.set(&a, &severed("b"), "inc-1"), "idempotent");
        let v1 = feed.document(&a).expect("a").version;
        assert_eq!(
            feed.document(&b).expect("b").severed_from,
            vec![a.0.clone()]
        );
        assert_eq!(feed.document(&b).expect("b").version, v1);
        // A second holder changes no document.
        assert!(feed.set(&a, &severed("b"), "inc-2"));
        assert_eq!(feed.version(), v1);
        assert!(feed.clear(&a, &severed("b"), "inc-1"));
        assert_eq!(feed.document(&a).expect("a").severed, vec![b.0.clone()]);
        assert!(feed.clear(&a, &severed("b"), "inc-2"));
        assert!(!feed.clear(&a, &severed("b"), "inc-2"), "idempotent");
        let doc = feed.document(&a).expect("a");
        assert!(doc.severed.is_empty() && doc.version > v1);
    }

    #[test]
    fn unknown_agents_have_no_document_until_known_or_held() {
        let feed = Feed::default();
        assert_eq!(feed.document(&key("a")), None);
        feed.set_agents([key("a")]);
        let doc = feed.document(&key("a")).expect("known");
        assert_eq!((doc.epoch, doc.version), (feed.epoch(), feed.epoch()));
        assert_eq!(
            feed.version(),
            feed.epoch(),
            "knowing agents is not a change"
        );
    }

    #[test]
    fn a_later_feed_serves_newer_versions_than_an_earlier_one_ever_did() {
        let before = Feed::default();
        let a = key("a");
        for n in 0..1_000 {
            let holder = format!("inc-{n}");
            before.set(&a, &severed("b"), &holder);
            before.clear(&a, &severed("b"), &holder);
        }
        let last = before.document(&a).expect("a").version;
        // The daemon restarts: a new feed, rebuilt from the journal.
        let after = Feed::default();
        after.set_agents([a.clone()]);
        let untouched = after.document(&a).expect("a");
        assert!(untouched.version > last, "{} <= {last}", untouched.version);
        after.set(&a, &severed("b"), "inc-x");
        assert!(after.document(&a).expect("a").version > untouched.version);
    }

    #[test]
    fn versions_grow_even_when_the_clock_is_behind_the_epoch() {
        // An epoch far in the future stands for a clock that stepped back since.
        let feed = Feed::with_epoch(u64::MAX / 2);
        let a = key("a");
        feed.set(&a, &severed("b"), "i");
        let v1 = feed.document(&a).expect("a").version;
        feed.clear(&a, &severed("b"), "i");
        assert_eq!(v1, u64::MAX / 2 + 1);
        assert_eq!(feed.document(&a).expect("a").version, v1 + 1);
    }

    #[test]
    fn edge_decisions_follow_caller_and_callee_documents() {
        let feed = Feed::default();
        let (a, b, c) = (key("a"), key("b"), key("c"));
        feed.set_agents([a.clone(), b.clone(), c.clone()]);
        let refuses = |to: &AgentKey| {
            let caller = feed.document(&a).expect("a");
            caller.refuses_edge(&to.0, feed.document(to).as_ref())
        };
        feed.set(&a, &severed("b"), "i");
        assert!(refuses(&b).is_some_and(|r| r.contains("severed")));
        assert_eq!(refuses(&c), None);
        feed.set(&c, &Rule::InboundIsolated, "i");
        assert!(refuses(&c).is_some_and(|r| r.contains("isolated")));
    }
}
