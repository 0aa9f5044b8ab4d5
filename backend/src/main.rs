use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use switchyard_backend::{admission, bench, config, offline, serve};

/// Open Inference Protocol (KServe V2) server with dynamic batching on libtorch.
#[derive(Parser)]
#[command(name = "switchyard-backend", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve every model of a repository over HTTP and gRPC.
    Serve(ServeArgs),
    /// Validate a model repository and exit (non-zero on any problem).
    Check(RepoArgs),
    /// Offline inference over a JSONL file, resumable.
    Batch(offline::BatchArgs),
    /// Interleave the outputs of `batch --shard I/N` back into one output in input order.
    MergeShards(offline::MergeArgs),
    /// Raw libtorch forward throughput per batch size, no server (the serving ceiling).
    BenchEngine(bench::BenchArgs),
    /// JSON decode and encode throughput of a ResNet-18 sized tensor, no model.
    BenchCodec(bench::CodecArgs),
}

#[derive(Args)]
struct RepoArgs {
    /// Model repository: <repo>/<model>/<version>/{model.pt, config.json}.
    #[arg(long, env = "SWITCHYARD_MODEL_REPOSITORY")]
    model_repository: PathBuf,
    /// Serve only these models or model:version pairs (comma-separated; default all).
    #[arg(long, env = "SWITCHYARD_MODELS", value_delimiter = ',')]
    models: Vec<String>,
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    repo: RepoArgs,
    /// Inference listener (Open Inference Protocol).
    #[arg(long, env = "SWITCHYARD_HTTP_ADDR", default_value = "127.0.0.1:8000")]
    http_addr: SocketAddr,
    /// gRPC inference listener (inference.GRPCInferenceService).
    #[arg(long, env = "SWITCHYARD_GRPC_ADDR", default_value = "127.0.0.1:8001")]
    grpc_addr: SocketAddr,
    /// Admin listener: /metrics, /health/live, /health/ready.
    #[arg(long, env = "SWITCHYARD_ADMIN_ADDR", default_value = "127.0.0.1:8002")]
    admin_addr: SocketAddr,
    #[command(flatten)]
    limits: admission::LimitArgs,
    /// After SIGTERM, how long queued and in-flight requests have to finish.
    #[arg(long, env = "SWITCHYARD_SHUTDOWN_GRACE_SECONDS", default_value_t = 30)]
    shutdown_grace_seconds: u64,
    /// Run every served version on this device (auto, cpu, cuda, cuda:N), whatever its config
    /// says: a GPU deployment sets `cuda`, so a pod without a usable GPU never becomes ready
    /// instead of computing on the CPU.
    #[arg(long, env = "SWITCHYARD_DEVICE", value_parser = config::DeviceSpec::parse)]
    device: Option<config::DeviceSpec>,
}

fn main() -> ExitCode {
    switchyard_runtime::init_tracing();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(&args),
        Command::Check(args) => load(&args).map(|repo| {
            for c in repo.versions() {
                println!("ok  {}:{}  ({})", c.model, c.version, c.model_file.display());
            }
        }),
        Command::Batch(args) => offline::run(&args),
        Command::MergeShards(args) => offline::merge(&args),
        Command::BenchEngine(args) => bench::run(&args),
        Command::BenchCodec(args) => bench::run_codec(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(args: &RepoArgs) -> anyhow::Result<config::Repository> {
    Ok(config::load_repository(&args.model_repository)?.select(&args.models)?)
}

fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    // Validated before any port is bound, every problem reported in one go.
    let (repo, limits) = match (load(&args.repo), args.limits.validate()) {
        (Ok(repo), Ok(limits)) => (repo, limits),
        (repo, limits) => {
            let problems: Vec<String> =
                [repo.err().map(|e| format!("{e:#}")), limits.err()].into_iter().flatten().collect();
            anyhow::bail!("{}", problems.join("\n"));
        }
    };
    serve::run(serve::ServeOptions {
        repo,
        limits,
        http_addr: args.http_addr,
        grpc_addr: args.grpc_addr,
        admin_addr: args.admin_addr,
        shutdown_grace: Duration::from_secs(args.shutdown_grace_seconds),
        device: args.device,
    })
}
