//! The Kubernetes RBAC plane end to end: the real `kube` client against the strict fake API
//! server (`firebreak_e2e::kube_api`), one server per test.
//!
//! The cluster: in namespace `payments`, RoleBinding `secret-readers` grants Role
//! `secret-reader` (get secrets) to User alice, the agent's ServiceAccount and ServiceAccount
//! auditor; RoleBinding `agent-config` grants Role `config-reader` (get, list configmaps) to the
//! agent alone. The agent's envelope reads configmaps and the secret `app-config`; the breach
//! reads the secret `partner-keys`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use firebreak_containment::action::ActionKind;
use firebreak_containment::alert::Alert;
use firebreak_containment::envelope::Envelope;
use firebreak_containment::plan::Candidate;
use firebreak_containment::surface::{ControlPlane, PlanInput, SurfaceError};
use firebreak_e2e::kube_api::{KubeApi, ObjectKey};
use firebreak_k8s::identity::CloudIdentity;
use firebreak_k8s::plane::{ATTEMPTS, BACKOFF};
use firebreak_k8s::{AgentServiceAccount, GkeWorkloadPool, IdentityError, K8sConfig, K8sRbac};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::PostParams;
use kube::Api;
use serde_json::{json, Value};

const AGENT_KEY: &str = "prod-eks/payments/Deployment/payment-agent";
const AGENT_USER: &str = "system:serviceaccount:payments:payment-agent";
const BREACH: &str = "namespaces/payments/secrets/partner-keys";

fn binding(name: &str, role: &str, subjects: Value, labels: Value, annotations: Value) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": "payments", "labels": labels, "annotations": annotations},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
        "subjects": subjects,
    })
}

fn sa_subject(name: &str) -> Value {
    json!({"kind": "ServiceAccount", "name": name, "namespace": "payments"})
}

fn service_account(name: &str, annotations: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ServiceAccount",
           "metadata": {"name": name, "namespace": "payments", "annotations": annotations}})
}

/// Seeds the cluster described in the module docs; `labels`/`annotations` go on secret-readers.
fn seed(kube: &KubeApi, labels: Value, annotations: Value) -> Result<()> {
    for sa in ["payment-agent", "auditor"] {
        kube.seed(service_account(sa, json!({})))?;
    }
    kube.seed(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "secret-reader", "namespace": "payments"},
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}],
    }))?;
    kube.seed(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "config-reader", "namespace": "payments"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}],
    }))?;
    kube.seed(binding(
        "secret-readers",
        "secret-reader",
        json!([
            {"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"},
            sa_subject("payment-agent"),
            sa_subject("auditor"),
        ]),
        labels,
        annotations,
    ))?;
    kube.seed(binding(
        "agent-config",
        "config-reader",
        json!([sa_subject("payment-agent")]),
        json!({}),
        json!({}),
    ))?;
    Ok(())
}

fn envelope() -> Envelope {
    Envelope::from_yaml(
        r#"apiVersion: firebreak.dev/v1alpha1
kind: Envelope
metadata: {name: payment-agent, namespace: payments}
spec:
  agent: {cluster: prod-eks, namespace: payments, workload: Deployment/payment-agent, serviceAccount: payment-agent}
  version: 7
  status: converged
  identity:
    observed:
      - {action: "k8s:get", resource: namespaces/payments/configmaps/settings, closure: literal, count: 900, sessions: 80}
      - {action: "k8s:list", resource: namespaces/payments/configmaps, closure: literal, count: 300, sessions: 40}
      - {action: "k8s:get", resource: namespaces/payments/secrets/app-config, closure: literal, count: 500, sessions: 60}
"#,
    )
    .expect("envelope parses")
}

fn alert(workload: &str, resource: &str) -> Alert {
    let body = json!({
        "id": "a-k8s-1", "source": "test", "time": "2026-11-22T02:47:00Z",
        "agent": {"cluster": "prod-eks", "namespace": "payments", "workload": workload, "serviceAccount": "payment-agent"},
        "dimension": "identity",
        "parameter": {"action": "k8s:get", "resource": resource},
        "tier": "attack-attempt", "severity": "critical", "evidence": {}
    });
    Alert::from_json(body.to_string().as_bytes()).expect("alert parses")
}

fn config(kube: &KubeApi) -> K8sConfig {
    K8sConfig {
        api_server: Some(kube.url()),
        agents: BTreeMap::from([(
            AGENT_KEY.to_string(),
            AgentServiceAccount {
                namespace: "payments".into(),
                service_account: "payment-agent".into(),
            },
        )]),
        verify_deadline: Duration::from_secs(5),
        gke_workload_pool: None,
    }
}

struct Fixture {
    kube: KubeApi,
    plane: K8sRbac,
    envelope: Envelope,
    alert: Alert,
}

async fn fixture_with(labels: Value, annotations: Value) -> Result<Fixture> {
    let kube = KubeApi::start().await?;
    seed(&kube, labels, annotations)?;
    let plane = K8sRbac::new(config(&kube)).await?;
    Ok(Fixture {
        kube,
        plane,
        envelope: envelope(),
        alert: alert("Deployment/payment-agent", BREACH),
    })
}

async fn fixture() -> Result<Fixture> {
    fixture_with(json!({}), json!({})).await
}

impl Fixture {
    fn input(&self) -> PlanInput<'_> {
        PlanInput {
            incident: "inc-k8s",
            alert: &self.alert,
            envelope: &self.envelope,
        }
    }

    async fn plan(&self) -> Result<Vec<Candidate>, SurfaceError> {
        let input = self.input();
        self.plane.observe(&input).await?.candidates(&input)
    }

    async fn rung0(&self) -> Candidate {
        let candidates = self.plan().await.expect("plan");
        candidates
            .into_iter()
            .find(|c| c.kind == ActionKind::K8sRemoveRolebindingSubject)
            .expect("a remove-subject candidate")
    }

    fn secret_readers(&self) -> Value {
        self.kube
            .object(&ObjectKey::role_binding("payments", "secret-readers"))
            .expect("secret-readers exists")
    }

    fn subject_names(&self) -> Vec<String> {
        self.secret_readers()["subjects"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|s| s["name"].as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Asks the fake's authorizer directly (not through the plane).
    async fn may_read_partner_keys(&self, user: &str, groups: &[&str]) -> Result<bool> {
        let client = kube::Client::try_from(kube::Config::new(self.kube.url().parse()?))?;
        let api: Api<SubjectAccessReview> = Api::all(client);
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user.into()),
                groups: Some(groups.iter().map(|g| g.to_string()).collect()),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some("get".into()),
                    group: Some(String::new()),
                    resource: Some("secrets".into()),
                    namespace: Some("payments".into()),
                    name: Some("partner-keys".into()),
                    ..ResourceAttributes::default()
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        let answer = api.create(&PostParams::default(), &review).await?;
        Ok(answer.status.is_some_and(|s| s.allowed))
    }

    fn patches(&self) -> Vec<Value> {
        self.kube
            .requests()
            .into_iter()
            .filter(|r| r.method == "PATCH" && !r.dry_run())
            .filter_map(|r| r.body)
            .collect()
    }
}

#[tokio::test]
async fn plan_apply_verify_revert_round_trip() -> Result<()> {
    let f = fixture().await?;
    let candidates = f.plan().await?;
    let kinds: Vec<ActionKind> = candidates.iter().map(|c| c.kind).collect();
    assert_eq!(
        kinds,
        [
            ActionKind::K8sRemoveRolebindingSubject,
            ActionKind::K8sDeleteRolebinding
        ]
    );
    let rung0 = &candidates[0];
    assert!(rung0.blocks && rung0.rejected.is_none(), "{rung0:?}");
    assert_eq!(
        rung0.target,
        "RoleBinding payments/secret-readers subject ServiceAccount payments/payment-agent"
    );
    // The binding's role also grants the in-envelope app-config read; configmaps come from agent-config.
    assert_eq!(
        rung0.blast_radius.items,
        ["k8s:get on namespaces/payments/secrets/app-config"]
    );
    assert!(candidates[1]
        .notes
        .iter()
        .any(|n| n.contains("User alice") && n.contains("ServiceAccount payments/auditor")));

    assert!(f.may_read_partner_keys(AGENT_USER, &[]).await?);
    assert!(f.plane.apply(rung0).await?.changed);
    assert_eq!(f.subject_names(), ["alice", "auditor"]);
    assert_eq!(f.kube.writes(), 1);
    let v = f.plane.verify(rung0).await?;
    assert!(v.ok, "{}", v.detail);
    assert!(v.detail.contains("2 other subject(s)"), "{}", v.detail);
    assert!(!f.may_read_partner_keys(AGENT_USER, &[]).await?);
    assert!(
        f.may_read_partner_keys("system:serviceaccount:payments:auditor", &[])
            .await?
    );
    assert!(f.may_read_partner_keys("alice", &[]).await?);

    assert!(f.plane.revert(rung0).await?.changed);
    // Back at its original index, so the binding reads as before.
    assert_eq!(f.subject_names(), ["alice", "payment-agent", "auditor"]);
    let v = f.plane.verify_reverted(rung0).await?;
    assert!(v.ok, "{}", v.detail);
    assert!(f.may_read_partner_keys(AGENT_USER, &[]).await?);
    Ok(())
}

#[tokio::test]
async fn apply_and_revert_are_idempotent() -> Result<()> {
    let f = fixture().await?;
    let rung0 = f.rung0().await;
    assert!(f.plane.apply(&rung0).await?.changed);
    assert!(
        !f.plane.apply(&rung0).await?.changed,
        "second apply must find the target state"
    );
    assert_eq!(f.kube.writes(), 1);
    assert!(f.plane.revert(&rung0).await?.changed);
    assert!(!f.plane.revert(&rung0).await?.changed);
    assert_eq!(f.kube.writes(), 2);
    Ok(())
}

#[tokio::test]
async fn planning_writes_nothing_but_dry_runs_the_patch() -> Result<()> {
    let f = fixture().await?;
    let before = f.secret_readers();
    let candidates = f.plan().await?;
    assert!(!candidates.is_empty());
    assert_eq!(f.kube.writes(), 0, "a plan must not write");
    assert_eq!(f.secret_readers(), before);
    let dry: Vec<_> = f
        .kube
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .collect();
    assert_eq!(
        dry.len(),
        1,
        "one server-side dry run per removable subject"
    );
    assert!(dry[0].dry_run(), "{:?}", dry[0].query);
    assert_eq!(
        dry[0].content_type.as_deref(),
        Some("application/json-patch+json")
    );
    let ops = dry[0].body.clone().expect("patch body");
    assert_eq!(
        ops[0],
        json!({"op": "test", "path": "/metadata/resourceVersion", "value": before["metadata"]["resourceVersion"]})
    );
    assert_eq!(
        ops[1],
        json!({"op": "test", "path": "/subjects/1", "value": sa_subject("payment-agent")})
    );
    assert_eq!(ops[2], json!({"op": "remove", "path": "/subjects/1"}));
    Ok(())
}

#[tokio::test]
async fn concurrent_edit_is_re_read_and_re_planned() -> Result<()> {
    let f = fixture().await?;
    let rung0 = f.rung0().await;
    let planned_rv = f.secret_readers()["metadata"]["resourceVersion"].clone();
    // Someone prepends bob between Firebreak's read and its patch: the agent moves to index 2.
    f.kube.edit_before_patches(1, |b| {
        if let Some(subjects) = b["subjects"].as_array_mut() {
            subjects.insert(
                0,
                json!({"kind": "User", "name": "bob", "apiGroup": "rbac.authorization.k8s.io"}),
            );
        }
    });
    assert!(f.plane.apply(&rung0).await?.changed);
    assert_eq!(
        f.subject_names(),
        ["bob", "alice", "auditor"],
        "bob's edit survives"
    );
    let patches = f.patches();
    assert_eq!(patches.len(), 2, "one refused patch, one re-planned patch");
    assert_eq!(patches[0][0]["value"], planned_rv);
    assert_ne!(
        patches[1][0]["value"], planned_rv,
        "the retry is guarded by the re-read version"
    );
    assert_eq!(
        patches[1][2],
        json!({"op": "remove", "path": "/subjects/2"}),
        "re-planned at the new index"
    );
    assert_eq!(f.kube.writes(), 1);
    Ok(())
}

#[tokio::test]
async fn a_binding_that_keeps_changing_is_a_conflict_not_a_blind_resend() -> Result<()> {
    let f = fixture().await?;
    let rung0 = f.rung0().await;
    f.kube.edit_before_patches(ATTEMPTS, |b| {
        b["metadata"]["labels"]["touched"] = json!("yes");
    });
    let err = f.plane.apply(&rung0).await.expect_err("must give up");
    assert!(matches!(err, SurfaceError::Conflict { .. }), "{err}");
    let patches = f.patches();
    assert_eq!(patches.len(), ATTEMPTS as usize);
    let versions: std::collections::BTreeSet<String> =
        patches.iter().map(|p| p[0]["value"].to_string()).collect();
    assert_eq!(versions.len(), patches.len(), "every attempt re-read first");
    assert_eq!(f.kube.writes(), 0);
    assert!(f.subject_names().contains(&"payment-agent".to_string()));
    Ok(())
}

#[tokio::test]
async fn gitops_managed_binding_is_flagged_in_the_plan() -> Result<()> {
    let f = fixture_with(
        json!({"kustomize.toolkit.fluxcd.io/name": "rbac", "kustomize.toolkit.fluxcd.io/namespace": "flux-system"}),
        json!({"argocd.argoproj.io/tracking-id": "payments-rbac:rbac.authorization.k8s.io/RoleBinding:payments/secret-readers"}),
    )
    .await?;
    for candidate in f.plan().await? {
        let notes = candidate.notes.join("\n");
        assert!(
            notes.contains("Argo CD (Application payments-rbac)"),
            "{}: {notes}",
            candidate.kind
        );
        assert!(
            notes.contains("Flux (Kustomization flux-system/rbac)"),
            "{}: {notes}",
            candidate.kind
        );
    }
    Ok(())
}

#[tokio::test]
async fn server_errors_are_retried_with_backoff_then_given_up() -> Result<()> {
    let f = fixture().await?;
    f.kube.fail_next(2, 503);
    let started = Instant::now();
    assert!(!f.plan().await?.is_empty(), "two 503s are absorbed");
    assert!(started.elapsed() >= BACKOFF * 3, "backed off 100 + 200 ms");

    let before = f.kube.requests().len();
    f.kube.fail_next(100, 500);
    let started = Instant::now();
    let err = f.plan().await.expect_err("a server that keeps failing");
    assert!(matches!(err, SurfaceError::Unreachable { .. }), "{err}");
    assert_eq!(
        f.kube.requests().len() - before,
        ATTEMPTS as usize,
        "bounded"
    );
    assert!(
        started.elapsed() >= BACKOFF * 7,
        "backed off 100 + 200 + 400 ms"
    );
    assert_eq!(f.kube.writes(), 0);
    Ok(())
}

#[tokio::test]
async fn verification_waits_out_stale_reads() -> Result<()> {
    let f = fixture().await?;
    let rung0 = f.rung0().await;
    assert!(f.plane.apply(&rung0).await?.changed);
    f.kube.stale_reads(2);
    for poll in 0..2 {
        let v = f.plane.verify(&rung0).await?;
        assert!(!v.ok, "poll {poll} reads the old binding: {}", v.detail);
    }
    assert!(f.plane.verify(&rung0).await?.ok);
    Ok(())
}

#[tokio::test]
async fn delete_rolebinding_round_trip() -> Result<()> {
    let f = fixture().await?;
    let candidates = f.plan().await?;
    let rung1 = candidates
        .iter()
        .find(|c| c.kind == ActionKind::K8sDeleteRolebinding)
        .expect("rung 1");
    assert!(rung1.kind.approval_only());
    let original = f.secret_readers();
    assert!(f.plane.apply(rung1).await?.changed);
    assert!(f
        .kube
        .object(&ObjectKey::role_binding("payments", "secret-readers"))
        .is_none());
    assert!(!f.plane.apply(rung1).await?.changed);
    assert!(f.plane.verify(rung1).await?.ok);
    assert!(
        !f.may_read_partner_keys("alice", &[]).await?,
        "the broad rung cuts every subject"
    );
    assert!(f.plane.revert(rung1).await?.changed);
    assert!(f.plane.verify_reverted(rung1).await?.ok);
    let restored = f.secret_readers();
    assert_eq!(restored["subjects"], original["subjects"]);
    assert_eq!(restored["roleRef"], original["roleRef"]);
    Ok(())
}

#[tokio::test]
async fn unknown_agent_missing_service_account_and_vanished_binding_are_precise_errors(
) -> Result<()> {
    let f = fixture().await?;
    let stranger = alert("Deployment/other-agent", BREACH);
    let input = PlanInput {
        incident: "inc",
        alert: &stranger,
        envelope: &f.envelope,
    };
    assert!(!f.plane.handles(&input));
    let err = f.plane.observe(&input).await.err().expect("unknown agent");
    assert!(err.to_string().contains("k8s.agents"), "{err}");
    assert!(f.plane.handles(&f.input()));

    // Configured, but its ServiceAccount is not in the cluster.
    let kube = KubeApi::start().await?;
    let plane = K8sRbac::new(config(&kube)).await?;
    let err = plane
        .observe(&f.input())
        .await
        .err()
        .expect("missing ServiceAccount");
    assert!(
        err.to_string()
            .contains("ServiceAccount payments/payment-agent does not exist"),
        "{err}"
    );

    // Not granted at all: nothing to cut.
    let unrelated = alert(
        "Deployment/payment-agent",
        "namespaces/kube-system/secrets/x",
    );
    let input = PlanInput {
        incident: "inc",
        alert: &unrelated,
        envelope: &f.envelope,
    };
    let err = f
        .plane
        .observe(&input)
        .await?
        .candidates(&input)
        .expect_err("nothing grants it");
    assert!(
        err.to_string()
            .contains("RBAC does not allow get secrets/x in kube-system"),
        "{err}"
    );

    // The planned binding disappears before apply.
    let rung0 = f.rung0().await;
    let client = kube::Client::try_from(kube::Config::new(f.kube.url().parse()?))?;
    Api::<k8s_openapi::api::rbac::v1::RoleBinding>::namespaced(client, "payments")
        .delete("secret-readers", &Default::default())
        .await?;
    let writes = f.kube.writes();
    let err = f.plane.apply(&rung0).await.expect_err("binding is gone");
    assert!(matches!(err, SurfaceError::Conflict { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("RoleBinding payments/secret-readers does not exist"),
        "{err}"
    );
    assert_eq!(f.kube.writes(), writes, "nothing written");
    Ok(())
}

#[tokio::test]
async fn resolves_cloud_identities_from_service_account_annotations() -> Result<()> {
    let kube = KubeApi::start().await?;
    kube.seed(service_account("irsa", json!({"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/agents/payment-agent"})))?;
    kube.seed(service_account("gke", json!({"iam.gke.io/gcp-service-account": "payment-agent@acme-prod.iam.gserviceaccount.com"})))?;
    kube.seed(service_account(
        "aks",
        json!({
        "azure.workload.identity/client-id": "0A1B2C3D-0000-4000-8000-123456789ABC",
        "azure.workload.identity/tenant-id": "11111111-2222-3333-4444-555555555555"}),
    ))?;
    kube.seed(service_account(
        "broken",
        json!({"eks.amazonaws.com/role-arn": "arn:aws:iam::12345:role/x"}),
    ))?;
    let mut cfg = config(&kube);
    cfg.gke_workload_pool = Some(GkeWorkloadPool {
        project_id: "acme-prod".into(),
        project_number: "123456789012".into(),
    });
    let plane = K8sRbac::new(cfg).await?;

    let irsa = plane.resolve_identities("payments", "irsa").await?;
    assert!(
        matches!(&irsa[0], CloudIdentity::AwsIamRole { account, name, .. } if account == "123456789012" && name == "payment-agent"),
        "{irsa:?}"
    );
    let gke = plane.resolve_identities("payments", "gke").await?;
    assert!(
        matches!(&gke[0], CloudIdentity::GcpServiceAccount { project, .. } if project == "acme-prod"),
        "{gke:?}"
    );
    // With the pool configured every KSA is also a direct-access principal.
    assert!(irsa
        .iter()
        .chain(&gke)
        .all(|i| !matches!(i, CloudIdentity::AzureIdentity { .. })));
    let CloudIdentity::GcpPrincipal { principal, .. } = &gke[1] else {
        panic!("{gke:?}")
    };
    assert_eq!(principal, "principal://iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/acme-prod.svc.id.goog/subject/ns/payments/sa/gke");
    let aks = plane.resolve_identities("payments", "aks").await?;
    assert_eq!(
        aks.last(),
        Some(&CloudIdentity::AzureIdentity {
            client_id: "0a1b2c3d-0000-4000-8000-123456789abc".into(),
            tenant_id: Some("11111111-2222-3333-4444-555555555555".into()),
        })
    );

    let err = plane
        .resolve_identities("payments", "broken")
        .await
        .expect_err("bad ARN");
    assert!(
        matches!(
            &err,
            IdentityError::Annotation {
                key: "eks.amazonaws.com/role-arn",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("expected 12 digits"), "{err}");
    let err = plane
        .resolve_identities("payments", "nobody")
        .await
        .expect_err("missing");
    assert!(matches!(err, IdentityError::NotFound { .. }), "{err}");
    assert_eq!(kube.writes(), 0);
    Ok(())
}

/// The fake is only worth what its strictness is: it refuses what the API server refuses.
#[tokio::test]
async fn fake_api_refuses_what_the_api_server_refuses() -> Result<()> {
    use k8s_openapi::api::rbac::v1::RoleBinding;
    use kube::api::{Patch, PatchParams};

    let f = fixture().await?;
    let client = kube::Client::try_from(kube::Config::new(f.kube.url().parse()?))?;
    let api: Api<RoleBinding> = Api::namespaced(client, "payments");
    let code = |r: kube::Result<RoleBinding>| match r {
        Err(kube::Error::Api(s)) => (s.code, s.reason.clone()),
        other => panic!("expected an API error, got {other:?}"),
    };
    let failing_test: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/resourceVersion", "value": "1"},
        {"op": "remove", "path": "/subjects/0"}
    ]))?;
    let pp = PatchParams::default();
    assert_eq!(
        code(
            api.patch("secret-readers", &pp, &Patch::Json::<()>(failing_test))
                .await
        ),
        (422, "Invalid".into())
    );
    let merge = Patch::Merge(json!({"subjects": []}));
    assert_eq!(
        code(api.patch("secret-readers", &pp, &merge).await),
        (415, "UnsupportedMediaType".into())
    );
    let nameless: json_patch::Patch = serde_json::from_value(
        json!([{"op": "add", "path": "/subjects/-", "value": {"kind": "User"}}]),
    )?;
    assert_eq!(
        code(
            api.patch("secret-readers", &pp, &Patch::Json::<()>(nameless))
                .await
        ),
        (422, "Invalid".into())
    );
    let role_change: json_patch::Patch = serde_json::from_value(
        json!([{"op": "replace", "path": "/roleRef/name", "value": "admin"}]),
    )?;
    assert_eq!(
        code(
            api.patch("secret-readers", &pp, &Patch::Json::<()>(role_change))
                .await
        ),
        (422, "Invalid".into())
    );
    assert_eq!(code(api.get("nope").await), (404, "NotFound".into()));
    assert_eq!(f.kube.writes(), 0);
    Ok(())
}
