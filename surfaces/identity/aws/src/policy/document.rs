//! IAM policy documents: parsing (with errors naming the statement and field), the typed
//! statement, and serialization in AWS's order.

use std::fmt;

use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;

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
