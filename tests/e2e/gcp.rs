//! The GCP IAM plane end to end: the real googleapis clients (`google-cloud-resourcemanager-v3`,
//! `google-cloud-iam-v2`, `google-cloud-iam-admin-v1`), authenticated by `google-cloud-auth`
//! `authorized_user` credentials against the fake's token endpoint, talking to the strict fake
//! GCP APIs (`firebreak_e2e::gcp_api`), one server per test.
//!
//! The project `acme-prod`: `roles/storage.objectViewer` (get, list objects) is granted to the
//! agent's Google service account and to alice under the condition "acme buckets";
//! `roles/pubsub.publisher` to the agent alone. The service account lets the agent's Kubernetes
//! ServiceAccount (and another one) impersonate it. The envelope publishes to a topic and lists
//! invoices; the breach reads an object of the partner-keys bucket.

use std::time::{Duration, Instant};

use anyhow::Result;
use firebreak_containment::action::ActionKind;
use firebreak_containment::alert::Alert;
use firebreak_containment::envelope::Envelope;
use firebreak_containment::plan::Candidate;
use firebreak_containment::surface::{ControlPlane, Op, PlanInput, Step, SurfaceError};
use firebreak_e2e::gcp_api::{GcpApi, ACCESS_TOKEN};
use firebreak_gcp::plane::{ATTEMPTS, BACKOFF};
use firebreak_gcp::{Endpoints, GcpConfig, GcpIam};
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

struct Fixture {
    gcp: GcpApi,
    plane: GcpIam,
    envelope: Envelope,
    alert: Alert,
}

async fn fixture() -> Result<Fixture> {
    let gcp = GcpApi::start().await?;
    seed(&gcp);
    let plane = plane_for(&gcp, &[PROJECT]).await?;
    Ok(Fixture {
        gcp,
        plane,
        envelope: envelope(&[GSA_MEMBER]),
        alert: alert("storage.objects.get", BREACH),
    })
}

impl Fixture {
    fn input(&self) -> PlanInput<'_> {
        PlanInput {
            incident: "inc-gcp",
            alert: &self.alert,
            envelope: &self.envelope,
        }
    }

    async fn plan(&self) -> Result<Vec<Candidate>, SurfaceError> {
        let input = self.input();
        self.plane.observe(&input).await?.candidates(&input)
    }

    async fn rung(&self, kind: ActionKind) -> Candidate {
        self.plan()
            .await
            .expect("plan")
            .into_iter()
            .find(|c| c.kind == kind)
            .unwrap_or_else(|| panic!("a {kind:?} candidate"))
    }

    fn binding_members(&self, role: &str) -> Vec<String> {
        members_of(&self.gcp.project_policy(PROJECT), role)
    }

    /// Polls `op` (Verify or VerifyReverted) like the engine does, until ok or the deadline;
    /// returns how many reads it took.
    async fn poll(&self, c: &Candidate, op: Op) -> usize {
        let deadline = Instant::now() + self.plane.verify_deadline();
        let mut polls = 0;
        loop {
            polls += 1;
            match self.plane.run(c, op).await.expect("verification runs") {
                Step::Checked(v) if v.ok => return polls,
                Step::Checked(v) => {
                    assert!(Instant::now() < deadline, "never verified: {}", v.detail)
                }
                Step::Changed(o) => panic!("a check answered a change: {}", o.detail),
            }
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

fn changed(step: Step) -> bool {
    match step {
        Step::Changed(o) => o.changed,
        Step::Checked(v) => panic!("expected a change, got a check: {}", v.detail),
    }
}

#[tokio::test]
async fn plan_is_the_four_rungs_with_blast_radius_and_zero_writes() -> Result<()> {
    let f = fixture().await?;
    let candidates = f.plan().await?;
    let kinds: Vec<ActionKind> = candidates.iter().map(|c| c.kind).collect();
    assert_eq!(
        kinds,
        [
            ActionKind::GcpRemoveBindingMember,
            ActionKind::GcpDenyPolicy,
            ActionKind::GcpRemoveWiUser,
            ActionKind::GcpDisableServiceAccount
        ]
    );
    // Removing the member from objectViewer also takes objects.list; the deny takes only get.
    let rung0 = &candidates[0];
    assert!(rung0.blocks && rung0.rejected.is_none(), "{rung0:?}");
    assert_eq!(
        rung0.blast_radius.items,
        ["storage.objects.list on //storage.googleapis.com/projects/_/buckets/acme-invoices"]
    );
    assert_eq!(rung0.spec["binding"]["condition"], condition());
    assert_eq!(candidates[1].blast_radius.broken, 0);
    assert_eq!(candidates[2].blast_radius.broken, 2);
    assert!(ActionKind::GcpDisableServiceAccount.approval_only());
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
    let c = f.rung(ActionKind::GcpRemoveBindingMember).await;
    assert!(changed(f.plane.run(&c, Op::Apply).await?));
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
    f.poll(&c, Op::Verify).await;
    let writes = f.gcp.writes();
    assert!(
        !changed(f.plane.run(&c, Op::Apply).await?),
        "re-apply finds it done"
    );
    assert_eq!(f.gcp.writes(), writes, "and writes nothing");

    assert!(changed(f.plane.run(&c, Op::Revert).await?));
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
    f.poll(&c, Op::VerifyReverted).await;
    assert!(!changed(f.plane.run(&c, Op::Revert).await?));
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
    let c = f.rung(ActionKind::GcpRemoveBindingMember).await;
    f.plane.run(&c, Op::Apply).await?;
    // Someone removes alice too: the binding is gone entirely.
    f.gcp.edit_before_sets(1, |p| {
        if let Some(bs) = p["bindings"].as_array_mut() {
            bs.retain(|b| b["role"] != json!("roles/storage.objectViewer"));
        }
    });
    assert!(changed(f.plane.run(&c, Op::Revert).await?));
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
async fn concurrent_edit_is_re_read_and_re_planned_keeping_the_other_writers_change() -> Result<()>
{
    let f = fixture().await?;
    let c = f.rung(ActionKind::GcpRemoveBindingMember).await;
    f.gcp.edit_before_sets(1, |p| {
        if let Some(bs) = p["bindings"].as_array_mut() {
            bs.push(json!({"role": "roles/pubsub.publisher", "members": ["user:bob@example.com"]}));
        }
    });
    assert!(changed(f.plane.run(&c, Op::Apply).await?));
    assert_eq!(f.gcp.writes(), 2, "one refused with ABORTED, one accepted");
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
async fn etag_that_never_settles_fails_precisely_after_bounded_attempts() -> Result<()> {
    let f = fixture().await?;
    let c = f.rung(ActionKind::GcpRemoveBindingMember).await;
    f.gcp.edit_before_sets(u32::MAX, |_| {});
    let started = Instant::now();
    let err = f.plane.run(&c, Op::Apply).await.expect_err("never settles");
    assert!(matches!(err, SurfaceError::Conflict { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&format!("{ATTEMPTS} etag-guarded attempts")),
        "{text}"
    );
    assert!(text.contains("none of them was applied"), "{text}");
    assert_eq!(f.gcp.writes(), u64::from(ATTEMPTS));
    assert!(
        started.elapsed() >= BACKOFF * 7,
        "backed off 100+200+400 ms"
    );
    assert_eq!(
        f.binding_members("roles/storage.objectViewer"),
        [GSA_MEMBER, "user:alice@example.com"],
        "nothing half-done"
    );
    Ok(())
}

#[tokio::test]
async fn deny_policy_awaits_its_operation_and_delete_reverts() -> Result<()> {
    let f = fixture().await?;
    let c = f.rung(ActionKind::GcpDenyPolicy).await;
    let id = c.spec["policyId"]
        .as_str()
        .expect("a policy id")
        .to_string();
    assert_eq!(
        id,
        f.rung(ActionKind::GcpDenyPolicy).await.spec["policyId"],
        "deterministic"
    );
    f.gcp.operation_polls(3);
    assert!(changed(f.plane.run(&c, Op::Apply).await?));
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
    f.poll(&c, Op::Verify).await;
    assert!(
        !changed(f.plane.run(&c, Op::Apply).await?),
        "re-apply finds it"
    );
    assert_eq!(
        f.binding_members("roles/storage.objectViewer").len(),
        2,
        "bindings untouched"
    );

    assert!(changed(f.plane.run(&c, Op::Revert).await?));
    assert!(f.gcp.deny_policies(PROJECT).is_empty());
    f.poll(&c, Op::VerifyReverted).await;
    assert!(
        !changed(f.plane.run(&c, Op::Revert).await?),
        "404 = already gone"
    );
    Ok(())
}

#[tokio::test]
async fn remove_wi_user_cuts_only_the_agents_link() -> Result<()> {
    let f = fixture().await?;
    let c = f.rung(ActionKind::GcpRemoveWiUser).await;
    assert!(
        c.notes.iter().any(|n| n.contains("tokens already issued")),
        "{:?}",
        c.notes
    );
    assert!(changed(f.plane.run(&c, Op::Apply).await?));
    let policy = f.gcp.service_account_policy(GSA);
    assert_eq!(
        members_of(&policy, "roles/iam.workloadIdentityUser"),
        [OTHER_KSA]
    );
    f.poll(&c, Op::Verify).await;
    assert!(!changed(f.plane.run(&c, Op::Apply).await?));
    assert!(changed(f.plane.run(&c, Op::Revert).await?));
    let policy = f.gcp.service_account_policy(GSA);
    assert_eq!(
        members_of(&policy, "roles/iam.workloadIdentityUser"),
        [OTHER_KSA, KSA_MEMBER]
    );
    f.poll(&c, Op::VerifyReverted).await;
    assert_eq!(f.gcp.blind_writes(), 0);
    Ok(())
}

#[tokio::test]
async fn disable_service_account_is_approval_only_and_reverts_by_enable() -> Result<()> {
    let f = fixture().await?;
    let c = f.rung(ActionKind::GcpDisableServiceAccount).await;
    assert!(c.kind.approval_only());
    assert!(changed(f.plane.run(&c, Op::Apply).await?));
    assert!(f.gcp.service_account_disabled(GSA));
    f.poll(&c, Op::Verify).await;
    assert!(!changed(f.plane.run(&c, Op::Apply).await?));
    assert!(changed(f.plane.run(&c, Op::Revert).await?));
    assert!(!f.gcp.service_account_disabled(GSA));
    f.poll(&c, Op::VerifyReverted).await;
    assert!(!changed(f.plane.run(&c, Op::Revert).await?));
    Ok(())
}

#[tokio::test]
async fn stale_reads_make_verify_poll_until_the_write_shows() -> Result<()> {
    let f = fixture().await?;
    let c = f.rung(ActionKind::GcpRemoveBindingMember).await;
    f.plane.run(&c, Op::Apply).await?;
    f.gcp.stale_reads(3);
    let first = f.plane.run(&c, Op::Verify).await?;
    assert!(
        matches!(&first, Step::Checked(v) if !v.ok && v.detail.contains("polling")),
        "{first:?}"
    );
    let polls = f.poll(&c, Op::Verify).await;
    assert_eq!(polls, 3, "two more stale reads, then the write shows");
    Ok(())
}

#[tokio::test]
async fn transient_errors_and_timeouts_are_retried_within_bounds() -> Result<()> {
    let f = fixture().await?;
    f.gcp.fail_next(2, 503);
    f.plan().await.expect("two 503s are retried");
    f.gcp.delay_next(1, Duration::from_secs(2));
    f.plan().await.expect("a timed-out attempt is retried");
    f.gcp.fail_next(100, 500);
    let err = f.plan().await.expect_err("500 forever");
    assert!(matches!(err, SurfaceError::Unreachable { .. }), "{err}");
    assert!(
        err.to_string().contains("INTERNAL") || err.to_string().contains("500"),
        "{err}"
    );
    assert_eq!(f.gcp.writes(), 0);
    Ok(())
}

#[tokio::test]
async fn bad_input_gets_precise_errors_and_changes_nothing() -> Result<()> {
    let f = fixture().await?;
    let input = |envelope: &'static Envelope, alert: &'static Alert| PlanInput {
        incident: "inc-bad",
        alert,
        envelope,
    };
    let observe = |envelope: Envelope, alert: Alert| {
        let plane = &f.plane;
        async move {
            let envelope: &'static Envelope = Box::leak(Box::new(envelope));
            let alert: &'static Alert = Box::leak(Box::new(alert));
            let input = input(envelope, alert);
            plane.observe(&input).await?.candidates(&input)
        }
    };
    let err = observe(
        envelope(&["serviceAccount:payment-agent"]),
        alert("storage.objects.get", BREACH),
    )
    .await
    .expect_err("bad principal");
    assert!(
        err.to_string().contains("spec.identity.principals[0]"),
        "{err}"
    );
    let err = observe(
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
    let err = observe(
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
    let err = observe(
        envelope(&[GSA_MEMBER]),
        alert("storage.buckets.delete", BREACH),
    )
    .await
    .expect_err("not granted");
    assert!(matches!(err, SurfaceError::Unsupported { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("no binding in project(s) acme-prod grants storage.buckets.delete"),
        "{err}"
    );
    let err = observe(
        envelope(&[GSA_MEMBER]),
        alert("gcp:storage.objects", BREACH),
    )
    .await
    .expect_err("not a permission");
    assert!(err.to_string().contains("parameter.action"), "{err}");

    // A configured project that does not exist (or that Firebreak may not read).
    let ghost = plane_for(&f.gcp, &[PROJECT, "ghost-project"]).await?;
    let env = envelope(&[GSA_MEMBER]);
    let al = alert("storage.objects.get", BREACH);
    let input = PlanInput {
        incident: "inc-bad",
        alert: &al,
        envelope: &env,
    };
    let err = ghost.observe(&input).await.err().expect("unknown project");
    assert!(matches!(err, SurfaceError::Refused { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("getIamPolicy of project ghost-project"),
        "{err}"
    );

    // A journaled spec naming a binding or member that is not there: nothing to remove.
    let mut c = f.rung(ActionKind::GcpRemoveBindingMember).await;
    c.spec["binding"]["role"] = json!("roles/storage.admin");
    assert!(!changed(f.plane.run(&c, Op::Apply).await?));
    c.spec = json!({"op": "somethingElse"});
    let err = f
        .plane
        .run(&c, Op::Apply)
        .await
        .expect_err("not a GCP spec");
    assert!(err.to_string().contains("not a GCP IAM spec"), "{err}");
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
    let input = PlanInput {
        incident: "inc-wi",
        alert: &al,
        envelope: &env,
    };
    let candidates = plane.observe(&input).await?.candidates(&input)?;
    let kinds: Vec<ActionKind> = candidates.iter().map(|c| c.kind).collect();
    assert_eq!(
        kinds,
        [
            ActionKind::GcpRemoveBindingMember,
            ActionKind::GcpDenyPolicy
        ],
        "no GSA: no link or disable rungs"
    );
    assert_eq!(
        candidates[1].spec["deniedPrincipals"],
        json!([WI_PRINCIPAL])
    );
    assert!(changed(plane.run(&candidates[0], Op::Apply).await?));
    assert_eq!(
        members_of(&gcp.project_policy(PROJECT), "roles/storage.objectViewer"),
        ["user:alice@example.com"]
    );
    assert!(changed(plane.run(&candidates[1], Op::Apply).await?));
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
