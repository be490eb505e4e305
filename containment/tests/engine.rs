//! The engine driven through its public API with a control plane defined outside the crate, the
//! way every real plane is: a rollback pre-empts a verification that never succeeds, a restart
//! re-arms what was in flight without writing twice, a journal in an order the state machine
//! refuses stops the engine at open, and a conflict re-plans the incident.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use firebreak_containment::engine::{Engine, EngineConfig, EngineError, Parts, Request};
use firebreak_containment::ids::IncidentId;
use firebreak_containment::incident::PlanStatus;
use firebreak_containment::journal::{Journal, NewEntry};
use firebreak_containment::metrics::Metrics;
use firebreak_containment::plan::Enforcement;
use firebreak_containment::plane::{
    Change, Check, KindSpec, Observation, Outcome, PlanInput, Plane, PlaneError, Planes, Proposal,
    Route, Verification,
};
use firebreak_containment::runbook::Runbooks;
use firebreak_containment::{Alert, Envelope, EnvelopeStore};
use serde::{Deserialize, Serialize};

static CUT: KindSpec = KindSpec {
    name: "probe.cut",
    ladder: "probe",
    rung: 0,
    approval_only: false,
    enforcement: Enforcement::Durable,
};
static CUT_ALL: KindSpec = KindSpec {
    name: "probe.cut_all",
    ladder: "probe",
    rung: 1,
    approval_only: true,
    enforcement: Enforcement::Durable,
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct CutSpec {
    tool: String,
    all: bool,
}

/// What the plane's enforcement point holds, and how it answers; shared with the test.
#[derive(Default)]
struct Point {
    in_force: AtomicBool,
    /// Mutating calls that reached the enforcement point.
    writes: AtomicUsize,
    /// `check(Applied)` says the cut is not in effect yet, however often it is asked.
    never_verifies: AtomicBool,
    /// The next `change(Apply)` answers that the target changed since the plan.
    conflicts: AtomicUsize,
    /// How long each `observe` (the plane's read) takes, in milliseconds.
    observe_ms: AtomicUsize,
}

#[derive(Clone)]
struct ProbePlane(Arc<Point>);

struct Seen;

impl Observation<CutSpec> for Seen {
    fn candidates(&self, input: &PlanInput<'_>) -> Result<Vec<Proposal<CutSpec>>, PlaneError> {
        let tool = match &input.alert.parameter {
            firebreak_containment::alert::Parameter::Tools { tool, .. } => tool.clone(),
            _ => String::new(),
        };
        Ok([false, true]
            .into_iter()
            .map(|all| {
                Proposal::new(
                    format!("probe {tool}"),
                    if all { "everything" } else { "one tool" }.into(),
                    CutSpec {
                        tool: tool.clone(),
                        all,
                    },
                )
            })
            .collect())
    }
}

#[async_trait]
impl Plane for ProbePlane {
    const KEY: &'static str = "probe";
    const ROUTE: Route = Route::Tools;
    const KINDS: &'static [&'static KindSpec] = &[&CUT, &CUT_ALL];
    type Spec = CutSpec;

    fn kind_of(spec: &CutSpec) -> &'static KindSpec {
        if spec.all {
            &CUT_ALL
        } else {
            &CUT
        }
    }

    fn handles(&self, _: &PlanInput<'_>) -> bool {
        true
    }

    async fn observe(
        &self,
        _: &PlanInput<'_>,
    ) -> Result<Box<dyn Observation<CutSpec>>, PlaneError> {
        let ms = self.0.observe_ms.load(Ordering::SeqCst) as u64;
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(Box::new(Seen))
    }

    async fn change(&self, _: &CutSpec, change: Change) -> Result<Outcome, PlaneError> {
        let point = &self.0;
        if change == Change::Apply
            && point
                .conflicts
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            return Err(PlaneError::Conflict {
                plane: "probe",
                detail: "the target changed".into(),
            });
        }
        let want = change == Change::Apply;
        if point.in_force.load(Ordering::SeqCst) == want {
            return Ok(Outcome::unchanged("already so"));
        }
        point.writes.fetch_add(1, Ordering::SeqCst);
        point.in_force.store(want, Ordering::SeqCst);
        Ok(Outcome::changed("written"))
    }

    async fn check(&self, _: &CutSpec, check: Check) -> Result<Verification, PlaneError> {
        let point = &self.0;
        let in_force = point.in_force.load(Ordering::SeqCst);
        Ok(match check {
            Check::Applied => Verification::that(
                in_force && !point.never_verifies.load(Ordering::SeqCst),
                "probe read",
            ),
            Check::Reverted => Verification::that(!in_force, "probe read"),
        })
    }

    fn verify_deadline(&self) -> Duration {
        Duration::from_secs(300)
    }
}

const ENVELOPE: &str =
    "apiVersion: firebreak.dev/v1alpha1\nkind: Envelope\nmetadata: {name: a}\nspec:\n  \
    agent: {cluster: c, namespace: n, workload: Deployment/a, serviceAccount: a}\n  \
    version: 1\n  status: converged\n";

fn alert(id: &str, tier: &str) -> Alert {
    let body = serde_json::json!({"id": id, "source": "test", "time": chrono::Utc::now(),
        "agent": {"cluster": "c", "namespace": "n", "workload": "Deployment/a", "serviceAccount": "a"},
        "dimension": "tools", "parameter": {"server": "s", "tool": "export"},
        "tier": tier, "severity": "high"});
    Alert::from_json(body.to_string().as_bytes()).expect("alert")
}

fn engine(dir: &Path, point: &Arc<Point>) -> Engine {
    engine_with(
        dir,
        point,
        EngineConfig {
            verify_poll: Duration::from_millis(20),
            ..EngineConfig::default()
        },
    )
}

fn engine_with(dir: &Path, point: &Arc<Point>, config: EngineConfig) -> Engine {
    let mut envelopes = EnvelopeStore::default();
    envelopes
        .insert(
            Envelope::from_yaml(ENVELOPE).expect("envelope"),
            "a.yaml".into(),
        )
        .expect("insert");
    let mut planes = Planes::default();
    planes
        .register(ProbePlane(point.clone()))
        .expect("register");
    Engine::open(Parts {
        journal: Journal::open(&dir.join("journal.db")).expect("journal"),
        envelopes,
        runbooks: Runbooks::embedded().expect("runbooks"),
        planes,
        metrics: Metrics::new().expect("metrics"),
        config,
    })
    .expect("engine")
}

/// Submits as an operator and waits until the change has been made and journaled.
async fn contain(engine: &Engine, point: &Point, id: &str) -> IncidentId {
    let submitted = engine
        .submit(alert(id, "anomaly"), Request::Operator("alice".into()))
        .await
        .expect("submit");
    let until = Instant::now() + Duration::from_secs(10);
    while !point.in_force.load(Ordering::SeqCst) {
        assert!(Instant::now() < until, "the cut was never applied");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The cut is in force just before its `applied` is journaled: wait for the record too.
    while engine
        .incident(&submitted.incident)
        .await
        .is_some_and(|view| view.status() == PlanStatus::Applying)
    {
        assert!(Instant::now() < until, "the change was never recorded");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    submitted.incident
}

#[tokio::test]
async fn a_rollback_preempts_a_verification_that_never_succeeds() {
    let dir = tempfile::tempdir().expect("dir");
    let point = Arc::new(Point::default());
    point.never_verifies.store(true, Ordering::SeqCst);
    let engine = engine(dir.path(), &point);
    let incident = contain(&engine, &point, "a-1").await;
    let view = engine.incident(&incident).await.expect("incident");
    assert_eq!(
        view.status(),
        PlanStatus::Applied,
        "verifying, for 5 minutes"
    );

    let asked = Instant::now();
    let status = tokio::time::timeout(
        Duration::from_secs(2),
        engine.rollback(&incident, Some("alice".into())),
    )
    .await
    .expect("the rollback did not wait for the verification's deadline")
    .expect("rollback");
    assert_eq!(status, PlanStatus::Reverted);
    assert!(asked.elapsed() < Duration::from_secs(2));
    assert!(
        !point.in_force.load(Ordering::SeqCst),
        "reverted at the point"
    );
    assert_eq!(
        point.writes.load(Ordering::SeqCst),
        2,
        "one apply, one revert"
    );
}

#[tokio::test]
async fn a_restart_rearms_the_verification_and_writes_nothing_twice() {
    let dir = tempfile::tempdir().expect("dir");
    let point = Arc::new(Point::default());
    point.never_verifies.store(true, Ordering::SeqCst);
    let first = engine(dir.path(), &point);
    let incident = contain(&first, &point, "r-1").await;
    first.shutdown();
    drop(first);

    // The enforcement point now confirms; a new engine on the same journal must find the plan
    // mid-verification, re-arm the check and settle it without applying again.
    point.never_verifies.store(false, Ordering::SeqCst);
    let second = engine(dir.path(), &point);
    let plan = {
        let view = second.incident(&incident).await.expect("restored");
        assert_eq!(
            view.status(),
            PlanStatus::Applied,
            "restored mid-verification"
        );
        view.plans[0].plan.id.clone()
    };
    assert_eq!(second.recover(), vec![incident.clone()]);
    let status = tokio::time::timeout(Duration::from_secs(10), second.settled(&incident, &plan))
        .await
        .expect("settled");
    assert_eq!(status, Some(PlanStatus::Contained));
    assert_eq!(point.writes.load(Ordering::SeqCst), 1, "applied once");
}

#[tokio::test]
async fn a_journal_in_an_order_the_state_machine_refuses_stops_the_engine_at_open() {
    let dir = tempfile::tempdir().expect("dir");
    let point = Arc::new(Point::default());
    let incident = {
        let engine = engine(dir.path(), &point);
        let incident = contain(&engine, &point, "j-1").await;
        engine.rollback(&incident, None).await.expect("rollback");
        engine.shutdown();
        incident
    };
    // A late `verified` after the plan was reverted: the old fold turned it back into contained.
    let journal = Journal::open(&dir.path().join("journal.db")).expect("journal");
    let late = journal
        .append(NewEntry {
            incident: incident.to_string(),
            kind: "verified".into(),
            body: serde_json::json!({"plan": format!("{incident}-p1"), "verification": {"ok": true, "detail": "late"}}),
        })
        .await
        .expect("append");
    drop(journal);
    let mut envelopes = EnvelopeStore::default();
    envelopes
        .insert(
            Envelope::from_yaml(ENVELOPE).expect("envelope"),
            "a.yaml".into(),
        )
        .expect("insert");
    let err = Engine::open(Parts {
        journal: Journal::open(&dir.path().join("journal.db")).expect("journal"),
        envelopes,
        runbooks: Runbooks::embedded().expect("runbooks"),
        planes: Planes::default(),
        metrics: Metrics::new().expect("metrics"),
        config: EngineConfig::default(),
    })
    .err()
    .expect("refused");
    match err {
        EngineError::History { seq, .. } => assert_eq!(seq, late.seq),
        other => panic!("expected a history error, got {other}"),
    }
}

#[tokio::test]
async fn a_conflict_replans_the_incident_and_contains_on_the_new_plan() {
    let dir = tempfile::tempdir().expect("dir");
    let point = Arc::new(Point::default());
    point.conflicts.store(1, Ordering::SeqCst);
    let engine = engine(dir.path(), &point);
    // An attack attempt: the re-plan runs under the runbook, which acts alone on rung 0.
    let incident = engine
        .submit(alert("c-1", "attack-attempt"), Request::Runbook)
        .await
        .expect("submit")
        .incident;
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let view = engine.incident(&incident).await.expect("incident");
        if view.status() == PlanStatus::Contained {
            let statuses: Vec<PlanStatus> = view.plans.iter().map(|p| p.status()).collect();
            assert_eq!(statuses, [PlanStatus::Failed, PlanStatus::Contained]);
            break;
        }
        assert!(Instant::now() < until, "not contained: {:?}", view.status());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(point.writes.load(Ordering::SeqCst), 1);
    assert!(engine
        .render_metrics()
        .contains("firebreak_replans_total 1"));
}

/// Every incident as JSON, by id: what the API would show.
async fn views(engine: &Engine) -> Vec<serde_json::Value> {
    let mut incidents = engine.incidents().await;
    incidents.sort_by(|a, b| a.id.cmp(&b.id));
    incidents
        .iter()
        .map(|i| serde_json::to_value(i).expect("incident JSON"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_past_max_planning_is_shed_unrecorded_resends_are_answered_and_the_view_is_the_journal(
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let point = Arc::new(Point::default());
    point.observe_ms.store(200, Ordering::SeqCst);
    let engine = engine_with(
        dir.path(),
        &point,
        EngineConfig {
            verify_poll: Duration::from_millis(20),
            max_planning: 4,
            ..EngineConfig::default()
        },
    );
    let storm_0 = alert("storm-0", "anomaly");
    let first = engine
        .submit(storm_0.clone(), Request::Runbook)
        .await
        .expect("the first alert is taken in");

    // 40 distinct alerts at once, each read taking 200 ms: at most 4 are in planning.
    let storm = (1..=40).map(|i| {
        let engine = engine.clone();
        async move {
            engine
                .submit(alert(&format!("storm-{i}"), "anomaly"), Request::Runbook)
                .await
        }
    });
    let resend = async {
        // While the storm holds every permit, a resend is still answered from the view.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = Instant::now();
        let again = engine.submit(storm_0.clone(), Request::Runbook).await;
        (again, started.elapsed())
    };
    let (results, (again, resend_took)) =
        tokio::join!(futures_util::future::join_all(storm), resend);
    let again = again.expect("a resend is never shed");
    assert!(again.deduplicated && again.incident == first.incident);
    assert!(
        resend_took < Duration::from_millis(200),
        "the resend waited: {resend_took:?}"
    );

    let shed: Vec<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| matches!(r, Err(EngineError::Overloaded { limit: 4 })))
        .map(|(i, _)| i + 1)
        .collect();
    let taken = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(shed.len() + taken, 40, "{results:?}");
    assert!(
        !shed.is_empty() && taken >= 4,
        "shed {shed:?}, taken {taken}"
    );

    // A shed alert left no trace: nothing journaled, and its retry is new, not a resend.
    let received = |engine: &Engine| {
        engine
            .journal()
            .entries()
            .expect("entries")
            .iter()
            // The storm repeats one breach: alerts after the first are folded into its incident.
            .filter(|e| e.kind == "alert-received" || e.kind == "alert-deduplicated")
            .count()
    };
    assert_eq!(received(&engine), 1 + taken);
    let metrics = engine.metrics().render();
    assert!(
        metrics.contains(&format!(
            "firebreak_alerts_total{{outcome=\"shed\"}} {}",
            shed.len()
        )),
        "{metrics}"
    );
    point.observe_ms.store(0, Ordering::SeqCst);
    let shed_id = format!("storm-{}", shed[0]);
    let names = |engine: &Engine, id: &str| {
        engine
            .journal()
            .entries()
            .expect("entries")
            .iter()
            .any(|e| e.body.to_string().contains(&format!("\"{id}\"")))
    };
    assert!(!names(&engine, &shed_id), "a shed alert is not journaled");
    engine
        .submit(alert(&shed_id, "anomaly"), Request::Runbook)
        .await
        .expect("the retry is taken in");
    assert!(names(&engine, &shed_id), "its retry is taken in as new");
    assert_eq!(received(&engine), 2 + taken);

    // The view is the fold of the journal: a second engine on the same file shows the same.
    let before = views(&engine).await;
    engine.shutdown();
    drop(engine);
    let reopened = engine_with(dir.path(), &point, EngineConfig::default());
    assert_eq!(views(&reopened).await, before);
}
