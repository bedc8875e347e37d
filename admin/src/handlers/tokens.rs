use actix_web::{HttpResponse, web};
use duma_common::db::users;

use crate::auth::verify_password;
use crate::error::{ApiError, ApiResult, ErrorBody, class};
use crate::params::Params;
use crate::state::AppState;
use crate::views::TokenView;

/// Log in: exchange email and password for a bearer token.
#[utoipa::path(post, path = "/tokens", tag = "auth",
    request_body(content_type = "application/json", description = "`{email, password}`"),
    responses((status = 200, body = TokenView), (status = 401, body = ErrorBody)))]
pub async fn create(state: web::Data<AppState>, params: Params) -> ApiResult<HttpResponse> {
    let email = params.str("email")?;
    let password = params.str("password")?;
    let db = state.pool.get().await?;
    let user = users::by_email(&db, email).await?.ok_or_else(|| {
        ApiError::unauthorized(class::INVALID_USER, format!("no user with email {email}"))
    })?;
    if !verify_password(password.to_owned(), user.password_hash.clone()).await? {
        return Err(ApiError::unauthorized(
            class::INVALID_PASSWORD,
            "wrong password",
        ));
    }
    if user.is_banned() {
        return Err(ApiError::unauthorized(
            class::INVALID_USER,
            "this user is banned",
        ));
    }
    let token = state.tokens.issue(user.id, user.user_type)?;
    Ok(super::json(TokenView {
        user_id: user.id.0,
        user_type: user.user_type,
        token,
    }))
}
