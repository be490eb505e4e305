//! Every control plane the daemon can run, each registered under its config key
//! (docs/ARCHITECTURE.md §Planes).

use std::sync::Arc;

use anyhow::Context;
use firebreak_aws::{AwsConfig, AwsIam};
use firebreak_azure::AzureRbac;
use firebreak_containment::alert::Parameter;
use firebreak_containment::plane::{KindError, Kinds, Plane, Planes, Route};
use firebreak_containment::EnvelopeStore;
use firebreak_context::{side_by_side, Milvus, PgVector};
use firebreak_delegation::{DelegationPlane, Feed, FeedAuth, FeedHold, Mirrored};
use firebreak_ebpf::EgressPlane;
use firebreak_gcp::GcpIam;
use firebreak_k8s::K8sRbac;
use firebreak_tools::{GatewayConfig, Policy, ToolsPlane};

use crate::config::Config;

/// Calls `$m!` with every plane type, once: the place a new plane is listed.
macro_rules! for_each_plane {
    ($m:ident) => {
        $m!(
            AwsIam,
            GcpIam,
            AzureRbac,
            K8sRbac,
            PgVector,
            Milvus,
            ToolsPlane,
            DelegationPlane,
            EgressPlane
        )
    };
}

/// Every kind any plane declares, whether configured or not: runbooks are checked against it.
pub fn all_kinds() -> Result<Kinds, KindError> {
    let mut kinds = Kinds::default();
    macro_rules! declare {
        ($($plane:ty),*) => { $( kinds.declare(<$plane as Plane>::KINDS)?; )* };
    }
    for_each_plane!(declare);
    kinds.check_ladders()?;
    Ok(kinds)
}

/// Who acts: the running daemon, or a command line working on the data dir without it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Daemon,
    /// Planes whose enforcement lives in the daemon's memory (the gateway, the feed) are left
    /// out: a process that exits cannot enforce them.
    Offline,
}

/// The configured planes, and the in-process enforcement points they share with the daemon.
pub struct Built {
    pub planes: Planes,
    pub gateway: Option<(GatewayConfig, Arc<Policy>)>,
    pub feed: Option<(Feed, FeedAuth)>,
    /// Planes configured but left out because they enforce only in the running daemon.
    pub daemon_only: Vec<LeftOut>,
}

/// A configured plane an offline engine leaves out, and the alerts it would have handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeftOut {
    pub key: &'static str,
    pub route: Route,
}

impl LeftOut {
    fn of<P: Plane>() -> LeftOut {
        LeftOut {
            key: P::KEY,
            route: P::ROUTE,
        }
    }

    /// Refuses to act offline on a breach only the left-out plane can contain.
    pub fn refuse(left_out: &[LeftOut], parameter: &Parameter) -> Result<(), OfflineRefusal> {
        let route = Route::of(parameter);
        match left_out.iter().find(|l| Some(l.route) == route) {
            Some(l) => Err(OfflineRefusal { plane: l.key }),
            None => Ok(()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error(
    "--offline cannot act on this breach: its plane ({plane}) enforces only inside the running \
     daemon, so a command that exits would leave nothing in force; start `firebreak serve` and \
     run the command without --offline"
)]
pub struct OfflineRefusal {
    pub plane: &'static str,
}

/// `plane`, mirrored into the policy feed when there is one, so shims see its blocks too.
fn register_mirrored<P>(planes: &mut Planes, plane: P, feed: Option<&Feed>) -> anyhow::Result<()>
where
    P: Plane,
    P::Spec: FeedHold,
{
    match feed {
        Some(feed) => planes.register(Mirrored::new(plane, feed.clone()))?,
        None => planes.register(plane)?,
    }
    Ok(())
}

/// Builds every configured plane. `install` lets planes that own schema (the context store's
/// RLS) install it: only `serve` does, so plans and dry runs stay free of writes.
pub async fn build(
    config: &Config,
    envelopes: &EnvelopeStore,
    install: bool,
    mode: Mode,
) -> anyhow::Result<Built> {
    let mut planes = Planes::default();
    let mut daemon_only = Vec::new();
    let in_daemon = mode == Mode::Daemon;
    let feed = match &config.feed {
        Some(feed_config) if in_daemon => {
            let auth = FeedAuth::new(feed_config).context("feed.tokens")?;
            let feed = Feed::default();
            planes.register(DelegationPlane::new(feed.clone(), envelopes))?;
            Some((feed, auth))
        }
        Some(_) => {
            daemon_only.push(LeftOut::of::<DelegationPlane>());
            None
        }
        None => None,
    };
    let feed_handle = feed.as_ref().map(|(f, _)| f);
    if config.aws.enabled {
        let aws = AwsIam::new(&AwsConfig {
            region: config.aws.region.clone(),
            endpoint: config.aws.endpoint.clone(),
            verify_deadline: config.aws.verify_deadline,
        })
        .await;
        planes.register(match &config.aws.eks {
            Some(eks) => aws.with_eks(eks),
            None => aws,
        })?;
    }
    if let Some(gcp) = &config.gcp {
        planes.register(GcpIam::new(gcp.clone()).await.context(
            "cannot set up the GCP IAM plane (gcp:); it uses Application Default Credentials",
        )?)?;
    }
    if let Some(azure) = &config.azure {
        planes.register(
            AzureRbac::new(azure.clone())
                .await
                .context("cannot set up the Azure RBAC plane (azure:)")?,
        )?;
    }
    if let (Some(pg), Some(milvus)) = (&config.context.postgres, &config.context.milvus) {
        side_by_side::check(pg, milvus)?;
    }
    if let Some(pg) = &config.context.postgres {
        let plane = PgVector::new(pg.clone())?;
        if install {
            plane
                .install()
                .await
                .context("cannot install the context store's row-level security")?;
        }
        planes.register(plane)?;
    }
    if let Some(milvus) = &config.context.milvus {
        planes.register(
            Milvus::new(milvus.clone())
                .await
                .context("cannot set up the Milvus plane (context.milvus:)")?,
        )?;
    }
    if let Some(k8s) = &config.k8s {
        planes.register(
            K8sRbac::new(k8s.clone())
                .await
                .context("cannot set up the Kubernetes RBAC plane (k8s:)")?,
        )?;
    }
    if let Some(network) = &config.network {
        // Only the kernel's refusal is about privileges; a config mistake says what to fix.
        let plane = EgressPlane::load(network).map_err(|e| match e {
            firebreak_ebpf::EgressError::Kernel { .. } => anyhow::Error::new(e).context(
                "cannot load the eBPF egress programs (network:); the node agent needs root (CAP_BPF, CAP_NET_ADMIN)",
            ),
            e => anyhow::Error::new(e).context("cannot set up the eBPF egress plane (network:)"),
        })?;
        register_mirrored(&mut planes, plane, feed_handle)?;
    }
    let gateway = match config.gateway.clone() {
        Some(gw) if in_daemon => {
            let policy = Arc::new(Policy::default());
            policy.set_envelopes(envelopes, gw.envelope_only);
            register_mirrored(
                &mut planes,
                ToolsPlane::new(policy.clone(), gw.upstreams.keys().cloned()),
                feed_handle,
            )?;
            Some((gw, policy))
        }
        Some(_) => {
            daemon_only.push(LeftOut::of::<ToolsPlane>());
            None
        }
        None => None,
    };
    Ok(Built {
        planes,
        gateway,
        feed,
        daemon_only,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ladder_of_every_plane_is_well_formed() {
        let kinds = all_kinds().expect("ladders");
        for name in [
            "aws.inline_deny",
            "tools.revoke_tool",
            "delegation.pause_graph",
            "network.block_egress",
            "context.quarantine_source",
        ] {
            assert!(kinds.get(name).is_some(), "{name} is declared");
        }
    }
}
