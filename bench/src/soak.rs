//! The soak: the local stack (Envoy with the filter, two mlp backends, the collector, the
//! drift monitor) for a long time at steady load, while policies churn: swaps several times a
//! second, a new guard epoch every fifth, a version added and removed every minute, the
//! collector and the monitor restarted, the canary's backend crashed and replaced. Measured
//! every 10 s from `/proc` and Envoy's stats: resident memory and open files of every process,
//! and the shared-data keys the filter created (`switchyard_shared_data_keys`). Passes when,
//! after the warm-up, Envoy's memory and key count end within 10% of their value then, no
//! request went unanswered and every payload sample is accounted for.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use serde::{Deserialize, Serialize};
use serde_json::json;
use switchyard_contract::metrics as m;
use switchyard_load::metadata::model_inputs;
use switchyard_load::payload::build_body;
use switchyard_load::run;
use switchyard_testkit::metric_sum;
use switchyard_testkit::process::Process;
use switchyard_testkit::stack::{Stack, mlp_policy};

use crate::common::{Common, machine, write_record, write_section};

#[derive(clap::Args)]
pub struct SoakArgs {
    #[command(flatten)]
    common: Common,
    /// How long, in minutes.
    #[arg(long, default_value_t = 30.0)]
    minutes: f64,
    /// When the baseline is taken, in minutes from the start (the end is compared with it).
    #[arg(long, default_value_t = 5.0)]
    baseline_minutes: f64,
    /// Steady load through Envoy, requests per second.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Policy swaps per second (every fifth with a new guard epoch).
    #[arg(long, default_value_t = 2.0)]
    swaps_per_second: f64,
    /// The collector and the drift monitor are restarted this often (the first at a quarter).
    #[arg(long, default_value_t = 300.0)]
    restart_every_seconds: f64,
    /// The canary's backend is killed and replaced this often (the first at a quarter).
    #[arg(long, default_value_t = 600.0)]
    crash_every_seconds: f64,
    /// Print and judge only; write no report (the test command's short soak).
    #[arg(long)]
    no_report: bool,
    #[arg(long, default_value = "scripts/soak.sh")]
    reproduce: String,
}

/// One look at the processes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Look {
    pub at_s: f64,
    pub envoy_rss_mib: f64,
    pub envoy_fds: u64,
    pub shared_keys: f64,
    pub backend_rss_mib: f64,
    pub backend_fds: u64,
    pub collector_rss_mib: f64,
    pub monitor_rss_mib: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Churn {
    pub policy_swaps: u64,
    pub guard_epochs: u64,
    pub versions_added: u64,
    pub versions_removed: u64,
    pub collector_restarts: u64,
    pub monitor_restarts: u64,
    pub canary_crashes: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SoakRecord {
    pub machine: String,
    pub minutes: f64,
    pub rate: f64,
    pub churn: Churn,
    pub baseline: Look,
    pub end: Look,
    pub looks: Vec<Look>,
    pub requests: u64,
    pub failed: u64,
    /// Requests without an answer.
    pub lost: u64,
    /// The filter's sample results, and the sample lines the collector stored.
    pub captured: f64,
    pub sent: f64,
    pub failed_samples: f64,
    pub dropped: f64,
    pub unanswered: f64,
    pub stored: u64,
    pub reproduce: String,
}

impl SoakRecord {
    /// Samples neither stored nor counted as not stored: captured = sent + failed + dropped +
    /// unanswered, the file holding every sent one and at most every unanswered one.
    pub fn unaccounted(&self) -> f64 {
        let outcomes = self.sent + self.failed_samples + self.dropped + self.unanswered;
        let stored = self.stored as f64;
        (self.captured - outcomes).abs()
            + (self.sent - stored).max(0.0)
            + (stored - self.sent - self.unanswered).max(0.0)
    }

    fn growth(end: f64, base: f64) -> f64 {
        if base > 0.0 { end / base - 1.0 } else { f64::NAN }
    }

    pub fn envoy_growth(&self) -> f64 {
        Self::growth(self.end.envoy_rss_mib, self.baseline.envoy_rss_mib)
    }

    pub fn keys_growth(&self) -> f64 {
        Self::growth(self.end.shared_keys, self.baseline.shared_keys)
    }
}

/// `VmRSS` of a process, MiB; open files.
fn proc_stats(pid: u32) -> (f64, u64) {
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("VmRSS:").map(str::to_owned)))
        .and_then(|v| v.split_whitespace().next().and_then(|k| k.parse::<f64>().ok()))
        .map_or(0.0, |kib| kib / 1024.0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64);
    (rss, fds)
}

fn look(stack: &Stack, monitor: &Process, at_s: f64) -> Look {
    let (envoy_rss_mib, envoy_fds) = proc_stats(stack.envoy.pid());
    let (backend_rss_mib, backend_fds) = proc_stats(stack.v1.pid());
    let collector_rss_mib = stack.collector_pid().map_or(0.0, |p| proc_stats(p).0);
    let shared_keys = metric_sum(&stack.prometheus(), m::SHARED_DATA_KEYS.name, &[]);
    Look {
        at_s,
        envoy_rss_mib,
        envoy_fds,
        shared_keys,
        backend_rss_mib,
        backend_fds,
        collector_rss_mib,
        monitor_rss_mib: proc_stats(monitor.pid()).0,
    }
}

/// The policy of churn step `i`: weights that move, a new guard epoch every fifth step, and
/// for half of every minute a third version (on v2's backend, weight 0, allowed by override).
fn policy(i: u64, with_v3: bool) -> serde_json::Value {
    let canary = 10 + 10 * (i % 3) as u32;
    let mut versions = vec![
        json!({"name": "v1", "cluster": "mlp-v1", "weight": 100 - canary}),
        json!({"name": "v2", "cluster": "mlp-v2", "weight": canary}),
    ];
    if with_v3 {
        versions.push(json!({"name": "v3", "cluster": "mlp-v2", "weight": 0}));
    }
    mlp_policy(&json!({
        "versions": versions,
        "override": {"header": "x-switchyard-version-override", "allow": ["v1", "v2"]},
        "slo": {"availability": 0.99, "latency_ms": 1000},
        "guard": {"stable": "v1", "min_requests": 20, "epoch": i / 5},
        "sampling": {"rate": 0.1, "max_body_bytes": 65536}
    }))
}

fn monitor_config() -> serde_json::Value {
    json!({"evaluate_every_seconds": 5, "models": {"mlp": {"reference": {"version": "v1", "rows": 300},
        "windows": [{"name": "1k", "rows": 1000}]}}})
}

/// Sample lines the collector stored (every file it wrote, rotated ones too).
fn stored_samples(samples: &Path) -> u64 {
    let (Some(dir), Some(name)) = (samples.parent(), samples.file_name().and_then(|n| n.to_str())) else { return 0 };
    let files = std::fs::read_dir(dir).into_iter().flatten().flatten().map(|e| e.path());
    files
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(name)))
        .map(|p| {
            std::fs::read_to_string(&p)
                .unwrap_or_default()
                .lines()
                .filter(|l| !l.contains("\"kind\":\"comparison\""))
                .count() as u64
        })
        .sum()
}

fn churn(mut stack: Stack, a: &SoakArgs, mut record: SoakRecord) -> anyhow::Result<SoakRecord> {
    let started = Instant::now();
    let total = Duration::from_secs_f64(a.minutes * 60.0);
    let baseline_at = Duration::from_secs_f64(a.baseline_minutes * 60.0);
    let (mut monitor, _) = stack.start_monitor(&monitor_config());
    let (restart_every, crash_every) =
        (Duration::from_secs_f64(a.restart_every_seconds), Duration::from_secs_f64(a.crash_every_seconds));
    // The first restart and crash come early, before the baseline: the keys a trip creates
    // (the guard's latch) then exist in the baseline, and the end shows growth, not first use.
    let (mut next_look, mut next_restart, mut next_crash) = (Duration::ZERO, restart_every / 4, crash_every / 4);
    let (mut i, mut had_v3, mut epoch) = (0u64, false, 0u64);
    while started.elapsed() < total {
        let now = started.elapsed();
        if now >= next_look {
            let l = look(&stack, &monitor, now.as_secs_f64());
            println!(
                "  [{:6.0} s] Envoy {:.1} MiB, {} fds, {} shared keys; backend {:.0} MiB; {} swaps, {} epochs",
                l.at_s,
                l.envoy_rss_mib,
                l.envoy_fds,
                l.shared_keys,
                l.backend_rss_mib,
                record.churn.policy_swaps,
                epoch
            );
            if record.baseline.at_s == 0.0 && now >= baseline_at {
                record.baseline = l.clone();
            }
            record.looks.push(l);
            next_look += Duration::from_secs(10);
        }
        if now >= next_restart {
            stack.kill_collector();
            std::thread::sleep(Duration::from_millis(500));
            stack.restart_collector()?;
            drop(monitor);
            monitor = stack.start_monitor(&monitor_config()).0;
            record.churn.collector_restarts += 1;
            record.churn.monitor_restarts += 1;
            next_restart += restart_every;
        }
        if now >= next_crash {
            stack.replace_v2();
            record.churn.canary_crashes += 1;
            next_crash += crash_every;
        }
        let with_v3 = now.as_secs() % 60 < 30;
        match (had_v3, with_v3) {
            (false, true) => record.churn.versions_added += 1,
            (true, false) => record.churn.versions_removed += 1,
            _ => {}
        }
        had_v3 = with_v3;
        // The swaps keep their pace: a slow swap is followed by the next at once.
        let due = Duration::from_secs_f64(i as f64 / a.swaps_per_second.max(0.01));
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(wait.min(Duration::from_secs(1)));
        }
        i += 1;
        match stack.apply_policy(&policy(i, with_v3)) {
            Ok(true) => {
                record.churn.policy_swaps += 1;
                if i / 5 != epoch {
                    epoch = i / 5;
                    record.churn.guard_epochs += 1;
                }
            }
            Ok(false) => anyhow::bail!("Envoy refused churn policy {i}: {}", stack.envoy_log()),
            Err(e) => anyhow::bail!("churn policy {i} was refused: {e}"),
        }
    }
    // Everything in flight lands: the filter ships its queued samples within a tick or two.
    std::thread::sleep(Duration::from_secs(5));
    record.end = look(&stack, &monitor, started.elapsed().as_secs_f64());
    if record.baseline.at_s == 0.0 {
        record.baseline = record.looks.first().cloned().unwrap_or_default();
    }
    let envoy = stack.prometheus();
    let result = |r: &str| metric_sum(&envoy, m::SAMPLES_TOTAL.name, &[("result", r)]);
    record.captured = result("captured");
    record.sent = result("sent");
    record.failed_samples = result("failed");
    record.dropped = result("dropped");
    record.unanswered = result("unanswered");
    record.stored = stored_samples(&stack.samples);
    Ok(record)
}

pub async fn run(a: SoakArgs) -> anyhow::Result<()> {
    ensure!(a.minutes > 0.0 && a.baseline_minutes < a.minutes, "--baseline-minutes must be before the end (--minutes)");
    ensure!(
        a.swaps_per_second > 0.0 && a.restart_every_seconds > 0.0 && a.crash_every_seconds > 0.0,
        "--swaps-per-second, --restart-every-seconds and --crash-every-seconds must be positive"
    );
    println!(
        "soak: {:.1} min at {:.0} req/s, policies churning; baseline at {:.1} min",
        a.minutes, a.rate, a.baseline_minutes
    );
    let stack = tokio::task::spawn_blocking(|| Stack::start("soak", &policy(0, false))).await?;
    let inputs = model_inputs(&stack.v1.http, "mlp", None).await?;
    let body = build_body(&inputs, 1, false, 5, None, None)?;
    let (listen, rate, secs) = (stack.listen.clone(), a.rate, Duration::from_secs_f64(a.minutes * 60.0));
    let load = tokio::spawn(async move { run::open(&listen, "/v2/models/mlp/infer", Some(body), rate, secs).await });
    let record = SoakRecord {
        machine: machine(),
        minutes: a.minutes,
        rate: a.rate,
        reproduce: a.reproduce.clone(),
        ..SoakRecord::default()
    };
    let (record, a) = tokio::task::spawn_blocking(move || (churn(stack, &a, record), a)).await?;
    let mut record = record?;
    let report = load.await.context("the load task failed")??;
    record.requests = report.total.sent;
    record.failed = report.total.errors;
    record.lost = report.total.by_cause.values().sum();
    let text = markdown(&record);
    println!("{text}");
    if !a.no_report {
        write_record(&a.common.out, "soak", &record)?;
        write_section(&a.common.out, "soak", &text)?;
        println!("soak -> {} (section soak)", a.common.out.display());
    }
    let mut problems = Vec::new();
    if record.keys_growth().abs() > 0.10 {
        problems
            .push(format!("shared-data keys went from {} to {}", record.baseline.shared_keys, record.end.shared_keys));
    }
    if a.minutes >= 10.0 && record.envoy_growth() > 0.10 {
        problems.push(format!(
            "Envoy's memory grew {:.1}% after the baseline ({:.1} → {:.1} MiB)",
            100.0 * record.envoy_growth(),
            record.baseline.envoy_rss_mib,
            record.end.envoy_rss_mib
        ));
    }
    if record.lost > 0 {
        problems.push(format!("{} requests went unanswered", record.lost));
    }
    if record.unaccounted() > 0.0 {
        problems.push(format!("{} payload samples are not accounted for", record.unaccounted()));
    }
    ensure!(problems.is_empty(), "soak failed: {}", problems.join("; "));
    println!("soak: passed");
    Ok(())
}

pub fn markdown(r: &SoakRecord) -> String {
    let mut s = String::new();
    let c = &r.churn;
    let _ = writeln!(s, "## Soak under churn\n");
    let _ = writeln!(
        s,
        "The local stack for {:.0} minutes at {:.0} req/s of mlp through Envoy ({}), while the policy \
         churned: {} swaps, {} guard epochs, a version added {} times and removed {} times, the collector \
         and the monitor restarted {} times, the canary's backend crashed and replaced {} times. The \
         baseline is the look at {:.0} s (after the warm-up); the end is compared with it. Reproduce: \
         `{}` (`--minutes`, `--rate`).\n",
        r.minutes,
        r.rate,
        r.machine,
        c.policy_swaps,
        c.guard_epochs,
        c.versions_added,
        c.versions_removed,
        c.collector_restarts,
        c.canary_crashes,
        r.baseline.at_s,
        r.reproduce
    );
    let _ = writeln!(s, "| measure | baseline | end | change |\n|---|---:|---:|---:|");
    let row = |s: &mut String, what: &str, b: f64, e: f64, unit: &str| {
        let change = if b > 0.0 { format!("{:+.1}%", 100.0 * (e / b - 1.0)) } else { "–".into() };
        let _ = writeln!(s, "| {what} | {b:.1}{unit} | {e:.1}{unit} | {change} |");
    };
    let (b, e) = (&r.baseline, &r.end);
    row(&mut s, "Envoy resident memory", b.envoy_rss_mib, e.envoy_rss_mib, " MiB");
    row(&mut s, "shared-data keys (`switchyard_shared_data_keys`)", b.shared_keys, e.shared_keys, "");
    row(&mut s, "Envoy open files", b.envoy_fds as f64, e.envoy_fds as f64, "");
    row(&mut s, "backend v1 resident memory", b.backend_rss_mib, e.backend_rss_mib, " MiB");
    row(&mut s, "backend v1 open files", b.backend_fds as f64, e.backend_fds as f64, "");
    row(&mut s, "collector resident memory (restarted)", b.collector_rss_mib, e.collector_rss_mib, " MiB");
    row(&mut s, "drift monitor resident memory (restarted)", b.monitor_rss_mib, e.monitor_rss_mib, " MiB");
    let _ = writeln!(
        s,
        "\nRequests: {} sent, {} failed (the canary crashes, until the guard took it out), **{} unanswered**. \
         Payload samples: {:.0} captured = {:.0} sent + {:.0} failed + {:.0} dropped + {:.0} unanswered; the \
         collector's files hold {} (every sent one, and at most the unanswered ones): **{:.0} unaccounted**.",
        r.requests,
        r.failed,
        r.lost,
        r.captured,
        r.sent,
        r.failed_samples,
        r.dropped,
        r.unanswered,
        r.stored,
        r.unaccounted()
    );
    s
}
