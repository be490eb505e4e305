//! Firebreak's kernel enforcement point (docs/ARCHITECTURE.md §Planes) and the `network` control plane.
//!
//! `cgroup/connect4`, `connect6`, `sendmsg4` and `sendmsg6` programs (C in `bpf/`, compiled by
//! clang at build time, loaded with `aya` 0.14) refuse destinations listed in a deny map keyed by
//! (cgroup id, address, port). A map update takes effect on the next `connect()`/`sendto()` of
//! running processes. Programs are attached once per contained cgroup and the links and maps are
//! pinned under bpffs, so enforcement outlives the daemon and a restarted daemon picks it up.
//!
//! The ladder: `network.block_egress` (one destination, one workload) →
//! `network.isolate_workload` (every destination, approval only). The durable form, a
//! `CiliumNetworkPolicy` with `egressDeny`, is emitted in each candidate's spec.

pub mod cgroups;
pub mod config;
pub mod destination;
pub mod kernel;
pub mod plane;

use std::path::PathBuf;

use firebreak_containment::plane::PlaneError;

pub use config::EgressConfig;
pub use plane::{DenyEntry, EgressPlane, EgressSpec, Scope, BLOCK_EGRESS, ISOLATE_WORKLOAD};

/// Names this control plane in errors and plans.
pub const PLANE: &str = "eBPF egress";

#[derive(Debug, Clone, thiserror::Error)]
pub enum EgressError {
    #[error("network.{field}: {reason}")]
    Config { field: String, reason: String },
    #[error("{path} is not a mounted BPF filesystem ({reason}); mount it as root: mount -t bpf bpffs /sys/fs/bpf, or set network.bpffs")]
    Bpffs { path: PathBuf, reason: String },
    #[error("{path} is not a cgroup2 mount ({reason}); set network.cgroupRoot to the cgroup2 mount (/sys/fs/cgroup or /sys/fs/cgroup/unified)")]
    CgroupRoot { path: PathBuf, reason: String },
    #[error("the kernel refused {doing}: {detail}")]
    Kernel { doing: String, detail: String },
    #[error("the alert's parameter is not a network parameter {{destination, port}}; send it with dimension network")]
    NotNetwork,
    #[error("agent {agent} has no cgroups under network.workloads; add its cgroup paths (relative to {root}) to contain it")]
    UnknownAgent { agent: String, root: PathBuf },
    #[error("network.workloads.{agent}: {pattern:?} matches no cgroup under {root}; the workload is not running on this node or the path is wrong")]
    NoCgroup {
        agent: String,
        pattern: String,
        root: PathBuf,
    },
    #[error("cgroup {path} (id {id}) is gone; the workload's processes exited or moved: re-plan the incident")]
    CgroupVanished { path: PathBuf, id: u64 },
    #[error("cgroup {path} was recreated (id {planned} when planned, {now} now); re-plan the incident for the new processes")]
    CgroupReplaced {
        path: PathBuf,
        planned: u64,
        now: u64,
    },
    #[error("parameter.destination {value:?}: {reason}")]
    Destination { value: String, reason: String },
}

impl From<EgressError> for PlaneError {
    fn from(e: EgressError) -> PlaneError {
        let detail = e.to_string();
        match e {
            EgressError::Kernel { .. } => PlaneError::Refused {
                plane: PLANE,
                detail,
            },
            EgressError::CgroupVanished { .. } | EgressError::CgroupReplaced { .. } => {
                PlaneError::Conflict {
                    plane: PLANE,
                    detail,
                }
            }
            _ => PlaneError::Invalid {
                plane: PLANE,
                detail,
            },
        }
    }
}

/// An error with its whole `source()` chain: aya's errors keep the errno in the source.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        text.push_str(": ");
        text.push_str(&s.to_string());
        next = s.source();
    }
    text
}
