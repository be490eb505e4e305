//! Action kinds as their planes declare them: name, ladder, rung, approval-only, enforcement.
//! The engine knows no kind by name; it reads these declarations (docs/ARCHITECTURE.md §Planes).

use std::collections::BTreeMap;

use crate::ids::ActionKind;
use crate::plan::Enforcement;

/// What a control plane declares about one of its action kinds.
#[derive(Debug, PartialEq, Eq)]
pub struct KindSpec {
    /// The public, stable name, e.g. `aws.inline_deny`.
    pub name: &'static str,
    /// The ladder it is a rung of (`aws`, `context`, `tools`, …); runbooks name rungs per ladder.
    pub ladder: &'static str,
    /// Position on the ladder: 0 is the narrowest.
    pub rung: u8,
    /// The broadest rungs always wait for a human (safety rule 1).
    pub approval_only: bool,
    /// Effective on the next call at a point Firebreak owns, or after propagation at a cloud.
    pub enforcement: Enforcement,
}

impl KindSpec {
    /// A rung enforced at a cloud or cluster control plane: effective after propagation.
    pub const fn durable(
        ladder: &'static str,
        name: &'static str,
        rung: u8,
        approval_only: bool,
    ) -> KindSpec {
        KindSpec::new(ladder, name, rung, approval_only, Enforcement::Durable)
    }

    /// A rung enforced at a point Firebreak owns: effective on the next call.
    pub const fn immediate(
        ladder: &'static str,
        name: &'static str,
        rung: u8,
        approval_only: bool,
    ) -> KindSpec {
        KindSpec::new(ladder, name, rung, approval_only, Enforcement::Immediate)
    }

    const fn new(
        ladder: &'static str,
        name: &'static str,
        rung: u8,
        approval_only: bool,
        enforcement: Enforcement,
    ) -> KindSpec {
        KindSpec {
            name,
            ladder,
            rung,
            approval_only,
            enforcement,
        }
    }

    pub const fn kind(&'static self) -> ActionKind {
        ActionKind::from_static(self.name)
    }
}

impl PartialEq<KindSpec> for ActionKind {
    fn eq(&self, other: &KindSpec) -> bool {
        self.as_str() == other.name
    }
}

impl PartialEq<&KindSpec> for ActionKind {
    fn eq(&self, other: &&KindSpec) -> bool {
        self.as_str() == other.name
    }
}

/// Every kind the registered planes declared, by name.
#[derive(Debug, Default, Clone)]
pub struct Kinds {
    by_name: BTreeMap<&'static str, &'static KindSpec>,
}

/// Why a set of declarations cannot be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KindError {
    #[error("two planes declare kind {0} differently; a kind has one declaration")]
    Conflicting(&'static str),
    #[error(
        "ladder {ladder} has no rung {rung} (its kinds must be numbered 0, 1, 2, … without gaps)"
    )]
    Gap { ladder: &'static str, rung: u8 },
    #[error("{0} is the broadest rung of its ladder and must be approval-only (safety rule 1)")]
    BroadestNeedsApproval(&'static str),
    #[error("{0} is the narrowest rung of its ladder and must not be approval-only")]
    NarrowestNeedsNoApproval(&'static str),
}

impl Kinds {
    /// Adds one plane's declarations. The same `&'static` declaration may come from two planes
    /// of one ladder (pgvector and Milvus); two different ones of one name may not.
    pub fn declare(&mut self, kinds: &[&'static KindSpec]) -> Result<(), KindError> {
        for kind in kinds {
            match self.by_name.get(kind.name) {
                Some(known) if *known != *kind => return Err(KindError::Conflicting(kind.name)),
                _ => {
                    self.by_name.insert(kind.name, kind);
                }
            }
        }
        Ok(())
    }

    /// Checks every ladder: dense rungs, broadest approval-only, narrowest not.
    pub fn check_ladders(&self) -> Result<(), KindError> {
        let mut ladders: BTreeMap<&str, Vec<&KindSpec>> = BTreeMap::new();
        for kind in self.by_name.values() {
            ladders.entry(kind.ladder).or_default().push(kind);
        }
        for mut kinds in ladders.into_values() {
            kinds.sort_by_key(|k| k.rung);
            for (i, k) in kinds.iter().enumerate() {
                if usize::from(k.rung) != i {
                    return Err(KindError::Gap {
                        ladder: k.ladder,
                        rung: i as u8,
                    });
                }
            }
            if let Some(broadest) = kinds.last().filter(|k| !k.approval_only) {
                return Err(KindError::BroadestNeedsApproval(broadest.name));
            }
            if let Some(narrowest) = kinds.first().filter(|k| k.approval_only) {
                return Err(KindError::NarrowestNeedsNoApproval(narrowest.name));
            }
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&'static KindSpec> {
        self.by_name.get(name).copied()
    }

    pub fn iter(&self) -> impl Iterator<Item = &'static KindSpec> + '_ {
        self.by_name.values().copied()
    }

    /// The known names, for error messages.
    pub fn names(&self) -> Vec<&'static str> {
        self.by_name.keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn kind(name: &'static str, rung: u8, approval_only: bool) -> KindSpec {
        KindSpec {
            name,
            ladder: "test",
            rung,
            approval_only,
            enforcement: Enforcement::Durable,
        }
    }

    static NARROW: KindSpec = kind("test.narrow", 0, false);
    static BROAD: KindSpec = kind("test.broad", 1, true);
    static GAPPED: KindSpec = kind("test.gapped", 3, true);
    static OPEN_BROAD: KindSpec = kind("test.open", 1, false);
    static IMPOSTOR: KindSpec = kind("test.narrow", 0, true);

    #[test]
    fn a_dense_ladder_ending_in_approval_is_accepted() {
        let mut kinds = Kinds::default();
        kinds.declare(&[&NARROW, &BROAD]).expect("declare");
        kinds
            .declare(&[&NARROW])
            .expect("the same declaration twice");
        assert_eq!(kinds.check_ladders(), Ok(()));
        assert_eq!(kinds.get("test.broad").map(|k| k.rung), Some(1));
    }

    #[test]
    fn gaps_open_broadest_rungs_and_impostors_are_refused() {
        let mut kinds = Kinds::default();
        kinds.declare(&[&NARROW, &GAPPED]).expect("declare");
        assert_eq!(
            kinds.check_ladders(),
            Err(KindError::Gap {
                ladder: "test",
                rung: 1
            })
        );
        let mut kinds = Kinds::default();
        kinds.declare(&[&NARROW, &OPEN_BROAD]).expect("declare");
        assert_eq!(
            kinds.check_ladders(),
            Err(KindError::BroadestNeedsApproval("test.open"))
        );
        let mut kinds = Kinds::default();
        kinds.declare(&[&NARROW]).expect("declare");
        assert_eq!(
            kinds.declare(&[&IMPOSTOR]),
            Err(KindError::Conflicting("test.narrow"))
        );
    }
}
