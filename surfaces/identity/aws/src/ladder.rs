//! The AWS ladder for one breach, computed from a [`RoleState`] without I/O:
//! `aws.inline_deny` → `aws.detach_policy` → `aws.delete_inline_policy` → `aws.trust_deny`
//! → `aws.revoke_sessions`, each with its blast radius against the envelope.

use firebreak_containment::action::ActionKind;
use firebreak_containment::alert::Parameter;
use firebreak_containment::envelope::{IdentityUse, Observed};
use firebreak_containment::plan::{BlastRadius, Candidate, Enforcement};
use firebreak_containment::surface::{Observation, PlanInput, SurfaceError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::policy::{
    deny_statement, CompiledPolicies, Evaluation, NamedPolicy, Permit, PolicyDocument, Request,
    Statement,
};
use crate::role::{iam_size, ObservedPolicy, RoleState, INLINE_BUDGET};
use crate::PLANE;

/// IAM actions with which a principal could undo a deny on its own role. If the agent holds any
/// of them, the containment denies them too: an agent must not delete its own containment.
pub const SELF_UNDO_ACTIONS: &[&str] = &[
    "iam:PutRolePolicy",
    "iam:DeleteRolePolicy",
    "iam:AttachRolePolicy",
    "iam:DetachRolePolicy",
    "iam:UpdateAssumeRolePolicy",
    "iam:PutRolePermissionsBoundary",
    "iam:DeleteRolePermissionsBoundary",
    "iam:CreatePolicyVersion",
    "iam:SetDefaultPolicyVersion",
    "iam:DeleteRole",
    "iam:UpdateRole",
];

/// What an AWS action does, journaled inside the intent: everything needed to apply, verify and
/// undo it, including the pre-image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum ActionSpec {
    /// Merge `statements` into the daemon-owned inline policy `policy_name` (one per incident).
    #[serde(rename_all = "camelCase")]
    MergeDeny {
        role_name: String,
        policy_name: String,
        statements: Vec<Value>,
        breach: BreachSpec,
        /// The incident policy as it was before (usually absent).
        pre_image: Option<Value>,
    },
    #[serde(rename_all = "camelCase")]
    DetachPolicy {
        role_name: String,
        policy_arn: String,
    },
    #[serde(rename_all = "camelCase")]
    DeleteInlinePolicy {
        role_name: String,
        policy_name: String,
        pre_image: Value,
    },
    #[serde(rename_all = "camelCase")]
    TrustDeny {
        role_name: String,
        statement: Value,
        pre_image: Value,
    },
    #[serde(rename_all = "camelCase")]
    RevokeSessions { role_name: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BreachSpec {
    pub action: String,
    pub resource: String,
}

impl ActionSpec {
    pub fn from_candidate(c: &Candidate) -> Result<ActionSpec, SurfaceError> {
        serde_json::from_value(c.spec.clone()).map_err(|e| SurfaceError::Invalid {
            plane: PLANE,
            detail: format!("action spec of {} is not an AWS spec: {e}", c.kind),
        })
    }

    fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// The daemon-owned inline policy of one incident.
pub fn incident_policy_name(incident: &str) -> String {
    format!("firebreak-{incident}")
}

fn sid(prefix: &str, parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    format!("{prefix}{}", &hex::encode(h.finalize())[..10])
}

fn describe(e: &IdentityUse) -> String {
    format!("{} on {}", e.action, e.resource)
}

/// The envelope's permitted identity uses, each with its permission today (computed once).
struct Baseline<'a> {
    compiled: CompiledPolicies,
    entries: Vec<(&'a IdentityUse, Permit)>,
}

impl<'a> Baseline<'a> {
    fn new(current: &[NamedPolicy<'_>], permitted: &[&'a Observed<IdentityUse>]) -> Self {
        let compiled = CompiledPolicies::new(current);
        let entries = permitted
            .iter()
            .map(|e| (&e.value, compiled.evaluate(&request(&e.value)).permit))
            .collect();
        Baseline { compiled, entries }
    }

    /// Broken = certainly permitted before and certainly not after. Any change that involves a
    /// condition we do not evaluate is undetermined, never silently counted either way.
    fn blast(&self, after: impl Fn(&Request<'_>, &Permit) -> Permit) -> BlastRadius {
        let mut radius = BlastRadius::default();
        for (entry, was) in &self.entries {
            if *was == Permit::NotAllowed {
                continue;
            }
            classify(&mut radius, entry, was, &after(&request(entry), was));
        }
        radius.broken = radius.items.len();
        radius
    }
}

fn request(e: &IdentityUse) -> Request<'_> {
    Request {
        action: &e.action,
        resource: &e.resource,
    }
}

fn classify(radius: &mut BlastRadius, entry: &IdentityUse, was: &Permit, now: &Permit) {
    match (was, now) {
        (Permit::NotAllowed, _) => {}
        (a, b) if a == b => {}
        (Permit::Allowed, Permit::NotAllowed) => radius.items.push(describe(entry)),
        (Permit::Indeterminate(why), _) | (_, Permit::Indeterminate(why)) => radius
            .undetermined
            .push(format!("{} ({why})", describe(entry))),
        _ => {}
    }
}

fn blocks(eval: Evaluation) -> Result<(), String> {
    match eval.permit {
        Permit::NotAllowed => Ok(()),
        Permit::Allowed => Err(format!(
            "the breach stays allowed by {}",
            eval.allowed_by.join(", ")
        )),
        Permit::Indeterminate(why) => Err(format!("whether it blocks depends on {why}")),
    }
}

impl Observation for RoleState {
    fn candidates(&self, input: &PlanInput<'_>) -> Result<Vec<Candidate>, SurfaceError> {
        let Parameter::Identity { action, resource } = &input.alert.parameter else {
            return Err(SurfaceError::Unsupported {
                plane: PLANE,
                detail: format!("dimension {} is not identity", input.alert.dimension),
            });
        };
        let breach = Request { action, resource };
        let split = input.envelope.identity();
        let current = self.policies();
        let base = Baseline::new(&current, &split.permitted);
        let mut notes = Vec::new();
        let now = base.compiled.evaluate(&breach);
        match &now.permit {
            Permit::Allowed => notes.push(format!(
                "{} is allowed today by {}",
                input.alert.parameter.describe(),
                now.allowed_by.join(", ")
            )),
            Permit::NotAllowed => notes.push(format!(
                "the role's identity policies do not allow {} today; the agent may reach it \
                 through a resource policy: an explicit deny still blocks it",
                input.alert.parameter.describe()
            )),
            Permit::Indeterminate(why) => notes.push(format!(
                "whether {} is allowed today depends on {why}",
                input.alert.parameter.describe()
            )),
        }
        if let Some(tail) = split
            .tail
            .iter()
            .find(|t| t.value.action == *action && t.value.resource == *resource)
        {
            notes.push(format!(
                "the breach was seen {} time(s) in {} session(s): below the confidence threshold, so it is outside the envelope (tail)",
                tail.count, tail.sessions
            ));
        }

        let mut out = vec![self.inline_deny(input, &breach, &base, &notes)];
        let granting = self
            .managed
            .iter()
            .map(|p| (ActionKind::AwsDetachPolicy, p))
            .chain(
                self.inline
                    .iter()
                    .map(|p| (ActionKind::AwsDeleteInlinePolicy, p)),
            )
            .filter(|(_, p)| now.allowed_by.contains(&p.name));
        for (kind, policy) in granting {
            out.push(self.remove_candidate(kind, policy, &breach, &base));
        }
        // A trust cut or session revocation stops every permission the role grants.
        let everything = base.blast(|_, _| Permit::NotAllowed);
        out.push(self.trust_deny(input, everything.clone()));
        out.push(self.revoke_sessions(everything));
        Ok(out)
    }
}

impl RoleState {
    fn inline_deny(
        &self,
        input: &PlanInput<'_>,
        breach: &Request<'_>,
        base: &Baseline<'_>,
        notes: &[String],
    ) -> Candidate {
        let mut notes = notes.to_vec();
        let mut statements = vec![deny_statement(
            &sid("FirebreakDeny", &[breach.action, breach.resource]),
            &[breach.action.to_string()],
            &[breach.resource.to_string()],
        )];
        let self_undo: Vec<String> = SELF_UNDO_ACTIONS
            .iter()
            .filter(|a| {
                base.compiled
                    .evaluate(&Request {
                        action: a,
                        resource: "*",
                    })
                    .permit
                    != Permit::NotAllowed
            })
            .map(|a| a.to_string())
            .collect();
        if !self_undo.is_empty() {
            notes.push(format!(
                "the role itself may call {}: the deny covers those IAM writes too, so the agent cannot delete its own containment",
                self_undo.join(", ")
            ));
            statements.push(deny_statement(
                "FirebreakProtectContainment",
                &self_undo,
                &["*".to_string()],
            ));
        }
        // Partial overlaps count: a deny that cuts into an in-envelope pattern breaks part of it.
        let deny_document = merge_statements(&[], &statements);
        let deny = CompiledPolicies::new(&[NamedPolicy {
            name: "firebreak",
            document: &deny_document,
        }]);
        let radius = base.blast(|req, was| {
            if deny.overlaps(req) {
                Permit::NotAllowed
            } else {
                was.clone()
            }
        });

        let policy_name = incident_policy_name(input.incident);
        let existing = self.inline_policy(&policy_name);
        let merged = merge_statements(
            existing
                .map(|p| p.document.statements.as_slice())
                .unwrap_or(&[]),
            &statements,
        );
        let needed = iam_size(&merged.to_value());
        let used = self.inline_chars_used_except(&policy_name);
        let rejected = (used + needed > INLINE_BUDGET).then(|| {
            format!(
                "the role's inline policies use {used} of {INLINE_BUDGET} characters and this deny needs {needed}: over IAM's quota"
            )
        });
        let spec = ActionSpec::MergeDeny {
            role_name: self.name.clone(),
            policy_name: policy_name.clone(),
            statements: statements.iter().map(Statement::to_value).collect(),
            breach: BreachSpec {
                action: breach.action.to_string(),
                resource: breach.resource.to_string(),
            },
            pre_image: existing.map(|p| p.raw.clone()),
        };
        Candidate {
            kind: ActionKind::AwsInlineDeny,
            target: self.arn.clone(),
            granularity: format!(
                "Deny {} on {} for role {} only",
                breach.action, breach.resource, self.name
            ),
            blast_radius: radius,
            blocks: true,
            inverse: format!(
                "remove these statements from inline policy {policy_name}; delete it when empty"
            ),
            verify: format!(
                "read back {policy_name}, compare the parsed statements, and re-evaluate the breach as denied"
            ),
            enforcement: Enforcement::Durable,
            rejected,
            notes,
            spec: spec.to_value(),
        }
    }

    fn remove_candidate(
        &self,
        kind: ActionKind,
        policy: &ObservedPolicy,
        breach: &Request<'_>,
        base: &Baseline<'_>,
    ) -> Candidate {
        let without = |req: &Request<'_>| base.compiled.evaluate_without(&policy.name, req);
        let radius = base.blast(|req, _| without(req).permit);
        let verdict = blocks(without(breach));
        let (spec, granularity, inverse, verify) = if kind == ActionKind::AwsDetachPolicy {
            (
                ActionSpec::DetachPolicy {
                    role_name: self.name.clone(),
                    policy_arn: policy.id.clone(),
                },
                format!(
                    "every permission of managed policy {} on role {}",
                    policy.name, self.name
                ),
                format!("attach {} again", policy.id),
                format!("list the role's attached policies: {} is absent", policy.id),
            )
        } else {
            (
                ActionSpec::DeleteInlinePolicy {
                    role_name: self.name.clone(),
                    policy_name: policy.name.clone(),
                    pre_image: policy.raw.clone(),
                },
                format!(
                    "every permission of inline policy {} on role {}",
                    policy.name, self.name
                ),
                format!("put {} back from the journaled pre-image", policy.name),
                format!("get {}: NoSuchEntity", policy.name),
            )
        };
        Candidate {
            kind,
            target: format!("{} / {}", self.arn, policy.id),
            granularity,
            blast_radius: radius,
            blocks: verdict.is_ok(),
            inverse,
            verify,
            enforcement: Enforcement::Durable,
            rejected: verdict.err(),
            notes: vec![],
            spec: spec.to_value(),
        }
    }

    fn trust_deny(&self, input: &PlanInput<'_>, everything: BlastRadius) -> Candidate {
        let subject = format!(
            "system:serviceaccount:{}:{}",
            input.alert.agent.namespace, input.alert.agent.service_account
        );
        let provider = irsa_provider(&self.trust.document);
        let (statement, rejected) = match &provider {
            Some(provider_arn) => {
                let issuer = provider_arn
                    .split_once("oidc-provider/")
                    .map(|(_, host)| host)
                    .unwrap_or(provider_arn);
                (
                    json!({
                        "Sid": sid("FirebreakTrustDeny", &[&subject]),
                        "Effect": "Deny",
                        "Principal": {"Federated": provider_arn},
                        "Action": "sts:AssumeRoleWithWebIdentity",
                        "Condition": {"StringEquals": {format!("{issuer}:sub"): subject}}
                    }),
                    None,
                )
            }
            None => (
                Value::Null,
                Some(
                    "the trust policy has no IRSA (web identity) statement to narrow; Pod Identity roles need eks.delete_pod_identity_association"
                        .to_string(),
                ),
            ),
        };
        Candidate {
            kind: ActionKind::AwsTrustDeny,
            target: format!("{} trust policy", self.arn),
            granularity: format!("new credentials for ServiceAccount {subject}"),
            blast_radius: everything,
            blocks: provider.is_some(),
            inverse: "restore the trust policy from the journaled pre-image".into(),
            verify: "read back the trust policy: the Deny for this ServiceAccount is present".into(),
            enforcement: Enforcement::Durable,
            rejected,
            notes: vec![
                "cuts the federation link only: credentials issued before it stay valid until they expire (1 h by default)".into(),
            ],
            spec: ActionSpec::TrustDeny {
                role_name: self.name.clone(),
                statement,
                pre_image: self.trust.raw.clone(),
            }
            .to_value(),
        }
    }

    fn revoke_sessions(&self, everything: BlastRadius) -> Candidate {
        Candidate {
            kind: ActionKind::AwsRevokeSessions,
            target: self.arn.clone(),
            granularity: format!("every session of role {}", self.name),
            blast_radius: everything,
            blocks: false,
            inverse: "remove the session-revocation policy".into(),
            verify: "read back the revocation policy".into(),
            enforcement: Enforcement::Durable,
            rejected: Some(
                "alone it does nothing against IRSA: the pod re-assumes the role; only meaningful after aws.trust_deny"
                    .into(),
            ),
            notes: vec![],
            spec: ActionSpec::RevokeSessions {
                role_name: self.name.clone(),
            }
            .to_value(),
        }
    }
}

/// The OIDC provider ARN of the trust policy's web-identity Allow, if any.
fn irsa_provider(trust: &PolicyDocument) -> Option<String> {
    trust.statements.iter().find_map(|s| {
        let federated = s.principal.as_ref()?.get("Federated")?;
        let arn = match federated {
            Value::String(s) => Some(s.clone()),
            Value::Array(a) => a.iter().find_map(|v| v.as_str().map(str::to_string)),
            _ => None,
        }?;
        arn.contains(":oidc-provider/").then_some(arn)
    })
}

/// `existing` with `ours` added; a statement with the same Sid is replaced.
pub fn merge_statements(existing: &[Statement], ours: &[Statement]) -> PolicyDocument {
    let mut statements: Vec<Statement> = existing
        .iter()
        .filter(|s| !ours.iter().any(|o| o.sid == s.sid))
        .cloned()
        .collect();
    statements.extend(ours.iter().cloned());
    PolicyDocument {
        version: Some("2012-10-17".into()),
        id: None,
        statements,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use firebreak_containment::{Alert, Envelope};

    const ENVELOPE: &str = include_str!("../../../../config/examples/aws/envelope.yaml");
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
        }
    }

    fn plan(role: &RoleState, resource: &str) -> Vec<Candidate> {
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
            incident: "inc-1",
            alert: &alert,
            envelope: &envelope,
        })
        .expect("candidates")
    }

    fn find(candidates: &[Candidate], kind: ActionKind) -> &Candidate {
        candidates
            .iter()
            .find(|c| c.kind == kind)
            .expect("candidate present")
    }

    const S3_ALL: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#;

    #[test]
    fn the_inline_deny_is_rejected_with_numbers_when_the_quota_is_full() {
        let padding = "x".repeat(10_100);
        let big = format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"{padding}","Effect":"Allow","Action":"sqs:ReceiveMessage","Resource":"*"}}]}}"#
        );
        let role = role(vec![policy("big", &big)], vec![policy("s3", S3_ALL)]);
        let deny = find(
            &plan(&role, "arn:aws:s3:::partner-payouts/*"),
            ActionKind::AwsInlineDeny,
        )
        .clone();
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
        let trust = find(&candidates, ActionKind::AwsTrustDeny);
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
        let deny = find(&candidates, ActionKind::AwsInlineDeny);
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
            .filter(|c| c.kind == ActionKind::AwsDetachPolicy)
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
        let deny = find(&plan(&role, "arn:aws:s3:::*"), ActionKind::AwsInlineDeny).clone();
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
}
