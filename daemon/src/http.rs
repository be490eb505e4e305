//! The HTTP API (README, "The contract"): alerts in, incidents out, approvals and rollbacks; bearer-token
//! authentication on everything but `/healthz`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use firebreak_containment::engine::{Engine, EngineError, Request as PlanRequest};
use firebreak_containment::ids::IncidentId;
use firebreak_containment::incident::{Incident, PlanStatus};
use firebreak_containment::{Alert, InputError};
use serde::Deserialize;
use serde_json::json;

use crate::sources::{self, Item, Outcome, Sources};

#[derive(Clone)]
pub struct Api {
    pub engine: Engine,
    pub token: Arc<str>,
    pub sources: Sources,
}

/// The read-only listener for Prometheus: metrics and health, no token, nothing else.
pub fn metrics_router(api: Api) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "",
                "this listener serves only /metrics and /healthz",
            )
        })
        .with_state(api)
}

pub fn router(api: Api, max_body_bytes: usize) -> Router {
    let authenticated = Router::new()
        .route("/v1/alerts", post(post_alert))
        // An operator's containment of one alert: the CLI's `contain` goes through here, so
        // the daemon that enforces in-process planes is the one that acts.
        .route("/v1/contain", post(contain))
        .route("/v1/alerts/kubescape", post(post_kubescape))
        // The path Kubescape node-agent's HTTP exporter posts to.
        .route("/v1/runtimealerts", post(post_kubescape))
        // Stdout exporter lines (NDJSON), as `firebreak ingest kubescape-stdout` sends them.
        .route("/v1/alerts/kubescape/stdout", post(post_kubescape_lines))
        .route("/v1/alerts/falco", post(post_falco))
        .route("/v1/alerts/cloudevents", post(post_cloudevents))
        .route("/v1/incidents", get(list_incidents))
        .route("/v1/incidents/{id}", get(get_incident))
        .route("/v1/incidents/{id}/approve", post(approve))
        .route("/v1/incidents/{id}/rollback", post(rollback))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(api.clone(), authenticate));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .merge(authenticated)
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "",
                "no such endpoint; see the README for the API",
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(max_body_bytes))
        .with_state(api)
}

/// `{"error": {"field": …, "reason": …}}` with the given status.
pub fn error(status: StatusCode, field: &str, reason: &str) -> Response {
    ApiError {
        status,
        field: field.to_string(),
        reason: reason.to_string(),
    }
    .into_response()
}

/// An error answer: which field, why, and the status.
pub struct ApiError {
    status: StatusCode,
    field: String,
    reason: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // Shed before anything was recorded: the sender retries the same body.
        let retry =
            (self.status == StatusCode::TOO_MANY_REQUESTS).then_some([(header::RETRY_AFTER, "1")]);
        (
            self.status,
            retry,
            Json(json!({"error": {"field": self.field, "reason": self.reason}})),
        )
            .into_response()
    }
}

impl From<InputError> for ApiError {
    fn from(e: InputError) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            field: e.field,
            reason: e.reason,
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let (status, field) = match &e {
            EngineError::UnknownAgent { .. } => (StatusCode::NOT_FOUND, "agent"),
            EngineError::UnknownIncident(_) => (StatusCode::NOT_FOUND, "id"),
            EngineError::PlanHashMismatch { .. } => (StatusCode::CONFLICT, "planHash"),
            EngineError::AlreadyApproved { .. } => (StatusCode::CONFLICT, "planHash"),
            EngineError::NothingToApprove(_) => (StatusCode::CONFLICT, "id"),
            EngineError::AlertConflict { .. } => (StatusCode::CONFLICT, "id"),
            EngineError::Stale { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "time"),
            EngineError::Overloaded { .. } => (StatusCode::TOO_MANY_REQUESTS, ""),
            EngineError::Journal(_)
            | EngineError::History { .. }
            | EngineError::Encode(_)
            | EngineError::Stopping => (StatusCode::SERVICE_UNAVAILABLE, ""),
        };
        ApiError {
            status,
            field: field.to_string(),
            reason: e.to_string(),
        }
    }
}

fn body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| ApiError {
        status: rejection.status(),
        field: String::new(),
        reason: format!("cannot read the body: {}", rejection.body_text()),
    })
}

async fn authenticate(State(api): State<Api>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(token) if constant_time_eq(token.as_bytes(), api.token.as_bytes()) => {
            next.run(request).await
        }
        _ => {
            let mut response = error(
                StatusCode::UNAUTHORIZED,
                "Authorization",
                "send `Authorization: Bearer <token>` with the token from the API token file",
            );
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            response
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn post_alert(State(api): State<Api>, raw: Result<Bytes, BytesRejection>) -> Response {
    let outcome = async {
        let alert = Alert::from_json(&body(raw)?)?;
        let submitted = api.engine.submit(alert, PlanRequest::Runbook).await?;
        let status = if submitted.deduplicated {
            StatusCode::OK
        } else {
            StatusCode::ACCEPTED
        };
        Ok::<_, ApiError>((status, Json(submitted)).into_response())
    }
    .await;
    outcome.unwrap_or_else(|e| {
        api.engine
            .metrics()
            .alerts
            .with_label_values(&["rejected"])
            .inc();
        tracing::debug!(status = %e.status, field = %e.field, reason = %e.reason, "alert rejected");
        e.into_response()
    })
}

/// `POST /v1/contain`: `{alert, by, dryRun?}`. Sending it is the operator's approval of the
/// plan (rungs marked approval-only still wait); answers once the plan has settled.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Contain {
    alert: serde_json::Value,
    by: String,
    #[serde(default)]
    dry_run: bool,
}

async fn contain(
    State(api): State<Api>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: Contain = InputError::from_json(&body(raw)?)?;
    let by = request.by.trim();
    if by.is_empty() || by.len() > 128 || by.chars().any(char::is_control) {
        return Err(InputError::new(
            "by",
            "must name the operator: 1 to 128 printable characters",
        )
        .into());
    }
    let alert =
        Alert::from_json(request.alert.to_string().as_bytes()).map_err(|e| e.within("alert"))?;
    let plan_request = if request.dry_run {
        PlanRequest::DryRun
    } else {
        PlanRequest::Operator(by.to_string())
    };
    let submitted = api.engine.submit_settled(alert, plan_request).await?;
    let detail = match &submitted.plan {
        Some(plan) => api
            .engine
            .incident(&submitted.incident)
            .await
            .and_then(|i| i.plan(&plan.id).and_then(|p| p.detail.clone())),
        None => None,
    };
    let mut answer = serde_json::to_value(&submitted).unwrap_or_default();
    if let (Some(map), Some(detail)) = (answer.as_object_mut(), detail) {
        map.insert("detail".into(), json!(detail));
    }
    Ok(Json(answer).into_response())
}

async fn post_kubescape(State(api): State<Api>, raw: Result<Bytes, BytesRejection>) -> Response {
    mapped(&api, "kubescape", raw, sources::kubescape::map).await
}

async fn post_kubescape_lines(
    State(api): State<Api>,
    raw: Result<Bytes, BytesRejection>,
) -> Response {
    mapped(&api, "kubescape", raw, sources::kubescape::map_lines).await
}

async fn post_falco(State(api): State<Api>, raw: Result<Bytes, BytesRejection>) -> Response {
    mapped(&api, "falco", raw, sources::falco::map).await
}

async fn post_cloudevents(
    State(api): State<Api>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Response {
    mapped(&api, "cloudevents", raw, |bytes, context| {
        sources::cloudevents::map(&headers, bytes, context)
    })
    .await
}

/// A source endpoint: the body mapped by `map`, then ingested.
async fn mapped(
    api: &Api,
    source: &str,
    raw: Result<Bytes, BytesRejection>,
    map: impl FnOnce(&[u8], &sources::Context<'_>) -> Result<Vec<Item>, InputError>,
) -> Response {
    let bytes = match body(raw) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let items = map(&bytes, &source_context(api));
    respond(api, source, items).await
}

fn source_context(api: &Api) -> sources::Context<'_> {
    sources::Context {
        cluster: &api.sources.cluster,
        envelopes: api.engine.envelopes(),
    }
}

/// `{results: [...]}`: `202` if a new incident was opened, `200` otherwise, and `400` (with the
/// first item's error) when every item was rejected, so that a misconfigured sender sees it.
async fn respond(api: &Api, source: &str, items: Result<Vec<Item>, InputError>) -> Response {
    let items = match items {
        Ok(items) => items,
        Err(e) => {
            api.sources.count(source, Outcome::Rejected);
            tracing::debug!(source, field = %e.field, reason = %e.reason, "alert rejected");
            return ApiError::from(e).into_response();
        }
    };
    let results = match sources::ingest(&api.engine, &api.sources, source, items).await {
        Ok(results) => results,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let first_rejected = results.iter().find(|r| r.outcome == Outcome::Rejected);
    if let (Some(first), true) = (
        first_rejected,
        results.iter().all(|r| r.outcome == Outcome::Rejected),
    ) {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({
                "error": {"field": first.field, "reason": first.reason},
                "results": results,
            })),
        )
            .into_response();
    }
    let opened = results.iter().any(|r| {
        matches!(r.outcome, Outcome::Accepted | Outcome::Escalated) && r.incident.is_some()
    });
    let status = if opened {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    (status, Json(json!({"results": results}))).into_response()
}

/// One line per incident for listings.
pub fn summary(i: &Incident) -> serde_json::Value {
    json!({
        "id": i.id,
        "agent": i.agent.key(),
        "dimension": i.dimension,
        "status": i.status(),
        "openedAt": i.opened_at,
        "updatedAt": i.updated_at,
        "alerts": i.alerts.len(),
        "plans": i.plans.len(),
    })
}

/// The full incident with its derived status.
pub fn detail(i: &Incident) -> serde_json::Value {
    let mut v = serde_json::to_value(i).unwrap_or_default();
    if let Some(map) = v.as_object_mut() {
        map.insert("status".into(), json!(i.status()));
    }
    v
}

async fn list_incidents(State(api): State<Api>) -> Response {
    let incidents = api.engine.incidents().await;
    Json(json!({"incidents": incidents.iter().map(summary).collect::<Vec<_>>()})).into_response()
}

async fn get_incident(
    State(api): State<Api>,
    Path(id): Path<IncidentId>,
) -> Result<Response, ApiError> {
    let incident = api
        .engine
        .incident(&id)
        .await
        .ok_or(EngineError::UnknownIncident(id))?;
    Ok(Json(detail(&incident)).into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Approval {
    plan_hash: String,
    #[serde(default)]
    by: Option<String>,
}

async fn approve(
    State(api): State<Api>,
    Path(id): Path<IncidentId>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let approval: Approval = InputError::from_json(&body(raw)?)?;
    let by = approval.by.unwrap_or_else(|| "api".to_string());
    let plan = api.engine.approve(&id, &approval.plan_hash, &by).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"incident": id, "plan": plan, "status": "applying"})),
    )
        .into_response())
}

/// `{by?}`: who asked, journaled with the revert.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Rollback {
    #[serde(default)]
    by: Option<String>,
}

async fn rollback(
    State(api): State<Api>,
    Path(id): Path<IncidentId>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let raw = body(raw)?;
    let request: Rollback = if raw.iter().all(u8::is_ascii_whitespace) {
        Rollback::default()
    } else {
        InputError::from_json(&raw)?
    };
    let status: PlanStatus = api.engine.rollback(&id, request.by).await?;
    Ok(Json(json!({"incident": id, "status": status})).into_response())
}

async fn metrics(State(api): State<Api>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        api.engine.render_metrics(),
    )
        .into_response()
}
