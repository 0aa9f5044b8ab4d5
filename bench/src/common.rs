//! What every benchmark shares: the backend under test, derived model repositories, the
//! machine's description, running tools, and writing its section of `docs/benchmarks.md`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use switchyard_testkit::process::{Log, OnDrop, Process, address_after};
use switchyard_testkit::try_request;

/// What every benchmark that starts a backend takes.
#[derive(clap::Args)]
pub struct Common {
    #[arg(long, default_value = "models/repo")]
    pub model_repository: PathBuf,
    /// The backend binary (default: next to this one).
    #[arg(long)]
    pub backend_bin: Option<PathBuf>,
    /// Where the Markdown report goes (each benchmark rewrites its own section).
    #[arg(long, default_value = "docs/benchmarks.md")]
    pub out: PathBuf,
}

impl Common {
    pub fn backend(&self) -> anyhow::Result<PathBuf> {
        let bin = match &self.backend_bin {
            Some(b) => b.clone(),
            None => std::env::current_exe()?.with_file_name("switchyard-backend"),
        };
        anyhow::ensure!(
            bin.exists(),
            "backend binary {} not found (build it with cargo build --release)",
            bin.display()
        );
        Ok(bin)
    }
}

/// The backend under benchmark on free loopback ports, ready; on drop it gets SIGTERM and
/// drains, on every path out, errors included.
pub struct Backend {
    process: Process,
    pub http: String,
    pub grpc: String,
    pub admin: String,
}

impl Backend {
    pub fn start(bin: &Path, repo: &Path) -> anyhow::Result<Self> {
        Self::start_pinned(bin, repo, None)
    }

    /// Starts the backend, on CPU `cpu` only when given (`taskset`).
    pub fn start_pinned(bin: &Path, repo: &Path, cpu: Option<&str>) -> anyhow::Result<Self> {
        let mut cmd = match cpu {
            Some(c) => {
                let mut t = Command::new("taskset");
                t.args(["-c", c]).arg(bin);
                t
            }
            None => Command::new(bin),
        };
        cmd.args([
            "serve",
            "--http-addr",
            "127.0.0.1:0",
            "--grpc-addr",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
            "--model-repository",
        ])
        .arg(repo)
        .env("RUST_LOG", "warn");
        let (process, line) = Process::spawn_reporting("switchyard-backend", cmd, Log::Inherit)?;
        let mut process = process.on_drop(OnDrop::Terminate(Duration::from_secs(60)));
        let addr = |key| address_after(&line, key);
        let (Some(http), Some(grpc), Some(admin)) = (addr("inference"), addr("grpc"), addr("admin")) else {
            bail!("backend did not report its addresses (got {line:?})");
        };
        process.wait_ready(Duration::from_secs(60), "readiness", || {
            try_request(&http, "GET", "/v2/health/ready", &[], b"").is_ok_and(|r| r.status == 200)
        })?;
        Ok(Backend { process, http, grpc, admin })
    }

    /// SIGKILL: a crash, for the fault benchmarks.
    pub fn kill(&self) -> anyhow::Result<()> {
        self.process.signal(switchyard_testkit::process::Signal::SIGKILL)
    }

    /// Peak resident memory (VmHWM), in MiB.
    pub fn peak_rss_mib(&self) -> Option<f64> {
        self.process.memory_mib("VmHWM:")
    }
}

/// A copy of `model`'s v1 in `dst` with its batching changed; the model file is linked.
pub fn derived_repo(src: &Path, dst: &Path, model: &str, batching: bool, device: Option<&str>) -> anyhow::Result<()> {
    derive_model(src, dst, model, |cfg| {
        if !batching {
            cfg["batching"]["max_batch_size"] = 1.into();
            cfg["batching"]["max_queue_delay_us"] = 0.into();
        }
        if let Some(d) = device {
            cfg["device"] = d.into();
        }
    })
}

/// A copy of `model`'s v1 into `dst` (which may hold other models) with `edit` applied to its
/// config; the model file is linked.
pub fn derive_model(
    src: &Path,
    dst: &Path,
    model: &str,
    edit: impl FnOnce(&mut serde_json::Value),
) -> anyhow::Result<()> {
    derive_model_as(src, dst, model, model, edit)
}

/// [`derive_model`] under another model name (`name`).
pub fn derive_model_as(
    src: &Path,
    dst: &Path,
    model: &str,
    name: &str,
    edit: impl FnOnce(&mut serde_json::Value),
) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(dst.join(name));
    {
        let from = src.join(model).join("v1");
        let to = dst.join(name).join("v1");
        std::fs::create_dir_all(&to)?;
        let text = std::fs::read_to_string(from.join("config.json"))
            .with_context(|| format!("{}: run models/generate.py first", from.display()))?;
        let mut cfg: serde_json::Value = serde_json::from_str(&text)?;
        edit(&mut cfg);
        std::fs::write(to.join("config.json"), serde_json::to_vec_pretty(&cfg)?)?;
        std::os::unix::fs::symlink(std::fs::canonicalize(from.join("model.pt"))?, to.join("model.pt"))?;
    }
    Ok(())
}

pub fn max_batch(repo: &Path, model: &str) -> anyhow::Result<usize> {
    let text = std::fs::read_to_string(repo.join(model).join("v1").join("config.json"))?;
    let v: serde_json::Value = serde_json::from_str(&text)?;
    v["batching"]["max_batch_size"].as_u64().map(|n| n as usize).context("config without max_batch_size")
}

/// Runs `cmd` to its end and returns its stdout; an error names `what` and carries its stderr.
pub fn stdout_of(cmd: &mut Command, what: &str) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("cannot run {what}"))?;
    if !out.status.success() {
        bail!("{what} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The middle value (the upper one of an even count); NaN for none.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The machine's CPUs, not this process's: a benchmark may run pinned to one.
pub fn machine_cpus() -> usize {
    std::fs::read_to_string("/proc/cpuinfo").map_or(0, |s| s.lines().filter(|l| l.starts_with("processor")).count())
}

pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = machine_cpus();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| s.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|k| k.parse::<f64>().ok()))
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    format!("{cpu}, {cores} cores, {mem:.0} GiB")
}

/// Replaces the part of `path` between `<!-- BEGIN name -->` and `<!-- END name -->` (appending
/// it when absent), so each benchmark regenerates its own section of one report.
pub fn write_section(path: &Path, name: &str, content: &str) -> anyhow::Result<()> {
    let (begin, end) = (format!("<!-- BEGIN {name} -->"), format!("<!-- END {name} -->"));
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let block = format!("{begin}\n{}\n{end}", content.trim_end());
    let new = match (old.find(&begin), old.find(&end)) {
        (Some(b), Some(e)) if e > b => format!("{}{block}{}", &old[..b], &old[e + end.len()..]),
        _ if old.trim().is_empty() => format!("{block}\n"),
        _ => format!("{}\n\n{block}\n", old.trim_end()),
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, new)?;
    Ok(())
}
