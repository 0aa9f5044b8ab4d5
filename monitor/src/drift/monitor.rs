//! The monitor's state and its rules: per model and version, the last rows in every
//! configured window, the reference (from a file, or collected from a version's first rows),
//! and every evaluation's metrics and results. No I/O but the reference store
//! ([`super::store`]); the drift thread ([`super::follow`]) feeds it lines, the server
//! ([`super::server`]) serves what it exports.
//!
//! Memory per model: `versions × max window rows × columns × 8 bytes` (numerical; a
//! categorical cell is a key, ~40 bytes) plus 8 bytes a row for its time, plus the reference:
//! `rows × columns × 8 bytes`. `switchyard_drift_memory_bytes` reports it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use switchyard_drift::{Key, Kind, Summary};

use super::config::{Config, ModelConfig, ReferenceConfig, Rules, WindowConfig};
use super::evaluate::{Evaluation, Reference, evaluate};
use super::metrics::{ColumnLabels, Metrics, ModelLabels, TestLabels, VersionLabels, WindowLabels};
use super::store::Store;
use super::table::{Cell, Names, Reader, Record, Skip, Table};

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
    maps: HashMap<usize, (Arc<Names>, Vec<Option<usize>>)>,
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
    store: Option<Store>,
    results: BTreeMap<String, ModelResult>,
}

impl Monitor {
    /// Reads file references and saved version references; every problem at once.
    pub fn new(config: Config, metrics: Metrics, state_dir: Option<PathBuf>) -> Result<Monitor, Vec<String>> {
        let store = state_dir.map(Store::new);
        let mut problems = Vec::new();
        let mut models = BTreeMap::new();
        for (name, m) in &config.models {
            match Model::new(name, m, config.rules(name), store.as_ref(), config.max_columns) {
                Ok(model) => {
                    models.insert(name.clone(), model);
                }
                Err(e) => problems.push(format!("models.{name}: {e}")),
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let mut monitor = Monitor { config, models, metrics, store, results: BTreeMap::new() };
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
        let wanted = self.config.models.get(model_name.as_str()).and_then(|m| m.tenant.as_deref());
        if let Some(tenant) = wanted
            && value.get("tenant").and_then(serde_json::Value::as_str) != Some(tenant)
        {
            self.metrics.skip("other_tenant");
            return;
        }
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

    /// Keeps a collected reference in the state directory, if there is one.
    fn save(&self, model: &str) {
        let (Some(store), Some(m), Some(ModelConfig { reference: ReferenceConfig::Version { version, rows }, .. })) =
            (&self.store, self.models.get(model), self.config.models.get(model))
        else {
            return;
        };
        let Some(reference) = &m.reference else { return };
        store.save(model, version, *rows, reference);
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
                    self.metrics.window_min_rows.get_or_create(&wl).set(w.min_rows() as i64);
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
                    let evaluation = evaluate(reference, &model.rules, w.min_rows(), |column, kind| {
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
                    if evaluation.enough_data {
                        self.metrics.dataset_share.get_or_create(&wl).set(d.share);
                        self.metrics.dataset_drifted.get_or_create(&wl).set(i64::from(d.drifted));
                        self.metrics.columns_drifted.get_or_create(&wl).set(d.drifted_columns as i64);
                    } else {
                        // Too few rows to judge (no column has a score either): no drift series,
                        // so nothing can alert on it; /v1/drift says "not enough data".
                        self.metrics.dataset_share.remove(&wl);
                        self.metrics.dataset_drifted.remove(&wl);
                        self.metrics.columns_drifted.remove(&wl);
                    }
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
        store: Option<&Store>,
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
                if let Some(reference) = store.and_then(|s| s.load(name, version, *rows)) {
                    model.schema = Some(Schema::of_reference(&reference, max_columns));
                    model.reference = Some(reference);
                } else {
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

#[cfg(test)]
mod tests {

    fn sample(version: &str, tensor: &str, shape: &str, data: &str) -> String {
        format!(
            r#"{{"schema":1,"model":"mlp","version":"{version}","start_unix_ms":1,"status":200,"request":{{"body":{{"inputs":[{{"name":"{tensor}","shape":{shape},"datatype":"FP32","data":{data}}}]}},"truncated":false}},"response":{{"body":{{"outputs":[]}},"truncated":false}}}}"#
        )
    }

    fn monitor(reference_rows: usize) -> (super::Monitor, super::Metrics) {
        let config = super::Config::parse(&format!(
            r#"{{"models": {{"mlp": {{"reference": {{"version": "v1", "rows": {reference_rows}}}, "windows": [{{"name": "w", "rows": 50, "min_rows": 10}}]}}}}}}"#
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
    fn a_window_below_its_min_rows_is_not_enough_data_and_exports_no_drift() {
        let (mut monitor, metrics) = monitor(3);
        let wl = super::WindowLabels { model: "mlp".into(), version: "v1".into(), window: "w".into() };
        for k in 0..9 {
            monitor.ingest_line(&sample("v1", "f", "[1,2]", &format!("[{k},100]")));
        }
        monitor.evaluate(1);
        let w = &monitor.results()["mlp"].versions["v1"]["w"];
        assert!(!w.evaluation.enough_data && !w.evaluation.dataset.drifted);
        assert!(w.evaluation.columns.iter().all(|c| c.not_enough_data && c.drift.is_none()));
        assert!(w.evaluation.columns[0].error.as_deref().unwrap().contains("not enough data: 9 of the 10 rows"));
        let mut text = String::new();
        let mut registry = prometheus_client::registry::Registry::with_prefix("switchyard_drift");
        metrics.register(&mut registry);
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("switchyard_drift_window_min_rows{model=\"mlp\",version=\"v1\",window=\"w\"} 10"),
            "{text}"
        );
        assert!(
            !text.contains("switchyard_drift_dataset_drifted{") && !text.contains("switchyard_drift_score{"),
            "{text}"
        );
        // One more row: judged, and exported.
        monitor.ingest_line(&sample("v1", "f", "[1,2]", "[9,100]"));
        monitor.evaluate(2);
        let w = &monitor.results()["mlp"].versions["v1"]["w"];
        assert!(w.evaluation.enough_data && w.evaluation.columns.iter().all(|c| !c.not_enough_data));
        assert_eq!(metrics.dataset_drifted.get_or_create(&wl).get(), i64::from(w.evaluation.dataset.drifted));
    }

    #[test]
    fn a_model_scoped_to_a_tenant_reads_only_that_tenants_samples() {
        let config = super::Config::parse(
            r#"{"models": {"mlp": {"tenant": "team-a", "reference": {"version": "v1", "rows": 2}, "windows": [{"name": "w", "rows": 50, "min_rows": 1}]}}}"#,
        )
        .unwrap();
        let metrics = super::Metrics::default();
        let mut monitor = super::Monitor::new(config, metrics.clone(), None).unwrap();
        let of = |tenant: Option<&str>, k: u32| {
            let line = sample("v1", "f", "[1,2]", &format!("[{k},1]"));
            match tenant {
                Some(t) => line.replacen("\"status\"", &format!("\"tenant\":\"{t}\",\"status\""), 1),
                None => line,
            }
        };
        for k in 0..3 {
            monitor.ingest_line(&of(Some("team-a"), k));
            monitor.ingest_line(&of(Some("team-b"), 100 + k));
            monitor.ingest_line(&of(None, 200 + k));
        }
        assert_eq!(skipped(&metrics, "other_tenant"), 6);
        monitor.evaluate(1);
        let w = &monitor.results()["mlp"].versions["v1"]["w"];
        // Reference: team-a's first 2 rows; the window: its 3.
        assert_eq!(w.evaluation.columns[0].current_rows, 3);
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
