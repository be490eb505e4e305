//! Driving one plan: intent → apply → verify, revert → verify, each step journaled before the
//! next, and every wait a scheduled re-check (docs/ARCHITECTURE.md §Engine).

use super::*;

impl Task {
    /// Takes the plan's next steps until it waits (a timer, a human) or rests.
    pub(super) async fn drive(&mut self, shared: &Shared, plan: &PlanId) {
        loop {
            let Some(phase) = self.phase(plan) else {
                return;
            };
            let flow = match phase {
                Phase::Due => self.apply(shared, plan, true).await,
                Phase::Applying => self.apply(shared, plan, false).await,
                Phase::Applied { verify_by } => {
                    self.check(shared, plan, Check::Applied, verify_by).await
                }
                Phase::Reverting {
                    verify_by: None, ..
                } => self.revert(shared, plan).await,
                Phase::Reverting {
                    verify_by: Some(verify_by),
                    ..
                } => self.check(shared, plan, Check::Reverted, verify_by).await,
                Phase::Contained {
                    expires_at: Some(at),
                } => {
                    self.schedule.arm(instant_at(at), Due::Expire(plan.clone()));
                    Flow::Wait
                }
                _ => Flow::Wait,
            };
            if let Flow::Wait = flow {
                return;
            }
        }
    }

    async fn apply(&mut self, shared: &Shared, plan: &PlanId, journal_intent: bool) -> Flow {
        let Some((action, plane)) = self.action_and_plane(shared, plan).await else {
            return Flow::Wait;
        };
        if journal_intent {
            let intent = Event::Intent {
                plan: plan.clone(),
                action: Box::new(action.clone()),
            };
            if let Err(e) = self.record(shared, intent).await {
                warn!(error = %e, "cannot journal the intent; not acting");
                return Flow::Wait;
            }
            if shared.config.fault == Some(Fault::CrashAfterIntent) {
                warn!("fault injection: aborting after the intent was journaled");
                std::process::abort();
            }
        }
        let result = shared.bounded(plane.change(&action, Change::Apply)).await;
        match result {
            Ok(outcome) => {
                info!(kind = %action.kind, changed = outcome.changed, "applied");
                shared.count_action(&action, "applied");
                self.attempts.remove(plan);
                let event = Event::Applied {
                    plan: plan.clone(),
                    outcome,
                    verify_by: Utc::now() + chrono_duration(plane.verify_deadline()),
                };
                flow(self.record(shared, event).await)
            }
            Err(e) => {
                self.fault(shared, plan, &action, Call::Change(Change::Apply), e)
                    .await
            }
        }
    }

    async fn revert(&mut self, shared: &Shared, plan: &PlanId) -> Flow {
        let Some((action, plane)) = self.action_and_plane(shared, plan).await else {
            return Flow::Wait;
        };
        match shared.bounded(plane.change(&action, Change::Revert)).await {
            Ok(outcome) => {
                info!(kind = %action.kind, changed = outcome.changed, "reverted");
                self.attempts.remove(plan);
                let event = Event::Reverted {
                    plan: plan.clone(),
                    outcome,
                    verify_by: Utc::now() + chrono_duration(plane.verify_deadline()),
                };
                flow(self.record(shared, event).await)
            }
            Err(e) => {
                self.fault(shared, plan, &action, Call::Change(Change::Revert), e)
                    .await
            }
        }
    }

    /// One read of the enforcement point. A command arriving meanwhile pre-empts it (the read
    /// is dropped and re-armed), so a rollback never waits for a slow verification.
    async fn check(
        &mut self,
        shared: &Shared,
        plan: &PlanId,
        check: Check,
        verify_by: DateTime<Utc>,
    ) -> Flow {
        let Some((action, plane)) = self.action_and_plane(shared, plan).await else {
            return Flow::Wait;
        };
        let read = shared.bounded(plane.check(&action, check));
        let result = tokio::select! {
            biased;
            command = self.rx.recv() => {
                if let Some(command) = command {
                    self.pending.push_back(command);
                }
                self.schedule.arm(Instant::now(), Due::Step(plan.clone()));
                return Flow::Wait;
            }
            result = read => result,
        };
        let last = match result {
            Ok(v) if v.ok => {
                self.attempts.remove(plan);
                return self.checked(shared, plan, &action, check, v).await;
            }
            Ok(v) => v.detail,
            Err(e) if e.kind() == crate::plane::FaultKind::Transient => {
                shared.count_fault(&e);
                e.to_string()
            }
            Err(e) => {
                shared.count_fault(&e);
                return self.unverified(shared, plan, check, e.to_string()).await;
            }
        };
        let attempt = self.attempts.entry(plan.clone()).or_default();
        *attempt += 1;
        let interval = shared
            .config
            .verify_poll
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(16)))
            .min(Duration::from_secs(15));
        let next = Utc::now() + chrono_duration(interval);
        if next > verify_by {
            self.attempts.remove(plan);
            let detail = format!(
                "not verified by {}: {last}",
                verify_by.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            );
            return self.unverified(shared, plan, check, detail).await;
        }
        self.schedule
            .arm(Instant::now() + interval, Due::Step(plan.clone()));
        Flow::Wait
    }

    async fn checked(
        &mut self,
        shared: &Shared,
        plan: &PlanId,
        action: &Candidate,
        check: Check,
        verification: Verification,
    ) -> Flow {
        let event = match check {
            Check::Applied => {
                shared.count_action(action, "contained");
                if let Some(applied) = self.state(plan).and_then(|s| s.applied_at) {
                    let seconds = (Utc::now() - applied).num_milliseconds() as f64 / 1000.0;
                    shared.metrics.verify_seconds.observe(seconds.max(0.0));
                }
                Event::Verified {
                    plan: plan.clone(),
                    verification,
                }
            }
            Check::Reverted => {
                let result = match self.phase(plan) {
                    Some(Phase::Reverting {
                        reason: RevertReason::TtlExpired,
                        ..
                    }) => "expired",
                    _ => "reverted",
                };
                shared.count_action(action, result);
                Event::RevertVerified {
                    plan: plan.clone(),
                    verification,
                }
            }
        };
        {
            let recorded = self.record(shared, event).await;
            flow(recorded)
        }
    }

    /// The check failed for good (deadline passed, or a fault that will not heal).
    async fn unverified(
        &mut self,
        shared: &Shared,
        plan: &PlanId,
        check: Check,
        detail: String,
    ) -> Flow {
        shared.metrics.escalations.inc();
        warn!(plan = %plan, detail = %detail, "not verified");
        let event = match check {
            Check::Applied => {
                if let Some(action) = self.state(plan).and_then(|s| s.plan.chosen.clone()) {
                    shared.count_action(&action, "verify-failed");
                }
                Event::VerifyFailed {
                    plan: plan.clone(),
                    detail,
                }
            }
            Check::Reverted => Event::RevertFailed {
                plan: plan.clone(),
                error: detail,
            },
        };
        let _ = self.record(shared, event).await;
        Flow::Wait
    }

    /// A change failed: the error policy decides, and the journal shows it.
    async fn fault(
        &mut self,
        shared: &Shared,
        plan: &PlanId,
        action: &Candidate,
        call: Call,
        error: PlaneError,
    ) -> Flow {
        shared.count_fault(&error);
        let attempt = {
            let a = self.attempts.entry(plan.clone()).or_default();
            *a += 1;
            *a
        };
        let next = shared.config.errors.after(error.kind(), attempt);
        warn!(kind = %action.kind, call = call.as_str(), attempt, error = %error, next = ?next, "plane call failed");
        let retry_at = match next {
            Next::Retry(after) => Some(Utc::now() + chrono_duration(after)),
            _ => None,
        };
        let event = Event::PlaneFault {
            plan: plan.clone(),
            call,
            fault: error.kind(),
            error: error.to_string(),
            attempt,
            retry_at,
        };
        if let Err(e) = self.record(shared, event).await {
            warn!(error = %e, "cannot journal a plane fault");
            return Flow::Wait;
        }
        match next {
            Next::Retry(after) => {
                self.schedule
                    .arm(Instant::now() + after, Due::Step(plan.clone()));
            }
            Next::Stop | Next::Replan => {
                self.attempts.remove(plan);
                shared.metrics.escalations.inc();
                let event = match call {
                    Call::Change(Change::Revert) => Event::RevertFailed {
                        plan: plan.clone(),
                        error: error.to_string(),
                    },
                    _ => {
                        shared.count_action(action, "failed");
                        Event::Failed {
                            plan: plan.clone(),
                            error: error.to_string(),
                        }
                    }
                };
                if self.record(shared, event).await.is_ok()
                    && next == Next::Replan
                    && call == Call::Change(Change::Apply)
                {
                    self.replan(shared, plan).await;
                }
            }
        }
        Flow::Wait
    }

    pub(super) async fn expire(&mut self, shared: &Shared, plan: &PlanId) {
        if matches!(
            self.phase(plan),
            Some(Phase::Contained { .. } | Phase::Applied { .. } | Phase::VerifyFailed)
        ) {
            info!(plan = %plan, "TTL expired: reverting");
            let event = Event::RevertIntent {
                plan: plan.clone(),
                reason: RevertReason::TtlExpired,
                by: None,
            };
            if self.record(shared, event).await.is_ok() {
                self.drive(shared, plan).await;
            }
        }
    }

    /// Undoes every action of the incident (newest first) and cancels plans still waiting.
    pub(super) async fn rollback(
        &mut self,
        shared: &Shared,
        by: Option<String>,
        reply: Reply<PlanStatus>,
    ) {
        let Some(incident) = &self.incident else {
            let _ = reply.send(Err(EngineError::UnknownIncident(self.id.clone())));
            return;
        };
        let plans: Vec<(PlanId, Phase)> = incident
            .plans
            .iter()
            .rev()
            .map(|p| (p.plan.id.clone(), p.phase.clone()))
            .collect();
        for (plan, phase) in plans {
            self.schedule.cancel(&plan);
            self.attempts.remove(&plan);
            let event = match phase {
                Phase::Reverting { .. } => None,
                p if p.may_have_acted() => Some(Event::RevertIntent {
                    plan: plan.clone(),
                    reason: RevertReason::Rollback,
                    by: by.clone(),
                }),
                Phase::Escalated
                | Phase::AwaitingApproval
                | Phase::Due
                | Phase::Failed { acted: false } => Some(Event::Cancelled {
                    plan: plan.clone(),
                    reason: "rolled back before it was applied".into(),
                }),
                _ => continue,
            };
            if let Some(event) = event {
                if let Err(e) = self.record(shared, event).await {
                    let _ = reply.send(Err(e));
                    return;
                }
            }
            self.drive(shared, &plan).await;
        }
        self.rollback_waiters.push(reply);
    }

    /// Answers rollbacks once no plan is still being undone.
    pub(super) fn answer_rollbacks(&mut self) {
        if self.rollback_waiters.is_empty() {
            return;
        }
        let Some(incident) = &self.incident else {
            return;
        };
        if incident
            .plans
            .iter()
            .any(|p| matches!(p.phase, Phase::Reverting { .. }))
        {
            return;
        }
        let status = incident.status();
        for waiter in self.rollback_waiters.drain(..) {
            let _ = waiter.send(Ok(status));
        }
    }

    pub(super) async fn resume(&mut self, shared: &Shared) {
        let unplanned: Vec<Alert> = self
            .incident
            .iter()
            .flat_map(|i| i.unplanned())
            .cloned()
            .collect();
        for alert in unplanned {
            info!(alert = %alert.id, "planning an alert journaled before a restart");
            if let Err(e) = self.plan_alert(shared, &alert, &Request::Runbook).await {
                warn!(alert = %alert.id, error = %e, "cannot plan a recovered alert");
            }
        }
        let plans: Vec<(PlanId, Phase, Option<Candidate>)> = self
            .incident
            .iter()
            .flat_map(|i| &i.plans)
            .map(|p| (p.plan.id.clone(), p.phase.clone(), p.plan.chosen.clone()))
            .collect();
        for (plan, phase, chosen) in plans {
            // Enforcement points Firebreak owns may keep state in memory: apply their actions
            // again (idempotently) from the journal.
            let lost_on_restart = chosen.as_ref().is_some_and(|c| {
                c.enforcement == Enforcement::Immediate
                    && matches!(
                        phase,
                        Phase::Applied { .. } | Phase::Contained { .. } | Phase::VerifyFailed
                    )
            });
            if let (true, Some(action)) = (lost_on_restart, chosen) {
                self.reassert(shared, &plan, &action).await;
            }
            self.drive(shared, &plan).await;
        }
    }

    async fn reassert(&mut self, shared: &Shared, plan: &PlanId, action: &Candidate) {
        let Some(plane) = shared.planes.get(&action.plane) else {
            warn!(plan = %plan, plane = %action.plane, "cannot re-assert: the plane is not configured");
            shared.metrics.escalations.inc();
            return;
        };
        match shared.bounded(plane.change(action, Change::Apply)).await {
            Ok(outcome) => {
                info!(plan = %plan, detail = %outcome.detail, "re-asserted after restart")
            }
            Err(e) => {
                shared.count_fault(&e);
                shared.metrics.escalations.inc();
                warn!(plan = %plan, error = %e, "cannot re-assert after restart");
            }
        }
    }
}
