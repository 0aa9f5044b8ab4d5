//! What the capacity model reads: the benchmarks' JSON (`docs/bench/*.json`), the prices, the
//! policy, the generated ScaledObjects and InferenceServices, and the demo's load phases
//! ([`DEMO_LOAD`], as `scripts/demo.sh` runs them).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};
use serde_norway::Value;
use switchyard_policy::Config;

use super::model::{Keda, Kind, Step, Trigger};
use crate::load::SweepRecord;
use crate::protocols::{ProtocolsRecord, Wire};

pub const SWEEP: &str = "docs/bench/sweep.json";
pub const PROTOCOLS: &str = "docs/bench/protocols.json";
pub const COLD_START: &str = "docs/bench/cold-start.json";
pub const PRICES: &str = "dashboards/prices.json";
pub const KEDA_DIR: &str = "k8s/components/keda/generated";
pub const KEDA_SUFFIX: &str = "-scaledobject.yaml";
pub const PODS_DIR: &str = "k8s/components/kserve/generated";
pub const PODS_SUFFIX: &str = "-inferenceservice.yaml";
pub const POLICY: &str = "envoy/policy.json";
pub const DEMO: &str = "scripts/demo.sh";

/// One `"$LOAD"` phase of `scripts/demo.sh` (the demo's traffic through Envoy).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DemoPhase {
    pub model: &'static str,
    pub load: DemoLoad,
    /// Its arguments as the script writes them, up to `--duration`.
    pub args: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DemoLoad {
    /// Open loop at these rates (a ramp names two).
    Open { rates: &'static [f64] },
    /// Closed loop: its rate is what the protocols benchmark measured through Envoy for these
    /// clients and this wire.
    Closed { clients: usize, wire: Wire },
}

/// The demo's load, phase by phase, in the order `scripts/demo.sh` runs it; the test
/// `the_demo_load_is_what_demo_sh_sends` keeps the two in step.
pub const DEMO_LOAD: [DemoPhase; 6] = [
    DemoPhase {
        model: "mlp",
        load: DemoLoad::Open { rates: &[50.0, 800.0] },
        args: r#"--addr "$ENVOY" --model mlp --rate 50 --ramp-to 800"#,
    },
    DemoPhase {
        model: "resnet18",
        load: DemoLoad::Closed { clients: 8, wire: Wire::Binary },
        args: r#"--addr "$ENVOY" --model resnet18 --concurrency 8"#,
    },
    DemoPhase {
        model: "resnet18",
        load: DemoLoad::Closed { clients: 4, wire: Wire::Grpc },
        args: r#"--addr "$ENVOY" --model resnet18 --grpc --concurrency 4"#,
    },
    DemoPhase {
        model: "mlp",
        load: DemoLoad::Open { rates: &[500.0] },
        args: r#"--addr "$ENVOY" --model mlp --rate 500"#,
    },
    DemoPhase {
        model: "mlp",
        load: DemoLoad::Open { rates: &[300.0] },
        args: r#"--addr "$ENVOY" --model mlp --rate 300"#,
    },
    DemoPhase {
        model: "mlp",
        load: DemoLoad::Open { rates: &[300.0] },
        args: r#"--addr "$ENVOY" --model mlp --rate 300"#,
    },
];

/// A model's sweep: the ceiling and the steps by rising target.
pub struct Sweep {
    pub ceiling: f64,
    pub steps: Vec<Step>,
}

pub struct Inputs {
    pub sweep_machine: String,
    pub sweep: BTreeMap<String, Sweep>,
    /// The demo's peak load per model (req/s), and where the figure comes from.
    pub demo: BTreeMap<String, (f64, String)>,
    pub cold: serde_json::Value,
    pub cpu_price: f64,
    pub prices_description: String,
    pub keda: BTreeMap<(String, String), Keda>,
    pub policy: Config,
    /// The CPU requests of the generated InferenceServices, distinct, rising.
    pub pod_cpus: Vec<f64>,
}

fn read(root: &Path, rel: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(root.join(rel)).with_context(|| format!("missing input {rel}"))
}

fn json<T: serde::de::DeserializeOwned>(root: &Path, rel: &str) -> anyhow::Result<T> {
    serde_json::from_str(&read(root, rel)?).with_context(|| rel.to_owned())
}

pub fn read_all(root: &Path) -> anyhow::Result<Inputs> {
    let sweep: SweepRecord = json(root, SWEEP)?;
    let protocols: ProtocolsRecord = json(root, PROTOCOLS)?;
    let prices: serde_json::Value = json(root, PRICES)?;
    let cpu_price = prices["hourly_cost"]["cpu"].as_f64().with_context(|| format!("{PRICES}: no hourly_cost.cpu"))?;
    let policy = Config::parse(read(root, POLICY)?.as_bytes()).with_context(|| POLICY.to_owned())?;
    Ok(Inputs {
        sweep_machine: sweep.machine.clone(),
        sweep: sweeps(sweep)?,
        demo: demo_load(&protocols)?,
        cold: json(root, COLD_START)?,
        cpu_price,
        prices_description: prices["description"].as_str().unwrap_or_default().to_owned(),
        keda: scaled_objects(root)?,
        policy,
        pod_cpus: pod_cpus(root)?,
    })
}

fn sweeps(record: SweepRecord) -> anyhow::Result<BTreeMap<String, Sweep>> {
    let mut out = BTreeMap::new();
    for m in record.models {
        let mut steps: Vec<Step> = m
            .steps
            .into_iter()
            .map(|s| Step {
                step: s.step,
                target: s.target_req_s,
                achieved: s.achieved_req_s,
                p50: s.p50_ms,
                p99: s.p99_ms,
                late_pct: s.sent_late_pct,
                errors: s.errors as f64,
            })
            .collect();
        if steps.is_empty() {
            bail!("{SWEEP}: no steps for {}", m.model);
        }
        steps.sort_by(|a, b| a.target.total_cmp(&b.target));
        out.insert(m.model, Sweep { ceiling: m.ceiling_req_s, steps });
    }
    if out.is_empty() {
        bail!("{SWEEP}: no models");
    }
    Ok(out)
}

/// The demo's peak load per model: the highest open-loop rate, or a closed-loop phase's rate
/// through Envoy from the protocols benchmark where that is higher; a closed-loop phase the
/// benchmark has no cell for is noted and left out of the peak.
pub fn demo_load(protocols: &ProtocolsRecord) -> anyhow::Result<BTreeMap<String, (f64, String)>> {
    let mut load: BTreeMap<String, (f64, String)> = BTreeMap::new();
    let mut unpriced: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for phase in DEMO_LOAD {
        let (rate, how) = match phase.load {
            DemoLoad::Open { rates } => {
                let rate = rates.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                (rate, format!("open loop up to {rate:.0} req/s (`{DEMO}`: `{}`)", phase.args))
            }
            DemoLoad::Closed { clients, wire } => {
                let cell = protocols
                    .models
                    .iter()
                    .filter(|m| m.model == phase.model)
                    .flat_map(|m| &m.cells)
                    .find(|c| c.clients == clients && c.wire == wire.name());
                let Some(cell) = cell else {
                    unpriced.entry(phase.model).or_default().push(format!("{clients} clients, {}", wire.name()));
                    continue;
                };
                let rate = cell.envoy_rows_per_s;
                let how = format!(
                    "closed loop, {clients} clients, {} through Envoy (`{DEMO}`), which the protocols benchmark \
                     measured at {rate:.0} req/s through Envoy",
                    wire.name()
                );
                (rate, how)
            }
        };
        if load.get(phase.model).is_none_or(|(r, _)| rate > *r) {
            load.insert(phase.model.to_owned(), (rate, how));
        }
    }
    for (model, phases) in unpriced {
        let Some((_, how)) = load.get_mut(model) else {
            bail!(
                "{DEMO} runs {model} only closed loop, and the protocols benchmark has no cell for {}",
                phases.join(", ")
            );
        };
        how.push_str(&format!(
            "; its other closed-loop phase ({}) has no cell in that benchmark and is assumed lighter (fewer clients)",
            phases.join("; ")
        ));
    }
    Ok(load)
}

/// The files of `dir` whose names end with `suffix`, by name.
fn generated(root: &Path, dir: &str, suffix: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root.join(dir)).with_context(|| format!("cannot read {dir}"))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.ends_with(suffix) {
            let rel = format!("{dir}/{name}");
            let text = read(root, &rel)?;
            out.push((rel, text));
        }
    }
    out.sort();
    Ok(out)
}

fn yaml(rel: &str, text: &str) -> anyhow::Result<Value> {
    serde_norway::from_str(text).with_context(|| format!("{rel}: not YAML"))
}

/// A number, or a string holding one (Kubernetes quotes quantities).
fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn scaled_objects(root: &Path) -> anyhow::Result<BTreeMap<(String, String), Keda>> {
    let files = generated(root, KEDA_DIR, KEDA_SUFFIX)?;
    if files.is_empty() {
        bail!("no ScaledObjects at {KEDA_DIR}/*{KEDA_SUFFIX}");
    }
    let mut out = BTreeMap::new();
    for (rel, text) in files {
        let doc = yaml(&rel, &text)?;
        let labels = &doc["metadata"]["labels"];
        let label = |k: &str| labels[k].as_str().map(str::to_owned).with_context(|| format!("{rel}: no label {k}"));
        let spec = &doc["spec"];
        let int = |k: &str, default: f64| number(&spec[k]).unwrap_or(default) as i64;
        let mut triggers = Vec::new();
        for t in spec["triggers"].as_sequence().with_context(|| format!("{rel}: no triggers"))? {
            let name = t["name"].as_str().unwrap_or_default().to_owned();
            let q = t["metadata"]["query"].as_str().unwrap_or_default();
            let kind = if q.contains("in_flight") {
                Some(Kind::InFlight)
            } else if q.contains("requests_total") && q.contains("rate(") {
                Some(Kind::Routed)
            } else {
                None
            };
            let (Some(kind), Some("AverageValue")) = (kind, t["metricType"].as_str()) else {
                bail!("{rel}: a trigger this model does not know ({name}: {q})");
            };
            triggers.push(Trigger {
                name,
                kind,
                threshold: number(&t["metadata"]["threshold"]).with_context(|| format!("{rel}: no threshold"))?,
                activation: number(&t["metadata"]["activationThreshold"]).unwrap_or(0.0),
            });
        }
        let keda = Keda {
            polling: int("pollingInterval", 30.0),
            cooldown: int("cooldownPeriod", 300.0),
            min: int("minReplicaCount", 0.0),
            max: int("maxReplicaCount", 100.0),
            triggers,
            file: rel.clone(),
        };
        out.insert((label("switchyard.dev/model")?, label("switchyard.dev/version")?), keda);
    }
    Ok(out)
}

fn pod_cpus(root: &Path) -> anyhow::Result<Vec<f64>> {
    let mut cpus: Vec<f64> = Vec::new();
    for (rel, text) in generated(root, PODS_DIR, PODS_SUFFIX)? {
        let doc = yaml(&rel, &text)?;
        let containers = doc["spec"]["predictor"]["containers"].as_sequence().cloned().unwrap_or_default();
        if let Some(cpu) = containers.iter().find_map(|c| number(&c["resources"]["requests"]["cpu"]))
            && !cpus.contains(&cpu)
        {
            cpus.push(cpu);
        }
    }
    cpus.sort_by(f64::total_cmp);
    Ok(cpus)
}
