//! Closed-loop load: `concurrency` workers, each on its own keep-alive connection, each
//! sending its next request as soon as the previous one is answered. Payloads are built once
//! from the model's metadata and reused, so the generator spends its CPU on HTTP only.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::http1;
use serde::Serialize;
use tokio::net::TcpStream;

/// Where to send and what.
#[derive(Clone, Debug)]
pub struct Target {
    /// `host:port` of the inference listener.
    pub addr: String,
    /// POST with `body`; GET (no body) when false.
    pub post: bool,
    pub path: String,
    pub body: Bytes,
    /// Set for the binary tensor data extension.
    pub header_len: Option<usize>,
}

#[derive(Clone, Debug)]
pub struct TensorMeta {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
}

impl Target {
    fn request(&self) -> Result<Request<Full<Bytes>>, hyper::http::Error> {
        if !self.post {
            return Request::get(self.path.as_str()).header("host", self.addr.as_str()).body(Full::new(Bytes::new()));
        }
        let req = Request::post(self.path.as_str()).header("host", self.addr.as_str());
        let req = match self.header_len {
            Some(n) => {
                req.header("inference-header-content-length", n).header("content-type", "application/octet-stream")
            }
            None => req.header("content-type", "application/json"),
        };
        req.body(Full::new(self.body.clone()))
    }
}

/// Reads `GET /v2/models/{m}[/versions/{v}]`.
pub async fn model_inputs(addr: &str, model: &str, version: Option<&str>) -> anyhow::Result<Vec<TensorMeta>> {
    let path = match version {
        Some(v) => format!("/v2/models/{model}/versions/{v}"),
        None => format!("/v2/models/{model}"),
    };
    let (status, body) = get(addr, &path).await?;
    if status != 200 {
        bail!("GET {path} answered {status}: {}", String::from_utf8_lossy(&body));
    }
    let v: serde_json::Value = serde_json::from_slice(&body).context("model metadata is not JSON")?;
    let inputs = v["inputs"].as_array().context("model metadata has no inputs")?;
    inputs
        .iter()
        .map(|i| {
            Ok(TensorMeta {
                name: i["name"].as_str().context("input without name")?.to_owned(),
                datatype: i["datatype"].as_str().context("input without datatype")?.to_owned(),
                shape: serde_json::from_value(i["shape"].clone()).context("input shape")?,
            })
        })
        .collect()
}

/// A deterministic pseudo-random generator (xorshift), so payloads repeat across runs.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// Builds a V2 request with `rows` rows of uniform [0, 1) FP32 data per input.
pub fn build_request(
    inputs: &[TensorMeta],
    rows: usize,
    binary: bool,
    seed: u64,
) -> anyhow::Result<(Bytes, Option<usize>)> {
    let mut rng = Rng::new(seed);
    let mut header_inputs = Vec::new();
    let mut blob = Vec::new();
    for i in inputs {
        if i.datatype != "FP32" {
            bail!("input '{}' is {}: the generator builds FP32 inputs only", i.name, i.datatype);
        }
        let mut shape = i.shape.clone();
        shape[0] = rows as i64;
        let n: i64 = shape.iter().product();
        let data: Vec<f32> = (0..n).map(|_| rng.next_f32()).collect();
        if binary {
            let size = data.len() * 4;
            blob.extend(data.iter().flat_map(|x| x.to_le_bytes()));
            header_inputs.push(serde_json::json!({"name": i.name, "datatype": "FP32", "shape": shape, "parameters": {"binary_data_size": size}}));
        } else {
            header_inputs.push(serde_json::json!({"name": i.name, "datatype": "FP32", "shape": shape, "data": data}));
        }
    }
    let mut body = serde_json::to_vec(&serde_json::json!({"inputs": header_inputs}))?;
    if !binary {
        return Ok((body.into(), None));
    }
    let header_len = body.len();
    body.extend_from_slice(&blob);
    Ok((body.into(), Some(header_len)))
}

async fn connect(addr: &str) -> anyhow::Result<http1::SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await.with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_nodelay(true)?;
    let (sender, conn) = http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

/// Sends one request and reads the whole answer; returns its status.
async fn exchange(sender: &mut http1::SendRequest<Full<Bytes>>, req: Request<Full<Bytes>>) -> anyhow::Result<u16> {
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    resp.into_body().collect().await?;
    Ok(status)
}

pub async fn get(addr: &str, path: &str) -> anyhow::Result<(u16, Bytes)> {
    let mut s = connect(addr).await?;
    let req = Request::get(path).header("host", addr).body(Full::new(Bytes::new()))?;
    let resp = s.send_request(req).await?;
    let status = resp.status().as_u16();
    Ok((status, resp.into_body().collect().await?.to_bytes()))
}

/// What one run measured.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub requests: u64,
    /// Open loop only: requests that left more than 1 ms after their scheduled time.
    pub sent_late: u64,
    /// Open loop only: percentiles of service time, from the actual send (the others are from
    /// the scheduled send time).
    pub service_p50_ms: f64,
    pub service_p99_ms: f64,
    pub ok: u64,
    /// Non-2xx answers by status, and transport failures under "io".
    pub errors: BTreeMap<String, u64>,
    pub seconds: f64,
    pub requests_per_second: f64,
    pub rows_per_second: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Sends until `requests` have been sent or `duration` has passed, whichever comes first.
pub async fn closed_loop(
    target: Target,
    concurrency: usize,
    requests: Option<u64>,
    duration: Option<Duration>,
    rows: usize,
) -> anyhow::Result<Report> {
    // Fail early and clearly when nothing listens.
    connect(&target.addr).await?;
    let budget = requests.unwrap_or(u64::MAX);
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let start = Instant::now();
    let deadline = duration.map(|d| start + d);
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (t, sent) = (target.clone(), sent.clone());
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors: BTreeMap<String, u64> = BTreeMap::new();
            let mut conn = None;
            loop {
                if sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed) >= budget
                    || deadline.is_some_and(|d| Instant::now() >= d)
                {
                    break;
                }
                let sender = match &mut conn {
                    Some(s) => s,
                    None => match connect(&t.addr).await {
                        Ok(s) => conn.insert(s),
                        Err(_) => {
                            *errors.entry("io".into()).or_default() += 1;
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    },
                };
                let Ok(req) = t.request() else {
                    break;
                };
                let t0 = Instant::now();
                let result = exchange(sender, req).await;
                match result {
                    Ok(200) => lat.push(t0.elapsed().as_secs_f64()),
                    Ok(s) => *errors.entry(s.to_string()).or_default() += 1,
                    Err(_) => {
                        *errors.entry("io".into()).or_default() += 1;
                        conn = None;
                    }
                }
            }
            (lat, errors)
        }));
    }
    let mut lat = Vec::new();
    let mut report = Report::default();
    for w in workers {
        let (l, e) = w.await?;
        lat.extend(l);
        for (k, v) in e {
            *report.errors.entry(k).or_default() += v;
        }
    }
    summarize(&mut report, lat, start.elapsed().as_secs_f64(), rows);
    Ok(report)
}

/// Open-loop load: requests leave on a fixed schedule (`rate` per second) whatever the
/// server does, and each latency is measured from its *intended* send time, so a stalled
/// server shows up as latency instead of hiding as fewer requests (no coordinated omission).
/// Connections are reused; up to `max_connections` are open at once.
pub async fn open_loop(
    target: Target,
    rate: f64,
    duration: Duration,
    max_connections: usize,
) -> anyhow::Result<Report> {
    connect(&target.addr).await?;
    let pool = std::sync::Arc::new(tokio::sync::Mutex::new(Vec::<http1::SendRequest<Full<Bytes>>>::new()));
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(max_connections));
    let start = tokio::time::Instant::now();
    let total = (rate * duration.as_secs_f64()).round() as u64;
    let mut tasks = tokio::task::JoinSet::new();
    let mut late = 0;
    let mut outcomes: Vec<(f64, f64, Result<(), String>)> = Vec::with_capacity(total as usize);
    for i in 0..total {
        let intended = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(intended).await;
        let (t, pool, slots) = (target.clone(), pool.clone(), slots.clone());
        tasks.spawn(async move {
            // Waiting for a free connection counts towards latency: the clock started at `intended`.
            let Ok(_slot) = slots.acquire_owned().await else { return (0.0, 0.0, Err("closed".to_owned())) };
            let pooled = pool.lock().await.pop();
            let mut sender = match pooled {
                Some(s) => s,
                None => match connect(&t.addr).await {
                    Ok(s) => s,
                    Err(_) => return (intended.elapsed().as_secs_f64(), 0.0, Err("io".to_owned())),
                },
            };
            let Ok(req) = t.request() else { return (0.0, 0.0, Err("request".to_owned())) };
            let sent = tokio::time::Instant::now();
            let result = exchange(&mut sender, req).await;
            let (latency, service) = (intended.elapsed().as_secs_f64(), sent.elapsed().as_secs_f64());
            match result {
                Ok(status) => {
                    pool.lock().await.push(sender);
                    (latency, service, if status == 200 { Ok(()) } else { Err(status.to_string()) })
                }
                Err(_) => (latency, service, Err("io".to_owned())),
            }
        });
        if intended.elapsed() > Duration::from_millis(1) {
            late += 1;
        }
        while let Some(done) = tasks.try_join_next() {
            outcomes.push(done?);
        }
    }
    while let Some(done) = tasks.join_next().await {
        outcomes.push(done?);
    }
    let seconds = start.elapsed().as_secs_f64();
    let mut report = Report::default();
    let mut lat = Vec::with_capacity(outcomes.len());
    let mut service = Vec::with_capacity(outcomes.len());
    for (l, sv, r) in outcomes {
        match r {
            Ok(()) => {
                lat.push(l);
                service.push(sv);
            }
            Err(e) => *report.errors.entry(e).or_default() += 1,
        }
    }
    summarize(&mut report, lat, seconds, 1);
    service.sort_by(f64::total_cmp);
    let q = |p: f64| {
        service.get(((service.len() as f64 * p) as usize).min(service.len().saturating_sub(1))).map_or(0.0, |s| s * 1e3)
    };
    (report.service_p50_ms, report.service_p99_ms) = (q(0.5), q(0.99));
    report.sent_late = late;
    Ok(report)
}

/// Fills throughput and percentiles from successful latencies (seconds).
fn summarize(report: &mut Report, mut lat: Vec<f64>, seconds: f64, rows: usize) {
    report.seconds = seconds;
    lat.sort_by(f64::total_cmp);
    report.ok = lat.len() as u64;
    report.requests = report.ok + report.errors.values().sum::<u64>();
    report.requests_per_second = report.ok as f64 / seconds;
    report.rows_per_second = report.requests_per_second * rows as f64;
    let q =
        |p: f64| lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1))).map_or(0.0, |s| s * 1e3);
    (report.p50_ms, report.p90_ms, report.p99_ms) = (q(0.5), q(0.9), q(0.99));
    report.max_ms = lat.last().map_or(0.0, |s| s * 1e3);
}
