//! The boundary between the engine and a control plane (docs/adding-a-plane.md).
//!
//! A plane implements [`Plane`]: it declares its kinds, its route and its typed `Spec`, reads
//! the state a plan needs (`observe`), proposes candidates, and answers two separate calls:
//! [`Plane::change`] (apply / revert → an [`Outcome`]) and [`Plane::check`] (is it applied /
//! reverted → a [`Verification`]). [`Planes::register`] wraps it in the one adapter that
//! encodes specs into the journal and decodes them back, once.

mod error;
mod kind;
mod registered;
mod route;

use std::time::Duration;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use error::{FaultKind, PlaneError};
pub use kind::{KindError, KindSpec, Kinds};
pub use registered::{candidate_of, erase, DynPlane, Planes, RegisterError};
pub use route::{Cloud, Route};

use crate::alert::Alert;
use crate::envelope::Envelope;
use crate::ids::{IncidentId, PlanId};
use crate::plan::BlastRadius;

/// What a control plane is asked to plan for.
#[derive(Clone, Copy)]
pub struct PlanInput<'a> {
    pub incident: &'a IncidentId,
    /// The id the plan will have: daemon-owned names and holds can carry it.
    pub plan: &'a PlanId,
    pub alert: &'a Alert,
    pub envelope: &'a Envelope,
}

/// The control-plane state a plan was computed from. Produces candidates without I/O, so the
/// decision path stays pure once the state is read.
pub trait Observation<S>: Send + Sync {
    fn candidates(&self, input: &PlanInput<'_>) -> Result<Vec<Proposal<S>>, PlaneError>;
}

/// One rung a plane proposes for a breach; its kind is the one its spec names.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal<S> {
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
    /// Why the plane itself rules this rung out (quota, nothing to cut, …).
    pub rejected: Option<String>,
    /// Notes the operator must read.
    pub notes: Vec<String>,
    /// Everything `change` and `check` need, including the pre-image; journaled with the intent.
    pub spec: S,
}

impl<S> Proposal<S> {
    /// A candidate that blocks, with no plane rejection and no notes yet.
    pub fn new(target: String, granularity: String, spec: S) -> Self {
        Self {
            target,
            granularity,
            blast_radius: BlastRadius::default(),
            blocks: true,
            inverse: String::new(),
            verify: String::new(),
            rejected: None,
            notes: Vec::new(),
            spec,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// False when the target was already in the desired state (idempotent success).
    pub changed: bool,
    pub detail: String,
}

impl Outcome {
    pub fn changed(detail: impl Into<String>) -> Outcome {
        Outcome {
            changed: true,
            detail: detail.into(),
        }
    }

    /// Already in the target state: idempotent success, nothing written.
    pub fn unchanged(detail: impl Into<String>) -> Outcome {
        Outcome {
            changed: false,
            detail: detail.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    pub ok: bool,
    pub detail: String,
}

impl Verification {
    pub fn ok(detail: impl Into<String>) -> Verification {
        Verification {
            ok: true,
            detail: detail.into(),
        }
    }

    pub fn failed(detail: impl Into<String>) -> Verification {
        Verification {
            ok: false,
            detail: detail.into(),
        }
    }

    /// `ok` when `holds`, with the same detail either way.
    pub fn that(holds: bool, detail: impl Into<String>) -> Verification {
        Verification {
            ok: holds,
            detail: detail.into(),
        }
    }
}

/// A mutating call: put the action in place, or take it away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Change {
    Apply,
    Revert,
}

/// A read of the enforcement point: is the action in effect, or is it gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Check {
    Applied,
    Reverted,
}

/// One control plane (AWS IAM, the MCP gateway, pgvector, …).
///
/// `change` must be idempotent: called again after a crash it finds the target already in
/// state and returns [`Outcome::unchanged`] without writing. `check` reads the enforcement
/// point itself, never the plane's own record of what it wrote.
#[async_trait]
pub trait Plane: Send + Sync + 'static {
    /// The config key it is registered under (`aws`, `context.milvus`, …).
    const KEY: &'static str;
    /// The alerts it can contain.
    const ROUTE: Route;
    /// Every kind it can propose, narrowest first.
    const KINDS: &'static [&'static KindSpec];
    /// Its enforcement lives in the daemon's memory (the MCP gateway, the policy feed): only
    /// the running daemon can apply it, so offline containment refuses it.
    const IN_PROCESS: bool = false;

    /// The typed description of one action, journaled with the intent.
    type Spec: Serialize + DeserializeOwned + Send + Sync + 'static;

    /// The kind a spec carries out (one of [`Plane::KINDS`]).
    fn kind_of(spec: &Self::Spec) -> &'static KindSpec;

    /// Whether this plane can act for this alert (e.g. the index is one of its stores').
    fn handles(&self, input: &PlanInput<'_>) -> bool;

    /// Reads the state the blast radius needs. Reads only: dry runs rely on it.
    async fn observe(
        &self,
        input: &PlanInput<'_>,
    ) -> Result<Box<dyn Observation<Self::Spec>>, PlaneError>;

    async fn change(&self, spec: &Self::Spec, change: Change) -> Result<Outcome, PlaneError>;

    async fn check(&self, spec: &Self::Spec, check: Check) -> Result<Verification, PlaneError>;

    /// How long a check may keep failing after a change before the plan reads verify-failed.
    fn verify_deadline(&self) -> Duration;
}

/// A shared plane is the same plane: the daemon (or a test) can keep a handle on it after
/// registering it.
#[async_trait]
impl<P: Plane> Plane for std::sync::Arc<P> {
    const KEY: &'static str = P::KEY;
    const ROUTE: Route = P::ROUTE;
    const KINDS: &'static [&'static KindSpec] = P::KINDS;
    const IN_PROCESS: bool = P::IN_PROCESS;
    type Spec = P::Spec;

    fn kind_of(spec: &Self::Spec) -> &'static KindSpec {
        P::kind_of(spec)
    }

    fn handles(&self, input: &PlanInput<'_>) -> bool {
        (**self).handles(input)
    }

    async fn observe(
        &self,
        input: &PlanInput<'_>,
    ) -> Result<Box<dyn Observation<Self::Spec>>, PlaneError> {
        (**self).observe(input).await
    }

    async fn change(&self, spec: &Self::Spec, change: Change) -> Result<Outcome, PlaneError> {
        (**self).change(spec, change).await
    }

    async fn check(&self, spec: &Self::Spec, check: Check) -> Result<Verification, PlaneError> {
        (**self).check(spec, check).await
    }

    fn verify_deadline(&self) -> Duration {
        (**self).verify_deadline()
    }
}
