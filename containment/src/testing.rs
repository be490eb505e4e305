//! Kinds, runbooks and candidates for the crate's own unit tests.

use crate::plan::Enforcement;
use crate::plane::{KindSpec, Kinds};

pub static NARROW: KindSpec = KindSpec {
    name: "test.narrow",
    ladder: "test",
    rung: 0,
    approval_only: false,
    enforcement: Enforcement::Durable,
};
pub static WIDE: KindSpec = KindSpec {
    name: "test.wide",
    ladder: "test",
    rung: 1,
    approval_only: false,
    enforcement: Enforcement::Durable,
};
pub static BROADEST: KindSpec = KindSpec {
    name: "test.broadest",
    ladder: "test",
    rung: 2,
    approval_only: true,
    enforcement: Enforcement::Durable,
};

pub fn kinds() -> Kinds {
    let mut kinds = Kinds::default();
    kinds
        .declare(&[&NARROW, &WIDE, &BROADEST])
        .unwrap_or_else(|e| panic!("test kinds: {e}"));
    kinds
}

/// Shaped like the embedded default: attack attempts automatic at blast radius 0 on the
/// narrowest rung, everything else waits.
pub const RUNBOOK: &str = "apiVersion: firebreak.dev/v1alpha1
kind: Runbook
metadata: {name: test}
spec:
  rules:
    - name: attack-attempts-contain-automatically
      match: {tiers: [attack-attempt]}
      mode: auto
      maxAutoBlastRadius: 0
      broadestWithoutApproval:
        - test.narrow
      ttl: 24h
    - name: everything-else-waits-for-a-human
      mode: approve
      ttl: 24h
";
