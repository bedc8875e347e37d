//! argon2id password hashes, computed off the async executor (they cost tens of milliseconds and
//! ~19 MiB each), at most `admin.password_hashing_concurrency` at once.

use argon2::Argon2;
use argon2::password_hash::{
    PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng,
};

use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};

use duma_common::api_error::{ApiError, ErrorCode};

/// How long a request waits for its turn to hash before it is told to come back.
const HASHING_WAIT: Duration = Duration::from_secs(10);

async fn turn(hashing: &Semaphore) -> Result<SemaphorePermit<'_>, ApiError> {
    match tokio::time::timeout(HASHING_WAIT, hashing.acquire()).await {
        Ok(Ok(permit)) => Ok(permit),
        _ => Err(ApiError::retry_later(
            ErrorCode::Unavailable,
            "too many logins at once; retry shortly",
            Duration::from_secs(1),
        )),
    }
}

pub async fn hash_password(hashing: &Semaphore, password: String) -> Result<String, ApiError> {
    let _turn = turn(hashing).await?;
    let hashed = actix_web::web::block(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
    })
    .await
    .map_err(|e| ApiError::Internal(anyhow::anyhow!("password hashing task failed: {e}")))?;
    hashed.map_err(|e| ApiError::Internal(anyhow::anyhow!("hashing a password: {e}")))
}

/// False for a wrong password or an unreadable hash.
pub async fn verify_password(
    hashing: &Semaphore,
    password: String,
    hash: String,
) -> Result<bool, ApiError> {
    let _turn = turn(hashing).await?;
    actix_web::web::block(move || {
        PasswordHash::new(&hash)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .map_err(|e| ApiError::Internal(anyhow::anyhow!("password check task failed: {e}")))
}
