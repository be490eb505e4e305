//! The AWS ladder, one file per rung: `aws.inline_deny` → `aws.detach_policy` →
//! `aws.delete_inline_policy` → `aws.trust_deny` → `aws.revoke_sessions` →
//! `eks.delete_pod_identity_association`. Each rung's file holds its spec, how it is proposed
//! from a [`RoleState`] (blast radius included, no I/O), and its change and check. This module
//! holds what the rungs share: the spec enum, the baseline the blast radius is measured
//! against, and who the agent is to the role.

pub mod delete_association;
pub mod delete_inline_policy;
pub mod detach_policy;
pub mod inline_deny;
pub mod revoke_sessions;
pub mod trust_deny;

use firebreak_containment::alert::Parameter;
use firebreak_containment::envelope::{IdentityUse, Observed};
use firebreak_containment::ids::IncidentId;
use firebreak_containment::plan::BlastRadius;
use firebreak_containment::plane::{KindSpec, Observation, PlanInput, PlaneError, Proposal};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::policy::{
    CompiledPolicies, Context, Evaluation, NamedPolicy, Permit, PolicyDocument, Request, Statement,
};
use crate::role::{
    iam_size, session_context, Association, ObservedPolicy, RoleState, INLINE_BUDGET,
    PRINCIPAL_TAG_NAMESPACE, PRINCIPAL_TAG_SERVICE_ACCOUNT,
};
use crate::PLANE;

pub static INLINE_DENY: KindSpec = KindSpec::durable("aws", "aws.inline_deny", 0, false);
pub static DETACH_POLICY: KindSpec = KindSpec::durable("aws", "aws.detach_policy", 1, false);
pub static DELETE_INLINE_POLICY: KindSpec =
    KindSpec::durable("aws", "aws.delete_inline_policy", 2, false);
pub static TRUST_DENY: KindSpec = KindSpec::durable("aws", "aws.trust_deny", 3, true);
pub static REVOKE_SESSIONS: KindSpec = KindSpec::durable("aws", "aws.revoke_sessions", 4, true);
pub static DELETE_POD_IDENTITY_ASSOCIATION: KindSpec =
    KindSpec::durable("aws", "eks.delete_pod_identity_association", 5, true);

pub const KINDS: &[&KindSpec] = &[
    &INLINE_DENY,
    &DETACH_POLICY,
    &DELETE_INLINE_POLICY,
    &TRUST_DENY,
    &REVOKE_SESSIONS,
    &DELETE_POD_IDENTITY_ASSOCIATION,
];

/// What an AWS action does, journaled inside the intent: everything needed to apply, verify and
/// undo it, including the pre-image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rung", rename_all = "snake_case")]
pub enum AwsSpec {
    InlineDeny(inline_deny::Spec),
    DetachPolicy(detach_policy::Spec),
    DeleteInlinePolicy(delete_inline_policy::Spec),
    TrustDeny(trust_deny::Spec),
    RevokeSessions(revoke_sessions::Spec),
    DeletePodIdentityAssociation(delete_association::Spec),
}

impl AwsSpec {
    pub fn kind(&self) -> &'static KindSpec {
        match self {
            AwsSpec::InlineDeny(_) => &INLINE_DENY,
            AwsSpec::DetachPolicy(_) => &DETACH_POLICY,
            AwsSpec::DeleteInlinePolicy(_) => &DELETE_INLINE_POLICY,
            AwsSpec::TrustDeny(_) => &TRUST_DENY,
            AwsSpec::RevokeSessions(_) => &REVOKE_SESSIONS,
            AwsSpec::DeletePodIdentityAssociation(_) => &DELETE_POD_IDENTITY_ASSOCIATION,
        }
    }
}

/// The words and spec of a policy removal (detach or delete), for [`RoleState::remove_candidate`].
pub(crate) struct Removal {
    pub spec: AwsSpec,
    pub granularity: String,
    pub inverse: String,
    pub verify: String,
}

/// IAM actions with which a principal could undo a deny on its own role: rewrite or remove the
/// role's policies, boundary or trust, or the role itself. If the agent holds any of them, the
/// containment denies them too: an agent must not delete its own containment.
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

/// IAM and STS actions with which a principal could escape a deny on its own role without
/// touching it: act as another principal, new or existing, by minting its credentials, widening
/// its permissions or becoming it. If the agent holds any of them, the containment denies them
/// too, in the same statement as [`SELF_UNDO_ACTIONS`] (which already deny, on every role,
/// rewriting another role's policies or trust).
///
/// Left out on purpose, because a deny on the agent's role cannot stop them:
/// `sts:AssumeRoleWithWebIdentity` and `sts:AssumeRoleWithSAML` are called without AWS
/// credentials (IAM never evaluates the caller's policies; the trust and provider writes below
/// are what they depend on), and `sts:GetFederationToken` / `sts:GetSessionToken` only accept an
/// IAM user's long-term credentials, which a role session is not (creating those is denied here).
pub const ESCAPE_ACTIONS: &[&str] = &[
    // Credentials for a new or an existing user.
    "iam:CreateUser",
    "iam:CreateAccessKey",
    "iam:UpdateAccessKey",
    "iam:CreateLoginProfile",
    "iam:UpdateLoginProfile",
    "iam:CreateServiceSpecificCredential",
    "iam:ResetServiceSpecificCredential",
    "iam:UpdateServiceSpecificCredential",
    "iam:UploadSSHPublicKey",
    "iam:UpdateSSHPublicKey",
    "iam:UploadSigningCertificate",
    "iam:UpdateSigningCertificate",
    // Permissions for a user the agent holds credentials of, directly or through a group.
    "iam:AttachUserPolicy",
    "iam:PutUserPolicy",
    "iam:PutUserPermissionsBoundary",
    "iam:DeleteUserPermissionsBoundary",
    "iam:CreateGroup",
    "iam:AddUserToGroup",
    "iam:AttachGroupPolicy",
    "iam:PutGroupPolicy",
    "iam:CreatePolicy",
    // Another role to act as: a new one, one handed to a service (EC2, Lambda, ECS… run code
    // with it; adding a role to an instance profile needs it too), or one assumed directly.
    "iam:CreateRole",
    "iam:PassRole",
    "sts:AssumeRole",
    // Root sessions on member accounts (Organizations centralized root access).
    "sts:AssumeRoot",
    // Identity providers whose assertions or tokens existing roles trust.
    "iam:CreateSAMLProvider",
    "iam:UpdateSAMLProvider",
    "iam:CreateOpenIDConnectProvider",
];

/// Escape actions a role session can be granted by a resource policy alone: in one account, a
/// role trust policy that names the agent's role lets it assume that role whatever the agent's
/// identity policies say. They are denied when the role may write such a trust policy
/// ([`TRUST_WRITE_ACTIONS`]) even if no identity policy grants them, since one may already exist.
pub const TRUST_GRANTED_ACTIONS: &[&str] = &["sts:AssumeRole"];

/// IAM writes that set a role's trust policy (on a new role or an existing one).
pub const TRUST_WRITE_ACTIONS: &[&str] = &["iam:CreateRole", "iam:UpdateAssumeRolePolicy"];

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

    pub(crate) fn tags(&self) -> Value {
        json!({
            PRINCIPAL_TAG_NAMESPACE: self.namespace,
            PRINCIPAL_TAG_SERVICE_ACCOUNT: self.service_account,
        })
    }

    pub fn context(&self) -> Context {
        session_context(&self.namespace, &self.service_account)
    }

    pub(crate) fn limit(&self, mut statement: Statement) -> Statement {
        statement.condition = Some(self.condition());
        statement
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BreachSpec {
    pub action: String,
    pub resource: String,
}

/// The daemon-owned inline policy of one incident.
pub fn incident_policy_name(incident: &IncidentId) -> String {
    format!("firebreak-{incident}")
}

/// The daemon-owned session-revocation policy of one incident.
pub fn revocation_policy_name(incident: &IncidentId) -> String {
    format!("firebreak-revoke-{incident}")
}

/// The trust principal of EKS Pod Identity.
pub const POD_IDENTITY_SERVICE: &str = "pods.eks.amazonaws.com";

pub(crate) fn sid(prefix: &str, parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    format!("{prefix}{}", &hex::encode(h.finalize())[..10])
}

pub(crate) fn describe(e: &IdentityUse) -> String {
    format!("{} on {}", e.action, e.resource)
}

/// The envelope's permitted identity uses, each with its permission today (computed once).
pub(crate) struct Baseline<'a> {
    pub compiled: CompiledPolicies,
    /// What is known about the agent's sessions (its Pod Identity session tags).
    pub ctx: Context,
    entries: Vec<(&'a IdentityUse, Permit)>,
}

impl<'a> Baseline<'a> {
    pub fn new(
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

    pub fn evaluate(&self, req: &Request<'_>) -> Evaluation {
        self.compiled.evaluate_in(req, &self.ctx)
    }

    /// Broken = certainly permitted before and certainly not after. Any change that involves a
    /// condition we do not evaluate is undetermined, never silently counted either way.
    pub fn blast(&self, after: impl Fn(&Request<'_>, &Permit) -> Permit) -> BlastRadius {
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

    /// Permitted envelope entries that no identity policy of the role grants: the agent was seen
    /// using them, so a resource policy (a bucket policy, another role's trust policy) does. An
    /// explicit deny on the role still stops them, which [`Baseline::blast`] does not count.
    pub fn granted_elsewhere(&self) -> impl Iterator<Item = &'a IdentityUse> + '_ {
        self.entries
            .iter()
            .filter(|(_, was)| *was == Permit::NotAllowed)
            .map(|(entry, _)| *entry)
    }
}

pub(crate) fn request(e: &IdentityUse) -> Request<'_> {
    Request {
        action: &e.action,
        resource: &e.resource,
    }
}

/// Adds `what` to the radius when it goes from allowed to denied, or to undetermined when a
/// condition we do not evaluate decides it.
/// `what` is only rendered when it is added: most entries are unaffected.
pub(crate) fn classify(
    radius: &mut BlastRadius,
    what: impl FnOnce() -> String,
    was: &Permit,
    now: &Permit,
) {
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

pub(crate) fn blocks(eval: Evaluation) -> Result<(), String> {
    match eval.permit {
        Permit::NotAllowed => Ok(()),
        Permit::Allowed => Err(format!(
            "the breach stays allowed by {}",
            eval.allowed_by.join(", ")
        )),
        Permit::Indeterminate(why) => Err(format!("whether it blocks depends on {why}")),
    }
}

impl Observation<AwsSpec> for RoleState {
    fn candidates(&self, input: &PlanInput<'_>) -> Result<Vec<Proposal<AwsSpec>>, PlaneError> {
        let Parameter::Identity { action, resource } = &input.alert.parameter else {
            return Err(PlaneError::Unsupported {
                plane: PLANE,
                detail: format!("dimension {} is not identity", input.alert.dimension()),
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

        let mut out = vec![inline_deny::propose(
            self,
            input,
            &breach,
            &base,
            scope.as_ref(),
            &notes,
        )];
        let granted = |p: &&ObservedPolicy| now.allowed_by.contains(&p.name);
        for policy in self.managed.iter().filter(granted) {
            out.push(detach_policy::propose(self, policy, &breach, &base));
        }
        for policy in self.inline.iter().filter(granted) {
            out.push(delete_inline_policy::propose(self, policy, &breach, &base));
        }
        // A trust cut or session revocation stops every permission the role grants.
        let everything = base.blast(|_, _| Permit::NotAllowed);
        let trust_cut = trust_deny::cut(self, &agent, &link);
        out.push(trust_deny::propose(
            self,
            &agent,
            &trust_cut,
            everything.clone(),
        ));
        let link_cut = revoke_sessions::link_cut(self, &agent, &link, trust_cut.as_ref().ok());
        out.push(revoke_sessions::propose(
            self,
            input,
            scope.as_ref(),
            link_cut,
            everything.clone(),
        ));
        out.extend(delete_association::propose(
            self, input, &agent, &link, everything,
        ));
        Ok(out)
    }
}

/// The agent's Kubernetes identity, as the alert names it.
pub(crate) struct Agent<'i> {
    pub namespace: &'i str,
    pub service_account: &'i str,
    /// `system:serviceaccount:NS:SA`, the IRSA token subject.
    pub subject: String,
}

impl<'i> Agent<'i> {
    pub fn of(input: &PlanInput<'i>) -> Agent<'i> {
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

    pub fn name(&self) -> String {
        format!("{}/{}", self.namespace, self.service_account)
    }
}

/// How pods get the role's credentials, read from its trust policy.
pub(crate) enum Link {
    /// IRSA: web identity through the cluster's OIDC provider (this ARN).
    Irsa(String),
    /// EKS Pod Identity: `pods.eks.amazonaws.com` assumes the role and tags the session.
    PodIdentity,
    Unknown,
}

impl RoleState {
    pub(crate) fn link(&self) -> Link {
        match irsa_provider(&self.trust.document) {
            Some(provider) => Link::Irsa(provider),
            None if trusts_pod_identity(&self.trust.document) => Link::PodIdentity,
            None => Link::Unknown,
        }
    }

    pub(crate) fn sharing(&self) -> &[Association] {
        self.pod_identity
            .as_ref()
            .map(|p| p.sharing.as_slice())
            .unwrap_or(&[])
    }

    /// Whether a Deny can be limited to the agent's sessions, and the note that says why.
    pub(crate) fn session_scope(
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

    pub(crate) fn over_budget(
        &self,
        policy_name: &str,
        document: &Value,
        what: &str,
    ) -> Option<String> {
        let needed = iam_size(document);
        let used = self.inline_chars_used_except(policy_name);
        (used + needed > INLINE_BUDGET).then(|| {
            format!(
                "the role's inline policies use {used} of {INLINE_BUDGET} characters and {what} needs {needed}: over IAM's quota"
            )
        })
    }

    /// Removing one policy of the role (detaching a managed one, deleting an inline one): what
    /// it breaks and whether it blocks, with the rung's own spec and words.
    pub(crate) fn remove_candidate(
        &self,
        policy: &ObservedPolicy,
        breach: &Request<'_>,
        base: &Baseline<'_>,
        words: Removal,
    ) -> Proposal<AwsSpec> {
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
        Proposal {
            blast_radius: radius,
            blocks: verdict.is_ok(),
            inverse: words.inverse,
            verify: words.verify,
            rejected: verdict.err(),
            ..Proposal::new(
                format!("{} / {}", self.arn, policy.id),
                words.granularity,
                words.spec,
            )
        }
    }
}

/// The OIDC provider ARN of the trust policy's web-identity Allow, if any.
pub(crate) fn irsa_provider(trust: &PolicyDocument) -> Option<String> {
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
pub(crate) fn trusts_pod_identity(trust: &PolicyDocument) -> bool {
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
mod tests;
