//! Captured bodies as every consumer ships them: the bound on a sample's envelope, the marks
//! that replace what is not shipped, and a body turned into its JSON value with fields
//! redacted. A leaf shared by sampling (payload samples) and shadow (answer comparison), and
//! read by the policy's validation (the collector's queue must hold one envelope).

use serde_json::Value;

pub const REDACTED: &str = "[REDACTED]";

/// What a body too large for the envelope's bound is replaced by.
pub const WITHHELD: &str = "[WITHHELD]: sample over its size bound";

/// Room in an envelope for everything but the two bodies: names, ids, numbers, headers.
const HEADROOM: usize = 64 * 1024;

/// The most bytes one serialised envelope of a model with this `max_body_bytes` takes (the
/// collector configuration is checked against it). Bodies re-serialise to about their size;
/// ones that grow more (text full of characters JSON must escape) are withheld.
pub fn envelope_bound(max_body_bytes: usize) -> usize {
    max_body_bytes.saturating_mul(2).saturating_add(HEADROOM)
}

/// A body as captured: its bytes and, with the binary tensor extension, the length of its JSON
/// part.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Body {
    pub bytes: Vec<u8>,
    pub json_len: Option<usize>,
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
