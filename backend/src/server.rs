//! REST: the Open Inference Protocol's HTTP/JSON listener and the admin listener (metrics,
//! health), over the protocol-neutral core in [`crate::service`].

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::BytesMut;
use http_body_util::BodyExt;
use serde_json::json;
use switchyard_contract::paths;

use crate::admission::{Limits, Ticket};
use crate::error::ApiError;
use crate::models::ModelVersion;
use crate::service::{AppState, Held, accounted, queue};
use crate::v2::rest::{self as v2, EncodedResponse, HEADER_CONTENT_LENGTH};

/// Bodies above this are decoded on the blocking pool, so a large image batch does not stall
/// the runtime's workers.
const BLOCKING_DECODE_BYTES: usize = 256 * 1024;

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v2/health/live", get(|| async { axum::Json(json!({"live": true})) }))
        .route("/v2/health/ready", get(server_ready))
        .route("/v2", get(server_metadata))
        .route("/v2/models/{model}", get(model_metadata))
        .route("/v2/models/{model}/versions/{version}", get(version_metadata))
        .route("/v2/models/{model}/ready", get(model_ready))
        .route("/v2/models/{model}/versions/{version}/ready", get(version_ready))
        .route("/v2/models/{model}/infer", post(infer))
        .route("/v2/models/{model}/versions/{version}/infer", post(version_infer))
        .fallback(|uri: axum::http::Uri| async move { ApiError::RouteNotFound(uri.path().to_owned()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
}

pub fn admin_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route(paths::ADMIN_HEALTH_LIVE, get(|| async { axum::Json(json!({"live": true})) }))
        .route(paths::ADMIN_HEALTH_READY, get(server_ready))
        .fallback(|uri: axum::http::Uri| async move { ApiError::RouteNotFound(uri.path().to_owned()) })
        .with_state(state)
}

async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    match st.metrics.encode() {
        Ok(text) => ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text)
            .into_response(),
        Err(e) => ApiError::Internal(format!("encoding metrics: {e}")).into_response(),
    }
}

async fn server_ready(State(st): State<Arc<AppState>>) -> Result<axum::Json<serde_json::Value>, ApiError> {
    st.ready()?;
    Ok(axum::Json(json!({"ready": true})))
}

async fn server_metadata(State(st): State<Arc<AppState>>) -> axum::Json<serde_json::Value> {
    let models: Vec<&str> = st.models.names().collect();
    axum::Json(json!({
        "name": "switchyard",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": ["binary_tensor_data"],
        "models": models,
    }))
}

fn metadata(st: &AppState, model: &str, version: Option<&str>) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let mv = st.models.get(model, version)?;
    let versions: Vec<&str> = st.models.versions(model)?.iter().map(|v| v.config.version.as_str()).collect();
    Ok(axum::Json(v2::model_metadata(&mv.config, &versions, mv.device().as_deref())))
}

async fn model_metadata(State(st): State<Arc<AppState>>, Path(model): Path<String>) -> impl IntoResponse {
    metadata(&st, &model, None)
}

async fn version_metadata(
    State(st): State<Arc<AppState>>,
    Path((model, version)): Path<(String, String)>,
) -> impl IntoResponse {
    metadata(&st, &model, Some(&version))
}

fn ready(st: &AppState, model: &str, version: Option<&str>) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let mv = st.models.get(model, version)?;
    mv.check_ready()?;
    Ok(axum::Json(json!({"name": model, "version": mv.config.version, "ready": true})))
}

async fn model_ready(State(st): State<Arc<AppState>>, Path(model): Path<String>) -> impl IntoResponse {
    ready(&st, &model, None)
}

async fn version_ready(
    State(st): State<Arc<AppState>>,
    Path((model, version)): Path<(String, String)>,
) -> impl IntoResponse {
    ready(&st, &model, Some(&version))
}

// The body is taken raw, not as `Bytes`: admission has to come before a byte of it is read.
async fn infer(State(st): State<Arc<AppState>>, Path(model): Path<String>, headers: HeaderMap, body: Body) -> Response {
    run_infer(st, model, None, headers, body).await
}

async fn version_infer(
    State(st): State<Arc<AppState>>,
    Path((model, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    run_infer(st, model, Some(version), headers, body).await
}

async fn run_infer(
    st: Arc<AppState>,
    model: String,
    version: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // Whatever refuses the request before its body is read (an unknown model, overload, a
    // size over the limit), the client still reads the answer: see `Unread`.
    let mut body = Unread::new(body, &headers, &st.admission.limits);
    let result = match st.models.get(&model, version.as_deref()) {
        Ok(mv) => {
            let mv = mv.clone();
            accounted(&st, &mv, infer_body(&st, &mv, &headers, &mut body)).await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok((enc, ticket)) => encoded_response(enc, ticket),
        Err(e) => {
            body.drain().await;
            e.into_response()
        }
    }
}

async fn infer_body(
    st: &AppState,
    mv: &Arc<ModelVersion>,
    headers: &HeaderMap,
    body: &mut Unread,
) -> Result<(EncodedResponse, Ticket), ApiError> {
    mv.check_ready()?;
    let header_len = match headers.get(HEADER_CONTENT_LENGTH) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
                .ok_or_else(|| ApiError::BadRequest("Inference-Header-Content-Length must be a byte count".into()))?,
        ),
    };
    // hyper's size hint is the Content-Length; a chunked body has none and is charged the
    // maximum.
    let declared = body.declared();
    let limits = &st.admission.limits;
    let ticket = st.admission.try_admit(declared)?;
    let body = body.take().ok_or_else(|| ApiError::Internal("the request body was taken twice".into()))?;
    let body = tokio::time::timeout(limits.body_read_timeout, read_body(body, declared, limits.max_body_bytes))
        .await
        .map_err(|_| ApiError::BodyReadTimeout(limits.body_read_timeout))??;
    let req = decode(st, mv, body, header_len).await?;
    let id = req.id.clone();
    let requested = req.outputs.clone();
    let out = queue(mv, req).await?;
    let enc = v2::encode_response(&mv.config, id.as_deref(), &requested, &out)?;
    Ok((enc, ticket))
}

/// Decodes on the blocking pool when the body is large; the body is freed here, before the
/// request waits for its batch.
async fn decode(
    st: &AppState,
    mv: &ModelVersion,
    body: Bytes,
    header_len: Option<usize>,
) -> Result<crate::v2::InferRequest, ApiError> {
    if body.len() <= BLOCKING_DECODE_BYTES {
        return Ok(v2::decode_request(&mv.config, &body, header_len)?);
    }
    // Admitted bodies wait here for a decoder instead of each taking a blocking thread.
    let _slot = st.admission.decode_slot().await?;
    let config = mv.config.clone();
    tokio::task::spawn_blocking(move || v2::decode_request(&config, &body, header_len))
        .await
        .map_err(|e| ApiError::Internal(format!("decoder task failed: {e}")))?
        .map_err(ApiError::from)
}

/// How long a refused body's drain waits for its next bytes.
const LINGER_IDLE: std::time::Duration = std::time::Duration::from_secs(2);

/// A request body not read yet. When the request is refused before its body is read, the
/// body is read and dropped before the answer goes out (nginx's lingering close, done first):
/// a client that sends its body without `Expect: 100-continue` then reads the 429 or 413,
/// where closing with unread bytes had the kernel reset the connection under it (a broken pipe
/// in Python's `http.client`). Answering first and draining after was tried: a direct client
/// reads that, but Envoy closes the client's connection on an early answer from upstream, and
/// the client got a reset all the same. Nothing is kept, so memory stays within the admission
/// budget; a body declared over twice the limit, or still arriving after the read timeout, is
/// cut off instead (the connection closes). A client that sent `Expect: 100-continue` is
/// answered at once and has sent nothing.
pub struct Unread {
    body: Option<Body>,
    linger: bool,
    max_bytes: u64,
    timeout: std::time::Duration,
}

impl Unread {
    fn new(body: Body, headers: &HeaderMap, limits: &Limits) -> Unread {
        let max_bytes = 2 * limits.max_body_bytes as u64;
        let linger = !headers.contains_key(header::EXPECT) && body.size_hint().lower() <= max_bytes;
        Unread { body: Some(body), linger, max_bytes, timeout: limits.body_read_timeout }
    }

    /// The declared length (hyper's size hint is the Content-Length; a chunked body has none).
    fn declared(&self) -> Option<u64> {
        self.body.as_ref().and_then(|b| b.size_hint().exact())
    }

    /// The body, to read: nothing is drained once it is taken.
    fn take(&mut self) -> Option<Body> {
        self.body.take()
    }

    /// Reads and drops what is left of a body never taken, within the bounds.
    async fn drain(&mut self) {
        let (Some(mut body), true) = (self.body.take(), self.linger) else { return };
        let max_bytes = self.max_bytes;
        let drain = async {
            let mut read = 0u64;
            // A client that stops sending is not waited for long (nginx's lingering_timeout).
            while read <= max_bytes
                && !body.is_end_stream()
                && let Ok(Some(Ok(frame))) = tokio::time::timeout(LINGER_IDLE, body.frame()).await
            {
                read += frame.data_ref().map_or(0, |d| d.len() as u64);
            }
        };
        let _ = tokio::time::timeout(self.timeout, drain).await;
    }
}

/// Collects a body of at most `limit` bytes, sized once from its declared length.
async fn read_body(mut body: Body, declared: Option<u64>, limit: usize) -> Result<Bytes, ApiError> {
    let capacity = declared.and_then(|n| usize::try_from(n).ok()).unwrap_or(0).min(limit);
    let mut buf = BytesMut::with_capacity(capacity);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::BodyRead(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(ApiError::PayloadTooLarge { limit });
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

fn encoded_response(enc: EncodedResponse, ticket: Ticket) -> Response {
    let body = Body::new(Held::new(Body::from(enc.body), ticket));
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    match enc.header_len {
        Some(n) => {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
            h.insert(HEADER_CONTENT_LENGTH, HeaderValue::from(n));
        }
        None => {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
    }
    resp
}

/// Serves REST on `listener` (mutual TLS with `tls`) until `shutdown` resolves, then finishes
/// the requests in flight.
pub async fn serve(
    st: Arc<AppState>,
    listener: tokio::net::TcpListener,
    tls: Option<switchyard_tls::ServerTls>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    match tls {
        Some(tls) => {
            let refused = st.metrics.tls_refused("inference");
            let listener = switchyard_tls::TlsListener::new(listener, &tls, "inference", refused)?;
            axum::serve(listener, router(st)).with_graceful_shutdown(shutdown).await
        }
        None => axum::serve(listener, router(st)).with_graceful_shutdown(shutdown).await,
    }
}

/// Serves the admin listener until the task is aborted: metrics stay scrapable while draining.
pub async fn serve_admin(st: Arc<AppState>, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    axum::serve(listener, admin_router(st)).await
}

#[cfg(test)]
mod tests;
