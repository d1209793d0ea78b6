//! AWS errors, as the workflow sees them: transient (retry) or permanent (give up where safe),
//! with the API's code kept for the history.
//!
//! The SDK already retries throttling and transient failures inside one call (its standard retry
//! mode: 3 attempts with jittered backoff); what reaches here has exhausted that, and the workflow
//! adds its own bounded retries across calls.

use crate::workflow::CloudError;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// Error codes that mean "try again later" across the EC2, Auto Scaling, ELB and IAM APIs.
const TRANSIENT_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "TooManyRequestsException",
    "ServiceUnavailable",
    "InternalError",
    "InternalFailure",
    "ScalingActivityInProgress",
    "ResourceContention",
];

/// Converts an SDK error from `operation` into the workflow's `CloudError`.
pub fn cloud_error<E, R>(operation: &str, error: SdkError<E, R>) -> CloudError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    let code = error.code().map(str::to_string);
    let transient = match &error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => true,
        SdkError::ServiceError(_) => code.as_deref().is_some_and(|c| TRANSIENT_CODES.contains(&c)),
        _ => false,
    };
    let detail = error.message().map(str::to_string).unwrap_or_else(|| DisplayErrorContext(&error).to_string());
    CloudError { transient, code, message: format!("{operation}: {detail}") }
}

/// Whether the API said the thing does not exist. Auto Scaling says it with a ValidationError
/// ("AutoScalingGroup name not found"); the others have NotFound codes.
pub fn is_missing(error: &CloudError) -> bool {
    match error.code.as_deref() {
        Some("NoSuchEntity") => true,
        Some("ValidationError") => error.message.contains("not found"),
        Some(code) => code.contains("NotFound"),
        None => false,
    }
}

/// For deletes and detaches: the thing being gone already is success.
pub fn gone_is_done(result: Result<(), CloudError>) -> Result<(), CloudError> {
    match result {
        Err(error) if is_missing(&error) => Ok(()),
        other => other,
    }
}
