//! The Azure ladder for one breach, computed from an observed [`AzureState`] without I/O:
//! `azure.delete_role_assignment` (one assignment at the narrowest scope) →
//! `azure.narrow_role_assignment` (a broad assignment replaced by the same role at the scopes the
//! envelope needs) → `azure.delete_federated_credential` (the agent's token link: approval only).

use firebreak_containment::action::ActionKind;
use firebreak_containment::alert::Parameter;
use firebreak_containment::plan::{BlastRadius, Candidate, Enforcement};
use firebreak_containment::surface::{Observation, PlanInput, SurfaceError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::arm::{FederatedCredential, Grant, RoleAssignment};
use crate::ids::{parse_operation, ResourceId};
use crate::roles::Assignments;
use crate::PLANE;

/// Namespace of the UUID v5 names of narrowed role assignments (ARM wants GUID names).
const NARROW_NAMESPACE: Uuid = Uuid::from_u128(0x6f1d_2c4e_8a3b_4e5f_9c7d_1b2a_3c4d_5e6f);

const PROPAGATION: &str = "Azure RBAC changes reach every service within up to 10 minutes: \
     verification polls ARM until azure.verifyDeadline, and the data plane may allow the breach \
     a little longer";

/// The breached operation on the breached resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
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
#[serde(rename_all = "camelCase")]
pub struct Principal {
    pub identity: ResourceId,
    pub principal_id: String,
    pub client_id: String,
}

/// What an Azure action does, journaled inside the intent: everything needed to apply, verify
/// and undo it, pre-images included.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum ActionSpec {
    /// Delete `assignment`; revert re-PUTs it under the same name.
    #[serde(rename_all = "camelCase")]
    DeleteAssignment {
        assignment: RoleAssignment,
        role_name: String,
        principal: Principal,
        breach: Breach,
    },
    /// Create `narrow`, then delete `original`; revert re-PUTs `original`, then deletes `narrow`.
    #[serde(rename_all = "camelCase")]
    NarrowAssignment {
        original: RoleAssignment,
        narrow: Vec<RoleAssignment>,
        role_name: String,
        principal: Principal,
        breach: Breach,
    },
    /// Delete `credential`; revert PUTs it back.
    #[serde(rename_all = "camelCase")]
    DeleteFederatedCredential {
        credential: FederatedCredential,
        principal: Principal,
    },
}

impl ActionSpec {
    pub fn from_candidate(c: &Candidate) -> Result<ActionSpec, SurfaceError> {
        serde_json::from_value(c.spec.clone()).map_err(|e| SurfaceError::Invalid {
            plane: PLANE,
            detail: format!("action spec of {} is not an Azure spec: {e}", c.kind),
        })
    }

    fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// Everything the ladder needs, read by [`crate::AzureRbac::observe`].
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

/// One permitted use of the envelope: `(label, operation, resource)`.
type Use = (String, String, ResourceId);

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
            Ok(resource) => parsed.push((label, use_.action.clone(), resource)),
            Err(e) => undetermined.push(format!("{label} ({e})")),
        }
    }
    (parsed, undetermined)
}

/// The deterministic name of the assignment narrowing `original` to `scope` for `incident`:
/// re-applying after a crash finds the same names.
pub fn narrow_name(incident: &str, original: &RoleAssignment, scope: &ResourceId) -> String {
    let key = format!(
        "{incident}\n{}\n{}",
        original.id.to_ascii_lowercase(),
        scope.as_str().to_ascii_lowercase()
    );
    Uuid::new_v5(&NARROW_NAMESPACE, key.as_bytes()).to_string()
}

/// Whether the credential is the agent's link: its subject, and the configured issuer.
pub fn links_agent(credential: &FederatedCredential, subject: &str, issuer: Option<&str>) -> bool {
    credential.properties.subject == subject
        && issuer.is_none_or(|i| {
            credential.properties.issuer.trim_end_matches('/') == i.trim_end_matches('/')
        })
}

fn describe(a: &RoleAssignment, role: &str) -> String {
    format!("{role} at {}", a.properties.scope)
}

impl AzureState {
    fn role_name(&self, a: &RoleAssignment) -> String {
        self.rbac
            .definition(a)
            .map(|d| d.role_name().to_string())
            .unwrap_or_else(|| a.properties.grant.role_definition_id.clone())
    }

    /// In-envelope uses allowed today and not in `after`.
    fn blast(&self, uses: &[Use], undetermined: &[String], after: &Assignments) -> BlastRadius {
        let mut radius = BlastRadius::of(
            uses.iter()
                .filter(|(_, op, res)| self.rbac.allows(op, res) && !after.allows(op, res))
                .map(|(label, _, _)| label.clone())
                .collect(),
        );
        radius.undetermined = undetermined.to_vec();
        radius
    }

    /// Why the breach stays allowed in `after`, if it does.
    fn still_granted(&self, after: &Assignments) -> Option<String> {
        let other = *after
            .granting(&self.breach.action, &self.breach.resource)
            .first()?;
        Some(format!(
            "the breach stays allowed through role assignment {} ({})",
            other.name,
            describe(other, &self.role_name(other))
        ))
    }

    fn notes(&self, a: &RoleAssignment) -> Vec<String> {
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

    fn delete_candidate(
        &self,
        a: &RoleAssignment,
        uses: &[Use],
        undetermined: &[String],
    ) -> Candidate {
        let role = self.role_name(a);
        let after = self.rbac.replaced(a, &[]);
        let still = self.still_granted(&after);
        let spec = ActionSpec::DeleteAssignment {
            assignment: a.clone(),
            role_name: role.clone(),
            principal: self.principal.clone(),
            breach: self.breach.clone(),
        };
        Candidate {
            kind: ActionKind::AzureDeleteRoleAssignment,
            target: a.id.clone(),
            granularity: format!(
                "one role assignment: {} loses {}",
                self.principal.identity,
                describe(a, &role)
            ),
            blast_radius: self.blast(uses, undetermined, &after),
            blocks: still.is_none(),
            inverse: format!(
                "re-create role assignment {} ({}) under the same name from its snapshot",
                a.name,
                describe(a, &role)
            ),
            verify: format!(
                "ARM answers 404 for {} and no longer lists it for principal {}",
                a.id, self.principal.principal_id
            ),
            enforcement: Enforcement::Durable,
            rejected: still.clone(),
            notes: self.notes(a),
            spec: spec.to_value(),
        }
    }

    /// The same role at the narrowest scopes covering the envelope's uses it grants today, none
    /// covering the breached resource; `None` when the assignment is at the resource itself.
    fn narrow_candidate(
        &self,
        incident: &str,
        a: &RoleAssignment,
        uses: &[Use],
        undetermined: &[String],
    ) -> Option<Candidate> {
        let scope = a.scope()?;
        if !scope.covers(&self.breach.resource) || scope.same(&self.breach.resource) {
            return None;
        }
        let definition = self.rbac.definition(a)?;
        let mut scopes: Vec<ResourceId> = Vec::new();
        for (_, op, resource) in uses {
            let data = self.rbac.is_data_action(op);
            if !scope.covers(resource) || !definition.grants(op, data) {
                continue;
            }
            if let Some(narrow) = ResourceId::narrowest_excluding(resource, &self.breach.resource) {
                if !scopes.iter().any(|s| s.same(&narrow)) {
                    scopes.push(narrow);
                }
            }
        }
        // A scope inside another one adds nothing.
        let kept: Vec<ResourceId> = scopes
            .iter()
            .filter(|s| !scopes.iter().any(|o| !o.same(s) && o.covers(s)))
            .cloned()
            .collect();
        if kept.is_empty() {
            return None;
        }
        let role = definition.role_name().to_string();
        let narrow: Vec<RoleAssignment> = kept
            .iter()
            .map(|s| {
                let grant = Grant {
                    description: Some(format!(
                        "Firebreak incident {incident}: {role} narrowed from role assignment {} at {}",
                        a.name, a.properties.scope
                    )),
                    ..a.properties.grant.clone()
                };
                RoleAssignment::at(s, &narrow_name(incident, a, s), grant)
            })
            .collect();
        let after = self.rbac.replaced(a, &narrow);
        let still = self.still_granted(&after);
        let scopes_text: Vec<&str> = kept.iter().map(ResourceId::as_str).collect();
        let spec = ActionSpec::NarrowAssignment {
            original: a.clone(),
            narrow: narrow.clone(),
            role_name: role.clone(),
            principal: self.principal.clone(),
            breach: self.breach.clone(),
        };
        Some(Candidate {
            kind: ActionKind::AzureNarrowRoleAssignment,
            target: a.id.clone(),
            granularity: format!(
                "{} keeps {role} only at {}, no longer at {}",
                self.principal.identity,
                scopes_text.join(", "),
                a.properties.scope
            ),
            blast_radius: self.blast(uses, undetermined, &after),
            blocks: still.is_none(),
            inverse: format!(
                "re-create role assignment {} at {} from its snapshot, then delete the {} narrowed one(s)",
                a.name,
                a.properties.scope,
                narrow.len()
            ),
            verify: format!(
                "ARM answers 404 for {} and returns each narrowed assignment",
                a.id
            ),
            enforcement: Enforcement::Durable,
            rejected: still,
            notes: self.notes(a),
            spec: spec.to_value(),
        })
    }

    fn federated_candidate(&self, credential: &FederatedCredential, uses: &[Use]) -> Candidate {
        let lost: Vec<String> = uses
            .iter()
            .filter(|(_, op, res)| self.rbac.allows(op, res))
            .map(|(label, _, _)| label.clone())
            .collect();
        let mut notes = vec![
            "cuts the link only: access tokens issued before it stay valid for up to 24 hours"
                .to_string(),
            format!(
                "every ServiceAccount federated through {} under this subject loses the identity",
                credential.name
            ),
        ];
        if self.issuer.is_none() {
            notes.push(
                "azure.aksOidcIssuer is not set: the credential was matched on its subject alone"
                    .into(),
            );
        }
        let spec = ActionSpec::DeleteFederatedCredential {
            credential: credential.clone(),
            principal: self.principal.clone(),
        };
        Candidate {
            kind: ActionKind::AzureDeleteFederatedCredential,
            target: credential.id.clone(),
            granularity: format!(
                "the agent's whole identity: {} can no longer obtain tokens for {} (client id {})",
                self.subject, self.principal.identity, self.principal.client_id
            ),
            blast_radius: BlastRadius::of(lost),
            blocks: true,
            inverse: format!(
                "re-create federated identity credential {} from its snapshot",
                credential.name
            ),
            verify: format!("ARM answers 404 for {}", credential.id),
            enforcement: Enforcement::Durable,
            rejected: None,
            notes,
            spec: spec.to_value(),
        }
    }
}

impl Observation for AzureState {
    fn candidates(&self, input: &PlanInput<'_>) -> Result<Vec<Candidate>, SurfaceError> {
        let Parameter::Identity { .. } = &input.alert.parameter else {
            return Err(SurfaceError::Unsupported {
                plane: PLANE,
                detail: format!("dimension {} is not identity", input.alert.dimension),
            });
        };
        let mut granting = self
            .rbac
            .granting(&self.breach.action, &self.breach.resource);
        if granting.is_empty() {
            return Err(SurfaceError::Unsupported {
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
        let mut candidates: Vec<Candidate> = granting
            .iter()
            .map(|a| self.delete_candidate(a, &uses, &undetermined))
            .collect();
        candidates.extend(
            granting
                .iter()
                .filter_map(|a| self.narrow_candidate(input.incident, a, &uses, &undetermined)),
        );
        candidates.extend(
            self.federated
                .iter()
                .filter(|c| links_agent(c, &self.subject, self.issuer.as_deref()))
                .map(|c| self.federated_candidate(c, &uses)),
        );
        Ok(candidates)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use firebreak_containment::alert::Alert;
    use firebreak_containment::envelope::Envelope;

    use super::*;
    use crate::arm::Federation;
    use crate::roles::{Permission, RoleDefinition, RoleDefinitionProperties};

    const SUB: &str = "/subscriptions/s1";
    const ACCOUNT: &str =
        "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/acct";
    const BLOB_READ: &str = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read";
    const READER: &str = "/subscriptions/s1/providers/Microsoft.Authorization/roleDefinitions/2a2b9908-6ea1-4ae2-8e65-a410df84e7d1";
    const CONTRIBUTOR: &str = "/subscriptions/s1/providers/Microsoft.Authorization/roleDefinitions/b24988ac-6180-42a0-ab88-20f7382dd24c";

    fn container(name: &str) -> String {
        format!("{ACCOUNT}/blobServices/default/containers/{name}")
    }

    fn assignment(name: &str, scope: &str, role: &str) -> RoleAssignment {
        RoleAssignment::at(
            &ResourceId::parse(scope).unwrap(),
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
        let identity = ResourceId::parse(
            "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/agent",
        )
        .unwrap();
        AzureState {
            principal: Principal {
                identity: identity.clone(),
                principal_id: "p-agent".into(),
                client_id: "c-agent".into(),
            },
            breach: Breach {
                action: BLOB_READ.into(),
                resource: ResourceId::parse(&format!("{}/blobs/q3.csv", container("payouts")))
                    .unwrap(),
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
        Alert::from_json(body.to_string().as_bytes()).unwrap()
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
        .unwrap()
    }

    fn plan(state: &AzureState) -> Vec<Candidate> {
        let (alert, envelope) = (alert(), envelope());
        state
            .candidates(&PlanInput {
                incident: "inc-1",
                alert: &alert,
                envelope: &envelope,
            })
            .unwrap()
    }

    #[test]
    fn deletes_the_narrowest_granting_assignment_and_narrows_broad_ones() {
        let state = state(vec![
            assignment("sub-contrib", SUB, CONTRIBUTOR),
            assignment("acct-reader", ACCOUNT, READER),
        ]);
        let candidates = plan(&state);
        let kinds: Vec<_> = candidates.iter().map(|c| c.kind).collect();
        assert_eq!(
            kinds,
            vec![
                ActionKind::AzureDeleteRoleAssignment,
                ActionKind::AzureNarrowRoleAssignment,
                ActionKind::AzureDeleteFederatedCredential
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
        let ActionSpec::NarrowAssignment {
            narrow: created, ..
        } = ActionSpec::from_candidate(narrow).unwrap()
        else {
            panic!("narrow spec");
        };
        let scopes: Vec<&str> = created
            .iter()
            .map(|a| a.properties.scope.as_str())
            .collect();
        assert_eq!(scopes, vec![container("invoices"), container("receipts")]);
        assert_eq!(
            created[0].name,
            narrow_name(
                "inc-1",
                &state.rbac.assignments[1],
                &ResourceId::parse(&container("invoices")).unwrap()
            )
        );
        assert!(Uuid::parse_str(&created[0].name).is_ok());

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
        let deletes: Vec<&Candidate> = candidates
            .iter()
            .filter(|c| c.kind == ActionKind::AzureDeleteRoleAssignment)
            .collect();
        assert!(
            deletes[0].target.contains("/containers/payouts/"),
            "narrowest first"
        );
        for d in &deletes {
            assert!(!d.blocks);
            assert!(
                d.rejected
                    .as_deref()
                    .unwrap()
                    .contains("stays allowed through role assignment"),
                "{d:?}"
            );
        }
        // At the container itself there is nothing narrower.
        assert_eq!(
            candidates
                .iter()
                .filter(|c| c.kind == ActionKind::AzureNarrowRoleAssignment)
                .count(),
            1
        );
    }

    #[test]
    fn no_granting_assignment_is_unsupported_and_foreign_links_are_ignored() {
        let mut state = state(vec![assignment("sub-contrib", SUB, CONTRIBUTOR)]);
        let (alert, envelope) = (alert(), envelope());
        let input = PlanInput {
            incident: "i",
            alert: &alert,
            envelope: &envelope,
        };
        let err = state.candidates(&input).unwrap_err().to_string();
        assert!(err.contains("no role assignment"), "{err}");

        state.rbac.assignments = vec![assignment("acct-reader", ACCOUNT, READER)];
        state.federated[0].properties.issuer = "https://other-cluster/".into();
        assert!(plan(&state)
            .iter()
            .all(|c| c.kind != ActionKind::AzureDeleteFederatedCredential));
        state.issuer = None;
        let fc = plan(&state)
            .into_iter()
            .find(|c| c.kind == ActionKind::AzureDeleteFederatedCredential)
            .unwrap();
        assert!(fc.notes.iter().any(|n| n.contains("subject alone")));
    }
}
