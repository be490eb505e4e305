//! Incidents do not wait for each other: 200 distinct incidents on a plane whose `observe`
//! takes 200 ms (a slow cloud read), submitted at once, against the same engine handling
//! incidents one at a time, in the same run. Also: the incident listing's latency while the
//! 200 are in flight (the in-process read behind `GET /v1/incidents`), and journal commits
//! (fsyncs) per 1,000 appends.
//!
//! Run: `cargo bench -p firebreak-containment --bench engine_concurrency`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use firebreak_containment::budget::BudgetConfig;
use firebreak_containment::engine::{Engine, EngineConfig, Parts, Request};
use firebreak_containment::journal::Journal;
use firebreak_containment::metrics::Metrics;
use firebreak_containment::plan::Enforcement;
use firebreak_containment::plane::{
    Change, Check, KindSpec, Observation, Outcome, PlanInput, Plane, PlaneError, Planes, Proposal,
    Route, Verification,
};
use firebreak_containment::runbook::Runbooks;
use firebreak_containment::{Alert, Envelope, EnvelopeStore};

const INCIDENTS: usize = 200;
const SERIAL: usize = 10;
const LATENCY: Duration = Duration::from_millis(200);

static GATE: KindSpec = KindSpec {
    name: "slow.gate",
    ladder: "slow",
    rung: 0,
    approval_only: false,
    enforcement: Enforcement::Immediate,
};
static GATE_ALL: KindSpec = KindSpec {
    name: "slow.gate_all",
    ladder: "slow",
    rung: 1,
    approval_only: true,
    enforcement: Enforcement::Immediate,
};

/// A plane whose reads take as long as a slow cloud's; its changes are instant.
struct SlowCloud;

struct Read;

impl Observation<bool> for Read {
    fn candidates(&self, _: &PlanInput<'_>) -> Result<Vec<Proposal<bool>>, PlaneError> {
        Ok(vec![Proposal::new("gate".into(), "one tool".into(), false)])
    }
}

#[async_trait]
impl Plane for SlowCloud {
    const KEY: &'static str = "slow";
    const ROUTE: Route = Route::Tools;
    const KINDS: &'static [&'static KindSpec] = &[&GATE, &GATE_ALL];
    type Spec = bool;
    fn kind_of(all: &bool) -> &'static KindSpec {
        if *all {
            &GATE_ALL
        } else {
            &GATE
        }
    }
    fn handles(&self, _: &PlanInput<'_>) -> bool {
        true
    }
    async fn observe(&self, _: &PlanInput<'_>) -> Result<Box<dyn Observation<bool>>, PlaneError> {
        tokio::time::sleep(LATENCY).await;
        Ok(Box::new(Read))
    }
    async fn change(&self, _: &bool, _: Change) -> Result<Outcome, PlaneError> {
        Ok(Outcome::changed("gated"))
    }
    async fn check(&self, _: &bool, _: Check) -> Result<Verification, PlaneError> {
        Ok(Verification::ok("gate read"))
    }
    fn verify_deadline(&self) -> Duration {
        Duration::from_secs(1)
    }
}

fn envelope(n: usize) -> anyhow::Result<Envelope> {
    Ok(Envelope::from_yaml(&format!(
        "apiVersion: firebreak.dev/v1alpha1\nkind: Envelope\nmetadata: {{name: a{n}}}\nspec:\n  \
         agent: {{cluster: c, namespace: n, workload: Deployment/a{n}, serviceAccount: a{n}}}\n  \
         version: 1\n  status: converged\n"
    ))?)
}

fn alert(run: &str, n: usize) -> anyhow::Result<Alert> {
    let body = serde_json::json!({"id": format!("{run}-{n}"), "source": "bench", "time": chrono::Utc::now(),
        "agent": {"cluster": "c", "namespace": "n", "workload": format!("Deployment/a{n}"), "serviceAccount": format!("a{n}")},
        "dimension": "tools", "parameter": {"server": "s", "tool": format!("t-{run}")},
        "tier": "attack-attempt", "severity": "critical"});
    Ok(Alert::from_json(body.to_string().as_bytes())?)
}

async fn contain(engine: &Engine, run: &str, n: usize) -> anyhow::Result<()> {
    let submitted = engine
        .submit(alert(run, n)?, Request::Operator("bench".into()))
        .await?;
    let plan = submitted.plan.ok_or_else(|| anyhow::anyhow!("no plan"))?;
    let status = engine.settled(&submitted.incident, &plan.id).await;
    anyhow::ensure!(
        status == Some(firebreak_containment::incident::PlanStatus::Contained),
        "{status:?}"
    );
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut envelopes = EnvelopeStore::default();
    for n in 0..INCIDENTS {
        envelopes.insert(envelope(n)?, format!("a{n}.yaml").into())?;
    }
    let mut planes = Planes::default();
    planes.register(SlowCloud)?;
    let journal = Journal::open(&dir.path().join("journal.db"))?;
    let engine = Engine::open(Parts {
        journal,
        envelopes,
        runbooks: Runbooks::embedded()?,
        planes,
        metrics: Metrics::new()?,
        config: EngineConfig {
            budget: BudgetConfig {
                global_per_minute: 1_000_000,
                namespace_per_minute: 1_000_000,
                agent_per_minute: 1_000_000,
            },
            ..EngineConfig::default()
        },
    })?;

    // Baseline: one incident at a time.
    let started = Instant::now();
    for n in 0..SERIAL {
        contain(&engine, "serial", n).await?;
    }
    let serial = started.elapsed();
    let serial_rate = SERIAL as f64 / serial.as_secs_f64();

    // 200 at once, with the listing read in a loop meanwhile.
    let entries_before = engine.journal().entries()?.len();
    let commits_before = engine.journal().commits();
    let reading = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let reader = {
        let engine = engine.clone();
        let reading = reading.clone();
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            while reading.load(std::sync::atomic::Ordering::Relaxed) {
                let asked = Instant::now();
                let listed = engine.incidents().await;
                std::hint::black_box(listed.len());
                latencies.push(asked.elapsed());
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            latencies
        })
    };
    let started = Instant::now();
    let runs: Vec<_> = (0..INCIDENTS)
        .map(|n| {
            let engine = engine.clone();
            tokio::spawn(async move { contain(&engine, "storm", n).await })
        })
        .collect();
    for run in runs {
        run.await??;
    }
    let concurrent = started.elapsed();
    reading.store(false, std::sync::atomic::Ordering::Relaxed);
    let mut latencies = reader.await?;
    latencies.sort();
    let concurrent_rate = INCIDENTS as f64 / concurrent.as_secs_f64();
    let appends = engine.journal().entries()?.len() - entries_before;
    let commits = engine.journal().commits() - commits_before;
    engine.shutdown();

    println!("engine_concurrency: observe latency {LATENCY:?}");
    println!(
        "  one at a time: {SERIAL} incidents in {serial:.2?} = {serial_rate:.1} incidents/s (baseline)"
    );
    println!(
        "  concurrent:    {INCIDENTS} incidents in {concurrent:.2?} = {concurrent_rate:.1} incidents/s = {:.1}x the baseline",
        concurrent_rate / serial_rate
    );
    println!(
        "  incident listing during it: p50 {:.2?}, p99 {:.2?}, max {:.2?} ({} reads)",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default(),
        latencies.len()
    );
    println!(
        "  journal: {appends} appends in {commits} commits = {:.0} fsyncs per 1,000 appends",
        commits as f64 * 1000.0 / appends.max(1) as f64
    );
    Ok(())
}
