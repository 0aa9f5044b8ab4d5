//! `switchyard-demo`: the local demo, which `scripts/demo.sh` sets up, builds and runs (see its
//! header). It starts the stack on the test kit (`switchyard_testkit`) on the demo's fixed
//! loopback ports, drives traffic with the load generator's library, rolls a canary out with
//! the `switchyard-rollout` binary, and prints what came back; everything it started is
//! stopped when it ends, fails or is interrupted.

mod cli;
mod demo;
mod load;
mod readout;
mod steps;

use std::panic::AssertUnwindSafe;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    steps::watch_signals();
    // A panic (the test kit's way to fail) unwinds through `run` too, so that what it
    // started is dropped, that is stopped, before the failure is reported.
    steps::report(std::panic::catch_unwind(AssertUnwindSafe(|| demo::run(&cli))))
}
