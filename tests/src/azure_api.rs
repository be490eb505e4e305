//! A strict fake of Azure Resource Manager (and the Entra ID token endpoint) on loopback, for
//! tests that drive Firebreak's real ARM client.
//!
//! No ARM can run here (docs/ARCHITECTURE.md §Testing), so this follows the documented REST shapes and rejects what
//! ARM rejects:
//!
//! * `POST /{tenant}/oauth2/v2.0/token` issues bearer tokens for a client secret or, as Entra ID
//!   workload identity federation does, for a ServiceAccount token whose `iss` / `sub` / `aud`
//!   match a federated identity credential of the managed identity named by `client_id`
//!   (AADSTS70021 otherwise; signatures are not checked); every ARM request needs one (401 `AuthenticationFailed` / `InvalidAuthenticationToken` otherwise);
//! * `api-version` is required (400 `MissingApiVersionParameter`) and checked per resource type
//!   (400 `InvalidApiVersionParameter`): `2022-04-01` for `Microsoft.Authorization`
//!   roleAssignments / roleDefinitions, `2023-01-31` for `Microsoft.ManagedIdentity`
//!   userAssignedIdentities / federatedIdentityCredentials;
//! * role assignments: GET (404 `RoleAssignmentNotFound`), list at a scope with `$filter`
//!   `principalId eq '…'`, `atScope()` or both (at, above and below the scope; above only with
//!   `atScope()`; other filters 400 `UnsupportedQuery`), PUT with a GUID name (400
//!   `InvalidRoleAssignmentId`), a known role (400 `RoleDefinitionDoesNotExist`), a known
//!   principal (400 `PrincipalNotFound`) and its `principalType` (400 `UnmatchedPrincipalType`;
//!   stricter than ARM, which infers a missing one: 400 `InvalidPrincipalType`), 201 created /
//!   200 identical / 409 `RoleAssignmentUpdateNotPermitted` (the name holds another grant) /
//!   409 `RoleAssignmentExists` (the grant exists under another name); DELETE 200, or 204 when
//!   gone;
//! * role definitions and managed identities: GET (404 `RoleDefinitionDoesNotExist`,
//!   `ResourceNotFound`); federated identity credentials: list, GET, PUT (create or update:
//!   201 / 200; `issuer`, `subject`, `audiences` required), DELETE 200 / 204;
//! * errors are ARM's `{"error": {"code", "message"}}`.
//!
//! Faults on demand: [`AzureApi::fail_next`] (the next N ARM requests get a 5xx),
//! [`AzureApi::delay_next`] (the next N ARM requests answer late, for client timeouts),
//! [`AzureApi::stale_reads`] (the next N reads see the state before the latest write),
//! [`AzureApi::edit_before_writes`] (another writer changes the state just before each of the
//! next N writes). [`AzureApi::writes`] counts every PUT/DELETE received; [`AzureApi::requests`]
//! records every ARM request.
//!
//! One server per test: it runs on the test's runtime and stops when dropped.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Result;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};

use crate::fake::{Faults, Served};

pub const AUTHORIZATION_API: &str = "2022-04-01";
pub const MANAGED_IDENTITY_API: &str = "2023-01-31";
pub const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
pub const CLIENT_ID: &str = "f1b2c3d4-0000-4000-8000-00000000f1b2";
pub const CLIENT_SECRET: &str = "firebreak-test-secret";
const PRINCIPAL_TYPES: &[&str] = &[
    "User",
    "Group",
    "ServicePrincipal",
    "ForeignGroup",
    "Device",
];
const ASSIGNMENT_KEYS: &[&str] = &[
    "roleDefinitionId",
    "principalId",
    "principalType",
    "condition",
    "conditionVersion",
    "description",
    "delegatedManagedIdentityResourceId",
];

/// What ARM holds, by lowercase id (ARM ids are case-insensitive).
#[derive(Debug, Clone, Default)]
pub struct Objects {
    pub assignments: BTreeMap<String, Value>,
    pub definitions: BTreeMap<String, Value>,
    pub identities: BTreeMap<String, Value>,
    pub federated: BTreeMap<String, Value>,
}

/// One ARM request as received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
}

type Edit = Box<dyn FnMut(&mut Objects) + Send>;

#[derive(Default)]
struct Store {
    objects: Objects,
    /// The objects before the latest write: what a lagging replica would still serve.
    previous: Option<Objects>,
    /// principalId → principalType.
    principals: BTreeMap<String, String>,
    tokens: BTreeSet<String>,
    writes: u64,
    requests: Vec<Recorded>,
    faults: Faults,
    stale_reads: u32,
    edits_before_write: u32,
    edit: Option<Edit>,
}

type Shared = Arc<Mutex<Store>>;

pub struct AzureApi {
    served: Served,
    store: Shared,
}

impl AzureApi {
    /// Starts an empty ARM on a free 127.0.0.1 port.
    pub async fn start() -> Result<AzureApi> {
        let store: Shared = Arc::new(Mutex::new(Store::default()));
        let app = Router::new().fallback(handle).with_state(store.clone());
        let served = Served::start(app, "the fake ARM").await?;
        Ok(AzureApi { served, store })
    }

    /// `http://127.0.0.1:PORT`: the ARM endpoint, and the token audience (`{url}/.default`).
    pub fn url(&self) -> String {
        self.served.url()
    }

    /// The Entra ID token endpoint of [`TENANT`].
    pub fn token_url(&self) -> String {
        format!("{}/{TENANT}/oauth2/v2.0/token", self.url())
    }

    fn lock(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }

    /// A principal the directory knows, with its type (`ServicePrincipal`, `User`, …).
    pub fn seed_principal(&self, principal_id: &str, principal_type: &str) {
        self.lock()
            .principals
            .insert(principal_id.into(), principal_type.into());
    }

    /// A user-assigned managed identity and its service principal; returns its id.
    pub fn seed_identity(
        &self,
        resource_group: &str,
        name: &str,
        principal_id: &str,
        client_id: &str,
    ) -> String {
        let id = format!(
            "/subscriptions/{}/resourceGroups/{resource_group}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}",
            subscription()
        );
        self.seed_principal(principal_id, "ServicePrincipal");
        self.lock().objects.identities.insert(
            id.to_ascii_lowercase(),
            json!({
                "id": id, "name": name, "type": "Microsoft.ManagedIdentity/userAssignedIdentities",
                "location": "eastus", "tags": {},
                "properties": {"tenantId": TENANT, "principalId": principal_id, "clientId": client_id},
            }),
        );
        id
    }

    /// A role definition (`permissions` as ARM writes them); returns its id.
    pub fn seed_role(&self, guid: &str, role_name: &str, permissions: Value) -> String {
        let id = format!(
            "/subscriptions/{}/providers/Microsoft.Authorization/roleDefinitions/{guid}",
            subscription()
        );
        self.lock().objects.definitions.insert(
            id.to_ascii_lowercase(),
            json!({
                "id": id, "name": guid, "type": "Microsoft.Authorization/roleDefinitions",
                "properties": {
                    "roleName": role_name, "type": "BuiltInRole", "description": role_name,
                    "assignableScopes": ["/"], "permissions": permissions,
                },
            }),
        );
        id
    }

    /// A role assignment, stored as if created through ARM (not counted as a write).
    pub fn seed_assignment(
        &self,
        scope: &str,
        name: &str,
        role: &str,
        principal_id: &str,
    ) -> String {
        let principal_type = self
            .lock()
            .principals
            .get(principal_id)
            .cloned()
            .unwrap_or_else(|| "ServicePrincipal".into());
        let object = assignment_object(
            scope,
            name,
            &json!({"roleDefinitionId": role, "principalId": principal_id, "principalType": principal_type}),
        );
        let id = object["id"].as_str().unwrap_or_default().to_string();
        self.lock()
            .objects
            .assignments
            .insert(id.to_ascii_lowercase(), object);
        id
    }

    /// A federated identity credential on `identity`; returns its id.
    pub fn seed_federated(
        &self,
        identity: &str,
        name: &str,
        issuer: &str,
        subject: &str,
    ) -> String {
        let id = format!("{identity}/federatedIdentityCredentials/{name}");
        self.lock().objects.federated.insert(
            id.to_ascii_lowercase(),
            federated_object(&id, name, &json!({
                "issuer": issuer, "subject": subject, "audiences": ["api://AzureADTokenExchange"],
            })),
        );
        id
    }

    /// The current objects (changes made here are not counted as writes).
    pub fn objects(&self) -> Objects {
        self.lock().objects.clone()
    }

    pub fn edit(&self, edit: impl FnOnce(&mut Objects)) {
        edit(&mut self.lock().objects);
    }

    pub fn assignment(&self, id: &str) -> Option<Value> {
        self.lock()
            .objects
            .assignments
            .get(&id.to_ascii_lowercase())
            .cloned()
    }

    pub fn federated(&self, id: &str) -> Option<Value> {
        self.lock()
            .objects
            .federated
            .get(&id.to_ascii_lowercase())
            .cloned()
    }

    /// PUT and DELETE requests received (refused ones included).
    pub fn writes(&self) -> u64 {
        self.lock().writes
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// The next `n` ARM requests, whatever they are, get `status` (a 5xx).
    pub fn fail_next(&self, n: u32, status: u16) {
        self.lock().faults.fail_next(n, status);
    }

    /// The next `n` ARM requests are answered only after `delay`.
    pub fn delay_next(&self, n: u32, delay: Duration) {
        self.lock().faults.delay_next(n, delay);
    }

    /// The next `n` reads see the objects as they were before the latest write.
    pub fn stale_reads(&self, n: u32) {
        self.lock().stale_reads = n;
    }

    /// Just before each of the next `n` PUT/DELETEs is handled, `edit` changes the objects as
    /// another writer would between the client's read and its write.
    pub fn edit_before_writes(&self, n: u32, edit: impl FnMut(&mut Objects) + Send + 'static) {
        let mut store = self.lock();
        store.edits_before_write = n;
        store.edit = Some(Box::new(edit));
    }
}

/// The one subscription the fake's seeding helpers use.
pub fn subscription() -> &'static str {
    "00000000-0000-4000-8000-00000000a5b1"
}

fn lock(store: &Shared) -> MutexGuard<'_, Store> {
    store.lock().unwrap_or_else(|p| p.into_inner())
}

fn arm_error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(json!({"error": {"code": code, "message": message.into()}})),
    )
        .into_response()
}

fn ok(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

fn assignment_object(scope: &str, name: &str, properties: &Value) -> Value {
    let scope = scope.trim_end_matches('/');
    let mut props = properties.clone();
    props["scope"] = json!(if scope.is_empty() { "/" } else { scope });
    props["createdOn"] = json!("2026-01-01T00:00:00.0000000Z");
    props["updatedOn"] = json!("2026-01-01T00:00:00.0000000Z");
    props["createdBy"] = json!(null);
    props["updatedBy"] = json!(null);
    for key in ["condition", "conditionVersion", "description"] {
        if props.get(key).is_none() {
            props[key] = Value::Null;
        }
    }
    json!({
        "id": format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{name}"),
        "name": name,
        "type": "Microsoft.Authorization/roleAssignments",
        "properties": props,
    })
}

fn federated_object(id: &str, name: &str, properties: &Value) -> Value {
    json!({
        "id": id, "name": name,
        "type": "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials",
        "properties": properties,
    })
}

/// What an ARM path addresses.
enum Target {
    Assignments { scope: String },
    Assignment { scope: String, name: String },
    Definition { id: String },
    Identity { id: String },
    Federations { identity: String },
    Federation { identity: String, name: String },
}

impl Target {
    fn api_version(&self) -> &'static str {
        match self {
            Target::Assignments { .. } | Target::Assignment { .. } | Target::Definition { .. } => {
                AUTHORIZATION_API
            }
            _ => MANAGED_IDENTITY_API,
        }
    }
}

fn route(path: &str) -> Option<Target> {
    let lower = path.to_ascii_lowercase();
    const RA: &str = "/providers/microsoft.authorization/roleassignments";
    const RD: &str = "/providers/microsoft.authorization/roledefinitions/";
    const MI: &str = "/providers/microsoft.managedidentity/userassignedidentities/";
    const FIC: &str = "/federatedidentitycredentials";
    if let Some(at) = lower.find(RA) {
        let scope = path[..at].to_string();
        let rest = &path[at + RA.len()..];
        return match rest.strip_prefix('/') {
            None if rest.is_empty() => Some(Target::Assignments { scope }),
            Some(name) if !name.is_empty() && !name.contains('/') => Some(Target::Assignment {
                scope,
                name: name.into(),
            }),
            _ => None,
        };
    }
    if let Some(at) = lower.find(RD) {
        let guid = &path[at + RD.len()..];
        return (!guid.is_empty() && !guid.contains('/'))
            .then(|| Target::Definition { id: path.into() });
    }
    let at = lower.find(MI)?;
    let after = &path[at + MI.len()..];
    let (name, rest) = after.split_once('/').unwrap_or((after, ""));
    if name.is_empty() {
        return None;
    }
    let identity = path[..at + MI.len() + name.len()].to_string();
    if rest.is_empty() {
        return Some(Target::Identity { id: identity });
    }
    let rest = format!("/{rest}");
    let fic = rest
        .to_ascii_lowercase()
        .strip_prefix(FIC)
        .map(|r| r.len())?;
    let tail = &rest[rest.len() - fic..];
    match tail.strip_prefix('/') {
        None if tail.is_empty() => Some(Target::Federations { identity }),
        Some(name) if !name.is_empty() && !name.contains('/') => Some(Target::Federation {
            identity,
            name: name.into(),
        }),
        _ => None,
    }
}

fn query_params(uri: &Uri) -> BTreeMap<String, String> {
    uri.query()
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

async fn handle(
    State(store): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if method == Method::POST && uri.path().ends_with("/oauth2/v2.0/token") {
        return token(&store, &uri, &headers, &body);
    }
    let delay = {
        let mut s = lock(&store);
        s.requests.push(Recorded {
            method: method.to_string(),
            path: uri.path().into(),
            query: uri.query().unwrap_or_default().into(),
        });
        s.faults.take_delay()
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let mut s = lock(&store);
    if let Some(status) = s.faults.take_failure(StatusCode::SERVICE_UNAVAILABLE) {
        return arm_error(
            status,
            "ServiceUnavailable",
            "injected failure: the service is temporarily unavailable",
        );
    }
    match headers.get("authorization").and_then(|v| v.to_str().ok()) {
        None => {
            return arm_error(
                StatusCode::UNAUTHORIZED,
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
            )
        }
        Some(value) => {
            let known = value
                .strip_prefix("Bearer ")
                .is_some_and(|t| s.tokens.contains(t));
            if !known {
                return arm_error(
                    StatusCode::UNAUTHORIZED,
                    "InvalidAuthenticationToken",
                    "The access token is invalid.",
                );
            }
        }
    }
    let Some(target) = route(uri.path()) else {
        return arm_error(
            StatusCode::BAD_REQUEST,
            "InvalidResourceType",
            format!("The resource type of '{}' could not be found (this fake serves role assignments, role definitions, user-assigned identities and their federated identity credentials).", uri.path()),
        );
    };
    let params = query_params(&uri);
    match params.get("api-version") {
        None => {
            return arm_error(
                StatusCode::BAD_REQUEST,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        }
        Some(v) if v != target.api_version() => {
            return arm_error(
                StatusCode::BAD_REQUEST,
                "InvalidApiVersionParameter",
                format!(
                    "The api-version '{v}' is invalid. The supported versions are '{}'.",
                    target.api_version()
                ),
            )
        }
        Some(_) => {}
    }
    let is_write = method == Method::PUT || method == Method::DELETE;
    if is_write {
        s.writes += 1;
        if s.edits_before_write > 0 {
            s.edits_before_write -= 1;
            if let Some(mut edit) = s.edit.take() {
                edit(&mut s.objects);
                s.edit = Some(edit);
            }
        }
    } else if method == Method::GET && s.stale_reads > 0 {
        if let Some(previous) = s.previous.clone() {
            s.stale_reads -= 1;
            return read(&previous, &target, &params);
        }
    }
    let objects = s.objects.clone();
    match (&method, &target) {
        (&Method::GET, _) => read(&objects, &target, &params),
        (&Method::PUT, Target::Assignment { scope, name }) => {
            put_assignment(&mut s, scope, name, &body)
        }
        (&Method::DELETE, Target::Assignment { scope, name }) => {
            let id = format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{name}");
            delete(&mut s, |o| &mut o.assignments, &id)
        }
        (&Method::PUT, Target::Federation { identity, name }) => {
            put_federated(&mut s, identity, name, &body)
        }
        (&Method::DELETE, Target::Federation { identity, name }) => {
            let id = format!("{identity}/federatedIdentityCredentials/{name}");
            delete(&mut s, |o| &mut o.federated, &id)
        }
        _ => arm_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("{method} is not supported on {}", uri.path()),
        ),
    }
}

fn token(store: &Shared, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Response {
    let entra =
        |code: &str, codes: u32, description: &str| entra_error(code, codes, description.into());
    if !uri.path().starts_with(&format!("/{TENANT}/")) {
        return entra("invalid_request", 90002, "AADSTS90002: Tenant not found.");
    }
    let form = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !form {
        return entra(
            "invalid_request",
            900144,
            "AADSTS900144: The request body must be application/x-www-form-urlencoded.",
        );
    }
    let fields: BTreeMap<String, String> = form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let field = |k: &str| fields.get(k).map(String::as_str).unwrap_or_default();
    if field("grant_type") != "client_credentials" {
        return entra(
            "unsupported_grant_type",
            70003,
            "AADSTS70003: The app requested an unsupported grant type.",
        );
    }
    let mut s = lock(store);
    if field("client_assertion_type") == JWT_BEARER {
        if let Err((error, code, description)) =
            check_assertion(&s.objects, field("client_id"), field("client_assertion"))
        {
            return entra_error(error, code, description);
        }
    } else if field("client_id") != CLIENT_ID || field("client_secret") != CLIENT_SECRET {
        return entra(
            "invalid_client",
            7000215,
            "AADSTS7000215: Invalid client secret provided.",
        );
    }
    let host = headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if field("scope") != format!("http://{host}/.default") {
        return entra(
            "invalid_scope",
            1002012,
            "AADSTS1002012: The provided value for scope is not valid.",
        );
    }
    let token = format!("fake-arm-token-{}", s.tokens.len() + 1);
    s.tokens.insert(token.clone());
    ok(
        StatusCode::OK,
        json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token}),
    )
}

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const TOKEN_EXCHANGE: &str = "api://AzureADTokenExchange";

fn entra_error(code: &str, codes: u32, description: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(
            json!({"error": code, "error_description": description, "error_codes": [codes]}),
        ),
    )
        .into_response()
}

/// A ServiceAccount token as AKS projects it for workload identity (`iss`, `sub`, `aud`). The
/// signature is a placeholder: the fake has no issuer keys and checks the claims only.
pub fn service_account_token(issuer: &str, subject: &str) -> String {
    use base64::Engine;
    let encode = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.c2lnbmF0dXJl",
        encode(json!({"alg": "RS256", "kid": "fake"})),
        encode(
            json!({"iss": issuer, "sub": subject, "aud": [TOKEN_EXCHANGE], "exp": 4102444800u64})
        ),
    )
}

/// Entra ID's workload identity federation: the assertion's issuer, subject and audience must
/// match a federated identity credential of the managed identity with `client_id`.
/// Entra's refusal: error, code and description.
type Refusal = (&'static str, u32, String);

fn check_assertion(objects: &Objects, client_id: &str, assertion: &str) -> Result<(), Refusal> {
    use base64::Engine;
    let claims: Value = assertion
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| {
            (
                "invalid_client",
                50027,
                "AADSTS50027: JWT token is invalid or malformed.".into(),
            )
        })?;
    let Some(identity) = objects
        .identities
        .values()
        .find(|i| i["properties"]["clientId"].as_str() == Some(client_id))
    else {
        return Err(("unauthorized_client",
            700016,
            format!("AADSTS700016: Application with identifier '{client_id}' was not found in the directory."),
        ));
    };
    let (iss, sub) = (
        claims["iss"].as_str().unwrap_or_default(),
        claims["sub"].as_str().unwrap_or_default(),
    );
    let aud: Vec<&str> = match &claims["aud"] {
        Value::String(a) => vec![a.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let prefix = format!(
        "{}/federatedidentitycredentials/",
        identity["id"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase()
    );
    let trusted = objects.federated.iter().any(|(key, f)| {
        let p = &f["properties"];
        key.starts_with(&prefix)
            && p["issuer"].as_str() == Some(iss)
            && p["subject"].as_str() == Some(sub)
            && p["audiences"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|x| x.as_str().is_some_and(|x| aud.contains(&x)))
            })
    });
    if trusted {
        Ok(())
    } else {
        Err(("invalid_client",
            70021,
            format!("AADSTS70021: No matching federated identity record found for presented assertion. Assertion Issuer: '{iss}'. Assertion Subject: '{sub}'. Assertion Audience: '{}'.", aud.join(",")),
        ))
    }
}

/// Whether an assignment at `assignment_scope` shows in a list at `list_scope`: at or above it,
/// and (unless `at_scope_only`) below it. Scopes compare on whole segments.
fn listed(assignment_scope: &str, list_scope: &str, at_scope_only: bool) -> bool {
    let segments = |s: &str| -> Vec<String> {
        s.to_ascii_lowercase()
            .split('/')
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect()
    };
    let (a, l) = (segments(assignment_scope), segments(list_scope));
    let above_or_at = l.starts_with(&a);
    above_or_at || (!at_scope_only && a.starts_with(&l))
}

fn read(objects: &Objects, target: &Target, params: &BTreeMap<String, String>) -> Response {
    match target {
        Target::Assignments { scope } => {
            let filter = params
                .get("$filter")
                .map(String::as_str)
                .unwrap_or_default();
            let mut at_scope = false;
            let mut principal: Option<String> = None;
            for clause in filter
                .split(" and ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
            {
                if clause == "atScope()" {
                    at_scope = true;
                } else if let Some(id) = clause
                    .strip_prefix("principalId eq '")
                    .and_then(|r| r.strip_suffix('\''))
                {
                    principal = Some(id.to_ascii_lowercase());
                } else {
                    return arm_error(
                        StatusCode::BAD_REQUEST,
                        "UnsupportedQuery",
                        format!("The filter '{filter}' is not supported. Supported filters are atScope(), principalId eq '{{id}}', or both joined by 'and'."),
                    );
                }
            }
            let value: Vec<Value> = objects
                .assignments
                .values()
                .filter(|a| {
                    listed(
                        a["properties"]["scope"].as_str().unwrap_or_default(),
                        scope,
                        at_scope,
                    )
                })
                .filter(|a| {
                    principal.as_deref().is_none_or(|p| {
                        a["properties"]["principalId"]
                            .as_str()
                            .unwrap_or_default()
                            .eq_ignore_ascii_case(p)
                    })
                })
                .cloned()
                .collect();
            ok(StatusCode::OK, json!({"value": value}))
        }
        Target::Assignment { scope, name } => {
            let id = format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{name}");
            match objects.assignments.get(&id.to_ascii_lowercase()) {
                Some(a) => ok(StatusCode::OK, a.clone()),
                None => arm_error(
                    StatusCode::NOT_FOUND,
                    "RoleAssignmentNotFound",
                    format!("The role assignment '{name}' is not found."),
                ),
            }
        }
        Target::Definition { id } => match objects.definitions.get(&id.to_ascii_lowercase()) {
            Some(d) => ok(StatusCode::OK, d.clone()),
            None => arm_error(
                StatusCode::NOT_FOUND,
                "RoleDefinitionDoesNotExist",
                format!("The specified role definition with ID '{id}' does not exist."),
            ),
        },
        Target::Identity { id } => match objects.identities.get(&id.to_ascii_lowercase()) {
            Some(i) => ok(StatusCode::OK, i.clone()),
            None => identity_not_found(id),
        },
        Target::Federations { identity } => {
            if !objects
                .identities
                .contains_key(&identity.to_ascii_lowercase())
            {
                return identity_not_found(identity);
            }
            let prefix = format!(
                "{}/federatedidentitycredentials/",
                identity.to_ascii_lowercase()
            );
            let value: Vec<Value> = objects
                .federated
                .iter()
                .filter(|(k, _)| k.starts_with(&prefix))
                .map(|(_, v)| v.clone())
                .collect();
            ok(StatusCode::OK, json!({"value": value}))
        }
        Target::Federation { identity, name } => {
            let id = format!("{identity}/federatedIdentityCredentials/{name}");
            match objects.federated.get(&id.to_ascii_lowercase()) {
                Some(f) => ok(StatusCode::OK, f.clone()),
                None => arm_error(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    format!("The federated identity credential '{name}' was not found."),
                ),
            }
        }
    }
}

fn identity_not_found(id: &str) -> Response {
    arm_error(
        StatusCode::NOT_FOUND,
        "ResourceNotFound",
        format!("The Resource '{id}' was not found."),
    )
}

fn is_guid(name: &str) -> bool {
    let parts: Vec<&str> = name.split('-').collect();
    parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
        && parts
            .iter()
            .all(|p| p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// The state before this write becomes what stale reads serve.
fn remember(s: &mut Store) {
    s.previous = Some(s.objects.clone());
}

fn put_assignment(s: &mut Store, scope: &str, name: &str, body: &[u8]) -> Response {
    let bad = |code: &str, message: String| arm_error(StatusCode::BAD_REQUEST, code, message);
    if !is_guid(name) {
        return bad("InvalidRoleAssignmentId", format!("The role assignment ID '{name}' is not valid. The role assignment ID must be a GUID."));
    }
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        return bad(
            "InvalidRequestContent",
            "The request content is not valid JSON.".into(),
        );
    };
    let Some(props) = body.get("properties").and_then(Value::as_object) else {
        return bad(
            "InvalidRequestContent",
            "The request content must be {\"properties\": {…}}.".into(),
        );
    };
    if let Some(key) = props
        .keys()
        .find(|k| !ASSIGNMENT_KEYS.contains(&k.as_str()))
    {
        return bad(
            "InvalidRequestContent",
            format!("Could not find member '{key}' on object of type 'RoleAssignmentProperties'."),
        );
    }
    let text = |k: &str| {
        props
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let (role, principal, principal_type) = (
        text("roleDefinitionId"),
        text("principalId"),
        text("principalType"),
    );
    if !s
        .objects
        .definitions
        .contains_key(&role.to_ascii_lowercase())
    {
        return bad(
            "RoleDefinitionDoesNotExist",
            format!("The specified role definition with ID '{role}' does not exist."),
        );
    }
    let Some(actual_type) = s.principals.get(&principal).cloned() else {
        return bad(
            "PrincipalNotFound",
            format!("Principal {principal} does not exist in the directory {TENANT}."),
        );
    };
    if principal_type.is_empty() || !PRINCIPAL_TYPES.contains(&principal_type.as_str()) {
        return bad(
            "InvalidPrincipalType",
            format!("principalType must be one of {PRINCIPAL_TYPES:?}; got '{principal_type}'."),
        );
    }
    if principal_type != actual_type {
        return bad("UnmatchedPrincipalType", format!("The PrincipalId '{principal}' has type '{actual_type}', which is different from specified PrincipalType '{principal_type}'."));
    }
    let object = assignment_object(scope, name, &Value::Object(props.clone()));
    let id = object["id"].as_str().unwrap_or_default().to_string();
    let same_grant = |a: &Value| {
        [
            "roleDefinitionId",
            "principalId",
            "principalType",
            "condition",
            "conditionVersion",
            "description",
        ]
        .iter()
        .all(|k| {
            let (x, y) = (&a["properties"][k], &object["properties"][k]);
            match (x.as_str(), y.as_str()) {
                (Some(x), Some(y)) if k.ends_with("Id") => x.eq_ignore_ascii_case(y),
                _ => x == y,
            }
        })
    };
    if let Some(existing) = s.objects.assignments.get(&id.to_ascii_lowercase()) {
        return if same_grant(existing) {
            ok(StatusCode::OK, existing.clone())
        } else {
            arm_error(
                StatusCode::CONFLICT,
                "RoleAssignmentUpdateNotPermitted",
                "Tenant ID, application ID, principal ID, and scope are not allowed to be updated.",
            )
        };
    }
    let duplicate = s.objects.assignments.values().any(|a| {
        let p = &a["properties"];
        p["scope"]
            .as_str()
            .unwrap_or_default()
            .eq_ignore_ascii_case(object["properties"]["scope"].as_str().unwrap_or_default())
            && p["roleDefinitionId"]
                .as_str()
                .unwrap_or_default()
                .eq_ignore_ascii_case(&role)
            && p["principalId"]
                .as_str()
                .unwrap_or_default()
                .eq_ignore_ascii_case(&principal)
    });
    if duplicate {
        return arm_error(
            StatusCode::CONFLICT,
            "RoleAssignmentExists",
            "The role assignment already exists.",
        );
    }
    remember(s);
    s.objects
        .assignments
        .insert(id.to_ascii_lowercase(), object.clone());
    ok(StatusCode::CREATED, object)
}

fn put_federated(s: &mut Store, identity: &str, name: &str, body: &[u8]) -> Response {
    let bad = |message: String| arm_error(StatusCode::BAD_REQUEST, "BadRequest", message);
    if !s
        .objects
        .identities
        .contains_key(&identity.to_ascii_lowercase())
    {
        return identity_not_found(identity);
    }
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        return bad("The request content is not valid JSON.".into());
    };
    let props = &body["properties"];
    let issuer = props["issuer"].as_str().unwrap_or_default();
    if !issuer.starts_with("https://") {
        return bad(format!("Issuer '{issuer}' must be an https URL."));
    }
    if props["subject"].as_str().is_none_or(str::is_empty) {
        return bad("Subject is required.".into());
    }
    if props["audiences"].as_array().is_none_or(Vec::is_empty) {
        return bad("Audiences must hold exactly one value.".into());
    }
    let id = format!("{identity}/federatedIdentityCredentials/{name}");
    let object = federated_object(&id, name, props);
    let key = id.to_ascii_lowercase();
    let status = match s.objects.federated.get(&key) {
        Some(existing) if existing["properties"] == object["properties"] => {
            return ok(StatusCode::OK, existing.clone())
        }
        Some(_) => StatusCode::OK,
        None => StatusCode::CREATED,
    };
    remember(s);
    s.objects.federated.insert(key, object.clone());
    ok(status, object)
}

fn delete(
    s: &mut Store,
    map: fn(&mut Objects) -> &mut BTreeMap<String, Value>,
    id: &str,
) -> Response {
    let key = id.to_ascii_lowercase();
    if !map(&mut s.objects).contains_key(&key) {
        return StatusCode::NO_CONTENT.into_response();
    }
    remember(s);
    match map(&mut s.objects).remove(&key) {
        Some(gone) => ok(StatusCode::OK, gone),
        None => StatusCode::NO_CONTENT.into_response(),
    }
}
