//! The AWS IAM control plane over `aws-sdk-iam` (and `aws-sdk-eks` for Pod Identity): reads the
//! role, applies and reverts the ladder's actions idempotently, and verifies by reading back and
//! comparing parsed JSON.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_iam::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_iam::primitives::{DateTime, DateTimeFormat};
use aws_sdk_iam::Client;
use firebreak_containment::action::Surface;
use firebreak_containment::alert::{Dimension, Parameter};
use firebreak_containment::plan::Candidate;
use firebreak_containment::surface::{
    ControlPlane, Observation, Op, PlanInput, Step, SurfaceError,
};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::ladder::{
    merge_statements, revocation_statement, ActionSpec, BreachSpec, SessionScope, REVOCATION_SID,
};
use crate::policy::{CompiledPolicies, Permit, PolicyDocument, Request, Statement};
use crate::role::{
    decode_document, role_name_from_arn, Association, ObservedPolicy, PodIdentity, RoleState,
};
use crate::PLANE;

/// Where and how to reach IAM. `endpoint` overrides IAM's endpoint only; credentials and other
/// endpoints come from the standard AWS chain (`AWS_ENDPOINT_URL`, `AWS_PROFILE`, IRSA, instance
/// roles, …).
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

/// The EKS cluster whose Pod Identity associations link ServiceAccounts to roles (config
/// `aws.eks`: `cluster`, optional `endpoint`). Credentials and region are IAM's.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EksConfig {
    /// The EKS cluster name (not its ARN).
    pub cluster: String,
    /// Overrides the EKS endpoint (tests, VPC endpoints).
    #[serde(default)]
    pub endpoint: Option<String>,
}

struct Eks {
    client: aws_sdk_eks::Client,
    cluster: String,
}

pub struct AwsIam {
    client: Client,
    sdk: SdkConfig,
    eks: Option<Eks>,
    verify_deadline: Duration,
}

impl AwsIam {
    /// Credentials and region from the standard AWS chain.
    pub async fn new(config: &AwsConfig) -> AwsIam {
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(config.region.clone()))
            .load()
            .await;
        AwsIam::from_sdk_config(&sdk, config)
    }

    /// With an SDK config the caller built (its credentials and region); `config.endpoint`
    /// still overrides IAM's endpoint.
    pub fn from_sdk_config(sdk: &SdkConfig, config: &AwsConfig) -> AwsIam {
        let mut iam = aws_sdk_iam::config::Builder::from(sdk);
        if let Some(endpoint) = &config.endpoint {
            iam = iam.endpoint_url(endpoint);
        }
        AwsIam {
            client: Client::from_conf(iam.build()),
            sdk: sdk.clone(),
            eks: None,
            verify_deadline: config.verify_deadline,
        }
    }

    /// Sees the Pod Identity associations of one EKS cluster: resolves the agent's role from
    /// them when the envelope names none, and offers `eks.delete_pod_identity_association`.
    pub fn with_eks(mut self, config: &EksConfig) -> AwsIam {
        let mut eks = aws_sdk_eks::config::Builder::from(&self.sdk);
        if let Some(endpoint) = &config.endpoint {
            eks = eks.endpoint_url(endpoint);
        }
        self.eks = Some(Eks {
            client: aws_sdk_eks::Client::from_conf(eks.build()),
            cluster: config.cluster.clone(),
        });
        self
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
            pod_identity: None,
        })
    }

    fn eks(&self) -> Result<&Eks, SurfaceError> {
        self.eks.as_ref().ok_or_else(|| SurfaceError::Unsupported {
            plane: PLANE,
            detail: "no EKS cluster is configured (aws.eks.cluster): Pod Identity associations are out of reach".into(),
        })
    }

    /// Ids of the associations of `cluster`, of one ServiceAccount when `of` is set.
    async fn association_ids(
        &self,
        eks: &Eks,
        cluster: &str,
        of: Option<(&str, &str)>,
    ) -> Result<Vec<String>, SurfaceError> {
        let mut ids = Vec::new();
        let mut next = None;
        loop {
            let page = eks
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
    async fn describe_association(
        &self,
        eks: &Eks,
        cluster: &str,
        id: &str,
    ) -> Result<Option<Association>, SurfaceError> {
        let out = match eks
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
    async fn associations(
        &self,
        eks: &Eks,
        cluster: &str,
        of: Option<(&str, &str)>,
    ) -> Result<Vec<Association>, SurfaceError> {
        let mut out = Vec::new();
        for id in self.association_ids(eks, cluster, of).await? {
            // Deleted between list and describe: it is gone, which is what a list now says.
            if let Some(a) = self.describe_association(eks, cluster, &id).await? {
                out.push(a);
            }
        }
        Ok(out)
    }

    /// The agent's role from its Pod Identity association (among the cluster's `associations`),
    /// for envelopes that name no role.
    fn resolve_role(
        eks: &Eks,
        associations: &[Association],
        namespace: &str,
        service_account: &str,
    ) -> Result<String, SurfaceError> {
        let mut found = associations
            .iter()
            .filter(|a| a.namespace == namespace && a.service_account == service_account);
        match (found.next(), found.count()) {
            (Some(a), 0) => Ok(a.role_arn.clone()),
            (None, _) => Err(SurfaceError::Invalid {
                plane: PLANE,
                detail: format!(
                    "the envelope names no IAM role and ServiceAccount {namespace}/{service_account} has no Pod Identity association in EKS cluster {}: add the role ARN to the envelope's identity.principals or check aws.eks.cluster",
                    eks.cluster
                ),
            }),
            (Some(_), more) => Err(SurfaceError::Invalid {
                plane: PLANE,
                detail: format!(
                    "ServiceAccount {namespace}/{service_account} has {} Pod Identity associations in EKS cluster {}: name the role in the envelope's identity.principals",
                    more + 1,
                    eks.cluster
                ),
            }),
        }
    }

    /// Who reaches `role_arn` through the cluster's `associations`: the agent and the others.
    fn pod_identity(
        eks: &Eks,
        associations: Vec<Association>,
        role_arn: &str,
        namespace: &str,
        service_account: &str,
    ) -> PodIdentity {
        let (agent, sharing) = associations
            .into_iter()
            .filter(|a| a.uses(role_arn))
            .partition(|a| a.namespace == namespace && a.service_account == service_account);
        PodIdentity {
            cluster: eks.cluster.clone(),
            agent,
            sharing,
        }
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
                scope,
                ..
            } => {
                let ours = statements_of(&statements)?;
                let deny = Deny {
                    role_arn: &action.target,
                    role: &role_name,
                    policy: &policy_name,
                    ours: &ours,
                    breach: &breach,
                    scope: scope.as_ref(),
                };
                self.merge_deny(op, &deny).await
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
            ActionSpec::RevokeSessions {
                role_name,
                policy_name,
                scope,
            } => {
                self.revoke_sessions(op, &role_name, &policy_name, scope.as_ref())
                    .await
            }
            ActionSpec::DeletePodIdentityAssociation {
                cluster,
                association,
                client_request_token,
            } => {
                self.delete_association(op, &cluster, &association, &client_request_token)
                    .await
            }
        }
    }

    async fn merge_deny(&self, op: Op, deny: &Deny<'_>) -> Result<Step, SurfaceError> {
        let Deny {
            role_arn,
            role,
            policy,
            ours,
            breach,
            scope,
        } = *deny;
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
                // A scoped deny is evaluated as the agent's sessions see it.
                let ctx = scope.map(SessionScope::context).unwrap_or_default();
                let compiled = CompiledPolicies::new(&state.policies());
                match compiled.evaluate_in(&request, &ctx).permit {
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

impl AwsIam {
    async fn revoke_sessions(
        &self,
        op: Op,
        role: &str,
        policy: &str,
        scope: Option<&SessionScope>,
    ) -> Result<Step, SurfaceError> {
        let current = self.inline_document(role, policy).await?;
        let revokes_before = match &current {
            Some(doc) => revocation_cutoff(&parse(doc, policy)?, scope),
            None => None,
        };
        Ok(match (op, revokes_before, current.is_some()) {
            (Op::Apply, Some(cutoff), _) => Step::unchanged(format!(
                "{policy} already revokes sessions issued before {cutoff}"
            )),
            (Op::Apply, None, _) => {
                let cutoff = issue_time_cutoff()?;
                let document = merge_statements(&[], &[revocation_statement(&cutoff, scope)]);
                self.put_inline(role, policy, &document.to_value()).await?;
                Step::changed(format!(
                    "put {policy} on {role}: sessions issued before {cutoff} are denied everything"
                ))
            }
            (Op::Verify, Some(cutoff), _) => Step::ok(format!(
                "{policy} read back: sessions issued before {cutoff} are denied"
            )),
            (Op::Verify, None, _) => {
                Step::failed(format!("{policy} does not hold the session revocation"))
            }
            (Op::Revert, _, false) => Step::unchanged(format!("{policy} was already gone")),
            (Op::Revert, _, true) => {
                if self.delete_inline(role, policy).await? {
                    Step::changed(format!("deleted {policy}"))
                } else {
                    Step::unchanged(format!("{policy} was already gone"))
                }
            }
            (Op::VerifyReverted, _, false) => Step::ok(format!("{policy} is gone")),
            (Op::VerifyReverted, _, true) => Step::failed(format!("{policy} still exists")),
        })
    }

    /// Ids of the agent's associations with the snapshot's role, as EKS lists them now.
    async fn links(
        &self,
        eks: &Eks,
        cluster: &str,
        a: &Association,
    ) -> Result<Vec<String>, SurfaceError> {
        Ok(self
            .associations(eks, cluster, Some((&a.namespace, &a.service_account)))
            .await?
            .into_iter()
            .filter(|found| found.uses(&a.role_arn))
            .map(|found| found.id)
            .collect())
    }

    async fn delete_association(
        &self,
        op: Op,
        cluster: &str,
        a: &Association,
        token: &str,
    ) -> Result<Step, SurfaceError> {
        let eks = self.eks()?;
        let links = self.links(eks, cluster, a).await?;
        let who = a.service_account();
        Ok(match op {
            Op::Apply if links.is_empty() => {
                Step::unchanged(format!("{who} has no association with {}", a.role_arn))
            }
            Op::Apply if links.iter().any(|id| id != &a.id) => {
                return Err(SurfaceError::Conflict {
                    plane: PLANE,
                    detail: format!(
                        "{who} is linked to {} by association(s) {} that this plan did not see",
                        a.role_arn,
                        links.join(", ")
                    ),
                })
            }
            Op::Apply => match eks
                .client
                .delete_pod_identity_association()
                .cluster_name(cluster)
                .association_id(&a.id)
                .send()
                .await
            {
                Ok(_) => Step::changed(format!("deleted association {} of {who}", a.id)),
                Err(e) if is_not_found(&e) => {
                    Step::unchanged(format!("association {} was already gone", a.id))
                }
                Err(e) => return Err(eks_error(e, cluster)),
            },
            Op::Verify if links.is_empty() => Step::ok(format!(
                "{who} has no association with {} in cluster {cluster}",
                a.role_arn
            )),
            Op::Verify => Step::failed(format!("{who} is still associated: {}", links.join(", "))),
            Op::Revert if !links.is_empty() => Step::unchanged(format!(
                "{who} is associated with {} ({})",
                a.role_arn,
                links.join(", ")
            )),
            Op::Revert => {
                // The token makes a retried create (lost response, crash) return the same
                // association instead of a second one.
                let created = eks
                    .client
                    .create_pod_identity_association()
                    .cluster_name(cluster)
                    .namespace(&a.namespace)
                    .service_account(&a.service_account)
                    .role_arn(&a.role_arn)
                    .client_request_token(token)
                    .set_tags((!a.tags.is_empty()).then(|| a.tags.clone().into_iter().collect()))
                    .set_target_role_arn(a.target_role_arn.clone())
                    .set_disable_session_tags(a.disable_session_tags)
                    .send()
                    .await
                    .map_err(|e| eks_error(e, cluster))?;
                let id = created
                    .association()
                    .and_then(|c| c.association_id())
                    .unwrap_or("?");
                Step::changed(format!("created association {id} of {who} again"))
            }
            Op::VerifyReverted if links.is_empty() => {
                Step::failed(format!("{who} has no association with {}", a.role_arn))
            }
            Op::VerifyReverted => Step::ok(format!(
                "{who} is associated with {} again ({})",
                a.role_arn,
                links.join(", ")
            )),
        })
    }
}

/// What `merge_deny` needs from the journaled spec.
#[derive(Clone, Copy)]
struct Deny<'a> {
    role_arn: &'a str,
    role: &'a str,
    policy: &'a str,
    ours: &'a [Statement],
    breach: &'a BreachSpec,
    scope: Option<&'a SessionScope>,
}

/// The issue-time cut-off of a revocation policy, if it is exactly Firebreak's revocation.
fn revocation_cutoff(doc: &PolicyDocument, scope: Option<&SessionScope>) -> Option<String> {
    doc.statements.iter().find_map(|s| {
        let cutoff = s
            .condition
            .as_ref()?
            .get("DateLessThan")?
            .get("aws:TokenIssueTime")?
            .as_str()?;
        (s.sid.as_deref() == Some(REVOCATION_SID) && *s == revocation_statement(cutoff, scope))
            .then(|| cutoff.to_string())
    })
}

/// Now, rounded up to the next second (ISO 8601): every credential issued up to the moment of
/// apply is older.
fn issue_time_cutoff() -> Result<String, SurfaceError> {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| refused(&format!("the system clock is before 1970: {e}")))?;
    let seconds = i64::try_from(since_epoch.as_secs())
        .map_err(|e| refused(&format!("the system clock is out of range: {e}")))?;
    DateTime::from_secs(seconds + 1)
        .fmt(DateTimeFormat::DateTime)
        .map_err(|e| refused(&format!("cannot format the revocation time: {e}")))
}

#[async_trait]
impl ControlPlane for AwsIam {
    fn surface(&self) -> Surface {
        Surface::Aws
    }

    fn handles(&self, input: &PlanInput<'_>) -> bool {
        // AWS actions are `service:Action`; `k8s:` verbs belong to the Kubernetes plane and
        // `gcp:`-prefixed permissions to the GCP plane (Azure operations have no colon).
        let Parameter::Identity { action, .. } = &input.alert.parameter else {
            return false;
        };
        let aws_action =
            action.contains(':') && !action.starts_with("k8s:") && !action.starts_with("gcp:");
        input.alert.dimension == Dimension::Identity
            && aws_action
            && (role_arn(input).is_some() || self.eks.is_some())
    }

    async fn observe(&self, input: &PlanInput<'_>) -> Result<Box<dyn Observation>, SurfaceError> {
        let agent = &input.alert.agent;
        // One read of the cluster's associations serves both the role lookup and the blast
        // radius over ServiceAccounts sharing the role.
        let eks = match &self.eks {
            Some(eks) => Some((eks, self.associations(eks, &eks.cluster, None).await?)),
            None => None,
        };
        let arn = match (role_arn(input), &eks) {
            (Some(arn), _) => arn.to_string(),
            (None, Some((eks, all))) => {
                Self::resolve_role(eks, all, &agent.namespace, &agent.service_account)?
            }
            (None, None) => {
                return Err(SurfaceError::Unsupported {
                    plane: PLANE,
                    detail: "the envelope names no IAM role principal and no EKS cluster is configured (aws.eks.cluster) to resolve it from Pod Identity".into(),
                })
            }
        };
        let mut state = self.observe_role(&arn).await?;
        if let Some((eks, all)) = eks {
            state.pod_identity = Some(Self::pod_identity(
                eks,
                all,
                &state.arn,
                &agent.namespace,
                &agent.service_account,
            ));
        }
        Ok(Box::new(state))
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

fn is_not_found<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    e.code() == Some("ResourceNotFoundException")
}

/// EKS errors; an unknown cluster is a configuration error, said as such.
fn eks_error<E, R>(e: SdkError<E, R>, cluster: &str) -> SurfaceError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    if is_not_found(&e) && e.message().is_some_and(|m| m.contains("cluster")) {
        return SurfaceError::Invalid {
            plane: PLANE,
            detail: format!(
                "EKS cluster {cluster:?} does not exist ({}): check aws.eks.cluster",
                e.message().unwrap_or_default()
            ),
        };
    }
    sdk_error(e)
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
