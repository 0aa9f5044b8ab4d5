//! The command line (the binary's module, not the library's): flags, environment variables,
//! defaults and help text, turned into the library's plain option structs. The library never
//! sees clap, so its commands can be called with options built any other way (tests, tools).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use switchyard_backend::admission::{self, LimitOptions};
use switchyard_backend::bench::{BenchOptions, CodecOptions};
use switchyard_backend::config::{self, VersionChoice};
use switchyard_backend::offline::{BatchOptions, MergeOptions, Shard};
use switchyard_contract::process::backend;

/// Open Inference Protocol (KServe V2) server with dynamic batching on libtorch.
#[derive(Parser)]
#[command(name = "switchyard-backend", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Serve every model of a repository over HTTP and gRPC.
    Serve(ServeArgs),
    /// Validate a model repository and exit (non-zero on any problem).
    Check(RepoArgs),
    /// Offline inference over a JSONL file, resumable.
    Batch(BatchArgs),
    /// Interleave the outputs of `batch --shard I/N` back into one output in input order.
    MergeShards(MergeArgs),
    /// Raw libtorch forward throughput per batch size, no server (the serving ceiling).
    BenchEngine(BenchArgs),
    /// JSON decode and encode throughput of a ResNet-18 sized tensor, no model.
    BenchCodec(CodecArgs),
}

#[derive(Args)]
pub struct RepoArgs {
    /// Model repository: <repo>/<model>/<version>/{model.pt, config.json}.
    #[arg(long, env = "SWITCHYARD_MODEL_REPOSITORY")]
    pub model_repository: PathBuf,
    /// Serve only these models or model:version pairs (comma-separated; default all).
    #[arg(long, env = "SWITCHYARD_MODELS", value_delimiter = ',')]
    pub models: Vec<String>,
}

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Inference listener (Open Inference Protocol).
    #[arg(long = backend::HTTP.long(), env = backend::HTTP.env, default_value = backend::HTTP.default)]
    pub http_addr: SocketAddr,
    /// gRPC inference listener (inference.GRPCInferenceService).
    #[arg(long = backend::GRPC.long(), env = backend::GRPC.env, default_value = backend::GRPC.default)]
    pub grpc_addr: SocketAddr,
    /// Admin listener: /metrics, /health/live, /health/ready.
    #[arg(long = backend::ADMIN.long(), env = backend::ADMIN.env, default_value = backend::ADMIN.default)]
    pub admin_addr: SocketAddr,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// After SIGTERM, how long queued and in-flight requests have to finish.
    #[arg(long = &backend::SHUTDOWN_GRACE_FLAG[2..], env = backend::SHUTDOWN_GRACE_ENV, default_value_t = backend::SHUTDOWN_GRACE_SECONDS)]
    pub shutdown_grace_seconds: u64,
    /// Run every served version on this device (auto, cpu, cuda, cuda:N), whatever its config
    /// says: a GPU deployment sets `cuda`, so a pod without a usable GPU never becomes ready
    /// instead of computing on the CPU.
    #[arg(long, env = "SWITCHYARD_DEVICE", value_parser = config::DeviceSpec::parse)]
    pub device: Option<config::DeviceSpec>,
    #[command(flatten)]
    pub tls: switchyard_tls::TlsArgs,
}

impl ServeArgs {
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_seconds)
    }
}

/// The server's request limits, as flags.
#[derive(Args)]
pub struct LimitArgs {
    /// Request bodies above this get 413.
    #[arg(long, env = "SWITCHYARD_MAX_BODY_BYTES", default_value_t = admission::DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,
    /// Body bytes admitted at once (declared lengths; a body without one counts as
    /// --max-body-bytes). Beyond it requests get 429 before their body is read. Default: 4 ×
    /// --max-body-bytes; at least --max-body-bytes.
    #[arg(long, env = "SWITCHYARD_MAX_INFLIGHT_BYTES")]
    max_inflight_bytes: Option<usize>,
    /// Inference requests admitted at once; beyond it requests get 429.
    #[arg(long, env = "SWITCHYARD_MAX_INFLIGHT_REQUESTS", default_value_t = admission::DEFAULT_MAX_INFLIGHT_REQUESTS)]
    max_inflight_requests: usize,
    /// Bodies not received within this get 408.
    #[arg(long, env = "SWITCHYARD_BODY_READ_TIMEOUT_SECONDS", default_value_t = admission::DEFAULT_BODY_READ_TIMEOUT_SECONDS)]
    body_read_timeout_seconds: u64,
    /// Large bodies decoded at once on the blocking pool. Default: the number of CPUs.
    #[arg(long, env = "SWITCHYARD_MAX_CONCURRENT_DECODES")]
    max_concurrent_decodes: Option<usize>,
}

impl From<&LimitArgs> for LimitOptions {
    fn from(a: &LimitArgs) -> Self {
        LimitOptions {
            max_body_bytes: a.max_body_bytes,
            max_inflight_bytes: a.max_inflight_bytes,
            max_inflight_requests: a.max_inflight_requests,
            body_read_timeout_seconds: a.body_read_timeout_seconds,
            max_concurrent_decodes: a.max_concurrent_decodes,
        }
    }
}

/// Which model version an offline command (`batch`, `bench-engine`) runs.
#[derive(Args)]
pub struct VersionArgs {
    #[arg(long, env = "SWITCHYARD_MODEL_REPOSITORY")]
    model_repository: PathBuf,
    #[arg(long)]
    model: String,
    /// Default: the newest version.
    #[arg(long)]
    version: Option<String>,
}

impl From<VersionArgs> for VersionChoice {
    fn from(a: VersionArgs) -> Self {
        VersionChoice { model_repository: a.model_repository, model: a.model, version: a.version }
    }
}

#[derive(Args)]
pub struct BatchArgs {
    #[command(flatten)]
    target: VersionArgs,
    /// JSONL of V2 requests, or of rows for a single-input model.
    #[arg(long)]
    input: PathBuf,
    /// JSONL of V2 responses, one per input line, in input order.
    #[arg(long)]
    output: PathBuf,
    /// Rows per batch (default and maximum: the model's max_batch_size).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Discard existing output (whatever job it belongs to) and start from the first line.
    #[arg(long)]
    restart: bool,
    /// Run only shard I of N (from 0): input lines I+1, I+1+N, I+1+2N, … The output holds
    /// just those lines' results, in order.
    #[arg(long, env = "SWITCHYARD_SHARD", value_parser = Shard::parse, default_value = "0/1")]
    shard: Shard,
}

impl From<BatchArgs> for BatchOptions {
    fn from(a: BatchArgs) -> Self {
        BatchOptions {
            target: a.target.into(),
            input: a.input,
            output: a.output,
            batch_size: a.batch_size,
            restart: a.restart,
            shard: a.shard,
        }
    }
}

#[derive(Args)]
pub struct MergeArgs {
    /// Every shard's output (`batch --shard I/N --output PART`), in any order; each one's
    /// `PART.job.json` says which shard it is.
    #[arg(required = true)]
    parts: Vec<PathBuf>,
    /// The merged output: one line per input line, in input order, as a whole run writes it
    /// (with its job record, so `batch` on the whole input sees it as done).
    #[arg(long)]
    output: PathBuf,
}

impl From<MergeArgs> for MergeOptions {
    fn from(a: MergeArgs) -> Self {
        MergeOptions { parts: a.parts, output: a.output }
    }
}

#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    target: VersionArgs,
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,16,32,64")]
    batch_sizes: Vec<usize>,
    /// Time spent measuring each batch size.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    #[arg(long, default_value_t = 5)]
    min_iterations: usize,
    /// Override the config's device (auto, cpu, cuda:N).
    #[arg(long)]
    device: Option<String>,
}

impl From<BenchArgs> for BenchOptions {
    fn from(a: BenchArgs) -> Self {
        BenchOptions {
            target: a.target.into(),
            batch_sizes: a.batch_sizes,
            seconds: a.seconds,
            min_iterations: a.min_iterations,
            device: a.device,
        }
    }
}

#[derive(Args)]
pub struct CodecArgs {
    /// Times each of decode and encode runs (after one untimed run of each).
    #[arg(long, default_value_t = 50)]
    iterations: usize,
    /// Decimals of each generated value in the request (`0.123456789` at 9).
    #[arg(long, default_value_t = 9)]
    decimals: usize,
    /// Decode this request body instead (e.g. one `switchyard-load` sends; its input must be a
    /// `[1,3,224,224]` FP32 named `image`).
    #[arg(long)]
    body: Option<PathBuf>,
}

impl From<CodecArgs> for CodecOptions {
    fn from(a: CodecArgs) -> Self {
        CodecOptions { iterations: a.iterations, decimals: a.decimals, body: a.body }
    }
}
