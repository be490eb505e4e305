//! The Azure plane end to end: Firebreak's real ARM client against the strict fake ARM
//! (`firebreak_e2e::azure_api`), one server per test. The plane is driven through the typed
//! trait (`observe`, `change`, `check`) as the engine drives it, and once through the engine's
//! adapter (`Planes`) for the journaled form of its specs.
//!
//! Credentials: `azure_identity` 1.0 refuses an `http://` authority host and the fake serves
//! plain HTTP on loopback, so most tests use [`FakeEntra`], an `azure_core` `TokenCredential`
//! implemented here (a client-credentials POST to the fake's token endpoint). One test runs the
//! real `azure_identity::WorkloadIdentityCredential` (token file, client assertion, Entra's
//! response parsing) with an `azure_core` transport that sends its `https://` requests to the
//! fake on loopback instead.
//!
//! The tenant: managed identity `payment-agent` (principal `PRINCIPAL`) holds Storage Blob Data
//! Reader on storage account `acct` and Contributor on resource group `data`; its federated
//! credential trusts ServiceAccount payments/payment-agent of the AKS issuer. The envelope reads
//! blobs in containers `invoices` and `receipts` and reads the account; the breach reads a blob
//! in container `payouts`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_core::http::{new_http_client, AsyncRawResponse, HttpClient, Request, Transport};
use azure_core::time::OffsetDateTime;
use azure_identity::{WorkloadIdentityCredential, WorkloadIdentityCredentialOptions};
use firebreak_azure::rungs::narrow_role_assignment::{self, narrow_name};
use firebreak_azure::{
    AzureConfig, AzureRbac, AzureSpec, DELETE_FEDERATED_CREDENTIAL, DELETE_ROLE_ASSIGNMENT,
    NARROW_ROLE_ASSIGNMENT,
};
use firebreak_containment::alert::Alert;
use firebreak_containment::envelope::Envelope;
use firebreak_containment::ids::{IncidentId, PlanId, PlaneKey};
use firebreak_containment::plane::{
    Change, Check, Cloud, FaultKind, KindSpec, PlanInput, Plane, PlaneError, Planes, Proposal,
    Route, Verification,
};
use firebreak_e2e::azure_api::{self, subscription, AzureApi};
use serde_json::{json, Value};

const PRINCIPAL: &str = "11111111-1111-4111-8111-111111111111";
const CLIENT: &str = "22222222-2222-4222-8222-222222222222";
const ISSUER: &str = "https://eastus.oic.prod-aks.azure.com/tenant/cluster/";
const SUBJECT: &str = "system:serviceaccount:payments:payment-agent";
const BLOB_READ: &str = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read";
const ACCOUNT_READ: &str = "Microsoft.Storage/storageAccounts/read";
const READER_GUID: &str = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1";
const CONTRIBUTOR_GUID: &str = "b24988ac-6180-42a0-ab88-20f7382dd24c";
const ACCOUNT_READER: &str = "0f6c1e1a-7d4b-4c8e-9a3f-5b2d8e6c4a10";
const RG_CONTRIBUTOR: &str = "3c9e2b7d-1a5f-4e6b-8d0c-7f4a2e9b1c30";
const INCIDENT: &str = "inc-azure";
const FIREBREAK_CLIENT: &str = "44444444-4444-4444-8444-444444444444";

/// `azure_core` `TokenCredential` over the fake's Entra ID token endpoint (client credentials).
#[derive(Debug)]
struct FakeEntra {
    token_url: String,
    http: reqwest::Client,
}

#[async_trait::async_trait]
impl TokenCredential for FakeEntra {
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let failed = |e: String| {
            azure_core::Error::with_message(azure_core::error::ErrorKind::Credential, e)
        };
        let response = self
            .http
            .post(&self.token_url)
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", azure_api::CLIENT_ID),
                ("client_secret", azure_api::CLIENT_SECRET),
                ("scope", &scopes.join(" ")),
            ])
            .send()
            .await
            .map_err(|e| failed(e.to_string()))?;
        let body: Value = response.json().await.map_err(|e| failed(e.to_string()))?;
        let token = body["access_token"]
            .as_str()
            .ok_or_else(|| failed(format!("no access_token in {body}")))?;
        let expires_in = body["expires_in"].as_i64().unwrap_or(0);
        Ok(AccessToken::new(
            token.to_string(),
            OffsetDateTime::now_utc() + azure_core::time::Duration::seconds(expires_in),
        ))
    }
}

fn account() -> String {
    format!(
        "/subscriptions/{}/resourceGroups/data/providers/Microsoft.Storage/storageAccounts/acct",
        subscription()
    )
}

fn container(name: &str) -> String {
    format!("{}/blobServices/default/containers/{name}", account())
}

fn breach() -> String {
    format!("{}/blobs/q3.csv", container("payouts"))
}

struct Fixture {
    api: AzureApi,
    plane: AzureRbac,
    identity: String,
    incident: IncidentId,
    plan_id: PlanId,
    envelope: Envelope,
    alert: Alert,
}

fn config(api: &AzureApi, request_timeout: Duration) -> AzureConfig {
    AzureConfig {
        arm_endpoint: api.url(),
        aks_oidc_issuer: Some(ISSUER.into()),
        verify_deadline: Duration::from_secs(5),
        request_timeout,
        ..AzureConfig::default()
    }
}

fn plane(api: &AzureApi, request_timeout: Duration) -> AzureRbac {
    let credential = Arc::new(FakeEntra {
        token_url: api.token_url(),
        http: reqwest::Client::new(),
    });
    AzureRbac::with_credential(config(api, request_timeout), credential).expect("plane builds")
}

fn alert(action: &str, resource: &str) -> Alert {
    let body = json!({
        "id": "a-az-1", "source": "test", "time": "2026-11-22T02:47:00Z",
        "agent": {"cluster": "aks-prod", "namespace": "payments", "workload": "Deployment/payment-agent", "serviceAccount": "payment-agent"},
        "dimension": "identity",
        "parameter": {"action": action, "resource": resource},
        "tier": "attack-attempt", "severity": "critical", "evidence": {}
    });
    Alert::from_json(body.to_string().as_bytes()).expect("alert parses")
}

fn envelope(principal: &str) -> Envelope {
    Envelope::from_yaml(&format!(
        r#"apiVersion: firebreak.dev/v1alpha1
kind: Envelope
metadata: {{name: payment-agent, namespace: payments}}
spec:
  agent: {{cluster: aks-prod, namespace: payments, workload: Deployment/payment-agent, serviceAccount: payment-agent}}
  version: 4
  status: converged
  identity:
    principals: ["{principal}"]
    observed:
      - {{action: "{BLOB_READ}", resource: "{}/blobs/2026-11.pdf", closure: literal, count: 900, sessions: 80}}
      - {{action: "{BLOB_READ}", resource: "{}", closure: structural, count: 400, sessions: 50}}
      - {{action: "{ACCOUNT_READ}", resource: "{}", closure: literal, count: 90, sessions: 20}}
"#,
        container("invoices"),
        container("receipts"),
        account(),
    ))
    .expect("envelope parses")
}

async fn fixture_with(request_timeout: Duration) -> Result<Fixture> {
    let api = AzureApi::start().await?;
    let identity = api.seed_identity("agents", "payment-agent", PRINCIPAL, CLIENT);
    let reader = api.seed_role(
        READER_GUID,
        "Storage Blob Data Reader",
        json!([{
            "actions": ["Microsoft.Storage/storageAccounts/blobServices/containers/read",
                        "Microsoft.Storage/storageAccounts/blobServices/generateUserDelegationKey/action"],
            "notActions": [],
            "dataActions": [BLOB_READ],
            "notDataActions": [],
        }]),
    );
    let contributor = api.seed_role(
        CONTRIBUTOR_GUID,
        "Contributor",
        json!([{
            "actions": ["*"],
            "notActions": ["Microsoft.Authorization/*/Delete", "Microsoft.Authorization/*/Write",
                           "Microsoft.Authorization/elevateAccess/Action"],
            "dataActions": [], "notDataActions": [],
        }]),
    );
    api.seed_assignment(&account(), ACCOUNT_READER, &reader, PRINCIPAL);
    api.seed_assignment(
        &format!("/subscriptions/{}/resourceGroups/data", subscription()),
        RG_CONTRIBUTOR,
        &contributor,
        PRINCIPAL,
    );
    api.seed_federated(&identity, "payment-agent-aks", ISSUER, SUBJECT);
    let plane = plane(&api, request_timeout);
    let incident = IncidentId::from(INCIDENT);
    Ok(Fixture {
        plane,
        plan_id: PlanId::nth(&incident, 1),
        incident,
        envelope: envelope(&identity),
        alert: alert(BLOB_READ, &breach()),
        identity,
        api,
    })
}

async fn fixture() -> Result<Fixture> {
    fixture_with(Duration::from_secs(5)).await
}

fn assignment_id(scope: &str, name: &str) -> String {
    format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{name}")
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

    async fn plan(&self) -> Result<Vec<Proposal<AzureSpec>>, PlaneError> {
        let input = self.input();
        self.plane.observe(&input).await?.candidates(&input)
    }

    /// A fresh plan's candidate of `kind`.
    async fn rung(&self, kind: &KindSpec) -> Proposal<AzureSpec> {
        self.plan()
            .await
            .expect("plan")
            .into_iter()
            .find(|c| AzureRbac::kind_of(&c.spec) == kind)
            .unwrap_or_else(|| panic!("a {} candidate", kind.name))
    }

    async fn apply(
        &self,
        spec: &AzureSpec,
    ) -> Result<firebreak_containment::plane::Outcome, PlaneError> {
        self.plane.change(spec, Change::Apply).await
    }

    async fn revert(
        &self,
        spec: &AzureSpec,
    ) -> Result<firebreak_containment::plane::Outcome, PlaneError> {
        self.plane.change(spec, Change::Revert).await
    }

    fn reader_id(&self) -> String {
        assignment_id(&account(), ACCOUNT_READER)
    }

    fn federated_id(&self) -> String {
        format!(
            "{}/federatedIdentityCredentials/payment-agent-aks",
            self.identity
        )
    }
}

fn kinds(candidates: &[Proposal<AzureSpec>]) -> Vec<&'static str> {
    candidates
        .iter()
        .map(|c| AzureRbac::kind_of(&c.spec).name)
        .collect()
}

fn narrow_spec(spec: &AzureSpec) -> &narrow_role_assignment::Spec {
    match spec {
        AzureSpec::NarrowRoleAssignment(s) => s,
        other => panic!("not a narrow spec: {other:?}"),
    }
}

fn verified(v: Result<Verification, PlaneError>) -> Verification {
    let v = v.expect("verification runs");
    assert!(v.ok, "{}", v.detail);
    v
}

/// An `azure_core` transport sending every request to the fake on loopback, over plain HTTP.
#[derive(Debug)]
struct ToLoopback {
    inner: Arc<dyn HttpClient>,
    port: u16,
}

#[async_trait::async_trait]
impl HttpClient for ToLoopback {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<AsyncRawResponse> {
        let mut request = request.clone();
        let url = request.url_mut();
        let rewritten = url
            .set_scheme("http")
            .and_then(|()| url.set_host(Some("127.0.0.1")).map_err(drop))
            .and_then(|()| url.set_port(Some(self.port)));
        rewritten.map_err(|()| {
            azure_core::Error::with_message(
                azure_core::error::ErrorKind::Other,
                "cannot point the request at loopback",
            )
        })?;
        self.inner.execute_request(&request).await
    }
}

#[tokio::test]
async fn azure_identity_workload_identity_credential_authenticates_through_federation() -> Result<()>
{
    let f = fixture().await?;
    let firebreak = f.api.seed_identity(
        "firebreak",
        "firebreak",
        "33333333-3333-4333-8333-333333333333",
        FIREBREAK_CLIENT,
    );
    f.api.seed_federated(
        &firebreak,
        "firebreak-aks",
        ISSUER,
        "system:serviceaccount:firebreak:firebreak",
    );
    let port: u16 = f.api.url().rsplit(':').next().unwrap_or_default().parse()?;
    let token_file =
        |who: &str| std::env::temp_dir().join(format!("firebreak-azure-{port}-{who}.jwt"));
    let credential = |who: &str, subject: &str| -> Result<Arc<WorkloadIdentityCredential>> {
        std::fs::write(
            token_file(who),
            azure_api::service_account_token(ISSUER, subject),
        )?;
        let mut options = WorkloadIdentityCredentialOptions {
            client_id: Some(FIREBREAK_CLIENT.into()),
            tenant_id: Some(azure_api::TENANT.into()),
            token_file_path: Some(token_file(who)),
            ..WorkloadIdentityCredentialOptions::default()
        };
        options.credential_options.client_options.transport =
            Some(Transport::new(Arc::new(ToLoopback {
                inner: new_http_client(None),
                port,
            })));
        Ok(WorkloadIdentityCredential::new(Some(options))?)
    };

    let plane = AzureRbac::with_credential(
        config(&f.api, Duration::from_secs(5)),
        credential("firebreak", "system:serviceaccount:firebreak:firebreak")?,
    )?;
    let input = f.input();
    let candidates = plane.observe(&input).await?.candidates(&input)?;
    assert_eq!(candidates.len(), 3);
    assert_eq!(f.api.writes(), 0);

    // A ServiceAccount the identity does not trust gets Entra's refusal, named.
    let stranger = AzureRbac::with_credential(
        config(&f.api, Duration::from_secs(5)),
        credential("stranger", "system:serviceaccount:default:default")?,
    )?;
    let refused = stranger.observe(&input).await.err().map(|e| e.to_string());
    for who in ["firebreak", "stranger"] {
        std::fs::remove_file(token_file(who))?;
    }
    let err = refused.expect("an untrusted ServiceAccount must not authenticate");
    assert!(
        err.contains("AADSTS70021") && err.contains("azure.credential"),
        "{err}"
    );
    Ok(())
}

#[tokio::test]
async fn a_dry_run_plans_the_whole_ladder_with_zero_writes() -> Result<()> {
    let f = fixture().await?;
    let candidates = f.plan().await?;
    assert_eq!(
        kinds(&candidates),
        vec![
            DELETE_ROLE_ASSIGNMENT.name,
            NARROW_ROLE_ASSIGNMENT.name,
            DELETE_FEDERATED_CREDENTIAL.name
        ]
    );
    // Contributor has no dataActions: only the account's Blob Data Reader grants the read.
    let delete = &candidates[0];
    assert_eq!(delete.target, f.reader_id());
    assert!(delete.blocks && delete.rejected.is_none());
    assert_eq!(delete.blast_radius.broken, 2, "{:?}", delete.blast_radius);
    let narrow = &candidates[1];
    assert!(narrow.blocks);
    assert_eq!(narrow.blast_radius.broken, 0, "{:?}", narrow.blast_radius);
    assert_eq!(candidates[2].blast_radius.broken, 3);
    assert_eq!(f.api.writes(), 0, "observe and candidates write nothing");
    assert!(f.api.requests().iter().all(|r| r.method == "GET"));
    Ok(())
}

#[tokio::test]
async fn delete_role_assignment_applies_verifies_and_reverts_idempotently() -> Result<()> {
    let f = fixture().await?;
    let spec = f.rung(&DELETE_ROLE_ASSIGNMENT).await.spec;
    let before = f.api.assignment(&f.reader_id()).expect("seeded");

    let applied = f.apply(&spec).await?;
    assert!(applied.changed, "{}", applied.detail);
    assert!(f.api.assignment(&f.reader_id()).is_none());
    verified(f.plane.check(&spec, Check::Applied).await);

    let writes = f.api.writes();
    let again = f.apply(&spec).await?;
    assert!(
        !again.changed,
        "DELETE of a gone assignment is 204: {}",
        again.detail
    );
    assert_eq!(f.api.writes(), writes + 1);

    let reverted = f.revert(&spec).await?;
    assert!(reverted.changed, "{}", reverted.detail);
    let after = f
        .api
        .assignment(&f.reader_id())
        .expect("re-created under the same name");
    for key in [
        "scope",
        "roleDefinitionId",
        "principalId",
        "principalType",
        "condition",
        "description",
    ] {
        assert_eq!(after["properties"][key], before["properties"][key], "{key}");
    }
    assert_eq!(after["name"], before["name"]);
    let put = f
        .api
        .requests()
        .into_iter()
        .rfind(|r| r.method == "PUT")
        .expect("a PUT");
    assert_eq!(put.query, "api-version=2022-04-01");
    verified(f.plane.check(&spec, Check::Reverted).await);
    assert!(
        !f.plane.check(&spec, Check::Applied).await?.ok,
        "reverted is not applied"
    );
    let again = f.revert(&spec).await?;
    assert!(!again.changed, "identical PUT is 200: {}", again.detail);
    Ok(())
}

#[tokio::test]
async fn narrow_role_assignment_keeps_the_envelope_and_reverts_to_the_original() -> Result<()> {
    let f = fixture().await?;
    let spec = f.rung(&NARROW_ROLE_ASSIGNMENT).await.spec;
    let narrow = narrow_spec(&spec);
    let narrow_ids: Vec<String> = ["invoices", "receipts"]
        .iter()
        .map(|c| {
            let scope = firebreak_azure::ids::ResourceId::parse(&container(c)).expect("scope");
            assignment_id(
                &container(c),
                &narrow_name(INCIDENT, &narrow.original, &scope),
            )
        })
        .collect();
    assert_eq!(
        narrow
            .narrow
            .iter()
            .map(|a| a.id.clone())
            .collect::<Vec<_>>(),
        narrow_ids
    );

    let applied = f.apply(&spec).await?;
    assert!(applied.changed, "{}", applied.detail);
    assert!(f.api.assignment(&f.reader_id()).is_none());
    for id in &narrow_ids {
        let a = f.api.assignment(id).expect("narrowed assignment exists");
        assert!(a["properties"]["roleDefinitionId"]
            .as_str()
            .is_some_and(|r| r.ends_with(READER_GUID)));
        assert_eq!(a["properties"]["principalType"], "ServicePrincipal");
    }
    verified(f.plane.check(&spec, Check::Applied).await);
    // The breach is no longer granted, the envelope still is: re-plan from ARM.
    let replanned = f.plan().await.expect_err("nothing grants the breach");
    assert!(
        replanned.to_string().contains("no role assignment"),
        "{replanned}"
    );

    let again = f.apply(&spec).await?;
    assert!(!again.changed, "{}", again.detail);

    let reverted = f.revert(&spec).await?;
    assert!(reverted.changed, "{}", reverted.detail);
    assert!(f.api.assignment(&f.reader_id()).is_some());
    assert!(narrow_ids.iter().all(|id| f.api.assignment(id).is_none()));
    verified(f.plane.check(&spec, Check::Reverted).await);
    let again = f.revert(&spec).await?;
    assert!(!again.changed, "{}", again.detail);
    Ok(())
}

#[tokio::test]
async fn delete_federated_credential_cuts_the_link_and_puts_it_back() -> Result<()> {
    let f = fixture().await?;
    let rung = f.rung(&DELETE_FEDERATED_CREDENTIAL).await;
    assert!(AzureRbac::kind_of(&rung.spec).approval_only);
    assert!(rung.notes.iter().any(|n| n.contains("24 hours")));
    let spec = rung.spec;
    let before = f.api.federated(&f.federated_id()).expect("seeded");

    assert!(f.apply(&spec).await?.changed);
    assert!(f.api.federated(&f.federated_id()).is_none());
    verified(f.plane.check(&spec, Check::Applied).await);
    assert!(!f.apply(&spec).await?.changed, "already gone (204)");

    assert!(f.revert(&spec).await?.changed);
    assert_eq!(f.api.federated(&f.federated_id()).expect("back"), before);
    verified(f.plane.check(&spec, Check::Reverted).await);
    assert!(!f.revert(&spec).await?.changed);
    Ok(())
}

#[tokio::test]
async fn a_restore_finding_the_grant_under_another_name_is_done_not_an_error() -> Result<()> {
    let f = fixture().await?;
    let spec = f.rung(&DELETE_ROLE_ASSIGNMENT).await.spec;
    assert!(f.apply(&spec).await?.changed);
    // An operator re-granted the role by hand meanwhile: ARM refuses a second identical grant.
    let reader = format!(
        "/subscriptions/{}/providers/Microsoft.Authorization/roleDefinitions/{READER_GUID}",
        subscription()
    );
    f.api.seed_assignment(
        &account(),
        "9d3f1c2b-4a5e-4f60-8b7c-1d2e3f4a5b6c",
        &reader,
        PRINCIPAL,
    );
    let reverted = f.revert(&spec).await?;
    assert!(!reverted.changed, "{}", reverted.detail);
    let v = verified(f.plane.check(&spec, Check::Reverted).await);
    assert!(
        v.detail.contains("9d3f1c2b-4a5e-4f60-8b7c-1d2e3f4a5b6c"),
        "{}",
        v.detail
    );
    Ok(())
}

#[tokio::test]
async fn an_assignment_changed_since_the_plan_is_a_conflict_and_is_kept() -> Result<()> {
    let f = fixture().await?;
    let spec = f.rung(&DELETE_ROLE_ASSIGNMENT).await.spec;
    let id = f.reader_id().to_ascii_lowercase();
    f.api.edit(|o| {
        if let Some(a) = o.assignments.get_mut(&id) {
            a["properties"]["roleDefinitionId"] = json!(format!(
                "/subscriptions/{}/providers/Microsoft.Authorization/roleDefinitions/{CONTRIBUTOR_GUID}",
                subscription()
            ));
        }
    });
    let writes = f.api.writes();
    let err = f
        .apply(&spec)
        .await
        .expect_err("another grant under the name");
    assert!(matches!(err, PlaneError::Conflict { .. }), "{err}");
    assert_eq!(err.kind(), FaultKind::Conflict, "the engine re-plans");
    assert!(err.to_string().contains("changed since the plan"), "{err}");
    assert!(f.api.assignment(&f.reader_id()).is_some());
    assert_eq!(f.api.writes(), writes, "no DELETE was sent");
    Ok(())
}

#[tokio::test]
async fn a_concurrent_equivalent_grant_during_narrowing_is_accepted() -> Result<()> {
    let f = fixture().await?;
    let spec = f.rung(&NARROW_ROLE_ASSIGNMENT).await.spec;
    let narrow = narrow_spec(&spec).narrow.clone();
    // Just before the first write, someone grants the same role on `invoices` under their name.
    let first = narrow[0].clone();
    f.api.edit_before_writes(1, move |o| {
        let Ok(mut a) = serde_json::to_value(&first) else {
            return;
        };
        let id = assignment_id(
            &first.properties.scope,
            "5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b",
        );
        a["id"] = json!(id);
        a["name"] = json!("5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b");
        a["properties"]["description"] = Value::Null;
        o.assignments.insert(id.to_ascii_lowercase(), a);
    });
    assert!(f.apply(&spec).await?.changed);
    assert!(
        f.api.assignment(&narrow[0].id).is_none(),
        "409 RoleAssignmentExists: not created"
    );
    assert!(f.api.assignment(&narrow[1].id).is_some());
    verified(f.plane.check(&spec, Check::Applied).await);
    Ok(())
}

#[tokio::test]
async fn bad_input_gets_precise_errors() -> Result<()> {
    let mut f = fixture().await?;
    f.alert = alert(BLOB_READ, "subscriptions/nope");
    let err = f.plan().await.expect_err("a bad resource id");
    assert!(matches!(err, PlaneError::Invalid { .. }), "{err}");
    let err = err.to_string();
    assert!(
        err.contains("parameter.resource") && err.contains("does not start with /"),
        "{err}"
    );

    f.alert = alert(BLOB_READ, &breach());
    f.envelope = envelope("arn:aws:iam::123456789012:role/payment-agent");
    assert!(!f.plane.handles(&f.input()));
    let err = f.plan().await.expect_err("no managed identity").to_string();
    assert!(
        err.contains("names no user-assigned managed identity"),
        "{err}"
    );

    let unknown = f.identity.replace("payment-agent", "ghost");
    f.envelope = envelope(&unknown);
    let err = f.plan().await.expect_err("an unknown identity").to_string();
    assert!(
        err.contains("does not exist (ARM answered 404)") && err.contains("ghost"),
        "{err}"
    );

    f.envelope = envelope(&f.identity);
    assert!(f.plane.handles(&f.input()));
    let elsewhere = format!(
        "/subscriptions/{}/resourceGroups/other/providers/Microsoft.Storage/storageAccounts/x/blobServices/default/containers/c",
        subscription()
    );
    f.alert = alert(BLOB_READ, &elsewhere);
    let err = f.plan().await.expect_err("nothing grants it");
    assert!(matches!(err, PlaneError::Unsupported { .. }), "{err}");
    assert!(err.to_string().contains("no role assignment of"), "{err}");

    // An AWS action is routed to AWS by the engine, never here; asked anyway, the plane says why.
    f.alert = alert("s3:GetObject", "arn:aws:s3:::x/y");
    assert_eq!(
        Route::of(&f.alert.parameter),
        Some(Route::Identity(Cloud::Aws))
    );
    assert_ne!(Route::of(&f.alert.parameter), Some(AzureRbac::ROUTE));
    let err = f.plan().await.expect_err("not an Azure operation");
    assert!(err.to_string().contains("parameter.action"), "{err}");

    // The journaled form, through the engine's adapter: a spec missing its fields is refused
    // before any call.
    f.alert = alert(BLOB_READ, &breach());
    let writes = f.api.writes();
    let mut planes = Planes::default();
    planes.register(plane(&f.api, Duration::from_secs(5)))?;
    let registered = planes
        .get(&PlaneKey::from_static(AzureRbac::KEY))
        .expect("registered under its key");
    let mut garbage = registered
        .candidates(&f.input())
        .await?
        .into_iter()
        .find(|c| c.kind == DELETE_ROLE_ASSIGNMENT)
        .expect("a rung-0 candidate");
    assert_eq!(garbage.spec["rung"], json!("delete_role_assignment"));
    garbage.spec = json!({"rung": "delete_role_assignment"});
    let err = registered
        .change(&garbage, Change::Apply)
        .await
        .expect_err("not an Azure spec");
    assert!(matches!(err, PlaneError::Invalid { .. }), "{err}");
    let err = err.to_string();
    assert!(
        err.contains("is not one azure wrote") && err.contains("missing field"),
        "{err}"
    );
    assert_eq!(f.api.writes(), writes, "a bad spec writes nothing");

    // A PUT ARM refuses surfaces as a precise refusal.
    let mut spec = f.rung(&DELETE_ROLE_ASSIGNMENT).await.spec;
    assert!(f.apply(&spec).await?.changed);
    f.api.seed_principal(PRINCIPAL, "User");
    let err = f.revert(&spec).await.expect_err("principal type mismatch");
    assert!(matches!(err, PlaneError::Refused { .. }), "{err}");
    assert!(
        err.to_string().contains("HTTP 400 UnmatchedPrincipalType"),
        "{err}"
    );
    // A snapshot without principalType is refused by the fake as ARM's strict reading.
    if let AzureSpec::DeleteRoleAssignment(s) = &mut spec {
        s.assignment.properties.grant.principal_type = String::new();
    }
    let err = f.revert(&spec).await.expect_err("no principal type");
    assert!(err.to_string().contains("InvalidPrincipalType"), "{err}");
    assert!(f.api.assignment(&f.reader_id()).is_none());
    Ok(())
}

#[tokio::test]
async fn the_fake_refuses_what_arm_refuses() -> Result<()> {
    let f = fixture().await?;
    let http = reqwest::Client::new();
    let url = format!("{}{}", f.api.url(), f.reader_id());
    let anonymous = http
        .get(format!("{url}?api-version=2022-04-01"))
        .send()
        .await?;
    assert_eq!(anonymous.status(), 401);
    let body: Value = anonymous.json().await?;
    assert_eq!(body["error"]["code"], "AuthenticationFailed");
    let token: Value = http
        .post(f.api.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", azure_api::CLIENT_ID),
            ("client_secret", azure_api::CLIENT_SECRET),
            ("scope", &format!("{}/.default", f.api.url())),
        ])
        .send()
        .await?
        .json()
        .await?;
    let bearer = token["access_token"].as_str().expect("token").to_string();
    for (query, code) in [
        ("", "MissingApiVersionParameter"),
        ("?api-version=2023-01-31", "InvalidApiVersionParameter"),
    ] {
        let r = http
            .get(format!("{url}{query}"))
            .bearer_auth(&bearer)
            .send()
            .await?;
        assert_eq!(r.status(), 400);
        let body: Value = r.json().await?;
        assert_eq!(body["error"]["code"], code, "{body}");
    }
    let list = format!(
        "{}{}/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01&$filter=roleDefinitionId%20eq%20'x'",
        f.api.url(),
        account()
    );
    let r = http.get(list).bearer_auth(&bearer).send().await?;
    assert_eq!(r.status(), 400);
    let gone = http
        .delete(format!(
            "{}{}?api-version=2022-04-01",
            f.api.url(),
            assignment_id(&account(), "00000000-0000-4000-8000-000000000000")
        ))
        .bearer_auth(&bearer)
        .send()
        .await?;
    assert_eq!(gone.status(), 204);
    Ok(())
}

#[tokio::test]
async fn server_errors_and_throttling_get_one_attempt_and_a_typed_transient_error() -> Result<()> {
    let f = fixture().await?;
    for status in [503, 500, 429] {
        f.api.fail_next(1, status);
        let before = f.api.requests().len();
        let err = f.plan().await.expect_err("ARM failed");
        assert!(
            matches!(err, PlaneError::Unavailable { .. }),
            "{status}: {err}"
        );
        assert_eq!(err.kind(), FaultKind::Transient, "the engine retries it");
        assert!(err.to_string().contains(&format!("HTTP {status}")), "{err}");
        assert_eq!(
            f.api.requests().len() - before,
            1,
            "{status}: one attempt, not retried by the plane"
        );
        assert_eq!(
            f.plan().await?.len(),
            3,
            "the engine's next attempt goes through"
        );
    }
    assert_eq!(f.api.writes(), 0);
    Ok(())
}

#[tokio::test]
async fn a_failed_change_is_one_attempt_and_writes_nothing() -> Result<()> {
    let f = fixture().await?;
    let spec = f.rung(&DELETE_ROLE_ASSIGNMENT).await.spec;
    f.api.fail_next(1, 503);
    let before = f.api.requests().len();
    let err = f.apply(&spec).await.expect_err("ARM failed");
    assert!(matches!(err, PlaneError::Unavailable { .. }), "{err}");
    assert_eq!(f.api.requests().len() - before, 1, "not retried");
    assert_eq!(f.api.writes(), 0, "the failed attempt wrote nothing");
    assert!(f.api.assignment(&f.reader_id()).is_some());
    assert!(
        f.apply(&spec).await?.changed,
        "the engine's retry carries it out"
    );
    assert!(f.api.assignment(&f.reader_id()).is_none());
    Ok(())
}

#[tokio::test]
async fn a_timed_out_request_is_unreachable_after_one_attempt() -> Result<()> {
    let f = fixture_with(Duration::from_millis(300)).await?;
    f.api.delay_next(1, Duration::from_secs(2));
    let before = f.api.requests().len();
    let started = Instant::now();
    let err = f.plan().await.expect_err("timed out");
    let waited = started.elapsed();
    assert!(matches!(err, PlaneError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains("azure.requestTimeout"), "{err}");
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(2),
        "cut at azure.requestTimeout, not waited out: {waited:?}"
    );
    assert_eq!(f.api.requests().len() - before, 1, "not re-sent");
    assert_eq!(f.plan().await?.len(), 3, "the next attempt goes through");
    Ok(())
}

#[tokio::test]
async fn stale_reads_after_a_delete_make_verification_poll() -> Result<()> {
    let f = fixture().await?;
    let spec = f.rung(&DELETE_ROLE_ASSIGNMENT).await.spec;
    assert!(f.apply(&spec).await?.changed);
    f.api.stale_reads(3);
    let deadline = Instant::now() + f.plane.verify_deadline();
    let mut polls = 0;
    let verification = loop {
        polls += 1;
        let v = f.plane.check(&spec, Check::Applied).await?;
        if v.ok || Instant::now() > deadline {
            break v;
        }
        assert!(v.detail.contains("still returns"), "{}", v.detail);
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(verification.ok, "{}", verification.detail);
    assert_eq!(polls, 4, "three stale reads, then the truth");
    Ok(())
}
