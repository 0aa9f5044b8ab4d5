//! Connections to the server under test, for the generator's requests and for the one-off
//! calls around a run (model metadata, admin scrapes): HTTP/1.1 for REST, HTTP/2 (cleartext,
//! prior knowledge) for gRPC.

use anyhow::Context;
use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::{http1, http2};
use tokio::net::TcpStream;

/// One connection's request half.
pub enum Sender {
    Http1(http1::SendRequest<Full<Bytes>>),
    Http2(http2::SendRequest<Full<Bytes>>),
}

impl Sender {
    pub fn is_closed(&self) -> bool {
        match self {
            Sender::Http1(s) => s.is_closed(),
            Sender::Http2(s) => s.is_closed(),
        }
    }

    pub async fn send_request(
        &mut self,
        req: Request<Full<Bytes>>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, hyper::Error> {
        match self {
            Sender::Http1(s) => s.send_request(req).await,
            Sender::Http2(s) => s.send_request(req).await,
        }
    }
}

async fn tcp(addr: &str) -> anyhow::Result<hyper_util::rt::TokioIo<TcpStream>> {
    let stream = TcpStream::connect(addr).await.with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_nodelay(true)?;
    Ok(hyper_util::rt::TokioIo::new(stream))
}

/// A new HTTP/1.1 connection (no delay on small writes), its driver spawned on the runtime.
pub async fn connect(addr: &str) -> anyhow::Result<http1::SendRequest<Full<Bytes>>> {
    let (sender, conn) = http1::handshake(tcp(addr).await?).await?;
    tokio::spawn(conn);
    Ok(sender)
}

/// A new connection of the kind the run speaks.
pub async fn connect_as(addr: &str, grpc: bool) -> anyhow::Result<Sender> {
    if !grpc {
        return Ok(Sender::Http1(connect(addr).await?));
    }
    let (sender, conn) = http2::Builder::new(hyper_util::rt::TokioExecutor::new())
        // A ResNet-18 input (602 KB) in one window, as the backend's own settings allow.
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(8 << 20)
        .handshake(tcp(addr).await?)
        .await?;
    tokio::spawn(conn);
    Ok(Sender::Http2(sender))
}

/// One GET on a fresh connection: (status, body).
pub async fn get(addr: &str, path: &str) -> anyhow::Result<(u16, Bytes)> {
    request(addr, hyper::Method::GET, path, None, Bytes::new()).await
}

/// One request on a fresh connection, with a body of `content_type`: (status, body).
pub async fn request(
    addr: &str,
    method: hyper::Method,
    path: &str,
    content_type: Option<&str>,
    body: Bytes,
) -> anyhow::Result<(u16, Bytes)> {
    let mut s = connect(addr).await?;
    let mut req = Request::builder().method(method).uri(path).header("host", addr);
    if let Some(t) = content_type {
        req = req.header(hyper::header::CONTENT_TYPE, t);
    }
    let resp = s.send_request(req.body(Full::new(body))?).await?;
    let status = resp.status().as_u16();
    Ok((status, resp.into_body().collect().await?.to_bytes()))
}

/// A protobuf message in gRPC's length-prefixed frame (uncompressed).
pub fn grpc_frame(message: &[u8]) -> anyhow::Result<Bytes> {
    let len = u32::try_from(message.len()).context("message over 4 GiB")?;
    let mut b = BytesMut::with_capacity(5 + message.len());
    b.put_u8(0);
    b.put_u32(len);
    b.put_slice(message);
    Ok(b.freeze())
}

/// A gRPC request for `method` of the Open Inference Protocol's service.
pub fn grpc_request(addr: &str, method: &str, frame: Bytes) -> Result<Request<Full<Bytes>>, hyper::http::Error> {
    Request::post(format!("http://{addr}/inference.GRPCInferenceService/{method}"))
        .header(hyper::header::CONTENT_TYPE, "application/grpc")
        .header(hyper::header::TE, "trailers")
        .body(Full::new(frame))
}

/// A gRPC call's status: from the trailers, or the headers of a trailers-only answer.
pub fn grpc_status(headers: &hyper::HeaderMap, trailers: Option<&hyper::HeaderMap>) -> Option<u32> {
    let read = |h: &hyper::HeaderMap| h.get("grpc-status")?.to_str().ok()?.trim().parse().ok();
    trailers.and_then(read).or_else(|| read(headers))
}

/// One unary call on a fresh HTTP/2 connection: the response message, or the status and
/// message the server gave.
pub async fn grpc_call(addr: &str, method: &str, message: &[u8]) -> anyhow::Result<Bytes> {
    let mut s = connect_as(addr, true).await?;
    let resp = s.send_request(grpc_request(addr, method, grpc_frame(message)?)?).await?;
    let headers = resp.headers().clone();
    let collected = resp.into_body().collect().await?;
    let trailers = collected.trailers().cloned();
    match grpc_status(&headers, trailers.as_ref()) {
        Some(0) => {}
        status => {
            let msg = trailers.as_ref().and_then(|t| t.get("grpc-message")).or_else(|| headers.get("grpc-message"));
            let msg = percent_encoding::percent_decode_str(msg.and_then(|m| m.to_str().ok()).unwrap_or_default())
                .decode_utf8_lossy();
            let status = status.map_or_else(|| "none".to_owned(), |s| s.to_string());
            anyhow::bail!("{method} at {addr}: grpc-status {status}: {msg}");
        }
    }
    let body = collected.to_bytes();
    body.get(5..).map(Bytes::copy_from_slice).context("the answer has no gRPC message")
}
