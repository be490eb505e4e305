//! `gcp.disable_service_account` (rung 3, approval only): disables the Google service account
//! the agent acts as. Every workload using it loses everything; revert enables it.

use firebreak_containment::plane::{
    Change, Check, KindSpec, Outcome, PlaneError, Proposal, Verification,
};
use serde::{Deserialize, Serialize};

use super::read_back;
use crate::client::{api_error, Api};
use crate::ladder::Ladder;
use crate::plane::GcpSpec;

pub static DISABLE_SERVICE_ACCOUNT: KindSpec =
    KindSpec::durable("gcp", "gcp.disable_service_account", 3, true);

/// Disable the service account (revert: enable).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Spec {
    /// `projects/-/serviceAccounts/EMAIL`.
    pub service_account: String,
}

/// One candidate per service account the breach goes through.
pub fn propose(ladder: &Ladder<'_>) -> Vec<Proposal<GcpSpec>> {
    ladder
        .service_accounts()
        .into_iter()
        .map(|through| {
            let email = &through.account.email;
            let name = through.name;
            let mut notes = ladder.notes.clone();
            notes.push(format!(
                "every workload using {email} loses every permission, not only this agent"
            ));
            if through.account.disabled {
                notes.push(format!("{email} is already disabled"));
            }
            Proposal {
                target: name.clone(),
                granularity: format!(
                    "the whole service account {email}: every user of it loses everything"
                ),
                blast_radius: through.blast_radius,
                blocks: through.still.is_none(),
                inverse: format!("enable {name}"),
                verify: format!("{name} reads back disabled"),
                rejected: through
                    .still
                    .map(|s| format!("the breach stays granted through {s}")),
                notes,
                spec: GcpSpec::DisableServiceAccount(Spec {
                    service_account: name,
                }),
            }
        })
        .collect()
}

impl Spec {
    async fn disabled(&self, api: &Api) -> Result<bool, PlaneError> {
        let name = &self.service_account;
        api.service_account(name)
            .await
            .map(|account| account.disabled)
            .map_err(|e| api_error(&format!("reading {name}"), e))
    }

    pub async fn change(&self, api: &Api, change: Change) -> Result<Outcome, PlaneError> {
        let name = &self.service_account;
        let disabled = self.disabled(api).await?;
        match change {
            Change::Apply if disabled => {
                Ok(Outcome::unchanged(format!("{name} is already disabled")))
            }
            Change::Revert if !disabled => {
                Ok(Outcome::unchanged(format!("{name} is already enabled")))
            }
            Change::Apply => {
                api.set_disabled(name, true).await?;
                Ok(Outcome::changed(format!("disabled {name}")))
            }
            Change::Revert => {
                api.set_disabled(name, false).await?;
                Ok(Outcome::changed(format!("enabled {name}")))
            }
        }
    }

    /// Reads the account back from IAM.
    pub async fn check(&self, api: &Api, check: Check) -> Result<Verification, PlaneError> {
        let disabled = self.disabled(api).await?;
        let state = if disabled { "disabled" } else { "enabled" };
        Ok(read_back(
            disabled == (check == Check::Applied),
            format!("{} reads back {state}", self.service_account),
        ))
    }
}
