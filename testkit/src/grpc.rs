//! gRPC helpers for the tests that the generated client cannot express.

use bytes::{Buf, BufMut, Bytes};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;

/// Passes messages through as bytes: for hand-built protobuf (a smuggled field, garbage).
struct Raw;

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Bytes;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Bytes;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

/// Sends `message` as it is to `ModelInfer` at `addr`: the answer's message, or its status.
pub async fn raw_infer(addr: &str, message: Vec<u8>) -> Result<Bytes, tonic::Status> {
    let channel = Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(switchyard_oip::MODEL_INFER_PATH);
    grpc.unary(tonic::Request::new(message), path, Raw).await.map(tonic::Response::into_inner)
}

/// `ModelInfer` for one row of mlp (the row of [`crate::stack::mlp_row`]), asking for `version`
/// (empty: any), its tensor as raw FP32 contents.
pub fn mlp_infer_request(version: &str, seed: usize) -> switchyard_oip::inference::ModelInferRequest {
    use switchyard_oip::inference::ModelInferRequest;
    use switchyard_oip::inference::model_infer_request::InferInputTensor;
    let row: Vec<f32> = (0..64).map(|j| ((seed * 64 + j) as f32 * 0.1).sin()).collect();
    ModelInferRequest {
        model_name: "mlp".into(),
        model_version: version.into(),
        inputs: vec![InferInputTensor {
            name: "features".into(),
            datatype: "FP32".into(),
            shape: vec![1, 64],
            ..Default::default()
        }],
        raw_input_contents: vec![row.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>().into()],
        ..Default::default()
    }
}
