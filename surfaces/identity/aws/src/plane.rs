//! The AWS IAM control plane over `aws-sdk-iam`: reads the role, applies and reverts the ladder's
//! actions idempotently, and verifies by reading back and comparing parsed JSON.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_iam::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_iam::Client;
use firebreak_containment::action::Surface;
use firebreak_containment::alert::Dimension;
use firebreak_containment::plan::Candidate;
use firebreak_containment::surface::{
    ControlPlane, Observation, Outcome, PlanInput, SurfaceError, Verification,
};
use serde_json::{json, Value};

use crate::ladder::{merge_statements, ActionSpec};
use crate::policy::{evaluate, Permit, PolicyDocument, Request};
use crate::role::{decode_document, role_name_from_arn, ObservedPolicy, RoleState};
use crate::PLANE;

/// Where and how to reach IAM. The endpoint and credentials otherwise come from the standard AWS
/// chain (`AWS_ENDPOINT_URL`, `AWS_PROFILE`, IRSA, instance roles, …).
#[derive(Debug, Clone)]
pub struct AwsConfig {
    pub region: String,
    pub endpoint: Option<String>,
    pub verify_deadline: Duration,
}

impl Default for AwsConfig {
    fn default() -> Self {
        Self {
            region: "us-east-1".into(),
            endpoint: None,
            verify_deadline: Duration::from_secs(300),
        }
    }
}

pub struct AwsIam {
    client: Client,
    verify_deadline: Duration,
}

impl AwsIam {
    pub async fn new(config: &AwsConfig) -> AwsIam {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(config.region.clone()));
        if let Some(endpoint) = &config.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        let sdk = loader.load().await;
        AwsIam {
            client: Client::new(&sdk),
            verify_deadline: config.verify_deadline,
        }
    }

    /// Reads everything the ladder needs about one role. Read-only calls only.
    pub async fn observe_role(&self, role_arn: &str) -> Result<RoleState, SurfaceError> {
        let name = role_name_from_arn(role_arn).ok_or_else(|| SurfaceError::Invalid {
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
        })
    }

    async fn inline_document(
        &self,
        role: &str,
        policy: &str,
    ) -> Result<Option<Value>, SurfaceError> {
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

    async fn put_inline(
        &self,
        role: &str,
        policy: &str,
        document: &Value,
    ) -> Result<(), SurfaceError> {
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

    async fn delete_inline(&self, role: &str, policy: &str) -> Result<bool, SurfaceError> {
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

    async fn attached(&self, role: &str, policy_arn: &str) -> Result<bool, SurfaceError> {
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

    async fn trust_document(&self, role: &str) -> Result<Value, SurfaceError> {
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

    async fn put_trust(&self, role: &str, document: &Value) -> Result<(), SurfaceError> {
        self.client
            .update_assume_role_policy()
            .role_name(role)
            .policy_document(document.to_string())
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }
}

#[async_trait]
impl ControlPlane for AwsIam {
    fn surface(&self) -> Surface {
        Surface::Aws
    }

    fn handles(&self, input: &PlanInput<'_>) -> bool {
        input.alert.dimension == Dimension::Identity && role_arn(input).is_some()
    }

    async fn observe(&self, input: &PlanInput<'_>) -> Result<Box<dyn Observation>, SurfaceError> {
        let arn = role_arn(input).ok_or_else(|| SurfaceError::Unsupported {
            plane: PLANE,
            detail: "the envelope names no IAM role principal".into(),
        })?;
        Ok(Box::new(self.observe_role(arn).await?))
    }

    async fn apply(&self, action: &Candidate) -> Result<Outcome, SurfaceError> {
        match ActionSpec::from_candidate(action)? {
            ActionSpec::MergeDeny {
                role_name,
                policy_name,
                statements,
                ..
            } => {
                let ours = statements_of(&statements)?;
                let current = self.inline_document(&role_name, &policy_name).await?;
                let existing = match &current {
                    Some(doc) => parse(doc, &policy_name)?.statements,
                    None => Vec::new(),
                };
                if ours.iter().all(|s| existing.contains(s)) {
                    return Ok(unchanged(format!("{policy_name} already holds the deny")));
                }
                let merged = merge_statements(&existing, &ours);
                self.put_inline(&role_name, &policy_name, &merged.to_value())
                    .await?;
                Ok(changed(format!(
                    "put inline policy {policy_name} on {role_name}"
                )))
            }
            ActionSpec::DetachPolicy {
                role_name,
                policy_arn,
            } => match self
                .client
                .detach_role_policy()
                .role_name(&role_name)
                .policy_arn(&policy_arn)
                .send()
                .await
            {
                Ok(_) => Ok(changed(format!("detached {policy_arn} from {role_name}"))),
                Err(e) if is_no_such_entity(&e) => Ok(unchanged(format!(
                    "{policy_arn} was not attached to {role_name}"
                ))),
                Err(e) => Err(sdk_error(e)),
            },
            ActionSpec::DeleteInlinePolicy {
                role_name,
                policy_name,
                ..
            } => Ok(if self.delete_inline(&role_name, &policy_name).await? {
                changed(format!(
                    "deleted inline policy {policy_name} of {role_name}"
                ))
            } else {
                unchanged(format!("{policy_name} was already gone"))
            }),
            ActionSpec::TrustDeny {
                role_name,
                statement,
                ..
            } => {
                let mut trust = self.trust_document(&role_name).await?;
                let list = statement_list(&mut trust)?;
                if list.contains(&statement) {
                    return Ok(unchanged("the trust policy already holds the deny".into()));
                }
                list.push(statement);
                self.put_trust(&role_name, &trust).await?;
                Ok(changed(format!(
                    "added a Deny to the trust policy of {role_name}"
                )))
            }
            ActionSpec::RevokeSessions { .. } => Err(not_alone()),
        }
    }

    async fn verify(&self, action: &Candidate) -> Result<Verification, SurfaceError> {
        match ActionSpec::from_candidate(action)? {
            ActionSpec::MergeDeny {
                role_name,
                policy_name,
                statements,
                breach,
                ..
            } => {
                let ours = statements_of(&statements)?;
                let Some(doc) = self.inline_document(&role_name, &policy_name).await? else {
                    return Ok(failed(format!("{policy_name} is absent")));
                };
                let present = parse(&doc, &policy_name)?.statements;
                if let Some(missing) = ours.iter().find(|s| !present.contains(s)) {
                    return Ok(failed(format!(
                        "{policy_name} lacks statement {}",
                        missing.sid.as_deref().unwrap_or("?")
                    )));
                }
                let role = self.observe_role(&action.target).await?;
                let eval = evaluate(
                    &role.policies(),
                    &Request {
                        action: &breach.action,
                        resource: &breach.resource,
                    },
                );
                Ok(match eval.permit {
                    Permit::NotAllowed => ok(format!(
                        "{policy_name} read back; {} on {} evaluates as denied",
                        breach.action, breach.resource
                    )),
                    other => failed(format!("the breach still evaluates as {other:?}")),
                })
            }
            ActionSpec::DetachPolicy {
                role_name,
                policy_arn,
            } => Ok(if self.attached(&role_name, &policy_arn).await? {
                failed(format!("{policy_arn} is still attached"))
            } else {
                ok(format!("{policy_arn} is detached from {role_name}"))
            }),
            ActionSpec::DeleteInlinePolicy {
                role_name,
                policy_name,
                ..
            } => Ok(
                match self.inline_document(&role_name, &policy_name).await? {
                    None => ok(format!("{policy_name} is gone")),
                    Some(_) => failed(format!("{policy_name} still exists")),
                },
            ),
            ActionSpec::TrustDeny {
                role_name,
                statement,
                ..
            } => {
                let mut trust = self.trust_document(&role_name).await?;
                Ok(if statement_list(&mut trust)?.contains(&statement) {
                    ok("the trust policy holds the deny".into())
                } else {
                    failed("the trust policy lacks the deny".into())
                })
            }
            ActionSpec::RevokeSessions { .. } => Err(not_alone()),
        }
    }

    async fn revert(&self, action: &Candidate) -> Result<Outcome, SurfaceError> {
        match ActionSpec::from_candidate(action)? {
            ActionSpec::MergeDeny {
                role_name,
                policy_name,
                statements,
                ..
            } => {
                let ours = statements_of(&statements)?;
                let Some(doc) = self.inline_document(&role_name, &policy_name).await? else {
                    return Ok(unchanged(format!("{policy_name} was already gone")));
                };
                let rest: Vec<_> = parse(&doc, &policy_name)?
                    .statements
                    .into_iter()
                    .filter(|s| !ours.iter().any(|o| o.sid == s.sid))
                    .collect();
                if rest.is_empty() {
                    self.delete_inline(&role_name, &policy_name).await?;
                    return Ok(changed(format!("deleted {policy_name}")));
                }
                let remaining = merge_statements(&rest, &[]);
                self.put_inline(&role_name, &policy_name, &remaining.to_value())
                    .await?;
                Ok(changed(format!(
                    "removed this plan's statements from {policy_name}; {} remain",
                    rest.len()
                )))
            }
            ActionSpec::DetachPolicy {
                role_name,
                policy_arn,
            } => {
                if self.attached(&role_name, &policy_arn).await? {
                    return Ok(unchanged(format!("{policy_arn} is attached")));
                }
                self.client
                    .attach_role_policy()
                    .role_name(&role_name)
                    .policy_arn(&policy_arn)
                    .send()
                    .await
                    .map_err(sdk_error)?;
                Ok(changed(format!(
                    "attached {policy_arn} to {role_name} again"
                )))
            }
            ActionSpec::DeleteInlinePolicy {
                role_name,
                policy_name,
                pre_image,
            } => {
                if self
                    .inline_document(&role_name, &policy_name)
                    .await?
                    .as_ref()
                    == Some(&pre_image)
                {
                    return Ok(unchanged(format!("{policy_name} is in place")));
                }
                self.put_inline(&role_name, &policy_name, &pre_image)
                    .await?;
                Ok(changed(format!(
                    "restored {policy_name} from its pre-image"
                )))
            }
            ActionSpec::TrustDeny {
                role_name,
                statement,
                ..
            } => {
                // Remove only our statement: later edits by others to the trust policy survive.
                let mut trust = self.trust_document(&role_name).await?;
                let list = statement_list(&mut trust)?;
                let before = list.len();
                list.retain(|s| s != &statement);
                if list.len() == before {
                    return Ok(unchanged("the trust policy holds no Firebreak deny".into()));
                }
                self.put_trust(&role_name, &trust).await?;
                Ok(changed(format!(
                    "removed the Deny from the trust policy of {role_name}"
                )))
            }
            ActionSpec::RevokeSessions { .. } => Err(not_alone()),
        }
    }

    async fn verify_reverted(&self, action: &Candidate) -> Result<Verification, SurfaceError> {
        match ActionSpec::from_candidate(action)? {
            ActionSpec::MergeDeny {
                role_name,
                policy_name,
                statements,
                ..
            } => {
                let ours = statements_of(&statements)?;
                Ok(
                    match self.inline_document(&role_name, &policy_name).await? {
                        None => ok(format!("{policy_name} is gone")),
                        Some(doc) => {
                            let present = parse(&doc, &policy_name)?.statements;
                            if ours.iter().any(|s| present.contains(s)) {
                                failed(format!("{policy_name} still holds this plan's deny"))
                            } else {
                                ok(format!("{policy_name} no longer holds this plan's deny"))
                            }
                        }
                    },
                )
            }
            ActionSpec::DetachPolicy {
                role_name,
                policy_arn,
            } => Ok(if self.attached(&role_name, &policy_arn).await? {
                ok(format!("{policy_arn} is attached to {role_name}"))
            } else {
                failed(format!("{policy_arn} is not attached"))
            }),
            ActionSpec::DeleteInlinePolicy {
                role_name,
                policy_name,
                pre_image,
            } => Ok(
                match self.inline_document(&role_name, &policy_name).await? {
                    Some(doc) if doc == pre_image => {
                        ok(format!("{policy_name} matches its pre-image"))
                    }
                    Some(_) => failed(format!("{policy_name} differs from its pre-image")),
                    None => failed(format!("{policy_name} is absent")),
                },
            ),
            ActionSpec::TrustDeny {
                role_name,
                statement,
                ..
            } => {
                let mut trust = self.trust_document(&role_name).await?;
                Ok(if statement_list(&mut trust)?.contains(&statement) {
                    failed("the trust policy still holds the deny".into())
                } else {
                    ok("the trust policy no longer holds the deny".into())
                })
            }
            ActionSpec::RevokeSessions { .. } => Err(not_alone()),
        }
    }

    fn verify_deadline(&self) -> Duration {
        self.verify_deadline
    }
}

fn role_arn<'a>(input: &PlanInput<'a>) -> Option<&'a str> {
    input
        .envelope
        .spec
        .identity
        .principals
        .iter()
        .map(String::as_str)
        .find(|p| role_name_from_arn(p).is_some())
}

fn not_alone() -> SurfaceError {
    SurfaceError::Unsupported {
        plane: PLANE,
        detail:
            "aws.revoke_sessions only runs after aws.trust_deny, which is not part of this plan"
                .into(),
    }
}

fn statements_of(values: &[Value]) -> Result<Vec<crate::policy::Statement>, SurfaceError> {
    let doc = json!({"Version": "2012-10-17", "Statement": values});
    Ok(parse(&doc, "the journaled statements")?.statements)
}

/// The `Statement` array of a document, made an array if IAM returned a single object.
fn statement_list(doc: &mut Value) -> Result<&mut Vec<Value>, SurfaceError> {
    let obj = doc
        .as_object_mut()
        .ok_or_else(|| refused("the trust policy is not a JSON object"))?;
    let entry = obj
        .entry("Statement")
        .or_insert_with(|| Value::Array(vec![]));
    if !entry.is_array() {
        *entry = Value::Array(vec![entry.take()]);
    }
    entry
        .as_array_mut()
        .ok_or_else(|| refused("the trust policy Statement is not a list"))
}

fn decode(text: &str) -> Result<Value, SurfaceError> {
    decode_document(text).map_err(|detail| refused(&detail))
}

fn parse(doc: &Value, what: &str) -> Result<PolicyDocument, SurfaceError> {
    PolicyDocument::from_json_value(doc).map_err(|e| SurfaceError::Invalid {
        plane: PLANE,
        detail: format!("{what} does not parse as an IAM policy: {e}"),
    })
}

fn refused(detail: &str) -> SurfaceError {
    SurfaceError::Refused {
        plane: PLANE,
        detail: detail.to_string(),
    }
}

fn changed(detail: String) -> Outcome {
    Outcome {
        changed: true,
        detail,
    }
}

fn unchanged(detail: String) -> Outcome {
    Outcome {
        changed: false,
        detail,
    }
}

fn ok(detail: String) -> Verification {
    Verification { ok: true, detail }
}

fn failed(detail: String) -> Verification {
    Verification { ok: false, detail }
}

fn is_no_such_entity<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    e.code() == Some("NoSuchEntity")
}

fn sdk_error<E, R>(e: SdkError<E, R>) -> SurfaceError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match &e {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => SurfaceError::Unreachable {
            plane: PLANE,
            detail: DisplayErrorContext(&e).to_string(),
        },
        _ => SurfaceError::Refused {
            plane: PLANE,
            detail: match (e.code(), e.message()) {
                (Some(code), Some(message)) => format!("{code}: {message}"),
                _ => DisplayErrorContext(&e).to_string(),
            },
        },
    }
}
