//! Every endpoint and every error class through the router, against a fake engine.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use super::*;
use crate::admission::LimitOptions;
use crate::batcher::BatchTensor;
use crate::config::{ModelConfig, Repository};
use crate::engine::{Engine, EngineError, EngineFactory};
use crate::metrics::Metrics;
use crate::models::ModelState;
use crate::models::Models;
use crate::tensor::TensorData;
use crate::testing::{Doubler, config};

/// First value of a request that the fake engine fails, with a detail that must not leak.
const FAIL: f32 = -1.0;
/// First value of a request that the fake engine holds until the gate opens.
const HOLD: f32 = -2.0;
const SECRET: &str = "CUDA error at /opt/secret/model.pt";
/// A version that fails to load, and one whose loading waits for the gate.
const BROKEN: &str = "broken";
const SLOW: &str = "slow";

/// Lets a test keep the engine (or a loading version) busy for as long as it needs.
struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
    /// One permit each time something starts waiting at the gate.
    entered: tokio::sync::Semaphore,
}

impl Gate {
    fn wait(&self) {
        self.entered.add_permits(1);
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.opened.wait(open).unwrap();
        }
    }

    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }

    async fn entered(&self) {
        self.entered.acquire().await.unwrap().forget();
    }
}

/// Doubles, except for the `FAIL` and `HOLD` requests.
struct Fake {
    doubler: Doubler,
    gate: Arc<Gate>,
}

impl Engine for Fake {
    fn device(&self) -> String {
        self.doubler.device()
    }

    fn infer(&mut self, inputs: Vec<BatchTensor>) -> Result<Vec<BatchTensor>, EngineError> {
        let first = match inputs.first().map(|t| &t.data) {
            Some(TensorData::F32(v)) => v.first().copied(),
            _ => None,
        };
        if first == Some(FAIL) {
            return Err(SECRET.into());
        }
        if first == Some(HOLD) {
            self.gate.wait();
        }
        self.doubler.infer(inputs)
    }
}

fn factory(gate: &Arc<Gate>) -> EngineFactory {
    let gate = gate.clone();
    Arc::new(move |config: &ModelConfig, _| {
        match config.version.as_str() {
            BROKEN => return Err("cannot open model.pt".into()),
            SLOW => gate.wait(),
            _ => {}
        }
        Ok(Box::new(Fake { doubler: Doubler::default(), gate: gate.clone() }) as Box<dyn Engine>)
    })
}

struct App {
    state: Arc<AppState>,
    gate: Arc<Gate>,
}

impl Drop for App {
    // A failed assertion must not leave an engine thread blocked.
    fn drop(&mut self) {
        self.gate.open();
    }
}

/// Model `m` with versions v1 and v2, both ready.
async fn app() -> App {
    app_with(vec![config("m", "v1"), config("m", "v2")], 1024 * 1024).await
}

/// Serves `versions` (oldest first), once every one has loaded or failed; `SLOW` ones are
/// left loading.
async fn app_with(versions: Vec<ModelConfig>, max_body_bytes: usize) -> App {
    app_limited(versions, LimitOptions { max_body_bytes, ..LimitOptions::default() }).await
}

async fn app_limited(versions: Vec<ModelConfig>, limits: LimitOptions) -> App {
    let mut repo = Repository::default();
    for c in versions {
        repo.models.entry(c.model.clone()).or_default().push(c);
    }
    let gate =
        Arc::new(Gate { open: Mutex::new(false), opened: Condvar::new(), entered: tokio::sync::Semaphore::new(0) });
    let metrics = Arc::new(Metrics::new());
    let models = Models::start(repo, &metrics, &factory(&gate));
    let app = App { state: AppState::new(models, metrics, limits.validate().unwrap()), gate };
    app.settled().await;
    app
}

impl App {
    async fn settled(&self) {
        let loading = || self.state.models.all().any(|m| m.state() == ModelState::Loading && m.config.version != SLOW);
        let start = Instant::now();
        while loading() {
            assert!(start.elapsed() < Duration::from_secs(10), "versions still loading");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    async fn get(&self, uri: &str) -> Reply {
        send(router(self.state.clone()), request("GET", uri, &[], Vec::new())).await
    }

    async fn post(&self, uri: &str, body: &Value) -> Reply {
        self.post_raw(uri, &[], body.to_string()).await
    }

    async fn post_raw(&self, uri: &str, headers: &[(&str, &str)], body: impl Into<Vec<u8>>) -> Reply {
        send(router(self.state.clone()), request("POST", uri, headers, body.into())).await
    }

    async fn post_body(&self, uri: &str, body: Body) -> Reply {
        send(router(self.state.clone()), Request::builder().method("POST").uri(uri).body(body).unwrap()).await
    }

    fn spawn_post(&self, body: &Value) -> tokio::task::JoinHandle<Reply> {
        let req = request("POST", "/v2/models/m/infer", &[], body.to_string().into_bytes());
        tokio::spawn(send(router(self.state.clone()), req))
    }

    async fn admin(&self, uri: &str) -> Reply {
        send(admin_router(self.state.clone()), request("GET", uri, &[], Vec::new())).await
    }
}

fn request(method: &str, uri: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Request<Body> {
    let mut r = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.body(Body::from(body)).unwrap()
}

async fn send(app: Router, req: Request<Body>) -> Reply {
    let resp = app.oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Reply { status, headers, body }
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    fn json(&self) -> Value {
        assert_eq!(self.header("content-type"), Some("application/json"), "{self:?}");
        serde_json::from_slice(&self.body).unwrap()
    }

    /// The message, once the body is checked to be exactly `{"error": "<message>"}`.
    fn error(&self) -> String {
        let v = self.json();
        let obj = v.as_object().unwrap();
        assert_eq!(obj.len(), 1, "{v}");
        obj["error"].as_str().unwrap().to_owned()
    }

    /// Asserts the status and the error body, and returns the message.
    fn expect_error(&self, status: u16) -> String {
        assert_eq!(self.status.as_u16(), status, "{self:?}");
        self.error()
    }
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?} {}", self.status, self.headers, String::from_utf8_lossy(&self.body))
    }
}

/// A V2 request for model input `x` with `values.len() / 2` rows.
fn rows(values: &[f32]) -> Value {
    json!({"inputs": [{"name": "x", "shape": [values.len() / 2, 2], "datatype": "FP32", "data": values}]})
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(10), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test]
async fn health_live_and_ready() {
    let app = app().await;
    let r = app.get("/v2/health/live").await;
    assert_eq!((r.status, r.json()), (StatusCode::OK, json!({"live": true})));
    let r = app.get("/v2/health/ready").await;
    assert_eq!((r.status, r.json()), (StatusCode::OK, json!({"ready": true})));
}

#[tokio::test]
async fn server_metadata_lists_the_models_and_the_binary_extension() {
    let app = app_with(vec![config("a", "v1"), config("m", "v1")], 1024).await;
    let r = app.get("/v2").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json(),
        json!({
            "name": "switchyard",
            "version": env!("CARGO_PKG_VERSION"),
            "extensions": ["binary_tensor_data"],
            "models": ["a", "m"],
        })
    );
}

#[tokio::test]
async fn model_metadata_is_the_newest_version_unless_one_is_named() {
    let app = app().await;
    let r = app.get("/v2/models/m").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json(),
        json!({
            "name": "m",
            "versions": ["v1", "v2"],
            "platform": "pytorch_libtorch",
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}],
            "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}],
            "parameters": {"version": "v2", "device": "fake", "max_batch_size": 8, "max_queue_delay_us": 0, "instances": 1},
        })
    );
    let r = app.get("/v2/models/m/versions/v1").await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!((&v["parameters"]["version"], &v["versions"]), (&json!("v1"), &json!(["v1", "v2"])));
}

#[tokio::test]
async fn model_ready_with_and_without_a_version() {
    let app = app().await;
    let r = app.get("/v2/models/m/ready").await;
    assert_eq!((r.status, r.json()), (StatusCode::OK, json!({"name": "m", "version": "v2", "ready": true})));
    let r = app.get("/v2/models/m/versions/v1/ready").await;
    assert_eq!((r.status, r.json()), (StatusCode::OK, json!({"name": "m", "version": "v1", "ready": true})));
}

#[tokio::test]
async fn infer_with_and_without_a_version() {
    let app = app().await;
    let mut body = rows(&[1., 2., 3., 4.]);
    body["id"] = json!("r1");
    let r = app.post("/v2/models/m/infer", &body).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(
        r.json(),
        json!({
            "model_name": "m",
            "model_version": "v2",
            "id": "r1",
            "outputs": [{"name": "y", "datatype": "FP32", "shape": [2, 2], "data": [2., 4., 6., 8.]}],
        })
    );
    let r = app.post("/v2/models/m/versions/v1/infer", &rows(&[5., 6.])).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let v = r.json();
    assert_eq!((&v["model_version"], &v["outputs"][0]["data"]), (&json!("v1"), &json!([10., 12.])));
    assert!(v.get("id").is_none(), "{v}");
}

#[tokio::test]
async fn infer_with_binary_output_sends_the_header_length_and_raw_tensors() {
    let app = app().await;
    let mut body = rows(&[1., 2.]);
    body["parameters"] = json!({"binary_data_output": true});
    let r = app.post("/v2/models/m/infer", &body).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    let n: usize = r.header(HEADER_CONTENT_LENGTH).unwrap().parse().unwrap();
    let head: Value = serde_json::from_slice(&r.body[..n]).unwrap();
    assert_eq!(
        head["outputs"],
        json!([{"name": "y", "datatype": "FP32", "shape": [1, 2], "parameters": {"binary_data_size": 8}}])
    );
    let raw: Vec<u8> = [2f32, 4.].iter().flat_map(|x| x.to_le_bytes()).collect();
    assert_eq!(&r.body[n..], raw.as_slice());
}

#[tokio::test]
async fn malformed_requests_are_400_naming_the_problem() {
    let app = app().await;
    let input = |shape: Value, datatype: &str, data: Value| {
        json!({"inputs": [{"name": "x", "shape": shape, "datatype": datatype, "data": data}]}).to_string()
    };
    let cases = [
        ("{\"inputs\": [".to_owned(), "malformed request JSON"),
        (input(json!([1, 3]), "FP32", json!([1, 2, 3])), "input 'x' has shape [1, 3] but the model expects [-1, 2]"),
        (input(json!([1, 2]), "INT32", json!([1, 2])), "input 'x' has datatype INT32 but the model expects FP32"),
        (input(json!([1, 2]), "FLOAT32", json!([1, 2])), "unknown datatype 'FLOAT32'"),
        (input(json!([2, 2]), "FP32", json!([1, 2])), "input 'x' has 2 element(s) but shape [2, 2] needs 4"),
        (json!({"inputs": []}).to_string(), "missing input 'x'"),
    ];
    for (body, needle) in cases {
        let e = app.post_raw("/v2/models/m/infer", &[], body.clone()).await.expect_error(400);
        assert!(e.contains(needle), "{body}: {e:?} lacks {needle:?}");
    }
    let r = app.post_raw("/v2/models/m/infer", &[(HEADER_CONTENT_LENGTH, "many")], rows(&[1., 2.]).to_string()).await;
    assert_eq!(r.expect_error(400), "Inference-Header-Content-Length must be a byte count");
}

#[tokio::test]
async fn unknown_model_version_or_route_is_404() {
    let app = app().await;
    let no_model = "model 'nope' not found";
    let no_version = "model 'm' has no version 'v9'";
    for (uri, message) in [
        ("/v2/models/nope", no_model),
        ("/v2/models/nope/ready", no_model),
        ("/v2/models/m/versions/v9", no_version),
        ("/v2/models/m/versions/v9/ready", no_version),
        ("/v3/anything", "no such endpoint: /v3/anything"),
    ] {
        assert_eq!(app.get(uri).await.expect_error(404), message, "{uri}");
    }
    for (uri, message) in [("/v2/models/nope/infer", no_model), ("/v2/models/m/versions/v9/infer", no_version)] {
        assert_eq!(app.post(uri, &rows(&[1., 2.])).await.expect_error(404), message, "{uri}");
    }
}

#[tokio::test]
async fn wrong_method_is_405_with_allow() {
    let app = app().await;
    let r = app.get("/v2/models/m/infer").await;
    assert_eq!(r.expect_error(405), "method not allowed");
    assert_eq!(r.header("allow"), Some("POST"));
    let r = app.post("/v2/health/live", &json!({})).await;
    assert_eq!(r.expect_error(405), "method not allowed");
    assert_eq!(r.header("allow"), Some("GET,HEAD"));
}

#[tokio::test]
async fn body_over_the_limit_is_413() {
    let app = app_with(vec![config("m", "v1")], 1024).await;
    let r = app.post_raw("/v2/models/m/infer", &[], vec![b' '; 1025]).await;
    assert_eq!(r.expect_error(413), "request body is larger than the limit of 1024 bytes");
    // At the limit the body is read, and judged on its content.
    let r = app.post_raw("/v2/models/m/infer", &[], vec![b' '; 1024]).await;
    assert!(r.expect_error(400).contains("malformed request JSON"));
}

#[tokio::test]
async fn full_queue_is_429_with_retry_after() {
    let mut c = config("m", "v1");
    c.batching.max_batch_size = 1;
    c.batching.max_queue_size = 1;
    let app = app_with(vec![c], 1024).await;
    let infer = |values: &[f32]| {
        let req = request("POST", "/v2/models/m/infer", &[], rows(values).to_string().into_bytes());
        tokio::spawn(send(router(app.state.clone()), req))
    };
    let busy = infer(&[HOLD, 0.]);
    app.gate.entered().await;
    let queued = infer(&[1., 1.]);
    let mv = app.state.models.get("m", None).unwrap().clone();
    wait_for("the second request to queue", || mv.metrics.queue_depth.get() == 1).await;

    let r = app.post("/v2/models/m/infer", &rows(&[2., 2.])).await;
    let e = r.expect_error(429);
    assert_eq!(e, "model 'm' version 'v1' is overloaded: 1 requests already queued; retry later");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(mv.metrics.dropped_queue_full.get(), 1);

    app.gate.open();
    assert_eq!(busy.await.unwrap().json()["outputs"][0]["data"], json!([HOLD * 2., 0.]));
    assert_eq!(queued.await.unwrap().json()["outputs"][0]["data"], json!([2., 2.]));
}

#[tokio::test]
async fn a_loading_version_is_503_until_it_is_ready() {
    let app = app_with(vec![config("m", SLOW)], 1024).await;
    app.gate.entered().await;
    let still_loading = "model 'm' version 'slow' is not ready: still loading";
    let r = app.get("/v2/health/ready").await;
    assert_eq!(r.expect_error(503), format!("not ready: {still_loading}"));
    assert_eq!(r.header("retry-after"), None);
    assert_eq!(app.get("/v2/models/m/ready").await.expect_error(503), still_loading);
    assert_eq!(app.post("/v2/models/m/infer", &rows(&[1., 2.])).await.expect_error(503), still_loading);
    assert_eq!(app.get("/v2/models/m").await.json()["parameters"]["device"], Value::Null);

    app.gate.open();
    wait_for("the version to load", || app.state.models.all_ready()).await;
    assert_eq!(app.get("/v2/health/ready").await.status, StatusCode::OK);
    assert_eq!(app.post("/v2/models/m/infer", &rows(&[1., 2.])).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_version_that_failed_to_load_is_503_and_unversioned_requests_get_the_ready_one() {
    let app = app_with(vec![config("m", "v1"), config("m", BROKEN)], 1024).await;
    let failed = "model 'm' version 'broken' is not ready: failed to load: instance 0: cannot open model.pt";
    assert_eq!(app.get("/v2/health/ready").await.expect_error(503), format!("not ready: {failed}"));
    assert_eq!(app.get("/v2/models/m/versions/broken/ready").await.expect_error(503), failed);
    assert_eq!(app.post("/v2/models/m/versions/broken/infer", &rows(&[1., 2.])).await.expect_error(503), failed);

    assert_eq!(app.get("/v2/models/m/ready").await.json()["version"], "v1");
    let r = app.post("/v2/models/m/infer", &rows(&[1., 2.])).await;
    assert_eq!((r.status, &r.json()["model_version"]), (StatusCode::OK, &json!("v1")));
}

#[tokio::test]
async fn draining_fails_readiness_refuses_new_inference_and_answers_accepted_requests() {
    let app = app().await;
    let accepted = app.spawn_post(&rows(&[HOLD, 0.]));
    app.gate.entered().await;
    app.state.draining.store(true, Ordering::Relaxed);
    for r in [app.get("/v2/health/ready").await, app.admin("/health/ready").await] {
        assert_eq!(r.expect_error(503), "the server is shutting down");
        assert_eq!(r.header("retry-after"), Some("1"));
    }
    assert_eq!(app.get("/v2/health/live").await.status, StatusCode::OK, "still live while draining");
    // A request arriving after the signal is refused; the one accepted before is served.
    let r = app.post("/v2/models/m/infer", &rows(&[1., 2.])).await;
    assert_eq!(r.expect_error(503), "the server is shutting down");
    assert_eq!(r.header("retry-after"), Some("1"));
    let mv = app.state.models.get("m", None).unwrap().clone();
    assert_eq!(mv.metrics.in_flight.get(), 1, "the refused request is no longer in flight");
    app.gate.open();
    assert_eq!(accepted.await.unwrap().json()["outputs"][0]["data"], json!([HOLD * 2., 0.]));

    app.state.models.stop().await;
    app.state.draining.store(false, Ordering::Relaxed);
    let r = app.post("/v2/models/m/infer", &rows(&[1., 2.])).await;
    assert_eq!(r.expect_error(503), "the server is shutting down", "stopped models refuse too");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(app.get("/v2/models/m/versions/v1/ready").await.expect_error(503), "the server is shutting down");
}

#[tokio::test]
async fn a_deadline_that_passes_first_is_504() {
    let app = app().await;
    let mut body = rows(&[HOLD, 0.]);
    body["parameters"] = json!({"timeout": 20_000});
    let r = app.post("/v2/models/m/infer", &body).await;
    assert_eq!(r.expect_error(504), "deadline exceeded: not served within the request's timeout of 20000 µs");
}

#[tokio::test]
async fn only_a_504_of_the_clients_own_deadline_is_marked_client() {
    let mut c = config("m", "v1");
    c.batching.default_timeout = Duration::from_millis(30);
    let app = app_with(vec![c], 1024).await;
    // The model's default deadline: not the client's doing.
    let r = app.post("/v2/models/m/infer", &rows(&[HOLD, 0.])).await;
    assert_eq!(r.expect_error(504), "deadline exceeded: not served within the request's timeout of 30000 µs");
    assert_eq!(r.header(crate::error::HEADER_DEADLINE), None);
    // A `timeout` parameter, shorter or longer than the default, is the deadline that binds.
    for timeout in [10_000, 60_000] {
        let mut body = rows(&[HOLD, 0.]);
        body["parameters"] = json!({"timeout": timeout});
        let r = app.post("/v2/models/m/infer", &body).await;
        assert!(r.expect_error(504).contains(&format!("timeout of {timeout} µs")), "{r:?}");
        assert_eq!(r.header(crate::error::HEADER_DEADLINE), Some("client"));
    }
}

#[tokio::test]
async fn repeated_or_unknown_outputs_are_400() {
    let app = app().await;
    let mut body = rows(&[1., 2.]);
    body["outputs"] = json!([{"name": "y"}, {"name": "y"}]);
    let e = app.post("/v2/models/m/infer", &body).await.expect_error(400);
    assert_eq!(e, "output 'y' is requested more than once");
    // The attack that found it: one output 20,000 times, each encoded in the response.
    body["outputs"] = json!(vec![json!({"name": "y"}); 20_000]);
    let r = app.post("/v2/models/m/infer", &body).await;
    assert_eq!(r.expect_error(400), "output 'y' is requested more than once");
    assert!(r.body.len() < 100, "{} bytes", r.body.len());
    body["outputs"] = json!([{"name": "nope"}]);
    let e = app.post("/v2/models/m/infer", &body).await.expect_error(400);
    assert_eq!(e, "unknown output 'nope' (model 'm' has: y)");
}

#[tokio::test]
async fn data_beyond_the_declared_shape_is_400_without_parsing_the_rest() {
    let app = app_with(vec![config("m", "v1")], 8 << 20).await;
    // Four million elements for a shape of two, then a syntax error the parser never reaches.
    let data = format!("[{}0,", "0,".repeat(4_000_000));
    let body = format!(r#"{{"inputs":[{{"name":"x","shape":[1,2],"datatype":"FP32","data":{data}"#);
    let started = Instant::now();
    let r = app.post_raw("/v2/models/m/infer", &[], body).await;
    assert!(r.expect_error(400).starts_with("malformed request JSON: EOF while parsing"), "{r:?}");
    // Whole bodies are checked for syntax first; with valid JSON the data stops at element 3.
    let body = format!(r#"{{"inputs":[{{"name":"x","shape":[1,2],"datatype":"FP32","data":{data}0]}}]}}"#);
    let r = app.post_raw("/v2/models/m/infer", &[], body).await;
    assert_eq!(r.expect_error(400), "input 'x' has more than 2 element(s) but shape [1, 2] needs 2");
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
}

/// A request body that sends `chunk` (if any) and then nothing, and records whether it was
/// read at all. Its length, when it has one, is declared as hyper declares a Content-Length.
struct Stalling {
    chunk: Option<Bytes>,
    declared: Option<u64>,
    polls: Arc<AtomicUsize>,
}

impl HttpBody for Stalling {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        this.polls.fetch_add(1, Ordering::Relaxed);
        match this.chunk.take() {
            Some(c) => Poll::Ready(Some(Ok(http_body::Frame::data(c)))),
            None => Poll::Pending,
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.declared.map(http_body::SizeHint::with_exact).unwrap_or_default()
    }

    /// A declared body whose chunk was the whole of it ends there, as hyper's would.
    fn is_end_stream(&self) -> bool {
        self.chunk.is_none() && self.declared.is_some()
    }
}

/// A body that declares `declared` bytes (`None`: chunked) and sends only `chunk`.
fn stalling(declared: Option<u64>, chunk: &str) -> (Body, Arc<AtomicUsize>) {
    let polls = Arc::new(AtomicUsize::new(0));
    let chunk = Some(Bytes::copy_from_slice(chunk.as_bytes()));
    (Body::new(Stalling { chunk, declared, polls: polls.clone() }), polls)
}

#[tokio::test]
async fn admission_is_429_before_the_body_is_read_and_held_until_the_response() {
    let limits = LimitOptions {
        max_body_bytes: 1000,
        max_inflight_bytes: Some(1500),
        max_inflight_requests: 3,
        ..LimitOptions::default()
    };
    let app = app_limited(vec![config("m", "v1")], limits).await;
    let admission = &app.state.admission;
    // A body without a length is charged the maximum while it is being received.
    let (body, _) = stalling(None, "{");
    let stalled = tokio::spawn(send(router(app.state.clone()), {
        Request::builder().method("POST").uri("/v2/models/m/infer").body(body).unwrap()
    }));
    wait_for("the stalled body to be admitted", || admission.bytes_in_flight() == 1000).await;
    let held = rows(&[HOLD, 0.]);
    let busy = app.spawn_post(&held);
    app.gate.entered().await;
    let held_len = held.to_string().len();
    assert_eq!(admission.bytes_in_flight(), 1000 + held_len);

    // 1000 + ~70 in flight: a body declaring 600 bytes does not fit, and is never read.
    let (body, polls) = stalling(Some(600), &"x".repeat(600));
    let r = app.post_body("/v2/models/m/infer", body).await;
    assert_eq!(r.expect_error(429), "the server is overloaded: 1500 body bytes already in flight; retry later");
    assert_eq!(r.header("retry-after"), Some("1"));
    // The refused body was read and dropped before the answer (so a client still sending it
    // reads the 429 rather than a reset), never admitted: the budget is untouched.
    assert!(polls.load(Ordering::Relaxed) > 0, "a refused body is drained");
    assert_eq!(admission.bytes_in_flight(), 1000 + held_len);
    let r = app.post_raw("/v2/models/m/infer", &[], vec![b' '; 1000]).await;
    assert_eq!(r.expect_error(429), "the server is overloaded: 1500 body bytes already in flight; retry later");
    // Small requests still fit; a third request in flight reaches the request limit.
    let small = app.spawn_post(&held);
    wait_for("the third request", || admission.bytes_in_flight() == 1000 + 2 * held_len).await;
    let r = app.post("/v2/models/m/infer", &rows(&[1., 2.])).await;
    assert_eq!(r.expect_error(429), "the server is overloaded: 3 requests already in flight; retry later");
    let mv = app.state.models.get("m", None).unwrap().clone();
    assert_eq!(mv.metrics.dropped_queue_full.get(), 3, "admission refusals count as queue_full");

    app.gate.open();
    assert_eq!(busy.await.unwrap().status, StatusCode::OK);
    assert_eq!(small.await.unwrap().status, StatusCode::OK);
    stalled.abort();
    let _ = stalled.await;
    wait_for("every share to be given back", || admission.bytes_in_flight() == 0).await;
    assert_eq!(app.post("/v2/models/m/infer", &rows(&[1., 2.])).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_body_that_stalls_is_408_and_closes_the_connection() {
    let limits = LimitOptions { body_read_timeout_seconds: 1, ..LimitOptions::default() };
    let app = app_limited(vec![config("m", "v1")], limits).await;
    // Headers and half of the body that they announce, then nothing.
    let (body, polls) = stalling(Some(60), r#"{"inputs": [{"name": "x", "#);
    let started = Instant::now();
    let r = app.post_body("/v2/models/m/infer", body).await;
    assert_eq!(r.expect_error(408), "request body not received within 1 s");
    assert_eq!(r.header("connection"), Some("close"));
    assert!(polls.load(Ordering::Relaxed) >= 2, "the first half was read, then it waited");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(app.state.admission.bytes_in_flight(), 0);
}

#[tokio::test]
async fn an_engine_failure_is_500_without_its_detail() {
    let app = app().await;
    let r = app.post("/v2/models/m/infer", &rows(&[FAIL, 0.])).await;
    assert_eq!(r.expect_error(500), "inference failed");
    assert!(!String::from_utf8_lossy(&r.body).contains("secret"), "{r:?}");
    // The instance survives and serves the next request.
    assert_eq!(app.post("/v2/models/m/infer", &rows(&[1., 2.])).await.status, StatusCode::OK);
}

#[tokio::test]
async fn admin_listener_serves_metrics_and_health() {
    let app = app().await;
    let r = app.admin("/metrics").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), Some("application/openmetrics-text; version=1.0.0; charset=utf-8"));
    let text = String::from_utf8_lossy(&r.body);
    assert!(text.contains("switchyard_model_ready{model=\"m\",version=\"v2\"} 1"), "{text}");
    assert!(text.ends_with("# EOF\n"), "{text}");
    let r = app.admin("/health/live").await;
    assert_eq!((r.status, r.json()), (StatusCode::OK, json!({"live": true})));
    let r = app.admin("/health/ready").await;
    assert_eq!((r.status, r.json()), (StatusCode::OK, json!({"ready": true})));
    assert_eq!(app.admin("/v2/health/live").await.expect_error(404), "no such endpoint: /v2/health/live");
}
