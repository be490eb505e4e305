//! The kernel side: the programs built from `bpf/egress.c`, the deny map and its bookkeeping maps
//! pinned under bpffs, and one pinned link per (cgroup, hook).
//!
//! Layout under the configured directory (default `/sys/fs/bpf/firebreak`):
//! `fb_deny_v1`, `fb_watched_v1`, `fb_holds_v1` (maps), `links/<cgroup id>/<program>` (links).
//! Nothing is kept open by the process: the pins are the only references, so enforcement
//! outlives the daemon, and removing a link's pin detaches it.

use std::fs::File;
use std::io;
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};

use aya::maps::{HashMap, Map, MapData, MapError};
use aya::programs::links::{FdLink, LinkType, PinnedLink};
use aya::programs::{loaded_programs, CgroupAttachMode, CgroupSockAddr};
use aya::{Ebpf, EbpfLoader, Pod};

use crate::cgroups::Cgroup;
use crate::destination::Destination;
use crate::{chain, EgressError};

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/egress.bpf.o"));

const DENY: &str = "fb_deny_v1";
const WATCHED: &str = "fb_watched_v1";
const HOLDS: &str = "fb_holds_v1";
/// The hooks, by program name in `bpf/egress.c`; each is attached to every contained cgroup.
pub const PROGRAMS: [&str; 4] = ["fb_connect4", "fb_connect6", "fb_sendmsg4", "fb_sendmsg6"];

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// A deny map key; the layout of `struct deny_key` in `bpf/egress.c`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DenyKey {
    pub cgroup_id: u64,
    /// Network byte order; IPv4 as `::ffff:a.b.c.d`.
    pub addr: [u8; 16],
    /// 0 = every port.
    pub port: u16,
    /// 1 = every destination.
    pub every_destination: u8,
    pad: [u8; 5],
}

// SAFETY: repr(C), only integers and byte arrays, explicit padding (always zero): every bit
// pattern is valid and no byte is uninitialised.
unsafe impl Pod for DenyKey {}

/// What a deny entry covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocked {
    One(Destination),
    Every,
}

impl DenyKey {
    pub fn new(cgroup_id: u64, blocked: Blocked) -> DenyKey {
        let (addr, port, every) = match blocked {
            Blocked::One(d) => (d.mapped().octets(), d.port.unwrap_or(0), 0),
            Blocked::Every => ([0; 16], 0, 1),
        };
        DenyKey {
            cgroup_id,
            addr,
            port,
            every_destination: every,
            pad: [0; 5],
        }
    }

    /// What the entry blocks, in words.
    pub fn describe(&self) -> String {
        if self.every_destination == 1 {
            return "every destination".into();
        }
        let ip = Ipv6Addr::from(self.addr).to_canonical();
        match self.port {
            0 => format!("{ip} (every port)"),
            p => format!("{ip} port {p}"),
        }
    }
}

/// One incident's claim on a deny entry; the layout of `struct hold_key`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HoldKey {
    deny: DenyKey,
    incident: u64,
}

// SAFETY: as for DenyKey; no padding (32 + 8 bytes).
unsafe impl Pod for HoldKey {}

/// The map key of an incident: FNV-1a of its id (stable across processes and versions).
pub fn incident_id(incident: &str) -> u64 {
    incident.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn kernel_error<E: std::error::Error>(doing: impl Into<String>) -> impl FnOnce(E) -> EgressError {
    let doing = doing.into();
    move |e| EgressError::Kernel {
        doing,
        detail: chain(&e),
    }
}

/// Reads a value, `None` when the key is absent.
fn lookup<K: Pod, V: Pod>(
    map: &HashMap<MapData, K, V>,
    key: &K,
    name: &str,
) -> Result<Option<V>, EgressError> {
    match map.get(key, 0) {
        Ok(v) => Ok(Some(v)),
        Err(MapError::KeyNotFound) => Ok(None),
        Err(e) => Err(kernel_error(format!("reading map {name}"))(e)),
    }
}

/// The three pinned maps, opened from their pins.
pub struct Maps {
    /// The deny map's kernel id: the hooks attached to a cgroup must read this map.
    deny_id: u32,
    deny: HashMap<MapData, DenyKey, u32>,
    watched: HashMap<MapData, u64, u8>,
    holds: HashMap<MapData, HoldKey, u8>,
}

impl Maps {
    /// Opens the pinned maps under `dir`; the kernel's key and value sizes are checked against
    /// this build's, so a map pinned by an incompatible version is refused, not misread.
    pub fn open(dir: &Path) -> Result<Maps, EgressError> {
        let (deny_id, deny) = open_pinned(dir, DENY)?;
        Ok(Maps {
            deny_id,
            deny,
            watched: open_pinned(dir, WATCHED)?.1,
            holds: open_pinned(dir, HOLDS)?.1,
        })
    }

    pub fn denied(&self, key: &DenyKey) -> Result<bool, EgressError> {
        Ok(lookup(&self.deny, key, DENY)?.is_some())
    }

    pub fn held(&self, key: &DenyKey, incident: u64) -> Result<bool, EgressError> {
        let hold = HoldKey {
            deny: *key,
            incident,
        };
        Ok(lookup(&self.holds, &hold, HOLDS)?.is_some())
    }

    pub fn watched(&self, cgroup_id: u64) -> Result<bool, EgressError> {
        Ok(lookup(&self.watched, &cgroup_id, WATCHED)?.is_some())
    }

    /// How many incidents hold `key`.
    pub fn holders(&self, key: &DenyKey) -> Result<u32, EgressError> {
        let mut n = 0;
        for hold in self.holds.keys() {
            let hold = hold.map_err(kernel_error(format!("iterating map {HOLDS}")))?;
            n += u32::from(hold.deny == *key);
        }
        Ok(n)
    }

    /// Every deny entry with its holder count.
    pub fn entries(&self) -> Result<Vec<(DenyKey, u32)>, EgressError> {
        self.deny
            .iter()
            .collect::<Result<_, _>>()
            .map_err(kernel_error(format!("iterating map {DENY}")))
    }

    fn entries_for(&self, cgroup_id: u64) -> Result<usize, EgressError> {
        Ok(self
            .entries()?
            .iter()
            .filter(|(k, _)| k.cgroup_id == cgroup_id)
            .count())
    }
}

/// Opens a pinned map and its kernel id.
fn open_pinned<K: Pod, V: Pod>(
    dir: &Path,
    name: &str,
) -> Result<(u32, HashMap<MapData, K, V>), EgressError> {
    let path = dir.join(name);
    let doing = || format!("opening the pinned map {}", path.display());
    let data = MapData::from_pin(&path).map_err(kernel_error(doing()))?;
    let id = data.info().map_err(kernel_error(doing()))?.id();
    let map = Map::from_map_data(data).map_err(kernel_error(doing()))?;
    let map = HashMap::try_from(map).map_err(kernel_error(format!(
        "{} (pinned by an incompatible Firebreak version? unpin it after reverting its incidents)",
        doing()
    )))?;
    Ok((id, map))
}

/// A hook's pinned link on one cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkState {
    Missing,
    /// Attached, running a program that reads the current deny map.
    Current,
    /// Pinned, but not a cgroup link or its program reads another map (the map's pin was
    /// removed by hand and recreated): it enforces nothing Firebreak writes now.
    Stale,
}

fn link_state(pin: &Path, deny_id: u32) -> Result<LinkState, EgressError> {
    if !pin.exists() {
        return Ok(LinkState::Missing);
    }
    let doing = || format!("reading the pinned link {}", pin.display());
    let link: FdLink = PinnedLink::from_pin(pin)
        .map_err(kernel_error(doing()))?
        .into();
    let info = link.info().map_err(kernel_error(doing()))?;
    if info.link_type().ok() != Some(LinkType::Cgroup) {
        return Ok(LinkState::Stale);
    }
    for program in loaded_programs() {
        let program = program.map_err(kernel_error(doing()))?;
        if program.id() == info.program_id() {
            let maps = program.map_ids().map_err(kernel_error(doing()))?;
            return Ok(if maps.unwrap_or_default().contains(&deny_id) {
                LinkState::Current
            } else {
                LinkState::Stale
            });
        }
    }
    Ok(LinkState::Stale)
}

impl Maps {
    /// How many of the hooks are attached to the cgroup and read this deny map.
    pub fn links_attached(&self, dir: &Path, cgroup_id: u64) -> Result<usize, EgressError> {
        let mut n = 0;
        for name in PROGRAMS {
            n += usize::from(
                link_state(&link_pin(dir, cgroup_id, name), self.deny_id)? == LinkState::Current,
            );
        }
        Ok(n)
    }
}

fn links_dir(dir: &Path, cgroup_id: u64) -> PathBuf {
    dir.join("links").join(cgroup_id.to_string())
}

fn link_pin(dir: &Path, cgroup_id: u64, program: &str) -> PathBuf {
    links_dir(dir, cgroup_id).join(program)
}

/// The loaded programs (to attach new cgroups) and the pinned maps.
pub struct Kernel {
    ebpf: Ebpf,
    maps: Maps,
    dir: PathBuf,
}

impl Kernel {
    /// Loads the programs and creates the maps pinned under `dir`, or reuses them when a
    /// previous daemon pinned them (their entries, and the links using them, stay in force).
    pub fn load(dir: &Path) -> Result<Kernel, EgressError> {
        check_filesystem(dir, BPF_FS_MAGIC).map_err(|reason| EgressError::Bpffs {
            path: dir.to_path_buf(),
            reason,
        })?;
        std::fs::create_dir_all(dir).map_err(|e| EgressError::Bpffs {
            path: dir.to_path_buf(),
            reason: format!("cannot create the pin directory: {e}"),
        })?;
        let (deny, watched, holds) = (dir.join(DENY), dir.join(WATCHED), dir.join(HOLDS));
        let mut ebpf = EbpfLoader::new()
            .map_pin_path(DENY, deny.as_path())
            .map_pin_path(WATCHED, watched.as_path())
            .map_pin_path(HOLDS, holds.as_path())
            .load(OBJECT)
            .map_err(kernel_error(
                "loading the eBPF object (needs root: CAP_BPF and CAP_NET_ADMIN)",
            ))?;
        for name in PROGRAMS {
            program(&mut ebpf, name)?
                .load()
                .map_err(kernel_error(format!("loading program {name}")))?;
        }
        Ok(Kernel {
            ebpf,
            maps: Maps::open(dir)?,
            dir: dir.to_path_buf(),
        })
    }

    pub fn maps(&self) -> &Maps {
        &self.maps
    }

    /// Makes `incident` hold a deny entry for `cgroup` and attaches the hooks to the cgroup if
    /// they are not yet. Returns whether anything was written.
    pub fn hold(
        &mut self,
        root: &Path,
        cgroup: &Cgroup,
        key: DenyKey,
        incident: u64,
    ) -> Result<bool, EgressError> {
        let mut changed = false;
        if !self.maps.held(&key, incident)? {
            let hold = HoldKey {
                deny: key,
                incident,
            };
            self.maps
                .holds
                .insert(hold, 1, 0)
                .map_err(kernel_error(format!("inserting into map {HOLDS}")))?;
            changed = true;
        }
        changed |= self.count_holders(key)?;
        if !self.maps.watched(cgroup.id)? {
            self.maps
                .watched
                .insert(cgroup.id, 1, 0)
                .map_err(kernel_error(format!("inserting into map {WATCHED}")))?;
            changed = true;
        }
        changed |= self.attach(root, cgroup)?;
        Ok(changed)
    }

    /// Drops `incident`'s hold; the entry goes when no incident holds it, and the cgroup's
    /// hooks are detached when it has no entry left. Works for a cgroup that is gone.
    pub fn release(
        &mut self,
        cgroup_id: u64,
        key: DenyKey,
        incident: u64,
    ) -> Result<bool, EgressError> {
        let mut changed = false;
        if self.maps.held(&key, incident)? {
            let hold = HoldKey {
                deny: key,
                incident,
            };
            self.maps
                .holds
                .remove(&hold)
                .map_err(kernel_error(format!("removing from map {HOLDS}")))?;
            changed = true;
        }
        changed |= self.count_holders(key)?;
        if self.maps.entries_for(cgroup_id)? == 0 {
            if self.maps.watched(cgroup_id)? {
                self.maps
                    .watched
                    .remove(&cgroup_id)
                    .map_err(kernel_error(format!("removing from map {WATCHED}")))?;
                changed = true;
            }
            changed |= self.detach(cgroup_id)?;
        }
        Ok(changed)
    }

    /// Sets the deny entry to its holder count, removing it at zero. Returns whether the
    /// entry appeared or disappeared.
    fn count_holders(&mut self, key: DenyKey) -> Result<bool, EgressError> {
        let holders = self.maps.holders(&key)?;
        let present = self.maps.denied(&key)?;
        if holders == 0 {
            if present {
                self.maps
                    .deny
                    .remove(&key)
                    .map_err(kernel_error(format!("removing from map {DENY}")))?;
            }
            return Ok(present);
        }
        self.maps
            .deny
            .insert(key, holders, 0)
            .map_err(kernel_error(format!(
                "inserting into map {DENY} (full at its 16384 entries?)"
            )))?;
        Ok(!present)
    }

    fn attach(&mut self, root: &Path, cgroup: &Cgroup) -> Result<bool, EgressError> {
        let links = links_dir(&self.dir, cgroup.id);
        let path = root.join(&cgroup.path);
        let mut changed = false;
        for name in PROGRAMS {
            let pin = link_pin(&self.dir, cgroup.id, name);
            match link_state(&pin, self.maps.deny_id)? {
                LinkState::Current => continue,
                LinkState::Stale => std::fs::remove_file(&pin).map_err(kernel_error(format!(
                    "unpinning the stale link {}",
                    pin.display()
                )))?,
                LinkState::Missing => {}
            }
            std::fs::create_dir_all(&links).map_err(kernel_error(format!(
                "creating the link pin directory {}",
                links.display()
            )))?;
            let file = File::open(&path)
                .map_err(kernel_error(format!("opening cgroup {}", path.display())))?;
            let doing = || format!("attaching {name} to cgroup {}", path.display());
            let prog = program(&mut self.ebpf, name)?;
            // Single is the only mode this kernel accepts for cgroup links (docs/ARCHITECTURE.md §Planes).
            let id = prog
                .attach(&file, CgroupAttachMode::Single)
                .map_err(kernel_error(doing()))?;
            let link = prog.take_link(id).map_err(kernel_error(doing()))?;
            let link = FdLink::try_from(link).map_err(kernel_error(doing()))?;
            // The pinned link is dropped at once: the pin alone keeps the hook attached.
            link.pin(&pin).map_err(kernel_error(format!(
                "pinning the link at {}",
                pin.display()
            )))?;
            changed = true;
        }
        Ok(changed)
    }

    fn detach(&self, cgroup_id: u64) -> Result<bool, EgressError> {
        let mut changed = false;
        for name in PROGRAMS {
            let pin = link_pin(&self.dir, cgroup_id, name);
            match std::fs::remove_file(&pin) {
                Ok(()) => changed = true,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(kernel_error(format!("unpinning {}", pin.display()))(e));
                }
            }
        }
        let links = links_dir(&self.dir, cgroup_id);
        match std::fs::remove_dir(&links) {
            Ok(()) => Ok(changed),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(changed),
            Err(e) => Err(kernel_error(format!("removing {}", links.display()))(e)),
        }
    }
}

fn program<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut CgroupSockAddr, EgressError> {
    let missing = || EgressError::Kernel {
        doing: format!("finding program {name}"),
        detail: "not in the embedded object; the build is broken".into(),
    };
    ebpf.program_mut(name)
        .ok_or_else(missing)?
        .try_into()
        .map_err(kernel_error(format!(
            "using {name} as a cgroup sock_addr program"
        )))
}

/// Checks that `path` (or, when it does not exist yet, its closest existing ancestor) is on a
/// filesystem of type `magic`.
pub fn check_filesystem(path: &Path, magic: i64) -> Result<(), String> {
    let existing = path
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    let c_path = std::ffi::CString::new(existing.as_os_str().as_encoded_bytes())
        .map_err(|_| "the path contains a NUL byte".to_string())?;
    // SAFETY: statfs writes into the zeroed struct it is given; the path is NUL-terminated.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c_path.as_ptr(), &mut stat) } != 0 {
        return Err(format!("statfs failed: {}", io::Error::last_os_error()));
    }
    #[allow(clippy::unnecessary_cast)] // f_type is i64 on x86_64, other widths elsewhere
    let found = stat.f_type as i64;
    if found == magic {
        Ok(())
    } else {
        Err(format!(
            "{} is on a filesystem of type {found:#x}",
            existing.display()
        ))
    }
}

/// Checks that `path` is a cgroup2 mount (or a directory inside one).
pub fn check_cgroup2(path: &Path) -> Result<(), String> {
    if !path.is_dir() {
        return Err("no such directory".into());
    }
    check_filesystem(path, CGROUP2_SUPER_MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_layouts_match_the_c_structs() {
        assert_eq!(std::mem::size_of::<DenyKey>(), 32);
        assert_eq!(std::mem::align_of::<DenyKey>(), 8);
        assert_eq!(std::mem::size_of::<HoldKey>(), 40);
    }

    #[test]
    fn keys_map_ipv4_and_describe_themselves() {
        let d = Destination::parse("127.0.0.2", Some(8080)).expect("valid");
        let k = DenyKey::new(7, Blocked::One(d));
        assert_eq!(&k.addr[10..], &[0xff, 0xff, 127, 0, 0, 2]);
        assert_eq!(k.port, 8080);
        assert_eq!(k.describe(), "127.0.0.2 port 8080");
        assert_eq!(
            DenyKey::new(7, Blocked::Every).describe(),
            "every destination"
        );
    }

    #[test]
    fn incident_ids_are_stable() {
        assert_eq!(incident_id(""), 0xcbf2_9ce4_8422_2325);
        assert_ne!(incident_id("inc-1"), incident_id("inc-2"));
    }
}
