//! The ladder's proposals for hand-made roles: blast radius, rejections, scoping.

use firebreak_containment::plane::{Observation, PlanInput, Proposal};
use firebreak_containment::{Alert, Envelope};
use serde_json::{json, Value};

use super::*;
use crate::policy::{deny_statement, PolicyDocument};
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
    let envelope = Envelope::from_yaml(ENVELOPE).expect("example envelope");
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
