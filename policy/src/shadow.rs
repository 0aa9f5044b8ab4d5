//! Shadow-response comparison: the record the filter ships to the collector once the primary,
//! the shadow and (with `noise`) the primary again have answered the same request. The
//! collector judges it (`switchyard_monitor::compare`); the format is in docs/shadow-compare.md.

use serde::Serialize;
use serde_json::Value;

use crate::capture::{Body, WITHHELD, body_value};
use crate::config::Compare;

/// Room in a record for everything but its four bodies.
const HEADROOM: usize = 16 * 1024;

/// The most bytes one serialised record takes with this `max_body_bytes`: four bodies (the
/// request and three answers) that re-serialise to about their size; ones that grow more are
/// withheld.
pub fn record_bound(max_body_bytes: usize) -> usize {
    max_body_bytes.saturating_mul(8).saturating_add(HEADROOM)
}

/// What became of a comparison (`switchyard_shadow_compares_total{result}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompareResult {
    /// Chosen by `compare.percent`; every other result follows one of these.
    Started,
    /// The request or the primary's response was over `max_body_bytes`, or no response came.
    Skipped,
    /// The worker already held `max_pending` comparisons.
    Dropped,
    /// A call could not be made, or the collector failed or timed out.
    Failed,
    /// The collector answered 2xx.
    Sent,
}

impl CompareResult {
    pub const ALL: [CompareResult; 5] = [
        CompareResult::Started,
        CompareResult::Skipped,
        CompareResult::Dropped,
        CompareResult::Failed,
        CompareResult::Sent,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CompareResult::Started => "started",
            CompareResult::Skipped => "skipped",
            CompareResult::Dropped => "dropped",
            CompareResult::Failed => "failed",
            CompareResult::Sent => "sent",
        }
    }
}

/// One answer to the compared request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Answer {
    /// `None`: no response (the call failed or timed out).
    pub status: Option<u16>,
    pub duration_ms: u64,
    pub body: Body,
}

/// Who answered, and the names the record is filed under.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Names<'a> {
    pub model: &'a str,
    pub primary: &'a str,
    pub shadow: &'a str,
    pub request_id: &'a str,
    pub start_unix_ms: u64,
}

#[derive(Serialize)]
struct Record<'a> {
    schema: u32,
    kind: &'static str,
    model: &'a str,
    request_id: &'a str,
    start_unix_ms: u64,
    compare: Settings,
    request: Shipped,
    primary: Shipped,
    shadow: Shipped,
    #[serde(skip_serializing_if = "Option::is_none")]
    noise: Option<Shipped>,
}

#[derive(Serialize)]
struct Settings {
    atol: f64,
    rtol: f64,
    output: &'static str,
}

#[derive(Serialize)]
struct Shipped {
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_ms: Option<u64>,
    bytes: usize,
    body: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    binary_bytes_omitted: Option<u64>,
}

fn shipped(version: Option<&str>, answer: Option<&Answer>, body: &Body, redact: &[String]) -> Shipped {
    let (value, binary) = body_value(&body.bytes, false, body.json_len, redact);
    Shipped {
        version: version.map(str::to_owned),
        status: answer.and_then(|a| a.status),
        duration_ms: answer.map(|a| a.duration_ms),
        bytes: body.bytes.len(),
        body: value,
        binary_bytes_omitted: binary,
    }
}

/// The record as shipped, redacted with the model's `sampling.redact_fields` (the same bodies a
/// sample would show), at most [`record_bound`]`(c.max_body_bytes)` bytes: one that would be
/// larger has its bodies withheld (and cannot be judged).
pub fn record(
    names: &Names<'_>,
    c: &Compare,
    request: &Body,
    primary: &Answer,
    shadow: &Answer,
    noise: Option<&Answer>,
    redact: &[String],
) -> Option<Vec<u8>> {
    let mut r = Record {
        schema: 1,
        kind: "comparison",
        model: names.model,
        request_id: names.request_id,
        start_unix_ms: names.start_unix_ms,
        compare: Settings { atol: c.atol, rtol: c.rtol, output: c.output.as_str() },
        request: shipped(None, None, request, redact),
        primary: shipped(Some(names.primary), Some(primary), &primary.body, redact),
        shadow: shipped(Some(names.shadow), Some(shadow), &shadow.body, redact),
        noise: noise.map(|n| shipped(Some(names.primary), Some(n), &n.body, redact)),
    };
    let bound = record_bound(c.max_body_bytes);
    let fits = |r: &Record<'_>| serde_json::to_vec(r).ok().filter(|b| b.len() <= bound);
    if let Some(b) = fits(&r) {
        return Some(b);
    }
    for s in [Some(&mut r.request), Some(&mut r.primary), Some(&mut r.shadow), r.noise.as_mut()].into_iter().flatten() {
        s.body = Value::String(WITHHELD.to_owned());
    }
    fits(&r)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::OutputKind;

    fn compare() -> Compare {
        let c: Compare = serde_json::from_value(json!({})).unwrap();
        assert_eq!(c, Compare::default(), "the serde defaults are Default's");
        c
    }

    fn answer(status: u16, body: &str) -> Answer {
        Answer { status: Some(status), duration_ms: 3, body: Body { bytes: body.as_bytes().to_vec(), json_len: None } }
    }

    #[test]
    fn a_record_carries_every_answer_redacted_and_the_settings() {
        let names = Names { model: "mlp", primary: "v1", shadow: "v2", request_id: "r-1", start_unix_ms: 7 };
        let request = Body { bytes: br#"{"inputs":[{"name":"ssn","data":[1]}]}"#.to_vec(), json_len: None };
        let out = r#"{"outputs":[{"name":"y","shape":[1,2],"datatype":"FP32","data":[0.1,0.9]}]}"#;
        let none = Answer::default();
        let bytes = record(
            &names,
            &compare(),
            &request,
            &answer(200, out),
            &none,
            Some(&answer(200, out)),
            &["inputs.ssn".into()],
        )
        .unwrap();
        let r: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!((&r["kind"], &r["model"], &r["request_id"]), (&json!("comparison"), &json!("mlp"), &json!("r-1")));
        assert_eq!(r["compare"], json!({"atol": 1e-5, "rtol": 1e-3, "output": "auto"}));
        assert_eq!(r["request"]["body"]["inputs"][0]["data"], "[REDACTED]");
        assert_eq!((&r["primary"]["version"], &r["primary"]["status"]), (&json!("v1"), &json!(200)));
        assert_eq!(r["primary"]["body"]["outputs"][0]["data"], json!([0.1, 0.9]));
        // The shadow never answered: no status, and no body.
        assert_eq!((&r["shadow"]["version"], r["shadow"].get("status")), (&json!("v2"), None));
        assert_eq!(r["shadow"]["body"], Value::Null);
        assert_eq!(r["noise"]["version"], "v1");
        assert_eq!(OutputKind::default(), OutputKind::Auto);
    }

    #[test]
    fn a_record_over_its_bound_withholds_the_bodies() {
        let names = Names { model: "m", primary: "a", shadow: "b", request_id: "", start_unix_ms: 0 };
        let mut c = compare();
        c.max_body_bytes = 1;
        // Characters JSON must escape grow 6× when re-serialised.
        let grows = "\u{1}".repeat(4000);
        let body = Body { bytes: grows.as_bytes().to_vec(), json_len: None };
        let a = Answer { status: Some(200), duration_ms: 1, body: body.clone() };
        let bytes = record(&names, &c, &body, &a, &a, None, &[]).unwrap();
        assert!(bytes.len() <= record_bound(1));
        let r: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(r["shadow"]["body"], WITHHELD);
        assert_eq!(r["shadow"]["bytes"], 4000);
        assert!(r.get("noise").is_none());
    }
}
