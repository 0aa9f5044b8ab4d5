//! Open Inference Protocol calls over gRPC: which model a call is for and how it ended.
//!
//! The path names only the method (`/inference.GRPCInferenceService/ModelInfer`); the model is
//! in the message, fields 1 and 2 (`model_name`/`name`, `model_version`/`version`) of every
//! request that has one. Serialisers write fields in number order, so those two come first:
//! the filter reads the gRPC frame header and at most [`MAX_PREFIX`] bytes, never the
//! tensors behind them. A message whose first field is not the model's name, or that is
//! compressed (its fields unreadable), is refused rather than guessed at: a call the filter
//! cannot place must not reach a backend around the policy. The backend refuses a name or
//! version field anywhere else in the message, so what the filter read is what it serves.
//!
//! The outcome of a call is its `grpc-status` (in the trailers, or in the headers of a
//! trailers-only response), counted like the HTTP status it stands for ([`http_status`]).

use std::fmt;

use crate::names::valid_name;

/// What a version's gRPC cluster is called: its cluster's name with this suffix. Each
/// version has its REST cluster (HTTP/1.1) and its gRPC twin (HTTP/2), both rendered from
/// the policy's one `cluster`.
pub const CLUSTER_SUFFIX: &str = "-grpc";

/// The gRPC twin of `cluster`.
pub fn cluster(cluster: &str) -> String {
    format!("{cluster}{CLUSTER_SUFFIX}")
}

/// Where the filter puts a gRPC call's cluster and its shadow's: Wasm properties, which
/// Envoy keeps as filter state under `wasm.<name>` and the rendered routes match on. (A
/// Wasm filter can no longer change the request headers once they have passed it, and a
/// call's model is only known from its body, after they have.)
pub const CLUSTER_PROPERTY: &str = "switchyard_cluster";
pub const SHADOW_PROPERTY: &str = "switchyard_shadow";

/// The filter-state key Envoy stores a Wasm property under.
pub fn filter_state_key(property: &str) -> String {
    format!("wasm.{property}")
}

/// The path prefix of the protocol's service.
pub const SERVICE_PREFIX: &str = "/inference.GRPCInferenceService/";

/// The longest message prefix read before deciding: the frame header, two names of the
/// longest valid length with their tags and lengths, and the tag after them.
pub const MAX_PREFIX: usize = FRAME_HEADER + 2 * (1 + 2 + MAX_NAME) + 1;

const FRAME_HEADER: usize = 5;
const MAX_NAME: usize = 128;
/// Field 1 and field 2, length-delimited (wire type 2).
const TAG_NAME: u8 = 1 << 3 | 2;
const TAG_VERSION: u8 = 2 << 3 | 2;

/// A method of the service, as far as routing cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `ModelInfer`: routed, sampled and accounted.
    Infer,
    /// `ModelMetadata`, `ModelReady`: routed by their model, not accounted.
    ModelScoped,
    /// `ServerLive`, `ServerReady`, `ServerMetadata` and anything else: no model to route by.
    Unscoped,
}

/// The method of a gRPC call to the protocol's service; `None` for any other path.
pub fn method(path: &str) -> Option<Method> {
    let name = path.strip_prefix(SERVICE_PREFIX)?;
    Some(match name {
        "ModelInfer" => Method::Infer,
        "ModelMetadata" | "ModelReady" => Method::ModelScoped,
        _ => Method::Unscoped,
    })
}

/// Whether a `content-type` is gRPC's (`application/grpc`, `application/grpc+proto`, …).
pub fn is_grpc(content_type: &str) -> bool {
    let ct = content_type.trim().as_bytes();
    let base = b"application/grpc";
    ct.len() >= base.len()
        && ct.get(..base.len()).is_some_and(|p| p.eq_ignore_ascii_case(base))
        && matches!(ct.get(base.len()), None | Some(b'+' | b';'))
}

/// What the start of a call's message says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prefix<'a> {
    /// Not enough bytes yet to decide.
    NeedMore,
    Target(Target<'a>),
}

/// The model (and version) a call names, and where those fields end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target<'a> {
    pub model: &'a str,
    /// `None` when absent or empty (the server's choice).
    pub version: Option<&'a str>,
    /// Bytes of the body (frame header included) that fields 1–2 take.
    pub prefix_len: usize,
    /// Where the version field's tag is, when it names a version.
    pub version_at: Option<usize>,
    /// The message's length, from the frame header.
    pub message_len: u32,
}

/// Why a call was refused (the filter answers with a gRPC status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefixError {
    /// The message is compressed: its fields cannot be read without inflating it.
    Compressed,
    /// The frame header's flag is neither 0 nor 1.
    BadFrame,
    /// The body ended before the model's name did.
    Truncated,
    /// The first field is not the model's name (or the message has none).
    NoModelFirst,
    /// The name or version is not one a policy could hold, or not UTF-8.
    InvalidName,
    /// The name or version field appears twice in a row.
    Repeated,
}

impl PrefixError {
    /// For the client, in `grpc-message`.
    pub fn message(self) -> &'static str {
        match self {
            PrefixError::Compressed => {
                "compressed messages are not accepted: the proxy routes on the model name inside"
            }
            PrefixError::BadFrame => "malformed gRPC frame",
            PrefixError::Truncated => "the message ends before the model name",
            PrefixError::NoModelFirst => "the message must start with the model name (field 1)",
            PrefixError::InvalidName => "the model or version in the message is not a valid name",
            PrefixError::Repeated => "the message names the model or version more than once",
        }
    }

    /// The gRPC status code it is answered with.
    pub fn grpc_status(self) -> u32 {
        match self {
            PrefixError::Compressed => GRPC_UNIMPLEMENTED,
            _ => GRPC_INVALID_ARGUMENT,
        }
    }
}

impl fmt::Display for PrefixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

pub const GRPC_INVALID_ARGUMENT: u32 = 3;
pub const GRPC_DEADLINE_EXCEEDED: u32 = 4;
pub const GRPC_NOT_FOUND: u32 = 5;
pub const GRPC_PERMISSION_DENIED: u32 = 7;
pub const GRPC_RESOURCE_EXHAUSTED: u32 = 8;
pub const GRPC_UNIMPLEMENTED: u32 = 12;
pub const GRPC_INTERNAL: u32 = 13;

/// The header (or trailer) that carries a call's status.
pub const STATUS_HEADER: &str = "grpc-status";

/// A little cursor over the body; `None` means "not enough bytes yet".
struct Cursor<'a> {
    buf: &'a [u8],
    at: usize,
    /// Where the message ends (the frame header's length), if within the buffer.
    end: usize,
}

impl<'a> Cursor<'a> {
    fn at_end(&self) -> bool {
        self.at >= self.end
    }

    fn byte(&mut self) -> Option<u8> {
        let b = *self.buf.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    fn peek(&self) -> Option<u8> {
        self.buf.get(self.at).copied()
    }

    /// A varint length; longer than two bytes is more than any name.
    fn len(&mut self) -> Option<Result<usize, PrefixError>> {
        let lo = self.byte()?;
        if lo & 0x80 == 0 {
            return Some(Ok(usize::from(lo)));
        }
        let hi = self.byte()?;
        if hi & 0x80 != 0 {
            return Some(Err(PrefixError::InvalidName));
        }
        Some(Ok(usize::from(lo & 0x7f) | usize::from(hi) << 7))
    }

    /// A length-delimited name (the tag already read); `Ok("")` for an empty one.
    fn name(&mut self) -> Option<Result<&'a str, PrefixError>> {
        let n = match self.len()? {
            Ok(n) if n <= MAX_NAME && self.at + n <= self.end => n,
            Ok(n) if n <= MAX_NAME => return Some(Err(PrefixError::Truncated)),
            Ok(_) | Err(_) => return Some(Err(PrefixError::InvalidName)),
        };
        let bytes = self.buf.get(self.at..self.at + n)?;
        self.at += n;
        Some(match std::str::from_utf8(bytes) {
            Ok(s) if s.is_empty() || valid_name(s) => Ok(s),
            _ => Err(PrefixError::InvalidName),
        })
    }
}

/// Reads the model (and version) from the start of a call's body. `end_of_stream`: the body
/// has no more bytes than `buf`, so missing bytes are an error rather than a wait.
pub fn parse_prefix(buf: &[u8], end_of_stream: bool) -> Result<Prefix<'_>, PrefixError> {
    match parse(buf) {
        None if end_of_stream => Err(PrefixError::Truncated),
        None => Ok(Prefix::NeedMore),
        Some(r) => r.map(Prefix::Target),
    }
}

fn parse(buf: &[u8]) -> Option<Result<Target<'_>, PrefixError>> {
    let header = buf.get(..FRAME_HEADER)?;
    match header.first() {
        Some(0) => {}
        Some(1) => return Some(Err(PrefixError::Compressed)),
        _ => return Some(Err(PrefixError::BadFrame)),
    }
    let message_len = u32::from_be_bytes([*header.get(1)?, *header.get(2)?, *header.get(3)?, *header.get(4)?]);
    let end = FRAME_HEADER.saturating_add(usize::try_from(message_len).unwrap_or(usize::MAX));
    let mut c = Cursor { buf, at: FRAME_HEADER, end };
    if c.at_end() || c.byte()? != TAG_NAME {
        return Some(Err(PrefixError::NoModelFirst));
    }
    let model = match c.name()? {
        Ok("") => return Some(Err(PrefixError::InvalidName)),
        Ok(m) => m,
        Err(e) => return Some(Err(e)),
    };
    let mut version = None;
    let mut version_at = None;
    if !c.at_end() && c.peek()? == TAG_VERSION {
        version_at = Some(c.at);
        c.at += 1;
        version = match c.name()? {
            Ok(v) => Some(v).filter(|v| !v.is_empty()),
            Err(e) => return Some(Err(e)),
        };
    }
    let prefix_len = c.at;
    if !c.at_end() && matches!(c.peek()?, TAG_NAME | TAG_VERSION) {
        return Some(Err(PrefixError::Repeated));
    }
    Some(Ok(Target { model, version, prefix_len, version_at: version_at.filter(|_| version.is_some()), message_len }))
}

/// Field 15, length-delimited: where the filter moves a `model_version` out of the way. No
/// request of the protocol has a field 15, so every server skips it as unknown.
pub const TAG_MOVED_VERSION: u8 = 15 << 3 | 2;

/// The body's first `target.prefix_len` bytes with the version taken out of the message (as a
/// REST path loses its `/versions/{v}`), so that the backend serves the version the filter
/// chose: the version field's tag becomes [`TAG_MOVED_VERSION`]. One byte changes and none
/// move, so the frame's length and any `content-length` stay right (the filter can no longer
/// change the headers by then). `None` when there is no version to take out.
pub fn without_version(prefix: &[u8], target: &Target<'_>) -> Option<Vec<u8>> {
    let at = target.version_at?;
    let mut out = prefix.get(..target.prefix_len)?.to_vec();
    *out.get_mut(at)? = TAG_MOVED_VERSION;
    Some(out)
}

/// The HTTP status a `grpc-status` code stands for, as gRPC's own HTTP mapping and Envoy's
/// grpc-json transcoder pair them, so a call is counted as its REST twin would be:
/// RESOURCE_EXHAUSTED as an overload (429), UNAVAILABLE, INTERNAL, UNKNOWN and DATA_LOSS as
/// server errors, DEADLINE_EXCEEDED as a timeout (504), the client's mistakes as 4xx.
pub fn http_status(grpc_status: u32) -> u16 {
    match grpc_status {
        0 => 200,
        1 => 499,
        3 | 9 | 11 => 400,
        4 => 504,
        5 => 404,
        6 | 10 => 409,
        7 => 403,
        8 => 429,
        12 => 501,
        14 => 503,
        16 => 401,
        _ => 500,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame around fields, as a serialiser writes them.
    fn frame(fields: &[(u8, &[u8])], rest: &[u8]) -> Vec<u8> {
        let mut msg = Vec::new();
        for (tag, value) in fields {
            msg.push(*tag);
            let n = value.len();
            if n < 0x80 {
                msg.push(n as u8);
            } else {
                msg.push((n & 0x7f) as u8 | 0x80);
                msg.push((n >> 7) as u8);
            }
            msg.extend_from_slice(value);
        }
        msg.extend_from_slice(rest);
        let mut out = vec![0];
        out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
        out.extend_from_slice(&msg);
        out
    }

    const INPUTS: &[u8] = &[0x2a, 3, 1, 2, 3];

    fn target(buf: &[u8]) -> Target<'_> {
        match parse_prefix(buf, true) {
            Ok(Prefix::Target(t)) => t,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn methods_and_content_types() {
        assert_eq!(method("/inference.GRPCInferenceService/ModelInfer"), Some(Method::Infer));
        assert_eq!(method("/inference.GRPCInferenceService/ModelReady"), Some(Method::ModelScoped));
        assert_eq!(method("/inference.GRPCInferenceService/ModelMetadata"), Some(Method::ModelScoped));
        assert_eq!(method("/inference.GRPCInferenceService/ServerLive"), Some(Method::Unscoped));
        assert_eq!(method("/inference.GRPCInferenceService/RepositoryIndex"), Some(Method::Unscoped));
        assert_eq!(method("/v2/models/mlp/infer"), None);
        assert_eq!(method("/other.Service/ModelInfer"), None);
        for ct in ["application/grpc", "application/grpc+proto", "Application/GRPC; charset=x"] {
            assert!(is_grpc(ct), "{ct}");
        }
        for ct in ["application/json", "application/grpc-web", "application/grpcx", ""] {
            assert!(!is_grpc(ct), "{ct}");
        }
    }

    #[test]
    fn reads_the_model_and_version_and_stops_there() {
        let body = frame(&[(TAG_NAME, b"mlp"), (TAG_VERSION, b"v2")], INPUTS);
        let t = target(&body);
        assert_eq!((t.model, t.version, t.prefix_len), ("mlp", Some("v2"), 5 + 5 + 4));
        assert_eq!(t.message_len as usize, body.len() - 5);
        // Only the prefix is needed: the rest of the body may not have arrived.
        assert_eq!(parse_prefix(&body[..t.prefix_len + 1], false), Ok(Prefix::Target(t.clone())));
        let b = frame(&[(TAG_NAME, b"mlp")], INPUTS);
        assert_eq!((target(&b).model, target(&b).version), ("mlp", None));
        let b = frame(&[(TAG_NAME, b"mlp"), (TAG_VERSION, b"")], INPUTS);
        assert_eq!(target(&b).version, None, "an empty version is the server's choice");
        let b = frame(&[(TAG_NAME, b"mlp")], &[]);
        assert_eq!((target(&b).model, target(&b).version), ("mlp", None));
        let long = "m".repeat(128);
        let b = frame(&[(TAG_NAME, long.as_bytes()), (TAG_VERSION, long.as_bytes())], INPUTS);
        let t = target(&b);
        assert_eq!(t.model.len(), 128);
        assert!(t.prefix_len < MAX_PREFIX);
    }

    #[test]
    fn waits_for_more_bytes_only_while_the_body_goes_on() {
        let body = frame(&[(TAG_NAME, b"resnet18"), (TAG_VERSION, b"v1")], INPUTS);
        let prefix = target(&body).prefix_len;
        for cut in 0..prefix + 1 {
            assert_eq!(parse_prefix(&body[..cut], false), Ok(Prefix::NeedMore), "cut at {cut}");
            assert_eq!(parse_prefix(&body[..cut], true), Err(PrefixError::Truncated), "cut at {cut}");
        }
    }

    #[test]
    fn refuses_what_it_cannot_place() {
        let cases: Vec<(Vec<u8>, PrefixError)> = vec![
            (
                {
                    let mut b = frame(&[(TAG_NAME, b"mlp")], INPUTS);
                    b[0] = 1;
                    b
                },
                PrefixError::Compressed,
            ),
            (
                {
                    let mut b = frame(&[(TAG_NAME, b"mlp")], INPUTS);
                    b[0] = 7;
                    b
                },
                PrefixError::BadFrame,
            ),
            (frame(&[(TAG_VERSION, b"v1"), (TAG_NAME, b"mlp")], INPUTS), PrefixError::NoModelFirst),
            (frame(&[], INPUTS), PrefixError::NoModelFirst),
            (frame(&[], &[]), PrefixError::NoModelFirst),
            (frame(&[(TAG_NAME, b"")], INPUTS), PrefixError::InvalidName),
            (frame(&[(TAG_NAME, b"ml/p")], INPUTS), PrefixError::InvalidName),
            (frame(&[(TAG_NAME, b"..")], INPUTS), PrefixError::InvalidName),
            (frame(&[(TAG_NAME, &[0xff, 0xfe])], INPUTS), PrefixError::InvalidName),
            (frame(&[(TAG_NAME, "m".repeat(129).as_bytes())], INPUTS), PrefixError::InvalidName),
            (frame(&[(TAG_NAME, b"mlp"), (TAG_VERSION, b"v 1")], INPUTS), PrefixError::InvalidName),
            (frame(&[(TAG_NAME, b"mlp"), (TAG_NAME, b"secret")], INPUTS), PrefixError::Repeated),
            (frame(&[(TAG_NAME, b"mlp"), (TAG_VERSION, b"v1"), (TAG_VERSION, b"v2")], INPUTS), PrefixError::Repeated),
            // A 3-byte varint length is more than any name.
            (vec![0, 0, 0, 0, 9, TAG_NAME, 0x80, 0x80, 0x01, b'x'], PrefixError::InvalidName),
            // The name claims more bytes than the message has.
            (vec![0, 0, 0, 0, 4, TAG_NAME, 10, b'm', b'l'], PrefixError::Truncated),
        ];
        for (body, want) in cases {
            assert_eq!(parse_prefix(&body, true), Err(want), "{body:?}");
            assert!(!want.message().is_empty());
        }
        assert_eq!(PrefixError::Compressed.grpc_status(), GRPC_UNIMPLEMENTED);
        assert_eq!(PrefixError::Repeated.grpc_status(), GRPC_INVALID_ARGUMENT);
    }

    #[test]
    fn never_panics_on_any_prefix() {
        // Every short byte string, and a few thousand pseudo-random longer ones.
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        for n in 0..4000 {
            let len = n % 300;
            let body: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x >> 56) as u8
                })
                .collect();
            let _ = parse_prefix(&body, n % 2 == 0);
        }
    }

    #[test]
    fn the_version_comes_out_and_nothing_moves() {
        let body = frame(&[(TAG_NAME, b"mlp"), (TAG_VERSION, b"v2")], INPUTS);
        let t = target(&body);
        let head = without_version(&body, &t).unwrap();
        assert_eq!(head.len(), t.prefix_len);
        let rewritten = [head.as_slice(), &body[t.prefix_len..]].concat();
        assert_eq!(rewritten, frame(&[(TAG_NAME, b"mlp"), (TAG_MOVED_VERSION, b"v2")], INPUTS));
        let t2 = target(&rewritten);
        assert_eq!((t2.model, t2.version), ("mlp", None), "the version is no longer read");
        assert_eq!(without_version(&rewritten, &t2), None, "nothing to take out");
        let b = frame(&[(TAG_NAME, b"mlp"), (TAG_VERSION, b"")], INPUTS);
        assert_eq!(without_version(&b, &target(&b)), None, "an empty version names none");
    }

    #[test]
    fn statuses_count_as_their_http_twins() {
        let pairs = [
            (0, 200),
            (1, 499),
            (3, 400),
            (4, 504),
            (5, 404),
            (8, 429),
            (12, 501),
            (13, 500),
            (14, 503),
            (2, 500),
            (15, 500),
            (99, 500),
        ];
        for (grpc, http) in pairs {
            assert_eq!(http_status(grpc), http, "grpc-status {grpc}");
        }
    }
}
