//! HTTP/1.1 connections to the server under test, for the generator's requests and for the
//! one-off calls around a run (model metadata, admin scrapes).

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::http1;
use tokio::net::TcpStream;

/// A new connection (no delay on small writes), its driver spawned on the runtime.
pub async fn connect(addr: &str) -> anyhow::Result<http1::SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await.with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_nodelay(true)?;
    let (sender, conn) = http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

/// One GET on a fresh connection: (status, body).
pub async fn get(addr: &str, path: &str) -> anyhow::Result<(u16, Bytes)> {
    let mut s = connect(addr).await?;
    let req = Request::get(path).header("host", addr).body(Full::new(Bytes::new()))?;
    let resp = s.send_request(req).await?;
    let status = resp.status().as_u16();
    Ok((status, resp.into_body().collect().await?.to_bytes()))
}
