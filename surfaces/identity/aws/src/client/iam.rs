//! IAM calls: read a role whole, and the few writes the ladder makes. Every call is one attempt.

use aws_sdk_iam::Client;
use firebreak_containment::plane::PlaneError;
use serde_json::Value;

use super::{decode, is_no_such_entity, parse, refused, sdk_error};
use crate::role::{role_name_from_arn, ObservedPolicy, RoleState};
use crate::PLANE;

/// The IAM client, built once per plane.
pub struct Iam {
    pub(crate) client: Client,
}

impl Iam {
    /// Reads everything the ladder needs about one role. Read-only calls only.
    pub async fn observe_role(&self, role_arn: &str) -> Result<RoleState, PlaneError> {
        let name = role_name_from_arn(role_arn).ok_or_else(|| PlaneError::Invalid {
            plane: PLANE,
            detail: format!("{role_arn:?} is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)"),
        })?;
        let role = self
            .client
            .get_role()
            .role_name(name)
            .send()
            .await
            .map_err(sdk_error)?;
        let role = role
            .role()
            .ok_or_else(|| refused("GetRole returned no role"))?;
        let trust_raw = decode(role.assume_role_policy_document().unwrap_or("{}"))?;
        let trust = ObservedPolicy {
            id: "trust".into(),
            name: "trust policy".into(),
            document: parse(&trust_raw, "the trust policy")?,
            raw: trust_raw,
        };

        let mut inline = Vec::new();
        let mut marker = None;
        loop {
            let page = self
                .client
                .list_role_policies()
                .role_name(name)
                .set_marker(marker)
                .send()
                .await
                .map_err(sdk_error)?;
            for policy_name in page.policy_names() {
                let doc = self
                    .client
                    .get_role_policy()
                    .role_name(name)
                    .policy_name(policy_name)
                    .send()
                    .await
                    .map_err(sdk_error)?;
                let raw = decode(doc.policy_document())?;
                inline.push(ObservedPolicy {
                    id: policy_name.clone(),
                    name: policy_name.clone(),
                    document: parse(&raw, policy_name)?,
                    raw,
                });
            }
            marker = page.marker().map(str::to_string);
            if !page.is_truncated() || marker.is_none() {
                break;
            }
        }

        let mut managed = Vec::new();
        let mut marker = None;
        loop {
            let page = self
                .client
                .list_attached_role_policies()
                .role_name(name)
                .set_marker(marker)
                .send()
                .await
                .map_err(sdk_error)?;
            for attached in page.attached_policies() {
                let Some(arn) = attached.policy_arn() else {
                    continue;
                };
                let policy = self
                    .client
                    .get_policy()
                    .policy_arn(arn)
                    .send()
                    .await
                    .map_err(sdk_error)?;
                let version = policy
                    .policy()
                    .and_then(|p| p.default_version_id())
                    .ok_or_else(|| refused(&format!("GetPolicy {arn} has no default version")))?;
                let doc = self
                    .client
                    .get_policy_version()
                    .policy_arn(arn)
                    .version_id(version)
                    .send()
                    .await
                    .map_err(sdk_error)?;
                let text = doc
                    .policy_version()
                    .and_then(|v| v.document())
                    .ok_or_else(|| {
                        refused(&format!("policy {arn} version {version} has no document"))
                    })?;
                let raw = decode(text)?;
                let policy_name = attached.policy_name().unwrap_or(arn).to_string();
                managed.push(ObservedPolicy {
                    id: arn.to_string(),
                    document: parse(&raw, &policy_name)?,
                    name: policy_name,
                    raw,
                });
            }
            marker = page.marker().map(str::to_string);
            if !page.is_truncated() || marker.is_none() {
                break;
            }
        }

        Ok(RoleState {
            arn: role.arn().to_string(),
            name: name.to_string(),
            inline,
            managed,
            trust,
            pod_identity: None,
        })
    }

    pub async fn inline_document(
        &self,
        role: &str,
        policy: &str,
    ) -> Result<Option<Value>, PlaneError> {
        match self
            .client
            .get_role_policy()
            .role_name(role)
            .policy_name(policy)
            .send()
            .await
        {
            Ok(out) => Ok(Some(decode(out.policy_document())?)),
            Err(e) if is_no_such_entity(&e) => Ok(None),
            Err(e) => Err(sdk_error(e)),
        }
    }

    pub async fn put_inline(
        &self,
        role: &str,
        policy: &str,
        document: &Value,
    ) -> Result<(), PlaneError> {
        self.client
            .put_role_policy()
            .role_name(role)
            .policy_name(policy)
            .policy_document(document.to_string())
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }

    pub async fn delete_inline(&self, role: &str, policy: &str) -> Result<bool, PlaneError> {
        match self
            .client
            .delete_role_policy()
            .role_name(role)
            .policy_name(policy)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_no_such_entity(&e) => Ok(false),
            Err(e) => Err(sdk_error(e)),
        }
    }

    pub async fn attached(&self, role: &str, policy_arn: &str) -> Result<bool, PlaneError> {
        let mut marker = None;
        loop {
            let page = self
                .client
                .list_attached_role_policies()
                .role_name(role)
                .set_marker(marker)
                .send()
                .await
                .map_err(sdk_error)?;
            if page
                .attached_policies()
                .iter()
                .any(|p| p.policy_arn() == Some(policy_arn))
            {
                return Ok(true);
            }
            marker = page.marker().map(str::to_string);
            if !page.is_truncated() || marker.is_none() {
                return Ok(false);
            }
        }
    }

    pub async fn trust_document(&self, role: &str) -> Result<Value, PlaneError> {
        let out = self
            .client
            .get_role()
            .role_name(role)
            .send()
            .await
            .map_err(sdk_error)?;
        decode(
            out.role()
                .and_then(|r| r.assume_role_policy_document())
                .unwrap_or("{}"),
        )
    }

    pub async fn put_trust(&self, role: &str, document: &Value) -> Result<(), PlaneError> {
        self.client
            .update_assume_role_policy()
            .role_name(role)
            .policy_document(document.to_string())
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }

    pub async fn detach(&self, role: &str, policy_arn: &str) -> Result<bool, PlaneError> {
        match self
            .client
            .detach_role_policy()
            .role_name(role)
            .policy_arn(policy_arn)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_no_such_entity(&e) => Ok(false),
            Err(e) => Err(sdk_error(e)),
        }
    }

    pub async fn attach(&self, role: &str, policy_arn: &str) -> Result<(), PlaneError> {
        self.client
            .attach_role_policy()
            .role_name(role)
            .policy_arn(policy_arn)
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }
}
