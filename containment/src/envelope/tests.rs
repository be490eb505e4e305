use super::*;

const EXAMPLE: &str = include_str!("../../../config/examples/aws/envelope.yaml");

#[test]
fn example_envelope_loads_with_tail_separated() {
    let e = Envelope::from_yaml(EXAMPLE).expect("example is valid");
    let split = e.identity();
    assert!(!split.permitted.is_empty());
    assert!(
        split
            .tail
            .iter()
            .all(|t| !t.is_confident(&e.spec.confidence)),
        "tail entries must be below the threshold"
    );
    assert!(!split.tail.is_empty(), "the example shows a tail entry");
}

#[test]
fn permissions_of_every_cloud_are_accepted_and_prose_is_not() {
    for action in [
        "s3:PutObject",
        "iam:*",
        "k8s:get",
        "storage.objects.get",
        "resourcemanager.projects.setIamPolicy",
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read",
        "Microsoft.Authorization/*/read",
    ] {
        assert!(IdentityUse::check_action(action).is_ok(), "{action}");
    }
    for action in [
        "",
        "PutObject",
        "s3 PutObject",
        "storage.objects",
        ":x",
        "Microsoft/x",
        "a b.c.d",
    ] {
        let reason = IdentityUse::check_action(action).expect_err(action);
        assert!(reason.contains("GCP storage.objects.get"), "{reason}");
    }
    let bad = EXAMPLE.replacen("action: s3:", "action: s3 ", 1);
    let err = Envelope::from_yaml(&bad).expect_err("prose is no permission");
    assert_eq!(err.field, "spec.identity.observed[0].action");
}

#[test]
fn a_custom_resource_as_kubectl_prints_it_loads_and_spec_typos_still_fail() {
    let printed = EXAMPLE.replacen(
        "metadata:\n",
        "metadata:\n  uid: 6f1c2a9e-0000-4000-8000-000000000001\n  resourceVersion: \"48213\"\n  generation: 3\n  creationTimestamp: \"2026-12-01T02:47:00Z\"\n  labels: {app: payment-agent}\n  managedFields: [{manager: kubectl, operation: Apply}]\n",
        1,
    );
    assert_ne!(printed, EXAMPLE, "the example has a metadata block");
    let cr = Envelope::from_yaml(&printed).expect("kubectl's output loads");
    assert_eq!(cr, Envelope::from_yaml(EXAMPLE).expect("example"));
    let typo = printed.replacen("  status: converged", "  status: converged\n  stauts: x", 1);
    let err = Envelope::from_yaml(&typo).expect_err("a spec typo");
    assert!(err.to_string().contains("stauts"), "{err}");
}

/// The example with one entry in each dimension it leaves out.
fn every_dimension() -> String {
    format!(
        "{EXAMPLE}{}",
        r#"  context:
    observed:
      - index: kb-payments
        source: confluence/payments
        closure: literal
        count: 40
        sessions: 9
      - index: kb-public
        closure: literal
        count: 12
        sessions: 4
  delegation:
    observed:
      - to: refund-agent
        mechanism: a2a
        closure: literal
        count: 30
        sessions: 8
  network:
    observed:
      - destination: api.stripe.com
        port: 443
        closure: literal
        count: 700
        sessions: 90
  process:
    observed:
      - exec: /usr/bin/python3
        closure: literal
        count: 90
        sessions: 30
      - path: /etc/ssl/certs/*
        syscall: openat
        closure: structural
        count: 80
        sessions: 30
"#
    )
}

/// Replaces the one occurrence of `from` in `text`.
fn edit(text: &str, from: &str, to: &str) -> String {
    assert_eq!(text.matches(from).count(), 1, "{from:?} occurs once");
    text.replacen(from, to, 1)
}

#[test]
fn every_dimension_parses_to_its_values_and_round_trips() {
    let e = Envelope::from_yaml(&every_dimension()).expect("valid");
    let spec = &e.spec;
    let context: Vec<&ContextUse> = spec.context.observed.iter().map(|o| &o.value).collect();
    assert_eq!(
        context,
        [
            &ContextUse {
                index: "kb-payments".into(),
                source: Some("confluence/payments".into()),
            },
            &ContextUse {
                index: "kb-public".into(),
                source: None,
            },
        ]
    );
    assert_eq!(
        spec.delegation.observed[0].value,
        DelegationEdge {
            to: "refund-agent".into(),
            mechanism: Some("a2a".into()),
        }
    );
    assert_eq!(
        spec.network.observed[0].value,
        NetworkDestination {
            destination: "api.stripe.com".into(),
            port: Some(443),
        }
    );
    let process: Vec<&ProcessUse> = spec.process.observed.iter().map(|o| &o.value).collect();
    assert_eq!(
        process,
        [
            &ProcessUse {
                exec: Some("/usr/bin/python3".into()),
                path: None,
                syscall: None,
            },
            &ProcessUse {
                exec: None,
                path: Some("/etc/ssl/certs/*".into()),
                syscall: Some("openat".into()),
            },
        ]
    );
    let last = &spec.process.observed[1];
    assert_eq!(
        (last.closure, last.count, last.sessions),
        (Closure::Structural, 80, 30)
    );
    let yaml = serde_yaml::to_string(&e).expect("serialises");
    assert_eq!(Envelope::from_yaml(&yaml).expect("reloads"), e);
    let json = serde_json::to_vec(&e).expect("serialises");
    assert_eq!(InputError::from_json::<Envelope>(&json).expect("json"), e);
}

/// Edits [`every_dimension`] and asserts the loader refuses it, naming `field` (the entry and
/// the unknown key) and saying which fields that place takes.
fn refused(from: &str, to: &str, field: &str, expected: &str) {
    let err = Envelope::from_yaml(&edit(&every_dimension(), from, to)).expect_err(to);
    assert_eq!(err.field, field, "{to:?}: {err}");
    assert!(err.reason.contains(expected), "{to:?}: {err}");
}

/// `sorce:` for `source:` used to vanish and leave a whole-index entry.
#[test]
fn a_misspelt_context_source_is_refused_not_widened_to_the_index() {
    refused(
        "        source: confluence/payments\n",
        "        sorce: confluence/payments\n",
        "spec.context.observed[0].sorce",
        "unknown field `sorce`, expected one of `index`, `source`, `closure`, `count`, `sessions`",
    );
}

/// A missing key of an entry is named itself, and serde_yaml's copy of the path is not
/// repeated in the reason.
#[test]
fn a_missing_entry_key_is_named() {
    let text = edit(
        &every_dimension(),
        "        mechanism: a2a\n        closure: literal\n        count: 30\n",
        "        mechanism: a2a\n        closure: literal\n",
    );
    let err = Envelope::from_yaml(&text).expect_err("count is required");
    assert_eq!(err.field, "spec.delegation.observed[0].count", "{err}");
    assert!(err.reason.starts_with("missing field `count`"), "{err}");
}

/// `exe:` for `exec:` used to vanish and leave an empty process entry.
#[test]
fn a_misspelt_process_exec_is_refused_not_emptied() {
    refused(
        "      - exec: /usr/bin/python3\n",
        "      - exe: /usr/bin/python3\n",
        "spec.process.observed[0].exe",
        "unknown field `exe`, expected one of `exec`, `path`, `syscall`, `closure`, `count`, `sessions`",
    );
}

#[test]
fn a_spec_typo_is_refused_with_its_path() {
    refused(
        "  status: converged\n",
        "  status: converged\n  stauts: frozen\n",
        "spec.stauts",
        "unknown field `stauts`, expected one of `agent`, `version`, `status`,",
    );
}

#[test]
fn an_agent_typo_is_refused_with_its_path() {
    refused(
        "    serviceAccount: payment-agent\n",
        "    serviceAccount: payment-agent\n    serviceAcount: payment-agent\n",
        "spec.agent.serviceAcount",
        "unknown field `serviceAcount`, expected one of `cluster`, `namespace`, `workload`, `serviceAccount`",
    );
}

/// Every other place an envelope can hold a key: each dimension's entries, the blocks
/// around them, the confidence and the document itself.
#[test]
fn an_unknown_field_anywhere_else_is_refused_with_its_path() {
    refused(
        "        resource: arn:aws:s3:::invoices/*\n",
        "        resource: arn:aws:s3:::invoices/*\n        resouce: x\n",
        "spec.identity.observed[0].resouce",
        "unknown field `resouce`, expected one of `action`, `resource`, `closure`, `count`, `sessions`",
    );
    refused(
        "        tool: create_refund\n",
        "        tool: create_refund\n        tools: x\n",
        "spec.tools.observed[0].tools",
        "unknown field `tools`, expected one of `server`, `tool`, `closure`, `count`, `sessions`",
    );
    refused(
        "        mechanism: a2a\n",
        "        mechanisms: a2a\n",
        "spec.delegation.observed[0].mechanisms",
        "unknown field `mechanisms`, expected one of `to`, `mechanism`, `closure`, `count`, `sessions`",
    );
    refused(
        "        port: 443\n",
        "        ports: 443\n",
        "spec.network.observed[0].ports",
        "unknown field `ports`, expected one of `destination`, `port`, `closure`, `count`, `sessions`",
    );
    refused(
        "    minSessions: 3\n",
        "    minSessions: 3\n    minSession: 3\n",
        "spec.confidence.minSession",
        "unknown field `minSession`, expected `minCount` or `minSessions`",
    );
    refused(
        "  identity:\n",
        "  identity:\n    principal: x\n",
        "spec.identity.principal",
        "unknown field `principal`, expected `principals` or `observed`",
    );
    refused(
        "  network:\n    observed:\n",
        "  network:\n    observe: []\n    observed:\n",
        "spec.network.observe",
        "unknown field `observe`, expected `observed`",
    );
    refused(
        "kind: Envelope\n",
        "kind: Envelope\nkinds: x\n",
        "kinds",
        "unknown field `kinds`, expected one of `apiVersion`, `kind`, `metadata`, `spec`",
    );
}

/// Without `flatten` in the way, a bad value inside an entry is named down to its field.
#[test]
fn a_bad_value_inside_an_entry_names_its_field() {
    let doc = every_dimension();
    let err = Envelope::from_yaml(&edit(&doc, "port: 443", "port: https")).expect_err("port");
    assert_eq!(err.field, "spec.network.observed[0].port", "{err}");
    let err = Envelope::from_yaml(&edit(&doc, "        count: 40\n", "")).expect_err("count");
    let shown = err.to_string();
    assert!(shown.starts_with("spec.context.observed[0]"), "{shown}");
    assert!(shown.contains("missing field `count`"), "{shown}");
}

#[test]
fn wrong_status_names_the_field() {
    let bad = EXAMPLE.replace("status: converged", "status: sleeping");
    let err = Envelope::from_yaml(&bad).expect_err("invalid status");
    assert_eq!(err.field, "spec.status");
    assert!(err.reason.contains("sleeping"), "{err}");
}

#[test]
fn wrong_kind_is_refused() {
    let bad = EXAMPLE.replace("kind: Envelope", "kind: Runbook");
    let err = Envelope::from_yaml(&bad).expect_err("wrong kind");
    assert_eq!(err.field, "kind");
}

#[test]
fn directory_load_refuses_two_envelopes_for_one_agent() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("a.yaml"), EXAMPLE).expect("write");
    std::fs::write(dir.path().join("b.yaml"), EXAMPLE).expect("write");
    let err = EnvelopeStore::load_dir(dir.path()).expect_err("duplicate");
    assert!(matches!(err, EnvelopeLoadError::Duplicate { .. }), "{err}");
}

#[test]
fn directory_load_names_the_file_of_a_bad_envelope() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("bad.yaml"), "kind: Envelope\n").expect("write");
    let err = EnvelopeStore::load_dir(dir.path()).expect_err("bad");
    assert!(err.to_string().contains("bad.yaml"), "{err}");
}
