//! Runbooks: per dimension / tier / namespace, which mode applies, the broadest action allowed
//! without approval, and how long an action lives (TTL).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::action::ActionKind;
use crate::alert::{Alert, Dimension, Tier};
use crate::envelope::EnvelopeStatus;
use crate::error::InputError;
use crate::plan::{Candidate, Mode};

pub const EMBEDDED_DEFAULT: &str = include_str!("../../runbooks/default.yaml");

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Match {
    #[serde(default)]
    pub dimensions: Vec<Dimension>,
    #[serde(default)]
    pub tiers: Vec<Tier>,
    #[serde(default)]
    pub namespaces: Vec<String>,
}

impl Match {
    fn matches(&self, alert: &Alert) -> bool {
        (self.dimensions.is_empty() || self.dimensions.contains(&alert.dimension))
            && (self.tiers.is_empty() || self.tiers.contains(&alert.tier))
            && (self.namespaces.is_empty() || self.namespaces.contains(&alert.agent.namespace))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    #[serde(default, rename = "match")]
    pub when: Match,
    pub mode: Mode,
    /// `auto` acts only when the chosen action breaks at most this many in-envelope behaviours.
    #[serde(default)]
    pub max_auto_blast_radius: usize,
    /// Per ladder, the broadest rung `auto` may take; anything broader waits for approval.
    #[serde(default)]
    pub broadest_without_approval: Vec<ActionKind>,
    /// e.g. `4h`, `30m`; absent = until rolled back.
    #[serde(default, with = "opt_duration")]
    pub ttl: Option<Duration>,
}

mod opt_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        text.map(|t| {
            humantime::parse_duration(&t).map_err(|e| {
                serde::de::Error::custom(format!("{t:?} is not a duration like 30m or 4h: {e}"))
            })
        })
        .transpose()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RunbookSpec {
    rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunbookMetadata {
    name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RunbookDoc {
    api_version: String,
    kind: String,
    metadata: RunbookMetadata,
    spec: RunbookSpec,
}

#[derive(Debug, thiserror::Error)]
pub enum RunbookError {
    #[error("cannot read runbook directory {path}: {source}")]
    Directory {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {error}")]
    Invalid { path: String, error: InputError },
    #[error("{path} holds no runbook (*.yaml); add one or use the embedded default")]
    Empty { path: PathBuf },
}

/// The rules of every runbook, in order.
#[derive(Debug, Clone)]
pub struct Runbooks {
    rules: Vec<Rule>,
}

/// What the runbook (and the safety rules) decided for one plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub mode: Mode,
    pub reason: String,
    pub escalation: Option<String>,
    pub ttl: Option<Duration>,
}

impl Runbooks {
    pub fn embedded() -> Result<Runbooks, RunbookError> {
        Self::parse("embedded default runbook", EMBEDDED_DEFAULT)
    }

    /// Parses one runbook document. `origin` names it in errors.
    pub fn parse(origin: &str, text: &str) -> Result<Runbooks, RunbookError> {
        let invalid = |error: InputError| RunbookError::Invalid {
            path: origin.to_string(),
            error,
        };
        let doc: RunbookDoc = InputError::from_yaml(text).map_err(invalid)?;
        if doc.kind != "Runbook" {
            return Err(invalid(InputError::new(
                "kind",
                format!("expected Runbook, got {:?}", doc.kind),
            )));
        }
        if doc.api_version != crate::envelope::API_VERSION {
            return Err(invalid(InputError::new(
                "apiVersion",
                format!(
                    "expected {}, got {:?}",
                    crate::envelope::API_VERSION,
                    doc.api_version
                ),
            )));
        }
        for (i, rule) in doc.spec.rules.iter().enumerate() {
            if let Some(kind) = rule
                .broadest_without_approval
                .iter()
                .find(|k| k.approval_only())
            {
                return Err(invalid(InputError::new(
                    format!("spec.rules[{i}].broadestWithoutApproval"),
                    format!(
                        "{kind} is an approval-only rung; no runbook can allow it without approval"
                    ),
                )));
            }
            if rule.name.trim().is_empty() {
                return Err(invalid(InputError::new(
                    format!("spec.rules[{i}].name"),
                    "must not be empty",
                )));
            }
        }
        if doc.spec.rules.is_empty() {
            return Err(invalid(InputError::new(
                "spec.rules",
                "needs at least one rule",
            )));
        }
        Ok(Runbooks {
            rules: doc.spec.rules,
        })
    }

    /// Loads every `*.yaml` in `dir`, in file-name order; rules keep their order.
    pub fn load_dir(dir: &Path) -> Result<Runbooks, RunbookError> {
        let entries = std::fs::read_dir(dir).map_err(|source| RunbookError::Directory {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
            .collect();
        paths.sort();
        if paths.is_empty() {
            return Err(RunbookError::Empty {
                path: dir.to_path_buf(),
            });
        }
        let mut rules = Vec::new();
        for path in paths {
            let origin = path.display().to_string();
            let text =
                std::fs::read_to_string(&path).map_err(|source| RunbookError::Directory {
                    path: path.clone(),
                    source,
                })?;
            rules.extend(Self::parse(&origin, &text)?.rules);
        }
        Ok(Runbooks { rules })
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The mode for a plan: the first matching rule, then the safety rules that override it.
    pub fn decide(
        &self,
        alert: &Alert,
        envelope: EnvelopeStatus,
        chosen: Option<&Candidate>,
    ) -> Decision {
        let Some(rule) = self.rules.iter().find(|r| r.when.matches(alert)) else {
            return Decision {
                mode: Mode::Approve,
                reason: "no runbook rule matches: waiting for approval".into(),
                escalation: Some("no runbook rule matches this alert".into()),
                ttl: None,
            };
        };
        let mut decision = Decision {
            mode: rule.mode,
            reason: format!("runbook rule {:?}", rule.name),
            escalation: None,
            ttl: rule.ttl,
        };
        let Some(chosen) = chosen else {
            decision.mode = Mode::Approve;
            decision.reason = "no candidate blocks the breach".into();
            decision.escalation =
                Some("no containment action blocks the breached parameter".into());
            return decision;
        };
        if envelope == EnvelopeStatus::Learning {
            decision.escalation = Some(
                "the agent's envelope is still learning: Firebreak will not act on its own".into(),
            );
            if decision.mode == Mode::Auto {
                decision.mode = Mode::Approve;
                decision.reason = format!(
                    "{} says auto, but the envelope is learning",
                    decision.reason
                );
            }
            return decision;
        }
        if decision.mode != Mode::Auto {
            return decision;
        }
        let downgrade = if chosen.kind.approval_only() {
            Some(format!("{} is an approval-only rung", chosen.kind))
        } else if !rule
            .broadest_without_approval
            .iter()
            .any(|k| k.surface() == chosen.kind.surface() && chosen.kind.rung() <= k.rung())
        {
            Some(format!(
                "{} is broader than this rule allows without approval",
                chosen.kind
            ))
        } else if chosen.blast_radius.broken > rule.max_auto_blast_radius {
            Some(format!(
                "blast radius {} exceeds the {} allowed automatically",
                chosen.blast_radius.broken, rule.max_auto_blast_radius
            ))
        } else if !chosen.blast_radius.undetermined.is_empty() {
            Some(format!(
                "the effect on {} in-envelope behaviour(s) is undetermined",
                chosen.blast_radius.undetermined.len()
            ))
        } else {
            None
        };
        if let Some(why) = downgrade {
            decision.mode = Mode::Approve;
            decision.reason = format!("{} says auto, but {why}", decision.reason);
        }
        decision
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::sample_candidate;

    fn alert(tier: &str) -> Alert {
        let v = serde_json::json!({
          "id": "a-1", "source": "test", "time": "2026-05-16T02:47:00Z",
          "agent": {"cluster": "c", "namespace": "payments",
                    "workload": "Deployment/payment-agent", "serviceAccount": "payment-agent"},
          "dimension": "identity",
          "parameter": {"action": "s3:PutObject", "resource": "arn:aws:s3:::x/*"},
          "tier": tier, "severity": "critical"
        });
        Alert::from_json(v.to_string().as_bytes()).expect("valid alert")
    }

    #[test]
    fn attack_attempt_with_zero_blast_is_auto() {
        let rb = Runbooks::embedded().expect("embedded runbook parses");
        let d = rb.decide(
            &alert("attack-attempt"),
            EnvelopeStatus::Converged,
            Some(&sample_candidate(ActionKind::AwsInlineDeny, 0)),
        );
        assert_eq!(d.mode, Mode::Auto, "{d:?}");
        assert_eq!(d.ttl, Some(Duration::from_secs(24 * 3600)));
    }

    #[test]
    fn attack_attempt_with_blast_waits_for_approval() {
        let rb = Runbooks::embedded().expect("embedded");
        let d = rb.decide(
            &alert("attack-attempt"),
            EnvelopeStatus::Converged,
            Some(&sample_candidate(ActionKind::AwsInlineDeny, 1)),
        );
        assert_eq!(d.mode, Mode::Approve);
        assert!(d.reason.contains("blast radius 1"), "{d:?}");
    }

    #[test]
    fn anomaly_waits_for_approval() {
        let rb = Runbooks::embedded().expect("embedded");
        let d = rb.decide(
            &alert("anomaly"),
            EnvelopeStatus::Converged,
            Some(&sample_candidate(ActionKind::AwsInlineDeny, 0)),
        );
        assert_eq!(d.mode, Mode::Approve);
    }

    #[test]
    fn learning_envelope_never_acts_and_escalates() {
        let rb = Runbooks::embedded().expect("embedded");
        let d = rb.decide(
            &alert("attack-attempt"),
            EnvelopeStatus::Learning,
            Some(&sample_candidate(ActionKind::AwsInlineDeny, 0)),
        );
        assert_eq!(d.mode, Mode::Approve);
        assert!(d.escalation.is_some());
    }

    #[test]
    fn broader_rung_than_allowed_waits() {
        let rb = Runbooks::embedded().expect("embedded");
        let d = rb.decide(
            &alert("attack-attempt"),
            EnvelopeStatus::Converged,
            Some(&sample_candidate(ActionKind::AwsDetachPolicy, 0)),
        );
        assert_eq!(d.mode, Mode::Approve);
        assert!(d.reason.contains("broader"), "{d:?}");
    }

    #[test]
    fn approval_only_rung_cannot_be_allowed_by_a_runbook() {
        let text = EMBEDDED_DEFAULT.replace("- aws.inline_deny", "- aws.trust_deny");
        let err = Runbooks::parse("x.yaml", &text).expect_err("must refuse");
        let msg = err.to_string();
        assert!(
            msg.contains("x.yaml") && msg.contains("spec.rules[0].broadestWithoutApproval"),
            "{msg}"
        );
    }

    #[test]
    fn bad_mode_names_file_and_field() {
        let text = EMBEDDED_DEFAULT.replace("mode: approve", "mode: yolo");
        let err = Runbooks::parse("x.yaml", &text).expect_err("must refuse");
        let msg = err.to_string();
        assert!(
            msg.contains("spec.rules[1].mode") && msg.contains("yolo"),
            "{msg}"
        );
    }

    #[test]
    fn bad_ttl_is_explained() {
        let text = EMBEDDED_DEFAULT.replacen("ttl: 24h", "ttl: soon", 1);
        let err = Runbooks::parse("x.yaml", &text).expect_err("must refuse");
        assert!(err.to_string().contains("spec.rules[0].ttl"), "{err}");
    }
}
