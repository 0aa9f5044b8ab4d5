//! Number formats: those of Python's format mini-language the capacity document was first
//! written with, so that the Rust model writes it to the digit. A leaf: the model's reasons and
//! the report both use it.

use switchyard_load::plot;

/// `%g`: six significant digits, no trailing zeros.
pub fn g(x: f64) -> String {
    plot::fmt_g(x)
}

/// A float as Python's `str()` writes it: `50.0`, `0.83`.
pub fn py_float(x: f64) -> String {
    format!("{x:?}")
}

/// Thousands separators in the integer part of a formatted number: `12,445.5`.
fn commas(s: &str) -> String {
    let (sign, rest) = s.strip_prefix('-').map_or(("", s), |r| ("-", r));
    let (int, frac) = rest.find('.').map_or((rest, ""), |i| rest.split_at(i));
    if !int.bytes().all(|b| b.is_ascii_digit()) {
        return s.to_owned();
    }
    let mut out = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}{frac}")
}

/// `{x:,.0f}`
pub fn c0(x: f64) -> String {
    commas(&format!("{x:.0}"))
}

/// `{x:,.1f}`
pub fn c1(x: f64) -> String {
    commas(&format!("{x:.1}"))
}

/// `{n:,}`
pub fn ci(n: impl Into<i64>) -> String {
    commas(&n.into().to_string())
}

/// `{x:.0%}`
pub fn pct0(x: f64) -> String {
    format!("{:.0}%", x * 100.0)
}

/// `{x:.2%}`
pub fn pct2(x: f64) -> String {
    format!("{:.2}%", x * 100.0)
}

pub fn fmt_rate(x: f64) -> String {
    if x == f64::INFINITY {
        "∞".into()
    } else if x >= 100.0 {
        c0(x)
    } else {
        format!("{x:.1}")
    }
}

pub fn fmt_ms(x: f64, last: f64) -> String {
    if x == f64::INFINITY {
        format!("> {last:.0} (past the sweep)")
    } else if x < 100.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.0}")
    }
}

/// Dollars: whole above 100, cents above 1, else two significant figures however small
/// (`$0.0000024`).
pub fn money(x: f64) -> String {
    if x >= 100.0 {
        format!("${}", c0(x))
    } else if x >= 1.0 {
        format!("${x:.2}")
    } else if x <= 0.0 {
        "$0".into()
    } else {
        let digits = (1 - x.log10().floor() as i64).max(2) as usize;
        format!("${x:.digits$}")
    }
}
