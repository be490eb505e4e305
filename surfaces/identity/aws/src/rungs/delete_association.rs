//! `eks.delete_pod_identity_association` (approval only): the agent's Pod Identity association
//! with the role deleted, snapshotted so rollback creates it again (once, by its idempotency
//! token). A link cut: sessions issued before it live on.

use firebreak_containment::plan::BlastRadius;
use firebreak_containment::plane::{
    Change, Check, Outcome, PlanInput, PlaneError, Proposal, Verification,
};
use serde::{Deserialize, Serialize};

use super::{sid, Agent, AwsSpec, Link};
use crate::client::Eks;
use crate::role::{Association, RoleState};
use crate::PLANE;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    pub cluster: String,
    /// The pre-image: everything needed to create the association again; `None` on a
    /// candidate that was rejected because there is nothing to delete.
    pub association: Option<Association>,
    /// Idempotency key of the re-creation, so a retried revert creates it once.
    pub client_request_token: String,
}

pub(crate) fn propose(
    role: &RoleState,
    input: &PlanInput<'_>,
    agent: &Agent<'_>,
    link: &Link,
    everything: BlastRadius,
) -> Vec<Proposal<AwsSpec>> {
    // Nothing to delete: proposed (and rejected) so the plan says why this rung is out.
    let rejected = |why: String| Proposal {
        blast_radius: everything.clone(),
        blocks: false,
        inverse: "create the association again".into(),
        verify: "list the ServiceAccount's associations".into(),
        rejected: Some(why),
        ..Proposal::new(
            format!("Pod Identity association of {}", agent.name()),
            format!("new Pod Identity credentials for {}", agent.name()),
            AwsSpec::DeletePodIdentityAssociation(Spec {
                cluster: String::new(),
                association: None,
                client_request_token: String::new(),
            }),
        )
    };
    let Some(pi) = &role.pod_identity else {
        return match link {
            Link::PodIdentity => vec![rejected(
                "no EKS cluster is configured (aws.eks.cluster): Firebreak cannot see Pod Identity associations".into(),
            )],
            _ => vec![],
        };
    };
    if pi.agent.is_empty() {
        return vec![rejected(format!(
            "no Pod Identity association of {} in cluster {} uses the role: the link is already cut",
            agent.name(),
            pi.cluster
        ))];
    }
    pi.agent
        .iter()
        .map(|association| Proposal {
            blast_radius: everything.clone(),
            inverse: "create the association again from the journaled snapshot (idempotent: one creation however often it runs)".into(),
            verify: format!(
                "list the associations of {} in cluster {}: none left",
                agent.name(),
                pi.cluster
            ),
            notes: vec![
                "cuts the federation link only: credentials issued before it stay valid until they expire; follow with aws.revoke_sessions".into(),
            ],
            ..Proposal::new(
                format!("EKS cluster {} association {}", pi.cluster, association.id),
                format!(
                    "new Pod Identity credentials of role {} for ServiceAccount {}",
                    role.name,
                    agent.name()
                ),
                AwsSpec::DeletePodIdentityAssociation(Spec {
                    cluster: pi.cluster.clone(),
                    association: Some(association.clone()),
                    client_request_token: sid(
                        "firebreak-",
                        &[input.incident.as_str(), &association.id],
                    ),
                }),
            )
        })
        .collect()
}

fn association(spec: &Spec) -> Result<&Association, PlaneError> {
    spec.association.as_ref().ok_or_else(|| PlaneError::Invalid {
        plane: PLANE,
        detail: "this candidate names no association: it was proposed only to say why the rung is out".into(),
    })
}

pub(crate) async fn change(eks: &Eks, spec: &Spec, change: Change) -> Result<Outcome, PlaneError> {
    let (cluster, a) = (&spec.cluster, association(spec)?);
    let links = eks.links(cluster, a).await?;
    let who = a.service_account();
    Ok(match change {
        Change::Apply if links.is_empty() => {
            Outcome::unchanged(format!("{who} has no association with {}", a.role_arn))
        }
        Change::Apply if links.iter().any(|id| id != &a.id) => {
            return Err(PlaneError::Conflict {
                plane: PLANE,
                detail: format!(
                    "{who} is linked to {} by association(s) {} that this plan did not see",
                    a.role_arn,
                    links.join(", ")
                ),
            })
        }
        Change::Apply => match eks.delete(cluster, &a.id).await? {
            true => Outcome::changed(format!("deleted association {} of {who}", a.id)),
            false => Outcome::unchanged(format!("association {} was already gone", a.id)),
        },
        Change::Revert if !links.is_empty() => Outcome::unchanged(format!(
            "{who} is associated with {} ({})",
            a.role_arn,
            links.join(", ")
        )),
        Change::Revert => {
            let id = eks.create(cluster, a, &spec.client_request_token).await?;
            Outcome::changed(format!("created association {id} of {who} again"))
        }
    })
}

pub(crate) async fn check(
    eks: &Eks,
    spec: &Spec,
    check: Check,
) -> Result<Verification, PlaneError> {
    let (cluster, a) = (&spec.cluster, association(spec)?);
    let links = eks.links(cluster, a).await?;
    let who = a.service_account();
    Ok(match check {
        Check::Applied if links.is_empty() => Verification::ok(format!(
            "{who} has no association with {} in cluster {cluster}",
            a.role_arn
        )),
        Check::Applied => {
            Verification::failed(format!("{who} is still associated: {}", links.join(", ")))
        }
        Check::Reverted if links.is_empty() => {
            Verification::failed(format!("{who} has no association with {}", a.role_arn))
        }
        Check::Reverted => Verification::ok(format!(
            "{who} is associated with {} again ({})",
            a.role_arn,
            links.join(", ")
        )),
    })
}
