//! The console as both of its hosts serve it: the local controller's admin listener (`admin`)
//! and the operator's (switchyard-operator, read-only there). One place for its files, the
//! headers every answer carries, and the look at the metrics its model cards are drawn from.

use std::path::Path;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use switchyard_load::metrics::{Sample, parse};
use switchyard_policy::Config;

use crate::view::Watch;

/// How long one look at a metrics endpoint may take.
const LOOK_TIMEOUT: Duration = Duration::from_secs(2);

/// `{"error": ...}` with a status: how the console's API refuses.
pub fn refusal(status: StatusCode, message: impl Into<String>) -> Response {
    let mut r = (status, axum::Json(json!({"error": message.into()}))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    r
}

/// Headers on every answer: the page may not be framed, sniffed or given script from anywhere
/// but here, and nothing is cached.
pub async fn headers(req: Request, next: Next) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        ),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The console's files in `dir`, by name only: nothing else on disk is reachable.
pub async fn asset(dir: &Path, uri: &Uri) -> Response {
    let (file, kind) = match uri.path() {
        "/" | "/index.html" => ("index.html", "text/html; charset=utf-8"),
        "/console.js" => ("console.js", "text/javascript; charset=utf-8"),
        "/console.css" => ("console.css", "text/css; charset=utf-8"),
        "/pkg/switchyard_console.js" => ("pkg/switchyard_console.js", "text/javascript; charset=utf-8"),
        "/pkg/switchyard_console_bg.wasm" => ("pkg/switchyard_console_bg.wasm", "application/wasm"),
        // Browsers ask for one unbidden: none, rather than a 404 in the page's console.
        "/favicon.ico" => return StatusCode::NO_CONTENT.into_response(),
        _ => return refusal(StatusCode::NOT_FOUND, format!("no {}", uri.path())),
    };
    match tokio::fs::read(dir.join(file)).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, kind)], bytes).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the console is not built ({}: {e}): run scripts/build-console.sh, or pass --console-dir\n",
                dir.join(file).display()
            ),
        )
            .into_response(),
    }
}

/// Whether the console's files are in `dir`, for a warning at start.
pub fn built(dir: &Path) -> bool {
    dir.join("index.html").is_file()
}

/// Why a metrics endpoint the console shows could not be read (named in its `problems`).
#[derive(Debug, thiserror::Error)]
pub enum LookError {
    #[error("{0}: no answer within {LOOK_TIMEOUT:?}")]
    Silent(String),
    #[error("{at}: {source}")]
    Unreachable { at: String, source: anyhow::Error },
    #[error("{at} answered {status}")]
    Status { at: String, status: u16 },
}

/// The samples at `addr` + `path` (a `/metrics`, Envoy's stats, or Prometheus' `/federate`).
pub async fn metrics_at(addr: &str, path: &str) -> Result<Vec<Sample>, LookError> {
    let at = || format!("{addr}{path}");
    let (status, body) = tokio::time::timeout(LOOK_TIMEOUT, switchyard_load::http::get(addr, path))
        .await
        .map_err(|_| LookError::Silent(at()))?
        .map_err(|source| LookError::Unreachable { at: at(), source })?;
    if status != 200 {
        return Err(LookError::Status { at: at(), status });
    }
    Ok(parse(&String::from_utf8_lossy(&body)))
}

/// Where the model cards' numbers come from.
pub struct Sources<'a> {
    /// The filter's metrics: Envoy's admin (HOST:PORT, path) locally, Prometheus' federation of
    /// every gateway pod in a cluster.
    pub envoy: (&'a str, &'a str),
    pub collector: Option<&'a str>,
    pub monitor: Option<&'a str>,
}

/// One look at the metrics: the model cards under `policy` (JSON, as the page draws them);
/// what could not be read is added to `problems`.
pub async fn look(
    watch: &mut Watch,
    now_ms: u64,
    policy: &Config,
    at: &Sources<'_>,
    problems: &mut Vec<String>,
) -> Value {
    let envoy = metrics_at(at.envoy.0, at.envoy.1).await.unwrap_or_else(|e| {
        problems.push(format!("Envoy: {e}"));
        Vec::new()
    });
    let mut optional = async |addr: Option<&str>, what: &str| match addr {
        Some(a) => match metrics_at(a, "/metrics").await {
            Ok(s) => Some(s),
            Err(e) => {
                problems.push(format!("{what}: {e}"));
                None
            }
        },
        None => None,
    };
    let collector = optional(at.collector, "collector").await;
    let monitor = optional(at.monitor, "drift monitor").await;
    let models = watch.look(now_ms, policy, &envoy, collector.as_deref(), monitor.as_deref());
    serde_json::to_value(models).unwrap_or_default()
}
