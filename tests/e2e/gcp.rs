//! The GCP IAM plane end to end: the real googleapis clients (`google-cloud-resourcemanager-v3`,
//! `google-cloud-iam-v2`, `google-cloud-iam-admin-v1`), authenticated by `google-cloud-auth`
//! `authorized_user` credentials against the fake's token endpoint, talking to the strict fake
//! GCP APIs (`firebreak_e2e::gcp_api`), one server per test. The plane is driven through the
//! typed trait (`observe`, `change`, `check`) as the engine drives it, and once through the
//! engine's adapter (`Planes`) for the journaled form of its specs.
//!
//! The project `acme-prod`: `roles/storage.objectViewer` (get, list objects) is granted to the
//! agent's Google service account and to alice under the condition "acme buckets";
//! `roles/pubsub.publisher` to the agent alone. The service account lets the agent's Kubernetes
//! ServiceAccount (and another one) impersonate it. The envelope publishes to a topic and lists
//! invoices; the breach reads an object of the partner-keys bucket.

use std::time::{Duration, Instant};

use anyhow::Result;
use firebreak_containment::alert::Alert;
use firebreak_containment::envelope::Envelope;
use firebreak_containment::ids::{IncidentId, PlanId, PlaneKey};
use firebreak_containment::plane::{
    Change, Check, FaultKind, KindSpec, PlanInput, Plane, PlaneError, Planes, Proposal,
};
use firebreak_e2e::gcp_api::{GcpApi, ACCESS_TOKEN};
use firebreak_gcp::rungs::deny_policy;
use firebreak_gcp::{
    Endpoints, GcpConfig, GcpIam, GcpSpec, DENY_POLICY, DISABLE_SERVICE_ACCOUNT,
    REMOVE_BINDING_MEMBER, REMOVE_WI_USER,
};
use google_cloud_auth::credentials::user_account;
use serde_json::{json, Value};

const PROJECT: &str = "acme-prod";
const GSA: &str = "payment-agent@acme-prod.iam.gserviceaccount.com";
const GSA_MEMBER: &str = "serviceAccount:payment-agent@acme-prod.iam.gserviceaccount.com";
const KSA_MEMBER: &str = "serviceAccount:acme-prod.svc.id.goog[payments/payment-agent]";
const OTHER_KSA: &str = "serviceAccount:acme-prod.svc.id.goog[payments/reporting]";
const BREACH: &str = "//storage.googleapis.com/projects/_/buckets/acme-partner-keys";
const WI_PRINCIPAL: &str = "principal://iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/acme-prod.svc.id.goog/subject/ns/payments/sa/payment-agent";

fn condition() -> Value {
    json!({"title": "acme buckets", "description": "only acme-*",
           "expression": "resource.name.startsWith(\"projects/_/buckets/acme-\")"})
}

fn seed(gcp: &GcpApi) {
    gcp.seed_role(
        "roles/storage.objectViewer",
        &["storage.objects.get", "storage.objects.list"],
    );
    gcp.seed_role("roles/pubsub.publisher", &["pubsub.topics.publish"]);
    gcp.seed_role(
        "roles/iam.workloadIdentityUser",
        &["iam.serviceAccounts.getAccessToken"],
    );
    gcp.seed_project(
        PROJECT,
        "123456789012",
        json!([
            {"role": "roles/storage.objectViewer", "members": [GSA_MEMBER, "user:alice@example.com"],
             "condition": condition()},
            {"role": "roles/pubsub.publisher", "members": [GSA_MEMBER]},
        ]),
    );
    gcp.seed_service_account(
        PROJECT,
        GSA,
        json!([{"role": "roles/iam.workloadIdentityUser", "members": [KSA_MEMBER, OTHER_KSA]}]),
    );
}

fn envelope(principals: &[&str]) -> Envelope {
    let principals = serde_json::to_string(principals).expect("principals serialize");
    Envelope::from_yaml(&format!(
        r#"apiVersion: firebreak.dev/v1alpha1
kind: Envelope
metadata: {{name: payment-agent, namespace: payments}}
spec:
  agent: {{cluster: prod-gke, namespace: payments, workload: Deployment/payment-agent, serviceAccount: payment-agent}}
  version: 3
  status: converged
  identity:
    principals: {principals}
    observed:
      - {{action: "pubsub.topics.publish", resource: "//pubsub.googleapis.com/projects/acme-prod/topics/payouts", closure: literal, count: 900, sessions: 80}}
      - {{action: "storage.objects.list", resource: "//storage.googleapis.com/projects/_/buckets/acme-invoices", closure: literal, count: 300, sessions: 40}}
"#
    ))
    .expect("envelope parses")
}

fn alert(permission: &str, resource: &str) -> Alert {
    let body = json!({
        "id": "a-gcp-1", "source": "test", "time": "2026-11-22T02:47:00Z",
        "agent": {"cluster": "prod-gke", "namespace": "payments", "workload": "Deployment/payment-agent", "serviceAccount": "payment-agent"},
        "dimension": "identity",
        "parameter": {"action": permission, "resource": resource},
        "tier": "attack-attempt", "severity": "critical", "evidence": {}
    });
    Alert::from_json(body.to_string().as_bytes()).expect("alert parses")
}

fn config(gcp: &GcpApi, projects: &[&str]) -> GcpConfig {
    GcpConfig {
        workload_pool: Some(PROJECT.into()),
        verify_deadline: Duration::from_secs(5),
        request_timeout: Duration::from_millis(500),
        endpoints: Endpoints {
            resource_manager: Some(gcp.url()),
            iam: Some(gcp.url()),
        },
        ..GcpConfig::for_projects(projects.iter().map(|p| p.to_string()).collect())
    }
}

async fn plane_for(gcp: &GcpApi, projects: &[&str]) -> Result<GcpIam> {
    let credentials = user_account::Builder::new(gcp.authorized_user()).build()?;
    Ok(GcpIam::with_credentials(config(gcp, projects), credentials).await?)
}

/// Observes and proposes for `envelope` and `alert`, as the engine does for one plan.
async fn candidates(
    plane: &GcpIam,
    incident: &str,
    envelope: &Envelope,
    alert: &Alert,
) -> Result<Vec<Proposal<GcpSpec>>, PlaneError> {
    let incident = IncidentId::from(incident);
    let plan = PlanId::nth(&incident, 1);
    let input = PlanInput {
        incident: &incident,
        plan: &plan,
        alert,
        envelope,
    };
    plane.observe(&input).await?.candidates(&input)
}

fn kinds(candidates: &[Proposal<GcpSpec>]) -> Vec<&'static str> {
    candidates
        .iter()
        .map(|c| GcpIam::kind_of(&c.spec).name)
        .collect()
}

fn deny_spec(spec: &GcpSpec) -> &deny_policy::Spec {
    match spec {
        GcpSpec::DenyPolicy(s) => s,
        other => panic!("not a deny policy spec: {other:?}"),
    }
}

struct Fixture {
    gcp: GcpApi,
    plane: GcpIam,
    incident: IncidentId,
    plan_id: PlanId,
    envelope: Envelope,
    alert: Alert,
}

async fn fixture() -> Result<Fixture> {
    let gcp = GcpApi::start().await?;
    seed(&gcp);
    let plane = plane_for(&gcp, &[PROJECT]).await?;
    let incident = IncidentId::from("inc-gcp");
    Ok(Fixture {
        gcp,
        plane,
        plan_id: PlanId::nth(&incident, 1),
        incident,
        envelope: envelope(&[GSA_MEMBER]),
        alert: alert("storage.objects.get", BREACH),
    })
}

impl Fixture {
    fn input(&self) -> PlanInput<'_> {
        PlanInput {
            incident: &self.incident,
            plan: &self.plan_id,
            alert: &self.alert,
            envelope: &self.envelope,
        }
    }

    async fn plan(&self) -> Result<Vec<Proposal<GcpSpec>>, PlaneError> {
        let input = self.input();
        self.plane.observe(&input).await?.candidates(&input)
    }

    /// A fresh plan's candidate of `kind`.
    async fn rung(&self, kind: &KindSpec) -> Proposal<GcpSpec> {
        self.plan()
            .await
            .expect("plan")
            .into_iter()
            .find(|c| GcpIam::kind_of(&c.spec) == kind)
            .unwrap_or_else(|| panic!("a {} candidate", kind.name))
    }

    async fn apply(&self, spec: &GcpSpec) -> bool {
        self.plane
            .change(spec, Change::Apply)
            .await
            .expect("apply")
            .changed
    }

    async fn revert(&self, spec: &GcpSpec) -> bool {
        self.plane
            .change(spec, Change::Revert)
            .await
            .expect("revert")
            .changed
    }

    fn binding_members(&self, role: &str) -> Vec<String> {
        members_of(&self.gcp.project_policy(PROJECT), role)
    }

    /// Requests to the APIs, the token endpoint left out.
    fn api_requests(&self) -> usize {
        self.gcp
            .requests()
            .iter()
            .filter(|r| r.path != "/token")
            .count()
    }

    /// Checks like the engine does, until ok or the deadline; returns how many reads it took.
    async fn poll(&self, spec: &GcpSpec, check: Check) -> usize {
        let deadline = Instant::now() + self.plane.verify_deadline();
        let mut polls = 0;
        loop {
            polls += 1;
            let v = self.plane.check(spec, check).await.expect("check reads");
            if v.ok {
                return polls;
            }
            assert!(Instant::now() < deadline, "never verified: {}", v.detail);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn members_of(policy: &Value, role: &str) -> Vec<String> {
    policy["bindings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["role"] == json!(role))
        .flat_map(|b| b["members"].as_array().cloned().unwrap_or_default())
        .filter_map(|m| m.as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn plan_is_the_four_rungs_with_blast_radius_and_zero_writes() -> Result<()> {
    let f = fixture().await?;
    let candidates = f.plan().await?;
    assert_eq!(
        kinds(&candidates),
        [
            REMOVE_BINDING_MEMBER.name,
            DENY_POLICY.name,
            REMOVE_WI_USER.name,
            DISABLE_SERVICE_ACCOUNT.name
        ]
    );
    // Removing the member from objectViewer also takes objects.list; the deny takes only get.
    let rung0 = &candidates[0];
    assert!(rung0.blocks && rung0.rejected.is_none(), "{rung0:?}");
    assert_eq!(
        rung0.blast_radius.items,
        ["storage.objects.list on //storage.googleapis.com/projects/_/buckets/acme-invoices"]
    );
    let GcpSpec::RemoveBindingMember(spec) = &rung0.spec else {
        panic!("{:?}", rung0.spec);
    };
    assert_eq!(
        serde_json::to_value(&spec.binding.condition)?,
        condition(),
        "the pre-image keeps the condition"
    );
    assert_eq!(candidates[1].blast_radius.broken, 0);
    assert_eq!(candidates[2].blast_radius.broken, 2);
    assert!(DISABLE_SERVICE_ACCOUNT.approval_only);
    // Dry run: reads only, every policy read at version 3, each request authenticated.
    assert_eq!(f.gcp.writes(), 0);
    let requests = f.gcp.requests();
    let crm_read = requests
        .iter()
        .find(|r| r.path == "/v3/projects/acme-prod:getIamPolicy")
        .expect("the project policy was read");
    assert_eq!(
        crm_read
            .body
            .as_ref()
            .map(|b| &b["options"]["requestedPolicyVersion"]),
        Some(&json!(3))
    );
    let sa_read = requests
        .iter()
        .find(|r| r.path.ends_with(":getIamPolicy") && r.path.contains("serviceAccounts"))
        .expect("the service account policy was read");
    assert!(
        sa_read.query.contains("options.requestedPolicyVersion=3"),
        "{}",
        sa_read.query
    );
    assert!(
        requests.iter().any(|r| r.path == "/token"),
        "the token came from google-cloud-auth"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.path == "/v1/roles/storage.objectViewer"),
        "roles expanded by the Roles API"
    );
    Ok(())
}

#[tokio::test]
async fn remove_binding_member_applies_verifies_reverts_and_is_idempotent() -> Result<()> {
    let f = fixture().await?;
    let spec = f.rung(&REMOVE_BINDING_MEMBER).await.spec;
    assert!(f.apply(&spec).await);
    assert_eq!(
        f.binding_members("roles/storage.objectViewer"),
        ["user:alice@example.com"]
    );
    assert_eq!(f.binding_members("roles/pubsub.publisher"), [GSA_MEMBER]);
    let policy = f.gcp.project_policy(PROJECT);
    assert_eq!(
        policy["bindings"][0]["condition"],
        condition(),
        "the condition is kept"
    );
    f.poll(&spec, Check::Applied).await;
    let writes = f.gcp.writes();
    assert!(!f.apply(&spec).await, "re-apply finds it done");
    assert_eq!(f.gcp.writes(), writes, "and writes nothing");

    assert!(f.revert(&spec).await);
    let policy = f.gcp.project_policy(PROJECT);
    let viewer = policy["bindings"]
        .as_array()
        .and_then(|bs| {
            bs.iter()
                .find(|b| b["role"] == json!("roles/storage.objectViewer"))
        })
        .cloned()
        .expect("the binding is back");
    assert_eq!(viewer["condition"], condition());
    assert_eq!(
        viewer["members"],
        json!(["user:alice@example.com", GSA_MEMBER])
    );
    f.poll(&spec, Check::Reverted).await;
    assert!(!f.revert(&spec).await);
    assert!(
        !f.plane.check(&spec, Check::Applied).await?.ok,
        "reverted is not applied"
    );
    assert_eq!(
        f.gcp.blind_writes(),
        0,
        "every setIamPolicy carried the etag"
    );
    Ok(())
}

#[tokio::test]
async fn revert_recreates_a_binding_that_disappeared_with_its_condition() -> Result<()> {
    let f = fixture().await?;
    let spec = f.rung(&REMOVE_BINDING_MEMBER).await.spec;
    assert!(f.apply(&spec).await);
    // Someone removes alice too, between the revert's read and its write: the binding is gone
    // entirely. That attempt is refused; the next one reads the policy without the binding.
    f.gcp.edit_before_sets(1, |p| {
        if let Some(bs) = p["bindings"].as_array_mut() {
            bs.retain(|b| b["role"] != json!("roles/storage.objectViewer"));
        }
    });
    let err = f
        .plane
        .change(&spec, Change::Revert)
        .await
        .expect_err("the etag moved");
    assert!(matches!(err, PlaneError::Conflict { .. }), "{err}");
    assert!(
        f.binding_members("roles/storage.objectViewer").is_empty(),
        "the refused write added nothing"
    );
    assert!(f.revert(&spec).await);
    let policy = f.gcp.project_policy(PROJECT);
    let viewer: Vec<&Value> = policy["bindings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["role"] == json!("roles/storage.objectViewer"))
        .collect();
    assert_eq!(viewer.len(), 1);
    assert_eq!(
        viewer[0]["members"],
        json!([GSA_MEMBER]),
        "alice's removal is kept"
    );
    assert_eq!(viewer[0]["condition"], condition());
    assert_eq!(policy["version"], json!(3));
    Ok(())
}

#[tokio::test]
async fn a_concurrent_edit_is_a_conflict_and_the_fresh_plan_keeps_the_other_writers_change(
) -> Result<()> {
    let f = fixture().await?;
    let spec = f.rung(&REMOVE_BINDING_MEMBER).await.spec;
    f.gcp.edit_before_sets(1, |p| {
        if let Some(bs) = p["bindings"].as_array_mut() {
            bs.push(json!({"role": "roles/pubsub.publisher", "members": ["user:bob@example.com"]}));
        }
    });
    let err = f
        .plane
        .change(&spec, Change::Apply)
        .await
        .expect_err("the etag moved between the read and the write");
    assert!(matches!(err, PlaneError::Conflict { .. }), "{err}");
    assert_eq!(err.kind(), FaultKind::Conflict, "the engine re-plans");
    assert!(err.to_string().contains("nothing was written"), "{err}");
    assert_eq!(
        f.gcp.writes(),
        1,
        "one setIamPolicy, refused with ABORTED and not re-sent"
    );
    assert_eq!(
        f.binding_members("roles/storage.objectViewer"),
        [GSA_MEMBER, "user:alice@example.com"],
        "nothing half-done"
    );

    // What the engine does next: a new plan from a fresh observation, applied.
    let fresh = f.rung(&REMOVE_BINDING_MEMBER).await.spec;
    assert!(f.apply(&fresh).await);
    assert_eq!(f.gcp.writes(), 2, "one refused, one accepted");
    assert_eq!(
        f.binding_members("roles/storage.objectViewer"),
        ["user:alice@example.com"]
    );
    assert_eq!(
        f.binding_members("roles/pubsub.publisher"),
        [GSA_MEMBER, "user:bob@example.com"],
        "the other writer's change survives"
    );
    let sets: Vec<Value> = f
        .gcp
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with(":setIamPolicy"))
        .filter_map(|r| r.body)
        .collect();
    assert_ne!(
        sets[0]["policy"]["etag"], sets[1]["policy"]["etag"],
        "re-planned from a fresh read"
    );
    assert_eq!(sets[1]["policy"]["version"], json!(3));
    Ok(())
}

#[tokio::test]
async fn an_etag_that_never_settles_costs_one_refused_write_per_call() -> Result<()> {
    let f = fixture().await?;
    let spec = f.rung(&REMOVE_WI_USER).await.spec;
    assert!(f.apply(&spec).await);
    let writes = f.gcp.writes();
    f.gcp.edit_before_sets(u32::MAX, |_| {});
    for call in 1..=2 {
        let err = f
            .plane
            .change(&spec, Change::Revert)
            .await
            .expect_err("never settles");
        assert!(matches!(err, PlaneError::Conflict { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("setIamPolicy of projects/-/serviceAccounts/") && text.contains("etag"),
            "{text}"
        );
        assert_eq!(
            f.gcp.writes(),
            writes + call,
            "one attempt per call, whatever the etag does"
        );
    }
    assert_eq!(
        members_of(
            &f.gcp.service_account_policy(GSA),
            "roles/iam.workloadIdentityUser"
        ),
        [OTHER_KSA],
        "nothing half-done"
    );
    f.gcp.edit_before_sets(0, |_| {});
    assert!(f.revert(&spec).await, "once it settles, the revert lands");
    Ok(())
}

#[tokio::test]
async fn deny_policy_awaits_its_operation_and_delete_reverts() -> Result<()> {
    let f = fixture().await?;
    let spec = f.rung(&DENY_POLICY).await.spec;
    let id = deny_spec(&spec).policy_id.clone();
    assert_eq!(
        id,
        deny_spec(&f.rung(&DENY_POLICY).await.spec).policy_id,
        "deterministic"
    );
    f.gcp.operation_polls(3);
    assert!(f.apply(&spec).await);
    let stored = f.gcp.deny_policies(PROJECT);
    let rule = &stored[&id]["rules"][0]["denyRule"];
    assert_eq!(
        rule["deniedPrincipals"],
        json!([format!(
            "principal://iam.googleapis.com/projects/-/serviceAccounts/{GSA}"
        )])
    );
    assert_eq!(
        rule["deniedPermissions"],
        json!(["storage.googleapis.com/objects.get"])
    );
    let polls = f
        .gcp
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.contains("/operations/"))
        .count();
    assert!(polls >= 3, "the operation was awaited ({polls} polls)");
    f.poll(&spec, Check::Applied).await;
    assert!(!f.apply(&spec).await, "re-apply finds it");
    assert_eq!(
        f.binding_members("roles/storage.objectViewer").len(),
        2,
        "bindings untouched"
    );

    assert!(f.revert(&spec).await);
    assert!(f.gcp.deny_policies(PROJECT).is_empty());
    f.poll(&spec, Check::Reverted).await;
    assert!(!f.revert(&spec).await, "404 = already gone");
    Ok(())
}

#[tokio::test]
async fn remove_wi_user_cuts_only_the_agents_link() -> Result<()> {
    let f = fixture().await?;
    let rung = f.rung(&REMOVE_WI_USER).await;
    assert!(
        rung.notes
            .iter()
            .any(|n| n.contains("tokens already issued")),
        "{:?}",
        rung.notes
    );
    let spec = rung.spec;
    assert!(f.apply(&spec).await);
    let policy = f.gcp.service_account_policy(GSA);
    assert_eq!(
        members_of(&policy, "roles/iam.workloadIdentityUser"),
        [OTHER_KSA]
    );
    f.poll(&spec, Check::Applied).await;
    let writes = f.gcp.writes();
    assert!(!f.apply(&spec).await);
    assert_eq!(f.gcp.writes(), writes, "re-apply writes nothing");
    assert!(f.revert(&spec).await);
    let policy = f.gcp.service_account_policy(GSA);
    assert_eq!(
        members_of(&policy, "roles/iam.workloadIdentityUser"),
        [OTHER_KSA, KSA_MEMBER]
    );
    f.poll(&spec, Check::Reverted).await;
    assert!(!f.revert(&spec).await);
    assert_eq!(f.gcp.blind_writes(), 0);
    Ok(())
}

#[tokio::test]
async fn disable_service_account_is_approval_only_and_reverts_by_enable() -> Result<()> {
    let f = fixture().await?;
    let spec = f.rung(&DISABLE_SERVICE_ACCOUNT).await.spec;
    assert!(GcpIam::kind_of(&spec).approval_only);
    assert!(f.apply(&spec).await);
    assert!(f.gcp.service_account_disabled(GSA));
    f.poll(&spec, Check::Applied).await;
    let writes = f.gcp.writes();
    assert!(!f.apply(&spec).await);
    assert_eq!(f.gcp.writes(), writes, "re-apply writes nothing");
    assert!(f.revert(&spec).await);
    assert!(!f.gcp.service_account_disabled(GSA));
    f.poll(&spec, Check::Reverted).await;
    assert!(!f.revert(&spec).await);
    Ok(())
}

#[tokio::test]
async fn stale_reads_make_verify_poll_until_the_write_shows() -> Result<()> {
    let f = fixture().await?;
    let spec = f.rung(&REMOVE_BINDING_MEMBER).await.spec;
    assert!(f.apply(&spec).await);
    f.gcp.stale_reads(3);
    let first = f.plane.check(&spec, Check::Applied).await?;
    assert!(!first.ok && first.detail.contains("polling"), "{first:?}");
    let polls = f.poll(&spec, Check::Applied).await;
    assert_eq!(polls, 3, "two more stale reads, then the write shows");
    Ok(())
}

#[tokio::test]
async fn failing_and_slow_apis_get_one_attempt_and_a_typed_transient_error() -> Result<()> {
    let f = fixture().await?;
    for (status, name) in [
        (503, "UNAVAILABLE"),
        (500, "INTERNAL"),
        (429, "RESOURCE_EXHAUSTED"),
    ] {
        f.gcp.fail_next(1, status);
        let before = f.api_requests();
        let err = f.plan().await.expect_err("the API failed");
        assert!(
            matches!(err, PlaneError::Unavailable { .. }),
            "{status}: {err}"
        );
        assert_eq!(err.kind(), FaultKind::Transient, "the engine retries it");
        assert!(
            err.to_string().contains(name) || err.to_string().contains(&status.to_string()),
            "{err}"
        );
        assert_eq!(
            f.api_requests() - before,
            1,
            "{status}: one attempt, not retried by the plane"
        );
        f.plan()
            .await
            .expect("the engine's next attempt goes through");
    }
    f.gcp.delay_next(1, Duration::from_secs(2));
    let before = f.api_requests();
    let started = Instant::now();
    let err = f.plan().await.expect_err("timed out");
    assert!(matches!(err, PlaneError::Unreachable { .. }), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "cut at gcp.requestTimeout, not waited out: {:?}",
        started.elapsed()
    );
    assert_eq!(
        f.api_requests() - before,
        1,
        "the timed-out read is not re-sent"
    );
    assert_eq!(f.gcp.writes(), 0);
    Ok(())
}

#[tokio::test]
async fn a_server_error_on_the_write_is_unavailable_and_nothing_is_written() -> Result<()> {
    let f = fixture().await?;
    let spec = f.rung(&REMOVE_BINDING_MEMBER).await.spec;
    f.gcp.fail_next_sets(1, 503);
    let err = f
        .plane
        .change(&spec, Change::Apply)
        .await
        .expect_err("setIamPolicy answered 503");
    assert!(
        matches!(err, PlaneError::Unavailable { .. }),
        "a server error, not a moved etag: {err}"
    );
    assert!(
        err.to_string()
            .contains("setIamPolicy of project acme-prod"),
        "{err}"
    );
    assert_eq!(f.gcp.writes(), 1, "one setIamPolicy, not re-sent");
    assert_eq!(
        f.binding_members("roles/storage.objectViewer"),
        [GSA_MEMBER, "user:alice@example.com"],
        "the failed attempt wrote nothing"
    );
    assert!(f.apply(&spec).await, "the engine's retry lands");
    assert_eq!(f.gcp.writes(), 2);
    Ok(())
}

#[tokio::test]
async fn bad_input_gets_precise_errors_and_changes_nothing() -> Result<()> {
    let f = fixture().await?;
    let plan = |envelope: Envelope, alert: Alert| {
        let plane = &f.plane;
        async move { candidates(plane, "inc-bad", &envelope, &alert).await }
    };
    let err = plan(
        envelope(&["serviceAccount:payment-agent"]),
        alert("storage.objects.get", BREACH),
    )
    .await
    .expect_err("bad principal");
    assert!(matches!(err, PlaneError::Invalid { .. }), "{err}");
    assert!(
        err.to_string().contains("spec.identity.principals[0]"),
        "{err}"
    );
    let err = plan(
        envelope(&["serviceAccount:ghost@acme-prod.iam.gserviceaccount.com"]),
        alert("storage.objects.get", BREACH),
    )
    .await
    .expect_err("unknown service account");
    assert!(
        err.to_string()
            .contains("ghost@acme-prod.iam.gserviceaccount.com")
            && err.to_string().contains("does not exist"),
        "{err}"
    );
    let err = plan(
        envelope(&[GSA_MEMBER]),
        alert(
            "storage.objects.get",
            "//storage.googleapis.com/projects/other-prod/buckets/b",
        ),
    )
    .await
    .expect_err("project not configured");
    assert!(
        err.to_string()
            .contains("project other-prod, which is not under gcp.projects"),
        "{err}"
    );
    let err = plan(
        envelope(&[GSA_MEMBER]),
        alert("storage.buckets.delete", BREACH),
    )
    .await
    .expect_err("not granted");
    assert!(matches!(err, PlaneError::Unsupported { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("no binding in project(s) acme-prod grants storage.buckets.delete"),
        "{err}"
    );
    let err = plan(
        envelope(&[GSA_MEMBER]),
        alert("gcp:storage.objects", BREACH),
    )
    .await
    .expect_err("not a permission");
    assert!(err.to_string().contains("parameter.action"), "{err}");

    // A configured project that does not exist (or that Firebreak may not read).
    let ghost = plane_for(&f.gcp, &[PROJECT, "ghost-project"]).await?;
    let err = candidates(&ghost, "inc-bad", &f.envelope, &f.alert)
        .await
        .expect_err("unknown project");
    assert!(matches!(err, PlaneError::Refused { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("getIamPolicy of project ghost-project"),
        "{err}"
    );

    // The journaled form, through the engine's adapter: a spec naming a binding that is not
    // there has nothing to remove; one that is not a GCP spec is refused before any call.
    let mut planes = Planes::default();
    planes.register(plane_for(&f.gcp, &[PROJECT]).await?)?;
    let registered = planes
        .get(&PlaneKey::from_static(GcpIam::KEY))
        .expect("registered under its key");
    let mut action = registered
        .candidates(&f.input())
        .await?
        .into_iter()
        .find(|c| c.kind == REMOVE_BINDING_MEMBER)
        .expect("a rung-0 candidate");
    assert_eq!(action.spec["rung"], json!("remove_binding_member"));
    action.spec["binding"]["role"] = json!("roles/storage.admin");
    assert!(!registered.change(&action, Change::Apply).await?.changed);
    let mut extra = action.clone();
    extra.spec["etag"] = json!("BwX0");
    let err = registered
        .change(&extra, Change::Apply)
        .await
        .expect_err("an unknown field");
    assert!(matches!(err, PlaneError::Invalid { .. }), "{err}");
    assert!(err.to_string().contains("unknown field `etag`"), "{err}");
    action.spec = json!({"rung": "something_else"});
    let err = registered
        .change(&action, Change::Apply)
        .await
        .expect_err("not a GCP spec");
    assert!(matches!(err, PlaneError::Invalid { .. }), "{err}");
    assert!(err.to_string().contains("is not one gcp wrote"), "{err}");
    assert_eq!(f.gcp.writes(), 0, "bad input wrote nothing");
    Ok(())
}

#[tokio::test]
async fn direct_workload_identity_principal_is_removed_and_denied_in_its_own_form() -> Result<()> {
    let gcp = GcpApi::start().await?;
    seed(&gcp);
    gcp.seed_project(
        PROJECT,
        "123456789012",
        json!([{"role": "roles/storage.objectViewer", "members": [WI_PRINCIPAL, "user:alice@example.com"]}]),
    );
    let plane = plane_for(&gcp, &[PROJECT]).await?;
    let env = envelope(&[WI_PRINCIPAL]);
    let al = alert("storage.objects.get", BREACH);
    let candidates = candidates(&plane, "inc-wi", &env, &al).await?;
    assert_eq!(
        kinds(&candidates),
        [REMOVE_BINDING_MEMBER.name, DENY_POLICY.name],
        "no GSA: no link or disable rungs"
    );
    assert_eq!(
        deny_spec(&candidates[1].spec).denied_principals,
        [WI_PRINCIPAL]
    );
    assert!(
        plane
            .change(&candidates[0].spec, Change::Apply)
            .await?
            .changed
    );
    assert_eq!(
        members_of(&gcp.project_policy(PROJECT), "roles/storage.objectViewer"),
        ["user:alice@example.com"]
    );
    assert!(
        plane
            .change(&candidates[1].spec, Change::Apply)
            .await?
            .changed
    );
    assert_eq!(gcp.deny_policies(PROJECT).len(), 1);
    Ok(())
}

#[tokio::test]
async fn the_fake_is_as_strict_as_gcp_about_versions_etags_and_tokens() -> Result<()> {
    let gcp = GcpApi::start().await?;
    seed(&gcp);
    let http = reqwest::Client::new();
    let url = |verb: &str| format!("{}/v3/projects/{PROJECT}:{verb}", gcp.url());
    let no_token = http
        .post(url("getIamPolicy"))
        .json(&json!({}))
        .send()
        .await?;
    assert_eq!(no_token.status(), 401);
    let call = |verb: &str, body: Value| {
        http.post(url(verb))
            .bearer_auth(ACCESS_TOKEN)
            .json(&body)
            .send()
    };
    let v1 = call(
        "getIamPolicy",
        json!({"options": {"requestedPolicyVersion": 1}}),
    )
    .await?;
    assert_eq!(
        v1.status(),
        400,
        "a conditional policy needs version 3 to be read"
    );
    let policy: Value = call(
        "getIamPolicy",
        json!({"options": {"requestedPolicyVersion": 3}}),
    )
    .await?
    .json()
    .await?;
    assert_eq!(policy["version"], json!(3));
    let mut downgraded = policy.clone();
    downgraded["version"] = json!(1);
    let refused = call("setIamPolicy", json!({"policy": downgraded})).await?;
    assert_eq!(refused.status(), 400, "conditions need version 3");
    let mut stale = policy.clone();
    stale["etag"] = json!("QndYMDAwMDAwMDA=");
    let aborted = call("setIamPolicy", json!({"policy": stale})).await?;
    assert_eq!(aborted.status(), 409);
    let body: Value = aborted.json().await?;
    assert_eq!(body["error"]["status"], json!("ABORTED"));
    assert_eq!(
        gcp.project_policy(PROJECT),
        policy,
        "refused writes changed nothing"
    );
    Ok(())
}
