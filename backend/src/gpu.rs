//! GPU utilisation and memory, read from `nvidia-smi` while any model runs on CUDA.
//!
//! libtorch exposes neither figure, and NVML bindings would add a dependency for two numbers;
//! nvidia-smi ships with every driver.

use std::sync::Arc;
use std::time::Duration;

use crate::metrics::{GpuLabels, Metrics};
use crate::models::Models;

/// One GPU's figures from `nvidia-smi --query-gpu=index,utilization.gpu,memory.used,memory.total
/// --format=csv,noheader,nounits` (MiB for memory).
#[derive(Debug, PartialEq)]
pub struct GpuSample {
    pub index: String,
    pub utilization: f64,
    pub memory_used_bytes: i64,
    pub memory_total_bytes: i64,
}

pub fn parse(csv: &str) -> Vec<GpuSample> {
    csv.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(',').map(str::trim).collect();
            let [index, util, used, total] = f.as_slice() else {
                return None;
            };
            Some(GpuSample {
                index: (*index).to_owned(),
                utilization: util.parse::<f64>().ok()? / 100.0,
                memory_used_bytes: used.parse::<i64>().ok()? * 1024 * 1024,
                memory_total_bytes: total.parse::<i64>().ok()? * 1024 * 1024,
            })
        })
        .collect()
}

pub async fn poll(models: Arc<Models>, metrics: Arc<Metrics>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let on_gpu = models.all().any(|m| m.device().is_some_and(|d| d.starts_with("cuda")));
        if !on_gpu {
            continue;
        }
        let out = tokio::process::Command::new("nvidia-smi")
            .args(["--query-gpu=index,utilization.gpu,memory.used,memory.total", "--format=csv,noheader,nounits"])
            .output()
            .await;
        let samples = match out {
            Ok(o) if o.status.success() => parse(&String::from_utf8_lossy(&o.stdout)),
            Ok(o) => {
                tracing::warn!(status = %o.status, "nvidia-smi failed; GPU metrics disabled");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "nvidia-smi not available; GPU metrics disabled");
                return;
            }
        };
        for s in samples {
            let l = GpuLabels { gpu: s.index };
            metrics.gpu_utilization.get_or_create(&l).set(s.utilization);
            metrics.gpu_memory_used.get_or_create(&l).set(s.memory_used_bytes);
            metrics.gpu_memory_total.get_or_create(&l).set(s.memory_total_bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_nvidia_smi_csv() {
        let s = super::parse("0, 37, 1024, 143771\n1, [N/A], 1, 2\ngarbage\n");
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].index, "0");
        assert!((s[0].utilization - 0.37).abs() < 1e-9);
        assert_eq!(s[0].memory_used_bytes, 1024 * 1024 * 1024);
    }
}
