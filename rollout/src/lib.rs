//! Switchyard's rollout controller as a library: the spec, the tests the canary is judged by,
//! the state machine and the durable store; the traffic a state asks for (`traffic`), where it
//! is put in force (`apply`), what the controller observes (`observe`), the commands
//! (`command`), the controller's loop (`controller`), its metrics and its admin listener with
//! the console (`admin`). The binary (`switchyard-rollout`) parses arguments and dispatches.

/// `println!` panics when the reader of stdout has gone (`status --json | grep -q`);
/// a closed pipe only means nobody wants the rest, so the line is dropped.
#[macro_export]
macro_rules! say_line {
    ($($arg:tt)*) => {
        $crate::print_line(format_args!($($arg)*))
    };
}

pub mod admin;
pub mod apply;
pub mod command;
pub mod console;
pub mod controller;
pub mod error;
pub mod judge;
pub mod metrics;
pub mod observe;
pub mod spec;
pub mod stats;
pub mod store;
pub mod traffic;
pub mod view;

pub use error::Error;

/// Writes one line to stdout, as [`say_line!`] does.
#[doc(hidden)]
pub fn print_line(line: std::fmt::Arguments) {
    use std::io::Write;
    if let Err(e) = writeln!(std::io::stdout().lock(), "{line}")
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("switchyard-rollout: writing to stdout: {e}");
    }
}
