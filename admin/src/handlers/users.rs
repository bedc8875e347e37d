use actix_web::{HttpResponse, web};
use duma_common::db::{inference_jobs, train_jobs, users};
use duma_domain::{Email, UserType};

use crate::auth::{Caller, hash_password, roles};
use crate::params::Params;
use crate::requests::{BanUserRequest, CreateUserRequest};
use crate::state::AppState;
use crate::views::UserView;
use duma_common::api_error::{ApiError, ApiResult, ErrorBody, ErrorCode};

const MAX_PASSWORD_LEN: usize = 1024;

/// Only a superadmin may create or ban admins and superadmins.
fn require_may_manage(caller: &Caller, target: UserType) -> Result<(), ApiError> {
    if target.is_admin() && caller.user_type != UserType::Superadmin {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("only a superadmin may manage {target} users"),
        ));
    }
    Ok(())
}

/// Create a user.
#[utoipa::path(post, path = "/users", tag = "users",
    request_body(content = crate::requests::CreateUserRequest, content_type = "application/json"),
    responses((status = 200, body = UserView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    params: Params,
) -> ApiResult<HttpResponse> {
    caller.require(roles::ADMINS)?;
    let request: CreateUserRequest = params.parse()?;
    let email = Email::parse(&request.email)
        .map_err(|e| ApiError::new(ErrorCode::InvalidUser, e.to_string()))?;
    let email = email.as_str();
    let password = request.password.as_str();
    let user_type: UserType =
        request
            .user_type
            .parse()
            .map_err(|e: duma_domain::UnknownVariant| {
                ApiError::new(ErrorCode::InvalidUser, e.to_string())
            })?;
    if password.len() > MAX_PASSWORD_LEN {
        return Err(ApiError::new(
            ErrorCode::InvalidPassword,
            "the password is longer than 1024 bytes",
        ));
    }
    require_may_manage(&caller, user_type)?;
    let hash = hash_password(&state.logins.hashing, password.to_owned()).await?;
    let db = state.pool.get().await?;
    let user = users::insert(&db, email, &hash, user_type)
        .await
        .map_err(|e| {
            if e.is_duplicate_of(users::EMAIL_TAKEN) {
                ApiError::new(
                    ErrorCode::UserExists,
                    format!("a user with email {email} exists"),
                )
            } else {
                e.into()
            }
        })?;
    tracing::info!(user_id = %user.id, %user_type, by = %caller.id, "user created");
    Ok(super::json(UserView::from(&user)))
}

/// List every user.
#[utoipa::path(get, path = "/users", tag = "users",
    responses((status = 200, body = [UserView]), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list(state: web::Data<AppState>, caller: Caller) -> ApiResult<HttpResponse> {
    caller.require(roles::ADMINS)?;
    let db = state.pool.get().await?;
    let users = users::list(&db).await?;
    Ok(super::json(
        users.iter().map(UserView::from).collect::<Vec<_>>(),
    ))
}

/// Ban a user: they can no longer log in and their tokens stop working at once.
#[utoipa::path(delete, path = "/users", tag = "users",
    request_body(content = crate::requests::BanUserRequest, content_type = "application/json"),
    responses((status = 200, body = UserView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn ban(
    state: web::Data<AppState>,
    caller: Caller,
    params: Params,
) -> ApiResult<HttpResponse> {
    caller.require(roles::ADMINS)?;
    let BanUserRequest { email } = params.parse()?;
    let email = email.as_str();
    let db = state.pool.get().await?;
    let user = users::by_email(&db, email).await?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::UserNotFound,
            format!("no user with email {email}"),
        )
    })?;
    if user.id == caller.id {
        return Err(ApiError::new(
            ErrorCode::InvalidUser,
            "you cannot ban yourself",
        ));
    }
    require_may_manage(&caller, user.user_type)?;
    let banned = users::ban(&db, user.id).await?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::UserAlreadyBanned,
            format!("{email} is already banned"),
        )
    })?;
    // A banned user's work stops too: it would otherwise keep using workers (and serving).
    let live_inference: Vec<_> = inference_jobs::list_live(&db)
        .await?
        .into_iter()
        .filter(|job| job.user_id == banned.id)
        .collect();
    let live_train: Vec<_> = train_jobs::list_live(&db)
        .await?
        .into_iter()
        .filter(|job| job.user_id == banned.id)
        .collect();
    drop(db);
    for job in &live_inference {
        crate::jobs::stop_inference_job(&state, job).await?;
    }
    for job in &live_train {
        crate::jobs::stop_train_job(&state, job).await?;
    }
    tracing::info!(user_id = %banned.id, by = %caller.id, train_jobs = live_train.len(), inference_jobs = live_inference.len(), "user banned; their jobs stopped");
    Ok(super::json(UserView::from(&banned)))
}
