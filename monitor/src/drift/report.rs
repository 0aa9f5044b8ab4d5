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

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn svg(h: &Histogram) -> String {
    let bars = h.labels.len().min(MAX_BARS);
    let (w, ht, pad) = (480.0, 140.0, 20.0);
    let max = h.reference.iter().chain(&h.current).take(2 * bars.max(1)).copied().fold(0.0f64, f64::max).max(1e-12);
    let slot = (w - 2.0 * pad) / bars.max(1) as f64;
    let mut s = format!(r#"<svg width="{w}" height="{}" role="img">"#, ht + 30.0);
    for i in 0..bars {
        let x = pad + i as f64 * slot;
        for (k, (share, class)) in [(h.reference[i], "ref"), (h.current[i], "cur")].into_iter().enumerate() {
            let bh = share / max * ht;
            let _ = write!(
                s,
                r#"<rect class="{class}" x="{:.1}" y="{:.1}" width="{:.1}" height="{bh:.1}"><title>{}: {class} {:.4}</title></rect>"#,
                x + k as f64 * slot / 2.0,
                ht - bh + 5.0,
                (slot / 2.0 - 1.0).max(0.5),
                escape(&h.labels[i]),
                share
            );
        }
    }
    if let (Some(first), Some(last)) = (h.labels.first(), h.labels.get(bars.saturating_sub(1))) {
        let _ = write!(
            s,
            r#"<text x="{pad}" y="{}" class="axis">{}</text><text x="{}" y="{}" class="axis" text-anchor="end">{}</text>"#,
            ht + 22.0,
            escape(first),
            w - pad,
            ht + 22.0,
            escape(last)
        );
    }
    s.push_str("</svg>");
    if h.labels.len() > MAX_BARS {
        let _ = write!(s, "<p class=note>first {MAX_BARS} of {} values shown</p>", h.labels.len());
    }
    s
}

/// The page: `histograms[i]` belongs to `e.columns[i]` (`None`: nothing to draw).
pub fn html(e: &Evaluation, title: &str, histograms: &[Option<Histogram>]) -> String {
    let d = &e.dataset;
    let mut s = String::from("<!doctype html><html lang=en><head><meta charset=utf-8>");
    let _ = write!(s, "<title>{}</title>", escape(title));
    s.push_str(
        "<style>body{font:14px system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse}\
         td,th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}\
         tr.drift td{background:#fde8e4}.ref{fill:#4c78a8}.cur{fill:#f58518}.axis{font-size:11px;fill:#555}\
         .note{color:#666;font-size:12px}section{display:inline-block;margin:1em 1em 0 0;vertical-align:top}\
         .legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 12px}</style></head><body>",
    );
    let _ = write!(
        s,
        "<h1>{}</h1><p><b>Dataset drift: {}</b> — {} of {} columns drifted (share {:.3}, threshold {}).</p>",
        escape(title),
        if d.drifted { "detected" } else { "not detected" },
        d.drifted_columns,
        d.columns,
        d.share,
        d.drift_share
    );
    s.push_str("<table><tr><th>column</th><th>kind</th><th>test</th><th>score</th><th>threshold</th><th>reference rows</th><th>current rows</th><th>result</th></tr>");
    for c in &e.columns {
        let (test, score, threshold, result) = fmt_score(c);
        let drifted = c.drift.is_some_and(|d| d.drifted);
        let _ = write!(
            s,
            "<tr{}><td><a href=\"#c-{}\">{}</a></td><td>{:?}</td><td>{test}</td><td class=n>{score}</td><td class=n>{threshold}</td><td class=n>{}</td><td class=n>{}</td><td>{}</td></tr>",
            if drifted { " class=drift" } else { "" },
            escape(&c.column),
            escape(&c.column),
            c.kind,
            c.reference_rows,
            c.current_rows,
            escape(&result)
        );
    }
    s.push_str("</table><h2>Distributions</h2><p class=legend><span class=ref style=\"background:#4c78a8\"></span>reference<span style=\"background:#f58518\"></span>current (share of rows per bin)</p>");
    for (c, h) in e.columns.iter().zip(histograms) {
        let Some(h) = h else { continue };
        let _ = write!(s, "<section id=\"c-{}\"><h3>{}</h3>{}</section>", escape(&c.column), escape(&c.column), svg(h));
    }
    s.push_str("</body></html>\n");
    s
}
