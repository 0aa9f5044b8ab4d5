//! The demo's command line: the flags scripts/demo.sh passes through, and the timings it hands
//! over in the environment.

use clap::Parser;

#[derive(Parser)]
#[command(name = "switchyard-demo", about = "The local demo stack (scripts/demo.sh builds and runs it)")]
pub struct Cli {
    /// The same steps with shorter traffic phases (what CI runs).
    #[arg(long)]
    pub quick: bool,
    /// Leave the stack running until Ctrl-C.
    #[arg(long)]
    pub stay: bool,
    /// Seconds scripts/demo.sh spent on set-up before starting this program, for the timings.
    #[arg(long, env = "SWITCHYARD_DEMO_SETUP_SECONDS", default_value_t = 0, hide = true)]
    pub setup_seconds: u64,
    /// Seconds it spent on set-up and build together.
    #[arg(long, env = "SWITCHYARD_DEMO_BUILD_SECONDS", default_value_t = 0, hide = true)]
    pub build_seconds: u64,
}
