//! Action kinds: stable names (DESIGN §4), grouped into ladders from narrowest to broadest.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The control plane a ladder runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Surface {
    Context,
    Tools,
    Aws,
    Gcp,
    Azure,
    K8s,
    Delegation,
    Network,
}

impl Surface {
    pub fn as_str(self) -> &'static str {
        match self {
            Surface::Context => "context",
            Surface::Tools => "tools",
            Surface::Aws => "aws",
            Surface::Gcp => "gcp",
            Surface::Azure => "azure",
            Surface::K8s => "k8s",
            Surface::Delegation => "delegation",
            Surface::Network => "network",
        }
    }
}

macro_rules! action_kinds {
    ($($variant:ident = $name:literal, $surface:ident, $rung:literal, $approval_only:literal;)*) => {
        /// One containment step's kind. The string form is the public, stable name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum ActionKind {
            $(#[serde(rename = $name)] $variant,)*
        }

        impl ActionKind {
            pub const ALL: &'static [ActionKind] = &[$(ActionKind::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self { $(ActionKind::$variant => $name,)* }
            }

            pub fn surface(self) -> Surface {
                match self { $(ActionKind::$variant => Surface::$surface,)* }
            }

            /// Position on its surface's ladder: 0 is the narrowest.
            pub fn rung(self) -> u8 {
                match self { $(ActionKind::$variant => $rung,)* }
            }

            /// Broadest rungs: they always need a human approval (DESIGN §6 rule 1).
            pub fn approval_only(self) -> bool {
                match self { $(ActionKind::$variant => $approval_only,)* }
            }
        }
    };
}

action_kinds! {
    ContextQuarantineSource = "context.quarantine_source", Context, 0, false;
    ContextRevokeIndex = "context.revoke_index", Context, 1, false;
    ContextQuarantineIndex = "context.quarantine_index", Context, 2, true;
    ToolsRevokeTool = "tools.revoke_tool", Tools, 0, false;
    ToolsRevokeServer = "tools.revoke_server", Tools, 1, false;
    ToolsRevokeAll = "tools.revoke_all", Tools, 2, true;
    AwsInlineDeny = "aws.inline_deny", Aws, 0, false;
    AwsDetachPolicy = "aws.detach_policy", Aws, 1, false;
    AwsDeleteInlinePolicy = "aws.delete_inline_policy", Aws, 2, false;
    AwsTrustDeny = "aws.trust_deny", Aws, 3, true;
    AwsRevokeSessions = "aws.revoke_sessions", Aws, 4, true;
    EksDeletePodIdentityAssociation = "eks.delete_pod_identity_association", Aws, 5, true;
    GcpRemoveBindingMember = "gcp.remove_binding_member", Gcp, 0, false;
    GcpDenyPolicy = "gcp.deny_policy", Gcp, 1, false;
    GcpRemoveWiUser = "gcp.remove_wi_user", Gcp, 2, false;
    GcpDisableServiceAccount = "gcp.disable_service_account", Gcp, 3, true;
    AzureDeleteRoleAssignment = "azure.delete_role_assignment", Azure, 0, false;
    AzureNarrowRoleAssignment = "azure.narrow_role_assignment", Azure, 1, false;
    AzureDeleteFederatedCredential = "azure.delete_federated_credential", Azure, 2, true;
    K8sRemoveRolebindingSubject = "k8s.remove_rolebinding_subject", K8s, 0, false;
    K8sDeleteRolebinding = "k8s.delete_rolebinding", K8s, 1, true;
    DelegationSeverEdge = "delegation.sever_edge", Delegation, 0, false;
    DelegationIsolateInbound = "delegation.isolate_inbound", Delegation, 1, false;
    DelegationPauseGraph = "delegation.pause_graph", Delegation, 2, true;
    NetworkBlockEgress = "network.block_egress", Network, 0, false;
    NetworkIsolateWorkload = "network.isolate_workload", Network, 1, true;
}

impl ActionKind {
    /// Parses a public kind name, e.g. `aws.inline_deny`.
    pub fn parse(name: &str) -> Option<ActionKind> {
        Self::ALL.iter().copied().find(|k| k.as_str() == name)
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_round_trips_through_serde_and_parse() {
        for kind in ActionKind::ALL {
            let json = serde_json::to_string(kind).expect("serialize");
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert_eq!(ActionKind::parse(kind.as_str()), Some(*kind));
        }
    }

    #[test]
    fn each_ladder_is_dense_and_ends_broadest_with_approval() {
        use std::collections::HashMap;
        let mut ladders: HashMap<Surface, Vec<ActionKind>> = HashMap::new();
        for kind in ActionKind::ALL {
            ladders.entry(kind.surface()).or_default().push(*kind);
        }
        for (surface, mut kinds) in ladders {
            kinds.sort_by_key(|k| k.rung());
            for (i, k) in kinds.iter().enumerate() {
                assert_eq!(k.rung() as usize, i, "{surface:?} ladder has a gap at {k}");
            }
            let broadest = kinds.last().copied().expect("non-empty ladder");
            assert!(
                broadest.approval_only(),
                "{broadest} is the broadest rung of {surface:?} and must need approval"
            );
            assert!(
                !kinds[0].approval_only(),
                "the narrowest rung must not need approval"
            );
        }
    }
}
