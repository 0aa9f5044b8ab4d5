//! The monitor's HTTP side: `/metrics` (the registry), `/health` (whether the drift thread is
//! still running) and `/v1/drift` (the last evaluations as JSON, as the drift thread last
//! published them).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;

/// What the drift thread shares with the server.
#[derive(Clone)]
pub struct Shared {
    /// The last evaluations, serialised once per evaluation rather than per request.
    pub results: Arc<Mutex<String>>,
    /// Cleared when the drift thread ends, however it ends.
    pub alive: Arc<AtomicBool>,
}

impl Default for Shared {
    fn default() -> Shared {
        Shared { results: Arc::new(Mutex::new(String::from("{}"))), alive: Arc::new(AtomicBool::new(true)) }
    }
}

pub fn router(registry: Registry, shared: Shared) -> Router {
    let registry = Arc::new(registry);
    let Shared { results, alive } = shared;
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move { encode_metrics(&registry) }
            }),
        )
        .route(
            "/health",
            get(move || {
                let alive = alive.load(Ordering::Relaxed);
                async move {
                    if alive {
                        (StatusCode::OK, "ok")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "the drift thread has stopped")
                    }
                }
            }),
        )
        .route(
            "/v1/drift",
            get(move || {
                let results = results.clone();
                async move {
                    let body = results.lock().map(|r| r.clone()).unwrap_or_else(|_| "{}".into());
                    ([(CONTENT_TYPE, "application/json")], body)
                }
            }),
        )
}

fn encode_metrics(registry: &Registry) -> Response {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, registry) {
        Ok(()) => {
            ([(CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body).into_response()
        }
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics").into_response(),
    }
}
