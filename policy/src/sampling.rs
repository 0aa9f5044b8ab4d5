//! Payload samples for drift monitoring: the sampling decision, redaction, and the envelope
//! shipped to the collector (documented in docs/sampling.md).

use serde::Serialize;
use serde_json::Value;

use crate::capture::{Body, REDACTED, WITHHELD, body_value, envelope_bound};
use crate::config::Sampling;
use crate::slo::Outcome;

/// Headers that carry credentials: redacted in every sample, whatever the policy says (a
/// policy that forgets one must not leak it to the collector's files).
pub const CREDENTIAL_HEADERS: [&str; 5] = ["authorization", "cookie", "set-cookie", "proxy-authorization", "x-api-key"];

/// The `x-request-id` shipped is cut to this many bytes: it may come from the client.
const MAX_REQUEST_ID: usize = 128;
/// A tenant is a claim of a verified token; cut like the request id all the same.
const MAX_TENANT: usize = 128;

/// Open Inference Protocol's binary tensor extension: the length of the JSON part of a body
/// whose tensor data follows it in binary.
pub const BINARY_HEADER: &str = "inference-header-content-length";

/// What became of a sample (`switchyard_samples_total{result}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SampleResult {
    /// Chosen by the sampling rate; every other result follows one of these.
    Captured,
    /// The collector answered 2xx: the sample is stored.
    Sent,
    /// Not stored: the call could not be made, or the collector refused the sample.
    Failed,
    /// Never sent: the worker's queue was full (collector slow or down).
    Dropped,
    /// Sent, but the collector's answer never came (a timeout, a reset, no connection): the
    /// collector may have stored it, so it is neither `sent` nor `failed`.
    Unanswered,
}

impl SampleResult {
    pub const ALL: [SampleResult; 5] = [
        SampleResult::Captured,
        SampleResult::Sent,
        SampleResult::Failed,
        SampleResult::Dropped,
        SampleResult::Unanswered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SampleResult::Captured => "captured",
            SampleResult::Sent => "sent",
            SampleResult::Failed => "failed",
            SampleResult::Dropped => "dropped",
            SampleResult::Unanswered => "unanswered",
        }
    }

    /// The result of a sample whose call was answered with `status`; `collector_said` is the
    /// collector's answer header, which only the collector's own answers carry (a proxy's
    /// 503 or 504 does not).
    pub fn of_answer(status: Option<u16>, collector_said: Option<&str>) -> SampleResult {
        match (status, collector_said) {
            (Some(200..=299), _) => SampleResult::Sent,
            (Some(_), Some(_)) => SampleResult::Failed,
            _ => SampleResult::Unanswered,
        }
    }
}

/// A sampled exchange as it streams through: each direction's headers, and its body up to
/// `max_body_bytes` (the rest is only counted, so a large body costs no memory).
#[derive(Debug, Clone, PartialEq)]
pub struct Capture {
    pub request: Side,
    pub response: Side,
}

/// One direction of a [`Capture`].
#[derive(Debug, Clone, PartialEq)]
pub struct Side {
    cap: usize,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    bytes: u64,
    truncated: bool,
    json_len: Option<usize>,
    /// A gRPC body: length-prefixed protobuf messages, shipped as base64.
    protobuf: bool,
}

impl Capture {
    pub fn new(max_body_bytes: usize, request_headers: Vec<(String, String)>) -> Capture {
        let mut request = Side::new(max_body_bytes);
        request.set_headers(request_headers);
        Capture { request, response: Side::new(max_body_bytes) }
    }

    /// The request and response as shipped, redacted as `s` asks.
    pub fn payloads(self, s: &Sampling) -> (Payload, Payload) {
        (self.request.payload(s), self.response.payload(s))
    }
}

impl Side {
    fn new(cap: usize) -> Side {
        Side { cap, headers: Vec::new(), body: Vec::new(), bytes: 0, truncated: false, json_len: None, protobuf: false }
    }

    pub fn set_headers(&mut self, headers: Vec<(String, String)>) {
        self.json_len = headers.iter().find(|(k, _)| k == BINARY_HEADER).and_then(|(_, v)| v.trim().parse().ok());
        self.protobuf = headers.iter().any(|(k, v)| k == "content-type" && crate::grpc::is_grpc(v));
        self.headers = headers;
    }

    /// Counts a body chunk of `chunk_size` bytes and keeps what fits under the cap; `read(n)`
    /// fetches the chunk's first `n` bytes, and is not called when nothing fits.
    pub fn take(&mut self, chunk_size: usize, read: impl FnOnce(usize) -> Vec<u8>) {
        self.bytes += chunk_size as u64;
        let room = self.cap.saturating_sub(self.body.len());
        if chunk_size > room {
            self.truncated = true;
        }
        if room > 0 && chunk_size > 0 {
            self.body.extend(read(chunk_size.min(room)));
        }
    }

    /// More came than the cap kept.
    pub fn is_truncated(&self) -> bool {
        self.truncated
    }

    /// A header of this side (names as Envoy gives them: lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The body kept, for a shadow comparison.
    pub fn into_body(self) -> Body {
        Body { bytes: self.body, json_len: self.json_len }
    }

    fn payload(self, s: &Sampling) -> Payload {
        let headers = sample_headers(self.headers, s);
        if self.protobuf {
            // Fields of a protobuf message have numbers, not names: none can be redacted by
            // name, so with redaction asked for the body is not shipped at all.
            let body = match (self.body.is_empty(), s.redact_fields.is_empty()) {
                (true, _) => Value::Null,
                (false, true) => Value::String(base64(&self.body)),
                (false, false) => Value::String(format!("{REDACTED}: protobuf bodies cannot be redacted by field")),
            };
            let encoding = Some(ENCODING_PROTOBUF);
            return Payload {
                headers,
                body,
                bytes: self.bytes,
                truncated: self.truncated,
                binary_bytes_omitted: None,
                encoding,
            };
        }
        let (body, binary) = body_value(&self.body, self.truncated, self.json_len, &s.redact_fields);
        Payload {
            headers,
            body,
            bytes: self.bytes,
            truncated: self.truncated,
            binary_bytes_omitted: binary,
            encoding: None,
        }
    }
}

/// What the filter knows of a sampled exchange besides its payloads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Meta<'a> {
    pub model: &'a str,
    pub version: &'a str,
    /// `x-request-id` as Envoy set or forwarded it.
    pub request_id: &'a str,
    pub start_unix_ms: u64,
    pub duration_ms: u64,
    /// Absent when no response came back.
    pub status: Option<u16>,
    pub outcome: Outcome,
    /// The tenant Envoy took from the client's token (with `identity` in the policy).
    pub tenant: Option<&'a str>,
}

/// One sampled exchange, as the collector receives it (one JSON object per POST).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Envelope<'a> {
    /// Envelope format version.
    pub schema: u32,
    pub model: &'a str,
    pub version: &'a str,
    pub request_id: &'a str,
    pub start_unix_ms: u64,
    pub duration_ms: u64,
    pub status: Option<u16>,
    pub outcome: &'static str,
    /// Whose request it was (with `identity`): the drift monitor can watch one tenant's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<&'a str>,
    pub request: Payload,
    pub response: Payload,
}

impl Capture {
    /// The envelope as shipped: headers kept and redacted, bodies redacted as `s` asks, and
    /// serialised to at most [`envelope_bound`]`(s.max_body_bytes)` bytes. One that would be
    /// larger loses its bodies, then its headers (both say so); `None` when even that is too
    /// large, which validated names and ids never are.
    pub fn envelope(self, meta: &Meta<'_>, s: &Sampling) -> Option<Vec<u8>> {
        let bound = envelope_bound(s.max_body_bytes);
        let (request, response) = self.payloads(s);
        let mut e = Envelope {
            schema: 1,
            model: meta.model,
            version: meta.version,
            request_id: cut(meta.request_id, MAX_REQUEST_ID),
            start_unix_ms: meta.start_unix_ms,
            duration_ms: meta.duration_ms,
            status: meta.status,
            outcome: meta.outcome.as_str(),
            tenant: meta.tenant.map(|t| cut(t, MAX_TENANT)),
            request,
            response,
        };
        let fits = |e: &Envelope<'_>| serde_json::to_vec(e).ok().filter(|b| b.len() <= bound);
        if let Some(b) = fits(&e) {
            return Some(b);
        }
        for p in [&mut e.request, &mut e.response] {
            p.body = Value::String(WITHHELD.to_owned());
        }
        if let Some(b) = fits(&e) {
            return Some(b);
        }
        for p in [&mut e.request, &mut e.response] {
            p.headers = vec![(WITHHELD.to_owned(), String::new())];
        }
        fits(&e)
    }
}

/// `s` cut to at most `max` bytes, on a character boundary.
fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
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
    /// `protobuf` for a gRPC body: `body` is then the base64 of its bytes (gRPC's
    /// length-prefixed messages, as on the wire).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<&'static str>,
}

/// [`Payload::encoding`] of a gRPC body.
pub const ENCODING_PROTOBUF: &str = "protobuf";

/// Standard base64 with padding (RFC 4648 §4).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let sextet = |n: u32, shift: u32| char::from(ALPHABET.get(((n >> shift) & 63) as usize).copied().unwrap_or(b'A'));
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = |i: usize| chunk.get(i).map_or(0, |x| u32::from(*x));
        let n = b(0) << 16 | b(1) << 8 | b(2);
        out.push(sextet(n, 18));
        out.push(sextet(n, 12));
        out.push(if chunk.len() > 1 { sextet(n, 6) } else { '=' });
        out.push(if chunk.len() > 2 { sextet(n, 0) } else { '=' });
    }
    out
}

/// The headers a sample shows: with `capture_headers`, only those; credential headers and
/// `redact_headers` with their values replaced (case-insensitive).
pub fn sample_headers(headers: Vec<(String, String)>, s: &Sampling) -> Vec<(String, String)> {
    let mut kept: Vec<(String, String)> = match &s.capture_headers {
        Some(allow) => headers.into_iter().filter(|(k, _)| allow.iter().any(|a| a.eq_ignore_ascii_case(k))).collect(),
        None => headers,
    };
    for (k, v) in &mut kept {
        if is_credential(k) {
            *v = REDACTED.to_owned();
        }
    }
    redact_headers(&mut kept, &s.redact_headers);
    kept
}

/// One of [`CREDENTIAL_HEADERS`] (case-insensitive).
pub fn is_credential(name: &str) -> bool {
    CREDENTIAL_HEADERS.iter().any(|c| c.eq_ignore_ascii_case(name))
}

/// Replaces the values of the named headers (case-insensitive).
pub fn redact_headers(headers: &mut [(String, String)], names: &[String]) {
    for (k, v) in headers.iter_mut() {
        if names.iter().any(|n| n.eq_ignore_ascii_case(k)) {
            *v = REDACTED.to_owned();
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_the_collectors_own_refusal_is_a_failure() {
        use SampleResult::*;
        let cases = [
            ((Some(200), Some("stored")), Sent),
            // A collector older than the header, or a proxy in front that kept the 2xx.
            ((Some(204), None), Sent),
            ((Some(507), Some("refused")), Failed),
            ((Some(503), Some("refused")), Failed),
            // Envoy's own answers: a timeout (504) or a reset before the answer (503) may
            // follow a sample the collector stored.
            ((Some(504), None), Unanswered),
            ((Some(503), None), Unanswered),
            ((None, None), Unanswered),
        ];
        for ((status, said), want) in cases {
            assert_eq!(SampleResult::of_answer(status, said), want, "{status:?} {said:?}");
        }
    }

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

    fn sampling(max_body_bytes: usize) -> Sampling {
        Sampling {
            rate: 1.0,
            max_body_bytes,
            redact_headers: vec!["authorization".into()],
            redact_fields: vec![],
            capture_headers: None,
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    /// The attack: a policy without `redact_headers` shipped every client's credentials.
    #[test]
    fn credential_headers_are_redacted_whatever_the_policy_says() {
        let mut s = sampling(64);
        s.redact_headers.clear();
        let sent = headers(&[
            ("Authorization", "Bearer a"),
            ("cookie", "sid=b"),
            ("set-cookie", "sid=c"),
            ("proxy-authorization", "Basic d"),
            ("x-api-key", "e"),
            ("x-ok", "f"),
        ]);
        let kept = sample_headers(sent, &s);
        let values: Vec<&str> = kept.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(values, [REDACTED, REDACTED, REDACTED, REDACTED, REDACTED, "f"]);
    }

    #[test]
    fn an_allow_list_keeps_only_its_headers_and_still_redacts() {
        let mut s = sampling(64);
        s.capture_headers = Some(vec!["content-type".into(), ":path".into(), "authorization".into()]);
        s.redact_headers = vec!["X-Custom".into()];
        let sent = headers(&[
            (":path", "/v2/models/mlp/infer"),
            ("content-type", "application/json"),
            ("authorization", "Bearer a"),
            ("x-custom", "secret"),
            ("user-agent", "curl"),
        ]);
        assert_eq!(
            sample_headers(sent, &s),
            headers(&[
                (":path", "/v2/models/mlp/infer"),
                ("content-type", "application/json"),
                ("authorization", REDACTED)
            ])
        );
        s.capture_headers = Some(vec![]);
        assert!(sample_headers(headers(&[("x-a", "1")]), &s).is_empty());
    }

    fn meta(request_id: &str) -> Meta<'_> {
        Meta {
            model: "mlp",
            version: "v1",
            request_id,
            start_unix_ms: 1,
            duration_ms: 2,
            status: Some(200),
            outcome: Outcome::Success,
            tenant: None,
        }
    }

    #[test]
    fn an_envelope_over_its_bound_loses_bodies_then_headers_never_its_validity() {
        // Control characters take six bytes each in JSON: a body of them still fits the
        // headroom, and is kept.
        let s = sampling(64);
        let bound = envelope_bound(64);
        let mut c = Capture::new(64, headers(&[("x-a", "1")]));
        let body = [1u8; 64];
        c.request.take(body.len(), |n| body[..n].to_vec());
        let out = c.clone().envelope(&meta("r"), &s).unwrap();
        assert!(out.len() <= bound);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["request"]["body"].as_str().map(|b| b.len()), Some(64), "fits: kept");

        let huge = "h".repeat(2 * bound);
        let mut c = Capture::new(8, headers(&[("x-big", &huge)]));
        c.request.take(2, |_| b"{}".to_vec());
        let out = c.envelope(&meta("r"), &sampling(8)).unwrap();
        assert!(out.len() <= envelope_bound(8), "{}", out.len());
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["request"]["body"], WITHHELD);
        assert_eq!(v["request"]["headers"][0][0], WITHHELD);
        assert_eq!(v["model"], "mlp");
    }

    #[test]
    fn a_request_id_is_cut_on_a_character_boundary() {
        let id = "é".repeat(100);
        let out = Capture::new(8, vec![]).envelope(&meta(&id), &sampling(8)).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["request_id"].as_str().map(str::len), Some(MAX_REQUEST_ID));
        assert!(v.get("tenant").is_none(), "no identity, no tenant field");
    }

    #[test]
    fn a_sample_says_whose_request_it_was() {
        let tenant = "t".repeat(200);
        let m = Meta { tenant: Some(&tenant), ..meta("r") };
        let out = Capture::new(8, vec![]).envelope(&m, &sampling(8)).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["tenant"].as_str().map(str::len), Some(MAX_TENANT));
        let m = Meta { tenant: Some("team-a"), ..meta("r") };
        let v: Value = serde_json::from_slice(&Capture::new(8, vec![]).envelope(&m, &sampling(8)).unwrap()).unwrap();
        assert_eq!(v["tenant"], "team-a");
    }

    /// Serves `chunk`'s first `n` bytes, recording how many were asked for.
    fn reader<'a>(chunk: &'a [u8], asked: &'a mut Vec<usize>) -> impl FnOnce(usize) -> Vec<u8> + 'a {
        move |n| {
            asked.push(n);
            chunk[..n].to_vec()
        }
    }

    #[test]
    fn capture_keeps_the_body_up_to_the_cap_and_counts_the_rest() {
        let mut c = Capture::new(8, vec![("authorization".into(), "secret".into())]);
        let mut asked = Vec::new();
        for chunk in [&b"hello"[..], b" world", b"!!!"] {
            c.request.take(chunk.len(), reader(chunk, &mut asked));
        }
        // Only what fits is read from the host; once full, nothing is.
        assert_eq!(asked, [5, 3]);
        let (req, resp) = c.payloads(&sampling(8));
        assert_eq!((req.bytes, req.truncated), (14, true));
        assert_eq!(req.body, json!("hello wo"));
        assert_eq!(req.headers, [("authorization".to_owned(), REDACTED.to_owned())]);
        assert_eq!((resp.bytes, resp.truncated, resp.body), (0, false, Value::Null));
    }

    #[test]
    fn a_body_is_truncated_only_when_it_exceeds_the_cap() {
        let mut c = Capture::new(4, vec![]);
        let mut asked = Vec::new();
        // The last call is the empty end-of-stream chunk.
        for chunk in [&b"[1,"[..], b"2]", b""] {
            c.response.take(chunk.len(), reader(chunk, &mut asked));
        }
        assert_eq!(asked, [3, 1]);
        let (_, resp) = c.payloads(&sampling(4));
        // Cut at the cap: the first byte of the second chunk is all that was kept.
        assert_eq!((resp.bytes, resp.truncated, resp.body), (5, true, json!("[1,2")));

        let mut c = Capture::new(5, vec![]);
        let mut asked = Vec::new();
        for chunk in [&b"[1,"[..], b"2]", b""] {
            c.response.take(chunk.len(), reader(chunk, &mut asked));
        }
        assert_eq!(asked, [3, 2]);
        let (_, resp) = c.payloads(&sampling(5));
        assert_eq!((resp.bytes, resp.truncated, resp.body), (5, false, json!([1, 2])));
    }

    #[test]
    fn a_zero_cap_reads_nothing_but_counts_everything() {
        let mut c = Capture::new(0, vec![]);
        c.request.take(3, |_| panic!("nothing fits, so nothing may be read"));
        let (req, _) = c.payloads(&sampling(0));
        assert_eq!((req.bytes, req.truncated, req.body), (3, true, Value::Null));
    }

    #[test]
    fn the_binary_header_marks_where_the_json_part_ends() {
        let json = br#"{"outputs":[]}"#;
        let mut c = Capture::new(64, vec![]);
        c.response.set_headers(vec![(BINARY_HEADER.into(), format!(" {} ", json.len()))]);
        let mut body = json.to_vec();
        body.extend_from_slice(&[7u8; 10]);
        c.response.take(body.len(), |n| body[..n].to_vec());
        let (_, resp) = c.payloads(&sampling(64));
        assert_eq!(resp.body, json!({"outputs": []}));
        assert_eq!(resp.binary_bytes_omitted, Some(10));
    }

    #[test]
    fn base64_is_rfc_4648() {
        for (raw, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
            ("\u{ff}\u{fe}", "w7/Dvg=="),
        ] {
            assert_eq!(base64(raw.as_bytes()), want, "{raw:?}");
        }
        assert_eq!(base64(&[0xfb, 0xff]), "+/8=");
    }

    #[test]
    fn a_grpc_body_ships_as_base64_protobuf_and_is_withheld_under_redaction() {
        let body = [0u8, 0, 0, 0, 5, 0x0a, 3, b'm', b'l', b'p'];
        let capture = |redact: &[&str]| {
            let mut c = Capture::new(1024, vec![("content-type".into(), "application/grpc".into())]);
            c.request.take(body.len(), |n| body[..n].to_vec());
            let s = Sampling { redact_fields: redact.iter().map(|f| (*f).to_owned()).collect(), ..sampling(1024) };
            c.payloads(&s).0
        };
        let p = capture(&[]);
        assert_eq!(p.encoding, Some(ENCODING_PROTOBUF));
        assert_eq!(p.body, Value::String(base64(&body)));
        assert_eq!(p.binary_bytes_omitted, None);
        let p = capture(&["inputs"]);
        assert!(p.body.as_str().unwrap().starts_with(REDACTED), "{:?}", p.body);
        // JSON bodies carry no encoding.
        let mut c = Capture::new(1024, vec![("content-type".into(), "application/json".into())]);
        c.request.take(2, |_| b"{}".to_vec());
        assert_eq!(c.payloads(&sampling(1024)).0.encoding, None);
    }
}
