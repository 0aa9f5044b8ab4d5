//! `switchyard-demo`: the local demo, which `scripts/demo.sh` sets up, builds and runs (see its
//! header). It starts the stack on the test kit (`switchyard_testkit`) on the demo's fixed
//! loopback ports, drives traffic with the load generator's library, rolls a canary out with
//! the `switchyard-rollout` binary, and prints what came back; everything it started is
//! stopped when it ends, fails or is interrupted.

mod demo;
mod load;
mod readout;
mod steps;

use std::panic::AssertUnwindSafe;
use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(name = "switchyard-demo", about = "The local demo stack (scripts/demo.sh builds and runs it)")]
pub struct Cli {
    /// The same steps with shorter traffic phases (what CI runs).
    #[arg(long)]
    quick: bool,
    /// Leave the stack running until Ctrl-C.
    #[arg(long)]
    stay: bool,
    /// Seconds scripts/demo.sh spent on set-up before starting this program, for the timings.
    #[arg(long, env = "SWITCHYARD_DEMO_SETUP_SECONDS", default_value_t = 0, hide = true)]
    setup_seconds: u64,
    /// Seconds it spent on set-up and build together.
    #[arg(long, env = "SWITCHYARD_DEMO_BUILD_SECONDS", default_value_t = 0, hide = true)]
    build_seconds: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    steps::watch_signals();
    // A panic (the test kit's way to fail) unwinds through `run` too, so that what it
    // started is dropped, that is stopped, before the failure is reported.
    steps::report(std::panic::catch_unwind(AssertUnwindSafe(|| demo::run(&cli))))
}
