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
    // stdout carries the one address line that harnesses read; logs go to stderr.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
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
