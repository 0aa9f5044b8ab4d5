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

/// Every `outcome<op>"a|b"` selector in the hand-written rule files: (file, the outcomes named).
fn outcome_selectors(op: &str) -> Vec<(&'static str, std::collections::BTreeSet<String>)> {
    let needle = format!("outcome{op}\"");
    let mut out = Vec::new();
    for file in ["recording-rules.yml", "alerting-rules.yml"] {
        let text = std::fs::read_to_string(root().join("dashboards/prometheus").join(file)).expect("rule file");
        for (i, _) in text.match_indices(&needle) {
            let selected = text[i + needle.len()..].split('"').next().unwrap_or_default();
            out.push((file, selected.split('|').map(str::to_owned).collect()));
        }
    }
    out
}

fn outcomes(keep: fn(&switchyard_policy::slo::Outcome) -> bool) -> std::collections::BTreeSet<String> {
    switchyard_policy::slo::Outcome::ALL.iter().filter(|o| keep(o)).map(|o| o.as_str().to_owned()).collect()
}

/// The hand-written rules leave out the outcomes that are no SLO event (the client's doing, the
/// gateway's quota): the same set as the policy's.
#[test]
fn the_rules_non_events_are_the_policys() {
    let not_events = outcomes(|o| !o.is_event());
    let selectors = outcome_selectors("!~");
    for (file, set) in &selectors {
        assert_eq!(set, &not_events, "{file}: outcome!~{set:?}");
    }
    assert!(selectors.len() >= 11, "only {} non-event selectors found", selectors.len());
}

/// The hand-written rules select the availability SLI's bad events by outcome: the same set as
/// the policy's (which the filter, the guard and the rollout judge use).
#[test]
fn the_rules_bad_outcomes_are_the_policys() {
    let bad = outcomes(|o| o.is_bad());
    // Other selectors name one class (e.g. client_gone); those naming a bad one name all.
    let naming_bad: Vec<_> = outcome_selectors("=~")
        .into_iter()
        .filter(|(_, set)| set.len() > 1 && set.iter().any(|o| bad.contains(o)))
        .collect();
    for (file, set) in &naming_bad {
        assert_eq!(set, &bad, "{file}: outcome=~{set:?}");
    }
    assert!(naming_bad.len() >= 7, "only {} bad-outcome selectors found", naming_bad.len());
}
