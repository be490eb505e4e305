//! The local evaluator of IAM's identity-policy logic over [`PolicyDocument`]s.

use std::collections::BTreeMap;

use serde_json::Value;

use super::document::{Effect, Matcher, PolicyDocument, Statement};
use crate::glob::{self, Tok};

/// An (action, resource) request; either may be an IAM glob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    pub action: &'a str,
    pub resource: &'a str,
}

/// Condition-key values known about the requests being evaluated, e.g. the session tags of one
/// Pod Identity ServiceAccount. A key not in the context is unknown: conditions on it stay
/// unevaluated. Keys are case-insensitive, as IAM's are; values are compared exactly.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    keys: BTreeMap<String, String>,
}

impl Context {
    pub fn with(mut self, key: &str, value: &str) -> Context {
        self.keys.insert(key.to_ascii_lowercase(), value.to_owned());
        self
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.keys.get(&key.to_ascii_lowercase()).map(String::as_str)
    }

    /// `Some(outcome)` when every key of `condition` is known and every operator is evaluated
    /// here; `None` otherwise. A single known-false clause decides `false` on its own, since all
    /// operators and keys of a condition must hold.
    fn decides(&self, condition: &Value) -> Option<bool> {
        let Value::Object(ops) = condition else {
            return None;
        };
        let mut outcome = Some(true);
        for (op, block) in ops {
            let Value::Object(keys) = block else {
                return None;
            };
            for (key, expected) in keys {
                let clause = match (op.as_str(), self.get(key)) {
                    ("StringEquals", Some(actual)) => match expected {
                        Value::String(e) => Some(e == actual),
                        Value::Array(es) => Some(es.iter().any(|e| e.as_str() == Some(actual))),
                        _ => None,
                    },
                    _ => None,
                };
                match clause {
                    Some(false) => return Some(false),
                    Some(true) => {}
                    None => outcome = None,
                }
            }
        }
        outcome
    }
}

#[derive(Debug, Clone, Copy)]
pub struct NamedPolicy<'a> {
    pub name: &'a str,
    pub document: &'a PolicyDocument,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Permit {
    /// Some concrete instance of the request is definitely allowed.
    Allowed,
    /// No instance is allowed (explicit or implicit deny).
    NotAllowed,
    /// Hinges on conditions / policy variables we do not evaluate; says which.
    Indeterminate(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    pub permit: Permit,
    /// Policies with an unconditional Allow statement that applies to some
    /// instance of the request (whether or not a Deny then blocks it).
    pub allowed_by: Vec<String>,
    /// Policies with an unconditional Deny that covers the whole request or
    /// blocks part of what an Allow grants.
    pub denied_by: Vec<String>,
    /// `"policy/Sid: key, key"` for every applicable statement whose
    /// conditions or policy variables were not evaluated.
    pub unevaluated_conditions: Vec<String>,
}

/// One compiled pattern. Policy variables become `*`, which over-approximates
/// what the statement can match; `variable` records that this happened.
struct Pat {
    toks: Vec<Tok>,
    variable: bool,
}

struct Compiled {
    negated: bool,
    pats: Vec<Pat>,
}

impl Compiled {
    fn new(m: &Matcher, ci: bool, variables: bool) -> Compiled {
        let (negated, values) = match m {
            Matcher::Only(v) => (false, v),
            Matcher::Not(v) => (true, v),
        };
        let pats = values
            .iter()
            .map(|s| {
                if variables {
                    resource_tokens(s)
                } else {
                    Pat {
                        toks: glob::tokenize(s, ci),
                        variable: false,
                    }
                }
            })
            .collect();
        Compiled { negated, pats }
    }

    /// The element may apply to some instance of `req`. For `Not` lists,
    /// entries with variables are ignored: the variable may resolve to
    /// anything, so they cannot be relied on to exclude the request.
    fn may_overlap(&self, req: &[Tok]) -> bool {
        if self.negated {
            !self
                .pats
                .iter()
                .any(|p| !p.variable && glob::covers_toks(&p.toks, req))
        } else {
            self.pats.iter().any(|p| glob::overlaps_toks(&p.toks, req))
        }
    }

    /// The element may apply to every instance of `req` (exact when no
    /// variables are involved, up to `covers`' soundness).
    fn may_cover(&self, req: &[Tok]) -> bool {
        if self.negated {
            !self
                .pats
                .iter()
                .any(|p| !p.variable && glob::overlaps_toks(&p.toks, req))
        } else {
            self.pats.iter().any(|p| glob::covers_toks(&p.toks, req))
        }
    }
}

/// Tokenizes a Resource value, resolving `${*}`, `${?}`, `${$}` to literal
/// characters and every other `${...}` to a `*` marked as variable.
fn resource_tokens(s: &str) -> Pat {
    let mut toks = Vec::with_capacity(s.len());
    let mut variable = false;
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        toks.extend(glob::tokenize(&rest[..start], false));
        match &rest[start + 2..start + len] {
            "*" => toks.push(Tok::Lit('*')),
            "?" => toks.push(Tok::Lit('?')),
            "$" => toks.push(Tok::Lit('$')),
            _ => {
                toks.push(Tok::Star);
                variable = true;
            }
        }
        rest = &rest[start + len + 1..];
    }
    toks.extend(glob::tokenize(rest, false));
    Pat { toks, variable }
}

/// `${...}` policy variables (escapes excluded) appearing in `s`.
fn variables_in(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        let var = &rest[start..start + len + 1];
        if !matches!(var, "${*}" | "${?}" | "${$}") {
            out.push(var.to_owned());
        }
        rest = &rest[start + len + 1..];
    }
    out
}

/// Part of a request granted by one Allow: alternative supersets of its
/// action side and of its resource side.
type Piece<'s> = (Vec<&'s [Tok]>, Vec<&'s [Tok]>);

struct CompiledStatement {
    policy: String,
    label: String,
    effect: Effect,
    action: Compiled,
    resource: Option<Compiled>,
    /// Condition keys and policy variables we cannot evaluate; empty means the
    /// statement's match is definite.
    unevaluated: Vec<String>,
    /// The non-empty `Condition`, which a request [`Context`] may decide.
    condition: Option<Value>,
    /// `Resource`/`NotResource` holds a policy variable: never definite.
    variables: bool,
}

fn push_unique(v: &mut Vec<String>, s: &str) {
    if !v.iter().any(|x| x == s) {
        v.push(s.to_owned());
    }
}

impl CompiledStatement {
    fn new(policy: &str, index: usize, stmt: &Statement) -> CompiledStatement {
        let label = match &stmt.sid {
            Some(sid) if !sid.is_empty() => format!("{policy}/{sid}"),
            _ => format!("{policy}/Statement[{index}]"),
        };
        let mut unevaluated = Vec::new();
        if stmt.is_conditional() {
            match &stmt.condition {
                Some(Value::Object(ops)) => {
                    for block in ops.values() {
                        if let Value::Object(keys) = block {
                            for key in keys.keys() {
                                push_unique(&mut unevaluated, key);
                            }
                        }
                    }
                    // Operators with empty blocks still make it conditional.
                    if unevaluated.is_empty() {
                        unevaluated.extend(ops.keys().cloned());
                    }
                }
                _ => unevaluated.push("Condition".to_owned()),
            }
        }
        let mut variables = false;
        if let Some(r) = &stmt.resource {
            for value in r.values() {
                for var in variables_in(value) {
                    variables = true;
                    push_unique(&mut unevaluated, &var);
                }
            }
        }
        let resource = stmt
            .resource
            .as_ref()
            .map(|r| Compiled::new(r, false, true));
        CompiledStatement {
            policy: policy.to_owned(),
            label,
            effect: stmt.effect,
            action: Compiled::new(&stmt.action, true, false),
            resource,
            unevaluated,
            condition: stmt
                .is_conditional()
                .then(|| stmt.condition.clone())
                .flatten(),
            variables,
        }
    }

    fn definite(&self) -> bool {
        self.unevaluated.is_empty()
    }

    /// `None`: the statement cannot apply in `ctx` (its condition is known false). Otherwise
    /// whether its match is definite there.
    fn definite_in(&self, ctx: &Context) -> Option<bool> {
        match self.condition.as_ref().map(|c| ctx.decides(c)) {
            Some(Some(false)) => None,
            Some(Some(true)) => Some(!self.variables),
            Some(None) => Some(false),
            None => Some(self.definite()),
        }
    }

    /// Actions are short and usually decide: check them before the (long) resource ARN.
    fn may_overlap(&self, action: &[Tok], resource: &[Tok]) -> bool {
        self.resource.is_some()
            && self.action.may_overlap(action)
            && self
                .resource
                .as_ref()
                .is_some_and(|r| r.may_overlap(resource))
    }

    /// Covers a piece given as alternative supersets: covering any one of them
    /// covers the piece.
    fn may_cover_any(&self, actions: &[&[Tok]], resources: &[&[Tok]]) -> bool {
        let Some(r) = &self.resource else {
            return false;
        };
        actions.iter().any(|a| self.action.may_cover(a))
            && resources.iter().any(|res| r.may_cover(res))
    }

    fn describe_unevaluated(&self) -> String {
        format!("{}: {}", self.label, self.unevaluated.join(", "))
    }

    /// The parts of the request this Allow grants, each as a list of
    /// supersets (the request itself and the matching list entry). A Deny that
    /// covers any superset of a piece blocks that piece.
    fn allowed_pieces<'s>(&'s self, action: &'s [Tok], resource: &'s [Tok]) -> Vec<Piece<'s>> {
        let sides = |c: &'s Compiled, req: &'s [Tok]| -> Vec<Vec<&'s [Tok]>> {
            if c.negated {
                vec![vec![req]]
            } else {
                c.pats
                    .iter()
                    .filter(|p| glob::overlaps_toks(&p.toks, req))
                    .map(|p| vec![req, p.toks.as_slice()])
                    .collect()
            }
        };
        let Some(r) = &self.resource else {
            return Vec::new();
        };
        let action_sides = sides(&self.action, action);
        let resource_sides = sides(r, resource);
        let mut pieces = Vec::with_capacity(action_sides.len() * resource_sides.len());
        for a in &action_sides {
            for res in &resource_sides {
                pieces.push((a.clone(), res.clone()));
            }
        }
        pieces
    }
}

fn request_tokens(req: &Request) -> (Vec<Tok>, Vec<Tok>) {
    (
        glob::tokenize(req.action, true),
        glob::tokenize(req.resource, false),
    )
}

/// The statement is unconditional (no Condition, no policy variables) and
/// applies to every concrete instance of `req`. Ignores Effect.
pub fn statement_covers(stmt: &Statement, req: &Request) -> bool {
    let c = CompiledStatement::new("", 0, stmt);
    let (a, r) = request_tokens(req);
    c.definite() && c.may_cover_any(&[&a], &[&r])
}

/// The statement applies to some instance of `req`, ignoring Effect and
/// treating conditions / policy variables as "maybe" (so `true`).
pub fn statement_overlaps(stmt: &Statement, req: &Request) -> bool {
    let c = CompiledStatement::new("", 0, stmt);
    let (a, r) = request_tokens(req);
    c.may_overlap(&a, &r)
}

/// Whether some concrete instance of `req` would be allowed by `policies`
/// (all attached to the same principal), per IAM's identity-policy logic.
pub fn evaluate(policies: &[NamedPolicy], req: &Request) -> Evaluation {
    CompiledPolicies::new(policies).evaluate(req)
}

/// A principal's policies compiled once, for many evaluations (the planner evaluates every
/// envelope entry against the role, and against the role minus each candidate policy).
pub struct CompiledPolicies {
    statements: Vec<CompiledStatement>,
}

impl CompiledPolicies {
    pub fn new(policies: &[NamedPolicy]) -> CompiledPolicies {
        CompiledPolicies {
            statements: policies
                .iter()
                .flat_map(|p| {
                    p.document
                        .statements
                        .iter()
                        .enumerate()
                        .map(|(i, s)| CompiledStatement::new(p.name, i, s))
                })
                .collect(),
        }
    }

    pub fn evaluate(&self, req: &Request) -> Evaluation {
        self.evaluate_in(req, &Context::default())
    }

    /// Evaluates with what `ctx` knows about the principal (conditions on those keys decided).
    pub fn evaluate_in(&self, req: &Request, ctx: &Context) -> Evaluation {
        evaluate_statements(self.statements.iter(), req, ctx)
    }

    /// As if the policy named `policy` were detached or deleted.
    pub fn evaluate_without(&self, policy: &str, req: &Request, ctx: &Context) -> Evaluation {
        evaluate_statements(
            self.statements.iter().filter(|s| s.policy != policy),
            req,
            ctx,
        )
    }

    /// Whether any statement may apply to some instance of `req` (Effect ignored).
    pub fn overlaps(&self, req: &Request) -> bool {
        let (action, resource) = request_tokens(req);
        self.statements
            .iter()
            .any(|s| s.may_overlap(&action, &resource))
    }
}

fn evaluate_statements<'c>(
    statements: impl Iterator<Item = &'c CompiledStatement>,
    req: &Request,
    ctx: &Context,
) -> Evaluation {
    let (action, resource) = request_tokens(req);
    // Each applicable statement with whether its match is definite in `ctx`.
    let applicable: Vec<(&CompiledStatement, bool)> = statements
        .filter(|s| s.may_overlap(&action, &resource))
        .filter_map(|s| s.definite_in(ctx).map(|definite| (s, definite)))
        .collect();

    let mut eval = Evaluation {
        permit: Permit::NotAllowed,
        allowed_by: Vec::new(),
        denied_by: Vec::new(),
        unevaluated_conditions: Vec::new(),
    };
    for (s, definite) in &applicable {
        if !definite {
            push_unique(&mut eval.unevaluated_conditions, &s.describe_unevaluated());
        }
        if s.effect == Effect::Allow && *definite {
            push_unique(&mut eval.allowed_by, &s.policy);
        }
    }

    type Applicable<'c> = Vec<(&'c CompiledStatement, bool)>;
    let (allows, denies): (Applicable<'_>, Applicable<'_>) = applicable
        .iter()
        .copied()
        .partition(|(s, _)| s.effect == Effect::Allow);

    // Explicit deny of the whole request wins outright.
    for (d, _) in denies.iter().filter(|(_, definite)| *definite) {
        if d.may_cover_any(&[&action], &[&resource]) {
            push_unique(&mut eval.denied_by, &d.policy);
        }
    }
    if !eval.denied_by.is_empty() {
        return eval;
    }

    // Otherwise look for an allowed piece that no Deny blocks.
    let mut allowed = false;
    let mut reasons: Vec<String> = Vec::new();
    for (a, allow_definite) in &allows {
        for (acts, ress) in a.allowed_pieces(&action, &resource) {
            let mut blocked = false;
            let mut maybe_blocked_by: Vec<&CompiledStatement> = Vec::new();
            for (d, deny_definite) in &denies {
                if d.may_cover_any(&acts, &ress) {
                    if *deny_definite {
                        blocked = true;
                        push_unique(&mut eval.denied_by, &d.policy);
                    } else {
                        maybe_blocked_by.push(d);
                    }
                }
            }
            if blocked {
                continue;
            }
            if *allow_definite && maybe_blocked_by.is_empty() {
                allowed = true;
                continue;
            }
            if !allow_definite {
                push_unique(&mut reasons, &format!("Allow {}", a.describe_unevaluated()));
            }
            for d in maybe_blocked_by {
                push_unique(&mut reasons, &format!("Deny {}", d.describe_unevaluated()));
            }
        }
    }

    eval.permit = if allowed {
        Permit::Allowed
    } else if !reasons.is_empty() {
        Permit::Indeterminate(format!(
            "depends on unevaluated conditions: {}",
            reasons.join("; ")
        ))
    } else {
        Permit::NotAllowed
    };
    eval
}
