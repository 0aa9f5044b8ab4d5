//! `switchyard-collector`: receives the payload samples the Envoy filter ships and appends them
//! to a JSONL file (see `switchyard_monitor::collector` and docs/sampling.md).

use std::process::ExitCode;

use clap::Parser;
use switchyard_monitor::collector::{self, Config};

/// Receives Switchyard's payload samples and appends each as one line to a JSONL file.
#[derive(Parser)]
#[command(name = "switchyard-collector", version, about)]
struct Cli {
    #[command(flatten)]
    config: Config,
}

fn main() -> ExitCode {
    switchyard_runtime::init_tracing();
    let cli = Cli::parse();
    if let Err(problems) = cli.config.validate() {
        for p in problems {
            eprintln!("error: {p}");
        }
        return ExitCode::FAILURE;
    }
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(collector::run(cli.config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
