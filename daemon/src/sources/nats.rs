//! NATS JetStream as a streaming alert source: one durable pull consumer, at-least-once.
//!
//! A message is acknowledged only once its alerts are journaled (the engine journals before
//! `submit` returns), or once it is bad input that no redelivery could fix. A crash in between
//! means a redelivery, which the engine's dedupe on alert id turns into a no-op.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, AckKind};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use firebreak_containment::engine::{Engine, Fault};
use firebreak_containment::{Alert, InputError};
use futures_util::StreamExt;
use serde::Deserialize;

use super::{Context, Item, Mapped, Outcome, Rejected, Sources};

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NatsConfig {
    /// e.g. `nats://127.0.0.1:4222`.
    pub url: String,
    /// Created with `subjects` when absent.
    #[serde(default = "default_stream")]
    pub stream: String,
    /// The durable consumer's name: its position survives restarts of Firebreak and of NATS.
    #[serde(default = "default_durable")]
    pub durable: String,
    /// Subject (NATS wildcards `*` and `>` allowed) → the format published on it.
    pub subjects: BTreeMap<String, Format>,
    /// A file holding the NATS auth token, if the server wants one.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// How long NATS waits for an ack before redelivering.
    #[serde(
        default = "default_ack_wait",
        deserialize_with = "firebreak_containment::config::duration"
    )]
    pub ack_wait: Duration,
}

fn default_stream() -> String {
    "FIREBREAK_ALERTS".into()
}

fn default_durable() -> String {
    "firebreak".into()
}

fn default_ack_wait() -> Duration {
    Duration::from_secs(30)
}

/// What a subject carries: the same formats as the HTTP endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// Firebreak's own alert (`POST /v1/alerts`).
    Native,
    /// A node-agent HTTP exporter body (`POST /v1/runtimealerts`).
    Kubescape,
    /// Node-agent stdout exporter lines.
    KubescapeStdout,
    /// A Falco event or Falcosidekick body.
    Falco,
    /// A CloudEvent: structured, or binary with `ce-` headers (the CloudEvents NATS binding).
    Cloudevents,
}

impl Format {
    /// The `source` label of the metrics, as on the HTTP endpoints.
    fn source(self) -> &'static str {
        match self {
            Format::Native => "native",
            Format::Kubescape | Format::KubescapeStdout => "kubescape",
            Format::Falco => "falco",
            Format::Cloudevents => "cloudevents",
        }
    }

    fn map(
        self,
        headers: &HeaderMap,
        bytes: &[u8],
        context: &Context<'_>,
    ) -> Result<Vec<Item>, InputError> {
        match self {
            Format::Native => Ok(vec![Alert::from_json(bytes)
                .map(|a| Mapped::Alert(Box::new(a)))
                .map_err(|error| Rejected { id: None, error })]),
            Format::Kubescape => super::kubescape::map(bytes, context),
            Format::KubescapeStdout => super::kubescape::map_lines(bytes, context),
            Format::Falco => super::falco::map(bytes, context),
            Format::Cloudevents => super::cloudevents::map(headers, bytes, context),
        }
    }
}

/// Whether NATS subject `subject` matches `pattern` (`*` one token, `>` one or more).
fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut subject = subject.split('.');
    for token in pattern.split('.') {
        match (token, subject.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (t, Some(s)) if t == s => {}
            _ => return false,
        }
    }
    subject.next().is_none()
}

#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error("cannot read sources.nats.tokenFile {path}: {detail}")]
    Token { path: String, detail: String },
    #[error("cannot connect to NATS at {url} (sources.nats.url): {detail}")]
    Connect { url: String, detail: String },
    #[error(
        "JetStream refused {doing}: {detail}; check that the server runs with JetStream (-js)"
    )]
    JetStream { doing: String, detail: String },
}

pub struct NatsSource {
    pub config: NatsConfig,
    pub engine: Engine,
    pub sources: Sources,
}

impl NatsSource {
    /// Consumes until the process ends; a lost connection is retried with backoff.
    pub async fn run(self) {
        let mut backoff = Duration::from_millis(250);
        loop {
            match self.consume().await {
                Ok(()) => backoff = Duration::from_millis(250),
                Err(e) => {
                    tracing::error!(error = %e, retry_in = ?backoff, "NATS alert source");
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
            tokio::time::sleep(backoff).await;
        }
    }

    async fn consume(&self) -> Result<(), NatsError> {
        let config = &self.config;
        let mut options = async_nats::ConnectOptions::new().name("firebreak");
        if let Some(path) = &config.token_file {
            let token = std::fs::read_to_string(path).map_err(|e| NatsError::Token {
                path: path.display().to_string(),
                detail: e.to_string(),
            })?;
            options = options.token(token.trim().to_string());
        }
        let client = options
            .connect(&config.url)
            .await
            .map_err(|e| NatsError::Connect {
                url: config.url.clone(),
                detail: e.to_string(),
            })?;
        let jetstream = jetstream::new(client);
        let stream = jetstream
            .get_or_create_stream(jetstream::stream::Config {
                name: config.stream.clone(),
                subjects: config.subjects.keys().cloned().collect(),
                ..Default::default()
            })
            .await
            .map_err(|e| refused(format!("stream {}", config.stream), e))?;
        let consumer = stream
            .get_or_create_consumer(
                &config.durable,
                pull::Config {
                    durable_name: Some(config.durable.clone()),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: config.ack_wait,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| refused(format!("consumer {}", config.durable), e))?;
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| refused("a pull subscription".into(), e))?;
        tracing::info!(url = %config.url, stream = %config.stream, durable = %config.durable, "consuming alerts from NATS JetStream");
        while let Some(message) = messages.next().await {
            match message {
                Ok(message) => self.handle(message).await,
                Err(e) => tracing::warn!(error = %e, "NATS pull subscription"),
            }
        }
        Ok(())
    }

    async fn handle(&self, message: jetstream::Message) {
        let subject = message.subject.to_string();
        let Some(format) = self
            .config
            .subjects
            .iter()
            .find(|(pattern, _)| subject_matches(pattern, &subject))
            .map(|(_, f)| *f)
        else {
            tracing::warn!(
                subject,
                "NATS message on a subject with no format in sources.nats.subjects; terminated"
            );
            return acknowledge(&message, AckKind::Term).await;
        };
        let headers = message
            .headers
            .as_ref()
            .map(http_headers)
            .unwrap_or_default();
        let context = Context {
            cluster: &self.sources.cluster,
            envelopes: self.engine.envelopes(),
        };
        let items = match format.map(&headers, &message.payload, &context) {
            Ok(items) => items,
            Err(e) => {
                // Bad input stays bad on redelivery: say so once and stop it.
                self.sources.count(format.source(), Outcome::Rejected);
                tracing::warn!(subject, field = %e.field, reason = %e.reason, "NATS message rejected");
                return acknowledge(&message, AckKind::Term).await;
            }
        };
        match super::ingest(&self.engine, &self.sources, format.source(), items).await {
            Ok(_) => {
                if self.engine.fault() == Some(Fault::CrashBeforeAck) {
                    tracing::warn!("fault injection: aborting after journaling, before the ack");
                    std::process::abort();
                }
                acknowledge(&message, AckKind::Ack).await
            }
            Err(e) => {
                // Not journaled: let NATS redeliver rather than lose the alert.
                tracing::error!(subject, error = %e, "alert from NATS not journaled; asking for redelivery");
                acknowledge(&message, AckKind::Nak(Some(Duration::from_secs(1)))).await
            }
        }
    }
}

fn refused(doing: String, e: impl std::fmt::Display) -> NatsError {
    NatsError::JetStream {
        doing,
        detail: e.to_string(),
    }
}

async fn acknowledge(message: &jetstream::Message, kind: AckKind) {
    if let Err(e) = message.ack_with(kind).await {
        // NATS redelivers after ackWait; the dedupe makes that harmless.
        tracing::warn!(error = %e, "cannot acknowledge a NATS message");
    }
}

/// NATS headers as HTTP headers, for the CloudEvents binary mode mapping.
fn http_headers(headers: &async_nats::HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, values) in headers.iter() {
        let name: &str = name.as_ref();
        let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
            continue;
        };
        for value in values {
            if let Ok(value) = HeaderValue::from_str(value.as_str()) {
                out.append(name.clone(), value);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_match_like_nats() {
        assert!(subject_matches("alerts.falco", "alerts.falco"));
        assert!(!subject_matches("alerts.falco", "alerts.falco.x"));
        assert!(subject_matches("alerts.*", "alerts.falco"));
        assert!(!subject_matches("alerts.*", "alerts.falco.x"));
        assert!(subject_matches("alerts.>", "alerts.falco.x"));
        assert!(!subject_matches("alerts.>", "alerts"));
        assert!(!subject_matches("alerts.native", "alerts"));
    }

    #[test]
    fn config_names_bad_fields() {
        let err = InputError::from_yaml::<NatsConfig>(
            "url: nats://127.0.0.1:4222\nsubjects: {alerts.x: syslog}\n",
        )
        .expect_err("unknown format");
        assert_eq!(err.field, "subjects.alerts.x");
        let err = InputError::from_yaml::<NatsConfig>(
            "url: nats://127.0.0.1:4222\nsubjects: {}\nackWait: soon\n",
        )
        .expect_err("bad duration");
        assert_eq!(err.field, "ackWait");
    }
}
