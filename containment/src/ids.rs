//! Identifiers as types: an incident id is never a plan id, a plane key never an action kind.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A name that is usually a `&'static str` declared by code but may be read back from the
/// journal or the API as an owned string.
macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Cow<'static, str>);

        impl $name {
            pub const fn from_static(name: &'static str) -> Self {
                Self(Cow::Borrowed(name))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl From<String> for $name {
            fn from(name: String) -> Self {
                Self(Cow::Owned(name))
            }
        }

        impl From<&str> for $name {
            fn from(name: &str) -> Self {
                Self(Cow::Owned(name.to_string()))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

name_type! {
    /// One incident: `inc-` and 12 hex digits.
    IncidentId
}

name_type! {
    /// One plan of an incident: `<incident>-p<n>`.
    PlanId
}

name_type! {
    /// The config key a control plane is registered under (`aws`, `context.milvus`, …); stamped
    /// on every candidate and journaled intent, so an action always returns to its own plane.
    PlaneKey
}

name_type! {
    /// An action kind's public, stable name (`aws.inline_deny`), declared by its plane.
    ActionKind
}

impl PlanId {
    /// The `index`-th plan (1-based) of `incident`.
    pub fn nth(incident: &IncidentId, index: usize) -> PlanId {
        PlanId::from(format!("{incident}-p{index}"))
    }
}
