//! The upper rungs of the AWS ladder through the real SDK clients: IAM against a real moto
//! server, EKS Pod Identity against the strict fake of `firebreak_e2e::eks_api` (moto has no Pod
//! Identity APIs). Each test seeds its own role (unique names) on the binary's one moto and
//! starts its own EKS fake, so IAM writes are counted per role and EKS writes per fake.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_iam::config::{Credentials, SharedCredentialsProvider};
use firebreak_aws::rungs::{
    DELETE_INLINE_POLICY, DELETE_POD_IDENTITY_ASSOCIATION, INLINE_DENY, REVOKE_SESSIONS, TRUST_DENY,
};
use firebreak_aws::{AwsConfig, AwsIam, EksConfig};
use firebreak_containment::plan::Candidate;
use firebreak_containment::plane::{
    erase, Change, Check, DynPlane, FaultKind, KindSpec, PlanInput, PlaneError,
};
use firebreak_containment::{Alert, Envelope};
use firebreak_containment::{IncidentId, PlanId};
use firebreak_e2e::eks_api::EksApi;
use firebreak_e2e::moto::{self, Moto, ACCESS_KEY_ID, ACCOUNT_ID, REGION, SECRET_ACCESS_KEY};
use firebreak_e2e::{decode_policy, seed_role};
use serde_json::{json, Value};

const CLUSTER: &str = "prod-eks";
const ISSUER: &str = "oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B716D3041E";
const S3_BROAD: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject","s3:PutObject"],"Resource":"arn:aws:s3:::*"}]}"#;
const IAM_STAR: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iam:*","Resource":"*"}]}"#;
const BREACH: &str = "arn:aws:s3:::partner-payouts/*";

fn irsa_trust(service_account: &str) -> String {
    json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow",
        "Principal": {"Federated": format!("arn:aws:iam::{ACCOUNT_ID}:oidc-provider/{ISSUER}")},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {format!("{ISSUER}:sub"): format!("system:serviceaccount:payments:{service_account}")}}
    }]})
    .to_string()
}

fn pod_identity_trust() -> String {
    json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow",
        "Principal": {"Service": "pods.eks.amazonaws.com"},
        "Action": ["sts:AssumeRole", "sts:TagSession"]
    }]})
    .to_string()
}

fn role_arn(name: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT_ID}:role/{name}")
}

/// Agent `name` in namespace payments (ServiceAccount `name`); its envelope names the role
/// `name` unless `names_role` is false.
fn envelope(name: &str, names_role: bool) -> Envelope {
    let principals = if names_role {
        format!("[{}]", role_arn(name))
    } else {
        "[]".into()
    };
    Envelope::from_yaml(&format!(
        r#"apiVersion: firebreak.dev/v1alpha1
kind: Envelope
metadata: {{name: {name}, namespace: payments}}
spec:
  agent: {{cluster: {CLUSTER}, namespace: payments, workload: Deployment/{name}, serviceAccount: {name}}}
  version: 3
  status: converged
  identity:
    principals: {principals}
    observed:
      - {{action: s3:GetObject, resource: "arn:aws:s3:::invoices/*", closure: structural, count: 900, sessions: 80}}
      - {{action: s3:PutObject, resource: "arn:aws:s3:::payment-receipts/*", closure: structural, count: 400, sessions: 60}}
"#
    ))
    .unwrap_or_else(|e| panic!("test envelope: {e}"))
}

fn alert(name: &str) -> Alert {
    let body = json!({
        "id": format!("a-{name}"), "source": "test", "time": "2026-11-22T02:47:00Z",
        "agent": {"cluster": CLUSTER, "namespace": "payments",
                  "workload": format!("Deployment/{name}"), "serviceAccount": name},
        "dimension": "identity",
        "parameter": {"action": "s3:PutObject", "resource": BREACH},
        "tier": "attack-attempt", "severity": "critical", "evidence": {}
    });
    Alert::from_json(body.to_string().as_bytes()).unwrap_or_else(|e| panic!("test alert: {e}"))
}

fn sdk(retry: RetryConfig) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .retry_config(retry)
        .region(Region::new(REGION))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            ACCESS_KEY_ID,
            SECRET_ACCESS_KEY,
            None,
            None,
            "firebreak-e2e",
        )))
        .build()
}

fn plane(moto: &Moto, eks: Option<(&EksApi, &str)>) -> Arc<dyn DynPlane> {
    plane_with(sdk(RetryConfig::standard()), moto, eks)
}

fn plane_with(sdk: SdkConfig, moto: &Moto, eks: Option<(&EksApi, &str)>) -> Arc<dyn DynPlane> {
    let iam = AwsIam::from_sdk_config(
        &sdk,
        &AwsConfig {
            region: REGION.into(),
            endpoint: Some(moto.endpoint()),
            verify_deadline: Duration::from_secs(5),
        },
    );
    erase(match eks {
        Some((fake, cluster)) => iam.with_eks(&EksConfig {
            cluster: cluster.into(),
            endpoint: Some(fake.url()),
        }),
        None => iam,
    })
}

struct Agent {
    incident: IncidentId,
    plan: PlanId,
    envelope: Envelope,
    alert: Alert,
}

impl Agent {
    fn new(name: &str, names_role: bool) -> Agent {
        Agent {
            incident: format!("inc-{name}").into(),
            plan: format!("inc-{name}-p1").into(),
            envelope: envelope(name, names_role),
            alert: alert(name),
        }
    }

    fn input(&self) -> PlanInput<'_> {
        PlanInput {
            incident: &self.incident,
            plan: &self.plan,
            alert: &self.alert,
            envelope: &self.envelope,
        }
    }

    async fn plan(&self, plane: &Arc<dyn DynPlane>) -> Result<Vec<Candidate>, PlaneError> {
        plane.candidates(&self.input()).await
    }
}

fn find<'c>(candidates: &'c [Candidate], kind: &KindSpec) -> Result<&'c Candidate> {
    candidates
        .iter()
        .find(|c| c.kind == kind)
        .ok_or_else(|| anyhow!("no {} candidate among {candidates:#?}", kind.name))
}

async fn trust_of(iam: &aws_sdk_iam::Client, role: &str) -> Result<Value> {
    let out = iam.get_role().role_name(role).send().await?;
    let doc = out
        .role()
        .and_then(|r| r.assume_role_policy_document())
        .ok_or_else(|| anyhow!("role {role} has no trust policy"))?;
    Ok(decode_policy(doc))
}

async fn inline_of(iam: &aws_sdk_iam::Client, role: &str, policy: &str) -> Result<Option<Value>> {
    match iam
        .get_role_policy()
        .role_name(role)
        .policy_name(policy)
        .send()
        .await
    {
        Ok(out) => Ok(Some(decode_policy(out.policy_document()))),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_no_such_entity_exception()) =>
        {
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// IAM writes moto received naming `role`.
async fn role_writes(moto: &Moto, role: &str) -> Result<usize> {
    Ok(moto
        .mutating_iam_requests()
        .await?
        .iter()
        .filter(|r| r.param("RoleName") == Some(role))
        .count())
}

/// Apply (changed), apply again (unchanged), verify, revert (changed), revert again
/// (unchanged), verify reverted: the contract every action meets.
async fn full_cycle(plane: &Arc<dyn DynPlane>, action: &Candidate) -> Result<()> {
    assert!(
        plane.change(action, Change::Apply).await?.changed,
        "{} applies",
        action.kind
    );
    assert!(
        !plane.change(action, Change::Apply).await?.changed,
        "{} applied again is unchanged",
        action.kind
    );
    let v = plane.check(action, Check::Applied).await?;
    assert!(v.ok, "{} verifies: {}", action.kind, v.detail);
    assert!(
        plane.change(action, Change::Revert).await?.changed,
        "{} reverts",
        action.kind
    );
    assert!(
        !plane.change(action, Change::Revert).await?.changed,
        "{} reverted again is unchanged",
        action.kind
    );
    let v = plane.check(action, Check::Reverted).await?;
    assert!(v.ok, "{} verifies reverted: {}", action.kind, v.detail);
    Ok(())
}

#[tokio::test]
async fn revoke_sessions_is_rejected_before_a_trust_cut_and_applied_after_it() -> Result<()> {
    let moto = moto::shared();
    let iam = moto.iam_client().await;
    let name = "ladder-revoke-irsa";
    seed_role(&iam, name, &irsa_trust(name), &[("s3", S3_BROAD)], &[]).await?;
    let plane = plane(moto, None);
    let agent = Agent::new(name, true);

    let before = agent.plan(&plane).await?;
    let revoke = find(&before, &REVOKE_SESSIONS)?;
    let reason = revoke.rejected.as_deref().unwrap_or_default();
    assert!(reason.contains("only after a trust cut"), "{reason}");
    let deny = find(&before, &INLINE_DENY)?;
    assert!(
        deny.spec["statements"]
            .as_array()
            .is_some_and(|s| s.iter().all(|s| s.get("Condition").is_none())),
        "an IRSA deny is not scoped: {}",
        deny.spec
    );
    assert!(
        deny.notes
            .iter()
            .any(|n| n.contains("IRSA") && n.contains("no Kubernetes session tags")),
        "{:?}",
        deny.notes
    );

    let trust_deny = find(&before, &TRUST_DENY)?.clone();
    assert!(plane.change(&trust_deny, Change::Apply).await?.changed);
    let after = agent.plan(&plane).await?;
    let revoke = find(&after, &REVOKE_SESSIONS)?.clone();
    assert_eq!(revoke.rejected, None, "allowed once the link is cut");
    assert!(revoke.blocks);
    assert!(
        revoke
            .notes
            .iter()
            .any(|n| n.contains("trust policy holds Firebreak's Deny")),
        "{:?}",
        revoke.notes
    );

    let policy = format!("firebreak-revoke-{}", agent.incident);
    let t0 = std::time::SystemTime::now();
    assert!(plane.change(&revoke, Change::Apply).await?.changed);
    let doc = inline_of(&iam, name, &policy)
        .await?
        .ok_or_else(|| anyhow!("{policy} was not put"))?;
    let statement = &doc["Statement"][0];
    assert_eq!(statement["Effect"], "Deny");
    assert_eq!(statement["Action"], json!(["*"]));
    assert_eq!(statement["Resource"], json!(["*"]));
    assert!(
        statement["Condition"].get("StringEquals").is_none(),
        "{doc}"
    );
    let cutoff = statement["Condition"]["DateLessThan"]["aws:TokenIssueTime"]
        .as_str()
        .ok_or_else(|| anyhow!("no aws:TokenIssueTime cut-off: {doc}"))?;
    let cutoff = aws_sdk_iam::primitives::DateTime::from_str(
        cutoff,
        aws_sdk_iam::primitives::DateTimeFormat::DateTime,
    )?;
    let applied = t0.duration_since(std::time::UNIX_EPOCH)?.as_secs() as i64;
    assert!(
        (applied..=applied + 5).contains(&cutoff.secs()),
        "the cut-off is the moment of apply: {cutoff} vs {applied}"
    );
    assert!(
        !plane.change(&revoke, Change::Apply).await?.changed,
        "idempotent"
    );
    let v = plane.check(&revoke, Check::Applied).await?;
    assert!(v.ok, "{}", v.detail);
    assert!(plane.change(&revoke, Change::Revert).await?.changed);
    assert!(
        !plane.change(&revoke, Change::Revert).await?.changed,
        "NoSuchEntity = already reverted"
    );
    assert!(plane.check(&revoke, Check::Reverted).await?.ok);
    assert_eq!(inline_of(&iam, name, &policy).await?, None);

    assert!(plane.change(&trust_deny, Change::Revert).await?.changed);
    assert_eq!(
        trust_of(&iam, name).await?,
        decode_policy(&irsa_trust(name))
    );
    Ok(())
}

#[tokio::test]
async fn a_pod_identity_trust_deny_names_the_service_account_in_request_tags() -> Result<()> {
    let moto = moto::shared();
    let iam = moto.iam_client().await;
    let name = "ladder-pod-trust";
    seed_role(&iam, name, &pod_identity_trust(), &[("s3", S3_BROAD)], &[]).await?;
    let eks = EksApi::start().await?;
    eks.add_cluster(CLUSTER);
    eks.seed(CLUSTER, "payments", name, &role_arn(name), &[]);
    let plane = plane(moto, Some((&eks, CLUSTER)));
    let agent = Agent::new(name, true);

    let plan = agent.plan(&plane).await?;
    let trust_deny = find(&plan, &TRUST_DENY)?.clone();
    assert_eq!(trust_deny.rejected, None);
    let statement = &trust_deny.spec["statement"];
    assert_eq!(statement["Effect"], "Deny");
    assert_eq!(
        statement["Principal"],
        json!({"Service": "pods.eks.amazonaws.com"})
    );
    assert_eq!(
        statement["Action"],
        json!(["sts:AssumeRole", "sts:TagSession"])
    );
    assert_eq!(
        statement["Condition"],
        json!({"StringEquals": {
            "aws:RequestTag/kubernetes-namespace": "payments",
            "aws:RequestTag/kubernetes-service-account": name,
            "aws:RequestTag/eks-cluster-name": CLUSTER,
        }})
    );
    assert!(
        find(&plan, &REVOKE_SESSIONS)?.rejected.is_some(),
        "the association still links the ServiceAccount"
    );

    assert!(plane.change(&trust_deny, Change::Apply).await?.changed);
    // moto stored it: the Deny is in the trust policy IAM returns.
    let stored = trust_of(&iam, name).await?;
    assert!(
        stored["Statement"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s == statement)),
        "{stored}"
    );
    // After the trust cut, session revocation is allowed, and scoped to the agent's tags.
    let after = agent.plan(&plane).await?;
    let revoke = find(&after, &REVOKE_SESSIONS)?;
    assert_eq!(revoke.rejected, None);
    assert_eq!(
        revoke.spec["scope"],
        json!({"namespace": "payments", "serviceAccount": name})
    );
    assert!(plane.change(&trust_deny, Change::Revert).await?.changed);

    full_cycle(&plane, &trust_deny).await?;
    assert_eq!(
        trust_of(&iam, name).await?,
        decode_policy(&pod_identity_trust())
    );
    assert_eq!(eks.writes(), 0, "a trust deny writes nothing to EKS");
    Ok(())
}

#[tokio::test]
async fn a_pod_identity_deny_is_scoped_to_the_agent_and_spares_a_service_account_sharing_the_role(
) -> Result<()> {
    let moto = moto::shared();
    let iam = moto.iam_client().await;
    let name = "ladder-pod-scoped";
    seed_role(
        &iam,
        name,
        &pod_identity_trust(),
        &[("s3", S3_BROAD), ("iam", IAM_STAR)],
        &[],
    )
    .await?;
    let eks = EksApi::start().await?;
    eks.add_cluster(CLUSTER);
    eks.seed(CLUSTER, "payments", name, &role_arn(name), &[]);
    eks.seed(CLUSTER, "billing", "ledger", &role_arn(name), &[]);
    let plane = plane(moto, Some((&eks, CLUSTER)));
    let agent = Agent::new(name, true);

    let plan = agent.plan(&plane).await?;
    let deny = find(&plan, &INLINE_DENY)?.clone();
    let statements = deny.spec["statements"]
        .as_array()
        .ok_or_else(|| anyhow!("no statements: {}", deny.spec))?;
    assert_eq!(
        statements.len(),
        2,
        "the breach and the IAM self-undo writes"
    );
    for s in statements {
        assert_eq!(
            s["Condition"],
            json!({"StringEquals": {
                "aws:PrincipalTag/kubernetes-namespace": "payments",
                "aws:PrincipalTag/kubernetes-service-account": name,
            }}),
            "{s}"
        );
    }
    assert!(
        deny.granularity.contains(&format!("payments/{name}")),
        "{}",
        deny.granularity
    );
    assert!(
        !deny
            .blast_radius
            .items
            .iter()
            .any(|i| i.contains("billing/ledger"))
            && !deny
                .blast_radius
                .undetermined
                .iter()
                .any(|i| i.contains("billing/ledger")),
        "the ServiceAccount sharing the role keeps working: {:?}",
        deny.blast_radius
    );
    assert!(
        deny.notes
            .iter()
            .any(|n| n.contains("other ServiceAccounts sharing the role keep working")),
        "{:?}",
        deny.notes
    );
    // Deleting the granting policy instead would break the other ServiceAccount: counted.
    let delete = find(&plan, &DELETE_INLINE_POLICY)?;
    assert!(
        delete
            .blast_radius
            .items
            .iter()
            .any(|i| i.contains("billing/ledger")),
        "{:?}",
        delete.blast_radius
    );

    assert!(plane.change(&deny, Change::Apply).await?.changed);
    let v = plane.check(&deny, Check::Applied).await?;
    assert!(
        v.ok,
        "the breach evaluates as denied for the agent's sessions: {}",
        v.detail
    );
    // Re-planned, the other ServiceAccount still keeps the breach action.
    let replanned = agent.plan(&plane).await?;
    let again = find(&replanned, &INLINE_DENY)?;
    assert!(
        !again
            .blast_radius
            .items
            .iter()
            .any(|i| i.contains("billing/ledger")),
        "{:?}",
        again.blast_radius
    );
    assert!(plane.change(&deny, Change::Revert).await?.changed);
    assert!(plane.check(&deny, Check::Reverted).await?.ok);
    Ok(())
}

#[tokio::test]
async fn the_role_is_resolved_from_the_pod_identity_association() -> Result<()> {
    let moto = moto::shared();
    let iam = moto.iam_client().await;
    let name = "ladder-resolve";
    seed_role(&iam, name, &pod_identity_trust(), &[("s3", S3_BROAD)], &[]).await?;
    let eks = EksApi::start().await?;
    eks.add_cluster(CLUSTER);
    eks.seed(CLUSTER, "payments", name, &role_arn(name), &[]);
    let plane = plane(moto, Some((&eks, CLUSTER)));
    let agent = Agent::new(name, false);

    assert!(
        plane.handles(&agent.input()),
        "EKS configured: the role can be resolved"
    );
    let plan = agent.plan(&plane).await?;
    assert_eq!(find(&plan, &INLINE_DENY)?.target, role_arn(name));

    // Without an EKS cluster, an envelope without a role is not this plane's.
    assert!(!self::plane(moto, None).handles(&agent.input()));
    Ok(())
}

#[tokio::test]
async fn bad_input_gets_precise_errors_and_writes_nothing() -> Result<()> {
    let moto = moto::shared();
    let iam = moto.iam_client().await;
    let name = "ladder-bad-input";
    seed_role(&iam, name, &pod_identity_trust(), &[("s3", S3_BROAD)], &[]).await?;
    let eks = EksApi::start().await?;
    eks.add_cluster(CLUSTER);
    let agent = Agent::new(name, false);
    let seeded = role_writes(moto, name).await?;

    let unknown = plane(moto, Some((&eks, "no-such-cluster")));
    match agent.plan(&unknown).await {
        Err(PlaneError::Invalid { detail, .. }) => assert!(
            detail.contains("\"no-such-cluster\" does not exist")
                && detail.contains("aws.eks.cluster"),
            "{detail}"
        ),
        other => bail!("an unknown cluster is a precise error, got {other:?}"),
    }

    let known = plane(moto, Some((&eks, CLUSTER)));
    match agent.plan(&known).await {
        Err(PlaneError::Invalid { detail, .. }) => assert!(
            detail.contains(&format!("payments/{name} has no Pod Identity association"))
                && detail.contains("identity.principals"),
            "{detail}"
        ),
        other => bail!("a missing association is a precise error, got {other:?}"),
    }
    // Deleting an association that is already gone is unchanged and writes nothing.
    let with_role = Agent::new(name, true);
    let id = eks.seed(CLUSTER, "payments", name, &role_arn(name), &[]);
    let plan = with_role.plan(&known).await?;
    let delete = find(&plan, &DELETE_POD_IDENTITY_ASSOCIATION)?.clone();
    assert_eq!(delete.spec["association"]["id"], id);
    let writes = eks.writes();
    assert!(known.change(&delete, Change::Apply).await?.changed);
    assert!(
        !known.change(&delete, Change::Apply).await?.changed,
        "ResourceNotFound = already gone"
    );
    assert_eq!(eks.writes(), writes + 1, "the second apply wrote nothing");
    assert_eq!(role_writes(moto, name).await?, seeded);
    Ok(())
}

#[tokio::test]
async fn deleting_the_association_is_reverted_by_one_creation_even_when_the_create_is_retried(
) -> Result<()> {
    let moto = moto::shared();
    let iam = moto.iam_client().await;
    let name = "ladder-delete-association";
    seed_role(&iam, name, &pod_identity_trust(), &[("s3", S3_BROAD)], &[]).await?;
    let eks = EksApi::start().await?;
    eks.add_cluster(CLUSTER);
    let id = eks.seed(
        CLUSTER,
        "payments",
        name,
        &role_arn(name),
        &[("team", "payments")],
    );
    let plane = plane(moto, Some((&eks, CLUSTER)));
    let agent = Agent::new(name, true);
    let seeded = role_writes(moto, name).await?;

    let plan = agent.plan(&plane).await?;
    let delete = find(&plan, &DELETE_POD_IDENTITY_ASSOCIATION)?.clone();
    assert_eq!(delete.rejected, None);
    assert!(DELETE_POD_IDENTITY_ASSOCIATION.approval_only);
    assert!(
        delete
            .notes
            .iter()
            .any(|n| n.contains("credentials issued before it stay valid")),
        "{:?}",
        delete.notes
    );
    assert_eq!(
        delete.spec["association"],
        json!({"id": id, "namespace": "payments", "serviceAccount": name,
               "roleArn": role_arn(name), "tags": {"team": "payments"},
               "disableSessionTags": false})
    );

    assert!(plane.change(&delete, Change::Apply).await?.changed);
    assert!(eks.associations(CLUSTER).is_empty());
    assert!(!plane.change(&delete, Change::Apply).await?.changed);
    assert!(plane.check(&delete, Check::Applied).await?.ok);

    // With no association left the link is cut: revoking sessions is allowed.
    let after = agent.plan(&plane).await?;
    let revoke = find(&after, &REVOKE_SESSIONS)?;
    assert_eq!(revoke.rejected, None, "{revoke:?}");
    assert!(find(&after, &DELETE_POD_IDENTITY_ASSOCIATION)?
        .rejected
        .as_deref()
        .is_some_and(|r| r.contains("already cut")),);

    // A revert whose create EKS stored but whose answer was lost (no SDK retry here), then a
    // second revert that lists before the association shows (eventual consistency): it sends
    // the create again, with the same client request token, and gets the same association.
    let once = plane_with(sdk(RetryConfig::disabled()), moto, Some((&eks, CLUSTER)));
    eks.lose_next_write_responses(1);
    let posts = eks.writes();
    assert!(
        once.change(&delete, Change::Revert).await.is_err(),
        "the answer was lost"
    );
    eks.stale_lists(1);
    assert!(once.change(&delete, Change::Revert).await?.changed);
    assert_eq!(eks.writes(), posts + 2, "the create was sent twice");
    assert_eq!(eks.created(), 1, "re-created exactly once");
    assert!(
        !plane.change(&delete, Change::Revert).await?.changed,
        "a third revert finds it"
    );
    assert_eq!(eks.created(), 1);
    assert!(plane.check(&delete, Check::Reverted).await?.ok);
    let restored = eks.associations(CLUSTER);
    assert_eq!(restored.len(), 1);
    assert_eq!(restored[0]["roleArn"], role_arn(name));
    assert_eq!(restored[0]["tags"], json!({"team": "payments"}));
    assert_eq!(
        role_writes(moto, name).await?,
        seeded,
        "nothing written to IAM"
    );
    Ok(())
}

#[tokio::test]
async fn a_dry_run_writes_nothing_to_iam_or_eks() -> Result<()> {
    let moto = moto::shared();
    let iam = moto.iam_client().await;
    let name = "ladder-dry-run";
    seed_role(
        &iam,
        name,
        &pod_identity_trust(),
        &[("s3", S3_BROAD), ("iam", IAM_STAR)],
        &[],
    )
    .await?;
    let eks = EksApi::start().await?;
    eks.add_cluster(CLUSTER);
    eks.seed(CLUSTER, "payments", name, &role_arn(name), &[]);
    eks.seed(CLUSTER, "billing", "ledger", &role_arn(name), &[]);
    let plane = plane(moto, Some((&eks, CLUSTER)));
    let agent = Agent::new(name, false);
    let seeded = role_writes(moto, name).await?;
    // A transient EKS failure on the way is one typed answer (the engine retries it), and
    // writes nothing either.
    eks.fail_next(1);
    let failed = agent.plan(&plane).await.expect_err("the EKS 5xx surfaces");
    assert_eq!(failed.kind(), FaultKind::Transient, "{failed}");

    let plan = agent.plan(&plane).await?;
    assert_eq!(
        plan.len(),
        5,
        "inline deny, delete inline, trust deny, revoke, delete association: {plan:#?}"
    );
    assert_eq!(
        role_writes(moto, name).await?,
        seeded,
        "no IAM write for the role"
    );
    assert_eq!(eks.writes(), 0, "no EKS write");
    Ok(())
}
