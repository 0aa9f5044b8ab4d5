//! `docs/capacity.md` and its charts from the model's results, and the number formats they use.

use switchyard_load::plot::{self, DayLine, DayPanel};

use super::inputs::{COLD_START, DEMO, Inputs, KEDA_DIR, KEDA_SUFFIX, PODS_DIR, PODS_SUFFIX, POLICY, PRICES, SWEEP};
use super::model::{self, ASSUMED, Curve, DAY, MINUTES, Minute, Shares, Traffic};
use super::{OUT_MD, SOURCE};

// ---------------------------------------------------------------------------------------------
// Number formats (those of Python's format mini-language the document was first written with)

/// `%g`: six significant digits, no trailing zeros.
pub fn g(x: f64) -> String {
    plot::fmt_g(x)
}

/// A float as Python's `str()` writes it: `50.0`, `0.83`.
pub fn py_float(x: f64) -> String {
    format!("{x:?}")
}

/// Thousands separators in the integer part of a formatted number: `12,445.5`.
fn commas(s: &str) -> String {
    let (sign, rest) = s.strip_prefix('-').map_or(("", s), |r| ("-", r));
    let (int, frac) = rest.find('.').map_or((rest, ""), |i| rest.split_at(i));
    if !int.bytes().all(|b| b.is_ascii_digit()) {
        return s.to_owned();
    }
    let mut out = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}{frac}")
}

/// `{x:,.0f}`
pub fn c0(x: f64) -> String {
    commas(&format!("{x:.0}"))
}

/// `{x:,.1f}`
pub fn c1(x: f64) -> String {
    commas(&format!("{x:.1}"))
}

/// `{n:,}`
pub fn ci(n: impl Into<i64>) -> String {
    commas(&n.into().to_string())
}

/// `{x:.0%}`
pub fn pct0(x: f64) -> String {
    format!("{:.0}%", x * 100.0)
}

/// `{x:.2%}`
pub fn pct2(x: f64) -> String {
    format!("{:.2}%", x * 100.0)
}

pub fn fmt_rate(x: f64) -> String {
    if x == f64::INFINITY {
        "∞".into()
    } else if x >= 100.0 {
        c0(x)
    } else {
        format!("{x:.1}")
    }
}

pub fn fmt_ms(x: f64, last: f64) -> String {
    if x == f64::INFINITY {
        format!("> {last:.0} (past the sweep)")
    } else if x < 100.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.0}")
    }
}

/// Dollars: whole above 100, cents above 1, else two significant figures however small
/// (`$0.0000024`).
pub fn money(x: f64) -> String {
    if x >= 100.0 {
        format!("${}", c0(x))
    } else if x >= 1.0 {
        format!("${x:.2}")
    } else if x <= 0.0 {
        "$0".into()
    } else {
        let digits = (1 - x.log10().floor() as i64).max(2) as usize;
        format!("${x:.digits$}")
    }
}

// ---------------------------------------------------------------------------------------------
// Results

/// Uncapped: the same version without `maxReplicaCount`.
pub struct Uncapped {
    pub peak: i64,
    pub rh: f64,
    pub overloaded: usize,
    /// The busiest second's pods, per minute.
    pub minutes: Vec<i64>,
}

pub struct VersionResult {
    pub name: String,
    pub pods: Vec<i64>,
    pub stats: Vec<Minute>,
    pub capped: bool,
    pub uncapped: Option<Uncapped>,
    pub max: i64,
    pub slow_overloaded: usize,
    pub slow_over: usize,
    /// The capacity plan of (a), minute by minute with no delay: replica-hours, peak.
    pub plan_rh: f64,
    pub plan_peak: i64,
    /// Minutes the HPA's recommendation is above `maxReplicaCount`.
    pub cap_minutes: usize,
    pub changes: usize,
}

impl VersionResult {
    fn peak(&self) -> i64 {
        self.pods.iter().copied().max().unwrap_or(0)
    }

    fn overloaded(&self) -> usize {
        self.stats.iter().filter(|s| s.overloaded).count()
    }

    /// The busiest second's pods in `minute`.
    fn pods_in(&self, minute: usize) -> i64 {
        max_in(&self.pods, minute)
    }
}

fn max_in(per_second: &[i64], minute: usize) -> i64 {
    per_second[minute * 60..(minute + 1) * 60].iter().copied().max().unwrap_or(0)
}

/// One model at one scale of the demo's load.
pub struct Scenario {
    pub scale: u32,
    pub model: String,
    /// The model's client requests/s at the peak.
    pub peak: f64,
    pub versions: Vec<VersionResult>,
    /// The model's client requests over the day.
    pub inferences: f64,
    /// All versions' pods, per second.
    pub total: Vec<i64>,
}

impl Scenario {
    fn any_minute(&self, minute: usize, f: impl Fn(&Minute) -> bool) -> bool {
        self.versions.iter().any(|v| f(&v.stats[minute]))
    }

    fn minutes(&self, f: impl Fn(&Minute) -> bool + Copy) -> usize {
        (0..MINUTES).filter(|m| self.any_minute(*m, f)).count()
    }
}

pub struct Model<'a> {
    pub inputs: &'a Inputs,
    pub traffic: Traffic,
    /// The policy's models that have a sweep, in its order.
    pub models: Vec<String>,
    pub shares: Vec<Shares>,
    pub curves: Vec<Curve>,
    /// Cold start used per ScaledObject, seconds (the worst run's spawn → ready).
    pub cold_s: std::collections::BTreeMap<(String, String), f64>,
    pub scenarios: Vec<Scenario>,
}

// ---------------------------------------------------------------------------------------------
// The document

pub fn markdown(r: &Model) -> anyhow::Result<String> {
    let a = &ASSUMED;
    let inp = r.inputs;
    let cpu_price = inp.cpu_price;
    let price = format!("${}", g(cpu_price));
    let keda_glob = format!("{KEDA_DIR}/*{KEDA_SUFFIX}");
    let pods_glob = format!("{PODS_DIR}/*{PODS_SUFFIX}");
    let sweep_machine = &inp.sweep_machine;
    let cold = &inp.cold;
    let mut l: Vec<String> = Vec::new();
    macro_rules! w {
        ($($t:tt)*) => { l.push(format!($($t)*)) };
    }
    w!("<!-- Generated by `switchyard-bench capacity` ({SOURCE}/): do not edit by hand; re-run it. \
         `switchyard-bench capacity --check` fails when this file or its charts are stale. -->");
    w!("# Capacity on paper\n");
    w!(
        "How many backend replicas the demo models need, and what the KEDA autoscaling rule as generated would do with a \
         day of traffic, worked out from the benchmarks rather than from a cluster. Generated by `switchyard-bench capacity` \
         from the files named below; nothing here was measured on Kubernetes.\n"
    );
    w!(
        "**Everything measured here is CPU, on a shared 2-core machine** where the load generator ran beside the backend; \
         no GPU was measured, so the `gpu` price in `dashboards/prices.json` is not used.\n"
    );

    // ---- inputs
    w!("## Inputs\n");
    w!("| what | from | kind |");
    w!("|---|---|---|");
    w!(
        "| latency and throughput per model: the saturation sweep (open-loop steps; achieved req/s, p50, p99, share sent late) | \
         `{SWEEP}`, the `sweep` section of `docs/benchmarks.md` ({sweep_machine}) | measured |"
    );
    let load_before = cold.get("load_average_1m").and_then(|l| l.get("before")).map_or("?".into(), ToString::to_string);
    w!(
        "| start-up time per model version (spawn → ready) | `{COLD_START}` ({}, {} runs, load average {load_before}) | measured |",
        cold["machine"].as_str().unwrap_or("?"),
        cold["runs_per_version"]
    );
    w!(
        "| the demo's traffic | `{DEMO}`'s load phases (`DEMO_LOAD` in `{SOURCE}/inputs.rs`, checked against the script by a test); \
         `docs/bench/protocols.json` (the `protocols` section of `docs/benchmarks.md`) for a closed-loop phase's rate | \
         measured / configured |"
    );
    w!("| versions, weights, shadow, SLOs | `{POLICY}` | configured |");
    w!("| autoscaling: triggers, thresholds, polling, cooldown, min/max replicas | `{keda_glob}` | configured |");
    w!("| hourly price of a CPU engine: {price} | `{PRICES}` | configured |");
    w!("| everything in the list below | `ASSUMED` in `{SOURCE}/model.rs` | **assumed** |\n");
    w!("Assumed:\n");
    w!(
        "- The backend's p99 target is {} of the SLO's latency threshold in the policy (the rest is for \
         Envoy, the network and autoscaling transients). The sweep reports p99; where the SLO's objective is a lower quantile \
         (resnet18: p95), meeting it at p99 is stricter than needed.",
        pct0(a.p99_budget_share)
    );
    w!(
        "- A sweep step with more than {}% of its requests sent late was limited by the machine (the generator \
         shares the cores), not only by the backend, and does not count as a measured service rate.",
        g(a.late_limit_pct)
    );
    w!(
        "- Headroom: each replica is planned at the measured rate ÷ {} (the sweep is one run of 4 s steps, and \
         timings on this machine move by tens of percent between runs).",
        g(a.headroom)
    );
    let scales: Vec<String> = a.scales.iter().map(|s| format!("{}×", ci(*s))).collect();
    w!(
        "- Traffic: a smooth daily curve, trough {} of the peak at {:02.0}:00, peak at \
         {:02.0}:00 (raised-cosine halves), one-second steps, at {} \
         the demo's peak load. No spikes, no weekly pattern.",
        pct0(a.trough_fraction),
        a.trough_hour,
        a.peak_hour,
        scales.join(" and ")
    );
    w!(
        "- Scale-up: a new pod is ready {} s (scheduling and container start on a node with room and \
         the image already pulled; the readiness probe's 2 s period) plus the measured cold start (the worst run's spawn → ready) \
         after the HPA asks for it; {} s instead (a new node, an image pull) as a sensitivity case. Node \
         autoscaling is not modelled.",
        g(a.scheduling_allowance_s),
        g(a.slow_allowance_s)
    );
    w!(
        "- KEDA drives an HPA with Kubernetes' defaults (the ScaledObjects set no `advanced` behaviour): tolerance \
         {}, scale-up at most +{}% or +{} pods per \
         {} s, scale-down only to the highest recommendation of the last {} s \
         (the stabilisation window); its sync period taken as the ScaledObject's `pollingInterval`. Scale-to-zero (min 0) after \
         `cooldownPeriod` with every trigger at or below its activation threshold.",
        g(a.hpa_tolerance),
        a.hpa_scale_up_percent,
        a.hpa_scale_up_pods,
        a.hpa_period_s,
        a.hpa_scale_down_window_s
    );
    w!(
        "- In-flight requests per replica follow Little's law: per-replica load × latency at that load, the latency being the \
         sweep's p50 interpolated linearly in offered (target) req/s (held flat below the first step and beyond the last); the \
         mean would be a little higher. Load spreads evenly over ready pods; metrics reach KEDA with no scrape lag."
    );
    w!(
        "- A minute is **overloaded** when a version's per-replica load passed the highest offered rate the sweep shows the \
         backend sustaining (every step up to it achieved ≥ {} of its target), or it had traffic and \
         no ready pod. The hourly p99 is the worst minute's estimate (the sweep's p99 interpolated at that minute's worst \
         per-replica load), an upper bound for the hour.\n",
        pct0(a.keep_up_fraction)
    );

    // ---- demo load
    w!("The demo's load (the peak of what `{DEMO}` sends, per model):\n");
    for m in &r.models {
        let (rate, how) = &inp.demo[m];
        w!("- {m}: **{} req/s** — {how}.", c0(*rate));
    }
    w!("");
    w!("Traffic per version, from the policy (shares of the model's client requests, duplicates included):\n");
    w!("| model | version | weight | load share | from |");
    w!("|---|---|---:|---:|---|");
    for (m, sh) in r.models.iter().zip(&r.shares) {
        let from = if sh.notes.is_empty() { "the split".to_owned() } else { sh.notes.join("; ") };
        for ((v, share), (_, load)) in sh.share.iter().zip(&sh.load) {
            w!("| {m} | {v} | {} | {} | {from} |", pct0(*share), pct2(*load));
        }
    }
    w!("");

    // ---- (a)
    w!("## (a) Service rate per replica\n");
    w!(
        "| model | SLO (policy) | backend p99 target | highest step that meets it | achieved req/s | p50 / p99 ms | sent late | \
         planned per replica (÷ {}) | replicas per 1,000 req/s | CPU cost per 1k inferences at the planned rate |",
        g(a.headroom)
    );
    w!("|---|---|---:|---|---:|---:|---:|---:|---:|---:|");
    for (m, c) in r.models.iter().zip(&r.curves) {
        let slo = slo_of(inp, m)?;
        let s = &c.step;
        let planned = c.rate / a.headroom;
        let per_1k = (1000.0 / planned).ceil() as i64;
        let cost_1k = cpu_price / (planned * 3600.0) * 1000.0;
        w!(
            "| {m} | p{} ≤ {} ms | {} ms | {} of the \
             {} req/s ceiling | {} | {} / {} | {}% | \
             {} req/s | {per_1k} | {} |",
            g(slo.latency_objective * 100.0),
            g(slo.latency_ms as f64),
            g(c.p99_target),
            s.step,
            g(inp.sweep[m].ceiling),
            c0(s.achieved),
            g(s.p50),
            g(s.p99),
            g(s.late_pct),
            c0(planned),
            money(cost_1k)
        );
    }
    w!("");
    for (m, c) in r.models.iter().zip(&r.curves) {
        let mut line = format!(
            "- {m}: the steps above it fail: {}.",
            if c.above.is_empty() { "none".into() } else { c.above.join("; ") }
        );
        if !c.skipped.is_empty() {
            let skipped: Vec<String> =
                c.skipped.iter().map(|s| format!("{} ({}% late)", s.step, g(s.late_pct))).collect();
            line += &format!(
                " Below it, {} was also machine-limited; the criterion takes the highest step that passes.",
                skipped.join(", ")
            );
        }
        if c.above.first().is_some_and(|f| !f.contains("p99")) {
            line += " What bounds the figure is the machine, not the latency target: the next step still met the target \
                     but with requests leaving late, so the backend's own limit on a dedicated machine may well be higher.";
        }
        line += &format!(
            " The sweep shows the backend sustaining up to {} req/s offered ({} step).",
            c0(c.keep_up),
            c.keep_up_step.as_ref().map_or("?", |s| s.step.as_str())
        );
        l.push(line);
    }
    w!("");
    let priced_vcpus = vcpus_in(&inp.prices_description);
    let billed = match priced_vcpus {
        Some(n) if !inp.pod_cpus.is_empty() => {
            let cpus: Vec<String> = inp.pod_cpus.iter().map(|x| g(*x)).collect();
            let shares: Vec<String> = inp.pod_cpus.iter().map(|x| pct0(x / n as f64)).collect();
            format!(
                " That price is for {n} vCPUs per engine (its description), while the generated \
                 InferenceServices request {} CPU per pod (`{pods_glob}`) and the rates were \
                 measured on {sweep_machine}, shared with the load generator: billed by their request, the CPU costs here would be \
                 {} of those shown.",
                cpus.join(", "),
                shares.join(", ")
            )
        }
        _ => String::new(),
    };
    w!(
        "The replicas figure is ceil(1,000 × {} ÷ rate). The cost column is `{PRICES}`'s CPU price \
         ({price}/h) over the planned rate, i.e. a replica kept exactly at it; the day below is what autoscaling \
         actually spends.{billed}",
        g(a.headroom)
    );
    w!("");

    // ---- (b)
    w!("## (b) KEDA over a day\n");
    w!("The ScaledObjects as generated:\n");
    w!(
        "| version | min | max | pollingInterval | cooldownPeriod | triggers (AverageValue per replica) | cold start used (worst run, spawn → ready) |"
    );
    w!("|---|---:|---:|---:|---:|---|---:|");
    for ((m, v), k) in &inp.keda {
        let trig: Vec<String> = k
            .triggers
            .iter()
            .map(|t| format!("`{}` {} (activation {})", t.name, c0(t.threshold), g(t.activation)))
            .collect();
        w!(
            "| {m}:{v} | {} | {} | {} s | {} s | {} | {:.2} s |",
            k.min,
            k.max,
            k.polling,
            k.cooldown,
            trig.join("; "),
            r.cold_s[&(m.clone(), v.clone())]
        );
    }
    w!("");
    w!(
        "The `in-flight` trigger asks for ceil(Σ in-flight ÷ threshold) replicas; the `routed` trigger (the filter's request \
         rate, threshold 1,000,000 req/s) wakes a version from zero, when no pod exists to report in-flight requests, and \
         otherwise asks for 1. The higher of the two wins.\n"
    );

    w!("### Per scenario\n");
    w!(
        "Replica-hours count every pod from the moment the HPA asks for it (a starting pod is billed) until it is removed; \
         cost is replica-hours × {price}; per 1k inferences divides by the model's client requests that day \
         (mirrors and comparison duplicates are served but not counted as inferences).\n"
    );
    w!(
        "| scenario | peak traffic | peak replicas (per version) | replica-hours / day | cost / day | cost per 1k inferences | \
         replica count changes / day | overloaded minutes | minutes over the p99 target | the plan of (a): peak, replica-hours, cost | \
         with {} s to start a pod: overloaded, over target |",
        g(a.slow_allowance_s)
    );
    w!("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for res in &r.scenarios {
        let vs = &res.versions;
        let rh = res.total.iter().sum::<i64>() as f64 / 3600.0;
        let cost = rh * cpu_price;
        let per_k = cost / (res.inferences / 1000.0);
        let over_m = res.minutes(|s| s.over);
        let ol_m = res.minutes(|s| s.overloaded);
        let peaks: Vec<String> =
            vs.iter().map(|v| format!("{} {}{}", v.name, v.peak(), if v.capped { " = max" } else { "" })).collect();
        let changes: usize = vs.iter().map(|v| v.changes).sum();
        let plan_rh = model::py_sum(vs.iter().map(|v| v.plan_rh));
        let plan_pk: Vec<String> = vs.iter().map(|v| format!("{} {}", v.name, v.plan_peak)).collect();
        let plan_cost = money(plan_rh * cpu_price);
        let slow = format!(
            "{}, {}",
            vs.iter().map(|v| v.slow_overloaded).sum::<usize>(),
            vs.iter().map(|v| v.slow_over).sum::<usize>()
        );
        w!(
            "| {}, {}× | {} req/s | {} ({}) | {} | {} | {} | \
             {changes} | {ol_m} | {over_m} | {}; {}, {plan_cost} | {slow} |",
            res.model,
            ci(res.scale),
            c0(res.peak),
            res.total.iter().copied().max().unwrap_or(0),
            peaks.join(", "),
            c1(rh),
            money(cost),
            money(per_k),
            plan_pk.join(", "),
            c1(plan_rh)
        );
    }
    w!("");
    w!(
        "Overloaded and over-target minutes are counted over the model (a minute counts once if any version had it); the \
         sensitivity column counts them per version and adds them up.\n"
    );

    let mut caps = Vec::new();
    for res in &r.scenarios {
        for v in &res.versions {
            let Some(u) = v.uncapped.as_ref().filter(|_| v.capped) else { continue };
            let (m, scale, max) = (&res.model, ci(res.scale), v.max);
            let held = v.overloaded();
            let mut text = format!(
                "- **{m}:{} at {scale}×: `maxReplicaCount: {max}` caps it.** The HPA's recommendation is \
                 above {max} for {} minutes of the day. Without the cap it peaks at \
                 {} replicas ({} replica-hours, {} a day, \
                 {} overloaded minutes); the capacity plan of (a) needs {} at the peak \
                 ({} replica-hours). ",
                v.name,
                v.cap_minutes,
                ci(u.peak),
                c0(u.rh),
                money(u.rh * cpu_price),
                u.overloaded,
                ci(v.plan_peak),
                c0(v.plan_rh)
            );
            if held > 0 {
                text += &format!(
                    "Held at {max}, the version is overloaded for {held} minutes of the day: with this rule \
                     the cap should be at least {}",
                    ci(u.peak)
                );
                if u.overloaded > 0 {
                    text += &format!(
                        ", and even uncapped the rule leaves it overloaded for {} minutes, so the \
                         cap wants the plan's {} with a threshold that matches the model (below).",
                        u.overloaded,
                        ci(v.plan_peak)
                    );
                } else {
                    text += &format!(
                        "; with a threshold that matches the model (below), the plan's {} would \
                         do.",
                        ci(v.plan_peak)
                    );
                }
            } else {
                text += &format!(
                    "Held at {max} it is never past its sustained load: here the cap only trims what the \
                     rule over-asks."
                );
            }
            caps.push(text);
        }
    }
    if caps.is_empty() {
        w!("`maxReplicaCount` binds in no scenario.\n");
    } else {
        w!("Where `maxReplicaCount` binds:\n");
        l.extend(caps);
        w!("");
    }

    w!("### Charts\n");
    for scale in a.scales {
        w!("![KEDA at {scale}× the demo load](bench/capacity-{scale}x.svg)\n");
    }

    w!("### Hour by hour\n");
    w!(
        "Traffic is the model's mean over the hour; replicas are all versions' pods (mean, max); the per-replica load is the \
         worst second of the busiest version; the p99 estimate is the worst minute's.\n"
    );
    for res in &r.scenarios {
        let c = curve_of(r, &res.model);
        w!(
            "#### {} at {}× ({} req/s at the peak; p99 target {} ms; sustained \
             {} req/s per replica in the sweep)\n",
            res.model,
            ci(res.scale),
            c0(res.peak),
            g(c.p99_target),
            c0(c.keep_up)
        );
        w!(
            "| hour | traffic req/s | replicas mean | replicas max | worst per-replica req/s | p99 estimate ms | minutes over target | overloaded minutes |"
        );
        w!("|---|---:|---:|---:|---:|---:|---:|---:|");
        for h in 0..24 {
            let mins = h * 60..h * 60 + 60;
            let lam = model::py_sum((h * 3600..h * 3600 + 3600).map(|s| r.traffic.at(DAY + s, res.peak))) / 3600.0;
            let tot = &res.total[h * 3600..(h + 1) * 3600];
            let worst = |f: fn(&Minute) -> f64| {
                res.versions
                    .iter()
                    .flat_map(|v| mins.clone().map(move |mm| f(&v.stats[mm])))
                    .fold(f64::NEG_INFINITY, f64::max)
            };
            let count = |f: fn(&Minute) -> bool| mins.clone().filter(|mm| res.any_minute(*mm, f)).count();
            let blank = |n: usize| if n == 0 { String::new() } else { n.to_string() };
            w!(
                "| {h:02}:00 | {} | {:.1} | {} | {} | {} | \
                 {} | {} |",
                c0(lam),
                tot.iter().sum::<i64>() as f64 / 3600.0,
                tot.iter().copied().max().unwrap_or(0),
                fmt_rate(worst(|s| s.load)),
                fmt_ms(worst(|s| s.p99), c.last_p99),
                blank(count(|s| s.over)),
                blank(count(|s| s.overloaded))
            );
        }
        w!("");
    }

    // ---- findings
    w!("## What it says\n");
    for (m, (c, sh)) in r.models.iter().zip(r.curves.iter().zip(&r.shares)) {
        let planned = c.rate / a.headroom;
        let first = sh.share.first().map(|(v, _)| v.clone()).unwrap_or_default();
        let k = &inp.keda[&(m.clone(), first)];
        let Some(thr) = k.triggers.iter().find(|t| t.kind == model::Kind::InFlight).map(|t| t.threshold) else {
            anyhow::bail!("{}: no in-flight trigger", k.file);
        };
        let at_thr = model::load_at_in_flight(c, thr);
        let inflight_planned = model::in_flight_at(c, planned);
        let verdict = if at_thr < planned * 0.9 {
            format!(
                "below the planned rate: the rule runs about {:.1}× the replicas the measurements \
                 call for",
                planned / at_thr
            )
        } else if at_thr > c.keep_up {
            format!(
                "past the {} req/s the sweep shows it sustaining. Below overload a replica holds \
                 only about {inflight_planned:.1} in flight, well under the threshold, so the HPA recommends fewer \
                 replicas; once the stabilisation window lets it scale down the rest overload, their in-flight count \
                 jumps and it scales up again: a saw-tooth every few minutes (the replica count changes column), \
                 with overloaded minutes in every busy hour",
                c0(c.keep_up)
            )
        } else {
            "close to the planned rate".to_owned()
        };
        w!(
            "- **{m}**: the `in-flight` threshold of {} per replica is reached at about {} req/s per replica \
             (Little's law on the sweep's p50), {verdict}. The planned rate ({} req/s) corresponds to about \
             {inflight_planned:.1} in flight per replica, so a threshold near {} would scale \
             this model on what it was measured to do (derived, not tried on a cluster; on a GPU the figure changes).",
            g(thr),
            c0(at_thr),
            c0(planned),
            ci((inflight_planned.round_ties_even() as i64).max(1))
        );
    }
    let idle: Vec<String> = r
        .models
        .iter()
        .zip(&r.shares)
        .flat_map(|(m, sh)| sh.load.iter().filter(|(_, s)| *s == 0.0).map(move |(v, _)| format!("{m}:{v}")))
        .collect();
    w!(
        "- The trough is {} of the peak, so no version with traffic is ever idle for \
         `cooldownPeriod`: scale-to-zero happens only for a version with no traffic at all{}",
        pct0(a.trough_fraction),
        if idle.is_empty() {
            ".".to_owned()
        } else {
            format!(" ({}: no weight and no shadow, zero replicas all day).", idle.join(", "))
        }
    );
    let diffs: Vec<String> = r
        .scenarios
        .iter()
        .map(|res| {
            let base: usize = res.versions.iter().map(VersionResult::overloaded).sum();
            let slow: usize = res.versions.iter().map(|v| v.slow_overloaded).sum();
            format!("{} {}×: {base} → {slow}", res.model, ci(res.scale))
        })
        .collect();
    w!(
        "- Start-up time: with {} s instead of {} s + the cold start, \
         overloaded version-minutes go {}. Against a smooth daily curve the traffic moves a few percent \
         while a pod starts; spikes (not modelled) are where start-up time shows.",
        g(a.slow_allowance_s),
        g(a.scheduling_allowance_s),
        diffs.join("; ")
    );
    w!("");
    w!("## Limits\n");
    w!(
        "- Measured on CPU ({sweep_machine}), the cores shared between the backend and the load generator; one sweep run of \
         4 s per step. A pod with its own cores, or a GPU, has other figures; re-run the sweep there and \
         `switchyard-bench capacity`."
    );
    w!(
        "- The cold start was measured as a process start with the files in the page cache; a pod on a fresh node also \
         pulls and reads its image (torch with its CUDA libraries is several GB), covered only by the allowance."
    );
    w!(
        "- Little's law with the client-side p50 (loopback, generator included) stands in for the backend's mean in-flight \
         gauge; the real gauge is sampled by Prometheus every scrape and KEDA sees it late by up to a scrape interval."
    );
    w!(
        "- Even spreading over ready pods, no per-pod variance, no retries, no 429s from the backend's admission limits \
         (past overload the real queue is bounded, the model's is not)."
    );
    w!(
        "- The traffic shape, its trough, the headroom and the allowances are assumptions, stated above; change `ASSUMED` in \
         `{SOURCE}/model.rs` and re-run."
    );
    w!(
        "- Sticky sessions and guard trips, which move traffic between versions, are not modelled; the split is the policy's."
    );
    Ok(l.join("\n").trim_end().to_owned() + "\n")
}

fn slo_of<'a>(inp: &'a Inputs, model: &str) -> anyhow::Result<&'a switchyard_policy::config::Slo> {
    inp.policy
        .models
        .get(model)
        .and_then(|m| m.slo.as_ref())
        .ok_or_else(|| anyhow::anyhow!("{POLICY}: {model} has no slo"))
}

fn curve_of<'a>(r: &'a Model, model: &str) -> &'a Curve {
    let i = r.models.iter().position(|m| m == model).unwrap_or(0);
    &r.curves[i]
}

/// The vCPUs a price is for, from its description (`… 2 vCPUs …`): the first number written
/// right before ` vCPUs`.
pub fn vcpus_in(description: &str) -> Option<u64> {
    description.match_indices(" vCPUs").find_map(|(i, _)| {
        let before = &description[..i];
        let digits = before.len() - before.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        (digits > 0).then(|| before[i - digits..].parse().ok()).flatten()
    })
}

/// The day at `scale`, one panel per model.
pub fn chart(r: &Model, scale: u32) -> String {
    let panels: Vec<DayPanel> = r
        .scenarios
        .iter()
        .filter(|res| res.scale == scale)
        .map(|res| {
            let vs = &res.versions;
            let traffic: Vec<f64> = (0..MINUTES)
                .map(|mm| model::py_sum((mm * 60..mm * 60 + 60).map(|s| r.traffic.at(DAY + s, res.peak))) / 60.0)
                .collect();
            let pods: Vec<f64> = (0..MINUTES).map(|mm| max_in(&res.total, mm) as f64).collect();
            let wish: Vec<f64> = if vs.iter().any(|v| v.capped) {
                (0..MINUTES)
                    .map(|mm| {
                        vs.iter()
                            .map(|v| match (&v.uncapped, v.capped) {
                                (Some(u), true) => u.minutes[mm],
                                _ => v.pods_in(mm),
                            })
                            .sum::<i64>() as f64
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let top = |v: &[f64]| v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let mut right = vec![DayLine {
                name: "replicas, all versions (right)",
                color: "#d62728",
                width: 1.8,
                dash: None,
                values: pods,
            }];
            if !wish.is_empty() && top(&wish) > top(&right[0].values) {
                right.push(DayLine {
                    name: "the same without maxReplicaCount",
                    color: "#ff7f0e",
                    width: 1.4,
                    dash: Some("4 3"),
                    values: wish,
                });
            }
            let names: Vec<&str> = vs.iter().map(|v| v.name.as_str()).collect();
            DayPanel {
                title: format!("{}: {} req/s at the peak, replicas of {}", res.model, c0(res.peak), names.join(" + ")),
                left_axis: "requests/s",
                left: DayLine {
                    name: "traffic, req/s (left)",
                    color: "#1f77b4",
                    width: 1.8,
                    dash: None,
                    values: traffic,
                },
                right_axis: "replicas",
                right,
                shaded: (0..MINUTES).filter(|mm| res.any_minute(*mm, |s| s.overloaded)).collect(),
            }
        })
        .collect();
    plot::day_chart(
        &format!("KEDA on a simulated day at {scale}× the demo load: traffic and replicas"),
        &format!(
            "switchyard-bench capacity ({OUT_MD}). Shaded: minutes a version ran past the load the sweep sustained."
        ),
        &panels,
    )
}
