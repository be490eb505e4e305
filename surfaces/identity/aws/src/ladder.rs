//! The AWS ladder for one breach, computed from a [`RoleState`] without I/O:
//! `aws.inline_deny` → `aws.detach_policy` → `aws.delete_inline_policy` → `aws.trust_deny`
//! → `aws.revoke_sessions` → `eks.delete_pod_identity_association`, each with its blast radius
//! against the envelope and against the other ServiceAccounts that share the role.

use firebreak_containment::action::ActionKind;
use firebreak_containment::alert::Parameter;
use firebreak_containment::envelope::{IdentityUse, Observed};
use firebreak_containment::plan::{BlastRadius, Candidate, Enforcement};
use firebreak_containment::surface::{Observation, PlanInput, SurfaceError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::policy::{
    deny_statement, CompiledPolicies, Context, Evaluation, NamedPolicy, Permit, PolicyDocument,
    Request, Statement,
};
use crate::role::{
    iam_size, session_context, Association, ObservedPolicy, RoleState, INLINE_BUDGET,
    PRINCIPAL_TAG_NAMESPACE, PRINCIPAL_TAG_SERVICE_ACCOUNT,
};
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
        /// Set when the statements only apply to one ServiceAccount's Pod Identity sessions.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scope: Option<SessionScope>,
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
    /// The documented "revoke active sessions": a daemon-owned inline Deny of everything for
    /// credentials issued before the moment of apply.
    #[serde(rename_all = "camelCase")]
    RevokeSessions {
        role_name: String,
        policy_name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scope: Option<SessionScope>,
    },
    #[serde(rename_all = "camelCase")]
    DeletePodIdentityAssociation {
        cluster: String,
        /// The pre-image: everything needed to create the association again.
        association: Association,
        /// Idempotency key of the re-creation, so a retried revert creates it once.
        client_request_token: String,
    },
}

/// One ServiceAccount's Pod Identity sessions, recognised by the session tags EKS sets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionScope {
    pub namespace: String,
    pub service_account: String,
}

impl SessionScope {
    /// The condition that limits a statement to these sessions.
    pub fn condition(&self) -> Value {
        json!({"StringEquals": self.tags()})
    }

    fn tags(&self) -> Value {
        json!({
            PRINCIPAL_TAG_NAMESPACE: self.namespace,
            PRINCIPAL_TAG_SERVICE_ACCOUNT: self.service_account,
        })
    }

    pub fn context(&self) -> Context {
        session_context(&self.namespace, &self.service_account)
    }

    fn limit(&self, mut statement: Statement) -> Statement {
        statement.condition = Some(self.condition());
        statement
    }
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

/// The daemon-owned session-revocation policy of one incident.
pub fn revocation_policy_name(incident: &str) -> String {
    format!("firebreak-revoke-{incident}")
}

/// The trust principal of EKS Pod Identity.
pub const POD_IDENTITY_SERVICE: &str = "pods.eks.amazonaws.com";

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
    /// What is known about the agent's sessions (its Pod Identity session tags).
    ctx: Context,
    entries: Vec<(&'a IdentityUse, Permit)>,
}

impl<'a> Baseline<'a> {
    fn new(
        current: &[NamedPolicy<'_>],
        permitted: &[&'a Observed<IdentityUse>],
        ctx: Context,
    ) -> Self {
        let compiled = CompiledPolicies::new(current);
        let entries = permitted
            .iter()
            .map(|e| {
                (
                    &e.value,
                    compiled.evaluate_in(&request(&e.value), &ctx).permit,
                )
            })
            .collect();
        Baseline {
            compiled,
            ctx,
            entries,
        }
    }

    fn evaluate(&self, req: &Request<'_>) -> Evaluation {
        self.compiled.evaluate_in(req, &self.ctx)
    }

    /// Broken = certainly permitted before and certainly not after. Any change that involves a
    /// condition we do not evaluate is undetermined, never silently counted either way.
    fn blast(&self, after: impl Fn(&Request<'_>, &Permit) -> Permit) -> BlastRadius {
        let mut radius = BlastRadius::default();
        for (entry, was) in &self.entries {
            if *was == Permit::NotAllowed {
                continue;
            }
            classify(
                &mut radius,
                || describe(entry),
                was,
                &after(&request(entry), was),
            );
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

/// Adds `what` to the radius when it goes from allowed to denied, or to undetermined when a
/// condition we do not evaluate decides it.
/// `what` is only rendered when it is added: most entries are unaffected.
fn classify(radius: &mut BlastRadius, what: impl FnOnce() -> String, was: &Permit, now: &Permit) {
    match (was, now) {
        (Permit::NotAllowed, _) => {}
        (a, b) if a == b => {}
        (Permit::Allowed, Permit::NotAllowed) => radius.items.push(what()),
        (Permit::Indeterminate(why), _) | (_, Permit::Indeterminate(why)) => {
            radius.undetermined.push(format!("{} ({why})", what()))
        }
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
        let agent = Agent::of(input);
        let link = self.link();
        let (scope, scope_note) = self.session_scope(&agent, &link);
        let ctx = scope
            .as_ref()
            .map(SessionScope::context)
            .unwrap_or_default();
        let base = Baseline::new(&current, &split.permitted, ctx);
        let mut notes = Vec::new();
        let now = base.evaluate(&breach);
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
        notes.extend(scope_note);

        let mut out = vec![self.inline_deny(input, &breach, &base, scope.as_ref(), &notes)];
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
        let trust_cut = self.trust_cut(&agent, &link);
        out.push(self.trust_deny(&agent, &trust_cut, everything.clone()));
        let link_cut = self.link_cut(&agent, &link, trust_cut.as_ref().ok());
        out.push(self.revoke_sessions(input, scope.as_ref(), link_cut, everything.clone()));
        out.extend(self.delete_associations(input, &agent, &link, everything));
        Ok(out)
    }
}

/// The agent's Kubernetes identity, as the alert names it.
struct Agent<'i> {
    namespace: &'i str,
    service_account: &'i str,
    /// `system:serviceaccount:NS:SA`, the IRSA token subject.
    subject: String,
}

impl<'i> Agent<'i> {
    fn of(input: &PlanInput<'i>) -> Agent<'i> {
        let agent = &input.alert.agent;
        Agent {
            namespace: &agent.namespace,
            service_account: &agent.service_account,
            subject: format!(
                "system:serviceaccount:{}:{}",
                agent.namespace, agent.service_account
            ),
        }
    }

    fn name(&self) -> String {
        format!("{}/{}", self.namespace, self.service_account)
    }
}

/// How pods get the role's credentials, read from its trust policy.
enum Link {
    /// IRSA: web identity through the cluster's OIDC provider (this ARN).
    Irsa(String),
    /// EKS Pod Identity: `pods.eks.amazonaws.com` assumes the role and tags the session.
    PodIdentity,
    Unknown,
}

impl RoleState {
    fn link(&self) -> Link {
        match irsa_provider(&self.trust.document) {
            Some(provider) => Link::Irsa(provider),
            None if trusts_pod_identity(&self.trust.document) => Link::PodIdentity,
            None => Link::Unknown,
        }
    }

    fn sharing(&self) -> &[Association] {
        self.pod_identity
            .as_ref()
            .map(|p| p.sharing.as_slice())
            .unwrap_or(&[])
    }

    /// Whether a Deny can be limited to the agent's sessions, and the note that says why.
    fn session_scope(
        &self,
        agent: &Agent<'_>,
        link: &Link,
    ) -> (Option<SessionScope>, Option<String>) {
        let unscoped = |why: String| (None, Some(why));
        match (link, &self.pod_identity) {
            (Link::Irsa(_), _) => unscoped(
                "IRSA (web identity) sessions carry no Kubernetes session tags, so no IAM policy can tell this ServiceAccount's sessions from others on the same role: the deny covers every session of the role (narrow IRSA per ServiceAccount through the trust policy, aws.trust_deny)"
                    .into(),
            ),
            (Link::PodIdentity, None) => unscoped(
                "the role is a Pod Identity role but no EKS cluster is configured (aws.eks.cluster): Firebreak cannot see whether the agent's sessions carry session tags, so the deny covers every session of the role"
                    .into(),
            ),
            (Link::PodIdentity, Some(pi)) if pi.agent.is_empty() => unscoped(format!(
                "no Pod Identity association of {} uses the role any more, so its session tags cannot be confirmed: the deny covers every session of the role",
                agent.name()
            )),
            (Link::PodIdentity, Some(pi))
                if pi.agent.iter().any(|a| a.disable_session_tags == Some(true)) =>
            {
                unscoped(format!(
                    "the Pod Identity association of {} disables session tags: the deny covers every session of the role",
                    agent.name()
                ))
            }
            (Link::PodIdentity, Some(_)) => (
                Some(SessionScope {
                    namespace: agent.namespace.to_string(),
                    service_account: agent.service_account.to_string(),
                }),
                Some(format!(
                    "Pod Identity sessions carry the session tags kubernetes-namespace and kubernetes-service-account: the deny applies to {} only, other ServiceAccounts sharing the role keep working",
                    agent.name()
                )),
            ),
            (Link::Unknown, _) => (None, None),
        }
    }

    fn inline_deny(
        &self,
        input: &PlanInput<'_>,
        breach: &Request<'_>,
        base: &Baseline<'_>,
        scope: Option<&SessionScope>,
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
                base.evaluate(&Request {
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
        if let Some(scope) = scope {
            statements = statements.into_iter().map(|s| scope.limit(s)).collect();
        }
        // Partial overlaps count: a deny that cuts into an in-envelope pattern breaks part of it.
        let deny_document = merge_statements(&[], &statements);
        let deny = CompiledPolicies::new(&[NamedPolicy {
            name: "firebreak",
            document: &deny_document,
        }]);
        let mut radius = base.blast(|req, was| {
            if deny.overlaps(req) {
                Permit::NotAllowed
            } else {
                was.clone()
            }
        });
        self.add_sharing_losses(&mut radius, base, &deny_document, &statements);

        let policy_name = incident_policy_name(input.incident);
        let existing = self.inline_policy(&policy_name);
        let merged = merge_statements(
            existing
                .map(|p| p.document.statements.as_slice())
                .unwrap_or(&[]),
            &statements,
        );
        let rejected = self.over_budget(&policy_name, &merged.to_value(), "this deny");
        let spec = ActionSpec::MergeDeny {
            role_name: self.name.clone(),
            policy_name: policy_name.clone(),
            statements: statements.iter().map(Statement::to_value).collect(),
            breach: BreachSpec {
                action: breach.action.to_string(),
                resource: breach.resource.to_string(),
            },
            pre_image: existing.map(|p| p.raw.clone()),
            scope: scope.cloned(),
        };
        let whose = match scope {
            Some(s) => format!(
                "for ServiceAccount {}/{}'s sessions of role {} only",
                s.namespace, s.service_account, self.name
            ),
            None => format!("for role {} only", self.name),
        };
        Candidate {
            kind: ActionKind::AwsInlineDeny,
            target: self.arn.clone(),
            granularity: format!("Deny {} on {} {whose}", breach.action, breach.resource),
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

    /// What other ServiceAccounts sharing the role lose to `deny`, each evaluated with its own
    /// session tags: a deny scoped to the agent's tags leaves them untouched.
    fn add_sharing_losses(
        &self,
        radius: &mut BlastRadius,
        base: &Baseline<'_>,
        deny: &PolicyDocument,
        statements: &[Statement],
    ) {
        if self.sharing().is_empty() {
            return;
        }
        let mut current = self.policies();
        current.push(NamedPolicy {
            name: "firebreak",
            document: deny,
        });
        let after = CompiledPolicies::new(&current);
        for other in self.sharing() {
            let ctx = other.session_context();
            for s in statements {
                for action in s.action.values() {
                    for resource in s.resource.iter().flat_map(|r| r.values()) {
                        let req = Request { action, resource };
                        let was = base.compiled.evaluate_in(&req, &ctx).permit;
                        let now = after.evaluate_in(&req, &ctx).permit;
                        let what = || {
                            format!(
                                "{action} on {resource} for ServiceAccount {}, which shares the role",
                                other.service_account()
                            )
                        };
                        classify(radius, what, &was, &now);
                    }
                }
            }
        }
        radius.broken = radius.items.len();
    }

    fn over_budget(&self, policy_name: &str, document: &Value, what: &str) -> Option<String> {
        let needed = iam_size(document);
        let used = self.inline_chars_used_except(policy_name);
        (used + needed > INLINE_BUDGET).then(|| {
            format!(
                "the role's inline policies use {used} of {INLINE_BUDGET} characters and {what} needs {needed}: over IAM's quota"
            )
        })
    }

    fn remove_candidate(
        &self,
        kind: ActionKind,
        policy: &ObservedPolicy,
        breach: &Request<'_>,
        base: &Baseline<'_>,
    ) -> Candidate {
        let without =
            |req: &Request<'_>| base.compiled.evaluate_without(&policy.name, req, &base.ctx);
        let mut radius = base.blast(|req, _| without(req).permit);
        // Removing a policy takes it from every session of the role, whoever they belong to.
        radius.items.extend(self.sharing().iter().map(|other| {
            format!(
                "every permission of {} for ServiceAccount {}, which shares the role",
                policy.name,
                other.service_account()
            )
        }));
        radius.broken = radius.items.len();
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

    /// The trust-policy Deny that stops new credentials for the agent's ServiceAccount only, or
    /// why there is none.
    fn trust_cut(&self, agent: &Agent<'_>, link: &Link) -> Result<Value, String> {
        let sid = sid("FirebreakTrustDeny", &[&agent.subject]);
        match link {
            Link::Irsa(provider_arn) => {
                let issuer = provider_arn
                    .split_once("oidc-provider/")
                    .map(|(_, host)| host)
                    .unwrap_or(provider_arn);
                Ok(json!({
                    "Sid": sid,
                    "Effect": "Deny",
                    "Principal": {"Federated": provider_arn},
                    "Action": "sts:AssumeRoleWithWebIdentity",
                    "Condition": {"StringEquals": {format!("{issuer}:sub"): agent.subject}}
                }))
            }
            Link::PodIdentity => {
                if let Some(pi) = &self.pod_identity {
                    if pi.agent.iter().any(|a| a.disable_session_tags == Some(true)) {
                        return Err(format!(
                            "the Pod Identity association of {} disables session tags: a Deny on request tags would never match; cut the link with eks.delete_pod_identity_association",
                            agent.name()
                        ));
                    }
                }
                // EKS's Pod Identity agent calls AssumeRole and TagSession with these tags.
                let mut tags = serde_json::Map::new();
                tags.insert(
                    "aws:RequestTag/kubernetes-namespace".into(),
                    agent.namespace.into(),
                );
                tags.insert(
                    "aws:RequestTag/kubernetes-service-account".into(),
                    agent.service_account.into(),
                );
                if let Some(pi) = &self.pod_identity {
                    tags.insert(
                        "aws:RequestTag/eks-cluster-name".into(),
                        pi.cluster.clone().into(),
                    );
                }
                Ok(json!({
                    "Sid": sid,
                    "Effect": "Deny",
                    "Principal": {"Service": POD_IDENTITY_SERVICE},
                    "Action": ["sts:AssumeRole", "sts:TagSession"],
                    "Condition": {"StringEquals": tags}
                }))
            }
            Link::Unknown => Err(format!(
                "the trust policy trusts neither an IRSA OIDC provider nor EKS Pod Identity ({POD_IDENTITY_SERVICE}): no ServiceAccount link to narrow"
            )),
        }
    }

    fn trust_deny(
        &self,
        agent: &Agent<'_>,
        cut: &Result<Value, String>,
        everything: BlastRadius,
    ) -> Candidate {
        let via = match cut {
            Ok(s) if s["Principal"]["Service"] == POD_IDENTITY_SERVICE => "Pod Identity",
            _ => "IRSA",
        };
        Candidate {
            kind: ActionKind::AwsTrustDeny,
            target: format!("{} trust policy", self.arn),
            granularity: format!(
                "new {via} credentials for ServiceAccount {}",
                agent.subject
            ),
            blast_radius: everything,
            blocks: cut.is_ok(),
            inverse: "remove the Deny from the trust policy".into(),
            verify: "read back the trust policy: the Deny for this ServiceAccount is present".into(),
            enforcement: Enforcement::Durable,
            rejected: cut.as_ref().err().cloned(),
            notes: vec![
                "cuts the federation link only: credentials issued before it stay valid until they expire (1 h by default); follow with aws.revoke_sessions".into(),
            ],
            spec: ActionSpec::TrustDeny {
                role_name: self.name.clone(),
                statement: cut.as_ref().cloned().unwrap_or(Value::Null),
                pre_image: self.trust.raw.clone(),
            }
            .to_value(),
        }
    }

    /// How the agent's link to the role is already cut, if it is: revoking sessions before
    /// that is pointless, the pod would get fresh credentials at once.
    fn link_cut(
        &self,
        agent: &Agent<'_>,
        link: &Link,
        trust_cut: Option<&Value>,
    ) -> Option<String> {
        let no_association = self
            .pod_identity
            .as_ref()
            .filter(|pi| pi.agent.is_empty())
            .map(|pi| {
                format!(
                    "no Pod Identity association of {} in cluster {} uses the role",
                    agent.name(),
                    pi.cluster
                )
            });
        let denied = trust_cut
            .and_then(parse_statement)
            .is_some_and(|ours| self.trust.document.statements.contains(&ours))
            .then(|| {
                format!(
                    "the trust policy holds Firebreak's Deny for {}",
                    agent.subject
                )
            });
        match link {
            // A role trusting both IRSA and Pod Identity: the IRSA deny leaves Pod Identity open.
            Link::Irsa(_) if trusts_pod_identity(&self.trust.document) => {
                denied.zip(no_association).map(|(a, b)| format!("{a}; {b}"))
            }
            Link::Irsa(_) | Link::Unknown => denied,
            Link::PodIdentity => denied.or(no_association),
        }
    }

    fn revoke_sessions(
        &self,
        input: &PlanInput<'_>,
        scope: Option<&SessionScope>,
        cut: Option<String>,
        mut radius: BlastRadius,
    ) -> Candidate {
        let policy_name = revocation_policy_name(input.incident);
        if scope.is_none() {
            radius.items.extend(self.sharing().iter().map(|other| {
                format!(
                    "every session of ServiceAccount {} issued before the revocation (it shares the role)",
                    other.service_account()
                )
            }));
            radius.broken = radius.items.len();
        }
        let example = merge_statements(&[], &[revocation_statement("2026-01-01T00:00:00Z", scope)]);
        let rejected = match &cut {
            None => Some(
                "only after a trust cut: alone it does nothing, the pod gets fresh credentials (IRSA re-assumes, Pod Identity re-issues); cut the link first with aws.trust_deny or eks.delete_pod_identity_association"
                    .to_string(),
            ),
            Some(_) => self.over_budget(&policy_name, &example.to_value(), "the revocation"),
        };
        let mut notes = vec![
            "denies every action to credentials issued before the moment of apply (aws:TokenIssueTime); credentials issued later are governed by the cut link".to_string(),
        ];
        notes.extend(cut.iter().map(|why| format!("the link is cut: {why}")));
        let granularity = match scope {
            Some(s) => format!(
                "sessions of ServiceAccount {}/{} on role {} issued before the revocation",
                s.namespace, s.service_account, self.name
            ),
            None => format!(
                "every session of role {} issued before the revocation",
                self.name
            ),
        };
        Candidate {
            kind: ActionKind::AwsRevokeSessions,
            target: self.arn.clone(),
            granularity,
            blast_radius: radius,
            blocks: cut.is_some(),
            inverse: format!("delete inline policy {policy_name}"),
            verify: format!(
                "read back {policy_name}: a Deny of everything before the issue time of apply"
            ),
            enforcement: Enforcement::Durable,
            rejected,
            notes,
            spec: ActionSpec::RevokeSessions {
                role_name: self.name.clone(),
                policy_name,
                scope: scope.cloned(),
            }
            .to_value(),
        }
    }

    fn delete_associations(
        &self,
        input: &PlanInput<'_>,
        agent: &Agent<'_>,
        link: &Link,
        everything: BlastRadius,
    ) -> Vec<Candidate> {
        let rejected = |why: String| Candidate {
            kind: ActionKind::EksDeletePodIdentityAssociation,
            target: format!("Pod Identity association of {}", agent.name()),
            granularity: format!("new Pod Identity credentials for {}", agent.name()),
            blast_radius: everything.clone(),
            blocks: false,
            inverse: "create the association again".into(),
            verify: "list the ServiceAccount's associations".into(),
            enforcement: Enforcement::Durable,
            rejected: Some(why),
            notes: vec![],
            spec: Value::Null,
        };
        let Some(pi) = &self.pod_identity else {
            return match link {
                Link::PodIdentity => vec![rejected(
                    "no EKS cluster is configured (aws.eks.cluster): Firebreak cannot see Pod Identity associations".into(),
                )],
                _ => vec![],
            };
        };
        if pi.agent.is_empty() {
            return vec![rejected(format!(
                "no Pod Identity association of {} in cluster {} uses the role: the link is already cut",
                agent.name(),
                pi.cluster
            ))];
        }
        pi.agent
            .iter()
            .map(|association| Candidate {
                kind: ActionKind::EksDeletePodIdentityAssociation,
                target: format!("EKS cluster {} association {}", pi.cluster, association.id),
                granularity: format!(
                    "new Pod Identity credentials of role {} for ServiceAccount {}",
                    self.name,
                    agent.name()
                ),
                blast_radius: everything.clone(),
                blocks: true,
                inverse: "create the association again from the journaled snapshot (idempotent: one creation however often it runs)".into(),
                verify: format!(
                    "list the associations of {} in cluster {}: none left",
                    agent.name(),
                    pi.cluster
                ),
                enforcement: Enforcement::Durable,
                rejected: None,
                notes: vec![
                    "cuts the federation link only: credentials issued before it stay valid until they expire; follow with aws.revoke_sessions".into(),
                ],
                spec: ActionSpec::DeletePodIdentityAssociation {
                    cluster: pi.cluster.clone(),
                    association: association.clone(),
                    client_request_token: sid("firebreak-", &[input.incident, &association.id]),
                }
                .to_value(),
            })
            .collect()
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

/// Whether the trust policy lets EKS Pod Identity assume the role.
fn trusts_pod_identity(trust: &PolicyDocument) -> bool {
    trust.statements.iter().any(|s| {
        s.effect == crate::policy::Effect::Allow
            && s.principal
                .as_ref()
                .and_then(|p| p.get("Service"))
                .is_some_and(|service| match service {
                    Value::String(s) => s == POD_IDENTITY_SERVICE,
                    Value::Array(a) => a.iter().any(|v| v == POD_IDENTITY_SERVICE),
                    _ => false,
                })
    })
}

/// One statement as the policy parser reads it (so key order and string-or-list forms compare
/// equal to what IAM returns).
pub fn parse_statement(statement: &Value) -> Option<Statement> {
    PolicyDocument::from_json_value(&json!({"Statement": [statement]}))
        .ok()?
        .statements
        .pop()
}

/// The revocation Deny: every action, for credentials issued before `issued_before` (ISO 8601),
/// limited to one ServiceAccount's sessions when `scope` is set.
pub fn revocation_statement(issued_before: &str, scope: Option<&SessionScope>) -> Statement {
    let mut condition = json!({"DateLessThan": {"aws:TokenIssueTime": issued_before}});
    if let Some(scope) = scope {
        condition["StringEquals"] = scope.tags();
    }
    let mut statement = deny_statement(REVOCATION_SID, &["*".to_string()], &["*".to_string()]);
    statement.condition = Some(condition);
    statement
}

pub const REVOCATION_SID: &str = "FirebreakRevokeOlderSessions";

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
            pod_identity: None,
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
        let deny = find(&candidates, ActionKind::AwsInlineDeny);
        assert!(deny.spec.get("scope").is_none(), "{}", deny.spec);
        assert!(
            deny.blast_radius
                .items
                .iter()
                .any(|i| i.contains("billing/ledger")),
            "an unscoped deny also denies the ServiceAccount sharing the role: {:?}",
            deny.blast_radius
        );
        let trust = find(&candidates, ActionKind::AwsTrustDeny);
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
        assert!(find(&linked, ActionKind::AwsRevokeSessions)
            .rejected
            .is_some());
        let cut = plan(&pod_role(vec![]), "arn:aws:s3:::partner-payouts/*");
        let revoke = find(&cut, ActionKind::AwsRevokeSessions);
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
        let provider =
            "arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/X";
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
        assert!(find(&linked, ActionKind::AwsRevokeSessions)
            .rejected
            .is_some());

        dual.pod_identity = pod_role(vec![]).pod_identity;
        let cut = plan(&dual, "arn:aws:s3:::partner-payouts/*");
        assert_eq!(find(&cut, ActionKind::AwsRevokeSessions).rejected, None);
    }
}
