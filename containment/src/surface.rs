//! The one trait every control plane implements: observe → candidates → apply → verify → revert.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::action::Surface;
use crate::alert::Alert;
use crate::envelope::Envelope;
use crate::plan::Candidate;

/// What a control plane is asked to plan for.
#[derive(Clone, Copy)]
pub struct PlanInput<'a> {
    pub incident: &'a str,
    pub alert: &'a Alert,
    pub envelope: &'a Envelope,
}

/// The control-plane state a plan was computed from. Produces candidates without I/O, so the
/// decision path stays pure once the state is read.
pub trait Observation: Send + Sync {
    fn candidates(&self, input: &PlanInput<'_>) -> Result<Vec<Candidate>, SurfaceError>;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// False when the target was already in the desired state (idempotent success).
    pub changed: bool,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    pub ok: bool,
    pub detail: String,
}

/// The four things done to an action. Control planes dispatch on it so that each action kind
/// answers all four in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Apply,
    Verify,
    Revert,
    VerifyReverted,
}

/// What an operation produced: a change (apply, revert) or a check (verify, verify-reverted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Changed(Outcome),
    Checked(Verification),
}

impl Step {
    pub fn changed(detail: String) -> Step {
        Step::Changed(Outcome {
            changed: true,
            detail,
        })
    }

    /// Already in the target state: idempotent success, nothing written.
    pub fn unchanged(detail: String) -> Step {
        Step::Changed(Outcome {
            changed: false,
            detail,
        })
    }

    pub fn ok(detail: String) -> Step {
        Step::Checked(Verification { ok: true, detail })
    }

    pub fn failed(detail: String) -> Step {
        Step::Checked(Verification { ok: false, detail })
    }

    /// The outcome of an apply or revert; a check here is a bug in `plane`.
    pub fn into_outcome(self, plane: &'static str) -> Result<Outcome, SurfaceError> {
        match self {
            Step::Changed(o) => Ok(o),
            Step::Checked(v) => Err(SurfaceError::Invalid {
                plane,
                detail: format!("expected a change, got a check: {}", v.detail),
            }),
        }
    }

    /// The verification of a verify or verify-reverted; a change here is a bug in `plane`.
    pub fn into_verification(self, plane: &'static str) -> Result<Verification, SurfaceError> {
        match self {
            Step::Checked(v) => Ok(v),
            Step::Changed(o) => Err(SurfaceError::Invalid {
                plane,
                detail: format!("expected a check, got a change: {}", o.detail),
            }),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum SurfaceError {
    #[error("{plane} is unreachable: {detail}; check its endpoint, network and credentials")]
    Unreachable { plane: &'static str, detail: String },
    #[error("{plane} refused the request: {detail}")]
    Refused { plane: &'static str, detail: String },
    #[error("{plane}: the target changed while Firebreak acted ({detail}); re-plan the incident")]
    Conflict { plane: &'static str, detail: String },
    #[error("{plane} cannot contain this: {detail}")]
    Unsupported { plane: &'static str, detail: String },
    #[error("{plane}: {detail}")]
    Invalid { plane: &'static str, detail: String },
}

/// One control plane (AWS IAM, the MCP gateway, pgvector, …).
///
/// `apply` and `revert` must be idempotent: called again after a crash they find the target
/// already in state and return `changed: false` without writing.
#[async_trait]
pub trait ControlPlane: Send + Sync {
    fn surface(&self) -> Surface;

    /// Whether this plane can act for this alert (its dimension, and a binding for the agent).
    fn handles(&self, input: &PlanInput<'_>) -> bool;

    /// Reads the state the blast radius needs. Reads only: dry runs rely on it.
    async fn observe(&self, input: &PlanInput<'_>) -> Result<Box<dyn Observation>, SurfaceError>;

    /// Runs one operation of an action. Each action kind answers all four operations in one
    /// place; the trait derives `apply`, `verify`, `revert` and `verify_reverted` from it.
    async fn run(&self, action: &Candidate, op: Op) -> Result<Step, SurfaceError>;

    async fn apply(&self, action: &Candidate) -> Result<Outcome, SurfaceError> {
        self.run(action, Op::Apply)
            .await?
            .into_outcome(self.surface().as_str())
    }

    /// Whether the action is in effect (read back from the control plane).
    async fn verify(&self, action: &Candidate) -> Result<Verification, SurfaceError> {
        self.run(action, Op::Verify)
            .await?
            .into_verification(self.surface().as_str())
    }

    async fn revert(&self, action: &Candidate) -> Result<Outcome, SurfaceError> {
        self.run(action, Op::Revert)
            .await?
            .into_outcome(self.surface().as_str())
    }

    /// Whether the revert is in effect.
    async fn verify_reverted(&self, action: &Candidate) -> Result<Verification, SurfaceError> {
        self.run(action, Op::VerifyReverted)
            .await?
            .into_verification(self.surface().as_str())
    }

    fn verify_deadline(&self) -> Duration;
}
