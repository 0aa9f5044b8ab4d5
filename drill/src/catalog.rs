//! The drills, by name. Each one injects one fault into the running stack and names the
//! alerts that count as detecting it and how its mitigation shows.

use crate::{Env, Spec};

/// Every drill, in the order `all` runs them.
pub const DRILLS: &[Spec] = &[CANARY_5XX, CANARY_LATENCY, CANARY_KILLED];

pub fn find(name: &str) -> Option<&'static Spec> {
    DRILLS.iter().find(|d| d.name == name)
}

fn guard_took_v2_out(env: &mut Env) -> Option<String> {
    env.guard_out("v2").then(|| "the filter's guard took mlp/v2 out of the split (automatic)".to_owned())
}

pub const CANARY_5XX: Spec = Spec {
    name: "canary-5xx",
    title: "The canary answers 503 to every request",
    bootstrap: &["--fault", "mlp-v2=0:503"],
    expect: &["SwitchyardGuardTookVersionOut", "SwitchyardCanaryWorseThanStable", "SwitchyardErrorBudgetBurn"],
    inject: |env| {
        env.set_fault("switchyard.fault.mlp-v2.abort_percent", 100.0)?;
        Ok("Envoy's fault filter answers 503 to every request routed to mlp-v2".into())
    },
    mitigated: guard_took_v2_out,
    playbook: "canary-regression.md",
    trigger: "Every request routed to the canary mlp/v2 got a 503 (injected with Envoy's fault filter through its admin runtime).",
    root_cause: "Injected: a canary that fails every request, standing for a bad build or a broken dependency of the new version.",
};

pub const CANARY_LATENCY: Spec = Spec {
    name: "canary-latency",
    title: "The canary becomes 400 ms slower",
    bootstrap: &["--fault", "mlp-v2=0:400ms"],
    expect: &["SwitchyardGuardTookVersionOut", "SwitchyardCanaryWorseThanStable", "SwitchyardErrorBudgetBurn"],
    inject: |env| {
        env.set_fault("switchyard.fault.mlp-v2.delay_percent", 100.0)?;
        Ok("Envoy's fault filter holds every request routed to mlp-v2 for 400 ms".into())
    },
    mitigated: guard_took_v2_out,
    playbook: "canary-regression.md",
    trigger: "Every request routed to the canary mlp/v2 was held 400 ms before reaching it (Envoy's fault filter), against an SLO of 100 ms.",
    root_cause: "Injected: a latency regression in the new version (a slower model, a cold cache, a noisy neighbour).",
};

pub const CANARY_KILLED: Spec = Spec {
    name: "canary-killed",
    title: "The canary's backend process is killed",
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
    playbook: "canary-regression.md",
    trigger: "The mlp/v2 backend process was killed (SIGKILL) under load: Envoy's connections to it were refused from then on.",
    root_cause: "Injected: a crashing canary process (OOM kill, segfault, node loss).",
};
