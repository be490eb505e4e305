//! [`Mirrored`]: a plane decorator that also records the tools and network planes'
//! containments in the feed, so shims and sidecars reading only the feed see them too.
//!
//! The inner plane's typed spec says which feed hold it implies ([`FeedHold`]): nothing is
//! re-declared or decoded here.

use std::time::Duration;

use async_trait::async_trait;
use firebreak_containment::agent::AgentKey;
use firebreak_containment::ids::IncidentId;
use firebreak_containment::plane::{
    Change, Check, KindSpec, Observation, Outcome, PlanInput, Plane, PlaneError, Route,
    Verification,
};
use firebreak_ebpf::EgressSpec;
use firebreak_tools::{Scope as ToolScope, ToolsSpec};

use crate::feed::{Feed, Rule};

/// One feed hold: `rule` on `agent`'s document, held by `incident`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    pub agent: AgentKey,
    pub rule: Rule,
    pub incident: IncidentId,
}

impl Mirror {
    fn put(&self, feed: &Feed) -> bool {
        feed.set(&self.agent, &self.rule, self.incident.as_str())
    }

    fn release(&self, feed: &Feed) -> bool {
        feed.clear(&self.agent, &self.rule, self.incident.as_str())
    }

    fn held(&self, feed: &Feed) -> bool {
        feed.holds(&self.agent, &self.rule, self.incident.as_str())
    }
}

/// A spec whose containment the feed records as well (`None`: nothing to record).
pub trait FeedHold {
    fn feed_hold(&self) -> Option<Mirror>;
}

impl FeedHold for ToolsSpec {
    fn feed_hold(&self) -> Option<Mirror> {
        let r = &self.revocation;
        let every = || "*".to_string();
        let (server, tool) = match &r.scope {
            ToolScope::Tool { server, tool } => (server.clone(), tool.clone()),
            ToolScope::Server { server } => (server.clone(), every()),
            ToolScope::All => (every(), every()),
        };
        Some(Mirror {
            agent: r.agent.clone(),
            rule: Rule::RevokedTool { server, tool },
            incident: r.incident.clone(),
        })
    }
}

impl FeedHold for EgressSpec {
    /// `network.block_egress` only: the feed has no rule for a whole workload cut off.
    fn feed_hold(&self) -> Option<Mirror> {
        (self.scope == firebreak_ebpf::Scope::Destination).then(|| Mirror {
            agent: AgentKey(self.agent.clone()),
            rule: Rule::BlockedDestination {
                destination: self.destination.clone(),
                port: self.port,
            },
            incident: self.incident.clone(),
        })
    }
}

/// Wraps `inner`; a change also writes the feed, and a check also reads it.
pub struct Mirrored<P> {
    inner: P,
    feed: Feed,
}

impl<P: Plane> Mirrored<P> {
    pub fn new(inner: P, feed: Feed) -> Self {
        Self { inner, feed }
    }
}

#[async_trait]
impl<P> Plane for Mirrored<P>
where
    P: Plane,
    P::Spec: FeedHold,
{
    const KEY: &'static str = P::KEY;
    const ROUTE: Route = P::ROUTE;
    const KINDS: &'static [&'static KindSpec] = P::KINDS;
    const IN_PROCESS: bool = P::IN_PROCESS;
    type Spec = P::Spec;

    fn kind_of(spec: &P::Spec) -> &'static KindSpec {
        P::kind_of(spec)
    }

    fn handles(&self, input: &PlanInput<'_>) -> bool {
        self.inner.handles(input)
    }

    async fn observe(
        &self,
        input: &PlanInput<'_>,
    ) -> Result<Box<dyn Observation<P::Spec>>, PlaneError> {
        self.inner.observe(input).await
    }

    async fn change(&self, spec: &P::Spec, change: Change) -> Result<Outcome, PlaneError> {
        let outcome = self.inner.change(spec, change).await?;
        let Some(mirror) = spec.feed_hold() else {
            return Ok(outcome);
        };
        let (fed, verb) = match change {
            Change::Apply => (mirror.put(&self.feed), "recorded"),
            Change::Revert => (mirror.release(&self.feed), "released"),
        };
        Ok(Outcome {
            changed: outcome.changed || fed,
            detail: format!("{}; {verb} in the feed", outcome.detail),
        })
    }

    async fn check(&self, spec: &P::Spec, check: Check) -> Result<Verification, PlaneError> {
        let verification = self.inner.check(spec, check).await?;
        let Some(mirror) = spec.feed_hold() else {
            return Ok(verification);
        };
        let held = mirror.held(&self.feed);
        let wanted = check == Check::Applied;
        Ok(Verification::that(
            verification.ok && held == wanted,
            format!(
                "{}; feed {}",
                verification.detail,
                if held { "holds it" } else { "lacks it" }
            ),
        ))
    }

    fn verify_deadline(&self) -> Duration {
        self.inner.verify_deadline()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use firebreak_containment::ids::PlanId;
    use firebreak_containment::plane::Proposal;
    use firebreak_containment::{Alert, Envelope};
    use firebreak_ebpf::{BLOCK_EGRESS, ISOLATE_WORKLOAD};
    use firebreak_tools::{Policy, ToolsPlane};
    use serde_json::json;

    use super::*;

    fn input_for(parameter: serde_json::Value, dimension: &str) -> (Alert, Envelope) {
        let alert = Alert::from_json(
            json!({"id": "x", "source": "t", "time": "2026-11-22T05:00:00Z",
                "agent": {"cluster": "c", "namespace": "n", "workload": "Deployment/a", "serviceAccount": "a"},
                "dimension": dimension, "parameter": parameter,
                "tier": "attack-attempt", "severity": "critical"})
            .to_string()
            .as_bytes(),
        )
        .expect("alert");
        let envelope = Envelope::from_yaml(
            "apiVersion: firebreak.dev/v1alpha1\nkind: Envelope\nmetadata: {name: a}\nspec:\n  \
             agent: {cluster: c, namespace: n, workload: Deployment/a, serviceAccount: a}\n  \
             version: 1\n  status: converged\n",
        )
        .expect("envelope");
        (alert, envelope)
    }

    async fn proposals<P: Plane>(
        plane: &P,
        alert: &Alert,
        envelope: &Envelope,
    ) -> Vec<Proposal<P::Spec>> {
        let incident = IncidentId::from("inc-1");
        let input = PlanInput {
            incident: &incident,
            plan: &PlanId::nth(&incident, 1),
            alert,
            envelope,
        };
        plane
            .observe(&input)
            .await
            .expect("observe")
            .candidates(&input)
            .expect("candidates")
    }

    #[tokio::test]
    async fn the_real_tools_plane_is_mirrored_per_rung_and_released_on_revert() {
        let feed = Feed::default();
        let plane = Mirrored::new(
            ToolsPlane::new(Arc::new(Policy::default()), ["s1".to_string()]),
            feed.clone(),
        );
        let (alert, envelope) = input_for(json!({"server": "s1", "tool": "export"}), "tools");
        let agent = alert.agent.key();
        let rungs = proposals(&plane, &alert, &envelope).await;
        for (proposal, (server, tool)) in
            rungs
                .iter()
                .zip([("s1", "export"), ("s1", "*"), ("*", "*")])
        {
            let spec = &proposal.spec;
            let kind = Mirrored::<ToolsPlane>::kind_of(spec).name;
            assert!(
                plane
                    .change(spec, Change::Apply)
                    .await
                    .expect("apply")
                    .changed
            );
            assert!(
                !plane
                    .change(spec, Change::Apply)
                    .await
                    .expect("re-apply")
                    .changed
            );
            assert!(plane.check(spec, Check::Applied).await.expect("verify").ok);
            let doc = feed.document(&agent).expect("document");
            assert_eq!(
                (
                    doc.revoked_tools[0].server.as_str(),
                    doc.revoked_tools[0].tool.as_str()
                ),
                (server, tool),
                "{kind}"
            );
            assert!(!plane.check(spec, Check::Reverted).await.expect("verify").ok);
            assert!(
                plane
                    .change(spec, Change::Revert)
                    .await
                    .expect("revert")
                    .changed
            );
            assert!(plane.check(spec, Check::Reverted).await.expect("verify").ok);
            assert!(feed
                .document(&agent)
                .expect("document")
                .revoked_tools
                .is_empty());
        }
    }

    /// Stands in for the eBPF plane (attaching needs root and a cgroup): only its spec and its
    /// answers matter to the mirror.
    struct Egress;

    #[async_trait]
    impl Plane for Egress {
        const KEY: &'static str = "network";
        const ROUTE: Route = Route::Network;
        const KINDS: &'static [&'static KindSpec] = &[&BLOCK_EGRESS, &ISOLATE_WORKLOAD];
        type Spec = EgressSpec;
        fn kind_of(_: &EgressSpec) -> &'static KindSpec {
            &BLOCK_EGRESS
        }
        fn handles(&self, _: &PlanInput<'_>) -> bool {
            true
        }
        async fn observe(
            &self,
            _: &PlanInput<'_>,
        ) -> Result<Box<dyn Observation<EgressSpec>>, PlaneError> {
            Err(PlaneError::Unsupported {
                plane: "test egress",
                detail: "not planned here".into(),
            })
        }
        async fn change(&self, _: &EgressSpec, _: Change) -> Result<Outcome, PlaneError> {
            Ok(Outcome::unchanged("map entry as asked"))
        }
        async fn check(&self, _: &EgressSpec, _: Check) -> Result<Verification, PlaneError> {
            Ok(Verification::ok("probe connect as expected"))
        }
        fn verify_deadline(&self) -> Duration {
            Duration::from_secs(1)
        }
    }

    fn egress(scope: firebreak_ebpf::Scope) -> EgressSpec {
        serde_json::from_value(json!({
            "agent": "c/n/Deployment/a", "destination": "203.0.113.7", "port": 443,
            "scope": scope, "incident": "inc-9", "cgroups": [], "durablePolicy": ""
        }))
        .expect("egress spec")
    }

    #[tokio::test]
    async fn block_egress_is_recorded_with_its_port_and_released_on_revert() {
        let feed = Feed::default();
        let plane = Mirrored::new(Egress, feed.clone());
        let agent = AgentKey("c/n/Deployment/a".into());
        let spec = egress(firebreak_ebpf::Scope::Destination);
        assert!(!plane.check(&spec, Check::Applied).await.expect("verify").ok);
        assert!(
            plane
                .change(&spec, Change::Apply)
                .await
                .expect("apply")
                .changed,
            "the feed changed"
        );
        assert!(plane.check(&spec, Check::Applied).await.expect("verify").ok);
        let doc = feed.document(&agent).expect("document");
        assert_eq!(doc.blocked_destinations[0].port, Some(443));
        assert!(
            plane
                .change(&spec, Change::Revert)
                .await
                .expect("revert")
                .changed
        );
        assert!(
            plane
                .check(&spec, Check::Reverted)
                .await
                .expect("verify")
                .ok
        );
    }

    #[tokio::test]
    async fn isolating_a_whole_workload_leaves_the_feed_alone() {
        let feed = Feed::default();
        let plane = Mirrored::new(Egress, feed.clone());
        let version = feed.version();
        let spec = egress(firebreak_ebpf::Scope::Workload);
        assert!(
            !plane
                .change(&spec, Change::Apply)
                .await
                .expect("apply")
                .changed
        );
        assert_eq!(feed.version(), version, "nothing written to the feed");
    }
}
