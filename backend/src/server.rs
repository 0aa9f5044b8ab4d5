//! HTTP: the Open Inference Protocol listener and the admin listener (metrics, health); the
//! drain that stops them and the gRPC listener together.

use std::future::IntoFuture;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::BytesMut;
use http_body_util::BodyExt;
use serde_json::json;

use crate::admission::{Admission, Limits, Ticket};
use crate::batcher::InferOutput;
use crate::error::ApiError;
use crate::metrics::{Metrics, Outcome};
use crate::models::{ModelVersion, Models};
use crate::v2::rest::{self as v2, EncodedResponse, HEADER_CONTENT_LENGTH};

/// Bodies above this are decoded on the blocking pool, so a large image batch does not stall
/// the runtime's workers.
const BLOCKING_DECODE_BYTES: usize = 256 * 1024;

pub struct AppState {
    pub models: Arc<Models>,
    pub metrics: Arc<Metrics>,
    pub admission: Admission,
    pub draining: AtomicBool,
}

impl AppState {
    pub fn new(models: Arc<Models>, metrics: Arc<Metrics>, limits: Limits) -> Arc<Self> {
        Arc::new(AppState { models, metrics, admission: Admission::new(limits), draining: AtomicBool::new(false) })
    }

    pub(crate) fn ready(&self) -> Result<(), ApiError> {
        if self.draining.load(Ordering::Relaxed) {
            return Err(ApiError::ShuttingDown);
        }
        // Every version that is not ready, so one probe tells the whole story.
        let problems: Vec<String> =
            self.models.all().filter_map(|m| m.check_ready().err()).map(|e| e.to_string()).collect();
        if problems.is_empty() { Ok(()) } else { Err(ApiError::ServerNotReady(problems.join("; "))) }
    }
}

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
        .route("/health/live", get(|| async { axum::Json(json!({"live": true})) }))
        .route("/health/ready", get(server_ready))
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

/// Keeps the in-flight gauge right and counts requests whose client disconnected: hyper then
/// drops the handler wherever it is (decoding, queued, computing), and a queued entry whose
/// handler is gone is skipped by the batcher, so it costs no compute.
struct InFlight<'a> {
    version: &'a ModelVersion,
    started: Instant,
    answered: bool,
}

impl<'a> InFlight<'a> {
    fn new(version: &'a ModelVersion) -> Self {
        version.metrics.in_flight.inc();
        InFlight { version, started: Instant::now(), answered: false }
    }

    fn answer(&mut self, outcome: Outcome) {
        self.answered = true;
        if outcome == Outcome::ClientGone {
            self.version.metrics.dropped_client_gone.inc();
        }
        self.version.metrics.record_request(outcome, self.started.elapsed().as_secs_f64());
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let m = &self.version.metrics;
        m.in_flight.dec();
        if !self.answered {
            m.dropped_client_gone.inc();
            m.record_request(Outcome::ClientGone, self.started.elapsed().as_secs_f64());
        }
    }
}

async fn run_infer(
    st: Arc<AppState>,
    model: String,
    version: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mv = match st.models.get(&model, version.as_deref()) {
        Ok(m) => m.clone(),
        Err(e) => return e.into_response(),
    };
    match accounted(&st, &mv, infer_body(&st, &mv, &headers, body)).await {
        Ok((enc, ticket)) => encoded_response(enc, ticket),
        Err(e) => e.into_response(),
    }
}

/// Runs one inference request of `mv`, whichever protocol it came in on: refused while
/// draining, counted in flight and in the request metrics with its outcome.
pub(crate) async fn accounted<T>(
    st: &AppState,
    mv: &ModelVersion,
    work: impl Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    // Read before the request counts as in flight: a request counted in flight before the
    // shutdown signal is one the drain answers.
    let draining = st.draining.load(Ordering::Relaxed);
    let mut guard = InFlight::new(mv);
    let result = if draining { Err(ApiError::ShuttingDown) } else { work.await };
    guard.answer(match &result {
        Ok(_) => Outcome::Success,
        Err(e) => e.outcome(),
    });
    if let Err(ApiError::Overloaded { .. }) = &result {
        // Counted with the queue's refusals: both are refusals that cost no compute.
        mv.metrics.dropped_queue_full.inc();
    }
    result
}

/// Queues a validated request for its batch. A deadline that passed is reported as the
/// client's own when it is the timeout the client asked for.
pub(crate) async fn queue(mv: &ModelVersion, req: crate::v2::InferRequest) -> Result<InferOutput, ApiError> {
    let asked = req.timeout;
    mv.infer(req).await.map_err(|e| match e {
        ApiError::DeadlineExceeded(applied) if asked == Some(applied) => ApiError::ClientDeadlineExceeded(applied),
        e => e,
    })
}

async fn infer_body(
    st: &AppState,
    mv: &Arc<ModelVersion>,
    headers: &HeaderMap,
    body: Body,
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
    let declared = body.size_hint().exact();
    let limits = &st.admission.limits;
    let ticket = match st.admission.try_admit(declared) {
        Err(e @ ApiError::PayloadTooLarge { .. }) => {
            discard(body, headers, limits).await;
            return Err(e);
        }
        admitted => admitted?,
    };
    let body = tokio::time::timeout(limits.body_read_timeout, read_body(body, declared, limits.max_body_bytes))
        .await
        .map_err(|_| ApiError::BodyReadTimeout(limits.body_read_timeout))??;
    let req = decode(st, mv, body, header_len).await?;
    let id = req.id.clone();
    let requested = req.outputs.clone();
    let out = queue(mv, req).await?;
    let enc = v2::encode_response(&mv.config, id.as_deref(), &requested, &out).map_err(ApiError::Internal)?;
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
        return v2::decode_request(&mv.config, &body, header_len).map_err(ApiError::BadRequest);
    }
    // Admitted bodies wait here for a decoder instead of each taking a blocking thread.
    let _slot = st.admission.decode_slot().await?;
    let config = mv.config.clone();
    tokio::task::spawn_blocking(move || v2::decode_request(&config, &body, header_len))
        .await
        .map_err(|e| ApiError::Internal(format!("decoder task failed: {e}")))?
        .map_err(ApiError::BadRequest)
}

/// Reads and drops a body announced over the limit, so that a client that sends it without
/// `Expect: 100-continue` reads the 413 instead of a reset connection (nginx's lingering
/// close). Nothing is kept; beyond twice the limit or the read timeout the connection is
/// closed instead.
async fn discard(mut body: Body, headers: &HeaderMap, limits: &Limits) {
    let too_long = body.size_hint().lower() > 2 * limits.max_body_bytes as u64;
    if too_long || headers.contains_key(header::EXPECT) {
        return;
    }
    let drain = async { while let Some(Ok(_)) = body.frame().await {} };
    let _ = tokio::time::timeout(limits.body_read_timeout, drain).await;
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

/// A response body that holds its request's admission ticket until hyper has sent it (or
/// the client left), so responses waiting on slow readers stay within the budget.
struct Ticketed {
    body: Body,
    _ticket: Ticket,
}

impl HttpBody for Ticketed {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

fn encoded_response(enc: EncodedResponse, ticket: Ticket) -> Response {
    let body = Body::new(Ticketed { body: Body::from(enc.body), _ticket: ticket });
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

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// The listeners the server answers on.
pub struct Listeners {
    pub http: tokio::net::TcpListener,
    pub grpc: tokio::net::TcpListener,
    pub admin: tokio::net::TcpListener,
}

/// Serves until a shutdown signal, then drains within `grace`: stop accepting on both
/// protocols, finish every accepted request (queued ones included), stop the engines.
/// Returns false when the grace period ran out first.
pub async fn run(st: Arc<AppState>, listeners: Listeners, grace: Duration) -> std::io::Result<bool> {
    let Listeners { http, grpc, admin } = listeners;
    let (deadline_tx, mut deadline_rx) = tokio::sync::watch::channel(None::<tokio::time::Instant>);
    let admin_app = admin_router(st.clone());
    // Metrics stay scrapable while draining; the admin listener goes last.
    let admin_task = tokio::spawn(axum::serve(admin, admin_app).into_future());
    let st2 = st.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        // Readiness fails from here on, so a load balancer stops sending.
        st2.draining.store(true, Ordering::Relaxed);
        tracing::info!(grace_seconds = grace.as_secs_f64(), "shutdown signal: draining");
        let _ = deadline_tx.send(Some(tokio::time::Instant::now() + grace));
    });
    let signalled = |mut rx: tokio::sync::watch::Receiver<Option<tokio::time::Instant>>| async move {
        let _ = rx.wait_for(Option::is_some).await;
    };
    let rest = axum::serve(http, router(st.clone())).with_graceful_shutdown(signalled(deadline_rx.clone()));
    let grpc = crate::grpc::serve(st.clone(), grpc, signalled(deadline_rx.clone()));
    let both = async {
        let (rest, grpc) = tokio::join!(rest.into_future(), grpc);
        rest?;
        grpc.map_err(std::io::Error::other)
    };
    let mut overdue_rx = deadline_rx.clone();
    let overdue = async move {
        if let Ok(d) = overdue_rx.wait_for(Option::is_some).await
            && let Some(d) = *d
        {
            tokio::time::sleep_until(d).await;
        }
    };
    let connections_closed = tokio::select! {
        r = both => { r?; true }
        () = overdue => false,
    };
    let deadline = deadline_rx.borrow_and_update().unwrap_or_else(|| tokio::time::Instant::now() + grace);
    let stopped = connections_closed && tokio::time::timeout_at(deadline, st.models.stop()).await.is_ok();
    if !stopped {
        tracing::warn!("grace period over before every request was answered");
    }
    admin_task.abort();
    Ok(stopped)
}

#[cfg(test)]
mod tests;
