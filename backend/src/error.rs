//! The one place where errors become responses: HTTP ones (`{"error": "..."}` with the status
//! the Open Inference Protocol implies) and gRPC statuses, with the codes Triton and KServe use.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::metrics::Outcome;

/// Set to `client` on a 504 whose deadline was the client's own `timeout` parameter.
pub const HEADER_DEADLINE: &str = "x-switchyard-deadline";

/// A request that cannot be served as sent; the message tells the client what is wrong (400,
/// gRPC `INVALID_ARGUMENT`). What the codecs return, so that a client's mistake can never be
/// answered as a server fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

// `?` on a codec step's message: the codecs build their messages with `format!`.
impl From<String> for Invalid {
    fn from(s: String) -> Invalid {
        Invalid(s)
    }
}

impl From<&str> for Invalid {
    fn from(s: &str) -> Invalid {
        Invalid(s.to_owned())
    }
}

impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> ApiError {
        ApiError::BadRequest(e.0)
    }
}

/// A batch's outputs that do not fit the model's config (a model that broke its contract):
/// answered 500, the detail logged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EncodeError(pub String);

impl From<EncodeError> for ApiError {
    fn from(e: EncodeError) -> ApiError {
        ApiError::Internal(e.0)
    }
}

/// An engine that could not load, warm up or run a batch: every request of that batch is
/// answered 500 (the detail is logged, not sent).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EngineError(pub String);

impl From<String> for EngineError {
    fn from(s: String) -> EngineError {
        EngineError(s)
    }
}

impl From<&str> for EngineError {
    fn from(s: &str) -> EngineError {
        EngineError(s.to_owned())
    }
}

impl From<Invalid> for EngineError {
    fn from(e: Invalid) -> EngineError {
        EngineError(e.0)
    }
}

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
    #[error("request body not received within {} s", .0.as_secs())]
    BodyReadTimeout(Duration),
    /// The connection failed while the body was being received: the client is most likely
    /// gone, and is counted so.
    #[error("cannot read the request body: {0}")]
    BodyRead(String),
    #[error("model '{model}' version '{version}' is overloaded: {capacity} requests already queued; retry later")]
    QueueFull { model: String, version: String, capacity: usize },
    /// Refused by admission control before the body was read.
    #[error("the server is overloaded: {limit} {what} already in flight; retry later")]
    Overloaded { what: &'static str, limit: usize },
    #[error("deadline exceeded: not served within the request's timeout of {} µs", .0.as_micros())]
    DeadlineExceeded(Duration),
    /// The deadline that passed was the one the client asked for (its `timeout` parameter):
    /// marked so that the proxy does not count it against the version's availability.
    #[error("deadline exceeded: not served within the request's timeout of {} µs", .0.as_micros())]
    ClientDeadlineExceeded(Duration),
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
            ApiError::BadRequest(_) | ApiError::BodyRead(_) => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyReadTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::QueueFull { .. } | ApiError::Overloaded { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::DeadlineExceeded(_) | ApiError::ClientDeadlineExceeded(_) => StatusCode::GATEWAY_TIMEOUT,
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
            ApiError::QueueFull { .. } | ApiError::Overloaded { .. } => Outcome::QueueFull,
            ApiError::DeadlineExceeded(_) | ApiError::ClientDeadlineExceeded(_) => Outcome::Expired,
            ApiError::NotReady { .. } | ApiError::ServerNotReady(_) => Outcome::NotReady,
            ApiError::ShuttingDown => Outcome::ShuttingDown,
            ApiError::Internal(_) => Outcome::Error,
            ApiError::BodyRead(_) => Outcome::ClientGone,
            _ => Outcome::BadRequest,
        }
    }
}

/// gRPC's retry pushback (gRFC A6): how long a client's retry policy waits before trying
/// again after an overload or drain, as `Retry-After: 1` tells HTTP clients.
const GRPC_RETRY_PUSHBACK: &str = "grpc-retry-pushback-ms";

impl ApiError {
    pub fn grpc_code(&self) -> tonic::Code {
        use tonic::Code;
        match self {
            ApiError::ModelNotFound(_) | ApiError::VersionNotFound { .. } => Code::NotFound,
            ApiError::BadRequest(_) => Code::InvalidArgument,
            // As gRPC's own limit on message size (and the queue) answer.
            ApiError::PayloadTooLarge { .. } | ApiError::QueueFull { .. } | ApiError::Overloaded { .. } => {
                Code::ResourceExhausted
            }
            ApiError::BodyReadTimeout(_) | ApiError::DeadlineExceeded(_) | ApiError::ClientDeadlineExceeded(_) => {
                Code::DeadlineExceeded
            }
            ApiError::BodyRead(_) => Code::Cancelled,
            ApiError::NotReady { .. } | ApiError::ServerNotReady(_) | ApiError::ShuttingDown => Code::Unavailable,
            ApiError::RouteNotFound(_) | ApiError::MethodNotAllowed => Code::Unimplemented,
            ApiError::Internal(_) => Code::Internal,
        }
    }

    /// The gRPC status: the same message as the HTTP error (no internals for INTERNAL), and
    /// the same hints in its metadata: the client-deadline mark, the retry pushback.
    pub fn to_status(&self) -> tonic::Status {
        if let ApiError::Internal(detail) = self {
            tracing::error!(error = %detail, "request failed");
        }
        let mut status = tonic::Status::new(self.grpc_code(), self.to_string());
        let md = status.metadata_mut();
        // A slow body is the client's doing too: neither counts against the version.
        if matches!(self, ApiError::ClientDeadlineExceeded(_) | ApiError::BodyReadTimeout(_)) {
            md.insert(HEADER_DEADLINE, tonic::metadata::MetadataValue::from_static("client"));
        }
        if matches!(self, ApiError::QueueFull { .. } | ApiError::Overloaded { .. } | ApiError::ShuttingDown) {
            md.insert(GRPC_RETRY_PUSHBACK, tonic::metadata::MetadataValue::from_static("1000"));
        }
        status
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
        if status == StatusCode::REQUEST_TIMEOUT {
            // RFC 9110 §15.5.9: the rest of the body will not be read, so the connection ends.
            resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if matches!(self, ApiError::ClientDeadlineExceeded(_)) {
            resp.headers_mut().insert(HEADER_DEADLINE, HeaderValue::from_static("client"));
        }
        resp
    }
}
