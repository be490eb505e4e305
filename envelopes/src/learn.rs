//! Learning the AI dimensions of envelopes (`tools`, `context`, `delegation`) from OpenTelemetry
//! GenAI / MCP spans in OTLP/JSON files. One call learns every agent found: one envelope each.
//!
//! What is read, and from where:
//! - **Agent** of a span: its resource. `k8s.cluster.name`, `k8s.namespace.name`, the workload
//!   from the first present of `k8s.deployment.name`, `k8s.statefulset.name`,
//!   `k8s.daemonset.name`, `k8s.cronjob.name`, `k8s.job.name`, `k8s.replicaset.name` (a pod name
//!   alone is not a workload), and `k8s.serviceaccount.name`. [`LearnOptions::cluster`] and
//!   [`LearnOptions::service_account`] fill in a missing cluster or ServiceAccount;
//!   [`LearnOptions::agent`] attributes every span of the files to one agent. Spans of a resource
//!   that names no agent are skipped and counted in the report.
//! - **Session** of a span: `mcp.session.id` on the span or its nearest ancestor, else
//!   `gen_ai.conversation.id` likewise, else the trace id.
//! - **Tools**: spans with `gen_ai.operation.name = execute_tool`. Tool: `gen_ai.tool.name`, else
//!   the span name after `execute_tool ` or `tools/call `. Server: `mcp.server.name` (the logical
//!   name the Firebreak gateway and alerts use), else `server.address`. A tool span with neither is
//!   an in-process tool no gateway sees: skipped and counted.
//! - **Context**: any span carrying `gen_ai.data_source.id`, which names the *index*. The semantic
//!   conventions have no per-document provenance, so the *sources* come from Firebreak's own
//!   `firebreak.context.sources` (a string or string array on the same span); without it the
//!   entry is the whole index.
//! - **Delegation**: spans with `gen_ai.operation.name = invoke_agent`, agent named by
//!   `gen_ai.agent.name`, else `gen_ai.agent.id`. An edge exists when the nearest `invoke_agent`
//!   ancestor (following `parentSpanId` across the trace, across resources) names a different
//!   agent; the top-level `invoke_agent` of a trace is the agent itself, not an edge. The edge is
//!   recorded in the envelope of the resource that emitted the child span, with mechanism
//!   `remote` when the span is a CLIENT span or its parent agent ran in another resource, else
//!   `in-process`. The envelope type has no `from` field, so the calling sub-agent is not kept.
//! - SERVER spans are the callee's view of a call (an MCP server's `tools/call`, a remote agent's
//!   entry point) and are not counted for tools, context or delegation; the caller's span is.
//!
//! Closure: `literal` or `structural` as [`crate::generalise`] says. `distribution` (a range or
//! rate) does not apply: [`Observed`] carries only count and sessions, nowhere to keep a rate.
//!
//! Confidence: an entry is permitted when seen at least `minCount` times in at least
//! `minSessions` distinct sessions; the rest are kept as the tail and listed in the report.
//!
//! Status: `converged` when the agent has more than `W` sessions (`W` =
//! [`LearnOptions::stable_sessions`], default `minSessions`), none of the last `W` sessions (by
//! their earliest span start) brought an entry not seen before, and at least one entry exists;
//! otherwise `learning`, with the reason in the report.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use firebreak_containment::agent::{AgentKey, AgentRef};
use firebreak_containment::alert::Dimension;
use firebreak_containment::envelope::{
    Closure, ConfidenceThreshold, ContextUse, DelegationEdge, Envelope, EnvelopeSpec,
    EnvelopeStatus, Metadata, Observed, ObservedList, ToolUse, API_VERSION,
};
use serde::Serialize;

use crate::generalise::{generalise, Generalised, Stats};
use crate::otlp::{self, AnyValue, Batch, OtlpError, Resource, Span, SpanKind};

const OPERATION: &str = "gen_ai.operation.name";
const TOOL_NAME: &str = "gen_ai.tool.name";
const MCP_SERVER_NAME: &str = "mcp.server.name";
const SERVER_ADDRESS: &str = "server.address";
const DATA_SOURCE: &str = "gen_ai.data_source.id";
const CONTEXT_SOURCES: &str = "firebreak.context.sources";
const AGENT_NAME: &str = "gen_ai.agent.name";
const AGENT_ID: &str = "gen_ai.agent.id";
const MCP_SESSION: &str = "mcp.session.id";
const CONVERSATION: &str = "gen_ai.conversation.id";

/// Resource attributes naming the workload, most specific owner first.
const WORKLOAD_KINDS: [(&str, &str); 6] = [
    ("k8s.deployment.name", "Deployment"),
    ("k8s.statefulset.name", "StatefulSet"),
    ("k8s.daemonset.name", "DaemonSet"),
    ("k8s.cronjob.name", "CronJob"),
    ("k8s.job.name", "Job"),
    ("k8s.replicaset.name", "ReplicaSet"),
];

/// What the CLI passes: `firebreak envelope learn FILE… [--agent …] [--min-count N] …`.
#[derive(Debug, Clone)]
pub struct LearnOptions {
    pub confidence: ConfidenceThreshold,
    /// Every span of the files belongs to this agent (resource attributes are ignored).
    pub agent: Option<AgentRef>,
    /// The cluster of resources without `k8s.cluster.name`.
    pub cluster: Option<String>,
    /// The ServiceAccount of resources without `k8s.serviceaccount.name`.
    pub service_account: Option<String>,
    /// Sessions without new behaviour needed to converge; `None` is `confidence.minSessions`.
    pub stable_sessions: Option<u64>,
    /// `spec.version` of the envelopes written.
    pub version: u64,
}

impl Default for LearnOptions {
    fn default() -> Self {
        Self {
            confidence: ConfidenceThreshold::default(),
            agent: None,
            cluster: None,
            service_account: None,
            stable_sessions: None,
            version: 1,
        }
    }
}

/// The envelopes learned (one per agent, sorted by agent key) and what the learner saw.
#[derive(Debug, Clone)]
pub struct Learned {
    pub envelopes: Vec<Envelope>,
    pub report: LearnReport,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LearnReport {
    pub files: usize,
    pub spans: u64,
    pub agents: Vec<AgentReport>,
    /// Spans not used, grouped by why.
    pub skipped: Vec<Skipped>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentReport {
    pub agent: AgentKey,
    pub spans: u64,
    pub sessions: u64,
    pub status: EnvelopeStatus,
    pub reason: String,
    pub permitted: u64,
    /// Entries below the confidence threshold: in the envelope, not permitted.
    pub tail: Vec<TailEntry>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TailEntry {
    pub dimension: Dimension,
    pub entry: String,
    pub closure: Closure,
    pub count: u64,
    pub sessions: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Skipped {
    pub reason: String,
    pub spans: u64,
    /// Where the first such span is: `file: JSON path`.
    pub first: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LearnError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Otlp(#[from] OtlpError),
    #[error("confidence threshold: {0} must be at least 1")]
    Threshold(&'static str),
    #[error("no spans in the {0} file(s) given; pass OTLP/JSON trace files (resourceSpans)")]
    NoSpans(usize),
    #[error("no span could be attributed to an agent ({0}); set the k8s.* resource attributes or pass --agent / --cluster / --service-account")]
    NoAgent(String),
}

/// Reads `files` (OTLP/JSON) and learns one envelope per agent found.
pub fn learn(files: &[PathBuf], options: &LearnOptions) -> Result<Learned, LearnError> {
    let mut sources = Vec::with_capacity(files.len());
    for path in files {
        let text = std::fs::read_to_string(path).map_err(|source| LearnError::Read {
            path: path.clone(),
            source,
        })?;
        sources.push((path.as_path(), text));
    }
    let sources: Vec<(&Path, &str)> = sources.iter().map(|(p, t)| (*p, t.as_str())).collect();
    learn_texts(&sources, options)
}

/// [`learn`] on texts already read, each with the file name errors should give.
pub fn learn_texts(
    sources: &[(&Path, &str)],
    options: &LearnOptions,
) -> Result<Learned, LearnError> {
    if options.confidence.min_count == 0 {
        return Err(LearnError::Threshold("minCount"));
    }
    if options.confidence.min_sessions == 0 {
        return Err(LearnError::Threshold("minSessions"));
    }
    let mut batch = Batch::default();
    for (path, text) in sources {
        otlp::parse_into(path, text, &mut batch)?;
    }
    if batch.spans.is_empty() {
        return Err(LearnError::NoSpans(sources.len()));
    }
    let learned = learn_batch(&batch, sources.len(), options);
    if learned.envelopes.is_empty() {
        let reasons: Vec<&str> = learned
            .report
            .skipped
            .iter()
            .map(|s| s.reason.as_str())
            .collect();
        return Err(LearnError::NoAgent(reasons.join("; ")));
    }
    Ok(learned)
}

fn learn_batch(batch: &Batch, files: usize, options: &LearnOptions) -> Learned {
    let trace = Trace::new(batch);
    let mut skipped = SkipLog::default();
    let agents_by_resource: Vec<Result<AgentRef, String>> = batch
        .resources
        .iter()
        .map(|r| agent_of(r, options))
        .collect();
    let mut agents: BTreeMap<AgentKey, Learning> = BTreeMap::new();
    for (i, span) in batch.spans.iter().enumerate() {
        if !trace.is_first(i) {
            skipped.add(
                "duplicate span (same traceId and spanId seen before)",
                batch,
                span,
            );
            continue;
        }
        let agent = match &agents_by_resource[span.resource] {
            Ok(agent) => agent,
            Err(reason) => {
                skipped.add(reason, batch, span);
                continue;
            }
        };
        let learning = agents
            .entry(agent.key())
            .or_insert_with(|| Learning::new(agent.clone()));
        let session = learning.session(&trace.session_of(i), span.start_unix_nano);
        learning.spans += 1;
        // SERVER spans are the callee's view; the caller's span is counted instead.
        if span.kind == SpanKind::Server {
            continue;
        }
        if let Err(reason) = observe(&trace, i, session, learning) {
            skipped.add(reason, batch, span);
        }
    }
    let stable = options
        .stable_sessions
        .unwrap_or(options.confidence.min_sessions)
        .max(1);
    let (envelopes, agents) = agents
        .into_values()
        .map(|learning| learning.finish(options, stable))
        .unzip();
    Learned {
        envelopes,
        report: LearnReport {
            files,
            spans: batch.spans.len() as u64,
            agents,
            skipped: skipped.into_list(),
        },
    }
}

/// Records what span `i` shows about its agent; `Err` says why a GenAI span could not be used.
fn observe(
    trace: &Trace<'_>,
    i: usize,
    session: usize,
    learning: &mut Learning,
) -> Result<(), &'static str> {
    let span = &trace.spans[i];
    if let Some(index) = text(span, DATA_SOURCE) {
        let sources = context_sources(span);
        if sources.is_empty() {
            learning
                .context_indexes
                .entry(index.to_string())
                .or_default()
                .record(session);
        }
        for source in sources {
            learning
                .context_sources
                .entry((index.to_string(), source))
                .or_default()
                .record(session);
        }
    }
    match text(span, OPERATION) {
        Some("execute_tool") => {
            let tool = text(span, TOOL_NAME)
                .or_else(|| span.name.strip_prefix("execute_tool "))
                .or_else(|| span.name.strip_prefix("tools/call "))
                .ok_or("execute_tool span without gen_ai.tool.name")?;
            let server = text(span, MCP_SERVER_NAME)
                .or_else(|| text(span, SERVER_ADDRESS))
                .ok_or("execute_tool span without mcp.server.name or server.address (an in-process tool no gateway sees)")?;
            learning
                .tools
                .entry((server.to_string(), tool.to_string()))
                .or_default()
                .record(session);
        }
        Some("invoke_agent") => {
            let child = agent_name(span)
                .ok_or("invoke_agent span without gen_ai.agent.name or gen_ai.agent.id")?;
            let Some(parent) = trace
                .ancestors(i)
                .find(|&a| text(&trace.spans[a], OPERATION) == Some("invoke_agent"))
            else {
                return Ok(()); // the agent itself, entered at the top of its trace
            };
            let parent_span = &trace.spans[parent];
            let parent_name = agent_name(parent_span)
                .ok_or("invoke_agent span whose calling invoke_agent span names no agent")?;
            if parent_name == child {
                return Ok(());
            }
            let remote = span.kind == SpanKind::Client || parent_span.resource != span.resource;
            let mechanism = if remote { "remote" } else { "in-process" };
            learning
                .delegation
                .entry((mechanism.to_string(), child.to_string()))
                .or_default()
                .record(session);
        }
        _ => {}
    }
    Ok(())
}

fn text<'s>(span: &'s Span, key: &str) -> Option<&'s str> {
    span.attributes
        .get(key)
        .and_then(AnyValue::as_str)
        .filter(|s| !s.trim().is_empty())
}

fn agent_name(span: &Span) -> Option<&str> {
    text(span, AGENT_NAME).or_else(|| text(span, AGENT_ID))
}

fn context_sources(span: &Span) -> Vec<String> {
    match span.attributes.get(CONTEXT_SOURCES) {
        Some(AnyValue::String(s)) if !s.trim().is_empty() => vec![s.clone()],
        Some(AnyValue::Array(items)) => items
            .iter()
            .filter_map(AnyValue::as_str)
            .filter(|s| !s.trim().is_empty())
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

fn agent_of(resource: &Resource, options: &LearnOptions) -> Result<AgentRef, String> {
    if let Some(agent) = &options.agent {
        return Ok(agent.clone());
    }
    let attr = |key: &str| {
        resource
            .attributes
            .get(key)
            .and_then(AnyValue::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let cluster = attr("k8s.cluster.name")
        .or_else(|| options.cluster.clone())
        .ok_or("resource without k8s.cluster.name (pass --cluster)")?;
    let namespace = attr("k8s.namespace.name").ok_or("resource without k8s.namespace.name")?;
    let workload = WORKLOAD_KINDS
        .iter()
        .find_map(|(key, kind)| attr(key).map(|name| format!("{kind}/{name}")))
        .ok_or("resource without a workload (k8s.deployment.name, k8s.statefulset.name, …)")?;
    let service_account = attr("k8s.serviceaccount.name")
        .or_else(|| options.service_account.clone())
        .ok_or("resource without k8s.serviceaccount.name (pass --service-account)")?;
    let agent = AgentRef {
        cluster,
        namespace,
        workload,
        service_account,
    };
    agent
        .validate()
        .map_err(|e| format!("resource names an invalid agent: {e}"))?;
    Ok(agent)
}

/// The spans of all files indexed by trace and span id.
struct Trace<'b> {
    spans: &'b [Span],
    by_id: HashMap<(&'b str, &'b str), usize>,
}

impl<'b> Trace<'b> {
    fn new(batch: &'b Batch) -> Self {
        let mut by_id = HashMap::with_capacity(batch.spans.len());
        for (i, span) in batch.spans.iter().enumerate() {
            by_id
                .entry((span.trace_id.as_str(), span.span_id.as_str()))
                .or_insert(i);
        }
        Self {
            spans: &batch.spans,
            by_id,
        }
    }

    /// Whether span `i` is the first with its ids (the same export read twice counts once).
    fn is_first(&self, i: usize) -> bool {
        let span = &self.spans[i];
        self.by_id
            .get(&(span.trace_id.as_str(), span.span_id.as_str()))
            == Some(&i)
    }

    /// Ancestors of span `i`, nearest first; stops at a missing parent or a cycle.
    fn ancestors(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        let mut current = i;
        let mut steps = 0;
        std::iter::from_fn(move || {
            steps += 1;
            if steps > self.spans.len() {
                return None;
            }
            let span = &self.spans[current];
            let parent = span.parent_span_id.as_deref()?;
            current = *self.by_id.get(&(span.trace_id.as_str(), parent))?;
            Some(current)
        })
    }

    fn session_of(&self, i: usize) -> String {
        let lineage = std::iter::once(i).chain(self.ancestors(i));
        let mut conversation = None;
        for a in lineage {
            let span = &self.spans[a];
            if let Some(id) = text(span, MCP_SESSION) {
                return format!("mcp:{id}");
            }
            if conversation.is_none() {
                conversation = text(span, CONVERSATION);
            }
        }
        match conversation {
            Some(id) => format!("conversation:{id}"),
            None => format!("trace:{}", self.spans[i].trace_id),
        }
    }
}

#[derive(Default)]
struct SkipLog {
    by_reason: BTreeMap<String, (u64, String)>,
}

impl SkipLog {
    fn add(&mut self, reason: &str, batch: &Batch, span: &Span) {
        let entry = self.by_reason.entry(reason.to_string()).or_insert_with(|| {
            let file = &batch.resources[span.resource].file;
            (0, format!("{}: {}", file.display(), span.field))
        });
        entry.0 += 1;
    }

    fn into_list(self) -> Vec<Skipped> {
        self.by_reason
            .into_iter()
            .map(|(reason, (spans, first))| Skipped {
                reason,
                spans,
                first,
            })
            .collect()
    }
}

/// What one agent was seen doing.
struct Learning {
    agent: AgentRef,
    spans: u64,
    /// Session id → index; start time (earliest span) per index.
    session_ids: HashMap<String, usize>,
    session_starts: Vec<(u64, String)>,
    /// (server, tool)
    tools: BTreeMap<(String, String), Stats>,
    /// index → whole-index retrievals
    context_indexes: BTreeMap<String, Stats>,
    /// (index, source)
    context_sources: BTreeMap<(String, String), Stats>,
    /// (mechanism, to)
    delegation: BTreeMap<(String, String), Stats>,
}

/// One dimension's entries after the closure rule, with when each first appeared.
struct Entries<T> {
    observed: Vec<Observed<T>>,
    first_seen: Vec<usize>,
}

impl Learning {
    fn new(agent: AgentRef) -> Self {
        Self {
            agent,
            spans: 0,
            session_ids: HashMap::new(),
            session_starts: Vec::new(),
            tools: BTreeMap::new(),
            context_indexes: BTreeMap::new(),
            context_sources: BTreeMap::new(),
            delegation: BTreeMap::new(),
        }
    }

    fn session(&mut self, id: &str, start: u64) -> usize {
        if let Some(&i) = self.session_ids.get(id) {
            let earliest = &mut self.session_starts[i].0;
            *earliest = (*earliest).min(start);
            return i;
        }
        let i = self.session_starts.len();
        self.session_ids.insert(id.to_string(), i);
        self.session_starts.push((start, id.to_string()));
        i
    }

    fn finish(self, options: &LearnOptions, stable: u64) -> (Envelope, AgentReport) {
        // rank[session] = its position in time order (ties by id, for determinism).
        let mut order: Vec<usize> = (0..self.session_starts.len()).collect();
        order.sort_by(|&a, &b| self.session_starts[a].cmp(&self.session_starts[b]));
        let mut rank = vec![0; order.len()];
        for (position, &session) in order.iter().enumerate() {
            rank[session] = position;
        }
        let tools = to_entries(generalise(&self.tools), &rank, &|server, tool| ToolUse {
            server,
            tool,
        });
        let mut context = to_entries(
            generalise(&self.context_sources),
            &rank,
            &|index, source| ContextUse {
                index,
                source: Some(source),
            },
        );
        // Whole-index retrievals: one group, the index itself is the value generalised.
        let whole: BTreeMap<(String, String), Stats> = self
            .context_indexes
            .into_iter()
            .map(|(index, stats)| ((String::new(), index), stats))
            .collect();
        let whole = to_entries(generalise(&whole), &rank, &|_, index| ContextUse {
            index,
            source: None,
        });
        context.observed.extend(whole.observed);
        context.first_seen.extend(whole.first_seen);
        let delegation = to_entries(generalise(&self.delegation), &rank, &|mechanism, to| {
            DelegationEdge {
                to,
                mechanism: Some(mechanism),
            }
        });

        let sessions = self.session_starts.len() as u64;
        let newest = [
            (&tools.first_seen, Dimension::Tools),
            (&context.first_seen, Dimension::Context),
            (&delegation.first_seen, Dimension::Delegation),
        ]
        .into_iter()
        .flat_map(|(firsts, dim)| firsts.iter().map(move |f| (*f, dim)))
        .max_by_key(|(f, _)| *f);
        let (status, reason) = match newest {
            None => (
                EnvelopeStatus::Learning,
                "no tool, context or delegation behaviour observed".to_string(),
            ),
            Some(_) if sessions <= stable => (
                EnvelopeStatus::Learning,
                format!("{sessions} session(s); converging needs more than {stable} with no new behaviour in the last {stable}"),
            ),
            Some((first, dim)) if first as u64 >= sessions - stable => (
                EnvelopeStatus::Learning,
                format!("new {dim} behaviour in session {} of {sessions}, within the last {stable}", first + 1),
            ),
            Some(_) => (
                EnvelopeStatus::Converged,
                format!("no new behaviour in the last {stable} of {sessions} sessions"),
            ),
        };

        let confidence = options.confidence;
        let mut tail = Vec::new();
        let mut permitted = 0;
        let mut tally =
            |dimension: Dimension, closure: Closure, count: u64, seen: u64, entry: String| {
                if count >= confidence.min_count && seen >= confidence.min_sessions {
                    permitted += 1;
                } else {
                    tail.push(TailEntry {
                        dimension,
                        entry,
                        closure,
                        count,
                        sessions: seen,
                    });
                }
            };
        for o in &tools.observed {
            tally(
                Dimension::Tools,
                o.closure,
                o.count,
                o.sessions,
                format!("tool {} on {}", o.value.tool, o.value.server),
            );
        }
        for o in &context.observed {
            let entry = match &o.value.source {
                Some(s) => format!("source {s} in index {}", o.value.index),
                None => format!("index {}", o.value.index),
            };
            tally(Dimension::Context, o.closure, o.count, o.sessions, entry);
        }
        for o in &delegation.observed {
            let mechanism = o.value.mechanism.as_deref().unwrap_or("unknown");
            tally(
                Dimension::Delegation,
                o.closure,
                o.count,
                o.sessions,
                format!("delegation to {} ({mechanism})", o.value.to),
            );
        }

        let key = self.agent.key();
        let name = self
            .agent
            .workload
            .split_once('/')
            .map_or(self.agent.workload.as_str(), |(_, n)| n)
            .to_string();
        let envelope = Envelope {
            api_version: API_VERSION.to_string(),
            kind: "Envelope".to_string(),
            metadata: Metadata {
                name,
                namespace: Some(self.agent.namespace.clone()),
            },
            spec: EnvelopeSpec {
                agent: self.agent,
                version: options.version,
                status,
                confidence,
                identity: Default::default(),
                tools: ObservedList {
                    observed: tools.observed,
                },
                context: ObservedList {
                    observed: context.observed,
                },
                delegation: ObservedList {
                    observed: delegation.observed,
                },
                network: Default::default(),
                process: Default::default(),
            },
        };
        let report = AgentReport {
            agent: key,
            spans: self.spans,
            sessions,
            status,
            reason,
            permitted,
            tail,
        };
        (envelope, report)
    }
}

fn to_entries<T>(
    generalised: Vec<Generalised<String>>,
    rank: &[usize],
    make: &dyn Fn(String, String) -> T,
) -> Entries<T> {
    let mut entries = Entries {
        observed: Vec::with_capacity(generalised.len()),
        first_seen: Vec::with_capacity(generalised.len()),
    };
    for g in generalised {
        let first = g.stats.sessions.iter().map(|&s| rank[s]).min().unwrap_or(0);
        entries.first_seen.push(first);
        entries.observed.push(Observed {
            value: make(g.group, g.value),
            closure: g.closure,
            count: g.stats.count,
            sessions: g.stats.sessions.len() as u64,
        });
    }
    entries
}

impl fmt::Display for LearnReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} span(s) from {} file(s)", self.spans, self.files)?;
        for a in &self.agents {
            let status = match a.status {
                EnvelopeStatus::Learning => "learning",
                EnvelopeStatus::Converged => "converged",
                EnvelopeStatus::Frozen => "frozen",
            };
            writeln!(
                f,
                "{}: {status} ({}); {} span(s), {} session(s), {} permitted, {} in the tail",
                a.agent,
                a.reason,
                a.spans,
                a.sessions,
                a.permitted,
                a.tail.len()
            )?;
            for t in &a.tail {
                writeln!(
                    f,
                    "  tail {}: {} — {} time(s) in {} session(s)",
                    t.dimension, t.entry, t.count, t.sessions
                )?;
            }
        }
        for s in &self.skipped {
            writeln!(
                f,
                "skipped {} span(s): {} (first at {})",
                s.spans, s.reason, s.first
            )?;
        }
        Ok(())
    }
}
