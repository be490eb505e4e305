//! IAM policy documents and a local evaluator of the documented
//! identity-policy logic (explicit deny > allow > implicit deny).
//!
//! AWS's `SimulatePrincipalPolicy` is unavailable under moto, and blast-radius
//! questions ("what does the agent lose if we add this Deny?") need requests
//! that are themselves patterns, which the simulator does not answer anyway.
//!
//! Deliberate limits, all surfaced rather than guessed:
//! * Conditions are evaluated only where the request [`Context`] knows every
//!   key and the operator is `StringEquals` (what Firebreak's own session-tag
//!   scoped denies use). Any other statement with a non-empty `Condition`, or
//!   with a policy variable (`${aws:username}`) in `Resource`/`NotResource`,
//!   never counts as a definite match; when the outcome hinges on one, the
//!   result is [`Permit::Indeterminate`].
//! * Only identity-policy logic: `Principal`/`NotPrincipal` are kept (trust
//!   policies parse and round-trip) but ignored by evaluation, and a statement
//!   without `Resource`/`NotResource` never applies to a request.
//! * Pattern coverage uses [`crate::glob::covers`], which is sound but may miss
//!   coverage that needs several wildcards reasoned about jointly, and a
//!   pattern is only treated as covered by a single list entry, not a union.

mod document;
mod eval;
#[cfg(test)]
mod tests;

pub use document::*;
pub use eval::*;
