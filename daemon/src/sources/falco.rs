//! Falco `json_output` events and Falcosidekick webhook bodies (the same shape plus a random
//! `uuid`, which is therefore not a dedupe key). Syscall events name the pod's workload;
//! k8s_audit plugin events (`ka.*`) name the caller, mapped in `k8s_audit`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use firebreak_containment::alert::{Dimension, Severity};
use firebreak_containment::{AgentRef, InputError};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::{from_value, k8s_audit, service_account, Context, Draft, Item, Mapped, Rejected};

#[derive(Deserialize)]
struct Event {
    // Talon's test events spell the keys capitalised.
    #[serde(alias = "Rule")]
    rule: String,
    #[serde(alias = "Priority", default)]
    priority: Option<String>,
    #[serde(alias = "Time", default)]
    time: Option<DateTime<Utc>>,
    // Values are strings, integers above 2^53 (`evt.time`), -1 and nulls: kept as JSON values,
    // whose integers stay exact u64/i64.
    #[serde(alias = "OutputFields", default)]
    output_fields: Option<BTreeMap<String, Value>>,
}

/// Workload fields Falco's Kubernetes metadata (old `k8s.*`, the k8smeta plugin) may carry.
const WORKLOAD_FIELDS: &[(&str, &str)] = &[
    ("k8s.deployment.name", "Deployment"),
    ("k8smeta.deployment.name", "Deployment"),
    ("k8s.statefulset.name", "StatefulSet"),
    ("k8smeta.statefulset.name", "StatefulSet"),
    ("k8s.daemonset.name", "DaemonSet"),
    ("k8smeta.daemonset.name", "DaemonSet"),
    ("k8smeta.cronjob.name", "CronJob"),
    ("k8smeta.job.name", "Job"),
];

/// Maps one Falco or Falcosidekick event body.
pub fn map(bytes: &[u8], context: &Context<'_>) -> Result<Vec<Item>, InputError> {
    let value: Value = InputError::from_json(bytes)?;
    Ok(vec![map_value(&value, context, "")])
}

/// Maps one event already parsed (also the `data` of a `falco.rule.output.v1` CloudEvent);
/// error fields are prefixed with `at`.
pub fn map_value(value: &Value, context: &Context<'_>, at: &str) -> Item {
    let path = |name: &str| {
        if at.is_empty() {
            name.to_string()
        } else {
            format!("{at}.{name}")
        }
    };
    let reject = |error: InputError| Rejected { id: None, error };
    let event: Event = from_value(value, at).map_err(reject)?;
    let fields = event.output_fields.unwrap_or_default();
    if k8s_audit::is_audit(&fields) {
        let audit = k8s_audit::Audit {
            rule: &event.rule,
            severity: severity(event.priority.as_deref()),
            time: event.time,
            fields: &fields,
            raw: value,
        };
        return k8s_audit::map(audit, context, &path);
    }
    let text = |key: &str| text(&fields, key);
    let field = |key: &str| path(&format!("output_fields.{key}"));
    let namespace = text("k8s.ns.name").ok_or_else(|| {
        reject(InputError::new(
            field("k8s.ns.name"),
            "missing: the event is not about a Kubernetes workload, so no agent can be named",
        ))
    })?;
    let (workload, workload_field) =
        workload(&text).map_err(|(key, reason)| reject(InputError::new(field(key), reason)))?;
    let cluster = context.cluster.to_string();
    let sa = service_account(
        context,
        &cluster,
        &namespace,
        &workload,
        &path("serviceAccount"),
    )
    .map_err(reject)?;
    let evt_time = fields.get("evt.time").and_then(Value::as_u64);
    let time = event
        .time
        .or_else(|| {
            evt_time
                .and_then(|n| i64::try_from(n).ok())
                .map(DateTime::from_timestamp_nanos)
        })
        .ok_or_else(|| {
            reject(InputError::new(
                path("time"),
                "missing, and no output_fields.evt.time either",
            ))
        })?;
    // Same rule, same instant, same pod = the same detection re-sent.
    let instant = evt_time.map_or_else(|| time.to_rfc3339(), |n| n.to_string());
    let pod = text("k8s.pod.name").unwrap_or_default();
    let digest = Sha256::digest(format!("{}\0{instant}\0{namespace}/{pod}", event.rule));
    let id = format!("falco-{}", &hex::encode(digest)[..24]);
    let (dimension, parameter, origin) =
        parameter(&fields, &text).map_err(|(key, reason)| Rejected {
            id: Some(id.clone()),
            error: InputError::new(field(key), reason),
        })?;
    let origin = field(&origin);
    let mut evidence = Map::new();
    evidence.insert("falco".into(), value.clone());
    Draft {
        id: id.clone(),
        source: "falco",
        time,
        agent: AgentRef {
            cluster,
            namespace,
            workload,
            service_account: sa,
        },
        dimension,
        parameter,
        severity: severity(event.priority.as_deref()),
        evidence: Value::Object(evidence),
        origins: [
            ("agent.namespace", field("k8s.ns.name")),
            ("agent.workload", field(workload_field)),
        ]
        .into_iter()
        .chain(super::parameter_origins(origin))
        .collect(),
    }
    .finish()
    .map(|a| Mapped::Alert(Box::new(a)))
    .map_err(|error| Rejected {
        id: Some(id),
        error,
    })
}

/// A string output field Falco resolved (it prints `<NA>` for one it could not).
pub(super) fn text(fields: &BTreeMap<String, Value>, key: &str) -> Option<String> {
    fields
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && *s != "<NA>")
        .map(str::to_string)
}

type Problem = (&'static str, String);

/// `Kind/name` of the pod's workload, and the field it was read from. A pod name alone is only
/// trusted where Kubernetes' naming is unambiguous: `<deployment>-<pod-template-hash>-<5>` is a
/// Deployment's; a name with no generated suffix is a bare Pod; anything else is refused.
fn workload(text: &dyn Fn(&str) -> Option<String>) -> Result<(String, &'static str), Problem> {
    for (key, kind) in WORKLOAD_FIELDS {
        if let Some(name) = text(key) {
            return Ok((format!("{kind}/{name}"), key));
        }
    }
    let pod = text("k8s.pod.name").ok_or((
        "k8s.pod.name",
        "missing, and no workload field (k8s.deployment.name, k8smeta.*) either".to_string(),
    ))?;
    let parts: Vec<&str> = pod.rsplitn(3, '-').collect();
    match parts.as_slice() {
        [suffix, hash, base] if generated(suffix, 5, 5) && generated(hash, 6, 10) => {
            Ok((format!("Deployment/{base}"), "k8s.pod.name"))
        }
        [last, ..] if parts.len() > 1 && (generated(last, 5, 5) || last.chars().all(|c| c.is_ascii_digit())) => Err((
            "k8s.pod.name",
            format!("cannot tell the workload of pod {pod:?} (DaemonSet, Job, ReplicaSet or StatefulSet); send k8s.deployment.name or the k8smeta fields"),
        )),
        _ => Ok((format!("Pod/{pod}"), "k8s.pod.name")),
    }
}

/// Whether `s` looks like a Kubernetes-generated name part (its safe alphabet, no vowels).
fn generated(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len()) && s.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c))
}

/// The breached value: a network peer when the event has one, else the process, file and
/// syscall it names. Returns the output field it came from, for errors.
fn parameter(
    fields: &BTreeMap<String, Value>,
    text: &dyn Fn(&str) -> Option<String>,
) -> Result<(Dimension, Value, String), Problem> {
    if let Some((key, peer)) = ["fd.sip.name", "fd.rip.name", "fd.sip", "fd.rip"]
        .iter()
        .find_map(|k| text(k).map(|v| (*k, v)))
    {
        let port = ["fd.sport", "fd.rport"].iter().find_map(|k| {
            let v = fields.get(*k)?;
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                .and_then(|p| u16::try_from(p).ok())
        });
        return Ok((
            Dimension::Network,
            json!({"destination": peer, "port": port}),
            key.to_string(),
        ));
    }
    let exec = ["proc.exepath", "proc.cmdline", "proc.name"]
        .iter()
        .find_map(|k| text(k).map(|v| (*k, v)));
    let path = text("fd.name").filter(|p| p.starts_with('/'));
    let syscall = text("evt.type");
    let origin = match (&exec, &path, &syscall) {
        (Some((key, _)), _, _) => key.to_string(),
        (None, Some(_), _) => "fd.name".into(),
        (None, None, Some(_)) => "evt.type".into(),
        (None, None, None) => {
            return Err((
                "proc.cmdline",
                "the event names no process, file, syscall or peer (proc.exepath, proc.cmdline, proc.name, fd.name, evt.type, fd.sip)".into(),
            ))
        }
    };
    Ok((
        Dimension::Process,
        json!({"exec": exec.map(|(_, v)| v), "path": path, "syscall": syscall}),
        origin,
    ))
}

fn severity(priority: Option<&str>) -> Severity {
    match priority.unwrap_or_default().to_ascii_lowercase().as_str() {
        "emergency" | "alert" | "critical" => Severity::Critical,
        "error" => Severity::High,
        "warning" => Severity::Medium,
        "notice" => Severity::Low,
        _ => Severity::Info,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::testing::store;
    use firebreak_containment::{EnvelopeStore, Parameter};
    use proptest::prelude::*;

    const SHELL: &str = include_str!("../../../../shared/fixtures/falco/falco-terminal-shell.json");
    const SIDEKICK: &str =
        include_str!("../../../../shared/fixtures/falco/falcosidekick-test-input.json");

    fn alpine() -> EnvelopeStore {
        store("default", "default", "Pod/alpine", "default")
    }

    fn one(bytes: &[u8], envelopes: &EnvelopeStore) -> Item {
        let context = Context {
            cluster: "default",
            envelopes,
        };
        map(bytes, &context).expect("event parses").remove(0)
    }

    fn edited(edit: impl FnOnce(&mut Value)) -> Vec<u8> {
        let mut v: Value = serde_json::from_str(SHELL).expect("fixture is JSON");
        edit(&mut v);
        v.to_string().into_bytes()
    }

    #[test]
    fn terminal_shell_fixture_maps_to_the_shell_exec() {
        let Ok(Mapped::Alert(alert)) = one(SHELL.as_bytes(), &alpine()) else {
            panic!("must map");
        };
        assert_eq!(alert.agent.key().0, "default/default/Pod/alpine");
        assert_eq!(
            alert.parameter,
            Parameter::Process {
                exec: Some("sh".into()),
                path: None,
                syscall: None
            }
        );
        assert_eq!(alert.severity, Severity::Low);
        // evt.time survives exactly (it is above 2^53).
        assert_eq!(
            alert.evidence["falco"]["output_fields"]["evt.time"].as_u64(),
            Some(1610667584834631763)
        );
        assert!(alert.id.starts_with("falco-"));
    }

    #[test]
    fn the_dedupe_key_ignores_sidekicks_uuid() {
        let a = one(&edited(|v| v["uuid"] = "1".into()), &alpine());
        let b = one(&edited(|v| v["uuid"] = "2".into()), &alpine());
        let (Ok(Mapped::Alert(a)), Ok(Mapped::Alert(b))) = (a, b) else {
            panic!("both map");
        };
        assert_eq!(a.id, b.id);
        let c = one(
            &edited(|v| v["output_fields"]["evt.time"] = 1610667584834631764u64.into()),
            &alpine(),
        );
        let Ok(Mapped::Alert(c)) = c else {
            panic!("maps")
        };
        assert_ne!(a.id, c.id);
    }

    #[test]
    fn capitalised_rule_is_accepted() {
        let bytes = edited(|v| {
            let rule = v["rule"].take();
            v.as_object_mut().expect("object").remove("rule");
            v["Rule"] = rule;
        });
        assert!(matches!(one(&bytes, &alpine()), Ok(Mapped::Alert(_))));
    }

    #[test]
    fn sidekick_test_event_names_the_missing_namespace() {
        let Err(rejected) = one(SIDEKICK.as_bytes(), &alpine()) else {
            panic!("no Kubernetes fields: no agent");
        };
        assert_eq!(rejected.error.field, "output_fields.k8s.ns.name");
    }

    #[test]
    fn deployment_pods_and_network_peers_are_mapped() {
        let bytes = edited(|v| {
            v["output_fields"]["k8s.pod.name"] = "webapp-mywebapp-67965968bb-5bmtf".into();
            v["output_fields"]["fd.sip.name"] = "evil.example".into();
            v["output_fields"]["fd.sport"] = 443.into();
        });
        let envelopes = store("default", "default", "Deployment/webapp-mywebapp", "web");
        let Ok(Mapped::Alert(alert)) = one(&bytes, &envelopes) else {
            panic!("must map");
        };
        assert_eq!(alert.agent.workload, "Deployment/webapp-mywebapp");
        assert_eq!(
            alert.parameter,
            Parameter::Network {
                destination: "evil.example".into(),
                port: Some(443)
            }
        );
    }

    #[test]
    fn ambiguous_pod_names_are_refused_precisely() {
        let bytes = edited(|v| v["output_fields"]["k8s.pod.name"] = "fluentd-x7k2p".into());
        let Err(rejected) = one(&bytes, &alpine()) else {
            panic!("a DaemonSet-looking pod must not be guessed");
        };
        assert_eq!(rejected.error.field, "output_fields.k8s.pod.name");
        assert!(rejected.error.reason.contains("fluentd-x7k2p"));
    }

    #[test]
    fn wrong_types_name_the_field() {
        let context = Context {
            cluster: "default",
            envelopes: &EnvelopeStore::default(),
        };
        let Err(r) = map(&edited(|v| v["time"] = 5.into()), &context)
            .expect("JSON")
            .remove(0)
        else {
            panic!("bad time");
        };
        assert_eq!(r.error.field, "time");
        let e = map(b"[1,", &context).expect_err("truncated");
        assert!(e.reason.contains("EOF"), "{e}");
    }

    proptest! {
        #[test]
        fn arbitrary_json_never_panics(value in crate::sources::testing::json()) {
            let envelopes = alpine();
            let context = Context { cluster: "default", envelopes: &envelopes };
            let _ = map(value.to_string().as_bytes(), &context);
            let event = json!({"rule": "r", "time": "2021-01-14T23:39:44Z", "output_fields": value});
            let _ = map(event.to_string().as_bytes(), &context);
        }
    }
}
