//! The capacity model, pure: the service rate a replica sustains from the saturation sweep
//! (`service_rate`), the day's traffic (`Traffic`), each version's share of it from the policy
//! (`version_shares`), KEDA and the HPA over two days second by second (`simulate`), and what
//! the replicas it keeps make of the load, minute by minute (`minute_stats`).

use switchyard_policy::ModelPolicy;

/// What is assumed, not measured or configured; each is stated in `docs/capacity.md`.
pub struct Assumed {
    /// The backend's p99 target: this share of the policy's SLO latency.
    pub p99_budget_share: f64,
    /// A sweep step with more requests sent late than this (percent) was machine-limited.
    pub late_limit_pct: f64,
    /// A step "kept up" when it achieved this share of its target rate.
    pub keep_up_fraction: f64,
    /// Each replica is planned at the measured rate ÷ this.
    pub headroom: f64,
    /// Traffic at the trough, as a share of the peak; the hours of the trough and the peak.
    pub trough_fraction: f64,
    pub trough_hour: f64,
    pub peak_hour: f64,
    /// Times the demo's peak load.
    pub scales: [u32; 2],
    /// A pod scheduled and started on a node with room, its image cached (seconds).
    pub scheduling_allowance_s: f64,
    /// The sensitivity case: a new node and an image pull (seconds).
    pub slow_allowance_s: f64,
    /// Kubernetes' HPA defaults (KEDA drives an HPA; the generated ScaledObjects set no
    /// `advanced`): tolerance, scale-down stabilisation window, scale-up per period (pods or
    /// percent, whichever is more).
    pub hpa_tolerance: f64,
    pub hpa_scale_down_window_s: i64,
    pub hpa_scale_up_pods: i64,
    pub hpa_scale_up_percent: i64,
    pub hpa_period_s: i64,
}

pub const ASSUMED: Assumed = Assumed {
    p99_budget_share: 0.5,
    late_limit_pct: 1.0,
    keep_up_fraction: 0.98,
    headroom: 1.25,
    trough_fraction: 0.10,
    trough_hour: 4.0,
    peak_hour: 14.0,
    scales: [10, 1000],
    scheduling_allowance_s: 10.0,
    slow_allowance_s: 180.0,
    hpa_tolerance: 0.1,
    hpa_scale_down_window_s: 300,
    hpa_scale_up_pods: 4,
    hpa_scale_up_percent: 100,
    hpa_period_s: 15,
};

pub const DAY: usize = 86_400;
pub const MINUTES: usize = 1440;

/// One open-loop step of the saturation sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Its share of the ceiling, e.g. `41%`.
    pub step: String,
    pub target: f64,
    pub achieved: f64,
    pub p50: f64,
    pub p99: f64,
    pub late_pct: f64,
    pub errors: f64,
}

/// (a): what one replica sustains, and its latency curve.
#[derive(Debug, Clone)]
pub struct Curve {
    pub p99_target: f64,
    /// The highest step meeting the p99 target and not machine-limited.
    pub step: Step,
    pub rate: f64,
    /// Why each step above it fails.
    pub above: Vec<String>,
    /// Steps below it that were machine-limited.
    pub skipped: Vec<Step>,
    /// The highest offered rate the backend sustained (every step up to it kept up).
    pub keep_up: f64,
    pub keep_up_step: Option<Step>,
    /// Offered rate, p50 and p99 per step, by offered rate.
    pub xs: Vec<f64>,
    pub p50s: Vec<f64>,
    pub p99s: Vec<f64>,
    pub last_p99: f64,
}

impl Curve {
    pub fn p50_at(&self, x: f64) -> f64 {
        interp(x, &self.xs, &self.p50s)
    }
}

/// Linear interpolation of `ys` over the rising `xs`, held flat outside them.
pub fn interp(x: f64, xs: &[f64], ys: &[f64]) -> f64 {
    let (Some(&x0), Some(&y0), Some(&y_last)) = (xs.first(), ys.first(), ys.last()) else {
        return f64::NAN;
    };
    if x <= x0 {
        return y0;
    }
    for i in 1..xs.len().min(ys.len()) {
        if x <= xs[i] {
            let f = (x - xs[i - 1]) / (xs[i] - xs[i - 1]);
            return ys[i - 1] + f * (ys[i] - ys[i - 1]);
        }
    }
    y_last
}

/// Python's `%`: the result takes the divisor's sign.
fn py_mod(x: f64, m: f64) -> f64 {
    let r = x % m;
    if r != 0.0 && (r < 0.0) != (m < 0.0) { r + m } else { r }
}

/// (a) from the sweep's steps (by rising target) and the SLO's latency threshold.
pub fn service_rate(name: &str, steps: &[Step], slo_latency_ms: f64) -> anyhow::Result<Curve> {
    let a = &ASSUMED;
    let target = slo_latency_ms * a.p99_budget_share;
    let passes = |s: &Step| s.p99 <= target && s.late_pct <= a.late_limit_pct && s.errors == 0.0;
    // The first of the highest, as Python's max().
    let mut best: Option<&Step> = None;
    for s in steps.iter().filter(|s| passes(s)) {
        if best.is_none_or(|b| s.achieved > b.achieved) {
            best = Some(s);
        }
    }
    let Some(best) = best else {
        anyhow::bail!(
            "{name}: no sweep step meets p99 <= {} ms with <= {}% late",
            super::format::py_float(target),
            super::format::py_float(a.late_limit_pct)
        );
    };
    let above = steps
        .iter()
        .filter(|s| s.target > best.target)
        .map(|s| {
            let mut r = Vec::new();
            if s.p99 > target {
                r.push(format!("p99 {} ms", super::format::g(s.p99)));
            }
            if s.late_pct > a.late_limit_pct {
                r.push(format!("{}% sent late", super::format::g(s.late_pct)));
            }
            format!("{}: {}", s.step, r.join(", "))
        })
        .collect();
    let skipped = steps.iter().filter(|s| s.target < best.target && !passes(s)).cloned().collect();
    let mut keep = None;
    for s in steps {
        if s.achieved >= a.keep_up_fraction * s.target {
            keep = Some(s);
        } else {
            break;
        }
    }
    Ok(Curve {
        p99_target: target,
        step: best.clone(),
        rate: best.achieved,
        above,
        skipped,
        keep_up: keep.or(steps.first()).map_or(0.0, |s| s.target),
        keep_up_step: keep.cloned(),
        xs: steps.iter().map(|s| s.target).collect(),
        p50s: steps.iter().map(|s| s.p50).collect(),
        p99s: steps.iter().map(|s| s.p99).collect(),
        last_p99: steps.last().map_or(0.0, |s| s.p99),
    })
}

/// 0 at the trough hour, 1 at the peak hour, raised-cosine halves (smooth at both ends).
pub fn traffic_shape(t_s: f64) -> f64 {
    let a = &ASSUMED;
    let h = py_mod(t_s / 3600.0, 24.0);
    let (lo, hi) = (a.trough_hour, a.peak_hour);
    let rise = py_mod(hi - lo, 24.0);
    let since = py_mod(h - lo, 24.0);
    if since <= rise {
        0.5 * (1.0 - (std::f64::consts::PI * since / rise).cos())
    } else {
        0.5 * (1.0 + (std::f64::consts::PI * (since - rise) / (24.0 - rise)).cos())
    }
}

/// The day's traffic, a share of the peak per second (periodic over the day).
pub struct Traffic(Vec<f64>);

impl Traffic {
    pub fn new() -> Traffic {
        let tf = ASSUMED.trough_fraction;
        Traffic((0..DAY).map(|t| tf + (1.0 - tf) * traffic_shape(t as f64)).collect())
    }

    /// The model's client requests/s at second `t`.
    pub fn at(&self, t: usize, peak: f64) -> f64 {
        peak * self.0[t % DAY]
    }
}

/// Share of the model's client requests each version serves (`share`, the split) and the load
/// it serves (`load`), with the shadow's mirrors and the shadow comparison's second request to
/// the primary (`noise`, on by default); versions in the policy's order.
pub struct Shares {
    pub share: Vec<(String, f64)>,
    pub load: Vec<(String, f64)>,
    pub notes: Vec<String>,
}

pub fn version_shares(policy: &ModelPolicy) -> anyhow::Result<Shares> {
    let total: f64 = policy.versions.iter().map(|v| f64::from(v.weight)).sum();
    let share: Vec<(String, f64)> =
        policy.versions.iter().map(|v| (v.name.clone(), f64::from(v.weight) / total)).collect();
    let mut load = share.clone();
    let mut notes = Vec::new();
    if let Some(sh) = &policy.shadow {
        let s = sh.percent / 100.0;
        let mirrored = share.iter().position(|(v, _)| *v == sh.version);
        let Some(i) = mirrored else { anyhow::bail!("the shadow version {} is not a version", sh.version) };
        load[i].1 += s * (1.0 - share[i].1);
        notes.push(format!(
            "{}% of the other versions' requests mirrored to {}",
            super::format::g(sh.percent),
            sh.version
        ));
        if let Some(cmp) = sh.compare.as_ref().filter(|c| c.noise) {
            let c = cmp.percent / 100.0;
            for (j, (_, l)) in load.iter_mut().enumerate() {
                if j != i {
                    *l += share[j].1 * s * c;
                }
            }
            notes.push(format!(
                "{}% of those compared, each sent to its primary a second time (`noise`)",
                super::format::g(cmp.percent)
            ));
        }
    }
    Ok(Shares { share, load, notes })
}

/// What a KEDA trigger measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The backend's in-flight requests, summed over the version's pods.
    InFlight,
    /// The filter's request rate to the version.
    Routed,
}

#[derive(Debug, Clone)]
pub struct Trigger {
    pub name: String,
    pub kind: Kind,
    /// Per replica (`AverageValue`).
    pub threshold: f64,
    pub activation: f64,
}

/// A ScaledObject, as the model needs it.
#[derive(Debug, Clone)]
pub struct Keda {
    pub file: String,
    pub polling: i64,
    pub cooldown: i64,
    pub min: i64,
    pub max: i64,
    pub triggers: Vec<Trigger>,
}

/// The second day of a simulation, per second.
pub struct Sim {
    /// Pods of the Deployment (started, billed).
    pub pods: Vec<i64>,
    /// Pods ready.
    pub ready: Vec<i64>,
    /// The HPA's recommendation before `maxReplicaCount`.
    pub wish: Vec<i64>,
}

/// One version's Deployment under KEDA and the HPA over two days in one-second steps, a new pod
/// ready `delay_s` after it is asked for; without `cap`, `maxReplicaCount` is lifted.
pub fn simulate(lam_of: &dyn Fn(usize) -> f64, curve: &Curve, keda: &Keda, delay_s: f64, cap: bool) -> Sim {
    let a = &ASSUMED;
    let poll = usize::try_from(keda.polling.max(1)).unwrap_or(1);
    let max_r = if cap { keda.max } else { 1_000_000_000 };
    let min_r = keda.min;
    // Ready times, one per pod, rising: the ones not ready yet are the last.
    let mut pods: Vec<f64> = Vec::new();
    // (t, recommendation) within the scale-down stabilisation window.
    let mut recs: Vec<(i64, i64)> = Vec::new();
    let mut last_active: i64 = -1_000_000_000;
    let mut wish: i64 = 0;
    let mut out = Sim { pods: Vec::with_capacity(DAY), ready: Vec::with_capacity(DAY), wish: Vec::with_capacity(DAY) };
    let ready_at = |pods: &[f64], t: usize| pods.partition_point(|r| *r <= t as f64) as i64;
    for t in 0..2 * DAY {
        let lam = lam_of(t);
        let ti = t as i64;
        if t % poll == 0 {
            let ready = ready_at(&pods, t);
            let inflight = if ready > 0 { lam * curve.p50_at(lam / ready as f64) / 1000.0 } else { 0.0 };
            let metric = |k: Kind| match k {
                Kind::InFlight => inflight,
                Kind::Routed => lam,
            };
            let active = keda.triggers.iter().any(|tr| metric(tr.kind) > tr.activation);
            if active {
                last_active = ti;
            }
            let cur = pods.len() as i64;
            let new = if cur == 0 {
                wish = if active { min_r.max(1) } else { min_r };
                wish
            } else if !active && min_r == 0 && ti - last_active >= keda.cooldown {
                recs.clear();
                0
            } else {
                let mut want: i64 = 0;
                for tr in &keda.triggers {
                    let m = metric(tr.kind);
                    let ratio = m / (tr.threshold * cur as f64);
                    let asks =
                        if (ratio - 1.0).abs() <= a.hpa_tolerance { cur } else { (m / tr.threshold).ceil() as i64 };
                    want = want.max(asks);
                }
                wish = want.max(min_r.max(1));
                let rec = max_r.min(wish);
                recs.retain(|(ts, _)| ti - ts < a.hpa_scale_down_window_s);
                recs.push((ti, rec));
                if rec > cur {
                    let up = (cur + a.hpa_scale_up_pods)
                        .max((cur as f64 * (1.0 + a.hpa_scale_up_percent as f64 / 100.0)).ceil() as i64);
                    rec.min(up)
                } else {
                    cur.min(recs.iter().map(|(_, r)| *r).max().unwrap_or(rec))
                }
            };
            if new > cur {
                pods.extend(std::iter::repeat_n(t as f64 + delay_s, (new - cur) as usize));
            } else if new < cur {
                pods.truncate(new as usize);
            }
        }
        if t >= DAY {
            out.pods.push(pods.len() as i64);
            out.ready.push(ready_at(&pods, t));
            out.wish.push(wish);
        }
    }
    out
}

/// One minute of the day, for one version.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Minute {
    /// The worst second's per-replica load (∞ with traffic and no ready pod).
    pub load: f64,
    /// The worst second's p99 estimate (∞ past the sweep).
    pub p99: f64,
    /// Past the p99 target.
    pub over: bool,
    /// Past the load the sweep sustained, or traffic and no ready pod.
    pub overloaded: bool,
}

/// Per minute of the day: worst per-replica load, p99 estimate, and flags.
pub fn minute_stats(lam_of: &dyn Fn(usize) -> f64, ready: &[i64], curve: &Curve) -> Vec<Minute> {
    let x_last = curve.xs.last().copied().unwrap_or(0.0);
    (0..MINUTES)
        .map(|m| {
            let mut st = Minute { load: 0.0, p99: 0.0, over: false, overloaded: false };
            for (s, &ready) in ready.iter().enumerate().skip(m * 60).take(60) {
                let lam = lam_of(DAY + s);
                if lam <= 0.0 {
                    continue;
                }
                if ready == 0 {
                    st = Minute { load: f64::INFINITY, p99: f64::INFINITY, over: true, overloaded: true };
                    continue;
                }
                let per = lam / ready as f64;
                st.load = st.load.max(per);
                let p99 = if per > x_last { f64::INFINITY } else { interp(per, &curve.xs, &curve.p99s) };
                st.p99 = st.p99.max(p99);
                st.over |= p99 > curve.p99_target;
                st.overloaded |= per > curve.keep_up;
            }
            st
        })
        .collect()
}

/// The per-replica load at which Little's law on the sweep's p50 gives `in_flight` requests
/// in flight (bisection over the sweep's range).
pub fn load_at_in_flight(curve: &Curve, in_flight: f64) -> f64 {
    let (mut lo, mut hi) = (0.0, curve.xs.last().copied().unwrap_or(0.0));
    for _ in 0..60 {
        let mid = (lo + hi) / 2.0;
        if mid * curve.p50_at(mid) / 1000.0 < in_flight {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (lo + hi) / 2.0
}

/// Requests in flight per replica at `rate` per replica (Little's law on the sweep's p50).
pub fn in_flight_at(curve: &Curve, rate: f64) -> f64 {
    rate * curve.p50_at(rate) / 1000.0
}

/// Python's `sum()` over floats (3.11: left to right from 0).
pub fn py_sum(xs: impl IntoIterator<Item = f64>) -> f64 {
    xs.into_iter().fold(0.0, |a, x| a + x)
}
