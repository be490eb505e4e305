//! `azure.delete_federated_credential` (rung 2, approval only): cuts the agent's token link, the
//! federated identity credential that lets its AKS ServiceAccount act as the managed identity.
//! Revert PUTs it back from its snapshot.

use firebreak_containment::plan::BlastRadius;
use firebreak_containment::plane::{
    Change, Check, KindSpec, Outcome, PlaneError, Proposal, Verification,
};
use serde::{Deserialize, Serialize};

use crate::arm::{Arm, Delete, FederatedCredential, Put};
use crate::ladder::{Ladder, Principal};
use crate::plane::AzureSpec;
use crate::PLANE;

pub static DELETE_FEDERATED_CREDENTIAL: KindSpec =
    KindSpec::durable("azure", "azure.delete_federated_credential", 2, true);

/// Delete `credential`; revert PUTs it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Spec {
    /// The credential as read: the pre-image revert restores.
    pub credential: FederatedCredential,
    pub principal: Principal,
}

/// Whether the credential is the agent's link: its subject, and the configured issuer.
pub fn links_agent(credential: &FederatedCredential, subject: &str, issuer: Option<&str>) -> bool {
    credential.properties.subject == subject
        && issuer.is_none_or(|i| {
            credential.properties.issuer.trim_end_matches('/') == i.trim_end_matches('/')
        })
}

/// One candidate per federated credential of the identity that links the agent.
pub fn propose(ladder: &Ladder<'_>) -> Vec<Proposal<AzureSpec>> {
    let state = ladder.state;
    // The whole identity goes: every use it allows today is lost.
    let lost: Vec<String> = ladder
        .uses
        .iter()
        .filter(|u| state.rbac.allows(&u.operation, &u.resource))
        .map(|u| u.label.clone())
        .collect();
    state
        .federated
        .iter()
        .filter(|c| links_agent(c, &state.subject, state.issuer.as_deref()))
        .map(|credential| {
            let mut notes = vec![
                "cuts the link only: access tokens issued before it stay valid for up to 24 hours"
                    .to_string(),
                format!(
                    "every ServiceAccount federated through {} under this subject loses the identity",
                    credential.name
                ),
            ];
            if state.issuer.is_none() {
                notes.push(
                    "azure.aksOidcIssuer is not set: the credential was matched on its subject alone"
                        .into(),
                );
            }
            Proposal {
                target: credential.id.clone(),
                granularity: format!(
                    "the agent's whole identity: {} can no longer obtain tokens for {} (client id {})",
                    state.subject, state.principal.identity, state.principal.client_id
                ),
                blast_radius: BlastRadius::of(lost.clone()),
                blocks: true,
                inverse: format!(
                    "re-create federated identity credential {} from its snapshot",
                    credential.name
                ),
                verify: format!("ARM answers 404 for {}", credential.id),
                rejected: None,
                notes,
                spec: AzureSpec::DeleteFederatedCredential(Spec {
                    credential: credential.clone(),
                    principal: state.principal.clone(),
                }),
            }
        })
        .collect()
}

impl Spec {
    fn what(&self) -> String {
        let c = &self.credential;
        format!(
            "federated identity credential {} ({} from {})",
            c.name, c.properties.subject, c.properties.issuer
        )
    }

    pub async fn change(&self, arm: &Arm, change: Change) -> Result<Outcome, PlaneError> {
        let c = &self.credential;
        let what = self.what();
        // Someone else's credential now under the name is not ours to delete or overwrite.
        if let Some(current) = arm.federated_credential(&c.id).await? {
            if current.properties != c.properties {
                return Err(PlaneError::Conflict {
                    plane: PLANE,
                    detail: format!(
                        "federated identity credential {} changed since the plan (now subject {} from {})",
                        c.name, current.properties.subject, current.properties.issuer
                    ),
                });
            }
        }
        Ok(match change {
            Change::Apply => match arm.delete_federated_credential(&c.id).await? {
                Delete::Deleted => Outcome::changed(format!(
                    "deleted {what}; tokens issued before stay valid for up to 24 hours"
                )),
                Delete::AlreadyGone => Outcome::unchanged(format!("{what} is already gone")),
            },
            Change::Revert => match arm.put_federated_credential(c).await? {
                Put::Created => Outcome::changed(format!("re-created {what} from its snapshot")),
                Put::Unchanged => Outcome::unchanged(format!("{what} exists already")),
            },
        })
    }

    /// Reads the credential from ARM: gone, or back with the snapshot's properties.
    pub async fn check(&self, arm: &Arm, check: Check) -> Result<Verification, PlaneError> {
        let c = &self.credential;
        let what = self.what();
        let current = arm.federated_credential(&c.id).await?;
        Ok(match (check, current) {
            (Check::Applied, None) => {
                Verification::ok(format!("{what} is gone: no new tokens for the agent"))
            }
            (Check::Applied, Some(_)) => Verification::failed(format!("ARM still returns {what}")),
            (Check::Reverted, Some(current)) if current.properties == c.properties => {
                Verification::ok(format!("{what} is back"))
            }
            (Check::Reverted, Some(_)) => {
                Verification::failed(format!("{what} exists with other properties"))
            }
            (Check::Reverted, None) => {
                Verification::failed(format!("ARM does not return {what} yet"))
            }
        })
    }
}
