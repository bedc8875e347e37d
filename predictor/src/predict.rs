//! `POST /inference_jobs/{id}/predict`, and `POST /predict` on an inference job's own port of
//! nginx (nginx says which port in `X-Forwarded-Port`): Rafiki's predictor contract.
//! `{"query": q}` → `{"prediction": p, "predictions": []}`;
//! `{"queries": [q…]}` → `{"prediction": null, "predictions": [p…]}`;
//! for image tasks also SINGA-Auto's multipart upload of `img` files (see [`crate::images`]),
//! answered like `queries`.

use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use duma_common::api_error::{ApiError, ErrorCode};
use duma_common::ops::RequestId;
use duma_common::redis::rpc::{RpcClient, RpcError};
use duma_domain::InferenceJobId;
use prometheus::{HistogramVec, IntGauge, Registry};
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_json::error::Category;
use serde_json::value::RawValue;
use web::Bytes;

use crate::images;
use crate::routes::{Route, RouteTable};
use duma_domain::ensemble::ensemble;

pub struct Predictor {
    pub routes: RouteTable,
    pub deployment_metrics: crate::deployments::DeploymentMetrics,
    pub rpc: RpcClient,
    pub deadline: Duration,
    pub metrics: PredictMetrics,
    pub limits: Limits,
}

/// Bounds on one predict request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_queries: usize,
}

/// The statuses a predict request can end with (the `status` label's whole range).
const STATUSES: [StatusCode; 8] = [
    StatusCode::OK,
    StatusCode::BAD_REQUEST,
    StatusCode::UNAUTHORIZED,
    StatusCode::NOT_FOUND,
    StatusCode::PAYLOAD_TOO_LARGE,
    StatusCode::INTERNAL_SERVER_ERROR,
    StatusCode::SERVICE_UNAVAILABLE,
    StatusCode::GATEWAY_TIMEOUT,
];

/// The `inference_job` label of requests for no live job: ids that do not parse, are unknown or
/// stopped never make series of their own (they are the caller's to choose).
pub const NO_JOB: &str = "none";

#[derive(Clone)]
pub struct PredictMetrics {
    latency: HistogramVec,
    fan_out_wait: HistogramVec,
    in_flight: IntGauge,
}

impl PredictMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let buckets = prometheus::exponential_buckets(0.0001, 2.0, 18)?;
        let latency = prometheus::register_histogram_vec_with_registry!(
            "duma_predict_seconds",
            "Predict requests by inference job and status",
            &["inference_job", "status"],
            buckets.clone(),
            registry
        )?;
        let fan_out_wait = prometheus::register_histogram_vec_with_registry!(
            "duma_predict_fan_out_seconds",
            "Wait for the served trials' replies",
            &["inference_job"],
            buckets,
            registry
        )?;
        let in_flight = prometheus::register_int_gauge_with_registry!(
            "duma_predict_in_flight",
            "Predict requests in flight",
            registry
        )?;
        Ok(Self {
            latency,
            fan_out_wait,
            in_flight,
        })
    }

    /// Records a request job `label` answered with `status` after `seconds`.
    pub fn observe(&self, label: &str, status: StatusCode, seconds: f64) {
        self.latency
            .with_label_values(&[label, status.as_str()])
            .observe(seconds);
    }

    /// Removes a stopped job's series, so they do not outlive it.
    pub fn forget(&self, job: InferenceJobId) {
        let job = job.to_string();
        for status in STATUSES {
            let _ = self
                .latency
                .remove_label_values(&[job.as_str(), status.as_str()]);
        }
        let _ = self.fan_out_wait.remove_label_values(&[job.as_str()]);
    }
}

/// Counts a request in flight until dropped (also when the client goes away midway).
struct InFlight(IntGauge);

impl InFlight {
    fn new(gauge: &IntGauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

pub async fn predict(
    predictor: web::Data<Predictor>,
    job: web::Path<String>,
    request: HttpRequest,
    request_id: RequestId,
    body: web::Payload,
) -> HttpResponse {
    let started = Instant::now();
    let answered = answer(&predictor, &job, &request, body, &request_id).await;
    measured(&predictor, started, answered)
}

/// The header nginx names the port a request came in on with.
pub const PORT_HEADER: &str = "x-forwarded-port";

/// `POST /predict` through an inference job's own port: the job is the one holding that port.
pub async fn predict_at_port(
    predictor: web::Data<Predictor>,
    request: HttpRequest,
    request_id: RequestId,
    body: web::Payload,
) -> HttpResponse {
    let started = Instant::now();
    let port = request
        .headers()
        .get(PORT_HEADER)
        .and_then(|value| value.to_str().ok()?.trim().parse::<u16>().ok());
    let job = match port {
        Some(port) => predictor.routes.job_at_port(port).await,
        None => Ok(None),
    };
    let answered = match job {
        Ok(Some(id)) => answer(&predictor, &id.to_string(), &request, body, &request_id).await,
        Ok(None) => (
            Err(ApiError::new(
                ErrorCode::RunningInferenceJobNotFound,
                match port {
                    Some(port) => format!(
                        "no running inference job on port {port}; use the `predictor_host` the \
                         admin gives for the job, or POST /inference_jobs/<id>/predict"
                    ),
                    None => "POST /predict is an inference job's route on its own port of \
                             nginx; here, POST /inference_jobs/<id>/predict"
                        .to_owned(),
                },
            )),
            NO_JOB.to_owned(),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "port lookup failed");
            (Err(lookup_failed()), NO_JOB.to_owned())
        }
    };
    measured(&predictor, started, answered)
}

/// The response, with its latency recorded under its job label.
fn measured(
    predictor: &Predictor,
    started: Instant,
    (answered, label): (Result<HttpResponse, ApiError>, String),
) -> HttpResponse {
    let response = answered.unwrap_or_else(|refused| refused.error_response());
    let status = response.status();
    predictor
        .metrics
        .observe(&label, status, started.elapsed().as_secs_f64());
    if status.is_server_error() {
        tracing::warn!(job = label, %status, "predict failed");
    }
    response
}

/// The response, and the job label it is measured under.
async fn answer(
    predictor: &Predictor,
    job: &str,
    request: &HttpRequest,
    body: web::Payload,
    request_id: &RequestId,
) -> (Result<HttpResponse, ApiError>, String) {
    let not_running = || {
        ApiError::new(
            ErrorCode::RunningInferenceJobNotFound,
            format!("no running inference job {job}"),
        )
    };
    let Ok(id) = job.parse::<InferenceJobId>() else {
        return (Err(not_running()), NO_JOB.to_owned());
    };
    let route = match predictor.routes.get(id).await {
        Ok(Some(route)) => route,
        Ok(None) => return (Err(not_running()), NO_JOB.to_owned()),
        Err(e) => {
            tracing::warn!(error = %e, "route lookup failed");
            return (Err(lookup_failed()), NO_JOB.to_owned());
        }
    };
    match serve(predictor, id, &route, request, body, request_id).await {
        Ok(served) => (Ok(served.response()), id.to_string()),
        Err((refused, labelled)) => (
            Err(refused),
            if labelled {
                id.to_string()
            } else {
                NO_JOB.to_owned()
            },
        ),
    }
}

/// A request's queries as the served models get them: one JSON array, each query the text the
/// caller sent (never parsed into values here, nor written out again).
#[derive(Clone)]
pub struct Queries {
    json: Bytes,
    count: usize,
}

impl Queries {
    /// The queries as they were written in a request body.
    pub fn from_text(queries: &[&RawValue]) -> Self {
        let size = queries.iter().map(|q| q.get().len() + 1).sum::<usize>() + 2;
        let mut json = Vec::with_capacity(size);
        json.push(b'[');
        for (i, query) in queries.iter().enumerate() {
            if i > 0 {
                json.push(b',');
            }
            json.extend_from_slice(query.get().as_bytes());
        }
        json.push(b']');
        Self {
            json: json.into(),
            count: queries.len(),
        }
    }

    /// Queries built here (from an image upload, or tensors of the Open Inference Protocol).
    pub fn from_values(queries: &[Value]) -> Self {
        Self {
            json: serde_json::to_vec(queries).unwrap_or_default().into(),
            count: queries.len(),
        }
    }

    pub fn count(&self) -> usize {
        self.count
    }
}

/// A request one inference job answered.
pub struct Served {
    pub queries: Queries,
    pub predictions: Vec<Value>,
    /// The request was `{"query": …}`.
    pub single: bool,
}

/// Rafiki's answer to a predict request.
#[derive(serde::Serialize)]
struct Answer<'a> {
    prediction: Option<&'a Value>,
    predictions: &'a [Value],
}

impl Served {
    pub fn response(&self) -> HttpResponse {
        HttpResponse::Ok().json(if self.single {
            Answer {
                prediction: self.predictions.first(),
                predictions: &[],
            }
        } else {
            Answer {
                prediction: None,
                predictions: &self.predictions,
            }
        })
    }
}

/// The predictions of inference job `id` (its `route`) for a request: the key checked before
/// the body is read, the body parsed, the job's in-flight bound held, its served trials asked
/// and their answers combined. A refusal says whether it counts under the job's label (not
/// when the caller lacked the key: that costs no series).
pub async fn serve(
    predictor: &Predictor,
    id: InferenceJobId,
    route: &Route,
    request: &HttpRequest,
    body: web::Payload,
    request_id: &RequestId,
) -> Result<Served, (ApiError, bool)> {
    // Before the body is read: a caller without the key costs no more than its headers.
    if !route.admits(prediction_key(request)) {
        return Err((
            ApiError::new(
                ErrorCode::PredictionKeyRequired,
                "this app requires a prediction key: send `Authorization: Bearer <key>` or \
                 `X-API-Key: <key>`",
            ),
            false,
        ));
    }
    let limits = predictor.limits;
    let parsed = match read_body(body, request, limits.max_body_bytes).await {
        Ok(body) if images::is_multipart(request.headers()) => {
            image_queries(request, body, &route.task, limits).await
        }
        Ok(body) => parse(&body, limits.max_queries),
        Err(refused) => Err(refused),
    };
    let (queries, single) = parsed.map_err(|refused| (refused, true))?;
    let predictions = fan_out(predictor, id, route, &queries, request_id)
        .await
        .map_err(|refused| (refused, true))?;
    Ok(Served {
        queries,
        predictions,
        single,
    })
}

/// Asks every served trial of job `id` for `queries` (within its in-flight bound) and combines
/// their answers by the job's task.
pub async fn fan_out(
    predictor: &Predictor,
    id: InferenceJobId,
    route: &Route,
    queries: &Queries,
    request_id: &RequestId,
) -> Result<Vec<Value>, ApiError> {
    let label = id.to_string();
    let Ok(_permit) = route.in_flight.clone().try_acquire_owned() else {
        return Err(ApiError::new(
            ErrorCode::Unavailable,
            "too many requests in flight for this inference job; retry shortly",
        ));
    };
    let in_flight = InFlight::new(&predictor.metrics.in_flight);
    let waited = Instant::now();
    let trace = request_id.to_string();
    let calls = route.targets.iter().map(|target| async {
        let reply = predictor
            .rpc
            .call(target, queries.json.clone(), &trace, predictor.deadline)
            .await?;
        serde_json::from_slice::<Vec<Value>>(&reply).map_err(|e| RpcError::Malformed(e.to_string()))
    });
    let replies = futures::future::join_all(calls).await;
    predictor
        .metrics
        .fan_out_wait
        .with_label_values(&[&label])
        .observe(waited.elapsed().as_secs_f64());
    drop(in_flight);

    let mut answers: Vec<Vec<Value>> = Vec::new();
    let mut rejected: Option<String> = None;
    let mut unavailable = false;
    for reply in replies {
        match reply {
            Ok(predictions) if predictions.len() == queries.count() => answers.push(predictions),
            Ok(_) | Err(RpcError::Malformed(_)) => {
                tracing::warn!("a worker answered with a malformed batch")
            }
            // The queries' fault: the caller can fix it.
            Err(RpcError::Remote(message)) => rejected = Some(message),
            // The platform's fault, with nothing to wait for: say so at once.
            Err(error @ (RpcError::Unavailable(_) | RpcError::Unsent(_))) => {
                tracing::warn!(%error, "a served trial cannot answer");
                unavailable = true;
            }
            Err(other) => tracing::debug!(error = %other, "a served trial did not answer"),
        }
    }
    if answers.is_empty() {
        return Err(match (rejected, unavailable) {
            (Some(message), _) => ApiError::new(ErrorCode::InvalidQuery, message),
            (None, true) => ApiError::new(
                ErrorCode::Unavailable,
                "the model is not available right now; retry shortly",
            ),
            (None, false) => ApiError::new(
                ErrorCode::Timeout,
                format!("no prediction within {} ms", predictor.deadline.as_millis()),
            ),
        });
    }
    Ok((0..queries.count())
        .map(|i| {
            ensemble(
                route.combine,
                &answers.iter().map(|a| &a[i]).collect::<Vec<_>>(),
            )
        })
        .collect())
}

fn lookup_failed() -> ApiError {
    ApiError::new(
        ErrorCode::Unavailable,
        "the platform cannot look the inference job up right now; retry shortly",
    )
}

/// The prediction key a request carries: `X-API-Key`, or a bearer token.
pub(crate) fn prediction_key(request: &HttpRequest) -> Option<&str> {
    let header = |name| request.headers().get(name).and_then(|v| v.to_str().ok());
    header("x-api-key").or_else(|| header("authorization")?.strip_prefix("Bearer "))
}

/// Reads the body up to `limit` bytes; a larger one is refused as soon as it is known to be
/// larger (once that many bytes came), never buffered whole. The buffer is sized once from the
/// declared length (at most 1 MiB ahead of the bytes), not grown and copied chunk by chunk.
pub(crate) async fn read_body(
    mut payload: web::Payload,
    request: &HttpRequest,
    limit: usize,
) -> Result<web::BytesMut, ApiError> {
    use futures::StreamExt;
    let declared = request
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = web::BytesMut::with_capacity(declared.min(limit).min(1 << 20));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| invalid(format!("reading the body failed: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::too_large(format!(
                "the body exceeds the limit of {limit} bytes; send fewer queries per request"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A body that is not a predict request: the queries never reached a model.
fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidQuery, message)
}

/// The queries of an image upload: as many as files, answered like `queries`. The decoded
/// images may hold as many values as the body limit has bytes.
async fn image_queries(
    request: &HttpRequest,
    body: web::BytesMut,
    task: &str,
    limits: Limits,
) -> Result<(Queries, bool), ApiError> {
    if !images::task_takes_images(task) {
        return Err(invalid(format!(
            "image uploads (multipart `{}` files) are taken by jobs of image tasks; this job's \
             task is {task}: send JSON",
            images::FIELD
        )));
    }
    let queries = images::queries(
        request.headers(),
        body.freeze(),
        limits.max_queries,
        limits.max_body_bytes,
    )
    .await?;
    Ok((Queries::from_values(&queries), false))
}

/// `(queries, was a single query)`, or what is wrong with the body. The body is read once, its
/// queries checked to be JSON and kept as the text they are (the models read them).
fn parse(body: &[u8], max_queries: usize) -> Result<(Queries, bool), ApiError> {
    let bad = |message: &str| invalid(message);
    let body: Body = serde_json::from_slice(body).map_err(|e| match e.classify() {
        Category::Data => bad("the body must be a JSON object with `query` or `queries`"),
        _ => invalid(format!("malformed JSON body: {e}")),
    })?;
    if let Some(queries) = body.queries {
        let Some(queries) = queries.0 else {
            return Err(bad("`queries` must be a JSON array"));
        };
        return match queries.len() {
            0 => Err(bad("`queries` is empty")),
            n if n > max_queries => Err(ApiError::too_large(format!(
                "{n} queries in one request; at most {max_queries} are accepted"
            ))),
            _ => Ok((Queries::from_text(&queries), false)),
        };
    }
    match body.query {
        Some(query) if query.get() != "null" => Ok((Queries::from_text(&[query]), true)),
        _ => Err(bad("missing `query` (or `queries`)")),
    }
}

/// Rafiki's predict body, `{"query": q}` or `{"queries": [q…]}` (other keys ignored), its
/// queries borrowed from the body's text.
struct Body<'a> {
    query: Option<&'a RawValue>,
    queries: Option<QueryList<'a>>,
}

/// The value of `queries`: its items if it is a list, `None` if it is anything else.
struct QueryList<'a>(Option<Vec<&'a RawValue>>);

impl<'de> Deserialize<'de> for Body<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> Visitor<'de> for Fields {
            type Value = Body<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object with `query` or `queries`")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Body<'de>, A::Error> {
                let mut body = Body {
                    query: None,
                    queries: None,
                };
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "query" => body.query = Some(map.next_value()?),
                        "queries" => body.queries = Some(map.next_value()?),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(body)
            }
        }
        deserializer.deserialize_map(Fields)
    }
}

impl<'de> Deserialize<'de> for QueryList<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Items;
        impl<'de> Visitor<'de> for Items {
            type Value = QueryList<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of queries")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Self::Value, A::Error> {
                let mut queries = Vec::with_capacity(items.size_hint().unwrap_or(0).min(1024));
                while let Some(query) = items.next_element()? {
                    queries.push(query);
                }
                Ok(QueryList(Some(queries)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(QueryList(None))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(QueryList(None))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(QueryList(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(QueryList(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(QueryList(None))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(QueryList(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(QueryList(None))
            }
        }
        deserializer.deserialize_any(Items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(body: &str) -> (String, bool) {
        let (queries, single) = parse(body.as_bytes(), 3).unwrap_or_else(|e| panic!("{body}: {e}"));
        (String::from_utf8(queries.json.to_vec()).unwrap(), single)
    }

    fn refused(body: &str) -> (ErrorCode, String) {
        match parse(body.as_bytes(), 3) {
            Err(ApiError::Rejected { code, message }) => (code, message),
            other => panic!("{body}: {:?}", other.map(|(q, _)| q.count)),
        }
    }

    #[test]
    fn queries_pass_on_as_the_text_they_were_sent_in() {
        assert_eq!(
            parsed(r#"{"query": [1, 2.50e0, "x\u00e9"]}"#),
            (r#"[[1, 2.50e0, "x\u00e9"]]"#.to_owned(), true)
        );
        assert_eq!(
            parsed(r#"{"queries": [{"a": 1}, [2], 3], "other": {}}"#),
            (r#"[{"a": 1},[2],3]"#.to_owned(), false)
        );
        assert_eq!(parsed(r#"{"query": 0}"#), ("[0]".to_owned(), true));
    }

    #[test]
    fn what_is_not_a_predict_request_is_refused_by_name() {
        for (body, says) in [
            (r#"{"query": [1"#, "malformed JSON body"),
            (r#"[1, 2]"#, "must be a JSON object"),
            (r#""query""#, "must be a JSON object"),
            (r#"{"queries": 5}"#, "`queries` must be a JSON array"),
            (
                r#"{"queries": {"a": [1]}}"#,
                "`queries` must be a JSON array",
            ),
            (r#"{"queries": "1,2"}"#, "`queries` must be a JSON array"),
            (r#"{"queries": null}"#, "`queries` must be a JSON array"),
            (r#"{"queries": []}"#, "`queries` is empty"),
            (r#"{"query": null}"#, "missing `query`"),
            (r#"{}"#, "missing `query`"),
        ] {
            let (code, message) = refused(body);
            assert_eq!(code, ErrorCode::InvalidQuery, "{body}");
            assert!(message.contains(says), "{body}: {message}");
        }
        let (code, message) = refused(r#"{"queries": [1, 2, 3, 4]}"#);
        assert_eq!(code, ErrorCode::PayloadTooLarge);
        assert!(message.contains("4 queries"), "{message}");
    }
}
