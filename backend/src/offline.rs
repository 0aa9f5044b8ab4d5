//! `batch`: offline inference over a JSONL file through the same engine and batch assembly as
//! the server, at full batch size.
//!
//! Each input line is a V2 request (`{"inputs": [...]}`) or, for single-input models, one row
//! as a JSON array. Each output line, in input order, is the V2 response or
//! `{"error": "...", "line": N}` (a line that is not UTF-8 included). Output is flushed after
//! every batch; a re-run with the same arguments resumes after the last complete output line,
//! once `<output>.job.json` confirms the output was written by the same model version for
//! this input (or this input before lines were appended to it).
//!
//! `--shard I/N` runs the part of the job that shard I of N owns (input line n, counted from
//! 1, belongs to shard (n - 1) mod N), so N processes — an Indexed Job's pods — split one
//! input without coordinating, each resumable on its own; `merge-shards` interleaves their
//! outputs back into the one output a whole run writes.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{HumanDuration, ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use switchyard_policy::hash::Fnv1a;
use tokio::sync::oneshot;

use crate::batcher::Pending;
use crate::config::{ModelConfig, VersionChoice};
use crate::engine::run_batch;
use crate::error::Invalid;
use crate::metrics::Metrics;
use crate::torch::TorchEngine;
use crate::v2::{self, InferRequest, rest};

/// What `batch` runs.
pub struct BatchOptions {
    pub target: VersionChoice,
    /// JSONL of V2 requests, or of rows for a single-input model.
    pub input: PathBuf,
    /// JSONL of V2 responses, one per input line, in input order.
    pub output: PathBuf,
    /// Rows per batch (default and maximum: the model's max_batch_size).
    pub batch_size: Option<usize>,
    /// Discard existing output (whatever job it belongs to) and start from the first line.
    pub restart: bool,
    /// Run only this shard's lines; the output holds just their results, in order.
    pub shard: Shard,
}

/// Which lines of the input one run owns. Round robin rather than contiguous ranges: the
/// owner of a line never depends on how long the input is, so lines appended to the input
/// keep every shard resumable, and shards differ by at most one line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    index: usize,
    count: usize,
}

impl Default for Shard {
    fn default() -> Self {
        Shard { index: 0, count: 1 }
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// A shard that is not `I/N` with `0 <= I < N`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("shard '{0}' is not I/N with 0 <= I < N (e.g. 0/4)")]
pub struct BadShard(pub String);

impl Shard {
    pub fn parse(s: &str) -> Result<Shard, BadShard> {
        let bad = || BadShard(s.to_owned());
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    fn is_whole(&self) -> bool {
        self.count == 1
    }

    /// `line` counts from 1.
    fn owns(self, line: usize) -> bool {
        line >= 1 && (line - 1) % self.count == self.index
    }

    /// How many of the first `lines` input lines this shard owns.
    fn lines_of(self, lines: usize) -> usize {
        if lines > self.index { (lines - self.index - 1) / self.count + 1 } else { 0 }
    }
}

pub fn run(args: &BatchOptions) -> anyhow::Result<()> {
    let config = &args.target.load()?;
    let max = config.batching.max_batch_size;
    let batch_rows = args.batch_size.unwrap_or(max).clamp(1, max);

    let record_path = job_record_path(&args.output);
    // A shard's output usually goes to a directory of parts that nothing else created.
    if let Some(dir) = args.output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    if args.restart {
        File::create(&args.output).with_context(|| format!("cannot create {}", args.output.display()))?;
    }
    // Checked before anything is resumed (or a torn line cut off) in a file that may not be ours.
    let recorded = match std::fs::metadata(&args.output) {
        Ok(m) if m.len() > 0 => Some(read_job_record(&record_path, &args.output)?),
        Ok(_) => None,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", args.output.display())),
    };
    let scan = scan_input(&args.input, recorded.as_ref().map_or(0, |r| r.input_bytes))
        .with_context(|| format!("cannot read {}", args.input.display()))?;
    let job = JobRecord {
        model: config.model.clone(),
        version: config.version.clone(),
        input: args.input.display().to_string(),
        input_bytes: scan.bytes,
        input_fnv1a64: hex(scan.hash),
        input_lines: scan.lines,
        shard: args.shard,
    };
    if let Some(r) = &recorded {
        check_same_job(r, &job, &scan, &args.output)?;
    }
    let shard = args.shard;
    let total = shard.lines_of(scan.lines);
    let done = resume_point(&args.output).with_context(|| format!("cannot read {}", args.output.display()))?;
    if done > total {
        anyhow::bail!(
            "{} has {done} lines but the input has only {total}: it belongs to another input (use --restart)",
            args.output.display()
        );
    }
    // Lines appended to the input since are part of the job from now on.
    write_job_record(&record_path, &job)?;
    if done > 0 {
        eprintln!("resuming after {done} of {total} lines already in {}", args.output.display());
    }
    let of_shard =
        if shard.is_whole() { String::new() } else { format!(" (shard {shard} of {} input lines)", scan.lines) };

    let factory = TorchEngine::factory();
    let mut engine = factory(config, 0).map_err(anyhow::Error::msg)?;
    let metrics = Metrics::new();
    let vm = metrics.version(&config.model, &config.version);
    let device_seconds = vm.device_seconds(&engine.device());
    eprintln!(
        "batch: {}:{} on {}, {} rows per batch, {} lines to go{of_shard}",
        config.model,
        config.version,
        engine.device(),
        batch_rows,
        total - done
    );

    // Up to where the scan counted: a line being appended right now is the next run's.
    let mut input = BufReader::new(File::open(&args.input)?.take(scan.bytes));
    let mut out = BufWriter::new(OpenOptions::new().append(true).create(true).open(&args.output)?);
    let mut progress = Progress::new(total, done);
    let mut chunk: Vec<(usize, Result<InferRequest, Invalid>)> = Vec::new();
    let mut chunk_rows = 0;
    let (mut rows_done, mut errors) = (0usize, 0usize);
    let started = Instant::now();
    // Bytes, not `lines()`: a line that is not UTF-8 is a bad line, not the end of the job.
    let mut line = Vec::new();
    // `n`: the input line; `owned`: lines of this shard so far (positions in the output).
    let (mut n, mut owned) = (0, 0);
    loop {
        line.clear();
        let read = input
            .read_until(b'\n', &mut line)
            .with_context(|| format!("reading line {} of {}", n + 1, args.input.display()))?;
        if read == 0 {
            break;
        }
        n += 1;
        if !shard.owns(n) {
            continue;
        }
        owned += 1;
        if owned <= done {
            continue;
        }
        let parsed = parse_line(config, &line);
        let rows = parsed.as_ref().map_or(0, |r| r.rows);
        if chunk_rows + rows > batch_rows && !chunk.is_empty() {
            let (r, e) = flush(engine.as_mut(), config, &vm, &device_seconds, std::mem::take(&mut chunk), &mut out)?;
            (rows_done, errors) = (rows_done + r, errors + e);
            chunk_rows = 0;
            progress.update(owned - 1);
        }
        chunk_rows += rows;
        chunk.push((n, parsed));
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

/// What `merge-shards` merges.
pub struct MergeOptions {
    /// Every shard's output, in any order; each one's `PART.job.json` says which shard it is.
    pub parts: Vec<PathBuf>,
    /// The merged output: one line per input line, in input order, as a whole run writes it
    /// (with its job record, so `batch` on the whole input sees it as done).
    pub output: PathBuf,
}

/// Interleaves complete shard outputs of one job. Refused, naming the problem, unless the
/// parts are exactly shards 0..N of the same model version and input, each complete; the
/// merged file appears only when whole (written beside it, then renamed).
pub fn merge(args: &MergeOptions) -> anyhow::Result<()> {
    let mut parts = Vec::with_capacity(args.parts.len());
    for path in &args.parts {
        let record = read_job_record(&job_record_path(path), path)?;
        let lines = resume_point_readonly(path).with_context(|| format!("cannot read {}", path.display()))?;
        parts.push((path, record, lines));
    }
    parts.sort_by_key(|(_, r, _)| r.shard.index);
    let Some((first_path, first, _)) = parts.first() else { anyhow::bail!("no parts given") };
    let count = first.shard.count;
    for (i, (path, r, lines)) in parts.iter().enumerate() {
        if (&r.model, &r.version, &r.input_fnv1a64, r.input_bytes)
            != (&first.model, &first.version, &first.input_fnv1a64, first.input_bytes)
        {
            anyhow::bail!(
                "{} is from another job than {}: {}:{} over {} ({} bytes) vs {}:{} over {} ({} bytes)",
                path.display(),
                first_path.display(),
                r.model,
                r.version,
                r.input,
                r.input_bytes,
                first.model,
                first.version,
                first.input,
                first.input_bytes
            );
        }
        if r.shard.count != count || r.shard.index != i {
            let have: Vec<String> = parts.iter().map(|(_, r, _)| r.shard.to_string()).collect();
            anyhow::bail!("need shards 0/{count} to {}/{count} once each; have {}", count - 1, have.join(", "));
        }
        let want = r.shard.lines_of(r.input_lines);
        if *lines != want {
            anyhow::bail!(
                "{} (shard {}) has {lines} of its {want} results: finish it first (re-run the same batch command)",
                path.display(),
                r.shard
            );
        }
    }
    if parts.len() != count {
        anyhow::bail!("need all {count} shards; have {}", parts.len());
    }
    let mut readers = Vec::with_capacity(count);
    for (path, _, _) in &parts {
        readers.push(BufReader::new(File::open(path).with_context(|| format!("cannot open {}", path.display()))?));
    }
    let tmp = {
        let mut name = args.output.as_os_str().to_owned();
        name.push(".merging");
        PathBuf::from(name)
    };
    let mut out = BufWriter::new(File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?);
    let mut line = Vec::new();
    for n in 0..first.input_lines {
        let Some(reader) = readers.get_mut(n % count) else { break };
        line.clear();
        reader.read_until(b'\n', &mut line)?;
        out.write_all(&line)?;
    }
    // On disk before it takes the output's name, and the record only after: a crash in
    // between leaves an output without a record, which `batch` refuses to resume, never a
    // record beside an older output.
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    let old_record = job_record_path(&args.output);
    let _ = std::fs::remove_file(&old_record);
    std::fs::rename(&tmp, &args.output).with_context(|| format!("cannot write {}", args.output.display()))?;
    if let Some(dir) = args.output.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir)?.sync_all()?;
    }
    let record = JobRecord { shard: Shard::default(), ..first.clone() };
    write_job_record(&old_record, &record)
        .with_context(|| format!("cannot write the job record of {}", args.output.display()))?;
    eprintln!("merge-shards: {} lines from {count} shards -> {}", first.input_lines, args.output.display());
    Ok(())
}

/// Complete lines in a file, leaving it as it is (a part being merged is not ours to cut).
fn resume_point_readonly(path: &Path) -> std::io::Result<usize> {
    let mut lines = 0;
    for_each_block(File::open(path)?, |block| lines += block.iter().filter(|b| **b == b'\n').count())?;
    Ok(lines)
}

fn parse_line(config: &ModelConfig, line: &[u8]) -> Result<InferRequest, Invalid> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let t = std::str::from_utf8(line).map_err(|e| format!("line is not UTF-8: {e}"))?.trim_start();
    if t.starts_with('[') {
        rest::decode_row(config, t)
    } else if t.is_empty() {
        Err("empty line".into())
    } else {
        rest::decode_request(config, t.as_bytes(), None)
    }
}

/// Runs one batch and writes one line per entry, in order. Returns (rows, errors).
fn flush(
    engine: &mut dyn crate::engine::Engine,
    config: &ModelConfig,
    vm: &crate::metrics::VersionMetrics,
    device_seconds: &prometheus_client::metrics::counter::Counter<f64, std::sync::atomic::AtomicU64>,
    chunk: Vec<(usize, Result<InferRequest, Invalid>)>,
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
        // The line's error, as the output file reports it.
        let result = slot.map_err(|e| e.to_string()).and_then(|(id, outputs, mut rx)| {
            let out =
                rx.try_recv().map_err(|_| "no result".to_owned())?.map_err(|e| format!("inference failed: {e:?}"))?;
            rest::encode_response(config, id.as_deref(), &outputs, &out).map(|e| e.body).map_err(|e| e.to_string())
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

/// Which job an output file belongs to, kept next to it (`<output>.job.json`) rather than
/// as a header line, so that the output stays exactly one V2 response per input line.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct JobRecord {
    model: String,
    version: String,
    /// For messages only: the same bytes under another name are the same input.
    input: String,
    input_bytes: u64,
    /// FNV-1a (64-bit) of the input's first `input_bytes` bytes: stable across builds and
    /// platforms, which std's hasher is not; this guards against mistakes, not attacks.
    input_fnv1a64: String,
    /// Lines in those bytes: how many results each shard's output holds when complete.
    #[serde(default)]
    input_lines: usize,
    /// Absent for a whole run (and in records older than sharding).
    #[serde(default, skip_serializing_if = "Shard::is_whole")]
    shard: Shard,
}

fn job_record_path(output: &Path) -> PathBuf {
    let mut name = output.as_os_str().to_owned();
    name.push(".job.json");
    PathBuf::from(name)
}

fn read_job_record(path: &Path, output: &Path) -> anyhow::Result<JobRecord> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
            "{} has results but no job record {}, so which input and model it belongs to is unknown \
             (use --restart to replace it)",
            output.display(),
            path.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a job record (use --restart to replace it and the output)", path.display()))
}

/// Written whole under a temporary name and renamed, so a crash never leaves half a record.
/// The error names the path.
fn write_job_record(path: &Path, job: &JobRecord) -> std::io::Result<()> {
    switchyard_runtime::write_atomic(path, serde_json::to_vec_pretty(job)?)
}

/// The output may be resumed only for the same model version and an input that still starts
/// with the bytes it was written for, ending at a line boundary if lines were appended since.
fn check_same_job(recorded: &JobRecord, job: &JobRecord, scan: &InputScan, output: &Path) -> anyhow::Result<()> {
    if (&recorded.model, &recorded.version) != (&job.model, &job.version) {
        anyhow::bail!(
            "{} holds results of {}:{}, not {}:{} (use --restart to replace it)",
            output.display(),
            recorded.model,
            recorded.version,
            job.model,
            job.version
        );
    }
    if recorded.shard != job.shard {
        anyhow::bail!(
            "{} holds the results of shard {}, not shard {} (use --restart to replace it)",
            output.display(),
            recorded.shard,
            job.shard
        );
    }
    let same_start = scan.prefix.is_some_and(|(hash, _)| hex(hash) == recorded.input_fnv1a64);
    let appended_whole_lines = scan.bytes == recorded.input_bytes || scan.prefix.is_some_and(|(_, at_line)| at_line);
    if !(same_start && appended_whole_lines) {
        anyhow::bail!(
            "{} holds results for another input: {} as it was then ({} bytes); {} ({} bytes) is neither that \
             file nor that file with lines added (use --restart to replace it)",
            output.display(),
            recorded.input,
            recorded.input_bytes,
            job.input,
            scan.bytes
        );
    }
    Ok(())
}

const BLOCK: usize = 1 << 16;

/// Reads to the end in fixed-size blocks: memory stays the same however large the file.
fn for_each_block(mut r: impl Read, mut f: impl FnMut(&[u8])) -> std::io::Result<()> {
    let mut buf = vec![0u8; BLOCK];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => f(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn hex(hash: u64) -> String {
    format!("{hash:016x}")
}

/// One pass over the input.
struct InputScan {
    /// A last line without a newline counts.
    lines: usize,
    bytes: u64,
    hash: u64,
    /// For the first `prefix_len` bytes, if the input has that many: their hash and whether
    /// they end at a line boundary.
    prefix: Option<(u64, bool)>,
}

fn scan_input(path: &Path, prefix_len: u64) -> std::io::Result<InputScan> {
    let (mut lines, mut bytes, mut last) = (0, 0u64, b'\n');
    let mut hash = Fnv1a::default();
    let mut prefix = (prefix_len == 0).then_some((hash.finish(), true));
    for_each_block(File::open(path)?, |block| {
        let start = bytes;
        bytes += block.len() as u64;
        if prefix.is_none() && bytes >= prefix_len {
            let cut = usize::try_from(prefix_len - start).unwrap_or(block.len());
            let end = if cut == 0 { last } else { block[cut - 1] };
            prefix = Some((hash.update(&block[..cut]).finish(), end == b'\n'));
        }
        hash = hash.update(block);
        lines += block.iter().filter(|b| **b == b'\n').count();
        last = block[block.len() - 1];
    })?;
    Ok(InputScan { lines: lines + usize::from(last != b'\n'), bytes, hash: hash.finish(), prefix })
}

/// Complete lines already written; a torn last line (killed mid-write) is cut off. One
/// streaming pass, so resuming a large output costs no more memory than a small one.
fn resume_point(path: &Path) -> std::io::Result<usize> {
    let f = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let (mut lines, mut len, mut complete) = (0, 0u64, 0u64);
    for_each_block(&f, |block| {
        lines += block.iter().filter(|b| **b == b'\n').count();
        if let Some(i) = block.iter().rposition(|b| *b == b'\n') {
            complete = len + i as u64 + 1;
        }
        len += block.len() as u64;
    })?;
    if complete < len {
        f.set_len(complete)?;
    }
    Ok(lines)
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

    fn temp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("switchyard-{name}-{}", std::process::id()))
    }

    #[test]
    fn shards_own_every_line_exactly_once() {
        for count in 1..6 {
            let shards: Vec<Shard> =
                (0..count).map(|index| Shard::parse(&format!("{index}/{count}")).unwrap()).collect();
            for lines in 0..20 {
                for n in 1..=lines {
                    assert_eq!(shards.iter().filter(|s| s.owns(n)).count(), 1, "line {n} of {count} shards");
                }
                let owned: usize = shards.iter().map(|s| s.lines_of(lines)).sum();
                assert_eq!(owned, lines);
                for s in &shards {
                    assert_eq!(s.lines_of(lines), (1..=lines).filter(|n| s.owns(*n)).count());
                }
            }
        }
        for bad in ["4/4", "1", "-1/2", "0/0", "a/b", "1/2/3"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Shard::parse(" 2/ 5").unwrap().to_string(), "2/5");
    }

    #[test]
    fn resume_point_cuts_a_torn_line() {
        let p = temp("resume");
        std::fs::write(&p, "a\nb\npartial").unwrap();
        assert_eq!(resume_point(&p).unwrap(), 2);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "a\nb\n");
        std::fs::remove_file(&p).unwrap();
        assert_eq!(resume_point(&p).unwrap(), 0);
    }

    /// Peak resident memory of this process, from the kernel.
    fn peak_rss_bytes() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
    }

    #[test]
    fn resuming_a_large_output_takes_constant_memory() {
        // Other tests of this binary run at the same time and raise its peak RSS too, so the
        // file is large and the allowance wide: reading it whole (as resume once did) would
        // grow the peak by all 512 MiB, streaming by a few blocks.
        const SIZE: u64 = 512 << 20;
        let p = temp("resume-large");
        // Two complete lines, then a torn one of 512 MiB spanning thousands of blocks (sparse,
        // so it costs no disk).
        std::fs::write(&p, "a\nb\n").unwrap();
        OpenOptions::new().write(true).open(&p).unwrap().set_len(SIZE).unwrap();
        let before = peak_rss_bytes();
        assert_eq!(resume_point(&p).unwrap(), 2);
        let grown = peak_rss_bytes() - before;
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 4);
        std::fs::remove_file(&p).unwrap();
        assert!(grown < 192 << 20, "resume grew the peak RSS by {} MiB for a {} MiB file", grown >> 20, SIZE >> 20);
    }

    #[test]
    fn progress_template_parses() {
        ProgressStyle::with_template(TEMPLATE).unwrap();
    }

    #[test]
    fn counts_lines_with_and_without_a_final_newline() {
        let p = temp("count");
        std::fs::write(&p, "a\nb\nc").unwrap();
        assert_eq!(scan_input(&p, 0).unwrap().lines, 3);
        std::fs::write(&p, "a\nb\n").unwrap();
        assert_eq!(scan_input(&p, 0).unwrap().lines, 2);
        std::fs::write(&p, "").unwrap();
        assert_eq!(scan_input(&p, 0).unwrap().lines, 0);
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn a_line_that_is_not_utf8_is_a_bad_line() {
        let config = crate::testing::config("m", "v1");
        let err = parse_line(&config, b"[1.0, \xff]\n").unwrap_err();
        assert!(err.0.starts_with("line is not UTF-8"), "{err}");
        assert_eq!(parse_line(&config, b"[1.0, 2.0]\r\n").unwrap().rows, 1);
    }

    fn hash(bytes: &[u8]) -> u64 {
        Fnv1a::default().update(bytes).finish()
    }

    #[test]
    fn the_prefix_fingerprint_is_the_hash_of_exactly_those_bytes_across_blocks() {
        // The record's fingerprint is FNV-1a 64 (published test vectors) in 16 hex digits: a
        // record must mean the same in every build.
        assert_eq!(hex(hash(b"")), "cbf29ce484222325");
        assert_eq!(hex(hash(b"a")), "af63dc4c8601ec8c");
        let p = temp("scan");
        let data: Vec<u8> = (0..3 * BLOCK + 17).map(|i| if i % 100 == 99 { b'\n' } else { b'x' }).collect();
        std::fs::write(&p, &data).unwrap();
        for cut in [0, 1, 100, BLOCK, BLOCK + 1, 2 * BLOCK + 50, data.len()] {
            let scan = scan_input(&p, cut as u64).unwrap();
            let at_line = cut == 0 || data[cut - 1] == b'\n';
            assert_eq!(scan.prefix, Some((hash(&data[..cut]), at_line)), "cut at {cut}");
            assert_eq!((scan.bytes, scan.hash, scan.lines), (data.len() as u64, hash(&data), data.len() / 100 + 1));
        }
        assert_eq!(scan_input(&p, data.len() as u64 + 1).unwrap().prefix, None);
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn only_the_same_job_or_the_same_input_with_lines_appended_resumes() {
        let p = temp("job");
        let output = Path::new("out.jsonl");
        let record = |model: &str, version: &str, input: &[u8]| JobRecord {
            model: model.into(),
            version: version.into(),
            input: "in.jsonl".into(),
            input_bytes: input.len() as u64,
            input_fnv1a64: hex(hash(input)),
            input_lines: 0,
            shard: Shard::default(),
        };
        let check = |recorded: &JobRecord, model: &str, version: &str, now: &[u8]| {
            std::fs::write(&p, now).unwrap();
            let scan = scan_input(&p, recorded.input_bytes).unwrap();
            check_same_job(recorded, &record(model, version, now), &scan, output).map_err(|e| e.to_string())
        };
        let started = record("mlp", "v1", b"[1]\n[2]\n");
        check(&started, "mlp", "v1", b"[1]\n[2]\n").unwrap();
        check(&started, "mlp", "v1", b"[1]\n[2]\n[3]\n").unwrap();
        let e = check(&started, "mlp", "v2", b"[1]\n[2]\n").unwrap_err();
        assert!(e.contains("holds results of mlp:v1, not mlp:v2"), "{e}");
        let others: [&[u8]; 4] = [b"[1]\n[9]\n", b"[1]\n", b"[1]\n[2]", b"x[1]\n[2]\n"];
        for other in others {
            let e = check(&started, "mlp", "v1", other).unwrap_err();
            assert!(e.contains("holds results for another input: in.jsonl as it was then (8 bytes)"), "{e}");
        }
        // Without a final newline the last line itself may have grown: not an append.
        let unterminated = record("mlp", "v1", b"[1]\n[2");
        check(&unterminated, "mlp", "v1", b"[1]\n[2").unwrap();
        check(&unterminated, "mlp", "v1", b"[1]\n[23]\n").unwrap_err();
        std::fs::remove_file(&p).unwrap();
    }
}
