//! The AWS IAM control plane over `aws-sdk-iam`: reads the role, applies and reverts the ladder's
//! actions idempotently, and verifies by reading back and comparing parsed JSON.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_iam::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_iam::Client;
use firebreak_containment::action::Surface;
use firebreak_containment::alert::{Dimension, Parameter};
use firebreak_containment::plan::Candidate;
use firebreak_containment::surface::{
    ControlPlane, Observation, Op, PlanInput, Step, SurfaceError,
};
use serde_json::{json, Value};

use crate::ladder::{merge_statements, ActionSpec, BreachSpec};
use crate::policy::{evaluate, Permit, PolicyDocument, Request, Statement};
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

impl AwsIam {
    /// Destructures the journaled spec once and runs `op` for its action.
    async fn dispatch(&self, action: &Candidate, op: Op) -> Result<Step, SurfaceError> {
        match ActionSpec::from_candidate(action)? {
            ActionSpec::MergeDeny {
                role_name,
                policy_name,
                statements,
                breach,
                ..
            } => {
                let ours = statements_of(&statements)?;
                self.merge_deny(op, &action.target, &role_name, &policy_name, &ours, &breach)
                    .await
            }
            ActionSpec::DetachPolicy {
                role_name,
                policy_arn,
            } => self.detach_policy(op, &role_name, &policy_arn).await,
            ActionSpec::DeleteInlinePolicy {
                role_name,
                policy_name,
                pre_image,
            } => {
                self.delete_inline_policy(op, &role_name, &policy_name, &pre_image)
                    .await
            }
            ActionSpec::TrustDeny {
                role_name,
                statement,
                ..
            } => self.trust_deny(op, &role_name, &statement).await,
            ActionSpec::RevokeSessions { .. } => Err(SurfaceError::Unsupported {
                plane: PLANE,
                detail: "aws.revoke_sessions only runs after aws.trust_deny, which is not part of this plan".into(),
            }),
        }
    }

    async fn merge_deny(
        &self,
        op: Op,
        role_arn: &str,
        role: &str,
        policy: &str,
        ours: &[Statement],
        breach: &BreachSpec,
    ) -> Result<Step, SurfaceError> {
        let present = match self.inline_document(role, policy).await? {
            Some(doc) => Some(parse(&doc, policy)?.statements),
            None => None,
        };
        let holds_all = present
            .as_ref()
            .is_some_and(|p| ours.iter().all(|s| p.contains(s)));
        let holds_any = present
            .as_ref()
            .is_some_and(|p| ours.iter().any(|s| p.contains(s)));
        Ok(match op {
            Op::Apply if holds_all => Step::unchanged(format!("{policy} already holds the deny")),
            Op::Apply => {
                let merged = merge_statements(present.as_deref().unwrap_or(&[]), ours);
                self.put_inline(role, policy, &merged.to_value()).await?;
                Step::changed(format!("put inline policy {policy} on {role}"))
            }
            Op::Verify if !holds_all => Step::failed(format!("{policy} lacks this plan's deny")),
            Op::Verify => {
                // Read back is not enough: re-evaluate the breach against every policy of the role.
                let state = self.observe_role(role_arn).await?;
                let request = Request {
                    action: &breach.action,
                    resource: &breach.resource,
                };
                match evaluate(&state.policies(), &request).permit {
                    Permit::NotAllowed => Step::ok(format!(
                        "{policy} read back; {} on {} evaluates as denied",
                        breach.action, breach.resource
                    )),
                    other => Step::failed(format!("the breach still evaluates as {other:?}")),
                }
            }
            Op::Revert => {
                let Some(present) = present else {
                    return Ok(Step::unchanged(format!("{policy} was already gone")));
                };
                let rest: Vec<Statement> = present
                    .into_iter()
                    .filter(|s| !ours.iter().any(|o| o.sid == s.sid))
                    .collect();
                if rest.is_empty() {
                    self.delete_inline(role, policy).await?;
                    Step::changed(format!("deleted {policy}"))
                } else {
                    let remaining = merge_statements(&rest, &[]);
                    self.put_inline(role, policy, &remaining.to_value()).await?;
                    Step::changed(format!(
                        "removed this plan's statements from {policy}; {} remain",
                        rest.len()
                    ))
                }
            }
            Op::VerifyReverted if holds_any => {
                Step::failed(format!("{policy} still holds this plan's deny"))
            }
            Op::VerifyReverted => Step::ok(format!("{policy} no longer holds this plan's deny")),
        })
    }

    async fn detach_policy(
        &self,
        op: Op,
        role: &str,
        policy_arn: &str,
    ) -> Result<Step, SurfaceError> {
        let attached = self.attached(role, policy_arn).await?;
        Ok(match (op, attached) {
            (Op::Apply, false) => {
                Step::unchanged(format!("{policy_arn} is not attached to {role}"))
            }
            (Op::Apply, true) => {
                match self
                    .client
                    .detach_role_policy()
                    .role_name(role)
                    .policy_arn(policy_arn)
                    .send()
                    .await
                {
                    Ok(_) => Step::changed(format!("detached {policy_arn} from {role}")),
                    Err(e) if is_no_such_entity(&e) => {
                        Step::unchanged(format!("{policy_arn} was not attached to {role}"))
                    }
                    Err(e) => return Err(sdk_error(e)),
                }
            }
            (Op::Verify, true) => Step::failed(format!("{policy_arn} is still attached")),
            (Op::Verify, false) => Step::ok(format!("{policy_arn} is detached from {role}")),
            (Op::Revert, true) => Step::unchanged(format!("{policy_arn} is attached")),
            (Op::Revert, false) => {
                self.client
                    .attach_role_policy()
                    .role_name(role)
                    .policy_arn(policy_arn)
                    .send()
                    .await
                    .map_err(sdk_error)?;
                Step::changed(format!("attached {policy_arn} to {role} again"))
            }
            (Op::VerifyReverted, true) => Step::ok(format!("{policy_arn} is attached to {role}")),
            (Op::VerifyReverted, false) => Step::failed(format!("{policy_arn} is not attached")),
        })
    }

    async fn delete_inline_policy(
        &self,
        op: Op,
        role: &str,
        policy: &str,
        pre_image: &Value,
    ) -> Result<Step, SurfaceError> {
        let current = self.inline_document(role, policy).await?;
        Ok(match (op, current) {
            (Op::Apply, None) => Step::unchanged(format!("{policy} was already gone")),
            (Op::Apply, Some(_)) => {
                if self.delete_inline(role, policy).await? {
                    Step::changed(format!("deleted inline policy {policy} of {role}"))
                } else {
                    Step::unchanged(format!("{policy} was already gone"))
                }
            }
            (Op::Verify, None) => Step::ok(format!("{policy} is gone")),
            (Op::Verify, Some(_)) => Step::failed(format!("{policy} still exists")),
            (Op::Revert, Some(doc)) if &doc == pre_image => {
                Step::unchanged(format!("{policy} is in place"))
            }
            (Op::Revert, _) => {
                self.put_inline(role, policy, pre_image).await?;
                Step::changed(format!("restored {policy} from its pre-image"))
            }
            (Op::VerifyReverted, Some(doc)) if &doc == pre_image => {
                Step::ok(format!("{policy} matches its pre-image"))
            }
            (Op::VerifyReverted, Some(_)) => {
                Step::failed(format!("{policy} differs from its pre-image"))
            }
            (Op::VerifyReverted, None) => Step::failed(format!("{policy} is absent")),
        })
    }

    async fn trust_deny(
        &self,
        op: Op,
        role: &str,
        statement: &Value,
    ) -> Result<Step, SurfaceError> {
        let mut trust = self.trust_document(role).await?;
        let list = statement_list(&mut trust)?;
        let present = list.contains(statement);
        Ok(match (op, present) {
            (Op::Apply, true) => Step::unchanged("the trust policy already holds the deny".into()),
            (Op::Apply, false) => {
                list.push(statement.clone());
                self.put_trust(role, &trust).await?;
                Step::changed(format!("added a Deny to the trust policy of {role}"))
            }
            (Op::Verify, true) => Step::ok("the trust policy holds the deny".into()),
            (Op::Verify, false) => Step::failed("the trust policy lacks the deny".into()),
            (Op::Revert, false) => {
                Step::unchanged("the trust policy holds no Firebreak deny".into())
            }
            (Op::Revert, true) => {
                // Remove only our statement: later edits by others to the trust policy survive.
                list.retain(|s| s != statement);
                self.put_trust(role, &trust).await?;
                Step::changed(format!("removed the Deny from the trust policy of {role}"))
            }
            (Op::VerifyReverted, true) => {
                Step::failed("the trust policy still holds the deny".into())
            }
            (Op::VerifyReverted, false) => {
                Step::ok("the trust policy no longer holds the deny".into())
            }
        })
    }
}

#[async_trait]
impl ControlPlane for AwsIam {
    fn surface(&self) -> Surface {
        Surface::Aws
    }

    fn handles(&self, input: &PlanInput<'_>) -> bool {
        // `k8s:` actions are Kubernetes RBAC verbs, contained by the Kubernetes plane.
        input.alert.dimension == Dimension::Identity
            && role_arn(input).is_some()
            && !matches!(&input.alert.parameter, Parameter::Identity { action, .. } if action.starts_with("k8s:"))
    }

    async fn observe(&self, input: &PlanInput<'_>) -> Result<Box<dyn Observation>, SurfaceError> {
        let arn = role_arn(input).ok_or_else(|| SurfaceError::Unsupported {
            plane: PLANE,
            detail: "the envelope names no IAM role principal".into(),
        })?;
        Ok(Box::new(self.observe_role(arn).await?))
    }

    async fn run(&self, action: &Candidate, op: Op) -> Result<Step, SurfaceError> {
        self.dispatch(action, op).await
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
