//! Kubescape profiles → envelope dimensions, on the real fixtures as they are.

use firebreak_containment::envelope::{Closure, ConfidenceThreshold, Envelope, EnvelopeStatus};
use firebreak_containment::matching;
use firebreak_envelopes::kubescape::{
    envelope_dimensions, parse, ProfileError, ProfileKind, ProfileState,
};

const AP: &str =
    include_str!("../../../shared/fixtures/kubescape/applicationprofile-harbor-core.yaml");
const NN: &str =
    include_str!("../../../shared/fixtures/kubescape/networkneighborhood-operator.json");
const CP: &str =
    include_str!("../../../shared/fixtures/kubescape/containerprofile-user-defined.yaml");
const ENVELOPE: &str = include_str!("../../config/examples/aws/envelope.yaml");

fn threshold() -> ConfidenceThreshold {
    ConfidenceThreshold::default()
}

#[test]
fn application_profile_gives_execs_opens_and_syscalls() {
    let profiles = parse("applicationprofile-harbor-core.yaml", AP).expect("parses");
    assert_eq!(profiles.len(), 1);
    let p = &profiles[0];
    assert_eq!(p.kind, ProfileKind::ApplicationProfile);
    assert_eq!(p.state, ProfileState::Completed);
    assert_eq!(p.workload.as_deref(), Some("harbor/Deployment/harbor-core"));

    let dims = envelope_dimensions(&profiles, Some("core"), &threshold()).expect("core");
    let process = &dims.process.observed;
    let execs: Vec<&str> = process
        .iter()
        .filter_map(|o| o.value.exec.as_deref())
        .collect();
    assert_eq!(execs.len(), 7, "8 execs, /usr/bin/cp twice: {execs:?}");
    assert!(execs.contains(&"/usr/bin/find"));
    let cp_args: Vec<&Vec<String>> = dims
        .execs
        .iter()
        .filter(|e| e.path == "/usr/bin/cp")
        .map(|e| &e.args)
        .collect();
    assert_eq!(cp_args.len(), 2, "both cp invocations keep their args");
    assert_eq!(dims.execs.len(), 8);
    let opens = process.iter().filter(|o| o.value.path.is_some()).count();
    assert_eq!(opens, 68);
    let syscalls = process.iter().filter(|o| o.value.syscall.is_some()).count();
    assert_eq!(syscalls, 83);
    // The `⋯` segment makes a structural entry that admits any pid.
    let maps = process
        .iter()
        .find(|o| o.value.path.as_deref() == Some("/proc/\u{22ef}/maps"))
        .expect("dynamic path kept as written");
    assert_eq!(maps.closure, Closure::Structural);
    assert!(matching::process(maps, None, Some("/proc/4242/maps"), None));
    assert!(!matching::process(
        maps,
        None,
        Some("/proc/4242/environ"),
        None
    ));
    // A completed profile is permitted in full.
    assert!(process.iter().all(|o| o.is_confident(&threshold())));
    assert!(dims.network.observed.is_empty());
    assert_eq!(dims.report.tail, 0);
}

#[test]
fn network_neighborhood_gives_egress_destinations_with_ports() {
    let profiles = parse("networkneighborhood-operator.json", NN).expect("parses");
    assert_eq!(profiles[0].kind, ProfileKind::NetworkNeighborhood);
    let dims = envelope_dimensions(&profiles, None, &threshold()).expect("one container");
    assert_eq!(dims.report.container, "operator");
    let network: Vec<(String, Option<u16>)> = dims
        .network
        .observed
        .iter()
        .map(|o| (o.value.destination.clone(), o.value.port))
        .collect();
    assert_eq!(
        network,
        vec![
            ("10.245.0.1".to_string(), Some(443)),
            ("13.50.180.111".to_string(), Some(443)),
            ("16.170.46.131".to_string(), Some(443)),
            ("16.171.184.118".to_string(), Some(443)),
            ("35.186.253.219".to_string(), Some(443)),
            ("report.armo.cloud.".to_string(), Some(443)),
            ("version-check.ks-services.co.".to_string(), Some(443)),
        ]
    );
    // Selector-only neighbours (otel-collector, kube-dns, …) cannot be matched by address.
    assert_eq!(
        dims.report.unrepresentable.len(),
        5,
        "{:?}",
        dims.report.unrepresentable
    );
    assert!(dims
        .report
        .unrepresentable
        .iter()
        .any(|u| u.contains("kube-dns")));
    // Protocols are kept beside the envelope.
    let dns = dims
        .egress
        .iter()
        .find(|e| e.ports.iter().any(|p| p.port == Some(53)))
        .expect("dns");
    assert_eq!(dns.ports[0].protocol, "UDP");
    // Trailing dots do not matter when matching.
    let armo = dims
        .network
        .observed
        .iter()
        .find(|o| o.value.destination == "report.armo.cloud.")
        .expect("armo");
    assert!(matching::network(armo, "report.armo.cloud", Some(443)));
    assert!(!matching::network(armo, "report.armo.cloud", Some(80)));
    assert!(dims.report.workload.as_deref() == Some("kubescape/Deployment/operator"));
}

#[test]
fn container_profile_wins_over_the_older_kinds() {
    let mut profiles = parse("ap.yaml", AP).expect("ap");
    profiles.extend(parse("nn.json", NN).expect("nn"));
    profiles.extend(parse("cp.yaml", CP).expect("cp"));
    let cp = profiles.last().expect("cp");
    assert_eq!(cp.kind, ProfileKind::ContainerProfile);
    assert_eq!(cp.state, ProfileState::Authored);
    let dims = envelope_dimensions(&profiles, Some("curl"), &threshold()).expect("cp applies");
    assert_eq!(
        dims.report.superseded.len(),
        2,
        "{:?}",
        dims.report.superseded
    );
    let execs: Vec<&str> = dims
        .process
        .observed
        .iter()
        .filter_map(|o| o.value.exec.as_deref())
        .collect();
    assert_eq!(
        execs,
        vec![
            "/bin/sleep",
            "/usr/bin/curl",
            "/usr/bin/nslookup",
            "/usr/bin/wget"
        ]
    );
    assert_eq!(
        dims.process
            .observed
            .iter()
            .filter(|o| o.value.syscall.is_some())
            .count(),
        28
    );
    let network: Vec<(&str, Option<u16>)> = dims
        .network
        .observed
        .iter()
        .map(|o| (o.value.destination.as_str(), o.value.port))
        .collect();
    assert_eq!(
        network,
        vec![("162.0.217.171", Some(80)), ("fusioncore.ai.", Some(80))]
    );
    assert_eq!(dims.egress[0].ports[0].protocol, "TCP");
    assert!(
        dims.network
            .observed
            .iter()
            .all(|o| o.is_confident(&threshold())),
        "authored: permitted"
    );
}

#[test]
fn imported_dimensions_round_trip_through_the_daemon_loader() {
    let mut envelope = Envelope::from_yaml(ENVELOPE).expect("example");
    let mut profiles = parse("ap.yaml", AP).expect("ap");
    profiles.extend(parse("nn.json", NN).expect("nn"));
    let core =
        envelope_dimensions(&profiles[..1], Some("core"), &envelope.spec.confidence).expect("core");
    let operator = envelope_dimensions(&profiles[1..], Some("operator"), &envelope.spec.confidence)
        .expect("op");
    core.apply(&mut envelope.spec);
    envelope.spec.network = operator.network;
    let yaml = serde_yaml::to_string(&envelope).expect("yaml");
    let loaded = Envelope::from_yaml(&yaml).expect("loads");
    assert_eq!(loaded, envelope);
    assert_eq!(loaded.spec.status, EnvelopeStatus::Converged);
}

#[test]
fn a_profile_still_learning_goes_to_the_tail() {
    let learning = AP.replace(
        "kubescape.io/status: completed",
        "kubescape.io/status: learning",
    );
    let profiles = parse("ap.yaml", &learning).expect("parses");
    assert_eq!(profiles[0].state, ProfileState::Learning);
    let dims = envelope_dimensions(&profiles, Some("core"), &threshold()).expect("core");
    assert!(dims
        .process
        .observed
        .iter()
        .all(|o| !o.is_confident(&threshold())));
    assert_eq!(dims.report.tail, dims.process.observed.len());
}

#[test]
fn errors_name_the_document_and_field() {
    let bad_port = NN.replacen("\"port\": 443", "\"port\": 70000", 1);
    match parse("nn.json", &bad_port) {
        Err(ProfileError::Field {
            field, document, ..
        }) => {
            assert_eq!(field, "spec.containers[0].egress[0].ports[0].port");
            assert_eq!(document, 1);
        }
        other => panic!("expected a field error, got {other:?}"),
    }
    let wrong_type = AP.replace("  - accept4\n", "  - {a: 1}\n");
    match parse("ap.yaml", &wrong_type) {
        Err(ProfileError::Field { field, .. }) => {
            assert_eq!(field, "spec.containers[0].syscalls[0]")
        }
        other => panic!("expected a field error, got {other:?}"),
    }
    let list = r#"{"apiVersion": "v1", "kind": "ApplicationProfileList", "items": [{"kind": "ApplicationProfile", "metadata": {"name": "x"}}]}"#;
    let err = parse("list.json", list).expect_err("metadata only");
    assert!(err.to_string().contains("items[0].spec"), "{err}");
    assert!(
        err.to_string().contains("fetch each profile by name"),
        "{err}"
    );
    let other = parse("pod.yaml", "kind: Pod\nspec: {}\n").expect_err("not a profile");
    assert!(other.to_string().contains("kind"), "{other}");
    let unknown = envelope_dimensions(
        &parse("ap.yaml", AP).expect("ap"),
        Some("nope"),
        &threshold(),
    )
    .expect_err("no such container");
    assert!(unknown.to_string().contains("core"), "{unknown}");
}

#[test]
fn multi_document_yaml_and_lists_are_read() {
    let both = format!("{AP}\n---\n{CP}");
    let profiles = parse("both.yaml", &both).expect("two documents");
    assert_eq!(profiles.len(), 2);
    let list = format!(r#"{{"kind": "NetworkNeighborhoodList", "items": [{NN}]}}"#);
    let profiles = parse("list.json", &list).expect("a list with specs");
    assert_eq!(profiles[0].kind, ProfileKind::NetworkNeighborhood);
}
