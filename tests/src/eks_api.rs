//! A strict fake of the EKS Pod Identity API on loopback, for tests that drive the real
//! `aws-sdk-eks` client (moto has no Pod Identity APIs, docs/ARCHITECTURE.md §Testing).
//!
//! It speaks rest-json as the SDK sends it and rejects what EKS rejects:
//!
//! * `GET /clusters/{name}/pod-identity-associations?namespace=&serviceAccount=&maxResults=&nextToken=`
//!   lists summaries (paginated), `GET` / `DELETE /clusters/{name}/pod-identity-associations/{id}`
//!   describe / delete one (`{"association": …}`), `POST /clusters/{name}/pod-identity-associations`
//!   creates one;
//! * errors carry `x-amzn-errortype` and a `{"message"}` body: `ResourceNotFoundException` (404:
//!   unknown cluster or association), `InvalidParameterException` (400: a missing or malformed
//!   field), `ResourceInUseException` (409: the ServiceAccount already has an association),
//!   `IdempotentParameterMismatchException` (400: a `clientRequestToken` reused with another
//!   body), `ServerException` (500, on demand: [`EksApi::fail_next`] before acting,
//!   [`EksApi::lose_next_write_responses`] after a write was stored, as a lost response);
//! * a `clientRequestToken` seen before with the same body answers the original association
//!   again and creates nothing;
//! * eventual consistency on demand: [`EksApi::stale_lists`] makes the next lists answer as
//!   before the latest write;
//! * every request needs a SigV4 `Authorization` header scoped to the `eks` service
//!   (`MissingAuthenticationTokenException`, 403, otherwise).
//!
//! [`EksApi::writes`] counts every mutating request received (POST, DELETE), whatever its
//! outcome, so a dry run can be proven write-free; [`EksApi::created`] counts associations
//! actually created.
//!
//! One server per test: it runs on the test's runtime and stops when dropped.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Result;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};

use crate::fake::{Faults, Served};

pub const REGION: &str = "us-east-1";
pub const ACCOUNT_ID: &str = "123456789012";

#[derive(Default)]
struct Store {
    /// Cluster name → association id → the full association.
    clusters: BTreeMap<String, BTreeMap<String, Value>>,
    /// (cluster, clientRequestToken) → (the request body without the token, the answer).
    tokens: BTreeMap<(String, String), (Value, Value)>,
    next_id: u64,
    writes: u64,
    created: u64,
    faults: Faults,
    lose_next: u32,
    stale_lists: u32,
    /// The clusters as they were before the latest write, for stale lists.
    previous: Option<BTreeMap<String, BTreeMap<String, Value>>>,
}

type Shared = Arc<Mutex<Store>>;

pub struct EksApi {
    served: Served,
    store: Shared,
}

impl EksApi {
    /// Starts a server without clusters on a free 127.0.0.1 port.
    pub async fn start() -> Result<EksApi> {
        let store: Shared = Arc::default();
        let app = Router::new().fallback(handle).with_state(store.clone());
        let served = Served::start(app, "the fake EKS API").await?;
        Ok(EksApi { served, store })
    }

    /// `http://127.0.0.1:PORT`, the endpoint override of the EKS client.
    pub fn url(&self) -> String {
        self.served.url()
    }

    fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn add_cluster(&self, name: &str) {
        self.lock().clusters.entry(name.to_string()).or_default();
    }

    /// Stores an association as if created earlier (not counted as a write); returns its id.
    pub fn seed(
        &self,
        cluster: &str,
        namespace: &str,
        service_account: &str,
        role_arn: &str,
        tags: &[(&str, &str)],
    ) -> String {
        let mut store = self.lock();
        let tags: serde_json::Map<String, Value> = tags
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        let association = new_association(
            &mut store,
            cluster,
            &json!({"namespace": namespace, "serviceAccount": service_account,
                    "roleArn": role_arn, "tags": tags}),
        );
        let id = association["associationId"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        store
            .clusters
            .entry(cluster.to_string())
            .or_default()
            .insert(id.clone(), association);
        id
    }

    /// Every association of `cluster`, as `DescribePodIdentityAssociation` answers them.
    pub fn associations(&self, cluster: &str) -> Vec<Value> {
        self.lock()
            .clusters
            .get(cluster)
            .map(|a| a.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Mutating requests received (POST, DELETE), whatever their outcome.
    pub fn writes(&self) -> u64 {
        self.lock().writes
    }

    /// Associations created through the API.
    pub fn created(&self) -> u64 {
        self.lock().created
    }

    /// The next `n` requests get a 500 `ServerException`, changing nothing.
    pub fn fail_next(&self, n: u32) {
        self.lock().faults.fail_next(n, 500);
    }

    /// The next `n` lists answer as they would have before the latest write.
    pub fn stale_lists(&self, n: u32) {
        self.lock().stale_lists = n;
    }

    /// The next `n` successful writes are stored, then answered with a 500 `ServerException`:
    /// the client never learns that they happened.
    pub fn lose_next_write_responses(&self, n: u32) {
        self.lock().lose_next = n;
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// A full association from a validated create body.
fn new_association(store: &mut Store, cluster: &str, body: &Value) -> Value {
    store.next_id += 1;
    // EKS ids are `a-` and 17 lowercase alphanumerics.
    let id = format!("a-{:0>17}", format!("fb{}", store.next_id));
    let mut association = json!({
        "clusterName": cluster,
        "namespace": body["namespace"],
        "serviceAccount": body["serviceAccount"],
        "roleArn": body["roleArn"],
        "associationArn": format!("arn:aws:eks:{REGION}:{ACCOUNT_ID}:podidentityassociation/{cluster}/{id}"),
        "associationId": id,
        "tags": body.get("tags").cloned().unwrap_or_else(|| json!({})),
        "createdAt": now(),
        "modifiedAt": now(),
        "disableSessionTags": body.get("disableSessionTags").cloned().unwrap_or(json!(false)),
    });
    if let Some(target) = body.get("targetRoleArn") {
        association["targetRoleArn"] = target.clone();
    }
    association
}

fn error(status: StatusCode, code: &str, message: String) -> Response {
    let mut response = (status, axum::Json(json!({ "message": message }))).into_response();
    if let Ok(v) = HeaderValue::from_str(code) {
        response.headers_mut().insert("x-amzn-errortype", v);
    }
    response
}

fn invalid(message: String) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "InvalidParameterException",
        message,
    )
}

fn not_found(message: String) -> Response {
    error(StatusCode::NOT_FOUND, "ResourceNotFoundException", message)
}

fn ok(body: Value) -> Response {
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// SigV4 for the `eks` service: `AWS4-HMAC-SHA256 Credential=AK/DATE/REGION/eks/aws4_request,
/// SignedHeaders=…, Signature=…`, with its `x-amz-date`.
fn signed_for_eks(headers: &HeaderMap) -> bool {
    let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some(rest) = auth.strip_prefix("AWS4-HMAC-SHA256 ") else {
        return false;
    };
    let scope_ok = rest
        .split(", ")
        .find_map(|p| p.strip_prefix("Credential="))
        .is_some_and(|c| {
            let parts: Vec<&str> = c.split('/').collect();
            parts.len() == 5 && parts[3] == "eks" && parts[4] == "aws4_request"
        });
    scope_ok
        && rest.contains("SignedHeaders=")
        && rest.contains("Signature=")
        && headers.contains_key("x-amz-date")
}

async fn handle(
    State(store): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut store = store.lock().unwrap_or_else(|p| p.into_inner());
    if method == Method::POST || method == Method::DELETE {
        store.writes += 1;
    }
    if !signed_for_eks(&headers) {
        return error(
            StatusCode::FORBIDDEN,
            "MissingAuthenticationTokenException",
            "Missing Authentication Token".into(),
        );
    }
    if let Some(code) = store.faults.take_failure(StatusCode::INTERNAL_SERVER_ERROR) {
        return error(code, "ServerException", "injected failure".into());
    }
    let segments: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    let (cluster, id) = match segments.as_slice() {
        ["clusters", cluster, "pod-identity-associations"] => (*cluster, None),
        ["clusters", cluster, "pod-identity-associations", id] => (*cluster, Some(*id)),
        _ => {
            return error(
                StatusCode::NOT_FOUND,
                "UnknownOperationException",
                format!("no operation at {method} {}", uri.path()),
            )
        }
    };
    if !store.clusters.contains_key(cluster) {
        return not_found(format!("No cluster found for name: {cluster}."));
    }
    let writing = method != Method::GET;
    if writing {
        store.previous = Some(store.clusters.clone());
    }
    let response = match (method, id) {
        (Method::GET, None) => list(&mut store, cluster, uri.query().unwrap_or("")),
        (Method::POST, None) => create(&mut store, cluster, &headers, &body),
        (Method::GET, Some(id)) => match store.clusters[cluster].get(id) {
            Some(a) => ok(json!({ "association": a })),
            None => not_found(format!("No Pod Identity Association found with id {id}.")),
        },
        (Method::DELETE, Some(id)) => {
            match store.clusters.get_mut(cluster).and_then(|c| c.remove(id)) {
                Some(a) => ok(json!({ "association": a })),
                None => not_found(format!("No Pod Identity Association found with id {id}.")),
            }
        }
        (method, _) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "UnknownOperationException",
            format!("{method} is not allowed on {}", uri.path()),
        ),
    };
    if writing && response.status().is_success() && store.lose_next > 0 {
        store.lose_next -= 1;
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ServerException",
            "injected failure after the write was stored".into(),
        );
    }
    response
}

fn list(store: &mut Store, cluster: &str, query: &str) -> Response {
    let params: BTreeMap<String, String> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    if let Some(unknown) = params
        .keys()
        .find(|k| !["namespace", "serviceAccount", "maxResults", "nextToken"].contains(&k.as_str()))
    {
        return invalid(format!("unknown query parameter {unknown}"));
    }
    let max = match params.get("maxResults").map(|m| m.parse::<usize>()) {
        None => 100,
        Some(Ok(m)) if (1..=100).contains(&m) => m,
        Some(_) => return invalid("maxResults must be an integer from 1 to 100".into()),
    };
    let start = match params.get("nextToken").map(|t| t.parse::<usize>()) {
        None => 0,
        Some(Ok(s)) => s,
        Some(Err(_)) => return invalid("nextToken is not a token this API issued".into()),
    };
    let clusters = match &store.previous {
        Some(previous) if store.stale_lists > 0 => {
            store.stale_lists -= 1;
            previous
        }
        _ => &store.clusters,
    };
    let matching: Vec<Value> = clusters
        .get(cluster)
        .into_iter()
        .flat_map(|c| c.values())
        .filter(|a| {
            params
                .get("namespace")
                .is_none_or(|ns| a["namespace"] == **ns)
                && params
                    .get("serviceAccount")
                    .is_none_or(|sa| a["serviceAccount"] == **sa)
        })
        .map(|a| {
            json!({
                "clusterName": a["clusterName"], "namespace": a["namespace"],
                "serviceAccount": a["serviceAccount"], "associationArn": a["associationArn"],
                "associationId": a["associationId"],
            })
        })
        .collect();
    let page: Vec<Value> = matching.iter().skip(start).take(max).cloned().collect();
    let next = (start + max < matching.len()).then(|| (start + max).to_string());
    ok(json!({ "associations": page, "nextToken": next }))
}

fn create(store: &mut Store, cluster: &str, headers: &HeaderMap, body: &Bytes) -> Response {
    let json_content = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    if !json_content {
        return invalid("the request body must be application/json".into());
    }
    let mut body: Value = match serde_json::from_slice(body) {
        Ok(Value::Object(o)) => Value::Object(o),
        _ => return invalid("the request body is not a JSON object".into()),
    };
    for field in ["namespace", "serviceAccount", "roleArn"] {
        if body[field].as_str().is_none_or(str::is_empty) {
            return invalid(format!("{field} is required"));
        }
    }
    for field in ["roleArn", "targetRoleArn"] {
        if let Some(arn) = body.get(field) {
            let valid = arn
                .as_str()
                .and_then(|a| a.strip_prefix("arn:aws:iam::"))
                .and_then(|a| a.split_once(":role/"))
                .is_some_and(|(account, name)| {
                    account.len() == 12
                        && account.bytes().all(|b| b.is_ascii_digit())
                        && !name.is_empty()
                });
            if !valid {
                return invalid(format!("{field} {arn} is not an IAM role ARN"));
            }
        }
    }
    let token = body
        .as_object_mut()
        .and_then(|o| o.remove("clientRequestToken"))
        .and_then(|t| t.as_str().map(str::to_string));
    if let Some(token) = &token {
        if let Some((seen, answer)) = store.tokens.get(&(cluster.to_string(), token.clone())) {
            return if *seen == body {
                ok(answer.clone())
            } else {
                error(
                    StatusCode::BAD_REQUEST,
                    "IdempotentParameterMismatchException",
                    format!("clientRequestToken {token} was used with different parameters"),
                )
            };
        }
    }
    if let Some(existing) = store.clusters[cluster].values().find(|a| {
        a["namespace"] == body["namespace"] && a["serviceAccount"] == body["serviceAccount"]
    }) {
        return error(
            StatusCode::CONFLICT,
            "ResourceInUseException",
            format!(
                "Association already exists: {}",
                existing["associationId"].as_str().unwrap_or_default()
            ),
        );
    }
    let association = new_association(store, cluster, &body);
    let id = association["associationId"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    store
        .clusters
        .entry(cluster.to_string())
        .or_default()
        .insert(id, association.clone());
    store.created += 1;
    let answer = json!({ "association": association });
    if let Some(token) = token {
        store
            .tokens
            .insert((cluster.to_string(), token), (body, answer.clone()));
    }
    ok(answer)
}
