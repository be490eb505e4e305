//! Errors about input from outside: they always name the field and the reason.

use std::fmt;

/// Bad input: which field (a dotted path such as `agent.workload`) and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, thiserror::Error)]
pub struct InputError {
    pub field: String,
    pub reason: String,
}

impl InputError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Prefixes the field path, e.g. `parameter` + `action` → `parameter.action`.
    pub fn within(mut self, parent: &str) -> Self {
        self.field = if self.field.is_empty() || self.field == "." {
            parent.to_string()
        } else if self.field.starts_with('[') {
            format!("{parent}{}", self.field)
        } else {
            format!("{parent}.{}", self.field)
        };
        self
    }

    /// Deserializes `T` from JSON, turning serde's error into one that names the field path.
    pub fn from_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, InputError> {
        let de = &mut serde_json::Deserializer::from_slice(bytes);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            located(&path, &e.into_inner().to_string())
        })
    }

    /// Same as [`InputError::from_json`] for YAML documents.
    pub fn from_yaml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, InputError> {
        let de = serde_yaml::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            located(&path, &e.into_inner().to_string())
        })
    }
}

/// An error serde gave at `path` (as `serde_path_to_error` prints it), as bad input naming the
/// field. serde reports a missing field at its parent's path (`.` for the top level): the
/// field itself is named.
pub fn located(path: &str, message: &str) -> InputError {
    let parent = if path == "." { "" } else { path };
    // serde_yaml starts a nested error with its own copy of (a prefix of) the path.
    let message = match message.split_once(": ") {
        Some((own, rest)) if !parent.is_empty() && parent.starts_with(own) => rest,
        _ => message,
    };
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    let field = match (parent, missing) {
        (parent, Some(name)) if !parent.is_empty() => format!("{parent}.{name}"),
        (_, Some(name)) => name.to_string(),
        (parent, None) => parent.to_string(),
    };
    InputError::new(field, clean_serde_message(message))
}

/// serde appends " at line 1 column 42"; keep it (it helps) but drop serde's Rust-ish jargon.
fn clean_serde_message(message: &str) -> String {
    message
        .replace("invalid type: ", "wrong type: ")
        .replace("unknown variant", "unknown value")
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "{}: {}", self.field, self.reason)
        }
    }
}
