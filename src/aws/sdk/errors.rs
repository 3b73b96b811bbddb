//! What an AWS error means to iamsweep: its kind (throttled, transient, refused, ...), its code
//! and a message that names the operation.

use super::*;

/// An error code meaning the endpoint refused the request's signature or key: every account's
/// requests through it would be refused the same way.
pub(super) fn is_signature_refusal(code: &str) -> bool {
    matches!(
        code,
        "SignatureDoesNotMatch" | "IncompleteSignature" | "InvalidClientTokenId"
    )
}

/// The first error of type `T` in `err`'s chain of sources.
pub(super) fn find_in_chain<'a, T: std::error::Error + 'static>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(t) = e.downcast_ref::<T>() {
            return Some(t);
        }
        next = e.source();
    }
    None
}

/// Classifies an AWS error code (or, when the service gave none, the HTTP status).
pub fn classify(code: &str, status: Option<u16>) -> ErrorKind {
    match code {
        "Throttling"
        | "ThrottlingException"
        | "RequestLimitExceeded"
        | "TooManyRequestsException"
        | "RequestThrottled"
        | "SlowDown" => ErrorKind::Throttled,
        "NoSuchEntity" | "NoSuchEntityException" => ErrorKind::NoSuchEntity,
        "AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation" => {
            ErrorKind::AccessDenied
        }
        "ExpiredToken"
        | "ExpiredTokenException"
        | "InvalidClientTokenId"
        | "UnrecognizedClientException"
        | "TokenRefreshRequired"
        | "RequestExpired" => ErrorKind::Credentials,
        "ConcurrentModification" | "ConcurrentModificationException" => ErrorKind::Conflict,
        "LimitExceeded" | "LimitExceededException" => ErrorKind::LimitExceeded,
        "ServiceFailure" | "ServiceUnavailable" | "InternalFailure" | "RequestTimeout" => {
            ErrorKind::Transient
        }
        _ => match status {
            Some(429) => ErrorKind::Throttled,
            // An unknown code with a 5xx: the server failed, and may have acted.
            Some(s) if s >= 500 => ErrorKind::Transient,
            _ if !code.is_empty() => ErrorKind::Other,
            Some(401 | 403) => ErrorKind::AccessDenied,
            Some(404) => ErrorKind::NoSuchEntity,
            _ => ErrorKind::Other,
        },
    }
}

pub(super) fn map_sdk_error<E>(
    op: Op,
    err: SdkError<E, aws_smithy_runtime_api::http::Response>,
) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if let Some(r) = find_in_chain::<RoleRefreshError>(&err) {
        // The account's own role, not the base credentials: that account's error, with its
        // real kind and code (base credentials that failed under it stay `Credentials`).
        return AwsError {
            message: format!("{op}: {r}"),
            ..r.source.clone()
        };
    }
    if find_in_chain::<CredentialsError>(&err).is_some() {
        // Any other provider: the base credentials' chain.
        return AwsError::new(
            ErrorKind::Credentials,
            "NoCredentials",
            format!(
                "{op}: no usable base credentials ({}); set AWS_PROFILE, run `aws sso login`, or pass --profile",
                chain(&err)
            ),
        );
    }
    let request_id = err.request_id().map(str::to_owned);
    let (kind, code, message) = match &err {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let code = service.err().code().unwrap_or_default().to_owned();
            let kind = classify(&code, Some(status));
            // moto's auth-mode refusals carry no code, only the status: name them anyway.
            let code = if code.is_empty() {
                match kind {
                    ErrorKind::AccessDenied => "AccessDenied".to_owned(),
                    ErrorKind::Throttled => "Throttling".to_owned(),
                    _ => format!("HTTP{status}"),
                }
            } else {
                code
            };
            let message = service
                .err()
                .message()
                .map_or_else(|| format!("{op} failed with HTTP {status}"), str::to_owned);
            (kind, code, message)
        }
        SdkError::TimeoutError(_) => (
            ErrorKind::Transient,
            "Timeout".to_owned(),
            format!("{op} timed out: {}", chain(&err)),
        ),
        SdkError::DispatchFailure(_) if chain(&err).contains("credentials") => (
            ErrorKind::Credentials,
            "NoCredentials".to_owned(),
            format!("{op}: {}", chain(&err)),
        ),
        SdkError::DispatchFailure(d) if !d.is_user() => (
            ErrorKind::Transient,
            "NetworkError".to_owned(),
            format!("{op}: {}", chain(&err)),
        ),
        SdkError::ResponseError(_) => (
            ErrorKind::Transient,
            "ResponseError".to_owned(),
            format!("{op}: {}", chain(&err)),
        ),
        _ => {
            let text = chain(&err);
            if text.contains("credentials") || text.contains("Credentials") {
                (
                    ErrorKind::Credentials,
                    "NoCredentials".to_owned(),
                    format!(
                        "{op}: no usable base credentials ({text}); set AWS_PROFILE, run `aws sso login`, or pass --profile"
                    ),
                )
            } else {
                (
                    ErrorKind::Other,
                    "ClientError".to_owned(),
                    format!("{op}: {text}"),
                )
            }
        }
    };
    AwsError {
        kind,
        code,
        message,
        request_id,
    }
}

/// An error and its sources as one line ("dispatch failure: io error: connection refused"),
/// without the Debug dump the SDK's own display adds.
pub(super) fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if !parts.last().is_some_and(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}
