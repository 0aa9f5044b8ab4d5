//! Every alert has a runbook and a drill that made it fire in the committed run
//! (docs/drills/*/outcome.json, written by `switchyard-drill all`), or is named in
//! `catalog::NOT_DRILLED` with the reason. No stack is started here.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::BTreeSet;

use switchyard_drill::catalog::{DRILLS, NOT_DRILLED};
use switchyard_testkit::root;

fn alert_names() -> BTreeSet<String> {
    let rules = std::fs::read_to_string(root().join("dashboards/prometheus/alerting-rules.yml")).unwrap();
    rules.lines().filter_map(|l| l.trim().strip_prefix("- alert:")).map(|n| n.trim().to_owned()).collect()
}

#[test]
fn every_alert_has_a_runbook_and_fired_in_a_drill_or_says_why_not() {
    let alerts = alert_names();
    assert!(alerts.len() >= 16, "{alerts:?}");
    let mut fired = BTreeSet::new();
    for d in DRILLS {
        let path = root().join(format!("docs/drills/{}/outcome.json", d.name));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (run scripts/drill.sh to record every drill)", path.display()));
        let o: serde_json::Value = serde_json::from_str(&text).unwrap();
        fired.extend(o["alerts_fired"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_owned()));
        // The committed run detected what the drill expects (or, blind by design, nothing).
        match o["detected_by"].as_str() {
            Some(a) => assert!(d.expect.contains(&a), "{}: detected by {a}, not one of {:?}", d.name, d.expect),
            None => assert!(d.expect.is_empty(), "{}: not detected in the committed run", d.name),
        }
        assert_eq!(o["lost"], 0.0, "{}: lost", d.name);
    }
    let excused: BTreeSet<String> = NOT_DRILLED.iter().map(|(a, _)| (*a).to_owned()).collect();
    let mut problems = Vec::new();
    for a in &alerts {
        if !root().join(format!("docs/runbooks/{a}.md")).is_file() {
            problems.push(format!("{a} has no runbook docs/runbooks/{a}.md"));
        }
        match (fired.contains(a), excused.contains(a)) {
            (false, false) => problems.push(format!("{a} fired in no drill and is not in catalog::NOT_DRILLED")),
            (true, true) => problems.push(format!("{a} fired in a drill: take it out of catalog::NOT_DRILLED")),
            _ => {}
        }
    }
    // What a drill expects may be raised outside the rules (the pager's dead man's switch):
    // it needs a runbook all the same.
    for a in DRILLS.iter().flat_map(|d| d.expect) {
        if !root().join(format!("docs/runbooks/{a}.md")).is_file() {
            problems.push(format!("{a}, which a drill expects, has no runbook docs/runbooks/{a}.md"));
        }
    }
    for a in excused.difference(&alerts) {
        problems.push(format!("catalog::NOT_DRILLED names {a}, which is no alert"));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_drill_names_a_playbook_that_exists() {
    for d in DRILLS {
        let p = root().join("docs/incident-response/playbooks").join(d.playbook);
        assert!(p.is_file(), "{}: {}", d.name, p.display());
    }
}

/// A draft claims only the luck its drill's record shows: "where we got lucky" is derived
/// from the committed outcome (which versions failed, which kept answering), never boilerplate
/// (a draft once said the canary was hit when the fault hit the stable version).
#[test]
fn every_drafts_luck_is_what_its_record_shows() {
    for d in DRILLS {
        let dir = root().join(format!("docs/drills/{}", d.name));
        let o: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("outcome.json")).unwrap()).unwrap();
        let blast: switchyard_drill::Blast = serde_json::from_value(o["blast"].clone())
            .unwrap_or_else(|e| panic!("{}: outcome.json has no blast ({e}): run scripts/drill.sh", d.name));
        let draft = std::fs::read_to_string(dir.join("postmortem.md")).unwrap();
        let section = draft.split("### Where we got lucky\n").nth(1).and_then(|s| s.split("\n## ").next()).unwrap();
        let lines = blast.lucky();
        let want = if lines.is_empty() {
            "- Nothing the drill's record shows.".to_owned()
        } else {
            lines.iter().map(|l| format!("- {l}")).collect::<Vec<_>>().join("\n")
        };
        assert_eq!(section.trim(), want, "{}", d.name);
    }
}
