//! One evaluation: every reference column against the current data, Evidently's way, and the
//! dataset drift. The batch command and the streaming monitor both end here.

use serde::{Deserialize, Serialize};
use switchyard_drift::{ColumnDrift, DatasetDrift, Kind, Summary, column_drift, dataset_drift};

use super::config::Rules;
use super::table::{Cell, Table};

/// A column's reference, summarised once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReferenceColumn {
    pub name: String,
    pub kind: Kind,
    pub summary: Summary,
}

/// A reference: its columns in order, and where it came from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reference {
    pub source: String,
    pub rows: usize,
    pub columns: Vec<ReferenceColumn>,
}

impl Reference {
    /// Summarises a table read from a file; the config's kinds first, else the table's.
    pub fn from_table(source: String, table: &Table, rules: &Rules) -> Reference {
        let columns = table
            .columns
            .iter()
            .map(|name| {
                let kind = rules.columns.get(name).copied().unwrap_or_else(|| table.kind(name));
                let cells = table.get(name).unwrap_or(&[]);
                ReferenceColumn { name: name.clone(), kind, summary: summarise(cells.iter(), kind) }
            })
            .collect();
        Reference { source, rows: table.rows, columns }
    }

    /// Bytes its summaries hold.
    pub fn heap_bytes(&self) -> usize {
        self.columns.iter().map(|c| c.summary.heap_bytes() + c.name.capacity()).sum()
    }
}

pub fn summarise<'a>(cells: impl Iterator<Item = &'a Cell>, kind: Kind) -> Summary {
    match kind {
        Kind::Numerical => Summary::numerical(cells.map(Cell::number)),
        Kind::Categorical => Summary::categorical(cells.map(Cell::key)),
    }
}

/// One column's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct ColumnResult {
    pub column: String,
    pub kind: Kind,
    pub reference_rows: usize,
    pub current_rows: usize,
    #[serde(flatten)]
    pub drift: Option<ColumnDrift>,
    /// Why it was not tested (not enough data, no usable value, a test that needs numbers, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Fewer current values than `min_rows`: not judged, and never shown as drift.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub not_enough_data: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub columns: Vec<ColumnResult>,
    /// Over the columns judged.
    pub dataset: DatasetDrift,
    /// Values a column needs in the current data to be judged.
    pub min_rows: usize,
    /// Some column had enough (false: nothing was judged, and nothing may be called drift).
    pub enough_data: bool,
}

/// Tests each reference column against `current(name, kind)` (its summary, `None` when the
/// current data lacks the column); a column with fewer than `min_rows` current values is "not
/// enough data" instead.
pub fn evaluate(
    reference: &Reference,
    rules: &Rules,
    min_rows: usize,
    mut current: impl FnMut(&str, Kind) -> Option<Summary>,
) -> Evaluation {
    let mut columns = Vec::with_capacity(reference.columns.len());
    for col in &reference.columns {
        let (test, threshold) = rules.test(&col.name);
        let mut result = ColumnResult {
            column: col.name.clone(),
            kind: col.kind,
            reference_rows: col.summary.rows(),
            current_rows: 0,
            drift: None,
            error: None,
            not_enough_data: false,
        };
        match current(&col.name, col.kind) {
            None => result.error = Some("not in the current data".into()),
            Some(cur) if cur.rows() < min_rows => {
                result.current_rows = cur.rows();
                result.not_enough_data = true;
                result.error = Some(format!("not enough data: {} of the {min_rows} rows it needs", cur.rows()));
            }
            Some(cur) => {
                result.current_rows = cur.rows();
                match column_drift(&col.summary, &cur, test, threshold) {
                    Ok(d) => result.drift = Some(d),
                    Err(e) => result.error = Some(e.to_string()),
                }
            }
        }
        columns.push(result);
    }
    let dataset = dataset_drift(columns.iter().filter_map(|c| c.drift.map(|d| d.drifted)), rules.drift_share());
    let enough_data = columns.is_empty() || columns.iter().any(|c| !c.not_enough_data);
    Evaluation { columns, dataset, min_rows, enough_data }
}
