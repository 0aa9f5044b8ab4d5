//! The one duration grammar: Prometheus' (`250ms`, `30s`, `5m`, `1h30m`, `3d`, `1w`, `1y`;
//! whole numbers, units from largest to smallest or in any order). The same strings become
//! metric labels (the SLO windows), PromQL ranges and rule intervals, so every duration the
//! project reads, from a policy, a rollout spec, a load scenario or a flag, uses it.

use std::time::Duration;

/// Milliseconds, or `None` when `s` is not a duration (`0s` is; an empty string is not).
pub fn parse_ms(s: &str) -> Option<u64> {
    let (mut total, mut rest) = (0u64, s);
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let n: u64 = rest.get(..digits)?.parse().ok()?;
        rest = rest.get(digits..)?;
        let unit_len = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_alphabetic()).len();
        let per = match rest.get(..unit_len)? {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            "y" => 31_536_000_000,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(per)?)?;
        rest = rest.get(unit_len..)?;
    }
    (total > 0 || s == "0s").then_some(total)
}

/// A string that is not a duration; the message shows what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a duration like 250ms, 30s, 5m or 1h30m")]
pub struct NotADuration(pub String);

/// [`parse_ms`] as a [`Duration`].
pub fn parse(s: &str) -> Result<Duration, NotADuration> {
    parse_ms(s).map(Duration::from_millis).ok_or_else(|| NotADuration(s.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_durations() {
        assert_eq!(parse_ms("250ms"), Some(250));
        assert_eq!(parse_ms("1h30m"), Some(5_400_000));
        assert_eq!(parse_ms("3d"), Some(259_200_000));
        assert_eq!(parse_ms("0s"), Some(0));
        for bad in ["", "5", "5x", "1.5s", "-1s", "m", "5 m", "99999999999999999999s"] {
            assert_eq!(parse_ms(bad), None, "{bad}");
        }
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert!(parse("fast").unwrap_err().to_string().contains("not a duration"));
    }
}
