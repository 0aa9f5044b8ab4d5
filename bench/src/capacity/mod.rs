//! `switchyard-bench capacity`: capacity on paper. From the benchmarks' JSON (the saturation
//! sweep, the protocols benchmark, the cold start), the prices, the policy, the generated
//! ScaledObjects and the demo's load, it works out (a) the service rate one replica sustains
//! and what that costs, and (b) what KEDA and the HPA, as generated, do with a day of that load
//! at 10× and 1,000×, second by second; it writes `docs/capacity.md` and its charts
//! (`docs/bench/capacity-{10,1000}x.svg`). Nothing is measured here: it runs in seconds, and
//! `--check` says whether the committed files are what it would write. Deterministic output.

mod format;
mod inputs;
mod model;
mod report;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use self::inputs::{COLD_START, DEMO, KEDA_DIR, KEDA_SUFFIX, POLICY, SWEEP};
use self::model::{ASSUMED, DAY, MINUTES, Traffic};
use self::report::{Scenario, Uncapped, VersionResult};

pub const OUT_MD: &str = "docs/capacity.md";
/// Where the model lives (the document names it).
pub const SOURCE: &str = "bench/src/capacity";

fn out_svg(scale: u32) -> String {
    format!("docs/bench/capacity-{scale}x.svg")
}

#[derive(clap::Args)]
pub struct CapacityArgs {
    /// Write nothing; exit 1, naming the files, when the committed ones differ from what it
    /// would write.
    #[arg(long)]
    check: bool,
    /// The checkout: inputs are read and outputs written under it.
    #[arg(long, default_value = ".")]
    root: PathBuf,
}

/// The document and its charts: (path under the checkout, contents).
pub fn build(root: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let a = &ASSUMED;
    let inp = inputs::read_all(root)?;
    let policy = &inp.policy.models;
    let models: Vec<String> = policy.keys().filter(|m| inp.sweep.contains_key(*m)).cloned().collect();
    let missing: Vec<&str> = policy
        .keys()
        .filter(|m| !inp.sweep.contains_key(*m) || !inp.demo.contains_key(*m))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        bail!("models in {POLICY} without a sweep in {SWEEP} or load in {DEMO}: {}", missing.join(", "));
    }
    let mut shares = Vec::new();
    let mut curves = Vec::new();
    for m in &models {
        shares.push(model::version_shares(&policy[m]).with_context(|| format!("{POLICY}: {m}"))?);
        let slo = policy[m].slo.as_ref().with_context(|| format!("{POLICY}: {m} has no slo"))?;
        curves.push(model::service_rate(m, &inp.sweep[m].steps, slo.latency_ms as f64)?);
    }
    let mut cold_s = BTreeMap::new();
    for (m, v) in inp.keda.keys() {
        let ms = inp.cold["models"][format!("{m}:{v}")]["ready_max_ms"]
            .as_f64()
            .with_context(|| format!("{COLD_START} has no {m}:{v}"))?;
        cold_s.insert((m.clone(), v.clone()), ms / 1000.0);
    }
    let traffic = Traffic::new();
    let mut scenarios = Vec::new();
    for scale in a.scales {
        for (i, m) in models.iter().enumerate() {
            let (curve, peak) = (&curves[i], inp.demo[m].0 * f64::from(scale));
            let mut versions = Vec::new();
            for (v, share) in &shares[i].load {
                let key = (m.clone(), v.clone());
                let Some(k) = inp.keda.get(&key) else {
                    bail!("no ScaledObject for {m}:{v} under {KEDA_DIR}/*{KEDA_SUFFIX}");
                };
                let lam_of = |t: usize| share * traffic.at(t, peak);
                let cold = cold_s[&key];
                let sim = model::simulate(&lam_of, curve, k, a.scheduling_allowance_s + cold, true);
                let stats = model::minute_stats(&lam_of, &sim.ready, curve);
                // The same without maxReplicaCount: the cap binds where the two differ.
                let un = model::simulate(&lam_of, curve, k, a.scheduling_allowance_s + cold, false);
                let un_peak = un.pods.iter().copied().max().unwrap_or(0);
                let capped = un_peak > k.max;
                let uncapped = capped.then(|| Uncapped {
                    peak: un_peak,
                    rh: un.pods.iter().sum::<i64>() as f64 / 3600.0,
                    overloaded: model::minute_stats(&lam_of, &un.ready, curve).iter().filter(|s| s.overloaded).count(),
                    minutes: (0..MINUTES)
                        .map(|mm| un.pods[mm * 60..(mm + 1) * 60].iter().copied().max().unwrap_or(0))
                        .collect(),
                });
                let slow = model::simulate(&lam_of, curve, k, a.slow_allowance_s + cold, true);
                let slow_stats = model::minute_stats(&lam_of, &slow.ready, curve);
                // The capacity plan of (a), followed second by second with no delay, for comparison.
                let planned = curve.rate / a.headroom;
                let plan = |lam: f64| k.min.max((lam / planned).ceil() as i64);
                versions.push(VersionResult {
                    name: v.clone(),
                    capped,
                    uncapped,
                    max: k.max,
                    slow_overloaded: slow_stats.iter().filter(|s| s.overloaded).count(),
                    slow_over: slow_stats.iter().filter(|s| s.over).count(),
                    plan_rh: (0..DAY).map(|s| plan(lam_of(DAY + s))).sum::<i64>() as f64 / 3600.0,
                    plan_peak: plan(share * peak),
                    cap_minutes: (0..MINUTES)
                        .filter(|mm| sim.wish[mm * 60..(mm + 1) * 60].iter().any(|w| *w > k.max))
                        .count(),
                    changes: sim.pods.windows(2).filter(|p| p[0] != p[1]).count(),
                    pods: sim.pods,
                    stats,
                });
            }
            let total = (0..DAY).map(|s| versions.iter().map(|v| v.pods[s]).sum()).collect();
            scenarios.push(Scenario {
                scale,
                model: m.clone(),
                peak,
                inferences: model::py_sum((0..DAY).map(|s| traffic.at(DAY + s, peak))),
                versions,
                total,
            });
        }
    }
    let result = report::Model { inputs: &inp, traffic, models, shares, curves, cold_s, scenarios };
    let mut out = vec![(OUT_MD.to_owned(), report::markdown(&result)?)];
    for scale in a.scales {
        out.push((out_svg(scale), report::chart(&result, scale)));
    }
    Ok(out)
}

/// The files among `outputs` that are missing or differ under `root`.
pub fn stale(root: &Path, outputs: &[(String, String)]) -> Vec<String> {
    outputs
        .iter()
        .filter(|(rel, text)| std::fs::read_to_string(root.join(rel)).ok().as_deref() != Some(text.as_str()))
        .map(|(rel, _)| rel.clone())
        .collect()
}

pub fn run(a: &CapacityArgs) -> anyhow::Result<()> {
    let outputs = build(&a.root)?;
    let names: Vec<&str> = outputs.iter().map(|(rel, _)| rel.as_str()).collect();
    if a.check {
        let stale = stale(&a.root, &outputs);
        if !stale.is_empty() {
            bail!("stale (re-run switchyard-bench capacity): {}", stale.join(", "));
        }
        println!("capacity: up to date: {}", names.join(", "));
        return Ok(());
    }
    for (rel, text) in &outputs {
        let path = a.root.join(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        println!("wrote {rel}");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
