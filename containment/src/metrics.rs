//! Prometheus metrics for what an operator alerts on: actions failing, verifications failing,
//! escalations piling up, the budget being spent.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub alerts: IntCounterVec,
    pub plans: IntCounterVec,
    pub actions: IntCounterVec,
    pub escalations: IntCounter,
    pub budget_exhausted: IntCounter,
    pub open_incidents: IntGauge,
    pub awaiting_approval: IntGauge,
    pub decision_seconds: Histogram,
    pub verify_seconds: Histogram,
    pub plane_faults: IntCounterVec,
    pub replans: IntCounter,
    /// Calls refused at an enforcement point Firebreak owns (the gateway, the shims).
    pub refused_calls: IntCounter,
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new_custom(Some("firebreak".into()), None)?;
        let alerts = IntCounterVec::new(
            Opts::new(
                "alerts_total",
                "Alerts by outcome (accepted, deduplicated, rejected).",
            ),
            &["outcome"],
        )?;
        let plans =
            IntCounterVec::new(Opts::new("plans_total", "Plans made, by mode."), &["mode"])?;
        let actions = IntCounterVec::new(
            Opts::new(
                "actions_total",
                "Containment actions by kind and result (applied, contained, verify-failed, failed, reverted, expired).",
            ),
            &["kind", "result"],
        )?;
        let escalations = IntCounter::new("escalations_total", "Incidents escalated to a human.")?;
        let budget_exhausted = IntCounter::new(
            "budget_exhausted_total",
            "Automatic actions held for approval because the blast-radius budget was spent.",
        )?;
        let open_incidents = IntGauge::new("open_incidents", "Incidents not yet closed.")?;
        let decision_seconds = Histogram::with_opts(
            HistogramOpts::new("decision_seconds", "Alert bytes to plan, seconds.")
                .buckets(vec![1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 1e-2, 0.1, 1.0, 5.0]),
        )?;
        let awaiting_approval = IntGauge::new(
            "awaiting_approval",
            "Plans waiting for a human to approve them.",
        )?;
        let verify_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "verify_seconds",
                "Applied to verified at the enforcement point, seconds.",
            )
            .buckets(vec![0.001, 0.01, 0.1, 1.0, 5.0, 30.0, 60.0, 300.0, 900.0]),
        )?;
        let plane_faults = IntCounterVec::new(
            Opts::new(
                "plane_faults_total",
                "Failed control-plane calls by plane and fault kind (transient, conflict, denied, unsupported, invalid).",
            ),
            &["plane", "kind"],
        )?;
        let replans = IntCounter::new(
            "replans_total",
            "Plans made again because the target changed while Firebreak acted.",
        )?;
        let refused_calls = IntCounter::new(
            "refused_calls_total",
            "Calls refused at an enforcement point Firebreak owns (gateway, orchestrator shims), each journaled as call-refused.",
        )?;
        registry.register(Box::new(refused_calls.clone()))?;
        registry.register(Box::new(awaiting_approval.clone()))?;
        registry.register(Box::new(verify_seconds.clone()))?;
        registry.register(Box::new(plane_faults.clone()))?;
        registry.register(Box::new(replans.clone()))?;
        registry.register(Box::new(alerts.clone()))?;
        registry.register(Box::new(plans.clone()))?;
        registry.register(Box::new(actions.clone()))?;
        registry.register(Box::new(escalations.clone()))?;
        registry.register(Box::new(budget_exhausted.clone()))?;
        registry.register(Box::new(open_incidents.clone()))?;
        registry.register(Box::new(decision_seconds.clone()))?;
        Ok(Metrics {
            registry,
            alerts,
            plans,
            actions,
            escalations,
            budget_exhausted,
            open_incidents,
            awaiting_approval,
            decision_seconds,
            verify_seconds,
            plane_faults,
            replans,
            refused_calls,
        })
    }

    /// The text exposition format served at `/metrics`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let encoder = prometheus::TextEncoder::new();
        if let Err(e) = encoder.encode_utf8(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "cannot encode metrics");
        }
        out
    }
}
