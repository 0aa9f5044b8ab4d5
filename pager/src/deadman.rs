//! The dead man's switch, as kube-prometheus arranges it: Prometheus fires `Watchdog` always,
//! Alertmanager sends it to its own receiver every repeat interval, and the pager raises a page
//! of its own when it stops. Two ways it stops: Alertmanager (or the way from it to the pager)
//! is gone, and nothing arrives; or Prometheus is gone, the alert's `endsAt` passes, and
//! Alertmanager sends the Watchdog *resolved*. A pure state machine over Unix seconds.

use std::time::Duration;

/// Why alerting is taken to be down.
#[derive(Debug, Clone, PartialEq)]
pub enum Why {
    /// Nothing from Alertmanager since `last` (Unix seconds; the pager's start when none came).
    Silent { last: f64 },
    /// Alertmanager resolved the Watchdog: Prometheus stopped sending it.
    Resolved,
}

/// A change the pager announces.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Raised(Why),
    Cleared,
}

#[derive(Debug, Clone)]
pub struct Deadman {
    timeout: Duration,
    /// The last Watchdog firing, or the start: armed from the start, so alerting that never
    /// came up is caught too.
    last: f64,
    heard: bool,
    down: Option<(f64, Why)>,
}

impl Deadman {
    pub fn new(timeout: Duration, started: f64) -> Deadman {
        Deadman { timeout, last: started, heard: false, down: None }
    }

    /// A Watchdog notification: `firing` is a heartbeat (clearing an incident); resolved
    /// means Prometheus stopped sending it.
    pub fn watchdog(&mut self, now: f64, firing: bool) -> Option<Change> {
        if firing {
            self.last = now;
            self.heard = true;
            return self.down.take().map(|_| Change::Cleared);
        }
        self.raise(now, Why::Resolved)
    }

    /// The clock: raises the incident when nothing came for longer than the timeout.
    pub fn tick(&mut self, now: f64) -> Option<Change> {
        if now - self.last > self.timeout.as_secs_f64() {
            return self.raise(now, Why::Silent { last: self.last });
        }
        None
    }

    fn raise(&mut self, now: f64, why: Why) -> Option<Change> {
        if self.down.is_some() {
            return None;
        }
        self.down = Some((now, why.clone()));
        Some(Change::Raised(why))
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether any Watchdog arrived yet.
    pub fn heard(&self) -> bool {
        self.heard
    }

    pub fn last(&self) -> f64 {
        self.last
    }

    /// Since when, and why, alerting is down.
    pub fn down(&self) -> Option<&(f64, Why)> {
        self.down.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_past_the_timeout_raises_once_and_a_heartbeat_clears() {
        let mut d = Deadman::new(Duration::from_secs(5), 100.0);
        assert_eq!(d.tick(104.0), None, "armed from the start, within the timeout");
        assert_eq!(d.watchdog(104.0, true), None);
        assert_eq!(d.tick(109.0), None);
        assert_eq!(d.tick(109.5), Some(Change::Raised(Why::Silent { last: 104.0 })));
        assert_eq!(d.tick(200.0), None, "raised once");
        assert_eq!(d.watchdog(201.0, true), Some(Change::Cleared));
        assert_eq!(d.tick(203.0), None);
    }

    #[test]
    fn a_resolved_watchdog_raises_at_once_and_alerting_that_never_came_up_is_caught() {
        let mut d = Deadman::new(Duration::from_secs(60), 0.0);
        d.watchdog(1.0, true);
        assert_eq!(d.watchdog(2.0, false), Some(Change::Raised(Why::Resolved)));
        assert_eq!(d.down().map(|(at, _)| *at), Some(2.0));
        assert_eq!(d.watchdog(3.0, false), None);
        let mut never = Deadman::new(Duration::from_secs(60), 0.0);
        assert_eq!(never.tick(61.0), Some(Change::Raised(Why::Silent { last: 0.0 })));
        assert!(!never.heard());
    }
}
