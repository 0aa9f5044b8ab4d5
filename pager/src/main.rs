//! `switchyard-pager --listen HOST:PORT --out FILE [--watchdog-timeout 3m]`: see the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use switchyard_contract::process::pager::HTTP;

#[derive(Parser)]
#[command(
    name = "switchyard-pager",
    version,
    about = "Alertmanager's webhook receivers, and a dead man's switch on its Watchdog"
)]
struct Cli {
    #[arg(long = HTTP.long(), env = HTTP.env, default_value = HTTP.default)]
    listen: SocketAddr,
    /// Every notification is appended here, one JSON line each.
    #[arg(long)]
    out: PathBuf,
    /// With no Watchdog for this long (from the start, too), the pager pages by itself.
    /// Give it a few of Alertmanager's Watchdog repeat intervals.
    #[arg(long, default_value = "3m", value_parser = humantime::parse_duration)]
    watchdog_timeout: Duration,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.watchdog_timeout.is_zero() {
        eprintln!("switchyard-pager: --watchdog-timeout must be positive");
        return ExitCode::from(2);
    }
    let run = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(switchyard_pager::run(cli.listen, cli.out, cli.watchdog_timeout)));
    match run {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchyard-pager: {e:#}");
            ExitCode::FAILURE
        }
    }
}
