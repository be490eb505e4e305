//! `firebreak ingest`: streams a line-oriented source (a file, or stdin for
//! `kubectl logs -f ds/node-agent | firebreak ingest kubescape-stdout`) to a running daemon, in
//! batches that fit its body limit, sent as soon as input pauses.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};

/// How long input may pause before a partial batch is sent (follow mode stays live).
const LINGER: Duration = Duration::from_millis(200);

#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub lines: usize,
    pub sent: usize,
    pub accepted: usize,
    pub deduplicated: usize,
    pub escalated: usize,
    pub signal: usize,
    pub rejected: usize,
    /// Lines longer than the daemon's body limit, never sent.
    pub oversize: usize,
}

impl Summary {
    fn tally(&mut self, outcome: &str) {
        match outcome {
            "accepted" => self.accepted += 1,
            "deduplicated" => self.deduplicated += 1,
            "escalated" => self.escalated += 1,
            "signal" => self.signal += 1,
            _ => self.rejected += 1,
        }
    }

    pub fn text(&self) -> String {
        format!(
            "{} line(s) read, {} alert line(s) sent: {} accepted, {} deduplicated, {} escalated, {} signal, {} rejected, {} oversize\n",
            self.lines, self.sent, self.accepted, self.deduplicated, self.escalated, self.signal, self.rejected, self.oversize
        )
    }
}

/// Where to send and how.
pub struct Target {
    pub url: String,
    pub token: String,
    pub max_body_bytes: usize,
}

impl Target {
    /// The daemon of this config: its listen address and its API token file.
    pub fn of(
        listen: std::net::SocketAddr,
        token_file: &Path,
        max_body_bytes: usize,
    ) -> anyhow::Result<Target> {
        let token = std::fs::read_to_string(token_file)
            .with_context(|| {
                format!(
                    "cannot read the API token {}; start `firebreak serve` first (it creates the token) or pass --config with api.tokenFile",
                    token_file.display()
                )
            })?
            .trim()
            .to_string();
        Ok(Target {
            url: format!("http://{listen}"),
            token,
            max_body_bytes,
        })
    }
}

/// Reads kubescape stdout lines from `file` (or stdin when `None` or `-`) and sends the alert
/// lines. Rejected lines are reported on stderr by their line number in the input.
pub async fn kubescape_stdout(target: &Target, file: Option<PathBuf>) -> anyhow::Result<Summary> {
    match file.filter(|f| f != Path::new("-")) {
        Some(path) => {
            let file = tokio::fs::File::open(&path)
                .await
                .with_context(|| format!("cannot read {}", path.display()))?;
            send_lines(target, BufReader::new(file)).await
        }
        None => send_lines(target, BufReader::new(tokio::io::stdin())).await,
    }
}

/// A batch: the body and, per line in it, its number in the input.
#[derive(Default)]
struct Batch {
    body: String,
    numbers: Vec<usize>,
}

async fn send_lines(target: &Target, input: impl AsyncBufRead + Unpin) -> anyhow::Result<Summary> {
    let client = reqwest::Client::new();
    let endpoint = format!("{}/v1/alerts/kubescape/stdout", target.url);
    let mut summary = Summary::default();
    let mut batch = Batch::default();
    let mut lines = input.lines();
    loop {
        let next = if batch.numbers.is_empty() {
            Ok(lines.next_line().await)
        } else {
            tokio::time::timeout(LINGER, lines.next_line()).await
        };
        let line = match next {
            Ok(line) => line.context("cannot read input")?,
            // Input paused: send what we have so a followed log is contained now.
            Err(_) => {
                flush(&client, &endpoint, target, &mut batch, &mut summary).await?;
                continue;
            }
        };
        let Some(line) = line else { break };
        summary.lines += 1;
        // Only alert lines go out: node-agent logs far more than it alerts.
        if !(line.contains("\"RuleID\"") || line.contains("\"BaseRuntimeMetadata\"")) {
            continue;
        }
        if line.len() + 1 > target.max_body_bytes {
            summary.oversize += 1;
            eprintln!(
                "line {}: longer than the daemon's api.maxBodyBytes ({}); not sent",
                summary.lines, target.max_body_bytes
            );
            continue;
        }
        if batch.body.len() + line.len() + 1 > target.max_body_bytes {
            flush(&client, &endpoint, target, &mut batch, &mut summary).await?;
        }
        batch.body.push_str(&line);
        batch.body.push('\n');
        batch.numbers.push(summary.lines);
    }
    flush(&client, &endpoint, target, &mut batch, &mut summary).await?;
    Ok(summary)
}

async fn flush(
    client: &reqwest::Client,
    endpoint: &str,
    target: &Target,
    batch: &mut Batch,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    if batch.numbers.is_empty() {
        return Ok(());
    }
    let Batch { body, numbers } = std::mem::take(batch);
    summary.sent += numbers.len();
    let response = client
        .post(endpoint)
        .bearer_auth(&target.token)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .with_context(|| {
            format!("cannot reach the daemon at {endpoint}; is `firebreak serve` running?")
        })?;
    let status = response.status();
    let answer: Value = response
        .json()
        .await
        .with_context(|| format!("the daemon answered {status} without JSON"))?;
    let Some(results) = answer["results"].as_array() else {
        anyhow::bail!(
            "the daemon refused the batch ({status}): {}",
            answer["error"]
        );
    };
    for result in results {
        let outcome = result["outcome"].as_str().unwrap_or_default();
        summary.tally(outcome);
        if outcome == "rejected" {
            eprintln!(
                "{}: {}",
                input_field(result["field"].as_str().unwrap_or_default(), &numbers),
                result["reason"].as_str().unwrap_or_default()
            );
        }
    }
    Ok(())
}

/// `lines[3].RuntimeK8sDetails.workloadName` of a batch → `line 1042: RuntimeK8sDetails.workloadName`.
fn input_field(field: &str, numbers: &[usize]) -> String {
    let parsed = field.strip_prefix("lines[").and_then(|rest| {
        let (index, path) = rest.split_once(']')?;
        let number = numbers.get(index.parse::<usize>().ok()?.checked_sub(1)?)?;
        Some(format!("line {number}: {}", path.trim_start_matches('.')))
    });
    parsed.unwrap_or_else(|| field.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_fields_are_named_by_input_line() {
        assert_eq!(
            input_field("lines[2].RuntimeK8sDetails.workloadName", &[7, 1042]),
            "line 1042: RuntimeK8sDetails.workloadName"
        );
        assert_eq!(input_field("lines[9].x", &[7]), "lines[9].x");
        assert_eq!(input_field("lines[0].x", &[7]), "lines[0].x");
    }
}
