//! Traffic through Envoy with the load generator's library, as `switchyard-load open`,
//! `closed` and `run` send it: each run on a current-thread runtime of its own (the
//! generator's design), in the foreground or on a thread beside the demo's next moves.

use std::path::Path;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use switchyard_load::report::{Report, summary};
use switchyard_load::run::{self, DEFAULT_LATE_AFTER};
use switchyard_load::scenario::{self, Load, PayloadFile, Phase, Scenario};
use switchyard_load::schedule::Segment;

use crate::steps;

/// One phase on `model`, like the command line's `open` and `closed` (no scenario file).
pub struct Traffic {
    pub model: &'static str,
    pub load: Load,
    pub seconds: u64,
    /// The binary tensor data extension instead of JSON.
    pub binary: bool,
    /// gRPC `ModelInfer` calls instead of REST.
    pub grpc: bool,
}

/// Open loop from `from` to `to` requests per second over `seconds`.
pub fn open(model: &'static str, from: f64, to: f64, seconds: u64) -> Traffic {
    let segment = Segment { seconds: seconds as f64, from, to };
    Traffic { model, load: Load::Open(vec![segment]), seconds, binary: false, grpc: false }
}

/// `clients` closed-loop clients for `seconds`.
pub fn closed(model: &'static str, clients: usize, seconds: u64) -> Traffic {
    Traffic { model, load: Load::Closed(clients), seconds, binary: false, grpc: false }
}

impl Traffic {
    /// The one-phase scenario `switchyard-load open|closed` builds from its flags.
    pub fn scenario(&self, addr: &str) -> Scenario {
        let duration = Duration::from_secs(self.seconds);
        let payload = vec![PayloadFile { weight: 1.0, rows: Some(1), binary: self.binary, replay: None }];
        Scenario {
            name: String::new(),
            description: String::new(),
            addr: Some(addr.to_owned()),
            model: Some(self.model.to_owned()),
            version: None,
            get: None,
            grpc: self.grpc,
            timeout: Duration::from_secs(30),
            max_connections: 1024,
            seed: 1,
            phases: vec![Phase {
                name: "main".into(),
                duration,
                load: self.load.clone(),
                payload,
                header: Vec::new(),
                drifted: false,
            }],
            drift: None,
        }
    }
}

/// A scenario file, as `switchyard-load run FILE` reads it.
pub fn scenario_file(path: &Path) -> anyhow::Result<Scenario> {
    Ok(scenario::load(path)?)
}

/// Runs `sc` against `addr` to its end (a progress line on a terminal with `progress`), or
/// until the demo is interrupted.
pub fn run(sc: &Scenario, addr: &str, progress: bool) -> anyhow::Result<Report> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("a runtime for the load")?;
    rt.block_on(async {
        let plan = run::prepare(sc, addr, DEFAULT_LATE_AFTER, progress).await?;
        tokio::select! {
            report = run::execute(plan) => report,
            () = until_interrupted() => Err(anyhow::anyhow!("interrupted")),
        }
    })
}

/// [`run`] on a thread of its own, for load that goes on while the demo acts.
pub fn spawn(sc: Scenario, addr: &'static str) -> JoinHandle<anyhow::Result<Report>> {
    std::thread::spawn(move || run(&sc, addr, false))
}

/// The background run's report.
pub fn join(handle: JoinHandle<anyhow::Result<Report>>) -> anyhow::Result<Report> {
    handle.join().map_err(|_| anyhow::anyhow!("the load generator's thread panicked"))?
}

/// The generator's summary, as the command line prints it, each line after `indent`.
pub fn print_summary(r: &Report, indent: &str) {
    for line in summary(r).lines() {
        println!("{indent}{line}");
    }
}

async fn until_interrupted() {
    while !steps::interrupted() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
