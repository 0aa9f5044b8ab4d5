//! Cold start of the backend, per model version: a fresh `switchyard-backend serve --models M:V`
//! started N times (the rounds interleaved across the versions), timed from its spawn to the
//! first 200 from readiness (polled every 10 ms) and to the first successful inference (the
//! version's metadata, then one request of zeros, 1 row), then stopped with SIGTERM. Where the
//! time went comes from the backend's own log: the timestamp of its first line and the load +
//! warm-up it reports.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use switchyard_contract::{paths, process::backend};
use switchyard_testkit::process::{Log, Process};
use switchyard_testkit::try_request;

use crate::common::{Common, machine, median, write_record, write_section};

const POLL: Duration = Duration::from_millis(10);
const GIVE_UP: Duration = Duration::from_secs(180);
/// What the backend logs once a version is loaded and warmed up, with `seconds=`.
const READY_LINE: &str = "ready (warmed up)";

#[derive(clap::Args)]
pub struct ColdStartArgs {
    #[command(flatten)]
    common: Common,
    /// Starts per model version.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// `MODEL:VERSION,...` (default: every version in the model repository).
    #[arg(long, value_delimiter = ',')]
    models: Vec<String>,
    /// The first of three consecutive ports the backend listens on (HTTP, gRPC, admin; fixed,
    /// so that readiness is polled from the spawn on).
    #[arg(long, default_value_t = 8601)]
    port_base: u16,
    #[arg(long, default_value = "scripts/bench.sh cold-start")]
    reproduce: String,
}

/// One start, in milliseconds from the spawn unless said otherwise.
#[derive(Debug, Clone, Default)]
struct Run {
    ready_ms: f64,
    first_infer_ms: f64,
    /// The first inference's own request.
    infer_ms: f64,
    to_first_log_line_ms: Option<f64>,
    load_warmup_ms: Option<f64>,
    sigterm_to_exit_ms: f64,
    device: String,
}

const KEYS: [&str; 6] =
    ["ready_ms", "first_infer_ms", "infer_ms", "to_first_log_line_ms", "load_warmup_ms", "sigterm_to_exit_ms"];

impl Run {
    fn get(&self, key: &str) -> Option<f64> {
        match key {
            "ready_ms" => Some(self.ready_ms),
            "first_infer_ms" => Some(self.first_infer_ms),
            "infer_ms" => Some(self.infer_ms),
            "to_first_log_line_ms" => self.to_first_log_line_ms,
            "load_warmup_ms" => self.load_warmup_ms,
            "sigterm_to_exit_ms" => Some(self.sigterm_to_exit_ms),
            _ => None,
        }
    }
}

/// The section's figures (`docs/bench/cold-start.json`); `models` holds, per version, every
/// run's figures and their medians and maxima (`ready_median_ms`, `ready_max_ms`, ...).
#[derive(Serialize, Deserialize)]
pub struct Record {
    generated_by: String,
    machine: String,
    device: String,
    model_repository: String,
    runs_per_version: usize,
    load_average_1m: BTreeMap<String, f64>,
    poll_interval_ms: f64,
    median: String,
    fields: BTreeMap<String, String>,
    models: BTreeMap<String, BTreeMap<String, Value>>,
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|x| x.parse().ok()))
        .unwrap_or(f64::NAN)
}

/// Every `MODEL:VERSION` with a `config.json` in `repo`, in name order.
fn versions_in(repo: &Path) -> anyhow::Result<Vec<String>> {
    let mut found = Vec::new();
    for model in std::fs::read_dir(repo).with_context(|| format!("cannot read {}", repo.display()))? {
        let model = model?.path();
        let Ok(versions) = std::fs::read_dir(&model) else { continue };
        for version in versions {
            let version = version?.path();
            if version.join("config.json").is_file()
                && let (Some(m), Some(v)) = (model.file_name(), version.file_name())
            {
                found.push(format!("{}:{}", m.to_string_lossy(), v.to_string_lossy()));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// An error naming the run, with the end of the backend's log.
fn died(p: &Process, what: &str, run: &str) -> anyhow::Error {
    let log = p.log();
    let lines: Vec<&str> = log.lines().collect();
    let tail = lines[lines.len().saturating_sub(15)..].join("\n    ");
    anyhow::anyhow!("{run}: {what}; the end of its log:\n    {tail}")
}

/// A request of zeros, one row, for the inputs the version's metadata lists.
fn zeros_request(meta: &Value) -> anyhow::Result<Vec<u8>> {
    let mut inputs = Vec::new();
    for spec in meta["inputs"].as_array().context("metadata without inputs")? {
        let shape: Vec<i64> = spec["shape"]
            .as_array()
            .context("an input without a shape")?
            .iter()
            .map(|d| d.as_i64().map_or(1, |d| if d < 0 { 1 } else { d }))
            .collect();
        let n = usize::try_from(shape.iter().product::<i64>()).unwrap_or(0);
        let datatype = spec["datatype"].as_str().unwrap_or_default();
        let data = match datatype {
            "BOOL" => json!(vec![false; n]),
            "BYTES" => bail!("a BYTES input: cold starts send numeric zeros only"),
            _ => json!(vec![0; n]),
        };
        inputs.push(json!({"name": spec["name"], "shape": shape, "datatype": datatype, "data": data}));
    }
    Ok(serde_json::to_vec(&json!({ "inputs": inputs }))?)
}

/// The unix time a tracing line starts with (`2026-12-03T12:47:36.462831Z ...`).
fn log_time(line: &str) -> Option<f64> {
    let stamp = line.split_whitespace().next()?;
    let t = humantime::parse_rfc3339(stamp).ok()?;
    Some(t.duration_since(UNIX_EPOCH).ok()?.as_secs_f64())
}

fn one_run(a: &ColdStartArgs, bin: &Path, logs: &Path, mv: &str, round: usize) -> anyhow::Result<Run> {
    let (model, version) = mv.split_once(':').with_context(|| format!("'{mv}' is not MODEL:VERSION"))?;
    let ports = [a.port_base, a.port_base + 10, a.port_base + 20].map(|p| format!("127.0.0.1:{p}"));
    let http = ports[0].clone();
    let log = logs.join(format!("{model}-{version}-{round}.log"));
    let mut cmd = Command::new(bin);
    cmd.args(switchyard_testkit::serve_args(&a.common.model_repository, ports.each_ref().map(String::as_str)))
        .args([backend::MODELS_FLAG, mv]);
    let run = format!("{mv} run {}", round + 1);
    let wall0 = SystemTime::now();
    let t0 = Instant::now();
    // Killed on every way out but the SIGTERM below.
    let mut p = Process::spawn(backend::PROCESS.binary, cmd, Log::File(log))?;

    // Polled on a 10 ms grid from the spawn: a slow poll does not shift the later ones.
    let mut polls = 0u32;
    let ready = loop {
        if let Some(status) = p.exited() {
            return Err(died(&p, &format!("exited ({status}) before it was ready"), &run));
        }
        if try_request(&http, "GET", paths::HEALTH_READY, &[], b"").is_ok_and(|r| r.status == 200) {
            break t0.elapsed();
        }
        if t0.elapsed() > GIVE_UP {
            return Err(died(&p, &format!("not ready after {} s", GIVE_UP.as_secs()), &run));
        }
        polls += 1;
        std::thread::sleep((t0 + POLL * polls).saturating_duration_since(Instant::now()));
    };
    let path = format!("/v2/models/{model}/versions/{version}");
    let meta = try_request(&http, "GET", &path, &[], b"").map_err(|e| died(&p, &format!("metadata: {e}"), &run))?;
    let meta: Value = serde_json::from_slice(&meta.body)?;
    let body = zeros_request(&meta)?;
    let sent = Instant::now();
    let r = try_request(&http, "POST", &format!("{path}/infer"), &[("content-type", "application/json")], &body)
        .map_err(|e| died(&p, &format!("the first inference: {e}"), &run))?;
    let (first_infer, infer) = (t0.elapsed(), sent.elapsed());
    let answered: Value = serde_json::from_slice(&r.body).unwrap_or_default();
    if r.status != 200 || answered["outputs"].as_array().is_none_or(Vec::is_empty) {
        return Err(died(&p, &format!("the first inference answered {} without outputs", r.status), &run));
    }
    let term = Instant::now();
    p.sigterm()?;
    let status = p.wait_exit(Duration::from_secs(60))?;
    let sigterm_to_exit = term.elapsed();
    if !status.success() {
        return Err(died(&p, &format!("exited ({status}) after SIGTERM"), &run));
    }

    let text = p.log();
    let wall0 = wall0.duration_since(UNIX_EPOCH)?.as_secs_f64();
    let first_line = text.lines().find_map(log_time).map(|t| ((t - wall0) * 10_000.0).round() / 10.0);
    let load_warmup = text
        .lines()
        .filter(|l| l.contains(READY_LINE))
        .filter_map(|l| l.split_once("seconds=")?.1.split_whitespace().next()?.parse::<f64>().ok())
        .next_back()
        .map(|secs| (secs * 10_000.0).round() / 10.0);
    Ok(Run {
        ready_ms: ms(ready),
        first_infer_ms: ms(first_infer),
        infer_ms: ms(infer),
        to_first_log_line_ms: first_line,
        load_warmup_ms: load_warmup,
        sigterm_to_exit_ms: ms(sigterm_to_exit),
        device: meta["parameters"]["device"].as_str().unwrap_or("?").to_owned(),
    })
}

pub fn run(a: &ColdStartArgs) -> anyhow::Result<()> {
    ensure!(a.runs > 0, "--runs wants a positive whole number");
    ensure!(a.port_base <= 65_500, "--port-base wants a port number up to 65500");
    let bin = a.common.backend()?;
    let versions = if a.models.is_empty() { versions_in(&a.common.model_repository)? } else { a.models.clone() };
    ensure!(!versions.is_empty(), "no model versions in {}", a.common.model_repository.display());
    for p in [a.port_base, a.port_base + 10, a.port_base + 20] {
        ensure!(
            std::net::TcpListener::bind(("127.0.0.1", p)).is_ok(),
            "port {p} is taken: stop what listens there, or give --port-base"
        );
    }
    let logs = std::env::temp_dir().join(format!("switchyard-cold-start-{}", std::process::id()));
    std::fs::create_dir_all(&logs)?;
    println!("cold starts: {}, {} runs each (interleaved)", versions.join(", "), a.runs);
    let load_before = load_average();
    let mut runs: BTreeMap<String, Vec<Run>> = BTreeMap::new();
    for round in 0..a.runs {
        for mv in &versions {
            let r = one_run(a, &bin, &logs, mv, round)?;
            println!(
                "    round {}/{} {mv}: ready {:.0} ms, first inference {:.0} ms (log's first line at {} ms, load + warm-up {} ms)",
                round + 1,
                a.runs,
                r.ready_ms,
                r.first_infer_ms,
                f0(&json!(r.to_first_log_line_ms)),
                f0(&json!(r.load_warmup_ms))
            );
            runs.entry(mv.clone()).or_default().push(r);
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    let _ = std::fs::remove_dir_all(&logs);
    let record = record(a, &runs, load_before, load_average());
    let path = write_record(&a.common.out, "cold-start", &record)?;
    write_section(&a.common.out, "cold-start", &markdown(&record))?;
    println!("    written: {} (section cold-start), {}", a.common.out.display(), path.display());
    Ok(())
}

fn record(a: &ColdStartArgs, runs: &BTreeMap<String, Vec<Run>>, before: f64, after: f64) -> Record {
    let mut models = BTreeMap::new();
    let mut devices: Vec<String> = Vec::new();
    for (mv, rs) in runs {
        let (model, version) = mv.split_once(':').unwrap_or((mv, ""));
        let device = rs.first().map(|r| r.device.clone()).unwrap_or_default();
        devices.push(device.clone());
        let mut e: BTreeMap<String, Value> = BTreeMap::new();
        e.insert("model".into(), json!(model));
        e.insert("version".into(), json!(version));
        e.insert("device".into(), json!(device));
        let each: BTreeMap<&str, Vec<Option<f64>>> =
            KEYS.iter().map(|k| (*k, rs.iter().map(|r| r.get(k)).collect())).collect();
        e.insert("runs".into(), json!(each));
        for k in KEYS {
            let vals: Vec<f64> = rs.iter().filter_map(|r| r.get(k)).collect();
            let stem = k.trim_end_matches("_ms");
            let (mid, max) = if vals.is_empty() {
                (None, None)
            } else {
                (Some(median(vals.clone())), vals.iter().copied().reduce(f64::max))
            };
            e.insert(format!("{stem}_median_ms"), json!(mid));
            e.insert(format!("{stem}_max_ms"), json!(max));
        }
        models.insert(mv.clone(), e);
    }
    devices.sort();
    devices.dedup();
    let fields = [
        ("ready_ms", "spawn -> first 200 from GET /v2/health/ready"),
        ("first_infer_ms", "spawn -> first 200 from POST /v2/models/M/versions/V/infer (after the metadata GET)"),
        ("infer_ms", "that first inference's own request time"),
        ("to_first_log_line_ms", "spawn -> the timestamp of the backend's first log line"),
        ("load_warmup_ms", "the model's load and warm-up as the backend logs it"),
        ("sigterm_to_exit_ms", "SIGTERM -> process exit (idle: nothing to drain)"),
    ];
    Record {
        generated_by: a.reproduce.clone(),
        machine: machine(),
        device: devices.join(","),
        model_repository: a.common.model_repository.display().to_string(),
        runs_per_version: a.runs,
        load_average_1m: [("before".to_owned(), before), ("after".to_owned(), after)].into(),
        poll_interval_ms: POLL.as_secs_f64() * 1000.0,
        median: "the middle value of the runs (the upper one of an even count)".into(),
        fields: fields.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        models,
    }
}

fn f0(v: &Value) -> String {
    v.as_f64().map_or_else(|| "–".to_owned(), |x| format!("{x:.0}"))
}

/// The report's section, from the record alone (so that the committed JSON renders it).
pub fn markdown(r: &Record) -> String {
    let poll = r.poll_interval_ms;
    let (before, after) = (r.load_average_1m.get("before"), r.load_average_1m.get("after"));
    let plural = if r.runs_per_version == 1 { "" } else { "s" };
    let mut m = String::new();
    let _ = writeln!(m, "# Benchmarks: cold start\n");
    let _ = writeln!(m, "Generated by `{}` — do not edit by hand; re-run it.\n", r.generated_by);
    let _ = writeln!(
        m,
        "- Machine: {}; device: **{}**; load average {:.2} before the runs, {:.2} after. Each demo model version (`{}`) is \
         served alone by a fresh `switchyard-backend serve --models M:V`, {} time{plural}, the rounds interleaved across the \
         versions; each is stopped with SIGTERM before the next starts.",
        r.machine,
        r.device.replace(',', ", "),
        before.copied().unwrap_or(f64::NAN),
        after.copied().unwrap_or(f64::NAN),
        r.model_repository,
        r.runs_per_version
    );
    let _ = writeln!(
        m,
        "- Ready: from the spawn to the first 200 from `GET /v2/health/ready`, polled every {poll:.0} ms (so up to {poll:.0} \
         ms late). The backend answers 200 only once the model is loaded and warmed up (a 1-row and a full batch of \
         zeros). First inference: then `GET /v2/models/M/versions/V` for the inputs and one `POST …/infer` of zeros (1 \
         row, JSON), from the spawn to its 200."
    );
    let _ = writeln!(
        m,
        "- The files come from the page cache (the binary, libtorch and the model were read moments before): a pod on a \
         fresh node reads them from its image first, and that is not in these figures. Machine-readable: \
         `docs/bench/cold-start.json`.\n"
    );
    let _ = writeln!(
        m,
        "| model | ready median ms | ready max ms | first inference median ms | first inference max ms | runs: ready ms |"
    );
    let _ = writeln!(m, "|---|---:|---:|---:|---:|---|");
    for (mv, e) in &r.models {
        let runs: Vec<String> =
            e["runs"]["ready_ms"].as_array().map(|v| v.iter().map(f0).collect()).unwrap_or_default();
        let _ = writeln!(
            m,
            "| {mv} | {} | {} | {} | {} | {} |",
            f0(&e["ready_median_ms"]),
            f0(&e["ready_max_ms"]),
            f0(&e["first_infer_median_ms"]),
            f0(&e["first_infer_max_ms"]),
            runs.join(", ")
        );
    }
    let _ = writeln!(
        m,
        "\nWhere the time goes (medians): from the spawn to the backend's first log line (exec, the dynamic loading of \
         libtorch and the CUDA libraries it links, the CUDA probe); the model's load and warm-up as the backend logs it; \
         the first inference's own request; SIGTERM to exit (nothing queued to drain).\n"
    );
    let _ = writeln!(
        m,
        "| model | to first log line ms | load + warm-up ms | first inference request ms | SIGTERM → exit ms |"
    );
    let _ = writeln!(m, "|---|---:|---:|---:|---:|");
    for (mv, e) in &r.models {
        let infer = e["infer_median_ms"].as_f64().map_or_else(|| "–".to_owned(), |x| format!("{x:.1}"));
        let _ = writeln!(
            m,
            "| {mv} | {} | {} | {infer} | {} |",
            f0(&e["to_first_log_line_median_ms"]),
            f0(&e["load_warmup_median_ms"]),
            f0(&e["sigterm_to_exit_median_ms"])
        );
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::tests::check_record;

    #[test]
    fn the_committed_record_renders_the_committed_section() {
        check_record::<Record>("cold-start", markdown);
    }

    #[test]
    fn a_tracing_timestamp_is_read_to_the_microsecond() {
        let t = log_time("2026-12-03T12:47:36.462831Z  INFO switchyard_backend: listening").unwrap();
        assert!((t - 1_796_302_056.462_831).abs() < 1e-6, "{t}");
        assert_eq!(log_time("not a time"), None);
    }

    #[test]
    fn zeros_fill_every_input_with_one_row() {
        let meta = json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}, {"name": "m", "datatype": "BOOL", "shape": [-1, 2]}]});
        let body: Value = serde_json::from_slice(&zeros_request(&meta).unwrap()).unwrap();
        assert_eq!(body["inputs"][0]["shape"], json!([1, 3]));
        assert_eq!(body["inputs"][0]["data"], json!([0, 0, 0]));
        assert_eq!(body["inputs"][1]["data"], json!([false, false]));
    }
}
