//! The `network` control plane: `network.block_egress` → `network.isolate_workload`, enforced by
//! the kernel hooks in the workload's cgroups, with a CiliumNetworkPolicy as the durable form.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use firebreak_containment::agent::AgentRef;
use firebreak_containment::alert::Parameter;
use firebreak_containment::ids::IncidentId;
use firebreak_containment::plan::BlastRadius;
use firebreak_containment::plane::{
    Change, Check, KindSpec, Observation, Outcome, PlanInput, Plane, PlaneError, Proposal, Route,
    Verification,
};
use serde::{Deserialize, Serialize};

use crate::cgroups::{self, Cgroup};
use crate::config::{EgressConfig, CGROUP2_MOUNTS};
use crate::destination::{describe, Destination, Effect};
use crate::kernel::{self, incident_id, Blocked, DenyKey, Kernel, Maps};
use crate::{EgressError, PLANE};

pub struct EgressPlane {
    config: EgressConfig,
    root: PathBuf,
    kernel: Mutex<Kernel>,
}

/// One entry of the deny map.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DenyEntry {
    pub cgroup_id: u64,
    /// e.g. `203.0.113.7 port 443`, `every destination`.
    pub blocks: String,
    /// How many incidents hold it.
    pub holders: u32,
}

pub static BLOCK_EGRESS: KindSpec =
    KindSpec::immediate("network", "network.block_egress", 0, false);
pub static ISOLATE_WORKLOAD: KindSpec =
    KindSpec::immediate("network", "network.isolate_workload", 1, true);

/// Which rung an action is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// The breached destination only.
    Destination,
    /// Every destination (the whole workload is cut off).
    Workload,
}

/// What an egress action does, journaled with the intent. `agent`, `destination` and `port`
/// are read by other components (the policy feed mirrors `network.block_egress` from them);
/// on `network.isolate_workload` (`scope: workload`) they still name the breach, while the
/// block covers every destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EgressSpec {
    /// The agent key, `cluster/namespace/Kind/name`.
    pub agent: String,
    /// The breached address, canonical form.
    pub destination: String,
    /// The breached port; `null` = every port.
    pub port: Option<u16>,
    pub scope: Scope,
    pub incident: IncidentId,
    /// The cgroups the block applies to, as resolved when planned.
    pub cgroups: Vec<Cgroup>,
    /// The durable form: a CiliumNetworkPolicy (YAML) to apply with `kubectl apply -f -`.
    pub durable_policy: String,
}

impl EgressSpec {
    fn blocked(&self) -> Result<Blocked, EgressError> {
        Ok(match self.scope {
            Scope::Destination => Blocked::One(Destination::parse(&self.destination, self.port)?),
            Scope::Workload => Blocked::Every,
        })
    }
}

impl EgressPlane {
    /// Validates the config, checks bpffs and cgroup2, loads the programs and opens (or creates)
    /// the pinned maps. Blocks pinned by a previous daemon stay in force and are managed by
    /// this one. Needs root (CAP_BPF, CAP_NET_ADMIN).
    pub fn load(config: &EgressConfig) -> Result<EgressPlane, EgressError> {
        config.validate()?;
        let root = cgroup_root(config)?;
        let kernel = Kernel::load(&config.bpffs)?;
        Ok(EgressPlane {
            config: config.clone(),
            root,
            kernel: Mutex::new(kernel),
        })
    }

    pub fn config(&self) -> &EgressConfig {
        &self.config
    }

    /// The cgroup2 mount workload paths are relative to.
    pub fn cgroup_root(&self) -> &Path {
        &self.root
    }

    /// Every deny entry in the pinned map, read back from bpffs (for operators and tests).
    pub fn deny_entries(&self) -> Result<Vec<DenyEntry>, EgressError> {
        let mut out: Vec<DenyEntry> = Maps::open(&self.config.bpffs)?
            .entries()?
            .into_iter()
            .map(|(k, holders)| DenyEntry {
                cgroup_id: k.cgroup_id,
                blocks: k.describe(),
                holders,
            })
            .collect();
        out.sort();
        Ok(out)
    }

    fn kernel(&self) -> MutexGuard<'_, Kernel> {
        // The state lives in the kernel's maps, not in this struct: a panic elsewhere while
        // the lock was held cannot leave it inconsistent.
        self.kernel.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn observe_state(&self, input: &PlanInput<'_>) -> Result<EgressState, EgressError> {
        let Parameter::Network { destination, port } = &input.alert.parameter else {
            return Err(EgressError::NotNetwork);
        };
        let destination = Destination::parse(destination, *port)?;
        let agent = input.alert.agent.key().to_string();
        let patterns =
            self.config
                .workloads
                .get(&agent)
                .ok_or_else(|| EgressError::UnknownAgent {
                    agent: agent.clone(),
                    root: self.root.clone(),
                })?;
        let cgroups = cgroups::resolve(&self.root, &agent, patterns)?;
        let kernel = self.kernel();
        let mut already = Vec::new();
        for cgroup in &cgroups {
            let key = DenyKey::new(cgroup.id, Blocked::One(destination));
            let every = DenyKey::new(cgroup.id, Blocked::Every);
            if kernel.maps().denied(&key)? || kernel.maps().denied(&every)? {
                already.push(cgroup.path.clone());
            }
        }
        Ok(EgressState {
            destination,
            cgroups,
            already_denied: already,
        })
    }

    fn change(&self, spec: &EgressSpec, change: Change) -> Result<Outcome, EgressError> {
        let blocked = spec.blocked()?;
        let incident = incident_id(spec.incident.as_str());
        let what = blocked_text(blocked);
        let n = spec.cgroups.len();
        let apply = change == Change::Apply;
        if apply {
            // Every cgroup is checked before the first write: a plan for processes that are
            // gone or were replaced is refused whole.
            for cgroup in &spec.cgroups {
                cgroups::check(&self.root, cgroup)?;
            }
        }
        let mut kernel = self.kernel();
        let mut changed = false;
        for cgroup in &spec.cgroups {
            let key = DenyKey::new(cgroup.id, blocked);
            changed |= if apply {
                kernel.hold(&self.root, cgroup, key, incident)?
            } else {
                kernel.release(cgroup.id, key, incident)?
            };
        }
        let (detail, already) = if apply {
            (
                format!(
                    "egress to {what} denied for {} in {n} cgroup(s)",
                    spec.agent
                ),
                "already in force",
            )
        } else {
            (
                format!(
                    "egress to {what} restored for {} in {n} cgroup(s) (entries other incidents hold stay)",
                    spec.agent
                ),
                "already reverted",
            )
        };
        Ok(if changed {
            Outcome::changed(detail)
        } else {
            Outcome::unchanged(format!("{detail} ({already})"))
        })
    }

    /// Reads the pinned maps and links back from bpffs: the entry and this incident's hold for
    /// every cgroup, the cgroup watched, all four hooks attached, the cgroup still there.
    fn verify(
        &self,
        spec: &EgressSpec,
        blocked: Blocked,
        incident: u64,
    ) -> Result<Verification, EgressError> {
        let maps = Maps::open(&self.config.bpffs)?;
        let mut problems = Vec::new();
        for cgroup in &spec.cgroups {
            let key = DenyKey::new(cgroup.id, blocked);
            let path = &cgroup.path;
            if let Err(e) = cgroups::check(&self.root, cgroup) {
                problems.push(e.to_string());
            }
            if !maps.denied(&key)? {
                problems.push(format!(
                    "no deny entry for {} in cgroup {path}",
                    key.describe()
                ));
            }
            if !maps.held(&key, incident)? {
                problems.push(format!(
                    "incident {} holds no entry in cgroup {path}",
                    spec.incident
                ));
            }
            if !maps.watched(cgroup.id)? {
                problems.push(format!("cgroup {path} is not watched by the hooks"));
            }
            let attached = maps.links_attached(&self.config.bpffs, cgroup.id)?;
            if attached != kernel::PROGRAMS.len() {
                problems.push(format!(
                    "{attached} of {} hooks attached to cgroup {path} reading the deny map",
                    kernel::PROGRAMS.len()
                ));
            }
        }
        Ok(check(
            problems,
            format!(
                "pinned deny map and links read back: {} denied for {} in {} cgroup(s)",
                blocked_text(blocked),
                spec.agent,
                spec.cgroups.len()
            ),
        ))
    }

    /// This incident's holds are gone; an entry still present must be held by another incident,
    /// and a cgroup without entries must have no hook attached.
    fn verify_reverted(
        &self,
        spec: &EgressSpec,
        blocked: Blocked,
        incident: u64,
    ) -> Result<Verification, EgressError> {
        let maps = Maps::open(&self.config.bpffs)?;
        let entries = maps.entries()?;
        let mut problems = Vec::new();
        let mut kept = 0;
        for cgroup in &spec.cgroups {
            let key = DenyKey::new(cgroup.id, blocked);
            let path = &cgroup.path;
            if maps.held(&key, incident)? {
                problems.push(format!(
                    "incident {} still holds the entry in cgroup {path}",
                    spec.incident
                ));
            }
            if maps.denied(&key)? {
                if maps.holders(&key)? == 0 {
                    problems.push(format!(
                        "orphan deny entry for {} in cgroup {path}",
                        key.describe()
                    ));
                }
                kept += 1;
            }
            if !entries.iter().any(|(k, _)| k.cgroup_id == cgroup.id) {
                let attached = maps.links_attached(&self.config.bpffs, cgroup.id)?;
                if attached > 0 {
                    problems.push(format!(
                        "{attached} hooks still attached to cgroup {path} without entries"
                    ));
                }
            }
        }
        Ok(check(
            problems,
            format!(
                "{} no longer denied by incident {} for {} ({kept} cgroup(s) still denied by other incidents)",
                blocked_text(blocked),
                spec.incident,
                spec.agent
            ),
        ))
    }
}

fn blocked_text(blocked: Blocked) -> String {
    match blocked {
        Blocked::One(d) => d.to_string(),
        Blocked::Every => "every destination".into(),
    }
}

fn check(problems: Vec<String>, ok: String) -> Verification {
    if problems.is_empty() {
        Verification::ok(ok)
    } else {
        Verification::failed(problems.join("; "))
    }
}

fn cgroup_root(config: &EgressConfig) -> Result<PathBuf, EgressError> {
    if let Some(root) = &config.cgroup_root {
        return kernel::check_cgroup2(root)
            .map(|()| root.clone())
            .map_err(|reason| EgressError::CgroupRoot {
                path: root.clone(),
                reason,
            });
    }
    let mut reasons = Vec::new();
    for candidate in CGROUP2_MOUNTS {
        match kernel::check_cgroup2(Path::new(candidate)) {
            Ok(()) => return Ok(PathBuf::from(candidate)),
            Err(reason) => reasons.push(reason),
        }
    }
    Err(EgressError::CgroupRoot {
        path: PathBuf::from(CGROUP2_MOUNTS.join(" and ")),
        reason: reasons.join("; "),
    })
}

/// What a plan is computed from: the parsed destination, the workload's cgroups on this node,
/// and which of them already deny it (another incident's block).
struct EgressState {
    destination: Destination,
    cgroups: Vec<Cgroup>,
    already_denied: Vec<String>,
}

impl Observation<EgressSpec> for EgressState {
    fn candidates(&self, input: &PlanInput<'_>) -> Result<Vec<Proposal<EgressSpec>>, PlaneError> {
        let agent = &input.alert.agent;
        let key = agent.key().to_string();
        let d = self.destination;
        let threshold = &input.envelope.spec.confidence;
        let permitted: Vec<_> = input
            .envelope
            .spec
            .network
            .observed
            .iter()
            .filter(|o| o.is_confident(threshold))
            .collect();

        let mut radius = BlastRadius::default();
        for entry in &permitted {
            match d.effect_on(&entry.value) {
                Effect::Broken => radius.items.push(describe(&entry.value)),
                Effect::Undetermined => radius.undetermined.push(format!(
                    "{} (a host name: breaks if it resolves to {})",
                    describe(&entry.value),
                    d.ip
                )),
                Effect::Kept => {}
            }
        }
        radius.broken = radius.items.len();
        let everything = BlastRadius::of(permitted.iter().map(|e| describe(&e.value)).collect());

        let paths: Vec<&str> = self.cgroups.iter().map(|c| c.path.as_str()).collect();
        let n = paths.len();
        let target = format!(
            "{key}: cgroups {} on this node (eBPF cgroup connect/sendmsg hooks)",
            paths.join(", ")
        );
        let inverse = "remove this incident's hold on the deny entry; the entry goes when no incident holds it, and a cgroup's hooks are detached and unpinned once it has no entry left".to_string();
        let mut notes = vec![format!(
            "immediate on this node only, for the {n} cgroup(s) resolved now; the durable form for every node and future pods is spec.durablePolicy (a CiliumNetworkPolicy): apply it with kubectl apply -f -"
        )];
        if !self.already_denied.is_empty() {
            notes.push(format!(
                "already denied by another incident in cgroup(s) {}: this incident adds its own hold, so reverting either keeps the other's block",
                self.already_denied.join(", ")
            ));
        }
        let spec = |scope: Scope| -> Result<EgressSpec, PlaneError> {
            Ok(EgressSpec {
                agent: key.clone(),
                destination: d.ip.to_string(),
                port: d.port,
                scope,
                incident: input.incident.clone(),
                cgroups: self.cgroups.clone(),
                durable_policy: cilium_policy(agent, input.incident.as_str(), d, scope)?,
            })
        };
        let verify = |what: &str| {
            format!("the pinned deny map, read back from bpffs, holds {what} for every cgroup, and the four hooks' links are pinned on each")
        };
        let mut isolate_notes = notes.clone();
        isolate_notes.push(
            "cuts every connect() and UDP send of the workload: DNS, loopback and in-cluster services too".into(),
        );
        Ok(vec![
            Proposal {
                blast_radius: radius,
                inverse: inverse.clone(),
                verify: verify(&format!("the entry for {d}")),
                notes,
                ..Proposal::new(
                    target.clone(),
                    format!("one destination ({d}) for {key} only, {n} cgroup(s)"),
                    spec(Scope::Destination)?,
                )
            },
            Proposal {
                blast_radius: everything,
                inverse,
                verify: verify("the every-destination entry"),
                notes: isolate_notes,
                ..Proposal::new(
                    target,
                    format!("every destination for {key}, {n} cgroup(s)"),
                    spec(Scope::Workload)?,
                )
            },
        ])
    }
}

/// The durable form of an action: a CiliumNetworkPolicy denying the egress for the agent's
/// ServiceAccount (Cilium labels every endpoint with it), in the agent's namespace.
fn cilium_policy(
    agent: &AgentRef,
    incident: &str,
    d: Destination,
    scope: Scope,
) -> Result<String, PlaneError> {
    let (suffix, rule) = match scope {
        Scope::Destination => {
            let cidr = match d.ip {
                std::net::IpAddr::V4(ip) => format!("{ip}/32"),
                std::net::IpAddr::V6(ip) => format!("{ip}/128"),
            };
            let mut rule = serde_json::json!({"toCIDR": [cidr]});
            if let Some(port) = d.port {
                rule["toPorts"] =
                    serde_json::json!([{"ports": [{"port": port.to_string(), "protocol": "ANY"}]}]);
            }
            ("block-egress", rule)
        }
        Scope::Workload => ("isolate", serde_json::json!({"toEntities": ["all"]})),
    };
    let policy = serde_json::json!({
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumNetworkPolicy",
        "metadata": {
            "name": k8s_name(&format!("firebreak-{suffix}-{incident}")),
            "namespace": agent.namespace,
            "labels": {"app.kubernetes.io/managed-by": "firebreak"},
            "annotations": {"firebreak.dev/incident": incident, "firebreak.dev/agent": agent.key().to_string()},
        },
        "spec": {
            "endpointSelector": {"matchLabels": {"io.cilium.k8s.policy.serviceaccount": agent.service_account}},
            "egressDeny": [rule],
        },
    });
    serde_yaml::to_string(&policy).map_err(|e| PlaneError::Invalid {
        plane: PLANE,
        detail: format!("cannot render the CiliumNetworkPolicy: {e}"),
    })
}

/// A DNS-1123 label: lowercase alphanumerics and '-', at most 63 characters.
fn k8s_name(raw: &str) -> String {
    let mut name: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    name.truncate(63);
    name.trim_matches('-').to_string()
}

#[async_trait]
impl Plane for EgressPlane {
    const KEY: &'static str = "network";
    const ROUTE: Route = Route::Network;
    const KINDS: &'static [&'static KindSpec] = &[&BLOCK_EGRESS, &ISOLATE_WORKLOAD];
    type Spec = EgressSpec;

    fn kind_of(spec: &EgressSpec) -> &'static KindSpec {
        match spec.scope {
            Scope::Destination => &BLOCK_EGRESS,
            Scope::Workload => &ISOLATE_WORKLOAD,
        }
    }

    fn handles(&self, input: &PlanInput<'_>) -> bool {
        self.config
            .workloads
            .contains_key(&input.alert.agent.key().to_string())
    }

    async fn observe(
        &self,
        input: &PlanInput<'_>,
    ) -> Result<Box<dyn Observation<EgressSpec>>, PlaneError> {
        Ok(Box::new(self.observe_state(input)?))
    }

    async fn change(&self, spec: &EgressSpec, change: Change) -> Result<Outcome, PlaneError> {
        Ok(EgressPlane::change(self, spec, change)?)
    }

    /// Reads the pinned maps and links back from bpffs: what the kernel hooks consult.
    async fn check(&self, spec: &EgressSpec, check: Check) -> Result<Verification, PlaneError> {
        let blocked = spec.blocked()?;
        let incident = incident_id(spec.incident.as_str());
        Ok(match check {
            Check::Applied => self.verify(spec, blocked, incident)?,
            Check::Reverted => self.verify_reverted(spec, blocked, incident)?,
        })
    }

    fn verify_deadline(&self) -> Duration {
        self.config.verify_deadline
    }
}

#[cfg(test)]
mod tests {
    use firebreak_containment::plan::Enforcement;
    use firebreak_containment::plane::candidate_of;
    use firebreak_containment::{Alert, Candidate, Envelope};

    use super::*;

    const ENVELOPE: &str = concat!(
        "apiVersion: firebreak.dev/v1alpha1\nkind: Envelope\nmetadata: {name: a}\nspec:\n",
        "  agent: {cluster: c, namespace: pay, workload: Deployment/a, serviceAccount: a-sa}\n",
        "  version: 1\n  status: converged\n  network:\n    observed:\n",
        "      - {destination: 10.0.0.5, port: 443, closure: literal, count: 50, sessions: 9}\n",
        "      - {destination: 10.0.0.6, closure: literal, count: 50, sessions: 9}\n",
        "      - {destination: api.example.com, port: 443, closure: literal, count: 50, sessions: 9}\n",
        "      - {destination: 10.0.0.7, port: 443, closure: literal, count: 1, sessions: 1}\n",
    );

    /// The candidates as the engine journals them (through the plane adapter).
    fn candidates(destination: &str, port: Option<u16>) -> Vec<Candidate> {
        let envelope = Envelope::from_yaml(ENVELOPE).expect("envelope");
        let alert = Alert::from_json(
            serde_json::json!({"id": "x", "source": "t", "time": "2026-11-22T05:00:00Z",
                "agent": {"cluster": "c", "namespace": "pay", "workload": "Deployment/a", "serviceAccount": "a-sa"},
                "dimension": "network", "parameter": {"destination": destination, "port": port},
                "tier": "attack-attempt", "severity": "critical"})
            .to_string()
            .as_bytes(),
        )
        .expect("alert");
        let input = PlanInput {
            incident: &"INC_42".into(),
            plan: &"INC_42-p1".into(),
            alert: &alert,
            envelope: &envelope,
        };
        let state = EgressState {
            destination: Destination::parse(destination, port).expect("destination"),
            cgroups: vec![Cgroup {
                path: "kubepods/pod-1".into(),
                id: 99,
            }],
            already_denied: vec![],
        };
        state
            .candidates(&input)
            .expect("candidates")
            .into_iter()
            .map(|p| candidate_of::<EgressPlane>(p).expect("encodes"))
            .collect()
    }

    #[test]
    fn outside_destination_breaks_nothing_and_isolation_breaks_everything() {
        let c = candidates("203.0.113.9", Some(443));
        assert_eq!(c[0].kind, BLOCK_EGRESS);
        assert_eq!(c[0].blast_radius.broken, 0);
        // A host name on the same port may resolve to the address: undetermined, not zero.
        assert_eq!(c[0].blast_radius.undetermined.len(), 1);
        assert_eq!(c[1].kind, ISOLATE_WORKLOAD);
        assert_eq!(c[1].blast_radius.broken, 3, "{:?}", c[1].blast_radius);
        assert!(c.iter().all(|c| c.enforcement == Enforcement::Immediate));
    }

    #[test]
    fn in_envelope_destination_counts_and_tail_does_not() {
        assert_eq!(candidates("10.0.0.5", Some(443))[0].blast_radius.broken, 1);
        assert_eq!(candidates("10.0.0.6", Some(22))[0].blast_radius.broken, 1);
        assert_eq!(candidates("10.0.0.7", Some(443))[0].blast_radius.broken, 0);
        let every_port = candidates("10.0.0.5", None);
        assert_eq!(every_port[0].blast_radius.broken, 1);
    }

    #[test]
    fn spec_carries_the_keys_other_components_read_and_the_durable_policy() {
        let c = candidates("2001:db8::7", Some(8443));
        let spec = &c[0].spec;
        assert_eq!(spec["agent"], "c/pay/Deployment/a");
        assert_eq!(spec["destination"], "2001:db8::7");
        assert_eq!(spec["port"], 8443);
        assert_eq!(spec["scope"], "destination");
        let policy: serde_yaml::Value =
            serde_yaml::from_str(spec["durablePolicy"].as_str().expect("yaml")).expect("parses");
        assert_eq!(policy["kind"], "CiliumNetworkPolicy");
        assert_eq!(policy["metadata"]["namespace"], "pay");
        assert_eq!(policy["metadata"]["name"], "firebreak-block-egress-inc-42");
        assert_eq!(
            policy["spec"]["endpointSelector"]["matchLabels"]
                ["io.cilium.k8s.policy.serviceaccount"],
            "a-sa"
        );
        let rule = &policy["spec"]["egressDeny"][0];
        assert_eq!(rule["toCIDR"][0], "2001:db8::7/128");
        assert_eq!(rule["toPorts"][0]["ports"][0]["port"], "8443");

        let every_port = candidates("10.9.9.9", None);
        assert!(every_port[0].spec["port"].is_null());
        assert_eq!(every_port[1].spec["scope"], "workload");
        let isolate: serde_yaml::Value =
            serde_yaml::from_str(every_port[1].spec["durablePolicy"].as_str().expect("yaml"))
                .expect("parses");
        assert_eq!(isolate["spec"]["egressDeny"][0]["toEntities"][0], "all");
        let parsed: EgressSpec =
            serde_json::from_value(every_port[0].spec.clone()).expect("round trip");
        assert_eq!(
            parsed.blocked().expect("blocked"),
            Blocked::One(Destination::parse("10.9.9.9", None).expect("d"))
        );
    }

    #[test]
    fn a_broken_spec_is_a_precise_error() {
        let mut c = candidates("10.9.9.9", None).remove(0);
        c.spec["cgroups"] = serde_json::json!("nope");
        let e = serde_json::from_value::<EgressSpec>(c.spec).expect_err("bad spec");
        assert!(e.to_string().contains("expected a sequence"), "{e}");
    }
}
