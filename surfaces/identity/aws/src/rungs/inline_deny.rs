//! `aws.inline_deny`: the breached action on the breached resource, denied by a daemon-owned
//! inline policy (`firebreak-<incident>`, one per incident, statements merged by Sid). When the
//! role could undo it (IAM writes on its own role) or escape it (new or other principals and
//! credentials, role assumption), those actions are denied too, in one more statement; on a Pod
//! Identity role with session tags the deny is limited to the agent's ServiceAccount.

use firebreak_containment::plan::BlastRadius;
use firebreak_containment::plane::{
    Change, Check, Outcome, PlanInput, PlaneError, Proposal, Verification,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    classify, describe, incident_policy_name, merge_statements, request, sid, AwsSpec, Baseline,
    BreachSpec, SessionScope, ESCAPE_ACTIONS, SELF_UNDO_ACTIONS, TRUST_GRANTED_ACTIONS,
    TRUST_WRITE_ACTIONS,
};
use crate::client::{parse, statements_of, Iam};
use crate::policy::{
    deny_statement, CompiledPolicies, NamedPolicy, Permit, PolicyDocument, Request, Statement,
};
use crate::role::RoleState;

/// Merge `statements` into the daemon-owned inline policy `policy_name` (one per incident).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    /// The role, by ARN (verification reads it whole) and by name.
    pub role_arn: String,
    pub role_name: String,
    pub policy_name: String,
    pub statements: Vec<Value>,
    pub breach: BreachSpec,
    /// The incident policy as it was before (usually absent).
    pub pre_image: Option<Value>,
    /// Set when the statements only apply to one ServiceAccount's Pod Identity sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<SessionScope>,
}

pub(crate) fn propose(
    role: &RoleState,
    input: &PlanInput<'_>,
    breach: &Request<'_>,
    base: &Baseline<'_>,
    scope: Option<&SessionScope>,
    notes: &[String],
) -> Proposal<AwsSpec> {
    let mut notes = notes.to_vec();
    let mut statements = vec![deny_statement(
        &sid("FirebreakDeny", &[breach.action, breach.resource]),
        &[breach.action.to_string()],
        &[breach.resource.to_string()],
    )];
    let protection = Protection::of(base);
    notes.extend(protection.notes());
    if !protection.is_empty() {
        statements.push(deny_statement(
            PROTECT_SID,
            &protection.actions(),
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
    // The agent was seen using these, so a resource policy grants them: the deny stops them too.
    for entry in base.granted_elsewhere() {
        if deny.overlaps(&request(entry)) {
            radius.items.push(format!(
                "{} (granted by a resource policy, which the deny overrides)",
                describe(entry)
            ));
        }
    }
    radius.broken = radius.items.len();
    add_sharing_losses(role, &mut radius, base, &deny_document, &statements);

    let policy_name = incident_policy_name(input.incident);
    let existing = role.inline_policy(&policy_name);
    let merged = merge_statements(
        existing
            .map(|p| p.document.statements.as_slice())
            .unwrap_or(&[]),
        &statements,
    );
    let rejected = role.over_budget(&policy_name, &merged.to_value(), "this deny");
    let spec = AwsSpec::InlineDeny(Spec {
        role_arn: role.arn.clone(),
        role_name: role.name.clone(),
        policy_name: policy_name.clone(),
        statements: statements.iter().map(Statement::to_value).collect(),
        breach: BreachSpec {
            action: breach.action.to_string(),
            resource: breach.resource.to_string(),
        },
        pre_image: existing.map(|p| p.raw.clone()),
        scope: scope.cloned(),
    });
    let whose = match scope {
        Some(s) => format!(
            "for ServiceAccount {}/{}'s sessions of role {} only",
            s.namespace, s.service_account, role.name
        ),
        None => format!("for role {} only", role.name),
    };
    Proposal {
        blast_radius: radius,
        inverse: format!(
            "remove these statements from inline policy {policy_name}; delete it when empty"
        ),
        verify: format!(
            "read back {policy_name}, compare the parsed statements, and re-evaluate the breach as denied"
        ),
        rejected,
        notes,
        ..Proposal::new(
            role.arn.clone(),
            format!("Deny {} on {} {whose}", breach.action, breach.resource),
            spec,
        )
    }
}

/// The Sid of the statement that protects the containment (self-undo and escape actions).
pub const PROTECT_SID: &str = "FirebreakProtectContainment";

/// The IAM and STS actions the deny covers besides the breach, on every resource, because the
/// role may call them (its identity policies allow them, or it is undetermined): each list in
/// the order of its constant.
#[derive(Debug)]
pub(crate) struct Protection {
    /// Writes that would undo the deny ([`SELF_UNDO_ACTIONS`]).
    pub self_undo: Vec<String>,
    /// Actions that would escape it with other principals or credentials ([`ESCAPE_ACTIONS`]).
    pub escape: Vec<String>,
    /// [`TRUST_GRANTED_ACTIONS`] no identity policy grants, denied because the role may write
    /// a trust policy naming itself ([`TRUST_WRITE_ACTIONS`]); these are also in `escape`.
    pub through_trust: Vec<String>,
}

impl Protection {
    pub fn of(base: &Baseline<'_>) -> Protection {
        let may = |action: &str| {
            base.evaluate(&Request {
                action,
                resource: "*",
            })
            .permit
                != Permit::NotAllowed
        };
        let held = |actions: &[&str]| -> Vec<String> {
            actions
                .iter()
                .filter(|a| may(a))
                .map(|a| a.to_string())
                .collect()
        };
        let self_undo = held(SELF_UNDO_ACTIONS);
        let mut escape = held(ESCAPE_ACTIONS);
        let mut through_trust = Vec::new();
        if TRUST_WRITE_ACTIONS.iter().any(|a| may(a)) {
            for action in TRUST_GRANTED_ACTIONS {
                if !escape.iter().any(|e| e == action) {
                    escape.push(action.to_string());
                    through_trust.push(action.to_string());
                }
            }
        }
        Protection {
            self_undo,
            escape,
            through_trust,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.self_undo.is_empty() && self.escape.is_empty()
    }

    pub fn actions(&self) -> Vec<String> {
        self.self_undo.iter().chain(&self.escape).cloned().collect()
    }

    /// What the plan says about them: which actions are denied, and why.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if !self.self_undo.is_empty() {
            notes.push(format!(
                "the role itself may call {}: the deny covers those IAM writes too, so the agent cannot delete its own containment",
                self.self_undo.join(", ")
            ));
        }
        if !self.escape.is_empty() {
            notes.push(format!(
                "the deny also covers the escape actions {}, which the role may call: the agent cannot get around its containment with new or other principals or credentials (users, access keys, passwords, roles, policies, identity providers, role assumption)",
                self.escape.join(", ")
            ));
        }
        if !self.through_trust.is_empty() {
            notes.push(format!(
                "no identity policy of the role grants {}, but the role may write trust policies ({}), and a trust policy that names the role grants it on its own: it is denied in case the agent already wrote one",
                self.through_trust.join(", "),
                TRUST_WRITE_ACTIONS.join(", ")
            ));
        }
        notes
    }
}

/// What other ServiceAccounts sharing the role lose to `deny`, each evaluated with its own
/// session tags: a deny scoped to the agent's tags leaves them untouched.
fn add_sharing_losses(
    role: &RoleState,
    radius: &mut BlastRadius,
    base: &Baseline<'_>,
    deny: &PolicyDocument,
    statements: &[Statement],
) {
    if role.sharing().is_empty() {
        return;
    }
    let mut current = role.policies();
    current.push(NamedPolicy {
        name: "firebreak",
        document: deny,
    });
    let after = CompiledPolicies::new(&current);
    for other in role.sharing() {
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

/// The incident policy's statements as IAM holds them now (`None`: no such policy), and ours.
async fn read(
    iam: &Iam,
    spec: &Spec,
) -> Result<(Option<Vec<Statement>>, Vec<Statement>), PlaneError> {
    let ours = statements_of(&spec.statements)?;
    let present = match iam
        .inline_document(&spec.role_name, &spec.policy_name)
        .await?
    {
        Some(doc) => Some(parse(&doc, &spec.policy_name)?.statements),
        None => None,
    };
    Ok((present, ours))
}

pub(crate) async fn change(iam: &Iam, spec: &Spec, change: Change) -> Result<Outcome, PlaneError> {
    let (role, policy) = (&spec.role_name, &spec.policy_name);
    let (present, ours) = read(iam, spec).await?;
    let holds_all = present
        .as_ref()
        .is_some_and(|p| ours.iter().all(|s| p.contains(s)));
    Ok(match change {
        Change::Apply if holds_all => {
            Outcome::unchanged(format!("{policy} already holds the deny"))
        }
        Change::Apply => {
            let merged = merge_statements(present.as_deref().unwrap_or(&[]), &ours);
            iam.put_inline(role, policy, &merged.to_value()).await?;
            Outcome::changed(format!("put inline policy {policy} on {role}"))
        }
        Change::Revert => {
            let Some(present) = present else {
                return Ok(Outcome::unchanged(format!("{policy} was already gone")));
            };
            let rest: Vec<Statement> = present
                .into_iter()
                .filter(|s| !ours.iter().any(|o| o.sid == s.sid))
                .collect();
            if rest.is_empty() {
                iam.delete_inline(role, policy).await?;
                Outcome::changed(format!("deleted {policy}"))
            } else {
                let remaining = merge_statements(&rest, &[]);
                iam.put_inline(role, policy, &remaining.to_value()).await?;
                Outcome::changed(format!(
                    "removed this plan's statements from {policy}; {} remain",
                    rest.len()
                ))
            }
        }
    })
}

pub(crate) async fn check(
    iam: &Iam,
    spec: &Spec,
    check: Check,
) -> Result<Verification, PlaneError> {
    let policy = &spec.policy_name;
    let (present, ours) = read(iam, spec).await?;
    let holds = |all: bool| {
        present.as_ref().is_some_and(|p| {
            if all {
                ours.iter().all(|s| p.contains(s))
            } else {
                ours.iter().any(|s| p.contains(s))
            }
        })
    };
    Ok(match check {
        Check::Applied if !holds(true) => {
            Verification::failed(format!("{policy} lacks this plan's deny"))
        }
        Check::Applied => {
            // Read back is not enough: re-evaluate the breach against every policy of the role.
            let state = iam.observe_role(&spec.role_arn).await?;
            let request = Request {
                action: &spec.breach.action,
                resource: &spec.breach.resource,
            };
            // A scoped deny is evaluated as the agent's sessions see it.
            let ctx = spec
                .scope
                .as_ref()
                .map(SessionScope::context)
                .unwrap_or_default();
            let compiled = CompiledPolicies::new(&state.policies());
            match compiled.evaluate_in(&request, &ctx).permit {
                Permit::NotAllowed => Verification::ok(format!(
                    "{policy} read back; {} on {} evaluates as denied",
                    spec.breach.action, spec.breach.resource
                )),
                other => Verification::failed(format!("the breach still evaluates as {other:?}")),
            }
        }
        Check::Reverted if holds(false) => {
            Verification::failed(format!("{policy} still holds this plan's deny"))
        }
        Check::Reverted => Verification::ok(format!("{policy} no longer holds this plan's deny")),
    })
}
