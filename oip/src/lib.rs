//! The Open Inference Protocol's gRPC service (`inference.GRPCInferenceService`), generated
//! from `proto/inference.proto`: messages, the server trait and the client, over a strict
//! codec ([`codec`]) that keeps a call's model name where the proxy reads it.
//!
//! The wire format is the specification's, so Triton's and KServe's clients work unchanged.

pub mod codec;

#[allow(clippy::all, clippy::pedantic, unreachable_pub, missing_docs)]
pub mod inference {
    tonic::include_proto!("inference");
}

pub use inference::grpc_inference_service_client::GrpcInferenceServiceClient;
pub use inference::grpc_inference_service_server::{GrpcInferenceService, GrpcInferenceServiceServer};

/// The path of the inference RPC: what the proxy matches to read a request's model.
pub const MODEL_INFER_PATH: &str = "/inference.GRPCInferenceService/ModelInfer";

/// Requests whose fields 1–2 are a model's name and version.
macro_rules! placed {
    (names: $($named:ident),*; others: $($other:ident),*) => {
        $(impl codec::Placed for inference::$named { const NAMES_MODEL: bool = true; })*
        $(impl codec::Placed for inference::$other {})*
    };
}

placed!(
    names: ModelInferRequest, ModelMetadataRequest, ModelReadyRequest;
    others: ServerLiveRequest, ServerLiveResponse, ServerReadyRequest, ServerReadyResponse, ModelReadyResponse,
        ServerMetadataRequest, ServerMetadataResponse, ModelMetadataResponse, ModelInferResponse
);
