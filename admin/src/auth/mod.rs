//! Authentication (JWT bearer tokens checked against the user table on every request, so a ban
//! revokes tokens at once) and authorisation (user types and ownership).

mod passwords;
mod throttle;
mod tokens;

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use duma_common::db::users;
use duma_domain::{UserId, UserType};

pub use passwords::{hash_password, verify_password};
pub use throttle::LoginThrottle;
pub use tokens::TokenKeys;

use crate::state::AppState;
use duma_common::api_error::{ApiError, ErrorCode};

/// The authenticated user making a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub id: UserId,
    pub email: String,
    pub user_type: UserType,
}

impl Caller {
    /// Superadmins may do everything; others only what `allowed` lists.
    pub fn require(&self, allowed: &[UserType]) -> Result<(), ApiError> {
        if self.user_type == UserType::Superadmin || allowed.contains(&self.user_type) {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("a {} user may not do this", self.user_type),
            ))
        }
    }

    pub fn is_admin(&self) -> bool {
        self.user_type.is_admin()
    }

    /// Admins may act on anyone's resources; everyone else only on their own.
    pub fn require_owner_or_admin(&self, owner: UserId, what: &str) -> Result<(), ApiError> {
        if self.is_admin() || owner == self.id {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("this {what} belongs to another user"),
            ))
        }
    }
}

/// The roles of Rafiki's routes.
pub mod roles {
    use duma_domain::UserType::{self, *};
    pub const ADMINS: &[UserType] = &[Admin];
    pub const DEVELOPERS: &[UserType] = &[Admin, ModelDeveloper, AppDeveloper];
    pub const MODEL_DEVELOPERS: &[UserType] = &[Admin, ModelDeveloper];
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let header = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.to_str().map(str::to_owned));
        Box::pin(async move {
            let state =
                state.ok_or_else(|| ApiError::Internal(anyhow::anyhow!("app state missing")))?;
            let token = match header {
                None => {
                    return Err(ApiError::new(
                        ErrorCode::Unauthenticated,
                        "missing Authorization header",
                    ));
                }
                Some(Err(_)) => {
                    return Err(ApiError::new(
                        ErrorCode::Unauthenticated,
                        "malformed Authorization header",
                    ));
                }
                Some(Ok(value)) => value,
            };
            let token = token
                .strip_prefix("Bearer ")
                .or_else(|| token.strip_prefix("bearer "))
                .ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::Unauthenticated,
                        "expected `Authorization: Bearer <token>`",
                    )
                })?;
            let claims = state.tokens.verify(token.trim())?;
            let db = state.pool.get().await?;
            let user = users::by_id(&db, claims.user_id).await?.ok_or_else(|| {
                ApiError::new(
                    ErrorCode::Unauthenticated,
                    "the token's user no longer exists",
                )
            })?;
            if user.is_banned() {
                return Err(ApiError::new(
                    ErrorCode::Unauthenticated,
                    "this user is banned",
                ));
            }
            Ok(Caller {
                id: user.id,
                email: user.email,
                user_type: user.user_type,
            })
        })
    }
}
