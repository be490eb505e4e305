//! ARM resource ids, the scopes role assignments apply at, and Azure operation names.
//!
//! ARM compares ids case-insensitively; so does everything here.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The resource type of a user-assigned managed identity.
pub const USER_ASSIGNED_IDENTITY: &str = "Microsoft.ManagedIdentity/userAssignedIdentities";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{text:?} is not an ARM resource id: {reason} (expected /subscriptions/SUB/resourceGroups/RG/providers/NAMESPACE/TYPE/NAME[/TYPE/NAME…])")]
    Resource { text: String, reason: &'static str },
    #[error("{text:?} is not a user-assigned managed identity id (expected /subscriptions/SUB/resourceGroups/RG/providers/{USER_ASSIGNED_IDENTITY}/NAME)")]
    Identity { text: String },
    #[error("{text:?} is not an Azure operation: {reason} (expected e.g. Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read)")]
    Operation { text: String, reason: &'static str },
}

/// An ARM resource id, or a scope: `/`, a management group, a subscription, a resource group,
/// or a resource and its child resources.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ResourceId {
    text: String,
    /// Byte lengths of `text` at each level a role assignment can be scoped to, shortest first.
    levels: Vec<usize>,
}

impl ResourceId {
    pub fn parse(text: &str) -> Result<ResourceId, IdError> {
        let bad = |reason| IdError::Resource {
            text: text.to_string(),
            reason,
        };
        let trimmed = text.trim_end_matches('/');
        if trimmed.is_empty() {
            return if text == "/" {
                Ok(ResourceId {
                    text: "/".into(),
                    levels: Vec::new(),
                })
            } else {
                Err(bad("it is empty"))
            };
        }
        let Some(rest) = trimmed.strip_prefix('/') else {
            return Err(bad("it does not start with /"));
        };
        let segments: Vec<&str> = rest.split('/').collect();
        if segments.iter().any(|s| s.is_empty()) {
            return Err(bad("it has an empty segment"));
        }
        let mut levels = Vec::new();
        let mut end = 0; // bytes of `trimmed` consumed so far
        let mut i = 0;
        let take = |i: &mut usize, end: &mut usize, n: usize| {
            for s in &segments[*i..*i + n] {
                *end += 1 + s.len();
            }
            *i += n;
        };
        let is = |i: usize, word: &str| {
            segments
                .get(i)
                .is_some_and(|s| s.eq_ignore_ascii_case(word))
        };
        if is(0, "subscriptions") {
            if segments.len() < 2 {
                return Err(bad("subscriptions has no id"));
            }
            take(&mut i, &mut end, 2);
            levels.push(end);
            if is(i, "resourceGroups") {
                if segments.len() < i + 2 {
                    return Err(bad("resourceGroups has no name"));
                }
                take(&mut i, &mut end, 2);
                levels.push(end);
            }
        }
        if i < segments.len() {
            if !is(i, "providers") {
                return Err(bad("expected providers/NAMESPACE/TYPE/NAME after the subscription or resource group"));
            }
            if segments.len() < i + 3 {
                return Err(bad("providers needs a namespace and a type"));
            }
            if !segments[i + 1].contains('.') {
                return Err(bad(
                    "the provider namespace has no dot (like Microsoft.Storage)",
                ));
            }
            // providers/NAMESPACE/TYPE/NAME, then TYPE/NAME pairs of child resources. A trailing
            // type without a name is a collection, not a resource or scope.
            if segments.len() < i + 4 {
                return Err(bad("the resource type has no name"));
            }
            take(&mut i, &mut end, 4);
            levels.push(end);
            while i < segments.len() {
                if segments.len() < i + 2 {
                    return Err(bad("a child resource type has no name"));
                }
                take(&mut i, &mut end, 2);
                levels.push(end);
            }
        }
        Ok(ResourceId {
            text: trimmed.to_string(),
            levels,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The id of each scope from the broadest (a subscription, a management group) to this
    /// resource itself.
    pub fn scopes(&self) -> impl Iterator<Item = ResourceId> + '_ {
        (0..self.levels.len()).map(|n| ResourceId {
            text: self.text[..self.levels[n]].to_string(),
            levels: self.levels[..=n].to_vec(),
        })
    }

    /// How deep the scope is: 0 for `/`, 1 for a subscription, 2 for a resource group, …
    pub fn depth(&self) -> usize {
        self.levels.len()
    }

    /// The subscription id, when the id is inside one.
    pub fn subscription(&self) -> Option<&str> {
        let rest = self.text.strip_prefix('/')?;
        let mut parts = rest.split('/');
        parts
            .next()
            .filter(|p| p.eq_ignore_ascii_case("subscriptions"))?;
        parts.next()
    }

    /// A management group scope: its membership (which subscriptions are under it) is not
    /// visible through role assignments.
    pub fn is_management_group(&self) -> bool {
        self.text
            .to_ascii_lowercase()
            .starts_with("/providers/microsoft.management/managementgroups/")
    }

    /// Whether an assignment at this scope applies to `resource`: the scope is `resource` or
    /// one of its ancestors. A management group is assumed to contain every subscription, the
    /// conservative reading when the ladder asks "does anything else still grant it?".
    pub fn covers(&self, resource: &ResourceId) -> bool {
        if self.levels.is_empty() || self.is_management_group() {
            return true;
        }
        resource.levels.len() >= self.levels.len()
            && resource.levels[..self.levels.len()] == self.levels[..]
            && resource.text[..self.text.len()].eq_ignore_ascii_case(&self.text)
    }

    pub fn same(&self, other: &ResourceId) -> bool {
        self.text.eq_ignore_ascii_case(&other.text)
    }

    /// The narrowest scope that covers `resource` but not `avoid`: the first scope below their
    /// common ancestors. `None` when `resource` is `avoid` or one of its ancestors.
    pub fn narrowest_excluding(resource: &ResourceId, avoid: &ResourceId) -> Option<ResourceId> {
        resource.scopes().find(|s| !s.covers(avoid))
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl TryFrom<String> for ResourceId {
    type Error = IdError;
    fn try_from(text: String) -> Result<Self, IdError> {
        ResourceId::parse(&text)
    }
}

impl From<ResourceId> for String {
    fn from(id: ResourceId) -> String {
        id.text
    }
}

/// The id of a user-assigned managed identity.
pub fn parse_identity(text: &str) -> Result<ResourceId, IdError> {
    let id = ResourceId::parse(text).map_err(|_| IdError::Identity { text: text.into() })?;
    let lower = id.as_str().to_ascii_lowercase();
    let marker = format!(
        "/providers/{}/",
        USER_ASSIGNED_IDENTITY.to_ascii_lowercase()
    );
    match lower.find(&marker) {
        // Exactly subscription, resource group, and the identity: three levels.
        Some(_) if id.depth() == 3 => Ok(id),
        _ => Err(IdError::Identity { text: text.into() }),
    }
}

/// An Azure operation as the activity log and role definitions write it:
/// `Namespace.Provider/resourceType[/…]/verb`.
pub fn parse_operation(text: &str) -> Result<&str, IdError> {
    let bad = |reason| IdError::Operation {
        text: text.to_string(),
        reason,
    };
    let mut segments = text.split('/');
    let namespace = segments.next().unwrap_or_default();
    if !namespace.contains('.') || namespace.contains(':') {
        return Err(bad(
            "the first segment is not a provider namespace like Microsoft.Storage",
        ));
    }
    let rest: Vec<&str> = segments.collect();
    if rest.is_empty() {
        return Err(bad("it names no resource type and verb"));
    }
    if rest.iter().any(|s| s.is_empty()) {
        return Err(bad("it has an empty segment"));
    }
    if text.contains('*') {
        return Err(bad("a performed operation has no wildcard"));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCOUNT: &str =
        "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/acct";

    #[test]
    fn scopes_run_from_subscription_to_the_resource() {
        let id = ResourceId::parse(&format!(
            "{ACCOUNT}/blobServices/default/containers/payouts/"
        ))
        .unwrap();
        let scopes: Vec<String> = id.scopes().map(String::from).collect();
        assert_eq!(
            scopes,
            vec![
                "/subscriptions/s1".to_string(),
                "/subscriptions/s1/resourceGroups/rg".into(),
                ACCOUNT.into(),
                format!("{ACCOUNT}/blobServices/default"),
                format!("{ACCOUNT}/blobServices/default/containers/payouts"),
            ]
        );
        assert_eq!(id.subscription(), Some("s1"));
    }

    #[test]
    fn covers_is_a_case_insensitive_ancestor_test_on_whole_levels() {
        let account = ResourceId::parse(ACCOUNT).unwrap();
        let upper = ResourceId::parse(&ACCOUNT.to_uppercase()).unwrap();
        let blob = ResourceId::parse(&format!("{ACCOUNT}/blobServices/default")).unwrap();
        let sibling = ResourceId::parse(&format!("{ACCOUNT}2")).unwrap();
        assert!(account.covers(&blob));
        assert!(upper.covers(&blob));
        assert!(!blob.covers(&account));
        assert!(
            !account.covers(&sibling),
            "acct is not a prefix level of acct2"
        );
        assert!(ResourceId::parse("/").unwrap().covers(&account));
        assert!(
            ResourceId::parse("/providers/Microsoft.Management/managementGroups/mg")
                .unwrap()
                .covers(&account)
        );
    }

    #[test]
    fn narrowest_excluding_stops_below_the_common_ancestor() {
        let payouts = ResourceId::parse(&format!(
            "{ACCOUNT}/blobServices/default/containers/payouts"
        ))
        .unwrap();
        let invoices = ResourceId::parse(&format!(
            "{ACCOUNT}/blobServices/default/containers/invoices/blobs/x"
        ))
        .unwrap();
        let scope = ResourceId::narrowest_excluding(&invoices, &payouts).unwrap();
        assert_eq!(
            scope.as_str(),
            format!("{ACCOUNT}/blobServices/default/containers/invoices")
        );
        let account = ResourceId::parse(ACCOUNT).unwrap();
        assert_eq!(ResourceId::narrowest_excluding(&account, &payouts), None);
    }

    #[test]
    fn malformed_ids_say_what_is_wrong() {
        for (text, reason) in [
            ("subscriptions/s1", "does not start with /"),
            ("/subscriptions/s1//resourceGroups", "empty segment"),
            (
                "/subscriptions/s1/resourceGroups",
                "resourceGroups has no name",
            ),
            ("/subscriptions/s1/providers/Storage/accounts/a", "no dot"),
            (
                &format!("{ACCOUNT}/blobServices"),
                "child resource type has no name",
            ),
            ("/subscriptions/s1/things/x", "expected providers"),
        ] {
            let err = ResourceId::parse(text).unwrap_err().to_string();
            assert!(err.contains(reason), "{text}: {err}");
        }
        let mi = "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/agent";
        assert!(parse_identity(mi).is_ok());
        assert!(parse_identity(ACCOUNT).is_err());
        assert!(parse_operation("Microsoft.Storage/storageAccounts/read").is_ok());
        for bad in [
            "s3:GetObject",
            "storage.objects.get",
            "Microsoft.Storage/*/read",
            "k8s:get",
        ] {
            assert!(parse_operation(bad).is_err(), "{bad}");
        }
    }
}
