//! What every control plane's configuration shares.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// `#[serde(deserialize_with = "duration")]`: a human duration such as `30s`, `5m` or `1h`.
pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!(
            "{text:?} is not a duration like 30s, 5m or 1h: {e}"
        ))
    })
}
