//! Open Inference Protocol paths: which model a request is for. Each version has its own
//! upstream cluster (a backend serving that version), so the filter routes by cluster and
//! sends the path without `/versions/{v}`: a mirror of the request then makes sense to the
//! shadow version's backend too, and each backend names the version that really answered.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelPath<'a> {
    pub model: &'a str,
    /// Version named in the path (`/versions/{v}`), if any.
    pub version: Option<&'a str>,
    /// What follows, e.g. `infer`, `ready`, or empty for metadata.
    pub rest: &'a str,
    /// The query string with its `?`, or empty.
    pub query: &'a str,
}

/// Parses `/v2/models/{m}[/versions/{v}][/{rest}][?query]`.
pub fn parse(path: &str) -> Option<ModelPath<'_>> {
    let (path, query) = match path.find('?') {
        Some(i) => path.split_at(i),
        None => (path, ""),
    };
    let after = path.strip_prefix("/v2/models/")?;
    let (model, tail) = after.split_once('/').unwrap_or((after, ""));
    if model.is_empty() {
        return None;
    }
    let (version, rest) = match tail.strip_prefix("versions/") {
        Some(v) => {
            let (version, rest) = v.split_once('/').unwrap_or((v, ""));
            if version.is_empty() {
                return None;
            }
            (Some(version), rest)
        }
        None => (None, tail),
    };
    Some(ModelPath { model, version, rest, query })
}

/// The path without its `/versions/{v}` segment.
pub fn unversioned(p: &ModelPath<'_>) -> String {
    let mut s = format!("/v2/models/{}", p.model);
    if !p.rest.is_empty() {
        s.push('/');
        s.push_str(p.rest);
    }
    s.push_str(p.query);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_strips_versions() {
        let p = parse("/v2/models/mlp/infer").unwrap();
        assert_eq!((p.model, p.version, p.rest), ("mlp", None, "infer"));
        assert_eq!(unversioned(&p), "/v2/models/mlp/infer");
        let p = parse("/v2/models/mlp/versions/v1/infer?x=1").unwrap();
        assert_eq!((p.model, p.version, p.rest, p.query), ("mlp", Some("v1"), "infer", "?x=1"));
        assert_eq!(unversioned(&p), "/v2/models/mlp/infer?x=1");
        let p = parse("/v2/models/mlp/versions/v3").unwrap();
        assert_eq!((p.version, unversioned(&p)), (Some("v3"), "/v2/models/mlp".to_owned()));
        for bad in ["/v2/models/", "/v2/health/ready", "/v2/models//infer", "/v2/models/m/versions/", "/"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
