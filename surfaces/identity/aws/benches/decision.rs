//! The decision path, bytes → plan, with 10,000 envelopes loaded (docs/ARCHITECTURE.md §Targets: p99 ≤ 100 µs).
//!
//! Per iteration, what the daemon does once the control plane's state is in memory:
//! 1. `Alert::from_json` on native alert bytes,
//! 2. `EnvelopeStore::get` over 10,000 envelopes,
//! 3. `Observation::candidates` of an observed IAM role (`RoleState`, built in memory),
//! 4. `engine::decide` with the embedded runbook and a budget that never refuses.
//!
//! The control-plane read (`observe`) is I/O and excluded. A baseline loop runs step 1 only, so
//! decision/parse ratios survive machine drift. Run: `cargo bench -p firebreak-aws --bench decision`.

use std::collections::{BTreeMap, HashMap};
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use firebreak_aws::policy::PolicyDocument;
use firebreak_aws::role::{ObservedPolicy, RoleState};
use firebreak_aws::AwsIam;
use firebreak_containment::budget::BudgetConfig;
use firebreak_containment::guard::{Guard, GuardInput, Request};
use firebreak_containment::ids::{IncidentId, PlanId};
use firebreak_containment::plane::{candidate_of, Observation, PlanInput};
use firebreak_containment::runbook::Runbooks;
use firebreak_containment::{Alert, Envelope, EnvelopeStore};

const AGENTS: usize = 10_000;
/// Distinct IAM roles; agent `i` runs as role `i % ROLES`.
const ROLES: usize = 256;
const WARMUP: usize = 3_000;
const ITERATIONS: usize = 30_000;
const ACCOUNT: &str = "123456789012";
const TARGET_P99: Duration = Duration::from_micros(100);

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True with probability `percent` / 100.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

struct AgentNames {
    cluster: String,
    namespace: String,
    name: String,
}

fn agent(i: usize) -> AgentNames {
    AgentNames {
        cluster: format!("prod-eks-{}", i % 4),
        namespace: format!("team-{}", i % 200),
        name: format!("agent-{i}"),
    }
}

fn role_arn(r: usize) -> String {
    format!("arn:aws:iam::{ACCOUNT}:role/agents/agent-role-{r}")
}

fn parse(json: &str) -> (PolicyDocument, serde_json::Value) {
    let document = PolicyDocument::parse(json).expect("generated policy is valid");
    let raw = serde_json::from_str(json).expect("generated policy is JSON");
    (document, raw)
}

fn managed(r: usize, name: &str, json: &str) -> ObservedPolicy {
    let (document, raw) = parse(json);
    ObservedPolicy {
        id: format!("arn:aws:iam::{ACCOUNT}:policy/{name}-{r}"),
        name: format!("{name}-{r}"),
        document,
        raw,
    }
}

fn inline(name: &str, json: &str) -> ObservedPolicy {
    let (document, raw) = parse(json);
    ObservedPolicy {
        id: name.to_string(),
        name: name.to_string(),
        document,
        raw,
    }
}

/// Role `r`: 2–4 managed and 1–3 inline policies over the resources envelopes use, and an IRSA
/// trust policy. Shapes vary with `r` (conditions, NotAction guards, IAM self-management).
fn role(r: usize) -> RoleState {
    let k = r;
    let mut managed_policies = vec![
        managed(
            r,
            "InvoicesReadOnly",
            &format!(
                r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"ReadInvoices","Effect":"Allow","Action":["s3:Get*","s3:List*"],"Resource":["arn:aws:s3:::invoices-{k}","arn:aws:s3:::invoices-{k}/*"]}}]}}"#
            ),
        ),
        managed(
            r,
            "PartnerPayouts",
            r#"{"Version":"2012-10-17","Statement":[{"Sid":"WritePayouts","Effect":"Allow","Action":["s3:PutObject","s3:PutObjectAcl"],"Resource":"arn:aws:s3:::partner-*/*"},{"Sid":"ListPartners","Effect":"Allow","Action":"s3:ListBucket","Resource":"arn:aws:s3:::partner-*"}]}"#,
        ),
    ];
    if r.is_multiple_of(2) {
        managed_policies.push(managed(
            r,
            "LedgerTable",
            &format!(
                r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"Ledger","Effect":"Allow","Action":["dynamodb:GetItem","dynamodb:Query","dynamodb:PutItem","dynamodb:UpdateItem"],"Resource":["arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/ledger-{k}","arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/ledger-{k}/index/*"]}},{{"Sid":"NoDrop","Effect":"Deny","Action":["dynamodb:DeleteTable","dynamodb:DeleteBackup"],"Resource":"*"}}]}}"#
            ),
        ));
    }
    if r.is_multiple_of(3) {
        managed_policies.push(managed(
            r,
            "KmsViaS3",
            &format!(
                r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"DecryptViaS3","Effect":"Allow","Action":["kms:Decrypt","kms:GenerateDataKey"],"Resource":"arn:aws:kms:us-east-1:{ACCOUNT}:key/*","Condition":{{"StringEquals":{{"kms:ViaService":"s3.us-east-1.amazonaws.com"}}}}}}]}}"#
            ),
        ));
    }
    let mut inline_policies = vec![inline(
        "events-and-secrets",
        &format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"Events","Effect":"Allow","Action":["sqs:SendMessage","sqs:ReceiveMessage","sqs:DeleteMessage","sqs:GetQueueAttributes"],"Resource":"arn:aws:sqs:us-east-1:{ACCOUNT}:events-{k}"}},{{"Sid":"Secrets","Effect":"Allow","Action":"secretsmanager:GetSecretValue","Resource":"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:agent-{k}/*"}},{{"Sid":"Identity","Effect":"Allow","Action":"sts:GetCallerIdentity","Resource":"*"}}]}}"#
        ),
    )];
    if r % 4 == 1 {
        inline_policies.push(inline(
            "guardrail",
            r#"{"Version":"2012-10-17","Statement":[{"Sid":"OnlyKnownServices","Effect":"Deny","NotAction":["s3:*","dynamodb:*","sqs:*","kms:*","secretsmanager:*","sts:*","iam:Get*","iam:List*"],"Resource":"*"}]}"#,
        ));
    }
    if r % 5 == 2 {
        // Lets the agent manage its own role: the inline deny must also protect itself.
        inline_policies.push(inline(
            "self-service",
            &format!(
                r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"OwnRole","Effect":"Allow","Action":["iam:GetRolePolicy","iam:PutRolePolicy","iam:ListRolePolicies"],"Resource":"arn:aws:iam::{ACCOUNT}:role/agents/agent-role-{k}"}},{{"Sid":"TaggedBuckets","Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::shared-${{aws:PrincipalTag/team}}/*"}}]}}"#
            ),
        ));
    }
    let provider = "oidc.eks.us-east-1.amazonaws.com/id/5C4F1A0E2B7D9E3F6A8B0C1D2E3F4A5B";
    let trust_json = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"Federated":"arn:aws:iam::{ACCOUNT}:oidc-provider/{provider}"}},"Action":"sts:AssumeRoleWithWebIdentity","Condition":{{"StringEquals":{{"{provider}:aud":"sts.amazonaws.com"}},"StringLike":{{"{provider}:sub":"system:serviceaccount:team-*:agent-*"}}}}}}]}}"#
    );
    let (document, raw) = parse(&trust_json);
    RoleState {
        arn: role_arn(r),
        name: format!("agent-role-{r}"),
        inline: inline_policies,
        managed: managed_policies,
        trust: ObservedPolicy {
            id: "trust".into(),
            name: "trust policy".into(),
            document,
            raw,
        },
        pod_identity: None,
    }
}

/// The identity uses an agent of role `r` may have been seen doing.
fn uses(r: usize) -> Vec<(String, String)> {
    let k = r;
    let a = ACCOUNT;
    [
        ("s3:GetObject", format!("arn:aws:s3:::invoices-{k}/*")),
        ("s3:ListBucket", format!("arn:aws:s3:::invoices-{k}")),
        (
            "s3:GetObjectTagging",
            format!("arn:aws:s3:::invoices-{k}/2026/*"),
        ),
        (
            "s3:PutObject",
            format!("arn:aws:s3:::partner-reports/{k}/*"),
        ),
        ("s3:ListBucket", "arn:aws:s3:::partner-reports".to_string()),
        ("s3:PutObject", format!("arn:aws:s3:::receipts-{k}/*")),
        (
            "dynamodb:GetItem",
            format!("arn:aws:dynamodb:us-east-1:{a}:table/ledger-{k}"),
        ),
        (
            "dynamodb:Query",
            format!("arn:aws:dynamodb:us-east-1:{a}:table/ledger-{k}/index/by-date"),
        ),
        (
            "dynamodb:PutItem",
            format!("arn:aws:dynamodb:us-east-1:{a}:table/ledger-{k}"),
        ),
        (
            "sqs:SendMessage",
            format!("arn:aws:sqs:us-east-1:{a}:events-{k}"),
        ),
        (
            "sqs:ReceiveMessage",
            format!("arn:aws:sqs:us-east-1:{a}:events-{k}"),
        ),
        (
            "sqs:DeleteMessage",
            format!("arn:aws:sqs:us-east-1:{a}:events-{k}"),
        ),
        (
            "kms:Decrypt",
            format!("arn:aws:kms:us-east-1:{a}:key/0f6e{k:04}-aa11-4b2c-9d3e-77c1d2e3f4a5"),
        ),
        (
            "kms:GenerateDataKey",
            format!("arn:aws:kms:us-east-1:{a}:key/0f6e{k:04}-aa11-4b2c-9d3e-77c1d2e3f4a5"),
        ),
        (
            "secretsmanager:GetSecretValue",
            format!("arn:aws:secretsmanager:us-east-1:{a}:secret:agent-{k}/db-*"),
        ),
        (
            "secretsmanager:GetSecretValue",
            format!("arn:aws:secretsmanager:us-east-1:{a}:secret:agent-{k}/api-key-*"),
        ),
        ("sts:GetCallerIdentity", "*".to_string()),
        (
            "iam:GetRolePolicy",
            format!("arn:aws:iam::{a}:role/agents/agent-role-{k}"),
        ),
        ("s3:GetObject", "arn:aws:s3:::shared-payments/*".to_string()),
        ("s3:GetObject", format!("arn:aws:s3:::models-{k}/weights/*")),
        (
            "sqs:GetQueueAttributes",
            format!("arn:aws:sqs:us-east-1:{a}:events-{k}"),
        ),
        (
            "dynamodb:UpdateItem",
            format!("arn:aws:dynamodb:us-east-1:{a}:table/ledger-{k}"),
        ),
    ]
    .into_iter()
    .map(|(action, resource)| (action.to_string(), resource))
    .collect()
}

/// One envelope YAML: 8–20 identity entries, roughly one in five below the threshold.
fn envelope_yaml(i: usize, rng: &mut Rng) -> String {
    let AgentNames {
        cluster,
        namespace,
        name,
    } = agent(i);
    let r = i % ROLES;
    let status = if rng.chance(10) {
        "learning"
    } else {
        "converged"
    };
    let mut catalogue = uses(r);
    let entries = 8 + rng.below(13);
    let mut observed = String::new();
    for _ in 0..entries.min(catalogue.len()) {
        let (action, resource) = catalogue.swap_remove(rng.below(catalogue.len()));
        let (count, sessions) = if rng.chance(20) {
            (1 + rng.below(4), 1 + rng.below(2))
        } else {
            (5 + rng.below(5_000), 3 + rng.below(300))
        };
        let closure = if resource.contains('*') {
            "structural"
        } else {
            "literal"
        };
        observed.push_str(&format!(
            "      - action: {action}\n        resource: \"{resource}\"\n        closure: {closure}\n        count: {count}\n        sessions: {sessions}\n"
        ));
    }
    format!(
        "apiVersion: firebreak.dev/v1alpha1
kind: Envelope
metadata:
  name: {name}
  namespace: {namespace}
spec:
  agent:
    cluster: {cluster}
    namespace: {namespace}
    workload: Deployment/{name}
    serviceAccount: {name}
  version: {version}
  status: {status}
  confidence:
    minCount: 5
    minSessions: 3
  identity:
    principals:
      - {role}
    observed:
{observed}  tools:
    observed:
      - server: {namespace}-mcp
        tool: lookup
        closure: literal
        count: 310
        sessions: 95
  network:
    observed:
      - destination: api.partner.example
        port: 443
        closure: literal
        count: 1200
        sessions: 140
",
        version = 1 + rng.below(40),
        role = role_arn(r),
    )
}

/// A native alert for agent `i`: mostly attack attempts on partner buckets, some other breaches.
fn alert_json(seq: usize, i: usize, rng: &mut Rng) -> Vec<u8> {
    let AgentNames {
        cluster,
        namespace,
        name,
    } = agent(i);
    let k = i % ROLES;
    let (action, resource) = match rng.below(10) {
        0..=5 => (
            "s3:PutObject".to_string(),
            format!("arn:aws:s3:::partner-payouts-{}/*", rng.below(8)),
        ),
        6 => (
            "s3:DeleteObject".to_string(),
            format!("arn:aws:s3:::invoices-{k}/2026/*"),
        ),
        7 => (
            "secretsmanager:GetSecretValue".to_string(),
            format!("arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:prod/root-*"),
        ),
        8 => (
            "sqs:SendMessage".to_string(),
            format!("arn:aws:sqs:us-east-1:{ACCOUNT}:events-{}", (k + 1) % ROLES),
        ),
        _ => (
            "s3:GetObject".to_string(),
            format!("arn:aws:s3:::models-{k}/weights/*"),
        ),
    };
    let tier = match rng.below(20) {
        0..=13 => "attack-attempt",
        14..=18 => "anomaly",
        _ => "informational",
    };
    format!(
        r#"{{"id":"a-{seq:08x}","source":"kubescape","time":"2026-11-22T03:{mm:02}:{ss:02}Z","agent":{{"cluster":"{cluster}","namespace":"{namespace}","workload":"Deployment/{name}","serviceAccount":"{name}"}},"dimension":"identity","parameter":{{"action":"{action}","resource":"{resource}"}},"tier":"{tier}","severity":"critical","evidence":{{"rule":"R1004","pod":"{name}-6d9f7c5b8-x2k4q","container":"agent","count":{n}}}}}"#,
        mm = seq / 60 % 60,
        ss = seq % 60,
        n = 1 + rng.below(50),
    )
    .into_bytes()
}

fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

struct Stats {
    p50: Duration,
    p90: Duration,
    p99: Duration,
    p999: Duration,
    max: Duration,
    mean: Duration,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort_unstable();
    let at = |q: f64| {
        let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
        samples[rank - 1]
    };
    let total: Duration = samples.iter().sum();
    Stats {
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
        p999: at(0.999),
        max: at(1.0),
        mean: total / samples.len() as u32,
    }
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn ratio(a: Duration, b: Duration) -> String {
    format!("{:.1}×", a.as_secs_f64() / b.as_secs_f64())
}

fn row(name: &str, s: &Stats) -> String {
    format!(
        "| {name} | {} | {} | {} | {} | {} | {} |",
        us(s.p50),
        us(s.p90),
        us(s.p99),
        us(s.p999),
        us(s.max),
        us(s.mean)
    )
}

fn main() {
    let mut rng = Rng(0x5EED_F1AE_B4EA_4001);

    // The store: generate the YAML first so the timing and the RSS delta cover parse + insert.
    let texts: Vec<String> = (0..AGENTS).map(|i| envelope_yaml(i, &mut rng)).collect();
    let rss_before = rss_kib();
    let started = Instant::now();
    let mut store = EnvelopeStore::default();
    for (i, text) in texts.iter().enumerate() {
        let envelope = Envelope::from_yaml(text).expect("generated envelope is valid");
        store
            .insert(envelope, PathBuf::from(format!("envelopes/agent-{i}.yaml")))
            .expect("one envelope per agent");
    }
    let load = started.elapsed();
    let rss_after = rss_kib();
    drop(texts);
    assert_eq!(store.len(), AGENTS);
    let identity_entries: usize = store.iter().map(|e| e.spec.identity.observed.len()).sum();
    let tail_entries: usize = store.iter().map(|e| e.identity().tail.len()).sum();

    // The observed roles (what `observe` would have read), keyed by ARN.
    let roles: HashMap<String, RoleState> = (0..ROLES).map(|r| (role_arn(r), role(r))).collect();

    let guard = Guard::new(
        Runbooks::embedded().expect("embedded runbook parses"),
        BudgetConfig {
            global_per_minute: usize::MAX,
            namespace_per_minute: usize::MAX,
            agent_per_minute: usize::MAX,
        },
    );

    // Alerts for random agents; incident ids are made by `submit`, before the decision path.
    let alerts: Vec<(Vec<u8>, IncidentId)> = (0..WARMUP + ITERATIONS)
        .map(|seq| {
            let i = rng.below(AGENTS);
            (
                alert_json(seq, i, &mut rng),
                IncidentId::from(format!("inc-{:012x}", rng.next() >> 16)),
            )
        })
        .collect();

    let mut modes: BTreeMap<String, usize> = BTreeMap::new();
    let mut chosen: BTreeMap<String, usize> = BTreeMap::new();
    let mut candidates_total = 0usize;
    let mut run_decision = |bytes: &[u8], incident: &IncidentId, record: bool| -> [Duration; 4] {
        let t0 = Instant::now();
        let alert = Alert::from_json(bytes).expect("generated alert is valid");
        let t1 = Instant::now();
        let envelope = store
            .get(&alert.agent.key())
            .expect("every alerted agent has an envelope");
        let t2 = Instant::now();
        let role = roles
            .get(&envelope.spec.identity.principals[0])
            .expect("every principal has an observed role");
        let plan_id = PlanId::nth(incident, 1);
        let input = PlanInput {
            incident,
            plan: &plan_id,
            alert: &alert,
            envelope,
        };
        let candidates = role
            .candidates(&input)
            .expect("identity alerts have candidates")
            .into_iter()
            .map(candidate_of::<AwsIam>)
            .collect::<Result<Vec<_>, _>>()
            .expect("candidates encode");
        let t3 = Instant::now();
        let plan = guard
            .decide(GuardInput {
                incident,
                plan: plan_id,
                alert: &alert,
                envelope_version: envelope.spec.version,
                envelope_status: envelope.spec.status,
                candidates,
                problems: Vec::new(),
                request: &Request::Runbook,
                now: chrono::Utc::now(),
            })
            .plan;
        let t4 = Instant::now();
        let plan = black_box(plan);
        if record {
            *modes.entry(plan.mode.as_str().to_string()).or_default() += 1;
            let kind = plan
                .chosen
                .as_ref()
                .map_or("none".to_string(), |c| c.kind.to_string());
            *chosen.entry(kind).or_default() += 1;
            candidates_total += plan.candidates.len();
        }
        [t1 - t0, t2 - t1, t3 - t2, t4 - t3]
    };

    // Decision path: warm up, then time every iteration.
    for (bytes, incident) in &alerts[..WARMUP] {
        run_decision(bytes, incident, false);
    }
    let mut total = Vec::with_capacity(ITERATIONS);
    let mut steps: [Vec<Duration>; 4] = Default::default();
    for (bytes, incident) in &alerts[WARMUP..] {
        let parts = run_decision(bytes, incident, true);
        total.push(parts.iter().sum());
        for (step, part) in steps.iter_mut().zip(parts) {
            step.push(part);
        }
    }

    // Baseline: step 1 only, same bytes.
    for (bytes, _) in &alerts[..WARMUP] {
        black_box(Alert::from_json(bytes).expect("generated alert is valid"));
    }
    let mut parse_only = Vec::with_capacity(ITERATIONS);
    for (bytes, _) in &alerts[WARMUP..] {
        let t0 = Instant::now();
        let alert = Alert::from_json(black_box(bytes)).expect("generated alert is valid");
        let elapsed = t0.elapsed();
        black_box(alert);
        parse_only.push(elapsed);
    }

    let decision = stats(total);
    let parse = stats(parse_only);
    let [s_parse, s_get, s_candidates, s_decide] = steps.map(stats);

    println!("## Decision path (bytes → plan), {AGENTS} envelopes loaded");
    println!();
    println!("{ITERATIONS} timed iterations after {WARMUP} warm-up, each timed on its own.");
    println!();
    println!("| path | p50 | p90 | p99 | p99.9 | max | mean |");
    println!("|---|---|---|---|---|---|---|");
    println!("{}", row("baseline: parse only (step 1)", &parse));
    println!("{}", row("**decision (steps 1–4)**", &decision));
    println!(
        "| ratio decision / parse | {} | {} | {} | {} | {} | {} |",
        ratio(decision.p50, parse.p50),
        ratio(decision.p90, parse.p90),
        ratio(decision.p99, parse.p99),
        ratio(decision.p999, parse.p999),
        ratio(decision.max, parse.max),
        ratio(decision.mean, parse.mean)
    );
    println!();
    println!("Per step, inside the decision loop:");
    println!();
    println!("| step | p50 | p90 | p99 | p99.9 | max | mean |");
    println!("|---|---|---|---|---|---|---|");
    println!("{}", row("1. `Alert::from_json`", &s_parse));
    println!("{}", row("2. `EnvelopeStore::get`", &s_get));
    println!("{}", row("3. `RoleState::candidates`", &s_candidates));
    println!("{}", row("4. `engine::decide`", &s_decide));
    println!();
    println!("| store | value |");
    println!("|---|---|");
    println!(
        "| load {AGENTS} envelopes (`Envelope::from_yaml` + `insert`) | {:.1} ms ({:.1} µs each) |",
        load.as_secs_f64() * 1e3,
        load.as_secs_f64() * 1e6 / AGENTS as f64
    );
    match (rss_before, rss_after) {
        (Some(before), Some(after)) => println!(
            "| VmRSS before → after building the store | {:.1} → {:.1} MiB (+{:.1} MiB, ≈{:.1} KiB per envelope) |",
            before as f64 / 1024.0,
            after as f64 / 1024.0,
            after.saturating_sub(before) as f64 / 1024.0,
            after.saturating_sub(before) as f64 / AGENTS as f64
        ),
        _ => println!("| VmRSS | unavailable (no /proc/self/status) |"),
    }
    println!(
        "| identity entries | {identity_entries} ({:.1} per envelope, {tail_entries} below the threshold) |",
        identity_entries as f64 / AGENTS as f64
    );
    println!("| observed roles | {ROLES} (2–4 managed, 1–3 inline policies, IRSA trust) |");
    println!();
    let modes: Vec<String> = modes.iter().map(|(m, n)| format!("{m} {n}")).collect();
    let chosen: Vec<String> = chosen.iter().map(|(k, n)| format!("{k} {n}")).collect();
    println!(
        "Plans: {}; chosen: {}; {:.1} candidates per plan.",
        modes.join(", "),
        chosen.join(", "),
        candidates_total as f64 / ITERATIONS as f64
    );
    println!();
    println!(
        "Target (docs/ARCHITECTURE.md §Targets): p99 ≤ {} → {} (p99 {}).",
        us(TARGET_P99),
        if decision.p99 <= TARGET_P99 {
            "met"
        } else {
            "MISSED"
        },
        us(decision.p99)
    );
}
