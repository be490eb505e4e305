//! What a control plane can answer instead of a result, typed so that one place (the engine's
//! error policy, docs/ARCHITECTURE.md §Errors) decides what happens next.

use serde::{Deserialize, Serialize};

/// What the engine does about a fault: the kind decides, never the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// Unreachable, timed out, throttled or a server error: retried with bounded backoff.
    Transient,
    /// The target changed since the plan was made: the incident is re-planned.
    Conflict,
    /// The control plane refused (permissions, quota, validation): stop and escalate.
    Denied,
    /// This action cannot be carried out here: stop and escalate.
    Unsupported,
    /// The request or the journaled spec is malformed: stop and escalate.
    Invalid,
}

impl FaultKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Transient => "transient",
            FaultKind::Conflict => "conflict",
            FaultKind::Denied => "denied",
            FaultKind::Unsupported => "unsupported",
            FaultKind::Invalid => "invalid",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlaneError {
    #[error("{plane} is unreachable: {detail}; check its endpoint, network and credentials")]
    Unreachable { plane: &'static str, detail: String },
    #[error("{plane} is temporarily failing: {detail}; Firebreak retries with backoff")]
    Unavailable { plane: &'static str, detail: String },
    #[error("{plane} refused the request: {detail}")]
    Refused { plane: &'static str, detail: String },
    #[error(
        "{plane}: the target changed while Firebreak acted ({detail}); the incident is re-planned"
    )]
    Conflict { plane: &'static str, detail: String },
    #[error("{plane} cannot contain this: {detail}")]
    Unsupported { plane: &'static str, detail: String },
    #[error("{plane}: {detail}")]
    Invalid { plane: &'static str, detail: String },
}

impl PlaneError {
    pub fn kind(&self) -> FaultKind {
        match self {
            PlaneError::Unreachable { .. } | PlaneError::Unavailable { .. } => FaultKind::Transient,
            PlaneError::Refused { .. } => FaultKind::Denied,
            PlaneError::Conflict { .. } => FaultKind::Conflict,
            PlaneError::Unsupported { .. } => FaultKind::Unsupported,
            PlaneError::Invalid { .. } => FaultKind::Invalid,
        }
    }

    pub fn plane(&self) -> &'static str {
        match self {
            PlaneError::Unreachable { plane, .. }
            | PlaneError::Unavailable { plane, .. }
            | PlaneError::Refused { plane, .. }
            | PlaneError::Conflict { plane, .. }
            | PlaneError::Unsupported { plane, .. }
            | PlaneError::Invalid { plane, .. } => plane,
        }
    }
}
