//! The Kubernetes RBAC plane end to end: the real `kube` client against the strict fake API
//! server (`firebreak_e2e::kube_api`), one server per test. The cluster is described in
//! `surfaces/identity/k8s/tests/support/cluster.rs`.

#[path = "../../surfaces/identity/k8s/tests/support/cluster.rs"]
mod cluster;

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Result;
use cluster::{
    alert, config, fixture, fixture_with, kind, sa_subject, seed_secret_readers, service_account,
    AGENT_USER, BREACH,
};
use firebreak_containment::plane::{Change, Check, Plane, PlaneError};
use firebreak_e2e::kube_api::{KubeApi, ObjectKey};
use firebreak_k8s::identity::CloudIdentity;
use firebreak_k8s::{
    GkeWorkloadPool, IdentityError, K8sRbac, K8sSpec, DELETE_ROLEBINDING,
    REMOVE_ROLEBINDING_SUBJECT,
};
use kube::Api;
use serde_json::json;

#[tokio::test]
async fn plan_apply_verify_revert_round_trip() -> Result<()> {
    let f = fixture().await?;
    let candidates = f.plan().await?;
    let kinds: Vec<&str> = candidates.iter().map(kind).collect();
    assert_eq!(
        kinds,
        [REMOVE_ROLEBINDING_SUBJECT.name, DELETE_ROLEBINDING.name]
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

    let spec = &rung0.spec;
    assert!(f.may_read_partner_keys(AGENT_USER, &[]).await?);
    // Verification reads the cluster, not the plan: before applying it fails.
    let early = f.check(spec, Check::Applied).await?;
    assert!(!early.ok, "{}", early.detail);
    assert!(f.change(spec, Change::Apply).await?.changed);
    assert_eq!(f.subject_names(), ["alice", "auditor"]);
    assert_eq!(f.kube.writes(), 1);
    let v = f.check(spec, Check::Applied).await?;
    assert!(v.ok, "{}", v.detail);
    assert!(v.detail.contains("2 other subject(s)"), "{}", v.detail);
    assert!(!f.may_read_partner_keys(AGENT_USER, &[]).await?);
    assert!(
        f.may_read_partner_keys("system:serviceaccount:payments:auditor", &[])
            .await?
    );
    assert!(f.may_read_partner_keys("alice", &[]).await?);
    assert!(
        !f.check(spec, Check::Reverted).await?.ok,
        "not reverted yet"
    );

    assert!(f.change(spec, Change::Revert).await?.changed);
    // Back at its original index, so the binding reads as before.
    assert_eq!(f.subject_names(), ["alice", "payment-agent", "auditor"]);
    let v = f.check(spec, Check::Reverted).await?;
    assert!(v.ok, "{}", v.detail);
    assert!(f.may_read_partner_keys(AGENT_USER, &[]).await?);
    Ok(())
}

#[tokio::test]
async fn apply_and_revert_are_idempotent() -> Result<()> {
    let f = fixture().await?;
    let rung0 = f.rung0().await;
    assert!(f.change(&rung0, Change::Apply).await?.changed);
    let again = f.change(&rung0, Change::Apply).await?;
    assert!(!again.changed, "second apply must find the target state");
    assert!(
        again.detail.contains("is not a subject"),
        "{}",
        again.detail
    );
    assert_eq!(f.kube.writes(), 1);
    assert!(f.change(&rung0, Change::Revert).await?.changed);
    assert!(!f.change(&rung0, Change::Revert).await?.changed);
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
async fn a_concurrent_edit_is_a_conflict_and_a_fresh_plan_cuts_at_the_new_index() -> Result<()> {
    let f = fixture().await?;
    let rung0 = f.rung0().await;
    // Someone prepends bob between Firebreak's read and its patch: the agent moves to index 2.
    f.kube.edit_before_patches(1, |b| {
        if let Some(subjects) = b["subjects"].as_array_mut() {
            subjects.insert(
                0,
                json!({"kind": "User", "name": "bob", "apiGroup": "rbac.authorization.k8s.io"}),
            );
        }
    });
    let read_rv = f.secret_readers()["metadata"]["resourceVersion"].clone();
    let err = f
        .change(&rung0, Change::Apply)
        .await
        .expect_err("the guard fails");
    assert!(matches!(err, PlaneError::Conflict { .. }), "{err}");
    let patches = f.patches();
    assert_eq!(patches.len(), 1, "one attempt, never re-sent by the plane");
    assert_eq!(
        patches[0][0]["value"], read_rv,
        "guarded by the version read"
    );
    assert_eq!(f.kube.writes(), 0, "nothing written");
    assert_eq!(
        f.subject_names(),
        ["bob", "alice", "payment-agent", "auditor"],
        "bob's edit survives and the agent is still bound"
    );

    // What the engine does next: a new plan from a fresh observation.
    let fresh = f.rung0().await;
    let K8sSpec::RemoveSubject(planned) = &fresh else {
        panic!("{fresh:?}")
    };
    assert_eq!(planned.index, 2, "re-planned at the new index");
    assert!(f.change(&fresh, Change::Apply).await?.changed);
    assert_eq!(f.subject_names(), ["bob", "alice", "auditor"]);
    let patches = f.patches();
    assert_eq!(patches.len(), 2);
    assert_ne!(
        patches[1][0]["value"], read_rv,
        "guarded by the re-read version"
    );
    assert_eq!(
        patches[1][2],
        json!({"op": "remove", "path": "/subjects/2"})
    );
    assert_eq!(f.kube.writes(), 1);
    Ok(())
}

#[tokio::test]
async fn every_call_re_reads_before_it_writes_never_a_blind_resend() -> Result<()> {
    let f = fixture().await?;
    let rung0 = f.rung0().await;
    f.kube.edit_before_patches(3, |b| {
        b["metadata"]["labels"]["touched"] = json!("yes");
    });
    for call in 0..3 {
        let err = f
            .change(&rung0, Change::Apply)
            .await
            .expect_err("the binding changed under the patch");
        assert!(
            matches!(err, PlaneError::Conflict { .. }),
            "call {call}: {err}"
        );
    }
    let patches = f.patches();
    assert_eq!(patches.len(), 3, "one patch per call");
    let versions: BTreeSet<String> = patches.iter().map(|p| p[0]["value"].to_string()).collect();
    assert_eq!(versions.len(), 3, "each call guarded by its own fresh read");
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
            kind(&candidate)
        );
        assert!(
            notes.contains("Flux (Kustomization flux-system/rbac)"),
            "{}: {notes}",
            kind(&candidate)
        );
    }
    Ok(())
}

#[tokio::test]
async fn each_fault_is_one_attempt_with_a_typed_answer() -> Result<()> {
    let f = fixture().await?;
    for (status, what) in [
        (503, "unavailable"),
        (500, "unavailable"),
        (429, "unavailable"),
        (403, "refused"),
    ] {
        let before = f.kube.requests().len();
        f.kube.fail_next(1, status);
        let err = f.plan().await.expect_err("a failing server");
        let typed = match &err {
            PlaneError::Unavailable { .. } => "unavailable",
            PlaneError::Refused { .. } => "refused",
            _ => "other",
        };
        assert_eq!(typed, what, "{status}: {err}");
        assert_eq!(
            f.kube.requests().len() - before,
            1,
            "{status}: one attempt, the engine decides about the next"
        );
        if status == 403 {
            assert!(
                err.to_string().contains("create on subjectaccessreviews"),
                "a refusal says what to grant: {err}"
            );
        }
    }
    // The fault gone, the same call succeeds: what the engine's retry finds.
    assert!(!f.plan().await?.is_empty());

    let rung0 = f.rung0().await;
    f.kube.fail_next(1, 502);
    let err = f
        .change(&rung0, Change::Apply)
        .await
        .expect_err("a failing server");
    assert!(matches!(err, PlaneError::Unavailable { .. }), "{err}");
    assert_eq!(f.kube.writes(), 0);
    assert!(f.subject_names().contains(&"payment-agent".to_string()));

    // Nothing listening at all.
    let gone = KubeApi::start().await?;
    let plane = K8sRbac::new(config(&gone)).await?;
    drop(gone);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let err = plane.observe(&f.input()).await.err().expect("no server");
    assert!(matches!(err, PlaneError::Unreachable { .. }), "{err}");
    Ok(())
}

#[tokio::test]
async fn verification_waits_out_stale_reads() -> Result<()> {
    let f = fixture().await?;
    let rung0 = f.rung0().await;
    assert!(f.change(&rung0, Change::Apply).await?.changed);
    f.kube.stale_reads(2);
    for poll in 0..2 {
        let v = f.check(&rung0, Check::Applied).await?;
        assert!(!v.ok, "poll {poll} reads the old binding: {}", v.detail);
    }
    assert!(f.check(&rung0, Check::Applied).await?.ok);
    Ok(())
}

#[tokio::test]
async fn delete_rolebinding_round_trip() -> Result<()> {
    // Labelled and annotated, so the pre-image must bring the owner's metadata back too.
    let f = fixture_with(
        json!({"kustomize.toolkit.fluxcd.io/name": "rbac"}),
        json!({"team": "payments"}),
    )
    .await?;
    let rung1 = f.rung(DELETE_ROLEBINDING.name).await;
    assert!(DELETE_ROLEBINDING.approval_only);
    assert_eq!(K8sRbac::kind_of(&rung1), &DELETE_ROLEBINDING);
    let original = f.secret_readers();
    assert!(
        !f.check(&rung1, Check::Applied).await?.ok,
        "not applied yet"
    );
    assert!(f.change(&rung1, Change::Apply).await?.changed);
    assert!(f
        .kube
        .object(&ObjectKey::role_binding("payments", "secret-readers"))
        .is_none());
    assert!(!f.change(&rung1, Change::Apply).await?.changed);
    assert_eq!(f.kube.writes(), 1);
    assert!(f.check(&rung1, Check::Applied).await?.ok);
    assert!(
        !f.may_read_partner_keys("alice", &[]).await?,
        "the broad rung cuts every subject"
    );
    assert!(
        !f.check(&rung1, Check::Reverted).await?.ok,
        "not reverted yet"
    );
    assert!(f.change(&rung1, Change::Revert).await?.changed);
    assert!(!f.change(&rung1, Change::Revert).await?.changed);
    assert_eq!(f.kube.writes(), 2);
    assert!(f.check(&rung1, Check::Reverted).await?.ok);
    let restored = f.secret_readers();
    assert_eq!(restored["subjects"], original["subjects"]);
    assert_eq!(restored["roleRef"], original["roleRef"]);
    assert_eq!(
        restored["metadata"]["labels"],
        json!({"kustomize.toolkit.fluxcd.io/name": "rbac"})
    );
    assert_eq!(
        restored["metadata"]["annotations"],
        json!({"team": "payments"})
    );
    Ok(())
}

#[tokio::test]
async fn a_binding_re_created_since_the_plan_is_a_conflict_and_not_deleted() -> Result<()> {
    let f = fixture().await?;
    let rung1 = f.rung(DELETE_ROLEBINDING.name).await;
    let client = kube::Client::try_from(kube::Config::new(f.kube.url().parse()?))?;
    Api::<k8s_openapi::api::rbac::v1::RoleBinding>::namespaced(client, "payments")
        .delete("secret-readers", &Default::default())
        .await?;
    // Another writer brings it back: same name, another object.
    seed_secret_readers(&f.kube)?;
    let writes = f.kube.writes();
    let err = f
        .change(&rung1, Change::Apply)
        .await
        .expect_err("another object");
    assert!(matches!(err, PlaneError::Conflict { .. }), "{err}");
    assert!(err.to_string().contains("another uid"), "{err}");
    assert_eq!(f.kube.writes(), writes, "nothing written");
    assert_eq!(f.subject_names(), ["alice", "payment-agent", "auditor"]);
    Ok(())
}

#[tokio::test]
async fn unknown_agent_missing_service_account_and_vanished_binding_are_precise_errors(
) -> Result<()> {
    let f = fixture().await?;
    let stranger = alert("Deployment/other-agent", BREACH);
    let input = f.input_for(&stranger);
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
    assert!(matches!(err, PlaneError::Invalid { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("ServiceAccount payments/payment-agent does not exist"),
        "{err}"
    );
    assert_eq!(kube.writes(), 0);

    // Not granted at all: nothing to cut.
    let unrelated = alert(
        "Deployment/payment-agent",
        "namespaces/kube-system/secrets/x",
    );
    let input = f.input_for(&unrelated);
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
    let err = f
        .change(&rung0, Change::Apply)
        .await
        .expect_err("binding is gone");
    assert!(matches!(err, PlaneError::Conflict { .. }), "{err}");
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
