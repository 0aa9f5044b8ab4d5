//! What the monitor reads, turned into rows of named columns. One reader for every source —
//! the collector's sample envelopes, V2 requests (and responses), row arrays, named-column
//! objects — so the batch `compare` and the streaming monitor see the same numbers.
//!
//! - A tensor `[N, ...]` gives N rows. Its columns are `NAME[i]` over the flattened row
//!   (`NAME` alone for a `[N]` tensor), or the names the config gives it. BYTES and BOOL
//!   tensors are categorical, the others numerical (the config can override each column).
//! - A tensor with more than `max_tensor_columns` elements per row (an image) is summarised per
//!   row instead: `NAME.mean[c]` and `NAME.std[c]` per channel (dimension 1) and
//!   `NAME.proj[k]`, k < 8, a fixed random ±1 projection scaled by 1/√elements.
//! - Outputs are columns too; a floating output with 2 or more elements per row also gives
//!   `NAME.class`, its arg-max, categorical (the predicted class).
//! - A JSON array of scalars is one row, columns `features[i]`; any other object is one row
//!   whose keys are columns (an array value is a tensor row).

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value as Json;
use switchyard_drift::{Key, Kind};

/// Elements per row above which a tensor is summarised rather than split into columns.
pub const DEFAULT_MAX_TENSOR_COLUMNS: usize = 1024;
/// Random projections per summarised tensor.
pub const PROJECTIONS: usize = 8;
/// Channels a summarised tensor gets a mean and std each for.
pub const MAX_CHANNELS: usize = 64;
/// A tensor or key name longer than this is refused (names become label values).
pub const MAX_NAME_BYTES: usize = 128;
/// Categorical text is compared by its first this many bytes (a window keeps every value).
pub const MAX_TEXT_BYTES: usize = 256;
/// Columns a [`Table`] keeps; further ones are counted in `columns_dropped`.
pub const MAX_TABLE_COLUMNS: usize = 4096;

/// One cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Num(f64),
    Bool(bool),
    Text(String),
    Missing,
}

impl Cell {
    /// As a number for a numerical column; text and missing cells are NaN (dropped, counted).
    pub fn number(&self) -> f64 {
        match self {
            Cell::Num(x) => *x,
            Cell::Bool(b) => f64::from(u8::from(*b)),
            Cell::Text(_) | Cell::Missing => f64::NAN,
        }
    }

    /// As a category: numbers and booleans by value (`true == 1`, as pandas counts them).
    pub fn key(&self) -> Option<Key> {
        match self {
            Cell::Num(x) => Key::num(*x),
            Cell::Bool(b) => Key::num(f64::from(u8::from(*b))),
            Cell::Text(s) => Some(Key::Text(truncated(s).to_owned())),
            Cell::Missing => None,
        }
    }

    fn is_number(&self) -> bool {
        matches!(self, Cell::Num(_))
    }
}

/// The first [`MAX_TEXT_BYTES`] of `s`, cut at a character boundary.
fn truncated(s: &str) -> &str {
    if s.len() <= MAX_TEXT_BYTES {
        return s;
    }
    let mut end = MAX_TEXT_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Columns named by a tensor (shared between the rows and samples that have the same shape).
#[derive(Debug)]
pub struct Names {
    pub names: Vec<String>,
    /// The kind the source implies (a tensor's datatype); `None`: infer from the values.
    pub kinds: Vec<Option<Kind>>,
}

/// Rows from one tensor or object: `rows × names.len()` cells, row-major.
#[derive(Debug)]
pub struct Block {
    pub names: Arc<Names>,
    pub rows: usize,
    pub cells: Vec<Cell>,
}

/// Why a record gave no rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Not JSON, or not a shape the reader knows.
    Malformed,
    /// A tensor's data does not fill its shape.
    Shape,
    /// A body cut at the filter's size cap, or its tensors sent as binary.
    Truncated,
    /// A request that did not succeed (its answer says nothing about the model's inputs).
    NotOk,
    /// A shadow-comparison record (not a sample).
    Comparison,
    /// A record with no tensor or value in it.
    Empty,
    /// A gRPC call's sample: its body is protobuf (base64), which the monitor does not
    /// decode yet.
    Protobuf,
}

impl Skip {
    pub fn label(self) -> &'static str {
        match self {
            Skip::Malformed => "malformed",
            Skip::Shape => "shape",
            Skip::Truncated => "truncated",
            Skip::NotOk => "not_ok",
            Skip::Comparison => "comparison",
            Skip::Empty => "empty",
            Skip::Protobuf => "protobuf",
        }
    }
}

/// A record read: the model and version (samples only), its time, and its rows.
#[derive(Debug)]
pub struct Record {
    pub model: Option<String>,
    pub version: Option<String>,
    pub unix_ms: Option<u64>,
    pub blocks: Vec<Block>,
}

/// Reads records; caches column names per tensor shape so a stream of samples does not build
/// them again for each one.
#[derive(Debug, Default)]
pub struct Reader {
    /// Column names given by the config, per tensor.
    pub names: HashMap<String, Vec<String>>,
    pub max_tensor_columns: usize,
    cache: HashMap<(String, usize, bool, bool), Arc<Names>>,
}

impl Reader {
    pub fn new(names: HashMap<String, Vec<String>>, max_tensor_columns: usize) -> Reader {
        Reader { names, max_tensor_columns, cache: HashMap::new() }
    }

    /// One JSONL line.
    pub fn line(&mut self, line: &str) -> Result<Record, Skip> {
        let value: Json = serde_json::from_str(line).map_err(|_| Skip::Malformed)?;
        self.record(&value)
    }

    pub fn record(&mut self, value: &Json) -> Result<Record, Skip> {
        let mut record = Record { model: None, version: None, unix_ms: None, blocks: Vec::new() };
        match value {
            Json::Object(o) if o.get("kind").and_then(Json::as_str) == Some("comparison") => {
                return Err(Skip::Comparison);
            }
            Json::Object(o) if o.contains_key("schema") && o.contains_key("request") => {
                record.model = o.get("model").and_then(Json::as_str).map(str::to_owned);
                record.version = o.get("version").and_then(Json::as_str).map(str::to_owned);
                record.unix_ms = o.get("start_unix_ms").and_then(Json::as_u64);
                if o.get("status").and_then(Json::as_u64) != Some(200) {
                    return Err(Skip::NotOk);
                }
                for (side, key) in [("request", "inputs"), ("response", "outputs")] {
                    let Some(s) = o.get(side) else { return Err(Skip::Malformed) };
                    if s.get("encoding").and_then(Json::as_str) == Some("protobuf") {
                        return Err(Skip::Protobuf);
                    }
                    if s.get("truncated") == Some(&Json::Bool(true)) || s.get("binary_bytes_omitted").is_some() {
                        return Err(Skip::Truncated);
                    }
                    match s.get("body") {
                        Some(body @ Json::Object(_)) => self.tensors(body.get(key), key == "outputs", &mut record)?,
                        _ => return Err(Skip::Truncated),
                    }
                }
            }
            Json::Object(o) if o.contains_key("inputs") || o.contains_key("outputs") => {
                self.tensors(o.get("inputs"), false, &mut record)?;
                self.tensors(o.get("outputs"), true, &mut record)?;
            }
            Json::Object(o) => {
                for (name, v) in o {
                    if name.len() > MAX_NAME_BYTES {
                        return Err(Skip::Malformed);
                    }
                    match v {
                        Json::Array(items) => {
                            let mut flat = Vec::new();
                            flatten(items, &mut flat);
                            let width = flat.len();
                            let names = self.names_for(name, width, None, false);
                            self.push(&mut record, names, 1, flat, width)?;
                        }
                        v => {
                            let names = self.names_for(name, 0, None, false);
                            record.blocks.push(Block { names, rows: 1, cells: vec![cell(v)] });
                        }
                    }
                }
            }
            Json::Array(items) => {
                let mut flat = Vec::new();
                flatten(items, &mut flat);
                let width = flat.len();
                if width == 0 {
                    return Err(Skip::Empty);
                }
                let names = self.names_for("features", width, None, false);
                self.push(&mut record, names, 1, flat, width)?;
            }
            _ => return Err(Skip::Malformed),
        }
        if record.blocks.is_empty() {
            return Err(Skip::Empty);
        }
        Ok(record)
    }

    fn tensors(&mut self, tensors: Option<&Json>, outputs: bool, record: &mut Record) -> Result<(), Skip> {
        let Some(tensors) = tensors else { return Ok(()) };
        let Json::Array(tensors) = tensors else { return Err(Skip::Malformed) };
        for t in tensors {
            let (Some(name), Some(shape)) =
                (t.get("name").and_then(Json::as_str), t.get("shape").and_then(Json::as_array))
            else {
                return Err(Skip::Malformed);
            };
            let Some(data) = t.get("data").and_then(Json::as_array) else {
                // Binary tensor extension: the data travelled after the JSON header.
                return Err(Skip::Truncated);
            };
            if name.len() > MAX_NAME_BYTES {
                return Err(Skip::Malformed);
            }
            let dims: Option<Vec<usize>> =
                shape.iter().map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok())).collect();
            let Some(dims) = dims else { return Err(Skip::Malformed) };
            let rows = dims.first().copied().unwrap_or(1);
            // Checked: a shape is the client's word, the data what it sent (bounded by the line).
            let Some(width) = dims.iter().skip(1).try_fold(1usize, |a, d| a.checked_mul(*d)) else {
                return Err(Skip::Shape);
            };
            let datatype = t.get("datatype").and_then(Json::as_str).unwrap_or("");
            let categorical = matches!(datatype, "BYTES" | "BOOL");
            let mut flat = Vec::new();
            flatten(data, &mut flat);
            if Some(flat.len()) != rows.checked_mul(width) {
                return Err(Skip::Shape);
            }
            if rows == 0 {
                continue;
            }
            if width == 0 {
                return Err(Skip::Shape);
            }
            if width > self.max_tensor_columns && categorical {
                // Text cannot be summarised by moments; so many columns would be unbounded.
                return Err(Skip::Shape);
            }
            if width > self.max_tensor_columns {
                // Channels: dimension 1 of an image-like tensor; past MAX_CHANNELS, one.
                let channels =
                    dims.get(1).copied().filter(|c| dims.len() >= 3 && (1..=MAX_CHANNELS).contains(c)).unwrap_or(1);
                let names = self.summary_names(name, width, channels);
                let mut cells = Vec::with_capacity(rows * names.names.len());
                for row in flat.chunks(width) {
                    summarise(row, channels, &mut cells);
                }
                record.blocks.push(Block { names, rows, cells });
                continue;
            }
            let kind = Some(if categorical { Kind::Categorical } else { Kind::Numerical });
            let class = outputs && width >= 2 && (datatype.starts_with("FP") || datatype == "BF16");
            let one_d = dims.len() == 1;
            let names = self.names_for(name, if one_d { 0 } else { width }, kind, class);
            if class {
                let mut cells = Vec::with_capacity(rows * (width + 1));
                for row in flat.chunks(width) {
                    cells.extend(row.iter().cloned());
                    cells.push(argmax(row));
                }
                record.blocks.push(Block { names, rows, cells });
            } else {
                self.push(record, names, rows, flat, width)?;
            }
        }
        Ok(())
    }

    fn push(
        &self,
        record: &mut Record,
        names: Arc<Names>,
        rows: usize,
        cells: Vec<Cell>,
        width: usize,
    ) -> Result<(), Skip> {
        if width == 0 || cells.len() != rows * width {
            return Err(Skip::Shape);
        }
        record.blocks.push(Block { names, rows, cells });
        Ok(())
    }

    /// `NAME[i]` (or the configured names) for a tensor of `width` elements per row; `NAME`
    /// alone for a scalar (`width` 0); `NAME.class` after them for a classifier's output.
    fn names_for(&mut self, name: &str, width: usize, kind: Option<Kind>, class: bool) -> Arc<Names> {
        let key = (name.to_owned(), width, class, kind == Some(Kind::Categorical));
        if let Some(n) = self.cache.get(&key) {
            return n.clone();
        }
        let mut names: Vec<String> = match self.names.get(name) {
            Some(given) if given.len() == width.max(1) => given.clone(),
            _ if width == 0 => vec![name.to_owned()],
            _ => (0..width).map(|i| format!("{name}[{i}]")).collect(),
        };
        let mut kinds = vec![kind; names.len()];
        if class {
            names.push(format!("{name}.class"));
            kinds.push(Some(Kind::Categorical));
        }
        let n = Arc::new(Names { names, kinds });
        if self.cache.len() < 4096 {
            self.cache.insert(key, n.clone());
        }
        n
    }

    fn summary_names(&mut self, name: &str, width: usize, channels: usize) -> Arc<Names> {
        let key = (format!("{name}#summary{channels}"), width, false, false);
        if let Some(n) = self.cache.get(&key) {
            return n.clone();
        }
        let mut names = Vec::new();
        for c in 0..channels {
            names.push(format!("{name}.mean[{c}]"));
        }
        for c in 0..channels {
            names.push(format!("{name}.std[{c}]"));
        }
        for k in 0..PROJECTIONS {
            names.push(format!("{name}.proj[{k}]"));
        }
        let kinds = vec![Some(Kind::Numerical); names.len()];
        let n = Arc::new(Names { names, kinds });
        if self.cache.len() < 4096 {
            self.cache.insert(key, n.clone());
        }
        n
    }
}

fn cell(v: &Json) -> Cell {
    match v {
        Json::Number(n) => n.as_f64().map_or(Cell::Missing, Cell::Num),
        Json::Bool(b) => Cell::Bool(*b),
        Json::String(s) => Cell::Text(s.clone()),
        _ => Cell::Missing,
    }
}

/// Nested arrays, row-major, into one list.
fn flatten(items: &[Json], out: &mut Vec<Cell>) {
    for v in items {
        match v {
            Json::Array(inner) => flatten(inner, out),
            v => out.push(cell(v)),
        }
    }
}

fn argmax(row: &[Cell]) -> Cell {
    let mut best: Option<(usize, f64)> = None;
    for (i, c) in row.iter().enumerate() {
        let x = c.number();
        if x.is_nan() {
            return Cell::Missing;
        }
        if best.is_none_or(|(_, b)| x > b) {
            best = Some((i, x));
        }
    }
    best.map_or(Cell::Missing, |(i, _)| Cell::Num(i as f64))
}

/// Per channel mean and population std, then the projections, of one row of a large tensor.
fn summarise(row: &[Cell], channels: usize, out: &mut Vec<Cell>) {
    let per = row.len() / channels.max(1);
    let values: Vec<f64> = row.iter().map(Cell::number).collect();
    let mut stds = Vec::with_capacity(channels);
    for c in 0..channels {
        let ch = &values[c * per..(c + 1) * per];
        let n = ch.len() as f64;
        let mean = ch.iter().sum::<f64>() / n;
        let var = ch.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
        out.push(Cell::Num(mean));
        stds.push(Cell::Num(var.sqrt()));
    }
    out.extend(stds);
    let scale = 1.0 / (values.len() as f64).sqrt();
    for k in 0..PROJECTIONS {
        let mut acc = 0.0;
        for (i, x) in values.iter().enumerate() {
            acc += if sign(k, i) { *x } else { -*x };
        }
        out.push(Cell::Num(acc * scale));
    }
}

/// The projection's fixed ±1 entry for (k, i): a SplitMix64 hash, so every process and
/// restart projects the same way.
fn sign(k: usize, i: usize) -> bool {
    let mut z = ((k as u64) << 40 ^ i as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) & 1 == 1
}

/// Column-major table of every row read from a file (the batch command and file references).
#[derive(Debug, Default)]
pub struct Table {
    /// Columns beyond [`MAX_TABLE_COLUMNS`] that were not kept.
    pub columns_dropped: usize,
    pub columns: Vec<String>,
    pub kinds: Vec<Option<Kind>>,
    pub cells: Vec<Vec<Cell>>,
    pub rows: usize,
    index: HashMap<String, usize>,
}

impl Table {
    /// Appends a record's rows; columns first seen here are missing in earlier rows.
    pub fn push(&mut self, record: &Record) {
        let rows = record.blocks.iter().map(|b| b.rows).max().unwrap_or(0);
        for b in &record.blocks {
            let width = b.names.names.len();
            for (j, name) in b.names.names.iter().enumerate() {
                let Some(col) = self.column(name, b.names.kinds[j]) else { continue };
                let cells = &mut self.cells[col];
                cells.resize(self.rows, Cell::Missing);
                cells.extend(b.cells.iter().skip(j).step_by(width).cloned());
            }
        }
        self.rows += rows;
        for c in &mut self.cells {
            c.resize(self.rows, Cell::Missing);
        }
    }

    fn column(&mut self, name: &str, kind: Option<Kind>) -> Option<usize> {
        if let Some(i) = self.index.get(name) {
            return Some(*i);
        }
        if self.columns.len() >= MAX_TABLE_COLUMNS {
            self.columns_dropped += 1;
            return None;
        }
        self.columns.push(name.to_owned());
        self.kinds.push(kind);
        self.cells.push(Vec::new());
        self.index.insert(name.to_owned(), self.columns.len() - 1);
        Some(self.columns.len() - 1)
    }

    /// Reads a JSONL file; `keep` chooses records (a model or version of a samples file).
    /// Lines that give no rows are counted by reason, never fatal; a line over 64 MiB is
    /// counted `oversized` and skipped.
    pub fn read(
        path: &std::path::Path,
        reader: &mut Reader,
        keep: impl Fn(&Record) -> bool,
    ) -> std::io::Result<(Table, std::collections::BTreeMap<&'static str, u64>)> {
        use std::io::{BufRead, Read};
        const MAX_LINE: u64 = 64 * 1024 * 1024;
        let mut file = std::io::BufReader::new(std::fs::File::open(path)?);
        let (mut table, mut skipped) = (Table::default(), std::collections::BTreeMap::new());
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = std::io::Read::take(file.by_ref(), MAX_LINE).read_until(b'\n', &mut line)?;
            if n == 0 {
                break;
            }
            if !line.ends_with(b"\n") && n as u64 == MAX_LINE {
                *skipped.entry("oversized").or_insert(0) += 1;
                // Drop the rest of the line.
                let mut rest = Vec::new();
                while !rest.ends_with(b"\n") {
                    rest.clear();
                    if std::io::Read::take(file.by_ref(), MAX_LINE).read_until(b'\n', &mut rest)? == 0 {
                        break;
                    }
                }
                continue;
            }
            let Ok(text) = std::str::from_utf8(&line) else {
                *skipped.entry(Skip::Malformed.label()).or_insert(0) += 1;
                continue;
            };
            if text.trim().is_empty() {
                continue;
            }
            match reader.line(text) {
                Ok(r) if keep(&r) => table.push(&r),
                Ok(_) => *skipped.entry("filtered").or_insert(0) += 1,
                Err(s) => *skipped.entry(s.label()).or_insert(0) += 1,
            }
        }
        Ok((table, skipped))
    }

    /// Keeps the first `rows` rows.
    pub fn truncate(&mut self, rows: usize) {
        if rows < self.rows {
            self.rows = rows;
            for c in &mut self.cells {
                c.truncate(rows);
            }
        }
    }

    pub fn get(&self, name: &str) -> Option<&[Cell]> {
        self.index.get(name).map(|i| self.cells[*i].as_slice())
    }

    /// The kind a column gets when the config does not say: the source's (a tensor's
    /// datatype), else Evidently's rule — numerical when every value present is a number.
    pub fn kind(&self, name: &str) -> Kind {
        let Some(&i) = self.index.get(name) else { return Kind::Numerical };
        self.kinds[i].unwrap_or_else(|| infer(&self.cells[i]))
    }
}

/// Numerical when every cell present is a number.
pub fn infer(cells: &[Cell]) -> Kind {
    if cells.iter().all(|c| c.is_number() || *c == Cell::Missing) { Kind::Numerical } else { Kind::Categorical }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader() -> Reader {
        Reader::new(HashMap::new(), DEFAULT_MAX_TENSOR_COLUMNS)
    }

    #[test]
    fn a_sample_gives_input_and_prediction_columns() {
        let line = r#"{"schema":1,"model":"mlp","version":"v2","start_unix_ms":5,"status":200,
            "request":{"body":{"inputs":[{"name":"features","shape":[2,3],"datatype":"FP32","data":[[1,2,3],[4,5,6]]}]},"truncated":false},
            "response":{"body":{"outputs":[{"name":"probabilities","shape":[2,2],"datatype":"FP32","data":[0.2,0.8,0.9,0.1]}]},"truncated":false}}"#;
        let mut t = Table::default();
        let r = reader().line(&line.replace('\n', "")).unwrap();
        assert_eq!((r.model.as_deref(), r.version.as_deref(), r.unix_ms), (Some("mlp"), Some("v2"), Some(5)));
        t.push(&r);
        assert_eq!(
            t.columns,
            [
                "features[0]",
                "features[1]",
                "features[2]",
                "probabilities[0]",
                "probabilities[1]",
                "probabilities.class"
            ]
        );
        assert_eq!(t.get("features[1]").unwrap(), &[Cell::Num(2.0), Cell::Num(5.0)]);
        assert_eq!(t.get("probabilities.class").unwrap(), &[Cell::Num(1.0), Cell::Num(0.0)]);
        assert_eq!(t.kind("probabilities.class"), Kind::Categorical);
    }

    #[test]
    fn what_cannot_be_read_says_why() {
        let mut r = reader();
        assert_eq!(r.line("{not json").unwrap_err(), Skip::Malformed);
        assert_eq!(r.line(r#"{"kind":"comparison","schema":1}"#).unwrap_err(), Skip::Comparison);
        assert_eq!(
            r.line(r#"{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[1,2,3]}]}"#).unwrap_err(),
            Skip::Shape
        );
        let not_ok = r#"{"schema":1,"model":"m","version":"v","status":503,"request":{"body":null},"response":null}"#;
        assert_eq!(r.line(not_ok).unwrap_err(), Skip::NotOk);
        let grpc = r#"{"schema":1,"model":"m","version":"v","status":200,"request":{"body":"AAAAAAUKA21scA==","encoding":"protobuf","truncated":false},"response":{"body":null,"encoding":"protobuf"}}"#;
        assert_eq!(r.line(grpc).unwrap_err(), Skip::Protobuf);
        let cut = r#"{"schema":1,"model":"m","version":"v","status":200,"request":{"body":"{\"inputs\":[","truncated":true},"response":{"body":{}}}"#;
        assert_eq!(r.line(cut).unwrap_err(), Skip::Truncated);
        assert_eq!(r.line("{}").unwrap_err(), Skip::Empty);
        assert_eq!(r.line("42").unwrap_err(), Skip::Malformed);
    }

    #[test]
    fn rows_and_named_objects_and_configured_names() {
        let mut r = Reader::new(HashMap::from([("features".to_owned(), vec!["a".to_owned(), "b".to_owned()])]), 1024);
        let mut t = Table::default();
        t.push(&r.line("[1, 2]").unwrap());
        t.push(&r.line(r#"{"a": 3, "colour": "red", "ok": true}"#).unwrap());
        assert_eq!(t.columns, ["a", "b", "colour", "ok"]);
        assert_eq!(t.get("b").unwrap(), &[Cell::Num(2.0), Cell::Missing]);
        assert_eq!(
            (t.kind("a"), t.kind("colour"), t.kind("ok")),
            (Kind::Numerical, Kind::Categorical, Kind::Categorical)
        );
    }

    #[test]
    fn an_image_is_summarised_per_channel_and_projected() {
        let data: Vec<f64> = (0..2 * 3 * 40 * 40).map(|i| f64::from(i % 7)).collect();
        let line =
            serde_json::json!({"inputs": [{"name": "x", "shape": [2, 3, 40, 40], "datatype": "FP32", "data": data}]});
        let rec = reader().record(&line).unwrap();
        assert_eq!(rec.blocks[0].rows, 2);
        assert_eq!(rec.blocks[0].names.names.len(), 3 + 3 + PROJECTIONS);
        assert_eq!(rec.blocks[0].names.names[4], "x.std[1]");
        // The same row projects the same way every time.
        let again = reader().record(&line).unwrap();
        assert_eq!(rec.blocks[0].cells, again.blocks[0].cells);
    }
}
