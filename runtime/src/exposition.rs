//! Reads Prometheus text exposition, enough to difference counters around a run: the one
//! parser of it in the project (the test kit, the benchmarks, the load generator and the
//! deploy tool use it). Kept by hand: the exposition format's sample lines are simple, and the
//! parser crates pull in regex and chrono for the parts (timestamps, exemplars, OpenMetrics)
//! nothing here reads.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Sample lines as Envoy and the backend write them (`name{labels} value`) and as
/// Prometheus's `/federate` does (with a timestamp after the value, which is ignored).
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let (name, labels, rest) = match line.split_once('{') {
        Some((name, after)) => {
            let end = labels_end(after)?;
            (name, parse_labels(after.get(..end)?), after.get(end + 1..)?)
        }
        None => {
            let (name, rest) = line.split_once(char::is_whitespace)?;
            (name, BTreeMap::new(), rest)
        }
    };
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Sample { name: name.trim().to_owned(), labels, value })
}

/// Where the label set closes: the first `}` outside a quoted value.
fn labels_end(s: &str) -> Option<usize> {
    let (mut quoted, mut escaped) = (false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '}' if !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = s;
    while let Some((k, after)) = rest.split_once("=\"") {
        let Some(end) = after.find('"') else { break };
        out.insert(k.trim_start_matches(',').to_owned(), after[..end].to_owned());
        rest = &after[end + 1..];
    }
    out
}

/// Sum of every sample named `name` whose labels include all of `want`.
pub fn sum(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name && want.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
        .map(|s| s.value)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_envoy_lines_and_federated_lines_with_timestamps() {
        let text = "# TYPE switchyard_requests_total untyped\n\
            switchyard_requests_total{model=\"mlp\",version=\"v1\",outcome=\"2xx\"} 41\n\
            switchyard_requests_total{instance=\"10.0.0.7:15090\",job=\"switchyard-envoy\",model=\"mlp\",version=\"v1\",outcome=\"2xx\"} 17 1764772800000\n\
            switchyard_request_duration_ms_bucket{le=\"+Inf\",model=\"mlp\",note=\"a } in a value\"} 3 1764772800000\n\
            up 1 1764772800000\n\
            bare 2.5\n";
        let s = parse(text);
        assert_eq!(s.len(), 5, "{s:?}");
        assert_eq!(sum(&s, "switchyard_requests_total", &[("model", "mlp"), ("version", "v1")]), 58.0);
        assert_eq!(s[2].labels["note"], "a } in a value");
        assert_eq!(s[2].value, 3.0);
        assert_eq!((s[3].name.as_str(), s[3].value), ("up", 1.0));
        assert_eq!((s[4].name.as_str(), s[4].value), ("bare", 2.5));
    }

    #[test]
    fn parses_and_sums_labelled_samples() {
        let text = "# HELP x\nswitchyard_batch_size_sum{model=\"mlp\",version=\"v1\"} 12.5\n\
                    switchyard_batch_size_sum{model=\"mlp\",version=\"v2\"} 1\nup 1\n";
        let s = parse(text);
        assert_eq!(s.len(), 3);
        assert_eq!(sum(&s, "switchyard_batch_size_sum", &[("model", "mlp")]), 13.5);
        assert_eq!(sum(&s, "switchyard_batch_size_sum", &[("version", "v1")]), 12.5);
        assert_eq!(sum(&s, "up", &[]), 1.0);
    }
}
