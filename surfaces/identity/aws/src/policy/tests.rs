//! The evaluator's and the parser's tests, against IAM's documented logic.

use super::*;

fn doc(json: &str) -> PolicyDocument {
    match PolicyDocument::parse(json) {
        Ok(d) => d,
        Err(e) => panic!("test policy must parse: {e}"),
    }
}

fn eval(policies: &[(&str, &PolicyDocument)], action: &str, resource: &str) -> Evaluation {
    let named: Vec<NamedPolicy> = policies
        .iter()
        .map(|(name, document)| NamedPolicy { name, document })
        .collect();
    evaluate(&named, &Request { action, resource })
}

fn permit(policies: &[(&str, &PolicyDocument)], action: &str, resource: &str) -> Permit {
    eval(policies, action, resource).permit
}

fn allow(actions: &str, resources: &str) -> PolicyDocument {
    doc(&format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":{actions},"Resource":{resources}}}]}}"#
    ))
}

fn err(json: &str) -> String {
    match PolicyDocument::parse(json) {
        Ok(d) => panic!("expected an error, parsed {d:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn wildcard_actions() {
    let s3_all = allow(r#""s3:*""#, r#""*""#);
    let s3_get = allow(r#""s3:Get*""#, r#""*""#);
    let star = allow(r#""*""#, r#""*""#);
    let r = "arn:aws:s3:::b/k";
    assert_eq!(
        permit(&[("p", &s3_all)], "s3:PutObject", r),
        Permit::Allowed
    );
    assert_eq!(
        permit(&[("p", &s3_all)], "iam:PutRolePolicy", r),
        Permit::NotAllowed
    );
    assert_eq!(
        permit(&[("p", &s3_get)], "s3:GetObject", r),
        Permit::Allowed
    );
    assert_eq!(
        permit(&[("p", &s3_get)], "s3:PutObject", r),
        Permit::NotAllowed
    );
    assert_eq!(permit(&[("p", &star)], "iam:PassRole", r), Permit::Allowed);
    // Pattern requests: some instance of s3:* is a Get.
    assert_eq!(permit(&[("p", &s3_get)], "s3:*", r), Permit::Allowed);
    assert_eq!(permit(&[("p", &s3_get)], "ec2:*", r), Permit::NotAllowed);
}

#[test]
fn actions_are_case_insensitive() {
    let p = allow(r#""S3:getobject""#, r#""*""#);
    assert_eq!(
        permit(&[("p", &p)], "s3:GetObject", "arn:aws:s3:::b/k"),
        Permit::Allowed
    );
    assert_eq!(
        permit(&[("p", &p)], "S3:GETOBJECT", "arn:aws:s3:::b/k"),
        Permit::Allowed
    );
    let d = doc(r#"{"Statement":{"Effect":"Deny","Action":"S3:GET*","Resource":"*"}}"#);
    let s = &d.statements[0];
    let req = Request {
        action: "s3:getObject",
        resource: "arn:aws:s3:::b/k",
    };
    assert!(statement_covers(s, &req));
}

#[test]
fn resources_are_case_sensitive() {
    let p = allow(r#""s3:GetObject""#, r#""arn:aws:s3:::Reports/*""#);
    assert_eq!(
        permit(&[("p", &p)], "s3:GetObject", "arn:aws:s3:::Reports/q1"),
        Permit::Allowed
    );
    assert_eq!(
        permit(&[("p", &p)], "s3:GetObject", "arn:aws:s3:::reports/q1"),
        Permit::NotAllowed
    );
}

#[test]
fn not_action_allow() {
    let p = doc(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","NotAction":"iam:*","Resource":"*"}]}"#,
    );
    assert_eq!(
        permit(&[("p", &p)], "s3:GetObject", "arn:aws:s3:::b/k"),
        Permit::Allowed
    );
    assert_eq!(
        permit(&[("p", &p)], "iam:PutRolePolicy", "*"),
        Permit::NotAllowed
    );
    assert_eq!(permit(&[("p", &p)], "IAM:Get*", "*"), Permit::NotAllowed);
    // `*` includes non-IAM actions, so something is allowed.
    assert_eq!(permit(&[("p", &p)], "*", "*"), Permit::Allowed);
}

#[test]
fn not_resource_allow_and_deny() {
    let p = doc(
        r#"{"Statement":[{"Effect":"Allow","Action":"s3:*","NotResource":"arn:aws:s3:::secret/*"}]}"#,
    );
    assert_eq!(
        permit(&[("p", &p)], "s3:GetObject", "arn:aws:s3:::public/a"),
        Permit::Allowed
    );
    assert_eq!(
        permit(&[("p", &p)], "s3:GetObject", "arn:aws:s3:::secret/a"),
        Permit::NotAllowed
    );
    assert_eq!(
        permit(&[("p", &p)], "s3:GetObject", "arn:aws:s3:::secret/*"),
        Permit::NotAllowed
    );

    // Deny everything except one bucket: covers requests disjoint from it.
    let all = allow(r#""s3:*""#, r#""*""#);
    let d = doc(
        r#"{"Statement":[{"Effect":"Deny","Action":"s3:*","NotResource":"arn:aws:s3:::ok/*"}]}"#,
    );
    let both = [("all", &all), ("guard", &d)];
    let denied = eval(&both, "s3:GetObject", "arn:aws:s3:::other/x");
    assert_eq!(denied.permit, Permit::NotAllowed);
    assert_eq!(denied.denied_by, vec!["guard".to_owned()]);
    assert_eq!(
        permit(&both, "s3:GetObject", "arn:aws:s3:::ok/x"),
        Permit::Allowed
    );
}

#[test]
fn explicit_deny_in_another_policy_wins() {
    let a = allow(r#""s3:*""#, r#""*""#);
    let d = doc(
        r#"{"Version":"2012-10-17","Statement":[{"Sid":"Breach","Effect":"Deny","Action":"s3:PutObject","Resource":"arn:aws:s3:::partner-payouts/*"}]}"#,
    );
    let e = eval(
        &[("agent-s3", &a), ("firebreak-deny", &d)],
        "s3:PutObject",
        "arn:aws:s3:::partner-payouts/2024/jan.csv",
    );
    assert_eq!(e.permit, Permit::NotAllowed);
    assert_eq!(e.denied_by, vec!["firebreak-deny".to_owned()]);
    assert_eq!(e.allowed_by, vec!["agent-s3".to_owned()]);
}

#[test]
fn partial_deny_leaves_pattern_request_permitted() {
    let a = allow(r#""s3:*""#, r#""arn:aws:s3:::partner-payouts/*""#);
    let d = PolicyDocument {
        version: Some("2012-10-17".to_owned()),
        id: None,
        statements: vec![deny_statement(
            "Breach",
            &["s3:PutObject".to_owned()],
            &["arn:aws:s3:::partner-payouts/2024/*".to_owned()],
        )],
    };
    let both = [("a", &a), ("d", &d)];
    // Other actions, and other prefixes, remain.
    assert_eq!(
        permit(&both, "s3:*", "arn:aws:s3:::partner-payouts/*"),
        Permit::Allowed
    );
    assert_eq!(
        permit(&both, "s3:PutObject", "arn:aws:s3:::partner-payouts/*"),
        Permit::Allowed
    );
    assert_eq!(
        permit(&both, "s3:PutObject", "arn:aws:s3:::partner-payouts/2024/*"),
        Permit::NotAllowed
    );
}

#[test]
fn deny_covering_everything_an_allow_grants_blocks_a_broader_request() {
    // The request `*` is wider than the deny, but the only allowed part is denied.
    let a = allow(r#""s3:PutObject""#, r#""arn:aws:s3:::partner-payouts/*""#);
    let d = PolicyDocument {
        version: None,
        id: None,
        statements: vec![deny_statement(
            "Breach",
            &["s3:PutObject".to_owned()],
            &["arn:aws:s3:::partner-payouts/*".to_owned()],
        )],
    };
    let e = eval(&[("a", &a), ("d", &d)], "s3:PutObject", "*");
    assert_eq!(e.permit, Permit::NotAllowed);
    assert_eq!(e.denied_by, vec!["d".to_owned()]);
}

#[test]
fn conditional_allow_is_indeterminate_and_names_keys() {
    let p = doc(
        r#"{"Statement":[{"Sid":"OfficeOnly","Effect":"Allow","Action":"s3:GetObject","Resource":"*",
            "Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"},"Bool":{"aws:MultiFactorAuthPresent":"true"}}}]}"#,
    );
    let e = eval(&[("ops", &p)], "s3:GetObject", "arn:aws:s3:::b/k");
    let Permit::Indeterminate(msg) = &e.permit else {
        panic!("expected Indeterminate, got {:?}", e.permit);
    };
    assert!(msg.contains("ops/OfficeOnly"), "{msg}");
    assert!(
        msg.contains("aws:SourceIp") && msg.contains("aws:MultiFactorAuthPresent"),
        "{msg}"
    );
    assert_eq!(e.unevaluated_conditions.len(), 1);
    assert!(e.unevaluated_conditions[0].starts_with("ops/OfficeOnly: "));
    assert!(e.unevaluated_conditions[0].contains("aws:SourceIp"));
    assert!(e.allowed_by.is_empty());
}

#[test]
fn conditional_allow_does_not_matter_when_unconditional_allow_exists() {
    let cond = doc(
        r#"{"Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":"true"}}}]}"#,
    );
    let plain = allow(r#""s3:GetObject""#, r#""*""#);
    let e = eval(
        &[("c", &cond), ("p", &plain)],
        "s3:GetObject",
        "arn:aws:s3:::b/k",
    );
    assert_eq!(e.permit, Permit::Allowed);
    assert_eq!(e.allowed_by, vec!["p".to_owned()]);
    assert_eq!(
        e.unevaluated_conditions,
        vec!["c/Statement[0]: aws:SecureTransport".to_owned()]
    );
}

#[test]
fn conditional_deny_over_unconditional_allow_is_indeterminate() {
    let a = allow(r#""s3:*""#, r#""*""#);
    let d = doc(
        r#"{"Statement":[{"Sid":"NoUntagged","Effect":"Deny","Action":"s3:*","Resource":"*",
            "Condition":{"StringNotEquals":{"aws:PrincipalTag/team":"payments"}}}]}"#,
    );
    let e = eval(
        &[("a", &a), ("guard", &d)],
        "s3:PutObject",
        "arn:aws:s3:::b/k",
    );
    let Permit::Indeterminate(msg) = &e.permit else {
        panic!("expected Indeterminate, got {:?}", e.permit);
    };
    assert!(
        msg.contains("guard/NoUntagged") && msg.contains("aws:PrincipalTag/team"),
        "{msg}"
    );
    assert!(e.denied_by.is_empty());
    assert_eq!(e.allowed_by, vec!["a".to_owned()]);
}

#[test]
fn conditional_partial_deny_does_not_make_it_indeterminate() {
    let a = allow(r#""s3:*""#, r#""*""#);
    let d = doc(
        r#"{"Statement":[{"Effect":"Deny","Action":"s3:DeleteObject","Resource":"*","Condition":{"Bool":{"aws:MultiFactorAuthPresent":"false"}}}]}"#,
    );
    assert_eq!(
        permit(&[("a", &a), ("d", &d)], "s3:*", "*"),
        Permit::Allowed
    );
}

#[test]
fn policy_variables_are_treated_as_unevaluated() {
    let p = allow(
        r#""s3:GetObject""#,
        r#""arn:aws:s3:::home/${aws:username}/*""#,
    );
    let e = eval(
        &[("home", &p)],
        "s3:GetObject",
        "arn:aws:s3:::home/alice/notes",
    );
    assert!(matches!(e.permit, Permit::Indeterminate(ref m) if m.contains("${aws:username}")));
    // Escapes are literals, not variables.
    let lit = allow(r#""s3:GetObject""#, r#""arn:aws:s3:::odd${?}name""#);
    assert_eq!(
        permit(&[("l", &lit)], "s3:GetObject", "arn:aws:s3:::odd?name"),
        Permit::Allowed
    );
    assert_eq!(
        permit(&[("l", &lit)], "s3:GetObject", "arn:aws:s3:::oddxname"),
        Permit::NotAllowed
    );
}

#[test]
fn statement_covers_vs_overlaps() {
    let d =
        doc(r#"{"Statement":{"Effect":"Deny","Action":"s3:Put*","Resource":"arn:aws:s3:::b/*"}}"#);
    let s = &d.statements[0];
    let full = Request {
        action: "s3:PutObject",
        resource: "arn:aws:s3:::b/x/*",
    };
    let wide = Request {
        action: "s3:*",
        resource: "arn:aws:s3:::b/*",
    };
    let none = Request {
        action: "s3:GetObject",
        resource: "arn:aws:s3:::b/x",
    };
    assert!(statement_covers(s, &full) && statement_overlaps(s, &full));
    assert!(!statement_covers(s, &wide) && statement_overlaps(s, &wide));
    assert!(!statement_covers(s, &none) && !statement_overlaps(s, &none));

    let mut conditional = s.clone();
    conditional.condition = Some(serde_json::json!({"Bool": {"aws:SecureTransport": "false"}}));
    assert!(!statement_covers(&conditional, &full));
    assert!(statement_overlaps(&conditional, &full));
}

#[test]
fn implicit_deny_without_applicable_allow() {
    let e = eval(&[], "s3:GetObject", "*");
    assert_eq!(e.permit, Permit::NotAllowed);
    assert!(e.denied_by.is_empty() && e.allowed_by.is_empty());
}

#[test]
fn single_object_statement() {
    let d = doc(
        r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}}"#,
    );
    assert_eq!(d.statements.len(), 1);
    assert_eq!(d.statements[0].effect, Effect::Allow);
    assert_eq!(
        d.statements[0].action,
        Matcher::Only(vec!["s3:GetObject".to_owned()])
    );
}

#[test]
fn string_and_array_fields_are_equivalent() {
    let s = doc(
        r#"{"Statement":[{"Effect":"Deny","Action":"s3:*","NotResource":"arn:aws:s3:::a/*"}]}"#,
    );
    let a = doc(
        r#"{"Statement":[{"Effect":"Deny","Action":["s3:*"],"NotResource":["arn:aws:s3:::a/*"]}]}"#,
    );
    assert_eq!(s, a);
    assert_eq!(
        s.statements[0].resource,
        Some(Matcher::Not(vec!["arn:aws:s3:::a/*".to_owned()]))
    );
    let multi = doc(
        r#"{"Statement":[{"Effect":"Allow","Action":["s3:GetObject","s3:ListBucket"],"Resource":"*"}]}"#,
    );
    assert_eq!(multi.statements[0].action.values().len(), 2);
}

#[test]
fn errors_name_statement_index_and_field() {
    let two = |second: &str| {
        format!(r#"{{"Statement":[{{"Effect":"Allow","Action":"s3:*","Resource":"*"}},{second}]}}"#)
    };
    assert_eq!(
        err(&two(r#"{"Effect":"allow","Action":"s3:*","Resource":"*"}"#)),
        r#"Statement[1].Effect: expected "Allow" or "Deny", got "allow""#
    );
    assert_eq!(
        err(&two(r#"{"Effect":"Allow","Resource":"*"}"#)),
        "Statement[1]: missing Action or NotAction"
    );
    assert_eq!(
        err(&two(
            r#"{"Effect":"Allow","Action":"a:b","NotAction":"c:d","Resource":"*"}"#
        )),
        "Statement[1]: has both Action and NotAction; use exactly one"
    );
    assert_eq!(
        err(&two(
            r#"{"Effect":"Allow","Action":["s3:Get*",3],"Resource":"*"}"#
        )),
        "Statement[1].Action[1]: expected a string, got 3"
    );
    assert_eq!(
        err(&two(
            r#"{"Effect":"Allow","Action":"s3:*","Resource":"*","NotResource":"x"}"#
        )),
        "Statement[1]: has both Resource and NotResource; use exactly one"
    );
    assert_eq!(
        err(&two(r#"{"Action":"s3:*","Resource":"*"}"#)),
        "Statement[1].Effect: missing"
    );
    assert_eq!(
        err(&two(
            r#"{"Effect":"Allow","Action":"s3:*","Resources":"*"}"#
        )),
        "Statement[1].Resources: unknown statement element"
    );
    assert_eq!(
        err(&two(
            r#"{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":{"Bool":true}}"#
        )),
        "Statement[1].Condition.Bool: expected an object of condition keys, got true"
    );
    assert_eq!(err(r#"{"Version":"2012-10-17"}"#), "Statement: missing");
    assert_eq!(
        err(r#"{"Version":"2020-01-01","Statement":[]}"#),
        r#"Version: expected "2012-10-17" or "2008-10-17", got "2020-01-01""#
    );
    assert!(err("{").starts_with("policy is not valid JSON"));
    match PolicyDocument::parse(&two(r#"{"Effect":"Deny"}"#)) {
        Err(PolicyError::Invalid { statement, .. }) => assert_eq!(statement, Some(1)),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn round_trip_parse_to_value_parse() {
    let original = doc(r#"{"Version":"2012-10-17","Id":"x","Statement":[
            {"Sid":"A","Effect":"Allow","NotAction":"iam:*","Resource":"*"},
            {"Effect":"Deny","Action":"s3:*","NotResource":["arn:aws:s3:::a/*","arn:aws:s3:::b"],
             "Condition":{"StringLike":{"s3:prefix":["home/","home/${aws:username}/"]}}},
            {"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"},
            {"Effect":"Deny","NotPrincipal":{"AWS":"arn:aws:iam::1:root"},"Action":"*","Resource":"*"}]}"#);
    let value = original.to_value();
    // Arrays always in canonical form.
    assert!(value["Statement"][0]["NotAction"].is_array());
    assert!(value["Statement"].is_array());
    let reparsed = match PolicyDocument::from_json_value(&value) {
        Ok(d) => d,
        Err(e) => panic!("canonical form must parse: {e}"),
    };
    assert_eq!(reparsed, original);
    let text = match serde_json::to_string(&original) {
        Ok(t) => t,
        Err(e) => panic!("serialize: {e}"),
    };
    assert!(text.starts_with(
        r#"{"Version":"2012-10-17","Id":"x","Statement":[{"Sid":"A","Effect":"Allow""#
    ));
    assert_eq!(doc(&text), original);
    let via_serde: PolicyDocument = match serde_json::from_str(&text) {
        Ok(d) => d,
        Err(e) => panic!("Deserialize: {e}"),
    };
    assert_eq!(via_serde, original);
}

#[test]
fn a_session_tag_scoped_deny_is_decided_by_the_context() {
    let a = allow(r#""s3:*""#, r#""*""#);
    let d = doc(
        r#"{"Statement":[{"Sid":"Scoped","Effect":"Deny","Action":"s3:PutObject","Resource":"*",
            "Condition":{"StringEquals":{"aws:PrincipalTag/kubernetes-namespace":"payments",
                                         "aws:PrincipalTag/kubernetes-service-account":["agent","x"]}}}]}"#,
    );
    let compiled = CompiledPolicies::new(&[
        NamedPolicy {
            name: "a",
            document: &a,
        },
        NamedPolicy {
            name: "d",
            document: &d,
        },
    ]);
    let req = Request {
        action: "s3:PutObject",
        resource: "arn:aws:s3:::b/k",
    };
    let agent = Context::default()
        .with("aws:PrincipalTag/kubernetes-namespace", "payments")
        .with("AWS:PrincipalTag/Kubernetes-Service-Account", "agent");
    let denied = compiled.evaluate_in(&req, &agent);
    assert_eq!(denied.permit, Permit::NotAllowed);
    assert_eq!(denied.denied_by, vec!["d".to_owned()]);

    let other = Context::default()
        .with("aws:PrincipalTag/kubernetes-namespace", "payments")
        .with("aws:PrincipalTag/kubernetes-service-account", "billing");
    let kept = compiled.evaluate_in(&req, &other);
    assert_eq!(kept.permit, Permit::Allowed);
    assert!(kept.unevaluated_conditions.is_empty(), "{kept:?}");

    // One known-false key decides even when another key is unknown.
    let half = Context::default().with("aws:PrincipalTag/kubernetes-namespace", "billing");
    assert_eq!(compiled.evaluate_in(&req, &half).permit, Permit::Allowed);
    // Unknown keys stay unevaluated.
    assert!(matches!(
        compiled.evaluate(&req).permit,
        Permit::Indeterminate(ref m) if m.contains("d/Scoped")
    ));
}
