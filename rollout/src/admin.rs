//! The controller's admin listener: `/metrics`, the rollout console (`/`, the files
//! scripts/build-console.sh builds) and its API (`/api/...`). Reads are open, on loopback by
//! default; every write needs the bearer token, compared in constant time, and leaves an
//! audit line (who, what, before, after) in the rollout's event log. No cookies are set or
//! read, so another site's page cannot write through a browser (no CSRF); on a loopback
//! listener, requests naming any other host are refused (no DNS rebinding).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, Path as UrlPath, Request, State as Shared};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use switchyard_policy::Config;
use switchyard_runtime::now_ms;
use switchyard_runtime::tail::{Follow, last_lines};

use crate::apply::{in_force_at, put_in_force};
use crate::command::{command, open_store};
use crate::console::{self, Sources};
use crate::error::{Error, TokenError};
use crate::judge::State;
use crate::metrics::Metrics;
use crate::store::{Saved, Target, default_metrics_path};
use crate::view::{Keys, Watch};
use switchyard_deploy::Policy;
use switchyard_deploy::apply::check_recorded;
use switchyard_deploy::audit::{Actor, Via, bounded, changes};

#[derive(clap::Args)]
pub struct AdminArgs {
    /// The admin listener, HOST:PORT: `/metrics`, the console at `/` and its API. Keep it on
    /// loopback (reach it through an SSH tunnel or `kubectl port-forward`): reads are open.
    #[arg(long, alias = "metrics-addr", env = "SWITCHYARD_ROLLOUT_ADMIN")]
    pub admin_addr: Option<SocketAddr>,
    /// The bearer token every write needs, read from this file (at least 16 characters).
    /// Without it one is generated, printed, and written to STATE_DIR/admin-token (mode 0600).
    #[arg(long, env = "SWITCHYARD_ADMIN_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// The console's built files (scripts/build-console.sh writes them).
    #[arg(long, env = "SWITCHYARD_CONSOLE_DIR", default_value = "target/console")]
    console_dir: PathBuf,
    /// While no rollout is recorded, the console shows and edits this policy file...
    #[arg(long)]
    policy: Option<PathBuf>,
    /// ...put in force in the Envoy running this bootstrap (a rollout's own target wins).
    #[arg(long)]
    bootstrap: Option<PathBuf>,
    #[arg(long, default_value = "target/wasm32-wasip1/wasm-release/switchyard_filter.wasm")]
    wasm: PathBuf,
    #[arg(long, env = "SWITCHYARD_ENVOY_ADMIN", default_value = "127.0.0.1:9901")]
    envoy_admin: String,
    /// The collector, HOST:PORT: the shadow's disagreement (a rollout's own wins).
    #[arg(long, env = "SWITCHYARD_COLLECTOR")]
    collector: Option<String>,
    /// The drift monitor, HOST:PORT: drift per column, from its `/metrics`.
    #[arg(long, env = "SWITCHYARD_MONITOR")]
    monitor: Option<String>,
    /// The collector's samples file: the recent sticky keys the preview moves.
    #[arg(long)]
    samples: Option<PathBuf>,
}

/// Everything a write may change, as the body's size bound: a policy is a few KiB.
const MAX_BODY: usize = 1 << 20;
/// The view is refreshed this often (the page polls as often).
const REFRESH: Duration = Duration::from_secs(1);
/// Events shown in the console's history.
const HISTORY_EVENTS: usize = 30;
/// A samples line longer than this is skipped: no sticky key is worth more.
const MAX_SAMPLE_LINE: usize = 1 << 20;
/// At most about this much of the samples file a look (a fast stream is read at this pace,
/// behind it if need be, rather than holding up the view)...
const LOOK_BYTES: usize = 4 << 20;
/// ...read this many lines at a time.
const LOOK_LINES: usize = 256;

struct Admin {
    dir: PathBuf,
    token: String,
    console: PathBuf,
    loopback: bool,
    /// Where to look and act while no rollout is recorded.
    fallback: Target,
    monitor: Option<String>,
    samples: Option<PathBuf>,
    metrics: Metrics,
    live: Mutex<Value>,
    keys: Mutex<Keys>,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Binds the admin listener and serves it (and refreshes the view) in the background.
pub async fn serve(dir: &Path, args: AdminArgs, metrics: Metrics) -> Result<(), Error> {
    let Some(addr) = args.admin_addr else { return Ok(()) };
    let (token, told) = token(dir, args.token_file.as_deref())?;
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| Error::Listen { addr, source })?;
    let bound = listener.local_addr()?;
    let admin = Arc::new(Admin {
        dir: dir.to_owned(),
        token,
        console: args.console_dir,
        loopback: bound.ip().is_loopback(),
        fallback: Target {
            policy: args.policy,
            bootstrap: args.bootstrap,
            wasm: args.wasm,
            envoy_admin: args.envoy_admin,
            metrics_path: default_metrics_path(),
            collector: args.collector,
        },
        monitor: args.monitor,
        samples: args.samples,
        metrics,
        live: Mutex::new(json!({"ts_ms": 0, "problems": ["starting"]})),
        keys: Mutex::new(Keys::default()),
    });
    crate::say_line!("switchyard-rollout: console on http://{bound}/ (metrics on http://{bound}/metrics)");
    crate::say_line!("switchyard-rollout: {told}");
    if !admin.loopback {
        eprintln!(
            "switchyard-rollout: the admin listener {bound} is not on loopback: anyone who reaches it reads the console"
        );
    }
    if !console::built(&admin.console) {
        eprintln!(
            "switchyard-rollout: no console in {} (scripts/build-console.sh builds it): the API is served without it",
            admin.console.display()
        );
    }
    let app = axum::Router::new()
        .route("/metrics", get(metrics_text))
        .route("/api/state", get(state))
        .route("/api/policy", post(apply_policy))
        .route("/api/rollout/{action}", post(rollout_command))
        .fallback(get(asset))
        .layer(middleware::from_fn(console::headers))
        .layer(middleware::from_fn_with_state(admin.clone(), guard))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(admin.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await;
    });
    tokio::spawn(refresh(admin));
    Ok(())
}

/// The token from `file`, or a new one written to the state directory: (token, what to say).
fn token(dir: &Path, file: Option<&Path>) -> Result<(String, String), TokenError> {
    if let Some(file) = file {
        let text =
            std::fs::read_to_string(file).map_err(|source| TokenError::Unreadable { path: file.to_owned(), source })?;
        let token = text.trim().to_owned();
        if token.len() < 16 || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TokenError::Weak(file.to_owned()));
        }
        return Ok((token, format!("writes need the bearer token in {}", file.display())));
    }
    let mut bytes = [0u8; 24];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").map_err(|source| TokenError::Random { what: "open", source })?,
        &mut bytes,
    )
    .map_err(|source| TokenError::Random { what: "read", source })?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let path = dir.join("admin-token");
    std::fs::create_dir_all(dir).map_err(|source| TokenError::Write {
        what: "create",
        path: dir.to_owned(),
        source,
    })?;
    let write = || -> std::io::Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let _ = std::fs::remove_file(&path);
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
        f.write_all(format!("{token}\n").as_bytes())
    };
    write().map_err(|source| TokenError::Write { what: "write", path: path.clone(), source })?;
    Ok((token.clone(), format!("writes need `Authorization: Bearer {token}` (also in {})", path.display())))
}

/// The one mapping of the API's failures to HTTP: a status and `{"error": ...}`.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        console::refusal(self.0, self.1)
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> ApiError {
        ApiError(StatusCode::BAD_REQUEST, e.body_text())
    }
}

fn conflict(e: impl Into<Error>) -> ApiError {
    ApiError(StatusCode::CONFLICT, e.into().to_string())
}

/// Every request: the host check (the page's headers are `console::headers`).
async fn guard(Shared(admin): Shared<Arc<Admin>>, req: Request, next: Next) -> Response {
    if admin.loopback {
        let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
        if !loopback_host(host) {
            return ApiError(StatusCode::FORBIDDEN, format!("host '{host}' is not this loopback listener"))
                .into_response();
        }
    }
    next.run(req).await
}

/// `localhost`, `127.x.y.z` or `[::1]`, with or without a port.
fn loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The bearer token, or 401.
fn authorize(admin: &Admin, headers: &HeaderMap) -> Result<(), ApiError> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(t) if bool::from(t.as_bytes().ct_eq(admin.token.as_bytes())) => Ok(()),
        Some(_) => Err(ApiError(StatusCode::UNAUTHORIZED, "the bearer token is wrong: nothing was changed".into())),
        None => Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "writes need `Authorization: Bearer TOKEN` (the token switchyard-rollout run printed): nothing was changed"
                .into(),
        )),
    }
}

/// Who wrote, for the audit line: the name the console was given (bounded, printable) and
/// where the request came from.
fn who(peer: SocketAddr, actor: Option<&str>) -> Value {
    json!({"actor": actor.map_or_else(|| "anonymous".to_owned(), bounded), "peer": peer.to_string(), "auth": "bearer"})
}

/// OpenMetrics, as every Switchyard service serves it.
async fn metrics_text(Shared(admin): Shared<Arc<Admin>>) -> Response {
    match admin.metrics.encode() {
        Ok(text) => ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text)
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn state(Shared(admin): Shared<Arc<Admin>>) -> Json<Value> {
    let mut v = locked(&admin.live).clone();
    v["sticky_points"] = locked(&admin.keys).points();
    Json(v)
}

async fn asset(Shared(admin): Shared<Arc<Admin>>, uri: Uri) -> Response {
    console::asset(&admin.console, &uri).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyWrite {
    policy: String,
    #[serde(default)]
    actor: Option<String>,
}

/// Puts an edited policy in force: validated again here (the page's check is a courtesy),
/// refused while a running rollout owns the weights it changes, audited.
async fn apply_policy(
    Shared(admin): Shared<Arc<Admin>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Json<PolicyWrite>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    authorize(&admin, &headers)?;
    let Json(write) = body?;
    let policy = Policy::parse(write.policy).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
    // The lock for the whole write: the controller's tick neither interleaves nor undoes it.
    let store = open_store(&admin.dir).await.map_err(conflict)?;
    let saved = store.load().map_err(conflict)?;
    let target = saved.as_ref().map_or(&admin.fallback, |s| &s.target);
    let current = in_force_at(target).await.map_err(conflict)?;
    let (old, new) = (current.config(), policy.config());
    if let Some(Saved { state: st, .. }) = saved.as_ref().filter(|s| s.state.phase.is_active()) {
        owned_weights(st, old, new).map_err(conflict)?;
    }
    if old == new {
        return Ok(Json(json!({"changed": false, "message": "that policy is already in force"})));
    }
    let actor = Actor::new(write.actor.as_deref().unwrap_or("anonymous"), Via::Console);
    let version =
        put_in_force(target, new, &actor).await.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
    let (before, after) = changes(Some(&current), &policy);
    store
        .event(&json!({
            "ts_ms": now_ms(),
            "what": "policy-apply",
            "who": who(peer, write.actor.as_deref()),
            "before": before,
            "after": after,
            "filter_config": version,
        }))
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("applied, but not audited: {e}")))?;
    Ok(Json(json!({"changed": true, "message": format!("in force (filter config {version})")})))
}

/// A running rollout sets its model's weights at every step: an edit of them would be undone.
fn owned_weights(st: &State, old: &Config, new: &Config) -> Result<(), Error> {
    let weights = |c: &Config| {
        c.models.get(&st.spec.model).map(|m| m.versions.iter().map(|v| (v.name.clone(), v.weight)).collect::<Vec<_>>())
    };
    if weights(old) != weights(new) {
        return Err(Error::OwnsWeights {
            model: st.spec.model.clone(),
            canary: st.spec.canary.clone(),
            phase: st.phase.name(),
        });
    }
    Ok(())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CommandWrite {
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    actor: Option<String>,
}

/// Promote, pause, resume or abort the recorded rollout, as the CLI's commands do.
async fn rollout_command(
    Shared(admin): Shared<Arc<Admin>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    UrlPath(action): UrlPath<String>,
    headers: HeaderMap,
    body: Result<Json<CommandWrite>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    authorize(&admin, &headers)?;
    let Json(w) = body?;
    let who = Some(who(peer, w.actor.as_deref()));
    let reason = w.reason.filter(|r| !r.trim().is_empty()).map(|r| r.chars().take(200).collect::<String>());
    let dir = admin.dir.as_path();
    let said = match action.as_str() {
        "pause" => command(dir, State::pause, "pause", who).await,
        "resume" => command(dir, |s| s.resume(now_ms()), "resume", who).await,
        "promote" => command(dir, State::promote, "promote", who).await,
        "abort" => {
            let reason = reason.unwrap_or_else(|| "aborted from the console".into());
            command(dir, |s| s.abort_by_hand(&reason), "abort", who).await
        }
        _ => {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("no command '{action}': pause, resume, promote or abort"),
            ));
        }
    };
    said.map(|message| Json(json!({"message": message}))).map_err(conflict)
}

/// Refreshes the view every second, for as long as the controller runs.
async fn refresh(admin: Arc<Admin>) {
    let mut watch = Watch::default();
    // The first look starts near the end: recent keys, not the file's whole history.
    let mut samples = admin.samples.clone().map(|path| Follow::new(path, MAX_SAMPLE_LINE).near_end(1 << 20));
    loop {
        let started = Instant::now();
        let v = look(&admin, &mut watch, samples.as_mut()).await;
        *locked(&admin.live) = v;
        tokio::time::sleep(REFRESH.saturating_sub(started.elapsed())).await;
    }
}

/// One look at everything the console shows; what could not be read is named in `problems`.
async fn look(admin: &Admin, watch: &mut Watch, samples: Option<&mut Follow>) -> Value {
    let mut problems = Vec::new();
    let saved = match open_store(&admin.dir).await {
        Ok(store) => store.load().unwrap_or_else(|e| {
            problems.push(e.to_string());
            None
        }),
        Err(e) => {
            problems.push(e.to_string());
            None
        }
    };
    let target = saved.as_ref().map_or(&admin.fallback, |s| &s.target);
    let in_force = match in_force_at(target).await {
        Ok(p) => Some(p),
        Err(e) => {
            problems.push(format!("the policy in force: {e}"));
            None
        }
    };
    // A policy in force that no recorded change put there was changed outside the tools.
    let unrecorded = match (&in_force, &target.bootstrap) {
        (Some(_), Some(b)) => check_recorded(b).map_err(|e| problems.push(format!("audit: {e}"))).is_err(),
        _ => false,
    };
    admin.metrics.policy_unrecorded(unrecorded);
    let collector_addr = target.collector.as_ref().or(admin.fallback.collector.as_ref());
    let now = now_ms();
    let (models, policy_text) = match &in_force {
        Some(p) => {
            let sources = Sources {
                envoy: (&target.envoy_admin, &target.metrics_path),
                collector: collector_addr.map(String::as_str),
                monitor: admin.monitor.as_deref(),
            };
            let models = console::look(watch, now, p.config(), &sources, &mut problems).await;
            if let (Some(follow), Some(path)) = (samples, &admin.samples)
                && let Err(e) = read_keys(&admin.keys, p.config(), follow)
            {
                problems.push(format!("samples {}: {e}", path.display()));
            }
            (models, Value::String(in_force_text(p)))
        }
        None => (json!([]), Value::Null),
    };
    let rollout = saved.as_ref().map(|s| {
        let st = &s.state;
        json!({
            "model": st.spec.model, "canary": st.spec.canary, "stable": st.stable, "state": st.phase.name(),
            "active": st.phase.is_active(), "step": st.step, "steps": st.spec.steps.len(),
            "traffic": format!("{:?}", st.traffic()), "decision": st.decision, "reason": st.reason,
        })
    });
    json!({
        "ts_ms": now,
        "problems": problems,
        "rollout": rollout,
        "events": recent_events(&admin.dir.join("events.jsonl")),
        "models": models,
        "history": serde_json::to_value(watch.history()).unwrap_or_default(),
        "policy": policy_text,
        "sources": {
            "envoy": target.envoy_admin, "collector": collector_addr,
            "monitor": admin.monitor, "samples": admin.samples,
        },
    })
}

fn in_force_text(p: &switchyard_deploy::Policy) -> String {
    p.text().to_owned()
}

/// Takes the sticky keys from what was appended to the samples file since the last look.
fn read_keys(keys: &Mutex<Keys>, policy: &Config, follow: &mut Follow) -> std::io::Result<()> {
    let mut keys = locked(keys);
    let mut bytes = 0;
    loop {
        let polled = follow.poll(LOOK_LINES, |line| {
            bytes += line.len();
            keys.add_lines(policy, line);
        })?;
        if polled.lines < LOOK_LINES || bytes >= LOOK_BYTES {
            return Ok(());
        }
    }
}

/// The last events of the rollout's log, newest last.
fn recent_events(path: &Path) -> Value {
    let text = last_lines(path, 64 * 1024).unwrap_or_default();
    let lines: Vec<Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    lines.into_iter().rev().take(HISTORY_EVENTS).rev().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_hosts_pass_the_host_check() {
        for ok in ["127.0.0.1:9950", "localhost:9950", "LOCALHOST", "[::1]:9950", "127.1.2.3"] {
            assert!(loopback_host(ok), "{ok}");
        }
        for bad in ["evil.example:9950", "10.0.0.1:9950", "", "localhost.evil.example", "[fe80::1]:80"] {
            assert!(!loopback_host(bad), "{bad}");
        }
    }

    #[test]
    fn sticky_keys_are_read_from_near_the_samples_end_then_as_they_are_appended() {
        use std::io::Write as _;
        let dir = std::env::temp_dir().join(format!("switchyard-rollout-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let path = dir.join("samples.jsonl");
        let line = |user: &str| json!({"model": "a", "request": {"headers": [["x-user", user]]}}).to_string() + "\n";
        // An old key more than the first look's reach before the end is not read.
        let old = line("old") + &" ".repeat(1 << 20) + "\n";
        std::fs::write(&path, old + &line("alice") + &line("bob")).unwrap_or_else(|e| panic!("{e}"));
        let policy = Config::parse(
            json!({"models": {"a": {"versions": [{"name": "v1", "cluster": "a-v1", "weight": 1}], "sticky": {"header": "x-user"}}}})
                .to_string()
                .as_bytes(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let keys = Mutex::new(Keys::default());
        let mut follow = Follow::new(path.clone(), MAX_SAMPLE_LINE).near_end(1 << 20);
        let points = |keys: &Mutex<Keys>| locked(keys).points()["a"].as_array().map_or(0, Vec::len);
        read_keys(&keys, &policy, &mut follow).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(points(&keys), 2);
        let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap_or_else(|e| panic!("{e}"));
        f.write_all((line("carol") + &line("alice")).as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        read_keys(&keys, &policy, &mut follow).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(points(&keys), 3, "alice is counted once");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
