//! `bench-engine`: raw libtorch forward throughput per batch size, with no server around it.
//! The benchmark suite compares served throughput against these numbers.
//!
//! `bench-codec`: JSON decode and encode throughput of a ResNet-18 sized tensor, with no
//! model around it: what a JSON request costs before and after the forward pass.

use anyhow::Context as _;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::batcher::{BatchTensor, InferOutput};
use crate::config::{BatchingPolicy, DeviceSpec, ModelConfig, TensorSpec, VersionChoice};
use crate::tensor::DataType;
use crate::torch::{TorchEngine, device_label, resolve_device};
use crate::v2::{RequestedOutput, rest as v2};

/// What `bench-engine` measures.
pub struct BenchOptions {
    pub target: VersionChoice,
    pub batch_sizes: Vec<usize>,
    /// Time spent measuring each batch size.
    pub seconds: f64,
    pub min_iterations: usize,
    /// Override the config's device (auto, cpu, cuda:N).
    pub device: Option<String>,
}

#[derive(Serialize)]
struct Row<'a> {
    model: &'a str,
    version: &'a str,
    device: String,
    batch_size: usize,
    iterations: usize,
    rows_per_second: f64,
    p50_ms: f64,
    mean_ms: f64,
}

pub fn run(args: &BenchOptions) -> anyhow::Result<()> {
    let config = &args.target.load()?;
    let spec = match &args.device {
        Some(d) => DeviceSpec::parse(d)?,
        None => config.device,
    };
    let device = resolve_device(spec).map_err(anyhow::Error::msg)?;
    let engine = TorchEngine::load(config, device).map_err(anyhow::Error::msg)?;
    for &rows in &args.batch_sizes {
        let mut times = engine
            .time_forward(config, rows, Duration::from_secs_f64(args.seconds), args.min_iterations)
            .map_err(anyhow::Error::msg)?;
        times.sort_by(f64::total_cmp);
        let mean = times.iter().sum::<f64>() / times.len() as f64;
        let row = Row {
            model: &config.model,
            version: &config.version,
            device: device_label(device),
            batch_size: rows,
            iterations: times.len(),
            rows_per_second: rows as f64 / mean,
            p50_ms: times[times.len() / 2] * 1e3,
            mean_ms: mean * 1e3,
        };
        println!("{}", serde_json::to_string(&row)?);
    }
    Ok(())
}

/// What `bench-codec` measures.
pub struct CodecOptions {
    /// Times each of decode and encode runs (after one untimed run of each).
    pub iterations: usize,
    /// Decimals of each generated value in the request (`0.123456789` at 9).
    pub decimals: usize,
    /// Decode this request body instead of a generated one.
    pub body: Option<PathBuf>,
}

#[derive(Serialize)]
struct CodecRow {
    shape: &'static [i64],
    decimals: usize,
    iterations: usize,
    request_bytes: usize,
    decode_ms: f64,
    decode_mb_per_s: f64,
    decode_best_mb_per_s: f64,
    response_bytes: usize,
    encode_ms: f64,
    encode_mb_per_s: f64,
    encode_best_mb_per_s: f64,
}

const IMAGE: [i64; 4] = [1, 3, 224, 224];

/// A model of ResNet-18's signature: one [-1, 3, 224, 224] FP32 input and output.
fn image_config() -> ModelConfig {
    let spec = |name: &str| TensorSpec { name: name.into(), datatype: DataType::Fp32, shape: vec![-1, 3, 224, 224] };
    ModelConfig {
        model: "resnet18".into(),
        version: "v1".into(),
        model_file: PathBuf::from("model.pt"),
        inputs: vec![spec("image")],
        outputs: vec![spec("image")],
        batching: BatchingPolicy {
            max_batch_size: 1,
            max_queue_delay: Duration::ZERO,
            max_queue_size: 1,
            default_timeout: Duration::from_secs(1),
        },
        instances: 1,
        device: DeviceSpec::Cpu,
    }
}

/// A request for one image of values in [0, 1) with `decimals` decimals, the same every run
/// (xorshift64 from a fixed seed).
fn image_request(decimals: usize) -> String {
    let n: i64 = IMAGE.iter().product();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut data = String::with_capacity(n as usize * (decimals + 3));
    for i in 0..n {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let x = (state >> 11) as f64 / (1u64 << 53) as f64;
        if i > 0 {
            data.push(',');
        }
        data.push_str(&format!("{x:.decimals$}"));
    }
    format!(r#"{{"inputs":[{{"name":"image","shape":{IMAGE:?},"datatype":"FP32","data":[{data}]}}]}}"#)
}

/// Median and best seconds per call of `f`, after one untimed call. The median is the
/// figure; the best shows how much other work on the machine took from it.
fn time<T>(iterations: usize, mut f: impl FnMut() -> anyhow::Result<T>) -> anyhow::Result<(f64, f64)> {
    black_box(f()?);
    let mut times = Vec::with_capacity(iterations);
    for _ in 0..iterations.max(1) {
        let started = Instant::now();
        black_box(f()?);
        times.push(started.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], times[0]))
}

pub fn run_codec(args: &CodecOptions) -> anyhow::Result<()> {
    let config = image_config();
    let body = match &args.body {
        Some(p) => std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?,
        None => image_request(args.decimals),
    };
    let decode = || v2::decode_request(&config, body.as_bytes(), None).map_err(anyhow::Error::msg);
    let (decode_s, decode_best) = time(args.iterations, &decode)?;
    let request = decode()?;
    let data = request.inputs.into_iter().next().ok_or_else(|| anyhow::anyhow!("the request decoded to no input"))?;
    let out =
        InferOutput { outputs: Arc::from(vec![BatchTensor { shape: IMAGE.to_vec(), data }]), row_start: 0, rows: 1 };
    let requested = [RequestedOutput { index: 0, binary: false }];
    let encode = || v2::encode_response(&config, Some("1"), &requested, &out).map_err(anyhow::Error::msg);
    let (encode_s, encode_best) = time(args.iterations, &encode)?;
    let response_bytes = encode()?.body.len();
    let row = CodecRow {
        shape: &IMAGE,
        decimals: args.decimals,
        iterations: args.iterations,
        request_bytes: body.len(),
        decode_ms: decode_s * 1e3,
        decode_mb_per_s: body.len() as f64 / decode_s / 1e6,
        decode_best_mb_per_s: body.len() as f64 / decode_best / 1e6,
        response_bytes,
        encode_ms: encode_s * 1e3,
        encode_mb_per_s: response_bytes as f64 / encode_s / 1e6,
        encode_best_mb_per_s: response_bytes as f64 / encode_best / 1e6,
    };
    println!("{}", serde_json::to_string(&row)?);
    Ok(())
}
