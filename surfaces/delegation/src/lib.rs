//! Firebreak's delegation surface: the policy feed that orchestrator shims enforce, and the delegation control plane.
//!
//! - [`feed`]: the versioned per-agent policy documents and their HTTP/SSE router;
//! - [`DelegationPlane`]: `delegation.sever_edge` → `delegation.isolate_inbound` →
//!   `delegation.pause_graph`, written to the feed;
//! - [`Mirrored`]: records the tools and network planes' containments in the feed as well.

pub mod feed;
mod mirror;
mod plane;

pub use feed::{Feed, FeedAuth, FeedConfig};
pub use mirror::{FeedHold, Mirror, Mirrored};
pub use plane::{
    DelegationPlane, DelegationSpec, EdgeRef, Hold, ISOLATE_INBOUND, PAUSE_GRAPH, SEVER_EDGE,
};
