//! The AWS SDK clients Firebreak uses (IAM; EKS for Pod Identity) and what their errors mean
//! to the engine: one attempt per call, a typed answer (docs/adding-a-plane.md §4).

mod eks;
mod iam;

use aws_sdk_iam::config::http::HttpResponse;
use aws_sdk_iam::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use firebreak_containment::plane::PlaneError;
use serde_json::{json, Value};

pub use eks::Eks;
pub use iam::Iam;

use crate::policy::{PolicyDocument, Statement};
use crate::role::decode_document;
use crate::PLANE;

/// The journaled statements of a spec, parsed as IAM would read them.
pub(crate) fn statements_of(values: &[Value]) -> Result<Vec<Statement>, PlaneError> {
    let doc = json!({"Version": "2012-10-17", "Statement": values});
    Ok(parse(&doc, "the journaled statements")?.statements)
}

pub(crate) fn decode(text: &str) -> Result<Value, PlaneError> {
    decode_document(text).map_err(|detail| refused(&detail))
}

pub(crate) fn parse(doc: &Value, what: &str) -> Result<PolicyDocument, PlaneError> {
    PolicyDocument::from_json_value(doc).map_err(|e| PlaneError::Invalid {
        plane: PLANE,
        detail: format!("{what} does not parse as an IAM policy: {e}"),
    })
}

pub(crate) fn refused(detail: &str) -> PlaneError {
    PlaneError::Refused {
        plane: PLANE,
        detail: detail.to_string(),
    }
}

pub(crate) fn is_no_such_entity<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    e.code() == Some("NoSuchEntity")
}

pub(crate) fn is_not_found<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    e.code() == Some("ResourceNotFoundException")
}

/// Error codes AWS documents as retryable: throttling and its own failures.
const TRANSIENT_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "ServiceFailure",
    "ServiceUnavailable",
    "InternalFailure",
    "InternalServerException",
    "ServerException",
];

pub(crate) fn sdk_error<E>(e: SdkError<E, HttpResponse>) -> PlaneError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let detail = match (e.code(), e.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        _ => DisplayErrorContext(&e).to_string(),
    };
    match &e {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => PlaneError::Unreachable {
            plane: PLANE,
            detail: DisplayErrorContext(&e).to_string(),
        },
        SdkError::ResponseError(_) => PlaneError::Unavailable {
            plane: PLANE,
            detail,
        },
        _ if e.code().is_some_and(|c| TRANSIENT_CODES.contains(&c))
            || e.raw_response()
                .is_some_and(|r| r.status().is_server_error()) =>
        {
            PlaneError::Unavailable {
                plane: PLANE,
                detail,
            }
        }
        _ => PlaneError::Refused {
            plane: PLANE,
            detail,
        },
    }
}
