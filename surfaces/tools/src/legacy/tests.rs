//! The translation's pure parts: versions, shapes, discover, steps and refusals.

use super::*;

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    pairs
        .iter()
        .map(|(k, v)| {
            (
                axum::http::HeaderName::from_static(k),
                HeaderValue::from_static(v),
            )
        })
        .collect()
}

#[test]
fn the_header_decides_and_meta_only_without_a_session() {
    let meta = json!({"_meta": {VERSION_META: "2026-07-28"}});
    let modern = headers(&[("mcp-protocol-version", "2026-07-28")]);
    assert_eq!(
        modern_version(&modern, &Value::Null).as_deref(),
        Some(MODERN)
    );
    let legacy = headers(&[("mcp-protocol-version", "2025-11-25")]);
    assert_eq!(modern_version(&legacy, &meta), None);
    assert_eq!(
        modern_version(&HeaderMap::new(), &meta).as_deref(),
        Some(MODERN)
    );
    let session = headers(&[("mcp-session-id", "s1")]);
    assert_eq!(modern_version(&session, &meta), None);
    assert_eq!(modern_version(&HeaderMap::new(), &json!({})), None);
}

#[test]
fn results_get_result_type_and_cacheable_ones_a_private_zero_ttl() {
    let mut list = json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": []}});
    modern_answer("tools/list", &mut list);
    assert_eq!(
        list["result"],
        json!({"tools": [], "resultType": "complete", "ttlMs": 0, "cacheScope": "private"})
    );
    let mut call = json!({"jsonrpc": "2.0", "id": 1, "result": {"content": []}});
    modern_answer("tools/call", &mut call);
    assert_eq!(
        call["result"],
        json!({"content": [], "resultType": "complete"})
    );
    for method in CACHEABLE {
        let mut answer = json!({"result": {}});
        modern_answer(method, &mut answer);
        assert_eq!(answer["result"]["ttlMs"], 0, "{method}");
    }
    let mut missing = json!({"id": 1, "error": {"code": -32002, "message": "no"}});
    modern_answer("resources/read", &mut missing);
    assert_eq!(missing["error"]["code"], -32602);
}

#[test]
fn discover_comes_from_the_initialize_result() -> Result<(), serde_json::Error> {
    let init = json!({"protocolVersion": "2025-11-25",
        "capabilities": {"tools": {}, "logging": {}, "resources": {"subscribe": true, "listChanged": true},
                         "prompts": {"listChanged": true}, "tasks": {"list": {}}},
        "serverInfo": {"name": "mcp-servers/everything", "version": "2.0.0"},
        "instructions": "be nice"});
    let value = serde_json::to_value(discover(&init)?)?;
    assert_eq!(value["resultType"], "complete");
    assert_eq!(value["ttlMs"], 0);
    assert_eq!(value["cacheScope"], "private");
    assert_eq!(
        value["supportedVersions"],
        json!(["2025-11-25", "2026-07-28"])
    );
    assert_eq!(value["instructions"], "be nice");
    assert_eq!(
        value["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "mcp-servers/everything"
    );
    assert_eq!(
        value["capabilities"],
        json!({"tools": {"listChanged": true}, "resources": {}, "prompts": {}})
    );
    assert!(discover(&json!({"capabilities": {}})).is_err());
    Ok(())
}

#[test]
fn steps_refuse_what_has_no_2026_form_and_name_the_upstream() {
    assert_eq!(step("u", MODERN, Some("tools/call"), true), Step::Forward);
    assert_eq!(
        step("u", MODERN, Some("server/discover"), true),
        Step::Discover
    );
    assert_eq!(
        step("u", MODERN, Some("subscriptions/listen"), true),
        Step::Listen
    );
    assert_eq!(
        step("u", MODERN, Some("notifications/cancelled"), false),
        Step::Accept
    );
    assert_eq!(step("u", MODERN, None, false), Step::Accept);
    let Step::Refuse(e) = step("everything", MODERN, Some("logging/setLevel"), true) else {
        panic!("logging/setLevel is not a 2026-07-28 request");
    };
    assert_eq!(e.code, ErrorCode::METHOD_NOT_FOUND);
    assert!(e.message.contains("everything") && e.message.contains("mode=\"legacy\""));
    let Step::Refuse(e) = step("u", "2027-01-01", Some("tools/list"), true) else {
        panic!("an unknown later version is refused");
    };
    assert_eq!(e.code, ErrorCode::UNSUPPORTED_PROTOCOL_VERSION);
}

#[test]
fn params_lose_the_per_request_handshake_only() {
    let params = json!({"name": "echo", "_meta": {VERSION_META: MODERN,
        "io.modelcontextprotocol/clientCapabilities": {}, "progressToken": 7}});
    assert_eq!(
        legacy_params(params),
        json!({"name": "echo", "_meta": {"progressToken": 7}})
    );
    let params = json!({"_meta": {VERSION_META: MODERN}});
    assert_eq!(legacy_params(params), json!({}));
}

#[test]
fn upstream_messages_are_relayed_declined_or_dropped() {
    let agent = json!("agent-7");
    let answer = json!({"jsonrpc": "2.0", "id": 42, "result": {"tools": []}});
    let Relay::Send(sent) = relay("tools/list", &agent, answer) else {
        panic!("an answer is relayed");
    };
    assert_eq!(sent["id"], "agent-7");
    assert_eq!(sent["result"]["cacheScope"], "private");
    let sampling = json!({"jsonrpc": "2.0", "id": 3, "method": "sampling/createMessage"});
    assert_eq!(
        relay("tools/call", &agent, sampling),
        Relay::Decline(json!(3))
    );
    let progress = json!({"jsonrpc": "2.0", "method": "notifications/progress"});
    assert!(matches!(
        relay("tools/call", &agent, progress),
        Relay::Send(_)
    ));
    let log = json!({"jsonrpc": "2.0", "method": "notifications/message"});
    assert_eq!(relay("tools/call", &agent, log), Relay::Drop);
}

#[test]
fn the_probe_reads_modern_evidence_only() {
    let modern = json!({"result": {"supportedVersions": ["2026-07-28"]}});
    assert_eq!(era_of(&modern), Era::Modern);
    let legacy_only = json!({"result": {"supportedVersions": ["2025-11-25"]}});
    assert_eq!(era_of(&legacy_only), Era::Legacy);
    let uninitialized =
        json!({"error": {"code": -32000, "message": "Bad Request: Server not initialized"}});
    assert_eq!(era_of(&uninitialized), Era::Legacy);
    let other_modern = json!({"error": {"code": -32022, "data": {"supported": ["2027-01-01"]}}});
    assert_eq!(era_of(&other_modern), Era::Modern);
    assert_eq!(era_of(&Value::Null), Era::Legacy);
}

#[test]
fn listen_is_acknowledged_for_tool_changes_only() -> Result<(), String> {
    let params = json!({"notifications": {"toolsListChanged": true, "promptsListChanged": true}});
    let (ack, wants) = acknowledged(&json!(5), &params)?;
    let ack: Value = serde_json::from_str(&ack).map_err(|e| e.to_string())?;
    assert!(wants);
    assert_eq!(
        ack["params"]["notifications"],
        json!({"toolsListChanged": true})
    );
    assert_eq!(ack["params"]["_meta"][SUBSCRIPTION_META], 5);
    let (_, wants) = acknowledged(
        &json!(5),
        &json!({"notifications": {"resourcesListChanged": true}}),
    )?;
    assert!(!wants);
    assert!(acknowledged(&json!(5), &json!({})).is_err());
    Ok(())
}
