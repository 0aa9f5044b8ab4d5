//! Payload samples for drift monitoring: the sampling decision, redaction, and the envelope
//! shipped to the collector (documented in docs/sampling.md).

use serde::Serialize;
use serde_json::Value;

pub const REDACTED: &str = "[REDACTED]";

/// One sampled exchange, as the collector receives it (one JSON object per POST).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Envelope {
    /// Envelope format version.
    pub schema: u32,
    pub model: String,
    pub version: String,
    /// `x-request-id` as Envoy set or forwarded it.
    pub request_id: String,
    pub start_unix_ms: u64,
    pub duration_ms: u64,
    /// Absent when no response came back.
    pub status: Option<u16>,
    pub outcome: &'static str,
    pub request: Payload,
    pub response: Payload,
}

#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct Payload {
    pub headers: Vec<(String, String)>,
    /// JSON when the body was JSON (redacted), else the text; null when empty.
    pub body: Value,
    /// Bytes seen in total (the body may have been cut at the cap).
    pub bytes: u64,
    pub truncated: bool,
    /// Bytes of binary tensor data after the JSON header, not shipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub binary_bytes_omitted: Option<u64>,
}

/// Replaces the values of the named headers (case-insensitive).
pub fn redact_headers(headers: &mut [(String, String)], names: &[String]) {
    for (k, v) in headers.iter_mut() {
        if names.iter().any(|n| n.eq_ignore_ascii_case(k)) {
            *v = REDACTED.to_owned();
        }
    }
}

/// The body as shipped: captured bytes (at most the cap), of which the first `json_len` are
/// JSON when the binary tensor extension is used. When fields must be redacted and the body
/// cannot be parsed (cut at the cap, not JSON), nothing of it is shipped: better no sample
/// than a leak.
pub fn body_value(
    captured: &[u8],
    truncated: bool,
    json_len: Option<usize>,
    redact: &[String],
) -> (Value, Option<u64>) {
    let (json_part, binary) = match json_len.and_then(|n| captured.get(..n)) {
        Some(part) => (part, Some((captured.len() - part.len()) as u64)),
        None => (captured, None),
    };
    if json_part.is_empty() {
        return (Value::Null, binary);
    }
    let parsed = if truncated && json_len.is_none_or(|n| n > captured.len()) {
        None
    } else {
        serde_json::from_slice::<Value>(json_part).ok()
    };
    let value = match parsed {
        Some(mut v) => {
            for field in redact {
                redact_path(&mut v, &field.split('.').collect::<Vec<_>>());
            }
            v
        }
        None if !redact.is_empty() => Value::String(format!("{REDACTED}: body not parseable as JSON")),
        None => Value::String(String::from_utf8_lossy(json_part).into_owned()),
    };
    (value, binary)
}

/// Dotted path through objects; through arrays it applies to every element, and an element
/// whose `name` equals the segment (a V2 tensor) has its `data` replaced.
fn redact_path(v: &mut Value, segs: &[&str]) {
    let Some((first, rest)) = segs.split_first() else {
        return;
    };
    match v {
        Value::Object(map) => {
            if rest.is_empty() {
                if let Some(x) = map.get_mut(*first) {
                    *x = Value::String(REDACTED.into());
                }
            } else if let Some(x) = map.get_mut(*first) {
                redact_path(x, rest);
            }
        }
        Value::Array(items) => {
            for item in items {
                let named = item.get("name").and_then(Value::as_str) == Some(*first);
                if named && rest.is_empty() {
                    if let Some(d) = item.get_mut("data") {
                        *d = Value::String(REDACTED.into());
                    }
                } else if named {
                    redact_path(item, rest);
                } else {
                    redact_path(item, segs);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn redacts_headers_case_insensitively() {
        let mut h = vec![("Authorization".into(), "secret".into()), ("x-ok".into(), "1".into())];
        redact_headers(&mut h, &["authorization".into()]);
        assert_eq!(h[0].1, REDACTED);
        assert_eq!(h[1].1, "1");
    }

    #[test]
    fn redacts_json_fields_and_v2_inputs() {
        let body = json!({"id": "u-1", "parameters": {"user": "alice", "keep": 1},
            "inputs": [{"name": "ssn", "data": [1, 2]}, {"name": "x", "data": [3]}]});
        let bytes = serde_json::to_vec(&body).unwrap();
        let redact = ["id".to_owned(), "parameters.user".to_owned(), "inputs.ssn".to_owned()];
        let (v, bin) = body_value(&bytes, false, None, &redact);
        assert_eq!(bin, None);
        assert_eq!(v["id"], REDACTED);
        assert_eq!(v["parameters"], json!({"user": REDACTED, "keep": 1}));
        assert_eq!(v["inputs"][0]["data"], REDACTED);
        assert_eq!(v["inputs"][1]["data"], json!([3]));
    }

    #[test]
    fn unparseable_bodies_are_withheld_when_redaction_is_asked() {
        let (v, _) = body_value(b"{\"id\": \"secret\", \"inp", true, None, &["id".to_owned()]);
        assert!(v.as_str().unwrap().starts_with(REDACTED));
        let (v, _) = body_value(b"plain text", false, None, &[]);
        assert_eq!(v, json!("plain text"));
        let (v, _) = body_value(b"", false, None, &[]);
        assert_eq!(v, Value::Null);
    }

    #[test]
    fn binary_tensor_data_is_omitted() {
        let mut body = br#"{"inputs":[]}"#.to_vec();
        let n = body.len();
        body.extend_from_slice(&[0u8; 16]);
        let (v, bin) = body_value(&body, false, Some(n), &[]);
        assert_eq!(v, json!({"inputs": []}));
        assert_eq!(bin, Some(16));
    }
}
