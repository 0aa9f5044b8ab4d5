//! `switchyard-bench`: the benchmark suite. Each benchmark starts what it needs (backends,
//! Envoys, the collector) through the test kit, drives it with the load generator library,
//! measures side by side in one run (these machines are noisy: the report gives ratios) and
//! rewrites its own section of `docs/benchmarks.md` with the command that reproduces it.
//! `scripts/bench.sh` builds everything and runs them. Each also writes its figures as JSON
//! beside the report (`docs/bench/<section>.json`); `capacity` reads those and writes
//! `docs/capacity.md`.

mod backend;
mod capacity;
mod cold_start;
mod common;
mod drift;
mod filter;
mod guard;
mod load;
mod peers;
mod protocols;
mod soak;
mod tls;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "switchyard-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The backend: raw engine ceiling, served throughput with batching on and off, serving
    /// overhead, memory.
    Backend(backend::BenchArgs),
    /// The filter: backend direct vs Envoy without a filter, with an empty wasm filter and
    /// with ours (latency under open-loop load, saturation, CPU and instructions per request,
    /// memory).
    Filter(filter::FilterBenchArgs),
    /// Mutual TLS from Envoy to the backend against plain, side by side (latency, saturation,
    /// Envoy CPU per request).
    Tls(tls::TlsBenchArgs),
    /// The generator against wrk on one core: closed-loop rate, open-loop schedule accuracy.
    Generator(load::GeneratorArgs),
    /// Saturation sweep per model: open-loop steps up to past the measured ceiling, with charts.
    Sweep(load::SweepArgs),
    /// Switchyard against KServe's and MLServer's Python servers on the same TorchScript
    /// models: the same cells, the same load generator, interleaved, with ratios.
    Peers(peers::PeersArgs),
    /// The data-plane guard in real Envoy: a crashing canary (time to the last client error,
    /// failed requests, guard on vs no protection) and healthy canaries under noise (false trips).
    Guard(guard::GuardArgs),
    /// REST JSON vs REST binary tensors vs gRPC on mlp and resnet18, straight to the backend
    /// and through Envoy + the filter, against the raw forward ceiling.
    Protocols(protocols::ProtocolsArgs),
    /// The drift monitor: streaming ingest rate, and evaluation of a 64-column window against
    /// a 100,000-row reference beside Evidently's DataDriftPreset on the same data.
    Drift(drift::DriftArgs),
    /// Capacity on paper (measures nothing, takes seconds): replicas per model and a simulated
    /// day of KEDA at 10× and 1,000× the demo's load, from the benchmarks' JSON, the policy, the
    /// prices and the generated ScaledObjects; writes docs/capacity.md and its charts.
    Capacity(capacity::CapacityArgs),
    /// Cold start per model version: a fresh backend spawned to ready and to its first
    /// inference, then SIGTERM, several times (also docs/bench/cold-start.json).
    ColdStart(cold_start::ColdStartArgs),
    /// The local stack for half an hour at steady load under policy churn (swaps, guard epochs,
    /// versions added and removed, restarts, canary crashes): memory, open files, shared-data
    /// keys, lost requests and samples (scripts/soak.sh).
    Soak(soak::SoakArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    switchyard_load::exit_code_of(async {
        match cli.command {
            Command::Backend(a) => backend::run(a).await,
            Command::Filter(a) => filter::run(a).await,
            Command::Tls(a) => tls::run(a).await,
            Command::Generator(a) => load::generator(a).await,
            Command::Sweep(a) => load::sweep(a).await,
            Command::Peers(a) => peers::run(a).await,
            Command::Guard(a) => guard::run(a).await,
            Command::Drift(a) => drift::run(a).await,
            Command::Protocols(a) => protocols::run(a).await,
            Command::Capacity(a) => capacity::run(&a),
            Command::ColdStart(a) => cold_start::run(&a),
            Command::Soak(a) => soak::run(a).await,
        }
    })
}
