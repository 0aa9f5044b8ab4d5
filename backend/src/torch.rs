//! The libtorch engine: a TorchScript module on CPU or a CUDA device.

use tch::{CModule, Device, IValue, Kind, Tensor};

use crate::batcher::BatchTensor;
use crate::config::{DeviceSpec, ModelConfig};
use crate::engine::{Engine, EngineError, EngineFactory};
use crate::tensor::{DataType, TensorData, each_variant};

pub struct TorchEngine {
    module: CModule,
    device: Device,
    outputs: Vec<DataType>,
}

/// Whether libtorch sees a usable CUDA device (false when the CUDA library was not linked,
/// no driver is present, or no GPU).
pub fn cuda_available() -> bool {
    tch::Cuda::is_available()
}

pub fn resolve_device(spec: DeviceSpec) -> Result<Device, EngineError> {
    match spec {
        DeviceSpec::Cpu => Ok(Device::Cpu),
        DeviceSpec::Auto => Ok(if cuda_available() { Device::Cuda(0) } else { Device::Cpu }),
        DeviceSpec::Cuda(n) => {
            let count = if cuda_available() { tch::Cuda::device_count() } else { 0 };
            if (n as i64) < count {
                Ok(Device::Cuda(n))
            } else {
                Err(format!("device cuda:{n} requested but libtorch sees {count} CUDA device(s)").into())
            }
        }
    }
}

pub fn device_label(d: Device) -> String {
    match d {
        Device::Cuda(n) => format!("cuda:{n}"),
        _ => "cpu".to_owned(),
    }
}

fn kind(d: DataType) -> Result<Kind, EngineError> {
    Ok(match d {
        DataType::Bool => Kind::Bool,
        DataType::Uint8 => Kind::Uint8,
        DataType::Int8 => Kind::Int8,
        DataType::Int16 => Kind::Int16,
        DataType::Int32 => Kind::Int,
        DataType::Int64 => Kind::Int64,
        DataType::Fp16 => Kind::Half,
        DataType::Bf16 => Kind::BFloat16,
        DataType::Fp32 => Kind::Float,
        DataType::Fp64 => Kind::Double,
        other => return Err(format!("datatype {other} has no libtorch equivalent").into()),
    })
}

impl TorchEngine {
    pub fn load(config: &ModelConfig, device: Device) -> Result<Self, EngineError> {
        let mut module = CModule::load_on_device(&config.model_file, device)
            .map_err(|e| format!("cannot load {}: {e}", config.model_file.display()))?;
        module.set_eval();
        let outputs = config.outputs.iter().map(|o| o.datatype).collect();
        Ok(TorchEngine { module, device, outputs })
    }

    /// The factory the server uses: every instance resolves the device and loads the module
    /// on its own thread.
    pub fn factory() -> EngineFactory {
        std::sync::Arc::new(|config: &ModelConfig, _instance: usize| {
            let device = resolve_device(config.device)?;
            TorchEngine::load(config, device).map(|e| Box::new(e) as Box<dyn Engine>)
        })
    }
}

fn to_tensor(b: &BatchTensor, device: Device) -> Result<Tensor, tch::TchError> {
    let t = each_variant!(&b.data, v => Tensor::f_from_slice(v))?;
    t.f_view(b.shape.as_slice())?.f_to_device(device)
}

fn from_tensor(t: &Tensor, dtype: DataType) -> Result<BatchTensor, EngineError> {
    let kind = kind(dtype)?;
    let t = t
        .f_to_device(Device::Cpu)
        .and_then(|t| t.f_to_kind(kind))
        .and_then(|t| t.f_contiguous())
        .map_err(|e| e.to_string())?;
    let n = t.numel();
    let mut data = TensorData::zeros(dtype, n).ok_or_else(|| format!("datatype {dtype} is not servable"))?;
    each_variant!(&mut data, v => t.f_copy_data(v, n)).map_err(|e| e.to_string())?;
    Ok(BatchTensor { shape: t.size(), data })
}

fn collect_tensors(v: IValue, out: &mut Vec<Tensor>) -> Result<(), EngineError> {
    match v {
        IValue::Tensor(t) => out.push(t),
        IValue::Tuple(items) | IValue::GenericList(items) => {
            for i in items {
                collect_tensors(i, out)?;
            }
        }
        IValue::TensorList(ts) => out.extend(ts),
        other => return Err(format!("model returned an unsupported value: {other:?}").into()),
    }
    Ok(())
}

impl Engine for TorchEngine {
    fn device(&self) -> String {
        device_label(self.device)
    }

    fn infer(&mut self, inputs: Vec<BatchTensor>) -> Result<Vec<BatchTensor>, EngineError> {
        let _no_grad = tch::no_grad_guard();
        let args = inputs
            .iter()
            .map(|b| to_tensor(b, self.device).map(IValue::Tensor))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("cannot build input tensors: {e}"))?;
        drop(inputs);
        let out = self.module.forward_is(&args).map_err(|e| format!("forward failed: {e}"))?;
        let mut tensors = Vec::new();
        collect_tensors(out, &mut tensors)?;
        if tensors.len() != self.outputs.len() {
            return Err(
                format!("model returned {} tensor(s), its config lists {}", tensors.len(), self.outputs.len()).into()
            );
        }
        tensors.iter().zip(&self.outputs).map(|(t, d)| from_tensor(t, *d)).collect()
    }
}

impl TorchEngine {
    /// Times the bare forward pass on a pre-built input of `rows` rows, with no conversion and
    /// no serving around it: the ceiling a server is measured against. Returns seconds per
    /// iteration.
    pub fn time_forward(
        &self,
        config: &ModelConfig,
        rows: usize,
        budget: std::time::Duration,
        min_iters: usize,
    ) -> Result<Vec<f64>, EngineError> {
        let _no_grad = tch::no_grad_guard();
        let args = config
            .inputs
            .iter()
            .map(|s| {
                let mut shape = s.shape.clone();
                shape[0] = rows as i64;
                let t = Tensor::f_rand(shape.as_slice(), (Kind::Float, self.device))?
                    .f_to_kind(kind(s.datatype).map_err(|e| tch::TchError::Kind(e.0))?)?;
                Ok(IValue::Tensor(t))
            })
            .collect::<Result<Vec<_>, tch::TchError>>()
            .map_err(|e| e.to_string())?;
        let sync = || {
            if let Device::Cuda(n) = self.device {
                tch::Cuda::synchronize(n as i64);
            }
        };
        for _ in 0..2 {
            self.module.forward_is(&args).map_err(|e| e.to_string())?;
        }
        sync();
        let started = std::time::Instant::now();
        let mut times = Vec::new();
        while times.len() < min_iters || started.elapsed() < budget {
            let t0 = std::time::Instant::now();
            self.module.forward_is(&args).map_err(|e| e.to_string())?;
            sync();
            times.push(t0.elapsed().as_secs_f64());
        }
        Ok(times)
    }
}
