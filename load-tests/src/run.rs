//! The generator: runs a plan's phases back to back on one thread.
//!
//! Open-loop phases send each request at its scheduled time whatever the server does, and
//! measure its latency from that *intended* time: a request that waited for a connection, or
//! behind a stalled server, shows the wait as latency instead of silently not being sent
//! (no coordinated omission). Closed-loop phases keep N clients busy (saturation).
//! Latencies go into HDR histograms (µs, 3 significant digits), per phase and per second;
//! a [`Tap`] also keeps each request's outcome, for a caller that judges them one by one.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::header::{HeaderName, HeaderValue};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::http::{Sender, connect_as, grpc_status};
use crate::payload::{Body, GrpcTarget, HeaderDist, Mix, Mixes, Rng};
use crate::report::{Latency, PhaseReport, Report, SecondReport, Stats};
use crate::scenario::{Load, Scenario};
use crate::schedule::{Arrivals, Segment, rate_at};

/// Everything a run needs, payloads already built.
pub struct Plan {
    pub name: String,
    pub addr: String,
    pub path: String,
    /// POST the phase's bodies; GET `path` when false.
    pub post: bool,
    /// gRPC `ModelInfer` calls over HTTP/2 (the bodies are gRPC frames); `path` is unused.
    pub grpc: bool,
    pub timeout: Duration,
    pub max_connections: usize,
    /// A request sent more than this after its scheduled time counts as late.
    pub late_after: Duration,
    pub seed: u64,
    pub phases: Vec<PlanPhase>,
    pub progress: bool,
    /// A caller's line into the run: every request's outcome, and an early end.
    pub tap: Option<Tap>,
}

pub struct PlanPhase {
    pub name: String,
    pub duration: Duration,
    pub load: Load,
    pub mix: Mix,
    pub headers: Vec<HeaderDist>,
}

impl Plan {
    /// A one-phase plan: `load` for `duration`, the same body every time.
    pub fn simple(addr: &str, path: &str, body: Option<Body>, load: Load, duration: Duration) -> Plan {
        let post = body.is_some();
        let mix = Mix::single(body.unwrap_or_else(Body::empty));
        let phase = PlanPhase { name: "main".into(), duration, load, mix, headers: Vec::new() };
        Plan::phases(addr, path, post, vec![phase])
    }

    /// A plan of `phases` with the defaults of the command line.
    pub fn phases(addr: &str, path: &str, post: bool, phases: Vec<PlanPhase>) -> Plan {
        Plan {
            name: String::new(),
            addr: addr.to_owned(),
            path: path.to_owned(),
            post,
            grpc: false,
            timeout: Duration::from_secs(30),
            max_connections: 1024,
            late_after: DEFAULT_LATE_AFTER,
            seed: 1,
            phases,
            progress: false,
            tap: None,
        }
    }
}

/// Builds the payloads and headers of every phase against the live model metadata.
pub async fn prepare(sc: &Scenario, addr: &str, late_after: Duration, progress: bool) -> anyhow::Result<Plan> {
    let (path, inputs) = match (&sc.model, &sc.get) {
        (_, Some(get)) => (get.clone(), Vec::new()),
        (Some(m), None) => {
            let inputs = crate::metadata::inputs_of(addr, m, sc.version.as_deref(), sc.grpc).await?;
            let base = match &sc.version {
                Some(v) => format!("/v2/models/{m}/versions/{v}"),
                None => format!("/v2/models/{m}"),
            };
            let path = if sc.grpc { switchyard_oip::MODEL_INFER_PATH.to_owned() } else { format!("{base}/infer") };
            (path, inputs)
        }
        (None, None) => anyhow::bail!("the scenario names neither a model nor a path"),
    };
    let grpc = sc.grpc.then(|| GrpcTarget { model: sc.model.clone().unwrap_or_default(), version: sc.version.clone() });
    let mut mixes = Mixes::new(&inputs, sc.seed, grpc);
    let mut phases = Vec::new();
    for p in &sc.phases {
        let drift = sc.drift.as_ref().filter(|_| p.drifted);
        let mix = if sc.get.is_some() {
            Mix::single(Body::empty())
        } else {
            mixes.build(&p.payload, drift).with_context(|| format!("phase '{}'", p.name))?
        };
        let headers = p.header.iter().map(HeaderDist::new).collect::<anyhow::Result<_>>()?;
        phases.push(PlanPhase { name: p.name.clone(), duration: p.duration, load: p.load.clone(), mix, headers });
    }
    Ok(Plan {
        name: sc.name.clone(),
        addr: addr.to_owned(),
        path,
        post: sc.get.is_none(),
        grpc: sc.grpc,
        timeout: sc.timeout,
        max_connections: sc.max_connections,
        late_after,
        seed: sc.seed,
        phases,
        progress,
        tap: None,
    })
}

/// Closed loop: `clients` concurrent clients for `duration`, the same request each time.
pub async fn closed(
    addr: &str,
    path: &str,
    body: Option<Body>,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<Report> {
    execute(Plan::simple(addr, path, body, Load::Closed(clients), duration)).await
}

/// Open loop at a constant `rate` for `duration`, the same request each time.
pub async fn open(addr: &str, path: &str, body: Option<Body>, rate: f64, duration: Duration) -> anyhow::Result<Report> {
    let load = Load::Open(vec![Segment::constant(rate, duration.as_secs_f64())]);
    execute(Plan::simple(addr, path, body, load, duration)).await
}

/// `plan` with header `name: value` on every request (a bearer token, say).
pub fn with_header(mut plan: Plan, name: &str, value: &str) -> anyhow::Result<Plan> {
    let h = crate::scenario::HeaderFile::constant(name, value);
    for p in &mut plan.phases {
        p.headers.push(HeaderDist::new(&h)?);
    }
    Ok(plan)
}

/// Sends leave within tens of microseconds of their schedule on an idle machine (see `pacer`);
/// 1 ms leaves room for a busy one before calling a send late.
pub const DEFAULT_LATE_AFTER: Duration = Duration::from_millis(1);

const HIGHEST_US: u64 = 3_600_000_000;

fn histogram(sigfig: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_US, sigfig).expect("constant bounds within hdrhistogram's limits")
}

/// Why a request got no HTTP answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cause {
    Connect,
    Timeout,
    Reset,
    Io,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Connect => "connect",
            Cause::Timeout => "timeout",
            Cause::Reset => "reset",
            Cause::Io => "io",
        }
    }
}

fn classify(e: &hyper::Error) -> Cause {
    if e.is_incomplete_message() || e.is_canceled() || e.is_closed() {
        return Cause::Reset;
    }
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            return match io.kind() {
                ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => Cause::Reset,
                _ => Cause::Io,
            };
        }
        src = s.source();
    }
    Cause::Io
}

struct PhaseRec {
    sent: u64,
    ok: u64,
    rows: u64,
    late: u64,
    statuses: BTreeMap<u16, u64>,
    causes: BTreeMap<Cause, u64>,
    latency: Histogram<u64>,
    service: Histogram<u64>,
    /// When the phase's last request finished, from the run's start.
    last_done: Duration,
    /// When its first and last failed requests (non-2xx or no answer) ended, from the start.
    first_error: Option<Duration>,
    last_error: Option<Duration>,
}

impl PhaseRec {
    fn new() -> Self {
        PhaseRec {
            sent: 0,
            ok: 0,
            rows: 0,
            late: 0,
            statuses: BTreeMap::new(),
            causes: BTreeMap::new(),
            latency: histogram(3),
            service: histogram(3),
            last_done: Duration::ZERO,
            first_error: None,
            last_error: None,
        }
    }
}

struct SecondRec {
    sent: u64,
    ok: u64,
    errors: u64,
    latency: Histogram<u64>,
}

/// Everything measured, updated by each request as it completes.
pub struct Recorder {
    phases: Vec<PhaseRec>,
    /// By the second of the intended send time.
    seconds: Vec<SecondRec>,
    lag: Histogram<u64>,
    late_after_us: u64,
    /// When a [`Tap`] ended the run, from its start: the phases count up to it.
    stopped_at: Option<Duration>,
}

/// One finished request, in offsets from the run's start.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub phase: usize,
    pub intended: Duration,
    /// When it left (it may have waited for a connection); None if it never did.
    pub sent: Option<Duration>,
    pub done: Duration,
    pub result: Result<u16, Cause>,
    pub rows: usize,
    /// The value of the response header a [`Tap`] asked for, when the answer carried it.
    pub header: Option<String>,
}

/// A caller's line into a running plan, for one that judges requests one by one (the chaos
/// drills): it keeps every request's [`Outcome`], with the value of one response header, and
/// ends the run early. Clones share it.
#[derive(Clone, Debug, Default)]
pub struct Tap(Arc<TapState>);

#[derive(Debug, Default)]
struct TapState {
    header: Option<HeaderName>,
    stop: AtomicBool,
    start: OnceLock<std::time::Instant>,
    kept: Mutex<Vec<Outcome>>,
}

impl Tap {
    /// A tap that keeps the value of the response header `name` in each outcome.
    pub fn keeping(name: &str) -> anyhow::Result<Tap> {
        let header = HeaderName::from_bytes(name.as_bytes()).with_context(|| format!("header name '{name}'"))?;
        Ok(Tap(Arc::new(TapState { header: Some(header), ..TapState::default() })))
    }

    /// Ends the run: nothing more is scheduled, and the requests in flight finish (and are
    /// kept). Phases not reached are skipped; the report counts the time actually run.
    pub fn stop(&self) {
        self.0.stop.store(true, Ordering::Relaxed);
    }

    pub fn stopped(&self) -> bool {
        self.0.stop.load(Ordering::Relaxed)
    }

    /// When the run started: its outcomes' offsets count from this. `None` until it has.
    pub fn start(&self) -> Option<std::time::Instant> {
        self.0.start.get().copied()
    }

    /// The outcomes kept so far, in the order the requests finished, taken out of the tap.
    pub fn take(&self) -> Vec<Outcome> {
        std::mem::take(&mut *self.0.kept.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    fn keep(&self, o: Outcome) {
        self.0.kept.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(o);
    }
}

fn stopped(tap: Option<&Tap>) -> bool {
    tap.is_some_and(Tap::stopped)
}

fn us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).clamp(1, HIGHEST_US)
}

impl Recorder {
    pub fn new(phases: usize, late_after: Duration) -> Self {
        Recorder {
            phases: (0..phases).map(|_| PhaseRec::new()).collect(),
            seconds: Vec::new(),
            lag: histogram(3),
            late_after_us: u64::try_from(late_after.as_micros()).unwrap_or(u64::MAX),
            stopped_at: None,
        }
    }

    pub fn record(&mut self, o: &Outcome) {
        let Some(p) = self.phases.get_mut(o.phase) else { return };
        let sec = o.intended.as_secs() as usize;
        if self.seconds.len() <= sec {
            self.seconds.resize_with(sec + 1, || SecondRec { sent: 0, ok: 0, errors: 0, latency: histogram(2) });
        }
        let Some(s) = self.seconds.get_mut(sec) else { return };
        p.sent += 1;
        s.sent += 1;
        p.last_done = p.last_done.max(o.done);
        let lag = o.sent.unwrap_or(o.done).saturating_sub(o.intended);
        let lag_us = u64::try_from(lag.as_micros()).unwrap_or(u64::MAX);
        self.lag.saturating_record(lag_us.max(1));
        if lag_us > self.late_after_us {
            p.late += 1;
        }
        if !matches!(o.result, Ok(200..300)) {
            p.first_error = Some(p.first_error.map_or(o.done, |f| f.min(o.done)));
            p.last_error = Some(p.last_error.map_or(o.done, |l| l.max(o.done)));
        }
        match o.result {
            Ok(status) if (200..300).contains(&status) => {
                p.ok += 1;
                s.ok += 1;
                p.rows += o.rows as u64;
                let latency = us(o.done.saturating_sub(o.intended));
                p.latency.saturating_record(latency);
                s.latency.saturating_record(latency);
                p.service.saturating_record(us(o.done.saturating_sub(o.sent.unwrap_or(o.intended))));
            }
            Ok(status) => {
                *p.statuses.entry(status).or_default() += 1;
                s.errors += 1;
            }
            Err(cause) => {
                *p.causes.entry(cause).or_default() += 1;
                s.errors += 1;
            }
        }
    }
}

/// A phase record's figures over `seconds`.
fn stats_of(p: &PhaseRec, seconds: f64) -> Stats {
    let errors = p.statuses.values().sum::<u64>() + p.causes.values().sum::<u64>();
    Stats {
        sent: p.sent,
        ok: p.ok,
        errors,
        by_status: p.statuses.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        by_cause: p.causes.iter().map(|(k, v)| (k.as_str().to_owned(), *v)).collect(),
        late: p.late,
        rows: p.rows,
        seconds,
        throughput: p.ok as f64 / seconds.max(1e-9),
        rows_per_second: p.rows as f64 / seconds.max(1e-9),
        latency_ms: Latency::of(&p.latency),
        service_ms: Latency::of(&p.service),
        first_error_ms: p.first_error.map(|d| d.as_secs_f64() * 1e3),
        last_error_ms: p.last_error.map(|d| d.as_secs_f64() * 1e3),
    }
}

struct Shared {
    addr: String,
    timeout: Duration,
    grpc: bool,
    pool: Mutex<Vec<Sender>>,
    slots: Arc<tokio::sync::Semaphore>,
    rec: Mutex<Recorder>,
    start: Instant,
    started: AtomicU64,
    finished: AtomicU64,
    tap: Option<Tap>,
}

impl Shared {
    fn rec(&self) -> MutexGuard<'_, Recorder> {
        // A poisoned lock only means a request task panicked mid-record; the counts stay usable.
        self.rec.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    fn pool(&self) -> MutexGuard<'_, Vec<Sender>> {
        self.pool.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn request(plan: &Plan, phase: &PlanPhase, rng: &mut Rng) -> Result<(Request<Full<Bytes>>, usize), hyper::http::Error> {
    if plan.grpc {
        let body = phase.mix.pick(rng).cloned().unwrap_or_else(Body::empty);
        let mut req = crate::http::grpc_request(&plan.addr, "ModelInfer", body.bytes)?;
        for h in &phase.headers {
            if let Some((k, v)) = h.draw(rng) {
                req.headers_mut().insert(k, v);
            }
        }
        return Ok((req, body.rows));
    }
    let mut b = Request::builder()
        .method(if plan.post { "POST" } else { "GET" })
        .uri(plan.path.as_str())
        .header(hyper::header::HOST, plan.addr.as_str());
    for h in &phase.headers {
        if let Some((k, v)) = h.draw(rng) {
            b = b.header(k, v);
        }
    }
    if !plan.post {
        return Ok((b.body(Full::new(Bytes::new()))?, 0));
    }
    let body = phase.mix.pick(rng).cloned().unwrap_or_else(Body::empty);
    b = match body.header_len {
        Some(n) => b
            .header(HeaderName::from_static("inference-header-content-length"), HeaderValue::from(n))
            .header(hyper::header::CONTENT_TYPE, "application/octet-stream"),
        None => b.header(hyper::header::CONTENT_TYPE, "application/json"),
    };
    Ok((b.body(Full::new(body.bytes))?, body.rows))
}

/// Sends one request (on a pooled connection or a new one) and records what happened.
async fn send(sh: Arc<Shared>, phase: usize, intended: Instant, req: Request<Full<Bytes>>, rows: usize) {
    sh.started.fetch_add(1, Ordering::Relaxed);
    let at = |t: Instant| t.saturating_duration_since(sh.start);
    let (sent, result, header) = exchange(&sh, req).await;
    let o =
        Outcome { phase, intended: at(intended), sent: sent.map(at), done: at(Instant::now()), result, rows, header };
    sh.rec().record(&o);
    if let Some(tap) = &sh.tap {
        tap.keep(o);
    }
    sh.finished.fetch_add(1, Ordering::Relaxed);
}

/// When the request left, its status (or why none came), and the tapped header's value.
type Exchanged = (Option<Instant>, Result<u16, Cause>, Option<String>);

async fn exchange(sh: &Shared, req: Request<Full<Bytes>>) -> Exchanged {
    // Waiting for a connection slot counts towards latency: the clock started at `intended`.
    let Ok(_slot) = sh.slots.acquire().await else { return (None, Err(Cause::Io), None) };
    let pooled = {
        let mut pool = sh.pool();
        std::iter::from_fn(|| pool.pop()).find(|s| !s.is_closed())
    };
    let mut sender = match pooled {
        Some(s) => s,
        None => match tokio::time::timeout(sh.timeout, connect_as(&sh.addr, sh.grpc)).await {
            Ok(Ok(s)) => s,
            Ok(Err(_)) => return (None, Err(Cause::Connect), None),
            Err(_) => return (None, Err(Cause::Timeout), None),
        },
    };
    let sent = Instant::now();
    let tapped = sh.tap.as_ref().and_then(|t| t.0.header.as_ref());
    let answer = tokio::time::timeout(sh.timeout, async {
        let resp = sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let value =
            tapped.and_then(|h| resp.headers().get(h)).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let headers = (sh.grpc && status == 200).then(|| resp.headers().clone());
        let collected = resp.into_body().collect().await?;
        // A gRPC call's outcome is its grpc-status, counted as the HTTP status it stands for
        // (as the proxy counts it); an HTTP 200 without one was cut off.
        let status = match headers {
            Some(h) => grpc_status(&h, collected.trailers()).map_or(502, switchyard_policy::grpc::http_status),
            None => status,
        };
        Ok::<_, hyper::Error>((status, value))
    })
    .await;
    match answer {
        Ok(Ok((status, value))) => {
            sh.pool().push(sender);
            (Some(sent), Ok(status), value)
        }
        Ok(Err(e)) => (Some(sent), Err(classify(&e)), None),
        // The connection is mid-exchange: dropping it closes it.
        Err(_) => (Some(sent), Err(Cause::Timeout), None),
    }
}

/// Paces an open-loop phase from its own OS thread: each due time is handed over when it
/// comes. Tokio's timer wheel ticks in whole milliseconds, which would put up to 1 ms of error
/// into every latency measured from the intended time; a sleeping thread wakes within tens of
/// microseconds, without spinning a core. If the sender falls behind, the bounded channel
/// blocks the pacer, but the due times it hands over stay the scheduled ones, so the lag shows
/// up as latency and as late sends. A stopped tap ends the phase at the next due time.
fn pacer(segments: Vec<Segment>, start: Instant, tap: Option<Tap>) -> tokio::sync::mpsc::Receiver<Instant> {
    let (tx, rx) = tokio::sync::mpsc::channel(4096);
    let start = start.into_std();
    std::thread::spawn(move || {
        for offset in Arrivals::new(segments) {
            let due = start + offset;
            let now = std::time::Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if stopped(tap.as_ref()) || tx.blocking_send(Instant::from_std(due)).is_err() {
                return;
            }
        }
    });
    rx
}

/// Runs every phase back to back and reports. Fails early when nothing listens at the address.
pub async fn execute(plan: Plan) -> anyhow::Result<Report> {
    drop(connect_as(&plan.addr, plan.grpc).await?);
    let plan = Arc::new(plan);
    let start = Instant::now();
    let sh = Arc::new(Shared {
        addr: plan.addr.clone(),
        timeout: plan.timeout,
        grpc: plan.grpc,
        pool: Mutex::new(Vec::new()),
        slots: Arc::new(tokio::sync::Semaphore::new(plan.max_connections)),
        rec: Mutex::new(Recorder::new(plan.phases.len(), plan.late_after)),
        start,
        started: AtomicU64::new(0),
        finished: AtomicU64::new(0),
        tap: plan.tap.clone(),
    });
    if let Some(tap) = &plan.tap {
        // Set once: a tap serves one run.
        let _ = tap.0.start.set(start.into_std());
    }
    let current = Arc::new(AtomicU64::new(0));
    let progress = plan.progress.then(|| tokio::spawn(progress_line(sh.clone(), phase_table(&plan), current.clone())));
    let mut rng = Rng::new(plan.seed);
    let mut tasks = JoinSet::new();
    let mut phase_start = start;
    let tap = plan.tap.as_ref();
    for (i, phase) in plan.phases.iter().enumerate() {
        if stopped(tap) {
            break;
        }
        current.store(i as u64, Ordering::Relaxed);
        let end = phase_start + phase.duration;
        match &phase.load {
            Load::Open(segments) => {
                let mut due = pacer(segments.clone(), phase_start, plan.tap.clone());
                while let Some(intended) = due.recv().await {
                    let (req, rows) = request(&plan, phase, &mut rng)?;
                    tasks.spawn(send(sh.clone(), i, intended, req, rows));
                    // Reap finished tasks as we go, so memory stays flat on long runs.
                    while tasks.try_join_next().is_some() {}
                }
                if !stopped(tap) {
                    tokio::time::sleep_until(end).await;
                }
            }
            Load::Closed(clients) => {
                let mut workers = JoinSet::new();
                for w in 0..*clients {
                    let (sh, plan) = (sh.clone(), plan.clone());
                    let mut rng = Rng::new(plan.seed ^ ((i as u64) << 32 | w as u64));
                    workers.spawn(async move {
                        let Some(phase) = plan.phases.get(i) else { return Ok(()) };
                        while Instant::now() < end && !stopped(plan.tap.as_ref()) {
                            let (req, rows) = request(&plan, phase, &mut rng)?;
                            send(sh.clone(), i, Instant::now(), req, rows).await;
                        }
                        Ok::<(), hyper::http::Error>(())
                    });
                }
                while let Some(w) = workers.join_next().await {
                    w??;
                }
            }
        }
        phase_start = end;
    }
    if stopped(tap) {
        sh.rec().stopped_at = Some(start.elapsed());
    }
    while tasks.join_next().await.is_some() {}
    if let Some(p) = progress {
        p.abort();
        if std::io::stderr().is_terminal() {
            eprintln!();
        }
    }
    let rec = sh.rec();
    Ok(report(&plan, &rec))
}

fn report(plan: &Plan, rec: &Recorder) -> Report {
    let mut total = PhaseRec::new();
    let mut phases = Vec::new();
    let mut start = Duration::ZERO;
    // A stopped run's phases last until the stop; the ones after it not at all.
    let ran = |start: Duration, d: Duration| rec.stopped_at.map_or(d, |s| d.min(s.saturating_sub(start)));
    for (p, r) in plan.phases.iter().zip(&rec.phases) {
        let (target_rate, concurrency) = match &p.load {
            Load::Open(_) => (p.load.mean_rate(p.duration), None),
            Load::Closed(n) => (None, Some(*n)),
        };
        let duration = ran(start, p.duration);
        // Throughput over the time the phase's answers took to arrive: past saturation they
        // trail its end, and the achieved rate falls below the target instead of hiding it.
        let span = duration.max(r.last_done.saturating_sub(start));
        start += duration;
        phases.push(PhaseReport {
            name: p.name.clone(),
            target_rate,
            concurrency,
            stats: stats_of(r, span.as_secs_f64()),
        });
        total.sent += r.sent;
        total.ok += r.ok;
        total.rows += r.rows;
        total.late += r.late;
        total.last_done = total.last_done.max(r.last_done);
        total.first_error = match (total.first_error, r.first_error) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        total.last_error = total.last_error.max(r.last_error);
        for (k, v) in &r.statuses {
            *total.statuses.entry(*k).or_default() += v;
        }
        for (k, v) in &r.causes {
            *total.causes.entry(*k).or_default() += v;
        }
        // Same bounds and precision: adding cannot fail.
        let _ = total.latency.add(&r.latency);
        let _ = total.service.add(&r.service);
    }
    let scheduled = start;
    let timeline = rec
        .seconds
        .iter()
        .enumerate()
        .map(|(t, s)| {
            let l = Latency::of(&s.latency);
            SecondReport { t, sent: s.sent, ok: s.ok, errors: s.errors, p50_ms: l.p50, p99_ms: l.p99, max_ms: l.max }
        })
        .collect();
    Report {
        scenario: plan.name.clone(),
        target: format!("{}://{}{}", if plan.grpc { "grpc" } else { "http" }, plan.addr, plan.path),
        late_after_ms: plan.late_after.as_secs_f64() * 1e3,
        total: stats_of(&total, scheduled.max(total.last_done).as_secs_f64()),
        send_lag_ms: Latency::of(&rec.lag),
        phases,
        timeline,
    }
}

struct PhaseInfo {
    name: String,
    start: Duration,
    duration: Duration,
    segments: Option<Vec<Segment>>,
}

fn phase_table(plan: &Plan) -> Vec<PhaseInfo> {
    let mut start = Duration::ZERO;
    plan.phases
        .iter()
        .map(|p| {
            let info = PhaseInfo {
                name: p.name.clone(),
                start,
                duration: p.duration,
                segments: match &p.load {
                    Load::Open(s) => Some(s.clone()),
                    Load::Closed(_) => None,
                },
            };
            start += p.duration;
            info
        })
        .collect()
}

/// A status line every second on a terminal (rewritten in place), every 5 s in a log.
async fn progress_line(sh: Arc<Shared>, phases: Vec<PhaseInfo>, current: Arc<AtomicU64>) {
    let tty = std::io::stderr().is_terminal();
    let every = if tty { 1 } else { 5 };
    let mut tick = tokio::time::interval(Duration::from_secs(every));
    tick.tick().await;
    loop {
        tick.tick().await;
        let now = sh.start.elapsed();
        let Some(p) = phases.get(current.load(Ordering::Relaxed) as usize) else { continue };
        let into = now.saturating_sub(p.start);
        let target = p
            .segments
            .as_ref()
            .map_or_else(|| "closed loop".to_owned(), |s| format!("{:.0}/s", rate_at(s, into.as_secs_f64())));
        let line = {
            let rec = sh.rec();
            let (ok, errors) = rec.phases.iter().fold((0, 0), |(o, e), r| (o + r.ok, e + r.sent - r.ok));
            // The last complete second, by intended send time.
            let last = now.as_secs().checked_sub(2).and_then(|s| rec.seconds.get(s as usize));
            let (rate, p99) = last.map_or((0, 0.0), |s| (s.ok, Latency::of(&s.latency).p99));
            format!(
                "[{:>5.1}s] {} {:.0}/{:.0}s target {target} | ok {ok} err {errors} in flight {} | last s: {rate}/s p99 {p99:.1} ms",
                now.as_secs_f64(),
                p.name,
                into.as_secs_f64().min(p.duration.as_secs_f64()),
                p.duration.as_secs_f64(),
                sh.started.load(Ordering::Relaxed).saturating_sub(sh.finished.load(Ordering::Relaxed)),
            )
        };
        let mut err = std::io::stderr().lock();
        let _ = if tty { write!(err, "\r\x1b[K{line}") } else { writeln!(err, "{line}") };
        let _ = err.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server that answers every request after `delay`, each connection on its own task,
    /// and counts the requests it saw.
    async fn slow_server(delay: Duration, stall_from: Option<(Duration, Duration)>) -> (String, Arc<AtomicU64>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let seen = Arc::new(AtomicU64::new(0));
        let seen2 = seen.clone();
        let t0 = std::time::Instant::now();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                let seen = seen2.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                        seen.fetch_add(1, Ordering::Relaxed);
                        let mut wait = delay;
                        if let Some((from, len)) = stall_from {
                            let now = t0.elapsed();
                            if now >= from && now < from + len {
                                wait += from + len - now;
                            }
                        }
                        tokio::time::sleep(wait).await;
                        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nx-version: v1\r\ncontent-length: 2\r\n\r\nok").await;
                    }
                });
            }
        });
        (addr, seen)
    }

    fn open(addr: &str, rate: f64, secs: f64) -> Plan {
        Plan::simple(addr, "/", None, Load::Open(vec![Segment::constant(rate, secs)]), Duration::from_secs_f64(secs))
    }

    #[tokio::test(flavor = "current_thread")]
    async fn requests_leave_on_time_against_a_slow_server() {
        // 200 req/s for 1 s against a server that takes 100 ms each: a closed-loop client with
        // a few connections would send far fewer; the schedule must hold.
        let (addr, seen) = slow_server(Duration::from_millis(100), None).await;
        let r = execute(open(&addr, 200.0, 1.0)).await.unwrap();
        assert_eq!(r.total.sent, 200);
        assert_eq!(r.total.ok, 200);
        assert_eq!(seen.load(Ordering::Relaxed), 200);
        assert!(r.total.latency_ms.p50 >= 100.0, "latency includes the server's 100 ms: {:?}", r.total.latency_ms);
        assert!(r.send_lag_ms.p99 < 20.0, "sends kept to the schedule: lag {:?}", r.send_lag_ms);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_stall_shows_as_latency_from_the_intended_time() {
        // One connection only: while the server stalls for 300 ms, requests queue for the
        // connection. Measured from their intended time they show the stall (the coordinated
        // omission a closed-loop tool hides); the service time alone would not.
        let (addr, _) =
            slow_server(Duration::from_millis(1), Some((Duration::from_millis(200), Duration::from_millis(300)))).await;
        let mut plan = open(&addr, 100.0, 1.0);
        plan.max_connections = 1;
        let r = execute(plan).await.unwrap();
        assert_eq!(r.total.ok, 100);
        assert!(r.total.latency_ms.max >= 250.0, "the stall is visible: {:?}", r.total.latency_ms);
        assert!(r.total.latency_ms.p90 >= 50.0, "requests behind the stall waited: {:?}", r.total.latency_ms);
        assert!(r.total.late >= 20, "requests held back by the stall are late: {}", r.total.late);
        assert!(r.total.service_ms.p50 < 20.0, "the service time hides it: {:?}", r.total.service_ms);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_tap_keeps_every_outcome_and_ends_the_run_early() {
        // A minute of 100 req/s against a server that takes 50 ms, stopped after 0.5 s.
        let (addr, seen) = slow_server(Duration::from_millis(50), None).await;
        let tap = Tap::keeping("x-version").unwrap();
        let mut plan = open(&addr, 100.0, 60.0);
        plan.tap = Some(tap.clone());
        let stopper = tap.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(500));
            stopper.stop();
        });
        let t0 = std::time::Instant::now();
        let r = execute(plan).await.unwrap();
        assert!(t0.elapsed() < Duration::from_secs(5), "stopped early: {:?}", t0.elapsed());
        let kept = tap.take();
        assert_eq!(kept.len() as u64, r.total.sent, "every request kept");
        assert_eq!(kept.len() as u64, seen.load(Ordering::Relaxed), "the ones in flight finished");
        assert!((35..=70).contains(&kept.len()), "about half a second's worth: {}", kept.len());
        for o in &kept {
            assert_eq!((o.result, o.header.as_deref()), (Ok(200), Some("v1")), "{o:?}");
            assert!(o.done >= o.intended + Duration::from_millis(50), "from the intended time: {o:?}");
        }
        assert!(tap.start().is_some_and(|s| s >= t0));
        assert!(r.total.seconds < 2.0, "the report counts the time run, not the minute planned: {}", r.total.seconds);
        assert!(tap.take().is_empty(), "taken");
    }

    #[test]
    fn histogram_accounting() {
        let mut rec = Recorder::new(2, Duration::from_millis(2));
        let ms = Duration::from_millis;
        for i in 0..100u64 {
            let intended = ms(i * 10);
            let result = match i {
                0..90 => Ok(200),
                90..95 => Ok(503),
                _ => Err(Cause::Timeout),
            };
            let lag = if i % 10 == 0 { ms(5) } else { Duration::ZERO };
            rec.record(&Outcome {
                phase: usize::from(i >= 50),
                intended,
                sent: Some(intended + lag),
                done: intended + lag + ms(i + 1),
                result,
                rows: 2,
                header: None,
            });
        }
        let plan = open("x", 1.0, 1.0);
        let mut plan2 = open("x", 1.0, 1.0);
        plan2.phases.extend(plan.phases);
        let r = report(&plan2, &rec);
        assert_eq!((r.total.sent, r.total.ok, r.total.errors, r.total.late), (100, 90, 10, 10));
        assert_eq!(r.total.by_status.get("503"), Some(&5));
        assert_eq!(r.total.by_cause.get("timeout"), Some(&5));
        assert_eq!(r.total.rows, 180);
        assert_eq!((r.phases[0].stats.sent, r.phases[1].stats.sent), (50, 50));
        // Successful latencies from the intended time are (i + 1) ms, plus 5 ms of send lag every 10th (i < 90).
        let l = r.total.latency_ms;
        assert!((l.max - 90.0).abs() < 0.1 && (l.p50 - 46.0).abs() < 1.1, "{l:?}");
        assert!((r.total.service_ms.max - 90.0).abs() < 0.1);
        assert_eq!(r.timeline.len(), 1, "all intended within the first second");
        assert_eq!(r.timeline[0].sent, 100);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_unreachable_address_is_a_clear_error() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        drop(l);
        let e = execute(open(&addr, 10.0, 0.1)).await.unwrap_err();
        assert!(format!("{e:#}").contains(&format!("cannot connect to {addr}")), "{e:#}");
    }
}
