//! Every test and default of `switchyard-drift` against scipy/numpy, run live: `oracle.py`
//! (in the project's venv, scripts/setup.sh) generates the cases — numerical, categorical,
//! binary, ties, constants, NaN and infinities, empty windows, small and large references,
//! every override — and computes what Evidently would with scipy and numpy.
//!
//! Tolerance: every score within 1e-9 relative, and every decision identical. The z-test's
//! p-value is `2 (1 - Φ(|z|))` as Evidently writes it, so it is a multiple of 2⁻⁵² near 0:
//! there an absolute 4.5e-16 (two steps) is allowed as well.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;
use switchyard_drift::{Key, Kind, Summary, Test, column_drift};

fn python() -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(venv.exists(), "{} is missing: run scripts/setup.sh (it installs scipy)", venv.display());
    venv
}

fn cases(seed: u64) -> Vec<Value> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oracle.py");
    let out = Command::new(python()).arg(script).arg(seed.to_string()).output().expect("run oracle.py");
    assert!(out.status.success(), "oracle.py failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn number(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap(),
        Value::String(s) => s.parse().unwrap(),
        other => panic!("not a number: {other}"),
    }
}

fn summary(values: &Value, kind: Kind) -> Summary {
    let values = values.as_array().unwrap();
    match kind {
        Kind::Numerical => Summary::numerical(values.iter().map(number)),
        Kind::Categorical => Summary::categorical(values.iter().map(|v| match v {
            Value::String(s) => Some(Key::Text(s.clone())),
            v => Key::num(number(v)),
        })),
    }
}

fn check(seed: u64) -> usize {
    let mut checked = 0;
    for case in cases(seed) {
        let name = case["name"].as_str().unwrap();
        let kind = if case["kind"] == "numerical" { Kind::Numerical } else { Kind::Categorical };
        let (reference, current) = (summary(&case["reference"], kind), summary(&case["current"], kind));
        let test = case["test"].as_str().map(|t| Test::from_name(t).unwrap());
        let threshold = case["threshold"].as_f64();
        let got = column_drift(&reference, &current, test, threshold);
        let want = &case["expected"];
        if let Some(err) = want["error"].as_str() {
            let e = got.expect_err(name);
            assert_eq!(e.to_string().contains("reference"), err.contains("reference"), "{name}: {e}");
            continue;
        }
        let got = got.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got.test.name(), want["test"].as_str().unwrap(), "{name}: test");
        let score = want["score"].as_f64().unwrap();
        let tolerance = 1e-9 * score.abs() + if got.test == Test::Z { 4.5e-16 } else { 0.0 };
        assert!(
            (got.score - score).abs() <= tolerance,
            "{name} (seed {seed}): {} score {} vs scipy {score} (relative {:e})",
            got.test,
            got.score,
            ((got.score - score) / score).abs()
        );
        assert_eq!(got.threshold, want["threshold"].as_f64().unwrap(), "{name}: threshold");
        assert_eq!(got.drifted, want["drifted"].as_bool().unwrap(), "{name}: decision (score {})", got.score);
        checked += 1;
    }
    checked
}

#[test]
fn every_score_and_decision_matches_scipy() {
    // Three seeds: the same shapes of data, different draws.
    let checked: usize = [14, 15, 16].into_iter().map(check).sum();
    assert!(checked >= 150, "only {checked} cases checked");
}
