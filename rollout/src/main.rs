//! `switchyard-rollout`: runs a rollout spec against the local data plane.
//!
//! `start` records the rollout; `run` is the controller, which every second reads the filter's
//! metrics from Envoy's admin endpoint, judges the canary (`judge`), and puts the traffic the
//! state asks for in force through the filter's ECDS file (`switchyard_deploy::apply`, the
//! same update as `envoy/apply-policy.sh`). Every command takes the state directory's lock,
//! acts and returns at once; `promote` and `abort` change traffic themselves, so they work
//! with no controller running.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `println!` panics when the reader of stdout has gone (`status --json | grep -q`);
/// a closed pipe only means nobody wants the rest, so the line is dropped.
macro_rules! say_line {
    ($($arg:tt)*) => {
        $crate::print_line(format_args!($($arg)*))
    };
}

mod admin;

use clap::{Parser, Subcommand};
use serde_json::json;

use switchyard_deploy::Policy;
use switchyard_deploy::apply::{apply_filter, in_force};
use switchyard_load::metrics::{parse, sum};
use switchyard_policy::Config;
use switchyard_rollout::judge::{Compared, Observation, Phase, State, Tick, Traffic};
use switchyard_rollout::kube::{Carrier, Kube, Read};
use switchyard_rollout::spec::{Spec, Stage};
use switchyard_rollout::store::{Saved, Store, Target};
use switchyard_rollout::view::{bounds, version_counts};
use switchyard_runtime::write_atomic;

#[derive(Parser)]
#[command(name = "switchyard-rollout", version, about)]
struct Cli {
    /// Where the rollout's state, events and lock live.
    #[arg(long, global = true, env = "SWITCHYARD_ROLLOUT_DIR", default_value = ".rollout")]
    state_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validates SPEC against the policy in force and records the rollout (the controller, `run`,
    /// carries it out).
    Start {
        spec: PathBuf,
        /// The policy file the rollout edits (envoy/policy.json in the demo).
        #[arg(long, required_unless_present = "kube_api")]
        policy: Option<PathBuf>,
        /// The running Envoy's rendered bootstrap (its filter.yaml is beside it).
        #[arg(long, required_unless_present = "kube_api")]
        bootstrap: Option<PathBuf>,
        #[arg(long, default_value = "target/wasm32-wasip1/wasm-release/switchyard_filter.wasm")]
        wasm: PathBuf,
        /// Envoy's admin listener, read for the filter's metrics (in a cluster: Prometheus).
        #[arg(long, env = "SWITCHYARD_ENVOY_ADMIN", default_value = "127.0.0.1:9901")]
        envoy_admin: String,
        /// The path read there (in a cluster: Prometheus's `/federate` with a URL-encoded
        /// `match[]` for the gateway's job; k8s/README.md).
        #[arg(long, env = "SWITCHYARD_METRICS_PATH", default_value = "/stats/prometheus")]
        metrics_path: String,
        #[command(flatten)]
        kube: Box<KubeArgs>,
        /// The collector (HOST:PORT), read for shadow comparisons: needed by steps with
        /// `max_disagreement`.
        #[arg(long, env = "SWITCHYARD_COLLECTOR")]
        collector: Option<String>,
    },
    /// The controller: judges and acts every `--interval` until the rollout ends; with
    /// `--admin-addr` it serves the console, its API and its metrics.
    Run {
        #[arg(long, default_value = "1s")]
        interval: String,
        /// Keep running after the rollout ends (serving the console, picking up the next `start`).
        #[arg(long)]
        keep_running: bool,
        #[command(flatten)]
        admin: Box<admin::AdminArgs>,
    },
    /// Where the rollout is.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Stops judging and advancing; traffic stays as it is.
    Pause,
    /// Runs a paused or holding rollout again (past a hold point: on to the next step).
    Resume,
    /// The canary takes all traffic, now.
    Promote,
    /// The canary gets no traffic, now.
    Abort {
        #[arg(long, default_value = "no reason given")]
        reason: String,
    },
    /// Clears the data-plane guard's latch for the rollout's model (a new `guard.epoch`).
    ResetGuard,
}

/// In a cluster: the policy lives in a Kubernetes object, changed through `kubectl proxy`.
#[derive(clap::Args)]
struct KubeArgs {
    /// `kubectl proxy` beside the controller, HOST:PORT.
    #[arg(long, env = "SWITCHYARD_KUBE_API", requires = "namespace")]
    kube_api: Option<String>,
    #[arg(long, env = "POD_NAMESPACE")]
    namespace: Option<String>,
    /// Istio: the WasmPlugin whose pluginConfig is the policy.
    #[arg(long, env = "SWITCHYARD_WASM_PLUGIN", requires = "kube_api", conflicts_with = "config_map")]
    wasm_plugin: Option<String>,
    /// The Envoy gateway: the ConfigMap holding its ECDS file.
    #[arg(long, env = "SWITCHYARD_CONFIG_MAP", requires = "kube_api")]
    config_map: Option<String>,
    #[arg(long, default_value = "filter.yaml")]
    config_map_key: String,
}

impl KubeArgs {
    fn target(self) -> Result<Option<Kube>, String> {
        let Some(api) = self.kube_api else { return Ok(None) };
        let carrier = match (self.wasm_plugin, self.config_map) {
            (Some(name), None) => Carrier::WasmPlugin { name },
            (None, Some(name)) => Carrier::ConfigMap { name, key: self.config_map_key },
            _ => {
                return Err("--kube-api needs --wasm-plugin NAME or --config-map NAME (what carries the policy)".into());
            }
        };
        Ok(Some(Kube { api, namespace: self.namespace.unwrap_or_default(), carrier }))
    }
}

/// The policy in force, as read from where the rollout acts.
pub(crate) enum InForce {
    Local(Policy),
    Kube(Read),
}

impl InForce {
    pub(crate) fn policy(&self) -> &Policy {
        match self {
            InForce::Local(p) => p,
            InForce::Kube(r) => &r.policy,
        }
    }
}

fn local(target: &Target) -> Result<(&Path, &Path), String> {
    match (&target.policy, &target.bootstrap) {
        (Some(p), Some(b)) => Ok((p, b)),
        _ => Err("the rollout names neither a Kubernetes object nor a policy file and bootstrap".into()),
    }
}

pub(crate) async fn in_force_at(target: &Target) -> Result<InForce, String> {
    match &target.kube {
        Some(k) => Ok(InForce::Kube(k.in_force().await?)),
        None => Ok(InForce::Local(in_force(local(target)?.1).map_err(|e| e.to_string())?)),
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The policy in force with the rollout's traffic for its model; `None` when it already holds.
fn with_traffic(current: &Config, st: &State, traffic: Traffic) -> Result<Option<Config>, String> {
    let mut cfg = current.clone();
    let model = &st.spec.model;
    let m = cfg.models.get_mut(model).ok_or_else(|| format!("the policy in force has no model '{model}'"))?;
    let canary = st.spec.canary.clone();
    let (weight, shadow) = match traffic {
        Traffic::Weight(w) => (w, None),
        Traffic::Ab => (0, None),
        Traffic::Shadow(p) => (0, Some(p)),
    };
    for v in &mut m.versions {
        if v.name == canary {
            v.weight = weight;
        } else if v.name == st.stable {
            v.weight = 100 - weight.min(100);
        }
    }
    if traffic == Traffic::Ab
        && let Some(o) = m.override_.as_mut()
        && !o.allow.contains(&canary)
    {
        o.allow.push(canary.clone());
    }
    if st.phase == Phase::Promoted
        && let Some(g) = m.guard.as_mut()
        && g.stable.as_deref().unwrap_or_else(|| m.versions.first().map_or("", |v| v.name.as_str())) == st.stable
    {
        // The canary is the stable version now: the guard judges (and falls back to) it, and a
        // new epoch starts its windows afresh.
        g.stable = Some(canary.clone());
        g.epoch += 1;
    }
    let aborted = matches!(st.phase, Phase::Aborted { .. });
    match shadow {
        Some(percent) => {
            // The policy's comparison settings stay; a stage that judges disagreement needs one.
            let compare =
                m.shadow.as_ref().and_then(|s| s.compare.clone()).or_else(|| compares_now(st).then(Default::default));
            m.shadow = Some(switchyard_policy::config::Shadow { version: canary, percent, compare });
        }
        // The rollout's mirror ends with its stage; a mirror the policy had to another version stays.
        None if m.shadow.as_ref().is_some_and(|s| s.version == canary)
            && !matches!(traffic, Traffic::Weight(w) if w < 100) =>
        {
            m.shadow = None;
        }
        // An aborted canary is mirrored no more; the policy's shadow settings are kept.
        None if aborted => {
            if let Some(s) = m.shadow.as_mut().filter(|s| s.version == canary) {
                s.percent = 0.0;
            }
        }
        None => {}
    }
    Ok((cfg != *current).then_some(cfg))
}

/// The stage whose traffic is in force judges the shadow's disagreement.
fn compares_now(st: &State) -> bool {
    st.spec
        .steps
        .iter()
        .take(st.step + 1)
        .rev()
        .find(|s| s.stage() != Stage::Hold)
        .is_some_and(|s| s.max_disagreement.is_some())
}

/// Puts `cfg` in force: locally it is written to the policy file too, so every tool sees one
/// policy; in a cluster the object replaced is the one `now` was read from, unchanged since.
pub(crate) async fn deploy(target: &Target, now: &InForce, cfg: &Config) -> Result<String, String> {
    let text = serde_json::to_string_pretty(cfg).map_err(|e| e.to_string())? + "\n";
    let policy = Policy::parse(text.clone()).map_err(|e| format!("the rollout would make an invalid policy: {e}"))?;
    if let (InForce::Kube(read), Some(k)) = (now, &target.kube) {
        return k.apply(read, &policy).await;
    }
    let (file, bootstrap) = local(target)?;
    let (version, _) = apply_filter(&policy, &target.wasm, bootstrap, None).map_err(|e| e.to_string())?;
    write_atomic(file, &text).map_err(|e| e.to_string())?;
    Ok(version)
}

/// Applies the traffic the state wants when it is not already in force. Returns what changed.
async fn reconcile(target: &Target, st: &State) -> Result<Option<String>, String> {
    let current = in_force_at(target).await?;
    let traffic = st.traffic();
    match with_traffic(current.policy().config(), st, traffic)? {
        Some(cfg) => {
            let version = deploy(target, &current, &cfg).await?;
            Ok(Some(format!("{} {traffic:?} in force (filter config {version})", st.spec.model)))
        }
        None => Ok(None),
    }
}

/// The filter's counters for the rollout's versions, from Envoy's admin endpoint.
async fn observe(target: &Target, st: &State) -> Result<Observation, String> {
    let (status, body) = switchyard_load::http::get(&target.envoy_admin, &target.metrics_path)
        .await
        .map_err(|e| format!("metrics at {}: {e}", target.envoy_admin))?;
    if status != 200 {
        return Err(format!("metrics at {}{} answered {status}", target.envoy_admin, target.metrics_path));
    }
    let samples = parse(&String::from_utf8_lossy(&body));
    let model = st.spec.model.as_str();
    let bounds = bounds(&samples, model);
    let counts = |version: &str| version_counts(&samples, model, version, &bounds);
    let guard_out = sum(&samples, "switchyard_guard_out", &[("model", model), ("version", &st.spec.canary)]) > 0.0;
    let compared = match (&target.collector, st.spec.compares()) {
        (Some(collector), true) => compared(collector, st).await?,
        _ => Compared::default(),
    };
    Ok(Observation { canary: counts(&st.spec.canary), stable: counts(&st.stable), bounds, guard_out, compared })
}

/// The collector's comparisons of the stable version's answers with the canary's.
async fn compared(collector: &str, st: &State) -> Result<Compared, String> {
    let (status, body) =
        switchyard_load::http::get(collector, "/metrics").await.map_err(|e| format!("collector {collector}: {e}"))?;
    if status != 200 {
        return Err(format!("collector {collector} answered {status}"));
    }
    let samples = parse(&String::from_utf8_lossy(&body));
    let at = |name: &str, pair: &str| {
        let labels = [
            ("model", st.spec.model.as_str()),
            ("primary", st.stable.as_str()),
            ("shadow", &st.spec.canary),
            ("pair", pair),
        ];
        sum(&samples, name, &labels) as u64
    };
    Ok(Compared {
        rows: at("switchyard_shadow_compared_rows_total", "shadow"),
        disagreeing: at("switchyard_shadow_disagreeing_rows_total", "shadow"),
        noise_rows: at("switchyard_shadow_compared_rows_total", "noise"),
        noise_disagreeing: at("switchyard_shadow_disagreeing_rows_total", "noise"),
    })
}

/// Takes the state directory's lock off the async thread: the controller's ticks, the
/// console's view and its writes share one thread, and whoever holds the lock may be awaiting
/// Envoy.
pub(crate) async fn open_store(dir: &Path) -> Result<Store, String> {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || Store::open(&dir)).await.map_err(|e| format!("the state's lock: {e}"))?
}

fn event(store: &Store, st: &State, what: &str) -> Result<(), String> {
    event_with(store, st, what, serde_json::Map::new())
}

/// An event line with more fields (a write's audit: who, before, after).
pub(crate) fn event_with(
    store: &Store,
    st: &State,
    what: &str,
    extra: serde_json::Map<String, serde_json::Value>,
) -> Result<(), String> {
    let mut line = json!({
        "ts_ms": now_ms(),
        "model": st.spec.model,
        "canary": st.spec.canary,
        "step": st.step,
        "traffic": format!("{:?}", st.traffic()),
        "state": st.phase.name(),
        "decision": st.decision,
        "reason": st.reason,
        "what": what,
    });
    if let Some(o) = line.as_object_mut() {
        o.extend(extra);
    }
    store.event(&line)
}

fn print_line(line: std::fmt::Arguments) {
    use std::io::Write;
    if let Err(e) = writeln!(std::io::stdout().lock(), "{line}")
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("switchyard-rollout: writing to stdout: {e}");
    }
}

fn say(st: &State, what: &str) {
    say_line!("{} {}/{}: {what}", st.phase.name(), st.spec.model, st.spec.canary);
}

/// A command on the saved rollout: `f` changes the state; the traffic it wants is put in force
/// at once, then saved and logged (with `who` gave it, from the console). Returns what it did.
pub(crate) async fn command(
    dir: &Path,
    f: impl FnOnce(&mut State) -> Result<String, String>,
    name: &str,
    who: Option<serde_json::Value>,
) -> Result<String, String> {
    let store = open_store(dir).await?;
    let mut saved = store.load()?.ok_or_else(|| format!("no rollout in {}: `start` one first", dir.display()))?;
    let before = json!({"state": saved.state.phase.name(), "traffic": format!("{:?}", saved.state.traffic())});
    let what = f(&mut saved.state)?;
    // Saved first: traffic put in force for a state that was not saved would be undone by the
    // controller's next tick; a state saved whose traffic failed to apply is mended by it.
    store.save(&saved)?;
    let mut audit = serde_json::Map::new();
    if let Some(who) = who {
        let after = json!({"state": saved.state.phase.name(), "traffic": format!("{:?}", saved.state.traffic())});
        audit.extend([("who".to_owned(), who), ("before".to_owned(), before), ("after".to_owned(), after)]);
    }
    event_with(&store, &saved.state, name, audit)?;
    let mut said =
        format!("{} {}/{}: {what}", saved.state.phase.name(), saved.state.spec.model, saved.state.spec.canary);
    match reconcile(&saved.target, &saved.state).await {
        Ok(Some(a)) => said.push_str(&format!("\n  {a}")),
        Ok(None) => {}
        Err(e) => return Err(format!("saved, but its traffic is not in force yet: {e} (`run` applies it)")),
    }
    Ok(said)
}

async fn start(dir: &Path, spec_path: &Path, target: Target) -> Result<(), String> {
    // `-`: from standard input (`kubectl exec -i … start - < spec.yaml` in a cluster).
    let text = if spec_path == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).map_err(|e| format!("cannot read the spec from stdin: {e}"))?
    } else {
        std::fs::read_to_string(spec_path).map_err(|e| format!("cannot read {}: {e}", spec_path.display()))?
    };
    let spec = Spec::parse(&text).map_err(|e| format!("{}: {e}", spec_path.display()))?;
    let now = in_force_at(&target).await?;
    let policy = now.policy();
    let m = policy
        .config()
        .models
        .get(&spec.model)
        .ok_or_else(|| format!("the policy in force has no model '{}'", spec.model))?;
    let mut problems = Vec::new();
    if m.version(&spec.canary).is_none() {
        problems.push(format!("model '{}' has no version '{}'", spec.model, spec.canary));
    }
    let stable =
        spec.stable.clone().unwrap_or_else(|| m.versions.get(m.stable()).map(|v| v.name.clone()).unwrap_or_default());
    if stable == spec.canary {
        problems.push(format!("the stable version is '{stable}', the canary itself: name `stable` in the spec"));
    }
    if m.version(&stable).is_none() {
        problems.push(format!("model '{}' has no version '{stable}'", spec.model));
    }
    for v in &m.versions {
        if v.name != stable && v.name != spec.canary && v.weight > 0 {
            problems.push(format!(
                "version '{}' has weight {}: a rollout splits between stable and canary only",
                v.name, v.weight
            ));
        }
    }
    if spec.compares() && target.collector.is_none() {
        problems.push(
            "a step with max_disagreement needs `--collector HOST:PORT` (where the comparisons are counted)".into(),
        );
    }
    if spec.compares() && policy.config().collector.is_none() {
        problems.push(
            "a step with max_disagreement needs a collector in the policy (the filter ships comparisons to it)".into(),
        );
    }
    if spec.steps.iter().any(|s| s.ab) && m.override_.is_none() {
        problems.push(format!(
            "an ab step needs models.{}.override in the policy (the header that picks the canary)",
            spec.model
        ));
    }
    if !problems.is_empty() {
        return Err(format!("{}: {}", spec_path.display(), problems.join("; ")));
    }
    let store = open_store(dir).await?;
    if let Some(old) = store.load()?
        && old.state.phase.is_active()
    {
        return Err(format!(
            "a rollout of {}/{} is {} in {}: promote or abort it first",
            old.state.spec.model,
            old.state.spec.canary,
            old.state.phase.name(),
            dir.display()
        ));
    }
    let saved = Saved { target, state: State::new(spec, stable, now_ms()) };
    store.save(&saved)?;
    event(&store, &saved.state, "start")?;
    say(
        &saved.state,
        &format!("started ({} steps); `switchyard-rollout run` carries it out", saved.state.spec.steps.len()),
    );
    Ok(())
}

fn status(dir: &Path, as_json: bool) -> Result<(), String> {
    let store = Store::open(dir)?;
    let saved = store.load()?.ok_or_else(|| format!("no rollout in {}", dir.display()))?;
    let st = &saved.state;
    if as_json {
        say_line!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "model": st.spec.model, "canary": st.spec.canary, "stable": st.stable, "state": st.phase.name(),
                "step": st.step, "steps": st.spec.steps.len(), "traffic": format!("{:?}", st.traffic()),
                "decision": st.decision, "reason": st.reason,
            }))
            .map_err(|e| e.to_string())?
        );
    } else {
        say(st, &format!("step {} of {}, traffic {:?}", st.step + 1, st.spec.steps.len(), st.traffic()));
        say_line!("  last decision: {}: {}", st.decision, st.reason);
    }
    Ok(())
}

/// How long one look at Envoy (and the collector) may take.
const OBSERVE_TIMEOUT: Duration = Duration::from_secs(2);

/// One controller tick: observe (without the lock, so commands never wait on Envoy), then
/// under the lock judge, act and save, unless a command changed the state meanwhile.
/// `mended`: the ended rollout whose final traffic this controller already put in force.
async fn tick(dir: &Path, metrics: &Mutex<String>, mended: &mut Option<State>) -> Result<bool, String> {
    let Some(seen) = open_store(dir).await?.load()? else { return Ok(false) };
    if !seen.state.phase.is_active() {
        // An ended rollout's final traffic is put in force once (a crash between deciding and
        // applying is mended here); later changes by hand are not undone.
        if mended.as_ref() != Some(&seen.state) {
            let store = open_store(dir).await?;
            if let Some(saved) = store.load()? {
                reconcile(&saved.target, &saved.state).await?;
                *mended = Some(saved.state);
            }
        }
        *metrics.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = render_metrics(&seen.state);
        return Ok(false);
    }
    let obs = tokio::time::timeout(OBSERVE_TIMEOUT, observe(&seen.target, &seen.state))
        .await
        .map_err(|_| format!("no answer from Envoy {} within {OBSERVE_TIMEOUT:?}", seen.target.envoy_admin))??;
    let store = open_store(dir).await?;
    let Some(mut saved) = store.load()? else { return Ok(false) };
    if saved != seen {
        // A command acted while we looked: judge its state at the next tick.
        return Ok(saved.state.phase.is_active());
    }
    let now = now_ms();
    if saved.state.tick(now, &obs) == Tick::Changed {
        // An abort, a promotion, a hold: its traffic at once. A step advanced to is applied
        // just below, as its own event.
        let advanced = saved.state.phase == Phase::Running;
        let what = if advanced { None } else { reconcile(&saved.target, &saved.state).await? };
        store.save(&saved)?;
        event(&store, &saved.state, "decision")?;
        say(&saved.state, &format!("{}: {}", saved.state.decision, saved.state.reason));
        if let Some(w) = what {
            say_line!("  {w}");
        }
    }
    if saved.state.phase == Phase::Running && saved.state.applied != Some(saved.state.step) {
        if let Tick::Apply(traffic) = saved.state.tick(now, &obs) {
            // Already in force after a restart: not applied twice.
            let what = reconcile(&saved.target, &saved.state)
                .await?
                .unwrap_or_else(|| format!("{traffic:?} was already in force"));
            saved.state.started(now, obs);
            saved.state.decision = "apply".into();
            saved.state.reason = format!("step {}: {what}", saved.state.step);
            store.save(&saved)?;
            event(&store, &saved.state, "apply")?;
            say(&saved.state, &saved.state.reason);
        } else {
            // A hold point reached: saved as a decision.
            store.save(&saved)?;
            event(&store, &saved.state, "decision")?;
            say(&saved.state, &format!("{}: {}", saved.state.decision, saved.state.reason));
        }
    }
    *metrics.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = render_metrics(&saved.state);
    Ok(saved.state.phase.is_active())
}

fn render_metrics(st: &State) -> String {
    let labels = format!("model=\"{}\",canary=\"{}\"", st.spec.model, st.spec.canary);
    let weight = match st.traffic() {
        Traffic::Weight(w) => w,
        Traffic::Ab | Traffic::Shadow(_) => 0,
    };
    let mut out = String::new();
    out.push_str("# TYPE switchyard_rollout_step gauge\n");
    out.push_str(&format!("switchyard_rollout_step{{{labels}}} {}\n", st.step));
    out.push_str("# TYPE switchyard_rollout_weight gauge\n");
    out.push_str(&format!("switchyard_rollout_weight{{{labels}}} {weight}\n"));
    out.push_str("# TYPE switchyard_rollout_state gauge\n");
    for s in ["running", "paused", "holding", "promoted", "aborted"] {
        out.push_str(&format!(
            "switchyard_rollout_state{{{labels},state=\"{s}\"}} {}\n",
            u8::from(st.phase.name() == s)
        ));
    }
    out.push_str("# TYPE switchyard_rollout_last_decision_info gauge\n");
    let reason = st.reason.replace('\\', "\\\\").replace('"', "\\\"");
    out.push_str(&format!(
        "switchyard_rollout_last_decision_info{{{labels},decision=\"{}\",reason=\"{reason}\"}} 1\n",
        st.decision
    ));
    out
}

async fn run(dir: &Path, interval: &str, keep_running: bool, admin: admin::AdminArgs) -> Result<(), String> {
    let interval = switchyard_rollout::spec::duration(interval)?;
    let metrics = Arc::new(Mutex::new(String::new()));
    admin::serve(dir, admin, metrics.clone()).await?;
    let mut failures = 0u32;
    let mut mended = None;
    loop {
        let started = std::time::Instant::now();
        let active = {
            let dir = dir.to_owned();
            let m = metrics.clone();
            match tick(&dir, &m, &mut mended).await {
                Ok(active) => {
                    failures = 0;
                    active
                }
                // Envoy restarting, a policy refused: said, and tried again next tick; the
                // traffic stays as it is meanwhile.
                Err(e) => {
                    failures += 1;
                    if failures == 1 || failures.is_multiple_of(30) {
                        eprintln!("switchyard-rollout: {e} (retrying every {interval:?})");
                    }
                    true
                }
            }
        };
        if !active && !keep_running {
            let store = open_store(dir).await?;
            if let Some(saved) = store.load()? {
                say(&saved.state, "the rollout has ended");
            }
            return Ok(());
        }
        tokio::time::sleep(interval.saturating_sub(started.elapsed()).max(Duration::from_millis(50))).await;
    }
}

async fn reset_guard(dir: &Path) -> Result<(), String> {
    let store = open_store(dir).await?;
    let saved = store.load()?.ok_or_else(|| format!("no rollout in {}", dir.display()))?;
    let current = in_force_at(&saved.target).await?;
    let mut cfg = current.policy().config().clone();
    let model = &saved.state.spec.model;
    let g = cfg
        .models
        .get_mut(model)
        .and_then(|m| m.guard.as_mut())
        .ok_or_else(|| format!("model '{model}' has no guard in the policy in force"))?;
    g.epoch += 1;
    let epoch = g.epoch;
    let version = deploy(&saved.target, &current, &cfg).await?;
    event(&store, &saved.state, &format!("reset-guard: epoch {epoch}"))?;
    say_line!(
        "guard of {model} reset: epoch {epoch} in force (filter config {version}); a version it had taken out is back at its weight"
    );
    // Envoy takes the new policy and the filter shows it within a tick or two: wait for that,
    // so a controller started next does not read the old latch as a new trip.
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(2) {
        if let Ok(Ok(obs)) = tokio::time::timeout(OBSERVE_TIMEOUT, observe(&saved.target, &saved.state)).await
            && !obs.guard_out
        {
            say_line!("  Envoy shows {model}/{} back in the split", saved.state.spec.canary);
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    say_line!(
        "  Envoy still shows {model}/{} out of the split after 2 s: is it failing again?",
        saved.state.spec.canary
    );
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let dir = cli.state_dir.as_path();
    let result = match cli.command {
        Command::Start { spec, policy, bootstrap, wasm, envoy_admin, metrics_path, kube, collector } => {
            match (*kube).target() {
                Ok(kube) => {
                    let target = Target { policy, bootstrap, wasm, envoy_admin, metrics_path, collector, kube };
                    start(dir, &spec, target).await
                }
                Err(e) => Err(e),
            }
        }
        Command::Run { interval, keep_running, admin } => run(dir, &interval, keep_running, *admin).await,
        Command::Status { json } => status(dir, json),
        Command::Pause => command(dir, State::pause, "pause", None).await.map(|said| say_line!("{said}")),
        Command::Resume => command(dir, |s| s.resume(now_ms()), "resume", None).await.map(|said| say_line!("{said}")),
        Command::Promote => command(dir, State::promote, "promote", None).await.map(|said| say_line!("{said}")),
        Command::Abort { reason } => {
            command(dir, |s| s.abort_by_hand(&reason), "abort", None).await.map(|said| say_line!("{said}"))
        }
        Command::ResetGuard => reset_guard(dir).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchyard-rollout: {e}");
            ExitCode::FAILURE
        }
    }
}
