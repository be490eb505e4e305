//! Envelope sources: learning from OpenTelemetry GenAI spans, Kubescape profiles, the Envelope CRD.
//!
//! - [`learn::learn`]: OTLP/JSON trace files → one envelope per agent (tools, context,
//!   delegation) and a report of the tail and of what was skipped.
//! - [`kubescape::envelope_dimensions`]: ApplicationProfile / NetworkNeighborhood /
//!   ContainerProfile → the `process` and `network` dimensions of one container.
//! - [`fetch::fetch_profiles`]: the same profiles read from the Kubernetes API for one workload.
//! - [`crd::definition`]: the `envelopes.firebreak.dev` CustomResourceDefinition.
//!
//! Whether a value is inside an entry is `firebreak_containment::matching`, shared with the
//! engine.

pub mod crd;
pub mod fetch;
pub mod generalise;
pub mod kubescape;
pub mod learn;
pub mod otlp;
