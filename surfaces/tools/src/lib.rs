//! Firebreak's tools surface: an MCP gateway between agents and their upstream MCP servers, and
//! the control plane (`tools.revoke_tool` → `tools.revoke_server` → `tools.revoke_all`) that
//! drives it. Both share one in-memory [`Policy`], so a revocation is enforced on the very next
//! `tools/call` of that agent.

mod auth;
mod config;
mod gateway;
mod legacy;
mod message;
mod plane;
mod policy;
mod sse;
mod stdio;

pub use auth::{AuthError, Authenticator, StaticTokens, TokenReview};
pub use config::{ConfigError, GatewayConfig, TokenReviewConfig, Upstream};
pub use gateway::{serve, Gateway, GatewayError, MAX_BODY_BYTES};
pub use plane::{Probe, ToolsPlane, ToolsSpec, REVOKE_ALL, REVOKE_SERVER, REVOKE_TOOL};
pub use policy::{Decision, Policy, Revocation, Scope};
