//! The Open Inference Protocol's gRPC service (`inference.GRPCInferenceService`), generated
//! from `proto/inference.proto`: messages, the server trait and the client.
//!
//! The wire format is the specification's, so Triton's and KServe's clients work unchanged.

#[allow(clippy::all, clippy::pedantic, unreachable_pub, missing_docs)]
pub mod inference {
    tonic::include_proto!("inference");
}

pub use inference::grpc_inference_service_client::GrpcInferenceServiceClient;
pub use inference::grpc_inference_service_server::{GrpcInferenceService, GrpcInferenceServiceServer};

/// The path of the inference RPC: what the proxy matches to read a request's model.
pub const MODEL_INFER_PATH: &str = "/inference.GRPCInferenceService/ModelInfer";
