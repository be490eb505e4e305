//! Kubescape node-agent runtime alerts, as its HTTP exporter POSTs them to `/v1/runtimealerts`:
//! `{kind: RuntimeAlerts, apiVersion: kubescape.io/v1, spec: {alerts: [...], processTree, cloudMetadata}}`,
//! and as its stdout exporter prints them, one JSON object per line:
//! `{BaseRuntimeMetadata, RuleID, RuntimeK8sDetails, RuntimeProcessDetails, CloudMetadata, msg, …}`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use firebreak_containment::alert::{Dimension, Severity};
use firebreak_containment::{AgentRef, InputError};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{from_value, service_account, Context, Draft, Item, Mapped, Rejected};

/// The pseudo-alert the exporter sends once it hits its per-minute cap.
const ALERT_LIMIT_REACHED: &str = "AlertLimitReached";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Body {
    kind: String,
    api_version: String,
    spec: Spec,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    // Kept as values so that one bad alert is rejected alone, not the whole batch.
    alerts: Vec<Value>,
    #[serde(default)]
    process_tree: Option<Value>,
}

/// The fields of a flattened RuntimeAlert that Firebreak reads; the rest goes to evidence.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RuntimeAlert {
    #[serde(default)]
    alert_name: Option<String>,
    #[serde(rename = "ruleID", default)]
    rule_id: Option<String>,
    #[serde(rename = "uniqueID", default)]
    unique_id: Option<String>,
    #[serde(default)]
    timestamp: Option<DateTime<Utc>>,
    #[serde(default)]
    arguments: Option<BTreeMap<String, Value>>,
    #[serde(default)]
    severity: Option<i64>,
    #[serde(rename = "infectedPID", default)]
    infected_pid: Option<u64>,
    #[serde(default)]
    cluster_name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    workload_namespace: Option<String>,
    #[serde(default)]
    workload_name: Option<String>,
    #[serde(default)]
    workload_kind: Option<String>,
    #[serde(default)]
    service_account_name: Option<String>,
}

/// Maps an exporter body. `Err` = the body itself is unusable; per-alert problems are items.
pub fn map(bytes: &[u8], context: &Context<'_>) -> Result<Vec<Item>, InputError> {
    let body: Body = InputError::from_json(bytes)?;
    if body.kind != "RuntimeAlerts" {
        return Err(InputError::new(
            "kind",
            format!("expected RuntimeAlerts, got {:?}", body.kind),
        ));
    }
    if body.api_version != "kubescape.io/v1" {
        return Err(InputError::new(
            "apiVersion",
            format!("expected kubescape.io/v1, got {:?}", body.api_version),
        ));
    }
    let tree = body.spec.process_tree.as_ref();
    Ok(body
        .spec
        .alerts
        .iter()
        .enumerate()
        .map(|(i, raw)| map_alert(raw, tree, context, &format!("spec.alerts[{i}]")))
        .collect())
}

/// The stdout line's sections whose fields make up one flattened RuntimeAlert.
const LINE_SECTIONS: [&str; 2] = ["BaseRuntimeMetadata", "RuntimeK8sDetails"];

/// Maps stdout exporter lines (NDJSON). Lines that are not alerts (the node-agent's own logs, blank
/// lines) are skipped; a body with no alert line at all is bad input, so a misrouted log is seen.
pub fn map_lines(bytes: &[u8], context: &Context<'_>) -> Result<Vec<Item>, InputError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| InputError::new("", format!("not UTF-8 text: {e}")))?;
    let items: Vec<Item> = text
        .lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let value: Value = serde_json::from_str(line.trim()).ok()?;
            let is_alert =
                value.get("BaseRuntimeMetadata").is_some() || value.get("RuleID").is_some();
            is_alert.then(|| map_line(&value, context, &format!("lines[{}]", i + 1)))
        })
        .collect();
    if items.is_empty() && !text.trim().is_empty() {
        return Err(InputError::new(
            "",
            "no Kubescape alert line: expected one JSON object per line with BaseRuntimeMetadata and RuleID (the node-agent stdout exporter)",
        ));
    }
    Ok(items)
}

/// One stdout line, flattened into the exporter's RuntimeAlert shape. Log shippers sometimes
/// stringify the nested objects: a section that is a string is parsed as JSON. Errors name the
/// line's own field path (`lines[3].RuntimeK8sDetails.workloadName`).
fn map_line(line: &Value, context: &Context<'_>, at: &str) -> Item {
    let id_hint = line
        .pointer("/BaseRuntimeMetadata/uniqueID")
        .and_then(Value::as_str)
        .map(str::to_string);
    let reject = |error: InputError| Rejected {
        id: id_hint.clone(),
        error,
    };
    let section = |name: &str| -> Result<Option<Value>, Rejected> {
        match line.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => serde_json::from_str::<Value>(text)
                .ok()
                .filter(Value::is_object)
                .map(Some)
                .ok_or_else(|| {
                    reject(InputError::new(
                        format!("{at}.{name}"),
                        "a string that is not a stringified JSON object",
                    ))
                }),
            Some(v @ Value::Object(_)) => Ok(Some(v.clone())),
            Some(_) => Err(reject(InputError::new(
                format!("{at}.{name}"),
                "wrong type: expected an object",
            ))),
        }
    };
    let mut flat = serde_json::Map::new();
    // Which section each flattened key came from, to name the line's field in errors.
    let mut sections = BTreeMap::new();
    for name in LINE_SECTIONS {
        if let Some(Value::Object(fields)) = section(name)? {
            for (key, value) in fields {
                sections.insert(key.clone(), name);
                flat.insert(key, value);
            }
        }
    }
    if let Some(rule) = line.get("RuleID") {
        sections.insert("ruleID".into(), "RuleID");
        flat.insert("ruleID".into(), rule.clone());
    }
    let tree = section("RuntimeProcessDetails")?;
    let flat = Value::Object(flat);
    map_alert(&flat, tree.as_ref(), context, at).map_err(|mut rejected| {
        let prefix = format!("{at}.");
        if let Some(rest) = rejected.error.field.strip_prefix(&prefix) {
            let key = rest.split(['.', '[']).next().unwrap_or_default();
            rejected.error.field = match sections.get(key) {
                Some(&"RuleID") => format!("{at}.RuleID"),
                Some(section) => format!("{at}.{section}.{rest}"),
                // Fields the line lacks are named where the exporter writes them.
                None if key == "uniqueID" => format!("{at}.BaseRuntimeMetadata.{rest}"),
                None => format!("{at}.RuntimeK8sDetails.{rest}"),
            };
        }
        rejected
    })
}

fn map_alert(raw: &Value, tree: Option<&Value>, context: &Context<'_>, at: &str) -> Item {
    let id_hint = raw
        .get("uniqueID")
        .and_then(Value::as_str)
        .map(str::to_string);
    let reject = |error: InputError| Rejected {
        id: id_hint.clone(),
        error,
    };
    let alert: RuntimeAlert = from_value(raw, at).map_err(reject)?;
    let name = alert.alert_name.as_deref().unwrap_or_default();
    let rule = alert.rule_id.as_deref().unwrap_or_default();
    if name == ALERT_LIMIT_REACHED || rule == ALERT_LIMIT_REACHED {
        return Ok(Mapped::Signal {
            id: alert
                .unique_id
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| ALERT_LIMIT_REACHED.to_string()),
            name: ALERT_LIMIT_REACHED.to_string(),
        });
    }
    let field = |name: &str| format!("{at}.{name}");
    let id = alert
        .unique_id
        .clone()
        .ok_or_else(|| reject(InputError::new(field("uniqueID"), "missing")))?;
    let namespace = alert
        .workload_namespace
        .clone()
        .or(alert.namespace.clone())
        .ok_or_else(|| reject(InputError::new(field("workloadNamespace"), "missing")))?;
    let kind = alert
        .workload_kind
        .clone()
        .ok_or_else(|| reject(InputError::new(field("workloadKind"), "missing")))?;
    let workload_name = alert
        .workload_name
        .clone()
        .ok_or_else(|| reject(InputError::new(field("workloadName"), "missing")))?;
    let workload = format!("{kind}/{workload_name}");
    // The node-agent's CloudMetadata carries provider/region, not the cluster: the alert's
    // `clusterName` is the cluster's own name.
    let cluster = alert
        .cluster_name
        .clone()
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| context.cluster.to_string());
    let sa = match alert.service_account_name.clone() {
        Some(sa) => sa,
        None => service_account(
            context,
            &cluster,
            &namespace,
            &workload,
            &field("serviceAccountName"),
        )
        .map_err(reject)?,
    };
    let Some((dimension, parameter, origin)) = parameter(&alert, tree, at).map_err(reject)? else {
        return Ok(Mapped::Unmappable {
            id,
            reason: format!(
                "rule {:?} carries no exec, path, syscall or domain, and its process is not in spec.processTree",
                alert.rule_id.as_deref().unwrap_or_default()
            ),
        });
    };
    Draft {
        id,
        source: "kubescape",
        time: alert.timestamp.unwrap_or_else(Utc::now),
        agent: AgentRef {
            cluster,
            namespace,
            workload,
            service_account: sa,
        },
        dimension,
        parameter,
        severity: severity(alert.severity),
        evidence: json!({"kubescape": raw}),
        origins: [
            ("id", field("uniqueID")),
            ("agent.cluster", field("clusterName")),
            ("agent.namespace", field("workloadNamespace")),
            ("agent.workload", field("workloadName")),
            ("agent.serviceAccount", field("serviceAccountName")),
        ]
        .into_iter()
        .chain(super::parameter_origins(origin))
        .collect(),
    }
    .finish()
    .map(|a| Mapped::Alert(Box::new(a)))
    .map_err(reject)
}

/// Rule → (dimension, parameter, the source field it came from). R0001 exec, R0002 open,
/// R0003 syscall and R0005 DNS name their field; other rules are read by the arguments they
/// carry, and failing that by the process that triggered them (so the incident still records
/// what ran, and escalates: no control plane contains `process`). `None`: nothing to name.
fn parameter(
    alert: &RuntimeAlert,
    tree: Option<&Value>,
    at: &str,
) -> Result<Option<(Dimension, Value, String)>, InputError> {
    let args = alert.arguments.clone().unwrap_or_default();
    let arg = |key: &str| args.get(key).and_then(Value::as_str).map(str::to_string);
    let origin = |key: &str| format!("{at}.arguments.{key}");
    let rule = alert.rule_id.as_deref().unwrap_or_default();
    let named = match rule {
        "R0001" => Some("exec"),
        "R0002" => Some("path"),
        "R0003" => Some("syscall"),
        "R0005" => Some("domain"),
        _ => None,
    };
    if let Some(key) = named {
        if arg(key).is_none() {
            return Err(InputError::new(
                origin(key),
                format!("rule {rule} names this argument, and it is missing or not a string"),
            ));
        }
    }
    for key in named
        .into_iter()
        .chain(["domain", "exec", "path", "syscall"])
    {
        if let Some(value) = arg(key) {
            return Ok(Some(match key {
                "domain" => (
                    Dimension::Network,
                    json!({"destination": value}),
                    origin(key),
                ),
                _ => (Dimension::Process, json!({ key: value }), origin(key)),
            }));
        }
    }
    Ok(alert
        .infected_pid
        .and_then(|pid| tree.and_then(|t| process_path(t, pid)))
        .map(|path| {
            (
                Dimension::Process,
                json!({"exec": path}),
                format!("{at}.infectedPID"),
            )
        }))
}

/// The executable of `pid` in the exporter's process tree (`processTree.processTree`, children
/// in `childrenMap`).
fn process_path(tree: &Value, pid: u64) -> Option<String> {
    fn walk(node: &Value, pid: u64, depth: usize) -> Option<String> {
        // The tree comes from outside: bound the recursion.
        if depth > 64 {
            return None;
        }
        if node.get("pid").and_then(Value::as_u64) == Some(pid) {
            return ["path", "hardlink", "comm"]
                .iter()
                .find_map(|k| node.get(*k).and_then(Value::as_str))
                .filter(|s| !s.is_empty())
                .map(str::to_string);
        }
        node.get("childrenMap")?
            .as_object()?
            .values()
            .find_map(|child| walk(child, pid, depth + 1))
    }
    walk(tree.get("processTree")?, pid, 0)
}

/// node-agent priorities: 1 low, 5 medium, 8 high, 10 critical.
fn severity(value: Option<i64>) -> Severity {
    match value.unwrap_or(5) {
        i64::MIN..=0 => Severity::Info,
        1..=4 => Severity::Low,
        5..=7 => Severity::Medium,
        8..=9 => Severity::High,
        _ => Severity::Critical,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::testing::store;
    use firebreak_containment::{EnvelopeStore, Parameter};
    use proptest::prelude::*;

    const R0005: &str =
        include_str!("../../../../shared/fixtures/kubescape/http-exporter-body-R0005.json");

    fn with_envelope() -> EnvelopeStore {
        store(
            "bobexample",
            "webapp",
            "Deployment/webapp-mywebapp",
            "mywebapp",
        )
    }

    fn one(bytes: &[u8], envelopes: &EnvelopeStore) -> Item {
        let context = Context {
            cluster: "default",
            envelopes,
        };
        let mut items = map(bytes, &context).expect("body parses");
        assert_eq!(items.len(), 1);
        items.remove(0)
    }

    fn edited(edit: impl FnOnce(&mut Value)) -> Vec<u8> {
        let mut v: Value = serde_json::from_str(R0005).expect("fixture is JSON");
        edit(&mut v["spec"]["alerts"][0]);
        v.to_string().into_bytes()
    }

    #[test]
    fn r0005_fixture_maps_to_a_network_destination() {
        let Ok(Mapped::Alert(alert)) = one(R0005.as_bytes(), &with_envelope()) else {
            panic!("R0005 must map to an alert");
        };
        assert_eq!(alert.id, "0b80141cea771029450509ea63514032");
        assert_eq!(
            alert.agent.key().0,
            "bobexample/webapp/Deployment/webapp-mywebapp"
        );
        assert_eq!(alert.agent.service_account, "mywebapp");
        assert_eq!(
            alert.parameter,
            Parameter::Network {
                destination: "google.com.".into(),
                port: None
            }
        );
        assert_eq!(alert.severity, Severity::Medium);
    }

    /// One stdout exporter line for the same R0005 alert as the HTTP fixture, as node-agent
    /// prints it (logrus JSON: the alert's sections as nested objects).
    const R0005_LINE: &str = r#"{"BaseRuntimeMetadata":{"alertName":"Unexpected domain request","arguments":{"addresses":["2a00:1450:4001:80b::200e"],"domain":"google.com.","port":40557,"protocol":"UDP"},"infectedPID":39383,"severity":5,"timestamp":"2025-07-10T14:37:25.18331807Z","uniqueID":"0b80141cea771029450509ea63514032","profileMetadata":{"status":"completed","completion":"complete","name":"replicaset-webapp-mywebapp-67965968bb"}},"CloudMetadata":null,"RuleID":"R0005","RuntimeK8sDetails":{"clusterName":"bobexample","containerName":"mywebapp-app","namespace":"webapp","podName":"webapp-mywebapp-67965968bb-5bmtf","podNamespace":"webapp","workloadName":"webapp-mywebapp","workloadNamespace":"webapp","workloadKind":"Deployment"},"RuntimeProcessDetails":{"processTree":{"pid":39383,"comm":"wget","path":"/usr/bin/wget"}},"level":"error","message":"Unexpected domain communication: google.com. from: mywebapp-app","msg":"Unexpected domain request","time":"2025-07-10T14:37:25Z"}"#;

    fn lines(text: &str, envelopes: &EnvelopeStore) -> Result<Vec<Item>, InputError> {
        map_lines(
            text.as_bytes(),
            &Context {
                cluster: "default",
                envelopes,
            },
        )
    }

    /// The line with `section` replaced by its JSON text, as log shippers write it.
    fn stringified(section: &str) -> String {
        let mut line: Value = serde_json::from_str(R0005_LINE).expect("line");
        let text = line[section].to_string();
        line[section] = Value::String(text);
        line.to_string()
    }

    #[test]
    fn stdout_line_maps_like_the_http_exporter_alert() {
        let envelopes = with_envelope();
        let Ok(Mapped::Alert(from_http)) = one(R0005.as_bytes(), &envelopes) else {
            panic!("the HTTP fixture maps");
        };
        let items = lines(R0005_LINE, &envelopes).expect("one alert line");
        let [Ok(Mapped::Alert(from_line))] = items.as_slice() else {
            panic!("one alert, got {items:?}");
        };
        assert_eq!(from_line.id, from_http.id);
        assert_eq!(from_line.agent, from_http.agent);
        assert_eq!(from_line.parameter, from_http.parameter);
        assert_eq!(from_line.time, from_http.time);
    }

    #[test]
    fn stringified_sections_are_parsed() {
        for section in [
            "BaseRuntimeMetadata",
            "RuntimeK8sDetails",
            "RuntimeProcessDetails",
        ] {
            let items = lines(&stringified(section), &with_envelope()).expect("parsed");
            assert!(
                matches!(items.as_slice(), [Ok(Mapped::Alert(_))]),
                "{section} stringified: {items:?}"
            );
        }
    }

    #[test]
    fn log_lines_between_alerts_are_skipped() {
        let text = format!(
            "{{\"level\":\"info\",\"msg\":\"starting node-agent\"}}\nplain text log\n\n{R0005_LINE}\n"
        );
        let items = lines(&text, &with_envelope()).expect("one alert among logs");
        assert_eq!(items.len(), 1);
        let err = lines("plain text\n{\"msg\":\"x\"}\n", &with_envelope()).expect_err("no alert");
        assert!(err.reason.contains("no Kubescape alert line"), "{err}");
    }

    #[test]
    fn stdout_errors_name_the_line_and_section() {
        let mut line: Value = serde_json::from_str(R0005_LINE).expect("line");
        line["RuntimeK8sDetails"]
            .as_object_mut()
            .expect("object")
            .remove("workloadName");
        let text = format!("{R0005_LINE}\n{line}\n");
        let items = lines(&text, &with_envelope()).expect("two alert lines");
        let Err(rejected) = &items[1] else {
            panic!("second line lacks its workload: {:?}", items[1]);
        };
        assert_eq!(
            rejected.error.field,
            "lines[2].RuntimeK8sDetails.workloadName"
        );
        assert_eq!(
            rejected.id.as_deref(),
            Some("0b80141cea771029450509ea63514032")
        );

        let mut line: Value = serde_json::from_str(R0005_LINE).expect("line");
        line["BaseRuntimeMetadata"]["arguments"]
            .as_object_mut()
            .expect("object")
            .remove("domain");
        let items = lines(&line.to_string(), &with_envelope()).expect("one line");
        let Err(rejected) = &items[0] else {
            panic!("R0005 without its domain is rejected");
        };
        assert_eq!(
            rejected.error.field,
            "lines[1].BaseRuntimeMetadata.arguments.domain"
        );

        let mut line: Value = serde_json::from_str(R0005_LINE).expect("line");
        line["RuntimeK8sDetails"] = Value::String("{not json".into());
        let items = lines(&line.to_string(), &with_envelope()).expect("one line");
        let Err(rejected) = &items[0] else {
            panic!("a broken stringified section is rejected");
        };
        assert_eq!(rejected.error.field, "lines[1].RuntimeK8sDetails");
    }

    #[test]
    fn without_envelope_or_service_account_the_field_is_named() {
        let Err(rejected) = one(R0005.as_bytes(), &EnvelopeStore::default()) else {
            panic!("no ServiceAccount anywhere must be rejected");
        };
        assert_eq!(rejected.error.field, "spec.alerts[0].serviceAccountName");
        assert!(rejected
            .error
            .reason
            .contains("bobexample/webapp/Deployment/webapp-mywebapp"));
        assert_eq!(
            rejected.id.as_deref(),
            Some("0b80141cea771029450509ea63514032")
        );
    }

    #[test]
    fn service_account_in_the_alert_wins() {
        let bytes = edited(|a| a["serviceAccountName"] = "other".into());
        let Ok(Mapped::Alert(alert)) = one(&bytes, &EnvelopeStore::default()) else {
            panic!("alert with its ServiceAccount must map");
        };
        assert_eq!(alert.agent.service_account, "other");
    }

    #[test]
    fn cluster_falls_back_to_the_configured_one() {
        let bytes = edited(|a| a["clusterName"] = "".into());
        let envelopes = store("default", "webapp", "Deployment/webapp-mywebapp", "sa");
        let Ok(Mapped::Alert(alert)) = one(&bytes, &envelopes) else {
            panic!("must map");
        };
        assert_eq!(alert.agent.cluster, "default");
    }

    #[test]
    fn exec_open_and_syscall_rules_map_to_process() {
        for (rule, key, value, expected) in [
            (
                "R0001",
                "exec",
                "/usr/bin/curl",
                Parameter::Process {
                    exec: Some("/usr/bin/curl".into()),
                    path: None,
                    syscall: None,
                },
            ),
            (
                "R0002",
                "path",
                "/etc/shadow",
                Parameter::Process {
                    exec: None,
                    path: Some("/etc/shadow".into()),
                    syscall: None,
                },
            ),
            (
                "R0003",
                "syscall",
                "ptrace",
                Parameter::Process {
                    exec: None,
                    path: None,
                    syscall: Some("ptrace".into()),
                },
            ),
        ] {
            let bytes = edited(|a| {
                a["ruleID"] = rule.into();
                a["arguments"] = json!({ key: value, "args": ["x"] });
            });
            let Ok(Mapped::Alert(alert)) = one(&bytes, &with_envelope()) else {
                panic!("{rule} must map");
            };
            assert_eq!(alert.dimension(), Dimension::Process, "{rule}");
            assert_eq!(alert.parameter, expected, "{rule}");
        }
    }

    #[test]
    fn a_rule_without_arguments_is_mapped_to_its_process() {
        let bytes = edited(|a| {
            a["ruleID"] = "R1000".into();
            a["arguments"] = json!({});
        });
        let Ok(Mapped::Alert(alert)) = one(&bytes, &with_envelope()) else {
            panic!("must map through the process tree");
        };
        assert_eq!(
            alert.parameter,
            Parameter::Process {
                exec: Some("/usr/bin/curl".into()),
                path: None,
                syscall: None
            }
        );
    }

    #[test]
    fn a_rule_naming_nothing_is_unmappable_not_bad_input() {
        let bytes = edited(|a| {
            a["ruleID"] = "R1002".into();
            a["arguments"] = json!({});
            a["infectedPID"] = 1.into();
        });
        let Ok(Mapped::Unmappable { id, reason }) = one(&bytes, &with_envelope()) else {
            panic!("must be unmappable");
        };
        assert_eq!(id, "0b80141cea771029450509ea63514032");
        assert!(reason.contains("R1002"), "{reason}");
    }

    #[test]
    fn a_named_argument_missing_is_named() {
        let bytes = edited(|a| a["arguments"] = json!({"domain": 7}));
        let Err(rejected) = one(&bytes, &with_envelope()) else {
            panic!("must be rejected");
        };
        assert_eq!(rejected.error.field, "spec.alerts[0].arguments.domain");
    }

    #[test]
    fn alert_limit_reached_is_a_signal() {
        let bytes = edited(|a| {
            *a = json!({"alertName": "AlertLimitReached", "ruleID": "AlertLimitReached", "severity": 1000, "message": "Alert limit reached"});
        });
        assert!(matches!(
            one(&bytes, &EnvelopeStore::default()),
            Ok(Mapped::Signal { .. })
        ));
    }

    #[test]
    fn wrong_types_and_kinds_name_the_field() {
        let bytes = edited(|a| a["workloadName"] = 3.into());
        let Err(rejected) = one(&bytes, &with_envelope()) else {
            panic!("must be rejected");
        };
        assert_eq!(rejected.error.field, "spec.alerts[0].workloadName");
        let context = Context {
            cluster: "default",
            envelopes: &EnvelopeStore::default(),
        };
        let e = map(
            br#"{"kind": "Pod", "apiVersion": "v1", "spec": {"alerts": []}}"#,
            &context,
        )
        .expect_err("wrong kind");
        assert_eq!(e.field, "kind");
        let e = map(
            br#"{"kind": "RuntimeAlerts", "apiVersion": "kubescape.io/v1", "spec": {}}"#,
            &context,
        )
        .expect_err("no alerts");
        assert!(e.reason.contains("alerts"), "{e}");
    }

    proptest! {
        #[test]
        fn arbitrary_json_never_panics(value in crate::sources::testing::json()) {
            let envelopes = with_envelope();
            let context = Context { cluster: "default", envelopes: &envelopes };
            let _ = map(value.to_string().as_bytes(), &context);
            let body = json!({"kind": "RuntimeAlerts", "apiVersion": "kubescape.io/v1",
                              "spec": {"alerts": [value.clone()], "processTree": value}});
            let _ = map(body.to_string().as_bytes(), &context);
            let line = json!({"BaseRuntimeMetadata": value.clone(), "RuleID": "R0001",
                              "RuntimeK8sDetails": value.clone(), "RuntimeProcessDetails": value});
            for item in map_lines(line.to_string().as_bytes(), &context).expect("an alert line") {
                if let Err(rejected) = item {
                    prop_assert!(rejected.error.field.starts_with("lines[1]"), "{}", rejected.error);
                }
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let envelopes = EnvelopeStore::default();
            let _ = map(&bytes, &Context { cluster: "default", envelopes: &envelopes });
            let _ = map_lines(&bytes, &Context { cluster: "default", envelopes: &envelopes });
        }
    }
}
