//! Firebreak's domain and engine: alert → incident → plan → apply → verify → rollback.
//!
//! This crate knows no cloud SDK. Each control plane lives in its own crate under `surfaces/`
//! and plugs in through [`plane::Plane`] (docs/adding-a-plane.md); how the parts fit is in
//! docs/ARCHITECTURE.md.

pub mod agent;
pub mod alert;
pub mod budget;
pub mod canonical;
pub mod config;
pub mod engine;
pub mod envelope;
pub mod error;
pub mod guard;
pub mod ids;
pub mod incident;
pub mod journal;
pub mod matching;
pub mod metrics;
pub mod plan;
pub mod plane;
pub mod planner;
pub mod runbook;
pub mod state;
#[cfg(test)]
mod testing;

pub use agent::AgentRef;
pub use alert::{Alert, Dimension, Parameter, Severity, Tier};
pub use envelope::{Envelope, EnvelopeStatus, EnvelopeStore};
pub use error::InputError;
pub use ids::{ActionKind, IncidentId, PlanId, PlaneKey};
pub use plan::{BlastRadius, Candidate, Enforcement, Mode, Plan};
pub use state::PlanStatus;
