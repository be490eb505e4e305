//! A workload's cgroups: configured paths (with `*`/`?` wildcards per segment) resolved against
//! the node's cgroup2 tree, each with its id (the directory's inode number, which is what
//! `bpf_get_current_cgroup_id` returns).

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::EgressError;

/// One cgroup a block applies to, as planned.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Cgroup {
    /// Relative to the cgroup root.
    pub path: String,
    pub id: u64,
}

/// Resolves an agent's configured patterns. Reads the tree only. Every pattern must match at
/// least one cgroup: a pattern matching nothing means the plan would not cover that workload.
pub fn resolve(root: &Path, agent: &str, patterns: &[String]) -> Result<Vec<Cgroup>, EgressError> {
    let mut found = Vec::new();
    for pattern in patterns {
        let matches = expand(root, pattern).map_err(|e| EgressError::Kernel {
            doing: format!("reading the cgroup tree under {}", root.display()),
            detail: e.to_string(),
        })?;
        if matches.is_empty() {
            return Err(EgressError::NoCgroup {
                agent: agent.to_string(),
                pattern: pattern.clone(),
                root: root.to_path_buf(),
            });
        }
        found.extend(matches);
    }
    found.sort();
    found.dedup_by_key(|c| c.id);
    Ok(found)
}

/// The cgroup's id now, or why it cannot be acted on: gone, or recreated under the same path
/// (new processes the plan did not look at).
pub fn check(root: &Path, cgroup: &Cgroup) -> Result<(), EgressError> {
    let path = root.join(&cgroup.path);
    match id_of(&path) {
        Ok(id) if id == cgroup.id => Ok(()),
        Ok(now) => Err(EgressError::CgroupReplaced {
            path,
            planned: cgroup.id,
            now,
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(EgressError::CgroupVanished {
            path,
            id: cgroup.id,
        }),
        Err(e) => Err(EgressError::Kernel {
            doing: format!("reading cgroup {}", path.display()),
            detail: e.to_string(),
        }),
    }
}

fn id_of(path: &Path) -> io::Result<u64> {
    // Every cgroup2 directory has cgroup.procs; a plain directory or file is not a cgroup.
    let meta = std::fs::metadata(path)?;
    std::fs::metadata(path.join("cgroup.procs"))?;
    if !meta.is_dir() {
        return Err(io::Error::new(io::ErrorKind::NotFound, "not a directory"));
    }
    Ok(meta.ino())
}

fn expand(root: &Path, pattern: &str) -> io::Result<Vec<Cgroup>> {
    let mut current: Vec<PathBuf> = vec![PathBuf::new()];
    for segment in pattern.split('/').filter(|s| !s.is_empty()) {
        let mut next = Vec::new();
        for dir in &current {
            if !segment.contains(['*', '?']) {
                next.push(dir.join(segment));
                continue;
            }
            let entries = match std::fs::read_dir(root.join(dir)) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for entry in entries {
                let entry = entry?;
                if entry.file_type()?.is_dir() {
                    if let Some(name) = entry.file_name().to_str() {
                        if wildcard(segment, name) {
                            next.push(dir.join(name));
                        }
                    }
                }
            }
        }
        current = next;
    }
    let mut out = Vec::new();
    for relative in current {
        match id_of(&root.join(&relative)) {
            Ok(id) => out.push(Cgroup {
                path: relative.to_string_lossy().into_owned(),
                id,
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Shell-style match of one path segment: `*` any run of characters, `?` one character.
fn wildcard(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni) = (0, 0);
    // Where the last `*` was, and the name position it is currently standing for.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(&c) if c == '?' || c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_matches_like_a_shell() {
        assert!(wildcard(
            "kubepods-*-pod*.slice",
            "kubepods-burstable-pod12ab.slice"
        ));
        assert!(wildcard("pod?", "pod1"));
        assert!(wildcard("*", "anything"));
        assert!(wildcard("a*b*c", "aXbYbc"));
        assert!(!wildcard("pod?", "pod12"));
        assert!(!wildcard("kubepods-*.slice", "kubepods-x.scope"));
        assert!(!wildcard("abc", "abd"));
    }

    /// A fake tree: directories with a `cgroup.procs` file, like cgroup2.
    fn tree(paths: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        for p in paths {
            let d = dir.path().join(p);
            std::fs::create_dir_all(&d).expect("mkdir");
            std::fs::write(d.join("cgroup.procs"), "").expect("procs");
        }
        dir
    }

    #[test]
    fn patterns_resolve_to_cgroups_and_unmatched_ones_are_errors() {
        let t = tree(&[
            "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podAAA.slice",
            "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podAAA.slice",
            "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podBBB.slice",
        ]);
        let found = resolve(
            t.path(),
            "c/n/Deployment/a",
            &["kubepods.slice/*/kubepods-*-podAAA.slice".into()],
        )
        .expect("resolves");
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found.iter().all(|c| c.path.contains("podAAA")));

        let e = resolve(
            t.path(),
            "c/n/Deployment/a",
            &["kubepods.slice/*/x-*".into()],
        )
        .expect_err("nothing");
        assert!(e.to_string().contains("matches no cgroup"), "{e}");
        let e = resolve(t.path(), "c/n/Deployment/a", &["missing".into()]).expect_err("literal");
        assert!(e.to_string().contains("\"missing\""), "{e}");
    }

    #[test]
    fn check_tells_vanished_from_recreated() {
        let t = tree(&["w"]);
        let found = resolve(t.path(), "c/n/Deployment/a", &["w".into()]).expect("resolves");
        check(t.path(), &found[0]).expect("same cgroup");
        let other = Cgroup {
            path: "w".into(),
            id: found[0].id + 1,
        };
        let e = check(t.path(), &other).expect_err("another id under the same path");
        assert!(matches!(e, EgressError::CgroupReplaced { .. }), "{e}");
        std::fs::remove_dir_all(t.path().join("w")).expect("rm");
        let e = check(t.path(), &found[0]).expect_err("gone");
        assert!(matches!(e, EgressError::CgroupVanished { .. }), "{e}");
    }
}
