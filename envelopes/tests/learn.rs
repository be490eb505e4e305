//! `learn` on OTLP/JSON built here span by span, the way an instrumented agent exports them.

use std::path::{Path, PathBuf};

use firebreak_containment::agent::AgentRef;
use firebreak_containment::envelope::{Closure, ConfidenceThreshold, Envelope, EnvelopeStatus};
use firebreak_containment::matching;
use firebreak_envelopes::learn::{learn, learn_texts, LearnError, LearnOptions};
use firebreak_envelopes::otlp::OtlpError;
use serde_json::{json, Value};

/// One span: (trace, span, parent, kind, attributes).
struct S {
    trace: u32,
    span: u32,
    parent: Option<u32>,
    kind: u8,
    start: u64,
    attrs: Vec<(&'static str, Value)>,
}

fn s(trace: u32, span: u32, parent: Option<u32>, attrs: Vec<(&'static str, Value)>) -> S {
    S {
        trace,
        span,
        parent,
        kind: 1,
        start: u64::from(trace) * 1_000,
        attrs,
    }
}

fn attr(key: &str, value: &Value) -> Value {
    let v = match value {
        Value::String(s) => json!({"stringValue": s}),
        Value::Array(items) => {
            json!({"arrayValue": {"values": items.iter().map(|i| json!({"stringValue": i})).collect::<Vec<_>>()}})
        }
        other => panic!("unsupported test attribute {other}"),
    };
    json!({"key": key, "value": v})
}

fn resource(deployment: &str) -> Vec<(&'static str, Value)> {
    vec![
        ("k8s.cluster.name", json!("prod-eks")),
        ("k8s.namespace.name", json!("payments")),
        ("k8s.deployment.name", json!(deployment)),
        ("k8s.serviceaccount.name", json!(deployment)),
        ("service.name", json!(deployment)),
    ]
}

fn export(resource_attrs: &[(&'static str, Value)], spans: &[S]) -> Value {
    let spans: Vec<Value> = spans
        .iter()
        .map(|s| {
            json!({
                "traceId": format!("{:032x}", s.trace + 1),
                "spanId": format!("{:016x}", s.span + 1),
                "parentSpanId": s.parent.map(|p| format!("{:016x}", p + 1)).unwrap_or_default(),
                "name": "span",
                "kind": s.kind,
                "startTimeUnixNano": s.start.to_string(),
                "attributes": s.attrs.iter().map(|(k, v)| attr(k, v)).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({"resourceSpans": [{
        "resource": {"attributes": resource_attrs.iter().map(|(k, v)| attr(k, v)).collect::<Vec<_>>()},
        "scopeSpans": [{"scope": {"name": "test"}, "spans": spans}],
    }]})
}

fn tool_call(trace: u32, span: u32, server: &str, tool: &str) -> S {
    s(
        trace,
        span,
        Some(0),
        vec![
            ("gen_ai.operation.name", json!("execute_tool")),
            ("gen_ai.tool.name", json!(tool)),
            ("mcp.server.name", json!(server)),
        ],
    )
}

fn root(trace: u32, conversation: &str) -> S {
    s(
        trace,
        0,
        None,
        vec![
            ("gen_ai.operation.name", json!("invoke_agent")),
            ("gen_ai.agent.name", json!("payments")),
            ("gen_ai.conversation.id", json!(conversation)),
        ],
    )
}

fn run(
    docs: &[Value],
    options: &LearnOptions,
) -> Result<firebreak_envelopes::learn::Learned, LearnError> {
    let texts: Vec<String> = docs.iter().map(Value::to_string).collect();
    let sources: Vec<(&Path, &str)> = texts
        .iter()
        .map(|t| (Path::new("spans.json"), t.as_str()))
        .collect();
    learn_texts(&sources, options)
}

/// Six conversations of payment-agent: `create_refund` in all, `get_invoice_<id>` in four, a
/// retrieval of `tickets/<n>` in every one, `delete_ledger` once, and a delegation to
/// refund-checker over A2A (a CLIENT span) in three.
fn six_sessions() -> Value {
    let mut spans = Vec::new();
    for t in 0..6u32 {
        spans.push(root(t, &format!("conv-{t}")));
        spans.push(tool_call(t, 1, "payments-mcp", "create_refund"));
        if t < 4 {
            spans.push(tool_call(
                t,
                2,
                "payments-mcp",
                &format!("get_invoice_{}", 100 + t),
            ));
        }
        spans.push(s(
            t,
            3,
            Some(0),
            vec![
                ("gen_ai.operation.name", json!("retrieval")),
                ("gen_ai.data_source.id", json!("support-kb")),
                (
                    "firebreak.context.sources",
                    json!([format!("tickets/{}", 4000 + t)]),
                ),
            ],
        ));
        if t < 3 {
            let mut edge = s(
                t,
                4,
                Some(0),
                vec![
                    ("gen_ai.operation.name", json!("invoke_agent")),
                    ("gen_ai.agent.name", json!("refund-checker")),
                ],
            );
            edge.kind = 3;
            spans.push(edge);
        }
    }
    spans.push(tool_call(0, 5, "payments-mcp", "delete_ledger"));
    export(&resource("payment-agent"), &spans)
}

#[test]
fn learned_envelope_round_trips_through_the_daemon_loader() {
    let learned = run(&[six_sessions()], &LearnOptions::default()).expect("learns");
    assert_eq!(learned.envelopes.len(), 1);
    let envelope = &learned.envelopes[0];
    let yaml = serde_yaml::to_string(envelope).expect("serialises");
    let loaded = Envelope::from_yaml(&yaml).expect("the daemon loads what learn writes");
    assert_eq!(&loaded, envelope);
    assert_eq!(loaded.spec.agent.workload, "Deployment/payment-agent");
    assert_eq!(loaded.metadata.namespace.as_deref(), Some("payments"));
}

#[test]
fn entries_below_the_threshold_are_kept_as_tail_and_reported() {
    let learned = run(&[six_sessions()], &LearnOptions::default()).expect("learns");
    let envelope = &learned.envelopes[0];
    let tools = envelope.tools();
    let permitted: Vec<&str> = tools
        .permitted
        .iter()
        .map(|o| o.value.tool.as_str())
        .collect();
    let tail: Vec<&str> = tools.tail.iter().map(|o| o.value.tool.as_str()).collect();
    assert_eq!(permitted, vec!["create_refund"], "6 calls in 6 sessions");
    // get_invoice_* is 4 calls (< 5); delete_ledger once.
    assert_eq!(tail, vec!["delete_ledger", "get_invoice_*"]);
    let delegation = &envelope.spec.delegation.observed;
    assert_eq!(delegation.len(), 1);
    assert!(
        !delegation[0].is_confident(&envelope.spec.confidence),
        "3 delegations < 5"
    );
    let report = &learned.report.agents[0];
    let listed: Vec<&str> = report.tail.iter().map(|t| t.entry.as_str()).collect();
    assert_eq!(
        listed,
        vec![
            "tool delete_ledger on payments-mcp",
            "tool get_invoice_* on payments-mcp",
            "delegation to refund-checker (remote)"
        ]
    );
    assert_eq!(
        report.permitted, 2,
        "create_refund and the tickets/* source"
    );

    // A lower threshold from the CLI permits them.
    let options = LearnOptions {
        confidence: ConfidenceThreshold {
            min_count: 3,
            min_sessions: 3,
        },
        ..LearnOptions::default()
    };
    let learned = run(&[six_sessions()], &options).expect("learns");
    let envelope = &learned.envelopes[0];
    assert_eq!(envelope.spec.confidence.min_count, 3);
    assert_eq!(envelope.tools().permitted.len(), 2);
    assert_eq!(learned.report.agents[0].tail.len(), 1, "only delete_ledger");
}

#[test]
fn trailing_ids_generalise_to_a_structural_pattern() {
    let learned = run(&[six_sessions()], &LearnOptions::default()).expect("learns");
    let envelope = &learned.envelopes[0];
    let context = &envelope.spec.context.observed;
    assert_eq!(context.len(), 1, "{context:?}");
    let c = &context[0];
    assert_eq!(c.value.index, "support-kb");
    assert_eq!(c.value.source.as_deref(), Some("tickets/*"));
    assert_eq!(c.closure, Closure::Structural);
    assert_eq!((c.count, c.sessions), (6, 6));
    // The pattern admits a ticket never seen, and nothing outside the family.
    assert!(matching::context(c, "support-kb", Some("tickets/9999")));
    assert!(!matching::context(c, "support-kb", Some("wiki/1")));
    let invoice = envelope
        .spec
        .tools
        .observed
        .iter()
        .find(|o| o.value.tool == "get_invoice_*")
        .expect("generalised");
    assert_eq!(
        (invoice.closure, invoice.count, invoice.sessions),
        (Closure::Structural, 4, 4)
    );
    let refund = envelope
        .spec
        .tools
        .observed
        .iter()
        .find(|o| o.value.tool == "create_refund")
        .expect("literal");
    assert_eq!(refund.closure, Closure::Literal);
}

#[test]
fn sessions_come_from_mcp_session_then_conversation_then_trace() {
    // Trace 0 and 1 share an MCP session (set on the tool spans themselves); trace 2 and 3 share
    // a conversation set on their root only; trace 4 has neither.
    let mut spans = vec![];
    for t in 0..5u32 {
        let conversation = if t == 2 || t == 3 { "conv-a" } else { "" };
        let mut r = root(t, conversation);
        if conversation.is_empty() {
            r.attrs.retain(|(k, _)| *k != "gen_ai.conversation.id");
        }
        spans.push(r);
        let mut call = tool_call(t, 1, "kb-mcp", "search");
        if t < 2 {
            call.attrs.push(("mcp.session.id", json!("mcp-1")));
        }
        spans.push(call);
    }
    let learned = run(
        &[export(&resource("payment-agent"), &spans)],
        &LearnOptions::default(),
    )
    .expect("learns");
    let search = &learned.envelopes[0].spec.tools.observed[0];
    assert_eq!(search.count, 5);
    assert_eq!(search.sessions, 3, "mcp-1, conv-a, trace 4");
    // Roots of traces 0 and 1 have no MCP session: their sessions are their traces.
    assert_eq!(
        learned.report.agents[0].sessions, 5,
        "mcp-1, conv-a, trace 0, 1, 4"
    );
}

#[test]
fn delegation_follows_parent_spans_across_resources() {
    // The orchestrator (one Deployment) runs `planner` in-process, which calls the remote
    // `researcher` (another Deployment); the researcher's own spans continue the same trace.
    let mut orchestrator = vec![];
    let mut researcher = vec![];
    for t in 0..5u32 {
        orchestrator.push(s(
            t,
            0,
            None,
            vec![
                ("gen_ai.operation.name", json!("invoke_agent")),
                ("gen_ai.agent.name", json!("orchestrator")),
                ("gen_ai.conversation.id", json!(format!("c{t}"))),
            ],
        ));
        orchestrator.push(s(
            t,
            1,
            Some(0),
            vec![
                ("gen_ai.operation.name", json!("invoke_agent")),
                ("gen_ai.agent.name", json!("planner")),
            ],
        ));
        let mut call = s(
            t,
            2,
            Some(1),
            vec![
                ("gen_ai.operation.name", json!("invoke_agent")),
                ("gen_ai.agent.id", json!("researcher")),
            ],
        );
        call.kind = 3;
        orchestrator.push(call);
        // The callee: SERVER entry span, then its own agent span and a tool call.
        let mut entry = s(
            t,
            3,
            Some(2),
            vec![
                ("gen_ai.operation.name", json!("invoke_agent")),
                ("gen_ai.agent.name", json!("researcher")),
            ],
        );
        entry.kind = 2;
        researcher.push(entry);
        researcher.push(s(
            t,
            4,
            Some(3),
            vec![
                ("gen_ai.operation.name", json!("invoke_agent")),
                ("gen_ai.agent.name", json!("researcher")),
            ],
        ));
        researcher.push(tool_call(t, 5, "web-mcp", "fetch"));
        researcher.last_mut().expect("pushed").parent = Some(4);
    }
    let learned = run(
        &[
            export(&resource("orchestrator"), &orchestrator),
            export(&resource("researcher"), &researcher),
        ],
        &LearnOptions::default(),
    )
    .expect("learns");
    assert_eq!(learned.envelopes.len(), 2, "one envelope per agent found");
    let by_name = |name: &str| {
        learned
            .envelopes
            .iter()
            .find(|e| e.metadata.name == name)
            .expect("envelope")
    };
    let edges: Vec<(String, Option<String>, u64)> = by_name("orchestrator")
        .spec
        .delegation
        .observed
        .iter()
        .map(|o| (o.value.to.clone(), o.value.mechanism.clone(), o.count))
        .collect();
    assert_eq!(
        edges,
        vec![
            ("planner".to_string(), Some("in-process".to_string()), 5),
            ("researcher".to_string(), Some("remote".to_string()), 5),
        ]
    );
    let researcher = by_name("researcher");
    assert!(
        researcher.spec.delegation.observed.is_empty(),
        "the callee delegated nothing"
    );
    assert_eq!(researcher.spec.tools.observed[0].value.tool, "fetch");
    // The researcher's sessions come from the orchestrator's conversation (its ancestor).
    assert_eq!(researcher.spec.tools.observed[0].sessions, 5);
}

#[test]
fn status_converges_only_without_new_behaviour_in_the_last_sessions() {
    let learned = run(&[six_sessions()], &LearnOptions::default()).expect("learns");
    let report = &learned.report.agents[0];
    assert_eq!(
        report.status,
        EnvelopeStatus::Converged,
        "{}",
        report.reason
    );
    assert_eq!(learned.envelopes[0].spec.status, EnvelopeStatus::Converged);

    // A new tool in the last session keeps it learning.
    let mut doc = six_sessions();
    let late = export(
        &resource("payment-agent"),
        &[tool_call(5, 9, "payments-mcp", "wire_transfer")],
    );
    doc["resourceSpans"].as_array_mut().expect("array").extend(
        late["resourceSpans"]
            .as_array()
            .expect("array")
            .iter()
            .cloned(),
    );
    let learned = run(&[doc], &LearnOptions::default()).expect("learns");
    let report = &learned.report.agents[0];
    assert_eq!(report.status, EnvelopeStatus::Learning);
    assert!(
        report
            .reason
            .contains("new tools behaviour in session 6 of 6"),
        "{}",
        report.reason
    );

    // Too few sessions to say.
    let options = LearnOptions {
        stable_sessions: Some(6),
        ..LearnOptions::default()
    };
    let learned = run(&[six_sessions()], &options).expect("learns");
    assert_eq!(learned.report.agents[0].status, EnvelopeStatus::Learning);
}

#[test]
fn server_spans_and_in_process_tools_are_not_counted_and_the_report_says_why() {
    let mut server_side = tool_call(0, 1, "payments-mcp", "create_refund");
    server_side.kind = 2;
    let mut local = tool_call(0, 2, "", "format_date");
    local.attrs.retain(|(k, _)| *k != "mcp.server.name");
    let doc = export(
        &resource("payment-agent"),
        &[root(0, "c"), server_side, local],
    );
    let learned = run(&[doc], &LearnOptions::default()).expect("learns");
    assert!(learned.envelopes[0].spec.tools.observed.is_empty());
    let skipped = &learned.report.skipped;
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert!(
        skipped[0].reason.contains("in-process tool"),
        "{}",
        skipped[0].reason
    );
    assert_eq!(
        skipped[0].first,
        "spans.json: resourceSpans[0].scopeSpans[0].spans[2]"
    );
}

#[test]
fn the_same_export_read_twice_counts_once() {
    let doc = six_sessions();
    let once = run(std::slice::from_ref(&doc), &LearnOptions::default()).expect("learns");
    let twice = run(&[doc.clone(), doc], &LearnOptions::default()).expect("learns");
    assert_eq!(once.envelopes, twice.envelopes);
    assert!(twice
        .report
        .skipped
        .iter()
        .any(|s| s.reason.starts_with("duplicate span")));
}

#[test]
fn spans_without_an_agent_need_the_cli_to_name_one() {
    let anonymous = export(
        &[("service.name", json!("agent"))],
        &[root(0, "c"), tool_call(0, 1, "m", "t")],
    );
    let err =
        run(std::slice::from_ref(&anonymous), &LearnOptions::default()).expect_err("no agent");
    assert!(matches!(err, LearnError::NoAgent(_)), "{err}");
    assert!(err.to_string().contains("k8s.cluster.name"), "{err}");

    let agent = AgentRef {
        cluster: "dev".into(),
        namespace: "ai".into(),
        workload: "Deployment/helper".into(),
        service_account: "helper".into(),
    };
    let options = LearnOptions {
        agent: Some(agent.clone()),
        ..LearnOptions::default()
    };
    let learned = run(&[anonymous], &options).expect("learns for the given agent");
    assert_eq!(learned.envelopes[0].spec.agent, agent);

    // A missing cluster or ServiceAccount alone can come from the CLI.
    let partial = export(
        &[
            ("k8s.namespace.name", json!("ai")),
            ("k8s.statefulset.name", json!("helper")),
        ],
        &[root(0, "c"), tool_call(0, 1, "m", "t")],
    );
    let options = LearnOptions {
        cluster: Some("dev".into()),
        service_account: Some("helper".into()),
        ..LearnOptions::default()
    };
    let learned = run(&[partial], &options).expect("learns");
    assert_eq!(
        learned.envelopes[0].spec.agent.workload,
        "StatefulSet/helper"
    );
}

#[test]
fn malformed_files_name_the_file_and_the_json_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good.json");
    let bad = dir.path().join("bad.json");
    std::fs::write(&good, six_sessions().to_string()).expect("write");
    let mut doc = six_sessions();
    doc["resourceSpans"][0]["scopeSpans"][0]["spans"][3]["attributes"][1]["value"] =
        json!({"stringValue": 7});
    std::fs::write(&bad, doc.to_string()).expect("write");
    let files: Vec<PathBuf> = vec![good, bad.clone()];
    let err = learn(&files, &LearnOptions::default()).expect_err("bad attribute");
    match &err {
        LearnError::Otlp(OtlpError::Field { file, field, .. }) => {
            assert_eq!(file, &bad);
            assert_eq!(
                field,
                "resourceSpans[0].scopeSpans[0].spans[3].attributes[1].value.stringValue"
            );
        }
        other => panic!("expected a field error, got {other}"),
    }
    assert!(err.to_string().contains("bad.json"), "{err}");
    let missing =
        learn(&[dir.path().join("nope.json")], &LearnOptions::default()).expect_err("missing");
    assert!(missing.to_string().contains("nope.json"), "{missing}");
    let zero = LearnOptions {
        confidence: ConfidenceThreshold {
            min_count: 0,
            min_sessions: 1,
        },
        ..LearnOptions::default()
    };
    assert!(matches!(
        learn(&files, &zero),
        Err(LearnError::Threshold("minCount"))
    ));
}
