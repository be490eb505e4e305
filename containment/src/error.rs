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
    /// An object naming a key twice is refused at any depth (serde_json's `Value` would keep
    /// the last silently, so a `parameter` or a CloudEvent's `data` could say two things).
    pub fn from_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, InputError> {
        let located_error = |e: serde_path_to_error::Error<serde_json::Error>| {
            let path = e.path().to_string();
            located(&path, &e.into_inner().to_string())
        };
        let de = &mut serde_json::Deserializer::from_slice(bytes);
        serde_path_to_error::deserialize::<_, strict::Strict>(de).map_err(located_error)?;
        let de = &mut serde_json::Deserializer::from_slice(bytes);
        serde_path_to_error::deserialize(de).map_err(located_error)
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
    let missing = ["missing field `", "duplicate field `"]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
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

mod strict {
    //! A pass over any JSON that refuses an object naming a key twice.

    use std::collections::HashSet;
    use std::fmt;

    use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

    pub(super) struct Strict;

    impl<'de> Deserialize<'de> for Strict {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(StrictVisitor)
        }
    }

    struct StrictVisitor;

    impl<'de> Visitor<'de> for StrictVisitor {
        type Value = Strict;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("JSON")
        }

        fn visit_bool<E>(self, _: bool) -> Result<Strict, E> {
            Ok(Strict)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Strict, E> {
            Ok(Strict)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Strict, E> {
            Ok(Strict)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Strict, E> {
            Ok(Strict)
        }
        fn visit_str<E>(self, _: &str) -> Result<Strict, E> {
            Ok(Strict)
        }
        fn visit_unit<E>(self) -> Result<Strict, E> {
            Ok(Strict)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
            while seq.next_element::<Strict>()?.is_some() {}
            Ok(Strict)
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
            let mut seen = HashSet::new();
            while let Some(key) = map.next_key::<String>()? {
                if !seen.insert(key.clone()) {
                    // The same wording as serde's own for a struct field, so both name it.
                    return Err(de::Error::custom(format_args!(
                        "duplicate field `{key}`: an object may name a key once"
                    )));
                }
                map.next_value::<Strict>()?;
            }
            Ok(Strict)
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(json: &str) -> String {
        InputError::from_json::<serde_json::Value>(json.as_bytes())
            .expect_err("a duplicate key")
            .field
    }

    #[test]
    fn a_key_named_twice_is_refused_at_any_depth_naming_it() {
        assert_eq!(field_of(r#"{"id": "a", "id": "b"}"#), "id");
        assert_eq!(
            field_of(r#"{"parameter": {"action": "s3:GetObject", "action": "iam:*"}}"#),
            "parameter.action"
        );
        assert_eq!(
            field_of(r#"{"data": {"x": [1, {"resource": "a", "resource": "b"}]}}"#),
            "data.x[1].resource"
        );
        let e = InputError::from_json::<serde_json::Value>(br#"{"a": 1, "a": 1}"#)
            .expect_err("even with the same value");
        assert!(e.reason.contains("once"), "{}", e.reason);
    }

    #[test]
    fn distinct_keys_and_repeated_keys_in_sibling_objects_are_fine() {
        let v: serde_json::Value =
            InputError::from_json(br#"{"a": {"k": 1}, "b": {"k": 2}, "c": [{"k": 3}, {"k": 4}]}"#)
                .expect("no duplicate");
        assert_eq!(v["c"][1]["k"], 4);
    }
}
