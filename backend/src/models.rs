//! The served model versions: their state (loading, ready, failed, lost, stopped), their
//! queue and engine instances, and the path from a validated request to its result.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::batcher::{BatchError, InferOutput, Pending, PushError, Queue, run_batcher};
use crate::config::{ModelConfig, Repository};
use crate::engine::{EngineFactory, Instances, start_instances};
use crate::error::ApiError;
use crate::metrics::{Metrics, VersionMetrics};
use crate::v2::InferRequest;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelState {
    Loading,
    Ready {
        device: String,
    },
    Failed(String),
    /// Every engine instance died after loading; the reason is safe to show to clients.
    Lost(String),
    Stopped,
}

pub struct ModelVersion {
    pub config: Arc<ModelConfig>,
    pub metrics: VersionMetrics,
    state: Mutex<ModelState>,
    queue: Arc<Queue>,
    tasks: Mutex<Option<Running>>,
}

struct Running {
    batcher: JoinHandle<()>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl ModelVersion {
    fn new(config: ModelConfig, metrics: VersionMetrics) -> Self {
        let limit = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        metrics.max_batch_size.set(limit(config.batching.max_batch_size));
        metrics.max_queue_size.set(limit(config.batching.max_queue_size));
        let queue = Queue::new(config.batching.clone(), metrics.clone());
        ModelVersion {
            config: Arc::new(config),
            metrics,
            state: Mutex::new(ModelState::Loading),
            queue,
            tasks: Mutex::new(None),
        }
    }

    pub fn state(&self) -> ModelState {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn set_state(&self, s: ModelState) {
        self.metrics.ready.set(i64::from(matches!(s, ModelState::Ready { .. })));
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) = s;
    }

    pub fn device(&self) -> Option<String> {
        match self.state() {
            ModelState::Ready { device } => Some(device),
            _ => None,
        }
    }

    /// On every request: looks at the state under the lock instead of cloning it.
    pub fn check_ready(&self) -> Result<(), ApiError> {
        let reason = match &*self.state.lock().unwrap_or_else(PoisonError::into_inner) {
            ModelState::Ready { .. } => return Ok(()),
            ModelState::Loading => "still loading".to_owned(),
            ModelState::Failed(e) => format!("failed to load: {e}"),
            ModelState::Lost(e) => format!("engine lost: {e}"),
            ModelState::Stopped => return Err(ApiError::ShuttingDown),
        };
        Err(ApiError::NotReady { model: self.config.model.clone(), version: self.config.version.clone(), reason })
    }

    /// Queues the request and waits for its rows of a batch, or its deadline.
    pub async fn infer(&self, req: InferRequest) -> Result<InferOutput, ApiError> {
        self.check_ready()?;
        let timeout = req.timeout.unwrap_or(self.config.batching.default_timeout);
        let arrival = Instant::now();
        let deadline = arrival + timeout;
        let (tx, rx) = oneshot::channel();
        let pending = Pending { inputs: req.inputs, rows: req.rows, arrival, deadline, reply: tx };
        self.queue.push(pending).map_err(|e| match e {
            PushError::Full { capacity } => {
                ApiError::QueueFull { model: self.config.model.clone(), version: self.config.version.clone(), capacity }
            }
            PushError::TooLarge { rows, max_batch_size } => ApiError::BadRequest(format!(
                "request has {rows} rows, more than the model's max_batch_size of {max_batch_size}"
            )),
            // Closed because the engine was lost, or because the server is stopping.
            PushError::Closed => self.check_ready().err().unwrap_or(ApiError::ShuttingDown),
        })?;
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(Ok(out))) => Ok(out),
            Ok(Ok(Err(BatchError::Expired))) | Err(_) => Err(ApiError::DeadlineExceeded(timeout)),
            Ok(Ok(Err(BatchError::Engine(e)))) => {
                Err(ApiError::Internal(format!("{}:{}: {e}", self.config.model, self.config.version)))
            }
            // A reply is only ever dropped unanswered by an engine thread dying with it.
            Ok(Ok(Err(BatchError::EngineLost)) | Err(_)) => {
                self.metrics.dropped_engine_lost.inc();
                Err(self.check_ready().err().unwrap_or_else(|| ApiError::NotReady {
                    model: self.config.model.clone(),
                    version: self.config.version.clone(),
                    reason: "the engine instance serving this request died; retry".into(),
                }))
            }
        }
    }

    async fn load(self: Arc<Self>, factory: EngineFactory) {
        let cfg = &self.config;
        let started = std::time::Instant::now();
        tracing::info!(model = %cfg.model, version = %cfg.version, instances = cfg.instances, "loading");
        match start_instances(cfg.clone(), self.metrics.clone(), factory).await {
            Ok(Instances { device, idle, work, threads, lost }) => {
                tracing::info!(
                    model = %cfg.model, version = %cfg.version, device = %device,
                    seconds = started.elapsed().as_secs_f64(), "ready (warmed up)"
                );
                let batcher = tokio::spawn(run_batcher(self.queue.clone(), idle.clone(), work));
                *self.tasks.lock().unwrap_or_else(PoisonError::into_inner) = Some(Running { batcher, threads });
                self.set_state(ModelState::Ready { device });
                // Only once ready: a loss must not be overwritten by the `Ready` above.
                tokio::spawn(self.clone().watch_instances(lost, idle));
            }
            Err(e) => {
                tracing::error!(model = %cfg.model, version = %cfg.version, error = %e, "failed to load; serving 503 for it");
                self.queue.close();
                self.set_state(ModelState::Failed(e.to_string()));
            }
        }
    }

    /// Counts engine instances as they die; with none left the version stops being ready and
    /// everything queued is answered 503 rather than left to time out.
    async fn watch_instances(self: Arc<Self>, mut lost: UnboundedReceiver<usize>, idle: Arc<Semaphore>) {
        let (cfg, mut live) = (&self.config, self.config.instances);
        while let Some(instance) = lost.recv().await {
            live = live.saturating_sub(1);
            tracing::error!(model = %cfg.model, version = %cfg.version, instance, live, "engine instance died");
            if live > 0 {
                continue;
            }
            let reason = format!("all {} engine instance(s) died (the server log has the panic)", cfg.instances);
            if !self.lose(reason) {
                continue;
            }
            // The batcher may be waiting for an idle instance that will never come back.
            idle.close();
            let queued = self.queue.fail_all();
            tracing::error!(model = %cfg.model, version = %cfg.version, queued, "no engine instance left: not ready");
        }
    }

    /// `Ready` becomes `Lost`; any other state is kept. Returns whether it changed.
    fn lose(&self, reason: String) -> bool {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if !matches!(*state, ModelState::Ready { .. }) {
            return false;
        }
        *state = ModelState::Lost(reason);
        self.metrics.ready.set(0);
        true
    }

    /// Stops admitting, serves what is queued, then joins the engine threads.
    async fn stop(&self) {
        self.queue.close();
        let running = self.tasks.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(r) = running {
            let _ = r.batcher.await;
            // The batcher owned the work sender: with it gone the engine threads finish their
            // batch and exit.
            let _ = tokio::task::spawn_blocking(move || {
                for t in r.threads {
                    let _ = t.join();
                }
            })
            .await;
        }
        self.set_state(ModelState::Stopped);
    }
}

/// Every served model version, by model name, versions oldest first.
pub struct Models {
    models: BTreeMap<String, Vec<Arc<ModelVersion>>>,
}

impl Models {
    /// Creates every version in the `Loading` state and starts loading them in the background.
    pub fn start(repo: Repository, metrics: &Metrics, factory: &EngineFactory) -> Arc<Self> {
        let mut models = BTreeMap::new();
        for (name, configs) in repo.models {
            let versions: Vec<Arc<ModelVersion>> = configs
                .into_iter()
                .map(|c| {
                    let m = metrics.version(&c.model, &c.version);
                    Arc::new(ModelVersion::new(c, m))
                })
                .collect();
            models.insert(name, versions);
        }
        let this = Arc::new(Models { models });
        for v in this.all() {
            tokio::spawn(v.clone().load(factory.clone()));
        }
        this
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<ModelVersion>> {
        self.models.values().flatten()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.models.keys().map(String::as_str)
    }

    pub fn versions(&self, model: &str) -> Result<&[Arc<ModelVersion>], ApiError> {
        self.models.get(model).map(Vec::as_slice).ok_or_else(|| ApiError::ModelNotFound(model.to_owned()))
    }

    /// A named version, or without one the newest ready version (the newest when none is
    /// ready, so the caller reports why it is not).
    pub fn get(&self, model: &str, version: Option<&str>) -> Result<&Arc<ModelVersion>, ApiError> {
        let versions = self.versions(model)?;
        let found = match version {
            Some(v) => versions.iter().find(|m| m.config.version == v),
            None => versions.iter().rev().find(|m| m.check_ready().is_ok()).or(versions.last()),
        };
        found.ok_or_else(|| ApiError::VersionNotFound {
            model: model.to_owned(),
            version: version.unwrap_or_default().to_owned(),
        })
    }

    pub fn all_ready(&self) -> bool {
        self.all().all(|m| m.check_ready().is_ok())
    }

    pub async fn stop(&self) {
        for v in self.all() {
            v.stop().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::engine::Engine;
    use crate::tensor::TensorData;
    use crate::testing::{Doubler, Fragile, Gate, KILL, config};
    use crate::v2::RequestedOutput;

    fn request(first: f32) -> InferRequest {
        InferRequest {
            id: None,
            inputs: vec![TensorData::F32(vec![first, 0.])],
            rows: 1,
            outputs: vec![RequestedOutput { index: 0, binary: false }],
            timeout: None,
        }
    }

    async fn eventually(what: &str, f: impl Fn() -> bool) {
        let start = std::time::Instant::now();
        while !f() {
            assert!(start.elapsed() < Duration::from_secs(10), "never: {what}");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    #[tokio::test]
    async fn when_its_engine_dies_a_version_turns_not_ready_and_every_request_gets_503() {
        let gate = Gate::new();
        let g = gate.clone();
        let factory: EngineFactory = Arc::new(move |_: &ModelConfig, _| {
            Ok(Box::new(Fragile { doubler: Doubler::default(), gate: g.clone() }) as Box<dyn Engine>)
        });
        let mut repo = Repository::default();
        let mut cfg = config("m", "v1");
        // Long enough that a request left to time out cannot pass for one answered.
        cfg.batching.default_timeout = Duration::from_secs(60);
        repo.models.entry("m".into()).or_default().push(cfg);
        let metrics = Metrics::new();
        let models = Models::start(repo, &metrics, &factory);
        let mv = models.get("m", Some("v1")).unwrap().clone();
        eventually("ready", || mv.check_ready().is_ok()).await;

        let infer = |first| {
            let mv = mv.clone();
            tokio::spawn(async move { mv.infer(request(first)).await })
        };
        let killed = infer(KILL);
        gate.entered.acquire().await.unwrap().forget();
        // The engine is busy with the fatal batch: these two wait in the queue.
        let queued = [infer(1.), infer(2.)];
        eventually("two queued", || mv.metrics.queue_depth.get() == 2).await;
        gate.open();

        for h in std::iter::once(killed).chain(queued) {
            let answer =
                tokio::time::timeout(Duration::from_secs(10), h).await.expect("answered, not left to time out");
            let err = answer.unwrap().unwrap_err();
            assert!(matches!(err, ApiError::NotReady { .. }), "{err:?}");
            assert_eq!(err.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
        }
        assert!(matches!(mv.state(), ModelState::Lost(_)), "{:?}", mv.state());
        let why = mv.check_ready().unwrap_err().to_string();
        assert!(why.contains("is not ready: engine lost: all 1 engine instance(s) died"), "{why}");
        assert!(!models.all_ready());
        assert!(models.get("m", None).unwrap().check_ready().is_err());
        // From now on refused at once, with the reason.
        let err = mv.infer(request(3.)).await.unwrap_err();
        assert_eq!(err.to_string(), why);

        let text = metrics.encode().unwrap();
        for needle in [
            "switchyard_requests_dropped_total{model=\"m\",version=\"v1\",reason=\"engine_lost\"} 3",
            "switchyard_model_ready{model=\"m\",version=\"v1\"} 0",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
        tokio::time::timeout(Duration::from_secs(10), models.stop()).await.expect("stops without hanging");
    }
}
