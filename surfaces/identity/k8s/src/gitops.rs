//! GitOps controllers reconcile a binding back to what Git says: a subject removed by Firebreak
//! returns at their next sync. The plan says so, naming the owner, so the operator can pause the
//! sync or commit the change.

use std::collections::BTreeMap;

const ARGO_TRACKING_ID: &str = "argocd.argoproj.io/tracking-id";
const ARGO_PREFIX: &str = "argocd.argoproj.io/";
const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
const FLUX_KUSTOMIZATION: &str = "kustomize.toolkit.fluxcd.io/name";
const FLUX_KUSTOMIZATION_NS: &str = "kustomize.toolkit.fluxcd.io/namespace";
const FLUX_HELM_RELEASE: &str = "helm.toolkit.fluxcd.io/name";
const FLUX_HELM_RELEASE_NS: &str = "helm.toolkit.fluxcd.io/namespace";

/// Warnings for an object with these labels and annotations; empty when nothing manages it.
pub fn gitops_warnings(
    what: &str,
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut out = Vec::new();
    let argo_marked = labels
        .keys()
        .chain(annotations.keys())
        .any(|k| k.starts_with(ARGO_PREFIX))
        || labels
            .get(MANAGED_BY_LABEL)
            .is_some_and(|v| v.eq_ignore_ascii_case("argocd"));
    // The tracking id is `APP:GROUP/KIND:NS/NAME`; label tracking puts the app in the instance label.
    let argo_app = annotations
        .get(ARGO_TRACKING_ID)
        .map(|id| id.split(':').next().unwrap_or(id).to_string())
        .or_else(|| {
            argo_marked
                .then(|| labels.get(INSTANCE_LABEL).cloned())
                .flatten()
        });
    if argo_marked || argo_app.is_some() {
        out.push(format!(
            "{what} is managed by Argo CD{}: its next sync (or self-heal) restores the removed subject; \
             disable auto-sync for the application or commit the change to Git",
            argo_app.map(|a| format!(" (Application {a})")).unwrap_or_default()
        ));
    }
    let flux = |name: &str, ns: &str, kind: &str| {
        labels.get(name).map(|n| match labels.get(ns) {
            Some(ns) => format!("{kind} {ns}/{n}"),
            None => format!("{kind} {n}"),
        })
    };
    for owner in [
        flux(FLUX_KUSTOMIZATION, FLUX_KUSTOMIZATION_NS, "Kustomization"),
        flux(FLUX_HELM_RELEASE, FLUX_HELM_RELEASE_NS, "HelmRelease"),
    ]
    .into_iter()
    .flatten()
    {
        out.push(format!(
            "{what} is managed by Flux ({owner}): its next reconciliation restores the removed subject; \
             suspend it (flux suspend) or commit the change to Git"
        ));
    }
    if out.is_empty() && labels.get(MANAGED_BY_LABEL).is_some_and(|v| v == "Helm") {
        out.push(format!(
            "{what} is part of a Helm release: the next helm upgrade restores the removed subject"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn names_each_controller() {
        let argo = gitops_warnings(
            "b",
            &map(&[]),
            &map(&[(
                ARGO_TRACKING_ID,
                "payments:rbac.authorization.k8s.io/RoleBinding:p/b",
            )]),
        );
        assert!(
            argo[0].contains("Argo CD (Application payments)"),
            "{argo:?}"
        );
        let legacy = gitops_warnings(
            "b",
            &map(&[
                (INSTANCE_LABEL, "payments"),
                ("argocd.argoproj.io/instance", "payments"),
            ]),
            &map(&[]),
        );
        assert!(legacy[0].contains("Application payments"), "{legacy:?}");
        let flux = gitops_warnings(
            "b",
            &map(&[
                (FLUX_KUSTOMIZATION, "apps"),
                (FLUX_KUSTOMIZATION_NS, "flux-system"),
            ]),
            &map(&[]),
        );
        assert!(
            flux[0].contains("Kustomization flux-system/apps"),
            "{flux:?}"
        );
        let helm = gitops_warnings("b", &map(&[(FLUX_HELM_RELEASE, "agent")]), &map(&[]));
        assert!(helm[0].contains("HelmRelease agent"), "{helm:?}");
        // Helm alone sets the instance label: that is not Argo CD.
        let plain = gitops_warnings(
            "b",
            &map(&[(INSTANCE_LABEL, "x"), (MANAGED_BY_LABEL, "Helm")]),
            &map(&[]),
        );
        assert_eq!(plain.len(), 1);
        assert!(plain[0].contains("Helm release"));
        assert!(gitops_warnings("b", &map(&[]), &map(&[])).is_empty());
    }
}
