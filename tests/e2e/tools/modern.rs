//! Agents on MCP 2026-07-28 through the gateway in front of server-everything, which speaks
//! only 2025-11-25, over HTTP and over stdio: the gateway translates (`legacy.rs`).

use super::*;

/// The two ways to reach a 2025-11-25-only server, as `Rig::shared` names them.
const LEGACY_UPSTREAMS: [&str; 2] = ["everything", "everything-stdio"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_everything_http_2026_07_28_client_loses_one_tool_on_the_next_call() -> Result<()> {
    everything_loses_get_sum("everything", "2026-07-28").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_everything_stdio_2026_07_28_client_loses_one_tool_on_the_next_call() -> Result<()> {
    everything_loses_get_sum("everything-stdio", "2026-07-28").await
}

/// One POST as agent A; the JSON-RPC answer whether it came as JSON or in an event stream.
async fn post(url: &str, headers: &[(&str, &str)], body: Value) -> Result<(StatusCode, Value)> {
    let mut request = reqwest::Client::new()
        .post(url)
        .bearer_auth(A_TOKEN)
        .header("accept", "application/json, text/event-stream")
        .json(&body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await?;
    let status = StatusCode::from_u16(response.status().as_u16())?;
    let text = response.text().await?;
    let answer = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .chain(std::iter::once(text.as_str()))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .find(|m| m.get("id").is_some())
        .with_context(|| format!("no JSON-RPC answer in {text:?}"))?;
    Ok((status, answer))
}

/// A raw 2026-07-28 request (headers and `_meta` as the official client sends them).
async fn modern(url: &str, version: &str, method: &str, params: Value) -> Result<Value> {
    let mut params = params;
    params["_meta"] = json!({"io.modelcontextprotocol/protocolVersion": version,
                             "io.modelcontextprotocol/clientCapabilities": {}});
    let body = json!({"jsonrpc": "2.0", "id": 9, "method": method, "params": params});
    let headers = [("mcp-protocol-version", version), ("mcp-method", method)];
    Ok(post(url, &headers, body).await?.1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discover_is_answered_for_a_2025_11_25_upstream_and_auto_clients_use_it() -> Result<()> {
    let rig = Rig::shared(json!({})).await?;
    for server in LEGACY_UPSTREAMS {
        let url = rig.url(server);
        let answer = modern(&url, "2026-07-28", "server/discover", json!({})).await?;
        let result = &answer["result"];
        assert_eq!(answer["id"], 9, "{server}: {answer}");
        assert_eq!(result["resultType"], "complete", "{server}: {answer}");
        assert_eq!(result["ttlMs"], 0, "{server}: {answer}");
        assert_eq!(result["cacheScope"], "private", "{server}: {answer}");
        assert!(
            result["supportedVersions"]
                .as_array()
                .is_some_and(|v| v.contains(&json!("2026-07-28"))),
            "{server}: {answer}"
        );
        assert_eq!(result["capabilities"]["tools"]["listChanged"], true);
        assert!(
            result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"].is_string(),
            "{server}: {answer}"
        );

        // The official client validates it and settles on 2026-07-28 through the gateway.
        let mut auto = Agent::start(&url, A_TOKEN, "auto").await?;
        assert_eq!(auto.version().await?, "2026-07-28", "{server}");
        let echoed = auto.call("echo", json!({"message": "hi"})).await?;
        assert!(
            !echoed.is_error && echoed.text.contains("hi"),
            "{server}: {echoed:?}"
        );
        let mut legacy = Agent::start(&url, A_TOKEN, "legacy").await?;
        assert_eq!(legacy.version().await?, "2025-11-25", "{server}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_2026_07_28_answers_get_the_2026_07_28_fields() -> Result<()> {
    let rig = Rig::shared(json!({})).await?;
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}});
    for server in LEGACY_UPSTREAMS {
        let url = rig.url(server);
        let modern_list = modern(&url, "2026-07-28", "tools/list", json!({})).await?;
        assert_eq!(modern_list["result"]["ttlMs"], 0, "{server}: {modern_list}");
        assert_eq!(modern_list["result"]["cacheScope"], "private", "{server}");
        assert_eq!(modern_list["result"]["resultType"], "complete", "{server}");

        // A 2025-11-25 client: its own session, the upstream's answer unchanged.
        let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "legacy-test", "version": "1"}}});
        let response = reqwest::Client::new()
            .post(&url)
            .bearer_auth(A_TOKEN)
            .header("accept", "application/json, text/event-stream")
            .json(&init)
            .send()
            .await?;
        let session = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        response.bytes().await?;
        let mut headers = vec![("mcp-protocol-version", "2025-11-25")];
        if !session.is_empty() {
            headers.push(("mcp-session-id", session.as_str()));
        }
        let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        reqwest::Client::new()
            .post(&url)
            .bearer_auth(A_TOKEN)
            .header("mcp-protocol-version", "2025-11-25")
            .header("mcp-session-id", session.as_str())
            .json(&initialized)
            .send()
            .await?;
        let (_, legacy_list) = post(&url, &headers, list.clone()).await?;
        let result = legacy_list["result"]
            .as_object()
            .with_context(|| format!("{server}: {legacy_list}"))?;
        assert!(result.contains_key("tools"), "{server}: {legacy_list}");
        for field in ["resultType", "ttlMs", "cacheScope"] {
            assert!(
                !result.contains_key(field),
                "{server}: {field} for 2025-11-25"
            );
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_cannot_be_translated_is_refused_naming_the_upstream() -> Result<()> {
    let rig = Rig::shared(json!({})).await?;
    for server in LEGACY_UPSTREAMS {
        let url = rig.url(server);
        // Gone in 2026-07-28 (log levels go in `_meta`): nothing to translate it to.
        let answer = modern(
            &url,
            "2026-07-28",
            "logging/setLevel",
            json!({"level": "info"}),
        )
        .await?;
        assert_eq!(answer["error"]["code"], -32601, "{server}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(server) && message.contains("2025-11-25"),
            "{message}"
        );
        assert!(message.contains("mode=\"legacy\""), "{message}");
        // A version the gateway cannot translate to.
        let answer = modern(&url, "2027-01-01", "tools/list", json!({})).await?;
        assert_eq!(answer["error"]["code"], -32022, "{server}: {answer}");
        assert_eq!(
            answer["error"]["data"]["supported"],
            json!(["2025-11-25", "2026-07-28"])
        );
    }
    Ok(())
}

/// A 2026-07-28 listen stream through a 2025-11-25 upstream: the gateway's own.
async fn listen_case(server: &str) -> Result<()> {
    let rig = Rig::shared(json!({})).await?;
    let mut a = Agent::start(&rig.url(server), A_TOKEN, "2026-07-28").await?;
    let mut b = Agent::start(&rig.url(server), B_TOKEN, "2026-07-28").await?;
    a.listen().await?;
    b.listen().await?;
    let submitted = rig
        .engine
        .submit(
            alert(
                &format!("atk-listen-{server}"),
                "payment-agent",
                server,
                "get-sum",
            )?,
            Request::Runbook,
        )
        .await?;
    assert_eq!(rig.settled(&submitted).await?, PlanStatus::Contained);
    let deadline = Instant::now() + Duration::from_secs(5);
    while a.events().await? == 0 {
        if Instant::now() > deadline {
            bail!("A's listen stream on {server} got no tools list_changed");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(b.events().await?, 0, "B was told its tools changed");
    assert!(!a.list().await?.iter().any(|t| t == "get-sum"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_through_a_2025_11_25_http_upstream_gets_list_changed() -> Result<()> {
    listen_case("everything").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_through_a_2025_11_25_stdio_upstream_gets_list_changed() -> Result<()> {
    listen_case("everything-stdio").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_reopens_its_session_when_the_upstream_lost_it() -> Result<()> {
    // Its own server-everything, stopped and started again on the same port.
    let server = Server::everything()?;
    let port = server.port;
    let rig = Rig::start(json!({"own": {"url": server.url}}), json!({})).await?;
    let mut a = Agent::start(&rig.url("own"), A_TOKEN, "2026-07-28").await?;
    assert!(a.list().await?.iter().any(|t| t == "echo"));
    assert!(!a.call("echo", json!({"message": "one"})).await?.is_error);
    drop(server);
    // The shell is gone, node may still hold the port for a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
        if Instant::now() > deadline {
            bail!("the stopped server-everything still listens on {port}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _again = Server::everything_on(port)?;
    let echoed = a.call("echo", json!({"message": "two"})).await?;
    assert!(
        !echoed.is_error && echoed.text.contains("two"),
        "{echoed:?}"
    );
    Ok(())
}
