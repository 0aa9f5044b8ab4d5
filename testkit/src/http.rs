//! Blocking HTTP for tests and harness code: `ureq` for every request a client library will
//! build, and the same request written to the socket as given for the ones it will not
//! (control bytes in header values, malformed paths), their answers parsed by `httparse`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!("status {} body is not JSON ({e}): {:?}", self.status, String::from_utf8_lossy(&self.body))
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The `error` message of an error response, checking the body's shape.
    pub fn error(&self) -> String {
        let v = self.json();
        v["error"].as_str().unwrap_or_else(|| panic!("no \"error\" string in {v}")).to_owned()
    }
}

/// One request on a fresh connection; panics when there is no HTTP answer.
pub fn request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    try_request(addr, method, path, headers, body).unwrap_or_else(|e| panic!("{method} http://{addr}{path}: {e}"))
}

/// One request on a fresh connection (so that each may land on another Envoy worker), any
/// status an answer; Err only when no HTTP answer came (refused, reset, timed out).
pub fn try_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Resp, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .max_idle_connections(0)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into();
    let mut req = ureq::http::Request::builder().method(method).uri(format!("http://{addr}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = match req.body(body.to_vec()) {
        Ok(r) => r,
        // The http crate refuses to build what a hostile client sends anyway (control bytes in
        // a header value, a malformed path): send those bytes as they are.
        Err(_) => return raw_request(addr, method, path, headers, body),
    };
    let resp = agent.run(req).map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let body = resp.into_body().with_config().limit(u64::MAX).read_to_vec().map_err(|e| e.to_string())?;
    Ok(Resp { status, headers, body })
}

/// Percent-encoding for a URL query value (RFC 3986 unreserved characters kept).
pub fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Largest answer read back: hostile-input tests look at statuses and headers.
const MAX_ANSWER: u64 = 64 << 20;

fn raw_request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<Resp, String> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n").into_bytes();
    if !body.is_empty() || method == "POST" {
        head.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    for (k, v) in headers {
        head.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    head.extend_from_slice(body);
    send_raw(addr, &head).map_err(|e| format!("{method} {path}: {e}"))
}

/// Writes `request` (a whole HTTP/1.1 request, any bytes at all, ending the connection with
/// `connection: close`) and parses the answer.
pub fn send_raw(addr: &str, request: &[u8]) -> Result<Resp, String> {
    let io = |e: std::io::Error| e.to_string();
    let mut s = TcpStream::connect(addr).map_err(io)?;
    s.set_read_timeout(Some(Duration::from_secs(120))).map_err(io)?;
    s.write_all(request).map_err(io)?;
    let mut raw = Vec::new();
    s.take(MAX_ANSWER).read_to_end(&mut raw).map_err(io)?;
    parse(&raw)
}

fn parse(raw: &[u8]) -> Result<Resp, String> {
    let mut slots = [httparse::EMPTY_HEADER; 64];
    let mut r = httparse::Response::new(&mut slots);
    let httparse::Status::Complete(len) = r.parse(raw).map_err(|e| format!("bad answer: {e}"))? else {
        return Err("the answer ended inside its headers".into());
    };
    let status = r.code.ok_or("no status")?;
    let headers: Vec<(String, String)> =
        r.headers.iter().map(|h| (h.name.to_owned(), String::from_utf8_lossy(h.value).into_owned())).collect();
    let rest = raw.get(len..).unwrap_or_default();
    let chunked = headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked { dechunk(rest)? } else { rest.to_vec() };
    Ok(Resp { status, headers, body })
}

fn dechunk(mut b: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let httparse::Status::Complete((start, size)) =
            httparse::parse_chunk_size(b).map_err(|_| "bad chunk size".to_owned())?
        else {
            return Err("the answer ended inside a chunk size".into());
        };
        if size == 0 {
            return Ok(out);
        }
        let end = usize::try_from(size).ok().and_then(|n| start.checked_add(n)).ok_or("chunk too large")?;
        out.extend_from_slice(b.get(start..end).ok_or("the answer ended inside a chunk")?);
        b = b.get(end + 2..).ok_or("the answer ended after a chunk")?;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_plain_and_chunked_answers_and_refuses_torn_ones() {
        let r = parse(b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\nno").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (404, &b"no"[..]));
        let r =
            parse(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap();
        assert_eq!(r.body, b"abcde");
        assert!(parse(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n").is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nffff\r\nab").is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\ncontent-").is_err());
    }
}
