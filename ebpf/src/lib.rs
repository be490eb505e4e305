//! Firebreak's kernel enforcement point (DESIGN §5 "Kernel"): `cgroup/connect4`, `connect6`,
//! `sendmsg4` and `sendmsg6` programs with a deny map keyed by cgroup and destination, compiled
//! by clang at build time and loaded with `aya` 0.14. Empty until the egress issue builds it;
//! the crate exists so the workspace shows the architecture.
