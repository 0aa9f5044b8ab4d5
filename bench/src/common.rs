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
        Self::start_with(bin, repo, cpu, &[])
    }

    /// [`Backend::start_pinned`] with more `serve` arguments (mutual TLS, say); readiness is
    /// read from the admin listener, which stays plain.
    pub fn start_with(bin: &Path, repo: &Path, cpu: Option<&str>, extra: &[String]) -> anyhow::Result<Self> {
        let mut cmd = match cpu {
            Some(c) => {
                let mut t = Command::new("taskset");
                t.args(["-c", c]).arg(bin);
                t
            }
            None => Command::new(bin),
        };
        cmd.args(switchyard_testkit::serve_args(repo, ["127.0.0.1:0"; 3])).args(extra).env("RUST_LOG", "warn");
        let (process, line) = Process::spawn_reporting("switchyard-backend", cmd, Log::Inherit)?;
        let mut process = process.on_drop(OnDrop::Terminate(Duration::from_secs(60)));
        let addr = |key| address_after(&line, key);
        let (Some(http), Some(grpc), Some(admin)) = (addr("inference"), addr("grpc"), addr("admin")) else {
            bail!("backend did not report its addresses (got {line:?})");
        };
        process.wait_ready(Duration::from_secs(60), "readiness", || {
            try_request(&admin, "GET", switchyard_contract::paths::ADMIN_HEALTH_READY, &[], b"")
                .is_ok_and(|r| r.status == 200)
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

/// Where a section's figures go beside the report, machine-readable: `docs/benchmarks.md`'s
/// section `sweep` in `docs/bench/sweep.json` (with the charts and `cold-start.json`).
pub fn record_path(report: &Path, name: &str) -> PathBuf {
    report.parent().unwrap_or(Path::new("")).join("bench").join(format!("{name}.json"))
}

/// Writes a section's figures (see [`record_path`]), pretty-printed.
pub fn write_record(report: &Path, name: &str, record: &impl serde::Serialize) -> anyhow::Result<PathBuf> {
    let path = record_path(report, name);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut text = serde_json::to_string_pretty(record)?;
    text.push('\n');
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// `x` as the report prints it with `decimals` places, so that a section's JSON and its
/// Markdown carry the same numbers (NaN stays NaN, written as `null`).
pub fn shown(x: f64, decimals: usize) -> f64 {
    format!("{x:.decimals$}").parse().unwrap_or(x)
}

/// A figure that may be missing (NaN, written as `null` by serde_json): `null` reads back as NaN.
pub fn f64_or_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(<Option<f64> as serde::Deserialize>::deserialize(d)?.unwrap_or(f64::NAN))
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

#[cfg(test)]
pub mod tests {
    use std::path::{Path, PathBuf};

    /// The checkout.
    pub fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
    }

    /// A committed file.
    pub fn read(rel: &str) -> String {
        std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    /// A section of the committed `docs/benchmarks.md`, as [`super::write_section`] put it.
    pub fn section(name: &str) -> String {
        let text = read("docs/benchmarks.md");
        let (begin, end) = (format!("<!-- BEGIN {name} -->\n"), format!("\n<!-- END {name} -->"));
        let b = text.find(&begin).expect("begin") + begin.len();
        let e = text.find(&end).expect("end");
        text[b..e].to_owned()
    }

    /// A section's committed JSON: it reads back, renders the committed Markdown, and is written
    /// as the benchmark writes it (so that a re-run's diff shows only what moved).
    pub fn check_record<T>(name: &str, markdown: impl Fn(&T) -> String)
    where
        T: serde::Serialize + serde::de::DeserializeOwned,
    {
        let rel = format!("docs/bench/{name}.json");
        assert_eq!(super::record_path(Path::new("docs/benchmarks.md"), name), Path::new(&rel));
        let text = read(&rel);
        let record: T = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert_eq!(markdown(&record).trim_end(), section(name), "{rel} against docs/benchmarks.md");
        assert_eq!(serde_json::to_string_pretty(&record).expect("json") + "\n", text);
    }
}
