//! `switchyard-monitor`: drift with Evidently's statistics, as a batch comparison of two files
//! (`compare`) or a streaming monitor over the collector's samples (`watch`). docs/drift.md.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use switchyard_drift::Summary;
use switchyard_monitor::drift::config::{Config, DEFAULT_MIN_ROWS};
use switchyard_monitor::drift::evaluate::{Reference, evaluate, summarise};
use switchyard_monitor::drift::options::Options;
use switchyard_monitor::drift::report;
use switchyard_monitor::drift::table::{Reader, Record, Table};
use switchyard_monitor::drift::watch;

#[derive(Parser)]
#[command(name = "switchyard-monitor", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compare a current dataset with a reference, column by column (Evidently's tests and
    /// defaults), and print the result.
    Compare(CompareArgs),
    /// Follow the collector's samples file and export drift per model, version and window.
    Watch(Options),
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
    Html,
}

#[derive(clap::Args)]
struct CompareArgs {
    /// JSONL: samples, V2 requests, row arrays or named-column objects.
    #[arg(long)]
    reference: PathBuf,
    /// JSONL, as the reference.
    #[arg(long)]
    current: PathBuf,
    /// JSON config: `{"columns": {"NAME": "numerical" | "categorical"}, "tests": {...}}`.
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Write the result here instead of stdout.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Only samples of this model (in a samples file).
    #[arg(long)]
    model: Option<String>,
    /// Only reference samples of this version.
    #[arg(long)]
    reference_version: Option<String>,
    /// Only current samples of this version.
    #[arg(long)]
    current_version: Option<String>,
    /// Exit with status 3 when the dataset drifts (for pipelines).
    #[arg(long)]
    fail_on_drift: bool,
    /// Values a column needs in the current data to be judged; with fewer it is "not enough
    /// data", never drift.
    #[arg(long, default_value_t = DEFAULT_MIN_ROWS)]
    min_rows: usize,
}

fn main() -> ExitCode {
    switchyard_runtime::init_tracing();
    let result = match Cli::parse().command {
        Command::Compare(args) => compare(&args),
        Command::Watch(options) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(watch::run(options)))
            .map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn compare(args: &CompareArgs) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    anyhow::ensure!(args.min_rows > 0, "--min-rows must be at least 1");
    let config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            Config::parse(&text).map_err(|p| anyhow::anyhow!("{}:\n  {}", path.display(), p.join("\n  ")))?
        }
        None => Config::parse("{}").map_err(|p| anyhow::anyhow!(p.join("; ")))?,
    };
    let rules = &config.rules;
    let read = |path: &PathBuf, version: &Option<String>, what: &str| -> anyhow::Result<Table> {
        let mut reader = Reader::new(rules.names.clone(), rules.max_tensor_columns());
        let keep = |r: &Record| {
            args.model.as_ref().is_none_or(|m| r.model.as_ref() == Some(m))
                && version.as_ref().is_none_or(|v| r.version.as_ref() == Some(v))
        };
        let (table, skipped) = Table::read(path, &mut reader, keep)
            .with_context(|| format!("cannot read the {what} {}", path.display()))?;
        if !skipped.is_empty() {
            let list: Vec<String> = skipped.iter().map(|(k, v)| format!("{v} {k}")).collect();
            eprintln!("{what} {}: {} rows; lines skipped: {}", path.display(), table.rows, list.join(", "));
        }
        if table.rows == 0 {
            anyhow::bail!("the {what} {} has no rows to compare", path.display());
        }
        Ok(table)
    };
    let reference_table = read(&args.reference, &args.reference_version, "reference")?;
    let current = read(&args.current, &args.current_version, "current")?;
    let reference = Reference::from_table(args.reference.display().to_string(), &reference_table, rules);
    drop(reference_table);
    // Each current column summarised once: tested, then (HTML) drawn.
    let currents: Vec<Option<Summary>> =
        reference.columns.iter().map(|c| current.get(&c.name).map(|cells| summarise(cells.iter(), c.kind))).collect();
    let by_name: HashMap<&str, &Summary> =
        reference.columns.iter().zip(&currents).filter_map(|(c, s)| Some((c.name.as_str(), s.as_ref()?))).collect();
    let evaluation = evaluate(&reference, rules, args.min_rows, |column, _| by_name.get(column).map(|s| (*s).clone()));
    if !evaluation.enough_data {
        eprintln!(
            "not enough data: the current data has {} rows, and a column needs {} to be judged (--min-rows)",
            current.rows, args.min_rows
        );
    }
    let body = match args.format {
        Format::Text => report::text(&evaluation),
        Format::Json => {
            let mut s = serde_json::to_string_pretty(&evaluation)?;
            s.push('\n');
            s
        }
        Format::Html => {
            let histograms: Vec<_> = reference
                .columns
                .iter()
                .zip(&currents)
                .zip(&evaluation.columns)
                .map(|((r, c), result)| {
                    c.as_ref()
                        .filter(|c| result.drift.is_some() && c.rows() > 0)
                        .map(|c| report::histogram(&r.summary, c))
                })
                .collect();
            let title = format!("Drift: {} vs {}", args.current.display(), args.reference.display());
            report::html(&evaluation, &title, &histograms)?
        }
    };
    match &args.output {
        Some(path) => std::fs::write(path, body).with_context(|| format!("cannot write {}", path.display()))?,
        None => print!("{body}"),
    }
    Ok(if args.fail_on_drift && evaluation.dataset.drifted { ExitCode::from(3) } else { ExitCode::SUCCESS })
}
