//! The Kubernetes API calls the plane makes, one attempt each, and how a failed call reads as a
//! [`PlaneError`]: the engine decides what happens next (docs/adding-a-plane.md §4).

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{
    DeleteParams, ListParams, Patch as KubePatch, PatchParams, PostParams, Preconditions,
};
use kube::{Api, Client};

use crate::permission::ResourceRequest;
use crate::rbac::{Binding, BindingKind, BindingRef, Requester, RoleKey};
use crate::rungs::delete_binding::PreImage;
use crate::PLANE;
use firebreak_containment::plane::PlaneError;

/// What Firebreak's identity needs in the cluster, named in every refusal.
const NEEDED: &str = "grant Firebreak's identity get, list, patch, delete and create on \
     rolebindings and clusterrolebindings, get on roles, clusterroles and serviceaccounts, and \
     create on subjectaccessreviews";

/// One client, built once and shared by every call.
#[derive(Clone)]
pub struct Cluster {
    client: Client,
}

impl Cluster {
    pub fn new(client: Client) -> Cluster {
        Cluster { client }
    }

    pub async fn service_account(
        &self,
        namespace: &str,
        name: &str,
    ) -> kube::Result<Option<ServiceAccount>> {
        Api::<ServiceAccount>::namespaced(self.client.clone(), namespace)
            .get_opt(name)
            .await
    }

    /// Every ClusterRoleBinding, then every RoleBinding of `namespaces`.
    pub async fn bindings(
        &self,
        namespaces: impl IntoIterator<Item = &String>,
    ) -> Result<Vec<Binding>, PlaneError> {
        let all = ListParams::default();
        let mut out: Vec<Binding> = Api::<ClusterRoleBinding>::all(self.client.clone())
            .list(&all)
            .await
            .map_err(|e| api_error("listing ClusterRoleBindings", e))?
            .into_iter()
            .map(from_cluster_binding)
            .collect();
        for ns in namespaces {
            let listed = Api::<RoleBinding>::namespaced(self.client.clone(), ns)
                .list(&all)
                .await
                .map_err(|e| api_error(&format!("listing RoleBindings in {ns}"), e))?;
            out.extend(listed.into_iter().map(|b| from_binding(b, ns)));
        }
        Ok(out)
    }

    /// The rules of the role a binding references; `None` when it does not exist.
    pub async fn role(&self, key: &RoleKey) -> Result<Option<Vec<PolicyRule>>, PlaneError> {
        let doing = format!("reading {} {}", key.kind, key.name);
        Ok(match (key.kind.as_str(), &key.namespace) {
            ("Role", Some(ns)) => Api::<Role>::namespaced(self.client.clone(), ns)
                .get_opt(&key.name)
                .await
                .map_err(|e| api_error(&doing, e))?
                .map(|r| r.rules.unwrap_or_default()),
            ("ClusterRole", None) => Api::<ClusterRole>::all(self.client.clone())
                .get_opt(&key.name)
                .await
                .map_err(|e| api_error(&doing, e))?
                .map(|r| r.rules.unwrap_or_default()),
            // A roleRef naming another kind is refused by the API server; it grants nothing.
            _ => None,
        })
    }

    /// The binding as it is now; `None` when it does not exist.
    pub async fn binding(&self, id: &BindingRef) -> Result<Option<Binding>, PlaneError> {
        let doing = format!("reading {id}");
        match (&id.kind, &id.namespace) {
            (BindingKind::RoleBinding, Some(ns)) => {
                Ok(Api::<RoleBinding>::namespaced(self.client.clone(), ns)
                    .get_opt(&id.name)
                    .await
                    .map_err(|e| api_error(&doing, e))?
                    .map(|b| from_binding(b, ns)))
            }
            (BindingKind::ClusterRoleBinding, None) => {
                Ok(Api::<ClusterRoleBinding>::all(self.client.clone())
                    .get_opt(&id.name)
                    .await
                    .map_err(|e| api_error(&doing, e))?
                    .map(from_cluster_binding))
            }
            _ => Err(PlaneError::Invalid {
                plane: PLANE,
                detail: format!("{id}: a RoleBinding needs a namespace, a ClusterRoleBinding none"),
            }),
        }
    }

    /// A JSON Patch of the binding; `dry_run` asks the API server to validate it and store
    /// nothing (`dryRun=All`).
    pub async fn patch(
        &self,
        id: &BindingRef,
        patch: json_patch::Patch,
        dry_run: bool,
    ) -> kube::Result<()> {
        let params = PatchParams {
            dry_run,
            ..PatchParams::default()
        };
        let patch: KubePatch<()> = KubePatch::Json(patch);
        match &id.namespace {
            Some(ns) => Api::<RoleBinding>::namespaced(self.client.clone(), ns)
                .patch(&id.name, &params, &patch)
                .await
                .map(drop),
            None => Api::<ClusterRoleBinding>::all(self.client.clone())
                .patch(&id.name, &params, &patch)
                .await
                .map(drop),
        }
    }

    /// Deletes the binding only if it is still the object (uid, resourceVersion) read.
    pub async fn delete(&self, id: &BindingRef, preconditions: Preconditions) -> kube::Result<()> {
        let params = DeleteParams {
            preconditions: Some(preconditions),
            ..DeleteParams::default()
        };
        match &id.namespace {
            Some(ns) => Api::<RoleBinding>::namespaced(self.client.clone(), ns)
                .delete(&id.name, &params)
                .await
                .map(drop),
            None => Api::<ClusterRoleBinding>::all(self.client.clone())
                .delete(&id.name, &params)
                .await
                .map(drop),
        }
    }

    /// Creates the binding `id` as its pre-image describes it.
    pub async fn create(&self, id: &BindingRef, pre_image: &PreImage) -> kube::Result<()> {
        let params = PostParams::default();
        let metadata = ObjectMeta {
            name: Some(id.name.clone()),
            namespace: id.namespace.clone(),
            labels: (!pre_image.labels.is_empty()).then(|| pre_image.labels.clone()),
            annotations: (!pre_image.annotations.is_empty()).then(|| pre_image.annotations.clone()),
            ..ObjectMeta::default()
        };
        let role_ref = pre_image.role_ref.clone();
        // The API server omits an empty list; so does the pre-image.
        let subjects = (!pre_image.subjects.is_empty()).then(|| pre_image.subjects.clone());
        match &id.namespace {
            Some(ns) => {
                let object = RoleBinding {
                    metadata,
                    role_ref,
                    subjects,
                };
                Api::<RoleBinding>::namespaced(self.client.clone(), ns)
                    .create(&params, &object)
                    .await
                    .map(drop)
            }
            None => {
                let object = ClusterRoleBinding {
                    metadata,
                    role_ref,
                    subjects,
                };
                Api::<ClusterRoleBinding>::all(self.client.clone())
                    .create(&params, &object)
                    .await
                    .map(drop)
            }
        }
    }

    /// Whether `who` may do `req`, asked of the cluster's own authorizer.
    pub async fn review(&self, who: &Requester, req: &ResourceRequest) -> Result<bool, PlaneError> {
        let review = SubjectAccessReview {
            metadata: ObjectMeta::default(),
            spec: SubjectAccessReviewSpec {
                user: (!who.user.is_empty()).then(|| who.user.clone()),
                groups: Some(who.groups.clone()),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(req.verb.clone()),
                    group: Some(req.group.clone()),
                    resource: Some(req.resource.clone()),
                    subresource: req.subresource.clone(),
                    namespace: req.namespace.clone(),
                    name: req.name.clone(),
                    ..ResourceAttributes::default()
                }),
                ..SubjectAccessReviewSpec::default()
            },
            status: None,
        };
        let answer = Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| api_error("creating a SubjectAccessReview", e))?;
        Ok(answer.status.is_some_and(|s| s.allowed))
    }
}

/// The HTTP status of an API error, if the server answered at all.
pub fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// A failed call as the engine's error policy reads it: throttling and server errors are
/// `Unavailable`, no answer at all (refused connection, timeout) is `Unreachable`, the rest a
/// refusal.
pub fn api_error(doing: &str, e: kube::Error) -> PlaneError {
    let detail = format!("{doing}: {e}");
    match (&e, status_code(&e)) {
        (_, Some(401 | 403)) => PlaneError::Refused {
            plane: PLANE,
            detail: format!("{detail}; {NEEDED}"),
        },
        (_, Some(429 | 500..=599)) => PlaneError::Unavailable {
            plane: PLANE,
            detail,
        },
        (kube::Error::HyperError(_) | kube::Error::Service(_), _) => PlaneError::Unreachable {
            plane: PLANE,
            detail,
        },
        _ => PlaneError::Refused {
            plane: PLANE,
            detail,
        },
    }
}

/// A failed write: a JSON Patch `test` guard that no longer holds (422) or a precondition or
/// create that met another object (409) means the binding changed since it was read.
pub fn write_error(doing: &str, e: kube::Error) -> PlaneError {
    match status_code(&e) {
        Some(409 | 422) => PlaneError::Conflict {
            plane: PLANE,
            detail: format!("{doing}: {e}"),
        },
        _ => api_error(doing, e),
    }
}

fn from_binding(b: RoleBinding, namespace: &str) -> Binding {
    binding_of(
        BindingKind::RoleBinding,
        Some(namespace.to_string()),
        b.metadata,
        b.role_ref,
        b.subjects,
    )
}

fn from_cluster_binding(b: ClusterRoleBinding) -> Binding {
    binding_of(
        BindingKind::ClusterRoleBinding,
        None,
        b.metadata,
        b.role_ref,
        b.subjects,
    )
}

fn binding_of(
    kind: BindingKind,
    namespace: Option<String>,
    metadata: ObjectMeta,
    role_ref: RoleRef,
    subjects: Option<Vec<Subject>>,
) -> Binding {
    Binding {
        id: BindingRef {
            kind,
            namespace,
            name: metadata.name.unwrap_or_default(),
        },
        uid: metadata.uid,
        resource_version: metadata.resource_version.unwrap_or_default(),
        role_ref,
        subjects: subjects.unwrap_or_default(),
        labels: metadata.labels.unwrap_or_default(),
        annotations: metadata.annotations.unwrap_or_default(),
    }
}
