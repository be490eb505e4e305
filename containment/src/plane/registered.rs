//! The one adapter between a typed [`Plane`] and the engine: it stamps the plane's key and the
//! kind's declaration on every candidate, encodes the spec for the journal, and decodes it back
//! (a spec that does not decode is an error, never `null`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{
    Change, Check, KindError, KindSpec, Kinds, Outcome, PlanInput, Plane, PlaneError, Proposal,
    Route, Verification,
};
use crate::ids::PlaneKey;
use crate::plan::Candidate;

/// A registered plane, as the engine sees it: specs as journaled JSON.
#[async_trait]
pub trait DynPlane: Send + Sync {
    fn key(&self) -> PlaneKey;
    fn route(&self) -> Route;
    fn kinds(&self) -> &'static [&'static KindSpec];
    fn in_process(&self) -> bool;
    fn handles(&self, input: &PlanInput<'_>) -> bool;
    /// Observes and proposes: every candidate stamped with this plane's key and its kind.
    async fn candidates(&self, input: &PlanInput<'_>) -> Result<Vec<Candidate>, PlaneError>;
    async fn change(&self, action: &Candidate, change: Change) -> Result<Outcome, PlaneError>;
    async fn check(&self, action: &Candidate, check: Check) -> Result<Verification, PlaneError>;
    fn verify_deadline(&self) -> Duration;
}

struct Registered<P>(P);

/// A plane's proposal as the engine journals it: stamped with the plane's key and its kind's
/// declaration, the spec encoded once.
pub fn candidate_of<P: Plane>(proposal: Proposal<P::Spec>) -> Result<Candidate, PlaneError> {
    let kind = P::kind_of(&proposal.spec);
    if !P::KINDS.contains(&kind) {
        return Err(PlaneError::Invalid {
            plane: P::KEY,
            detail: format!(
                "proposed {}, which is not one of its declared kinds",
                kind.name
            ),
        });
    }
    let spec = serde_json::to_value(&proposal.spec).map_err(|e| PlaneError::Invalid {
        plane: P::KEY,
        detail: format!("the spec of a {} candidate does not encode: {e}", kind.name),
    })?;
    Ok(Candidate {
        plane: PlaneKey::from_static(P::KEY),
        kind: kind.kind(),
        ladder: kind.ladder.to_string(),
        rung: kind.rung,
        approval_only: kind.approval_only,
        enforcement: kind.enforcement,
        target: proposal.target,
        granularity: proposal.granularity,
        blast_radius: proposal.blast_radius,
        blocks: proposal.blocks,
        inverse: proposal.inverse,
        verify: proposal.verify,
        rejected: proposal.rejected,
        notes: proposal.notes,
        spec,
    })
}

impl<P: Plane> Registered<P> {
    /// The journaled spec back as the plane's type, and checked to be the kind it claims.
    fn decode(&self, action: &Candidate) -> Result<P::Spec, PlaneError> {
        let invalid = |detail: String| PlaneError::Invalid {
            plane: P::KEY,
            detail,
        };
        if action.plane != P::KEY {
            return Err(invalid(format!(
                "{} belongs to plane {}, not {}",
                action.kind,
                action.plane,
                P::KEY
            )));
        }
        let spec: P::Spec = serde_json::from_value(action.spec.clone()).map_err(|e| {
            invalid(format!(
                "the journaled spec of {} is not one {} wrote: {e}",
                action.kind,
                P::KEY
            ))
        })?;
        let declared = P::kind_of(&spec);
        if action.kind != declared {
            return Err(invalid(format!(
                "the journaled spec carries out {}, but the action says {}",
                declared.name, action.kind
            )));
        }
        Ok(spec)
    }
}

#[async_trait]
impl<P: Plane> DynPlane for Registered<P> {
    fn key(&self) -> PlaneKey {
        PlaneKey::from_static(P::KEY)
    }

    fn route(&self) -> Route {
        P::ROUTE
    }

    fn kinds(&self) -> &'static [&'static KindSpec] {
        P::KINDS
    }

    fn in_process(&self) -> bool {
        P::IN_PROCESS
    }

    fn handles(&self, input: &PlanInput<'_>) -> bool {
        self.0.handles(input)
    }

    async fn candidates(&self, input: &PlanInput<'_>) -> Result<Vec<Candidate>, PlaneError> {
        let observed = self.0.observe(input).await?;
        observed
            .candidates(input)?
            .into_iter()
            .map(candidate_of::<P>)
            .collect()
    }

    async fn change(&self, action: &Candidate, change: Change) -> Result<Outcome, PlaneError> {
        let spec = self.decode(action)?;
        self.0.change(&spec, change).await
    }

    async fn check(&self, action: &Candidate, check: Check) -> Result<Verification, PlaneError> {
        let spec = self.decode(action)?;
        self.0.check(&spec, check).await
    }

    fn verify_deadline(&self) -> Duration {
        self.0.verify_deadline()
    }
}

/// One plane as the engine sees it, outside any registry (tests drive a plane this way to
/// exercise the adapter's encode/decode path too).
pub fn erase<P: Plane>(plane: P) -> Arc<dyn DynPlane> {
    Arc::new(Registered(plane))
}

#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("two control planes are registered under {0}; each config key names one plane")]
    DuplicateKey(&'static str),
    #[error(transparent)]
    Kinds(#[from] KindError),
}

/// The registered control planes, by key, with every kind they declared.
#[derive(Clone, Default)]
pub struct Planes {
    planes: Vec<Arc<dyn DynPlane>>,
    kinds: Kinds,
}

impl Planes {
    /// Registers `plane` under its key. Its kinds join the registry and every ladder is checked.
    pub fn register<P: Plane>(&mut self, plane: P) -> Result<(), RegisterError> {
        if self.planes.iter().any(|p| p.key() == P::KEY) {
            return Err(RegisterError::DuplicateKey(P::KEY));
        }
        let mut kinds = self.kinds.clone();
        kinds.declare(P::KINDS)?;
        kinds.check_ladders()?;
        self.kinds = kinds;
        self.planes.push(Arc::new(Registered(plane)));
        Ok(())
    }

    pub fn get(&self, key: &PlaneKey) -> Option<&Arc<dyn DynPlane>> {
        self.planes.iter().find(|p| &p.key() == key)
    }

    /// The planes that can act for this alert.
    pub fn for_input<'a>(
        &'a self,
        route: Route,
        input: &'a PlanInput<'a>,
    ) -> impl Iterator<Item = &'a Arc<dyn DynPlane>> + 'a {
        self.planes
            .iter()
            .filter(move |p| p.route() == route && p.handles(input))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn DynPlane>> {
        self.planes.iter()
    }

    pub fn kinds(&self) -> &Kinds {
        &self.kinds
    }

    pub fn is_empty(&self) -> bool {
        self.planes.is_empty()
    }
}
