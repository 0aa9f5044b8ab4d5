//! The served model versions: their state (loading, ready, failed, stopped), their queue
//! and engine instances, and the path from a validated request to its result.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::batcher::{BatchError, InferOutput, Pending, PushError, Queue, run_batcher};
use crate::config::{ModelConfig, Repository};
use crate::engine::{EngineFactory, start_instances};
use crate::error::ApiError;
use crate::metrics::{Metrics, VersionMetrics};
use crate::v2::InferRequest;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelState {
    Loading,
    Ready { device: String },
    Failed(String),
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
            PushError::Closed => ApiError::ShuttingDown,
        })?;
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(Ok(out))) => Ok(out),
            Ok(Ok(Err(BatchError::Expired))) | Err(_) => Err(ApiError::DeadlineExceeded(timeout)),
            Ok(Ok(Err(BatchError::Engine(e)))) => {
                Err(ApiError::Internal(format!("{}:{}: {e}", self.config.model, self.config.version)))
            }
            Ok(Err(_)) => Err(ApiError::Internal("the engine dropped the request".into())),
        }
    }

    async fn load(self: Arc<Self>, factory: EngineFactory) {
        let cfg = &self.config;
        let started = std::time::Instant::now();
        tracing::info!(model = %cfg.model, version = %cfg.version, instances = cfg.instances, "loading");
        match start_instances(cfg.clone(), self.metrics.clone(), factory).await {
            Ok(inst) => {
                tracing::info!(
                    model = %cfg.model, version = %cfg.version, device = %inst.device,
                    seconds = started.elapsed().as_secs_f64(), "ready (warmed up)"
                );
                let batcher = tokio::spawn(run_batcher(self.queue.clone(), inst.idle, inst.work));
                *self.tasks.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some(Running { batcher, threads: inst.threads });
                self.set_state(ModelState::Ready { device: inst.device });
            }
            Err(e) => {
                tracing::error!(model = %cfg.model, version = %cfg.version, error = %e, "failed to load; serving 503 for it");
                self.queue.close();
                self.set_state(ModelState::Failed(e));
            }
        }
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
