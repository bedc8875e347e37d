//! Authentication (JWT bearer tokens checked against the user table on every request, so a ban
//! revokes tokens at once) and authorisation (user types and ownership).

mod passwords;
mod throttle;
mod tokens;

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::{Method, header};
use actix_web::{FromRequest, HttpRequest, web};
use duma_common::db::users;
use duma_domain::{UserId, UserType};

pub use passwords::{hash_password, verify_password};
pub use throttle::LoginThrottle;
pub use tokens::{Claims, TokenKeys};

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

/// The cookie holding a dashboard session's token (HttpOnly, SameSite=Strict).
pub const SESSION_COOKIE: &str = "duma_session";
/// The header a dashboard session's unsafe requests carry: the CSRF value of its token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Checks a token and that its user still exists and is not banned (so a ban ends every token
/// and session at once).
pub async fn authenticate(state: &AppState, token: &str) -> Result<(Caller, Claims), ApiError> {
    let claims = state.tokens.verify(token)?;
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
    let caller = Caller {
        id: user.id,
        email: user.email,
        user_type: user.user_type,
    };
    Ok((caller, claims))
}

/// How a request proves who makes it.
enum Credentials {
    Bearer(String),
    /// A dashboard session's cookie, and the CSRF header of the request if it needs one.
    Session {
        token: String,
        csrf: Option<Option<String>>,
    },
}

fn credentials(req: &HttpRequest) -> Result<Credentials, ApiError> {
    if let Some(value) = req.headers().get(header::AUTHORIZATION) {
        let value = value.to_str().map_err(|_| {
            ApiError::new(ErrorCode::Unauthenticated, "malformed Authorization header")
        })?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::Unauthenticated,
                    "expected `Authorization: Bearer <token>`",
                )
            })?;
        return Ok(Credentials::Bearer(token.trim().to_owned()));
    }
    if let Some(cookie) = req.cookie(SESSION_COOKIE) {
        // What a page of another site can make a browser send is refused unless it echoes the
        // session's CSRF value, which only the dashboard's own pages know.
        let safe = [Method::GET, Method::HEAD, Method::OPTIONS].contains(req.method());
        let csrf = (!safe).then(|| {
            req.headers()
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        });
        return Ok(Credentials::Session {
            token: cookie.value().to_owned(),
            csrf,
        });
    }
    Err(ApiError::new(
        ErrorCode::Unauthenticated,
        "missing Authorization header",
    ))
}

/// Compares without stopping at the first difference, so timing does not reveal the value.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let credentials = credentials(req);
        Box::pin(async move {
            let state =
                state.ok_or_else(|| ApiError::Internal(anyhow::anyhow!("app state missing")))?;
            match credentials? {
                Credentials::Bearer(token) => Ok(authenticate(&state, &token).await?.0),
                Credentials::Session { token, csrf } => {
                    let (caller, claims) = authenticate(&state, &token).await?;
                    if let Some(sent) = csrf {
                        let expected = claims.csrf.unwrap_or_default();
                        let sent = sent.ok_or_else(|| {
                            ApiError::new(
                                ErrorCode::Forbidden,
                                "a dashboard session's request must carry its X-CSRF-Token",
                            )
                        })?;
                        if expected.is_empty() || !same_secret(&sent, &expected) {
                            return Err(ApiError::new(
                                ErrorCode::Forbidden,
                                "the X-CSRF-Token does not match this session",
                            ));
                        }
                    }
                    Ok(caller)
                }
            }
        })
    }
}
