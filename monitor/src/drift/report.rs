//! An evaluation as a text table, JSON, or a self-contained HTML page (no script, no network):
//! the table, then per column a reference-vs-current histogram in inline SVG.

use std::fmt::Write as _;

use serde::Serialize;
use switchyard_drift::{Kind, Summary, binned, sturges_edges, union_keys};

use super::evaluate::{ColumnResult, Evaluation};

/// The shares a histogram shows: Evidently's own bins (Sturges edges over both sides for
/// numerical columns with more than 20 distinct reference values, else one bar per value).
#[derive(Debug, Clone, Serialize)]
pub struct Histogram {
    pub labels: Vec<String>,
    pub reference: Vec<f64>,
    pub current: Vec<f64>,
}

/// Bars past this many are left out of a histogram (and the page says so).
const MAX_BARS: usize = 40;

pub fn histogram(reference: &Summary, current: &Summary) -> Histogram {
    let (r, c) = binned(reference, current, false);
    let labels = if reference.kind == Kind::Numerical && reference.unique() > 20 {
        sturges_edges(reference, current).windows(2).map(|w| format!("{:.4}–{:.4}", w[0], w[1])).collect()
    } else {
        union_keys(reference, current).iter().map(ToString::to_string).collect()
    };
    Histogram { labels, reference: r, current: c }
}

/// Six decimals, or three significant digits for the tiny p-values of a clear drift.
fn score_text(x: f64) -> String {
    if x != 0.0 && x.abs() < 1e-4 { format!("{x:.3e}") } else { format!("{x:.6}") }
}

fn fmt_score(c: &ColumnResult) -> (String, String, String, String) {
    match (&c.drift, &c.error) {
        (Some(d), _) => (
            d.test.to_string(),
            score_text(d.score),
            format!("{}", d.threshold),
            if d.drifted { "DRIFT".into() } else { "ok".into() },
        ),
        (None, e) => ("-".into(), "-".into(), "-".into(), e.clone().unwrap_or_default()),
    }
}

pub fn text(e: &Evaluation) -> String {
    let width = e.columns.iter().map(|c| c.column.len()).max().unwrap_or(6).max(6);
    let mut out = format!(
        "{:<width$}  {:<11}  {:<13}  {:>12}  {:>9}  {:>8}  {:>8}  result\n",
        "column", "kind", "test", "score", "threshold", "ref rows", "cur rows"
    );
    for c in &e.columns {
        let (test, score, threshold, result) = fmt_score(c);
        let kind = match c.kind {
            Kind::Numerical => "numerical",
            Kind::Categorical => "categorical",
        };
        let _ = writeln!(
            out,
            "{:<width$}  {kind:<11}  {test:<13}  {score:>12}  {threshold:>9}  {:>8}  {:>8}  {result}",
            c.column, c.reference_rows, c.current_rows
        );
    }
    let d = &e.dataset;
    if !e.enough_data {
        let _ = writeln!(out, "dataset drift: not enough data (no column has the {} rows it needs)", e.min_rows);
        return out;
    }
    let _ = writeln!(
        out,
        "dataset drift: {} ({} of {} columns drifted, share {:.3}, threshold {})",
        if d.drifted { "YES" } else { "no" },
        d.drifted_columns,
        d.columns,
        d.share,
        d.drift_share
    );
    out
}

const PAGE: &str = include_str!("../../templates/drift-report.html");

/// The report template failed to render (a mistake in the template).
#[derive(Debug, thiserror::Error)]
#[error("the drift report template (monitor/templates/drift-report.html): {0}")]
pub struct TemplateError(#[from] minijinja::Error);

/// One bar of a histogram, placed.
#[derive(Serialize)]
struct Bar {
    class: &'static str,
    x: String,
    y: String,
    width: String,
    height: String,
    label: String,
    share: String,
}

/// A column's histogram as the template draws it.
#[derive(Serialize)]
struct Chart {
    width: f64,
    height: f64,
    pad: f64,
    axis_y: f64,
    last_x: f64,
    bars: Vec<Bar>,
    first: Option<String>,
    last: Option<String>,
    shown: usize,
    hidden: usize,
}

fn chart(h: &Histogram) -> Chart {
    let bars = h.labels.len().min(MAX_BARS);
    let (w, ht, pad) = (480.0, 140.0, 20.0);
    let shown = |v: &[f64]| v.iter().take(bars).copied().collect::<Vec<_>>();
    let (reference, current) = (shown(&h.reference), shown(&h.current));
    let max = reference.iter().chain(&current).copied().fold(0.0f64, f64::max).max(1e-12);
    let slot = (w - 2.0 * pad) / bars.max(1) as f64;
    let mut placed = Vec::with_capacity(2 * bars);
    for (i, label) in h.labels.iter().take(bars).enumerate() {
        let x = pad + i as f64 * slot;
        let sides = [(reference.get(i), "ref"), (current.get(i), "cur")];
        for (k, (share, class)) in sides.into_iter().enumerate() {
            let share = share.copied().unwrap_or(0.0);
            let bh = share / max * ht;
            placed.push(Bar {
                class,
                x: format!("{:.1}", x + k as f64 * slot / 2.0),
                y: format!("{:.1}", ht - bh + 5.0),
                width: format!("{:.1}", (slot / 2.0 - 1.0).max(0.5)),
                height: format!("{bh:.1}"),
                label: label.clone(),
                share: format!("{share:.4}"),
            });
        }
    }
    Chart {
        width: w,
        height: ht + 30.0,
        pad,
        axis_y: ht + 22.0,
        last_x: w - pad,
        bars: placed,
        first: h.labels.first().cloned(),
        last: h.labels.get(bars.saturating_sub(1)).cloned(),
        shown: bars,
        hidden: h.labels.len() - bars,
    }
}

/// A row of the table, and its column's chart.
#[derive(Serialize)]
struct Row {
    column: String,
    kind: String,
    test: String,
    score: String,
    threshold: String,
    reference_rows: usize,
    current_rows: usize,
    result: String,
    drifted: bool,
    not_enough_data: bool,
    chart: Option<Chart>,
}

/// The page: `histograms[i]` belongs to `e.columns[i]` (`None`: nothing to draw). Every value
/// is escaped by the template engine (the file name ends in `.html`).
pub fn html(e: &Evaluation, title: &str, histograms: &[Option<Histogram>]) -> Result<String, TemplateError> {
    let mut env = minijinja::Environment::new();
    env.set_syntax(minijinja::syntax::SyntaxConfig::builder().trim_blocks(true).lstrip_blocks(true).build()?);
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.add_template("drift-report.html", PAGE)?;
    let columns: Vec<Row> = e
        .columns
        .iter()
        .zip(histograms.iter().map(Some).chain(std::iter::repeat(None)))
        .map(|(c, h)| {
            let (test, score, threshold, result) = fmt_score(c);
            Row {
                column: c.column.clone(),
                kind: format!("{:?}", c.kind),
                test,
                score,
                threshold,
                reference_rows: c.reference_rows,
                current_rows: c.current_rows,
                result,
                drifted: c.drift.is_some_and(|d| d.drifted),
                not_enough_data: c.not_enough_data,
                chart: h.and_then(Option::as_ref).map(chart),
            }
        })
        .collect();
    let d = &e.dataset;
    let dataset = minijinja::context! {
        drifted => d.drifted,
        drifted_columns => d.drifted_columns,
        columns => d.columns,
        share => format!("{:.3}", d.share),
        drift_share => d.drift_share,
        enough_data => e.enough_data,
        min_rows => e.min_rows,
    };
    let page = env.get_template("drift-report.html")?.render(minijinja::context! {
        title,
        dataset,
        columns => minijinja::value::Serde(&columns),
    })?;
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_draws_at_most_max_bars_and_says_how_many_it_left_out() {
        let n = MAX_BARS + 5;
        let h = Histogram {
            labels: (0..n).map(|i| i.to_string()).collect(),
            reference: vec![1.0 / n as f64; n],
            current: (0..n).map(|i| if i == 0 { 1.0 } else { 0.0 }).collect(),
        };
        let c = chart(&h);
        assert_eq!((c.bars.len(), c.shown, c.hidden), (2 * MAX_BARS, MAX_BARS, 5));
        assert_eq!(c.last.as_deref(), Some("39"));
        // The tallest bar fills the plot: current's first bin.
        let tallest =
            c.bars.iter().max_by(|a, b| a.height.parse::<f64>().unwrap().total_cmp(&b.height.parse().unwrap()));
        assert_eq!(tallest.map(|b| (b.class, b.height.as_str())), Some(("cur", "140.0")));
    }
}
