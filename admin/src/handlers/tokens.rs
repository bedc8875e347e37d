use actix_web::{HttpRequest, HttpResponse, web};
use duma_common::db::users::{self, User};

use crate::auth::verify_password;
use crate::params::Params;
use crate::requests::LoginRequest;
use crate::state::AppState;
use crate::views::TokenView;
use duma_common::api_error::{ApiError, ApiResult, ErrorBody, ErrorCode};

/// Log in: exchange email and password for a bearer token.
#[utoipa::path(post, path = "/tokens", tag = "auth",
    request_body(content = crate::requests::LoginRequest, content_type = "application/json"),
    responses((status = 200, body = TokenView), (status = 401, body = ErrorBody),
        (status = 429, description = "too many failed logins; see `Retry-After`", body = ErrorBody)))]
pub async fn create(
    state: web::Data<AppState>,
    request: HttpRequest,
    params: Params,
) -> ApiResult<HttpResponse> {
    let LoginRequest { email, password } = params.parse()?;
    let address = request
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    let user = log_in(&state, &address, &email, &password).await?;
    let token = state.tokens.issue(user.id, user.user_type)?;
    Ok(super::json(TokenView {
        user_id: user.id.0,
        user_type: user.user_type,
        token,
    }))
}

/// Checks a login (throttled per account and per address): the user, if the password is right
/// and the user is not banned. The API's `/tokens` and the dashboard's sign-in both use it.
pub(crate) async fn log_in(
    state: &AppState,
    address: &str,
    email: &str,
    password: &str,
) -> ApiResult<User> {
    if let Some(wait) = state.logins.locked_for(email, address) {
        return Err(ApiError::retry_later(
            ErrorCode::TooManyRequests,
            format!(
                "too many failed logins for this account or from this address; retry in {} s",
                wait.as_secs().max(1)
            ),
            wait,
        ));
    }
    let failed = |error: ApiError| {
        state.logins.record_failure(email, address);
        error
    };
    let db = state.pool.get().await?;
    let user = users::by_email(&db, email).await?.ok_or_else(|| {
        failed(ApiError::new(
            ErrorCode::UnknownLogin,
            format!("no user with email {email}"),
        ))
    })?;
    drop(db);
    let hashing = &state.logins.hashing;
    if !verify_password(hashing, password.to_owned(), user.password_hash.clone()).await? {
        return Err(failed(ApiError::new(
            ErrorCode::WrongPassword,
            "wrong password",
        )));
    }
    if user.is_banned() {
        return Err(ApiError::new(ErrorCode::BannedUser, "this user is banned"));
    }
    Ok(user)
}
