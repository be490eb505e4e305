//! IAM policy documents and a local evaluator of the documented
//! identity-policy logic (explicit deny > allow > implicit deny).
//!
//! AWS's `SimulatePrincipalPolicy` is unavailable under moto, and blast-radius
//! questions ("what does the agent lose if we add this Deny?") need requests
//! that are themselves patterns, which the simulator does not answer anyway.
//!
//! Deliberate limits, all surfaced rather than guessed:
//! * Conditions are evaluated only where the request [`Context`] knows every
//!   key and the operator is `StringEquals` (what Firebreak's own session-tag
//!   scoped denies use). Any other statement with a non-empty `Condition`, or
//!   with a policy variable (`${aws:username}`) in `Resource`/`NotResource`,
//!   never counts as a definite match; when the outcome hinges on one, the
//!   result is [`Permit::Indeterminate`].
//! * Only identity-policy logic: `Principal`/`NotPrincipal` are kept (trust
//!   policies parse and round-trip) but ignored by evaluation, and a statement
//!   without `Resource`/`NotResource` never applies to a request.
//! * Pattern coverage uses [`crate::glob::covers`], which is sound but may miss
//!   coverage that needs several wildcards reasoned about jointly, and a
//!   pattern is only treated as covered by a single list entry, not a union.

use std::collections::BTreeMap;
use std::fmt;

use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;

use crate::glob::{self, Tok};

/// Versions IAM accepts; anything else is rejected by AWS too.
const VERSIONS: [&str; 2] = ["2012-10-17", "2008-10-17"];

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PolicyError {
    #[error("policy is not valid JSON: {0}")]
    Json(String),
    /// `path` is e.g. `Statement[2].Effect`; `statement` is that index.
    #[error("{path}: {reason}")]
    Invalid {
        statement: Option<usize>,
        path: String,
        reason: String,
    },
}

fn invalid(
    statement: Option<usize>,
    path: impl Into<String>,
    reason: impl Into<String>,
) -> PolicyError {
    PolicyError::Invalid {
        statement,
        path: path.into(),
        reason: reason.into(),
    }
}

/// Short JSON rendering of an offending value for error messages.
fn describe(v: &Value) -> String {
    const MAX: usize = 60;
    let s = v.to_string();
    if s.chars().count() > MAX {
        let cut: String = s.chars().take(MAX).collect();
        format!("{cut}…")
    } else {
        s
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyDocument {
    pub version: Option<String>,
    pub id: Option<String>,
    pub statements: Vec<Statement>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Effect {
    Allow,
    Deny,
}

impl Effect {
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Allow => "Allow",
            Effect::Deny => "Deny",
        }
    }
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `Action` vs `NotAction`, `Resource` vs `NotResource`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matcher {
    Only(Vec<String>),
    Not(Vec<String>),
}

impl Matcher {
    pub fn values(&self) -> &[String] {
        match self {
            Matcher::Only(v) | Matcher::Not(v) => v,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub sid: Option<String>,
    pub effect: Effect,
    pub action: Matcher,
    /// `None` in trust policies.
    pub resource: Option<Matcher>,
    /// Raw `Principal`; used by trust policies.
    pub principal: Option<Value>,
    /// Raw `NotPrincipal`; kept separately so documents round-trip.
    pub not_principal: Option<Value>,
    pub condition: Option<Value>,
}

impl Statement {
    /// Non-empty `Condition` (an empty object constrains nothing).
    pub fn is_conditional(&self) -> bool {
        match &self.condition {
            Some(Value::Object(m)) => !m.is_empty(),
            Some(Value::Null) | None => false,
            Some(_) => true,
        }
    }

    /// Ordered (AWS-canonical) elements; arrays always.
    fn entries(&self) -> Vec<(&'static str, Value)> {
        let strings = |v: &[String]| Value::Array(v.iter().cloned().map(Value::String).collect());
        let mut out = Vec::with_capacity(6);
        if let Some(sid) = &self.sid {
            out.push(("Sid", Value::String(sid.clone())));
        }
        out.push(("Effect", Value::String(self.effect.as_str().to_owned())));
        if let Some(p) = &self.principal {
            out.push(("Principal", p.clone()));
        }
        if let Some(p) = &self.not_principal {
            out.push(("NotPrincipal", p.clone()));
        }
        match &self.action {
            Matcher::Only(v) => out.push(("Action", strings(v))),
            Matcher::Not(v) => out.push(("NotAction", strings(v))),
        }
        match &self.resource {
            Some(Matcher::Only(v)) => out.push(("Resource", strings(v))),
            Some(Matcher::Not(v)) => out.push(("NotResource", strings(v))),
            None => {}
        }
        if let Some(c) = &self.condition {
            out.push(("Condition", c.clone()));
        }
        out
    }

    pub fn to_value(&self) -> Value {
        Value::Object(
            self.entries()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        )
    }
}

impl Serialize for Statement {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let entries = self.entries();
        let mut map = serializer.serialize_map(Some(entries.len()))?;
        for (k, v) in &entries {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// Serializes in AWS order (Version, Id, Statement); unlike [`PolicyDocument::to_value`]
/// this order survives without serde_json's `preserve_order` feature.
impl Serialize for PolicyDocument {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        if let Some(v) = &self.version {
            map.serialize_entry("Version", v)?;
        }
        if let Some(id) = &self.id {
            map.serialize_entry("Id", id)?;
        }
        map.serialize_entry("Statement", &self.statements)?;
        map.end()
    }
}

impl<'de> Deserialize<'de> for PolicyDocument {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(deserializer)?;
        PolicyDocument::from_json_value(&v).map_err(serde::de::Error::custom)
    }
}

impl PolicyDocument {
    pub fn parse(json: &str) -> Result<PolicyDocument, PolicyError> {
        let v: Value = serde_json::from_str(json).map_err(|e| PolicyError::Json(e.to_string()))?;
        Self::from_json_value(&v)
    }

    pub fn from_json_value(v: &Value) -> Result<PolicyDocument, PolicyError> {
        let obj = v.as_object().ok_or_else(|| {
            invalid(
                None,
                "(policy)",
                format!("expected a JSON object, got {}", describe(v)),
            )
        })?;
        let mut version = None;
        let mut id = None;
        let mut statements = None;
        for (key, val) in obj {
            match key.as_str() {
                "Version" => {
                    let s = string_field(val, None, "Version")?;
                    if !VERSIONS.contains(&s.as_str()) {
                        return Err(invalid(
                            None,
                            "Version",
                            format!(
                                "expected \"2012-10-17\" or \"2008-10-17\", got {}",
                                describe(val)
                            ),
                        ));
                    }
                    version = Some(s);
                }
                "Id" => id = Some(string_field(val, None, "Id")?),
                "Statement" => statements = Some(parse_statements(val)?),
                other => return Err(invalid(None, other, "unknown policy element")),
            }
        }
        let statements = statements.ok_or_else(|| invalid(None, "Statement", "missing"))?;
        Ok(PolicyDocument {
            version,
            id,
            statements,
        })
    }

    /// Canonical AWS JSON, arrays always. Key order in the `Value` follows
    /// serde_json's map (sorted unless `preserve_order` is enabled); use the
    /// `Serialize` impl for AWS ordering in text.
    pub fn to_value(&self) -> Value {
        let mut map = Map::new();
        if let Some(v) = &self.version {
            map.insert("Version".to_owned(), Value::String(v.clone()));
        }
        if let Some(id) = &self.id {
            map.insert("Id".to_owned(), Value::String(id.clone()));
        }
        map.insert(
            "Statement".to_owned(),
            Value::Array(self.statements.iter().map(Statement::to_value).collect()),
        );
        Value::Object(map)
    }
}

fn string_field(v: &Value, stmt: Option<usize>, path: &str) -> Result<String, PolicyError> {
    v.as_str().map(str::to_owned).ok_or_else(|| {
        invalid(
            stmt,
            path,
            format!("expected a string, got {}", describe(v)),
        )
    })
}

/// A string or a non-empty array of strings.
fn string_list(v: &Value, stmt: usize, path: &str) -> Result<Vec<String>, PolicyError> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) if items.is_empty() => Err(invalid(
            Some(stmt),
            path,
            "expected a string or a non-empty array of strings, got []",
        )),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(k, item)| string_field(item, Some(stmt), &format!("{path}[{k}]")))
            .collect(),
        other => Err(invalid(
            Some(stmt),
            path,
            format!(
                "expected a string or an array of strings, got {}",
                describe(other)
            ),
        )),
    }
}

fn parse_statements(v: &Value) -> Result<Vec<Statement>, PolicyError> {
    match v {
        // A lone object is IAM shorthand for a one-element array.
        Value::Object(_) => Ok(vec![parse_statement(v, 0)?]),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, s)| parse_statement(s, i))
            .collect(),
        other => Err(invalid(
            None,
            "Statement",
            format!(
                "expected an object or an array of objects, got {}",
                describe(other)
            ),
        )),
    }
}

/// Picks exactly-one-or-none of a `X` / `NotX` pair.
fn pick_pair<'v>(
    obj: &'v Map<String, Value>,
    i: usize,
    only: &str,
    not: &str,
) -> Result<Option<(bool, &'v Value)>, PolicyError> {
    match (obj.get(only), obj.get(not)) {
        (Some(_), Some(_)) => Err(invalid(
            Some(i),
            format!("Statement[{i}]"),
            format!("has both {only} and {not}; use exactly one"),
        )),
        (Some(v), None) => Ok(Some((false, v))),
        (None, Some(v)) => Ok(Some((true, v))),
        (None, None) => Ok(None),
    }
}

fn parse_matcher(
    obj: &Map<String, Value>,
    i: usize,
    only: &str,
    not: &str,
) -> Result<Option<Matcher>, PolicyError> {
    let Some((negated, v)) = pick_pair(obj, i, only, not)? else {
        return Ok(None);
    };
    let key = if negated { not } else { only };
    let values = string_list(v, i, &format!("Statement[{i}].{key}"))?;
    Ok(Some(if negated {
        Matcher::Not(values)
    } else {
        Matcher::Only(values)
    }))
}

fn parse_statement(v: &Value, i: usize) -> Result<Statement, PolicyError> {
    let at = |field: &str| format!("Statement[{i}].{field}");
    let obj = v.as_object().ok_or_else(|| {
        invalid(
            Some(i),
            format!("Statement[{i}]"),
            format!("expected an object, got {}", describe(v)),
        )
    })?;
    const KNOWN: [&str; 9] = [
        "Sid",
        "Effect",
        "Principal",
        "NotPrincipal",
        "Action",
        "NotAction",
        "Resource",
        "NotResource",
        "Condition",
    ];
    if let Some(unknown) = obj.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(invalid(Some(i), at(unknown), "unknown statement element"));
    }

    let sid = obj
        .get("Sid")
        .map(|s| string_field(s, Some(i), &at("Sid")))
        .transpose()?;
    let effect = match obj.get("Effect") {
        None => return Err(invalid(Some(i), at("Effect"), "missing")),
        Some(Value::String(s)) if s == "Allow" => Effect::Allow,
        Some(Value::String(s)) if s == "Deny" => Effect::Deny,
        Some(other) => {
            return Err(invalid(
                Some(i),
                at("Effect"),
                format!("expected \"Allow\" or \"Deny\", got {}", describe(other)),
            ))
        }
    };
    let action = parse_matcher(obj, i, "Action", "NotAction")?.ok_or_else(|| {
        invalid(
            Some(i),
            format!("Statement[{i}]"),
            "missing Action or NotAction",
        )
    })?;
    let resource = parse_matcher(obj, i, "Resource", "NotResource")?;

    let (mut principal, mut not_principal) = (None, None);
    if let Some((negated, p)) = pick_pair(obj, i, "Principal", "NotPrincipal")? {
        let key = if negated { "NotPrincipal" } else { "Principal" };
        if !(p.is_object() || p.as_str() == Some("*")) {
            return Err(invalid(
                Some(i),
                at(key),
                format!("expected \"*\" or an object, got {}", describe(p)),
            ));
        }
        if negated {
            not_principal = Some(p.clone());
        } else {
            principal = Some(p.clone());
        }
    }

    let condition = match obj.get("Condition") {
        None => None,
        Some(c) => {
            let ops = c.as_object().ok_or_else(|| {
                invalid(
                    Some(i),
                    at("Condition"),
                    format!("expected an object, got {}", describe(c)),
                )
            })?;
            // Key extraction for reporting relies on operator -> {key: values}.
            for (op, block) in ops {
                if !block.is_object() {
                    return Err(invalid(
                        Some(i),
                        at(&format!("Condition.{op}")),
                        format!(
                            "expected an object of condition keys, got {}",
                            describe(block)
                        ),
                    ));
                }
            }
            Some(c.clone())
        }
    };

    Ok(Statement {
        sid,
        effect,
        action,
        resource,
        principal,
        not_principal,
        condition,
    })
}

/// Unconditional Deny of `actions` on `resources`.
///
/// IAM rejects statements with empty lists and non-alphanumeric Sids; callers
/// supply sensible values (this builder does not validate).
pub fn deny_statement(sid: &str, actions: &[String], resources: &[String]) -> Statement {
    Statement {
        sid: Some(sid.to_owned()),
        effect: Effect::Deny,
        action: Matcher::Only(actions.to_vec()),
        resource: Some(Matcher::Only(resources.to_vec())),
        principal: None,
        not_principal: None,
        condition: None,
    }
}

// ---------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------

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

#[cfg(test)]
mod tests {
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
        let d = doc(
            r#"{"Statement":{"Effect":"Deny","Action":"s3:Put*","Resource":"arn:aws:s3:::b/*"}}"#,
        );
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
            format!(
                r#"{{"Statement":[{{"Effect":"Allow","Action":"s3:*","Resource":"*"}},{second}]}}"#
            )
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
}
