//! The policy core in the browser: the console validates an edited policy and previews its
//! effect with the very code the filter runs (`switchyard-policy`), so what the page says is
//! what Envoy will do. Exchanged as JSON text: the page's JS has no types of ours, and the
//! 64-bit hash points travel as decimal strings (JS numbers hold 53 bits).
//!
//! In the browser a panic aborts the module: like the filter, no unwrap here.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

use serde_json::{Value, json};
use switchyard_policy::Config;
use switchyard_policy::split::moves;
use wasm_bindgen::prelude::wasm_bindgen;

/// The filter's verdict on a policy: empty when it is valid, else the message that
/// `switchyard-policy check` prints for it (and the controller answers an apply with).
#[wasm_bindgen]
pub fn check(text: &str) -> String {
    match Config::parse(text.as_bytes()) {
        Ok(_) => String::new(),
        Err(e) => e.to_string(),
    }
}

/// What putting `edited` in force instead of `in_force` would change, per model: weights
/// before and after, and how many of the recent sticky keys (`points`: `{"model": ["hash",
/// ...]}`, each the filter's `stable_hash` of a key) would be served by another version.
/// JSON: `{"error": "..."}` when either policy is invalid, else `{"models": [...]}`.
#[wasm_bindgen]
pub fn preview(in_force: &str, edited: &str, points: &str) -> String {
    preview_value(in_force, edited, points).to_string()
}

fn preview_value(in_force: &str, edited: &str, points: &str) -> Value {
    let before = match Config::parse(in_force.as_bytes()) {
        Ok(c) => c,
        Err(e) => return json!({"error": format!("the policy in force: {e}")}),
    };
    let after = match Config::parse(edited.as_bytes()) {
        Ok(c) => c,
        Err(e) => return json!({"error": e.to_string()}),
    };
    let points: Value = serde_json::from_str(points).unwrap_or(Value::Null);
    let mut models = Vec::new();
    for (name, new) in &after.models {
        let Some(old) = before.models.get(name) else {
            models.push(json!({"model": name, "summary": format!("{name}: a new model"), "changed": true}));
            continue;
        };
        let weights: Vec<Value> = new
            .versions
            .iter()
            .map(|v| json!({"version": v.name, "before": old.version(&v.name).and_then(|i| old.versions.get(i)).map(|o| o.weight), "after": v.weight}))
            .collect();
        let keys: Vec<u64> = points
            .get(name)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|p| p.as_str().and_then(|s| s.parse().ok())).collect())
            .unwrap_or_default();
        let moved = moves(old, new, &keys);
        let summary = if keys.is_empty() {
            format!("{name}: no recent sticky keys to preview with")
        } else if moved.is_empty() {
            format!("{name}: none of {} recent sticky users would change version", keys.len())
        } else {
            let parts: Vec<String> =
                moved.iter().map(|m| format!("{} from {} to {}", percent(m.keys, keys.len()), m.from, m.to)).collect();
            format!("{name}: of {} recent sticky users, {} would move", keys.len(), parts.join(", "))
        };
        let moves: Vec<Value> = moved.iter().map(|m| json!({"from": m.from, "to": m.to, "keys": m.keys})).collect();
        models.push(json!({
            "model": name,
            "changed": old != new,
            "weights": weights,
            "keys": keys.len(),
            "moves": moves,
            "summary": summary,
        }));
    }
    for name in before.models.keys().filter(|m| !after.models.contains_key(*m)) {
        models.push(json!({"model": name, "summary": format!("{name}: removed"), "changed": true}));
    }
    json!({"models": models, "changed": before != after})
}

fn percent(n: usize, of: usize) -> String {
    format!("{:.1}%", 100.0 * n as f64 / of.max(1) as f64)
}

#[cfg(test)]
mod tests {
    use switchyard_policy::hash::stable_hash;

    use super::*;

    fn policy(w1: u32, w2: u32) -> String {
        json!({"models": {"mlp": {
            "versions": [{"name": "v1", "cluster": "mlp-v1", "weight": w1}, {"name": "v2", "cluster": "mlp-v2", "weight": w2}],
            "sticky": {"header": "x-user"}
        }}})
        .to_string()
    }

    #[test]
    fn check_gives_the_filters_message() {
        assert_eq!(check(&policy(100, 0)), "");
        let bad = check(&policy(0, 0));
        assert!(bad.starts_with("invalid switchyard filter configuration: "), "{bad}");
        assert_eq!(bad, Config::parse(policy(0, 0).as_bytes()).unwrap_err().to_string());
        assert!(check("{").contains("EOF"), "{}", check("{"));
    }

    #[test]
    fn preview_counts_the_sticky_users_that_move() {
        let keys: Vec<String> = (0..200).map(|i| stable_hash(format!("user-{i}").as_bytes()).to_string()).collect();
        let points = json!({"mlp": keys}).to_string();
        let p = preview_value(&policy(100, 0), &policy(50, 50), &points);
        let m = &p["models"][0];
        let moved = m["moves"][0]["keys"].as_u64().unwrap();
        assert_eq!((m["keys"].as_u64(), m["moves"][0]["from"].as_str()), (Some(200), Some("v1")));
        assert!((70..130).contains(&moved), "{p}");
        assert_eq!(
            m["summary"],
            format!("mlp: of 200 recent sticky users, {} from v1 to v2 would move", percent(moved as usize, 200))
        );
        assert_eq!(m["weights"][1], json!({"version": "v2", "before": 0, "after": 50}));
        let same = preview_value(&policy(100, 0), &policy(100, 0), &points);
        assert_eq!(same["changed"], false);
        assert!(same["models"][0]["summary"].as_str().unwrap().contains("none of 200"));
        assert!(
            preview_value(&policy(100, 0), &policy(0, 0), &points)["error"].as_str().unwrap().starts_with("invalid")
        );
    }
}
