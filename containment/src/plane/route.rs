//! Which planes an alert goes to, decided once: its dimension and, for identity, the cloud
//! whose notation the breached permission is written in.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::alert::Parameter;

/// The cloud (or cluster) an identity permission belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cloud {
    Aws,
    Gcp,
    Azure,
    Kubernetes,
}

impl Cloud {
    /// The cloud whose notation `action` is written in: `k8s:get` (Kubernetes), `s3:PutObject`
    /// (AWS), `storage.objects.get` (GCP), `Microsoft.Storage/storageAccounts/read` (Azure).
    pub fn of_action(action: &str) -> Option<Cloud> {
        let word = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '*'))
        };
        if action.starts_with("k8s:") && action.len() > 4 {
            return Some(Cloud::Kubernetes);
        }
        let aws = action.split_once(':').is_some_and(|(service, name)| {
            word(service) && !name.is_empty() && !name.contains(char::is_whitespace)
        });
        if aws {
            return Some(Cloud::Aws);
        }
        if !action.contains('/') && action.split('.').count() >= 3 && action.split('.').all(word) {
            return Some(Cloud::Gcp);
        }
        let azure = action.split_once('/').is_some_and(|(provider, rest)| {
            provider.split('.').count() >= 2
                && provider.split('.').all(word)
                && !rest.is_empty()
                && !action.contains(char::is_whitespace)
        });
        azure.then_some(Cloud::Azure)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Cloud::Aws => "aws",
            Cloud::Gcp => "gcp",
            Cloud::Azure => "azure",
            Cloud::Kubernetes => "kubernetes",
        }
    }
}

/// Where an alert can be contained. A plane declares one route; the engine computes the
/// alert's route once and asks only the planes on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    Context,
    Tools,
    Identity(Cloud),
    Delegation,
    Network,
    Process,
}

impl Route {
    /// The route of a breached parameter. `None` for an identity action in no cloud's notation,
    /// which alert validation already refuses.
    pub fn of(parameter: &Parameter) -> Option<Route> {
        Some(match parameter {
            Parameter::Context { .. } => Route::Context,
            Parameter::Tools { .. } => Route::Tools,
            Parameter::Identity { action, .. } => Route::Identity(Cloud::of_action(action)?),
            Parameter::Delegation { .. } => Route::Delegation,
            Parameter::Network { .. } => Route::Network,
            Parameter::Process { .. } => Route::Process,
        })
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Route::Identity(cloud) => write!(f, "identity on {}", cloud.as_str()),
            Route::Context => f.write_str("context"),
            Route::Tools => f.write_str("tools"),
            Route::Delegation => f.write_str("delegation"),
            Route::Network => f.write_str("network"),
            Route::Process => f.write_str("process"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_notation_routes_to_its_cloud() {
        for (action, cloud) in [
            ("s3:PutObject", Some(Cloud::Aws)),
            ("iam:*", Some(Cloud::Aws)),
            ("k8s:get", Some(Cloud::Kubernetes)),
            ("storage.objects.get", Some(Cloud::Gcp)),
            ("Microsoft.Storage/storageAccounts/read", Some(Cloud::Azure)),
            ("write the payouts", None),
            ("k8s:", None),
        ] {
            assert_eq!(Cloud::of_action(action), cloud, "{action}");
        }
    }
}
