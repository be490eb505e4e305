//! Firebreak's domain and engine: alert → incident → plan → apply → verify → rollback.
//!
//! This crate knows no cloud SDK. Each control plane lives in its own crate under `surfaces/`
//! and plugs in through [`surface::ControlPlane`].

pub mod action;
pub mod agent;
pub mod alert;
pub mod budget;
pub mod config;
pub mod engine;
pub mod envelope;
pub mod error;
pub mod incident;
pub mod journal;
pub mod matching;
pub mod metrics;
pub mod plan;
pub mod planner;
pub mod runbook;
pub mod surface;

pub use action::{ActionKind, Surface};
pub use agent::AgentRef;
pub use alert::{Alert, Dimension, Parameter, Severity, Tier};
pub use envelope::{Envelope, EnvelopeStatus, EnvelopeStore};
pub use error::InputError;
pub use plan::{BlastRadius, Candidate, Mode, Plan};
