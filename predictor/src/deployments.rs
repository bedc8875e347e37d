//! `POST /deployments/{name}/predict`: a deployment's stable endpoint. Each request goes to one
//! of its versions, by weight (sticky per `X-Routing-Key`), and the response names the version
//! in `X-Duma-Version`. A shadow version gets a copy of the queries after the answer is sent;
//! its answers are only compared with the primary's (`duma_deployment_shadow_total`).

use std::time::Instant;

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use duma_common::api_error::{ApiError, ErrorCode};
use duma_common::ops::RequestId;
use prometheus::{HistogramVec, IntCounterVec, Registry};
use serde_json::Value;

use crate::predict::{Predictor, Queries, fan_out, serve};
use crate::routes::DeploymentRoutes;

/// The header a client pins its requests to one version with.
pub const ROUTING_KEY: &str = "x-routing-key";
/// The header naming the app version that answered.
pub const VERSION_HEADER: &str = "x-duma-version";
/// The `deployment` label of requests for no serving deployment.
const NONE: &str = "none";

#[derive(Clone)]
pub struct DeploymentMetrics {
    requests: IntCounterVec,
    latency: HistogramVec,
    shadow: IntCounterVec,
}

impl DeploymentMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        Ok(Self {
            requests: prometheus::register_int_counter_vec_with_registry!(
                "duma_deployment_requests_total",
                "Requests to deployments, by deployment, service level, version and status",
                &["deployment", "service_level", "version", "status"],
                registry
            )?,
            latency: prometheus::register_histogram_vec_with_registry!(
                "duma_deployment_predict_seconds",
                "Latency of deployments' predictions, by deployment and version",
                &["deployment", "version"],
                prometheus::exponential_buckets(0.0001, 2.0, 18)?,
                registry
            )?,
            shadow: prometheus::register_int_counter_vec_with_registry!(
                "duma_deployment_shadow_total",
                "Shadow answers compared with the primary's: agree, disagree, failed or skipped",
                &["deployment", "version", "outcome"],
                registry
            )?,
        })
    }
}

pub async fn predict(
    predictor: web::Data<Predictor>,
    name: web::Path<String>,
    request: HttpRequest,
    request_id: RequestId,
    body: web::Payload,
) -> HttpResponse {
    let started = Instant::now();
    let metrics = &predictor.deployment_metrics;
    let routes = match predictor.routes.deployment(&name).await {
        Ok(Some(routes)) => routes,
        Ok(None) => {
            let missing = ApiError::new(
                ErrorCode::DeploymentNotFound,
                format!("no deployment named {name} is serving"),
            );
            return count(metrics, None, None, missing.error_response());
        }
        Err(error) => {
            tracing::warn!(%error, "deployment lookup failed");
            let failed = ApiError::new(
                ErrorCode::Unavailable,
                "the platform cannot look the deployment up right now; retry shortly",
            );
            return count(metrics, None, None, failed.error_response());
        }
    };
    let key = request
        .headers()
        .get(ROUTING_KEY)
        .and_then(|v| v.to_str().ok());
    let (version, job) = routes.choose(key);
    let route = match predictor.routes.get(job).await {
        Ok(Some(route)) => route,
        // The version stopped between the switch and this request: the next one goes elsewhere.
        Ok(None) | Err(_) => {
            let busy = ApiError::new(
                ErrorCode::Unavailable,
                "the deployment is switching versions; retry shortly",
            );
            return count(metrics, Some(&routes), Some(version), busy.error_response());
        }
    };
    // A caller refused for its key makes no series of the job's (as on the job's own route).
    let mut job_label = job.to_string();
    let mut response = match serve(&predictor, job, &route, &request, body, &request_id).await {
        Ok(served) => {
            let response = served.response();
            if let Some(shadow) = routes.shadow {
                let predictor = predictor.clone();
                let routes = routes.clone();
                let request_id = request_id.clone();
                let (queries, primary) = (served.queries, served.predictions);
                actix_web::rt::spawn(async move {
                    compare_shadow(&predictor, &routes, shadow, &queries, &primary, &request_id)
                        .await;
                });
            }
            response
        }
        Err((refused, labelled)) => {
            if !labelled {
                job_label = crate::predict::NO_JOB.to_owned();
            }
            refused.error_response()
        }
    };
    response.headers_mut().insert(
        HeaderName::from_static(VERSION_HEADER),
        HeaderValue::from(version),
    );
    let seconds = started.elapsed().as_secs_f64();
    metrics
        .latency
        .with_label_values(&[routes.name.as_str(), &version.to_string()])
        .observe(seconds);
    // The version's own inference job counts it too, as if asked directly.
    predictor
        .metrics
        .observe(&job_label, response.status(), seconds);
    count(metrics, Some(&routes), Some(version), response)
}

fn count(
    metrics: &DeploymentMetrics,
    routes: Option<&DeploymentRoutes>,
    version: Option<i32>,
    response: HttpResponse,
) -> HttpResponse {
    let version = version.map(|v| v.to_string()).unwrap_or_default();
    let (name, level) = routes.map_or((NONE, ""), |r| (r.name.as_str(), r.service_level.as_str()));
    metrics
        .requests
        .with_label_values(&[name, level, &version, response.status().as_str()])
        .inc();
    response
}

/// Sends the queries to the shadow and records whether it agreed with the primary.
async fn compare_shadow(
    predictor: &Predictor,
    routes: &DeploymentRoutes,
    (version, job): (i32, duma_domain::InferenceJobId),
    queries: &Queries,
    primary: &[Value],
    request_id: &RequestId,
) {
    let outcome = match predictor.routes.get(job).await {
        Ok(Some(route)) => match fan_out(predictor, job, &route, queries, request_id).await {
            Ok(answers) if agree(&answers, primary) => "agree",
            Ok(_) => "disagree",
            Err(_) => "failed",
        },
        _ => "skipped",
    };
    predictor
        .deployment_metrics
        .shadow
        .with_label_values(&[routes.name.as_str(), &version.to_string(), outcome])
        .inc();
}

/// Whether two versions' answers agree: the same label, or for probability vectors the same
/// most likely class.
fn agree(shadow: &[Value], primary: &[Value]) -> bool {
    shadow.len() == primary.len()
        && shadow
            .iter()
            .zip(primary)
            .all(|(a, b)| a == b || (argmax(a).is_some() && argmax(a) == argmax(b)))
}

fn argmax(value: &Value) -> Option<usize> {
    let numbers: Vec<f64> = value
        .as_array()?
        .iter()
        .map(Value::as_f64)
        .collect::<Option<_>>()?;
    numbers
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.partial_cmp(b.1).unwrap_or(std::cmp::Ordering::Equal))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use duma_domain::InferenceJobId;
    use serde_json::json;

    #[test]
    fn shadows_agree_on_the_same_label_or_most_likely_class() {
        assert!(agree(&[json!("cat")], &[json!("cat")]));
        assert!(!agree(&[json!("cat")], &[json!("dog")]));
        assert!(agree(&[json!([0.2, 0.8])], &[json!([0.4, 0.6])]));
        assert!(!agree(&[json!([0.7, 0.3])], &[json!([0.4, 0.6])]));
        assert!(!agree(&[json!(1)], &[json!(1), json!(2)]));
    }

    #[test]
    fn traffic_follows_the_weights_and_a_routing_key_sticks() {
        let (a, b) = (InferenceJobId::new(), InferenceJobId::new());
        let routes = DeploymentRoutes {
            name: "d".into(),
            service_level: "production".into(),
            primaries: vec![(1, a, 90), (2, b, 10)],
            shadow: None,
        };
        let to_b = (0..10_000).filter(|_| routes.choose(None).0 == 2).count();
        assert!((800..1200).contains(&to_b), "{to_b}");
        let pinned = routes.choose(Some("client-7"));
        assert!((0..50).all(|_| routes.choose(Some("client-7")) == pinned));
        let keyed_to_b = (0..2_000)
            .filter(|i| routes.choose(Some(&format!("client-{i}"))).0 == 2)
            .count();
        assert!((140..260).contains(&keyed_to_b), "{keyed_to_b}");
    }
}
