//! Shared by the eBPF end-to-end tests (`tests/e2e/ebpf.rs`) and the bench: real cgroups under
//! the cgroup2 mount with unique names (removed on drop), a private pin directory under bpffs
//! (unpinned on drop), probe processes placed in a cgroup, and the alert/envelope to plan from.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use firebreak_containment::plan::Candidate;
use firebreak_containment::plane::{
    candidate_of, Change, Check, Outcome, PlanInput, Plane, PlaneError, Verification,
};
use firebreak_containment::{Alert, Envelope};
use firebreak_ebpf::{EgressConfig, EgressPlane, EgressSpec};

pub const AGENT: &str = "test/payments/Deployment/payment-agent";
pub const CGROUP2: &str = "/sys/fs/cgroup/unified";

/// Whether the kernel tests can run: `Some(python)` when `./scripts/test` set up eBPF and this
/// runs as root; `None` (with a printed reason) when not root. Panics when the environment
/// was never set up, so a missing setup never passes silently.
pub fn setup_or_skip(test: &str) -> Option<PathBuf> {
    let state = std::env::var("FIREBREAK_EBPF").unwrap_or_else(|_| {
        panic!("FIREBREAK_EBPF is not set: run ./scripts/test, or eval \"$(./scripts/test --env)\" first")
    });
    // SAFETY: geteuid has no preconditions.
    if state != "ready" || unsafe { libc::geteuid() } != 0 {
        println!("SKIPPED {test}: attaching eBPF programs to cgroups needs root with bpffs mounted (FIREBREAK_EBPF={state})");
        return None;
    }
    let python = std::env::var("FIREBREAK_EBPF_PYTHON").unwrap_or_else(|_| {
        panic!("FIREBREAK_EBPF_PYTHON is not set: run ./scripts/test, or eval \"$(./scripts/test --env)\" first")
    });
    Some(PathBuf::from(python))
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

fn unique(tag: &str) -> String {
    format!(
        "firebreak-test-{}-{tag}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// A cgroup created for one test; removed (with its children) on drop.
pub struct TestCgroup {
    /// Relative to the cgroup2 mount.
    pub relative: String,
}

impl TestCgroup {
    pub fn new(tag: &str) -> TestCgroup {
        Self::at(unique(tag))
    }

    fn at(relative: String) -> TestCgroup {
        std::fs::create_dir(Path::new(CGROUP2).join(&relative)).expect("create the test cgroup");
        TestCgroup { relative }
    }

    /// A cgroup below this one (like a container cgroup under a pod cgroup).
    pub fn child(&self, name: &str) -> TestCgroup {
        Self::at(format!("{}/{name}", self.relative))
    }

    pub fn path(&self) -> PathBuf {
        Path::new(CGROUP2).join(&self.relative)
    }

    /// Moves the calling process (every thread of it) into this cgroup.
    pub fn enter(&self) {
        std::fs::write(self.path().join("cgroup.procs"), "0").expect("join the cgroup");
    }

    /// Removes the cgroup and those below it now (their processes must be gone).
    pub fn remove(&self) {
        remove_tree(&self.path());
    }
}

/// cgroup2 directories go with rmdir, deepest first; their files go with them.
fn remove_tree(path: &Path) {
    for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&entry.path());
        }
    }
    let _ = std::fs::remove_dir(path);
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        // Probes were declared later, so they were killed before this runs.
        self.remove();
    }
}

/// The cgroup the calling process started in, to go back to (`leave`).
pub fn own_cgroup() -> PathBuf {
    let text = std::fs::read_to_string("/proc/self/cgroup").expect("read /proc/self/cgroup");
    let line = text
        .lines()
        .find(|l| l.starts_with("0::"))
        .expect("a cgroup2 line in /proc/self/cgroup");
    Path::new(CGROUP2).join(line.trim_start_matches("0::").trim_start_matches('/'))
}

pub fn leave_to(cgroup: &Path) {
    std::fs::write(cgroup.join("cgroup.procs"), "0").expect("go back to the original cgroup");
}

/// A private pin directory under bpffs; everything in it is unpinned on drop, which detaches
/// the links still pinned there.
pub struct Pins(pub PathBuf);

impl Pins {
    pub fn new(tag: &str) -> Pins {
        Pins(Path::new("/sys/fs/bpf").join(unique(tag)))
    }
}

impl Drop for Pins {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn config(pins: &Pins, cgroups: &[&str]) -> EgressConfig {
    EgressConfig {
        bpffs: pins.0.clone(),
        cgroup_root: Some(PathBuf::from(CGROUP2)),
        workloads: [(
            AGENT.to_string(),
            cgroups.iter().map(|c| c.to_string()).collect(),
        )]
        .into(),
        ..EgressConfig::default()
    }
}

/// The agent's envelope: it talks to 127.0.0.1 on `in_envelope_port` and to a host name.
pub fn envelope(in_envelope_port: u16) -> Envelope {
    Envelope::from_yaml(&format!(
        "apiVersion: firebreak.dev/v1alpha1\nkind: Envelope\nmetadata: {{name: payment-agent}}\nspec:\n  agent: {{cluster: test, namespace: payments, workload: Deployment/payment-agent, serviceAccount: payment-agent}}\n  version: 3\n  status: converged\n  network:\n    observed:\n      - {{destination: 127.0.0.1, port: {in_envelope_port}, closure: literal, count: 90, sessions: 12}}\n      - {{destination: api.stripe.com, port: 443, closure: literal, count: 90, sessions: 12}}\n"
    ))
    .expect("test envelope")
}

pub fn alert(agent_workload: &str, destination: &str, port: Option<u16>) -> Alert {
    Alert::from_json(
        serde_json::json!({
            "id": "a-net", "source": "test", "time": "2026-12-01T02:47:00Z",
            "agent": {"cluster": "test", "namespace": "payments", "workload": agent_workload,
                      "serviceAccount": "payment-agent"},
            "dimension": "network", "parameter": {"destination": destination, "port": port},
            "tier": "attack-attempt", "severity": "critical"})
        .to_string()
        .as_bytes(),
    )
    .expect("test alert")
}

/// observe + candidates, as the engine plans (and as a dry run does), in the engine's form.
pub async fn plan(
    plane: &EgressPlane,
    incident: &str,
    alert: &Alert,
    envelope: &Envelope,
) -> Result<Vec<Candidate>, PlaneError> {
    let (incident, plan) = (incident.into(), format!("{incident}-p1").into());
    let input = PlanInput {
        incident: &incident,
        plan: &plan,
        alert,
        envelope,
    };
    plane
        .observe(&input)
        .await?
        .candidates(&input)?
        .into_iter()
        .map(candidate_of::<EgressPlane>)
        .collect()
}

/// The engine's four calls on a journaled candidate.
#[allow(async_fn_in_trait)]
pub trait Drive {
    async fn apply(&self, action: &Candidate) -> Result<Outcome, PlaneError>;
    async fn revert(&self, action: &Candidate) -> Result<Outcome, PlaneError>;
    async fn verify(&self, action: &Candidate) -> Result<Verification, PlaneError>;
    async fn verify_reverted(&self, action: &Candidate) -> Result<Verification, PlaneError>;
}

fn spec(action: &Candidate) -> Result<EgressSpec, PlaneError> {
    serde_json::from_value(action.spec.clone()).map_err(|e| PlaneError::Invalid {
        plane: "test",
        detail: format!("not an egress spec: {e}"),
    })
}

impl Drive for EgressPlane {
    async fn apply(&self, action: &Candidate) -> Result<Outcome, PlaneError> {
        Plane::change(self, &spec(action)?, Change::Apply).await
    }
    async fn revert(&self, action: &Candidate) -> Result<Outcome, PlaneError> {
        Plane::change(self, &spec(action)?, Change::Revert).await
    }
    async fn verify(&self, action: &Candidate) -> Result<Verification, PlaneError> {
        Plane::check(self, &spec(action)?, Check::Applied).await
    }
    async fn verify_reverted(&self, action: &Candidate) -> Result<Verification, PlaneError> {
        Plane::check(self, &spec(action)?, Check::Reverted).await
    }
}

const PROBE: &str = r#"
import errno, socket, sys
for line in sys.stdin:
    kind, host, port = line.split()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        if kind == "tcp":
            s = socket.socket(family, socket.SOCK_STREAM)
            s.settimeout(3)
            s.connect((host, int(port)))
        elif kind == "udp-sendto":
            s = socket.socket(family, socket.SOCK_DGRAM)
            s.sendto(b"probe", (host, int(port)))
        else:
            s = socket.socket(family, socket.SOCK_DGRAM)
            s.connect((host, int(port)))
        s.close()
        print("ok", flush=True)
    except OSError as e:
        print(errno.errorcode.get(e.errno, str(e.errno)), flush=True)
"#;

/// A long-running process in a cgroup that makes one connection per request, so a block is
/// observed on a process that was already running when it was applied.
pub struct Probe {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Probe {
    /// Starts the probe inside `cgroup`, or where the test runs when `None`.
    pub fn start(python: &Path, cgroup: Option<&TestCgroup>) -> Probe {
        let mut cmd = Command::new(python);
        cmd.args(["-c", PROBE])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let procs = cgroup.map(|c| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(c.path().join("cgroup.procs"))
                .expect("open cgroup.procs")
        });
        if let Some(file) = &procs {
            let fd = file.as_raw_fd();
            // SAFETY: runs between fork and exec and only calls write(2), which is
            // async-signal-safe; "0" moves the writing (child) process.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::write(fd, b"0".as_ptr().cast(), 1) == 1 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let mut child = cmd.spawn().expect("start the probe process");
        let stdin = child.stdin.take().expect("probe stdin");
        let stdout = BufReader::new(child.stdout.take().expect("probe stdout"));
        Probe {
            child,
            stdin,
            stdout,
        }
    }

    /// `kind`: `tcp`, `udp-sendto` or `udp-connect`. Returns `ok` or the errno name (`EPERM`).
    pub fn try_(&mut self, kind: &str, host: &str, port: u16) -> String {
        writeln!(self.stdin, "{kind} {host} {port}").expect("ask the probe");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("probe answer");
        assert!(!line.is_empty(), "the probe exited");
        line.trim().to_string()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
