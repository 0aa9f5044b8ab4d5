//! The one place where errors become HTTP responses: `{"error": "..."}` with the status the
//! Open Inference Protocol implies.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::metrics::Outcome;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("model '{0}' not found")]
    ModelNotFound(String),
    #[error("model '{model}' has no version '{version}'")]
    VersionNotFound { model: String, version: String },
    #[error("{0}")]
    BadRequest(String),
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("model '{model}' version '{version}' is overloaded: {capacity} requests already queued; retry later")]
    QueueFull { model: String, version: String, capacity: usize },
    #[error("deadline exceeded: not served within the request's timeout of {} µs", .0.as_micros())]
    DeadlineExceeded(Duration),
    #[error("model '{model}' version '{version}' is not ready: {reason}")]
    NotReady { model: String, version: String, reason: String },
    #[error("not ready: {0}")]
    ServerNotReady(String),
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("no such endpoint: {0}")]
    RouteNotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The detail is logged, not sent: it can hold paths and library internals.
    #[error("inference failed")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::ModelNotFound(_) | ApiError::VersionNotFound { .. } | ApiError::RouteNotFound(_) => {
                StatusCode::NOT_FOUND
            }
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::QueueFull { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::DeadlineExceeded(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::NotReady { .. } | ApiError::ServerNotReady(_) | ApiError::ShuttingDown => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Bounded label for the request metrics.
    pub fn outcome(&self) -> Outcome {
        match self {
            ApiError::QueueFull { .. } => Outcome::QueueFull,
            ApiError::DeadlineExceeded(_) => Outcome::Expired,
            ApiError::NotReady { .. } | ApiError::ServerNotReady(_) => Outcome::NotReady,
            ApiError::ShuttingDown => Outcome::ShuttingDown,
            ApiError::Internal(_) => Outcome::Error,
            _ => Outcome::BadRequest,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Internal(detail) = &self {
            tracing::error!(error = %detail, "request failed");
        }
        let mut resp = (status, axum::Json(serde_json::json!({ "error": self.to_string() }))).into_response();
        if status == StatusCode::TOO_MANY_REQUESTS || matches!(self, ApiError::ShuttingDown) {
            // Whole seconds only (RFC 9110); the queue drains far faster than that.
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}
