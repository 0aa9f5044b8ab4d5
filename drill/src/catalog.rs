//! The drills, by name. Each one injects one fault into the running stack and names the
//! alerts that count as detecting it and how its mitigation shows.

use switchyard_contract::process::pager::ALERTING_DOWN;

use crate::{Env, SlowModels, Spec};

/// Every drill, in the order `all` runs them.
pub const DRILLS: &[Spec] = &[
    CANARY_5XX,
    CANARY_LATENCY,
    CANARY_KILLED,
    STABLE_ERRORS,
    ROLLING_RESTART,
    OVERLOAD_3X,
    INPUT_DRIFT,
    MONITOR_KILLED,
    SAMPLES_CORRUPTED,
    COLLECTOR_KILLED,
    BAD_POLICY,
    PROMETHEUS_DOWN,
    ALERTMANAGER_DOWN,
    COLUMN_DRIFT,
    DEADLINES_EXPIRE,
    BROKEN_MODEL,
    FILTER_CRASH,
];

pub fn find(name: &str) -> Option<&'static Spec> {
    DRILLS.iter().find(|d| d.name == name)
}

fn guard_took_v2_out(env: &mut Env) -> Option<String> {
    env.guard_out("v2").then(|| "the filter's guard took mlp/v2 out of the split (automatic)".to_owned())
}

pub const CANARY_5XX: Spec = Spec {
    name: "canary-5xx",
    title: "The canary answers 503 to every request",
    severity: "SEV3: a canary's share of one model's traffic, taken out by the guard (SEV2 if its burn pages)",
    bootstrap: &["--fault", "mlp-v2=0:503"],
    expect: &["SwitchyardGuardTookVersionOut", "SwitchyardCanaryWorseThanStable", "SwitchyardErrorBudgetBurn"],
    inject: |env| {
        env.set_fault("switchyard.fault.mlp-v2.abort_percent", 100)?;
        Ok("Envoy's fault filter answers 503 to every request routed to mlp-v2".into())
    },
    mitigated: guard_took_v2_out,
    sample_rate: 0.1,
    monitor: false,
    slow: None,
    failpoints: false,
    playbook: "canary-regression.md",
    trigger: "Every request routed to the canary mlp/v2 got a 503 (injected with Envoy's fault filter through its admin runtime).",
    root_cause: "Injected: a canary that fails every request, standing for a bad build or a broken dependency of the new version.",
};

pub const CANARY_LATENCY: Spec = Spec {
    name: "canary-latency",
    title: "The canary becomes 400 ms slower",
    severity: "SEV3: a canary's share of one model's traffic, taken out by the guard (SEV2 if its burn pages)",
    bootstrap: &["--fault", "mlp-v2=0:400ms"],
    expect: &["SwitchyardGuardTookVersionOut", "SwitchyardCanaryWorseThanStable", "SwitchyardErrorBudgetBurn"],
    inject: |env| {
        env.set_fault("switchyard.fault.mlp-v2.delay_percent", 100)?;
        Ok("Envoy's fault filter holds every request routed to mlp-v2 for 400 ms".into())
    },
    mitigated: guard_took_v2_out,
    sample_rate: 0.1,
    monitor: false,
    slow: None,
    failpoints: false,
    playbook: "canary-regression.md",
    trigger: "Every request routed to the canary mlp/v2 was held 400 ms before reaching it (Envoy's fault filter), against an SLO of 100 ms.",
    root_cause: "Injected: a latency regression in the new version (a slower model, a cold cache, a noisy neighbour).",
};

pub const CANARY_KILLED: Spec = Spec {
    name: "canary-killed",
    title: "The canary's backend process is killed",
    severity: "SEV3: a canary's share of one model's traffic, taken out by the guard (SEV2 if its burn pages)",
    bootstrap: &[],
    expect: &[
        "SwitchyardGuardTookVersionOut",
        "SwitchyardCanaryWorseThanStable",
        "SwitchyardErrorBudgetBurn",
        "SwitchyardTargetDown",
    ],
    inject: |env| {
        env.stack.v2.sigkill();
        Ok("SIGKILL to the mlp/v2 backend (nothing drained)".into())
    },
    mitigated: guard_took_v2_out,
    sample_rate: 0.1,
    monitor: false,
    slow: None,
    failpoints: false,
    playbook: "canary-regression.md",
    trigger: "The mlp/v2 backend process was killed (SIGKILL) under load: Envoy's connections to it were refused from then on.",
    root_cause: "Injected: a crashing canary process (OOM kill, segfault, node loss).",
};

/// Degraded mode at once (the filter counts what it cannot ship, and traffic goes
/// on); after the samples-lost ticket, the playbook's step: start the collector again.
fn collector_restarted(env: &mut Env) -> Option<String> {
    let text = env.stack.prometheus();
    // A refused connection is Envoy's answer, not the collector's: those count as unanswered.
    let not_stored: f64 = ["failed", "unanswered"]
        .iter()
        .map(|r| {
            switchyard_testkit::metric_sum(&text, switchyard_contract::metrics::SAMPLES_TOTAL.name, &[("result", r)])
        })
        .sum();
    if not_stored == 0.0 || !env.alerted("SwitchyardSamplesLost") {
        return None;
    }
    env.stack.restart_collector().ok()?;
    Some(
        "degraded mode (automatic): the filter counted the samples it could not ship as unanswered, and requests were \
         neither slowed nor failed; after the ticket the operator started the collector again on its address"
            .to_owned(),
    )
}

pub const COLLECTOR_KILLED: Spec = Spec {
    name: "collector-killed",
    title: "The sample collector is killed",
    severity: "SEV4: payload samples lost, no failed requests",
    bootstrap: &[],
    // The drift monitor runs on the samples file: it starves while the filter keeps sampling.
    expect: &["SwitchyardSamplesLost", "SwitchyardDriftSamplesStopped"],
    inject: |env| {
        env.stack.kill_collector();
        Ok("SIGKILL to switchyard-collector (payload samples have nowhere to go)".into())
    },
    mitigated: collector_restarted,
    sample_rate: 1.0,
    monitor: true,
    slow: None,
    failpoints: false,
    playbook: "collector-down.md",
    trigger: "The collector process was killed: the filter's sample shipments to it were refused from then on.",
    root_cause: "Injected: the sample collector down (a crash, a full disk, a node loss), taking drift monitoring's input with it.",
};

fn kept_previous_policy(env: &mut Env) -> Option<String> {
    let rejected = env.stack.stat("extension_config_discovery.http_filter.switchyard.update_rejected");
    (rejected > 0.0).then(|| "Envoy refused the policy and kept running the previous one (automatic)".to_owned())
}

pub const BAD_POLICY: Spec = Spec {
    name: "bad-policy",
    title: "An invalid policy is pushed past the renderer's checks",
    severity: "SEV3: a refused policy push, the previous policy still serving",
    bootstrap: &[],
    expect: &["SwitchyardPolicyRejected"],
    inject: |env| {
        // A misspelt field, as a hand-edited WasmPlugin or ECDS file could carry.
        let accepted = env.stack.apply_unchecked_policy_text(r#"{"modelz": {"mlp": {"versions": []}}}"#);
        anyhow::ensure!(!accepted, "Envoy accepted an invalid policy");
        Ok("an ECDS update whose policy misspells `models`, written straight into the running Envoy's filter.yaml"
            .into())
    },
    mitigated: kept_previous_policy,
    sample_rate: 0.1,
    monitor: false,
    slow: None,
    failpoints: false,
    playbook: "bad-policy-push.md",
    trigger: "A policy with a misspelt top-level field reached Envoy's ECDS file without `switchyard-policy check` (a hand edit).",
    root_cause: "Injected: a bad configuration push bypassing the renderer's validation.",
};

/// Alerting blind is detected by the pager's dead man's switch (the Watchdog stopped), and the
/// guard protects traffic meanwhile.
/// After a part of alerting was stopped (the onset): a second later the canary fails every
/// request, so the drill shows what still protects traffic while nothing can page.
fn then_the_canary_fails(env: &mut Env, stopped: &str) -> anyhow::Result<String> {
    env.mark_onset();
    std::thread::sleep(std::time::Duration::from_secs(1));
    env.set_fault("switchyard.fault.mlp-v2.abort_percent", 100)?;
    Ok(format!("{stopped} stopped; a second later every request routed to mlp-v2 answered 503"))
}

fn alerting_blind_guard_still_acts(env: &mut Env) -> Option<String> {
    env.paged(ALERTING_DOWN).then_some(())?;
    guard_took_v2_out(env).map(|g| {
        format!("{g}, with no Prometheus rule involved; the pager's dead man's switch paged that alerting was down")
    })
}

pub const PROMETHEUS_DOWN: Spec = Spec {
    name: "prometheus-down",
    title: "Prometheus is down, then the canary fails",
    severity: "SEV2: alerting blind during a canary failure",
    bootstrap: &["--fault", "mlp-v2=0:503"],
    // No rule can fire: the pager's dead man's switch sees the Watchdog resolved.
    expect: &[ALERTING_DOWN],
    inject: |env| {
        env.prometheus = None;
        then_the_canary_fails(env, "Prometheus")
    },
    mitigated: alerting_blind_guard_still_acts,
    sample_rate: 0.1,
    monitor: false,
    slow: None,
    failpoints: false,
    playbook: "canary-regression.md",
    trigger: "Prometheus was stopped (no rule evaluation, no alerts), then the canary mlp/v2 began failing every request.",
    root_cause: "Injected: the monitoring stack down at the moment a canary fails.",
};

pub const ALERTMANAGER_DOWN: Spec = Spec {
    name: "alertmanager-down",
    title: "Alertmanager is down, then the canary fails",
    severity: "SEV2: alerting blind during a canary failure",
    bootstrap: &["--fault", "mlp-v2=0:503"],
    // Prometheus fires, nothing delivers: the Watchdog stops reaching the pager.
    expect: &[ALERTING_DOWN],
    inject: |env| {
        env.alertmanager = None;
        then_the_canary_fails(env, "Alertmanager")
    },
    mitigated: alerting_blind_guard_still_acts,
    sample_rate: 0.1,
    monitor: false,
    slow: None,
    failpoints: false,
    playbook: "canary-regression.md",
    trigger: "Alertmanager was stopped (Prometheus evaluates, nothing is delivered), then the canary mlp/v2 began failing every request.",
    root_cause: "Injected: the alert delivery path down at the moment a canary fails.",
};

/// Drift fails no request: it is a question for the model's owners (the playbook's steps:
/// confirm in /v1/drift, find the feature, decide to retrain or roll back the producer).
fn owners_decide(_: &mut Env) -> Option<String> {
    Some("nothing for clients: no request fails; the model's owners take the playbook's steps".to_owned())
}

pub const INPUT_DRIFT: Spec = Spec {
    name: "input-drift",
    title: "The clients' input features shift",
    severity: "SEV4: model quality at risk, no failed requests",
    bootstrap: &[],
    // Dataset drift and column drift never fire together: every column moved is dataset drift.
    expect: &["SwitchyardDatasetDrift"],
    inject: |env| {
        env.shift_inputs(64)?;
        Ok("every client's 64 features moved by +2 and doubled in spread (a changed upstream feature pipeline)".into())
    },
    mitigated: owners_decide,
    sample_rate: 1.0,
    monitor: true,
    slow: None,
    failpoints: false,
    playbook: "input-drift.md",
    trigger: "The inputs the clients send moved away from the reference the drift monitor holds (version v1's first 300 sampled rows).",
    root_cause: "Injected: an upstream change to how the features are computed, which the model was not trained for.",
};

fn no_client_impact(_: &mut Env) -> Option<String> {
    Some("nothing for clients: no request fails or slows; drift is not measured meanwhile".to_owned())
}

pub const MONITOR_KILLED: Spec = Spec {
    name: "monitor-killed",
    title: "The drift monitor is killed",
    severity: "SEV4: drift monitoring blind, no failed requests",
    bootstrap: &[],
    expect: &["SwitchyardDriftMonitorDown"],
    inject: |env| {
        env.monitor = None;
        Ok("switchyard-monitor stopped (drift is no longer measured)".into())
    },
    mitigated: no_client_impact,
    sample_rate: 0.5,
    monitor: true,
    slow: None,
    failpoints: false,
    playbook: "input-drift.md",
    trigger: "The drift monitor process was stopped while the stack served traffic.",
    root_cause: "Injected: the drift monitor down (a crash, an eviction), which blinds drift detection without touching traffic.",
};

pub const SAMPLES_CORRUPTED: Spec = Spec {
    name: "samples-corrupted",
    title: "Broken lines land in the samples file",
    severity: "SEV4: drift monitoring degraded, no failed requests",
    bootstrap: &[],
    expect: &["SwitchyardDriftLinesSkipped"],
    inject: |env| {
        // Another writer appending broken records beside the collector's (a misconfigured
        // second collector, a partial copy): 20 lines a second until the drill ends.
        let (path, ended) = (env.stack.samples.clone(), env.ended.clone());
        std::thread::spawn(move || {
            use std::io::Write as _;
            let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(&path) else { return };
            while !ended.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = f.write_all(b"{\"model\": \"mlp\", \"version\": \"v1\", \"request\": not json}\n");
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        });
        Ok("a second writer appends 20 malformed lines a second to the collector's samples file".into())
    },
    mitigated: |_| {
        Some(
            "nothing for clients: the monitor skips and counts the broken lines and measures drift on the rest"
                .to_owned(),
        )
    },
    sample_rate: 0.5,
    monitor: true,
    slow: None,
    failpoints: false,
    playbook: "input-drift.md",
    trigger: "Malformed lines were appended to the samples file the drift monitor follows.",
    root_cause: "Injected: a second, broken writer of the samples file.",
};

/// The playbook's manual step, as the paged operator would take it: once the burn-rate page
/// arrives, move all of mlp's traffic to v2 (known good) with a checked policy update.
fn operator_shifts_to_v2(env: &mut Env) -> Option<String> {
    if !env.paged("SwitchyardErrorBudgetBurn") {
        return None;
    }
    let mut policy = crate::policy(0.1, crate::SLO_LATENCY_MS);
    policy["models"]["mlp"]["versions"][0]["weight"] = 0.into();
    policy["models"]["mlp"]["versions"][1]["weight"] = 100.into();
    match env.stack.apply_policy(&policy) {
        Ok(true) => {
            Some("the operator moved all of mlp's traffic to v2 (playbook step, `envoy/apply-policy.sh`)".to_owned())
        }
        Ok(false) | Err(_) => None,
    }
}

pub const STABLE_ERRORS: Spec = Spec {
    name: "stable-errors",
    title: "The stable version fails 10 % of its requests",
    severity: "SEV1: availability burn far above 14.4x on the stable version",
    bootstrap: &["--fault", "mlp-v1=0:503"],
    expect: &["SwitchyardErrorBudgetBurn"],
    inject: |env| {
        env.set_fault("switchyard.fault.mlp-v1.abort_percent", 10)?;
        Ok("Envoy's fault filter answers 503 to 10 % of the requests routed to mlp-v1, the stable version".into())
    },
    mitigated: operator_shifts_to_v2,
    sample_rate: 0.1,
    monitor: false,
    slow: None,
    failpoints: false,
    playbook: "canary-regression.md",
    trigger: "The stable version mlp/v1 began failing one request in ten; the guard protects against a canary, not the stable version.",
    root_cause: "Injected: a regression in the version serving most traffic (a dependency, the host), which only a person can route around.",
};

/// Alerts no drill raises yet, and why. The coverage test (tests/coverage.rs) accepts these
/// and nothing else: a new alert needs a drill that makes it fire, or a line here.
pub const NOT_DRILLED: &[(&str, &str)] = &[
    (
        "Watchdog",
        "fires always, to the pager's dead man's switch only: its absence is what the prometheus-down and \
         alertmanager-down drills detect (SwitchyardAlertingDown)",
    ),
    (
        "SwitchyardPolicyChangedOutsideTools",
        "no drill yet (the security drills are the next part of issue 32): its signal, the controller's \
         switchyard_rollout_policy_unrecorded, is raised and cleared in real Envoy by e2e/tests/audit.rs, and the rule \
         by the promtool tests",
    ),
    (
        "SwitchyardUnauthenticatedCallers",
        "no drill yet (the security drills are the next part of issue 32): its signal, the refused-handshake \
         counters, is counted in e2e/tests/mtls.rs, and the rule by the promtool tests",
    ),
];

/// The backend sheds at once (429 instead of a growing queue); once paged, and with the queue's
/// ticket saying the queue is the bottleneck, the operator rate-limits the client that surges
/// (here: the surge stops).
fn shed_then_rate_limited(env: &mut Env) -> Option<String> {
    if !(env.paged("SwitchyardBackendShedding") && env.alerted("SwitchyardBackendQueueNearCapacity")) {
        return None;
    }
    env.end_surge();
    Some(
        "the backend shed the excess with 429 at once (automatic); after the page and the queue's ticket the \
         operator rate-limited the surging client (playbook step)"
            .to_owned(),
    )
}

pub const OVERLOAD_3X: Spec = Spec {
    name: "overload",
    title: "Traffic surges to three times what the stable backend can serve",
    severity: "SEV2: load shedding on the stable version",
    bootstrap: &[],
    expect: &["SwitchyardErrorBudgetBurn", "SwitchyardBackendShedding", "SwitchyardBackendQueueNearCapacity"],
    inject: |env| {
        let c = env.capacity.unwrap_or(100.0);
        // v1 takes 80 %: three times its capacity in all, less the steady traffic already sent.
        let extra = 3.0 * c / 0.8 - 0.5 * c / 0.8;
        env.surge(extra)?;
        Ok(format!("a surge of {extra:.0} req/s more: mlp v1 offered three times the {c:.0} req/s it serves"))
    },
    mitigated: shed_then_rate_limited,
    sample_rate: 0.1,
    monitor: false,
    slow: Some(SlowModels { max_queue_size: 8 }),
    failpoints: false,
    playbook: "backend-overload.md",
    trigger: "A client began sending several times the usual traffic (a retry storm, a batch job pointed at the online endpoint).",
    root_cause: "Injected: demand beyond the stable version's capacity (one backend, no autoscaling on the local stack).",
};

/// Once the guard has taken the draining canary out, the operator's playbook steps: start the
/// replacement on the same ports, wait until it is ready, and clear the guard's latch with a
/// new epoch (a checked policy update), so that the canary takes its share again.
fn restarted_and_guard_reset(env: &mut Env) -> Option<String> {
    if !env.guard_out("v2") {
        return None;
    }
    // Polled again when the guard reset fails: the replacement is started once.
    if !env.replaced {
        let _ = env.stack.v2.wait_exit(std::time::Duration::from_secs(40));
        start_v2_again(env);
        env.replaced = true;
    }
    reset_guard(env).then(|| {
        "the guard took the draining mlp/v2 out (automatic); the operator started its replacement on the same \
             ports and reset the guard (guard.epoch 1), and v2 took its share again"
            .to_owned()
    })
}

/// The playbooks' last step once a canary is healthy again: a new guard epoch (a checked
/// policy update) clears the latch, and the canary takes its share again.
fn reset_guard(env: &Env) -> bool {
    let mut policy = crate::policy(0.1, crate::SLO_LATENCY_MS);
    policy["models"]["mlp"]["guard"]["epoch"] = 1.into();
    matches!(env.stack.apply_policy(&policy), Ok(true))
}

pub const ROLLING_RESTART: Spec = Spec {
    name: "rolling-restart",
    title: "The canary's backend is restarted under load (SIGTERM, drain, replacement)",
    severity: "SEV3: a canary's share of one model's traffic, taken out by the guard (SEV2 if its burn pages)",
    bootstrap: &[],
    expect: &["SwitchyardGuardTookVersionOut", "SwitchyardCanaryWorseThanStable", "SwitchyardTargetDown"],
    inject: |env| {
        env.stack.v2.sigterm();
        Ok("SIGTERM to the mlp/v2 backend under load: it stops taking requests and drains what it holds".into())
    },
    mitigated: restarted_and_guard_reset,
    sample_rate: 0.1,
    monitor: false,
    slow: None,
    failpoints: false,
    playbook: "model-fails-to-load.md",
    trigger: "The mlp/v2 backend was restarted under load (SIGTERM, as a deploy or a node drain does), with no replica to take over.",
    root_cause: "Injected: a restart of a single-replica version; on the local stack nothing removes it from the routing first.",
};

pub const COLUMN_DRIFT: Spec = Spec {
    name: "column-drift",
    title: "Four of the clients' 64 input features shift",
    severity: "SEV4: model quality at risk, no failed requests",
    bootstrap: &[],
    // Dataset drift instead would mean the four columns were judged as half of them.
    expect: &["SwitchyardColumnDrift"],
    inject: |env| {
        env.shift_inputs(4)?;
        Ok("the clients' first 4 features moved by +2 and doubled in spread; the other 60 are unchanged".into())
    },
    mitigated: owners_decide,
    sample_rate: 1.0,
    monitor: true,
    slow: None,
    failpoints: false,
    playbook: "input-drift.md",
    trigger: "Four input features the clients send moved away from the reference (one upstream feature job changed), too few columns for dataset drift.",
    root_cause: "Injected: a change to a few features upstream, which the model was not trained for.",
};

/// The backend drops requests whose deadline passed before computing them, so the clients
/// with time left keep being served; after the expiry ticket and the shedding page, the
/// operator rate-limits the client whose deadlines cannot be met (here: its traffic stops).
/// Not after the queue's ticket: requests that expire leave the queue at once, so its average
/// fill can stay under the ticket's 80% however hard the client pushes (seen in one run of two).
fn expired_then_rate_limited(env: &mut Env) -> Option<String> {
    if !(env.alerted("SwitchyardRequestsExpiring") && env.paged("SwitchyardBackendShedding")) {
        return None;
    }
    env.end_surge();
    Some(
        "the backend answered 504 to the requests whose deadline passed in the queue, without computing them, and \
         kept serving the rest (automatic); after the expiry ticket and the shedding page the operator rate-limited \
         the client with the tight deadline (playbook step)"
            .to_owned(),
    )
}

pub const DEADLINES_EXPIRE: Spec = Spec {
    name: "deadline-expiry",
    title: "A client with a 20 ms deadline sends three times what the stable backend serves",
    severity: "SEV2: load shedding and expiring requests on the stable version",
    bootstrap: &[],
    expect: &[
        "SwitchyardRequestsExpiring",
        "SwitchyardBackendQueueNearCapacity",
        "SwitchyardBackendShedding",
        "SwitchyardErrorBudgetBurn",
    ],
    inject: |env| {
        let c = env.capacity.unwrap_or(100.0);
        // The client alone sends three times what v1 serves (v1 takes 80 % of it, plus the
        // steady traffic), so v1's queue of 8 stays full of requests whose deadline passes
        // before their turn.
        env.surge_with(3.0 * c, 48, Some(20_000))?;
        Ok(format!(
            "a client with 48 workers sends {:.0} req/s more, each request with an OIP timeout of 20 ms; mlp v1 serves {c:.0} req/s",
            3.0 * c
        ))
    },
    mitigated: expired_then_rate_limited,
    sample_rate: 0.1,
    monitor: false,
    slow: Some(SlowModels { max_queue_size: 8 }),
    failpoints: false,
    playbook: "backend-overload.md",
    trigger: "A new client with a 20 ms deadline per request (an online feature service) began sending three times what the stable version serves.",
    root_cause: "Injected: demand with deadlines that the queue in front of the stable version cannot meet.",
};

/// The broken file the `broken-model` drill deploys in place of mlp/v2's model.
const BROKEN_MODEL_BYTES: &[u8] = b"PK\x03\x04 truncated upload: not a TorchScript archive";

/// Once the guard has taken the broken canary out and its not-ready ticket arrived, the
/// playbook's steps: put the previous model file back, restart the version, and reset the
/// guard.
fn model_rolled_back(env: &mut Env) -> Option<String> {
    if !(env.guard_out("v2") && env.alerted("SwitchyardModelNotReady")) {
        return None;
    }
    if !env.replaced {
        redeploy_v2(env, true).ok()?;
        env.replaced = true;
    }
    reset_guard(env).then(|| {
        "the guard took the broken mlp/v2 out (automatic); after the ticket the operator put the previous model file \
         back, restarted v2 and reset the guard (guard.epoch 1)"
            .to_owned()
    })
}

/// Restarts mlp/v2 on its ports onto its previous model file (`good`) or a broken one, as a
/// deploy does: SIGTERM, drain, the new file, a new process.
fn redeploy_v2(env: &mut Env, good: bool) -> anyhow::Result<()> {
    env.stack.v2.sigterm();
    env.stack.v2.wait_exit(std::time::Duration::from_secs(40));
    let model = env.stack.repo.join("mlp/v2/model.pt");
    std::fs::remove_file(&model)?;
    if good {
        std::os::unix::fs::symlink(switchyard_testkit::demo_repo().join("mlp/v2/model.pt"), &model)?;
    } else {
        std::fs::write(&model, BROKEN_MODEL_BYTES)?;
    }
    start_v2_again(env);
    Ok(())
}

/// A new mlp/v2 backend on the ports of the one that exited, once it has loaded (or failed to).
fn start_v2_again(env: &mut Env) {
    let v2 = &env.stack.v2;
    let next =
        switchyard_testkit::Server::start_at(&env.stack.repo, [&v2.http, &v2.grpc, &v2.admin], &["--models", "mlp:v2"]);
    next.wait_loaded();
    env.stack.v2 = next;
}

pub const BROKEN_MODEL: Spec = Spec {
    name: "broken-model",
    title: "The canary is redeployed with a broken model file",
    severity: "SEV3: a canary that does not load, taken out by the guard (SEV2 if its burn pages)",
    bootstrap: &[],
    expect: &[
        "SwitchyardModelNotReady",
        "SwitchyardGuardTookVersionOut",
        "SwitchyardCanaryWorseThanStable",
        "SwitchyardErrorBudgetBurn",
    ],
    inject: |env| {
        redeploy_v2(env, false)?;
        Ok("mlp/v2 restarted (SIGTERM, drained) onto a truncated model file: it runs, fails to load v2 and answers 503"
            .into())
    },
    mitigated: model_rolled_back,
    sample_rate: 0.1,
    monitor: false,
    slow: None,
    failpoints: false,
    playbook: "model-fails-to-load.md",
    trigger: "A redeploy of the canary mlp/v2 shipped a truncated model file; the backend came up without the version.",
    root_cause: "Injected: a broken model artefact (an interrupted upload), deployed without a load check before the rollout.",
};

/// The playbook's steps after the page: roll the filter back to the previous build (an ECDS
/// update with the product `.wasm`, which gives every worker a fresh VM).
fn filter_rolled_back(env: &mut Env) -> Option<String> {
    if !env.paged("SwitchyardWasmFilterFailing") {
        return None;
    }
    let policy = crate::policy(0.1, crate::SLO_LATENCY_MS);
    matches!(env.stack.apply_filter(&policy, &switchyard_testkit::stack::wasm_path()), Ok(true)).then(|| {
        "Envoy failed open at once (automatic): requests went on to the stable version without the filter; after the \
         page the operator rolled the filter back to the previous build (`render filter --wasm`), and fresh VMs took over"
            .to_owned()
    })
}

pub const FILTER_CRASH: Spec = Spec {
    name: "filter-crash",
    title: "A filter build that crashes its Wasm VM is rolled out",
    severity: "SEV2: the canary split, the guard and SLO accounting off (SEV1 with gRPC clients)",
    bootstrap: &[],
    expect: &["SwitchyardWasmFilterFailing"],
    inject: |env| {
        // One request per connection: each of Envoy's workers has a VM of its own.
        let mut sent = 0;
        for _ in 0..8 {
            let r = switchyard_testkit::try_request(
                &env.stack.listen,
                "GET",
                "/v2/models/mlp",
                &[("x-switchyard-failpoint", "panic")],
                b"",
            );
            sent += usize::from(r.is_ok());
        }
        Ok(format!(
            "{sent} requests with `x-switchyard-failpoint: panic`, each on a connection of its own, trapped the VMs they \
             reached (the build with failpoints
             stands for a filter release with a crash bug)"
        ))
    },
    mitigated: filter_rolled_back,
    sample_rate: 0.1,
    monitor: false,
    slow: None,
    failpoints: true,
    playbook: "filter-vm-crash.md",
    trigger: "Requests reached a filter build whose request-header callback panics on them, trapping the Wasm VM of each Envoy worker they hit.",
    root_cause: "Injected: a filter release with a crash bug (a panic in a callback), rolled out to Envoy with `failure_policy: FAIL_OPEN`.",
};
