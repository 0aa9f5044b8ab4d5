//! The HTTP edge: `POST /v1/samples`, `GET /metrics`, `GET /health`. A sample is answered 200
//! only once the writer reports it stored; every refusal goes through [`Reject`].

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use prometheus_client::registry::Registry;
use serde_json::json;
use switchyard_contract::paths;

use super::metrics::{Metrics, Reason};
use super::queue::{PushError, Queue, StoreError};
use super::record;
use crate::compare;

pub struct App {
    pub queue: Queue,
    pub metrics: Metrics,
    pub registry: Registry,
}

/// Which of the collector's paths a listener answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Paths {
    /// Samples, `/metrics` and `/health`: one plain listener.
    All,
    /// `POST /v1/samples` only: beside an admin listener, the port that only Envoy reaches.
    Samples,
    /// `/metrics` and `/health`: the admin listener beside it.
    Admin,
}

pub fn router(app: Arc<App>, max_body_bytes: usize, which: Paths) -> Router {
    let mut r = Router::new();
    if which != Paths::Admin {
        r = r.route(paths::SAMPLES, post(receive));
    }
    if which != Paths::Samples {
        r = r.route(paths::METRICS, get(metrics)).route(paths::HEALTH, get(|| async { "ok" }));
    }
    r.fallback(no_such_path).layer(DefaultBodyLimit::max(max_body_bytes)).with_state(app)
}

/// Why a sample got no 200; the one mapping to HTTP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    #[error("a sample must be one JSON object")]
    Invalid,
    #[error("the sample is larger than the collector accepts")]
    TooLarge,
    #[error("the collector's queue is full")]
    QueueFull,
    #[error("no space left to store samples")]
    StorageFull,
    #[error("samples cannot be stored now")]
    StorageError,
    #[error("the collector is shutting down")]
    ShuttingDown,
}

impl Reject {
    fn reason(self) -> Reason {
        match self {
            Reject::Invalid => Reason::Invalid,
            Reject::TooLarge => Reason::TooLarge,
            Reject::QueueFull => Reason::QueueFull,
            Reject::StorageFull => Reason::StorageFull,
            Reject::StorageError => Reason::StorageError,
            Reject::ShuttingDown => Reason::ShuttingDown,
        }
    }
}

impl From<PushError> for Reject {
    fn from(e: PushError) -> Self {
        match e {
            PushError::Full => Reject::QueueFull,
            PushError::Closed => Reject::ShuttingDown,
        }
    }
}

impl From<StoreError> for Reject {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Full => Reject::StorageFull,
            StoreError::Io => Reject::StorageError,
        }
    }
}

impl IntoResponse for Reject {
    fn into_response(self) -> Response {
        let (status, retry_after) = match self {
            Reject::Invalid => (StatusCode::BAD_REQUEST, None),
            Reject::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, None),
            Reject::QueueFull => (StatusCode::SERVICE_UNAVAILABLE, Some("1")),
            Reject::StorageFull => (StatusCode::INSUFFICIENT_STORAGE, Some("5")),
            Reject::StorageError => (StatusCode::SERVICE_UNAVAILABLE, Some("5")),
            Reject::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, None),
        };
        let mut r = (status, axum::Json(json!({ "error": self.to_string() }))).into_response();
        if let Some(s) = retry_after {
            r.headers_mut().insert(RETRY_AFTER, HeaderValue::from_static(s));
        }
        r
    }
}

/// Every answer says it is the collector's own (see [`paths::COLLECTOR_ANSWER_HEADER`]): the
/// filter then knows a refused sample was not stored, which a proxy's timeout cannot tell it.
async fn receive(State(app): State<Arc<App>>, body: Result<Bytes, BytesRejection>) -> Response {
    let (mut r, said) = match store(&app, body).await {
        Ok(()) => (axum::Json(json!({})).into_response(), "stored"),
        Err(e) => {
            app.metrics.reject(e.reason());
            (e.into_response(), "refused")
        }
    };
    r.headers_mut().insert(paths::COLLECTOR_ANSWER_HEADER, HeaderValue::from_static(said));
    r
}

/// A sample posted to a path the collector does not serve (a policy's `collector.path` typo)
/// was refused, and says so: the filter counts it `failed`, not `unanswered`.
async fn no_such_path() -> Response {
    let mut r = (StatusCode::NOT_FOUND, axum::Json(json!({ "error": "no such path" }))).into_response();
    r.headers_mut().insert(paths::COLLECTOR_ANSWER_HEADER, HeaderValue::from_static("refused"));
    r
}

async fn store(app: &App, body: Result<Bytes, BytesRejection>) -> Result<(), Reject> {
    let body =
        body.map_err(|e| if e.status() == StatusCode::PAYLOAD_TOO_LARGE { Reject::TooLarge } else { Reject::Invalid })?;
    let line = record::line(&body).ok_or(Reject::Invalid)?;
    // Only a comparison record is parsed whole (a payload sample is stored as it came).
    let judged = contains(&body, b"\"comparison\"")
        .then(|| serde_json::from_slice(&body).ok())
        .flatten()
        .and_then(|v| compare::judge_record(&v));
    let outcome = app.queue.try_push(line)?;
    // The writer answers every job it takes; no answer means it is gone.
    outcome.await.map_err(|_| Reject::ShuttingDown)?.map_err(Reject::from)?;
    // Counted once stored: a record refused (and sent again) is not counted twice.
    if let Some(j) = judged {
        app.metrics.shadow.count(&j);
    }
    Ok(())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    // The queue's state is read when scraped rather than tracked on every push and pop.
    app.metrics.queue_depth.set(i64::try_from(app.queue.depth()).unwrap_or(i64::MAX));
    app.metrics.queued_bytes.set(i64::try_from(app.queue.bytes()).unwrap_or(i64::MAX));
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &app.registry) {
        Ok(()) => {
            ([(CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text).into_response()
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use prometheus_client::registry::Registry;
    use tokio::sync::mpsc;
    use tower::ServiceExt;

    use super::{App, paths, router};
    use crate::collector::file::{FileConfig, Fsync, Writer};
    use crate::collector::metrics::{Metrics, Reason};
    use crate::collector::queue::{self, Job, spawn_writer};

    struct TestApp {
        router: axum::Router,
        metrics: Metrics,
        path: std::path::PathBuf,
        /// Without a writer: the queue's other end, held and never drained.
        _jobs: Option<mpsc::Receiver<Job>>,
    }

    /// The router over a real writer on a scratch file, or over a queue nobody drains.
    fn app(name: &str, writer: bool, max_queued: usize) -> TestApp {
        let dir = switchyard_testkit::scratch(&format!("collector-http-{name}"));
        let path = dir.join("samples.jsonl");
        let metrics = Metrics::default();
        let mut registry = Registry::with_prefix("switchyard");
        metrics.register(registry.sub_registry_with_prefix("collector"));
        metrics.shadow.register(registry.sub_registry_with_prefix("shadow"));
        let (q, jobs) = queue::bounded(max_queued, 1 << 20);
        let jobs = if writer {
            let c =
                FileConfig { path: path.clone(), fsync: Fsync::Always, max_file_bytes: 0, max_files: 1, max_age: None };
            let w = Writer::open(c, metrics.clone()).unwrap();
            spawn_writer(w, jobs, metrics.clone()).unwrap();
            None
        } else {
            Some(jobs)
        };
        let router =
            router(std::sync::Arc::new(App { queue: q, metrics: metrics.clone(), registry }), 1024, super::Paths::All);
        TestApp { router, metrics, path, _jobs: jobs }
    }

    async fn post(app: &axum::Router, body: impl Into<Body>) -> (StatusCode, Option<String>, String) {
        let req = Request::post(paths::SAMPLES).body(body.into()).unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        let retry = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
        let status = resp.status();
        // Every answer is marked the collector's own, so the filter can tell it from a timeout.
        let said = resp.headers().get(paths::COLLECTOR_ANSWER_HEADER).map(|v| v.to_str().unwrap());
        assert_eq!(said, Some(if status == StatusCode::OK { "stored" } else { "refused" }), "{status}");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, retry, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn a_sample_is_answered_200_once_it_is_in_the_file_as_one_line() {
        let t = app("ok", true, 16);
        let (status, _, _) = post(&t.router, "{\n  \"model\": \"mlp\",\n  \"schema\": 1\n}").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(std::fs::read_to_string(&t.path).unwrap(), "{  \"model\": \"mlp\",  \"schema\": 1}\n");
        assert_eq!(t.metrics.records_written.get(), 1);
    }

    #[tokio::test]
    async fn bad_and_oversized_samples_are_refused_and_counted() {
        let t = app("bad", true, 16);
        for bad in ["{not json", "[1]", "{}{}", ""] {
            let (status, _, body) = post(&t.router, bad).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}");
            assert!(body.contains("one JSON object"), "{body}");
        }
        let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(2000));
        assert_eq!(post(&t.router, big).await.0, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!((t.metrics.rejected(Reason::Invalid), t.metrics.rejected(Reason::TooLarge)), (4, 1));
        assert_eq!(std::fs::read_to_string(&t.path).unwrap_or_default(), "");
    }

    #[tokio::test]
    async fn a_full_queue_answers_503_with_retry_after() {
        let t = app("full", false, 1);
        // The first sample takes the only place; its client gives up, its job stays queued.
        let first = tokio::time::timeout(Duration::from_millis(100), post(&t.router, "{}")).await;
        assert!(first.is_err(), "answered without a writer: {first:?}");
        let (status, retry, _) = post(&t.router, "{}").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(retry.as_deref(), Some("1"));
        assert_eq!(t.metrics.rejected(Reason::QueueFull), 1);
    }

    #[tokio::test]
    async fn a_comparison_record_is_stored_and_counted_per_pair() {
        let t = app("compare", true, 16);
        let probs = |d: [f64; 2]| serde_json::json!({"outputs": [{"name": "p", "shape": [1, 2], "datatype": "FP32", "data": d}]});
        let record = serde_json::json!({"schema": 1, "kind": "comparison", "model": "m",
            "compare": {"atol": 1e-5, "rtol": 1e-3, "output": "auto"}, "request": {"body": null},
            "primary": {"version": "v1", "status": 200, "body": probs([0.9, 0.1])},
            "shadow": {"version": "v2", "status": 200, "body": probs([0.2, 0.8])},
            "noise": {"version": "v1", "status": 200, "body": probs([0.9, 0.1])}});
        assert_eq!(post(&t.router, record.to_string()).await.0, StatusCode::OK);
        let forged = record.to_string().replace("\"v2\"", "\"v 2\"");
        assert_eq!(post(&t.router, forged).await.0, StatusCode::OK, "stored, not counted");
        let resp = t.router.oneshot(Request::get("/metrics").body(Body::empty()).unwrap()).await.unwrap();
        let text = String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
        let at = |pair: &str| format!("{{model=\"m\",primary=\"v1\",shadow=\"v2\",pair=\"{pair}\"}}");
        for line in [
            format!("switchyard_shadow_compared_requests_total{} 1", at("shadow")),
            format!("switchyard_shadow_disagreeing_rows_total{} 1", at("shadow")),
            format!("switchyard_shadow_argmax_differing_rows_total{} 1", at("shadow")),
            format!("switchyard_shadow_compared_rows_total{} 1", at("noise")),
            format!("switchyard_shadow_disagreeing_rows_total{} 0", at("noise")),
            "switchyard_shadow_records_not_counted_total{reason=\"invalid_names\"} 1".to_owned(),
        ] {
            assert!(text.contains(&line), "{line} missing from\n{text}");
        }
        assert_eq!(std::fs::read_to_string(&t.path).unwrap().lines().count(), 2);
    }

    #[tokio::test]
    async fn metrics_show_what_was_stored_and_the_queue() {
        let t = app("metrics", true, 16);
        assert_eq!(post(&t.router, "{}").await.0, StatusCode::OK);
        let resp = t.router.oneshot(Request::get("/metrics").body(Body::empty()).unwrap()).await.unwrap();
        let text = String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
        assert!(text.contains("switchyard_collector_records_written_total 1"), "{text}");
        assert!(text.contains("switchyard_collector_queue_depth 0"), "{text}");
    }
}
