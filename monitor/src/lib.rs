//! Switchyard's monitoring side: the sample collector ([`collector`]), which also judges the
//! filter's shadow comparisons ([`compare`]), and the drift monitor ([`drift`]) that reads what
//! it stores.

pub mod collector;
pub mod compare;
pub mod drift;

/// Logs to stderr (stdout carries the one address line that harnesses read), `RUST_LOG` or
/// `info`; shared by the monitor crate's binaries.
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
