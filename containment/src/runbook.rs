//! Runbooks: per dimension / tier / namespace, which mode applies, the broadest action allowed
//! without approval, and how long an action lives (TTL).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::alert::{Alert, Dimension, Tier};
use crate::error::InputError;
use crate::ids::ActionKind;
use crate::plan::Mode;
use crate::plane::{KindSpec, Kinds};

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
        (self.dimensions.is_empty() || self.dimensions.contains(&alert.dimension()))
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
    /// `auto` acts on any ladder's rungs up to this one (0 = only the narrowest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_auto_rung: Option<u8>,
    /// Per ladder, the broadest rung `auto` may take (beyond `maxAutoRung`); anything broader
    /// waits for approval.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
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

/// The rules of every runbook, in order, with the kinds they name resolved.
#[derive(Debug, Clone)]
pub struct Runbooks {
    rules: Vec<Rule>,
    kinds: Kinds,
}

impl Runbooks {
    /// The embedded default runbook. It names no kind (it allows each ladder's narrowest rung
    /// by `maxAutoRung`), so it holds whatever planes are registered.
    pub fn embedded() -> Result<Runbooks, RunbookError> {
        Self::parse(
            "embedded default runbook",
            EMBEDDED_DEFAULT,
            &Kinds::default(),
        )
    }

    /// Parses one runbook document. `origin` names it in errors; every kind it names must be
    /// one of `kinds`, and none may be approval-only.
    pub fn parse(origin: &str, text: &str, kinds: &Kinds) -> Result<Runbooks, RunbookError> {
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
            for (j, name) in rule.broadest_without_approval.iter().enumerate() {
                let field = format!("spec.rules[{i}].broadestWithoutApproval[{j}]");
                match kinds.get(name.as_str()) {
                    None => {
                        return Err(invalid(InputError::new(
                            field,
                            format!(
                                "{name} is not an action kind; known kinds: {}",
                                kinds.names().join(", ")
                            ),
                        )))
                    }
                    Some(kind) if kind.approval_only => {
                        return Err(invalid(InputError::new(
                            field,
                            format!(
                                "{name} is an approval-only rung; no runbook can allow it without approval"
                            ),
                        )))
                    }
                    Some(_) => {}
                }
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
            kinds: kinds.clone(),
        })
    }

    /// Loads every `*.yaml` in `dir`, in file-name order; rules keep their order.
    pub fn load_dir(dir: &Path, kinds: &Kinds) -> Result<Runbooks, RunbookError> {
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
            rules.extend(Self::parse(&origin, &text, kinds)?.rules);
        }
        Ok(Runbooks {
            rules,
            kinds: kinds.clone(),
        })
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The first rule that matches the alert.
    pub fn rule_for(&self, alert: &Alert) -> Option<&Rule> {
        self.rules.iter().find(|r| r.when.matches(alert))
    }

    /// Whether `rule` lets rung `rung` of `ladder` run without approval.
    pub fn allows_without_approval(&self, rule: &Rule, ladder: &str, rung: u8) -> bool {
        rule.max_auto_rung.is_some_and(|max| rung <= max)
            || rule
                .broadest_without_approval
                .iter()
                .filter_map(|k| self.kinds.get(k.as_str()))
                .any(|k: &KindSpec| k.ladder == ladder && rung <= k.rung)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{kinds, RUNBOOK};

    #[test]
    fn a_runbook_resolves_its_kinds() {
        let rb = Runbooks::parse("x.yaml", RUNBOOK, &kinds()).expect("parses");
        let rule = &rb.rules()[0];
        assert!(rb.allows_without_approval(rule, "test", 0));
        assert!(!rb.allows_without_approval(rule, "test", 1));
        assert!(!rb.allows_without_approval(rule, "other", 0));
    }

    #[test]
    fn the_embedded_runbook_allows_every_narrowest_rung_and_nothing_broader() {
        let rb = Runbooks::embedded().expect("parses without kinds");
        let rule = &rb.rules()[0];
        assert!(rb.allows_without_approval(rule, "aws", 0));
        assert!(rb.allows_without_approval(rule, "tools", 0));
        assert!(!rb.allows_without_approval(rule, "aws", 1));
    }

    #[test]
    fn approval_only_rung_cannot_be_allowed_by_a_runbook() {
        let text = RUNBOOK.replace("- test.narrow", "- test.broadest");
        let err = Runbooks::parse("x.yaml", &text, &kinds()).expect_err("must refuse");
        let msg = err.to_string();
        assert!(
            msg.contains("x.yaml")
                && msg.contains("spec.rules[0].broadestWithoutApproval[0]")
                && msg.contains("approval-only"),
            "{msg}"
        );
    }

    #[test]
    fn an_unknown_kind_is_named_with_the_known_ones() {
        let text = RUNBOOK.replace("- test.narrow", "- test.narow");
        let err = Runbooks::parse("x.yaml", &text, &kinds()).expect_err("must refuse");
        let msg = err.to_string();
        assert!(msg.contains("test.narow is not an action kind"), "{msg}");
        assert!(msg.contains("test.narrow, test.wide"), "{msg}");
    }

    #[test]
    fn bad_mode_names_file_and_field() {
        let text = RUNBOOK.replace("mode: approve", "mode: yolo");
        let err = Runbooks::parse("x.yaml", &text, &kinds()).expect_err("must refuse");
        let msg = err.to_string();
        assert!(
            msg.contains("spec.rules[1].mode") && msg.contains("yolo"),
            "{msg}"
        );
    }

    #[test]
    fn bad_ttl_is_explained() {
        let text = RUNBOOK.replacen("ttl: 24h", "ttl: soon", 1);
        let err = Runbooks::parse("x.yaml", &text, &kinds()).expect_err("must refuse");
        assert!(err.to_string().contains("spec.rules[0].ttl"), "{err}");
    }
}
