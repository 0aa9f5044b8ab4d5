//! `switchyard-pager`: the local stand-in for an on-call pager (PagerDuty, Opsgenie) that the
//! demo, the drills and the tests send alerts to. Alertmanager's webhook posts to
//! `/<receiver>` (`page`, `ticket`); every notification is appended as one JSON line
//! (`{"receiver", "received_at", "notification"}`) to the output file and printed.
//!
//! It also keeps the dead man's switch ([`deadman`]): Alertmanager routes the always-firing
//! `Watchdog` to `/watchdog`, and when it stops arriving (Alertmanager down) or arrives
//! resolved (Prometheus down), the pager writes a page of its own, `SwitchyardAlertingDown`,
//! in Alertmanager's format, to the same file; a heartbeat later resolves it. Heartbeats are
//! written too, under their receiver, so the file is the whole record.

pub mod deadman;

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use switchyard_contract::process::pager::{ALERTING_DOWN, PAGE, WATCHDOG_ALERT};

use crate::deadman::{Change, Deadman, Why};

/// Where the runbook of the pager's own page is.
const RUNBOOK: &str = "https://github.com/switchyard-ml/switchyard/blob/main/docs/runbooks/SwitchyardAlertingDown.md";

pub struct Pager {
    out: PathBuf,
    state: Mutex<Deadman>,
    /// Serialises appends, so lines never interleave.
    file: Mutex<()>,
}

pub fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

fn rfc3339(unix: f64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_secs_f64(unix.max(0.0))).to_string()
}

impl Pager {
    pub fn new(out: PathBuf, watchdog_timeout: Duration) -> Pager {
        Pager { out, state: Mutex::new(Deadman::new(watchdog_timeout, now())), file: Mutex::new(()) }
    }

    /// Appends a notification to the output file and says so on standard output.
    fn record(&self, receiver: &str, notification: &Value) -> std::io::Result<()> {
        let line = json!({"receiver": receiver, "received_at": now(), "notification": notification});
        let _held = self.file.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&self.out)?;
        writeln!(f, "{line}")?;
        let alerts = notification["alerts"].as_array().map_or(&[][..], Vec::as_slice);
        let mut names: Vec<&str> = alerts.iter().filter_map(|a| a["labels"]["alertname"].as_str()).collect();
        names.sort_unstable();
        names.dedup();
        let status = notification["status"].as_str().unwrap_or("?");
        println!("pager: {receiver}: {status} {} alert(s): {}", alerts.len(), names.join(", "));
        Ok(())
    }

    fn deadman(&self) -> std::sync::MutexGuard<'_, Deadman> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A notification from Alertmanager: recorded, and fed to the dead man's switch when it
    /// carries the Watchdog.
    pub fn receive(&self, receiver: &str, notification: &Value) -> std::io::Result<()> {
        self.record(receiver, notification)?;
        let watchdog = notification["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["labels"]["alertname"] == WATCHDOG_ALERT)
            .map(|a| a["status"] == "firing")
            .reduce(|a, b| a || b);
        if let Some(firing) = watchdog {
            let change = self.deadman().watchdog(now(), firing);
            self.announce(change)?;
        }
        Ok(())
    }

    /// The clock of the dead man's switch.
    pub fn tick(&self) -> std::io::Result<()> {
        let change = self.deadman().tick(now());
        self.announce(change)
    }

    fn announce(&self, change: Option<Change>) -> std::io::Result<()> {
        let Some(change) = change else { return Ok(()) };
        let (since, timeout) = {
            let d = self.deadman();
            (d.down().map_or(now(), |(at, _)| *at), d.timeout())
        };
        let (status, description) = match change {
            Change::Raised(Why::Silent { last }) => (
                "firing",
                format!(
                    "No Watchdog from Alertmanager for {} (the last at {}): Alertmanager, or the way from it to the \
                     pager, is down, and no alert can page.",
                    humantime::format_duration(Duration::from_secs(timeout.as_secs())),
                    rfc3339(last)
                ),
            ),
            Change::Raised(Why::Resolved) => (
                "firing",
                "Alertmanager resolved the Watchdog: Prometheus stopped sending it (Prometheus down, its rules not \
                 loaded, or it cannot reach Alertmanager), and no alert can fire."
                    .to_owned(),
            ),
            Change::Cleared => ("resolved", "The Watchdog arrives again: alerting is back.".to_owned()),
        };
        let labels = json!({"alertname": ALERTING_DOWN, "severity": "page"});
        let ends = if status == "resolved" { rfc3339(now()) } else { "0001-01-01T00:00:00Z".to_owned() };
        let notification = json!({
            "version": "4",
            "status": status,
            "receiver": PAGE,
            "groupKey": "switchyard-pager/deadman",
            "groupLabels": {"alertname": ALERTING_DOWN},
            "commonLabels": labels,
            "alerts": [{
                "status": status,
                "labels": labels,
                "annotations": {
                    "summary": "Alerting is down: no alert can reach the on-call",
                    "description": description,
                    "runbook_url": RUNBOOK,
                },
                "startsAt": rfc3339(since),
                "endsAt": ends,
            }],
        });
        self.record(PAGE, &notification)
    }

    fn status(&self) -> Value {
        let d = self.deadman();
        json!({
            "watchdog_timeout_seconds": d.timeout().as_secs_f64(),
            "watchdog_heard": d.heard(),
            "last_watchdog_unix": d.heard().then(|| d.last()),
            "alerting_down": d.down().map(|(since, why)| json!({
                "since_unix": since,
                "why": match why { Why::Silent { .. } => "silent", Why::Resolved => "resolved" },
            })),
        })
    }
}

/// A receiver name Alertmanager's config could give: short, lowercase, no path tricks.
fn receiver_ok(r: &str) -> bool {
    !r.is_empty() && r.len() <= 32 && r.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

async fn notify(State(pager): State<Arc<Pager>>, Path(receiver): Path<String>, body: axum::body::Bytes) -> Response {
    if !receiver_ok(&receiver) {
        return (StatusCode::NOT_FOUND, "no such receiver: lowercase letters, digits and '-'\n").into_response();
    }
    let Ok(notification) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "not an Alertmanager notification: the body is not JSON\n").into_response();
    };
    if !notification.is_object() {
        return (StatusCode::BAD_REQUEST, "not an Alertmanager notification: not a JSON object\n").into_response();
    }
    match tokio::task::spawn_blocking(move || pager.receive(&receiver, &notification)).await {
        Ok(Ok(())) => StatusCode::OK.into_response(),
        // Alertmanager retries a failed delivery: an answer other than 2xx keeps it.
        Ok(Err(e)) => {
            (StatusCode::INSUFFICIENT_STORAGE, format!("cannot record the notification: {e}\n")).into_response()
        }
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "the recorder failed\n").into_response(),
    }
}

pub fn router(pager: Arc<Pager>) -> Router {
    let status = pager.clone();
    Router::new()
        .route("/{receiver}", post(notify))
        .route(switchyard_contract::paths::HEALTH, get(|| async { "ok" }))
        .route("/v1/deadman", get(move || async move { axum::Json(status.status()) }))
        .with_state(pager)
}

/// Serves until SIGTERM or ctrl-c, ticking the dead man's switch.
pub async fn run(listen: std::net::SocketAddr, out: PathBuf, watchdog_timeout: Duration) -> anyhow::Result<()> {
    use anyhow::Context;
    let pager = Arc::new(Pager::new(out.clone(), watchdog_timeout));
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot bind {listen}"))?;
    println!(
        "switchyard-pager listening on http://{} -> {} (watchdog timeout {})",
        listener.local_addr()?,
        out.display(),
        humantime::format_duration(watchdog_timeout)
    );
    let ticker = pager.clone();
    let every = (watchdog_timeout / 10).clamp(Duration::from_millis(100), Duration::from_secs(1));
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(every);
        loop {
            interval.tick().await;
            let p = ticker.clone();
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || p.tick()).await {
                eprintln!("switchyard-pager: cannot record the dead man's switch: {e}");
            }
        }
    });
    axum::serve(listener, router(pager)).with_graceful_shutdown(switchyard_runtime::shutdown_signal()).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_contract::process::pager::WATCHDOG;

    fn watchdog(status: &str) -> Value {
        json!({"status": status, "alerts": [{"status": status, "labels": {"alertname": "Watchdog", "severity": "none"}}]})
    }

    fn lines(p: &std::path::Path) -> Vec<Value> {
        std::fs::read_to_string(p).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    #[test]
    fn a_resolved_watchdog_writes_a_page_in_alertmanagers_shape_and_a_heartbeat_resolves_it() {
        let dir = std::env::temp_dir().join(format!("pager-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("alerts.jsonl");
        let _ = std::fs::remove_file(&out);
        let pager = Pager::new(out.clone(), Duration::from_secs(60));
        pager.receive(WATCHDOG, &watchdog("firing")).unwrap();
        pager.receive(WATCHDOG, &watchdog("resolved")).unwrap();
        pager.receive(WATCHDOG, &watchdog("firing")).unwrap();
        let l = lines(&out);
        let receivers: Vec<&str> = l.iter().map(|v| v["receiver"].as_str().unwrap()).collect();
        assert_eq!(receivers, ["watchdog", "watchdog", "page", "watchdog", "page"]);
        let (down, up) = (&l[2]["notification"], &l[4]["notification"]);
        assert_eq!(
            (&down["status"], &down["alerts"][0]["labels"]["alertname"]),
            (&json!("firing"), &json!(ALERTING_DOWN))
        );
        assert!(down["alerts"][0]["annotations"]["description"].as_str().unwrap().contains("Prometheus stopped"));
        assert_eq!(up["status"], "resolved");
        assert!(pager.status()["alerting_down"].is_null());
        assert!(!receiver_ok("../x") && !receiver_ok("Page") && receiver_ok("page"));
    }
}
