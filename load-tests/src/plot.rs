//! `--plot`: line charts as standalone SVG (no font or image libraries needed; any browser or
//! Markdown viewer shows them). Two charts per run: latency and throughput over time, and
//! latency against achieved throughput per phase (the saturation curve).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::report::Report;

const W: f64 = 760.0;
const H: f64 = 300.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 150.0;
const TOP: f64 = 34.0;
const BOTTOM: f64 = 44.0;
const COLORS: [&str; 5] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"];

pub struct Series<'a> {
    pub name: &'a str,
    pub points: Vec<(f64, f64)>,
}

/// 1, 2 or 5 × 10ⁿ: a tick step giving about `n` ticks over `span`.
fn nice_step(span: f64, n: f64) -> f64 {
    let raw = (span / n).max(f64::MIN_POSITIVE);
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag)
}

fn fmt_tick(v: f64) -> String {
    if v.abs() >= 1000.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}").trim_end_matches('0').to_owned()
    }
}

/// One chart at vertical offset `y0` of a document.
fn chart(out: &mut String, y0: f64, title: &str, x_label: &str, y_label: &str, series: &[Series]) {
    let pts = series.iter().flat_map(|s| s.points.iter());
    let (mut x_max, mut y_max) = pts.fold((0.0f64, 0.0f64), |(x, y), p| (x.max(p.0), y.max(p.1)));
    x_max = if x_max > 0.0 { x_max } else { 1.0 };
    y_max = if y_max > 0.0 { y_max * 1.05 } else { 1.0 };
    let (xs, ys) = (nice_step(x_max, 8.0), nice_step(y_max, 5.0));
    x_max = (x_max / xs).ceil() * xs;
    y_max = (y_max / ys).ceil() * ys;
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let px = |x: f64| LEFT + x / x_max * pw;
    let py = |y: f64| y0 + TOP + ph - y / y_max * ph;
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" font-size="15" font-weight="bold">{}</text>"#,
        LEFT,
        y0 + 20.0,
        esc(title)
    );
    let mut t = 0.0;
    while t <= y_max + ys / 2.0 {
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" x2="{}" y1="{y}" y2="{y}" stroke="#ddd"/><text x="{}" y="{}" font-size="11" text-anchor="end">{}</text>"##,
            LEFT + pw,
            LEFT - 6.0,
            py(t) + 4.0,
            fmt_tick(t),
            y = py(t)
        );
        t += ys;
    }
    let mut t = 0.0;
    while t <= x_max + xs / 2.0 {
        let _ = writeln!(
            out,
            r##"<line x1="{x}" x2="{x}" y1="{}" y2="{}" stroke="#eee"/><text x="{x}" y="{}" font-size="11" text-anchor="middle">{}</text>"##,
            y0 + TOP,
            y0 + TOP + ph,
            y0 + TOP + ph + 16.0,
            fmt_tick(t),
            x = px(t)
        );
        t += xs;
    }
    let _ = writeln!(
        out,
        r##"<rect x="{LEFT}" y="{}" width="{pw}" height="{ph}" fill="none" stroke="#444"/><text x="{}" y="{}" font-size="12" text-anchor="middle">{}</text><text transform="translate(16 {}) rotate(-90)" font-size="12" text-anchor="middle">{}</text>"##,
        y0 + TOP,
        LEFT + pw / 2.0,
        y0 + H - 8.0,
        esc(x_label),
        y0 + TOP + ph / 2.0,
        esc(y_label)
    );
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let path: Vec<String> = s.points.iter().map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y))).collect();
        let _ =
            writeln!(out, r#"<polyline fill="none" stroke="{color}" stroke-width="1.8" points="{}"/>"#, path.join(" "));
        if s.points.len() <= 40 {
            for (x, y) in &s.points {
                let _ = writeln!(out, r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"/>"#, px(*x), py(*y));
            }
        }
        let ly = y0 + TOP + 14.0 + 18.0 * i as f64;
        let _ = writeln!(
            out,
            r#"<line x1="{}" x2="{}" y1="{ly}" y2="{ly}" stroke="{color}" stroke-width="3"/><text x="{}" y="{}" font-size="12">{}</text>"#,
            LEFT + pw + 12.0,
            LEFT + pw + 32.0,
            LEFT + pw + 38.0,
            ly + 4.0,
            esc(s.name)
        );
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A document of charts stacked vertically.
pub fn document(charts: &[(&str, &str, &str, Vec<Series>)]) -> String {
    let height = H * charts.len() as f64;
    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" viewBox="0 0 {W} {height}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
"#
    );
    for (i, (title, xl, yl, series)) in charts.iter().enumerate() {
        chart(&mut out, H * i as f64, title, xl, yl, series);
    }
    out.push_str("</svg>\n");
    out
}

/// Latency and throughput per second of the run.
pub fn over_time(r: &Report) -> String {
    let t = |f: fn(&crate::report::SecondReport) -> f64| r.timeline.iter().map(|s| (s.t as f64, f(s))).collect();
    document(&[
        (
            "Latency over time (from intended send time)",
            "seconds",
            "ms",
            vec![
                Series { name: "p50", points: t(|s| s.p50_ms) },
                Series { name: "p99", points: t(|s| s.p99_ms) },
                Series { name: "max", points: t(|s| s.max_ms) },
            ],
        ),
        (
            "Throughput over time",
            "seconds",
            "requests/s",
            vec![
                Series { name: "sent", points: t(|s| s.sent as f64) },
                Series { name: "ok", points: t(|s| s.ok as f64) },
                Series { name: "errors", points: t(|s| s.errors as f64) },
            ],
        ),
    ])
}

/// p50/p99 against achieved throughput, one point per phase (by throughput).
pub fn latency_vs_throughput(r: &Report) -> String {
    let mut phases: Vec<_> = r.phases.iter().filter(|p| p.stats.ok > 0).collect();
    phases.sort_by(|a, b| a.stats.throughput.total_cmp(&b.stats.throughput));
    let pts = |f: fn(&crate::report::Latency) -> f64| {
        phases.iter().map(|p| (p.stats.throughput, f(&p.stats.latency_ms))).collect()
    };
    document(&[(
        "Latency vs throughput (one point per phase)",
        "achieved requests/s",
        "ms",
        vec![Series { name: "p50", points: pts(|l| l.p50) }, Series { name: "p99", points: pts(|l| l.p99) }],
    )])
}

/// Writes both charts into `dir`; returns their paths.
pub fn write(dir: &Path, r: &Report) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut out = Vec::new();
    for (name, svg) in
        [("latency-over-time.svg", over_time(r)), ("latency-vs-throughput.svg", latency_vs_throughput(r))]
    {
        let p = dir.join(name);
        std::fs::write(&p, svg).with_context(|| format!("cannot write {}", p.display()))?;
        out.push(p);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round() {
        assert_eq!(nice_step(97.0, 5.0), 20.0);
        assert_eq!(nice_step(0.9, 8.0), 0.2);
        assert_eq!(fmt_tick(0.25), "0.25");
        assert_eq!(fmt_tick(1500.0), "1500");
    }

    #[test]
    fn a_chart_is_well_formed_svg_with_every_series() {
        let svg = document(&[(
            "t <1>",
            "x",
            "y",
            vec![Series { name: "a", points: vec![(0.0, 1.0), (1.0, 3.0)] }, Series { name: "b", points: vec![] }],
        )]);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("t &lt;1&gt;"));
        assert!(!svg.contains("NaN"));
    }
}
