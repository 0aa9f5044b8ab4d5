//! Model metadata (`GET /v2/models/{m}[/versions/{v}]`, or gRPC `ModelMetadata`): the inputs
//! requests are built for.

use anyhow::{Context, bail};

use crate::http::get;

#[derive(Clone, Debug)]
pub struct TensorMeta {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
}

/// The inputs of a model, asked over gRPC when `grpc`, else over REST.
pub async fn inputs_of(addr: &str, model: &str, version: Option<&str>, grpc: bool) -> anyhow::Result<Vec<TensorMeta>> {
    if !grpc {
        return model_inputs(addr, model, version).await;
    }
    use prost::Message;
    use switchyard_oip::inference::{ModelMetadataRequest, ModelMetadataResponse};
    let req = ModelMetadataRequest { name: model.to_owned(), version: version.unwrap_or_default().to_owned() };
    let answer = crate::http::grpc_call(addr, "ModelMetadata", &req.encode_to_vec()).await?;
    let meta = ModelMetadataResponse::decode(answer).context("malformed ModelMetadata answer")?;
    Ok(meta.inputs.into_iter().map(|t| TensorMeta { name: t.name, datatype: t.datatype, shape: t.shape }).collect())
}

/// The inputs of `GET /v2/models/{m}[/versions/{v}]`.
pub async fn model_inputs(addr: &str, model: &str, version: Option<&str>) -> anyhow::Result<Vec<TensorMeta>> {
    let path = match version {
        Some(v) => format!("/v2/models/{model}/versions/{v}"),
        None => format!("/v2/models/{model}"),
    };
    let (status, body) = get(addr, &path).await?;
    if status == 404 {
        bail!(
            "model '{model}'{} is not served at {addr} (GET {path}: 404 {})",
            version.map(|v| format!(" version '{v}'")).unwrap_or_default(),
            String::from_utf8_lossy(&body).trim()
        );
    }
    if status != 200 {
        bail!("GET {path} at {addr} answered {status}: {}", String::from_utf8_lossy(&body).trim());
    }
    let v: serde_json::Value = serde_json::from_slice(&body).context("model metadata is not JSON")?;
    let inputs = v["inputs"].as_array().context("model metadata has no inputs")?;
    inputs
        .iter()
        .map(|i| {
            Ok(TensorMeta {
                name: i["name"].as_str().context("input without name")?.to_owned(),
                datatype: i["datatype"].as_str().context("input without datatype")?.to_owned(),
                shape: serde_json::from_value(i["shape"].clone()).context("input shape")?,
            })
        })
        .collect()
}
