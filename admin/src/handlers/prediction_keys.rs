//! Prediction keys of an app. An app without keys answers anyone's predictions (Rafiki's clients
//! send no credentials); once it has a key, only requests carrying one of its keys.

use actix_web::{HttpResponse, web};
use argon2::password_hash::rand_core::{OsRng, RngCore};
use duma_common::db::{GenericClient, prediction_keys, train_jobs};
use duma_common::redis::events::{self, Event};
use duma_domain::PredictionKeyId;

use crate::auth::{Caller, roles};
use crate::params::path_id;
use crate::state::AppState;
use crate::views::{CreatedPredictionKeyView, PredictionKeyView};
use duma_common::api_error::{ApiError, ApiResult, ErrorBody, ErrorCode};

/// Keys per app, at most: enough to rotate and to give each client its own.
const MAX_KEYS_PER_APP: usize = 20;

/// The caller must own an app of that name (a train job of it, any version).
async fn require_app(db: &impl GenericClient, caller: &Caller, app: &str) -> ApiResult<()> {
    if train_jobs::list_by_app(db, caller.id, app)
        .await?
        .is_empty()
    {
        return Err(ApiError::new(
            ErrorCode::TrainJobNotFound,
            format!("you have no app {app}"),
        ));
    }
    Ok(())
}

/// Predictors cache which apps need keys; tell them. A predictor that misses this (Redis down)
/// reloads on its event feed's resync.
async fn announce(state: &AppState) {
    if let Err(error) = events::publish(&state.redis, &Event::PredictionKeysChanged).await {
        tracing::warn!(%error, "could not announce changed prediction keys");
    }
}

/// Creates a key for one of the caller's apps; the response is the only time it is shown.
#[utoipa::path(post, path = "/apps/{app}/prediction_keys", tag = "prediction keys",
    params(("app" = String, Path)),
    responses((status = 200, body = CreatedPredictionKeyView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    app: web::Path<String>,
) -> ApiResult<HttpResponse> {
    caller.require(roles::DEVELOPERS)?;
    let db = state.pool.get().await?;
    require_app(&db, &caller, &app).await?;
    if prediction_keys::list(&db, caller.id, &app).await?.len() >= MAX_KEYS_PER_APP {
        return Err(ApiError::new(
            ErrorCode::TooManyPredictionKeys,
            format!("app {app} has {MAX_KEYS_PER_APP} keys already; delete one first"),
        ));
    }
    let mut secret = [0u8; 32];
    OsRng.fill_bytes(&mut secret);
    let key = format!("{}{}", prediction_keys::KEY_PREFIX, hex::encode(secret));
    let stored = prediction_keys::create(&db, caller.id, &app, &key).await?;
    drop(db);
    announce(&state).await;
    tracing::info!(app = app.as_str(), key_id = %stored.id, by = %caller.id, "prediction key created");
    Ok(super::json(CreatedPredictionKeyView {
        view: PredictionKeyView::from(&stored),
        key,
    }))
}

/// The keys of one of the caller's apps (never the keys themselves).
#[utoipa::path(get, path = "/apps/{app}/prediction_keys", tag = "prediction keys",
    params(("app" = String, Path)),
    responses((status = 200, body = [PredictionKeyView]), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    app: web::Path<String>,
) -> ApiResult<HttpResponse> {
    caller.require(roles::DEVELOPERS)?;
    let db = state.pool.get().await?;
    require_app(&db, &caller, &app).await?;
    let keys = prediction_keys::list(&db, caller.id, &app).await?;
    Ok(super::json(
        keys.iter().map(PredictionKeyView::from).collect::<Vec<_>>(),
    ))
}

/// Revokes a key at once: requests carrying it are refused from the next one on.
#[utoipa::path(delete, path = "/apps/{app}/prediction_keys/{key_id}", tag = "prediction keys",
    params(("app" = String, Path), ("key_id" = String, Path)),
    responses((status = 200, body = crate::views::IdView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (app, raw_id) = path.into_inner();
    caller.require(roles::DEVELOPERS)?;
    let db = state.pool.get().await?;
    require_app(&db, &caller, &app).await?;
    let id: PredictionKeyId = path_id(&raw_id, ErrorCode::PredictionKeyNotFound, "prediction key")?;
    if !prediction_keys::delete(&db, caller.id, &app, id).await? {
        return Err(ApiError::new(
            ErrorCode::PredictionKeyNotFound,
            format!("app {app} has no prediction key {id}"),
        ));
    }
    drop(db);
    announce(&state).await;
    tracing::info!(app = app.as_str(), key_id = %id, by = %caller.id, "prediction key revoked");
    Ok(super::json(crate::views::IdView { id: id.0 }))
}
