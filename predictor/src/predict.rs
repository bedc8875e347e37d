//! `POST /inference_jobs/{id}/predict`: Rafiki's predictor contract.
//! `{"query": q}` → `{"prediction": p, "predictions": []}`;
//! `{"queries": [q…]}` → `{"prediction": null, "predictions": [p…]}`.

use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use duma_common::domain::InferenceJobId;
use duma_common::redis::rpc::{RpcClient, RpcError};
use prometheus::{HistogramOpts, HistogramVec, IntGauge, Opts, Registry};
use serde_json::{Value, json};

use crate::ensemble::ensemble;
use crate::routes::RouteTable;

pub struct Predictor {
    pub routes: RouteTable,
    pub rpc: RpcClient,
    pub deadline: Duration,
    pub metrics: PredictMetrics,
}

#[derive(Clone)]
pub struct PredictMetrics {
    latency: HistogramVec,
    fan_out_wait: HistogramVec,
    in_flight: IntGauge,
}

impl PredictMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let buckets = prometheus::exponential_buckets(0.0001, 2.0, 18)?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "duma_predict_seconds",
                "Predict requests by inference job and status",
            )
            .buckets(buckets.clone()),
            &["inference_job", "status"],
        )?;
        let fan_out_wait = HistogramVec::new(
            HistogramOpts::new(
                "duma_predict_fan_out_seconds",
                "Wait for the served trials' replies",
            )
            .buckets(buckets),
            &["inference_job"],
        )?;
        let in_flight = IntGauge::with_opts(Opts::new(
            "duma_predict_in_flight",
            "Predict requests in flight",
        ))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(fan_out_wait.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        Ok(Self {
            latency,
            fan_out_wait,
            in_flight,
        })
    }
}

fn error(
    status: StatusCode,
    class: &str,
    message: impl Into<String>,
    request_id: &str,
) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header(("X-Request-Id", request_id.to_owned()))
        .json(json!({"error": class, "message": message.into(), "request_id": request_id}))
}

pub async fn predict(
    predictor: web::Data<Predictor>,
    job: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let started = Instant::now();
    let request_id = uuid::Uuid::new_v4().simple().to_string();
    let response = answer(&predictor, &job, &body, &request_id).await;
    let status = response.status().as_u16().to_string();
    predictor
        .metrics
        .latency
        .with_label_values(&[job.as_str(), &status])
        .observe(started.elapsed().as_secs_f64());
    if response.status().is_server_error() {
        tracing::warn!(request_id, job = job.as_str(), %status, "predict failed");
    }
    response
}

async fn answer(predictor: &Predictor, job: &str, body: &[u8], request_id: &str) -> HttpResponse {
    let not_running = || {
        error(
            StatusCode::NOT_FOUND,
            "InvalidRunningInferenceJobError",
            format!("no running inference job {job}"),
            request_id,
        )
    };
    let Ok(id) = job.parse::<InferenceJobId>() else {
        return not_running();
    };
    let (queries, single) = match parse(body) {
        Ok(parsed) => parsed,
        Err(message) => {
            return error(
                StatusCode::BAD_REQUEST,
                "InvalidQueryError",
                message,
                request_id,
            );
        }
    };
    let route = match predictor.routes.get(id).await {
        Ok(Some(route)) => route,
        Ok(None) => return not_running(),
        Err(e) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailableError",
                format!("route lookup failed: {e}"),
                request_id,
            );
        }
    };
    let Ok(_permit) = route.in_flight.clone().try_acquire_owned() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailableError",
            "too many requests in flight for this inference job; retry shortly",
            request_id,
        );
    };
    predictor.metrics.in_flight.inc();
    let payload = serde_json::to_vec(&queries).unwrap_or_default();
    let waited = Instant::now();
    let calls = route
        .targets
        .iter()
        .map(|target| predictor.rpc.call(target, &payload, predictor.deadline));
    let replies = futures::future::join_all(calls).await;
    predictor
        .metrics
        .fan_out_wait
        .with_label_values(&[job])
        .observe(waited.elapsed().as_secs_f64());
    predictor.metrics.in_flight.dec();

    let mut answers: Vec<Vec<Value>> = Vec::new();
    let mut rejected: Option<String> = None;
    let mut unavailable: Option<String> = None;
    for reply in replies {
        match reply {
            Ok(bytes) => match serde_json::from_slice::<Vec<Value>>(&bytes) {
                Ok(predictions) if predictions.len() == queries.len() => answers.push(predictions),
                _ => tracing::warn!(request_id, "a worker answered with a malformed batch"),
            },
            // The queries' fault: the caller can fix it.
            Err(RpcError::Remote(message)) => rejected = Some(message),
            // The platform's fault, with nothing to wait for: say so at once.
            Err(error @ (RpcError::Unavailable(_) | RpcError::Unsent(_))) => {
                tracing::warn!(request_id, %error, "a served trial cannot answer");
                unavailable = Some(error.to_string());
            }
            Err(other) => {
                tracing::debug!(request_id, error = %other, "a served trial did not answer")
            }
        }
    }
    if answers.is_empty() {
        return match (rejected, unavailable) {
            (Some(message), _) => error(
                StatusCode::BAD_REQUEST,
                "InvalidQueryError",
                message,
                request_id,
            ),
            (None, Some(_)) => error(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailableError",
                "the model is not available right now; retry shortly",
                request_id,
            ),
            (None, None) => error(
                StatusCode::GATEWAY_TIMEOUT,
                "TimeoutError",
                format!("no prediction within {} ms", predictor.deadline.as_millis()),
                request_id,
            ),
        };
    }
    let predictions: Vec<Value> = (0..queries.len())
        .map(|i| ensemble(&answers.iter().map(|a| &a[i]).collect::<Vec<_>>()))
        .collect();
    let body = if single {
        json!({"prediction": predictions.into_iter().next(), "predictions": []})
    } else {
        json!({"prediction": null, "predictions": predictions})
    };
    HttpResponse::Ok()
        .insert_header(("X-Request-Id", request_id.to_owned()))
        .json(body)
}

/// `(queries, was a single query)`, or what is wrong with the body.
fn parse(body: &[u8]) -> Result<(Vec<Value>, bool), String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("malformed JSON body: {e}"))?;
    let Value::Object(mut object) = value else {
        return Err("the body must be a JSON object with `query` or `queries`".into());
    };
    if let Some(queries) = object.remove("queries") {
        return match queries {
            Value::Array(queries) if !queries.is_empty() => Ok((queries, false)),
            Value::Array(_) => Err("`queries` is empty".into()),
            _ => Err("`queries` must be a JSON array".into()),
        };
    }
    match object.remove("query") {
        Some(Value::Null) | None => Err("missing `query` (or `queries`)".into()),
        Some(query) => Ok((vec![query], true)),
    }
}
