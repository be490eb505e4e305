//! One file per rung of the `gcp` ladder: its kind, its typed spec, how it is proposed from an
//! observation, and its change and check.

pub mod deny_policy;
pub mod disable_service_account;
pub mod remove_binding_member;
pub mod remove_wi_user;

use firebreak_containment::plane::Verification;

pub use deny_policy::DENY_POLICY;
pub use disable_service_account::DISABLE_SERVICE_ACCOUNT;
pub use remove_binding_member::REMOVE_BINDING_MEMBER;
pub use remove_wi_user::REMOVE_WI_USER;

/// A read-back of an IAM policy or account; a miss says the engine keeps polling, since IAM
/// reads can lag its writes.
fn read_back(ok: bool, detail: String) -> Verification {
    if ok {
        Verification::ok(detail)
    } else {
        Verification::failed(format!("{detail} (IAM reads can lag writes; polling)"))
    }
}
