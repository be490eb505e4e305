//! IAM v1 bindings as the plane reasons about them, and the edits it makes to a policy read at
//! version 3. A binding is named by its role and condition (a policy holds at most one per
//! pair), never by its position, so an edit lands on the right binding whatever else changed.

use std::fmt;

use google_cloud_iam_v1::model::{Binding as ApiBinding, Policy};
use google_cloud_type::model::Expr;
use serde::{Deserialize, Serialize};

/// An IAM condition, compared by title, description and expression like IAM does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Condition {
    pub title: String,
    #[serde(default)]
    pub description: String,
    pub expression: String,
}

/// One IAM v1 binding; `members` is what it held when read (the pre-image revert restores from).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Binding {
    pub role: String,
    pub members: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<Condition>,
}

impl Binding {
    /// Whether `other` is the same binding (same role and condition), whatever its members.
    pub fn same_slot(&self, other: &Binding) -> bool {
        self.role == other.role && self.condition == other.condition
    }
}

impl fmt::Display for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.condition {
            Some(c) => write!(f, "{} (condition {:?})", self.role, c.title),
            None => f.write_str(&self.role),
        }
    }
}

pub fn from_api(b: &ApiBinding) -> Binding {
    Binding {
        role: b.role.clone(),
        members: b.members.clone(),
        condition: b.condition.as_ref().map(|c| Condition {
            title: c.title.clone(),
            description: c.description.clone(),
            expression: c.expression.clone(),
        }),
    }
}

fn to_api(b: &Binding, members: Vec<String>) -> ApiBinding {
    ApiBinding::new()
        .set_role(b.role.clone())
        .set_members(members)
        .set_or_clear_condition(b.condition.as_ref().map(|c| {
            Expr::new()
                .set_title(c.title.clone())
                .set_description(c.description.clone())
                .set_expression(c.expression.clone())
        }))
}

/// Whether the binding in `slot` lists `member`.
pub fn lists(policy: &Policy, slot: &Binding, member: &str) -> bool {
    policy
        .bindings
        .iter()
        .any(|b| from_api(b).same_slot(slot) && b.members.iter().any(|m| m == member))
}

/// Whether any binding of `role`, whatever its condition, lists `member`.
pub fn role_lists(policy: &Policy, role: &str, member: &str) -> bool {
    policy
        .bindings
        .iter()
        .any(|b| b.role == role && b.members.iter().any(|m| m == member))
}

/// Removes `member` from the binding in `slot` (dropping the binding once empty, as IAM does);
/// false when it was not there.
pub fn remove_member(policy: &mut Policy, slot: &Binding, member: &str) -> bool {
    let mut removed = false;
    for b in policy
        .bindings
        .iter_mut()
        .filter(|b| from_api(b).same_slot(slot))
    {
        let count = b.members.len();
        b.members.retain(|m| m != member);
        removed |= b.members.len() != count;
    }
    policy
        .bindings
        .retain(|b| !(b.members.is_empty() && from_api(b).same_slot(slot)));
    removed
}

/// Adds `member` to the binding in `slot`, re-creating the binding (with its condition) when it
/// is gone; false when it is listed already.
pub fn add_member(policy: &mut Policy, slot: &Binding, member: &str) -> bool {
    if lists(policy, slot, member) {
        return false;
    }
    match policy
        .bindings
        .iter_mut()
        .find(|b| from_api(b).same_slot(slot))
    {
        Some(b) => b.members.push(member.to_string()),
        None => policy.bindings.push(to_api(slot, vec![member.to_string()])),
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(condition: Option<&str>) -> Binding {
        Binding {
            role: "roles/storage.objectViewer".into(),
            members: Vec::new(),
            condition: condition.map(|title| Condition {
                title: title.into(),
                description: String::new(),
                expression: "true".into(),
            }),
        }
    }

    #[test]
    fn edits_find_their_binding_by_role_and_condition() {
        let plain = slot(None);
        let conditional = slot(Some("acme"));
        let mut policy = Policy::new().set_bindings([
            to_api(&plain, vec!["user:a@x.com".into()]),
            to_api(
                &conditional,
                vec!["user:a@x.com".into(), "user:b@x.com".into()],
            ),
        ]);
        assert!(remove_member(&mut policy, &conditional, "user:a@x.com"));
        assert!(
            lists(&policy, &plain, "user:a@x.com"),
            "the other slot is kept"
        );
        assert!(!lists(&policy, &conditional, "user:a@x.com"));
        assert!(!remove_member(&mut policy, &conditional, "user:a@x.com"));

        // The last member gone, the binding goes; re-adding brings it back with its condition.
        assert!(remove_member(&mut policy, &conditional, "user:b@x.com"));
        assert_eq!(policy.bindings.len(), 1);
        assert!(add_member(&mut policy, &conditional, "user:b@x.com"));
        assert!(!add_member(&mut policy, &conditional, "user:b@x.com"));
        let back = policy
            .bindings
            .iter()
            .map(from_api)
            .find(|b| b.same_slot(&conditional))
            .expect("re-created");
        assert_eq!(back.members, ["user:b@x.com"]);
        assert_eq!(back.condition, conditional.condition);
        assert!(role_lists(
            &policy,
            "roles/storage.objectViewer",
            "user:b@x.com"
        ));
    }
}
