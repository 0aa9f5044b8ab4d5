//! The streaming monitor: follows the collector's JSONL file, keeps per model and version the
//! last rows in every configured window, and every `evaluate_every_seconds` tests each window
//! against the model's reference.
//!
//! [`Monitor`] is the state and its rules (no I/O but the reference state file); [`Tail`]
//! follows the file through rotation; [`run`] puts them on a thread and serves `/metrics`,
//! `/health` and `/v1/drift` (the last evaluations as JSON).
//!
//! Memory per model: `versions × max window rows × columns × 8 bytes` (numerical; a
//! categorical cell is a key, ~40 bytes) plus 8 bytes a row for its time, plus the reference:
//! `rows × columns × 8 bytes`. `switchyard_drift_memory_bytes` reports it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use switchyard_drift::{Key, Kind, Summary};

use super::config::{Config, ModelConfig, ReferenceConfig, Rules, WindowConfig};
use super::evaluate::{Evaluation, Reference, evaluate};
use super::metrics::{ColumnLabels, Metrics, ModelLabels, TestLabels, VersionLabels, WindowLabels};
use super::table::{Cell, Reader, Record, Skip, Table};

/// A window's column: numbers for a numerical column, keys for a categorical one.
#[derive(Debug)]
enum Column {
    Num(VecDeque<f64>),
    Cat(VecDeque<Option<Key>>),
}

impl Column {
    fn new(kind: Kind) -> Column {
        match kind {
            Kind::Numerical => Column::Num(VecDeque::new()),
            Kind::Categorical => Column::Cat(VecDeque::new()),
        }
    }

    fn push(&mut self, cell: &Cell) {
        match self {
            Column::Num(v) => v.push_back(cell.number()),
            Column::Cat(v) => v.push_back(cell.key()),
        }
    }

    fn pop(&mut self) {
        match self {
            Column::Num(v) => drop(v.pop_front()),
            Column::Cat(v) => drop(v.pop_front()),
        }
    }

    /// The rows from `start` on, summarised as `kind` (the reference's, which decides).
    fn summary(&self, start: usize, kind: Kind) -> Summary {
        match (self, kind) {
            (Column::Num(v), Kind::Numerical) => Summary::numerical(v.range(start..).copied()),
            (Column::Num(v), Kind::Categorical) => Summary::categorical(v.range(start..).map(|x| Key::num(*x))),
            (Column::Cat(v), Kind::Categorical) => Summary::categorical(v.range(start..).cloned()),
            (Column::Cat(v), Kind::Numerical) => Summary::numerical(v.range(start..).map(|k| match k {
                Some(Key::Num(x)) => *x,
                _ => f64::NAN,
            })),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Column::Num(v) => v.len() * 8,
            Column::Cat(v) => v.len() * 40,
        }
    }
}

/// The columns a model's windows keep: the reference's, or those of its first sample.
#[derive(Debug, Default)]
struct Schema {
    names: Vec<String>,
    kinds: Vec<Kind>,
    index: HashMap<String, usize>,
}

#[derive(Debug, Default)]
struct Version {
    times: VecDeque<u64>,
    columns: Vec<Column>,
    newest_ms: u64,
    /// Rows appended ever: a window whose rows and first row are as last time is not
    /// evaluated again.
    appended: u64,
    evaluated: HashMap<String, (u64, usize)>,
}

#[derive(Debug)]
struct Collecting {
    version: String,
    rows: usize,
    table: Table,
}

/// What the state directory holds for a model: the reference summarised from a version's
/// first rows, and the config it answers to.
#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    version: String,
    rows: usize,
    reference: Reference,
}

#[derive(Debug)]
struct Model {
    rules: Rules,
    windows: Vec<WindowConfig>,
    capacity: usize,
    reader: Reader,
    reference: Option<Reference>,
    collecting: Option<Collecting>,
    schema: Option<Schema>,
    versions: BTreeMap<String, Version>,
    /// Per block of names (by address in the reader's cache): the schema column of each name.
    maps: HashMap<usize, (Arc<super::table::Names>, Vec<Option<usize>>)>,
    /// Label sets exported per (version, window), to remove when a window empties or a test
    /// changes.
    exported: HashMap<(String, String), Vec<(ColumnLabels, String)>>,
}

/// A window's last evaluation, as `/v1/drift` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct WindowResult {
    pub rows: usize,
    /// Rows of the version ingested when the window was evaluated (it covers up to there).
    pub rows_ingested: u64,
    pub evaluated_unix_ms: u64,
    #[serde(flatten)]
    pub evaluation: Evaluation,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ModelResult {
    pub reference_source: String,
    pub reference_rows: usize,
    pub reference_ready: bool,
    pub versions: BTreeMap<String, BTreeMap<String, WindowResult>>,
}

pub struct Monitor {
    config: Config,
    models: BTreeMap<String, Model>,
    metrics: Metrics,
    state_dir: Option<PathBuf>,
    results: BTreeMap<String, ModelResult>,
}

fn state_file(dir: &Path, model: &str) -> PathBuf {
    dir.join(format!("{model}.reference.json"))
}

impl Monitor {
    /// Reads file references and saved version references; every problem at once.
    pub fn new(config: Config, metrics: Metrics, state_dir: Option<PathBuf>) -> Result<Monitor, Vec<String>> {
        let mut problems = Vec::new();
        let mut models = BTreeMap::new();
        for (name, m) in &config.models {
            match Model::new(name, m, config.rules(name), state_dir.as_deref(), config.max_columns) {
                Ok(model) => {
                    models.insert(name.clone(), model);
                }
                Err(e) => problems.push(format!("models.{name}: {e}")),
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let mut monitor = Monitor { config, models, metrics, state_dir, results: BTreeMap::new() };
        monitor.publish_references();
        Ok(monitor)
    }

    fn publish_references(&mut self) {
        for (name, m) in &self.models {
            let labels = ModelLabels { model: name.clone() };
            let rows =
                m.reference.as_ref().map_or_else(|| m.collecting.as_ref().map_or(0, |c| c.table.rows), |r| r.rows);
            self.metrics.reference_rows.get_or_create(&labels).set(rows as i64);
            self.metrics.reference_ready.get_or_create(&labels).set(i64::from(m.reference.is_some()));
            let result = self.results.entry(name.clone()).or_default();
            result.reference_rows = rows;
            result.reference_ready = m.reference.is_some();
            result.reference_source = m.reference.as_ref().map_or_else(
                || {
                    m.collecting
                        .as_ref()
                        .map_or(String::new(), |c| format!("first {} rows of {name}:{}", c.rows, c.version))
                },
                |r| r.source.clone(),
            );
        }
    }

    /// One line of the samples file. Never fails: what it cannot use is counted.
    pub fn ingest_line(&mut self, line: &str) {
        // Parsed once; the model decides which reader (and column names) read the rest.
        let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else {
            self.metrics.skip(Skip::Malformed.label());
            return;
        };
        let model_name = match value.get("model").and_then(serde_json::Value::as_str) {
            Some(m) => m.to_owned(),
            None => {
                // Not a sample of any model: say why it is not (a comparison record, junk).
                let reason = Reader::default().record(&value).err().map_or("unconfigured", Skip::label);
                self.metrics.skip(reason);
                return;
            }
        };
        let Some(model) = self.models.get_mut(model_name.as_str()) else {
            self.metrics.skip("unconfigured");
            return;
        };
        let record = match model.reader.record(&value) {
            Ok(r) => r,
            Err(skip) => {
                self.metrics.skip(skip.label());
                return;
            }
        };
        let Some(version) = record.version.clone() else {
            self.metrics.skip(Skip::Malformed.label());
            return;
        };
        if !model.versions.contains_key(&version) && model.versions.len() >= self.config.max_versions {
            self.metrics.skip("too_many_versions");
            return;
        }
        let completed = model.collect(&model_name, &version, &record);
        if completed {
            model.adopt_reference_columns(self.config.max_columns);
        }
        let rows = model.append(&version, &record, self.config.max_columns);
        let labels = VersionLabels { model: model_name.clone(), version };
        self.metrics.samples.get_or_create(&labels).inc();
        self.metrics.rows.get_or_create(&labels).inc_by(rows as u64);
        if completed {
            self.save(&model_name);
            self.publish_references();
        } else if model.collecting.is_some() {
            let rows = model.collecting.as_ref().map_or(0, |c| c.table.rows);
            self.metrics.reference_rows.get_or_create(&ModelLabels { model: model_name.clone() }).set(rows as i64);
        }
    }

    /// Writes a collected reference to the state directory (atomically: a crash leaves the
    /// old file or the new one). A failure is logged: the reference still works until a
    /// restart, which then collects it again.
    fn save(&self, model: &str) {
        let (Some(dir), Some(m), Some(ModelConfig { reference: ReferenceConfig::Version { version, rows }, .. })) =
            (&self.state_dir, self.models.get(model), self.config.models.get(model))
        else {
            return;
        };
        let Some(reference) = &m.reference else { return };
        let saved = Saved { version: version.clone(), rows: *rows, reference: reference.clone() };
        let path = state_file(dir, model);
        if let Err(e) = write_atomic(&path, &saved) {
            tracing::error!(path = %path.display(), error = %e, "cannot save the reference summary; it will be collected again after a restart");
        } else {
            tracing::info!(model, path = %path.display(), rows = reference.rows, "reference collected and saved");
        }
    }

    /// Evaluates every window that changed since its last evaluation.
    pub fn evaluate(&mut self, now_ms: u64) {
        let started = Instant::now();
        for (name, model) in &mut self.models {
            let Some(reference) = &model.reference else { continue };
            let result = self.results.entry(name.clone()).or_default();
            let mut bytes = reference.heap_bytes();
            for (vname, version) in &mut model.versions {
                bytes += version.times.len() * 8 + version.columns.iter().map(Column::bytes).sum::<usize>();
                for w in &model.windows {
                    let len = version.times.len();
                    let mut start = len - w.rows.min(len);
                    if let Some(s) = w.seconds {
                        let cutoff = now_ms.saturating_sub((s * 1000.0) as u64);
                        start = start.max(version.times.partition_point(|t| *t < cutoff));
                    }
                    let wl = WindowLabels { model: name.clone(), version: vname.clone(), window: w.name.clone() };
                    self.metrics.window_rows.get_or_create(&wl).set((len - start) as i64);
                    let key = (vname.clone(), w.name.clone());
                    if len == start {
                        // Nothing to test: no score is better than a stale one.
                        for (labels, test) in model.exported.remove(&key).unwrap_or_default() {
                            remove_column(&self.metrics, &labels, &test);
                        }
                        self.metrics.dataset_share.remove(&wl);
                        self.metrics.dataset_drifted.remove(&wl);
                        self.metrics.columns_drifted.remove(&wl);
                        result.versions.entry(vname.clone()).or_default().remove(&w.name);
                        continue;
                    }
                    if version.evaluated.get(&w.name) == Some(&(version.appended, start)) {
                        continue;
                    }
                    version.evaluated.insert(w.name.clone(), (version.appended, start));
                    let schema = model.schema.as_ref();
                    let evaluation = evaluate(reference, &model.rules, |column, kind| {
                        let i = *schema?.index.get(column)?;
                        Some(version.columns.get(i)?.summary(start, kind))
                    });
                    let mut exported = Vec::with_capacity(evaluation.columns.len());
                    let previous = model.exported.remove(&key).unwrap_or_default();
                    for c in &evaluation.columns {
                        let labels = ColumnLabels {
                            model: name.clone(),
                            version: vname.clone(),
                            window: w.name.clone(),
                            column: c.column.clone(),
                        };
                        let Some(d) = c.drift else { continue };
                        self.metrics.score.get_or_create(&labels).set(d.score);
                        self.metrics.threshold.get_or_create(&labels).set(d.threshold);
                        self.metrics.drifted.get_or_create(&labels).set(i64::from(d.drifted));
                        self.metrics.test.get_or_create(&test_labels(&labels, d.test.name())).set(1);
                        exported.push((labels, d.test.name().to_owned()));
                    }
                    for (labels, test) in previous {
                        if !exported.iter().any(|(l, t)| *l == labels && *t == test) {
                            if exported.iter().any(|(l, _)| *l == labels) {
                                self.metrics.test.remove(&test_labels(&labels, &test));
                            } else {
                                remove_column(&self.metrics, &labels, &test);
                            }
                        }
                    }
                    model.exported.insert(key, exported);
                    let d = evaluation.dataset;
                    self.metrics.dataset_share.get_or_create(&wl).set(d.share);
                    self.metrics.dataset_drifted.get_or_create(&wl).set(i64::from(d.drifted));
                    self.metrics.columns_drifted.get_or_create(&wl).set(d.drifted_columns as i64);
                    result.versions.entry(vname.clone()).or_default().insert(
                        w.name.clone(),
                        WindowResult {
                            rows: len - start,
                            rows_ingested: version.appended,
                            evaluated_unix_ms: now_ms,
                            evaluation,
                        },
                    );
                }
            }
            self.metrics.memory.get_or_create(&ModelLabels { model: name.clone() }).set(bytes as i64);
        }
        self.metrics.evaluation_seconds.set(started.elapsed().as_secs_f64());
    }

    /// Seconds since each version's newest sample.
    pub fn update_ages(&self, now_ms: u64) {
        for (name, model) in &self.models {
            for (vname, v) in &model.versions {
                let labels = VersionLabels { model: name.clone(), version: vname.clone() };
                self.metrics.sample_age.get_or_create(&labels).set(now_ms.saturating_sub(v.newest_ms) as f64 / 1000.0);
            }
        }
    }

    pub fn results(&self) -> &BTreeMap<String, ModelResult> {
        &self.results
    }
}

fn test_labels(l: &ColumnLabels, test: &str) -> TestLabels {
    TestLabels {
        model: l.model.clone(),
        version: l.version.clone(),
        window: l.window.clone(),
        column: l.column.clone(),
        test: test.to_owned(),
    }
}

fn remove_column(m: &Metrics, labels: &ColumnLabels, test: &str) {
    m.score.remove(labels);
    m.threshold.remove(labels);
    m.drifted.remove(labels);
    m.test.remove(&test_labels(labels, test));
}

impl Model {
    fn new(
        name: &str,
        config: &ModelConfig,
        rules: &Rules,
        state_dir: Option<&Path>,
        max_columns: usize,
    ) -> Result<Model, String> {
        let mut model = Model {
            rules: rules.clone(),
            windows: config.windows.clone(),
            capacity: config.windows.iter().map(|w| w.rows).max().unwrap_or(0),
            reader: Reader::new(rules.names.clone(), rules.max_tensor_columns()),
            reference: None,
            collecting: None,
            schema: None,
            versions: BTreeMap::new(),
            maps: HashMap::new(),
            exported: HashMap::new(),
        };
        match &config.reference {
            ReferenceConfig::File { file } => {
                let (table, skipped) = Table::read(file, &mut model.reader, |_| true)
                    .map_err(|e| format!("reference {}: {e}", file.display()))?;
                if table.rows == 0 {
                    return Err(format!("reference {}: no rows in it ({skipped:?} lines skipped)", file.display()));
                }
                let reference = Reference::from_table(file.display().to_string(), &table, rules);
                model.schema = Some(Schema::of_reference(&reference, max_columns));
                model.reference = Some(reference);
            }
            ReferenceConfig::Version { version, rows } => {
                let saved = state_dir.map(|d| state_file(d, name)).filter(|p| p.exists());
                match saved.map(|p| load(&p).map_err(|e| format!("{}: {e}", p.display()))) {
                    Some(Ok(s)) if s.version == *version && s.rows == *rows => {
                        tracing::info!(
                            model = name,
                            rows = s.reference.rows,
                            "reference summary loaded from the state directory"
                        );
                        model.schema = Some(Schema::of_reference(&s.reference, max_columns));
                        model.reference = Some(s.reference);
                    }
                    Some(Ok(_)) => {
                        tracing::warn!(
                            model = name,
                            "the saved reference is of another version or size: collecting it again"
                        );
                    }
                    Some(Err(e)) => {
                        tracing::warn!(model = name, error = %e, "cannot read the saved reference: collecting it again");
                    }
                    None => {}
                }
                if model.reference.is_none() {
                    model.collecting =
                        Some(Collecting { version: version.clone(), rows: *rows, table: Table::default() });
                }
            }
        }
        Ok(model)
    }

    /// Adds a record to the reference being collected; true when that completed it.
    fn collect(&mut self, name: &str, version: &str, record: &Record) -> bool {
        let Some(c) = &mut self.collecting else { return false };
        if c.version != version {
            return false;
        }
        c.table.push(record);
        if c.table.rows < c.rows {
            return false;
        }
        c.table.truncate(c.rows);
        let source = format!("first {} rows of {name}:{}", c.rows, c.version);
        let reference = Reference::from_table(source, &c.table, &self.rules);
        self.collecting = None;
        self.reference = Some(reference);
        true
    }

    /// Appends a record's rows to its version's windows; the rows appended.
    fn append(&mut self, version: &str, record: &Record, max_columns: usize) -> usize {
        let schema = self.schema.get_or_insert_with(|| Schema::of_record(record, &self.rules, max_columns));
        let v = self.versions.entry(version.to_owned()).or_default();
        if v.columns.is_empty() {
            v.columns = schema.kinds.iter().map(|k| Column::new(*k)).collect();
        }
        // The reader's cache may drop a `Names` and a later one reuse its address: the map
        // keeps its `Names` alive, so an address names one block shape for as long as it is here.
        if self.maps.len() > 4096 {
            self.maps.clear();
        }
        // For each schema column, the block and position that fills it.
        let mut sources: Vec<Option<(usize, usize)>> = vec![None; schema.names.len()];
        for (b, block) in record.blocks.iter().enumerate() {
            let key = Arc::as_ptr(&block.names) as usize;
            let (_, map) = self.maps.entry(key).or_insert_with(|| {
                (block.names.clone(), block.names.names.iter().map(|n| schema.index.get(n).copied()).collect())
            });
            for (j, col) in map.iter().enumerate() {
                if let Some(slot) = col.and_then(|c| sources.get_mut(c)) {
                    *slot = Some((b, j));
                }
            }
        }
        let rows = record.blocks.iter().map(|b| b.rows).max().unwrap_or(0);
        // Times only go forward, so a time window is a suffix (samples of one version arrive
        // about in order; a late one counts as of the newest before it).
        let time = record.unix_ms.unwrap_or(v.newest_ms).max(v.newest_ms);
        // Only the rows the windows can hold.
        for r in rows.saturating_sub(self.capacity)..rows {
            for (c, column) in v.columns.iter_mut().enumerate() {
                let cell = sources.get(c).copied().flatten().and_then(|(b, j)| {
                    let block = record.blocks.get(b)?;
                    if r < block.rows { block.cells.get(r * block.names.names.len() + j) } else { None }
                });
                column.push(cell.unwrap_or(&Cell::Missing));
            }
            v.times.push_back(time);
        }
        while v.times.len() > self.capacity {
            v.times.pop_front();
            v.columns.iter_mut().for_each(Column::pop);
        }
        v.newest_ms = time;
        v.appended += rows as u64;
        rows
    }

    /// The windows keep the reference's columns once it is complete: a version reference is
    /// collected after the first sample (of any version) set the columns, and may differ.
    fn adopt_reference_columns(&mut self, max_columns: usize) {
        let Some(reference) = &self.reference else { return };
        let new = Schema::of_reference(reference, max_columns);
        let old = self.schema.take().unwrap_or_default();
        for v in self.versions.values_mut() {
            let len = v.times.len();
            let mut columns: Vec<Option<Column>> = std::mem::take(&mut v.columns).into_iter().map(Some).collect();
            v.columns = new
                .names
                .iter()
                .zip(&new.kinds)
                .map(|(name, kind)| {
                    old.index.get(name).and_then(|i| columns.get_mut(*i)?.take()).unwrap_or_else(|| {
                        let mut c = Column::new(*kind);
                        (0..len).for_each(|_| c.push(&Cell::Missing));
                        c
                    })
                })
                .collect();
            v.evaluated.clear();
        }
        self.maps.clear();
        self.schema = Some(new);
    }
}

impl Schema {
    fn of_reference(r: &Reference, max_columns: usize) -> Schema {
        let mut s = Schema::default();
        for c in r.columns.iter().take(max_columns) {
            s.add(&c.name, c.kind);
        }
        s
    }

    fn of_record(record: &Record, rules: &Rules, max_columns: usize) -> Schema {
        let mut s = Schema::default();
        for b in &record.blocks {
            for (j, name) in b.names.names.iter().enumerate() {
                if s.names.len() >= max_columns {
                    tracing::warn!(max_columns, "more columns than max_columns: the rest are not monitored");
                    return s;
                }
                let kind = rules.columns.get(name).copied().or(b.names.kinds[j]).unwrap_or_else(|| {
                    if matches!(b.cells.get(j), Some(Cell::Num(_))) { Kind::Numerical } else { Kind::Categorical }
                });
                s.add(name, kind);
            }
        }
        s
    }

    fn add(&mut self, name: &str, kind: Kind) {
        if self.index.contains_key(name) {
            return;
        }
        self.index.insert(name.to_owned(), self.names.len());
        self.names.push(name.to_owned());
        self.kinds.push(kind);
    }
}

fn load(path: &Path) -> anyhow::Result<Saved> {
    Ok(serde_json::from_slice(&std::fs::read(path)?)?)
}

fn write_atomic(path: &Path, value: &impl Serialize) -> anyhow::Result<()> {
    let tmp = path.with_extension("json.tmp");
    {
        let mut f = File::create(&tmp)?;
        serde_json::to_writer(&mut f, value)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Follows a JSONL file the collector appends to and rotates (renames it away and starts a
/// new one): reads to the end, and at the end checks whether the path now names another file
/// (or a shorter one) — then reads what is left of the old one and moves to the new.
pub struct Tail {
    path: PathBuf,
    file: Option<File>,
    inode: u64,
    offset: u64,
    buf: Vec<u8>,
    /// Where the unread part of `buf` starts.
    start: usize,
    max_line: usize,
    /// Inside a line longer than `max_line`: dropping bytes up to its end.
    discarding: bool,
}

/// What a poll found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Polled {
    pub lines: usize,
    pub oversized: usize,
}

impl Tail {
    pub fn new(path: PathBuf, max_line: usize) -> Tail {
        Tail { path, file: None, inode: 0, offset: 0, buf: Vec::new(), start: 0, max_line, discarding: false }
    }

    /// Reads up to `budget` complete lines and hands each to `f`.
    pub fn poll(&mut self, budget: usize, mut f: impl FnMut(&str)) -> std::io::Result<Polled> {
        let mut polled = Polled::default();
        if self.file.is_none() {
            match File::open(&self.path) {
                Ok(file) => self.switch_to(file)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(polled),
                Err(e) => return Err(e),
            }
        }
        let mut chunk = vec![0u8; 256 * 1024];
        // Set once the path names another file: the old one is read to its end first.
        let mut moved = false;
        while polled.lines < budget {
            // Lines already in the buffer first.
            if let Some(pos) = self.buf[self.start..].iter().position(|b| *b == b'\n') {
                let (from, to) = (self.start, self.start + pos);
                self.start = to + 1;
                if std::mem::take(&mut self.discarding) {
                    continue;
                }
                if to - from > self.max_line {
                    polled.oversized += 1;
                    continue;
                }
                match std::str::from_utf8(&self.buf[from..to]) {
                    Ok(s) if !s.trim().is_empty() => f(s),
                    Ok(_) => {}
                    Err(_) => f("\u{0}not utf-8"),
                }
                polled.lines += 1;
                continue;
            }
            // No whole line left: keep only the partial one, and not past the line cap.
            self.buf.drain(..self.start);
            self.start = 0;
            if self.buf.len() > self.max_line {
                self.buf.clear();
                if !self.discarding {
                    polled.oversized += 1;
                }
                self.discarding = true;
            }
            let Some(file) = &mut self.file else { break };
            let n = file.read(&mut chunk)?;
            if n > 0 {
                self.offset += n as u64;
                self.buf.extend_from_slice(&chunk[..n]);
                continue;
            }
            if !moved {
                // At the end: has the file been rotated (renamed away) or truncated?
                moved = match std::fs::metadata(&self.path) {
                    Ok(m) => m.ino() != self.inode || m.size() < self.offset,
                    Err(_) => false,
                };
                if moved {
                    // What reached the old file before the rename: read it to its end.
                    continue;
                }
                break;
            }
            // The old file is done; a partial last line goes with it (the collector writes
            // whole lines).
            self.switch_to(File::open(&self.path)?)?;
            moved = false;
        }
        Ok(polled)
    }

    fn switch_to(&mut self, file: File) -> std::io::Result<()> {
        self.inode = file.metadata()?.ino();
        self.file = Some(file);
        self.offset = 0;
        self.buf.clear();
        self.start = 0;
        self.discarding = false;
        Ok(())
    }
}

/// The `watch` command's options.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// The collector's JSONL file to follow (read from its start: a restart rebuilds the
    /// windows from what the file still holds).
    #[arg(long, env = "SWITCHYARD_MONITOR_SAMPLES", default_value = "samples.jsonl")]
    pub samples: PathBuf,
    /// The monitor's JSON config (docs/drift.md).
    #[arg(long, env = "SWITCHYARD_MONITOR_CONFIG")]
    pub config: PathBuf,
    /// Listener for `/metrics`, `/health` and `/v1/drift`.
    #[arg(long, env = "SWITCHYARD_MONITOR_ADDR", default_value = "127.0.0.1:9412")]
    pub listen: std::net::SocketAddr,
    /// Where references collected from a version's first rows are kept across restarts.
    #[arg(long, env = "SWITCHYARD_MONITOR_STATE", default_value = "monitor-state")]
    pub state: PathBuf,
    /// Lines longer than this are counted (`reason="oversized"`) and skipped.
    #[arg(long, env = "SWITCHYARD_MONITOR_MAX_LINE_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub max_line_bytes: usize,
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn encode_metrics(registry: &prometheus_client::registry::Registry) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, registry) {
        Ok(()) => {
            ([(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body)
                .into_response()
        }
        Err(_) => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics").into_response(),
    }
}

/// Runs until SIGTERM or ctrl-c.
pub async fn run(options: Options) -> anyhow::Result<()> {
    use anyhow::Context;
    use axum::routing::get;
    use prometheus_client::registry::Registry;

    let text = std::fs::read_to_string(&options.config)
        .with_context(|| format!("cannot read {}", options.config.display()))?;
    let config =
        Config::parse(&text).map_err(|p| anyhow::anyhow!("{}:\n  {}", options.config.display(), p.join("\n  ")))?;
    std::fs::create_dir_all(&options.state).with_context(|| format!("cannot create {}", options.state.display()))?;
    let metrics = Metrics::default();
    let mut registry = Registry::with_prefix("switchyard_drift");
    metrics.register(&mut registry);
    let every = Duration::from_secs_f64(config.evaluate_every_seconds);
    let mut monitor = Monitor::new(config, metrics.clone(), Some(options.state.clone()))
        .map_err(|p| anyhow::anyhow!("{}:\n  {}", options.config.display(), p.join("\n  ")))?;
    let results = Arc::new(Mutex::new(String::from("{}")));
    let stop = Arc::new(AtomicBool::new(false));
    let alive = Arc::new(AtomicBool::new(true));
    let worker = {
        let (results, stop, path, max_line) =
            (results.clone(), stop.clone(), options.samples.clone(), options.max_line_bytes);
        let alive = alive.clone();
        std::thread::Builder::new().name("drift".into()).spawn(move || {
            // Cleared however the thread ends, so /health says so.
            struct Alive(Arc<AtomicBool>);
            impl Drop for Alive {
                fn drop(&mut self) {
                    self.0.store(false, Ordering::Relaxed);
                }
            }
            let _alive = Alive(alive);
            let mut tail = Tail::new(path, max_line);
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                // A line that panics (a bug: none should) is counted and skipped, never fatal.
                let polled = match tail.poll(20_000, |line| {
                    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| monitor.ingest_line(line))).is_err() {
                        metrics.skip("panic");
                    }
                }) {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the samples file; retrying");
                        std::thread::sleep(Duration::from_secs(1));
                        Polled::default()
                    }
                };
                for _ in 0..polled.oversized {
                    metrics.skip("oversized");
                }
                let now = now_ms();
                monitor.update_ages(now);
                if Instant::now() >= next {
                    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| monitor.evaluate(now))).is_err() {
                        tracing::error!("an evaluation panicked (a bug): the windows are evaluated again next time");
                    }
                    if let (Ok(json), Ok(mut r)) = (serde_json::to_string(monitor.results()), results.lock()) {
                        *r = json;
                    }
                    next = Instant::now() + every;
                }
                if polled.lines == 0 {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        })?
    };
    let registry = Arc::new(registry);
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move { encode_metrics(&registry) }
            }),
        )
        .route(
            "/health",
            get(move || {
                let alive = alive.load(Ordering::Relaxed);
                async move {
                    if alive {
                        (axum::http::StatusCode::OK, "ok")
                    } else {
                        (axum::http::StatusCode::SERVICE_UNAVAILABLE, "the drift thread has stopped")
                    }
                }
            }),
        )
        .route(
            "/v1/drift",
            get(move || {
                let results = results.clone();
                async move {
                    let body = results.lock().map(|r| r.clone()).unwrap_or_else(|_| "{}".into());
                    ([(axum::http::header::CONTENT_TYPE, "application/json")], body)
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("cannot bind {}", options.listen))?;
    println!("switchyard-monitor listening: http://{} <- {}", listener.local_addr()?, options.samples.display());
    axum::serve(listener, app).with_graceful_shutdown(switchyard_runtime::shutdown_signal()).await?;
    stop.store(true, Ordering::Relaxed);
    match tokio::task::spawn_blocking(move || worker.join()).await {
        Ok(Ok(())) => Ok(()),
        _ => anyhow::bail!("the drift thread failed"),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::Tail;

    fn lines(tail: &mut Tail) -> (Vec<String>, usize) {
        let mut got = Vec::new();
        let polled = tail.poll(1000, |l| got.push(l.to_owned())).unwrap();
        (got, polled.oversized)
    }

    #[test]
    fn the_tail_waits_for_whole_lines_skips_long_ones_and_follows_a_rotation() {
        let dir = std::env::temp_dir().join(format!("switchyard-tail-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.jsonl");
        let mut tail = Tail::new(path.clone(), 64);
        assert_eq!(lines(&mut tail), (vec![], 0), "no file yet: nothing, no error");
        let mut f = std::fs::File::create(&path).unwrap();
        write!(f, "a\nb\npart").unwrap();
        assert_eq!(lines(&mut tail).0, ["a", "b"]);
        write!(f, "ial\n{}\nc\n", "x".repeat(200)).unwrap();
        assert_eq!(lines(&mut tail), (vec!["partial".to_owned(), "c".to_owned()], 1));
        // Rotation: a last line reaches the old file, then it is renamed and a new one begun.
        writeln!(f, "d").unwrap();
        std::fs::rename(&path, dir.join("s.jsonl.1")).unwrap();
        let mut g = std::fs::File::create(&path).unwrap();
        writeln!(g, "e").unwrap();
        assert_eq!(lines(&mut tail).0, ["d", "e"]);
        writeln!(g, "f").unwrap();
        assert_eq!(lines(&mut tail).0, ["f"]);
        // Truncated in place (copytruncate): read again from the start.
        drop(g);
        std::fs::write(&path, "g\n").unwrap();
        assert_eq!(lines(&mut tail).0, ["g"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn sample(version: &str, tensor: &str, shape: &str, data: &str) -> String {
        format!(
            r#"{{"schema":1,"model":"mlp","version":"{version}","start_unix_ms":1,"status":200,"request":{{"body":{{"inputs":[{{"name":"{tensor}","shape":{shape},"datatype":"FP32","data":{data}}}]}},"truncated":false}},"response":{{"body":{{"outputs":[]}},"truncated":false}}}}"#
        )
    }

    fn monitor(reference_rows: usize) -> (super::Monitor, super::Metrics) {
        let config = super::Config::parse(&format!(
            r#"{{"models": {{"mlp": {{"reference": {{"version": "v1", "rows": {reference_rows}}}, "windows": [{{"name": "w", "rows": 50}}]}}}}}}"#
        ))
        .unwrap();
        let metrics = super::Metrics::default();
        (super::Monitor::new(config, metrics.clone(), None).unwrap(), metrics)
    }

    fn skipped(m: &super::Metrics, reason: &str) -> u64 {
        m.skipped.get_or_create(&super::super::metrics::ReasonLabels { reason: reason.into() }).get()
    }

    #[test]
    fn shapes_a_client_made_up_are_skipped_not_trusted() {
        let (mut monitor, metrics) = monitor(5);
        for (shape, data) in [
            ("[1,4294967296,4294967296]", "[1]"),
            ("[1152921504606846976]", "[]"),
            ("[10000000000]", "[1,2]"),
            ("[2,0]", "[]"),
            ("[1, 9223372036854777856, 2, 1]", "[1,2]"),
            ("[-1, 2]", "[1,2]"),
        ] {
            monitor.ingest_line(&sample("v1", "f", shape, data));
        }
        assert_eq!(skipped(&metrics, "shape") + skipped(&metrics, "malformed"), 6);
        assert_eq!(skipped(&metrics, "panic"), 0);
        let long = "x".repeat(200);
        monitor.ingest_line(&sample("v1", &long, "[1,2]", "[1,2]"));
        assert_eq!(skipped(&metrics, "malformed"), 2, "a 200-byte tensor name is refused");
    }

    #[test]
    fn many_tensor_shapes_do_not_confuse_the_column_maps() {
        let (mut monitor, metrics) = monitor(3);
        // Past the reader's cache of names: freed names may reuse an address.
        for i in 0..5000 {
            monitor.ingest_line(&sample("v9", &format!("t{i}"), "[1,1]", "[1]"));
        }
        for k in 0..20 {
            monitor.ingest_line(&sample("v1", "f", "[1,6]", &format!("[{k},1,2,3,4,5]")));
        }
        assert_eq!(skipped(&metrics, "panic"), 0);
        monitor.evaluate(1);
        let w = &monitor.results()["mlp"].versions["v1"]["w"];
        // The reference (v1's first 3 rows) has f[0..6]; the first sample (t0, of v9) set the
        // columns before it: the windows took the reference's columns when it was complete.
        assert_eq!(w.evaluation.columns.len(), 6, "{:?}", w.evaluation.columns);
        assert!(w.evaluation.columns.iter().all(|c| c.error.is_none()), "{:?}", w.evaluation.columns);
        // v1's first two rows came before that, under the old columns: missing there.
        assert_eq!(w.evaluation.columns[1].current_rows, 18);
    }
}
