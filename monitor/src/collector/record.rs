//! A sample as it is stored: one JSON object on one line.

use serde_json::value::RawValue;

/// The line to append for `body`, newline included; `None` unless `body` is exactly one JSON
/// object in UTF-8.
pub fn line(body: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(body).ok()?;
    // Validates without building the value; trailing data (a second value) is an error.
    let value: &RawValue = serde_json::from_str(text).ok()?;
    if !value.get().starts_with('{') {
        return None;
    }
    // In valid JSON a line break can only be whitespace between tokens (inside strings it must
    // be escaped), so dropping them keeps the value exactly; re-serialising would reorder keys
    // and round large numbers.
    let mut line: Vec<u8> = body.iter().copied().filter(|b| !matches!(b, b'\n' | b'\r')).collect();
    line.push(b'\n');
    Some(line)
}

#[cfg(test)]
mod tests {
    use super::line;

    #[test]
    fn an_object_is_stored_as_is_plus_a_newline() {
        assert_eq!(line(br#"{"a":[1,2],"b":"x"}"#).unwrap(), b"{\"a\":[1,2],\"b\":\"x\"}\n");
    }

    #[test]
    fn line_breaks_are_dropped_and_the_value_kept() {
        let pretty = b"{\r\n  \"b\": \"two\\nlines\",\n  \"a\": 123456789012345678901234567890\n}\n";
        let got = line(pretty).unwrap();
        assert_eq!(got.iter().filter(|&&b| b == b'\n').count(), 1);
        assert_eq!(got.last(), Some(&b'\n'));
        // The escaped newline inside the string, key order and the big number survive.
        assert_eq!(
            String::from_utf8(got).unwrap(),
            "{  \"b\": \"two\\nlines\",  \"a\": 123456789012345678901234567890}\n"
        );
    }

    #[test]
    fn anything_but_one_json_object_is_refused() {
        for bad in [
            &b""[..],
            b"   ",
            b"{not json",
            b"{}{}",
            b"{}\n{}",
            b"[1,2]",
            b"\"text\"",
            b"42",
            b"null",
            b"{\"a\":\"\xff\"}",
            b"{\"a\":\"raw\nnewline\"}",
        ] {
            assert_eq!(line(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
