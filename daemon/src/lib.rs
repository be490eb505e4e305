//! The daemon's parts, as a library so that the `firebreak` binary and the fuzz
//! targets (`fuzz/`) share them: config, engine assembly, HTTP API, alert sources, rendering.

pub mod app;
pub mod client;
pub mod config;
pub mod http;
pub mod ingest;
pub mod planes;
pub mod render;
pub mod sources;
