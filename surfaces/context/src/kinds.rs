//! The context ladder, declared once and shared by both context planes: registration checks
//! that each ladder is dense, and pgvector and Milvus are two planes of one ladder.

use firebreak_containment::plan::Enforcement;
use firebreak_containment::plane::KindSpec;

const fn rung(name: &'static str, rung: u8, approval_only: bool) -> KindSpec {
    KindSpec {
        name,
        ladder: "context",
        rung,
        approval_only,
        enforcement: Enforcement::Durable,
    }
}

/// One source of one index, for one agent.
pub static QUARANTINE_SOURCE: KindSpec = rung("context.quarantine_source", 0, false);
/// One index, for one agent.
pub static REVOKE_INDEX: KindSpec = rung("context.revoke_index", 1, false);
/// One index (or one source of it) for every agent: approval only.
pub static QUARANTINE_INDEX: KindSpec = rung("context.quarantine_index", 2, true);

/// Every context kind, narrowest first, as both planes declare them.
pub const KINDS: &[&KindSpec] = &[&QUARANTINE_SOURCE, &REVOKE_INDEX, &QUARANTINE_INDEX];
