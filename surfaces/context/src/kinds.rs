//! The context ladder, declared once and shared by both context planes: registration checks
//! that each ladder is dense, and pgvector and Milvus are two planes of one ladder.

use firebreak_containment::plane::KindSpec;

/// One source of one index, for one agent.
pub static QUARANTINE_SOURCE: KindSpec =
    KindSpec::durable("context", "context.quarantine_source", 0, false);
/// One index, for one agent.
pub static REVOKE_INDEX: KindSpec = KindSpec::durable("context", "context.revoke_index", 1, false);
/// One index (or one source of it) for every agent: approval only.
pub static QUARANTINE_INDEX: KindSpec =
    KindSpec::durable("context", "context.quarantine_index", 2, true);

/// Every context kind, narrowest first, as both planes declare them.
pub const KINDS: &[&KindSpec] = &[&QUARANTINE_SOURCE, &REVOKE_INDEX, &QUARANTINE_INDEX];
