//! The cluster the Kubernetes plane's end-to-end tests run against, seeded into the strict fake
//! API server (`firebreak_e2e::kube_api`), and the plane driven through its typed trait.
//!
//! In namespace `payments`, RoleBinding `secret-readers` grants Role `secret-reader` (get
//! secrets) to User alice, the agent's ServiceAccount and ServiceAccount auditor; RoleBinding
//! `agent-config` grants Role `config-reader` (get, list configmaps) to the agent alone. The
//! agent's envelope reads configmaps and the secret `app-config`; the breach reads the secret
//! `partner-keys`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use firebreak_containment::alert::Alert;
use firebreak_containment::envelope::Envelope;
use firebreak_containment::ids::{IncidentId, PlanId};
use firebreak_containment::plane::{
    Change, Check, Outcome, PlanInput, Plane, PlaneError, Proposal, Verification,
};
use firebreak_e2e::kube_api::{KubeApi, ObjectKey};
use firebreak_k8s::{AgentServiceAccount, K8sConfig, K8sRbac, K8sSpec, REMOVE_ROLEBINDING_SUBJECT};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::PostParams;
use kube::Api;
use serde_json::{json, Value};

pub const AGENT_KEY: &str = "prod-eks/payments/Deployment/payment-agent";
pub const AGENT_USER: &str = "system:serviceaccount:payments:payment-agent";
pub const BREACH: &str = "namespaces/payments/secrets/partner-keys";

pub fn binding(
    name: &str,
    role: &str,
    subjects: Value,
    labels: Value,
    annotations: Value,
) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": "payments", "labels": labels, "annotations": annotations},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
        "subjects": subjects,
    })
}

pub fn sa_subject(name: &str) -> Value {
    json!({"kind": "ServiceAccount", "name": name, "namespace": "payments"})
}

pub fn service_account(name: &str, annotations: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ServiceAccount",
           "metadata": {"name": name, "namespace": "payments", "annotations": annotations}})
}

/// Seeds the cluster described in the module docs; `labels`/`annotations` go on secret-readers.
pub fn seed(kube: &KubeApi, labels: Value, annotations: Value) -> Result<()> {
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
    kube.seed(secret_readers(labels, annotations))?;
    kube.seed(binding(
        "agent-config",
        "config-reader",
        json!([sa_subject("payment-agent")]),
        json!({}),
        json!({}),
    ))?;
    Ok(())
}

/// RoleBinding secret-readers: alice, the agent and auditor read secrets.
pub fn secret_readers(labels: Value, annotations: Value) -> Value {
    binding(
        "secret-readers",
        "secret-reader",
        json!([
            {"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"},
            sa_subject("payment-agent"),
            sa_subject("auditor"),
        ]),
        labels,
        annotations,
    )
}

/// Seeds secret-readers again (a new object: another uid), as another writer would create it.
pub fn seed_secret_readers(kube: &KubeApi) -> Result<()> {
    kube.seed(secret_readers(json!({}), json!({})))?;
    Ok(())
}

pub fn envelope() -> Envelope {
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

pub fn alert(workload: &str, resource: &str) -> Alert {
    let body = json!({
        "id": "a-k8s-1", "source": "test", "time": "2026-11-22T02:47:00Z",
        "agent": {"cluster": "prod-eks", "namespace": "payments", "workload": workload, "serviceAccount": "payment-agent"},
        "dimension": "identity",
        "parameter": {"action": "k8s:get", "resource": resource},
        "tier": "attack-attempt", "severity": "critical", "evidence": {}
    });
    Alert::from_json(body.to_string().as_bytes()).expect("alert parses")
}

pub fn config(kube: &KubeApi) -> K8sConfig {
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

pub struct Fixture {
    pub kube: KubeApi,
    pub plane: K8sRbac,
    pub envelope: Envelope,
    pub alert: Alert,
    pub incident: IncidentId,
    pub plan_id: PlanId,
}

pub async fn fixture_with(labels: Value, annotations: Value) -> Result<Fixture> {
    let kube = KubeApi::start().await?;
    seed(&kube, labels, annotations)?;
    let plane = K8sRbac::new(config(&kube)).await?;
    Ok(Fixture {
        kube,
        plane,
        envelope: envelope(),
        alert: alert("Deployment/payment-agent", BREACH),
        incident: "inc-k8s".into(),
        plan_id: "inc-k8s-p1".into(),
    })
}

pub async fn fixture() -> Result<Fixture> {
    fixture_with(json!({}), json!({})).await
}

/// The name of the kind a proposal carries out.
pub fn kind(p: &Proposal<K8sSpec>) -> &'static str {
    K8sRbac::kind_of(&p.spec).name
}

impl Fixture {
    pub fn input_for<'a>(&'a self, alert: &'a Alert) -> PlanInput<'a> {
        PlanInput {
            incident: &self.incident,
            plan: &self.plan_id,
            alert,
            envelope: &self.envelope,
        }
    }

    pub fn input(&self) -> PlanInput<'_> {
        self.input_for(&self.alert)
    }

    pub async fn plan(&self) -> Result<Vec<Proposal<K8sSpec>>, PlaneError> {
        let input = self.input();
        self.plane.observe(&input).await?.candidates(&input)
    }

    pub async fn rung(&self, rung: &str) -> K8sSpec {
        let candidates = self.plan().await.expect("plan");
        candidates
            .into_iter()
            .find(|c| kind(c) == rung)
            .map(|c| c.spec)
            .unwrap_or_else(|| panic!("a {rung} candidate"))
    }

    pub async fn rung0(&self) -> K8sSpec {
        self.rung(REMOVE_ROLEBINDING_SUBJECT.name).await
    }

    pub async fn change(&self, spec: &K8sSpec, change: Change) -> Result<Outcome, PlaneError> {
        self.plane.change(spec, change).await
    }

    pub async fn check(&self, spec: &K8sSpec, check: Check) -> Result<Verification, PlaneError> {
        self.plane.check(spec, check).await
    }

    pub fn secret_readers(&self) -> Value {
        self.kube
            .object(&ObjectKey::role_binding("payments", "secret-readers"))
            .expect("secret-readers exists")
    }

    pub fn subject_names(&self) -> Vec<String> {
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
    pub async fn may_read_partner_keys(&self, user: &str, groups: &[&str]) -> Result<bool> {
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

    /// The bodies of the PATCHes that were not dry runs.
    pub fn patches(&self) -> Vec<Value> {
        self.kube
            .requests()
            .into_iter()
            .filter(|r| r.method == "PATCH" && !r.dry_run())
            .filter_map(|r| r.body)
            .collect()
    }
}
