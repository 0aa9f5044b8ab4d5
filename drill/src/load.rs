//! The drills' traffic, from `switchyard_load`'s open-loop generator: requests leave on their
//! schedule whatever the stack does, and each one's latency counts from its intended send
//! time, so a request held up behind a stalled one shows the wait (no coordinated omission).
//! This module only builds the plan (mlp rows, some columns shifted for the drift drills, an
//! OIP deadline for the deadline drill) and turns the generator's per-request outcomes into
//! the drill's records.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use switchyard_load::payload::{Body, Mix};
use switchyard_load::run::{self, Outcome, Plan, PlanPhase, Tap};
use switchyard_load::scenario::Load as Shape;
use switchyard_load::schedule::Segment;
use switchyard_testkit::stack::{mlp_row, mlp_row_request};

use crate::types::Rec;

/// Why the traffic could not run.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot start the traffic: {0}")]
    Start(String),
    #[error("the traffic to {addr} failed: {message}")]
    Run { addr: String, message: String },
    #[error("the traffic's thread panicked")]
    Panicked,
}

/// The answering version, as the filter tells it.
const VERSION_HEADER: &str = "x-switchyard-version";

/// Longer than any drill: the traffic runs until it is stopped.
const RUN_FOR: Duration = Duration::from_secs(3600);

/// As the test kit's client: a request still unanswered after this counts as unanswered.
const TIMEOUT: Duration = Duration::from_secs(120);

/// Different rows per traffic source, so that the drift monitor sees a distribution.
const ROWS: usize = 2048;

/// One traffic source: open-loop requests at a constant rate to mlp through Envoy, on the
/// generator's own thread, until [`Load::stop`] or [`Load::finish`].
pub struct Load {
    tap: Tap,
    thread: Option<JoinHandle<Result<(), LoadError>>>,
}

/// What a traffic source sends.
pub struct Traffic {
    /// Requests per second.
    pub rate: f64,
    /// At most this many requests in flight (a client's workers); `None`: as many as the
    /// schedule needs (many independent clients).
    pub connections: Option<usize>,
    /// How many of the rows' 64 columns are shifted (the drift drills; 0: none).
    pub shifted: usize,
    /// Each request's OIP `timeout` parameter (the backend's default when `None`).
    pub deadline_us: Option<u64>,
    /// Which of the rows each request picks.
    pub seed: u64,
}

impl Load {
    /// Starts sending to `listen` (Envoy's listener).
    pub fn start(listen: &str, traffic: &Traffic) -> Result<Load, LoadError> {
        let tap = Tap::keeping(VERSION_HEADER).map_err(|e| LoadError::Start(format!("{e:#}")))?;
        let phase = PlanPhase {
            name: "traffic".into(),
            duration: RUN_FOR,
            load: Shape::Open(vec![Segment::constant(traffic.rate, RUN_FOR.as_secs_f64())]),
            mix: Mix::of(bodies(traffic.shifted, traffic.deadline_us)),
            headers: Vec::new(),
        };
        let mut plan = Plan::phases(listen, "/v2/models/mlp/infer", true, vec![phase]);
        plan.timeout = TIMEOUT;
        plan.seed = traffic.seed;
        if let Some(n) = traffic.connections {
            plan.max_connections = n;
        }
        plan.tap = Some(tap.clone());
        // The generator's requests share one thread by design.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| LoadError::Start(format!("runtime: {e}")))?;
        let addr = listen.to_owned();
        let thread = std::thread::Builder::new()
            .name("drill-traffic".into())
            .spawn(move || {
                runtime
                    .block_on(run::execute(plan))
                    .map(drop)
                    .map_err(|e| LoadError::Run { addr, message: format!("{e:#}") })
            })
            .map_err(|e| LoadError::Start(format!("thread: {e}")))?;
        Ok(Load { tap, thread: Some(thread) })
    }

    /// No request is sent after this; those in flight finish and are counted.
    pub fn stop(&self) {
        self.tap.stop();
    }

    /// Stops the traffic, waits for the requests in flight, and returns every request sent,
    /// with `started` as drill time 0.
    pub fn finish(mut self, started: Instant) -> Result<Vec<Rec>, LoadError> {
        self.tap.stop();
        if let Some(thread) = self.thread.take() {
            thread.join().map_err(|_| LoadError::Panicked)??;
        }
        Ok(records(self.tap.start(), &self.tap.take(), started))
    }
}

impl Drop for Load {
    /// A drill that fails half-way leaves no traffic running.
    fn drop(&mut self) {
        self.tap.stop();
    }
}

/// The generator's outcomes as drill records, sorted by intended send time: drill time counts
/// from `started`, the run's offsets from `run_start`.
fn records(run_start: Option<Instant>, outcomes: &[Outcome], started: Instant) -> Vec<Rec> {
    let offset = run_start.map_or(0.0, |s| match s.checked_duration_since(started) {
        Some(d) => d.as_secs_f64(),
        None => -started.duration_since(s).as_secs_f64(),
    });
    let mut records: Vec<Rec> = outcomes
        .iter()
        .map(|o| Rec {
            t: offset + o.intended.as_secs_f64(),
            status: o.result.unwrap_or(0),
            latency_ms: o.done.saturating_sub(o.intended).as_secs_f64() * 1e3,
            version: o.header.clone().unwrap_or_default(),
        })
        .collect();
    records.sort_by(|a, b| a.t.total_cmp(&b.t));
    records
}

/// The bodies a traffic source picks from: [`ROWS`] of the test kit's mlp rows.
fn bodies(shifted: usize, deadline_us: Option<u64>) -> Vec<Body> {
    (0..ROWS)
        .map(|seed| Body { bytes: infer_body(seed, shifted, deadline_us).into(), header_len: None, rows: 1 })
        .collect()
}

/// The mlp input of `seed`: the test kit's rows, with the first `shifted` columns moved by
/// three of their standard deviations and stretched, as a changed upstream feature pipeline
/// would; with an OIP `timeout` parameter when `deadline_us` is set.
fn infer_body(seed: usize, shifted: usize, deadline_us: Option<u64>) -> Vec<u8> {
    let mut row = mlp_row(seed);
    for x in row.iter_mut().take(shifted) {
        *x = 2.0 + 2.0 * *x;
    }
    let mut body = mlp_row_request(&row);
    if let Some(us) = deadline_us {
        body["parameters"] = serde_json::json!({"timeout": us});
    }
    body.to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use switchyard_load::run::Cause;

    use super::*;

    fn outcome(
        intended_ms: u64,
        sent_ms: u64,
        done_ms: u64,
        result: Result<u16, Cause>,
        version: Option<&str>,
    ) -> Outcome {
        let ms = Duration::from_millis;
        Outcome {
            phase: 0,
            intended: ms(intended_ms),
            sent: Some(ms(sent_ms)),
            done: ms(done_ms),
            result,
            rows: 1,
            header: version.map(str::to_owned),
        }
    }

    #[test]
    fn records_count_latency_from_the_intended_time_in_drill_time() {
        let started = Instant::now();
        let run_start = started + Duration::from_secs(2);
        let outcomes = [
            // Finished first, intended later.
            outcome(1_000, 1_000, 1_004, Ok(200), Some("v1")),
            // Waited 300 ms to leave behind a stalled request, then took 5 ms: 305 ms.
            outcome(500, 800, 805, Ok(200), Some("v2")),
            outcome(1_500, 1_500, 1_520, Ok(503), None),
            outcome(1_600, 1_600, 3_600, Err(Cause::Timeout), None),
        ];
        let r = records(Some(run_start), &outcomes, started);
        let got: Vec<(f64, u16, f64, &str)> =
            r.iter().map(|r| (r.t, r.status, r.latency_ms, r.version.as_str())).collect();
        let want = [(2.5, 200, 305.0, "v2"), (3.0, 200, 4.0, "v1"), (3.5, 503, 20.0, ""), (3.6, 0, 2_000.0, "")];
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert!((g.0 - w.0).abs() < 1e-9 && g.1 == w.1 && (g.2 - w.2).abs() < 1e-9 && g.3 == w.3, "{got:?}");
        }
        assert!(r[3].failed() && r[2].failed() && r[0].bad(100) && !r[1].bad(100));
    }

    #[test]
    fn a_run_started_before_the_drill_clock_counts_back() {
        let run_start = Instant::now();
        let started = run_start + Duration::from_millis(250);
        let r = records(Some(run_start), &[outcome(0, 0, 1, Ok(200), None)], started);
        assert!((r[0].t + 0.25).abs() < 1e-9, "{r:?}");
    }

    fn row_of(body: &[u8]) -> (Vec<f64>, serde_json::Value) {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        let row = serde_json::from_value(v["inputs"][0]["data"].clone()).unwrap();
        (row, v["parameters"].clone())
    }

    #[test]
    fn shifted_bodies_move_only_the_first_columns_and_carry_the_deadline() {
        let (plain, none) = row_of(&infer_body(7, 0, None));
        let (shifted, deadline) = row_of(&infer_body(7, 4, Some(20_000)));
        assert_eq!(plain, mlp_row(7));
        assert_eq!(plain.len(), 64);
        for (j, (p, s)) in plain.iter().zip(&shifted).enumerate() {
            let want = if j < 4 { 2.0 + 2.0 * p } else { *p };
            assert!((s - want).abs() < 1e-12, "column {j}: {s} for {p}");
        }
        assert!(none.is_null());
        assert_eq!(deadline, serde_json::json!({"timeout": 20_000}));
        let pool = bodies(64, None);
        assert_eq!(pool.len(), ROWS);
        assert_ne!(pool[0].bytes, pool[1].bytes, "rows differ");
    }
}
