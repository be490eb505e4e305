//! The ladder's proposals for hand-made roles: blast radius, rejections, scoping.

use firebreak_containment::plane::{Observation, PlanInput, Proposal};
use firebreak_containment::{Alert, Envelope};
use serde_json::{json, Value};

use super::*;
use crate::policy::{
    deny_statement, CompiledPolicies, NamedPolicy, Permit, PolicyDocument, Request,
};
use crate::role::{Association, ObservedPolicy, RoleState};

const ENVELOPE: &str = include_str!("../../../../../config/examples/aws/envelope.yaml");
const TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Federated":"arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/X"},"Action":"sts:AssumeRoleWithWebIdentity"}]}"#;

fn policy(name: &str, json: &str) -> ObservedPolicy {
    let raw: Value = serde_json::from_str(json).expect("test policy is JSON");
    ObservedPolicy {
        id: format!("arn:aws:iam::123456789012:policy/{name}"),
        name: name.into(),
        document: PolicyDocument::from_json_value(&raw).expect("test policy parses"),
        raw,
    }
}

fn role(inline: Vec<ObservedPolicy>, managed: Vec<ObservedPolicy>) -> RoleState {
    RoleState {
        arn: "arn:aws:iam::123456789012:role/payment-agent".into(),
        name: "payment-agent".into(),
        inline,
        managed,
        trust: policy("trust", TRUST),
        pod_identity: None,
    }
}

fn plan(role: &RoleState, resource: &str) -> Vec<Proposal<AwsSpec>> {
    plan_in(ENVELOPE, role, resource)
}

fn plan_in(envelope: &str, role: &RoleState, resource: &str) -> Vec<Proposal<AwsSpec>> {
    let envelope = Envelope::from_yaml(envelope).expect("envelope");
    let alert = Alert::from_json(
        json!({
            "id": "a-1", "source": "t", "time": "2026-01-01T00:00:00Z",
            "agent": {"cluster": "prod-eks", "namespace": "payments",
                      "workload": "Deployment/payment-agent", "serviceAccount": "payment-agent"},
            "dimension": "identity",
            "parameter": {"action": "s3:PutObject", "resource": resource},
            "tier": "anomaly", "severity": "high"
        })
        .to_string()
        .as_bytes(),
    )
    .expect("alert");
    role.candidates(&PlanInput {
        incident: &"inc-1".into(),
        plan: &"inc-1-p1".into(),
        alert: &alert,
        envelope: &envelope,
    })
    .expect("candidates")
}

fn find<'c>(candidates: &'c [Proposal<AwsSpec>], kind: &KindSpec) -> &'c Proposal<AwsSpec> {
    candidates
        .iter()
        .find(|c| c.spec.kind() == kind)
        .expect("candidate present")
}

const S3_ALL: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#;

#[test]
fn the_inline_deny_is_rejected_with_numbers_when_the_quota_is_full() {
    let padding = "x".repeat(10_100);
    let big = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"{padding}","Effect":"Allow","Action":"sqs:ReceiveMessage","Resource":"*"}}]}}"#
    );
    let role = role(vec![policy("big", &big)], vec![policy("s3", S3_ALL)]);
    let deny = find(&plan(&role, "arn:aws:s3:::partner-payouts/*"), &INLINE_DENY).clone();
    let reason = deny.rejected.expect("over quota");
    assert!(
        reason.contains("10240") && reason.contains("quota"),
        "{reason}"
    );
}

#[test]
fn a_conditional_grant_is_undetermined_never_assumed() {
    let conditional = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"dynamodb:GetItem","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}}]}"#;
    let role = role(vec![policy("ddb", conditional)], vec![policy("s3", S3_ALL)]);
    let candidates = plan(&role, "arn:aws:s3:::partner-payouts/*");
    let trust = find(&candidates, &TRUST_DENY);
    assert!(
        !trust
            .blast_radius
            .items
            .iter()
            .any(|i| i.starts_with("dynamodb")),
        "a conditional grant is not counted as certainly broken: {:?}",
        trust.blast_radius
    );
    assert!(
        trust
            .blast_radius
            .undetermined
            .iter()
            .any(|u| u.starts_with("dynamodb:GetItem") && u.contains("aws:SourceIp")),
        "it is reported as undetermined, naming the condition: {:?}",
        trust.blast_radius
    );
    let deny = find(&candidates, &INLINE_DENY);
    assert_eq!(deny.blast_radius.broken, 0);
}

#[test]
fn detaching_one_of_two_granting_policies_does_not_block() {
    let payouts = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:PutObject","Resource":"arn:aws:s3:::partner-payouts/*"}]}"#;
    let role = role(
        vec![],
        vec![policy("s3", S3_ALL), policy("payouts", payouts)],
    );
    let candidates = plan(&role, "arn:aws:s3:::partner-payouts/*");
    let detaches: Vec<_> = candidates
        .iter()
        .filter(|c| c.spec.kind() == &DETACH_POLICY)
        .collect();
    assert_eq!(detaches.len(), 2, "both granting policies are considered");
    for d in detaches {
        assert!(!d.blocks, "{} alone leaves the breach allowed", d.target);
        assert!(
            d.rejected
                .as_deref()
                .is_some_and(|r| r.contains("stays allowed by")),
            "{:?}",
            d.rejected
        );
    }
}

#[test]
fn the_deny_counts_a_partial_overlap_with_an_in_envelope_pattern_as_broken() {
    let role = role(vec![], vec![policy("s3", S3_ALL)]);
    // Denying PutObject on every bucket cuts into the in-envelope payment-receipts writes.
    let deny = find(&plan(&role, "arn:aws:s3:::*"), &INLINE_DENY).clone();
    assert_eq!(deny.blast_radius.broken, 1, "{:?}", deny.blast_radius);
    assert!(deny.blast_radius.items[0].contains("payment-receipts"));
}

#[test]
fn statements_merge_by_sid() {
    let a = deny_statement("A", &["s3:GetObject".into()], &["*".into()]);
    let b = deny_statement("B", &["s3:PutObject".into()], &["*".into()]);
    let a2 = deny_statement("A", &["s3:DeleteObject".into()], &["*".into()]);
    let merged = merge_statements(&[a, b.clone()], std::slice::from_ref(&a2));
    assert_eq!(merged.statements, vec![b, a2]);
}

const POD_TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"pods.eks.amazonaws.com"},"Action":["sts:AssumeRole","sts:TagSession"]}]}"#;

fn association(namespace: &str, service_account: &str, tags_off: bool) -> Association {
    Association {
        id: format!("a-{service_account}"),
        namespace: namespace.into(),
        service_account: service_account.into(),
        role_arn: "arn:aws:iam::123456789012:role/payment-agent".into(),
        tags: Default::default(),
        target_role_arn: None,
        disable_session_tags: Some(tags_off),
    }
}

fn pod_role(agent: Vec<Association>) -> RoleState {
    let mut r = role(vec![], vec![policy("s3", S3_ALL)]);
    r.trust = policy("trust", POD_TRUST);
    r.pod_identity = Some(crate::role::PodIdentity {
        cluster: "prod-eks".into(),
        agent,
        sharing: vec![association("billing", "ledger", false)],
    });
    r
}

#[test]
fn without_session_tags_nothing_is_scoped_and_the_trust_deny_is_rejected() {
    let candidates = plan(
        &pod_role(vec![association("payments", "payment-agent", true)]),
        "arn:aws:s3:::partner-payouts/*",
    );
    let deny = find(&candidates, &INLINE_DENY);
    assert!(
        matches!(&deny.spec, AwsSpec::InlineDeny(s) if s.scope.is_none()),
        "{:?}",
        deny.spec
    );
    assert!(
        deny.blast_radius
            .items
            .iter()
            .any(|i| i.contains("billing/ledger")),
        "an unscoped deny also denies the ServiceAccount sharing the role: {:?}",
        deny.blast_radius
    );
    let trust = find(&candidates, &TRUST_DENY);
    assert!(
        trust
            .rejected
            .as_deref()
            .is_some_and(|r| r.contains("disables session tags")),
        "{:?}",
        trust.rejected
    );
}

#[test]
fn revocation_waits_for_the_link_to_be_cut() {
    let linked = plan(
        &pod_role(vec![association("payments", "payment-agent", false)]),
        "arn:aws:s3:::partner-payouts/*",
    );
    assert!(find(&linked, &REVOKE_SESSIONS).rejected.is_some());
    let cut = plan(&pod_role(vec![]), "arn:aws:s3:::partner-payouts/*");
    let revoke = find(&cut, &REVOKE_SESSIONS);
    assert_eq!(revoke.rejected, None);
    assert!(
        revoke
            .blast_radius
            .items
            .iter()
            .any(|i| i.contains("billing/ledger")),
        "unscoped, it revokes the other ServiceAccount's sessions too: {:?}",
        revoke.blast_radius
    );
}

#[test]
fn an_irsa_cut_does_not_count_while_pod_identity_still_links_the_agent() {
    let mut dual = pod_role(vec![association("payments", "payment-agent", false)]);
    let provider = "arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/X";
    let irsa_deny = json!({
        "Sid": sid("FirebreakTrustDeny", &["system:serviceaccount:payments:payment-agent"]),
        "Effect": "Deny", "Principal": {"Federated": provider},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {"oidc.eks.us-east-1.amazonaws.com/id/X:sub":
            "system:serviceaccount:payments:payment-agent"}}
    });
    let trust = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Federated": provider}, "Action": "sts:AssumeRoleWithWebIdentity"},
        {"Effect": "Allow", "Principal": {"Service": POD_IDENTITY_SERVICE}, "Action": ["sts:AssumeRole", "sts:TagSession"]},
        irsa_deny
    ]});
    dual.trust = policy("trust", &trust.to_string());
    let linked = plan(&dual, "arn:aws:s3:::partner-payouts/*");
    assert!(find(&linked, &REVOKE_SESSIONS).rejected.is_some());

    dual.pod_identity = pod_role(vec![]).pod_identity;
    let cut = plan(&dual, "arn:aws:s3:::partner-payouts/*");
    assert_eq!(find(&cut, &REVOKE_SESSIONS).rejected, None);
}

const IAM_ALL: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iam:*","Resource":"*"}]}"#;

/// The inline deny's statements, parsed, and the protection statement's actions.
fn deny_statements(deny: &Proposal<AwsSpec>) -> (Vec<Statement>, Vec<String>) {
    let AwsSpec::InlineDeny(spec) = &deny.spec else {
        panic!("not an inline deny: {:?}", deny.spec);
    };
    let statements: Vec<Statement> = spec
        .statements
        .iter()
        .map(|s| parse_statement(s).expect("statement parses"))
        .collect();
    let protect = statements
        .iter()
        .find(|s| s.sid.as_deref() == Some(inline_deny::PROTECT_SID))
        .map(|s| s.action.values().to_vec())
        .unwrap_or_default();
    (statements, protect)
}

fn note<'p>(deny: &'p Proposal<AwsSpec>, needle: &str) -> Option<&'p String> {
    deny.notes.iter().find(|n| n.contains(needle))
}

#[test]
fn an_iam_star_role_gets_its_escape_actions_denied_with_its_self_undo_writes() {
    let role = role(vec![policy("admin", IAM_ALL)], vec![policy("s3", S3_ALL)]);
    let deny = find(&plan(&role, "arn:aws:s3:::partner-payouts/*"), &INLINE_DENY).clone();
    let (statements, protect) = deny_statements(&deny);
    assert_eq!(
        statements.len(),
        2,
        "the breach and one protection statement"
    );
    let iam_escapes = ESCAPE_ACTIONS.iter().filter(|a| a.starts_with("iam:"));
    for action in SELF_UNDO_ACTIONS.iter().chain(iam_escapes) {
        assert!(protect.iter().any(|a| a == action), "{action}: {protect:?}");
    }
    assert!(
        protect.iter().any(|a| a == "sts:AssumeRole"),
        "a role that may write trust policies may have named itself in one: {protect:?}"
    );
    assert!(
        !protect.iter().any(|a| a == "sts:AssumeRoot"),
        "no policy grants it and no trust policy can: {protect:?}"
    );
    for absent in ["sts:AssumeRoleWithWebIdentity", "sts:GetFederationToken"] {
        assert!(
            !protect.iter().any(|a| a == absent),
            "{absent}: {protect:?}"
        );
    }

    // At the policy level: with the deny, none of them is allowed any more, on any resource.
    let mut after = role.policies();
    let deny_document = merge_statements(&[], &statements);
    after.push(NamedPolicy {
        name: "firebreak-inc-1",
        document: &deny_document,
    });
    let after = CompiledPolicies::new(&after);
    for action in [
        "iam:CreateUser",
        "iam:CreateAccessKey",
        "iam:PassRole",
        "sts:AssumeRole",
    ] {
        let eval = after.evaluate(&Request {
            action,
            resource: "*",
        });
        assert_eq!(eval.permit, Permit::NotAllowed, "{action}: {eval:?}");
        assert_eq!(eval.denied_by, vec!["firebreak-inc-1"], "{action}");
    }

    let escape = note(&deny, "escape actions").expect("the plan says it denies escape actions");
    for action in [
        "iam:CreateUser",
        "iam:CreateAccessKey",
        "iam:PassRole",
        "sts:AssumeRole",
    ] {
        assert!(escape.contains(action), "{action} not named: {escape}");
    }
    assert!(note(&deny, "cannot delete its own containment").is_some());
    assert!(
        note(&deny, "a trust policy that names the role")
            .is_some_and(|n| n.starts_with("no identity policy of the role grants sts:AssumeRole")),
        "{:?}",
        deny.notes
    );
}

#[test]
fn only_the_escape_actions_the_role_holds_are_denied() {
    // A narrow grant on one user still counts: some instance of the action is allowed.
    let keys = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["iam:CreateAccessKey","sts:AssumeRole"],"Resource":["arn:aws:iam::123456789012:user/deploy","arn:aws:iam::123456789012:role/ops"]}]}"#;
    let role = role(vec![policy("keys", keys)], vec![policy("s3", S3_ALL)]);
    let deny = find(&plan(&role, "arn:aws:s3:::partner-payouts/*"), &INLINE_DENY).clone();
    let (_, protect) = deny_statements(&deny);
    assert_eq!(protect, vec!["iam:CreateAccessKey", "sts:AssumeRole"]);
    assert!(note(&deny, "cannot delete its own containment").is_none());
    assert!(
        note(&deny, "a trust policy that names the role").is_none(),
        "sts:AssumeRole is granted outright here: {:?}",
        deny.notes
    );
    assert!(note(&deny, "escape actions").is_some_and(|n| n.contains("iam:CreateAccessKey")));

    let plain = role_without_iam();
    let deny = find(
        &plan(&plain, "arn:aws:s3:::partner-payouts/*"),
        &INLINE_DENY,
    )
    .clone();
    let (statements, protect) = deny_statements(&deny);
    assert_eq!(statements.len(), 1, "nothing to protect: {protect:?}");
    assert!(note(&deny, "escape actions").is_none());
}

fn role_without_iam() -> RoleState {
    role(vec![], vec![policy("s3", S3_ALL)])
}

#[test]
fn denying_escape_actions_the_envelope_observed_counts_them_as_broken() {
    let envelope = ENVELOPE.replacen(
        "    observed:\n",
        "    observed:\n      \
         - {action: iam:CreateAccessKey, resource: \"arn:aws:iam::123456789012:user/ci\", closure: literal, count: 40, sessions: 20}\n      \
         - {action: sts:AssumeRole, resource: \"arn:aws:iam::123456789012:role/reports\", closure: literal, count: 90, sessions: 30}\n",
        1,
    );
    let role = role(vec![policy("admin", IAM_ALL)], vec![policy("s3", S3_ALL)]);
    let deny = find(
        &plan_in(&envelope, &role, "arn:aws:s3:::partner-payouts/*"),
        &INLINE_DENY,
    )
    .clone();
    let items = &deny.blast_radius.items;
    assert_eq!(deny.blast_radius.broken, 2, "{:?}", deny.blast_radius);
    assert!(
        items
            .iter()
            .any(|i| i == "iam:CreateAccessKey on arn:aws:iam::123456789012:user/ci"),
        "granted by iam:*, denied by the protection: {items:?}"
    );
    assert!(
        items.iter().any(|i| i.starts_with(
            "sts:AssumeRole on arn:aws:iam::123456789012:role/reports (granted by a resource policy"
        )),
        "no identity policy grants it, so a trust policy does, and the deny overrides that: {items:?}"
    );
}
