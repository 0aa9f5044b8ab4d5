//! Reading what came back: HTTP as `curl -fsS` did, Prometheus text through the load
//! generator's parser (the project's one), metric names from `switchyard_contract`, and the
//! few figures' formats.

use std::collections::BTreeMap;

use anyhow::Context;
use switchyard_contract::metrics::Metric;
use switchyard_load::metrics::{Sample, parse};
use switchyard_testkit::{Resp, try_request};

/// GET `path` on `addr`: the answer, Err without a 2xx one.
pub fn get(addr: &str, path: &str, headers: &[(&str, &str)]) -> anyhow::Result<Resp> {
    let r =
        try_request(addr, "GET", path, headers, b"").map_err(|e| anyhow::anyhow!("GET http://{addr}{path}: {e}"))?;
    anyhow::ensure!(
        (200..300).contains(&r.status),
        "GET http://{addr}{path} answered {}: {}",
        r.status,
        String::from_utf8_lossy(&r.body)
    );
    Ok(r)
}

pub fn get_text(addr: &str, path: &str) -> anyhow::Result<String> {
    Ok(String::from_utf8_lossy(&get(addr, path, &[])?.body).into_owned())
}

pub fn get_json(addr: &str, path: &str) -> anyhow::Result<serde_json::Value> {
    serde_json::from_slice(&get(addr, path, &[])?.body).with_context(|| format!("GET http://{addr}{path}: not JSON"))
}

/// Prometheus text from `addr` at `path`, parsed.
pub fn scrape(addr: &str, path: &str) -> anyhow::Result<Vec<Sample>> {
    Ok(parse(&get_text(addr, path)?))
}

/// The samples named `name` (a metric's, or a histogram's series) whose labels include every
/// `want` pair.
pub fn of<'a>(samples: &'a [Sample], name: &str, want: &[(&str, &str)]) -> Vec<&'a Sample> {
    let matches = |s: &&Sample| want.iter().all(|(k, v)| s.labels.get(*k).is_some_and(|l| l == v));
    samples.iter().filter(|s| s.name == name).filter(matches).collect()
}

/// A sample as an exposition line, its labels in the contract's order (then any others).
pub fn line(metric: &Metric, s: &Sample) -> String {
    let known = metric.labels.iter().filter_map(|k| s.labels.get_key_value(*k));
    let others = s.labels.iter().filter(|(k, _)| !metric.labels.contains(&k.as_str()));
    let labels: Vec<String> = known.chain(others).map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{}{{{}}} {}", s.name, labels.join(","), s.value)
}

/// Prints, indented, the lines of `metric` matching `want`; zeros left out unless `zeros`.
pub fn print_lines(samples: &[Sample], metric: &Metric, want: &[(&str, &str)], zeros: bool) {
    for s in of(samples, metric.name, want).into_iter().filter(|s| zeros || s.value != 0.0) {
        println!("    {}", line(metric, s));
    }
}

/// Sum by `label` of the samples of `metric`.
pub fn sum_by(samples: &[Sample], metric: &Metric, label: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for s in of(samples, metric.name, &[]) {
        *out.entry(s.labels.get(label).cloned().unwrap_or_default()).or_insert(0.0) += s.value;
    }
    out
}

/// A number as Python's `%.6g` writes it: six significant digits, no trailing zeros, an
/// exponent below 1e-4 and from 1e6 on.
pub fn g6(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let sci = format!("{x:.5e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let trim =
        |s: &str| if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_owned() } else { s.to_owned() };
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{}e{sign}{:02}", trim(mantissa), exp.abs());
    }
    let decimals = usize::try_from(5 - exp).unwrap_or(0);
    trim(&format!("{x:.decimals$}"))
}

/// Seconds as `scripts/lib.sh`'s `sy_elapsed` writes them: "1m 23s", "42s".
pub fn elapsed(s: u64) -> String {
    if s >= 60 { format!("{}m {}s", s / 60, s % 60) } else { format!("{s}s") }
}

/// The checked-in Prometheus rules with the drift group's time constants cut from 30 min (a
/// column drifted at every evaluation) and 10 min (dataset drift) to 20 s, so that the drift
/// alert can fire within the demo; nothing else changes.
pub fn drift_rules_for_the_demo(text: &str) -> String {
    let Some(start) = text.find("  - name: switchyard-drift") else { return text.to_owned() };
    let end = text[start + 1..].find("\n  - name:").map_or(text.len(), |i| start + 1 + i);
    let block =
        text[start..end].replace("[30m]", "[20s]").replace("offset 30m", "offset 20s").replace("for: 10m", "for: 20s");
    format!("{}{block}{}", &text[..start], &text[end..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_as_python_g() {
        let cases = [
            (0.0, "0"),
            (1.0, "1"),
            (0.000_123_456_78, "0.000123457"),
            (0.000_012_345, "1.2345e-05"),
            (1_234_567.0, "1.23457e+06"),
            (123_456.0, "123456"),
            (0.1, "0.1"),
            (-2.5, "-2.5"),
            (999_999.5, "1e+06"),
            (f64::NAN, "nan"),
        ];
        for (x, want) in cases {
            assert_eq!(g6(x), want, "{x}");
        }
    }

    #[test]
    fn only_the_drift_group_is_cut() {
        let text = "groups:\n  - name: a\n    rules: [x[30m], for: 10m]\n  - name: switchyard-drift\n    \
                    rules: [x[30m], offset 30m, for: 10m]\n  - name: b\n    rules: [x[30m]]\n";
        let want = "groups:\n  - name: a\n    rules: [x[30m], for: 10m]\n  - name: switchyard-drift\n    \
                    rules: [x[20s], offset 20s, for: 20s]\n  - name: b\n    rules: [x[30m]]\n";
        assert_eq!(drift_rules_for_the_demo(text), want);
        assert_eq!(drift_rules_for_the_demo("no group"), "no group");
    }

    #[test]
    fn lines_keep_the_contract_order() {
        let s = &parse("switchyard_requests_total{outcome=\"success\",version=\"v1\",model=\"mlp\"} 12\n")[0];
        let m = switchyard_contract::metrics::REQUESTS_TOTAL;
        assert_eq!(line(&m, s), "switchyard_requests_total{model=\"mlp\",version=\"v1\",outcome=\"success\"} 12");
    }
}
