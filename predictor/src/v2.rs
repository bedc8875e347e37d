//! The Open Inference Protocol (V2: KServe, Triton, MLServer) over the same serving path as
//! Rafiki's predict: `GET /v2/health/live`, `/v2/health/ready`, `GET /v2/models/{name}`
//! (metadata), `GET /v2/models/{name}/ready`, `POST /v2/models/{name}/infer`. A model's name is
//! an inference job's id or a deployment's name. Errors are `{"error": "..."}` with 400, 404,
//! 413 or 503, as KServe answers.
//!
//! A request's tensors become Rafiki queries, row by row: query `i` is `{input name: row i}` for
//! every input (an ONNX model takes its inputs by name; a tabular template takes one tensor per
//! feature column). The answers become one output tensor (the ONNX model's answering output, or
//! `predict`), or one per key when a model answers objects. Tensor data may be JSON (flat or
//! nested) or binary (Triton's binary extension, `Inference-Header-Content-Length`); answers are
//! JSON.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use duma_common::api_error::ApiError;
use duma_common::ops::RequestId;
use duma_domain::InferenceJobId;
use duma_domain::tensor::nest;
use serde_json::{Map, Value, json};

use crate::predict::{Predictor, Queries, fan_out, prediction_key, read_body};
use crate::routes::Route;

fn error(status: StatusCode, message: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "error": message.into() }))
}

fn from_api(refused: &ApiError) -> HttpResponse {
    let status = actix_web::ResponseError::status_code(refused);
    let message = match refused {
        ApiError::Rejected { message, .. } | ApiError::RetryLater { message, .. } => {
            message.clone()
        }
        ApiError::Internal(cause) => {
            tracing::error!(error = format!("{cause:#}"), "infer failed");
            "internal error; the service's logs have the details".to_owned()
        }
    };
    error(status, message)
}

pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({"live": true}))
}

pub async fn ready() -> HttpResponse {
    HttpResponse::Ok().json(json!({"ready": true}))
}

pub async fn server_metadata() -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "name": "duma",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": ["binary_tensor_data"],
    }))
}

/// The model a request names: `/v2/models/{name}[/versions/{version}]/…`.
fn model_path(request: &HttpRequest) -> (String, Option<String>) {
    let info = request.match_info();
    (
        info.get("name").unwrap_or_default().to_owned(),
        info.get("version").map(str::to_owned),
    )
}

/// The inference job a model name stands for (a job id, or a deployment's name: the version a
/// request with `routing_key` goes to, or `version` when named), and its route.
async fn resolve(
    predictor: &Predictor,
    name: &str,
    version: Option<&str>,
    routing_key: Option<&str>,
) -> Result<(InferenceJobId, Arc<Route>), HttpResponse> {
    let unknown = || error(StatusCode::NOT_FOUND, format!("no model named {name}"));
    let lookup_failed = |e: anyhow::Error| {
        tracing::warn!(error = %e, "route lookup failed");
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the platform cannot look the model up right now",
        )
    };
    let no_version = |versions: String| {
        error(
            StatusCode::NOT_FOUND,
            format!(
                "model {name} has no version {}; it serves {versions}",
                version.unwrap_or_default()
            ),
        )
    };
    let id = match name.parse::<InferenceJobId>() {
        Ok(id) => id,
        Err(_) => match predictor
            .routes
            .deployment(name)
            .await
            .map_err(lookup_failed)?
        {
            Some(deployment) => match version {
                None => deployment.choose(routing_key).1,
                Some(wanted) => {
                    let serving = deployment
                        .primaries
                        .iter()
                        .map(|(v, job, _)| (*v, *job))
                        .chain(deployment.shadow);
                    let mut versions = Vec::new();
                    let mut found = None;
                    for (v, job) in serving {
                        if v.to_string() == wanted {
                            found = Some(job);
                        }
                        versions.push(v.to_string());
                    }
                    match found {
                        Some(job) => job,
                        None => return Err(no_version(versions.join(", "))),
                    }
                }
            },
            None => return Err(unknown()),
        },
    };
    match predictor.routes.get(id).await.map_err(lookup_failed)? {
        Some(route) => match version {
            Some(wanted) if route.app_version.to_string() != wanted => {
                Err(no_version(route.app_version.to_string()))
            }
            _ => Ok((id, route)),
        },
        None => Err(unknown()),
    }
}

fn routing_key(request: &HttpRequest) -> Option<&str> {
    request
        .headers()
        .get("x-routing-key")
        .and_then(|v| v.to_str().ok())
}

pub async fn model_metadata(predictor: web::Data<Predictor>, request: HttpRequest) -> HttpResponse {
    let (name, version) = model_path(&request);
    let (_, route) =
        match resolve(&predictor, &name, version.as_deref(), routing_key(&request)).await {
            Ok(found) => found,
            Err(response) => return response,
        };
    let (inputs, outputs, parameters) = match (&route.signature, &route.metadata) {
        (Some(signature), _) => (
            signature["inputs"].clone(),
            signature["outputs"].clone(),
            json!({}),
        ),
        (None, Some(metadata)) => tabular_tensors(metadata),
        (None, None) => (json!([]), json!([]), json!({})),
    };
    HttpResponse::Ok().json(json!({
        "name": name.as_str(),
        "versions": [route.app_version.to_string()],
        "platform": route.platform,
        "inputs": inputs,
        "outputs": outputs,
        "parameters": parameters,
    }))
}

/// A trained tabular version as tensors: one `[-1]` input per feature column, and `predict`
/// (class probabilities in `classes` order, or the regression value); task, target and classes
/// as parameters.
fn tabular_tensors(metadata: &Value) -> (Value, Value, Value) {
    let inputs: Vec<Value> = metadata["features"]
        .as_array()
        .map(|features| {
            features
                .iter()
                .map(|f| json!({"name": f["name"], "datatype": f["datatype"], "shape": [-1]}))
                .collect()
        })
        .unwrap_or_default();
    let output_shape = match metadata["classes"].as_array() {
        Some(classes) => json!([-1, classes.len()]),
        None => json!([-1]),
    };
    let mut parameters = json!({"task": metadata["task"], "target": metadata["target"]});
    if let Some(classes) = metadata.get("classes") {
        parameters["classes"] = classes.clone();
    }
    (
        Value::Array(inputs),
        json!([{"name": "predict", "datatype": "FP64", "shape": output_shape}]),
        parameters,
    )
}

pub async fn model_ready(predictor: web::Data<Predictor>, request: HttpRequest) -> HttpResponse {
    let (name, version) = model_path(&request);
    match resolve(&predictor, &name, version.as_deref(), routing_key(&request)).await {
        Ok((_, route)) if route.running => {
            HttpResponse::Ok().json(json!({"name": name.as_str(), "ready": true}))
        }
        Ok(_) => error(
            StatusCode::BAD_REQUEST,
            format!("model {name} is starting: not every served model has a ready replica"),
        ),
        Err(response) => response,
    }
}

/// One input tensor of a request.
struct Input {
    name: String,
    shape: Vec<usize>,
    values: Vec<Value>,
}

const NUMERIC: [&str; 11] = [
    "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32",
    "FP64",
];

/// Flattens nested JSON lists.
fn flatten(value: &Value, out: &mut Vec<Value>) {
    match value {
        Value::Array(items) => items.iter().for_each(|item| flatten(item, out)),
        other => out.push(other.clone()),
    }
}

/// Values of binary tensor data (little-endian, as Triton sends them).
fn decode(datatype: &str, bytes: &[u8]) -> Result<Vec<Value>, String> {
    fn each<const N: usize>(
        bytes: &[u8],
        f: impl Fn([u8; N]) -> Value,
    ) -> Result<Vec<Value>, String> {
        if !bytes.len().is_multiple_of(N) {
            return Err(format!(
                "{} bytes is not a whole number of {N}-byte values",
                bytes.len()
            ));
        }
        Ok(bytes
            .chunks_exact(N)
            .map(|c| f(c.try_into().unwrap_or([0; N])))
            .collect())
    }
    match datatype {
        "BOOL" => Ok(bytes.iter().map(|&b| Value::from(b != 0)).collect()),
        "UINT8" => Ok(bytes.iter().map(|&b| Value::from(b)).collect()),
        "INT8" => Ok(bytes.iter().map(|&b| Value::from(b as i8)).collect()),
        "UINT16" => each::<2>(bytes, |b| Value::from(u16::from_le_bytes(b))),
        "INT16" => each::<2>(bytes, |b| Value::from(i16::from_le_bytes(b))),
        "UINT32" => each::<4>(bytes, |b| Value::from(u32::from_le_bytes(b))),
        "INT32" => each::<4>(bytes, |b| Value::from(i32::from_le_bytes(b))),
        "UINT64" => each::<8>(bytes, |b| Value::from(u64::from_le_bytes(b))),
        "INT64" => each::<8>(bytes, |b| Value::from(i64::from_le_bytes(b))),
        "FP32" => each::<4>(bytes, |b| Value::from(f64::from(f32::from_le_bytes(b)))),
        "FP64" => each::<8>(bytes, |b| Value::from(f64::from_le_bytes(b))),
        "BYTES" => {
            let mut values = Vec::new();
            let mut rest = bytes;
            while rest.len() >= 4 {
                let n = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                let Some(text) = rest.get(4..4 + n) else {
                    return Err("a BYTES element runs past the data".to_owned());
                };
                values.push(Value::from(String::from_utf8_lossy(text).into_owned()));
                rest = &rest[4 + n..];
            }
            Ok(values)
        }
        other => Err(format!("binary {other} data is not taken")),
    }
}

fn parse_input(value: &Value, binary: &mut &[u8]) -> Result<Input, String> {
    let name = value["name"].as_str().ok_or("an input without a `name`")?;
    let shape: Vec<usize> = value["shape"]
        .as_array()
        .ok_or_else(|| format!("input `{name}` has no `shape`"))?
        .iter()
        .map(|d| d.as_u64().map(|d| d as usize))
        .collect::<Option<_>>()
        .ok_or_else(|| format!("input `{name}`: `shape` must be non-negative integers"))?;
    let datatype = value["datatype"]
        .as_str()
        .ok_or_else(|| format!("input `{name}` has no `datatype`"))?;
    if !NUMERIC.contains(&datatype) && datatype != "BOOL" && datatype != "BYTES" {
        return Err(format!("input `{name}`: unknown datatype {datatype}"));
    }
    let values = match value["parameters"]["binary_data_size"].as_u64() {
        Some(size) => {
            let size = size as usize;
            if binary.len() < size {
                return Err(format!("input `{name}`: its binary data is cut short"));
            }
            let (data, rest) = binary.split_at(size);
            *binary = rest;
            decode(datatype, data).map_err(|e| format!("input `{name}`: {e}"))?
        }
        None => {
            let mut values = Vec::new();
            flatten(
                value
                    .get("data")
                    .ok_or_else(|| format!("input `{name}` has no `data`"))?,
                &mut values,
            );
            values
        }
    };
    let fits = |v: &Value| match datatype {
        "BOOL" => v.is_boolean(),
        "BYTES" => v.is_string(),
        _ => v.is_number(),
    };
    if let Some(bad) = values.iter().find(|v| !fits(v)) {
        return Err(format!("input `{name}` is {datatype}, but holds {bad}"));
    }
    let expected: usize = shape.iter().product();
    if values.len() != expected {
        return Err(format!(
            "input `{name}` has {} values for shape {shape:?} ({expected})",
            values.len()
        ));
    }
    if shape.is_empty() || shape[0] == 0 {
        return Err(format!(
            "input `{name}` needs a batch dimension of at least 1 first"
        ));
    }
    Ok(Input {
        name: name.to_owned(),
        shape,
        values,
    })
}

/// An output tensor of rows of JSON values: its shape, datatype and flat data.
fn tensor(name: &str, rows: &[Value], declared: Option<&str>) -> Value {
    let mut shape = vec![rows.len()];
    let mut probe = rows.first();
    while let Some(Value::Array(items)) = probe {
        shape.push(items.len());
        probe = items.first();
    }
    let mut data = Vec::new();
    rows.iter().for_each(|row| flatten(row, &mut data));
    let datatype = if let Some(declared) = declared {
        declared.to_owned()
    } else if data.iter().all(Value::is_boolean) {
        "BOOL".to_owned()
    } else if data.iter().all(|v| v.is_i64() || v.is_u64()) {
        "INT64".to_owned()
    } else if data.iter().all(Value::is_number) {
        "FP64".to_owned()
    } else {
        "BYTES".to_owned()
    };
    let data: Vec<Value> = if datatype == "BYTES" {
        data.into_iter()
            .map(|v| match v {
                Value::String(s) => Value::String(s),
                other => Value::String(other.to_string()),
            })
            .collect()
    } else {
        data
    };
    json!({"name": name, "datatype": datatype, "shape": shape, "data": data})
}

/// The name and declared type of the output a model answers with: an ONNX model's `answer`
/// (recorded at upload, `runtime::onnx::Signature`), else `predict`.
fn answering_output(route: &Route) -> (String, Option<String>) {
    let Some(signature) = &route.signature else {
        return ("predict".to_owned(), None);
    };
    let Some(answer) = signature["answer"].as_str() else {
        return ("predict".to_owned(), None);
    };
    let declared = signature["outputs"]
        .as_array()
        .and_then(|outputs| outputs.iter().find(|o| o["name"] == answer))
        .and_then(|o| o["datatype"].as_str())
        .map(str::to_owned);
    (answer.to_owned(), declared)
}

pub async fn infer(
    predictor: web::Data<Predictor>,
    request: HttpRequest,
    request_id: RequestId,
    payload: web::Payload,
) -> HttpResponse {
    let (name, version) = model_path(&request);
    let (id, route) =
        match resolve(&predictor, &name, version.as_deref(), routing_key(&request)).await {
            Ok(found) => found,
            Err(response) => return response,
        };
    if !route.admits(prediction_key(&request)) {
        return error(
            StatusCode::UNAUTHORIZED,
            "this app requires a prediction key: send `Authorization: Bearer <key>` or `X-API-Key: <key>`",
        );
    }
    let bad = |message: String| error(StatusCode::BAD_REQUEST, message);
    let body = match read_body(payload, &request, predictor.limits.max_body_bytes).await {
        Ok(body) => body,
        Err(refused) => return from_api(&refused),
    };
    // Triton's binary extension: the JSON header, then the tensors' bytes.
    let header_length = request
        .headers()
        .get("inference-header-content-length")
        .and_then(|v| v.to_str().ok()?.trim().parse::<usize>().ok());
    let (header, mut binary): (&[u8], &[u8]) = match header_length {
        Some(n) if n <= body.len() => body.split_at(n),
        Some(_) => return bad("Inference-Header-Content-Length exceeds the body".to_owned()),
        None => (&body, &[]),
    };
    let parsed: Value = match serde_json::from_slice(header) {
        Ok(value @ Value::Object(_)) => value,
        Ok(_) => return bad("the body must be a JSON object with `inputs`".to_owned()),
        Err(e) => return bad(format!("malformed JSON body: {e}")),
    };
    let Some(raw_inputs) = parsed["inputs"].as_array().filter(|i| !i.is_empty()) else {
        return bad("`inputs` must be a non-empty list of tensors".to_owned());
    };
    let mut inputs = Vec::with_capacity(raw_inputs.len());
    for raw in raw_inputs {
        match parse_input(raw, &mut binary) {
            Ok(input) => inputs.push(input),
            Err(message) => return bad(message),
        }
    }
    if let Some(declared) = route
        .signature
        .as_ref()
        .and_then(|s| s["inputs"].as_array())
    {
        let names: Vec<&str> = declared.iter().filter_map(|i| i["name"].as_str()).collect();
        if let Some(unknown) = inputs.iter().find(|i| !names.contains(&i.name.as_str())) {
            return bad(format!(
                "model {name} has no input `{}`; its inputs are {}",
                unknown.name,
                names.join(", ")
            ));
        }
    }
    let batch = inputs[0].shape[0];
    if let Some(other) = inputs.iter().find(|i| i.shape[0] != batch) {
        return bad(format!(
            "inputs differ in batch size: `{}` has {batch} rows, `{}` {}",
            inputs[0].name, other.name, other.shape[0]
        ));
    }
    if batch > predictor.limits.max_queries {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{batch} rows in one request; at most {} are accepted",
                predictor.limits.max_queries
            ),
        );
    }
    let queries: Vec<Value> = (0..batch)
        .map(|row| {
            let fields: Map<String, Value> = inputs
                .iter()
                .map(|input| {
                    let step = input.values.len() / batch;
                    let values = &input.values[row * step..(row + 1) * step];
                    // A template takes one value per feature column: `[N, 1]` rows are scalars.
                    let shape = if route.signature.is_none() && step == 1 {
                        &[][..]
                    } else {
                        &input.shape[1..]
                    };
                    (input.name.clone(), nest(values, shape))
                })
                .collect();
            Value::Object(fields)
        })
        .collect();
    let queries = Queries::from_values(&queries);
    let predictions = match fan_out(&predictor, id, &route, &queries, &request_id).await {
        Ok(predictions) => predictions,
        Err(refused) => return from_api(&refused),
    };
    let mut outputs = match predictions.first() {
        Some(Value::Object(first)) => first
            .keys()
            .map(|key| {
                let rows: Vec<Value> = predictions.iter().map(|p| p[key].clone()).collect();
                tensor(key, &rows, None)
            })
            .collect::<Vec<_>>(),
        _ => {
            let (output, declared) = answering_output(&route);
            vec![tensor(&output, &predictions, declared.as_deref())]
        }
    };
    if let Some(wanted) = parsed["outputs"].as_array() {
        let wanted: Vec<&str> = wanted.iter().filter_map(|o| o["name"].as_str()).collect();
        let have: Vec<String> = outputs
            .iter()
            .filter_map(|o| o["name"].as_str().map(str::to_owned))
            .collect();
        if let Some(missing) = wanted.iter().find(|w| !have.iter().any(|h| h == *w)) {
            return bad(format!(
                "model {name} answers no output `{missing}`; it answers {}",
                have.join(", ")
            ));
        }
        outputs.retain(|o| o["name"].as_str().is_some_and(|n| wanted.contains(&n)));
    }
    let mut answer = json!({
        "model_name": name.as_str(),
        "model_version": route.app_version.to_string(),
        "outputs": outputs,
    });
    if let Some(request_id) = parsed.get("id") {
        answer["id"] = request_id.clone();
    }
    HttpResponse::Ok().json(answer)
}
