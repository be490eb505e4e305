//! Text output for people at 2:47 AM: what will be revoked, what keeps working, and why.

use std::fmt::Write;

use firebreak_containment::envelope::Envelope;
use firebreak_containment::incident::{Incident, PlanStatus};
use firebreak_containment::plan::{Candidate, Plan};

pub fn status(s: PlanStatus) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

pub fn plan(p: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "incident   {}   plan {}", p.incident, p.id);
    let _ = writeln!(
        out,
        "agent      {}   envelope v{}",
        p.agent.key(),
        p.envelope_version
            .map(|v| v.to_string())
            .unwrap_or_else(|| "?".into())
    );
    let _ = writeln!(
        out,
        "breach     {}: {}",
        p.dimension(),
        p.parameter.describe()
    );
    let _ = writeln!(out, "mode       {} ({})", p.mode.as_str(), p.mode_reason);
    match &p.chosen {
        Some(c) => {
            let _ = writeln!(
                out,
                "\nchosen     {}   blast radius {}",
                c.kind, c.blast_radius.broken
            );
            chosen_detail(&mut out, c);
        }
        None => {
            let _ = writeln!(out, "\nchosen     nothing: no candidate blocks the breach");
        }
    }
    let _ = writeln!(out, "\ncandidates (narrowest first)");
    for c in &p.candidates {
        let verdict = match &c.rejected {
            None => "CHOSEN".to_string(),
            Some(r) => format!("rejected: {r}"),
        };
        let _ = writeln!(
            out,
            "  {:<28} blast {:<3} {}",
            c.kind.as_str(),
            c.blast_radius.broken,
            verdict
        );
    }
    if let Some(e) = &p.escalation {
        let _ = writeln!(out, "\nESCALATED  {e}");
    }
    if let Some(ttl) = p.ttl_seconds {
        let _ = writeln!(
            out,
            "ttl        {}",
            humantime::format_duration(std::time::Duration::from_secs(ttl))
        );
    }
    let _ = writeln!(out, "plan hash  {}", p.hash);
    out
}

fn chosen_detail(out: &mut String, c: &Candidate) {
    let _ = writeln!(out, "  target       {}", c.target);
    let _ = writeln!(out, "  revokes      {}", c.granularity);
    if c.blast_radius.items.is_empty() {
        let _ = writeln!(out, "  keeps working everything in the envelope");
    } else {
        let _ = writeln!(out, "  breaks       {}", c.blast_radius.items.join("; "));
    }
    for u in &c.blast_radius.undetermined {
        let _ = writeln!(out, "  undetermined {u}");
    }
    let _ = writeln!(out, "  inverse      {}", c.inverse);
    let _ = writeln!(out, "  verify       {}", c.verify);
    for n in &c.notes {
        let _ = writeln!(out, "  note         {n}");
    }
}

pub fn incident_list(incidents: &[Incident]) -> String {
    if incidents.is_empty() {
        return "no incidents\n".into();
    }
    let mut out = String::new();
    for i in incidents {
        let _ = writeln!(
            out,
            "{}  {:<17} {:<10} {}  {}",
            i.id,
            status(i.status()),
            i.dimension.as_str(),
            i.agent.key(),
            i.updated_at.format("%Y-%m-%dT%H:%M:%SZ")
        );
    }
    out
}

pub fn incident(i: &Incident) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "incident {}  status {}", i.id, status(i.status()));
    let alerts: Vec<&str> = i.alerts.iter().map(|a| a.id.as_str()).collect();
    let _ = writeln!(out, "alerts   {}", alerts.join(", "));
    for e in &i.escalations {
        let _ = writeln!(out, "escalated: {e}");
    }
    for p in &i.plans {
        let _ = writeln!(
            out,
            "\n== {}: {}{}{}",
            p.plan.id,
            status(p.status()),
            p.approved_by
                .as_ref()
                .map(|b| format!(", approved by {b}"))
                .unwrap_or_default(),
            if p.duplicates > 0 {
                format!(", {} duplicate alert(s)", p.duplicates)
            } else {
                String::new()
            }
        );
        if let Some(d) = &p.detail {
            let _ = writeln!(out, "   {d}");
        }
        out.push_str(&plan(&p.plan));
    }
    out
}

pub fn envelope(e: &Envelope) -> String {
    let mut out = String::new();
    let spec = &e.spec;
    let _ = writeln!(
        out,
        "{}  v{}  {}  (permitted: ≥{} occurrences in ≥{} sessions)",
        e.agent_key(),
        spec.version,
        serde_json::to_value(spec.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        spec.confidence.min_count,
        spec.confidence.min_sessions
    );
    if !spec.identity.principals.is_empty() {
        let _ = writeln!(out, "  principals  {}", spec.identity.principals.join(", "));
    }
    let identity = e.identity();
    for entry in &identity.permitted {
        let _ = writeln!(
            out,
            "  identity    {} on {}  ({}×, {} sessions)",
            entry.value.action, entry.value.resource, entry.count, entry.sessions
        );
    }
    for entry in &identity.tail {
        let _ = writeln!(
            out,
            "  tail        {} on {}  ({}×, {} sessions: below threshold)",
            entry.value.action, entry.value.resource, entry.count, entry.sessions
        );
    }
    let tools = e.tools();
    for entry in &tools.permitted {
        let _ = writeln!(
            out,
            "  tools       {} / {}  ({}×)",
            entry.value.server, entry.value.tool, entry.count
        );
    }
    for entry in &tools.tail {
        let _ = writeln!(
            out,
            "  tail        {} / {}  ({}×: below threshold)",
            entry.value.server, entry.value.tool, entry.count
        );
    }
    out
}
