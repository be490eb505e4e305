//! The plan: the chosen action, every candidate with its blast radius and why it was rejected.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::agent::AgentRef;
use crate::alert::{Dimension, Parameter};
use crate::ids::{ActionKind, IncidentId, PlanId, PlaneKey};

/// What an action would break inside the envelope.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlastRadius {
    /// How many in-envelope behaviours become blocked.
    pub broken: usize,
    /// Which ones, human-readable (e.g. `s3:GetObject on arn:aws:s3:::invoices/*`).
    pub items: Vec<String>,
    /// Behaviours whose fate could not be decided (e.g. an IAM condition not evaluated here).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub undetermined: Vec<String>,
}

impl BlastRadius {
    pub fn of(items: Vec<String>) -> Self {
        Self {
            broken: items.len(),
            items,
            undetermined: Vec::new(),
        }
    }
}

/// Where the action takes effect: at an enforcement point Firebreak owns (next call) or at a
/// cloud/cluster control plane (after propagation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Enforcement {
    Immediate,
    Durable,
}

/// One rung considered for this breach, as the engine journals it: the plane's proposal
/// stamped with the plane's key and its kind's declaration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    /// The config key of the plane that proposed it, and that will carry it out.
    pub plane: PlaneKey,
    pub kind: ActionKind,
    /// The ladder the kind is a rung of, and its rung (0 = narrowest).
    pub ladder: String,
    pub rung: u8,
    /// The broadest rungs always wait for a human.
    pub approval_only: bool,
    pub enforcement: Enforcement,
    /// What it acts on, e.g. `arn:aws:iam::123456789012:role/payment-agent`.
    pub target: String,
    /// How much it covers, in words.
    pub granularity: String,
    pub blast_radius: BlastRadius,
    /// Whether, once effective, the breached parameter is blocked.
    pub blocks: bool,
    /// The inverse action, in words.
    pub inverse: String,
    /// How success is verified, in words.
    pub verify: String,
    /// Why this candidate was not chosen (`None` on the chosen one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<String>,
    /// Notes the operator must read (e.g. why IAM writes are also denied).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The plane's typed spec, encoded once by the plane adapter; carries the pre-image needed
    /// to undo the change.
    pub spec: serde_json::Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Plan only; nothing is written anywhere but the journal.
    DryRun,
    /// Wait for a human to approve this exact plan.
    Approve,
    /// Apply now, within the blast-radius budget.
    Auto,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::DryRun => "dry-run",
            Mode::Approve => "approve",
            Mode::Auto => "auto",
        }
    }
}

/// A plan for one alert of one incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub id: PlanId,
    pub incident: IncidentId,
    pub alert: String,
    pub agent: AgentRef,
    /// `dimension` and `parameter`, one tagged value.
    #[serde(flatten)]
    pub parameter: Parameter,
    pub envelope_version: Option<u64>,
    pub mode: Mode,
    /// Why this mode (the runbook rule, or the safety rule that overrode it).
    pub mode_reason: String,
    /// On a dry run: the mode and rule the real run would take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub would_be: Option<crate::guard::WouldBe>,
    /// The action to take; `None` when no candidate blocks the breach.
    pub chosen: Option<Candidate>,
    /// Every candidate considered, narrowest first, each with why it was rejected.
    pub candidates: Vec<Candidate>,
    /// Set when a human must look (learning envelope, budget exhausted, nothing blocks…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation: Option<String>,
    /// Seconds the action stays before it is reverted automatically.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
    /// sha256 of this plan without the hash: approvals are bound to it.
    pub hash: String,
}

impl Plan {
    pub fn dimension(&self) -> Dimension {
        self.parameter.dimension()
    }

    /// Computes the hash over every field but `hash`, so an approval names exactly this plan.
    pub fn seal(mut self) -> Plan {
        self.hash = String::new();
        let bytes = serde_json::to_vec(&self).unwrap_or_default();
        self.hash = hex::encode(Sha256::digest(&bytes));
        self
    }
}

/// A candidate for unit tests of the planner and runbooks.
#[cfg(test)]
pub(crate) fn sample_candidate(kind: &'static crate::plane::KindSpec, broken: usize) -> Candidate {
    Candidate {
        plane: PlaneKey::from_static("test"),
        kind: kind.kind(),
        ladder: kind.ladder.to_string(),
        rung: kind.rung,
        approval_only: kind.approval_only,
        enforcement: kind.enforcement,
        target: "target".into(),
        granularity: "granularity".into(),
        blast_radius: BlastRadius::of((0..broken).map(|i| format!("behaviour {i}")).collect()),
        blocks: true,
        inverse: "inverse".into(),
        verify: "verify".into(),
        rejected: None,
        notes: vec![],
        spec: serde_json::Value::Null,
    }
}
