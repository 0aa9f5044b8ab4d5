//! Names the policy gives things: models, versions and Envoy clusters. A leaf: the policy's
//! parser, the request-path and gRPC placement, and the services that check names they are
//! handed (the collector, the monitor, the backend) all agree through these two functions.

/// A model or version name: 1-128 of `[A-Za-z0-9_.-]`, and not `.` or `..`, which are path
/// segments with a meaning of their own (a model is named in the request path).
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s != "."
        && s != ".."
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// A cluster as Envoy names it: a name, or Istio's `outbound|PORT|SUBSET|HOST`.
pub fn valid_cluster(s: &str) -> bool {
    s.len() <= 256 && s.split('|').all(|part| part.is_empty() || valid_name(part)) && s.bytes().any(|b| b != b'|')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_are_not_names() {
        for name in [".", ".."] {
            assert!(!valid_name(name), "{name}");
        }
        assert!(valid_name("resnet-18.v2") && valid_name("...") && valid_name(".hidden"));
    }

    #[test]
    fn clusters_are_names_or_istios_outbound_clusters() {
        for ok in ["mlp-v1", "outbound|8000||mlp-v1.switchyard.svc.cluster.local", "outbound|80|canary|h"] {
            assert!(valid_cluster(ok), "{ok}");
        }
        for bad in ["", "|", "||", "a|b c", "a|..|b", "a\nb", &"x".repeat(257)] {
            assert!(!valid_cluster(bad), "{bad:?}");
        }
    }
}
