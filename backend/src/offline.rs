//! `batch`: offline inference over a JSONL file through the same engine and batch assembly as
//! the server, at full batch size.
//!
//! Each input line is a V2 request (`{"inputs": [...]}`) or, for single-input models, one row
//! as a JSON array. Each output line, in input order, is the V2 response or
//! `{"error": "...", "line": N}`. Output is flushed after every batch; a re-run with the same
//! arguments resumes after the last complete output line.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{HumanDuration, ProgressBar, ProgressStyle};
use tokio::sync::oneshot;

use crate::batcher::Pending;
use crate::config::{ModelConfig, VersionChoice};
use crate::engine::run_batch;
use crate::metrics::Metrics;
use crate::torch::TorchEngine;
use crate::v2::{self, InferRequest};

#[derive(clap::Args)]
pub struct BatchArgs {
    #[command(flatten)]
    target: VersionChoice,
    /// JSONL of V2 requests, or of rows for a single-input model.
    #[arg(long)]
    input: PathBuf,
    /// JSONL of V2 responses, one per input line, in input order.
    #[arg(long)]
    output: PathBuf,
    /// Rows per batch (default and maximum: the model's max_batch_size).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Discard existing output and start from the first line.
    #[arg(long)]
    restart: bool,
}

pub fn run(args: &BatchArgs) -> anyhow::Result<()> {
    let config = &args.target.load()?;
    let max = config.batching.max_batch_size;
    let batch_rows = args.batch_size.unwrap_or(max).clamp(1, max);

    let total = count_lines(&args.input).with_context(|| format!("cannot read {}", args.input.display()))?;
    if args.restart {
        File::create(&args.output).with_context(|| format!("cannot create {}", args.output.display()))?;
    }
    let done = resume_point(&args.output).with_context(|| format!("cannot read {}", args.output.display()))?;
    if done > total {
        anyhow::bail!(
            "{} has {done} lines but the input has only {total}: it belongs to another input (use --restart)",
            args.output.display()
        );
    }
    if done > 0 {
        eprintln!("resuming after {done} of {total} lines already in {}", args.output.display());
    }

    let factory = TorchEngine::factory();
    let mut engine = factory(config, 0).map_err(anyhow::Error::msg)?;
    let metrics = Metrics::new();
    let vm = metrics.version(&config.model, &config.version);
    let device_seconds = vm.device_seconds(&engine.device());
    eprintln!(
        "batch: {}:{} on {}, {} rows per batch, {} lines to go",
        config.model,
        config.version,
        engine.device(),
        batch_rows,
        total - done
    );

    let input = BufReader::new(File::open(&args.input)?);
    let mut out = BufWriter::new(OpenOptions::new().append(true).create(true).open(&args.output)?);
    let mut progress = Progress::new(total, done);
    let mut chunk: Vec<(usize, Result<InferRequest, String>)> = Vec::new();
    let mut chunk_rows = 0;
    let (mut rows_done, mut errors) = (0usize, 0usize);
    let started = Instant::now();
    for (n, line) in input.lines().enumerate().skip(done) {
        let line = line.with_context(|| format!("reading line {} of {}", n + 1, args.input.display()))?;
        let parsed = parse_line(config, &line);
        let rows = parsed.as_ref().map_or(0, |r| r.rows);
        if chunk_rows + rows > batch_rows && !chunk.is_empty() {
            let (r, e) = flush(engine.as_mut(), config, &vm, &device_seconds, std::mem::take(&mut chunk), &mut out)?;
            (rows_done, errors) = (rows_done + r, errors + e);
            chunk_rows = 0;
            progress.update(n);
        }
        chunk_rows += rows;
        chunk.push((n + 1, parsed));
    }
    if !chunk.is_empty() {
        let (r, e) = flush(engine.as_mut(), config, &vm, &device_seconds, chunk, &mut out)?;
        (rows_done, errors) = (rows_done + r, errors + e);
    }
    progress.update(total);
    progress.finish();
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "batch: done: {} lines ({rows_done} rows, {errors} errors) in {secs:.1}s, {:.0} rows/s, {:.2} device-seconds -> {}",
        total - done,
        rows_done as f64 / secs.max(1e-9),
        device_seconds.get(),
        args.output.display()
    );
    Ok(())
}

fn parse_line(config: &ModelConfig, line: &str) -> Result<InferRequest, String> {
    let t = line.trim_start();
    if t.starts_with('[') {
        v2::decode_row(config, t)
    } else if t.is_empty() {
        Err("empty line".into())
    } else {
        v2::decode_request(config, t.as_bytes(), None)
    }
}

/// Runs one batch and writes one line per entry, in order. Returns (rows, errors).
fn flush(
    engine: &mut dyn crate::engine::Engine,
    config: &ModelConfig,
    vm: &crate::metrics::VersionMetrics,
    device_seconds: &prometheus_client::metrics::counter::Counter<f64, std::sync::atomic::AtomicU64>,
    chunk: Vec<(usize, Result<InferRequest, String>)>,
    out: &mut impl Write,
) -> anyhow::Result<(usize, usize)> {
    let now = tokio::time::Instant::now();
    let far = now + Duration::from_secs(365 * 24 * 3600);
    let mut pending = Vec::new();
    let mut slots = Vec::with_capacity(chunk.len());
    for (line, parsed) in chunk {
        match parsed {
            Ok(req) => {
                let (tx, rx) = oneshot::channel();
                let outputs: Vec<_> = req.outputs.iter().map(|o| v2::RequestedOutput { binary: false, ..*o }).collect();
                pending.push(Pending { inputs: req.inputs, rows: req.rows, arrival: now, deadline: far, reply: tx });
                slots.push((line, Ok((req.id, outputs, rx))));
            }
            Err(e) => slots.push((line, Err(e))),
        }
    }
    let rows = pending.iter().map(|p| p.rows).sum();
    run_batch(engine, config, vm, device_seconds, pending);
    let mut errors = 0;
    for (line, slot) in slots {
        let result = slot.and_then(|(id, outputs, mut rx)| {
            let out =
                rx.try_recv().map_err(|_| "no result".to_owned())?.map_err(|e| format!("inference failed: {e:?}"))?;
            v2::encode_response(config, id.as_deref(), &outputs, &out).map(|e| e.body)
        });
        match result {
            Ok(body) => out.write_all(&body)?,
            Err(e) => {
                errors += 1;
                serde_json::to_writer(&mut *out, &serde_json::json!({"error": e, "line": line}))?;
            }
        }
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok((rows, errors))
}

fn count_lines(path: &Path) -> std::io::Result<usize> {
    let mut f = File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let (mut lines, mut last) = (0, b'\n');
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        lines += buf[..n].iter().filter(|b| **b == b'\n').count();
        last = buf[n - 1];
    }
    Ok(lines + usize::from(last != b'\n'))
}

/// Complete lines already written; a torn last line (killed mid-write) is cut off.
fn resume_point(path: &Path) -> std::io::Result<usize> {
    let mut f = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut data = Vec::new();
    f.read_to_end(&mut data)?;
    let complete = data.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    if complete < data.len() {
        f.set_len(complete as u64)?;
        f.seek(SeekFrom::End(0))?;
    }
    Ok(data[..complete].iter().filter(|b| **b == b'\n').count())
}

/// Between plain progress lines when stderr is not a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

const TEMPLATE: &str = "[{bar:30}] {pos}/{len} lines {percent:>3}%  {per_sec:0}  ETA {eta}";

/// A progress bar on a terminal; a plain line every few seconds otherwise (logs, CI), where a
/// redrawn bar would garble the output.
struct Progress {
    bar: ProgressBar,
    /// When the last plain line went out; `None` while the bar draws itself.
    last_plain: Option<Instant>,
}

impl Progress {
    fn new(total: usize, start_line: usize) -> Self {
        // The template is a constant (checked by a test): the default style is only a fallback.
        let style = ProgressStyle::with_template(TEMPLATE).unwrap_or_else(|_| ProgressStyle::default_bar());
        let bar =
            ProgressBar::new(total as u64).with_style(style.progress_chars("#-")).with_position(start_line as u64);
        // The tick records where a resumed run starts and the reset drops it from the rate:
        // lines done by an earlier run took no time in this one.
        bar.tick();
        bar.reset_eta();
        let last_plain = bar.is_hidden().then(Instant::now);
        Progress { bar, last_plain }
    }

    fn update(&mut self, line: usize) {
        self.bar.set_position(line as u64);
        let total = self.bar.length().unwrap_or(0);
        let Some(last) = &mut self.last_plain else { return };
        if last.elapsed() < PLAIN_EVERY && (line as u64) < total {
            return;
        }
        *last = Instant::now();
        let percent = line as f64 * 100.0 / total.max(1) as f64;
        eprintln!(
            "{line}/{total} lines {percent:>5.1}%  {:.0} lines/s  ETA {:#}",
            self.bar.per_sec(),
            HumanDuration(self.bar.eta())
        );
    }

    fn finish(&self) {
        self.bar.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_point_cuts_a_torn_line() {
        let p = std::env::temp_dir().join(format!("switchyard-resume-{}", std::process::id()));
        std::fs::write(&p, "a\nb\npartial").unwrap();
        assert_eq!(resume_point(&p).unwrap(), 2);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "a\nb\n");
        std::fs::remove_file(&p).unwrap();
        assert_eq!(resume_point(&p).unwrap(), 0);
    }

    #[test]
    fn progress_template_parses() {
        ProgressStyle::with_template(TEMPLATE).unwrap();
    }

    #[test]
    fn counts_lines_with_and_without_a_final_newline() {
        let p = std::env::temp_dir().join(format!("switchyard-count-{}", std::process::id()));
        std::fs::write(&p, "a\nb\nc").unwrap();
        assert_eq!(count_lines(&p).unwrap(), 3);
        std::fs::write(&p, "a\nb\n").unwrap();
        assert_eq!(count_lines(&p).unwrap(), 2);
        std::fs::write(&p, "").unwrap();
        assert_eq!(count_lines(&p).unwrap(), 0);
        std::fs::remove_file(&p).unwrap();
    }
}
