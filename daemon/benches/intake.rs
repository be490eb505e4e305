//! Intake of distinct attack-attempt alerts with a plane that acts: the real `firebreak serve`
//! (release build, durable journal) with AWS IAM on a real moto, one role and envelope per agent,
//! and a flood of distinct alerts each breaching one agent's identity envelope, sent over more
//! connections than `api.maxPlanning` admits; a sender told 429 sends again after `Retry-After`,
//! so the flood ends when every alert is accepted. Beside the flood, one connection resends an alert
//! that was already planned and contained; its latency is compared with the same resend on an
//! idle daemon, measured in the same run (the baseline).
//!
//! The plane is the ceiling here: moto answers IAM from one Python process. So the bench also
//! measures, in the same run, how many GetRole/s moto serves to bare SDK clients, and reports
//! the IAM request rate the daemon drove during the flood as a fraction of it.
//!
//! Reports: alerts accepted per second, alerts shed with 429, the resend's p50/p99 idle and under
//! the flood (and their ratio), incidents held, and the denies written at moto.
//!
//!   cargo bench -p firebreak --bench intake
//!   INTAKE_ALERTS=10000 cargo bench -p firebreak --bench intake

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use firebreak_e2e::{daemon::aws_env, moto::Moto, seed_role};

// Shared by the HTTP benches; each uses its part.
#[allow(dead_code)]
mod driver;
use driver::{free_port, get, incident_count, runtime, serve, Load};

// The AWS agents of the end-to-end tests: role, trust, envelope and alert.
#[allow(dead_code)]
#[path = "../../tests/e2e/aws/fixture.rs"]
mod fixture;

const BIN: &str = env!("CARGO_BIN_EXE_firebreak");
const AGENTS: usize = 200;
const CONNECTIONS: usize = 256;
const MAX_PLANNING: usize = 64;
const PROBES: usize = 1_000;
const MOTO_CALLS: usize = 2_000;
const MOTO_CONCURRENCY: usize = 16;
/// The prober resends every 5 ms: it measures the flood, it does not add to it.
const PROBE_PAUSE: Duration = Duration::from_millis(5);
const S3_BROAD: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject","s3:PutObject"],"Resource":"arn:aws:s3:::*"}]}"#;

fn main() {
    if let Err(e) = runtime().and_then(|rt| rt.block_on(run())) {
        eprintln!("intake bench: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), String> {
    let total: usize = std::env::var("INTAKE_ALERTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);
    let moto = Moto::start().map_err(|e| format!("{e:#}"))?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    // agent-0 is the probe's; the flood breaches agent-1 … agent-AGENTS.
    let iam = moto.iam_client().await;
    for a in 0..=AGENTS {
        let name = format!("agent-{a}");
        let managed = format!("{name}-s3");
        seed_role(
            &iam,
            &name,
            &fixture::trust(&name),
            &[],
            &[(managed.as_str(), S3_BROAD)],
        )
        .await
        .map_err(|e| format!("{e:#}"))?;
    }
    let ceiling = moto_ceiling(&iam).await?;
    let seeded = moto
        .iam_requests()
        .await
        .map_err(|e| format!("{e:#}"))?
        .len();
    let port = free_port()?;
    envelopes(dir.path())?;
    let (daemon, token) = serve(
        dir.path(),
        port,
        &format!(", maxPlanning: {MAX_PLANNING}"),
        &format!(
            "{{enabled: true, region: us-east-1, endpoint: {:?}, verifyDeadline: 5m}}",
            moto.endpoint()
        ),
        &aws_env(),
    )?;
    let token = token.as_str();

    let probe = vec![body("probe", 0, "arn:aws:s3:::probe/*")?];
    Arc::new(Load::new(port, token, probe.clone(), 1))
        .drive(1)
        .await?;
    wait_contained(port, token).await?;
    let mut idle = Arc::new(Load::new(port, token, probe.clone(), PROBES).paced(PROBE_PAUSE))
        .drive(1)
        .await?;

    let flood: Vec<Bytes> = (0..total)
        .map(|i| {
            body(
                &format!("flood-{i}"),
                1 + i % AGENTS,
                &format!("arn:aws:s3:::exfil-{i}/*"),
            )
        })
        .collect::<Result<_, _>>()?;
    let flood = Arc::new(Load::new(port, token, flood, total).retrying_shed());
    let resends = Arc::new(Load::new(port, token, probe, usize::MAX).paced(PROBE_PAUSE));
    let (flooded, resent) = tokio::join!(
        async {
            let run = flood.drive(CONNECTIONS).await;
            resends.stop();
            run
        },
        resends.drive(1)
    );
    let (flooded, mut resent) = (flooded?, resent?);
    let accepted = flooded.statuses.get(&202).copied().unwrap_or(0);
    let shed = flooded.statuses.get(&429).copied().unwrap_or(0);
    let requests = moto.iam_requests().await.map_err(|e| format!("{e:#}"))?;
    let driven = (requests.len() - seeded) as f64 / flooded.elapsed.as_secs_f64();
    let denies = requests
        .iter()
        .filter(|r| r.action == "PutRolePolicy")
        .count();
    let incidents = incident_count(port, token)?;
    let undenied = undenied(&iam, total).await?;
    let peak = daemon.peak_rss_kib();
    drop(daemon);

    println!(
        "intake: {total} distinct attack-attempt alerts over {AGENTS} agents, {CONNECTIONS} \
         connections, maxPlanning {MAX_PLANNING}, AWS IAM on moto"
    );
    println!(
        "  flood:  {accepted} accepted in {:.2?} = {:.1} alerts/s; {shed} answers were 429 \
         (each alert sent again after Retry-After); statuses {:?}",
        flooded.elapsed,
        accepted as f64 / flooded.elapsed.as_secs_f64(),
        flooded.statuses
    );
    let (idle50, idle99) = (idle.percentile_micros(50), idle.percentile_micros(99));
    let (flood50, flood99) = (resent.percentile_micros(50), resent.percentile_micros(99));
    println!("  resend of a contained alert, idle daemon (baseline): p50 {idle50} us  p99 {idle99} us ({PROBES} sends)");
    println!(
        "  resend during the flood:                             p50 {flood50} us  p99 {flood99} us ({} sends) = {:.2}x the baseline p99",
        resent.sent,
        f64::from(flood99) / f64::from(idle99.max(1))
    );
    println!(
        "  incidents {incidents}, denies written at IAM {denies}, peak RSS {:.1} MiB",
        peak as f64 / 1024.0
    );
    println!(
        "  the plane: firebreak drove moto at {driven:.0} IAM requests/s during the flood; \
         moto serves {ceiling:.0} GetRole/s to {MOTO_CONCURRENCY} bare clients = {:.2} of its ceiling",
        driven / ceiling
    );
    println!(
        "  at IAM: {} of {total} breached resources denied on their agent's role",
        total - undenied.len()
    );
    if !undenied.is_empty() {
        return Err(format!("accepted but not denied at IAM: {undenied:?}"));
    }
    let unexpected: Vec<_> = flooded
        .statuses
        .keys()
        .chain(resent.statuses.keys())
        .filter(|s| ![200, 202, 429].contains(*s))
        .collect();
    if !unexpected.is_empty() {
        return Err(format!("unexpected statuses {unexpected:?}"));
    }
    Ok(())
}

/// What moto sustains for a bare client: GetRole from `MOTO_CONCURRENCY` tasks, in requests/s.
async fn moto_ceiling(iam: &aws_sdk_iam::Client) -> Result<f64, String> {
    let started = Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    for task in 0..MOTO_CONCURRENCY {
        let iam = iam.clone();
        calls.spawn(async move {
            for i in 0..MOTO_CALLS / MOTO_CONCURRENCY {
                let name = format!("agent-{}", (task + i) % AGENTS);
                iam.get_role().role_name(name).send().await.map_err(|e| {
                    format!("GetRole: {}", aws_sdk_iam::error::DisplayErrorContext(e))
                })?;
            }
            Ok::<(), String>(())
        });
    }
    while let Some(done) = calls.join_next().await {
        done.map_err(|e| e.to_string())??;
    }
    Ok(MOTO_CALLS as f64 / started.elapsed().as_secs_f64())
}

/// The flood's breached resources that no deny on their agent's role names (read at IAM).
async fn undenied(iam: &aws_sdk_iam::Client, total: usize) -> Result<Vec<String>, String> {
    let error = |e: aws_sdk_iam::Error| format!("{}", aws_sdk_iam::error::DisplayErrorContext(e));
    let mut denied = std::collections::HashSet::new();
    for a in 1..=AGENTS {
        let role = format!("agent-{a}");
        let names = iam
            .list_role_policies()
            .role_name(&role)
            .send()
            .await
            .map_err(|e| error(e.into()))?
            .policy_names;
        for name in names.iter().filter(|n| n.starts_with("firebreak-")) {
            let document = iam
                .get_role_policy()
                .role_name(&role)
                .policy_name(name)
                .send()
                .await
                .map_err(|e| error(e.into()))?
                .policy_document;
            let document = firebreak_e2e::decode_policy(&document);
            for statement in document["Statement"].as_array().into_iter().flatten() {
                if statement["Effect"] != "Deny" {
                    continue;
                }
                let resources = match &statement["Resource"] {
                    serde_json::Value::Array(r) => r.clone(),
                    one => vec![one.clone()],
                };
                for r in resources.iter().filter_map(|r| r.as_str()) {
                    denied.insert((a, r.to_string()));
                }
            }
        }
    }
    Ok((0..total)
        .map(|i| (1 + i % AGENTS, format!("arn:aws:s3:::exfil-{i}/*")))
        .filter(|key| !denied.contains(key))
        .map(|(a, r)| format!("agent-{a} {r}"))
        .collect())
}

fn body(id: &str, agent: usize, resource: &str) -> Result<Bytes, String> {
    let alert = fixture::alert(id, &format!("agent-{agent}"), resource, "attack-attempt");
    serde_json::to_vec(&alert)
        .map(Bytes::from)
        .map_err(|e| e.to_string())
}

async fn wait_contained(port: u16, token: &str) -> Result<(), String> {
    let until = Instant::now() + Duration::from_secs(30);
    while !get(port, token, "/v1/incidents")?.contains("\"status\":\"contained\"") {
        if Instant::now() > until {
            return Err("the probe's incident was not contained within 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// One envelope per agent, each naming its role.
fn envelopes(dir: &Path) -> Result<(), String> {
    let envelopes = dir.join("data/envelopes");
    std::fs::create_dir_all(&envelopes).map_err(|e| e.to_string())?;
    for a in 0..=AGENTS {
        let name = format!("agent-{a}");
        std::fs::write(
            envelopes.join(format!("{name}.yaml")),
            fixture::envelope(&name, "converged"),
        )
        .map_err(|e| e.to_string())?;
    }
    Ok(())
}
