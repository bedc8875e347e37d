use std::time::Duration;

use argon2::password_hash::rand_core::{OsRng, RngCore};
use duma_domain::{UserId, UserType};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use duma_common::api_error::{ApiError, ErrorCode};

/// What a token carries (Rafiki's claims).
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub user_id: UserId,
    pub user_type: UserType,
    pub exp: i64,
    pub iat: i64,
    /// Only in a dashboard session's token: the value its unsafe requests must echo in
    /// `X-CSRF-Token` (the cookie alone is sent by the browser to any form's target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csrf: Option<String>,
}

/// HS256 keys derived from the configured secret.
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    ttl: Duration,
}

impl TokenKeys {
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            ttl,
        }
    }

    pub fn issue(&self, user_id: UserId, user_type: UserType) -> Result<String, ApiError> {
        self.sign(user_id, user_type, None)
    }

    /// A dashboard session's token (for the cookie), carrying a fresh CSRF value.
    pub fn issue_session(&self, user_id: UserId, user_type: UserType) -> Result<String, ApiError> {
        let mut secret = [0u8; 16];
        OsRng.fill_bytes(&mut secret);
        self.sign(user_id, user_type, Some(hex::encode(secret)))
    }

    /// How long a token lives: the session cookie's max age.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn sign(
        &self,
        user_id: UserId,
        user_type: UserType,
        csrf: Option<String>,
    ) -> Result<String, ApiError> {
        let now = chrono::Utc::now().timestamp();
        let exp = now + i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX / 2);
        let claims = Claims {
            user_id,
            user_type,
            exp,
            iat: now,
            csrf,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("signing a token: {e}")))
    }

    /// Checks signature, algorithm and expiry.
    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|e| ApiError::new(ErrorCode::Unauthenticated, format!("invalid token: {e}")))
    }
}
