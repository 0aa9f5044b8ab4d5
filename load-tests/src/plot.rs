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

// ---------------------------------------------------------------------------------------------
// Day charts (docs/capacity.md): a simulated day minute by minute, one panel per model, a line
// against the left axis, step lines against the right one, shaded minutes.

const DAY_W: f64 = W;
const DAY_PANEL: f64 = 250.0;
const DAY_TOP: f64 = 44.0;
const DAY_X0: f64 = LEFT;
const DAY_X1: f64 = 660.0;
const DAY_MINUTES: f64 = 1440.0;

/// A line of a day chart: one value per minute of the day.
pub struct DayLine<'a> {
    pub name: &'a str,
    pub color: &'a str,
    pub width: f64,
    /// `stroke-dasharray`, for a dashed line.
    pub dash: Option<&'a str>,
    pub values: Vec<f64>,
}

/// A panel of a day chart: `left` drawn as five-minute means against the left axis (scaled to
/// its largest minute), `right` as step lines against the right axis (the first drawn on top;
/// the axis takes its colour), the `shaded` minutes in red.
pub struct DayPanel<'a> {
    pub title: String,
    pub left_axis: &'a str,
    pub left: DayLine<'a>,
    pub right_axis: &'a str,
    pub right: Vec<DayLine<'a>>,
    pub shaded: Vec<usize>,
}

/// C's and Python's `%g`: six significant digits, trailing zeros dropped, an exponent outside
/// 1e-4 ..= 1e6.
pub fn fmt_g(v: f64) -> String {
    if !v.is_finite() {
        return if v.is_nan() {
            "nan".into()
        } else if v > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        };
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    let sci = format!("{v:.5e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let trim =
        |s: &str| if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_owned() } else { s.to_owned() };
    if (-4..6).contains(&exp) {
        let digits = usize::try_from(5 - exp).unwrap_or(0);
        trim(&format!("{v:.digits$}"))
    } else {
        format!("{}e{}{:02}", trim(mantissa), if exp < 0 { '-' } else { '+' }, exp.abs())
    }
}

/// A day chart's tick labels: 12, 2.5, 40k, 1.2M.
fn fmt_short(x: f64) -> String {
    if x >= 1e6 {
        format!("{}M", fmt_g(x / 1e6))
    } else if x >= 1e4 {
        format!("{}k", fmt_g(x / 1e3))
    } else {
        fmt_g(x)
    }
}

/// 1, 2, 2.5 or 5 × 10ⁿ: a tick step giving at most five ticks up to `max`.
fn day_step(max: f64) -> f64 {
    let raw = if max > 0.0 { max / 5.0 } else { 1.0 };
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0].into_iter().map(|m| m * mag).find(|s| raw <= *s).unwrap_or(10.0 * mag)
}

fn day_x(minute: f64) -> f64 {
    DAY_X0 + (DAY_X1 - DAY_X0) * minute / DAY_MINUTES
}

/// Consecutive minutes as [start, end) runs.
fn runs(minutes: &[usize]) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for &m in minutes {
        match out.last_mut() {
            Some(last) if last.1 == m => last.1 = m + 1,
            _ => out.push((m, m + 1)),
        }
    }
    out
}

/// A step line's points, one corner pair per change.
fn step_points(values: &[f64], y: impl Fn(f64) -> f64) -> String {
    let (Some(first), Some(last)) = (values.first(), values.last()) else {
        return String::new();
    };
    let mut pts = vec![format!("{:.1},{:.1}", day_x(0.0), y(*first))];
    for (m, pair) in values.windows(2).enumerate() {
        if pair[1] != pair[0] {
            let x = day_x((m + 1) as f64);
            pts.push(format!("{x:.1},{:.1} {x:.1},{:.1}", y(pair[0]), y(pair[1])));
        }
    }
    pts.push(format!("{:.1},{:.1}", day_x(values.len() as f64), y(*last)));
    pts.join(" ")
}

fn dash_attr(dash: Option<&str>) -> String {
    dash.map_or_else(String::new, |d| format!(r#" stroke-dasharray="{d}""#))
}

/// One panel at `top`; lines of the document go to `o`.
fn day_panel(o: &mut Vec<String>, top: f64, p: &DayPanel) {
    let bot = top + DAY_PANEL - 70.0;
    let (x0, x1) = (DAY_X0, DAY_X1);
    let y_of = |v: f64, vmax: f64| bot - (bot - top) * v / vmax;
    let left_max = p.left.values.iter().copied().fold(f64::NEG_INFINITY, f64::max).max(0.0);
    let ls = day_step(left_max);
    let lmax = ls * (left_max / ls).ceil();
    let right_max = p.right.iter().flat_map(|l| l.values.iter().copied()).fold(1.0, f64::max);
    let rs = day_step(right_max).max(1.0);
    let rmax = rs * (right_max / rs).ceil();
    let left_color = p.left.color;
    let right_color = p.right.first().map_or(left_color, |l| l.color);
    o.push(format!(r#"<text x="{x0}" y="{}" font-size="13" font-weight="bold">{}</text>"#, top - 6.0, esc(&p.title)));
    for (a, b) in runs(&p.shaded) {
        let (xa, xb) = (day_x(a as f64), day_x(b as f64));
        o.push(format!(
            r##"<rect x="{xa:.1}" y="{top}" width="{:.2}" height="{}" fill="#f6d2d2"/>"##,
            xb - xa,
            bot - top
        ));
    }
    let mut k = 0.0;
    while k * ls <= lmax + 1e-9 {
        let y = y_of(k * ls, lmax);
        o.push(format!(
            r##"<line x1="{x0}" x2="{x1}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" font-size="11" text-anchor="end" fill="{left_color}">{}</text>"##,
            x0 - 6.0,
            y + 4.0,
            fmt_short(k * ls)
        ));
        k += 1.0;
    }
    let mut k = 0.0;
    while k * rs <= rmax + 1e-9 {
        let y = y_of(k * rs, rmax);
        o.push(format!(
            r#"<text x="{}" y="{:.1}" font-size="11" fill="{right_color}">{}</text>"#,
            x1 + 6.0,
            y + 4.0,
            fmt_short(k * rs)
        ));
        k += 1.0;
    }
    for h in (0..25).step_by(2) {
        let x = day_x(f64::from(h) * 60.0);
        o.push(format!(
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="{top}" y2="{bot}" stroke="#eee"/><text x="{x:.1}" y="{}" font-size="11" text-anchor="middle">{h:02}:00</text>"##,
            bot + 15.0
        ));
    }
    o.push(format!(
        r##"<rect x="{x0}" y="{top}" width="{}" height="{}" fill="none" stroke="#444"/>"##,
        x1 - x0,
        bot - top
    ));
    let mid = (top + bot) / 2.0;
    o.push(format!(
        r#"<text transform="translate(16 {mid:.0}) rotate(-90)" font-size="12" text-anchor="middle" fill="{left_color}">{}</text>"#,
        esc(p.left_axis)
    ));
    o.push(format!(
        r#"<text transform="translate({} {mid:.0}) rotate(90)" font-size="12" text-anchor="middle" fill="{right_color}">{}</text>"#,
        DAY_W - 14.0,
        esc(p.right_axis)
    ));
    let values = &p.left.values;
    let pts: Vec<String> = (0..values.len())
        .step_by(5)
        .map(|m| {
            let window = &values[m..(m + 5).min(values.len())];
            let mean = window.iter().fold(0.0, |a, v| a + v) / 5.0;
            format!("{:.1},{:.1}", day_x(m as f64 + 2.5), y_of(mean, lmax))
        })
        .collect();
    o.push(format!(
        r#"<polyline fill="none" stroke="{left_color}" stroke-width="{}"{} points="{}"/>"#,
        p.left.width,
        dash_attr(p.left.dash),
        pts.join(" ")
    ));
    for line in p.right.iter().rev() {
        o.push(format!(
            r#"<polyline fill="none" stroke="{}" stroke-width="{}"{} points="{}"/>"#,
            line.color,
            line.width,
            dash_attr(line.dash),
            step_points(&line.values, |v| y_of(v, rmax))
        ));
    }
    let ly = bot + 36.0;
    let mut lx = x0;
    for line in std::iter::once(&p.left).chain(&p.right) {
        o.push(format!(
            r#"<line x1="{lx}" x2="{}" y1="{ly}" y2="{ly}" stroke="{}" stroke-width="3"{}/><text x="{}" y="{}" font-size="12">{}</text>"#,
            lx + 20.0,
            line.color,
            dash_attr(line.dash),
            lx + 26.0,
            ly + 4.0,
            esc(line.name)
        ));
        lx += 40.0 + 6.0 * line.name.chars().count() as f64;
    }
}

/// A day chart: a title, a subtitle, and the panels stacked vertically.
pub fn day_chart(title: &str, subtitle: &str, panels: &[DayPanel]) -> String {
    let height = DAY_TOP + DAY_PANEL * panels.len() as f64 + 10.0;
    let mut o = vec![
        format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{DAY_W}" height="{height}" viewBox="0 0 {DAY_W} {height}" font-family="sans-serif">"#
        ),
        r#"<rect width="100%" height="100%" fill="white"/>"#.to_owned(),
        format!(r#"<text x="{DAY_X0}" y="20" font-size="15" font-weight="bold">{}</text>"#, esc(title)),
        format!(r##"<text x="{DAY_X0}" y="36" font-size="11" fill="#555">{}</text>"##, esc(subtitle)),
    ];
    for (i, p) in panels.iter().enumerate() {
        day_panel(&mut o, DAY_TOP + i as f64 * DAY_PANEL + 22.0, p);
    }
    o.push("</svg>".to_owned());
    o.join("\n") + "\n"
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

    #[test]
    fn g_is_cs_percent_g() {
        assert_eq!(fmt_g(70601.0), "70601");
        assert_eq!(fmt_g(2.5), "2.5");
        assert_eq!(fmt_g(0.1 * 3.0), "0.3");
        assert_eq!(fmt_g(999_999.5), "1e+06");
        assert_eq!(fmt_g(0.000_123_4), "0.0001234");
        assert_eq!(fmt_g(-0.000_012_34), "-1.234e-05");
        assert_eq!(fmt_short(800_000.0), "800k");
        assert_eq!(fmt_short(2_500_000.0), "2.5M");
        assert_eq!(day_step(40.0), 10.0);
        assert_eq!(day_step(12.0), 2.5);
        assert_eq!(day_step(0.0), 1.0);
    }

    #[test]
    fn a_day_chart_has_its_panels_lines_and_shading() {
        let minutes = |f: fn(usize) -> f64| (0..1440).map(f).collect::<Vec<f64>>();
        let line = |name, color, dash, values| DayLine { name, color, width: 1.8, dash, values };
        let panel = DayPanel {
            title: "m <1>".into(),
            left_axis: "requests/s",
            left: line("traffic", "#1f77b4", None, minutes(|m| m as f64)),
            right_axis: "replicas",
            right: vec![
                line("replicas", "#d62728", None, minutes(|m| (m / 100) as f64)),
                line("uncapped", "#ff7f0e", Some("4 3"), minutes(|m| (m / 50) as f64)),
            ],
            shaded: vec![10, 11, 12, 700],
        };
        let svg = day_chart("t", "s", &[panel]);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains(r#"height="304""#) && svg.contains("m &lt;1&gt;"));
        assert_eq!(svg.matches("<polyline").count(), 3);
        assert_eq!(svg.matches("#f6d2d2").count(), 2, "two runs of shaded minutes");
        assert_eq!(svg.matches(r#"stroke-dasharray="4 3""#).count(), 2, "the line and its legend");
        assert_eq!(svg.matches("text-anchor=\"middle\">").count(), 13, "00:00 to 24:00 every 2 hours");
        // The dashed line is drawn first, under the solid one.
        assert!(svg.find("#ff7f0e\" stroke-width").unwrap() < svg.find("#d62728\" stroke-width").unwrap());
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }
}
