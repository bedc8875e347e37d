//! Deployments: named, long-lived endpoints of an app (`docs/deployments.md`). A change of
//! versions is written as `pending`; the reconciler moves the traffic once every version in it
//! runs, and stops the versions that lost their traffic once their requests in flight are done.

use actix_web::{HttpResponse, web};
use duma_common::db::deployments::{self, Deployment, Route, SERVICE_LEVELS};
use duma_common::db::inference_jobs;
use duma_common::redis::events::Event;
use serde_json::Value;

use crate::auth::{Caller, roles};
use crate::jobs;
use crate::params::Params;
use crate::requests::{CreateDeploymentRequest, DeploymentMetricsQuery, UpdateDeploymentRequest};
use crate::state::AppState;
use crate::views::{DeploymentMetricsView, DeploymentView, VersionSeries};
use duma_common::api_error::{ApiError, ApiResult, ErrorBody, ErrorCode};

/// Longest deployment name (a DNS label's).
const MAX_NAME: usize = 63;

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidDeployment, message)
}

/// What a deployment serves its versions with.
fn serving(deployment: &Deployment) -> (&str, jobs::Serving<'_>) {
    (
        deployment.app.as_str(),
        jobs::Serving {
            service_level: Some(deployment.service_level.as_str()),
            replicas: deployment.replicas,
        },
    )
}

fn view(state: &AppState, deployment: &Deployment) -> DeploymentView {
    DeploymentView::new(deployment, &state.settings.admin.predictor_host)
}

/// A DNS label: it is part of the endpoint's URL.
fn check_name(name: &str) -> Result<(), ApiError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if valid {
        Ok(())
    } else {
        Err(invalid(format!(
            "`{name}` is not a deployment name: 1 to {MAX_NAME} of a-z, 0-9 and `-`, starting and \
             ending with a letter or digit"
        )))
    }
}

/// Most replicas per deployment.
const MAX_REPLICAS: i64 = 16;

fn check_replicas(replicas: i64) -> Result<i32, ApiError> {
    if (1..=MAX_REPLICAS).contains(&replicas) {
        Ok(replicas as i32)
    } else {
        Err(invalid(format!(
            "replicas must be from 1 to {MAX_REPLICAS}, not {replicas}"
        )))
    }
}

/// Serves every version of `deployment` (now and pending) with `replicas` replicas of each
/// trial — or more, where another deployment shares the version and asks for more. Traffic
/// keeps flowing: new replicas join the trial's stream as they load, dropped ones leave it.
async fn resize(
    state: &AppState,
    deployment: &mut Deployment,
    replicas: i32,
) -> Result<(), ApiError> {
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    deployments::set_replicas(&tx, deployment.id, replicas).await?;
    for route in deployment
        .routes
        .iter()
        .chain(deployment.pending.iter().flatten())
    {
        let job = route.inference_job_id;
        let elsewhere = deployments::replicas_elsewhere(&tx, job, deployment.id).await?;
        let wanted = elsewhere.map_or(replicas, |other| other.max(replicas));
        inference_jobs::set_replicas(&tx, job, wanted).await?;
    }
    tx.commit().await?;
    deployment.replicas = replicas;
    Ok(())
}

/// A share of traffic for `version` of the caller's `app`: its live inference job at the
/// deployment's level, or a new one.
async fn route_to(
    state: &AppState,
    caller: &Caller,
    (app, serving): (&str, jobs::Serving<'_>),
    version: i64,
    weight: u32,
    shadow: bool,
) -> Result<Route, ApiError> {
    let train_job = jobs::find_train_job(state, caller, app, &version.to_string()).await?;
    let job = jobs::live_or_new_inference_job(state, caller, &train_job, serving).await?;
    Ok(Route {
        app_version: train_job.app_version,
        inference_job_id: job.id,
        weight,
        shadow,
    })
}

/// The caller's deployment (or any, for admins) named `name`.
pub(crate) async fn find(
    state: &AppState,
    caller: &Caller,
    name: &str,
) -> Result<Deployment, ApiError> {
    let db = state.pool.get().await?;
    let deployment = deployments::by_name(&db, name).await?;
    match deployment {
        Some(d) if d.user_id == caller.id || caller.is_admin() => Ok(d),
        // Another user's deployment does not exist for the caller.
        _ => Err(ApiError::new(
            ErrorCode::DeploymentNotFound,
            format!("you have no deployment named {name}"),
        )),
    }
}

/// Writes `pending` (and clears the last error) under the deployment's row lock.
async fn set_pending(
    state: &AppState,
    deployment: &Deployment,
    pending: Vec<Route>,
) -> Result<Deployment, ApiError> {
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    let Some(mut current) = deployments::by_name_for_update(&tx, &deployment.name).await? else {
        return Err(ApiError::new(
            ErrorCode::DeploymentNotFound,
            format!("deployment {} was deleted meanwhile", deployment.name),
        ));
    };
    current.pending = Some(pending);
    current.error = None;
    deployments::save_routing(&tx, &current).await?;
    tx.commit().await?;
    Ok(current)
}

/// Create a deployment of an app version.
#[utoipa::path(post, path = "/deployments", tag = "deployments",
    request_body(content = CreateDeploymentRequest, content_type = "application/json"),
    responses((status = 200, body = DeploymentView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    params: Params,
) -> ApiResult<HttpResponse> {
    caller.require(roles::DEVELOPERS)?;
    let request: CreateDeploymentRequest = params.parse()?;
    check_name(&request.name)?;
    if request.model_id.is_some() && request.app_version.is_some() {
        return Err(invalid(
            "give app_version (a trained version) or model_id (an uploaded model), not both",
        ));
    }
    let level = request
        .service_level
        .unwrap_or_else(|| "development".to_owned());
    if !SERVICE_LEVELS.contains(&level.as_str()) {
        return Err(invalid(format!(
            "service_level `{level}` is none of {}",
            SERVICE_LEVELS.join(", ")
        )));
    }
    let replicas = check_replicas(request.replicas.unwrap_or(1))?;
    let db = state.pool.get().await?;
    if deployments::by_name(&db, &request.name).await?.is_some() {
        return Err(taken(&request.name));
    }
    drop(db);
    let version = match &request.model_id {
        Some(model_id) => {
            let knobs = request.knobs.as_ref();
            let made =
                jobs::version_from_model(&state, &caller, &request.app, model_id, knobs).await?;
            i64::from(made.app_version)
        }
        None if request.knobs.is_some() => {
            return Err(invalid(
                "knobs are given only with model_id (a checkpoint's template is built with them)"
                    .to_owned(),
            ));
        }
        None => request.app_version.unwrap_or(-1),
    };
    let serving = jobs::Serving {
        service_level: Some(&level),
        replicas,
    };
    let route = route_to(
        &state,
        &caller,
        (&request.app, serving),
        version,
        100,
        false,
    )
    .await?;
    let db = state.pool.get().await?;
    let deployment = deployments::insert(
        &db,
        &request.name,
        caller.id,
        &request.app,
        &level,
        replicas,
        &[route],
    )
    .await
    .map_err(|e| {
        if e.is_duplicate_of(deployments::NAME_TAKEN) {
            taken(&request.name)
        } else {
            e.into()
        }
    })?;
    tracing::info!(
        deployment = deployment.name,
        app = deployment.app,
        "deployment created"
    );
    Ok(super::json(view(&state, &deployment)))
}

fn taken(name: &str) -> ApiError {
    ApiError::new(
        ErrorCode::DeploymentExists,
        format!("a deployment named {name} exists (names are unique on the platform)"),
    )
}

/// The caller's deployments (admins: everyone's).
#[utoipa::path(get, path = "/deployments", tag = "deployments",
    responses((status = 200, body = [DeploymentView])), security(("bearer" = [])))]
pub async fn list(state: web::Data<AppState>, caller: Caller) -> ApiResult<HttpResponse> {
    caller.require(roles::DEVELOPERS)?;
    let db = state.pool.get().await?;
    let whose = (!caller.is_admin()).then_some(caller.id);
    let list = deployments::list(&db, whose).await?;
    Ok(super::json(
        list.iter().map(|d| view(&state, d)).collect::<Vec<_>>(),
    ))
}

/// A deployment: its routes now, its pending change, its previous routes.
#[utoipa::path(get, path = "/deployments/{name}", tag = "deployments", params(("name" = String, Path)),
    responses((status = 200, body = DeploymentView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    name: web::Path<String>,
) -> ApiResult<HttpResponse> {
    caller.require(roles::DEVELOPERS)?;
    let deployment = find(&state, &caller, &name).await?;
    Ok(super::json(view(&state, &deployment)))
}

/// Change the versions: all traffic to `app_version`, or `weights` per version, and/or a
/// `shadow`. The traffic moves once every version runs.
#[utoipa::path(patch, path = "/deployments/{name}", tag = "deployments", params(("name" = String, Path)),
    request_body(content = UpdateDeploymentRequest, content_type = "application/json"),
    responses((status = 200, body = DeploymentView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn update(
    state: web::Data<AppState>,
    caller: Caller,
    name: web::Path<String>,
    params: Params,
) -> ApiResult<HttpResponse> {
    caller.require(roles::DEVELOPERS)?;
    let request: UpdateDeploymentRequest = params.parse()?;
    let replicas = request.replicas.map(check_replicas).transpose()?;
    let primaries: Option<Vec<(i64, u32)>> = match (request.app_version, &request.weights) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "give app_version (all traffic to one version) or weights, not both",
            ));
        }
        (Some(version), None) => Some(vec![(version, 100)]),
        (None, Some(weights)) => Some(parse_weights(weights)?),
        (None, None) => None,
    };
    let shadow: Option<Option<i64>> = match &request.shadow {
        None => None,
        Some(Value::Null) => Some(None),
        Some(value) => Some(Some(value.as_i64().filter(|v| *v >= 1).ok_or_else(
            || invalid("shadow must be an app version (an integer from 1) or null"),
        )?)),
    };
    if primaries.is_none() && shadow.is_none() && replicas.is_none() {
        return Err(invalid(
            "nothing to change: give app_version, weights, shadow or replicas",
        ));
    }
    let mut deployment = find(&state, &caller, &name).await?;
    if let Some(replicas) = replicas {
        resize(&state, &mut deployment, replicas).await?;
        if primaries.is_none() && shadow.is_none() {
            tracing::info!(deployment = deployment.name, replicas, "deployment resized");
            return Ok(super::json(view(&state, &deployment)));
        }
    }
    let base = deployment
        .pending
        .clone()
        .unwrap_or_else(|| deployment.routes.clone());
    let primaries = primaries.unwrap_or_else(|| {
        base.iter()
            .filter(|r| !r.shadow)
            .map(|r| (i64::from(r.app_version), r.weight))
            .collect()
    });
    let shadow = shadow.unwrap_or_else(|| {
        base.iter()
            .find(|r| r.shadow)
            .map(|r| i64::from(r.app_version))
    });
    let mut pending = Vec::new();
    for (version, weight) in primaries {
        pending.push(
            route_to(
                &state,
                &caller,
                serving(&deployment),
                version,
                weight,
                false,
            )
            .await?,
        );
    }
    if let Some(version) = shadow {
        let route = route_to(&state, &caller, serving(&deployment), version, 0, true).await?;
        if pending.iter().any(|r| r.app_version == route.app_version) {
            return Err(invalid(format!(
                "version {} cannot be both served and the shadow",
                route.app_version
            )));
        }
        pending.push(route);
    }
    let updated = set_pending(&state, &deployment, pending).await?;
    tracing::info!(deployment = updated.name, "deployment change pending");
    Ok(super::json(view(&state, &updated)))
}

/// `{"3": 95, "4": 5}`: integer percents per version, summing to 100.
fn parse_weights(weights: &serde_json::Map<String, Value>) -> Result<Vec<(i64, u32)>, ApiError> {
    let mut parsed = Vec::new();
    for (version, weight) in weights {
        let version: i64 = version
            .parse()
            .ok()
            .filter(|v| *v >= 1)
            .ok_or_else(|| invalid(format!("weights: `{version}` is not an app version")))?;
        let weight = weight.as_u64().filter(|w| *w <= 100).ok_or_else(|| {
            invalid(format!(
                "weights: version {version} has {weight}, not a whole percent from 0 to 100"
            ))
        })?;
        parsed.push((version, weight as u32));
    }
    let total: u32 = parsed.iter().map(|(_, w)| w).sum();
    if parsed.is_empty() || total != 100 {
        return Err(invalid(format!(
            "weights must sum to 100 (they sum to {total})"
        )));
    }
    parsed.sort();
    Ok(parsed)
}

/// Return to the routes before the last switch.
#[utoipa::path(post, path = "/deployments/{name}/rollback", tag = "deployments", params(("name" = String, Path)),
    responses((status = 200, body = DeploymentView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn rollback(
    state: web::Data<AppState>,
    caller: Caller,
    name: web::Path<String>,
) -> ApiResult<HttpResponse> {
    caller.require(roles::DEVELOPERS)?;
    let deployment = find(&state, &caller, &name).await?;
    let Some(previous) = deployment.previous.clone() else {
        return Err(ApiError::new(
            ErrorCode::NothingToRollBack,
            format!("deployment {name} has not switched versions yet: nothing to roll back to"),
        ));
    };
    let mut pending = Vec::new();
    for route in previous {
        pending.push(
            route_to(
                &state,
                &caller,
                serving(&deployment),
                i64::from(route.app_version),
                route.weight,
                route.shadow,
            )
            .await?,
        );
    }
    let updated = set_pending(&state, &deployment, pending).await?;
    tracing::info!(deployment = updated.name, "deployment rolling back");
    Ok(super::json(view(&state, &updated)))
}

/// Delete a deployment and stop the inference jobs it serves from.
#[utoipa::path(delete, path = "/deployments/{name}", tag = "deployments", params(("name" = String, Path)),
    responses((status = 200, body = DeploymentView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete(
    state: web::Data<AppState>,
    caller: Caller,
    name: web::Path<String>,
) -> ApiResult<HttpResponse> {
    caller.require(roles::DEVELOPERS)?;
    let deployment = find(&state, &caller, &name).await?;
    let db = state.pool.get().await?;
    deployments::delete(&db, deployment.id).await?;
    for job in deployment.inference_jobs() {
        if deployments::routes_elsewhere(&db, job, deployment.id).await? {
            continue;
        }
        if let Some(job) = duma_common::db::inference_jobs::by_id(&db, job).await? {
            jobs::stop_inference_job(&state, &job).await?;
        }
    }
    state
        .publish(Event::DeploymentChanged {
            name: deployment.name.clone(),
        })
        .await;
    tracing::info!(deployment = deployment.name, "deployment deleted");
    Ok(super::json(view(&state, &deployment)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_labels() {
        for good in ["a", "fraud-scoring", "v2", &"x".repeat(63)] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", "a/b", &"x".repeat(64)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn weights_are_whole_percents_summing_to_100() {
        let weights = |v: Value| parse_weights(v.as_object().unwrap());
        assert_eq!(
            weights(serde_json::json!({"4": 5, "3": 95})).unwrap(),
            vec![(3, 95), (4, 5)]
        );
        for bad in [
            serde_json::json!({}),
            serde_json::json!({"3": 50}),
            serde_json::json!({"3": 50.5, "4": 49.5}),
            serde_json::json!({"x": 100}),
            serde_json::json!({"0": 100}),
            serde_json::json!({"3": -5, "4": 105}),
        ] {
            assert!(weights(bad.clone()).is_err(), "{bad}");
        }
    }
}

const DEFAULT_METRICS_MINUTES: i64 = 60;
const MAX_METRICS_MINUTES: i64 = 7 * 24 * 60;
/// Points per series at most (the step grows with the window).
const METRICS_POINTS: f64 = 120.0;

/// The deployment's request rate, errors and latency percentiles per version over the last
/// `minutes`, read from the Prometheus that scrapes the predictors (`admin.prometheus_url`).
#[utoipa::path(get, path = "/deployments/{name}/metrics", tag = "deployments",
    params(("name" = String, Path), DeploymentMetricsQuery),
    responses((status = 200, body = DeploymentMetricsView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn metrics(
    state: web::Data<AppState>,
    caller: Caller,
    name: web::Path<String>,
    params: Params,
) -> ApiResult<HttpResponse> {
    caller.require(roles::DEVELOPERS)?;
    let DeploymentMetricsQuery { minutes } = params.parse()?;
    let minutes = minutes.unwrap_or(DEFAULT_METRICS_MINUTES);
    if !(5..=MAX_METRICS_MINUTES).contains(&minutes) {
        return Err(ApiError::invalid_request(format!(
            "minutes must be from 5 to {MAX_METRICS_MINUTES}, not {minutes}"
        )));
    }
    let deployment = find(&state, &caller, &name).await?;
    let prometheus = state.prometheus.as_ref().ok_or_else(|| {
        ApiError::new(
            ErrorCode::Unavailable,
            "deployment metrics need a Prometheus: set admin.prometheus_url (DUMA_ADMIN__PROMETHEUS_URL)",
        )
    })?;
    #[allow(clippy::cast_precision_loss)] // at most a week of seconds
    let window = (minutes * 60) as f64;
    let end = chrono::Utc::now().timestamp() as f64;
    let start = end - window;
    let step = (window / METRICS_POINTS).ceil().max(15.0);
    // A rate needs a few scrapes in its range, and should not miss requests between points.
    let range = format!("{}s", step.max(60.0));
    let selector = format!(
        "deployment=\"{}\"",
        deployment.name.replace('\\', "\\\\").replace('"', "\\\"")
    );
    let rate = |filter: &str| {
        format!(
            "sum by (version) (rate(duma_deployment_requests_total{{{selector}{filter}}}[{range}]))"
        )
    };
    let quantile = |q: f64| {
        format!(
            "histogram_quantile({q}, sum by (le, version) \
             (rate(duma_deployment_predict_seconds_bucket{{{selector}}}[{range}])))"
        )
    };
    let by_version = |query: String| async move {
        let series = prometheus.range(&query, start, end, step).await?;
        Ok::<VersionSeries, anyhow::Error>(
            series
                .into_iter()
                .filter_map(|s| Some((s.labels.get("version")?.clone(), s.points)))
                .collect(),
        )
    };
    // The four queries go out together.
    let (requests, errors, p50, p99) = futures::try_join!(
        by_version(rate("")),
        by_version(rate(",status=~\"5..\"")),
        by_version(quantile(0.5)),
        by_version(quantile(0.99)),
    )
    .map_err(|error| {
        tracing::warn!(url = prometheus.url(), error = format!("{error:#}"), "a Prometheus query failed");
        ApiError::new(
            ErrorCode::Unavailable,
            "the Prometheus of admin.prometheus_url did not answer; retry later (the admin's log has the details)",
        )
    })?;
    Ok(super::json(DeploymentMetricsView {
        deployment: deployment.name,
        start,
        end,
        step_seconds: step,
        requests_per_second: requests,
        errors_per_second: errors,
        latency_p50_seconds: p50,
        latency_p99_seconds: p99,
    }))
}
