//! Kubescape profiles fetched through the real kube client from the strict fake Kubernetes API,
//! which serves the real fixtures with Kubescape's metadata-only LIST.

use firebreak_containment::envelope::ConfidenceThreshold;
use firebreak_e2e::kube_api::{KubeApi, ResourceType};
use firebreak_envelopes::fetch::{fetch_profiles, FetchError, ProfileSelector, GROUP, KINDS};
use firebreak_envelopes::kubescape::{envelope_dimensions, parse, ProfileDimensions};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams};
use serde_json::Value;

const AP: &str =
    include_str!("../../../shared/fixtures/kubescape/applicationprofile-harbor-core.yaml");
const NN: &str =
    include_str!("../../../shared/fixtures/kubescape/networkneighborhood-operator.json");
const CP: &str =
    include_str!("../../../shared/fixtures/kubescape/containerprofile-user-defined.yaml");
/// The fixture's ContainerProfile has no namespace (the tooling injects it): this one.
const CP_NAMESPACE: &str = "curl";

fn kubescape_type(kind: &'static str, plural: &'static str) -> ResourceType {
    ResourceType {
        group: GROUP,
        version: "v1beta1",
        resource: plural,
        kind,
        namespaced: true,
        validate: None,
        list_metadata_only: true,
    }
}

fn fixture(text: &str) -> Value {
    serde_yaml::from_str(text).expect("fixture is YAML/JSON")
}

/// A fake with the three Kubescape kinds and the three real fixtures.
async fn fake() -> KubeApi {
    let kube = KubeApi::start().await.expect("fake starts");
    for (kind, plural) in KINDS {
        kube.register(kubescape_type(kind, plural));
    }
    for text in [AP, NN] {
        kube.seed(fixture(text)).expect("seeds");
    }
    let mut cp = fixture(CP);
    cp["metadata"]["namespace"] = CP_NAMESPACE.into();
    kube.seed(cp).expect("seeds");
    kube
}

fn client(url: &str) -> kube::Client {
    kube::Client::try_from(kube::Config::new(url.parse().expect("url"))).expect("client")
}

fn dimensions(profiles: &[firebreak_envelopes::kubescape::Profile]) -> ProfileDimensions {
    envelope_dimensions(profiles, None, &ConfidenceThreshold::default()).expect("dimensions")
}

fn assert_same(fetched: &ProfileDimensions, direct: &ProfileDimensions) {
    assert_eq!(fetched.process, direct.process);
    assert_eq!(fetched.network, direct.network);
    assert_eq!(fetched.execs, direct.execs);
    assert_eq!(fetched.egress, direct.egress);
    assert_eq!(fetched.report.used, direct.report.used);
}

fn api(client: &kube::Client, namespace: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
    let resource = ApiResource {
        group: GROUP.into(),
        version: "v1beta1".into(),
        api_version: format!("{GROUP}/v1beta1"),
        kind: kind.into(),
        plural: plural.into(),
    };
    Api::namespaced_with(client.clone(), namespace, &resource)
}

#[tokio::test]
async fn fetched_profiles_give_the_dimensions_of_the_fixtures() {
    let kube = fake().await;
    let client = client(&kube.url());
    let cases = [
        (
            "harbor",
            ProfileSelector::Workload("harbor-core".into()),
            AP,
        ),
        (
            "kubescape",
            ProfileSelector::Workload("operator".into()),
            NN,
        ),
        (
            CP_NAMESPACE,
            ProfileSelector::Names(vec!["curl-28-overlay".into()]),
            CP,
        ),
    ];
    for (namespace, selector, text) in cases {
        let fetched = fetch_profiles(client.clone(), namespace, &selector)
            .await
            .unwrap_or_else(|e| panic!("{namespace} {selector}: {e}"));
        assert_eq!(fetched.len(), 1, "{selector}: exactly its one profile");
        let direct = parse("fixture", text).expect("fixture parses");
        assert_same(&dimensions(&fetched), &dimensions(&direct));
        assert_eq!(fetched[0].workload, direct[0].workload);
        assert_eq!(fetched[0].state, direct[0].state);
    }
    // Each profile came from a GET by name.
    let gets: Vec<String> = kube
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.split('/').count() == 8)
        .map(|r| r.path)
        .collect();
    assert_eq!(
        gets,
        [
            format!("/apis/{GROUP}/v1beta1/namespaces/harbor/applicationprofiles/replicaset-harbor-core-5cc8db468f"),
            format!("/apis/{GROUP}/v1beta1/namespaces/kubescape/networkneighborhoods/replicaset-operator-55df98fc6d"),
            format!("/apis/{GROUP}/v1beta1/namespaces/{CP_NAMESPACE}/containerprofiles/curl-28-overlay"),
        ]
    );
}

#[tokio::test]
async fn the_list_carries_metadata_only_so_the_get_is_needed() {
    let kube = fake().await;
    let client = client(&kube.url());
    let listed = api(
        &client,
        "harbor",
        "ApplicationProfile",
        "applicationprofiles",
    )
    .list(&ListParams::default())
    .await
    .expect("lists");
    assert_eq!(listed.items.len(), 1);
    let item = &listed.items[0];
    assert_eq!(
        item.metadata.labels.as_ref().expect("labels")["kubescape.io/workload-name"],
        "harbor-core"
    );
    assert!(
        item.data.get("spec").is_none(),
        "LIST item: {:?}",
        item.data
    );
    // The parser refuses such an item, naming the fix.
    let text = serde_json::to_string(&serde_json::json!({
        "kind": "ApplicationProfile", "metadata": item.metadata,
    }))
    .expect("json");
    let err = parse("list item", &text).expect_err("no spec");
    assert!(
        err.to_string().contains("fetch each profile by name"),
        "{err}"
    );
}

#[tokio::test]
async fn unknown_namespace_workload_or_name_is_a_precise_error() {
    let kube = fake().await;
    let client = client(&kube.url());

    let err = fetch_profiles(
        client.clone(),
        "nowhere",
        &ProfileSelector::Workload("harbor-core".into()),
    )
    .await
    .expect_err("empty namespace");
    assert!(matches!(err, FetchError::NoneFound { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "no Kubescape profile for workload \"harbor-core\" (label kubescape.io/workload-name) in namespace \"nowhere\"; it has: no profiles"
    );

    let err = fetch_profiles(
        client.clone(),
        "harbor",
        &ProfileSelector::Workload("harbor-portal".into()),
    )
    .await
    .expect_err("other workload");
    assert_eq!(
        err.to_string(),
        "no Kubescape profile for workload \"harbor-portal\" (label kubescape.io/workload-name) in namespace \"harbor\"; it has: ApplicationProfile/replicaset-harbor-core-5cc8db468f (kubescape.io/workload-name=harbor-core)"
    );

    let err = fetch_profiles(
        client,
        CP_NAMESPACE,
        &ProfileSelector::Names(vec!["curl-28-overlay".into(), "missing".into()]),
    )
    .await
    .expect_err("one name missing");
    assert_eq!(
        err.to_string(),
        "Kubescape profile(s) missing not in namespace \"curl\"; it has: ContainerProfile/curl-28-overlay"
    );
}

#[tokio::test]
async fn a_profile_gone_between_list_and_get_is_reported_by_kind_and_name() {
    let kube = fake().await;
    let client = client(&kube.url());
    api(
        &client,
        "harbor",
        "ApplicationProfile",
        "applicationprofiles",
    )
    .delete(
        "replicaset-harbor-core-5cc8db468f",
        &DeleteParams::default(),
    )
    .await
    .expect("deletes");
    // The first read (the LIST of applicationprofiles) still sees it, like a lagging cache; the
    // GET that follows does not.
    kube.stale_reads(1);
    let err = fetch_profiles(
        client,
        "harbor",
        &ProfileSelector::Workload("harbor-core".into()),
    )
    .await
    .expect_err("vanished");
    assert!(
        matches!(&err, FetchError::Vanished { kind, namespace, name }
            if kind == "ApplicationProfile" && namespace == "harbor"
                && name == "replicaset-harbor-core-5cc8db468f"),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_unreachable_api_and_a_refusal_are_told_apart() {
    let kube = fake().await;
    let client_ok = client(&kube.url());
    // 500: the kube client retries 503s itself.
    kube.fail_next(1, 500);
    let err = fetch_profiles(
        client_ok,
        "harbor",
        &ProfileSelector::Workload("harbor-core".into()),
    )
    .await
    .expect_err("500");
    assert!(
        matches!(&err, FetchError::Refused { code: 500, action, .. }
            if action.starts_with("listing applicationprofiles")),
        "{err:?}"
    );

    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let err = fetch_profiles(
        client(&format!("http://{closed}")),
        "harbor",
        &ProfileSelector::Workload("harbor-core".into()),
    )
    .await
    .expect_err("nothing listens");
    assert!(matches!(err, FetchError::Unreachable { .. }), "{err:?}");
}
