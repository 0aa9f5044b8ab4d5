//! Switchyard's load generator for Open Inference Protocol servers, as a library (the
//! `switchyard-load` binary, the benchmark suite and the tests drive it): requests leave on
//! schedule and latency is measured from each request's intended send time.
//!
//! Modules, in dependency order (none imports one below it): `schedule` (arrival times),
//! `scenario` (scenario files, validated), `http` (connections), `metadata` (a model's
//! inputs), `payload` (request bodies and header distributions), `report` (figures and the
//! summary), `run` (the generator), `plot` (SVG charts), `metrics` (Prometheus text around a
//! run).

pub mod http;
pub mod metadata;
pub mod metrics;
pub mod payload;
pub mod plot;
pub mod report;
pub mod run;
pub mod scenario;
pub mod schedule;

/// Runs a command-line program's work on a current-thread runtime (the generator's requests
/// share one thread by design): exit status 0, or 1 with the error and its causes.
pub fn exit_code_of(work: impl std::future::Future<Output = anyhow::Result<()>>) -> std::process::ExitCode {
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the runtime: {e}"))
        .and_then(|rt| rt.block_on(work));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
