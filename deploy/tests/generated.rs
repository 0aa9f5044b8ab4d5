//! `k8s/`: the committed generated objects are what `render k8s` makes from the committed
//! policy, rules and dashboards, every overlay renders with `kubectl kustomize`, and every
//! object passes its schema (`k8s/validate.py`; how the objects agree with each other is
//! tests/k8s_objects.rs).

use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root")
}

#[test]
fn committed_generated_objects_equal_a_fresh_render() {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard-policy"))
        .args(["render", "k8s", "--check"])
        .current_dir(root())
        .output()
        .expect("run switchyard-policy");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn every_overlay_renders_with_kubectl_kustomize() {
    let overlays = std::fs::read_dir(root().join("k8s/overlays")).expect("k8s/overlays");
    let mut rendered = 0;
    for o in overlays {
        let dir = o.expect("overlay").path();
        let out = Command::new("kubectl").arg("kustomize").arg(&dir).output().expect("kubectl (scripts/setup.sh)");
        assert!(out.status.success(), "{}: {}", dir.display(), String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        // Every overlay serves each of the demo policy's four versions.
        for c in ["mlp-v1", "mlp-v2", "resnet18-v1", "resnet18-v2"] {
            assert!(text.contains(&format!("name: {c}-predictor")) || text.contains(&format!("name: {c}\n")), "{c}");
        }
        rendered += 1;
    }
    assert_eq!(rendered, 4);
}

/// `k8s/validate.py`: runs it, or fails saying how to get what it needs.
fn validate(extra: &[&str]) -> String {
    let python = root().join(".venv/bin/python");
    let out = Command::new(&python)
        .arg("k8s/validate.py")
        .args(extra)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} (scripts/setup.sh installs it): {e}", python.display()));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "k8s/validate.py {extra:?} failed:\n{text}");
    text
}

#[test]
fn every_object_validates_against_kubernetes_1_31_and_1_33_and_its_own_schema() {
    let text = validate(&[]);
    assert!(text.contains("ok: 8 targets") && text.contains("Kubernetes 1.31, 1.33, 0 problem(s)"), "{text}");
}

#[test]
fn the_schema_validator_catches_each_kind_of_broken_object() {
    let text = validate(&["--self-test"]);
    // One line per break; a break that slipped through fails the run above.
    assert!(text.lines().filter(|l| l.starts_with("ok   ")).count() >= 4, "{text}");
}

#[test]
fn the_committed_contract_export_is_current() {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard-policy"))
        .args(["contract", "--check"])
        .current_dir(root())
        .output()
        .expect("run switchyard-policy");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The hand-written rules leave out the outcomes that are no SLO event (the client's doing, the
/// gateway's quota): the same set as the policy's.
#[test]
fn the_rules_non_events_are_the_policys() {
    use switchyard_policy::slo::Outcome;
    let not_events: std::collections::BTreeSet<&str> =
        Outcome::ALL.iter().filter(|o| !o.is_event()).map(|o| o.as_str()).collect();
    let mut seen = 0;
    for file in ["recording-rules.yml", "alerting-rules.yml"] {
        let text = std::fs::read_to_string(root().join("dashboards/prometheus").join(file)).expect("rule file");
        for (_, rest) in text.match_indices("outcome!~\"").map(|(i, _)| text.split_at(i + "outcome!~\"".len())) {
            let selected = rest.split('"').next().unwrap_or_default();
            let set: std::collections::BTreeSet<&str> = selected.split('|').collect();
            assert_eq!(set, not_events, "{file}: outcome!~\"{selected}\"");
            seen += 1;
        }
    }
    assert!(seen >= 11, "only {seen} non-event selectors found");
}

/// The hand-written rules select the availability SLI's bad events by outcome: the same set as
/// the policy's (which the filter, the guard and the rollout judge use).
#[test]
fn the_rules_bad_outcomes_are_the_policys() {
    use switchyard_policy::slo::Outcome;
    let bad: std::collections::BTreeSet<&str> =
        Outcome::ALL.iter().filter(|o| o.is_bad()).map(|o| o.as_str()).collect();
    let mut seen = 0;
    for file in ["recording-rules.yml", "alerting-rules.yml"] {
        let text = std::fs::read_to_string(root().join("dashboards/prometheus").join(file)).expect("rule file");
        for (_, rest) in text.match_indices("outcome=~\"").map(|(i, _)| text.split_at(i + "outcome=~\"".len())) {
            let selected = rest.split('"').next().unwrap_or_default();
            let set: std::collections::BTreeSet<&str> = selected.split('|').collect();
            // Other selectors name one class (e.g. client_gone); those naming a bad one name all.
            if set.iter().any(|o| bad.contains(o)) && set.len() > 1 {
                assert_eq!(set, bad, "{file}: outcome=~\"{selected}\"");
                seen += 1;
            }
        }
    }
    assert!(seen >= 7, "only {seen} bad-outcome selectors found");
}
