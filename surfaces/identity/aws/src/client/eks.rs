//! EKS Pod Identity calls: list and describe associations, delete one, create it again.

use std::collections::HashMap;

use firebreak_containment::plane::PlaneError;

use super::{is_not_found, refused, sdk_error};
use crate::role::Association;
use crate::PLANE;

/// The EKS client and the cluster whose associations it reads, built once per plane.
pub struct Eks {
    pub(crate) client: aws_sdk_eks::Client,
    pub cluster: String,
}

impl Eks {
    /// Ids of the associations of `cluster`, of one ServiceAccount when `of` is set.
    pub async fn association_ids(
        &self,
        cluster: &str,
        of: Option<(&str, &str)>,
    ) -> Result<Vec<String>, PlaneError> {
        let mut ids = Vec::new();
        let mut next = None;
        loop {
            let page = self
                .client
                .list_pod_identity_associations()
                .cluster_name(cluster)
                .set_namespace(of.map(|(ns, _)| ns.to_string()))
                .set_service_account(of.map(|(_, sa)| sa.to_string()))
                .set_next_token(next)
                .send()
                .await
                .map_err(|e| eks_error(e, cluster))?;
            ids.extend(
                page.associations()
                    .iter()
                    .filter_map(|a| a.association_id().map(str::to_string)),
            );
            next = page.next_token().map(str::to_string);
            if next.is_none() {
                return Ok(ids);
            }
        }
    }

    /// `Ok(None)`: the association does not exist (any more).
    pub async fn describe_association(
        &self,
        cluster: &str,
        id: &str,
    ) -> Result<Option<Association>, PlaneError> {
        let out = match self
            .client
            .describe_pod_identity_association()
            .cluster_name(cluster)
            .association_id(id)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(eks_error(e, cluster)),
        };
        let a = out.association().ok_or_else(|| {
            refused(&format!(
                "DescribePodIdentityAssociation {id} returned no association"
            ))
        })?;
        let field = |v: Option<&str>, name: &str| {
            v.map(str::to_string)
                .ok_or_else(|| refused(&format!("Pod Identity association {id} has no {name}")))
        };
        Ok(Some(Association {
            id: id.to_string(),
            namespace: field(a.namespace(), "namespace")?,
            service_account: field(a.service_account(), "serviceAccount")?,
            role_arn: field(a.role_arn(), "roleArn")?,
            tags: a
                .tags()
                .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
            target_role_arn: a.target_role_arn().map(str::to_string),
            disable_session_tags: a.disable_session_tags(),
        }))
    }

    /// The associations of `cluster` (of one ServiceAccount when `of` is set), described.
    pub async fn associations(
        &self,
        cluster: &str,
        of: Option<(&str, &str)>,
    ) -> Result<Vec<Association>, PlaneError> {
        let mut out = Vec::new();
        for id in self.association_ids(cluster, of).await? {
            // Deleted between list and describe: it is gone, which is what a list now says.
            if let Some(a) = self.describe_association(cluster, &id).await? {
                out.push(a);
            }
        }
        Ok(out)
    }

    /// Ids of the agent's associations with the snapshot's role, as EKS lists them now.
    pub async fn links(&self, cluster: &str, a: &Association) -> Result<Vec<String>, PlaneError> {
        Ok(self
            .associations(cluster, Some((&a.namespace, &a.service_account)))
            .await?
            .into_iter()
            .filter(|found| found.uses(&a.role_arn))
            .map(|found| found.id)
            .collect())
    }

    pub async fn delete(&self, cluster: &str, id: &str) -> Result<bool, PlaneError> {
        match self
            .client
            .delete_pod_identity_association()
            .cluster_name(cluster)
            .association_id(id)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(eks_error(e, cluster)),
        }
    }

    /// Creates `a` again; `token` makes a retried create (lost response, crash) return the same
    /// association instead of a second one. Returns the new association's id.
    pub async fn create(
        &self,
        cluster: &str,
        a: &Association,
        token: &str,
    ) -> Result<String, PlaneError> {
        let created = self
            .client
            .create_pod_identity_association()
            .cluster_name(cluster)
            .namespace(&a.namespace)
            .service_account(&a.service_account)
            .role_arn(&a.role_arn)
            .client_request_token(token)
            .set_tags(
                (!a.tags.is_empty()).then(|| a.tags.clone().into_iter().collect::<HashMap<_, _>>()),
            )
            .set_target_role_arn(a.target_role_arn.clone())
            .set_disable_session_tags(a.disable_session_tags)
            .send()
            .await
            .map_err(|e| eks_error(e, cluster))?;
        Ok(created
            .association()
            .and_then(|c| c.association_id())
            .unwrap_or("?")
            .to_string())
    }
}

/// EKS errors; an unknown cluster is a configuration error, said as such.
fn eks_error<E>(
    e: aws_sdk_iam::error::SdkError<E, aws_sdk_iam::config::http::HttpResponse>,
    cluster: &str,
) -> PlaneError
where
    E: aws_sdk_iam::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    use aws_sdk_iam::error::ProvideErrorMetadata;
    if is_not_found(&e) && e.message().is_some_and(|m| m.contains("cluster")) {
        return PlaneError::Invalid {
            plane: PLANE,
            detail: format!(
                "EKS cluster {cluster:?} does not exist ({}): check aws.eks.cluster",
                e.message().unwrap_or_default()
            ),
        };
    }
    sdk_error(e)
}
