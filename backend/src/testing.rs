//! Test doubles shared by the unit tests, so that batching and HTTP tests need no libtorch and
//! no model files.

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use crate::batcher::BatchTensor;
use crate::config::{BatchingPolicy, DeviceSpec, ModelConfig, TensorSpec};
use crate::engine::{Engine, EngineError};
use crate::tensor::{DataType, TensorData};

/// Input `x` and output `y`, both FP32 `[-1, 2]`; up to 8 rows per batch and 8 queued requests.
pub fn config(model: &str, version: &str) -> ModelConfig {
    let spec = |name: &str| TensorSpec { name: name.into(), datatype: DataType::Fp32, shape: vec![-1, 2] };
    ModelConfig {
        model: model.into(),
        version: version.into(),
        model_file: PathBuf::new(),
        inputs: vec![spec("x")],
        outputs: vec![spec("y")],
        batching: BatchingPolicy {
            max_batch_size: 8,
            max_queue_delay: Duration::ZERO,
            max_queue_size: 8,
            default_timeout: Duration::from_secs(1),
        },
        instances: 1,
        device: DeviceSpec::Cpu,
    }
}

/// Doubles its input and remembers the batch shapes it was given.
#[derive(Default)]
pub struct Doubler {
    pub seen: Vec<Vec<i64>>,
    pub rows_off_by: i64,
    pub panic: bool,
}

impl Engine for Doubler {
    fn device(&self) -> String {
        "fake".into()
    }
    fn infer(&mut self, inputs: Vec<BatchTensor>) -> Result<Vec<BatchTensor>, EngineError> {
        assert!(!self.panic, "engine bug");
        self.seen.push(inputs[0].shape.clone());
        let TensorData::F32(v) = &inputs[0].data else {
            return Err("not f32".into());
        };
        let mut shape = inputs[0].shape.clone();
        shape[0] += self.rows_off_by;
        let n = usize::try_from(shape[0] * 2).unwrap_or(0);
        Ok(vec![BatchTensor { shape, data: TensorData::F32(v.iter().map(|x| x * 2.0).cycle().take(n).collect()) }])
    }
}

/// First value of a request on which `Fragile` kills its engine thread.
pub const KILL: f32 = -9.0;

/// Doubles, except that a batch starting with `KILL` waits at `gate` and then kills its
/// engine thread: it panics with a payload that panics again when `run_batch` drops it, the
/// one engine panic that `catch_unwind` cannot contain. It stands in for any way an engine
/// thread can die.
pub struct Fragile {
    pub doubler: Doubler,
    pub gate: Arc<Gate>,
}

struct Escapes;

impl Drop for Escapes {
    fn drop(&mut self) {
        panic!("the engine thread dies (test)");
    }
}

impl Engine for Fragile {
    fn device(&self) -> String {
        self.doubler.device()
    }
    fn infer(&mut self, inputs: Vec<BatchTensor>) -> Result<Vec<BatchTensor>, EngineError> {
        if let Some(TensorData::F32(v)) = inputs.first().map(|t| &t.data)
            && v.first() == Some(&KILL)
        {
            self.gate.wait();
            std::panic::panic_any(Escapes);
        }
        self.doubler.infer(inputs)
    }
}

/// Holds an engine thread until the test opens it; `entered` gets a permit per arrival.
pub struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
    pub entered: tokio::sync::Semaphore,
}

impl Gate {
    pub fn new() -> Arc<Self> {
        Arc::new(Gate { open: Mutex::new(false), opened: Condvar::new(), entered: tokio::sync::Semaphore::new(0) })
    }

    pub fn wait(&self) {
        self.entered.add_permits(1);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        while !*open {
            open = self.opened.wait(open).unwrap_or_else(PoisonError::into_inner);
        }
    }

    pub fn open(&self) {
        *self.open.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.opened.notify_all();
    }
}
