//! Alertmanager's webhook payloads, as the demo's pager received them: which alerts a
//! notification carries, the first expected one after the onset, and a notification in words.
//! Pure functions over `(Unix seconds, receiver, payload)` rows ([`Webhook::received`]).
//!
//! [`Webhook::received`]: switchyard_testkit::prom::Webhook::received

use serde_json::Value;
use switchyard_contract::process::pager::WATCHDOG;

/// One notification at the pager: when it arrived (Unix seconds), the receiver, the payload.
pub type Received = (f64, String, Value);

/// The alerts of a notification with `status` ("firing" or "resolved"), sorted, once each.
pub fn alerts_in(notification: &Value, status: &str) -> Vec<String> {
    let mut n: Vec<String> = notification["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["status"] == status)
        .filter_map(|a| a["labels"]["alertname"].as_str().map(str::to_owned))
        .collect();
    n.sort();
    n.dedup();
    n
}

/// The firing alerts of a notification.
pub fn firing(notification: &Value) -> Vec<String> {
    alerts_in(notification, "firing")
}

/// "firing: A, B; resolved: C".
pub fn describe(notification: &Value) -> String {
    let part = |status: &str| {
        let n = alerts_in(notification, status);
        (!n.is_empty()).then(|| format!("{status}: {}", n.join(", ")))
    };
    [part("firing"), part("resolved")].into_iter().flatten().collect::<Vec<_>>().join("; ")
}

/// The first notification at or after `since` (Unix seconds) with a firing alert in `expect`:
/// (when, the alert, the receiver).
pub fn first_page(received: &[Received], expect: &[&str], since: f64) -> Option<(f64, String, String)> {
    received.iter().filter(|(at, _, _)| *at >= since).find_map(|(at, receiver, n)| {
        firing(n).into_iter().find(|a| expect.contains(&a.as_str())).map(|name| (*at, name, receiver.clone()))
    })
}

/// Every notification at or after `since` (Unix seconds), in words, at its drill time
/// (`since` is drill time `since_drill`): (drill time, receiver, "firing: A; resolved: B").
pub fn since(received: &[Received], since: f64, since_drill: f64) -> Vec<(f64, String, String)> {
    received
        .iter()
        // The Watchdog's heartbeats are the dead man's switch at work, not notifications.
        .filter(|(at, receiver, _)| *at >= since && receiver != WATCHDOG)
        .map(|(at, receiver, n)| (since_drill + at - since, receiver.clone(), describe(n)))
        .collect()
}

/// Whether `alert` reached the pager firing at or after `since`, at `receiver` when given.
pub fn notified(received: &[Received], alert: &str, receiver: Option<&str>, since: f64) -> bool {
    received
        .iter()
        .any(|(at, r, n)| *at >= since && receiver.is_none_or(|want| r == want) && firing(n).iter().any(|a| a == alert))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A notification as Alertmanager posts it: (alert name, status) per alert.
    fn payload(alerts: &[(&str, &str)]) -> Value {
        let alerts: Vec<Value> = alerts
            .iter()
            .map(|(name, status)| {
                json!({"status": status, "labels": {"alertname": name, "model": "mlp"}, "annotations": {}})
            })
            .collect();
        json!({"version": "4", "status": "firing", "receiver": "ticket", "alerts": alerts})
    }

    fn at(t: f64, receiver: &str, alerts: &[(&str, &str)]) -> Received {
        (t, receiver.to_owned(), payload(alerts))
    }

    #[test]
    fn a_notification_lists_its_alerts_by_status_sorted_once_each() {
        let n = payload(&[("B", "firing"), ("A", "firing"), ("C", "resolved"), ("A", "firing")]);
        assert_eq!(firing(&n), ["A", "B"]);
        assert_eq!(alerts_in(&n, "resolved"), ["C"]);
        assert_eq!(describe(&n), "firing: A, B; resolved: C");
        assert_eq!(describe(&payload(&[("C", "resolved")])), "resolved: C");
        assert_eq!(describe(&json!({"alerts": []})), "");
        // Not Alertmanager's shape: nothing in it, no panic.
        assert!(firing(&json!({"alerts": "none"})).is_empty());
        assert!(firing(&json!([{"labels": {}}])).is_empty());
    }

    #[test]
    fn the_first_page_is_the_first_expected_alert_firing_since_the_onset() {
        let received = vec![
            at(99.0, "page", &[("Expected", "firing")]),
            at(101.0, "ticket", &[("Other", "firing")]),
            at(102.0, "ticket", &[("Expected", "resolved")]),
            at(103.0, "ticket", &[("Also", "firing"), ("Expected", "firing")]),
            at(104.0, "page", &[("Expected", "firing")]),
        ];
        let expect = ["Expected", "Also"];
        // Sorted names: "Also" comes first within the one notification.
        assert_eq!(first_page(&received, &expect, 100.0), Some((103.0, "Also".into(), "ticket".into())));
        assert_eq!(first_page(&received, &expect, 99.0), Some((99.0, "Expected".into(), "page".into())));
        assert_eq!(first_page(&received, &["Absent"], 0.0), None);
        assert_eq!(first_page(&received, &expect, 105.0), None);
    }

    #[test]
    fn the_notifications_since_the_onset_in_drill_time() {
        let received = vec![
            at(999.0, "page", &[("Early", "firing")]),
            at(1_003.5, "ticket", &[("B", "firing"), ("A", "resolved")]),
        ];
        assert_eq!(since(&received, 1_000.0, 10.0), [(13.5, "ticket".to_owned(), "firing: B; resolved: A".to_owned())]);
    }

    #[test]
    fn notified_checks_the_alert_the_receiver_and_the_time() {
        let received = vec![at(50.0, "page", &[("Burn", "firing")]), at(60.0, "ticket", &[("Queue", "firing")])];
        assert!(notified(&received, "Burn", Some("page"), 50.0));
        assert!(!notified(&received, "Burn", Some("page"), 50.1), "before the onset");
        assert!(!notified(&received, "Queue", Some("page"), 0.0), "a ticket is no page");
        assert!(notified(&received, "Queue", None, 0.0));
        let resolved = vec![at(70.0, "page", &[("Burn", "resolved")])];
        assert!(!notified(&resolved, "Burn", None, 0.0), "a resolution is no alert");
    }
}
