//! `bench-engine`: raw libtorch forward throughput per batch size, with no server around it.
//! The benchmark suite compares served throughput against these numbers.

use std::time::Duration;

use serde::Serialize;

use crate::config::VersionChoice;
use crate::torch::{TorchEngine, device_label, resolve_device};

#[derive(clap::Args)]
pub struct BenchArgs {
    #[command(flatten)]
    target: VersionChoice,
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,16,32,64")]
    batch_sizes: Vec<usize>,
    /// Time spent measuring each batch size.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    #[arg(long, default_value_t = 5)]
    min_iterations: usize,
    /// Override the config's device (auto, cpu, cuda:N).
    #[arg(long)]
    device: Option<String>,
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

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let config = &args.target.load()?;
    let spec = match &args.device {
        Some(d) => crate::config::DeviceSpec::parse(d).map_err(anyhow::Error::msg)?,
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
