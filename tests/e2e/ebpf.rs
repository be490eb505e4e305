//! End-to-end tests of the eBPF egress plane against this kernel, as root, in real cgroups
//! (unique names under /sys/fs/cgroup/unified, removed after) with real TCP/UDP listeners on
//! loopback. Each test has its own pin directory under /sys/fs/bpf, so its maps are its own.
//!
//! Run via `./scripts/test` (or with the exports of `./scripts/test --env`). Without root every
//! test prints `SKIPPED <name>: …` and returns.

// Shared with the bench, which uses other parts of it.
#[allow(dead_code)]
#[path = "../../ebpf/tests/common/mod.rs"]
mod common;

use std::net::{TcpListener, UdpSocket};
use std::path::Path;

use common::{alert, config, envelope, plan, setup_or_skip, Drive, Pins, Probe, TestCgroup, AGENT};
use firebreak_containment::plan::Candidate;
use firebreak_containment::plane::PlaneError;
use firebreak_ebpf::{EgressConfig, EgressError, EgressPlane, BLOCK_EGRESS, ISOLATE_WORKLOAD};

const WORKLOAD: &str = "Deployment/payment-agent";

fn tcp(addr: &str) -> (TcpListener, u16) {
    let l = TcpListener::bind(format!("{addr}:0")).expect("bind a TCP listener");
    let port = l.local_addr().expect("addr").port();
    (l, port)
}

/// One plane over one workload cgroup, with a private pin directory.
struct Fixture {
    plane: EgressPlane,
    config: EgressConfig,
    workload: TestCgroup,
    pins: Pins,
}

impl Fixture {
    fn new(tag: &str) -> Fixture {
        let workload = TestCgroup::new(tag);
        let pins = Pins::new(tag);
        let config = config(&pins, &[&workload.relative]);
        let plane = EgressPlane::load(&config).expect("load the plane");
        Fixture {
            plane,
            config,
            workload,
            pins,
        }
    }

    async fn candidates(
        &self,
        incident: &str,
        destination: &str,
        port: Option<u16>,
    ) -> Vec<Candidate> {
        plan(
            &self.plane,
            incident,
            &alert(WORKLOAD, destination, port),
            &envelope(1),
        )
        .await
        .expect("plan")
    }

    /// Every pin under the plane's directory, for before/after comparisons.
    fn pinned(&self) -> Vec<String> {
        fn walk(dir: &Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                out.push(entry.path().display().to_string());
                walk(&entry.path(), out);
            }
        }
        let mut out = Vec::new();
        walk(&self.pins.0, &mut out);
        out.sort();
        out
    }
}

#[tokio::test]
async fn block_egress_refuses_tcp_to_the_destination_only_for_the_workload() {
    let Some(python) =
        setup_or_skip("block_egress_refuses_tcp_to_the_destination_only_for_the_workload")
    else {
        return;
    };
    let fx = Fixture::new("tcp");
    let container = fx.workload.child("container");
    let (_blocked, port) = tcp("127.0.0.2");
    let (_other_port, port2) = tcp("127.0.0.2");
    let _other_addr =
        TcpListener::bind(format!("127.0.0.3:{port}")).expect("same port, other address");
    let mut inside = Probe::start(&python, Some(&fx.workload));
    let mut nested = Probe::start(&python, Some(&container));
    let mut outside = Probe::start(&python, None);
    // The process is running before the block: the map update must reach it.
    assert_eq!(inside.try_("tcp", "127.0.0.2", port), "ok");

    let candidates = fx.candidates("inc-tcp", "127.0.0.2", Some(port)).await;
    let block = &candidates[0];
    assert_eq!(block.kind, BLOCK_EGRESS);
    assert_eq!(
        block.blast_radius.broken, 0,
        "outside the envelope: {:?}",
        block.blast_radius
    );
    assert_eq!(block.spec["agent"], AGENT);
    assert_eq!(block.spec["destination"], "127.0.0.2");
    assert_eq!(block.spec["port"], port);
    assert!(fx.plane.apply(block).await.expect("apply").changed);

    assert_eq!(inside.try_("tcp", "127.0.0.2", port), "EPERM");
    assert_eq!(
        nested.try_("tcp", "127.0.0.2", port),
        "EPERM",
        "a cgroup below the workload's is covered"
    );
    assert_eq!(inside.try_("tcp", "127.0.0.2", port2), "ok", "another port");
    assert_eq!(
        inside.try_("tcp", "127.0.0.3", port),
        "ok",
        "another address"
    );
    assert_eq!(
        outside.try_("tcp", "127.0.0.2", port),
        "ok",
        "a process outside the cgroup"
    );

    let verified = fx.plane.verify(block).await.expect("verify");
    assert!(verified.ok, "{}", verified.detail);
    assert!(
        !fx.plane.apply(block).await.expect("re-apply").changed,
        "idempotent"
    );
    assert_eq!(fx.plane.deny_entries().expect("entries").len(), 1);
}

#[tokio::test]
async fn block_egress_refuses_udp_sendmsg_and_udp_connect() {
    let Some(python) = setup_or_skip("block_egress_refuses_udp_sendmsg_and_udp_connect") else {
        return;
    };
    let fx = Fixture::new("udp");
    let blocked = UdpSocket::bind("127.0.0.2:0").expect("bind UDP");
    let port = blocked.local_addr().expect("addr").port();
    let other = UdpSocket::bind("127.0.0.2:0").expect("bind UDP");
    let port2 = other.local_addr().expect("addr").port();
    let mut inside = Probe::start(&python, Some(&fx.workload));

    let block = fx
        .candidates("inc-udp", "127.0.0.2", Some(port))
        .await
        .remove(0);
    fx.plane.apply(&block).await.expect("apply");
    assert_eq!(inside.try_("udp-sendto", "127.0.0.2", port), "EPERM");
    assert_eq!(inside.try_("udp-connect", "127.0.0.2", port), "EPERM");
    assert_eq!(inside.try_("udp-sendto", "127.0.0.2", port2), "ok");
    let mut buf = [0u8; 16];
    let (n, _) = other
        .recv_from(&mut buf)
        .expect("the allowed datagram arrives");
    assert_eq!(&buf[..n], b"probe");
}

#[tokio::test]
async fn block_egress_refuses_ipv6_and_every_port_when_no_port_is_given() {
    let Some(python) =
        setup_or_skip("block_egress_refuses_ipv6_and_every_port_when_no_port_is_given")
    else {
        return;
    };
    let fx = Fixture::new("v6");
    let (_l1, port) = tcp("[::1]");
    let (_l2, port2) = tcp("[::1]");
    let (_v4, port4) = tcp("127.0.0.1");
    let mut inside = Probe::start(&python, Some(&fx.workload));

    let block = fx.candidates("inc-v6", "::1", None).await.remove(0);
    assert!(block.spec["port"].is_null());
    fx.plane.apply(&block).await.expect("apply");
    assert_eq!(inside.try_("tcp", "::1", port), "EPERM");
    assert_eq!(
        inside.try_("tcp", "::1", port2),
        "EPERM",
        "no port: every port"
    );
    assert_eq!(
        inside.try_("tcp", "127.0.0.1", port4),
        "ok",
        "IPv4 loopback is another address"
    );
}

#[tokio::test]
async fn rollback_restores_egress_and_detaches_the_hooks() {
    let Some(python) = setup_or_skip("rollback_restores_egress_and_detaches_the_hooks") else {
        return;
    };
    let fx = Fixture::new("rollback");
    let (_l, port) = tcp("127.0.0.2");
    let mut inside = Probe::start(&python, Some(&fx.workload));
    let block = fx
        .candidates("inc-rb", "127.0.0.2", Some(port))
        .await
        .remove(0);
    fx.plane.apply(&block).await.expect("apply");
    assert_eq!(inside.try_("tcp", "127.0.0.2", port), "EPERM");
    assert!(
        fx.pinned().iter().any(|p| p.contains("/links/")),
        "links pinned: {:?}",
        fx.pinned()
    );

    assert!(fx.plane.revert(&block).await.expect("revert").changed);
    assert_eq!(inside.try_("tcp", "127.0.0.2", port), "ok");
    let reverted = fx
        .plane
        .verify_reverted(&block)
        .await
        .expect("verify reverted");
    assert!(reverted.ok, "{}", reverted.detail);
    assert!(fx.plane.deny_entries().expect("entries").is_empty());
    assert!(
        !fx.pinned().iter().any(|p| p.contains("/links/")),
        "links unpinned: {:?}",
        fx.pinned()
    );
    assert!(
        !fx.plane.revert(&block).await.expect("re-revert").changed,
        "idempotent"
    );
    assert!(
        !fx.plane.verify(&block).await.expect("verify").ok,
        "verify sees the block gone"
    );
}

#[tokio::test]
async fn a_restarted_daemon_keeps_the_block_and_can_revert_it() {
    let Some(python) = setup_or_skip("a_restarted_daemon_keeps_the_block_and_can_revert_it") else {
        return;
    };
    let Fixture {
        plane,
        config,
        workload,
        pins: _pins,
    } = Fixture::new("restart");
    let (_l, port) = tcp("127.0.0.2");
    let mut inside = Probe::start(&python, Some(&workload));
    let input_alert = alert(WORKLOAD, "127.0.0.2", Some(port));
    let block = plan(&plane, "inc-restart", &input_alert, &envelope(1))
        .await
        .expect("plan")
        .remove(0);
    plane.apply(&block).await.expect("apply");
    drop(plane);

    assert_eq!(
        inside.try_("tcp", "127.0.0.2", port),
        "EPERM",
        "the pins keep the block without the daemon"
    );
    let restarted = EgressPlane::load(&config).expect("a new daemon loads from the pins");
    let verified = restarted.verify(&block).await.expect("verify");
    assert!(verified.ok, "{}", verified.detail);
    assert!(
        !restarted.apply(&block).await.expect("re-apply").changed,
        "the new daemon sees it in force"
    );
    assert!(restarted.revert(&block).await.expect("revert").changed);
    assert_eq!(inside.try_("tcp", "127.0.0.2", port), "ok");
    assert!(restarted.verify_reverted(&block).await.expect("verify").ok);
}

#[tokio::test]
async fn a_dry_run_plan_writes_no_map_entry_and_no_pin() {
    let Some(python) = setup_or_skip("a_dry_run_plan_writes_no_map_entry_and_no_pin") else {
        return;
    };
    let fx = Fixture::new("dryrun");
    let (_l, port) = tcp("127.0.0.2");
    let mut inside = Probe::start(&python, Some(&fx.workload));
    // An earlier incident's block, so the map and link pins are not trivially empty.
    let earlier = fx
        .candidates("inc-earlier", "127.0.0.9", Some(9))
        .await
        .remove(0);
    fx.plane.apply(&earlier).await.expect("apply");
    let (entries, pins) = (fx.plane.deny_entries().expect("entries"), fx.pinned());

    let candidates = fx.candidates("inc-dry", "127.0.0.2", Some(port)).await;
    assert_eq!(candidates.len(), 2);
    assert_eq!(
        fx.plane.deny_entries().expect("entries"),
        entries,
        "observe + candidates wrote a map entry"
    );
    assert_eq!(fx.pinned(), pins, "observe + candidates pinned something");
    assert_eq!(inside.try_("tcp", "127.0.0.2", port), "ok");
}

#[tokio::test]
async fn isolate_workload_refuses_every_destination_and_needs_approval() {
    let Some(python) =
        setup_or_skip("isolate_workload_refuses_every_destination_and_needs_approval")
    else {
        return;
    };
    let fx = Fixture::new("isolate");
    let (_a, port) = tcp("127.0.0.2");
    let (_b, port2) = tcp("127.0.0.3");
    let (_c, port6) = tcp("[::1]");
    let mut inside = Probe::start(&python, Some(&fx.workload));
    let mut outside = Probe::start(&python, None);
    let isolate = fx
        .candidates("inc-iso", "127.0.0.2", Some(port))
        .await
        .remove(1);
    assert_eq!(isolate.kind, ISOLATE_WORKLOAD);
    assert!(isolate.approval_only);
    assert_eq!(
        isolate.blast_radius.broken, 2,
        "every envelope destination: {:?}",
        isolate.blast_radius
    );

    fx.plane.apply(&isolate).await.expect("apply");
    assert_eq!(inside.try_("tcp", "127.0.0.2", port), "EPERM");
    assert_eq!(inside.try_("tcp", "127.0.0.3", port2), "EPERM");
    assert_eq!(inside.try_("tcp", "::1", port6), "EPERM");
    assert_eq!(inside.try_("udp-sendto", "127.0.0.3", port2), "EPERM");
    assert_eq!(outside.try_("tcp", "127.0.0.3", port2), "ok");
    assert!(fx.plane.verify(&isolate).await.expect("verify").ok);
    fx.plane.revert(&isolate).await.expect("revert");
    assert_eq!(inside.try_("tcp", "127.0.0.3", port2), "ok");
}

#[tokio::test]
async fn two_incidents_blocking_one_destination_are_reverted_independently() {
    let Some(python) =
        setup_or_skip("two_incidents_blocking_one_destination_are_reverted_independently")
    else {
        return;
    };
    let fx = Fixture::new("holds");
    let (_l, port) = tcp("127.0.0.2");
    let mut inside = Probe::start(&python, Some(&fx.workload));
    let first = fx
        .candidates("inc-1", "127.0.0.2", Some(port))
        .await
        .remove(0);
    fx.plane.apply(&first).await.expect("apply 1");
    let second = fx
        .candidates("inc-2", "127.0.0.2", Some(port))
        .await
        .remove(0);
    assert!(
        second.notes.iter().any(|n| n.contains("already denied")),
        "{:?}",
        second.notes
    );
    assert!(
        fx.plane.apply(&second).await.expect("apply 2").changed,
        "a new hold"
    );

    fx.plane.revert(&first).await.expect("revert 1");
    assert_eq!(
        inside.try_("tcp", "127.0.0.2", port),
        "EPERM",
        "incident 2 still holds it"
    );
    let reverted = fx
        .plane
        .verify_reverted(&first)
        .await
        .expect("verify reverted 1");
    assert!(reverted.ok, "{}", reverted.detail);
    assert!(fx.plane.verify(&second).await.expect("verify 2").ok);
    fx.plane.revert(&second).await.expect("revert 2");
    assert_eq!(inside.try_("tcp", "127.0.0.2", port), "ok");
}

#[tokio::test]
async fn bad_input_gets_a_precise_error_and_loosens_nothing() {
    let Some(python) = setup_or_skip("bad_input_gets_a_precise_error_and_loosens_nothing") else {
        return;
    };
    let fx = Fixture::new("bad");
    let (_l, port) = tcp("127.0.0.2");
    let mut inside = Probe::start(&python, Some(&fx.workload));
    let block = fx
        .candidates("inc-bad", "127.0.0.2", Some(port))
        .await
        .remove(0);
    fx.plane.apply(&block).await.expect("apply");
    let entries = fx.plane.deny_entries().expect("entries");

    let err = plan(
        &fx.plane,
        "inc-x",
        &alert("Deployment/unknown", "127.0.0.2", Some(port)),
        &envelope(1),
    )
    .await
    .expect_err("unknown agent");
    assert!(
        err.to_string()
            .contains("has no cgroups under network.workloads"),
        "{err}"
    );

    let err = plan(
        &fx.plane,
        "inc-x",
        &alert(WORKLOAD, "evil.example.com", Some(443)),
        &envelope(1),
    )
    .await
    .expect_err("host name");
    assert!(
        err.to_string()
            .contains("parameter.destination \"evil.example.com\""),
        "{err}"
    );

    // A cgroup that vanishes between plan and apply: the whole apply is refused, unwritten.
    let doomed = TestCgroup::new("doomed");
    let two = EgressPlane::load(&config(
        &fx.pins,
        &[&fx.workload.relative, &doomed.relative],
    ))
    .expect("load");
    let wide = plan(
        &two,
        "inc-vanish",
        &alert(WORKLOAD, "127.0.0.4", Some(port)),
        &envelope(1),
    )
    .await
    .expect("plan")
    .remove(0);
    doomed.remove();
    let err = two.apply(&wide).await.expect_err("vanished cgroup");
    assert!(matches!(err, PlaneError::Conflict { .. }), "{err}");
    assert!(err.to_string().contains("is gone"), "{err}");
    assert_eq!(
        fx.plane.deny_entries().expect("entries"),
        entries,
        "nothing written"
    );
    let err = plan(
        &two,
        "inc-x",
        &alert(WORKLOAD, "127.0.0.4", Some(port)),
        &envelope(1),
    )
    .await
    .expect_err("pattern matches nothing now");
    assert!(err.to_string().contains("matches no cgroup"), "{err}");

    let mut broken = block.clone();
    broken.spec["destination"] = "not-an-address".into();
    let err = fx.plane.revert(&broken).await.expect_err("malformed spec");
    assert!(err.to_string().contains("not-an-address"), "{err}");
    assert_eq!(
        inside.try_("tcp", "127.0.0.2", port),
        "EPERM",
        "the block is still in force"
    );

    let err = EgressPlane::load(&EgressConfig {
        bpffs: "/tmp/firebreak-not-bpffs".into(),
        ..fx.config.clone()
    })
    .err()
    .expect("not bpffs");
    assert!(matches!(err, EgressError::Bpffs { .. }), "{err}");
}

#[tokio::test]
async fn revert_cleans_up_after_a_workload_that_exited() {
    if setup_or_skip("revert_cleans_up_after_a_workload_that_exited").is_none() {
        return;
    }
    let fx = Fixture::new("exited");
    let (_l, port) = tcp("127.0.0.2");
    let block = fx
        .candidates("inc-exit", "127.0.0.2", Some(port))
        .await
        .remove(0);
    fx.plane.apply(&block).await.expect("apply");
    fx.workload.remove();
    let verified = fx.plane.verify(&block).await.expect("verify");
    assert!(
        !verified.ok && verified.detail.contains("is gone"),
        "{}",
        verified.detail
    );
    assert!(fx.plane.revert(&block).await.expect("revert").changed);
    assert!(fx.plane.deny_entries().expect("entries").is_empty());
    assert!(fx.plane.verify_reverted(&block).await.expect("verify").ok);
}

#[tokio::test]
async fn hooks_left_on_a_removed_map_are_replaced_on_the_next_apply() {
    let Some(python) = setup_or_skip("hooks_left_on_a_removed_map_are_replaced_on_the_next_apply")
    else {
        return;
    };
    let Fixture {
        plane,
        config,
        workload,
        pins,
    } = Fixture::new("stale");
    let (_l, port) = tcp("127.0.0.2");
    let mut inside = Probe::start(&python, Some(&workload));
    let block = plan(
        &plane,
        "inc-stale",
        &alert(WORKLOAD, "127.0.0.2", Some(port)),
        &envelope(1),
    )
    .await
    .expect("plan")
    .remove(0);
    plane.apply(&block).await.expect("apply");
    drop(plane);
    // Someone unpins the maps by hand: the links still pinned run programs reading the old map.
    for map in ["fb_deny_v1", "fb_watched_v1", "fb_holds_v1"] {
        std::fs::remove_file(pins.0.join(map)).expect("unpin a map");
    }
    let fresh = EgressPlane::load(&config).expect("load with new maps");
    let verified = fresh.verify(&block).await.expect("verify");
    assert!(
        !verified.ok,
        "stale hooks must not verify: {}",
        verified.detail
    );
    assert!(
        verified.detail.contains("0 of 4 hooks"),
        "{}",
        verified.detail
    );

    assert!(fresh.apply(&block).await.expect("re-apply").changed);
    let verified = fresh.verify(&block).await.expect("verify");
    assert!(verified.ok, "{}", verified.detail);
    assert_eq!(inside.try_("tcp", "127.0.0.2", port), "EPERM");
    fresh.revert(&block).await.expect("revert");
    assert_eq!(inside.try_("tcp", "127.0.0.2", port), "ok");
}
