//! The router: dedupe and routing under one short lock, never held across I/O. It knows every
//! incident's handle (its task's inbox and its published view), which alert ids were seen with
//! which content, and which incident is open per agent and dimension.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{mpsc, watch};

use super::task::{Command, Task};
use super::Shared;
use crate::agent::AgentKey;
use crate::alert::{Alert, Dimension};
use crate::ids::IncidentId;
use crate::incident::Incident;

pub(crate) type View = watch::Receiver<Option<Arc<Incident>>>;

/// An incident's task, running or not started yet (a closed incident until someone asks).
enum Inbox {
    Dormant(watch::Sender<Option<Arc<Incident>>>),
    Running(mpsc::UnboundedSender<Command>),
}

struct Handle {
    view: View,
    inbox: Inbox,
}

/// An alert's identity: who sent it and the id they gave it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct AlertKey {
    source: String,
    id: String,
}

impl AlertKey {
    pub fn of(alert: &Alert) -> AlertKey {
        AlertKey {
            source: alert.source.clone(),
            id: alert.id.clone(),
        }
    }
}

struct Seen {
    incident: IncidentId,
    digest: String,
}

#[derive(Default)]
struct Index {
    /// Set at shutdown: no task starts any more.
    closed: bool,
    incidents: BTreeMap<IncidentId, Handle>,
    alerts: HashMap<AlertKey, Seen>,
    open: HashMap<(AgentKey, Dimension), IncidentId>,
}

/// Where an alert goes.
pub(crate) enum Routed {
    /// To this incident's task (new or existing).
    To(IncidentId),
    /// A resend of an alert already routed: answer from the incident's view.
    Resend(IncidentId, View),
    /// A known id with another body.
    Conflict {
        incident: IncidentId,
        known_digest: String,
    },
}

#[derive(Default)]
pub(crate) struct Router {
    index: Mutex<Index>,
}

impl Router {
    fn index(&self) -> MutexGuard<'_, Index> {
        // A poisoned lock means a panic elsewhere; the index itself is still consistent
        // (every mutation is a single insert or remove).
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers an incident folded from the journal (its task starts when first needed).
    pub fn restore(&self, incident: Incident, seen: Vec<(AlertKey, String)>) {
        let mut index = self.index();
        let id = incident.id.clone();
        for (key, digest) in seen {
            index.alerts.insert(
                key,
                Seen {
                    incident: id.clone(),
                    digest,
                },
            );
        }
        if incident.is_open() || incident.plans.is_empty() {
            index
                .open
                .insert((incident.agent.key(), incident.dimension), id.clone());
        }
        let (tx, view) = watch::channel(Some(Arc::new(incident)));
        index.incidents.insert(
            id,
            Handle {
                view,
                inbox: Inbox::Dormant(tx),
            },
        );
    }

    /// Dedupes `alert` and picks its incident, creating one (`fresh`) when none is open.
    /// A rehearsal (`indexed: false`) always gets its own incident and is never remembered.
    pub fn route(&self, alert: &Alert, indexed: bool, fresh: IncidentId) -> Routed {
        let mut index = self.index();
        if !indexed {
            index.add(fresh.clone());
            return Routed::To(fresh);
        }
        let key = AlertKey::of(alert);
        let digest = alert.digest();
        if let Some(seen) = index.alerts.get(&key) {
            if seen.digest == digest {
                let incident = seen.incident.clone();
                let view = index.incidents.get(&incident).map(|h| h.view.clone());
                return match view {
                    Some(view) => Routed::Resend(incident, view),
                    None => Routed::To(incident),
                };
            }
            return Routed::Conflict {
                incident: seen.incident.clone(),
                known_digest: seen.digest.clone(),
            };
        }
        let slot = (alert.agent.key(), alert.dimension());
        let open = index.open.get(&slot).cloned().filter(|id| {
            index.incidents.get(id).is_some_and(|h| {
                h.view
                    .borrow()
                    .as_ref()
                    .is_none_or(|i| i.is_open() || i.plans.is_empty())
            })
        });
        let incident = match open {
            Some(id) => id,
            None => {
                index.add(fresh.clone());
                index.open.insert(slot, fresh.clone());
                fresh
            }
        };
        index.alerts.insert(
            key,
            Seen {
                incident: incident.clone(),
                digest,
            },
        );
        Routed::To(incident)
    }

    /// Whether `(source, id)` was seen (a resend, or a conflict): answered without planning.
    pub fn knows(&self, alert: &Alert) -> bool {
        self.index().alerts.contains_key(&AlertKey::of(alert))
    }

    /// Forgets an alert whose receipt could not be journaled, so a retry is not a resend.
    pub fn forget(&self, alert: &Alert) {
        self.index().alerts.remove(&AlertKey::of(alert));
    }

    /// Sends `command` to the incident's task, starting the task if it was dormant. Returns the
    /// command when there is no such incident.
    pub fn send(
        &self,
        shared: &Arc<Shared>,
        incident: &IncidentId,
        command: Command,
    ) -> Result<(), Command> {
        let mut index = self.index();
        if index.closed {
            return Err(command);
        }
        let Some(handle) = index.incidents.get_mut(incident) else {
            return Err(command);
        };
        if let Inbox::Dormant(view) = &handle.inbox {
            let (tx, rx) = mpsc::unbounded_channel();
            Task::spawn(shared, incident.clone(), rx, view.clone());
            handle.inbox = Inbox::Running(tx);
        }
        match &handle.inbox {
            Inbox::Running(tx) => tx.send(command).map_err(|e| e.0),
            Inbox::Dormant(_) => Err(command),
        }
    }

    pub fn view(&self, incident: &IncidentId) -> Option<View> {
        self.index().incidents.get(incident).map(|h| h.view.clone())
    }

    /// Every incident's latest published view.
    pub fn views(&self) -> Vec<Arc<Incident>> {
        self.index()
            .incidents
            .values()
            .filter_map(|h| h.view.borrow().clone())
            .collect()
    }

    /// Stops every task: their inboxes close, they finish the command at hand and exit.
    pub fn close(&self) {
        let mut index = self.index();
        index.closed = true;
        for handle in index.incidents.values_mut() {
            if let Inbox::Running(_) = handle.inbox {
                let (tx, _) = watch::channel(None);
                handle.inbox = Inbox::Dormant(tx);
            }
        }
    }
}

impl Index {
    fn add(&mut self, id: IncidentId) {
        let (tx, view) = watch::channel(None);
        self.incidents.insert(
            id,
            Handle {
                view,
                inbox: Inbox::Dormant(tx),
            },
        );
    }
}
