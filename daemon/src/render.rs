//! Text output for people at 2:47 AM: what will be revoked, what keeps working, and why.

use std::fmt::Write;

use firebreak_containment::envelope::{Envelope, Observed, Split};
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

/// Every dimension the envelope holds: each entry permitted, then its tail (seen, not confident).
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
    dimension(&mut out, "identity", e.identity(), |u| {
        format!("{} on {}", u.action, u.resource)
    });
    dimension(&mut out, "tools", e.tools(), |u| {
        format!("{} / {}", u.server, u.tool)
    });
    dimension(&mut out, "context", e.context(), |u| match &u.source {
        Some(source) => format!("{} / {source}", u.index),
        None => format!("{} (whole index)", u.index),
    });
    dimension(&mut out, "delegation", e.delegation(), |u| {
        match &u.mechanism {
            Some(mechanism) => format!("to {} via {mechanism}", u.to),
            None => format!("to {}", u.to),
        }
    });
    dimension(&mut out, "network", e.network(), |u| match u.port {
        Some(port) => format!("{} port {port}", u.destination),
        None => format!("{} any port", u.destination),
    });
    dimension(&mut out, "process", e.process(), |u| {
        let named: Vec<String> = [
            ("exec", &u.exec),
            ("path", &u.path),
            ("syscall", &u.syscall),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.as_ref().map(|v| format!("{name} {v}")))
        .collect();
        if named.is_empty() {
            "(names no exec, path or syscall: matches nothing)".into()
        } else {
            named.join(" ")
        }
    });
    out
}

/// One dimension's lines: `name  value  (count×, sessions)`; tail lines say which dimension.
fn dimension<T>(
    out: &mut String,
    name: &str,
    split: Split<'_, T>,
    describe: impl Fn(&T) -> String,
) {
    for entry in &split.permitted {
        let _ = writeln!(
            out,
            "  {name:<11} {}  ({})",
            describe(&entry.value),
            confidence(entry)
        );
    }
    for entry in &split.tail {
        let _ = writeln!(
            out,
            "  tail        {name} {}  ({}: below threshold)",
            describe(&entry.value),
            confidence(entry)
        );
    }
}

fn confidence<T>(entry: &Observed<T>) -> String {
    let plural = if entry.sessions == 1 { "" } else { "s" };
    format!("{}×, {} session{plural}", entry.count, entry.sessions)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../config/examples/aws/envelope.yaml");

    #[test]
    fn envelope_show_renders_every_dimension_with_its_tail() {
        let yaml = format!(
            "{EXAMPLE}{}",
            r#"  context:
    observed:
      - {index: kb-payments, source: confluence/payments, closure: literal, count: 40, sessions: 9}
      - {index: kb-public, closure: literal, count: 12, sessions: 4}
      - {index: kb-hr, source: sharepoint/hr, closure: literal, count: 1, sessions: 1}
  delegation:
    observed:
      - {to: refund-agent, mechanism: a2a, closure: literal, count: 30, sessions: 8}
      - {to: audit-agent, closure: literal, count: 6, sessions: 3}
  network:
    observed:
      - {destination: api.stripe.com, port: 443, closure: literal, count: 700, sessions: 90}
      - {destination: 10.0.0.0/8, closure: structural, count: 50, sessions: 10}
      - {destination: pastebin.com, port: 443, closure: literal, count: 1, sessions: 1}
  process:
    observed:
      - {exec: /usr/bin/python3, closure: literal, count: 90, sessions: 30}
      - {path: /etc/ssl/certs/*, syscall: openat, closure: structural, count: 80, sessions: 30}
      - {exec: /bin/sh, closure: literal, count: 2, sessions: 2}
"#
        );
        let e = Envelope::from_yaml(&yaml).expect("valid envelope");
        assert_eq!(
            envelope(&e),
            "\
prod-eks/payments/Deployment/payment-agent  v7  converged  (permitted: ≥5 occurrences in ≥3 sessions)
  principals  arn:aws:iam::123456789012:role/payment-agent
  identity    s3:GetObject on arn:aws:s3:::invoices/*  (1840×, 212 sessions)
  identity    s3:PutObject on arn:aws:s3:::payment-receipts/*  (960×, 180 sessions)
  identity    dynamodb:GetItem on arn:aws:dynamodb:us-east-1:123456789012:table/ledger  (5200×, 230 sessions)
  tail        identity sqs:SendMessage on arn:aws:sqs:us-east-1:123456789012:payment-events  (2×, 1 session: below threshold)
  tools       payments-mcp / create_refund  (310×, 95 sessions)
  context     kb-payments / confluence/payments  (40×, 9 sessions)
  context     kb-public (whole index)  (12×, 4 sessions)
  tail        context kb-hr / sharepoint/hr  (1×, 1 session: below threshold)
  delegation  to refund-agent via a2a  (30×, 8 sessions)
  delegation  to audit-agent  (6×, 3 sessions)
  network     api.stripe.com port 443  (700×, 90 sessions)
  network     10.0.0.0/8 any port  (50×, 10 sessions)
  tail        network pastebin.com port 443  (1×, 1 session: below threshold)
  process     exec /usr/bin/python3  (90×, 30 sessions)
  process     path /etc/ssl/certs/* syscall openat  (80×, 30 sessions)
  tail        process exec /bin/sh  (2×, 2 sessions: below threshold)
"
        );
    }
}
