//! Engine instances: each runs on its own OS thread, never on the async runtime, takes one
//! batch at a time from the batcher, and answers every request of the batch. A thread that
//! dies anyway reports it, so that its version does not go on accepting work nobody serves.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use crate::batcher::{BatchError, BatchTensor, InferOutput, Pending, Work};
use crate::config::ModelConfig;
pub use crate::error::EngineError;
use crate::metrics::VersionMetrics;
use crate::tensor::{TensorData, element_count};

/// Runs one assembled batch. `inputs[i]` holds every row of model input `i`.
pub trait Engine {
    /// Where it runs, e.g. `cpu` or `cuda:0`.
    fn device(&self) -> String;
    fn infer(&mut self, inputs: Vec<BatchTensor>) -> Result<Vec<BatchTensor>, EngineError>;
}

/// Builds the engine of one instance, on that instance's thread (so engines need not be
/// `Send`). Arguments: the version's config and the instance number.
pub type EngineFactory = Arc<dyn Fn(&ModelConfig, usize) -> Result<Box<dyn Engine>, EngineError> + Send + Sync>;

/// The running instances of one model version.
pub struct Instances {
    pub device: String,
    /// One permit per idle instance.
    pub idle: Arc<Semaphore>,
    pub work: Sender<Work>,
    pub threads: Vec<std::thread::JoinHandle<()>>,
    /// The number of each instance whose thread died; closed once every thread has ended.
    pub lost: UnboundedReceiver<usize>,
}

/// Owned by a serving engine thread. When the thread unwinds (a panic `run_batch` could not
/// contain), it reports the instance lost and forgets the permit of the batch it held: a dead
/// instance must not count as idle, or the batcher would go on cutting batches for it.
struct Watchdog {
    instance: usize,
    lost: UnboundedSender<usize>,
    busy: Option<OwnedSemaphorePermit>,
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(permit) = self.busy.take() {
                permit.forget();
            }
            let _ = self.lost.send(self.instance);
        }
    }
}

/// Starts `config.instances` threads, each loading and warming up its engine; returns once all
/// are ready, or with the first failure (the others then stop on their own).
pub async fn start_instances(
    config: Arc<ModelConfig>,
    metrics: VersionMetrics,
    factory: EngineFactory,
) -> Result<Instances, EngineError> {
    let (work_tx, work_rx) = std::sync::mpsc::channel::<Work>();
    let work_rx = Arc::new(Mutex::new(work_rx));
    let (lost_tx, lost_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut threads = Vec::new();
    let mut ready = Vec::new();
    for i in 0..config.instances {
        let (tx, rx) = oneshot::channel::<Result<String, EngineError>>();
        let (config, metrics, factory, work_rx) = (config.clone(), metrics.clone(), factory.clone(), work_rx.clone());
        let lost = lost_tx.clone();
        let name = format!("engine-{}-{}-{i}", config.model, config.version);
        let spawned = std::thread::Builder::new().name(name).spawn(move || {
            let built = factory(&config, i).and_then(|mut e| warm_up(e.as_mut(), &config).map(|()| e));
            let mut engine = match built {
                Ok(e) => {
                    let _ = tx.send(Ok(e.device()));
                    e
                }
                Err(err) => {
                    let _ = tx.send(Err(err));
                    return;
                }
            };
            let device_seconds = metrics.device_seconds(&engine.device());
            let mut watchdog = Watchdog { instance: i, lost, busy: None };
            serve(engine.as_mut(), &config, &metrics, &device_seconds, &work_rx, &mut watchdog);
        });
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => return Err(format!("cannot start an engine thread: {e}").into()),
        }
        ready.push(rx);
    }
    let mut device = String::new();
    for (i, rx) in ready.into_iter().enumerate() {
        match rx.await {
            Ok(Ok(d)) => device = d,
            Ok(Err(e)) => return Err(format!("instance {i}: {e}").into()),
            Err(_) => return Err(format!("instance {i}: engine thread died while loading").into()),
        }
    }
    Ok(Instances { device, idle: Arc::new(Semaphore::new(config.instances)), work: work_tx, threads, lost: lost_rx })
}

fn serve(
    engine: &mut dyn Engine,
    config: &ModelConfig,
    metrics: &VersionMetrics,
    device_seconds: &Counter<f64, AtomicU64>,
    rx: &Mutex<Receiver<Work>>,
    watchdog: &mut Watchdog,
) {
    loop {
        // Idle instances queue on the mutex; the one holding it waits in recv.
        let next = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(Work { batch, permit }) = next else {
            return;
        };
        watchdog.busy = Some(permit);
        run_batch(engine, config, metrics, device_seconds, batch);
        watchdog.busy = None;
    }
}

/// Assembles, runs and answers one batch. Never panics: an engine panic fails the batch.
pub fn run_batch(
    engine: &mut dyn Engine,
    config: &ModelConfig,
    metrics: &VersionMetrics,
    device_seconds: &Counter<f64, AtomicU64>,
    mut batch: Vec<Pending>,
) {
    batch.retain(|p| !p.reply.is_closed());
    if batch.is_empty() {
        return;
    }
    for p in &batch {
        metrics.queue_duration.observe(p.arrival.elapsed().as_secs_f64());
    }
    let rows: usize = batch.iter().map(|p| p.rows).sum();
    let result = assemble(config, &mut batch, rows).and_then(|inputs| {
        let start = Instant::now();
        let out = std::panic::catch_unwind(AssertUnwindSafe(|| engine.infer(inputs)))
            .unwrap_or_else(|_| Err("the engine panicked".into()));
        let secs = start.elapsed().as_secs_f64();
        metrics.compute_duration.observe(secs);
        device_seconds.inc_by(secs);
        out.and_then(|o| check_outputs(config, &o, rows).map(|()| o))
    });
    metrics.batch_size.observe(rows as f64);
    match result {
        Ok(outputs) => {
            metrics.rows.inc_by(rows as u64);
            let outputs: Arc<[BatchTensor]> = outputs.into();
            let mut row_start = 0;
            for p in batch {
                let out = InferOutput { outputs: outputs.clone(), row_start, rows: p.rows };
                row_start += p.rows;
                let _ = p.reply.send(Ok(out));
            }
        }
        Err(e) => {
            tracing::error!(model = %config.model, version = %config.version, rows, error = %e, "batch failed");
            for p in batch {
                let _ = p.reply.send(Err(BatchError::Engine(e.clone())));
            }
        }
    }
}

/// One buffer per input for the whole batch: a lone request's buffers are moved, not copied.
fn assemble(config: &ModelConfig, batch: &mut [Pending], rows: usize) -> Result<Vec<BatchTensor>, EngineError> {
    let shape_of = |spec: &crate::config::TensorSpec| {
        let mut shape = spec.shape.clone();
        shape[0] = rows as i64;
        shape
    };
    if let [only] = batch {
        let inputs = std::mem::take(&mut only.inputs);
        return Ok(config
            .inputs
            .iter()
            .zip(inputs)
            .map(|(s, data)| BatchTensor { shape: shape_of(s), data })
            .collect());
    }
    config
        .inputs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let mut data = TensorData::with_capacity(spec.datatype, rows * spec.row_elements())
                .ok_or_else(|| format!("datatype {} cannot be batched", spec.datatype))?;
            for p in batch.iter() {
                let part = p.inputs.get(i).ok_or("request is missing an input")?;
                data.extend_from(part)?;
            }
            Ok(BatchTensor { shape: shape_of(spec), data })
        })
        .collect()
}

/// The model must return what its config promises, or responses would be split wrongly.
fn check_outputs(config: &ModelConfig, outputs: &[BatchTensor], rows: usize) -> Result<(), EngineError> {
    if outputs.len() != config.outputs.len() {
        return Err(
            format!("model returned {} output(s), its config lists {}", outputs.len(), config.outputs.len()).into()
        );
    }
    for (o, spec) in outputs.iter().zip(&config.outputs) {
        let dims_ok = o.shape.len() == spec.shape.len()
            && o.shape.first() == Some(&(rows as i64))
            && o.shape[1..].iter().zip(&spec.shape[1..]).all(|(a, b)| *b < 0 || a == b);
        if !dims_ok {
            return Err(format!(
                "output '{}' has shape {:?} for {rows} row(s), its config says {:?}",
                spec.name, o.shape, spec.shape
            )
            .into());
        }
        if o.data.datatype() != spec.datatype {
            return Err(
                format!("output '{}' is {}, its config says {}", spec.name, o.data.datatype(), spec.datatype).into()
            );
        }
        if element_count(&o.shape) != Some(o.data.len()) {
            return Err(format!("output '{}' has {} elements for shape {:?}", spec.name, o.data.len(), o.shape).into());
        }
    }
    Ok(())
}

/// Runs a batch of one row and a full batch of zeros, so the first real request pays no
/// lazy-initialisation cost, and checks the model's outputs against its config.
fn warm_up(engine: &mut dyn Engine, config: &ModelConfig) -> Result<(), EngineError> {
    for rows in [1, config.batching.max_batch_size] {
        let inputs = config
            .inputs
            .iter()
            .map(|s| {
                let mut shape = s.shape.clone();
                shape[0] = rows as i64;
                let data = TensorData::zeros(s.datatype, rows * s.row_elements())
                    .ok_or_else(|| format!("datatype {} is not servable", s.datatype))?;
                Ok(BatchTensor { shape, data })
            })
            .collect::<Result<Vec<_>, EngineError>>()?;
        let out = engine.infer(inputs).map_err(|e| format!("warm-up with {rows} row(s) failed: {e}"))?;
        check_outputs(config, &out, rows).map_err(|e| format!("warm-up: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::testing::{Doubler, Fragile, Gate, KILL};

    fn config() -> ModelConfig {
        crate::testing::config("fake", "v1")
    }

    type Rx = oneshot::Receiver<Result<InferOutput, BatchError>>;

    fn pending(values: &[f32]) -> (Pending, Rx) {
        let (tx, rx) = oneshot::channel();
        let now = tokio::time::Instant::now();
        let p = Pending {
            inputs: vec![TensorData::F32(values.to_vec())],
            rows: values.len() / 2,
            arrival: now,
            deadline: now + Duration::from_secs(1),
            reply: tx,
        };
        (p, rx)
    }

    fn rows_of(out: &InferOutput) -> Vec<f32> {
        let TensorData::F32(v) = &out.outputs[0].data else { panic!("not f32") };
        v[out.row_start * 2..(out.row_start + out.rows) * 2].to_vec()
    }

    fn run(engine: &mut Doubler, batch: Vec<Pending>) {
        let m = VersionMetrics::detached();
        run_batch(engine, &config(), &m, &m.device_seconds("fake"), batch);
    }

    #[test]
    fn one_tensor_per_batch_and_rows_split_back_exactly() {
        let (a, mut ra) = pending(&[1., 2.]);
        let (b, mut rb) = pending(&[3., 4., 5., 6.]);
        let (c, rc) = pending(&[7., 8.]);
        drop(rc); // client gone: skipped, never computed
        let mut e = Doubler::default();
        run(&mut e, vec![a, b, c]);
        assert_eq!(e.seen, [vec![3, 2]]);
        assert_eq!(rows_of(&ra.try_recv().unwrap().unwrap()), [2., 4.]);
        assert_eq!(rows_of(&rb.try_recv().unwrap().unwrap()), [6., 8., 10., 12.]);
    }

    #[test]
    fn a_model_returning_the_wrong_rows_fails_the_batch_instead_of_misrouting() {
        let (a, mut ra) = pending(&[1., 2.]);
        let (b, mut rb) = pending(&[3., 4.]);
        run(&mut Doubler { rows_off_by: -1, ..Default::default() }, vec![a, b]);
        for r in [ra.try_recv(), rb.try_recv()] {
            let err = r.unwrap().unwrap_err();
            assert!(matches!(&err, BatchError::Engine(e) if e.0.contains("has shape [1, 2] for 2 row(s)")), "{err:?}");
        }
    }

    #[test]
    fn an_engine_panic_fails_the_batch_and_the_thread_survives() {
        let (a, mut ra) = pending(&[1., 2.]);
        let mut e = Doubler { panic: true, ..Default::default() };
        run(&mut e, vec![a]);
        assert_eq!(ra.try_recv().unwrap().unwrap_err(), BatchError::Engine("the engine panicked".into()));
        e.panic = false;
        let (b, mut rb) = pending(&[1., 1.]);
        run(&mut e, vec![b]);
        assert_eq!(rows_of(&rb.try_recv().unwrap().unwrap()), [2., 2.]);
    }

    #[tokio::test]
    async fn a_dead_instance_is_reported_and_no_longer_counted_idle() {
        let config = ModelConfig { instances: 2, ..config() };
        let gate = Gate::new();
        gate.open();
        let factory: EngineFactory = Arc::new(move |_: &ModelConfig, _| {
            Ok(Box::new(Fragile { doubler: Doubler::default(), gate: gate.clone() }) as Box<dyn Engine>)
        });
        let mut inst = start_instances(Arc::new(config), VersionMetrics::detached(), factory).await.unwrap();
        let permit = inst.idle.clone().acquire_owned().await.unwrap();
        let (kill, rkill) = pending(&[KILL, 0.]);
        inst.work.send(Work { batch: vec![kill], permit }).unwrap();
        let lost = tokio::time::timeout(Duration::from_secs(10), inst.lost.recv()).await.unwrap();
        assert!(matches!(lost, Some(0 | 1)), "{lost:?}");
        assert!(rkill.await.is_err(), "the request died with its thread");
        assert_eq!(inst.idle.available_permits(), 1, "only the live instance counts as idle");
        let permit = inst.idle.clone().acquire_owned().await.unwrap();
        let (ok, rok) = pending(&[1., 2.]);
        inst.work.send(Work { batch: vec![ok], permit }).unwrap();
        assert_eq!(rows_of(&rok.await.unwrap().unwrap()), [2., 4.]);
        // An orderly stop is no loss: the channel just closes.
        drop(inst.work);
        assert_eq!(inst.lost.recv().await, None);
    }
}
