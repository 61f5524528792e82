//! Error answers in TEI's shape, `{"error": ..., "error_type": ...}`,
//! for the handlers' errors and the HTTP layers' own.

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::json;

/// TEI's six error types, each with TEI's status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ErrorType {
    Unhealthy,
    Backend,
    Overloaded,
    Validation,
    Tokenizer,
    Empty,
}

impl ErrorType {
    fn status(self) -> StatusCode {
        match self {
            Self::Unhealthy => StatusCode::SERVICE_UNAVAILABLE,
            Self::Backend => StatusCode::FAILED_DEPENDENCY,
            Self::Overloaded => StatusCode::TOO_MANY_REQUESTS,
            Self::Validation | Self::Tokenizer => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Empty => StatusCode::BAD_REQUEST,
        }
    }
}

/// An error answer in TEI's shape: `{"error": ..., "error_type": ...}`,
/// with TEI's status for its type unless the HTTP layer decided another
/// (401, 404, 405, 408, 413).
pub struct ApiError {
    status: StatusCode,
    kind: ErrorType,
    message: String,
}

impl ApiError {
    pub fn new(kind: ErrorType, message: impl Into<String>) -> Self {
        Self {
            status: kind.status(),
            kind,
            message: message.into(),
        }
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(ErrorType::Validation, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({"error": self.message, "error_type": self.kind}));
        (self.status, body).into_response()
    }
}

/// The answers the HTTP layers make themselves (a wrong method, a timeout,
/// headers too large) have empty bodies: they get TEI's JSON shape too.
pub async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let kind = match status {
        StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS => ErrorType::Overloaded,
        StatusCode::SERVICE_UNAVAILABLE => ErrorType::Unhealthy,
        _ if status.is_server_error() => ErrorType::Backend,
        _ => ErrorType::Validation,
    };
    let message = match status {
        StatusCode::METHOD_NOT_ALLOWED => "this route does not take that method".to_string(),
        StatusCode::REQUEST_TIMEOUT => {
            "the request took longer than the server's time limit".into()
        }
        _ => status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_lowercase(),
    };
    ApiError::new(kind, message)
        .with_status(status)
        .into_response()
}
