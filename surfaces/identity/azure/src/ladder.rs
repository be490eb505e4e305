//! The Azure ladder for one breach, computed from an observed [`AzureState`] without I/O. Each
//! rung proposes itself from a [`Ladder`] (its file is under `rungs/`); this module holds what
//! they share: which assignments grant the breach, and what the envelope loses without them.

use firebreak_containment::ids::IncidentId;
use firebreak_containment::plan::BlastRadius;
use firebreak_containment::plane::{Observation, PlanInput, PlaneError, Proposal};
use serde::{Deserialize, Serialize};

use crate::arm::{FederatedCredential, RoleAssignment};
use crate::ids::{parse_operation, ResourceId};
use crate::plane::AzureSpec;
use crate::roles::Assignments;
use crate::rungs::{delete_federated_credential, delete_role_assignment, narrow_role_assignment};
use crate::PLANE;

/// Azure RBAC changes propagate slowly; every role assignment candidate says so.
const PROPAGATION: &str = "Azure RBAC changes reach every service within up to 10 minutes: \
     verification polls ARM until azure.verifyDeadline, and the data plane may allow the breach \
     a little longer";

/// The breached operation on the breached resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Breach {
    pub action: String,
    pub resource: ResourceId,
}

impl Breach {
    pub fn describe(&self) -> String {
        format!("{} on {}", self.action, self.resource)
    }
}

/// The agent's user-assigned managed identity, resolved through ARM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Principal {
    pub identity: ResourceId,
    pub principal_id: String,
    pub client_id: String,
}

/// Everything the ladder needs, read by [`crate::AzureRbac`]'s `observe`.
#[derive(Debug, Clone)]
pub struct AzureState {
    pub principal: Principal,
    pub breach: Breach,
    /// The principal's role assignments (at, above and below the scopes read) and their roles.
    pub rbac: Assignments,
    /// The identity's federated identity credentials.
    pub federated: Vec<FederatedCredential>,
    /// `system:serviceaccount:NAMESPACE:NAME` of the agent.
    pub subject: String,
    /// `azure.aksOidcIssuer`.
    pub issuer: Option<String>,
}

/// One permitted use of the envelope.
#[derive(Debug, Clone)]
pub struct Use {
    pub label: String,
    pub operation: String,
    pub resource: ResourceId,
}

/// The envelope's permitted Azure uses, parsed; unparseable resources are reported as such.
fn envelope_uses(input: &PlanInput<'_>) -> (Vec<Use>, Vec<String>) {
    let mut parsed = Vec::new();
    let mut undetermined = Vec::new();
    for entry in input.envelope.identity().permitted {
        let use_ = &entry.value;
        if parse_operation(&use_.action).is_err() {
            continue;
        }
        let label = format!("{} on {}", use_.action, use_.resource);
        match ResourceId::parse(&use_.resource) {
            Ok(resource) => parsed.push(Use {
                label,
                operation: use_.action.clone(),
                resource,
            }),
            Err(e) => undetermined.push(format!("{label} ({e})")),
        }
    }
    (parsed, undetermined)
}

/// `ROLE at SCOPE`, for plans and outcomes.
pub fn describe(a: &RoleAssignment, role: &str) -> String {
    format!("{role} at {}", a.properties.scope)
}

impl AzureState {
    /// The assignment's role name, or its definition id when the role was not found.
    pub fn role_name(&self, a: &RoleAssignment) -> String {
        self.rbac
            .definition(a)
            .map(|d| d.role_name().to_string())
            .unwrap_or_else(|| a.properties.grant.role_definition_id.clone())
    }

    /// Why the breach stays allowed in `after`, if it does.
    pub fn still_granted(&self, after: &Assignments) -> Option<String> {
        let other = *after
            .granting(&self.breach.action, &self.breach.resource)
            .first()?;
        Some(format!(
            "the breach stays allowed through role assignment {} ({})",
            other.name,
            describe(other, &self.role_name(other))
        ))
    }

    /// What every candidate acting on `a` must say.
    pub fn notes(&self, a: &RoleAssignment) -> Vec<String> {
        let mut notes = vec![PROPAGATION.to_string()];
        if let Some(condition) = &a.properties.grant.condition {
            notes.push(format!(
                "the assignment carries an ABAC condition, not evaluated here: {condition}"
            ));
        }
        if a.scope().is_some_and(|s| s.is_management_group()) {
            notes.push(
                "the assignment is at a management group; Firebreak assumes it covers the breached subscription"
                    .into(),
            );
        }
        notes
    }
}

/// What every rung proposes from.
pub struct Ladder<'a> {
    pub state: &'a AzureState,
    pub incident: &'a IncidentId,
    /// The assignments granting the breach, narrowest scope first.
    pub granting: Vec<&'a RoleAssignment>,
    pub uses: Vec<Use>,
    undetermined: Vec<String>,
}

impl Ladder<'_> {
    /// In-envelope uses allowed today and not in `after`.
    pub fn blast(&self, after: &Assignments) -> BlastRadius {
        let rbac = &self.state.rbac;
        let mut radius = BlastRadius::of(
            self.uses
                .iter()
                .filter(|u| {
                    rbac.allows(&u.operation, &u.resource)
                        && !after.allows(&u.operation, &u.resource)
                })
                .map(|u| u.label.clone())
                .collect(),
        );
        radius.undetermined = self.undetermined.clone();
        radius
    }
}

impl Observation<AzureSpec> for AzureState {
    fn candidates(&self, input: &PlanInput<'_>) -> Result<Vec<Proposal<AzureSpec>>, PlaneError> {
        let mut granting = self
            .rbac
            .granting(&self.breach.action, &self.breach.resource);
        if granting.is_empty() {
            return Err(PlaneError::Unsupported {
                plane: PLANE,
                detail: format!(
                    "no role assignment of {} (principal {}) grants {}: nothing to cut on the permission side \
                     (the access may come from an account key, a SAS, or an ABAC condition not evaluated here)",
                    self.principal.identity,
                    self.principal.principal_id,
                    self.breach.describe()
                ),
            });
        }
        // Narrowest scope first.
        granting.sort_by_key(|a| std::cmp::Reverse(a.scope().map_or(0, |s| s.depth())));
        let (uses, undetermined) = envelope_uses(input);
        let ladder = Ladder {
            state: self,
            incident: input.incident,
            granting,
            uses,
            undetermined,
        };
        let mut candidates = delete_role_assignment::propose(&ladder);
        candidates.extend(narrow_role_assignment::propose(&ladder));
        candidates.extend(delete_federated_credential::propose(&ladder));
        Ok(candidates)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use firebreak_containment::alert::Alert;
    use firebreak_containment::envelope::Envelope;
    use firebreak_containment::ids::PlanId;
    use firebreak_containment::plane::Plane;
    use uuid::Uuid;

    use super::*;
    use crate::arm::{Federation, Grant};
    use crate::roles::{Permission, RoleDefinition, RoleDefinitionProperties};
    use crate::rungs::narrow_role_assignment::narrow_name;
    use crate::rungs::{
        DELETE_FEDERATED_CREDENTIAL, DELETE_ROLE_ASSIGNMENT, NARROW_ROLE_ASSIGNMENT,
    };
    use crate::AzureRbac;

    const SUB: &str = "/subscriptions/s1";
    const ACCOUNT: &str =
        "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/acct";
    const BLOB_READ: &str = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read";
    const READER: &str = "/subscriptions/s1/providers/Microsoft.Authorization/roleDefinitions/2a2b9908-6ea1-4ae2-8e65-a410df84e7d1";
    const CONTRIBUTOR: &str = "/subscriptions/s1/providers/Microsoft.Authorization/roleDefinitions/b24988ac-6180-42a0-ab88-20f7382dd24c";

    fn container(name: &str) -> String {
        format!("{ACCOUNT}/blobServices/default/containers/{name}")
    }

    fn id(text: &str) -> ResourceId {
        ResourceId::parse(text).expect("resource id")
    }

    fn assignment(name: &str, scope: &str, role: &str) -> RoleAssignment {
        RoleAssignment::at(
            &id(scope),
            name,
            Grant {
                role_definition_id: role.into(),
                principal_id: "p-agent".into(),
                principal_type: "ServicePrincipal".into(),
                condition: None,
                condition_version: None,
                description: None,
            },
        )
    }

    fn definition(id: &str, name: &str, permissions: Permission) -> (String, RoleDefinition) {
        (
            id.to_ascii_lowercase(),
            RoleDefinition {
                id: id.into(),
                name: name.into(),
                properties: RoleDefinitionProperties {
                    role_name: name.into(),
                    permissions: vec![permissions],
                },
            },
        )
    }

    fn state(assignments: Vec<RoleAssignment>) -> AzureState {
        let identity = id(
            "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/agent",
        );
        AzureState {
            principal: Principal {
                identity: identity.clone(),
                principal_id: "p-agent".into(),
                client_id: "c-agent".into(),
            },
            breach: Breach {
                action: BLOB_READ.into(),
                resource: id(&format!("{}/blobs/q3.csv", container("payouts"))),
            },
            rbac: Assignments {
                assignments,
                definitions: BTreeMap::from([
                    definition(
                        READER,
                        "Storage Blob Data Reader",
                        Permission {
                            actions: vec![
                                "Microsoft.Storage/storageAccounts/blobServices/containers/read"
                                    .into(),
                            ],
                            data_actions: vec![BLOB_READ.into()],
                            ..Permission::default()
                        },
                    ),
                    definition(
                        CONTRIBUTOR,
                        "Contributor",
                        Permission {
                            actions: vec!["*".into()],
                            not_actions: vec!["Microsoft.Authorization/*/Write".into()],
                            ..Permission::default()
                        },
                    ),
                ]),
            },
            federated: vec![FederatedCredential {
                id: format!("{identity}/federatedIdentityCredentials/aks"),
                name: "aks".into(),
                properties: Federation {
                    issuer: "https://issuer.example/".into(),
                    subject: "system:serviceaccount:payments:payment-agent".into(),
                    audiences: vec!["api://AzureADTokenExchange".into()],
                },
            }],
            subject: "system:serviceaccount:payments:payment-agent".into(),
            issuer: Some("https://issuer.example".into()),
        }
    }

    fn alert() -> Alert {
        let body = serde_json::json!({
            "id": "a1", "source": "test", "time": "2026-11-22T02:47:00Z",
            "agent": {"cluster": "aks", "namespace": "payments", "workload": "Deployment/payment-agent", "serviceAccount": "payment-agent"},
            "dimension": "identity",
            "parameter": {"action": BLOB_READ, "resource": format!("{}/blobs/q3.csv", container("payouts"))},
            "tier": "attack-attempt", "severity": "critical", "evidence": {}
        });
        Alert::from_json(body.to_string().as_bytes()).expect("alert")
    }

    fn envelope() -> Envelope {
        Envelope::from_yaml(&format!(
            r#"apiVersion: firebreak.dev/v1alpha1
kind: Envelope
metadata: {{name: payment-agent, namespace: payments}}
spec:
  agent: {{cluster: aks, namespace: payments, workload: Deployment/payment-agent, serviceAccount: payment-agent}}
  version: 3
  status: converged
  identity:
    observed:
      - {{action: "{BLOB_READ}", resource: "{}/blobs/a.csv", closure: literal, count: 900, sessions: 80}}
      - {{action: "{BLOB_READ}", resource: "{}", closure: literal, count: 900, sessions: 80}}
      - {{action: "Microsoft.Storage/storageAccounts/read", resource: "{ACCOUNT}", closure: literal, count: 90, sessions: 20}}
      - {{action: "s3:GetObject", resource: "arn:aws:s3:::x/*", closure: literal, count: 90, sessions: 20}}
"#,
            container("invoices"),
            container("receipts"),
        ))
        .expect("envelope")
    }

    fn try_plan(state: &AzureState) -> Result<Vec<Proposal<AzureSpec>>, PlaneError> {
        let (alert, envelope) = (alert(), envelope());
        let incident = IncidentId::from("inc-1");
        state.candidates(&PlanInput {
            incident: &incident,
            plan: &PlanId::nth(&incident, 1),
            alert: &alert,
            envelope: &envelope,
        })
    }

    fn plan(state: &AzureState) -> Vec<Proposal<AzureSpec>> {
        try_plan(state).expect("candidates")
    }

    fn kind(c: &Proposal<AzureSpec>) -> &'static str {
        AzureRbac::kind_of(&c.spec).name
    }

    #[test]
    fn deletes_the_narrowest_granting_assignment_and_narrows_broad_ones() {
        let state = state(vec![
            assignment("sub-contrib", SUB, CONTRIBUTOR),
            assignment("acct-reader", ACCOUNT, READER),
        ]);
        let candidates = plan(&state);
        let kinds: Vec<_> = candidates.iter().map(kind).collect();
        assert_eq!(
            kinds,
            vec![
                DELETE_ROLE_ASSIGNMENT.name,
                NARROW_ROLE_ASSIGNMENT.name,
                DELETE_FEDERATED_CREDENTIAL.name
            ]
        );
        // Contributor has no dataActions: only the account-level reader grants the blob read.
        let delete = &candidates[0];
        assert!(delete.target.ends_with("/acct-reader"), "{}", delete.target);
        assert!(delete.blocks && delete.rejected.is_none());
        assert_eq!(delete.blast_radius.broken, 2, "{:?}", delete.blast_radius);

        let narrow = &candidates[1];
        assert!(narrow.blocks, "{narrow:?}");
        assert_eq!(narrow.blast_radius.broken, 0, "{:?}", narrow.blast_radius);
        let AzureSpec::NarrowRoleAssignment(spec) = &narrow.spec else {
            panic!("narrow spec: {:?}", narrow.spec);
        };
        let scopes: Vec<&str> = spec
            .narrow
            .iter()
            .map(|a| a.properties.scope.as_str())
            .collect();
        assert_eq!(scopes, vec![container("invoices"), container("receipts")]);
        assert_eq!(
            spec.narrow[0].name,
            narrow_name(
                "inc-1",
                &state.rbac.assignments[1],
                &id(&container("invoices"))
            )
        );
        assert!(Uuid::parse_str(&spec.narrow[0].name).is_ok());

        let federated = &candidates[2];
        assert_eq!(federated.blast_radius.broken, 3);
        assert!(federated.notes[0].contains("24 hours"));
    }

    #[test]
    fn a_delete_is_rejected_while_another_assignment_still_grants_the_breach() {
        let state = state(vec![
            assignment("acct-reader", ACCOUNT, READER),
            assignment("payouts-reader", &container("payouts"), READER),
        ]);
        let candidates = plan(&state);
        let deletes: Vec<&Proposal<AzureSpec>> = candidates
            .iter()
            .filter(|c| kind(c) == DELETE_ROLE_ASSIGNMENT.name)
            .collect();
        assert!(
            deletes[0].target.contains("/containers/payouts/"),
            "narrowest first"
        );
        for d in &deletes {
            assert!(!d.blocks);
            let rejected = d.rejected.as_deref().unwrap_or_default();
            assert!(
                rejected.contains("stays allowed through role assignment"),
                "{d:?}"
            );
        }
        // At the container itself there is nothing narrower.
        assert_eq!(
            candidates
                .iter()
                .filter(|c| kind(c) == NARROW_ROLE_ASSIGNMENT.name)
                .count(),
            1
        );
    }

    #[test]
    fn no_granting_assignment_is_unsupported_and_foreign_links_are_ignored() {
        let mut state = state(vec![assignment("sub-contrib", SUB, CONTRIBUTOR)]);
        let err = try_plan(&state).expect_err("nothing grants the breach");
        assert!(matches!(err, PlaneError::Unsupported { .. }), "{err}");
        assert!(err.to_string().contains("no role assignment"), "{err}");

        state.rbac.assignments = vec![assignment("acct-reader", ACCOUNT, READER)];
        state.federated[0].properties.issuer = "https://other-cluster/".into();
        assert!(plan(&state)
            .iter()
            .all(|c| kind(c) != DELETE_FEDERATED_CREDENTIAL.name));
        state.issuer = None;
        let fc = plan(&state)
            .into_iter()
            .find(|c| kind(c) == DELETE_FEDERATED_CREDENTIAL.name)
            .expect("matched on its subject");
        assert!(fc.notes.iter().any(|n| n.contains("subject alone")));
    }

    #[test]
    fn specs_journal_under_their_rung_and_decode_back() {
        let state = state(vec![
            assignment("sub-contrib", SUB, CONTRIBUTOR),
            assignment("acct-reader", ACCOUNT, READER),
        ]);
        for c in plan(&state) {
            let journaled = serde_json::to_value(&c.spec).expect("encodes");
            assert_eq!(
                journaled["rung"].as_str().map(|r| format!("azure.{r}")),
                Some(kind(&c).to_string())
            );
            let back: AzureSpec = serde_json::from_value(journaled.clone()).expect("decodes");
            assert_eq!(back, c.spec);
            let mut extra = journaled;
            extra["surprise"] = serde_json::json!(1);
            let err = serde_json::from_value::<AzureSpec>(extra).expect_err("unknown field");
            assert!(
                err.to_string().contains("unknown field `surprise`"),
                "{err}"
            );
        }
    }
}
