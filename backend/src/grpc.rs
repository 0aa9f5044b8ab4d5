//! gRPC: the Open Inference Protocol's `inference.GRPCInferenceService` on its own listener,
//! over the same models, batcher, admission control, deadlines and metrics as REST.
//!
//! Admission comes before the message is read, as for REST: the 5-byte gRPC frame header
//! declares the message's length, and that is what the request is charged (see
//! [`Admitted`]). The ticket is held until the response has been sent.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body as HttpBody, Frame};
use http_body_util::BodyExt;
use switchyard_oip::inference::{
    ModelInferRequest, ModelInferResponse, ModelMetadataRequest, ModelMetadataResponse, ModelReadyRequest,
    ModelReadyResponse, ServerLiveRequest, ServerLiveResponse, ServerMetadataRequest, ServerMetadataResponse,
    ServerReadyRequest, ServerReadyResponse,
};
use switchyard_oip::{GrpcInferenceService, GrpcInferenceServiceServer, MODEL_INFER_PATH};
use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::NamedService;
use tonic::{Request, Response, Status};

use crate::admission::Ticket;
use crate::error::ApiError;
use crate::models::ModelVersion;
use crate::service::{AppState, Held, accounted, queue};
use crate::v2::grpc as codec;

/// HTTP/2 flow-control windows: a ResNet-18 input (602 KB) fits in one stream window, so a
/// request is not held up by window updates; the connection window bounds what one client
/// can have in flight before admission.
const STREAM_WINDOW: u32 = 1 << 20;
const CONNECTION_WINDOW: u32 = 8 << 20;

struct Inference {
    st: Arc<AppState>,
}

/// An empty `version` means the server's choice, as in REST paths without one.
fn version(v: &str) -> Option<&str> {
    Some(v).filter(|v| !v.is_empty())
}

fn model<'a>(st: &'a AppState, name: &str, v: &str) -> Result<&'a Arc<ModelVersion>, Status> {
    st.models.get(name, version(v)).map_err(|e| e.to_status())
}

#[tonic::async_trait]
impl GrpcInferenceService for Inference {
    async fn server_live(&self, _: Request<ServerLiveRequest>) -> Result<Response<ServerLiveResponse>, Status> {
        Ok(Response::new(ServerLiveResponse { live: true }))
    }

    async fn server_ready(&self, _: Request<ServerReadyRequest>) -> Result<Response<ServerReadyResponse>, Status> {
        Ok(Response::new(ServerReadyResponse { ready: self.st.ready().is_ok() }))
    }

    async fn model_ready(&self, req: Request<ModelReadyRequest>) -> Result<Response<ModelReadyResponse>, Status> {
        let req = req.into_inner();
        let mv = model(&self.st, &req.name, &req.version)?;
        Ok(Response::new(ModelReadyResponse { ready: mv.check_ready().is_ok() }))
    }

    async fn server_metadata(
        &self,
        _: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        Ok(Response::new(ServerMetadataResponse {
            name: "switchyard".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: Vec::new(),
        }))
    }

    async fn model_metadata(
        &self,
        req: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        let req = req.into_inner();
        let mv = model(&self.st, &req.name, &req.version)?;
        let versions = self.st.models.versions(&req.name).map_err(|e| e.to_status())?;
        let versions: Vec<&str> = versions.iter().map(|v| v.config.version.as_str()).collect();
        Ok(Response::new(codec::model_metadata(&mv.config, &versions)))
    }

    async fn model_infer(&self, req: Request<ModelInferRequest>) -> Result<Response<ModelInferResponse>, Status> {
        let msg = req.into_inner();
        let mv = model(&self.st, &msg.model_name, &msg.model_version)?.clone();
        let work = async {
            mv.check_ready()?;
            let req = codec::decode_request(&mv.config, msg)?;
            let id = req.id.clone();
            let requested = req.outputs.clone();
            let out = queue(&mv, req).await?;
            codec::encode_response(&mv.config, id.as_deref(), &requested, &out).map_err(ApiError::from)
        };
        accounted(&self.st, &mv, work).await.map(Response::new).map_err(|e| e.to_status())
    }
}

/// The service with admission in front of `ModelInfer`.
pub fn service(st: Arc<AppState>) -> Admitted<GrpcInferenceServiceServer<impl GrpcInferenceService>> {
    let max = st.admission.limits.max_body_bytes;
    let inner = GrpcInferenceServiceServer::new(Inference { st: st.clone() })
        .max_decoding_message_size(max)
        .max_encoding_message_size(usize::MAX);
    Admitted { inner, st }
}

/// Serves gRPC on `listener` (mutual TLS with `tls`) until `shutdown` resolves, then finishes
/// the calls in flight.
pub async fn serve(
    st: Arc<AppState>,
    listener: tokio::net::TcpListener,
    tls: Option<switchyard_tls::ServerTls>,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let refused = st.metrics.tls_refused("grpc");
    let server = tonic::transport::Server::builder()
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .add_service(service(st));
    match tls {
        Some(tls) => {
            let incoming = switchyard_tls::TlsListener::new(listener, &tls, "grpc", refused)?.incoming();
            server.serve_with_incoming_shutdown(incoming, shutdown).await.map_err(std::io::Error::other)
        }
        None => {
            let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            server.serve_with_incoming_shutdown(incoming, shutdown).await.map_err(std::io::Error::other)
        }
    }
}

/// Admission for `ModelInfer` before its message is read: the frame header's declared
/// length is charged to the budget (a message over `--max-body-bytes` or beyond the budget
/// is refused with RESOURCE_EXHAUSTED at once), and the rest of the body must arrive within
/// the body read timeout.
#[derive(Clone)]
pub struct Admitted<S> {
    inner: S,
    st: Arc<AppState>,
}

impl<S: NamedService> NamedService for Admitted<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for Admitted<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<http::Response<Body>, Infallible>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        // The clone that was polled ready is the one that serves (tower's rule).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let st = self.st.clone();
        Box::pin(async move {
            if req.uri().path() != MODEL_INFER_PATH {
                return inner.call(req).await;
            }
            let (parts, body) = req.into_parts();
            match admit(&st, body).await {
                Ok((ticket, body)) => {
                    let resp = inner.call(http::Request::from_parts(parts, Body::new(body))).await?;
                    Ok(resp.map(|body| Body::new(Held::new(body, ticket))))
                }
                Err(e) => Ok(e.to_status().into_http()),
            }
        })
    }
}

/// gRPC's length-prefixed message header: a compression flag and a big-endian u32 length.
const FRAME_HEADER: usize = 5;

/// Reads the frame header (and whatever came with it), admits the message by its declared
/// length, and hands back the body with those bytes put back in front.
async fn admit(st: &AppState, mut body: Body) -> Result<(Ticket, Prefixed), ApiError> {
    let limits = &st.admission.limits;
    let deadline = tokio::time::Instant::now() + limits.body_read_timeout;
    let mut head = BytesMut::new();
    while head.len() < FRAME_HEADER {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(ApiError::BodyReadTimeout(limits.body_read_timeout)),
            Ok(None) => break,
            Ok(Some(frame)) => frame.map_err(|e| ApiError::BodyRead(e.message().to_owned()))?,
        };
        if let Ok(data) = frame.into_data() {
            head.extend_from_slice(&data);
        }
    }
    // A body too short for a header is left for tonic to refuse; it costs nothing.
    let declared = (head.len() >= FRAME_HEADER).then(|| {
        let mut len = &head[1..FRAME_HEADER];
        FRAME_HEADER as u64 + u64::from(len.get_u32())
    });
    let ticket = st.admission.try_admit(Some(declared.unwrap_or(head.len() as u64)))?;
    let rest = Prefixed {
        prefix: Some(head.freeze()).filter(|b| !b.is_empty()),
        body,
        deadline: Box::pin(tokio::time::sleep_until(deadline)),
        timeout: limits.body_read_timeout,
    };
    Ok((ticket, rest))
}

/// The request body after admission: the bytes already read, then the rest, which has to
/// arrive before the body read deadline.
struct Prefixed {
    prefix: Option<Bytes>,
    body: Body,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timeout: std::time::Duration,
}

impl HttpBody for Prefixed {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if let Some(prefix) = self.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        let this = &mut *self;
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Pending if this.deadline.as_mut().poll(cx).is_ready() => {
                Poll::Ready(Some(Err(ApiError::BodyReadTimeout(this.timeout).to_status())))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.body.is_end_stream()
    }
}
