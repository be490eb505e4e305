//! A strict fake of the GCP IAM REST APIs on loopback, for tests that drive the real googleapis
//! clients (`google-cloud-resourcemanager-v3`, `google-cloud-iam-v2`, `google-cloud-iam-admin-v1`,
//! authenticated by `google-cloud-auth`).
//!
//! No GCP stand-in exists (docs/ARCHITECTURE.md §Testing), so this follows the documented REST shapes and rejects
//! what the real APIs reject:
//!
//! * `POST /token`: an OAuth2 refresh-token grant (what `authorized_user` credentials send)
//!   mints the one access token every other request must carry as `Authorization: Bearer`
//!   (401 `UNAUTHENTICATED` otherwise);
//! * Cloud Resource Manager v3 `projects/P:getIamPolicy` / `:setIamPolicy` and IAM v1
//!   `projects/-/serviceAccounts/EMAIL:getIamPolicy` / `:setIamPolicy`: policy version rules
//!   (a conditional policy read with `requestedPolicyVersion` < 3, or written with `version` < 3,
//!   is a 400), member and role formats, empty bindings dropped and duplicates merged, a fresh
//!   etag per write; a stale etag is a 409 `ABORTED`; a write without an etag is accepted (as
//!   GCP does) and counted in [`GcpApi::blind_writes`]; an unknown project is a 403
//!   `PERMISSION_DENIED`, as GCP answers for projects the caller cannot see;
//! * IAM v2 deny policies under `policies/cloudresourcemanager.googleapis.com%2Fprojects%2FP/
//!   denypolicies`: create (`policyId` format, `denyRule` principals in `principal://` form and
//!   permissions in `SERVICE.googleapis.com/resource.verb` form, 409 `ALREADY_EXISTS`) and delete
//!   answer a long-running Operation that stays `done: false` for [`GcpApi::operation_polls`]
//!   GETs of it; the policy appears (or goes) when the operation completes; GET one (404
//!   `NOT_FOUND`);
//! * IAM v1 service accounts: get, `:disable`, `:enable`; IAM v1 `roles/R` and
//!   `projects/P/roles/R` get with `includedPermissions`.
//!
//! Errors use Google's JSON error shape `{"error": {"code", "message", "status"}}`.
//!
//! Faults on demand: [`GcpApi::fail_next`] (the next N API requests get a 5xx),
//! [`GcpApi::fail_next_sets`] (the next N setIamPolicy requests get a 5xx, after the reads),
//! [`GcpApi::delay_next`] (the next N API requests answer late), [`GcpApi::stale_reads`] (the next
//! N reads see the state before the latest write), [`GcpApi::edit_before_sets`] (another writer
//! changes the policy between a client's get and its set). [`GcpApi::writes`] counts mutating
//! requests received; [`GcpApi::requests`] records every request.
//!
//! One server per test: it runs on the test's runtime and stops when dropped.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Result;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine;
use serde_json::{json, Value};

use crate::fake::{Faults, Served};

/// The OAuth2 refresh token the test credentials carry.
pub const REFRESH_TOKEN: &str = "firebreak-test-refresh-token";
/// The access token the fake mints and then demands.
pub const ACCESS_TOKEN: &str = "ya29.firebreak-fake-access-token";

const DENY_PREFIX: &str = "cloudresourcemanager.googleapis.com/projects/";

/// One request as received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub body: Option<Value>,
}

type Edit = Box<dyn Fn(&mut Value) + Send>;

/// Everything the fake serves; cloned whole as the "previous" snapshot for stale reads.
#[derive(Clone, Default)]
struct Data {
    /// project id → project number.
    projects: BTreeMap<String, String>,
    /// Resource (`projects/P` or `projects/P/serviceAccounts/EMAIL`) → policy
    /// `{version, etag, bindings}`.
    policies: BTreeMap<String, Value>,
    /// email → ServiceAccount JSON.
    service_accounts: BTreeMap<String, Value>,
    /// role name → permissions.
    roles: BTreeMap<String, Vec<String>>,
    /// `policies/…/denypolicies/ID` (decoded attachment point) → deny policy JSON.
    deny_policies: BTreeMap<String, Value>,
}

struct Operation {
    polls_left: u32,
    /// The policy to store (create) or the name to remove (delete) when done.
    finish: Finish,
}

enum Finish {
    Create(String, Value),
    Delete(String, Value),
    /// Applied; the operation's response.
    Done(Value),
}

#[derive(Default)]
struct Store {
    data: Data,
    previous: Option<Data>,
    operations: BTreeMap<String, Operation>,
    revision: u64,
    writes: u64,
    blind_writes: u64,
    requests: Vec<Recorded>,
    faults: Faults,
    /// Failures owed to setIamPolicy requests only.
    set_faults: Faults,
    stale_reads: u32,
    operation_polls: u32,
    edits_before_set: u32,
    edit: Option<Edit>,
}

impl Store {
    fn next_etag(&mut self) -> String {
        self.revision += 1;
        base64::engine::general_purpose::STANDARD.encode(format!("BwX{:08}", self.revision))
    }

    fn remember(&mut self) {
        self.previous = Some(self.data.clone());
    }

    /// What a read sees: the previous snapshot while stale reads are owed.
    fn view(&mut self) -> Data {
        if self.stale_reads > 0 {
            if let Some(previous) = &self.previous {
                self.stale_reads -= 1;
                return previous.clone();
            }
        }
        self.data.clone()
    }
}

type Shared = Arc<Mutex<Store>>;

pub struct GcpApi {
    served: Served,
    store: Shared,
}

impl GcpApi {
    /// Starts a server on a free 127.0.0.1 port.
    pub async fn start() -> Result<GcpApi> {
        let store: Shared = Arc::new(Mutex::new(Store::default()));
        let app = Router::new().fallback(handle).with_state(store.clone());
        let served = Served::start(app, "the fake GCP APIs").await?;
        Ok(GcpApi { served, store })
    }

    /// `http://127.0.0.1:PORT`: the endpoint of every API.
    pub fn url(&self) -> String {
        self.served.url()
    }

    /// The `authorized_user` credentials JSON whose `token_uri` is this server.
    pub fn authorized_user(&self) -> Value {
        json!({
            "type": "authorized_user",
            "client_id": "firebreak-test.apps.googleusercontent.com",
            "client_secret": "firebreak-test-secret",
            "refresh_token": REFRESH_TOKEN,
            "token_uri": format!("{}/token", self.url()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A project with its IAM `bindings` (not counted as a write).
    pub fn seed_project(&self, project: &str, number: &str, bindings: Value) {
        let mut store = self.lock();
        store.data.projects.insert(project.into(), number.into());
        let etag = store.next_etag();
        let policy = normalized(&bindings, etag);
        store
            .data
            .policies
            .insert(format!("projects/{project}"), policy);
    }

    /// A service account in `project` with its own IAM `bindings`.
    pub fn seed_service_account(&self, project: &str, email: &str, bindings: Value) {
        let mut store = self.lock();
        let etag = store.next_etag();
        let unique = 100_000_000_000_000_000_000u128 + store.revision as u128;
        store.data.service_accounts.insert(
            email.into(),
            json!({
                "name": format!("projects/{project}/serviceAccounts/{email}"),
                "projectId": project, "uniqueId": unique.to_string(), "email": email,
                "etag": etag, "disabled": false,
            }),
        );
        let etag = store.next_etag();
        let policy = normalized(&bindings, etag);
        store.data.policies.insert(sa_resource(email), policy);
    }

    pub fn seed_role(&self, name: &str, permissions: &[&str]) {
        self.lock().data.roles.insert(
            name.into(),
            permissions.iter().map(|p| p.to_string()).collect(),
        );
    }

    /// The stored policy of `projects/P` or of service account `EMAIL`.
    pub fn project_policy(&self, project: &str) -> Value {
        self.lock().data.policies[&format!("projects/{project}")].clone()
    }

    pub fn service_account_policy(&self, email: &str) -> Value {
        self.lock().data.policies[&sa_resource(email)].clone()
    }

    pub fn service_account_disabled(&self, email: &str) -> bool {
        self.lock().data.service_accounts[email]["disabled"] == json!(true)
    }

    /// Deny policies stored on `project`, by id.
    pub fn deny_policies(&self, project: &str) -> BTreeMap<String, Value> {
        let prefix = format!("policies/{DENY_PREFIX}{project}/denypolicies/");
        self.lock()
            .data
            .deny_policies
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(&prefix)?.to_string(), v.clone())))
            .collect()
    }

    /// Mutating requests received (setIamPolicy, deny create/delete, disable, enable), whether
    /// or not they were accepted.
    pub fn writes(&self) -> u64 {
        self.lock().writes
    }

    /// setIamPolicy calls accepted without an etag.
    pub fn blind_writes(&self) -> u64 {
        self.lock().blind_writes
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// The next `n` API requests get `status` (a 5xx) in Google's error shape.
    pub fn fail_next(&self, n: u32, status: u16) {
        self.lock().faults.fail_next(n, status);
    }

    /// The next `n` setIamPolicy requests get `status` (a 5xx): the reads before them go through.
    /// Counted in [`GcpApi::writes`]; the stored policy is not changed.
    pub fn fail_next_sets(&self, n: u32, status: u16) {
        self.lock().set_faults.fail_next(n, status);
    }

    /// The next `n` API requests are answered only after `delay`.
    pub fn delay_next(&self, n: u32, delay: Duration) {
        self.lock().faults.delay_next(n, delay);
    }

    /// The next `n` reads see everything as it was before the latest write.
    pub fn stale_reads(&self, n: u32) {
        self.lock().stale_reads = n;
    }

    /// How many GETs of a new operation answer `done: false` before it completes.
    pub fn operation_polls(&self, n: u32) {
        self.lock().operation_polls = n;
    }

    /// Just before each of the next `n` setIamPolicy requests is handled, `edit` changes the
    /// stored policy (`{version, etag, bindings}`) as another writer would between the client's
    /// get and its set; the etag moves. Not counted in [`GcpApi::writes`].
    pub fn edit_before_sets(&self, n: u32, edit: impl Fn(&mut Value) + Send + 'static) {
        let mut store = self.lock();
        store.edits_before_set = n;
        store.edit = Some(Box::new(edit));
    }
}

fn sa_resource(email: &str) -> String {
    format!("serviceAccounts/{email}")
}

fn error(code: StatusCode, message: impl Into<String>) -> Response {
    let status = match code.as_u16() {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        500 => "INTERNAL",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "UNKNOWN",
    };
    error_with(code, status, message)
}

fn error_with(code: StatusCode, status: &str, message: impl Into<String>) -> Response {
    (
        code,
        axum::Json(
            json!({"error": {"code": code.as_u16(), "message": message.into(), "status": status}}),
        ),
    )
        .into_response()
}

fn ok(body: Value) -> Response {
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// The canonical stored form of `bindings`: empty ones dropped, same role+condition merged,
/// members deduplicated; version 3 exactly when a binding is conditional.
fn normalized(bindings: &Value, etag: String) -> Value {
    let mut merged: Vec<Value> = Vec::new();
    for b in bindings.as_array().into_iter().flatten() {
        let members: Vec<Value> = b["members"].as_array().cloned().unwrap_or_default();
        if members.is_empty() {
            continue;
        }
        let slot = merged
            .iter_mut()
            .find(|m| m["role"] == b["role"] && m.get("condition") == b.get("condition"));
        let target = match slot {
            Some(m) => m,
            None => {
                let mut fresh = json!({"role": b["role"], "members": []});
                if let Some(c) = b.get("condition").filter(|c| !c.is_null()) {
                    fresh["condition"] = c.clone();
                }
                merged.push(fresh);
                let last = merged.len() - 1;
                &mut merged[last]
            }
        };
        for m in members {
            if let Some(list) = target["members"].as_array_mut() {
                if !list.contains(&m) {
                    list.push(m);
                }
            }
        }
    }
    let conditional = merged.iter().any(|b| b.get("condition").is_some());
    let mut policy = json!({"version": if conditional { 3 } else { 1 }, "etag": etag});
    if !merged.is_empty() {
        policy["bindings"] = Value::Array(merged);
    }
    policy
}

fn conditional(policy: &Value) -> bool {
    policy["bindings"].as_array().is_some_and(|bs| {
        bs.iter()
            .any(|b| b.get("condition").is_some_and(|c| !c.is_null()))
    })
}

const MEMBER_PREFIXES: &[&str] = &[
    "user:",
    "serviceAccount:",
    "group:",
    "domain:",
    "principal://",
    "principalSet://",
    "deleted:",
];

fn check_bindings(policy: &Value) -> Result<(), String> {
    for b in policy["bindings"].as_array().into_iter().flatten() {
        let role = b["role"].as_str().unwrap_or_default();
        let role_ok = role.starts_with("roles/")
            || (role.starts_with("projects/") || role.starts_with("organizations/"))
                && role.contains("/roles/");
        if !role_ok {
            return Err(format!("Role {role:?} is not a valid role name"));
        }
        for m in b["members"].as_array().into_iter().flatten() {
            let m = m.as_str().unwrap_or_default();
            let known = m == "allUsers"
                || m == "allAuthenticatedUsers"
                || MEMBER_PREFIXES
                    .iter()
                    .any(|p| m.starts_with(p) && m.len() > p.len());
            if !known {
                return Err(format!("Invalid member {m:?} in binding of {role}"));
            }
        }
        if let Some(c) = b.get("condition").filter(|c| !c.is_null()) {
            if c["expression"].as_str().unwrap_or_default().is_empty() {
                return Err(format!(
                    "The condition of a binding of {role} has no expression"
                ));
            }
        }
    }
    Ok(())
}

fn etag_bytes(etag: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};
    STANDARD
        .decode(etag)
        .or_else(|_| URL_SAFE.decode(etag))
        .ok()
}

async fn handle(
    State(store): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or_default().to_string();
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let delay = {
        let mut s = store.lock().unwrap_or_else(|p| p.into_inner());
        s.requests.push(Recorded {
            method: method.to_string(),
            path: path.clone(),
            query: query.clone(),
            body: parsed.clone(),
        });
        if path == "/token" {
            return token(parsed.as_ref());
        }
        let bearer = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if bearer != Some(ACCESS_TOKEN) {
            return error(
                StatusCode::UNAUTHORIZED,
                "Request had invalid authentication credentials. Expected OAuth 2 access token",
            );
        }
        if let Some(code) = s.faults.take_failure(StatusCode::SERVICE_UNAVAILABLE) {
            return error(code, "injected failure");
        }
        s.faults.take_delay()
    };
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let mut s = store.lock().unwrap_or_else(|p| p.into_inner());
    route(&mut s, &method, &path, &query, parsed)
}

fn token(body: Option<&Value>) -> Response {
    let Some(body) = body else {
        return error(StatusCode::BAD_REQUEST, "token request body is not JSON");
    };
    if body["grant_type"] != json!("refresh_token") || body["refresh_token"] != json!(REFRESH_TOKEN)
    {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "invalid_grant", "error_description": "Bad Request"})),
        )
            .into_response();
    }
    ok(json!({"access_token": ACCESS_TOKEN, "expires_in": 3599, "token_type": "Bearer"}))
}

fn route(s: &mut Store, method: &Method, path: &str, query: &str, body: Option<Value>) -> Response {
    if let Some(rest) = path.strip_prefix("/v3/projects/") {
        return match rest.split_once(':') {
            Some((project, verb)) if !project.contains('/') && *method == Method::POST => {
                if !s.data.projects.contains_key(project) {
                    return error(
                        StatusCode::FORBIDDEN,
                        format!(
                            "The caller does not have permission on projects/{project} (or it may not exist)"
                        ),
                    );
                }
                let resource = format!("projects/{project}");
                match verb {
                    "getIamPolicy" => {
                        get_policy(s, &resource, requested_version(query, body.as_ref()))
                    }
                    "setIamPolicy" => set_policy(s, &resource, body),
                    _ => error(StatusCode::NOT_FOUND, format!("no method {verb}")),
                }
            }
            _ => error(StatusCode::NOT_FOUND, format!("no route {method} {path}")),
        };
    }
    if let Some(rest) = path.strip_prefix("/v2/policies/") {
        return deny_route(s, method, rest, query, body);
    }
    if let Some(rest) = path.strip_prefix("/v1/") {
        if let Some(role) = role_name(rest) {
            return match (method, s.data.roles.get(role)) {
                (&Method::GET, Some(perms)) => ok(json!({
                    "name": role, "title": role, "includedPermissions": perms,
                    "stage": 2, "etag": "AA==",
                })),
                (&Method::GET, None) => {
                    error(StatusCode::NOT_FOUND, format!("Role {role} not found."))
                }
                _ => error(StatusCode::NOT_FOUND, format!("no route {method} {path}")),
            };
        }
        if let Some(account) = rest.strip_prefix("projects/") {
            if let Some((_project, tail)) = account.split_once("/serviceAccounts/") {
                let (email, verb) = match tail.split_once(':') {
                    Some((e, v)) => (e, Some(v)),
                    None => (tail, None),
                };
                return service_account_route(s, method, email, verb, query, body);
            }
        }
    }
    error(StatusCode::NOT_FOUND, format!("no route {method} {path}"))
}

/// `roles/R`, `projects/P/roles/R` or `organizations/O/roles/R`.
fn role_name(rest: &str) -> Option<&str> {
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        ["roles", r] if !r.is_empty() => Some(rest),
        ["projects" | "organizations", _, "roles", r] if !r.is_empty() => Some(rest),
        _ => None,
    }
}

/// `options.requestedPolicyVersion` from the body (Resource Manager) or the query (IAM v1).
fn requested_version(query: &str, body: Option<&Value>) -> i64 {
    let from_query = query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == "options.requestedPolicyVersion").then(|| v.parse().ok())?
    });
    from_query
        .or_else(|| body?["options"]["requestedPolicyVersion"].as_i64())
        .unwrap_or(0)
}

fn get_policy(s: &mut Store, resource: &str, version: i64) -> Response {
    if ![0, 1, 3].contains(&version) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("Invalid requested policy version {version}; use 1 or 3"),
        );
    }
    let view = s.view();
    let Some(policy) = view.policies.get(resource) else {
        return error(StatusCode::NOT_FOUND, format!("{resource} not found"));
    };
    if conditional(policy) && version < 3 {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "The policy of {resource} contains conditions; request policy version 3 to read it"
            ),
        );
    }
    ok(policy.clone())
}

fn set_policy(s: &mut Store, resource: &str, body: Option<Value>) -> Response {
    s.writes += 1;
    if let Some(code) = s.set_faults.take_failure(StatusCode::SERVICE_UNAVAILABLE) {
        return error(code, "injected failure");
    }
    if s.edits_before_set > 0 {
        s.edits_before_set -= 1;
        let etag = s.next_etag();
        if let (Some(edit), Some(stored)) = (&s.edit, s.data.policies.get_mut(resource)) {
            edit(stored);
            let bindings = stored["bindings"].clone();
            *stored = normalized(&bindings, etag);
        }
    }
    let Some(policy) = body
        .as_ref()
        .and_then(|b| b.get("policy"))
        .filter(|p| p.is_object())
    else {
        return error(StatusCode::BAD_REQUEST, "setIamPolicy needs a policy");
    };
    let Some(current) = s.data.policies.get(resource).cloned() else {
        return error(StatusCode::NOT_FOUND, format!("{resource} not found"));
    };
    let version = policy["version"].as_i64().unwrap_or(0);
    if ![0, 1, 3].contains(&version) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("Invalid policy version {version}"),
        );
    }
    if version < 3 && (conditional(policy) || conditional(&current)) {
        return error(
            StatusCode::BAD_REQUEST,
            "Policies with conditions (or replacing one with conditions) must set version 3",
        );
    }
    if let Err(e) = check_bindings(policy) {
        return error(StatusCode::BAD_REQUEST, e);
    }
    match policy["etag"].as_str().filter(|e| !e.is_empty()) {
        Some(etag) => {
            let stored = current["etag"].as_str().and_then(etag_bytes);
            if etag_bytes(etag).is_none() || etag_bytes(etag) != stored {
                return error_with(
                    StatusCode::CONFLICT,
                    "ABORTED",
                    "There were concurrent policy changes. Please retry the whole read-modify-write \
                     with exponential backoff.",
                );
            }
        }
        None => s.blind_writes += 1,
    }
    s.remember();
    let etag = s.next_etag();
    let stored = normalized(&policy["bindings"], etag);
    s.data.policies.insert(resource.to_string(), stored.clone());
    ok(stored)
}

fn service_account_route(
    s: &mut Store,
    method: &Method,
    email: &str,
    verb: Option<&str>,
    query: &str,
    body: Option<Value>,
) -> Response {
    let view = s.view_if(verb.is_none());
    if !view.service_accounts.contains_key(email) {
        return error(
            StatusCode::NOT_FOUND,
            format!("Unknown service account: {email}"),
        );
    }
    let resource = sa_resource(email);
    match (method, verb) {
        (&Method::GET, None) => ok(view.service_accounts[email].clone()),
        (&Method::POST, Some("getIamPolicy")) => {
            get_policy(s, &resource, requested_version(query, body.as_ref()))
        }
        (&Method::POST, Some("setIamPolicy")) => set_policy(s, &resource, body),
        (&Method::POST, Some(v @ ("disable" | "enable"))) => {
            s.writes += 1;
            s.remember();
            let etag = s.next_etag();
            if let Some(account) = s.data.service_accounts.get_mut(email) {
                account["disabled"] = json!(v == "disable");
                account["etag"] = json!(etag);
            }
            ok(json!({}))
        }
        _ => error(
            StatusCode::NOT_FOUND,
            format!("no route {method} on {email}"),
        ),
    }
}

impl Store {
    /// Plain GETs of a service account honour stale reads; verbs see the present.
    fn view_if(&mut self, read: bool) -> Data {
        if read {
            self.view()
        } else {
            self.data.clone()
        }
    }
}

fn decode(segment: &str) -> String {
    urlencoding::decode(segment)
        .map(|c| c.into_owned())
        .unwrap_or_else(|_| segment.to_string())
}

fn deny_route(
    s: &mut Store,
    method: &Method,
    rest: &str,
    query: &str,
    body: Option<Value>,
) -> Response {
    // The attachment point is one percent-encoded segment.
    let parts: Vec<&str> = rest.split('/').collect();
    let attachment = decode(parts[0]);
    let Some(project) = attachment.strip_prefix(DENY_PREFIX) else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("Invalid attachment point {attachment:?}; expected a URL-encoded {DENY_PREFIX}PROJECT"),
        );
    };
    if !s.data.projects.contains_key(project) && !s.data.projects.values().any(|n| n == project) {
        return error(
            StatusCode::FORBIDDEN,
            format!(
                "The caller does not have permission on projects/{project} (or it may not exist)"
            ),
        );
    }
    let parent = format!("policies/{attachment}/denypolicies");
    match (method, &parts[1..]) {
        (&Method::POST, ["denypolicies"]) => {
            s.writes += 1;
            let id = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("policyId="))
                .unwrap_or_default()
                .to_string();
            create_deny(s, parts[0], &parent, &id, body)
        }
        (&Method::GET, ["denypolicies", id]) => {
            let view = s.view();
            match view.deny_policies.get(&format!("{parent}/{id}")) {
                Some(p) => ok(p.clone()),
                None => error(
                    StatusCode::NOT_FOUND,
                    format!("Policy {parent}/{id} not found"),
                ),
            }
        }
        (&Method::DELETE, ["denypolicies", id]) => {
            s.writes += 1;
            let name = format!("{parent}/{id}");
            let Some(policy) = s.data.deny_policies.get(&name).cloned() else {
                return error(StatusCode::NOT_FOUND, format!("Policy {name} not found"));
            };
            start_operation(s, parts[0], id, Finish::Delete(name, policy))
        }
        (&Method::GET, ["denypolicies", id, "operations", op]) => {
            let key = format!("{}/denypolicies/{id}/operations/{op}", parts[0]);
            poll_operation(s, &key)
        }
        _ => error(
            StatusCode::NOT_FOUND,
            format!("no route {method} /v2/policies/{rest}"),
        ),
    }
}

fn create_deny(
    s: &mut Store,
    encoded: &str,
    parent: &str,
    id: &str,
    body: Option<Value>,
) -> Response {
    let id_ok = id.len() <= 63
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !id_ok {
        return error(StatusCode::BAD_REQUEST, format!("Invalid policyId {id:?}"));
    }
    let name = format!("{parent}/{id}");
    if s.data.deny_policies.contains_key(&name)
        || s.operations
            .values()
            .any(|o| matches!(&o.finish, Finish::Create(n, _) if *n == name))
    {
        return error_with(
            StatusCode::CONFLICT,
            "ALREADY_EXISTS",
            format!("Policy {name} already exists"),
        );
    }
    let Some(mut policy) = body.filter(|b| b.is_object()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "The request body must be a deny policy",
        );
    };
    let rules = policy["rules"].as_array().cloned().unwrap_or_default();
    if rules.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "A deny policy needs at least one rule",
        );
    }
    for rule in &rules {
        let deny = &rule["denyRule"];
        let principals = deny["deniedPrincipals"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let permissions = deny["deniedPermissions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if principals.is_empty() || permissions.is_empty() {
            return error(
                StatusCode::BAD_REQUEST,
                "A deny rule needs deniedPrincipals and deniedPermissions",
            );
        }
        for p in &principals {
            let p = p.as_str().unwrap_or_default();
            if !(p.starts_with("principal://") || p.starts_with("principalSet://")) {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("Invalid principal {p:?}: deny policies take principal:// identifiers"),
                );
            }
        }
        for p in &permissions {
            let p = p.as_str().unwrap_or_default();
            let ok = p
                .split_once(".googleapis.com/")
                .is_some_and(|(svc, rest)| !svc.is_empty() && rest.split('.').count() >= 2);
            if !ok {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "Invalid permission {p:?}: expected SERVICE.googleapis.com/resource.verb"
                    ),
                );
            }
        }
    }
    s.revision += 1;
    policy["name"] = json!(name);
    policy["uid"] = json!(format!("00000000-0000-4000-8000-{:012}", s.revision));
    policy["kind"] = json!("DenyPolicy");
    policy["etag"] = json!(format!("W/\"{}\"", s.revision));
    policy["createTime"] = json!("2026-01-01T00:00:00Z");
    start_operation(s, encoded, id, Finish::Create(name, policy))
}

fn start_operation(s: &mut Store, encoded: &str, id: &str, finish: Finish) -> Response {
    s.revision += 1;
    let key = format!("{encoded}/denypolicies/{id}/operations/op-{}", s.revision);
    s.operations.insert(
        key.clone(),
        Operation {
            polls_left: s.operation_polls,
            finish,
        },
    );
    if s.operation_polls == 0 {
        return poll_operation(s, &key);
    }
    ok(operation_json(&key, None))
}

fn operation_json(key: &str, response: Option<&Value>) -> Value {
    let mut op = json!({
        "name": format!("policies/{key}"),
        "metadata": {"@type": "type.googleapis.com/google.iam.v2.PolicyOperationMetadata",
                     "createTime": "2026-01-01T00:00:00Z"},
        "done": response.is_some(),
    });
    if let Some(r) = response {
        let mut r = r.clone();
        r["@type"] = json!("type.googleapis.com/google.iam.v2.Policy");
        op["response"] = r;
    }
    op
}

fn poll_operation(s: &mut Store, key: &str) -> Response {
    let Some(op) = s.operations.get_mut(key) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("Operation policies/{key} not found"),
        );
    };
    if op.polls_left > 0 {
        op.polls_left -= 1;
        return ok(operation_json(key, None));
    }
    // A finished operation stays answerable (pollers may ask again) and is applied once.
    let policy = match std::mem::replace(&mut op.finish, Finish::Done(Value::Null)) {
        Finish::Done(policy) => policy,
        Finish::Create(name, policy) => {
            s.remember();
            s.data.deny_policies.insert(name, policy.clone());
            policy
        }
        Finish::Delete(name, policy) => {
            s.remember();
            s.data.deny_policies.remove(&name);
            policy
        }
    };
    if let Some(op) = s.operations.get_mut(key) {
        op.finish = Finish::Done(policy.clone());
    }
    ok(operation_json(key, Some(&policy)))
}
