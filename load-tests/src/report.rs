//! A run's report: totals, phases and a per-second timeline (JSON with `--report`), and the
//! human-readable summary.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Percentiles in milliseconds.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let q = |p: f64| h.value_at_quantile(p) as f64 / 1e3;
        Latency {
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p999: q(0.999),
            max: h.max() as f64 / 1e3,
            mean: h.mean() / 1e3,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Stats {
    /// Requests scheduled and finished (answered or failed).
    pub sent: u64,
    /// 2xx answers.
    pub ok: u64,
    /// Non-2xx answers by status, then failures without an answer by cause.
    pub errors: u64,
    pub by_status: BTreeMap<String, u64>,
    pub by_cause: BTreeMap<String, u64>,
    /// Requests that left more than `late_after_ms` after their scheduled time.
    pub late: u64,
    pub rows: u64,
    pub seconds: f64,
    /// 2xx answers per second.
    pub throughput: f64,
    pub rows_per_second: f64,
    /// From the intended send time (what a user waiting on the schedule saw), 2xx only.
    pub latency_ms: Latency,
    /// From the actual send (the server's and network's share), 2xx only.
    pub service_ms: Latency,
    /// When the first and the last failed request (non-2xx, or no answer) ended, in ms from
    /// the run's start: how long a fault stayed visible to clients.
    #[serde(default)]
    pub first_error_ms: Option<f64>,
    #[serde(default)]
    pub last_error_ms: Option<f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PhaseReport {
    pub name: String,
    /// Mean scheduled rate (open loop).
    pub target_rate: Option<f64>,
    /// Clients (closed loop).
    pub concurrency: Option<usize>,
    #[serde(flatten)]
    pub stats: Stats,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SecondReport {
    /// Seconds from the start (by intended send time).
    pub t: usize,
    pub sent: u64,
    pub ok: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub scenario: String,
    pub target: String,
    pub late_after_ms: f64,
    pub total: Stats,
    /// How far behind schedule requests left, in ms.
    pub send_lag_ms: Latency,
    pub phases: Vec<PhaseReport>,
    pub timeline: Vec<SecondReport>,
}

/// The human-readable summary.
pub fn summary(r: &Report) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "{} → {}", if r.scenario.is_empty() { "run" } else { &r.scenario }, r.target);
    let _ = writeln!(
        s,
        "{:<24} {:>10} {:>8} {:>8} {:>6} {:>5} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "phase", "target", "sent", "ok", "errors", "late", "achieved", "p50 ms", "p90", "p99", "p99.9", "max"
    );
    let row = |s: &mut String, name: &str, target: String, st: &Stats| {
        let l = &st.latency_ms;
        let _ = writeln!(
            s,
            "{:<24} {:>10} {:>8} {:>8} {:>6} {:>5} {:>8.0}/s {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
            name, target, st.sent, st.ok, st.errors, st.late, st.throughput, l.p50, l.p90, l.p99, l.p999, l.max
        );
    };
    for p in &r.phases {
        let target = match (p.target_rate, p.concurrency) {
            (Some(t), _) => format!("{t:.0}/s"),
            (_, Some(c)) => format!("{c} clients"),
            _ => String::new(),
        };
        row(&mut s, &p.name, target, &p.stats);
    }
    if r.phases.len() > 1 {
        row(&mut s, "total", String::new(), &r.total);
    }
    if r.total.errors > 0 {
        let list =
            |m: &BTreeMap<String, u64>| m.iter().map(|(k, v)| format!("{k} ×{v}")).collect::<Vec<_>>().join(", ");
        let _ = writeln!(
            s,
            "errors: by status [{}]; without an answer [{}]",
            list(&r.total.by_status),
            list(&r.total.by_cause)
        );
        if let (Some(first), Some(last)) = (r.total.first_error_ms, r.total.last_error_ms) {
            let _ = writeln!(s, "errors ended between {first:.0} ms and {last:.0} ms into the run");
        }
    }
    let _ = writeln!(
        s,
        "latency is from each request's scheduled send time; service time (from the actual send) p50 {:.2} ms, p99 {:.2} ms",
        r.total.service_ms.p50, r.total.service_ms.p99
    );
    let _ = writeln!(
        s,
        "send lag behind schedule: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {} of {} requests late (> {} ms)",
        r.send_lag_ms.p50, r.send_lag_ms.p99, r.send_lag_ms.max, r.total.late, r.total.sent, r.late_after_ms
    );
    s
}
