//! Connection counters, so an operator can see an attack (evictions, refusals) on a dashboard
//! instead of inferring it from slow probes.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use crate::conn::Close;

/// Counters for one listener. Build with [`Metrics::new`], [`Metrics::register`] them
/// where the rest of the process's metrics live (a registry whose prefix is `firebreak`, so
/// they read `firebreak_http_connections_*`), and pass to
/// [`serve_with_metrics`](crate::serve_with_metrics).
#[derive(Clone)]
pub struct Metrics {
    /// Connections open now.
    pub open: IntGauge,
    /// Connections accepted and served.
    pub accepted: IntCounter,
    /// Connections closed at once because every slot had a request in flight.
    pub refused: IntCounter,
    /// Connections the server closed, by `reason`: `header_timeout`, `idle`, `evicted`.
    pub closed: IntCounterVec,
}

impl Metrics {
    /// `listener` becomes a constant label (e.g. `api`, `gateway`) so several servers in one
    /// process can register side by side.
    pub fn new(listener: &str) -> Result<Metrics, prometheus::Error> {
        let opts = |name: &str, help: &str| {
            Opts::new(name, help).const_label("listener", listener.to_string())
        };
        Ok(Metrics {
            open: IntGauge::with_opts(opts(
                "http_connections_open",
                "Connections open now.",
            ))?,
            accepted: IntCounter::with_opts(opts(
                "http_connections_accepted_total",
                "Connections accepted and served.",
            ))?,
            refused: IntCounter::with_opts(opts(
                "http_connections_refused_total",
                "Connections closed at once: at maxConnections with every connection busy.",
            ))?,
            closed: IntCounterVec::new(
                opts(
                    "http_connections_closed_total",
                    "Connections the server closed: header_timeout, idle, or evicted (to make room at maxConnections).",
                ),
                &["reason"],
            )?,
        })
    }

    pub fn register(&self, registry: &Registry) -> Result<(), prometheus::Error> {
        registry.register(Box::new(self.open.clone()))?;
        registry.register(Box::new(self.accepted.clone()))?;
        registry.register(Box::new(self.refused.clone()))?;
        registry.register(Box::new(self.closed.clone()))?;
        Ok(())
    }

    pub(crate) fn closed(&self, why: Close) {
        self.closed.with_label_values(&[why.label()]).inc();
    }
}
