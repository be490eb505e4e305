//! The eBPF egress hooks' cost and time to effect, as root on this kernel:
//!
//! 1. A UDP `connect()` loop in a cgroup without, then with, Firebreak's hooks attached (a block
//!    on another destination, so every connect passes through the hook and is allowed), in the
//!    same run, rounds alternating the order; and, while the hooks are attached, the same loop
//!    from a cgroup that is not contained. Reported per connect, and as ratios. Measured
//!    with the process at depth 1 (the workload cgroup itself) and depth 4 (a process three
//!    cgroups below it, like a container under a kubepods pod cgroup).
//!    Then, in a separate pass with the kernel's BPF run-time statistics on (they add their own
//!    clock reads, so not during the ratio rounds), the hook's own average run time per call.
//! 2. Time to effect: `apply` of `network.block_egress` → the next `connect()` refused, for a
//!    cgroup not yet attached (four attaches and pins) and for one already attached (one map
//!    update).
//!
//! Run: `cargo bench -p firebreak-ebpf --bench egress` with the exports of `./scripts/test --env`.

#[allow(dead_code)]
#[path = "../tests/common/mod.rs"]
mod common;

use std::net::UdpSocket;
use std::time::Instant;

use anyhow::{Context, Result};
use aya::programs::loaded_programs;
use aya::sys::{enable_stats, Stats};
use common::{
    alert, config, envelope, leave_to, own_cgroup, plan, setup_or_skip, Drive, Pins, TestCgroup,
};
use firebreak_containment::plan::Candidate;

use firebreak_ebpf::EgressPlane;

const CONNECTS: usize = 10_000;
const ROUNDS: usize = 31;
const EFFECT_SAMPLES: usize = 25;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn connect_loop(sock: &UdpSocket, target: &str) -> Result<f64> {
    let start = Instant::now();
    for _ in 0..CONNECTS {
        sock.connect(target).context("connect")?;
    }
    Ok(start.elapsed().as_nanos() as f64 / CONNECTS as f64)
}

async fn block(
    plane: &EgressPlane,
    incident: &str,
    destination: &str,
    port: u16,
) -> Result<Candidate> {
    let alert = alert("Deployment/payment-agent", destination, Some(port));
    Ok(plan(plane, incident, &alert, &envelope(1)).await?.remove(0))
}

async fn overhead(depth: usize) -> Result<()> {
    let mut chain = vec![TestCgroup::new("bench")];
    for level in 1..depth {
        let next = chain[level - 1].child(&format!("level{level}"));
        chain.push(next);
    }
    let pins = Pins::new("bench");
    let plane = EgressPlane::load(&config(&pins, &[&chain[0].relative]))?;
    let sink = UdpSocket::bind("127.0.0.1:0")?;
    let target = sink.local_addr()?.to_string();
    let other = block(&plane, "bench-other", "127.0.0.9", 9).await?;

    // A process in another cgroup, not contained, while the hooks are attached to the
    // workload's: what the rest of the node pays once any cgroup connect hook exists.
    let bystander = TestCgroup::new("bystander");
    let home = own_cgroup();
    let leaf = &chain[depth - 1];
    leaf.enter();
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    connect_loop(&sock, &target)?; // warm-up
    let (mut without, mut with, mut beside) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let hooked_first = round % 2 == 1;
        if !hooked_first {
            without.push(connect_loop(&sock, &target)?);
        }
        plane.apply(&other).await?;
        with.push(connect_loop(&sock, &target)?);
        bystander.enter();
        beside.push(connect_loop(&sock, &target)?);
        leaf.enter();
        plane.revert(&other).await?;
        if hooked_first {
            without.push(connect_loop(&sock, &target)?);
        }
    }
    plane.apply(&other).await?;
    let hook = hook_run_time(|| connect_loop(&sock, &target).map(drop))?;
    plane.revert(&other).await?;
    leave_to(&home);
    let (w, h, b) = (median(&mut without), median(&mut with), median(&mut beside));
    println!(
        "udp connect() at cgroup depth {depth}, {ROUNDS} rounds × {CONNECTS} (median ns per connect): no hooks {w:.0} | contained cgroup, hooks attached {h:.0} (ratio {:.3}, +{:.0}) | other cgroup meanwhile {b:.0} (ratio {:.3}) | connect4 hook itself {hook:.0} per run (kernel run-time stats)",
        h / w,
        h - w,
        b / w
    );
    Ok(())
}

/// The average run time of the `fb_connect4` programs during `work`, from the kernel's BPF
/// run-time statistics (enabled only for this call).
fn hook_run_time(work: impl FnOnce() -> Result<()>) -> Result<f64> {
    let totals = || -> Result<(u128, u64)> {
        let mut sum = (0u128, 0u64);
        for program in loaded_programs() {
            let program = program?;
            if program.name_as_str() == Some("fb_connect4") {
                sum.0 += program.run_time().as_nanos();
                sum.1 += program.run_count();
            }
        }
        Ok(sum)
    };
    let _stats = enable_stats(Stats::RunTime)?;
    let (t0, n0) = totals()?;
    work()?;
    let (t1, n1) = totals()?;
    anyhow::ensure!(n1 > n0, "the connect4 hook did not run");
    Ok((t1 - t0) as f64 / (n1 - n0) as f64)
}

async fn time_to_effect() -> Result<()> {
    let workload = TestCgroup::new("effect");
    let pins = Pins::new("effect");
    let plane = EgressPlane::load(&config(&pins, &[&workload.relative]))?;
    let sink = UdpSocket::bind("127.0.0.2:0")?;
    let port = sink.local_addr()?.port();
    let target = format!("127.0.0.2:{port}");
    let keep = block(&plane, "bench-keep", "127.0.0.9", 9).await?;
    let probe = block(&plane, "bench-effect", "127.0.0.2", port).await?;

    let home = own_cgroup();
    workload.enter();
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    let (mut fresh, mut attached) = (Vec::new(), Vec::new());
    for i in 0..EFFECT_SAMPLES * 2 {
        let already = i % 2 == 1;
        if already {
            plane.apply(&keep).await?;
        }
        sock.connect(&target).context("connect before the block")?;
        let start = Instant::now();
        plane.apply(&probe).await?;
        let refused = sock.connect(&target).is_err();
        let micros = start.elapsed().as_nanos() as f64 / 1e3;
        anyhow::ensure!(refused, "the connect right after apply went through");
        plane.revert(&probe).await?;
        if already {
            plane.revert(&keep).await?;
            attached.push(micros);
        } else {
            fresh.push(micros);
        }
    }
    leave_to(&home);
    println!(
        "apply → next connect() refused: {:.0} µs when the cgroup's hooks must be attached first, {:.0} µs when already attached (median of {EFFECT_SAMPLES} each)",
        median(&mut fresh),
        median(&mut attached)
    );
    Ok(())
}

fn main() -> Result<()> {
    if setup_or_skip("egress bench").is_none() {
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_current_thread().build()?;
    rt.block_on(async {
        overhead(1).await?;
        overhead(4).await?;
        time_to_effect().await
    })
}
