//! `network` in the daemon config: where the pins live, where cgroup2 is mounted, and which
//! cgroups each agent's processes run in.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::EgressError;
use firebreak_containment::config::duration;

/// Directory under bpffs holding Firebreak's pinned maps and links.
pub const DEFAULT_BPFFS: &str = "/sys/fs/bpf/firebreak";
/// Tried in order when `cgroupRoot` is not set: the pure-cgroup2 layout, then the hybrid one.
pub const CGROUP2_MOUNTS: [&str; 2] = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"];

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EgressConfig {
    /// Directory on a BPF filesystem for the pinned deny map and per-cgroup links.
    #[serde(default = "default_bpffs")]
    pub bpffs: PathBuf,
    /// The cgroup2 mount; the first of [`CGROUP2_MOUNTS`] that is cgroup2 when absent.
    #[serde(default)]
    pub cgroup_root: Option<PathBuf>,
    /// Agent key (`cluster/namespace/Kind/name`) → its cgroups, relative to `cgroupRoot`.
    /// A path segment may hold `*` and `?` wildcards (e.g.
    /// `kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice`, or
    /// `…-pod*.slice` patterns), resolved against the node's cgroup tree at plan time.
    #[serde(default)]
    pub workloads: BTreeMap<String, Vec<String>>,
    #[serde(deserialize_with = "duration", default = "default_deadline")]
    pub verify_deadline: Duration,
}

impl Default for EgressConfig {
    fn default() -> Self {
        Self {
            bpffs: default_bpffs(),
            cgroup_root: None,
            workloads: BTreeMap::new(),
            verify_deadline: default_deadline(),
        }
    }
}

fn default_bpffs() -> PathBuf {
    PathBuf::from(DEFAULT_BPFFS)
}

/// A map update is visible to the next syscall: verification needs no propagation time.
fn default_deadline() -> Duration {
    Duration::from_secs(2)
}

impl EgressConfig {
    /// Checks what serde cannot, before anything touches the kernel.
    pub fn validate(&self) -> Result<(), EgressError> {
        let bad = |field: String, reason: String| Err(EgressError::Config { field, reason });
        if !self.bpffs.is_absolute() {
            return bad(
                "bpffs".into(),
                format!("{} must be an absolute path", self.bpffs.display()),
            );
        }
        if let Some(root) = &self.cgroup_root {
            if !root.is_absolute() {
                return bad(
                    "cgroupRoot".into(),
                    format!("{} must be an absolute path", root.display()),
                );
            }
        }
        for (agent, paths) in &self.workloads {
            let field = format!("workloads.{agent}");
            if agent.split('/').count() != 4 || agent.split('/').any(str::is_empty) {
                return bad(
                    field,
                    "keys are agents as cluster/namespace/Kind/name".into(),
                );
            }
            if paths.is_empty() {
                return bad(field, "list at least one cgroup path".into());
            }
            for (i, path) in paths.iter().enumerate() {
                if let Err(reason) = check_relative(path) {
                    return bad(format!("{field}[{i}]"), reason);
                }
            }
        }
        Ok(())
    }
}

/// A cgroup path must stay inside the cgroup root: relative, no `..`, not empty.
fn check_relative(path: &str) -> Result<(), String> {
    let p = Path::new(path);
    if path.trim().is_empty() {
        return Err("must not be empty (the cgroup root itself is never contained)".into());
    }
    if p.is_absolute() {
        return Err(format!(
            "{path:?} must be relative to network.cgroupRoot, without a leading /"
        ));
    }
    if p.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(format!("{path:?} must not contain '.' or '..' segments"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_camel_case_fields_parse() {
        let c: EgressConfig = serde_yaml::from_str(
            "cgroupRoot: /sys/fs/cgroup/unified\nverifyDeadline: 500ms\nworkloads:\n  c/n/Deployment/a: [kubepods.slice/pod-1]\n",
        )
        .expect("valid");
        c.validate().expect("valid");
        assert_eq!(c.bpffs, PathBuf::from(DEFAULT_BPFFS));
        assert_eq!(c.verify_deadline, Duration::from_millis(500));
        assert_eq!(c.workloads["c/n/Deployment/a"], ["kubepods.slice/pod-1"]);
    }

    #[test]
    fn unknown_fields_and_bad_durations_are_refused() {
        let e = serde_yaml::from_str::<EgressConfig>("bpfFs: /x\n").expect_err("unknown");
        assert!(e.to_string().contains("bpfFs"), "{e}");
        let e = serde_yaml::from_str::<EgressConfig>("verifyDeadline: soon\n").expect_err("bad");
        assert!(e.to_string().contains("not a duration like 30s"), "{e}");
    }

    #[test]
    fn validation_names_the_field() {
        let with = |agent: &str, path: &str| EgressConfig {
            workloads: [(agent.to_string(), vec![path.to_string()])].into(),
            ..EgressConfig::default()
        };
        let e = with("payment-agent", "x").validate().expect_err("bad key");
        assert!(
            e.to_string().contains("network.workloads.payment-agent"),
            "{e}"
        );
        let e = with("c/n/Deployment/a", "/sys/fs/cgroup/x")
            .validate()
            .expect_err("absolute");
        assert!(
            e.to_string().contains("workloads.c/n/Deployment/a[0]"),
            "{e}"
        );
        let e = with("c/n/Deployment/a", "a/../../etc")
            .validate()
            .expect_err("escapes");
        assert!(e.to_string().contains(".."), "{e}");
        let e = EgressConfig {
            bpffs: "bpf".into(),
            ..EgressConfig::default()
        }
        .validate()
        .expect_err("relative bpffs");
        assert!(e.to_string().contains("network.bpffs"), "{e}");
    }
}
