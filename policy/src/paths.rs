//! Open Inference Protocol paths: which model a request is for. Each version has its own
//! upstream cluster (a backend serving that version), so the filter routes by cluster and
//! sends the path without `/versions/{v}`: a mirror of the request then makes sense to the
//! shadow version's backend too, and each backend names the version that really answered.
//!
//! The model and version segments are percent-decoded, strictly: `/v2/models/ml%70/infer` is
//! the model `mlp`, and a backend that decodes paths would serve it as `mlp`, so a filter that
//! did not decode would let it skip the split, the allow-list, sampling and the SLO. A segment
//! that cannot be decoded unambiguously (a malformed escape, an encoded `/`) or that decodes to
//! something no policy could name is refused rather than guessed at. That strictness is why
//! the decoder is the crate's own: the `percent-encoding` crate passes malformed escapes
//! through as text, which is right for a lenient backend (it is the property tests' oracle for
//! one) and wrong for the filter.

use std::borrow::Cow;
use std::fmt;

use crate::names::valid_name;

const PREFIX: &str = "/v2/models/";

/// Whether `path` is under the models' prefix (a model's metadata, readiness or inference,
/// whatever its name decodes to): what a client needs a tenant for.
pub fn is_model_scoped(path: &str) -> bool {
    path.starts_with(PREFIX)
}
const VERSIONS: &str = "versions";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelPath<'a> {
    /// The model, decoded.
    pub model: Cow<'a, str>,
    /// Version named in the path (`/versions/{v}`), decoded, if any.
    pub version: Option<Cow<'a, str>>,
    /// What follows, with its leading `/` (e.g. `/infer`, `/ready`), or empty for metadata.
    /// Passed on as the client sent it: the backend, not the filter, decides what it means.
    pub rest: &'a str,
    /// The query string with its `?`, or empty.
    pub query: &'a str,
    /// Whether the model or version segments (or the `versions` keyword) were percent-encoded.
    pub encoded: bool,
}

/// Why a model path was refused (the filter answers 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// `%` not followed by two hex digits.
    MalformedEscape,
    /// `%2F`: a `/` inside a segment, which some backends would split on.
    EncodedSlash,
    /// The decoded model or version is not a name a policy could hold (1-128 of
    /// `[A-Za-z0-9_.-]`, not `.` or `..`), or the version is empty.
    InvalidName,
    /// A `.` or `..` segment after the names (encoded or not): a backend resolving it would
    /// serve another path than the one decided on.
    DotSegment,
    /// `/versions/{v}` twice: with the first stripped, the backend would read the second.
    RepeatedVersion,
    /// `//` inside the path: a backend merging slashes would read other segments as the
    /// model or version.
    EmptySegment,
}

impl PathError {
    /// A short message for the client (the body of the 400).
    pub fn message(self) -> &'static str {
        match self {
            PathError::MalformedEscape => "malformed percent-encoding in the model path",
            PathError::EncodedSlash => "encoded '/' in a model or version name",
            PathError::InvalidName => "the model or version in the path is not a valid name",
            PathError::DotSegment => "dot segment in the model path",
            PathError::RepeatedVersion => "the path names a version more than once",
            PathError::EmptySegment => "empty segment in the model path",
        }
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

/// Parses `/v2/models/{m}[/versions/{v}][/{rest}][?query]`: `Ok(None)` when the path is not
/// for a model at all, `Err` when it is but its names cannot be trusted. The rest is checked
/// too (strictly decodable, no dot segments, no second `versions`), so that the canonical
/// path means the same to every backend, decoding or not: [`canonical`] of an accepted path
/// parses to the same model with no version.
pub fn parse(path: &str) -> Result<Option<ModelPath<'_>>, PathError> {
    let (path, query) = match path.find('?') {
        Some(i) => path.split_at(i),
        None => (path, ""),
    };
    let Some(after) = path.strip_prefix(PREFIX) else { return Ok(None) };
    let (raw_model, tail) = split_segment(after);
    if raw_model.is_empty() {
        // `/v2/models/` names no model; `/v2/models//m` would be `m` to a backend merging slashes.
        return if tail.is_empty() { Ok(None) } else { Err(PathError::EmptySegment) };
    }
    let model = decode_name(raw_model)?;
    let mut encoded = raw_model.contains('%');
    let (version, rest) = match tail.strip_prefix('/').map(split_segment) {
        // `/versions` with nothing after it names no version: it is part of the rest.
        Some((keyword, after_keyword)) if !after_keyword.is_empty() && is_versions(keyword) => {
            encoded |= keyword.contains('%');
            let (raw_version, rest) = split_segment(after_keyword.strip_prefix('/').unwrap_or(after_keyword));
            encoded |= raw_version.contains('%');
            (Some(decode_name(raw_version)?), rest)
        }
        _ => (None, tail),
    };
    check_rest(rest)?;
    Ok(Some(ModelPath { model, version, rest, query, encoded }))
}

/// The segments after the names: each strictly decodable, none `.`, `..` or empty (but a
/// trailing slash), and the first not a second `versions/{v}` (a lone trailing `versions` names
/// nothing and is left alone).
fn check_rest(rest: &str) -> Result<(), PathError> {
    let mut segments = rest.split('/').skip(1).peekable();
    if segments.next_if(|first| is_versions(first)).is_some() && segments.peek().is_some() {
        return Err(PathError::RepeatedVersion);
    }
    while let Some(seg) = segments.next() {
        if seg.is_empty() && segments.peek().is_some() {
            return Err(PathError::EmptySegment);
        }
        let dots = if seg.contains('%') { decode(seg)? } else { seg.as_bytes().to_vec() };
        if dots == b"." || dots == b".." {
            return Err(PathError::DotSegment);
        }
    }
    Ok(())
}

/// The path as the filter forwards it: decoded names, without `/versions/{v}`.
pub fn canonical(p: &ModelPath<'_>) -> String {
    let mut s = String::with_capacity(PREFIX.len() + p.model.len() + p.rest.len() + p.query.len());
    s.push_str(PREFIX);
    s.push_str(&p.model);
    s.push_str(p.rest);
    s.push_str(p.query);
    s
}

/// The first segment and the rest (with its leading `/`, or empty).
fn split_segment(s: &str) -> (&str, &str) {
    match s.find('/') {
        Some(i) => s.split_at(i),
        None => (s, ""),
    }
}

/// The `versions` keyword, however it is encoded (`%76ersions` is still the keyword to a
/// decoding backend). A keyword that does not decode is not the keyword.
fn is_versions(segment: &str) -> bool {
    if segment.contains('%') { decode(segment).is_ok_and(|d| d == VERSIONS.as_bytes()) } else { segment == VERSIONS }
}

/// A decoded model or version name; borrowed when there was nothing to decode.
fn decode_name(segment: &str) -> Result<Cow<'_, str>, PathError> {
    let name: Cow<'_, str> = if segment.contains('%') {
        // A valid name is ASCII, so bytes that are not UTF-8 are refused below anyway.
        let bytes = decode(segment)?;
        Cow::Owned(String::from_utf8(bytes).map_err(|_| PathError::InvalidName)?)
    } else {
        Cow::Borrowed(segment)
    };
    if valid_name(&name) { Ok(name) } else { Err(PathError::InvalidName) }
}

/// Strict percent-decoding of one segment: every `%` starts a two-hex-digit escape, and an
/// escaped `/` is refused (decoding it would change where the segment ends).
pub fn decode(segment: &str) -> Result<Vec<u8>, PathError> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b != b'%' {
            out.push(b);
            i += 1;
            continue;
        }
        let hex = |j: usize| bytes.get(j).and_then(|c| char::from(*c).to_digit(16));
        let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) else {
            return Err(PathError::MalformedEscape);
        };
        // Two hex digits: at most 0xff, so the cast is exact.
        let decoded = (hi * 16 + lo) as u8;
        if decoded == b'/' {
            return Err(PathError::EncodedSlash);
        }
        out.push(decoded);
        i += 3;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(path: &str) -> ModelPath<'_> {
        parse(path).unwrap().unwrap()
    }

    #[test]
    fn parses_and_strips_versions() {
        let p = ok("/v2/models/mlp/infer");
        assert_eq!((&*p.model, p.version.as_deref(), p.rest, p.encoded), ("mlp", None, "/infer", false));
        assert_eq!(canonical(&p), "/v2/models/mlp/infer");
        let p = ok("/v2/models/mlp/versions/v1/infer?x=1");
        assert_eq!((&*p.model, p.version.as_deref(), p.rest, p.query), ("mlp", Some("v1"), "/infer", "?x=1"));
        assert_eq!(canonical(&p), "/v2/models/mlp/infer?x=1");
        let p = ok("/v2/models/mlp/versions/v3");
        assert_eq!((p.version.as_deref(), canonical(&p)), (Some("v3"), "/v2/models/mlp".to_owned()));
        // A trailing slash is the client's business: kept.
        assert_eq!(canonical(&ok("/v2/models/mlp/versions/v3/")), "/v2/models/mlp/");
        assert_eq!(ok("/v2/models/mlp/versions").rest, "/versions");
        for not_a_model in ["/v2/models/", "/v2/health/ready", "/", "/v2/models", "/v2/modelsx/m"] {
            assert_eq!(parse(not_a_model), Ok(None), "{not_a_model}");
        }
    }

    /// The attack: an encoded name reached the backend as `mlp` while the filter saw an
    /// unknown model and skipped split, allow-list, shadow, sampling and SLO.
    #[test]
    fn percent_encoded_names_are_the_names_they_encode() {
        let p = ok("/v2/models/ml%70/infer");
        assert_eq!((&*p.model, p.encoded), ("mlp", true));
        assert_eq!(canonical(&p), "/v2/models/mlp/infer");
        let p = ok("/v2/models/%6dlp/versions/v2/infer");
        assert_eq!((&*p.model, p.version.as_deref()), ("mlp", Some("v2")));
        assert_eq!(canonical(&p), "/v2/models/mlp/infer");
        let p = ok("/v2/models/mlp/%76ersions/%76%32/infer");
        assert_eq!((p.version.as_deref(), p.rest, p.encoded), (Some("v2"), "/infer", true));
        // Lower- and upper-case hex alike.
        assert_eq!(ok("/v2/models/%4D%4c%50").model, "MLP");
    }

    #[test]
    fn undecodable_or_impossible_names_are_refused() {
        for (path, e) in [
            ("/v2/models/ml%7/infer", PathError::MalformedEscape),
            ("/v2/models/ml%/infer", PathError::MalformedEscape),
            ("/v2/models/ml%zz/infer", PathError::MalformedEscape),
            ("/v2/models/ml%+7/infer", PathError::MalformedEscape),
            ("/v2/models/mlp%2Finfer", PathError::EncodedSlash),
            ("/v2/models/mlp/versions/v1%2fx/infer", PathError::EncodedSlash),
            ("/v2/models/ml%20p/infer", PathError::InvalidName),
            ("/v2/models/%2e%2e/infer", PathError::InvalidName),
            ("/v2/models/../infer", PathError::InvalidName),
            ("/v2/models/ml%00p", PathError::InvalidName),
            ("/v2/models/%c3%a9", PathError::InvalidName),
            ("/v2/models/%ff", PathError::InvalidName),
            ("/v2/models/mlp/versions/", PathError::InvalidName),
            ("/v2/models/mlp/versions//infer", PathError::InvalidName),
            ("/v2/models/mlp/versions/%2525", PathError::InvalidName),
        ] {
            assert_eq!(parse(path), Err(e), "{path}");
        }
    }

    #[test]
    fn a_keyword_that_does_not_decode_is_part_of_the_rest() {
        let p = ok("/v2/models/mlp/%76ersion%25/v2");
        assert_eq!((p.version, p.rest), (None, "/%76ersion%25/v2"));
        assert_eq!(parse("/v2/models/mlp/%76ersion%/v2"), Err(PathError::MalformedEscape));
    }

    /// Found by the path properties: the canonical form of these named another path.
    #[test]
    fn the_rest_cannot_name_a_second_version_or_climb_out() {
        for (path, e) in [
            ("/v2/models/mlp/versions/v1/versions/v2/infer", PathError::RepeatedVersion),
            ("/v2/models/mlp/versions/v1/%76ersions/v2", PathError::RepeatedVersion),
            ("/v2/models/mlp/../other/infer", PathError::DotSegment),
            ("/v2/models/mlp/versions/v1/%2e%2E/other/infer", PathError::DotSegment),
            ("/v2/models/mlp/infer/.", PathError::DotSegment),
            ("/v2/models/mlp/a%2fb", PathError::EncodedSlash),
            ("/v2/models/mlp/infer%", PathError::MalformedEscape),
            ("/v2/models//mlp/infer", PathError::EmptySegment),
            ("/v2/models/mlp//versions/v2/infer", PathError::EmptySegment),
            ("/v2/models/mlp/versions/v1//infer", PathError::EmptySegment),
        ] {
            assert_eq!(parse(path), Err(e), "{path}");
        }
        // A lone trailing `versions` names no version; dots within a segment are no dot segment.
        assert_eq!(ok("/v2/models/mlp/versions/v1/versions").rest, "/versions");
        assert_eq!(ok("/v2/models/mlp/a..b/.x").rest, "/a..b/.x");
        // Accepted paths keep a canonical form that means the same.
        let p = ok("/v2/models/ml%70/versions/v1/versions");
        let c = canonical(&p);
        assert_eq!(
            ok(&c),
            ModelPath { model: "mlp".into(), version: None, rest: "/versions", query: "", encoded: false }
        );
    }
}
