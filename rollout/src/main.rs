//! `switchyard-rollout`: runs a rollout spec against the local data plane.
//!
//! `start` records the rollout; `run` is the controller, which every second reads the filter's
//! metrics from Envoy's admin endpoint, judges the canary, and puts the traffic the state asks
//! for in force through the filter's ECDS file. Every command takes the state directory's lock,
//! acts and returns at once; `promote` and `abort` change traffic themselves, so they work
//! with no controller running. The library (`switchyard_rollout`) does all of it: this parses
//! the arguments, dispatches, and turns an error into a message and an exit status.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use switchyard_rollout::admin::AdminArgs;
use switchyard_rollout::command::{command, reset_guard, start, status};
use switchyard_rollout::controller::run;
use switchyard_rollout::judge::State;
use switchyard_rollout::say_line;
use switchyard_rollout::store::Target;
use switchyard_runtime::now_ms;

#[derive(Parser)]
#[command(name = "switchyard-rollout", version, about)]
struct Cli {
    /// Where the rollout's state, events and lock live.
    #[arg(long, global = true, env = "SWITCHYARD_ROLLOUT_DIR", default_value = ".rollout")]
    state_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validates SPEC against the policy in force and records the rollout (the controller, `run`,
    /// carries it out).
    Start {
        spec: PathBuf,
        /// The policy file the rollout edits (envoy/policy.json in the demo).
        #[arg(long)]
        policy: PathBuf,
        /// The running Envoy's rendered bootstrap (its filter.yaml is beside it).
        #[arg(long)]
        bootstrap: PathBuf,
        #[arg(long, default_value = "target/wasm32-wasip1/wasm-release/switchyard_filter.wasm")]
        wasm: PathBuf,
        /// Envoy's admin listener, read for the filter's metrics (in a cluster: Prometheus).
        #[arg(long, env = "SWITCHYARD_ENVOY_ADMIN", default_value = "127.0.0.1:9901")]
        envoy_admin: String,
        /// The path read there (in a cluster: Prometheus's `/federate` with a URL-encoded
        /// `match[]` for the gateway's job; k8s/README.md).
        #[arg(long, env = "SWITCHYARD_METRICS_PATH", default_value = "/stats/prometheus")]
        metrics_path: String,
        /// The collector (HOST:PORT), read for shadow comparisons: needed by steps with
        /// `max_disagreement`.
        #[arg(long, env = "SWITCHYARD_COLLECTOR")]
        collector: Option<String>,
    },
    /// The controller: judges and acts every `--interval` until the rollout ends; with
    /// `--admin-addr` it serves the console, its API and its metrics.
    Run {
        #[arg(long, default_value = "1s")]
        interval: String,
        /// Keep running after the rollout ends (serving the console, picking up the next `start`).
        #[arg(long)]
        keep_running: bool,
        #[command(flatten)]
        admin: Box<AdminArgs>,
    },
    /// Where the rollout is.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Stops judging and advancing; traffic stays as it is.
    Pause,
    /// Runs a paused or holding rollout again (past a hold point: on to the next step).
    Resume,
    /// The canary takes all traffic, now.
    Promote,
    /// The canary gets no traffic, now.
    Abort {
        #[arg(long, default_value = "no reason given")]
        reason: String,
    },
    /// Clears the data-plane guard's latch for the rollout's model (a new `guard.epoch`).
    ResetGuard,
}

fn failed(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("switchyard-rollout: {e}");
    ExitCode::FAILURE
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let dir = cli.state_dir.as_path();
    let said = |said: String| say_line!("{said}");
    let result = match cli.command {
        Command::Start { spec, policy, bootstrap, wasm, envoy_admin, metrics_path, collector } => {
            let target =
                Target { policy: Some(policy), bootstrap: Some(bootstrap), wasm, envoy_admin, metrics_path, collector };
            start(dir, &spec, target).await
        }
        Command::Run { interval, keep_running, admin } => run(dir, &interval, keep_running, *admin).await,
        Command::Status { json } => status(dir, json),
        Command::Pause => command(dir, State::pause, "pause", None).await.map(said),
        Command::Resume => command(dir, |s| s.resume(now_ms()), "resume", None).await.map(said),
        Command::Promote => command(dir, State::promote, "promote", None).await.map(said),
        Command::Abort { reason } => command(dir, |s| s.abort_by_hand(&reason), "abort", None).await.map(said),
        Command::ResetGuard => reset_guard(dir).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => failed(e),
    }
}
