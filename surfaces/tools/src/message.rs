//! One JSON-RPC message from an agent, validated before the gateway acts on it.

use rmcp::model::{ErrorCode, RequestId};
use serde_json::Value;

/// The parts of one JSON-RPC message the gateway acts on.
pub(crate) struct Message {
    pub(crate) id: Option<Value>,
    pub(crate) method: Option<String>,
    pub(crate) params: Value,
}

/// Validates one JSON-RPC 2.0 message (no batches: MCP removed them in 2025-06-18).
pub(crate) fn parse_message(bytes: &[u8]) -> Result<Message, (ErrorCode, String, Option<Value>)> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        (
            ErrorCode::PARSE_ERROR,
            format!("body is not JSON: {e}"),
            None,
        )
    })?;
    let Value::Object(mut obj) = value else {
        let what = if value.is_array() {
            "JSON-RPC batches are not supported by MCP; send one message per request"
        } else {
            "a JSON-RPC message must be an object"
        };
        return Err((ErrorCode::INVALID_REQUEST, what.into(), None));
    };
    let id = obj.get("id").cloned();
    if obj.get("jsonrpc") != Some(&Value::String("2.0".into())) {
        return Err((
            ErrorCode::INVALID_REQUEST,
            "\"jsonrpc\" must be \"2.0\"".into(),
            id,
        ));
    }
    if let Some(id) = &id {
        if serde_json::from_value::<RequestId>(id.clone()).is_err() {
            return Err((
                ErrorCode::INVALID_REQUEST,
                "\"id\" must be a string or an integer".into(),
                None,
            ));
        }
    }
    let method = match obj.get("method") {
        None => None,
        Some(Value::String(m)) => Some(m.clone()),
        Some(_) => {
            return Err((
                ErrorCode::INVALID_REQUEST,
                "\"method\" must be a string".into(),
                id,
            ))
        }
    };
    if method.is_none()
        && !(id.is_some() && (obj.contains_key("result") || obj.contains_key("error")))
    {
        return Err((
            ErrorCode::INVALID_REQUEST,
            "a message needs \"method\" (request, notification) or \"id\" with \"result\"/\"error\" (response)".into(),
            id,
        ));
    }
    let params = obj.remove("params").unwrap_or(Value::Null);
    Ok(Message { id, method, params })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_and_broken_messages_are_refused_with_their_code() {
        let code = |b: &[u8]| parse_message(b).err().map(|(c, _, _)| c);
        assert_eq!(code(b"{"), Some(ErrorCode::PARSE_ERROR));
        assert_eq!(
            code(b"[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\"}]"),
            Some(ErrorCode::INVALID_REQUEST)
        );
        assert_eq!(
            code(b"{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"x\"}"),
            Some(ErrorCode::INVALID_REQUEST)
        );
        assert_eq!(
            code(b"{\"jsonrpc\":\"2.0\",\"id\":[1],\"method\":\"x\"}"),
            Some(ErrorCode::INVALID_REQUEST)
        );
        assert_eq!(
            code(b"{\"jsonrpc\":\"2.0\",\"id\":1}"),
            Some(ErrorCode::INVALID_REQUEST)
        );
        assert!(parse_message(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}").is_ok());
        assert!(
            parse_message(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}")
                .is_ok()
        );
    }
}
