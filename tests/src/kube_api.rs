//! A strict fake Kubernetes API server on loopback, for tests that drive the real `kube` client.
//!
//! No Kubernetes API server can run here (docs/ARCHITECTURE.md §Testing), so this follows the documented REST
//! shapes and rejects what the real one rejects:
//!
//! * objects are stored generically by group / version / resource / namespace / name
//!   ([`ObjectKey`]); each [`ResourceType`] says its kind, scope, validation and whether a LIST
//!   answers metadata only (as Kubescape's aggregated API does), so other types
//!   (e.g. Kubescape's ApplicationProfile) are one [`KubeApi::register`] away;
//! * `GET` one or a collection (namespaced, or across namespaces), `POST` (create; 409
//!   `AlreadyExists`), `PATCH` with `application/json-patch+json` only (a failing `test` op or
//!   any failed op → 422 `Invalid`; other patch types → 415), `DELETE` honouring
//!   `preconditions` (409 `Conflict`); 404 `NotFound` Status for missing objects or resources;
//! * every write bumps the cluster-wide `resourceVersion`; `dryRun=All` validates and answers
//!   without storing or bumping; any other `dryRun` value is a 400;
//! * `POST authorization.k8s.io/v1 subjectaccessreviews` is answered by the fake's own small
//!   RBAC evaluator over the stored bindings and roles (deliberately not the code under test);
//! * RBAC validation as the API server does it: roleRef immutable and well-formed, subjects of a
//!   known kind with a name (a ServiceAccount subject of a ClusterRoleBinding needs a namespace),
//!   User/Group apiGroup defaulted, an empty `subjects` list omitted.
//!
//! Faults on demand: [`KubeApi::fail_next`] (the next N requests get a 5xx Status),
//! [`KubeApi::edit_before_patches`] (another writer lands between a client's read and its
//! patch), [`KubeApi::stale_reads`] (the next N reads see the state before the latest write).
//! [`KubeApi::writes`] counts the writes the server stored; [`KubeApi::requests`] records every
//! request received.
//!
//! One server per test: it runs on the test's runtime and stops when dropped.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{bail, Result};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};

use crate::fake::{Faults, Served};

pub const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// Where one object lives.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub group: String,
    pub version: String,
    pub resource: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectKey {
    pub fn new(group: &str, resource: &str, namespace: Option<&str>, name: &str) -> ObjectKey {
        ObjectKey {
            group: group.into(),
            version: "v1".into(),
            resource: resource.into(),
            namespace: namespace.map(str::to_string),
            name: name.into(),
        }
    }

    pub fn role_binding(namespace: &str, name: &str) -> ObjectKey {
        ObjectKey::new(RBAC_GROUP, "rolebindings", Some(namespace), name)
    }

    pub fn cluster_role_binding(name: &str) -> ObjectKey {
        ObjectKey::new(RBAC_GROUP, "clusterrolebindings", None, name)
    }
}

/// Checks an object before it is stored: `old` is the stored version on update.
pub type Validate = fn(new: &mut Value, old: Option<&Value>) -> Result<(), String>;

/// One kind of object the server serves.
#[derive(Clone)]
pub struct ResourceType {
    pub group: &'static str,
    pub version: &'static str,
    /// Plural, as in the URL.
    pub resource: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub validate: Option<Validate>,
    /// LIST items carry `metadata` only, as Kubescape's aggregated storage API answers; GET one
    /// for the rest.
    pub list_metadata_only: bool,
}

impl ResourceType {
    fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.resource.to_string()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }
}

/// The types the RBAC plane uses.
pub fn rbac_types() -> Vec<ResourceType> {
    vec![
        ResourceType {
            group: "",
            version: "v1",
            resource: "serviceaccounts",
            kind: "ServiceAccount",
            namespaced: true,
            validate: None,
            list_metadata_only: false,
        },
        ResourceType {
            group: RBAC_GROUP,
            version: "v1",
            resource: "roles",
            kind: "Role",
            namespaced: true,
            validate: Some(validate_role),
            list_metadata_only: false,
        },
        ResourceType {
            group: RBAC_GROUP,
            version: "v1",
            resource: "clusterroles",
            kind: "ClusterRole",
            namespaced: false,
            validate: Some(validate_role),
            list_metadata_only: false,
        },
        ResourceType {
            group: RBAC_GROUP,
            version: "v1",
            resource: "rolebindings",
            kind: "RoleBinding",
            namespaced: true,
            validate: Some(validate_role_binding),
            list_metadata_only: false,
        },
        ResourceType {
            group: RBAC_GROUP,
            version: "v1",
            resource: "clusterrolebindings",
            kind: "ClusterRoleBinding",
            namespaced: false,
            validate: Some(validate_cluster_role_binding),
            list_metadata_only: false,
        },
    ]
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub content_type: Option<String>,
    pub body: Option<Value>,
}

impl Recorded {
    pub fn dry_run(&self) -> bool {
        self.query.split('&').any(|p| p == "dryRun=All")
    }
}

type Objects = BTreeMap<ObjectKey, Value>;
type Edit = Box<dyn Fn(&mut Value) + Send>;

#[derive(Default)]
struct Store {
    types: Vec<ResourceType>,
    objects: Objects,
    /// The objects before the latest write: what a lagging cache would still serve.
    previous: Option<Objects>,
    resource_version: u64,
    uid: u64,
    writes: u64,
    requests: Vec<Recorded>,
    faults: Faults,
    stale_reads: u32,
    /// Edits still to inject, one before each of the next PATCHes.
    edits_before_patch: u32,
    edit: Option<Edit>,
}

impl Store {
    fn next_version(&mut self) -> String {
        self.resource_version += 1;
        self.resource_version.to_string()
    }

    fn remember(&mut self) {
        self.previous = Some(self.objects.clone());
    }
}

type Shared = Arc<Mutex<Store>>;

pub struct KubeApi {
    served: Served,
    store: Shared,
}

impl KubeApi {
    /// Starts a server with the RBAC types on a free 127.0.0.1 port.
    pub async fn start() -> Result<KubeApi> {
        let store: Shared = Arc::new(Mutex::new(Store {
            types: rbac_types(),
            resource_version: 1000,
            ..Store::default()
        }));
        let app = Router::new().fallback(handle).with_state(store.clone());
        let served = Served::start(app, "the fake Kubernetes API").await?;
        Ok(KubeApi { served, store })
    }

    /// `http://127.0.0.1:PORT`, what the kube client is configured with.
    pub fn url(&self) -> String {
        self.served.url()
    }

    fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Serves one more type of object.
    pub fn register(&self, ty: ResourceType) {
        self.lock().types.push(ty);
    }

    /// Stores `object` as if created through the API (validated, versioned), without counting
    /// it as a write. Its type comes from `apiVersion` and `kind`.
    pub fn seed(&self, mut object: Value) -> Result<Value> {
        let mut store = self.lock();
        let api_version = object["apiVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let kind = object["kind"].as_str().unwrap_or_default().to_string();
        let Some(ty) = store
            .types
            .iter()
            .find(|t| t.api_version() == api_version && t.kind == kind)
            .cloned()
        else {
            bail!("no registered type for {api_version} {kind}");
        };
        let namespace = object["metadata"]["namespace"].as_str().map(str::to_string);
        if ty.namespaced != namespace.is_some() {
            bail!(
                "{kind} needs {} namespace",
                if ty.namespaced { "a" } else { "no" }
            );
        }
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let key = ObjectKey {
            group: ty.group.into(),
            version: ty.version.into(),
            resource: ty.resource.into(),
            namespace,
            name,
        };
        if let Some(validate) = ty.validate {
            validate(&mut object, None).map_err(anyhow::Error::msg)?;
        }
        stamp_new(&mut store, &mut object);
        store.objects.insert(key, object.clone());
        Ok(object)
    }

    /// The stored object, if any.
    pub fn object(&self, key: &ObjectKey) -> Option<Value> {
        self.lock().objects.get(key).cloned()
    }

    /// Writes stored through the API (dry runs, refused and injected edits excluded).
    pub fn writes(&self) -> u64 {
        self.lock().writes
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// The next `n` requests, whatever they are, get `status` (a 5xx) with a Status body.
    pub fn fail_next(&self, n: u32, status: u16) {
        self.lock().faults.fail_next(n, status);
    }

    /// The next `n` reads (GET, LIST, SubjectAccessReview) see the objects as they were before
    /// the latest write, like a lagging cache.
    pub fn stale_reads(&self, n: u32) {
        self.lock().stale_reads = n;
    }

    /// Just before each of the next `n` PATCHes is handled, `edit` changes its target object as
    /// another writer would between the client's read and its patch (the object's
    /// resourceVersion is bumped; not counted in [`KubeApi::writes`]).
    pub fn edit_before_patches(&self, n: u32, edit: impl Fn(&mut Value) + Send + 'static) {
        let mut store = self.lock();
        store.edits_before_patch = n;
        store.edit = Some(Box::new(edit));
    }
}

fn stamp_new(store: &mut Store, object: &mut Value) {
    store.uid += 1;
    let uid = format!("00000000-0000-4000-8000-{:012}", store.uid);
    let version = store.next_version();
    let meta = &mut object["metadata"];
    meta["uid"] = json!(uid);
    meta["resourceVersion"] = json!(version);
    meta["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
}

fn status(code: StatusCode, reason: &str, message: String) -> Response {
    (
        code,
        axum::Json(json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": message, "reason": reason, "code": code.as_u16(),
        })),
    )
        .into_response()
}

fn not_found(ty: &ResourceType, name: &str) -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("{} \"{name}\" not found", ty.group_resource()),
    )
}

fn bad_request(message: String) -> Response {
    status(StatusCode::BAD_REQUEST, "BadRequest", message)
}

fn invalid(ty: &ResourceType, name: &str, message: String) -> Response {
    status(
        StatusCode::UNPROCESSABLE_ENTITY,
        "Invalid",
        format!("{} \"{name}\" is invalid: {message}", ty.kind),
    )
}

fn ok(code: StatusCode, body: Value) -> Response {
    (code, axum::Json(body)).into_response()
}

/// A parsed request path.
struct Target {
    ty: ResourceType,
    namespace: Option<String>,
    name: Option<String>,
}

fn route(types: &[ResourceType], path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let (namespace, resource, name) = match rest {
        ["namespaces", ns, resource] => (Some(*ns), *resource, None),
        ["namespaces", ns, resource, name] => (Some(*ns), *resource, Some(*name)),
        [resource] => (None, *resource, None),
        [resource, name] => (None, *resource, Some(*name)),
        _ => return None,
    };
    let ty = types
        .iter()
        .find(|t| t.group == group && t.version == version && t.resource == resource)?;
    if namespace.is_some() && !ty.namespaced {
        return None;
    }
    Some(Target {
        ty: ty.clone(),
        namespace: namespace.map(str::to_string),
        name: name.map(str::to_string),
    })
}

fn query_params(uri: &Uri) -> BTreeMap<String, String> {
    uri.query()
        .map(|q| {
            q.split('&')
                .filter_map(|p| p.split_once('=').or(Some((p, ""))))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .unwrap_or_default()
}

async fn handle(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut store = shared.lock().unwrap_or_else(|p| p.into_inner());
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or(v).trim().to_string());
    store.requests.push(Recorded {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().unwrap_or_default().to_string(),
        content_type: content_type.clone(),
        body: serde_json::from_slice(&body).ok(),
    });
    if let Some(code) = store.faults.take_failure(StatusCode::INTERNAL_SERVER_ERROR) {
        let reason = if code == StatusCode::SERVICE_UNAVAILABLE {
            "ServiceUnavailable"
        } else {
            "InternalError"
        };
        return status(code, reason, "injected fault".into());
    }
    if uri.path() == "/apis/authorization.k8s.io/v1/subjectaccessreviews" {
        return match method {
            Method::POST => review(&mut store, &body),
            _ => status(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "only create is supported on subjectaccessreviews".into(),
            ),
        };
    }
    let Some(target) = route(&store.types, uri.path()) else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource".into(),
        );
    };
    let params = query_params(&uri);
    for unsupported in ["labelSelector", "fieldSelector", "watch"] {
        if params.get(unsupported).is_some_and(|v| !v.is_empty()) {
            return bad_request(format!("this fake does not implement {unsupported}"));
        }
    }
    let dry_run = match params.get("dryRun").map(String::as_str) {
        None => false,
        Some("All") => true,
        Some(other) => {
            return bad_request(format!(
                "Invalid dry run value: {other:?}; supported values: All"
            ))
        }
    };
    match (method, &target.name) {
        (Method::GET, None) => list(&mut store, &target),
        (Method::GET, Some(name)) => get(&mut store, &target, name),
        (Method::POST, None) => create(&mut store, &target, &body, dry_run),
        (Method::PATCH, Some(name)) => {
            if content_type.as_deref() != Some("application/json-patch+json") {
                return status(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "UnsupportedMediaType",
                    format!(
                        "this fake supports only application/json-patch+json, got {content_type:?}"
                    ),
                );
            }
            patch(&mut store, &target, name, &body, dry_run)
        }
        (Method::DELETE, Some(name)) => delete(&mut store, &target, name, &body, dry_run),
        (m, _) => status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("{m} is not supported on this path by the fake"),
        ),
    }
}

fn key(target: &Target, name: &str) -> ObjectKey {
    ObjectKey {
        group: target.ty.group.into(),
        version: target.ty.version.into(),
        resource: target.ty.resource.into(),
        namespace: target.namespace.clone(),
        name: name.into(),
    }
}

/// The objects a read sees: the previous state while stale reads are pending.
fn readable(store: &mut Store) -> Objects {
    if store.stale_reads > 0 {
        store.stale_reads -= 1;
        if let Some(previous) = &store.previous {
            return previous.clone();
        }
    }
    store.objects.clone()
}

fn with_type(ty: &ResourceType, mut object: Value) -> Value {
    object["apiVersion"] = json!(ty.api_version());
    object["kind"] = json!(ty.kind);
    object
}

fn get(store: &mut Store, target: &Target, name: &str) -> Response {
    // A namespaced object is only addressable inside its namespace.
    if target.ty.namespaced && target.namespace.is_none() {
        return not_found(&target.ty, name);
    }
    match readable(store).remove(&key(target, name)) {
        Some(object) => ok(StatusCode::OK, with_type(&target.ty, object)),
        None => not_found(&target.ty, name),
    }
}

fn list(store: &mut Store, target: &Target) -> Response {
    let objects = readable(store);
    // List items carry no apiVersion/kind, as the real server sends them.
    let items: Vec<Value> = objects
        .iter()
        .filter(|(k, _)| {
            k.group == target.ty.group
                && k.resource == target.ty.resource
                && (target.namespace.is_none() || k.namespace == target.namespace)
        })
        .map(|(_, v)| {
            if target.ty.list_metadata_only {
                return json!({"metadata": v["metadata"]});
            }
            let mut v = v.clone();
            if let Some(o) = v.as_object_mut() {
                o.remove("apiVersion");
                o.remove("kind");
            }
            v
        })
        .collect();
    ok(
        StatusCode::OK,
        json!({
            "apiVersion": target.ty.api_version(),
            "kind": format!("{}List", target.ty.kind),
            "metadata": {"resourceVersion": store.resource_version.to_string()},
            "items": items,
        }),
    )
}

fn create(store: &mut Store, target: &Target, body: &[u8], dry_run: bool) -> Response {
    let ty = &target.ty;
    let Ok(mut object) = serde_json::from_slice::<Value>(body) else {
        return bad_request("the request body is not JSON".into());
    };
    if object["apiVersion"] != json!(ty.api_version()) || object["kind"] != json!(ty.kind) {
        return bad_request(format!(
            "the body is {} {}, not {} {}",
            object["apiVersion"],
            object["kind"],
            ty.api_version(),
            ty.kind
        ));
    }
    let Some(name) = object["metadata"]["name"].as_str().map(str::to_string) else {
        return invalid(ty, "", "metadata.name: Required value".into());
    };
    match (&target.namespace, object["metadata"]["namespace"].as_str()) {
        (Some(url), Some(body)) if url != body => {
            return bad_request(format!("the namespace of the object ({body}) does not match the namespace on the request ({url})"))
        }
        (Some(url), _) => object["metadata"]["namespace"] = json!(url),
        (None, Some(_)) if !ty.namespaced => {
            object["metadata"].as_object_mut().map(|m| m.remove("namespace"));
        }
        (None, _) if ty.namespaced => return not_found(ty, &name),
        _ => {}
    }
    for field in ["resourceVersion", "uid"] {
        if !object["metadata"][field].is_null() {
            return bad_request(format!("metadata.{field} must not be set on create"));
        }
    }
    let k = key(target, &name);
    if store.objects.contains_key(&k) {
        return status(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", ty.group_resource()),
        );
    }
    if let Some(validate) = ty.validate {
        if let Err(e) = validate(&mut object, None) {
            return invalid(ty, &name, e);
        }
    }
    if dry_run {
        return ok(StatusCode::CREATED, object);
    }
    store.remember();
    stamp_new(store, &mut object);
    store.objects.insert(k, object.clone());
    store.writes += 1;
    ok(StatusCode::CREATED, object)
}

fn patch(store: &mut Store, target: &Target, name: &str, body: &[u8], dry_run: bool) -> Response {
    let ty = &target.ty;
    let k = key(target, name);
    if store.edits_before_patch > 0 && store.objects.contains_key(&k) {
        store.edits_before_patch -= 1;
        store.remember();
        let version = store.next_version();
        let edit = store.edit.take();
        if let (Some(edit), Some(object)) = (&edit, store.objects.get_mut(&k)) {
            edit(object);
            object["metadata"]["resourceVersion"] = json!(version);
        }
        store.edit = edit;
    }
    let ops: json_patch::Patch = match serde_json::from_slice(body) {
        Ok(p) => p,
        Err(e) => return bad_request(format!("invalid JSON Patch: {e}")),
    };
    let Some(current) = store.objects.get(&k).cloned() else {
        return not_found(ty, name);
    };
    let mut next = with_type(ty, current.clone());
    if let Err(e) = json_patch::patch(&mut next, &ops) {
        // What the API server answers when a JSON Patch does not apply (a failed `test` included).
        return status(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", e.to_string());
    }
    for field in ["name", "namespace", "uid"] {
        if next["metadata"][field] != current["metadata"][field] {
            return invalid(
                ty,
                name,
                format!("metadata.{field}: Invalid value: field is immutable"),
            );
        }
    }
    // Optimistic concurrency: a resourceVersion in the patched object must be the current one.
    let rv = &next["metadata"]["resourceVersion"];
    if !rv.is_null() && *rv != current["metadata"]["resourceVersion"] {
        return status(
            StatusCode::CONFLICT,
            "Conflict",
            format!("Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again", ty.group_resource()),
        );
    }
    if let Some(validate) = ty.validate {
        if let Err(e) = validate(&mut next, Some(&current)) {
            return invalid(ty, name, e);
        }
    }
    if dry_run {
        return ok(StatusCode::OK, next);
    }
    store.remember();
    next["metadata"]["resourceVersion"] = json!(store.next_version());
    store.objects.insert(k, next.clone());
    store.writes += 1;
    ok(StatusCode::OK, next)
}

fn delete(store: &mut Store, target: &Target, name: &str, body: &[u8], dry_run: bool) -> Response {
    let ty = &target.ty;
    let k = key(target, name);
    let Some(current) = store.objects.get(&k).cloned() else {
        return not_found(ty, name);
    };
    let options: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return bad_request(format!("invalid DeleteOptions: {e}")),
        }
    };
    for field in ["uid", "resourceVersion"] {
        let want = &options["preconditions"][field];
        if !want.is_null() && *want != current["metadata"][field] {
            return status(
                StatusCode::CONFLICT,
                "Conflict",
                format!("Operation cannot be fulfilled on {} \"{name}\": Precondition failed: {field}: {want}, object {field}: {}", ty.group_resource(), current["metadata"][field]),
            );
        }
    }
    if !dry_run {
        store.remember();
        store.objects.remove(&k);
        store.next_version();
        store.writes += 1;
    }
    ok(
        StatusCode::OK,
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
            "details": {"name": name, "group": ty.group, "kind": ty.resource, "uid": current["metadata"]["uid"]},
        }),
    )
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn validate_role(object: &mut Value, _old: Option<&Value>) -> Result<(), String> {
    for (i, rule) in object["rules"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        if strings(&rule["verbs"]).is_empty() {
            return Err(format!(
                "rules[{i}].verbs: Required value: verbs must contain at least one value"
            ));
        }
    }
    Ok(())
}

fn validate_role_binding(object: &mut Value, old: Option<&Value>) -> Result<(), String> {
    validate_binding(object, old, true)
}

fn validate_cluster_role_binding(object: &mut Value, old: Option<&Value>) -> Result<(), String> {
    validate_binding(object, old, false)
}

fn validate_binding(
    object: &mut Value,
    old: Option<&Value>,
    namespaced: bool,
) -> Result<(), String> {
    let role_ref = &object["roleRef"];
    if role_ref["apiGroup"] != json!(RBAC_GROUP) {
        return Err(format!(
            "roleRef.apiGroup: Unsupported value: {}: supported values: \"{RBAC_GROUP}\"",
            role_ref["apiGroup"]
        ));
    }
    let allowed: &[&str] = if namespaced {
        &["Role", "ClusterRole"]
    } else {
        &["ClusterRole"]
    };
    if !role_ref["kind"]
        .as_str()
        .is_some_and(|k| allowed.contains(&k))
    {
        return Err(format!(
            "roleRef.kind: Unsupported value: {}",
            role_ref["kind"]
        ));
    }
    if role_ref["name"].as_str().is_none_or(str::is_empty) {
        return Err("roleRef.name: Required value".into());
    }
    if let Some(old) = old {
        if old["roleRef"] != object["roleRef"] {
            return Err("roleRef: Invalid value: cannot change roleRef".into());
        }
    }
    let mut subjects = object["subjects"].as_array().cloned().unwrap_or_default();
    if !object["subjects"].is_null() && !object["subjects"].is_array() {
        return Err("subjects: Invalid value: must be a list".into());
    }
    for (i, s) in subjects.iter_mut().enumerate() {
        if s["name"].as_str().is_none_or(str::is_empty) {
            return Err(format!("subjects[{i}].name: Required value"));
        }
        match s["kind"].as_str() {
            Some("ServiceAccount") => {
                if s["apiGroup"].as_str().is_some_and(|g| !g.is_empty()) {
                    return Err(format!("subjects[{i}].apiGroup: Unsupported value: {}: supported values: \"\"", s["apiGroup"]));
                }
                if !namespaced && s["namespace"].as_str().is_none_or(str::is_empty) {
                    return Err(format!("subjects[{i}].namespace: Required value"));
                }
            }
            Some("User" | "Group") => {
                if s["apiGroup"].is_null() || s["apiGroup"] == json!("") {
                    s["apiGroup"] = json!(RBAC_GROUP);
                }
                if s["apiGroup"] != json!(RBAC_GROUP) {
                    return Err(format!("subjects[{i}].apiGroup: Unsupported value: {}", s["apiGroup"]));
                }
            }
            other => return Err(format!("subjects[{i}].kind: Unsupported value: {other:?}: supported values: \"ServiceAccount\", \"User\", \"Group\"")),
        }
    }
    let obj = object
        .as_object_mut()
        .ok_or("the object is not a JSON object")?;
    if subjects.is_empty() {
        obj.remove("subjects");
    } else {
        obj.insert("subjects".into(), Value::Array(subjects));
    }
    Ok(())
}

/// The fake's own RBAC authorizer for SubjectAccessReviews.
fn review(store: &mut Store, body: &[u8]) -> Response {
    let Ok(mut sar) = serde_json::from_slice::<Value>(body) else {
        return bad_request("the request body is not JSON".into());
    };
    if sar["apiVersion"] != json!("authorization.k8s.io/v1")
        || sar["kind"] != json!("SubjectAccessReview")
    {
        return bad_request(format!(
            "expected authorization.k8s.io/v1 SubjectAccessReview, got {} {}",
            sar["apiVersion"], sar["kind"]
        ));
    }
    let spec = sar["spec"].clone();
    let user = spec["user"].as_str().unwrap_or_default().to_string();
    let groups = strings(&spec["groups"]);
    let sar_type = ResourceType {
        group: "authorization.k8s.io",
        version: "v1",
        resource: "subjectaccessreviews",
        kind: "SubjectAccessReview",
        namespaced: false,
        validate: None,
        list_metadata_only: false,
    };
    if user.is_empty() && groups.is_empty() {
        return invalid(
            &sar_type,
            "",
            "spec.user: Invalid value: \"\": at least one of user or group must be specified"
                .into(),
        );
    }
    let attrs = &spec["resourceAttributes"];
    if attrs.is_null() == spec["nonResourceAttributes"].is_null() {
        return invalid(
            &sar_type,
            "",
            "spec: exactly one of nonResourceAttributes or resourceAttributes must be specified"
                .into(),
        );
    }
    let objects = readable(store);
    let allowed = !attrs.is_null() && authorize(&objects, &user, &groups, attrs);
    sar["status"] =
        json!({"allowed": allowed, "reason": if allowed { "allowed by RBAC" } else { "" }});
    ok(StatusCode::CREATED, sar)
}

fn authorize(objects: &Objects, user: &str, groups: &[String], attrs: &Value) -> bool {
    let s = |k: &str| attrs[k].as_str().unwrap_or_default().to_string();
    let (verb, group, resource, sub, namespace, name) = (
        s("verb"),
        s("group"),
        s("resource"),
        s("subresource"),
        s("namespace"),
        s("name"),
    );
    let wanted = if sub.is_empty() {
        resource.clone()
    } else {
        format!("{resource}/{sub}")
    };
    let rule_allows = |rule: &Value| {
        let has = |field: &str, v: &str| strings(&rule[field]).iter().any(|x| x == "*" || x == v);
        let resources = strings(&rule["resources"]);
        let names = strings(&rule["resourceNames"]);
        has("verbs", &verb)
            && has("apiGroups", &group)
            && resources.iter().any(|r| {
                r == &wanted
                    || (sub.is_empty() && r == "*")
                    || (!sub.is_empty() && *r == format!("*/{sub}"))
            })
            && (names.is_empty() || names.contains(&name))
    };
    let subject_is_me = |s: &Value, binding_ns: &str| match s["kind"].as_str() {
        Some("User") => s["name"] == json!(user),
        Some("Group") => groups.iter().any(|g| s["name"] == json!(g)),
        Some("ServiceAccount") => {
            let ns = s["namespace"]
                .as_str()
                .filter(|n| !n.is_empty())
                .unwrap_or(binding_ns);
            format!(
                "system:serviceaccount:{ns}:{}",
                s["name"].as_str().unwrap_or_default()
            ) == user
        }
        _ => false,
    };
    let role_rules = |role_ref: &Value, binding_ns: Option<&str>| -> Vec<Value> {
        let rname = role_ref["name"].as_str().unwrap_or_default();
        let k = match role_ref["kind"].as_str() {
            Some("Role") => ObjectKey::new(RBAC_GROUP, "roles", binding_ns, rname),
            _ => ObjectKey::new(RBAC_GROUP, "clusterroles", None, rname),
        };
        objects
            .get(&k)
            .and_then(|r| r["rules"].as_array().cloned())
            .unwrap_or_default()
    };
    objects.iter().any(|(k, binding)| {
        let applies = match k.resource.as_str() {
            "clusterrolebindings" => true,
            "rolebindings" => {
                !namespace.is_empty() && k.namespace.as_deref() == Some(namespace.as_str())
            }
            _ => false,
        };
        let ns = k.namespace.as_deref().unwrap_or_default();
        applies
            && binding["subjects"]
                .as_array()
                .is_some_and(|ss| ss.iter().any(|s| subject_is_me(s, ns)))
            && role_rules(&binding["roleRef"], k.namespace.as_deref())
                .iter()
                .any(rule_allows)
    })
}
