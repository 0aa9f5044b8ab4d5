//! `switchyard-backend`: parses the command line ([`cli`]) and runs the library's command.

mod cli;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command, RepoArgs, ServeArgs};
use switchyard_backend::admission::LimitOptions;
use switchyard_backend::{bench, config, offline, serve};

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
        Command::Batch(args) => offline::run(&args.into()),
        Command::MergeShards(args) => offline::merge(&args.into()),
        Command::BenchEngine(args) => bench::run(&args.into()),
        Command::BenchCodec(args) => bench::run_codec(&args.into()),
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
    let (repo, limits) = match (load(&args.repo), LimitOptions::from(&args.limits).validate()) {
        (Ok(repo), Ok(limits)) => (repo, limits),
        (repo, limits) => {
            let problems: Vec<String> = [repo.err().map(|e| format!("{e:#}")), limits.err().map(|e| e.to_string())]
                .into_iter()
                .flatten()
                .collect();
            anyhow::bail!("{}", problems.join("\n"));
        }
    };
    serve::run(serve::ServeOptions {
        repo,
        limits,
        http_addr: args.http_addr,
        grpc_addr: args.grpc_addr,
        admin_addr: args.admin_addr,
        shutdown_grace: args.shutdown_grace(),
        device: args.device,
        tls: args.tls.files(),
    })
}
