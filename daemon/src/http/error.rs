//! The one place that turns an `Error` into an HTTP status and JSON body.

use hookd_shared::{ErrorBody, ErrorResponse};
use http::{Response, StatusCode};

use super::body::{Body, json_response};
use crate::error::Error;

/// The status and stable code for an error.
pub fn status_and_code(e: &Error) -> (StatusCode, &'static str) {
    match e {
        Error::InvalidParam(_) => (StatusCode::BAD_REQUEST, "invalid_param"),
        Error::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
        Error::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
        Error::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
        Error::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
        Error::UnknownCommand(_) => (StatusCode::NOT_FOUND, "unknown_command"),
        Error::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
        Error::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
        Error::Timeout(_) => (StatusCode::REQUEST_TIMEOUT, "timeout"),
        Error::TooManyRequests { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
        Error::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        Error::Overloaded { .. } => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
        Error::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    }
}

/// `{"error": {"status", "code", "message"}}` with the matching status.
pub fn response(e: &Error) -> Response<Body> {
    let (status, code) = status_and_code(e);
    if status.is_server_error() && !matches!(e, Error::Overloaded { .. }) {
        tracing::error!("{code}: {e}");
    }
    let mut r = json_response(
        status,
        &ErrorResponse {
            error: ErrorBody {
                status: status.as_u16(),
                code: code.into(),
                message: e.to_string(),
            },
        },
    );
    if let Error::TooManyRequests { retry_after, .. } | Error::Overloaded { retry_after, .. } = e {
        r.headers_mut().insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from(*retry_after),
        );
    }
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer"),
        );
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;

    #[test]
    fn a_full_read_queue_answers_503_with_retry_after() {
        let e: Error = StoreError::Busy("too many queries".into()).into();
        let r = response(&e);
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[http::header::RETRY_AFTER], "1");
    }
}
